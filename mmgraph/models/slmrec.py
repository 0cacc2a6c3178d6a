"""SLMRec (Tao et al., IEEE TMM 2022): self-supervised learning for multimedia recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import DROP_PROBABILITY, NON_NEGATIVE, POSITIVE, Choice, Rule
from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.encoders import ModalityProjection, MultiBranchLightGCN
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.losses import embedding_l2
from mmgraph.nn.ssl_augment import (
    AugmentedViews,
    FineCoarseContrast,
    draw_dropout_masks,
    draw_masked_branches,
    dropout_propagation,
    mask_item_branches,
)

#: the self-supervised tasks: fine-and-coarse-grained contrast, feature dropout, feature
#: masking, and masking with dropout
SSL_TASKS = ("FAC", "FD", "FM", "FD+FM")
#: the paper's modality hierarchy, finest first (visual, acoustic, textual)
HIERARCHY = ("image", "audio", "text")


def hierarchy_order(modalities: Sequence[str]) -> list[str]:
    """``modalities`` with image, audio and text first, in that order, then the others in
    their given order."""
    rank = {name: index for index, name in enumerate(HIERARCHY)}
    return sorted(modalities, key=lambda m: rank.get(m, len(HIERARCHY)))


class SLMRec(Recommender):
    r"""LightGCN over an ID branch and one branch per modality, fused, plus a self-supervised task.

    **Branches.** ``B = M + 1`` layer-0 tables share the user embeddings :math:`P`
    (``[U, d]``): the ID branch has the item table :math:`Q` (``[I, d]``), modality branch
    :math:`m` the projected L2-normalised features
    :math:`X_m = W_m (x_m / \lVert x_m \rVert) + b_m` (``[I, d]``). Each branch is propagated
    on its own, :math:`E_b = \frac{1}{L+1}\sum_{l=0}^{L} \hat A^l [P; X_b]`, giving
    :math:`(u_b, i_b)`, and the branches are fused:

    .. math::
        u = W_U [u_0 \| \dots \| u_M] + c_U, \qquad i = W_I [i_0 \| \dots \| i_M] + c_I

    (``mm_fusion_mode="mean"``: the mean of the branches instead of the concatenation). Scores
    are :math:`\langle u, i \rangle`.

    **Loss** ``loss_rec + loss_ssl + loss_reg`` over the batch's ``B`` (user, positive) pairs
    :math:`(a_k, p_k)`; the sampler's negatives are not used:

    - ``loss_rec``: in-batch softmax (InfoNCE), as MMRec's and the authors' ``infonce``, not
      BPR: :math:`-\frac1B\sum_k \log \frac{\exp(\cos(u_{a_k}, i_{p_k})/\tau)}
      {\sum_j \exp(\cos(u_{a_k}, i_{p_j})/\tau)}` (:class:`~mmgraph.nn.ContrastiveHead`,
      ``temp``);
    - ``loss_ssl``: ``ssl_alpha *`` the task ``ssl_task``:

      - ``"FAC"`` (:class:`~mmgraph.nn.FineCoarseContrast`): :math:`z_0 = i_{0,p}`,
        :math:`z_k = G_k z_{k-1}`,
        :math:`\sum_{k=1}^M \mathrm{InfoNCE}_{\tau_s}(z_k, H_k i_{k,p})` on raw inner
        products; the first modality meets the ID in the finest space, the last in the
        coarsest (widths ``d, ..., d, d/2``);
      - ``"FD"``: two views of every branch whose hops are dropped out independently,
        :math:`h^{(l+1)} = \mathrm{Dropout}_{\rho}(\hat A h^{(l)})` (layer 0 intact), fused
        as above to :math:`(u^1, i^1)`, :math:`(u^2, i^2)`;
        :math:`\mathrm{InfoNCE}_{\tau_s}(u^1_a, u^2_a) + \mathrm{InfoNCE}_{\tau_s}(i^1_p,
        i^2_p)` with cosine similarities (:class:`~mmgraph.nn.ContrastiveHead`);
      - ``"FM"``: the same contrast of two views, without dropout, where view ``v`` zeroes
        the item rows of branch :math:`k_v` at layer 0, :math:`k_1 \neq k_2` uniform over
        the ``B`` branches (the ID branch included);
      - ``"FD+FM"``: masking and dropout together;
    - ``loss_reg``: ``reg_weight *`` :func:`~mmgraph.nn.embedding_l2` of the batch's layer-0
      rows :math:`P_a, Q_p`, i.e. :math:`\frac{\lambda}{2B}(\lVert P_a\rVert^2 +
      \lVert Q_p\rVert^2)`.

    Both released codes also regularise with Adam's ``weight_decay=1e-4`` on all
    parameters (kept in :attr:`train_defaults`).

    **Defaults** (MMRec's ``SLMRec.yaml`` and the authors' ``conf/SLMRec.properties``):
    ``d=64``, ``L=3``, ``ssl_task="FAC"``, ``temp=0.2``, ``dropout_rate=0.3``, concat
    fusion, weight decay 1e-4; ``ssl_alpha=0.1``, ``ssl_temp=0.2``, ``lr=0.01`` and
    ``reg=1e-4`` from the authors' file (MMRec's yaml only grids them).

    Deviations from MMRec's ``slmrec.py`` (and the authors' code):

    - Every modality of the dataset is a branch (MMRec: image + text, audio switched off;
      the authors: visual, acoustic, textual, or visual alone on Kwai). Branches are
      ordered ID, image, audio, text, then other modalities in dataset order; FAC's
      hierarchy follows this order.
    - FAC's spaces are ``d`` wide except the coarsest, ``d/2`` (the authors' ``d, d, d/2``
      for three modalities, ``d`` for one). MMRec, with image + text, routes the ID chain
      through the audio stage it never contrasts (``d -> d -> d/2``, two stacked linear
      maps) and keeps that stage's unused audio head; here image + text is ``d -> d/2``.
    - ``FD``, ``FM`` and ``FD+FM`` follow the authors' code: MMRec's copies read an audio
      branch that MMRec never builds, so only ``FAC`` runs there.
    - ``reg_weight`` weighs an L2 penalty on the batch's layer-0 rows. MMRec's yaml grids
      ``reg`` and the authors' file sets it to 1e-4, but neither code reads it;
      ``reg_weight=0`` gives their objective exactly.
    - The masked branches are drawn by ``torch.randperm`` (the codes: numpy, by rejection)
      and the dropout masks by :func:`~mmgraph.nn.noise.bernoulli_like`; same distributions.
    - The ranking scores are the raw inner products (MMRec's pass through a sigmoid: the
      same order).
    - ``item_id_dropout``: optional cold-start training (off by default).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` item features (at least one; frozen).
        embedding_dim: ``d`` (``recdim``).
        num_layers: LightGCN hops ``L`` (``layer_num``).
        ssl_task: ``"FAC"``, ``"FD"``, ``"FM"`` or ``"FD+FM"``.
        ssl_alpha: weight of the self-supervised loss (grid {0.01, 0.05, 0.1, 0.5, 1.0}).
        ssl_temp: :math:`\tau_s` (grid {0.1, 0.2, 0.5, 1.0}).
        temp: :math:`\tau` of the recommendation InfoNCE.
        dropout_rate: :math:`\rho`, the feature-dropout probability (``FD``, ``FD+FM``).
        mm_fusion_mode: ``"concat"`` or ``"mean"`` of the branches before the fusion maps.
        reg_weight: :math:`\lambda` (grid {1e-4, 1e-3, 1e-2, 0.1}, MMRec's ``reg``).
        item_id_dropout: cold-start option (:class:`~mmgraph.nn.ItemIDDropout`): the chance
            that an item's ID row is zeroed in a training step; items without training
            interactions are then ranked with a zero ID row. 0 (default) turns it off.
    """

    name = "slmrec"
    #: MMRec's SLMRec.yaml (``hyper_parameters``: learning_rate, ssl_temp, ssl_alpha, reg;
    #: 320 points)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "lr": (1e-4, 1e-3, 1e-2, 1e-1),
        "ssl_temp": (0.1, 0.2, 0.5, 1.0),
        "ssl_alpha": (0.01, 0.05, 0.1, 0.5, 1.0),
        "reg_weight": (1e-4, 1e-3, 1e-2, 1e-1),
    }
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-2, "weight_decay": 1e-4}
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "ssl_task": Choice(SSL_TASKS),
        "ssl_alpha": NON_NEGATIVE,
        "ssl_temp": POSITIVE,
        "temp": POSITIVE,
        "dropout_rate": DROP_PROBABILITY,
        "mm_fusion_mode": Choice(("concat", "mean")),
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
        ssl_task: str = "FAC",
        ssl_alpha: float = 0.1,
        ssl_temp: float = 0.2,
        temp: float = 0.2,
        dropout_rate: float = 0.3,
        mm_fusion_mode: str = "concat",
        reg_weight: float = 1e-4,
        item_id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        if ssl_task not in SSL_TASKS:
            raise ConfigError(f"ssl_task must be one of {SSL_TASKS}, got {ssl_task!r}")
        if mm_fusion_mode not in ("concat", "mean"):
            raise ConfigError(f"mm_fusion_mode must be concat or mean, got {mm_fusion_mode!r}")
        self.modalities = hierarchy_order(list(features))
        normalized = {m: F.normalize(features[m].float(), dim=1) for m in self.modalities}
        self.num_branches = len(self.modalities) + 1
        self.dim = embedding_dim
        self.num_layers = num_layers
        self.ssl_task = ssl_task
        self.ssl_alpha = ssl_alpha
        self.dropout_rate = dropout_rate
        self.mm_fusion_mode = mm_fusion_mode
        self.reg_weight = reg_weight

        self.add_id_embeddings(embedding_dim)
        self.id_dropout = ItemIDDropout(item_id_dropout, train_edge_index[1], num_items)
        self.content = ModalityProjection(normalized, embedding_dim, init="xavier_uniform")
        self.gcn = MultiBranchLightGCN(num_layers)
        fused = embedding_dim * (self.num_branches if mm_fusion_mode == "concat" else 1)
        self.user_fusion = nn.Linear(fused, embedding_dim)
        self.item_fusion = nn.Linear(fused, embedding_dim)
        self.rec_contrast = ContrastiveHead(temp)
        self.view_contrast = ContrastiveHead(ssl_temp)
        self.fac = (
            FineCoarseContrast(embedding_dim, len(self.modalities), ssl_temp)
            if ssl_task == "FAC"
            else None
        )
        self.register_adjacency(train_edge_index)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.content.reset_parameters()
        for linear in (self.user_fusion, self.item_fusion):
            linear.reset_parameters()
            nn.init.xavier_uniform_(linear.weight)
        if self.fac is not None:
            self.fac.reset_parameters()

    # ------------------------------------------------------------------ encoder
    def branch_stack(self) -> Tensor:
        """Layer-0 tables of the branches (ID first, then the modalities in hierarchy order):
        ``[U + I, B, d]``, users first, the same user rows in every branch."""
        projected = self.content()
        items = [self.id_dropout(self.item_embedding.weight)]
        items += [projected[m] for m in self.modalities]
        users = self.user_embedding.weight.unsqueeze(1).expand(-1, self.num_branches, -1)
        return torch.cat([users, torch.stack(items, dim=1)])

    def propagate(self, stack: Tensor) -> tuple[Tensor, Tensor]:
        """Layer mean of every branch: ``[U + I, B, d]`` -> ``([U, B, d], [I, B, d])``."""
        out = self.gcn(stack, self.adj) / (self.num_layers + 1)
        users, items = out.split([self.num_users, self.num_items])
        return users, items

    def fuse(self, user_branches: Tensor, item_branches: Tensor) -> Embeddings:
        """``([N_u, B, d], [N_i, B, d])`` -> fused ``([N_u, d], [N_i, d])``."""
        if self.mm_fusion_mode == "concat":
            users, items = user_branches.flatten(1), item_branches.flatten(1)
        else:
            users, items = user_branches.mean(1), item_branches.mean(1)
        return self.user_fusion(users), self.item_fusion(items)

    def forward(self) -> Embeddings:
        return self.fuse(*self.propagate(self.branch_stack()))

    # ------------------------------------------------------------------ loss
    def draw_views(self) -> AugmentedViews | None:
        """The random draws of the ``FD`` / ``FM`` views (torch's global generator);
        ``None`` for ``FAC``, which augments nothing."""
        if self.ssl_task == "FAC":
            return None
        device = self.user_embedding.weight.device
        masked = None
        if "FM" in self.ssl_task:
            masked = draw_masked_branches(self.num_branches, 2, device)
        rate = self.dropout_rate if "FD" in self.ssl_task else 0.0
        nodes = self.num_users + self.num_items
        masks = draw_dropout_masks(
            nodes, 2, self.num_branches, self.dim, self.num_layers, rate, device
        )
        return AugmentedViews(masked, masks, rate)

    def loss(self, batch: Batch, views: AugmentedViews | None = None) -> dict[str, Tensor]:
        """Named terms; ``views`` replays given augmentation draws (default: fresh ones from
        :meth:`draw_views`, drawn before anything else)."""
        if views is None:
            views = self.draw_views()
        stack = self.branch_stack()
        user_branches, item_branches = self.propagate(stack)
        user_rows = user_branches.index_select(0, batch.users)
        item_rows = item_branches.index_select(0, batch.pos_items)
        loss_rec = self.rec_contrast(*self.fuse(user_rows, item_rows))
        if self.fac is not None:
            loss_ssl = self.fac(item_rows[:, 0], item_rows[:, 1:].unbind(1))
        else:
            if views is None:
                raise ValueError(f"ssl_task {self.ssl_task!r} needs augmented views")
            loss_ssl = self.view_loss(stack, batch, views)
        ego = (
            self.user_embedding.weight.index_select(0, batch.users),
            self.item_embedding.weight.index_select(0, batch.pos_items),
        )
        return {
            "loss_rec": loss_rec,
            "loss_ssl": self.ssl_alpha * loss_ssl,
            "loss_reg": self.reg_weight * embedding_l2(*ego),
        }

    def view_loss(self, stack: Tensor, batch: Batch, views: AugmentedViews) -> Tensor:
        """``FD`` / ``FM``: InfoNCE between two augmented views of the batch's users and of its
        positive items."""
        masked = mask_item_branches(stack, views.masked_branches, self.num_users)
        out = dropout_propagation(
            masked, self.adj, self.num_layers, views.keep_masks, views.dropout
        )
        users, items = out.split([self.num_users, self.num_items])
        users = users.index_select(0, batch.users)  # [B, 2, branches, d]
        items = items.index_select(0, batch.pos_items)
        first_users, first_items = self.fuse(users[:, 0], items[:, 0])
        second_users, second_items = self.fuse(users[:, 1], items[:, 1])
        return self.view_contrast(first_users, second_users) + self.view_contrast(
            first_items, second_items
        )
