"""Hypergraphs with learnable hyperedges over users and items (LGMRec's global view).

Each modality ``m`` has ``A`` hyperedges. An item's soft membership in them is read from its
frozen features by a learned map, a user's from the items it interacted with; embeddings then
flow item -> hyperedge -> item / user. The pieces:

- :class:`LearnableHypergraph`: the memberships and the message passing, for any number of
  modalities; its random parts (Gumbel noise, dropout of memberships) are drawn separately
  (:meth:`LearnableHypergraph.draw`) and passed in, so a caller can fix them.
- :func:`interaction_matrix`: the binary ``[U, I]`` matrix the user memberships are summed with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_torch_csr_tensor

from mmgraph.kernels import sparse_matmul
from mmgraph.nn.noise import bernoulli_like, uniform_like


def interaction_matrix(train_edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    """The binary interaction matrix :math:`R` as a ``[U, I]`` sparse CSR tensor of ones.

    Args:
        train_edge_index: ``[2, E]`` distinct (user, item) training pairs.
        num_users: ``U``.
        num_items: ``I``.
    """
    return to_torch_csr_tensor(train_edge_index.long(), size=(num_users, num_items))


class MembershipNoise(NamedTuple):
    """The random draws of one modality's memberships for one training pass.

    Attributes:
        item_gumbel: ``[I, A]`` standard Gumbel noise added to the item logits, or ``None``.
        user_gumbel: ``[U, A]`` the same for the user logits, or ``None``.
        item_keep: ``[I, A]`` bool dropout mask of the item memberships (kept entries are
            scaled by ``1 / keep_rate``), or ``None`` for no dropout.
        user_keep: ``[U, A]`` the same for the users.
    """

    item_gumbel: Tensor | None
    user_gumbel: Tensor | None
    item_keep: Tensor | None
    user_keep: Tensor | None


def standard_gumbel_like(x: Tensor) -> Tensor:
    """Independent standard Gumbel draws :math:`-\\log(-\\log u)`, :math:`u \\sim U[0, 1)`,
    shaped like ``x`` (seeded by torch's default generator; :func:`~mmgraph.nn.noise.uniform_like`).

    ``u = 0`` gives :math:`-\\infty` (a zero softmax weight), never :math:`+\\infty`.
    """
    return -torch.log(-torch.log(uniform_like(x)))


class LearnableHypergraph(nn.Module):
    r"""Per-modality hypergraphs with ``A`` learnable hyperedges, and propagation over them.

    **Memberships.** For modality :math:`m` with frozen item features
    :math:`X_m \in \mathbb R^{I \times d_m}` and a learned :math:`V_m \in \mathbb R^{d_m
    \times A}` (Xavier-uniform), the logits are

    .. math::
        L^m_I = X_m V_m \in \mathbb R^{I \times A}, \qquad
        L^m_U = R\, L^m_I \in \mathbb R^{U \times A}

    with :math:`R` the binary interaction matrix (a user's logits are the *sum* of its items').
    Each row becomes a distribution over the hyperedges by a Gumbel-softmax with temperature
    :math:`\tau`, :math:`H = \operatorname{softmax}_\text{row}((L + g)/\tau)`, and is then
    dropped out, :math:`H \odot M / k` with :math:`M \sim \mathrm{Bernoulli}(k)` entrywise
    (``keep_rate`` :math:`k`). Without draws (``noise=None``: ranking) the memberships are
    :math:`\operatorname{softmax}(L/\tau)` with no dropout.

    **Message passing** (``num_layers`` :math:`L_h \geq 1` hops), from item embeddings
    :math:`E^{(0)}` (``[I, d]``):

    .. math::
        Z^{(l)} = {H^m_I}^{\top} E^{(l-1)} \in \mathbb R^{A \times d}, \quad
        E^{(l)} = H^m_I Z^{(l)}, \quad
        U^{m} = H^m_U Z^{(L_h)}, \quad I^{m} = E^{(L_h)}

    Args:
        feature_dims: ``d_m`` of each modality, in the order the features are passed.
        num_hyperedges: ``A``.
        num_layers: hops :math:`L_h \geq 1`.
        temperature: :math:`\tau` of the Gumbel-softmax.
        keep_rate: :math:`k \in (0, 1]`, the chance that a membership entry survives dropout
            (1: no dropout).
        gumbel_noise: add Gumbel noise to the logits in training (``False``: the plain
            tempered softmax).

    Shapes:
        ``forward(item_emb [I, d], features [[I, d_m]] * M, R [U, I], R^T [I, U], noise)``
        -> ``[(users [U, d], items [I, d])] * M``.
    """

    def __init__(
        self,
        feature_dims: Sequence[int],
        num_hyperedges: int = 4,
        num_layers: int = 1,
        temperature: float = 0.2,
        keep_rate: float = 0.5,
        gumbel_noise: bool = True,
    ) -> None:
        super().__init__()
        if num_hyperedges < 1 or num_layers < 1:
            raise ValueError("a hypergraph needs at least one hyperedge and one layer")
        if temperature <= 0 or not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"bad temperature {temperature} or keep_rate {keep_rate}")
        self.num_hyperedges = num_hyperedges
        self.num_layers = num_layers
        self.temperature = temperature
        self.keep_rate = keep_rate
        self.gumbel_noise = gumbel_noise
        self.hyperedges = nn.ModuleList(
            nn.Linear(dim, num_hyperedges, bias=False) for dim in feature_dims
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in self.hyperedges:
            nn.init.xavier_uniform_(linear.weight)

    def logits(
        self, features: Sequence[Tensor], interactions: Tensor, interactions_t: Tensor
    ) -> list[tuple[Tensor, Tensor]]:
        """Per modality ``(user logits [U, A], item logits [I, A])``, before the softmax."""
        out = []
        for x, linear in zip(features, self.hyperedges, strict=True):
            items = linear(x)
            out.append((sparse_matmul(interactions, items, interactions_t), items))
        return out

    def draw(self, num_users: int, num_items: int, device=None) -> list[MembershipNoise]:
        """One training pass's draws for every modality (torch's default generator).

        Entries the settings switch off (``gumbel_noise=False``, ``keep_rate=1``) are ``None``.
        """
        shapes = [
            torch.empty(n, self.num_hyperedges, device=device) for n in (num_items, num_users)
        ]
        draws = []
        for _ in self.hyperedges:
            gumbel = [standard_gumbel_like(s) if self.gumbel_noise else None for s in shapes]
            keep = [
                bernoulli_like(s, self.keep_rate) if self.keep_rate < 1 else None for s in shapes
            ]
            draws.append(MembershipNoise(gumbel[0], gumbel[1], keep[0], keep[1]))
        return draws

    def membership(self, logits: Tensor, gumbel: Tensor | None, keep: Tensor | None) -> Tensor:
        """``[N, A]`` rows of a Gumbel-softmax over the hyperedges, then dropout."""
        if gumbel is not None:
            logits = logits + gumbel
        weights = torch.softmax(logits / self.temperature, dim=1)
        if keep is not None:
            weights = weights * keep.to(weights.dtype) / self.keep_rate
        return weights

    def forward(
        self,
        item_emb: Tensor,
        features: Sequence[Tensor],
        interactions: Tensor,
        interactions_t: Tensor,
        noise: Sequence[MembershipNoise] | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        out = []
        all_logits = self.logits(features, interactions, interactions_t)
        for index, (user_logits, item_logits) in enumerate(all_logits):
            draw = MembershipNoise(None, None, None, None) if noise is None else noise[index]
            item_h = self.membership(item_logits, draw.item_gumbel, draw.item_keep)
            user_h = self.membership(user_logits, draw.user_gumbel, draw.user_keep)
            out.append(self.propagate(item_h, user_h, item_emb))
        return out

    def propagate(self, item_h: Tensor, user_h: Tensor, item_emb: Tensor) -> tuple[Tensor, Tensor]:
        """``(users [U, d], items [I, d])`` after :math:`L_h` item -> hyperedge -> node hops."""
        items = item_emb
        for _ in range(self.num_layers):
            edges = item_h.T @ items
            items = item_h @ edges
        return user_h @ edges, items

    def extra_repr(self) -> str:
        return (
            f"num_hyperedges={self.num_hyperedges}, num_layers={self.num_layers}, "
            f"temperature={self.temperature}, keep_rate={self.keep_rate}, "
            f"gumbel_noise={self.gumbel_noise}"
        )
