"""Sparse–dense products: the fastest torch product per layout, and a transpose-free backward.

Kernel: :func:`sparse_matmul` / :func:`sparse_matmul_reference`. :func:`sparse_dense_product`
is the forward product every sparse kernel here uses (no backward of its own).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sparse_dense_product(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` for a sparse ``matrix``, by the fastest torch kernel for its layout.

    A CSR matrix on the CPU goes to torch's row-parallel ``spmm_reduce`` kernel
    (``torch.sparse.mm(matrix, x, "sum")``), which writes every output row once; the default
    ``@`` path (MKL) zero-fills its output and copies it from a temporary: per hop, forward
    and backward, it took 0.9-1.6x the time on 2 cores for 64-448 columns (TikTok's and
    Baby's LightGCN adjacencies; ``benchmarks/propagation.py``). Other layouts and devices
    use ``@``. Both sum the same products per row, in a different order: results agree to
    float rounding. Differentiable by torch's own backward (which transposes ``matrix``).

    Shapes:
        ``matrix: [N_dst, N_src]``, ``x: [N_src, d]`` -> ``[N_dst, d]``.
    """
    if (
        matrix.layout == torch.sparse_csr
        and x.device.type == "cpu"
        and x.dim() == 2
        and x.dtype in (torch.float32, torch.float64)
        and x.dtype == matrix.dtype
    ):
        return torch.sparse.mm(matrix, x, "sum")
    return matrix @ x


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj_t: Tensor, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return sparse_dense_product(adj_t, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        return None, None, sparse_dense_product(ctx.adj, grad_out)


def sparse_matmul(adj_t: Tensor, x: Tensor, adj: Tensor | None = None) -> Tensor:
    """``adj_t @ x`` whose gradient w.r.t. ``x`` uses a precomputed transpose.

    Equals :func:`sparse_matmul_reference` (torch's backward of the same product).

    **Saves time.** torch differentiates a CSR product by transposing the matrix on every
    backward call, which costs several forward products. Passing the transpose (the matrix
    itself when it is symmetric, as LightGCN's normalised adjacency is) makes the backward one
    more product.

    **Used by** every graph propagation: :class:`~mmgraph.nn.LightGCNConv` /
    :class:`~mmgraph.nn.LightGCNEncoder` (LightGCN, LGMRec, MGCN, ...),
    :class:`~mmgraph.nn.ItemGraphPropagation`, :class:`~mmgraph.nn.LearnableHypergraph`, the
    SSL augmentations, MMGCN's convolutions, and the models' own products (DiffMM, LGMRec,
    MGCN).

    Args:
        adj_t: ``[N_dst, N_src]`` sparse matrix (CSR recommended).
        x: ``[N_src, d]`` dense features.
        adj: ``[N_src, N_dst]`` transpose of ``adj_t``, or ``None`` to let torch transpose.

    Returns:
        ``[N_dst, d]``. No gradient flows to the sparse matrices.
    """
    if adj is None or not (torch.is_grad_enabled() and x.requires_grad):
        return sparse_dense_product(adj_t, x)
    return _SparseMatmul.apply(adj_t, adj, x)


def sparse_matmul_reference(adj_t: Tensor, x: Tensor, adj: Tensor | None = None) -> Tensor:
    """:func:`sparse_matmul` by torch's autograd of :func:`sparse_dense_product` (``adj`` is
    accepted for the same signature and ignored)."""
    return sparse_dense_product(adj_t, x)
