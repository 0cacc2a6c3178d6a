"""MGCN (Yu et al., ACM MM 2023): multi-view graph convolutional network for multimedia
recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.graph import user_item_adjacency
from mmgraph.data.knn import modality_knn_graphs
from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import NON_NEGATIVE, POSITIVE, Rule
from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.conv import LightGCNEncoder
from mmgraph.nn.encoders import ModalityProjection
from mmgraph.nn.item_graph import (
    ItemGraphPropagation,
    cosine_edge_weights,
    item_graph_csr,
    row_sum_normalization,
)
from mmgraph.nn.losses import embedding_l2, triple_bpr_loss
from mmgraph.nn.purifier import BehaviorAwareFuser, BehaviorGuidedPurifier
from mmgraph.nn.sparse import csr_submatrix, csr_transpose, sparse_matmul

#: MGCN.yaml's ``learning_rate_scheduler``: the learning rate of epoch ``e`` (from 1) is
#: ``lr * 0.96 ** ((e - 1) / 50)``, as MMRec's trainer steps it after every epoch.
LR_DECAY, LR_DECAY_EPOCHS = 0.96, 50


class MGCN(Recommender):
    r"""Purified modality views on item–item graphs, fused with a LightGCN behaviour view.

    **Purifier** (:class:`~mmgraph.nn.BehaviorGuidedPurifier`). Each modality's frozen
    features are projected, :math:`f^m = W_m x^m + b_m` (:class:`~mmgraph.nn.ModalityProjection`),
    and gate the item-ID table :math:`Q \in \mathbb R^{I \times d}`:
    :math:`\dot E^m = Q \odot \sigma(W^g_m f^m + b^g_m)`, ``[I, d]``.

    **Views.** User–item (behaviour) view :math:`E^{id} = \mathrm{LightGCN}_{L_{ui}}([P; Q])`
    (layer mean over :math:`\hat A = D^{-1/2} A D^{-1/2}`), ``[U + I, d]``. Item–item view of
    modality :math:`m`: :math:`E^m_I = S_m^{L_{mm}} \dot E^m` over the modality's kNN graph
    :math:`S_m` (below), users :math:`E^m_U = \hat R E^m_I` with
    :math:`\hat R = D_U^{-1/2} R D_I^{-1/2}` the user–item block of :math:`\hat A`;
    :math:`E^m = [E^m_U; E^m_I]`, ``[U + I, d]``.

    **Fuser** (:class:`~mmgraph.nn.BehaviorAwareFuser`). Shared part
    :math:`E^s = \sum_m \alpha_m E^m` with :math:`\alpha = \mathrm{softmax}_m(q^\top
    \tanh(W_q E^m + b_q))` per node; specific parts gated by behaviour
    :math:`\hat E^m = (E^m - E^s) \odot \sigma(W^p_m E^{id} + b^p_m)`;
    :math:`E^{side} = (E^s + \sum_m \hat E^m) / (M + 1)`. Scores are
    :math:`\langle e_u, e_i \rangle` of :math:`E = E^{id} + E^{side}`.

    **Item graphs.** :math:`S_m = D^{-1/2} K_m D^{-1/2}`: :math:`K_m` holds the cosine
    similarities of each item's ``knn_k`` most similar items by raw features (itself
    included), :math:`D` its row sums (MMRec's ``build_knn_normalized_graph``, ``sym``). The
    neighbours are selected and cached by the data layer
    (:func:`~mmgraph.data.knn.modality_knn_graphs`); :meth:`dataset_inputs` weights and
    normalises them. The graphs are fixed.

    **Loss** ``loss_bpr + loss_reg + loss_cl`` on a batch of ``B`` triples:

    - ``loss_bpr``: BPR on :math:`\langle e_u, e_i \rangle`;
    - ``loss_reg``: ``reg_weight *`` :math:`(\lVert e_u \rVert^2 + \lVert e_{i^+} \rVert^2 +
      \lVert e_{i^-} \rVert^2) / 2B` summed over the batch (:func:`~mmgraph.nn.embedding_l2`);
    - ``loss_cl``: ``cl_weight *`` (InfoNCE(:math:`E^{side}`, :math:`E^{id}`) over the
      batch's positive items + the same over its users), one direction, cosine, temperature
      ``temperature``, the other rows of the batch as negatives
      (:class:`~mmgraph.nn.ContrastiveHead`); rows repeat as often as the batch repeats them.

    The fuser works row by row, so the loss fuses only the batch's ``3B`` rows (the code
    fuses all ``U + I`` and gathers; same values).

    The learning rate decays as ``0.96 ** ((epoch - 1) / 50)`` (MGCN.yaml's
    ``learning_rate_scheduler``, stepped every epoch by MMRec's trainer).

    Deviations from MMRec's ``src/models/mgcn.py`` (the same as the authors' ``demonph10/MGCN``):

    - Features are frozen (the code trains the raw feature tables, ``freeze=False``; only its
      projections train here). The kNN graphs are built from the raw features in both.
    - Any number ``M >= 1`` of modalities: one purifier gate and one preference gate per
      modality, attention over ``M`` views, :math:`E^{side}` divided by ``M + 1`` (code:
      exactly image + text, divided by 3). With one modality :math:`E^{side} = E^1 / 2` and
      the fuser has no parameters (its attention and gates would get no gradient).
    - ``loss_reg`` divides by the batch's size (code: by the configured ``train_batch_size``,
      larger than a short last batch).
    - The InfoNCE temperature is a hyper-parameter (code: 0.2 hard-coded; its ``tau = 0.5`` is
      unused), computed as a cross-entropy of the logits (code: ``log(exp / sum exp)``, which
      overflows for small temperatures; same value otherwise).
    - kNN graphs: the self-edge is guaranteed (code: top-k of the cosine row, where a
      duplicate item can tie with it); the similarities are computed in row blocks (code: one
      dense ``I x I`` matrix); an all-zero feature row has cosine 0 (code: NaN); the cache is
      keyed by the features and ``k`` (code: ``image_adj_{k}_True.pt`` in the data folder).
    - Not offered: the dense item-graph path (``sparse = False``) and ``lambda_coeff`` (read
      by no code); the ``item_id_dropout`` option either, since every modality view is the ID
      row times a gate: a zeroed ID row leaves an item no content signal.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` frozen item features (at least one).
        item_graphs: one ``[I, I]`` sparse CSR graph :math:`S_m` per modality, in the order of
            ``features``; :meth:`from_dataset` builds them from ``knn_k`` (MGCN: 10).
        embedding_dim: ``d`` (MGCN: 64).
        num_layers: user–item hops :math:`L_{ui}` (``n_ui_layers`` = 2).
        item_graph_layers: item–item hops :math:`L_{mm}` (``n_layers`` = 1).
        reg_weight: L2 weight on the batch's final embeddings (``reg_weight`` = 1e-4).
        cl_weight: weight of the InfoNCE term (MMRec's ``cl_loss``; the authors' config 0.01,
            MMRec's grid {0.001, 0.01, 0.1}).
        temperature: InfoNCE :math:`\tau` (0.2, fixed in the code).
    """

    name = "mgcn"
    #: read by :meth:`dataset_inputs` only: neighbours per item in each modality's kNN graph
    data_hyperparameters: ClassVar[dict[str, Any]] = {"knn_k": 10}
    #: MMRec's MGCN.yaml (``cl_loss``, 3 points) x ``knn_k`` {5, 10}, ours: every model's grid
    #: has at least 4 points, and the kNN graph's k is MGCN's other structural choice
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "cl_weight": (0.001, 0.01, 0.1),
        "knn_k": (5, 10),
    }
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "cl_weight": NON_NEGATIVE,
        "temperature": POSITIVE,
    }
    requires_features = True
    dataset_args = (*Recommender.dataset_args, "item_graphs")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        item_graphs: Sequence[Tensor],
        embedding_dim: int = 64,
        num_layers: int = 2,
        item_graph_layers: int = 1,
        reg_weight: float = 1e-4,
        cl_weight: float = 0.01,
        temperature: float = 0.2,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.modalities = list(features)
        if not self.modalities:
            raise ConfigError("MGCN needs at least one item modality")
        if len(item_graphs) != len(self.modalities):
            raise ConfigError(
                f"MGCN needs one item graph per modality: {len(self.modalities)} modalities, "
                f"{len(item_graphs)} graphs"
            )
        num_modalities = len(self.modalities)
        self.reg_weight = reg_weight
        self.cl_weight = cl_weight
        self.add_id_embeddings(embedding_dim)
        self.projection = ModalityProjection(features, embedding_dim)
        self.purifier = BehaviorGuidedPurifier(num_modalities, embedding_dim)
        self.encoder = LightGCNEncoder(num_layers)
        self.item_propagation = ItemGraphPropagation(item_graph_layers, residual=False)
        self.fuser = BehaviorAwareFuser(num_modalities, embedding_dim)
        self.contrast = ContrastiveHead(temperature, symmetric=False, intra_view_negatives=False)

        adj = user_item_adjacency(train_edge_index, num_users, num_items)
        users = torch.arange(num_users)
        items = torch.arange(num_users, num_users + num_items)
        interactions = csr_submatrix(adj, rows=users, cols=items)  # R-hat [U, I]
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("interactions", interactions, persistent=False)
        self.register_buffer("interactions_t", csr_transpose(interactions), persistent=False)
        for index, graph in enumerate(item_graphs):
            if graph.shape != (num_items, num_items):
                raise ConfigError(
                    f"item graph {index} must be [{num_items}, {num_items}], "
                    f"got {list(graph.shape)}"
                )
            self.register_buffer(f"item_graph_{index}", graph, persistent=False)
            self.register_buffer(f"item_graph_t_{index}", csr_transpose(graph), persistent=False)
        self._optimizer: torch.optim.Optimizer | None = None
        self.reset_parameters()

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Adds each modality's kNN graph: neighbours selected and cached by the data layer,
        weighted by their cosine and normalised by the weighted row sums."""
        inputs = super().dataset_inputs(dataset, hparams)
        neighbours = modality_knn_graphs(dataset, hparams["knn_k"])
        graphs = []
        for modality, feat in inputs["features"].items():
            edge_index, _ = neighbours[modality]
            weight = cosine_edge_weights(feat.float(), edge_index)
            weight = row_sum_normalization(edge_index, weight, dataset.num_items)
            graphs.append(item_graph_csr((edge_index, weight), dataset.num_items)[0])
        return {**inputs, "item_graphs": graphs}

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.projection.reset_parameters()
        self.purifier.reset_parameters()
        self.fuser.reset_parameters()

    # ------------------------------------------------------------------ encoder
    def modality_views(self) -> Tensor:
        """``[U + I, M, d]`` item–item views :math:`E^m` of the purified item embeddings."""
        purified = self.purifier(self.item_embedding.weight, list(self.projection().values()))
        items = [
            self.item_propagation(
                x, getattr(self, f"item_graph_{m}"), getattr(self, f"item_graph_t_{m}")
            )
            for m, x in enumerate(purified)
        ]
        stacked = torch.stack(items, dim=1)  # [I, M, d]
        # one product for all modalities: R-hat @ [E^1_I | ... | E^M_I]
        users = sparse_matmul(self.interactions, stacked.flatten(1), self.interactions_t)
        return torch.cat([users.view(self.num_users, *stacked.shape[1:]), stacked])

    def encode(self) -> tuple[Tensor, Tensor]:
        """Behaviour view :math:`E^{id}` ``[U + I, d]`` and modality views ``[U + I, M, d]``."""
        ids = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        return self.encoder(ids, self.adj), self.modality_views()

    def forward(self) -> Embeddings:
        behavior, views = self.encode()
        final = behavior + self.fuser(views, behavior)
        users, items = final.split([self.num_users, self.num_items])
        return users, items

    # ------------------------------------------------------------------ losses
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        behavior, views = self.encode()
        # The fuser works row by row: only the batch's rows (users, positives, negatives) are
        # fused, the same values as fusing all U + I rows and gathering them.
        rows = torch.cat(
            [batch.users, batch.pos_items + self.num_users, batch.neg_items + self.num_users]
        )
        behavior = behavior.index_select(0, rows)
        side = self.fuser(views.index_select(0, rows), behavior)
        final = behavior + side
        size = batch.users.numel()
        user, pos, neg = final.split(size)
        terms = {
            "loss_bpr": triple_bpr_loss(user, pos, neg),
            "loss_reg": self.reg_weight * embedding_l2(user, pos, neg),
        }
        if not self.cl_weight:
            terms["loss_cl"] = final.new_zeros(())
            return terms
        side_user, side_pos, _ = side.split(size)
        behavior_user, behavior_pos, _ = behavior.split(size)
        contrast = self.contrast(side_pos, behavior_pos) + self.contrast(side_user, behavior_user)
        terms["loss_cl"] = self.cl_weight * contrast
        return terms

    # ------------------------------------------------------------------ training hooks
    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """The default Adam, remembered for the per-epoch learning-rate decay."""
        optimizers = super().configure_optimizers(lr, weight_decay)
        for group in optimizers[0].param_groups:
            group.setdefault("initial_lr", lr)
        self._optimizer = optimizers[0]
        return optimizers

    def on_epoch_start(self, epoch: int) -> None:
        """Set this epoch's learning rate, ``initial_lr * 0.96 ** ((epoch - 1) / 50)``."""
        if self._optimizer is None:
            return
        factor = LR_DECAY ** ((epoch - 1) / LR_DECAY_EPOCHS)
        for group in self._optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
