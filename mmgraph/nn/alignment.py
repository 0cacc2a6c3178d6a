"""Distribution alignment between representation views (MENTOR's multilevel alignment)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

#: level -> the pairs of views it aligns (MENTOR's code comments).
LEVELS = {
    1: "ID <-> fused",
    2: "ID <-> each modality",
    3: "each modality <-> fused",
    4: "modality <-> modality",
}


Stats = tuple[Tensor, Tensor]


def gaussian_stats(*parts: Tensor, repeats: int = 1) -> Stats:
    """Mean and *unbiased* variance of all entries of a view (two scalars).

    The view is the concatenation of ``parts`` (any shapes), side by side ``repeats`` times,
    without materialising it: MENTOR's ``[U + I, M·d]`` views are user and item parts of
    width ``d`` repeated ``M`` times. Repeating leaves the mean unchanged and multiplies both
    the squared deviations and the entry count by ``repeats``. Computed as
    :func:`grouped_gaussian_stats` with one group.

    Args:
        parts: the view's pieces, at least one.
        repeats: how many times the pieces are repeated side by side.
    """
    _check_parts(parts, repeats)
    mean, var = _GaussianStats.apply(False, repeats, *parts)
    return mean.squeeze(0), var.squeeze(0)


def grouped_gaussian_stats(*parts: Tensor, repeats: int = 1) -> Stats:
    """:func:`gaussian_stats` of ``G`` views at once, view ``g`` being slice ``g`` of dim 1.

    MENTOR's modality and ID views are the branches of its stacked ``[U, B, d]`` user and
    ``[I, B, d]`` item outputs, each repeated ``M`` times side by side; this summarises all
    branches in two passes over each part, and its backward is one pass per part (MENTOR's
    TikTok alignment term, forward and backward: 16 ms against 37 ms for autograd's
    composition of subtraction, square and sums, 2 CPU threads).

    The sums are accumulated in float64 (over float32 partial sums) and the variance is
    ``(Σx² - (Σx)²/n) / (n - 1)``: exact up to rounding while the mean is not orders of
    magnitude larger than the standard deviation, as for embeddings.

    Args:
        parts: ``[N_p, G, *]`` tensors with the same ``G``, at least one.
        repeats: how many times each view's pieces are repeated side by side.

    Returns:
        ``(means [G], variances [G])``.
    """
    _check_parts(parts, repeats)
    if any(part.dim() < 2 or part.size(1) != parts[0].size(1) for part in parts):
        raise ValueError("grouped_gaussian_stats needs parts [N_p, G, ...] with the same G")
    return _GaussianStats.apply(True, repeats, *parts)


def _check_parts(parts: tuple[Tensor, ...], repeats: int) -> None:
    if not parts or repeats < 1:
        raise ValueError("gaussian_stats needs at least one part and repeats >= 1")


class _GaussianStats(torch.autograd.Function):
    """Means and unbiased variances ``[G]`` of groups of entries; the gradient w.r.t. an entry
    of group ``g`` is ``ḡ_mean / n + ḡ_var · 2R (x - mean) / (Rn - 1)``: one ``addcmul`` per
    part, where autograd's chain of subtraction, square and sums takes several passes."""

    @staticmethod
    def forward(ctx, grouped: bool, repeats: int, *parts: Tensor):
        rows = [_as_rows(part, grouped) for part in parts]
        sums = sum(row.sum(2).sum(0, dtype=torch.float64) for row in rows)
        squares = sum(torch.linalg.vecdot(row, row).sum(0, dtype=torch.float64) for row in rows)
        count = sum(row.size(0) * row.size(2) for row in rows)
        mean = sums / count
        deviations = (squares - sums * mean).clamp_min(0.0)
        var = deviations * repeats / (count * repeats - 1)  # nan for a single entry, as torch.var
        ctx.save_for_backward(mean, *parts)
        ctx.grouped, ctx.repeats, ctx.count = grouped, repeats, count
        dtype = parts[0].dtype
        return mean.to(dtype), var.to(dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_mean: Tensor | None, grad_var: Tensor | None):
        mean, *parts = ctx.saved_tensors
        repeats, count = ctx.repeats, ctx.count
        grad_mean = torch.zeros_like(mean) if grad_mean is None else grad_mean.double()
        grad_var = torch.zeros_like(mean) if grad_var is None else grad_var.double()
        dof = count * repeats - 1
        scale = grad_var * (2.0 * repeats / dof if dof else math.nan)
        shift = grad_mean / count - scale * mean
        grads = []
        for part, needed in zip(parts, ctx.needs_input_grad[2:], strict=True):
            if not needed:
                grads.append(None)
                continue
            shape = (1, -1, *[1] * (part.dim() - 2)) if ctx.grouped else ()
            a = scale.to(part.dtype).view(shape)
            b = shift.to(part.dtype).view(shape)
            grads.append(torch.addcmul(b, part, a))
        return None, None, *grads


def _as_rows(part: Tensor, grouped: bool) -> Tensor:
    """``[N, G, k]`` view of a part (``[1, 1, numel]`` when not grouped; ``k`` may be 0)."""
    if not grouped:
        return part.reshape(1, 1, -1)
    return part.flatten(2) if part.dim() > 2 else part.unsqueeze(2)


def distribution_distance(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`D(a, b) = |\sigma^2_a - \sigma^2_b| + |\mu_a - \mu_b|` over all entries."""
    mean_a, var_a = gaussian_stats(a)
    mean_b, var_b = gaussian_stats(b)
    return (var_a - var_b).abs() + (mean_a - mean_b).abs()


class AlignmentHead(nn.Module):
    r"""Sum of :func:`distribution_distance` over the view pairs of the chosen levels.

    Each view is summarised by the mean and unbiased variance of *all* its entries (MENTOR
    "fits a Gaussian" per view; variance, not standard deviation), and

    - level 1 aligns the ID view with the fused view,
    - level 2 the ID view with each modality view,
    - level 3 each modality view with the fused view,
    - level 4 every pair of modality views.

    With all four levels and modalities ``v, t`` this is MENTOR's
    ``D(g,r) + D(g,v) + D(g,t) + D(r,v) + D(r,t) + D(v,t)``.

    Args:
        levels: the levels to include (default all).

    Shapes:
        ``id_view``, ``fused_view`` and every entry of ``modality_views``: any shape (MENTOR:
        ``[U + I, M·d]``) -> scalar.
    """

    def __init__(self, levels: Iterable[int] = (1, 2, 3, 4)) -> None:
        super().__init__()
        levels = tuple(sorted(set(levels)))
        if not levels or not set(levels) <= set(LEVELS):
            raise ValueError(f"alignment levels must be a non-empty subset of {sorted(LEVELS)}")
        self.levels = levels

    def forward(
        self, id_view: Tensor, fused_view: Tensor, modality_views: Sequence[Tensor]
    ) -> Tensor:
        modal = [gaussian_stats(view) for view in modality_views]
        return self.from_stats(gaussian_stats(id_view), gaussian_stats(fused_view), modal)

    def from_stats(self, ident: Stats, fused: Stats, modal: Sequence[Stats]) -> Tensor:
        """The same sum from views already summarised by :func:`gaussian_stats`."""
        pairs: list[tuple[Stats, Stats]] = []
        if 1 in self.levels:
            pairs.append((ident, fused))
        if 2 in self.levels:
            pairs += [(ident, stats) for stats in modal]
        if 3 in self.levels:
            pairs += [(fused, stats) for stats in modal]
        if 4 in self.levels:
            pairs += [(a, b) for i, a in enumerate(modal) for b in modal[i + 1 :]]
        total = torch.zeros((), dtype=fused[0].dtype, device=fused[0].device)  # 0 if no pair
        for (mean_a, var_a), (mean_b, var_b) in pairs:
            total = total + (var_a - var_b).abs() + (mean_a - mean_b).abs()
        return total

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
