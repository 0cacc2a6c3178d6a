"""Distribution alignment between representation views (MENTOR's multilevel alignment).

Each view is summarised by the kernels :func:`~mmgraph.kernels.gaussian_stats` and
:func:`~mmgraph.kernels.grouped_gaussian_stats` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from mmgraph.kernels.stats import Stats, gaussian_stats, grouped_gaussian_stats

__all__ = [
    "LEVELS",
    "AlignmentHead",
    "Stats",
    "distribution_distance",
    "gaussian_stats",
    "grouped_gaussian_stats",
]

#: level -> the pairs of views it aligns (MENTOR's code comments).
LEVELS = {
    1: "ID <-> fused",
    2: "ID <-> each modality",
    3: "each modality <-> fused",
    4: "modality <-> modality",
}


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
