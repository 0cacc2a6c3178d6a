"""Top-K selection over full item score rows, with already-seen items masked out.

Shared by :meth:`mmgraph.models.Recommender.recommend` and :mod:`mmgraph.eval`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmgraph.data.dataset import CSR

__all__ = ["mask_seen", "topk_recommendations"]


def mask_seen(scores: Tensor, seen: CSR, users: Tensor) -> Tensor:
    """Set ``scores[b, i] = -inf`` for every item ``i`` in row ``users[b]`` of ``seen``, in place.

    Args:
        scores: ``[B, I]`` floating scores; modified in place and returned.
        seen: per-user item lists (usually the training interactions); moved to
            ``scores.device`` if needed.
        users: ``[B]`` user ids, the rows of ``scores``.
    """
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    seen = seen.to(scores.device)
    position, item = seen.rows_of(users.to(scores.device))
    scores[position, item] = float("-inf")
    return scores


def topk_recommendations(
    scores: Tensor, seen: CSR, users: Tensor, k: int, inplace: bool = False
) -> tuple[Tensor, Tensor]:
    """The ``k`` best items per row after removing the user's seen items.

    Ties are broken arbitrarily by :func:`torch.topk` (as in MMRec), so tied items may come
    out in any order, including differently across devices.

    ``k`` is clamped to the number of items. When a user has fewer than ``k`` unseen items,
    the trailing entries are seen items with value ``-inf``; callers that must not show them
    should drop entries whose value is ``-inf``.

    Args:
        scores: ``[B, I]`` floating scores of users ``users`` for all items.
        seen: per-user item lists to exclude (usually the training interactions).
        users: ``[B]`` user ids of the rows of ``scores``.
        k: number of items to return per row.
        inplace: mask ``scores`` in place instead of on a copy (saves one ``[B, I]`` buffer).

    Returns:
        ``(values, items)``, both ``[B, min(k, I)]``, sorted by decreasing score.
    """
    if scores.dim() != 2 or users.shape != scores.shape[:1]:
        raise ValueError(
            f"scores must be [B, I] and users [B]; got {tuple(scores.shape)} and "
            f"{tuple(users.shape)}"
        )
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    masked = mask_seen(scores if inplace else scores.clone(), seen, users)
    return torch.topk(masked, k=min(k, scores.size(1)), dim=1)
