"""Sparse matrices for the layers: CSR transposes and submatrices, and the products of
:mod:`mmgraph.kernels.sparse` (:func:`sparse_matmul`, :func:`sparse_dense_product`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import to_edge_index, to_torch_csr_tensor

from mmgraph.kernels.sparse import sparse_dense_product, sparse_matmul

__all__ = [
    "check_increasing_index",
    "csr_submatrix",
    "csr_transpose",
    "sparse_dense_product",
    "sparse_matmul",
]


def csr_transpose(matrix: Tensor) -> Tensor:
    """The transpose of a sparse CSR matrix, again as CSR (for :func:`sparse_matmul`'s ``adj``).

    Args:
        matrix: ``[N, M]`` ``torch.sparse_csr`` tensor.

    Returns:
        ``[M, N]`` ``torch.sparse_csr`` tensor.
    """
    edge_index, values = to_edge_index(matrix)
    rows, cols = matrix.shape
    return to_torch_csr_tensor(edge_index.flip(0), values, size=(cols, rows))


def csr_submatrix(matrix: Tensor, rows: Tensor | None = None, cols: Tensor | None = None) -> Tensor:
    """``matrix[rows][:, cols]`` of a sparse CSR matrix, again as CSR.

    torch has no row or column indexing for CSR tensors (``index_select`` is COO-only), and a
    round trip through COO sorts all entries; this gathers the selected rows' entries directly.
    A product restricted to the rows a loss reads (:class:`~mmgraph.nn.MultiBranchLightGCN`'s
    ``rows``) uses it every step, and its transpose is the submatrix of the transpose:
    ``csr_submatrix(matrix, rows, cols).T == csr_submatrix(matrix.T, cols, rows)``.

    Args:
        matrix: ``[N, M]`` ``torch.sparse_csr`` tensor.
        rows: ``[R]`` row indices in any order (``None``: all rows).
        cols: ``[C]`` column indices, strictly increasing (``None``: all columns); entries in
            other columns are dropped.

    Returns:
        ``[R, C]`` ``torch.sparse_csr`` tensor.
    """
    if matrix.layout != torch.sparse_csr:
        raise ValueError(f"csr_submatrix needs a sparse CSR matrix, got layout {matrix.layout}")
    crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    num_rows, num_cols = matrix.shape
    _check_indices(rows, num_rows, "rows")
    _check_indices(cols, num_cols, "cols")
    if rows is not None:
        starts = crow.index_select(0, rows)
        counts = crow.index_select(0, rows + 1) - starts
        new_crow = torch.zeros(rows.numel() + 1, dtype=crow.dtype, device=crow.device)
        torch.cumsum(counts, 0, out=new_crow[1:])
        nnz = int(new_crow[-1])
        # Entry e of selected row r sits at starts[r] + (e - new_crow[r]) in the original.
        shift = torch.repeat_interleave(starts - new_crow[:-1], counts, output_size=nnz)
        source = torch.arange(nnz, dtype=crow.dtype, device=crow.device).add_(shift)
        crow, col, values = new_crow, col.index_select(0, source), values.index_select(0, source)
        num_rows = rows.numel()
    if cols is not None:
        check_increasing_index(cols, "cols")
        position = torch.full((num_cols,), -1, dtype=col.dtype, device=col.device)
        position[cols] = torch.arange(cols.numel(), dtype=col.dtype, device=col.device)
        new_col = position.index_select(0, col)
        keep = new_col >= 0
        kept_before = torch.zeros(keep.numel() + 1, dtype=crow.dtype, device=crow.device)
        torch.cumsum(keep, 0, out=kept_before[1:])
        kept = keep.nonzero().squeeze(1)  # one nonzero and two gathers: faster than two masks
        crow = kept_before.index_select(0, crow)
        col, values = new_col.index_select(0, kept), values.index_select(0, kept)
        num_cols = cols.numel()
    return torch.sparse_csr_tensor(crow, col, values, size=(num_rows, num_cols))


def check_increasing_index(index: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``index`` is 1-D and strictly increasing (sorted, no
    duplicates), as :func:`csr_submatrix`'s ``cols`` and the ``rows`` of the layers built on it
    must be."""
    if index.dim() != 1 or (index.numel() > 1 and not bool((index[1:] > index[:-1]).all())):
        raise ValueError(f"{name} must be a strictly increasing 1-D index tensor")


def _check_indices(index: Tensor | None, size: int, name: str) -> None:
    if (
        index is not None
        and index.numel()
        and not (0 <= int(index.min()) <= int(index.max()) < size)
    ):
        raise ValueError(
            f"{name} must lie in [0, {size}), got [{int(index.min())}, {int(index.max())}]"
        )
