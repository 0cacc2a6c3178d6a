"""LATTICE (Zhang et al., ACM MM 2021): latent item–item structure learned from modalities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.knn import modality_knn_graphs
from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import Interval, Rule
from mmgraph.nn.conv import LightGCNEncoder
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.item_graph import (
    ItemGraph,
    LatentItemGraph,
    cosine_edge_weights,
    item_graph_csr,
    propagate_items,
    row_sum_normalization,
)
from mmgraph.nn.losses import embedding_l2, gather_triple, triple_bpr_loss


class LATTICE(Recommender):
    r"""LightGCN plus item embeddings propagated over a learned modality-aware item graph.

    **Item graph** (:class:`~mmgraph.nn.LatentItemGraph`):
    :math:`S = (1-\lambda)\tilde S + \lambda \sum_m \alpha_m \hat S_m`, where :math:`\tilde S`
    is the row-normalised cosine kNN graph of the *projected* features :math:`W_m x_m`, fused
    with learned softmax weights :math:`\alpha`, and :math:`\hat S_m` the fixed one of the raw
    features (built by the data layer, neighbours cached). As in LATTICE's code the learned
    graph is rebuilt, with gradient to :math:`W_m` and :math:`\alpha`, on the first batch of
    every epoch and reused without gradient for the epoch's other batches; evaluation rebuilds
    it from the current weights.

    **Embeddings.** :math:`h = S^{L} Q`; :math:`(u, i) = \mathrm{LightGCN}([P; Q])` (two hops,
    layer mean); items :math:`i + h / \lVert h \rVert`. **Loss:** BPR +
    ``reg_weight *`` :func:`~mmgraph.nn.embedding_l2` of the batch's final embeddings.

    Deviations from LATTICE's code (and MMRec's port): the user–item graph is LightGCN's
    :math:`D^{-1/2} A D^{-1/2}` (MMRec's LATTICE uses :math:`D^{-1}(A + I)`); features are
    frozen (the code trains the raw tables); the top-k selection runs in row blocks, so no
    ``I x I`` similarity matrix is built (the code builds several per epoch, dense); any
    number of modalities. The NGCF and MF backbones of the code are not offered.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` item features (at least one).
        original_graphs: per-modality fixed graphs ``(edge_index, edge_weight)``, in the order
            of ``features``; :meth:`from_dataset` builds them from ``knn_k``.
        embedding_dim: ``d`` (64; also the projection width ``feat_embed_dim``).
        num_layers: user–item hops (``len(weight_size)`` = 2).
        item_graph_layers: item–item hops ``L`` (``n_layers`` = 1).
        knn_k: neighbours per item (10).
        skip: :math:`\lambda` (``lambda_coeff`` = 0.9).
        reg_weight: L2 weight (LATTICE's ``regs[0]`` = 1e-5; MMRec grid {0, 1e-5, 1e-4, 1e-3}).
        item_id_dropout: cold-start option (:class:`~mmgraph.nn.ItemIDDropout`): the chance
            that an item's ID row is zeroed in a training step; items without training
            interactions are then ranked with a zero ID row. 0 (default) turns it off.
    """

    name = "lattice"
    #: MMRec's LATTICE.yaml (16 points)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "reg_weight": (0.0, 1e-5, 1e-4, 1e-3),
        "lr": (1e-4, 5e-4, 1e-3, 5e-3),
    }
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {"skip": Interval(0.0, 1.0)}
    requires_features = True
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 5e-4}
    dataset_args = (*Recommender.dataset_args, "original_graphs")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        original_graphs: list[ItemGraph] | None = None,
        embedding_dim: int = 64,
        num_layers: int = 2,
        item_graph_layers: int = 1,
        knn_k: int = 10,
        skip: float = 0.9,
        reg_weight: float = 1e-5,
        item_id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.add_id_embeddings(embedding_dim)
        self.id_dropout = ItemIDDropout(item_id_dropout, train_edge_index[1], num_items)
        self.encoder = LightGCNEncoder(num_layers)
        self.item_graph = LatentItemGraph(features, embedding_dim, knn_k, skip, original_graphs)
        self.item_graph_layers = item_graph_layers
        self.reg_weight = reg_weight
        self.register_adjacency(train_edge_index)
        self._epoch_graph: tuple[Tensor, Tensor] | None = None
        self.reset_parameters()

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Adds the raw-feature kNN graphs: cached neighbours, cosine weights, row-normalised."""
        graphs = modality_knn_graphs(dataset, hparams["knn_k"])
        original = []
        for modality, (edge_index, _) in graphs.items():
            weight = cosine_edge_weights(dataset.features(modality).float(), edge_index)
            original.append(
                (edge_index, row_sum_normalization(edge_index, weight, dataset.num_items))
            )
        return {**super().dataset_inputs(dataset, hparams), "original_graphs": original}

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.item_graph.reset_parameters()

    def on_epoch_start(self, epoch: int) -> None:
        """Mark the learned graph for a rebuild (with gradient) on the next batch."""
        self._epoch_graph = None

    def encode(self, item_graph: ItemGraph | tuple[Tensor, Tensor]) -> Embeddings:
        """``([U, d], [I, d])`` final embeddings for an item graph (see
        :func:`~mmgraph.nn.propagate_items`)."""
        item_ids = self.id_dropout(self.item_embedding.weight)
        h = propagate_items(item_ids, item_graph, self.item_graph_layers)
        x = torch.cat([self.user_embedding.weight, item_ids])
        users, items = torch.split(self.encoder(x, self.adj), [self.num_users, self.num_items])
        return users, items + F.normalize(h, dim=1)

    def forward(self) -> Embeddings:
        with torch.no_grad():
            graph = item_graph_csr(self.item_graph(), self.num_items)
        return self.encode(graph)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        if self._epoch_graph is None:
            graph = self.item_graph()
            self._epoch_graph = item_graph_csr(graph, self.num_items)
        else:
            graph = self._epoch_graph
        rows = gather_triple(*self.encode(graph), batch)
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_reg": self.reg_weight * embedding_l2(*rows),
        }
