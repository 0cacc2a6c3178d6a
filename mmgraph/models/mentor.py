"""MENTOR (Xu et al., AAAI 2025): multilevel self-supervised multimodal recommendation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.knn import fused_knn_graph
from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import NON_NEGATIVE, POSITIVE, Choice, Interval, ListOf, Rule
from mmgraph.nn.alignment import AlignmentHead, gaussian_stats, grouped_gaussian_stats
from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.encoders import (
    ModalityFusion,
    MultiBranchLightGCN,
    UserItemInput,
    stack_user_item_inputs,
)
from mmgraph.nn.functional import bpr_scores
from mmgraph.nn.item_graph import ItemGraphPropagation
from mmgraph.nn.losses import bpr_loss
from mmgraph.nn.masking import FeatureMaskingLoss
from mmgraph.nn.sparse import csr_transpose


class MENTOR(Recommender):
    r"""ID-guided multilevel alignment plus graph- and feature-view enhancement (AAAI 2025).

    **Branches.** Every modality ``m`` has a user–item GCN branch with its own user
    preferences :math:`P_m` and feature MLP (``d_m -> 4d -> d``):
    :math:`x^{(0)} = \operatorname{l2norm}([P_m; \mathrm{MLP}_m(X_m)])`, two LightGCN hops,
    readout :math:`x^{(0)} + h^{(1)} + h^{(2)}`. An ID branch does the same with a learnable
    item table, and two noisy copies of every modality branch (own parameters) add
    :class:`~mmgraph.nn.GraphPerturbation` after each hop. The clean branches are propagated
    together, and so are the noisy ones (:class:`~mmgraph.nn.MultiBranchLightGCN`); each
    training step takes one backward pass per group. Item outputs get one residual hop over
    the fused kNN item graph :math:`S = \sum_m w_m \hat A_m`
    (:func:`~mmgraph.data.knn.fused_knn_graph`): :math:`i \leftarrow i + S i`.

    **Views** (``[U + I, M·d]``): fused :math:`r` (users: :math:`[w_{u,1} v_1 \| \dots \|
    w_{u,M} v_M]` with free user weights :math:`w \in \mathbb R^{U \times M}`, items
    unweighted), ID guide :math:`g = [\mathrm{id} \| \dots \| \mathrm{id}]`, per modality
    :math:`[m \| \dots \| m]`, and the noisy fused views :math:`n_1, n_2`. Scores are
    :math:`\langle r_u, r_i \rangle`.

    **Loss** ``loss_bpr + loss_reg + loss_align + loss_mask_f + loss_mask_g``:

    - ``loss_bpr``: BPR on the fused view;
    - ``loss_reg``: ``reg_weight * (sum_m mean(P_m[u]^2) + mean(w^2))`` over the batch's users;
    - ``loss_align``: ``align_weight *`` :class:`~mmgraph.nn.AlignmentHead` (mean and unbiased
      variance of all entries; levels 1–4);
    - ``loss_mask_f`` (only with ``mask_weight_f > 0``; off by default, see below):
      ``mask_weight_f * (L_f(r_users) + L_f(r_items))``,
      :class:`~mmgraph.nn.FeatureMaskingLoss` with ``Dropout(dropout)`` vs ``Linear(M·d, M·d)``;
    - ``loss_mask_g``: ``mask_weight_g * (InfoNCE(n1_u, n2_u) + InfoNCE(n1_i, n2_i))`` with
      :class:`~mmgraph.nn.ContrastiveHead` (one direction, cosine, ``temperature``) over the
      batch's unique users and positive items. Only their rows (and the items their kNN hop
      reads) go through the noisy branches' last user–item hop, whose noise is drawn for those
      rows: the same loss as from the full tables, at about 6 % less time per TikTok step.

    Deviations from the released code (``Jinfeng-Xu/MENTOR``), one per line; the first three
    are undone by ``reference=True``:

    - With ``mask_weight_f > 0``, ``loss_mask_f`` carries gradient, as the paper describes (code: computed under ``no_grad``, a constant; its MLP never trains). The default ``mask_weight_f = 0`` leaves the term out, which trains as the code does; the paper's ``λ_f = 1.5`` scored lower on valid R@20 (TikTok, seeds 2024–2026: 0.0726 / 0.0804 / 0.0657 against 0.1018 / 0.0913 / 0.1011; MovieLens-small, seed 2024, best of the first 34 epochs: 0.0872 against 0.0991) and stays a switch.
    - ``loss_mask_g`` contrasts the batch's unique users and positive items, ``O(B^2)`` (code: all ``U`` users and ``I`` items).
    - BPR uses the natural log (code: ``log2``, i.e. BPR scaled by ``1/ln 2``).
    - Evaluation recomputes the embeddings in eval mode (code: ranks with those of the last training batch).
    - The noisy branches are skipped when ``mask_weight_g == 0`` and the ID branch when ``align_weight == 0`` (code: computed, multiplied by 0).
    - Any number ``M >= 1`` of modalities: user weights ``[U, M]``, views of width ``M·d`` (code: exactly image + text, ``2d``).
    - kNN graph weights default to 0.1 image / 0.9 text only for an image+text dataset, else uniform ``1/M``.
    - The kNN graph always contains the self-edge (code: top-k of the cosine row, where a duplicate row can tie with it).
    - The kNN cache is keyed by features, ``k``, weights and ``include_self`` (code: ``mm_adj_{k}.pt``, stale when weights change).
    - Noise is drawn on the model's device (code: ``.cuda()`` only).
    - Dead code is not reproduced: user–user graph (and ``user_graph_dict.npy``), edge-dropped graphs, ``weight_i``, ``MLP_user``.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` frozen item features (at least one).
        item_graph: ``[I, I]`` sparse CSR fused kNN item graph :math:`S`; :meth:`from_dataset`
            builds it with :func:`~mmgraph.data.knn.fused_knn_graph` (cached by the data layer)
            from ``knn_k`` and ``item_graph_weights``.
        embedding_dim: ``d`` (MENTOR: 64); the feature MLPs' hidden width is ``4 d``.
        num_layers: user–item hops (MENTOR: 2, hard-coded).
        item_graph_layers: hops over the item graph (MENTOR's ``n_mm_layers``).
        reg_weight: :math:`\lambda_{reg}`.
        align_weight: :math:`\lambda_{align}`.
        align_levels: alignment levels (1 ID–fused, 2 ID–modality, 3 modality–fused,
            4 modality–modality).
        mask_weight_f: :math:`\lambda_f`; 0 (default) leaves the feature-masking term out,
            which is how the released code trains; the paper's 1.5 trains it.
        mask_weight_g: :math:`\lambda_g` (grid {1e-4, 1e-3}; 1e-3 chosen so the graph-view
            term is not negligible next to BPR).
        temperature: InfoNCE :math:`\tau`.
        dropout: feature-masking probability.
        noise_eps: graph-perturbation magnitude.
        max_contrast_nodes: at most this many of the batch's unique users (and as many of its
            positive items) enter ``loss_mask_g``, a uniform sample without replacement drawn
            from torch's global generator; ``None`` (default, MENTOR): all of them. A cap
            bounds the ``O(B^2)`` InfoNCE for the large batches that million-user graphs
            need; it has no effect while the batch has fewer unique nodes (nor with
            ``reference=True``, which contrasts all users and items).
        reference: reproduce the released code's losses (see the deviations above).
    """

    name = "mentor"
    #: read by :meth:`dataset_inputs` only: neighbours per item in the kNN graphs and
    #: modality -> weight of its kNN graph (``None``: see above)
    data_hyperparameters: ClassVar[dict[str, Any]] = {"knn_k": 10, "item_graph_weights": None}
    #: the released MENTOR.yaml (6 points)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "mask_weight_g": (1e-4, 1e-3),
        "temperature": (0.2, 0.4, 0.6),
    }
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-4, "batch_size": 2048}
    requires_features = True
    fused_adam = True
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "align_weight": NON_NEGATIVE,
        "align_levels": ListOf(Choice((1, 2, 3, 4))),
        "mask_weight_f": NON_NEGATIVE,
        "mask_weight_g": NON_NEGATIVE,
        "temperature": POSITIVE,
        "noise_eps": NON_NEGATIVE,
        "max_contrast_nodes": Interval(2, integer=True, optional=True),
    }
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
        reg_weight: float = 1e-3,
        align_weight: float = 0.1,
        align_levels: Sequence[int] = (1, 2, 3, 4),
        mask_weight_f: float = 0.0,
        mask_weight_g: float = 1e-3,
        temperature: float = 0.2,
        dropout: float = 0.5,
        noise_eps: float = 0.1,
        max_contrast_nodes: int | None = None,
        reference: bool = False,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.modalities = list(features)
        if not self.modalities:
            raise ConfigError("MENTOR needs at least one item modality")
        if item_graph.shape != (num_items, num_items):
            raise ConfigError(
                f"item_graph must be [{num_items}, {num_items}], got {list(item_graph.shape)}"
            )
        self.reg_weight = reg_weight
        self.align_weight = align_weight
        self.mask_weight_f = mask_weight_f
        self.mask_weight_g = mask_weight_g
        self.reference = reference
        self.max_contrast_nodes = max_contrast_nodes

        dim, hidden = embedding_dim, 4 * embedding_dim
        num_modalities = len(self.modalities)
        features = list(features.values())
        for index, feat in enumerate(features):
            self.register_buffer(f"features_{index}", feat, persistent=False)
        self.modal_inputs = nn.ModuleList(
            UserItemInput(self.num_users, f.size(1), dim, hidden) for f in features
        )
        # The ID branch feeds only the alignment term, the noisy ones only the InfoNCE term.
        self.id_items = nn.Parameter(torch.empty(self.num_items, dim)) if align_weight else None
        self.id_input = UserItemInput(self.num_users, dim, dim, hidden) if align_weight else None
        self.noisy_inputs = nn.ModuleList(
            UserItemInput(self.num_users, f.size(1), dim, hidden)
            for _ in range(2 if mask_weight_g else 0)
            for f in features
        )

        self.user_item_gcn = MultiBranchLightGCN(num_layers, eps=noise_eps)
        self.item_graph = ItemGraphPropagation(item_graph_layers)
        self.fusion = ModalityFusion(self.num_users, num_modalities)
        self.alignment = AlignmentHead(align_levels)
        self.feature_masking = (
            FeatureMaskingLoss(num_modalities * dim, p=dropout) if mask_weight_f else None
        )
        self.contrast = ContrastiveHead(temperature, symmetric=False, intra_view_negatives=False)

        self.register_adjacency(train_edge_index)
        self.register_buffer("item_knn_graph", item_graph, persistent=False)
        self.register_buffer("item_knn_graph_t", csr_transpose(item_graph), persistent=False)
        self.reset_parameters()

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """As :meth:`torch.nn.Module.load_state_dict`; a checkpoint written before the
        feature-masking head was left out at ``mask_weight_f=0`` holds the unused head's
        weights, which are dropped."""
        if self.feature_masking is None:
            state_dict = {
                key: value
                for key, value in state_dict.items()
                if not key.startswith("feature_masking.")
            }
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Sizes, training graph, features and the fused kNN item graph (built and cached by
        :func:`~mmgraph.data.knn.fused_knn_graph` from ``knn_k`` and ``item_graph_weights``)."""
        graph = fused_knn_graph(dataset, hparams["knn_k"], hparams["item_graph_weights"])
        return {
            **super().dataset_inputs(dataset, hparams),
            "item_graph": graph,
        }

    def reset_parameters(self) -> None:
        if self.id_items is not None:
            nn.init.xavier_normal_(self.id_items)

    # ------------------------------------------------------------------ encoder
    def _features(self) -> list[Tensor]:
        return [getattr(self, f"features_{i}") for i in range(len(self.modalities))]

    def _propagate(
        self,
        stacked: Tensor,
        perturbed: bool = False,
        nodes: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Stacked branch tables ``[U+I, B, d]`` -> user ``[U, B, d]`` and item ``[I, B, d]``.

        With ``nodes`` (sorted user ids ``[U']``, sorted item ids ``[I']``), only those rows:
        ``[U', B, d]`` and ``[I', B, d]``; the last user–item hop is computed for them and the
        items their kNN hop reads, and its noise is drawn for those rows only.
        """
        graphs = (self.item_knn_graph, self.item_knn_graph_t)
        if nodes is None:
            out = self.user_item_gcn(stacked, self.adj, perturbed=perturbed)
            users, items = out.split([self.num_users, self.num_items])
            return users, self.item_graph(items.flatten(1), *graphs).view_as(items)
        users, items = nodes
        item_inputs = self.item_graph.input_rows(self.item_knn_graph, items)
        rows = torch.cat([users, self.num_users + item_inputs])
        out = self.user_item_gcn(stacked, self.adj, perturbed=perturbed, rows=rows)
        user_out, item_out = out.split([users.numel(), item_inputs.numel()])
        item_out = self.item_graph(item_out.flatten(1), *graphs, rows=items)
        return user_out, item_out.view(items.numel(), *user_out.shape[1:])

    def _modality_branches(self) -> tuple[Tensor, Tensor]:
        """Outputs of the modality branches only: users ``[U, M, d]``, items ``[I, M, d]``."""
        return self._propagate(stack_user_item_inputs(self.modal_inputs, self._features()))

    def forward(self) -> Embeddings:
        """Fused view ``(users [U, M·d], items [I, M·d])``; only the modality branches run."""
        return self.fusion(*self._modality_branches())

    @torch.no_grad()
    def modality_item_embeddings(self) -> dict[str, Tensor]:
        """Per modality ``[I, d]`` item outputs of its branch (for plots such as MENTOR's Fig. 3)."""
        _, items = self._modality_branches()
        return dict(zip(self.modalities, items.unbind(1), strict=True))

    # ------------------------------------------------------------------ losses
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        return {**self._graph_view_terms(batch), **self._main_terms(batch)}

    def training_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        """One Adam step on all terms, with one backward pass for the noisy graph views and one
        for the rest: the gradient of their sum, while only one half's activations are held
        (peak memory on large graphs). The noise is drawn before the feature masks, as in
        :meth:`loss`."""
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        logged: dict[str, Tensor] = {}
        for part in (self._graph_view_terms, self._main_terms):
            terms = part(batch)
            if terms:
                sum(terms.values()).backward()
            logged.update({key: value.detach() for key, value in terms.items()})
        optimizer.step()
        return logged

    def _graph_view_terms(self, batch: Batch) -> dict[str, Tensor]:
        """``loss_mask_g`` on the noisy branches (empty when they are off)."""
        if not len(self.noisy_inputs):
            return {}
        features = self._features() * 2  # two noisy copies of every modality branch
        stacked = stack_user_item_inputs(self.noisy_inputs, features)
        # The released code contrasts all users and items; ours the batch's, whose rows are
        # all that is propagated to the end (sorted; InfoNCE does not depend on row order).
        nodes = user_ids = None
        if not self.reference:
            user_ids = _at_most(batch.users.unique(), self.max_contrast_nodes)
            nodes = (user_ids, _at_most(batch.pos_items.unique(), self.max_contrast_nodes))
        users, items = self._propagate(stacked, perturbed=True, nodes=nodes)
        users_1, users_2 = users.chunk(2, dim=1)
        items_1, items_2 = items.chunk(2, dim=1)
        view_1 = self.fusion(users_1, items_1, user_ids)
        view_2 = self.fusion(users_2, items_2, user_ids)
        loss = self.contrast(view_1[0], view_2[0]) + self.contrast(view_1[1], view_2[1])
        return {"loss_mask_g": self.mask_weight_g * loss}

    def _main_terms(self, batch: Batch) -> dict[str, Tensor]:
        """BPR, regularisation, alignment and feature masking on the clean branches."""
        branches, item_inputs = list(self.modal_inputs), self._features()
        if self.id_input is not None:
            branches.append(self.id_input)
            item_inputs.append(self.id_items)
        sizes = [len(self.modalities), len(branches) - len(self.modalities)]
        users, items = self._propagate(stack_user_item_inputs(branches, item_inputs))
        # One split per side (its backward is a concatenation, not a zero-filled scatter per slice).
        user_groups, item_groups = users.split(sizes, dim=1), items.split(sizes, dim=1)
        user_r, item_r = self.fusion(user_groups[0], item_groups[0])

        scores = bpr_scores(user_r, item_r, batch.users, batch.pos_items, batch.neg_items)
        loss_bpr = bpr_loss(*scores)
        preferences = sum(
            branch.preference.index_select(0, batch.users).pow(2).mean()
            for branch in self.modal_inputs
        )
        terms = {
            "loss_bpr": loss_bpr / math.log(2) if self.reference else loss_bpr,
            "loss_reg": self.reg_weight * (preferences + self.fusion.weight.pow(2).mean()),
        }
        if self.id_input is not None:
            terms["loss_align"] = self.align_weight * self._alignment(users, items, user_r, item_r)
        if self.mask_weight_f:
            terms["loss_mask_f"] = self.mask_weight_f * self._feature_masking(user_r, item_r)
        return terms

    def _alignment(self, users: Tensor, items: Tensor, user_r: Tensor, item_r: Tensor) -> Tensor:
        """Alignment of the ``[U+I, M·d]`` views from the clean branches' outputs (users
        ``[U, M+1, d]``, items ``[I, M+1, d]``: the modalities, then ID) and the fused view's
        parts ``[U, M·d]``, ``[I, M·d]``.

        The guide and modality views are one ``[·, d]`` branch repeated ``M`` times side by
        side (MENTOR's ``[id | id]``); their statistics are taken per branch, without building
        them.
        """
        repeats = len(self.modalities)
        means, variances = grouped_gaussian_stats(users, items, repeats=repeats)
        branches = list(zip(means.unbind(), variances.unbind(), strict=True))
        return self.alignment.from_stats(
            branches[repeats], gaussian_stats(user_r, item_r), branches[:repeats]
        )

    def _feature_masking(self, user_r: Tensor, item_r: Tensor) -> Tensor:
        if self.reference:  # the released code evaluates it under no_grad: a logged constant
            with torch.no_grad():
                return self.feature_masking(user_r) + self.feature_masking(item_r)
        return self.feature_masking(user_r) + self.feature_masking(item_r)


def _at_most(nodes: Tensor, limit: int | None) -> Tensor:
    """Sorted ``nodes``, or a sorted uniform sample of ``limit`` of them when there are more."""
    if limit is None or nodes.numel() <= limit:
        return nodes
    return nodes[torch.randperm(nodes.numel(), device=nodes.device)[:limit]].sort().values
