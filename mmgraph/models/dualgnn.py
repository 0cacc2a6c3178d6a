"""DualGNN (Wang et al., IEEE TMM 2021): modality GCNs, fused user preferences, a user graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from mmgraph.data.cooccurrence import user_cooccurrence_graph
from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import Choice, Interval, Rule
from mmgraph.nn.encoders import (
    ModalityFusion,
    MultiBranchLightGCN,
    UserItemInput,
    stack_user_item_inputs,
)
from mmgraph.nn.functional import bpr_scores
from mmgraph.nn.losses import bpr_loss
from mmgraph.nn.user_graph import USER_AGGREGATIONS, UserGraphAggregation


class DualGNN(Recommender):
    r"""Single-modality GCNs on the user–item graph, fused user preferences, a user graph.

    **Single-modality representations.** Every modality ``m`` has its own user preferences
    :math:`P_m \in \mathbb R^{U \times d}` and feature MLP (``d_m -> 4d -> d``, LeakyReLU):
    :math:`x_m^{(0)} = \operatorname{l2norm}([P_m; \mathrm{MLP}_m(X_m)])`, propagated over
    :math:`\hat A = D^{-1/2} A D^{-1/2}` of the training graph (no self-loops) with the
    layer-sum readout :math:`\hat x_m = \sum_{l=0}^{L} \hat A^l x_m^{(0)}` (``[U + I, d]``;
    :class:`~mmgraph.nn.UserItemInput`, :class:`~mmgraph.nn.MultiBranchLightGCN`).

    **Fusion** (``weighted_sum``, the default of DualGNN and MMRec's only mode): items
    :math:`i = \sum_m \hat x_{m,i}`; users :math:`\bar u = \sum_m w_{u,m} \hat x_{m,u}` with
    free per-user weights :math:`w \in \mathbb R^{U \times M}`, a row softmax of a
    Xavier-normal draw at the start (:class:`~mmgraph.nn.ModalityFusion`'s parameter, its
    weighted views summed rather than concatenated). With one modality :math:`\bar u =
    \hat x_{1,u}` and there are no weights. The authors' code also offers ``mean``
    (:math:`\frac1M \sum_m \hat x_{m,u}`, no weights), ``max`` (element-wise maximum over
    :math:`m` of :math:`w_{u,m} \hat x_{m,u}`) and ``cat_mlp`` (the weighted views
    concatenated and mapped ``M·d -> d`` by a linear layer whose weight is L2-regularised);
    they are not offered here.

    **User co-occurrence graph** (:func:`~mmgraph.data.cooccurrence.user_cooccurrence_graph`,
    built and cached by the data layer from ``user_graph_k``): :math:`N(u)` are the at most
    ``k`` users sharing the most training items with ``u`` (counts :math:`c_{uv}`, ties to the
    smaller user id). With :math:`s_{uv} = \operatorname{softmax}_{v \in N(u)} c_{uv}`
    (``user_aggregation="mean"``: :math:`1/|N(u)|`), :class:`~mmgraph.nn.UserGraphAggregation`
    gives the final users :math:`u = \bar u_u + \sum_{v \in N(u)} s_{uv} \bar u_v` (a user
    without co-occurring users keeps :math:`\bar u_u`). Scores are :math:`\langle u, i \rangle`.

    **Loss** ``loss_bpr + loss_reg``: BPR on the scores and
    ``reg_weight * (sum_m mean(P_m[users]^2) + mean(w^2))`` (the batch's users; ``mean`` over
    all entries; no ``w`` term with one modality).

    Tensor shapes: ``forward() -> (users [U, d], items [I, d])``.

    Defaults: :math:`d = 64`, two user–item hops, ``k = 40``, softmax user weights (MMRec's
    ``DualGNN.py``, hard-coded there); ``reg_weight = 0.1`` (the authors' default
    ``weight_decay``, in MMRec's grid); learning rate from the trainer (MMRec's 1e-3; the
    authors' 1e-4). ``search_grid``: MMRec's ``DualGNN.yaml``.

    Deviations from MMRec's ``src/models/dualgnn.py``, one per line:

    - Users fuse as :math:`\sum_m w_{u,m} \hat x_{m,u}`, the paper's and the authors' formula (MMRec: an in-place ``+=`` on the visual output aliases it to the item sum, so its users are :math:`w_{u,1}(\hat x_v + \hat x_t) + w_{u,2} \hat x_t`).
    - A user with ``0 < n < k`` co-occurring users aggregates over those ``n`` (MMRec: pads the list to ``k`` with random repeats, re-drawn every epoch, which re-weights the softmax at random); the graph is fixed, ties are broken by user id (MMRec: ``torch.topk`` order), and it is not cut at 200 neighbours first (MMRec's preprocessing: the same for ``k <= 200``).
    - BPR uses the natural log (MMRec: ``log2``, i.e. BPR scaled by ``1/ln 2``).
    - Evaluation recomputes the embeddings in eval mode (MMRec: ranks with those of the last training batch).
    - Any number ``M >= 1`` of modalities (MMRec: image and/or text).
    - Dead code is not reproduced: ``weight_i`` (no effect on the scores; MMRec adds only its L2 term to the loss), the item-dropped graphs (built, never used by the GCN), ``MLP_user``, ``MLP_v``, ``MLP_t``, the ``aggr_mode`` choice (only ``add`` is in the grid; it is :math:`\hat A`) and the unused ``n_layers`` (the code hard-codes two hops: ``num_layers`` here).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` frozen item features (at least one).
        user_graph: ``[U, U]`` sparse CSR co-occurrence counts; :meth:`from_dataset` builds it
            with :func:`~mmgraph.data.cooccurrence.user_cooccurrence_graph` from
            ``user_graph_k``.
        embedding_dim: ``d`` (64); the feature MLPs' hidden width is ``4 d``.
        num_layers: user–item hops ``L`` (2).
        reg_weight: :math:`\lambda` (0.1; MMRec grid {0.1, 0.01, 1e-3, 1e-4, 1e-5}).
        user_aggregation: ``"softmax"`` (default) or ``"mean"`` weights on the user graph.
    """

    name = "dualgnn"
    #: read by :meth:`dataset_inputs` only: co-occurring users kept per user (MMRec: 40)
    data_hyperparameters: ClassVar[dict[str, Any]] = {"user_graph_k": 40}
    #: MMRec's DualGNN.yaml (25 points; its ``aggr_mode`` takes only ``add``)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "lr": (0.1, 0.01, 1e-3, 1e-4, 1e-5),
        "reg_weight": (0.1, 0.01, 1e-3, 1e-4, 1e-5),
    }
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "user_graph_k": Interval(1, integer=True),
        "user_aggregation": Choice(USER_AGGREGATIONS),
    }
    requires_features = True
    fused_adam = True
    dataset_args = (*Recommender.dataset_args, "user_graph")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        user_graph: Tensor,
        embedding_dim: int = 64,
        num_layers: int = 2,
        reg_weight: float = 0.1,
        user_aggregation: str = "softmax",
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.modalities = list(features)
        if not self.modalities:
            raise ConfigError(f"{type(self).__name__} needs at least one item modality")
        if tuple(user_graph.shape) != (num_users, num_users):
            raise ConfigError(
                f"user_graph must be [{num_users}, {num_users}], got {list(user_graph.shape)}"
            )
        self.reg_weight = reg_weight
        dim = embedding_dim
        for index, feat in enumerate(features.values()):
            self.register_buffer(f"features_{index}", feat.float(), persistent=False)
        self.modal_inputs = nn.ModuleList(
            UserItemInput(num_users, feat.size(1), dim, 4 * dim) for feat in features.values()
        )
        self.user_item_gcn = MultiBranchLightGCN(num_layers)
        num_modalities = len(self.modalities)
        self.fusion = ModalityFusion(num_users, num_modalities) if num_modalities > 1 else None
        self.user_graph = UserGraphAggregation(user_graph, user_aggregation)
        self.register_adjacency(train_edge_index)

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Adds the user co-occurrence graph (built and cached by the data layer)."""
        graph = user_cooccurrence_graph(dataset, hparams["user_graph_k"])
        return {**super().dataset_inputs(dataset, hparams), "user_graph": graph}

    def _features(self) -> list[Tensor]:
        return [getattr(self, f"features_{i}") for i in range(len(self.modalities))]

    def modality_outputs(self) -> tuple[Tensor, Tensor]:
        r"""The single-modality GCN outputs :math:`\hat x_m`: users ``[U, M, d]``, items
        ``[I, M, d]``."""
        stacked = stack_user_item_inputs(self.modal_inputs, self._features())
        out = self.user_item_gcn(stacked, self.adj)
        users, items = out.split([self.num_users, self.num_items])
        return users, items

    def fuse_users(self, users: Tensor, items: Tensor) -> Tensor:
        r"""``[U, d]`` fused preferences :math:`\bar u` from ``[U, M, d]`` modality outputs."""
        if self.fusion is None:
            return users[:, 0]
        weighted, _ = self.fusion(users, items)  # [U, M·d]: the weighted views side by side
        return weighted.view_as(users).sum(1)

    def forward(self) -> Embeddings:
        users, items = self.modality_outputs()
        return self.user_graph(self.fuse_users(users, items)), items.sum(1)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        user_emb, item_emb = self()
        scores = bpr_scores(user_emb, item_emb, batch.users, batch.pos_items, batch.neg_items)
        reg = sum(
            branch.preference.index_select(0, batch.users).pow(2).mean()
            for branch in self.modal_inputs
        )
        if self.fusion is not None:
            reg = reg + self.fusion.weight.pow(2).mean()
        return {"loss_bpr": bpr_loss(*scores), "loss_reg": self.reg_weight * reg}
