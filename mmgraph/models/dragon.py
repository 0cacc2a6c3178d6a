"""DRAGON (Zhou et al., ECAI 2023): dyadic user–item relations enhanced with homogeneous graphs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.knn import fused_knn_graph
from mmgraph.errors import ConfigError
from mmgraph.models.base import Embeddings
from mmgraph.models.dualgnn import DualGNN
from mmgraph.nn.item_graph import ItemGraphPropagation
from mmgraph.nn.sparse import csr_transpose


class DRAGON(DualGNN):
    r"""Modality GCNs on the user–item graph, then a user–user and an item–item graph on top.

    DualGNN's branches, user graph and loss (a subclass), its users concatenated instead of
    summed, plus a frozen kNN item graph.

    **Heterogeneous graph** (one branch per modality ``m``): user preferences
    :math:`P_m \in \mathbb R^{U \times d}` and a feature MLP (``d_m -> 4d -> d``, LeakyReLU)
    give :math:`x_m^{(0)} = \operatorname{l2norm}([P_m; \mathrm{MLP}_m(X_m)])`, propagated
    over :math:`\hat A = D^{-1/2} A D^{-1/2}` of the training graph with the layer-sum readout
    :math:`\hat x_m = \sum_{l=0}^{L} \hat A^l x_m^{(0)}` (``[U + I, d]``;
    :class:`~mmgraph.nn.UserItemInput`, :class:`~mmgraph.nn.MultiBranchLightGCN`).

    **Concatenation** (MMRec's ``construction = 'cat'``; :class:`~mmgraph.nn.ModalityFusion`):
    items :math:`h_i = [\hat x_{1,i} \| \dots \| \hat x_{M,i}]`, users
    :math:`h_u = [w_{u,1} \hat x_{1,u} \| \dots \| w_{u,M} \hat x_{M,u}]` (``[·, M·d]``) with
    free per-user modality weights :math:`w \in \mathbb R^{U \times M}`, a row softmax of a
    Xavier-normal draw at the start. With one modality there are no weights:
    :math:`h_u = \hat x_{1,u}`.

    **Item–item semantic graph** (frozen): :math:`S = \sum_m \alpha_m \hat S_m`, the cosine
    kNN graphs of the raw features with MENTOR's normalisation, fused with
    ``item_graph_weights`` (:func:`~mmgraph.data.knn.fused_knn_graph`, built and cached by the
    data layer from ``knn_k``; MMRec's ``mm_image_weight = 0.1`` for image + text, uniform
    otherwise). Final items :math:`i = h_i + S^{L_{mm}} h_i`
    (:class:`~mmgraph.nn.ItemGraphPropagation`).

    **User–user co-occurrence graph**
    (:func:`~mmgraph.data.cooccurrence.user_cooccurrence_graph`, from ``user_graph_k``):
    :math:`N(u)` are the at most ``k`` users sharing the most training items with ``u``
    (counts :math:`c_{uv}`, ties to the smaller user id),
    :math:`s_{uv} = \operatorname{softmax}_{v \in N(u)} c_{uv}` (``"mean"``:
    :math:`1/|N(u)|`), and final users :math:`u = h_u + \sum_{v \in N(u)} s_{uv} h_v`
    (:class:`~mmgraph.nn.UserGraphAggregation`; a user without co-occurring users keeps
    :math:`h_u`). Scores are :math:`\langle u, i \rangle`.

    **Loss** ``loss_bpr + loss_reg``: BPR on the scores and
    ``reg_weight * (sum_m mean(P_m[users]^2) + mean(w^2))`` (the batch's users; ``mean``
    over all entries; no ``w`` term with one modality).

    Tensor shapes: ``forward() -> (users [U, M·d], items [I, M·d])``.

    Defaults: :math:`d = 64` (``embedding_size``, ``feat_embed_dim``), two user–item hops,
    :math:`L_{mm} = 1` (``n_mm_layers``), ``knn_k = 10``, ``mm_image_weight = 0.1``
    (MMRec's ``DRAGON.yaml``); ``user_graph_k = 40`` and softmax user weights (hard-coded in
    MMRec's ``dragon.py``); ``reg_weight = 1e-3`` and learning rate ``1e-4`` (the authors'
    README, Baby and Sports; both in MMRec's grid). ``search_grid``: MMRec's ``DRAGON.yaml``
    (its ``aggr_mode`` takes only ``add``, which is :math:`\hat A`).

    Deviations from MMRec's ``src/models/dragon.py``, one per line:

    - A user with ``0 < n < k`` co-occurring users aggregates over those ``n`` (MMRec: pads the list to ``k`` with random repeats, re-drawn every epoch, which re-weights the softmax at random); the graph is fixed, ties are broken by user id (MMRec: ``torch.topk`` order), and it is not cut at 200 neighbours first (the same for ``k <= 200``).
    - BPR uses the natural log (MMRec: ``log2``, i.e. BPR scaled by ``1/ln 2``).
    - Evaluation recomputes the embeddings in eval mode (MMRec: ranks with those of the last training batch).
    - Any number ``M >= 1`` of modalities (MMRec: image and/or text); with one modality there are no user weights (MMRec keeps ``weight_u``, unused in the scores, and only its L2 term).
    - kNN graph weights default to 0.1 image / 0.9 text only for an image+text dataset, else uniform ``1/M``; the kNN graph always contains the self-edge (MMRec: top-k of the cosine row, where a duplicate row can tie with it) and is cached by features, ``k`` and weights (MMRec: ``mm_adj_{k}.pt``).
    - ``item_graph_layers = 0`` leaves the items as they are (MMRec: adds them to themselves, doubling them).
    - Dead code is not reproduced: the item-dropped graphs (built, never used by the GCN), the trainable feature tables ``image_embedding``/``text_embedding`` (read once, untrained, to build the kNN graph) and the projections ``image_trs``/``text_trs``, ``weight_i``, ``MLP_user``, ``MLP_v``, ``MLP_t``, the other ``construction`` modes, and ``n_layers`` (the GCN hard-codes two hops: ``num_layers`` here).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` frozen item features (at least one).
        user_graph: ``[U, U]`` sparse CSR co-occurrence counts; :meth:`from_dataset` builds it
            with :func:`~mmgraph.data.cooccurrence.user_cooccurrence_graph` from
            ``user_graph_k``.
        item_graph: ``[I, I]`` sparse CSR fused kNN item graph :math:`S`; :meth:`from_dataset`
            builds it with :func:`~mmgraph.data.knn.fused_knn_graph` from ``knn_k`` and
            ``item_graph_weights``.
        embedding_dim: ``d`` (64); the feature MLPs' hidden width is ``4 d``.
        num_layers: user–item hops ``L`` (2).
        item_graph_layers: item–item hops :math:`L_{mm}` (1).
        reg_weight: :math:`\lambda` (1e-3; MMRec grid {0.1, 0.01, 1e-3, 1e-4, 1e-5}).
        user_aggregation: ``"softmax"`` (default) or ``"mean"`` weights on the user graph.
    """

    name = "dragon"
    #: read by :meth:`dataset_inputs` only: co-occurring users kept per user (MMRec: 40),
    #: neighbours per item in the kNN graphs (10) and modality -> weight of its kNN graph
    #: (``None``: see above)
    data_hyperparameters: ClassVar[dict[str, Any]] = {
        "user_graph_k": 40,
        "knn_k": 10,
        "item_graph_weights": None,
    }
    #: MMRec's DRAGON.yaml: DualGNN's 25 points (its ``aggr_mode`` takes only ``add``)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = DualGNN.search_grid
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-4}
    dataset_args = (*DualGNN.dataset_args, "item_graph")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        user_graph: Tensor,
        item_graph: Tensor,
        embedding_dim: int = 64,
        num_layers: int = 2,
        item_graph_layers: int = 1,
        reg_weight: float = 1e-3,
        user_aggregation: str = "softmax",
    ) -> None:
        super().__init__(
            num_users,
            num_items,
            train_edge_index,
            features,
            user_graph,
            embedding_dim=embedding_dim,
            num_layers=num_layers,
            reg_weight=reg_weight,
            user_aggregation=user_aggregation,
        )
        if tuple(item_graph.shape) != (num_items, num_items):
            raise ConfigError(
                f"item_graph must be [{num_items}, {num_items}], got {list(item_graph.shape)}"
            )
        self.item_propagation = ItemGraphPropagation(item_graph_layers, residual=True)
        self.register_buffer("item_graph", item_graph, persistent=False)
        self.register_buffer("item_graph_t", csr_transpose(item_graph), persistent=False)

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        """DualGNN's inputs and the fused kNN item graph (built and cached by the data
        layer)."""
        return {
            **super().dataset_inputs(dataset, hparams),
            "item_graph": fused_knn_graph(dataset, hparams["knn_k"], hparams["item_graph_weights"]),
        }

    def concatenate(self, users: Tensor, items: Tensor) -> Embeddings:
        r"""``(h_u [U, M·d], h_i [I, M·d])``: the weighted user views and the item views side
        by side."""
        if self.fusion is None:
            return users[:, 0], items[:, 0]
        return self.fusion(users, items)

    def forward(self) -> Embeddings:
        users, items = self.concatenate(*self.modality_outputs())
        items = self.item_propagation(items, self.item_graph, self.item_graph_t)
        return self.user_graph(users), items
