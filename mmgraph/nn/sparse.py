"""Sparse–dense products with a cheap backward pass."""

from __future__ import annotations

import torch
from torch import Tensor


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj_t: Tensor, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj_t @ x

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        return None, None, ctx.adj @ grad_out


def sparse_matmul(adj_t: Tensor, x: Tensor, adj: Tensor | None = None) -> Tensor:
    """``adj_t @ x`` whose gradient w.r.t. ``x`` uses a precomputed transpose.

    torch differentiates a CSR product by transposing the matrix on every backward call, which
    costs several forward products. Passing the transpose (the matrix itself when it is
    symmetric, as LightGCN's normalised adjacency is) makes the backward one more product.

    Args:
        adj_t: ``[N_dst, N_src]`` sparse matrix (CSR recommended).
        x: ``[N_src, d]`` dense features.
        adj: ``[N_src, N_dst]`` transpose of ``adj_t``, or ``None`` to let torch transpose.

    Returns:
        ``[N_dst, d]``. No gradient flows to the sparse matrices.
    """
    if adj is None or not (torch.is_grad_enabled() and x.requires_grad):
        return adj_t @ x
    return _SparseMatmul.apply(adj_t, adj, x)
