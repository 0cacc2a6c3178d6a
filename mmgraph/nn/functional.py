"""Row-wise functions for the layers: the hand-written kernels of :mod:`mmgraph.kernels`.

:func:`l2_normalize` is the kernel itself; :func:`bpr_scores` is
:func:`mmgraph.kernels.bpr_scores` in blocks of this module's :data:`BPR_SCORE_ROWS` triples.
"""

from __future__ import annotations

from torch import Tensor

from mmgraph.kernels import scores as _scores
from mmgraph.kernels.normalize import l2_normalize
from mmgraph.kernels.scores import BPR_SCORE_ROWS

__all__ = [
    "BPR_SCORE_ROWS",
    "bpr_scores",
    "l2_normalize",
]


def bpr_scores(
    user_emb: Tensor, item_emb: Tensor, users: Tensor, pos_items: Tensor, neg_items: Tensor
) -> tuple[Tensor, Tensor]:
    r"""BPR's scores :math:`\langle e_u, e_{i^+} \rangle` and :math:`\langle e_u, e_{i^-}
    \rangle` of a batch of triples (:func:`mmgraph.kernels.bpr_scores`, which keeps no
    gathered rows for the backward pass), in blocks of :data:`BPR_SCORE_ROWS` triples.

    Shapes:
        ``user_emb: [U, d]``, ``item_emb: [I, d]``, ``users, pos_items, neg_items: [B]`` ->
        ``([B], [B])``.
    """
    return _scores.bpr_scores(
        user_emb, item_emb, users, pos_items, neg_items, block_rows=BPR_SCORE_ROWS
    )
