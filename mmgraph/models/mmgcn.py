"""MMGCN (Wei et al., ACM MM 2019): one graph convolution network per modality, averaged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.graph import bipartite_edge_index
from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import Choice, Flag, Interval, Rule
from mmgraph.nn.losses import gather_triple, triple_bpr_loss
from mmgraph.nn.mmgcn_conv import AGGREGATIONS, MMGCNBranch, mmgcn_adjacency
from mmgraph.nn.sparse import csr_transpose


class MMGCN(Recommender):
    r"""A GCN per modality over the user–item graph; the modality outputs are averaged.

    **Per modality** ``m`` (:class:`~mmgraph.nn.MMGCNBranch`): layer 0 is
    :math:`x^{(0)} = \operatorname{l2norm}([P_m;\, W_m X_m + b_m])` with
    :math:`P_m \in \mathbb R^{U \times d_0}` (:math:`d_0` = ``latent_dim``, 256) the user
    preference of that modality and :math:`X_m` the frozen item features ``[I, d_m]``; then
    ``num_layers`` layers (:class:`~mmgraph.nn.MMGCNConv`), each

    .. math::
        h_v = \sigma\big(\tfrac{1}{|\mathcal N(v)|} \textstyle\sum_{j \in \mathcal N(v)}
              W_1^\top x_j\big), \quad
        \hat x_v = \sigma(W_3 x_v + b_3) + e_v, \quad
        x'_v = \sigma\big(W_2 [h_v \,\|\, \hat x_v] + b_2\big),

    :math:`\sigma` = LeakyReLU(0.01), :math:`\mathcal N(v)` the training neighbours of ``v``
    (users' items, items' users), :math:`e_v` row ``v`` of one ID table
    :math:`E \in \mathbb R^{(U+I) \times d}` shared by all modalities.

    **Representation** ``[U + I, d]``: :math:`\frac 1M \sum_m x_m^{(L)}` (the paper's sum
    over modalities, divided by ``M`` as in MMRec's and the authors' code), split into users
    ``[U, d]`` and items ``[I, d]``; the score is their inner product.

    **Loss** ``loss_bpr + loss_reg``: BPR on the batch triples, and
    ``reg_weight`` :math:`\cdot\big(\operatorname{mean}(e_u^2 + e_{i}^2) + \sum_m
    \operatorname{mean}(P_m^2)\big)`, where the first mean runs over the elements of the
    ``[2B, d]`` rows of MMRec's interleaved batch (each user twice, against its positive and
    its negative item), i.e. :math:`\frac{1}{Bd}\sum_b |e_{u_b}|^2 + \frac{1}{2Bd}\sum_b
    (|e_{i^+_b}|^2 + |e_{i^-_b}|^2)`, and the second over all of :math:`P_m`.

    **Switches** (MMRec's defaults kept): ``concat`` (the combination concatenates
    :math:`h_v` and :math:`\hat x_v`; ``False`` adds them, :math:`\sigma(W_2 h_v + b_2 +
    \hat x_v)`. MMRec sets ``concate = 'False'``, but as a non-empty *string* it is truthy, so
    its code concatenates, as the authors' code does), ``has_id`` (add :math:`e_v`; without
    it there is no ID table and no ID term in ``loss_reg``), ``aggregation`` (``"mean"``, or
    ``"add"`` for the neighbour sum; PyG's ``max``, which the authors' ``aggr_mode`` could
    also name, is not offered) and ``latent_dim`` (``None``: no projection, :math:`x^{(0)}`
    holds the raw features and :math:`P_m` is ``d_m`` wide).

    Deviations from MMRec's MMGCN (``src/models/mmgcn.py``):

    - The ID table :math:`E` and the preferences :math:`P_m` are trained. MMRec (and the
      authors' code) keep them as plain tensors, not parameters, so its optimiser never
      updates them and ``reg_weight`` has no effect on training; ``reference=True`` freezes
      them at their initial values to reproduce that.
    - ``num_layers`` is honoured (default 3, the depth MMRec's code hard-codes; its config's
      ``n_layers: 2`` is never read).
    - Any number of modalities, each treated alike: MMRec projects only the visual features
      (to 256) and feeds text in raw, and regularises only the visual preference; here every
      modality is projected to ``latent_dim`` and every :math:`P_m` is regularised.
    - All three weights of every layer are Xavier-normal (MMRec leaves :math:`W_2` of layers 2
      and 3 at torch's default init).
    - Ranking uses ``forward()`` on the current weights; MMRec ranks with the representation
      cached by the last training batch (computed before that batch's update).
    - BPR is ``-logsigmoid`` (MMRec: ``log(sigmoid)``, equal unless it underflows); features
      are frozen inputs (as in MMRec).

    Training uses the shared default ``lr`` 1e-3 (MMRec's ``overall.yaml``; the authors' code
    uses 1e-4, also in the grid). No ``item_id_dropout`` option: the ID row enters every layer
    of every modality, and neither the paper nor MMRec has a cold-start path for it.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` item features (at least one).
        embedding_dim: ``d`` (MMRec's ``embedding_size`` 64).
        num_layers: GCN layers per modality ``L`` (3).
        latent_dim: width of the feature projection and of :math:`P_m` (256), or ``None``.
        concat: combination by concatenation (``True``) or addition.
        has_id: add the ID embedding in every layer (``True``).
        aggregation: ``"mean"`` (MMRec) or ``"add"``.
        reg_weight: L2 weight (1e-5, the authors' ``weight_decay`` default; MMRec's grid
            {0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1}).
        reference: freeze :math:`E` and :math:`P_m` at initialisation, as MMRec's code does.
    """

    name = "mmgcn"
    #: MMRec's MMGCN.yaml (30 points); its ``learning_rate`` list has the typo ``0.001.0.005``,
    #: read here as 1e-3 and 5e-3.
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "reg_weight": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
        "lr": (1e-4, 5e-4, 1e-3, 5e-3, 1e-2),
    }
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "num_layers": Interval(1, integer=True),
        "latent_dim": Interval(1, integer=True, optional=True),
        "concat": Flag(),
        "has_id": Flag(),
        "aggregation": Choice(AGGREGATIONS),
    }
    requires_features = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 3,
        latent_dim: int | None = 256,
        concat: bool = True,
        has_id: bool = True,
        aggregation: str = "mean",
        reg_weight: float = 1e-5,
        reference: bool = False,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.modalities = list(features)
        self.branches = nn.ModuleList()
        for index, x in enumerate(features.values()):
            self.register_buffer(f"features_{index}", x.float(), persistent=False)
            self.branches.append(
                MMGCNBranch(
                    num_users, x.size(1), embedding_dim, num_layers, latent_dim, concat, aggregation
                )
            )
        num_nodes = num_users + num_items
        if has_id:
            self.id_embedding = nn.Parameter(torch.empty(num_nodes, embedding_dim))
        else:
            self.register_parameter("id_embedding", None)
        self.reg_weight = reg_weight
        self.reference = reference
        edges = bipartite_edge_index(train_edge_index, num_users)
        adj_t = mmgcn_adjacency(edges, num_nodes, aggregation)
        self.register_buffer("adj_t", adj_t, persistent=False)
        self.register_buffer("adj", csr_transpose(adj_t), persistent=False)
        self.reset_parameters()
        for frozen in self.free_embeddings():
            frozen.requires_grad_(not reference)

    def reset_parameters(self) -> None:
        if self.id_embedding is not None:
            nn.init.xavier_normal_(self.id_embedding)
        for branch in self.branches:
            branch.reset_parameters()

    def free_embeddings(self) -> list[nn.Parameter]:
        """The ID table (if any) and the preferences: what ``reference`` freezes."""
        tables = [branch.preference for branch in self.branches]
        return tables if self.id_embedding is None else [self.id_embedding, *tables]

    def features(self, index: int) -> Tensor:
        """``[I, d_m]`` frozen features of the ``index``-th modality."""
        return getattr(self, f"features_{index}")

    def forward(self) -> Embeddings:
        total = sum(
            branch(self.features(index), self.adj_t, self.id_embedding, self.adj)
            for index, branch in enumerate(self.branches)
        )
        users, items = torch.split(total / len(self.branches), [self.num_users, self.num_items])
        return users, items

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        rows = gather_triple(*self(), batch)
        reg = sum(branch.preference.pow(2).mean() for branch in self.branches)
        if self.id_embedding is not None:
            reg = reg + self.id_regularizer(batch)
        return {"loss_bpr": triple_bpr_loss(*rows), "loss_reg": self.reg_weight * reg}

    def id_regularizer(self, batch: Batch) -> Tensor:
        """MMRec's ``mean(e_u^2 + e_i^2)`` over its ``[2B, d]`` interleaved rows, in which each
        user appears twice (once per item of its triple)."""
        table = self.id_embedding
        users = table.index_select(0, batch.users).pow(2).sum()
        nodes = torch.cat([batch.pos_items, batch.neg_items]) + self.num_users
        items = table.index_select(0, nodes).pow(2).sum()
        return (2 * users + items) / (2 * table.size(1) * batch.users.numel())
