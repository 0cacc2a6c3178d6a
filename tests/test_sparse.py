import pytest
import torch

from mmgraph.nn import blocked_sparse_matmul, csr_transpose


def random_csr(rows, cols, density=0.2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(rows, cols, generator=gen)
    dense = dense * (torch.rand(rows, cols, generator=gen) < density)
    return dense, dense.to_sparse_csr()


@pytest.mark.parametrize("width", [1, 3, 64, 100])
@pytest.mark.parametrize("with_transpose", [True, False])
def test_blocked_product_and_gradient_equal_the_dense_ones(width, with_transpose):
    dense, csr = random_csr(30, 20)
    x = torch.randn(20, 70, requires_grad=True)
    out = blocked_sparse_matmul(
        csr, x, csr_transpose(csr) if with_transpose else None, block_width=width
    )
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
