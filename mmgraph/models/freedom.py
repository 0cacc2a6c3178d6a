"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item–item graph and a denoised user–item graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.graph import user_item_adjacency
from mmgraph.data.knn import fused_knn_graph
from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.nn.conv import LightGCNEncoder
from mmgraph.nn.encoders import ModalityProjection
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.item_graph import ItemGraphPropagation
from mmgraph.nn.losses import triple_bpr_loss
from mmgraph.nn.perturb import degree_sensitive_edge_sample
from mmgraph.nn.sparse import csr_transpose


class FREEDOM(Recommender):
    r"""LightGCN on a degree-pruned user–item graph plus a frozen fused kNN item graph.

    **Item graph.** :math:`S = \sum_m w_m \hat A_m`, the modality kNN graphs of the raw
    features fused with weights ``item_graph_weights`` (FREEDOM's ``mm_image_weight`` 0.1 for
    image + text; uniform otherwise), built once by the data layer
    (:func:`~mmgraph.data.knn.fused_knn_graph`, cached) and never updated.

    **Embeddings.** :math:`h = S^{L_{mm}} Q` (item ID table, no residual);
    :math:`(u, i) = \mathrm{LightGCN}_{L_{ui}}([P; Q])` (layer mean) over the training graph
    with degree-sensitive edge pruning: before every epoch ``1 - dropout`` of the edges are
    kept, drawn with probability :math:`\propto 1/\sqrt{d_u d_i}`
    (:func:`~mmgraph.nn.degree_sensitive_edge_sample`), and re-normalised. Items:
    :math:`i + h`. Evaluation propagates on the full graph.

    **Loss** ``loss_bpr + loss_modal``: BPR on :math:`\langle u, i \rangle`, and
    ``reg_weight *`` :math:`\sum_m` BPR of the user embedding against the projected features
    :math:`W_m x_m` of the positive and negative item (FREEDOM calls this weight
    ``reg_weight``; the projections enter the ranking only through this term).

    Deviations from FREEDOM's code: features are frozen (the code trains the raw feature
    tables); edges are drawn with exponential keys instead of ``torch.multinomial`` (same
    distribution, no :math:`2^{24}` limit); any number of modalities.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` item features (at least one).
        item_graph: ``[I, I]`` sparse CSR fused kNN graph; :meth:`from_dataset` builds it from
            ``knn_k`` and ``item_graph_weights``.
        embedding_dim: ``d`` (64; also the projection width ``feat_embed_dim``).
        num_layers: user–item hops ``L_ui`` (2).
        item_graph_layers: item–item hops ``L_mm`` (1).
        dropout: fraction of training edges pruned each epoch (MMRec grid {0.8, 0.9}).
        reg_weight: weight of the modality BPR terms (grid {0, 1e-5, 1e-4, 1e-3}).
        item_id_dropout: cold-start option (:class:`~mmgraph.nn.ItemIDDropout`): the chance
            that an item's ID row is zeroed in a training step; items without training
            interactions are then ranked with a zero ID row. 0 (default) turns it off.
    """

    name = "freedom"
    #: read by :meth:`dataset_inputs` only: neighbours per item (10) and modality -> weight of
    #: its kNN graph (``None``: see above)
    data_hyperparameters: ClassVar[dict[str, Any]] = {"knn_k": 10, "item_graph_weights": None}
    #: MMRec's FREEDOM.yaml (8 points)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dropout": (0.8, 0.9),
        "reg_weight": (0.0, 1e-5, 1e-4, 1e-3),
    }
    requires_features = True
    dataset_args = (*Recommender.dataset_args, "item_graph")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        item_graph: Tensor,
        embedding_dim: int = 64,
        num_layers: int = 2,
        item_graph_layers: int = 1,
        dropout: float = 0.8,
        reg_weight: float = 1e-3,
        item_id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.add_id_embeddings(embedding_dim)
        self.id_dropout = ItemIDDropout(item_id_dropout, train_edge_index[1], num_items)
        self.encoder = LightGCNEncoder(num_layers)
        self.item_propagation = ItemGraphPropagation(item_graph_layers, residual=False)
        self.content = ModalityProjection(features, embedding_dim)
        self.dropout = dropout
        self.reg_weight = reg_weight
        self.register_buffer("train_edges", train_edge_index, persistent=False)
        self.register_adjacency(train_edge_index)
        self.register_buffer("item_graph", item_graph, persistent=False)
        self.register_buffer("item_graph_t", csr_transpose(item_graph), persistent=False)
        self.pruned_adj: Tensor | None = None
        self.reset_parameters()

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        graph = fused_knn_graph(dataset, hparams["knn_k"], hparams["item_graph_weights"])
        return {**super().dataset_inputs(dataset, hparams), "item_graph": graph}

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.content.reset_parameters()

    def on_epoch_start(self, epoch: int) -> None:
        """Draw this epoch's pruned training graph (torch's global generator)."""
        if self.dropout == 0.0:
            self.pruned_adj = self.adj
            return
        kept = degree_sensitive_edge_sample(
            self.train_edges, self.num_users, self.num_items, 1.0 - self.dropout
        )
        self.pruned_adj = user_item_adjacency(kept, self.num_users, self.num_items)

    def encode(self, adj: Tensor) -> Embeddings:
        """``([U, d], [I, d])`` propagated over the user–item graph ``adj``."""
        item_ids = self.id_dropout(self.item_embedding.weight)
        x = torch.cat([self.user_embedding.weight, item_ids])
        users, items = torch.split(self.encoder(x, adj), [self.num_users, self.num_items])
        return users, items + self.item_propagation(item_ids, self.item_graph, self.item_graph_t)

    def forward(self) -> Embeddings:
        return self.encode(self.adj)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        if self.pruned_adj is None:  # called outside the trainer's epoch loop
            self.on_epoch_start(0)
        user_emb, item_emb = self.encode(self.pruned_adj)
        u = user_emb.index_select(0, batch.users)
        pos, neg = batch.pos_items, batch.neg_items
        loss_modal = u.new_zeros(())
        for projected in self.content().values():
            loss_modal = loss_modal + triple_bpr_loss(
                u, projected.index_select(0, pos), projected.index_select(0, neg)
            )
        return {
            "loss_bpr": triple_bpr_loss(
                u, item_emb.index_select(0, pos), item_emb.index_select(0, neg)
            ),
            "loss_modal": self.reg_weight * loss_modal,
        }
