"""BPR's triple scores without saved gathers: :func:`bpr_scores` / :func:`bpr_scores_reference`."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: batch rows per step of :func:`bpr_scores` (forward and backward): at a million-interaction
#: batch of 128-d views, three gathered ``[rows, d]`` tables of 32 MB instead of 512 MB.
BPR_SCORE_ROWS = 1 << 16


class _BPRScores(torch.autograd.Function):
    # ``item_emb`` comes in twice, once per gather (negatives first), so that autograd adds
    # the two scatters to its gradient one after the other, as it does for two gathers: the
    # same float sums as two ``index_select`` gathers, bit for bit.
    @staticmethod
    def forward(
        ctx,
        user_emb: Tensor,
        item_emb_neg: Tensor,
        item_emb_pos: Tensor,
        users: Tensor,
        pos: Tensor,
        neg: Tensor,
        block_rows: int,
    ) -> tuple[Tensor, Tensor]:
        pos_scores = user_emb.new_empty(users.shape)
        neg_scores = user_emb.new_empty(users.shape)
        for rows in _row_chunks(users.numel(), block_rows):
            u = user_emb.index_select(0, users[rows])
            pos_scores[rows] = (u * item_emb_pos.index_select(0, pos[rows])).sum(-1)
            neg_scores[rows] = (u * item_emb_neg.index_select(0, neg[rows])).sum(-1)
        ctx.save_for_backward(user_emb, item_emb_pos, users, pos, neg)
        ctx.block_rows = block_rows
        return pos_scores, neg_scores

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pos: Tensor | None, grad_neg: Tensor | None):
        user_emb, item_emb, users, pos, neg = ctx.saved_tensors
        grad_pos = torch.zeros_like(users, dtype=user_emb.dtype) if grad_pos is None else grad_pos
        grad_neg = torch.zeros_like(users, dtype=user_emb.dtype) if grad_neg is None else grad_neg
        need_users, need_neg, need_pos = ctx.needs_input_grad[:3]
        # One accumulating scatter per gather, as autograd's graph of the gathers has, but by
        # index_add_: it adds in index order on any number of threads (index_put_'s
        # accumulation, autograd's for a gather, does so on one thread only) and is faster.
        grad_user = torch.zeros_like(user_emb) if need_users else None
        grad_item_neg = torch.zeros_like(item_emb) if need_neg else None
        grad_item_pos = torch.zeros_like(item_emb) if need_pos else None
        for rows in _row_chunks(users.numel(), ctx.block_rows):
            u, p, n = users[rows], pos[rows], neg[rows]
            g_pos, g_neg = grad_pos[rows].unsqueeze(-1), grad_neg[rows].unsqueeze(-1)
            if need_users:
                grad_u = g_neg * item_emb.index_select(0, n) + g_pos * item_emb.index_select(0, p)
                grad_user.index_add_(0, u, grad_u)
            if need_neg or need_pos:
                user_rows = user_emb.index_select(0, u)
            if need_neg:
                grad_item_neg.index_add_(0, n, g_neg * user_rows)
            if need_pos:
                grad_item_pos.index_add_(0, p, g_pos * user_rows)
        return grad_user, grad_item_neg, grad_item_pos, None, None, None, None


def _row_chunks(count: int, block_rows: int) -> list[slice]:
    return [slice(start, start + block_rows) for start in range(0, count, block_rows)]


def bpr_scores(
    user_emb: Tensor,
    item_emb: Tensor,
    users: Tensor,
    pos_items: Tensor,
    neg_items: Tensor,
    block_rows: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""BPR's scores :math:`\langle e_u, e_{i^+} \rangle` and :math:`\langle e_u, e_{i^-}
    \rangle` of a batch of triples, without keeping the gathered rows for the backward pass.

    The same values as :func:`bpr_scores_reference`, ``u = user_emb[users]``,
    ``(u * item_emb[pos_items]).sum(-1)`` and ``(u * item_emb[neg_items]).sum(-1)``, and to the
    last bit the gradients of that formula with ``index_select`` gathers (also of ``[]``
    gathers with one thread; with more, their backward adds repeated rows in a
    thread-dependent order).

    **Saves memory.** The backward pass gathers the rows again, in blocks of ``block_rows``
    triples (default :data:`BPR_SCORE_ROWS`), instead of holding three ``[B, d]`` tables from
    the forward pass to the backward pass and three ``[B, d]`` gradients at once. Inside
    LightGCN's step on the 1M-user synthetic graph (batch 10^6, ``d = 64``, one thread,
    ``benchmarks/kernels.py --memory``): peak RSS 3,296 against 3,760 MB (the step's growth
    1,736 against 2,200 MB), the same time (−0.2 %). At TikTok's batch of 2,048 it saves
    neither time nor memory (28 MB growth either way).

    **Used by** the BPR heads of LightGCN, MENTOR, DRAGON and DualGNN
    (:func:`mmgraph.nn.functional.bpr_scores`).

    Shapes:
        ``user_emb: [U, d]``, ``item_emb: [I, d]``, ``users, pos_items, neg_items: [B]`` ->
        ``([B], [B])``.
    """
    if not users.shape == pos_items.shape == neg_items.shape or users.dim() != 1:
        raise ValueError(
            "users, pos_items and neg_items must be [B] index vectors of one length, got "
            f"{list(users.shape)}, {list(pos_items.shape)}, {list(neg_items.shape)}"
        )
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.size(1) != item_emb.size(1):
        raise ValueError(
            f"need user_emb [U, d] and item_emb [I, d], got {list(user_emb.shape)}, "
            f"{list(item_emb.shape)}"
        )
    block_rows = BPR_SCORE_ROWS if block_rows is None else block_rows
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    return _BPRScores.apply(user_emb, item_emb, item_emb, users, pos_items, neg_items, block_rows)


def bpr_scores_reference(
    user_emb: Tensor,
    item_emb: Tensor,
    users: Tensor,
    pos_items: Tensor,
    neg_items: Tensor,
    block_rows: int | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`bpr_scores` by autograd of ``index_select`` gathers (``block_rows`` is accepted
    for the same signature and ignored: the whole batch is gathered at once)."""
    u = user_emb.index_select(0, users)
    pos = (u * item_emb.index_select(0, pos_items)).sum(-1)
    return pos, (u * item_emb.index_select(0, neg_items)).sum(-1)
