import pytest
import torch

from mmgraph.nn import csr_submatrix, csr_transpose, sparse_matmul
from mmgraph.nn.sparse import sparse_dense_product


def random_csr(rows, cols, density=0.2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(rows, cols, generator=gen)
    dense = dense * (torch.rand(rows, cols, generator=gen) < density)
    return dense, dense.to_sparse_csr()


@pytest.mark.parametrize("with_transpose", [True, False])
def test_product_and_gradient_equal_the_dense_ones(with_transpose):
    dense, csr = random_csr(30, 20)
    x = torch.randn(20, 70, requires_grad=True)
    out = sparse_matmul(csr, x, csr_transpose(csr) if with_transpose else None)
    weights = torch.randn(30, 70)
    (out * weights).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    ref = dense @ x_ref
    (ref * weights).sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)


def test_csr_transpose():
    dense, csr = random_csr(7, 5)
    transposed = csr_transpose(csr)
    assert transposed.layout == torch.sparse_csr and transposed.shape == (5, 7)
    assert torch.equal(transposed.to_dense(), dense.T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_csr_kernel_equals_the_dense_product(dtype):
    dense, csr = random_csr(40, 25)
    dense, csr = dense.to(dtype), csr.to(dtype)
    x = torch.randn(25, 9, dtype=dtype)
    assert torch.allclose(sparse_dense_product(csr, x), dense @ x, atol=1e-6)
    # Non-contiguous columns and a matrix with empty rows (zeros in the output).
    csr_empty = (dense * (torch.arange(40) % 3 != 0).to(dtype).view(-1, 1)).to_sparse_csr()
    wide = torch.randn(25, 18, dtype=dtype)[:, ::2]
    expected = csr_empty.to_dense() @ wide
    assert torch.allclose(sparse_dense_product(csr_empty, wide), expected, atol=1e-6)
    # COO takes torch's own product.
    assert torch.allclose(sparse_dense_product(dense.to_sparse(), x), dense @ x, atol=1e-6)


def test_sparse_matmul_gradient_with_and_without_transpose_equals_dense():
    dense, csr = random_csr(30, 20)
    weights = torch.randn(30, 4)
    for transpose in (csr_transpose(csr), None):
        x = torch.randn(20, 4, requires_grad=True)
        (sparse_matmul(csr, x, transpose) * weights).sum().backward()
        assert torch.allclose(x.grad, dense.T @ weights, atol=1e-5)


@pytest.mark.parametrize(
    "rows, cols",
    [
        (None, None),
        ([5, 0, 5, 11], None),  # any order, repeats, an empty row
        (None, [1, 2, 9, 14]),
        ([3, 7, 8], [0, 4, 13]),
        ([], [2]),
        ([4], []),
    ],
)
def test_csr_submatrix_equals_dense_indexing_and_its_transpose(rows, cols):
    dense, csr = random_csr(12, 15, density=0.4)
    dense[11] = 0  # an empty row
    csr = dense.to_sparse_csr()
    rows_t = None if rows is None else torch.tensor(rows, dtype=torch.long)
    cols_t = None if cols is None else torch.tensor(cols, dtype=torch.long)
    expected = dense if rows is None else dense[rows_t]
    expected = expected if cols is None else expected[:, cols_t]
    sub = csr_submatrix(csr, rows_t, cols_t)
    assert sub.layout == torch.sparse_csr and torch.equal(sub.to_dense(), expected)
    if rows is None or rows == sorted(set(rows)):  # the transpose takes rows as its cols
        transposed = csr_submatrix(csr_transpose(csr), cols_t, rows_t)
        assert torch.equal(transposed.to_dense(), expected.T)


def test_csr_submatrix_rejects_bad_indices():
    _, csr = random_csr(6, 5)
    with pytest.raises(ValueError, match="strictly increasing"):
        csr_submatrix(csr, cols=torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="strictly increasing"):
        csr_submatrix(csr, cols=torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 6\)"):
        csr_submatrix(csr, rows=torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match=r"cols must lie in \[0, 5\)"):
        csr_submatrix(csr, cols=torch.tensor([2, 5]))
    with pytest.raises(ValueError, match="CSR"):
        csr_submatrix(csr.to_sparse_coo(), rows=torch.tensor([0]))
