import pytest
import torch
import torch.nn.functional as F

from mmgraph.nn.functional import cosine_similarity, l2_normalize


def test_l2_normalize_values_equal_the_formula():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1e-20, 0.0]])
    out = l2_normalize(x)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(out[1], torch.zeros(2))  # x / max(0, eps)
    assert out[2, 0].item() == pytest.approx(1e-20 / 1e-12)  # clamped row: x / eps


def test_l2_normalize_gradient_is_the_projection_formula():
    x = torch.randn(30, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    g = torch.randn(30, 7, dtype=torch.float64)
    (l2_normalize(x) * g).sum().backward()
    norm = x.detach().norm(dim=1, keepdim=True)
    y = x.detach() / norm
    # d(x/|x|)^T g = (g - y <g, y>) / |x|, by hand
    expected = (g - y * (g * y).sum(1, keepdim=True)) / norm
    assert torch.allclose(x.grad, expected, atol=1e-12)


def test_l2_normalize_matches_torch_normalize_on_clamped_rows_and_batched_shapes():
    x = torch.randn(5, 3, 6, dtype=torch.float64)
    x[1, 2] = 0.0
    x[3, 0] *= 1e-14  # below eps: scaled by 1/eps, no gradient through the norm
    w = torch.randn(5, 3, 6, dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    (l2_normalize(a) * w).pow(3).sum().backward()
    (F.normalize(b, dim=-1) * w).pow(3).sum().backward()
    assert torch.equal(l2_normalize(x), F.normalize(x, dim=-1))
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=0)


def test_cosine_similarity_equals_the_formula_and_torchs_on_degenerate_rows():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0], [1.0, 1.0], [-3.0, -4.0]], dtype=torch.float64)
    assert torch.allclose(cosine_similarity(a, b), torch.tensor([0.0, 1.0, 0.0, -1.0]).double())
    x = torch.randn(4, 5, 9, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 5, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cosine_similarity, (x, y))
    assert torch.allclose(cosine_similarity(x, y), F.cosine_similarity(x, y, dim=-1))


def test_cosine_similarity_gradient_equals_autograd_of_the_formula_with_clamped_rows():
    torch.manual_seed(4)
    a = torch.randn(6, 5, dtype=torch.float64)
    b = torch.randn(6, 5, dtype=torch.float64)
    a[1] = 0.0  # clamped norm (a constant eps): no radial term
    b[2] = 1e-12
    grad = torch.randn(6, dtype=torch.float64)

    def formula(x, y, eps=1e-8):
        nx = torch.linalg.vector_norm(x, dim=-1).clamp_min(eps)
        ny = torch.linalg.vector_norm(y, dim=-1).clamp_min(eps)
        return (x * y).sum(-1) / (nx * ny)

    got = [t.clone().requires_grad_(True) for t in (a, b)]
    want = [t.clone().requires_grad_(True) for t in (a, b)]
    (cosine_similarity(*got) * grad).sum().backward()
    (formula(*want) * grad).sum().backward()
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g.grad, w.grad, rtol=1e-10, atol=1e-12)
    # broadcasting: one row against many, gradient summed over the broadcast rows
    row = a[0].clone().requires_grad_(True)
    cosine_similarity(row, b).sum().backward()
    ref = a[0].clone().requires_grad_(True)
    formula(ref.expand_as(b), b).sum().backward()
    assert torch.allclose(row.grad, ref.grad)
