"""Self-supervised augmentations of multi-branch LightGCN tables (SLMRec, Tao et al., TMM 2022).

A multi-branch model propagates ``B`` branch tables ``[N, B, d]`` (an ID branch and one per
modality, all with the same user rows) over the user–item graph. Two augmented *views* of the
stack are built here and contrasted by the caller:

- feature dropout (FD): every hop's output is dropped out, independently per view, branch and
  entry (:func:`draw_dropout_masks`, :func:`dropout_propagation`);
- feature masking (FM): each view zeroes the item rows of one branch, a different one per view
  (:func:`draw_masked_branches`, :func:`mask_item_branches`);

and the fine-and-coarse-grained cross-modal contrast (FAC, :class:`FineCoarseContrast`) aligns
the ID branch with the modality branches in a hierarchy of shared spaces.

The random draws are explicit tensors (:class:`AugmentedViews`), so that a loss can be replayed
with the same augmentation (tests recompute it densely).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.nn.noise import bernoulli_like
from mmgraph.nn.sparse import sparse_matmul


class AugmentedViews(NamedTuple):
    """The random draws of ``V`` augmented views of a ``[N, B, d]`` branch stack.

    Attributes:
        masked_branches: ``[V]`` long, the branch whose item rows view ``v`` zeroes (feature
            masking), or ``None`` for no masking.
        keep_masks: one bool ``[N, V, B, d]`` tensor per hop, ``True`` where the hop's output
            is kept (feature dropout); empty for no dropout.
        dropout: the probability the masks were drawn with (kept entries are scaled by
            ``1 / (1 - dropout)``).
    """

    masked_branches: Tensor | None
    keep_masks: tuple[Tensor, ...]
    dropout: float


def draw_masked_branches(num_branches: int, num_views: int = 2, device=None) -> Tensor:
    """``[num_views]`` distinct branch indices, uniform without replacement (torch's global
    generator): for two views, the first uniform over all branches and the second uniform
    over the others.

    Raises:
        ValueError: if there are fewer branches than views.
    """
    if num_views > num_branches:
        raise ValueError(f"{num_views} views need as many branches, got {num_branches}")
    return torch.randperm(num_branches, device=device)[:num_views]


def draw_dropout_masks(
    num_nodes: int,
    num_views: int,
    num_branches: int,
    dim: int,
    num_layers: int,
    p: float,
    device=None,
) -> tuple[Tensor, ...]:
    """One bool keep mask ``[num_nodes, num_views, num_branches, dim]`` per hop, each entry
    ``True`` with probability ``1 - p`` (torch's global generator, via
    :func:`~mmgraph.nn.noise.bernoulli_like`); empty when ``p == 0``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    if p == 0.0:
        return ()
    shape = (num_nodes, num_views, num_branches, dim)
    template = torch.empty(shape, device=device)
    return tuple(bernoulli_like(template, 1.0 - p) for _ in range(num_layers))


def mask_item_branches(stack: Tensor, masked_branches: Tensor | None, num_users: int) -> Tensor:
    r"""``V`` copies of a branch stack, copy ``v`` with the item rows of branch
    ``masked_branches[v]`` zeroed (users are never masked).

    Shapes:
        ``stack: [U + I, B, d]`` (users first), ``masked_branches: [V]`` ->
        ``[U + I, V, B, d]``; with ``masked_branches=None``, two unmasked copies.
    """
    num_views = 2 if masked_branches is None else masked_branches.numel()
    views = stack.unsqueeze(1).expand(-1, num_views, -1, -1)
    if masked_branches is None:
        return views
    keep = torch.ones(num_views, stack.size(1), dtype=stack.dtype, device=stack.device)
    keep[torch.arange(num_views, device=stack.device), masked_branches] = 0.0
    users, items = views[:num_users], views[num_users:]
    return torch.cat([users, items * keep[None, :, :, None]])


def dropout_propagation(
    x: Tensor, adj: Tensor, num_layers: int, keep_masks: Sequence[Tensor], p: float
) -> Tensor:
    r"""LightGCN's layer mean with dropout after every hop (the dropped hop is propagated on).

    .. math::
        h^{(0)} = x, \qquad
        h^{(l+1)} = \frac{M^{(l)} \odot \hat A h^{(l)}}{1 - p}, \qquad
        \text{out} = \frac{1}{L+1} \sum_{l=0}^{L} h^{(l)}

    Every trailing slice of ``x`` (a view's branch) is propagated independently; with no
    masks it is the plain layer mean.

    Args:
        x: ``[N, *S]`` node tables (``S`` e.g. ``(V, B, d)``).
        adj: ``[N, N]`` symmetric sparse :math:`\hat A`.
        num_layers: hops ``L``.
        keep_masks: ``L`` bool tensors shaped like ``x`` (:func:`draw_dropout_masks`), or empty.
        p: the drop probability the masks were drawn with.

    Shapes:
        -> ``[N, *S]``.
    """
    if keep_masks and len(keep_masks) != num_layers:
        raise ValueError(f"{len(keep_masks)} dropout masks for {num_layers} hops")
    shape = x.shape
    h = x.reshape(shape[0], -1)
    total = h
    scale = 1.0 / (1.0 - p)
    for layer in range(num_layers):
        h = sparse_matmul(adj, h, adj)
        if keep_masks:
            h = h * keep_masks[layer].reshape(shape[0], -1) * scale
        total = total + h
    return (total / (num_layers + 1)).view(shape)


def dot_infonce(anchor: Tensor, positive: Tensor, temperature: float) -> Tensor:
    r"""In-batch InfoNCE of raw inner products (no normalisation, unlike
    :class:`~mmgraph.nn.ContrastiveHead`):
    :math:`-\frac1B \sum_b \log \operatorname{softmax}_j(\langle a_b, p_j \rangle / \tau)_b`.

    Shapes:
        ``anchor: [B, w]``, ``positive: [B, w]`` -> scalar.
    """
    logits = (anchor / temperature) @ positive.T  # scales [B, w], not the [B, B] logits
    return F.cross_entropy(logits, torch.arange(anchor.size(0), device=anchor.device))


def hierarchy_widths(dim: int, num_modalities: int) -> list[int]:
    """Widths of FAC's shared spaces: ``dim`` for each, except the coarsest (last) one, of
    ``dim // 2``, when there are two or more (SLMRec's code: ``d`` for ID–visual alone,
    ``d, d, d/2`` for visual, acoustic, textual)."""
    widths = [dim] * num_modalities
    if num_modalities >= 2:
        widths[-1] = max(dim // 2, 1)
    return widths


class FineCoarseContrast(nn.Module):
    r"""SLMRec's fine-and-coarse-grained (FAC) cross-modal contrast of item representations.

    The ID representation climbs a chain of linear maps into ever coarser shared spaces, one
    per modality (in order: the first is the finest); in space :math:`k` it meets modality
    :math:`k` through its own linear head:

    .. math::
        z_0 = h^{id}, \quad z_k = G_k z_{k-1}, \quad
        \mathcal L = \sum_{k=1}^{M} \mathrm{InfoNCE}_\tau\big(z_k,\; H_k h^{(k)}\big)

    with :func:`dot_infonce` (raw inner products over the batch's rows). Widths:
    :func:`hierarchy_widths`. Weights are Xavier-uniform, biases torch's default.

    Args:
        dim: width ``d`` of the branch representations.
        num_modalities: ``M >= 1``.
        temperature: :math:`\tau`.

    Shapes:
        ``id_rows: [B, d]``, ``modality_rows``: ``M`` tensors ``[B, d]`` -> scalar.
    """

    def __init__(self, dim: int, num_modalities: int, temperature: float = 0.2) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError("FAC needs at least one modality")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        widths = hierarchy_widths(dim, num_modalities)
        self.chain = nn.ModuleList(
            nn.Linear(w_in, w_out) for w_in, w_out in zip([dim, *widths[:-1]], widths, strict=True)
        )
        self.heads = nn.ModuleList(nn.Linear(dim, w) for w in widths)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in [*self.chain, *self.heads]:
            linear.reset_parameters()
            nn.init.xavier_uniform_(linear.weight)

    def forward(self, id_rows: Tensor, modality_rows: Sequence[Tensor]) -> Tensor:
        if len(modality_rows) != len(self.heads):
            raise ValueError(f"{len(modality_rows)} modalities for {len(self.heads)} spaces")
        z, total = id_rows, id_rows.new_zeros(())
        for chain, head, rows in zip(self.chain, self.heads, modality_rows, strict=True):
            z = chain(z)
            total = total + dot_infonce(z, head(rows), self.temperature)
        return total

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
