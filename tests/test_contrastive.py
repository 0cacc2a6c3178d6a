import math

import pytest
import torch

from mmgraph.nn.contrastive import ContrastiveHead


def cos(u, v):
    return sum(x * y for x, y in zip(u, v)) / math.sqrt(
        sum(x * x for x in u) * sum(y * y for y in v)
    )


def reference(a, b, tau, intra):
    """Straight transcription of the InfoNCE formula with Python floats."""
    total = 0.0
    for i in range(len(a)):
        numerator = math.exp(cos(a[i], b[i]) / tau)
        denominator = sum(math.exp(cos(a[i], b[j]) / tau) for j in range(len(b)))
        if intra:
            denominator += sum(math.exp(cos(a[i], a[j]) / tau) for j in range(len(a)) if j != i)
        total += -math.log(numerator / denominator)
    return total / len(a)


def test_hand_computed_two_rows():
    # a0 = b0 = e1, a1 = b1 = e2: cos on the diagonal 1, off-diagonal 0.
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    tau = 0.5
    expected = -math.log(math.e**2 / (math.e**2 + 1))
    assert ContrastiveHead(tau)(a, a.clone()).item() == pytest.approx(expected, rel=1e-6)
    # With intra-view negatives the other row of `a` (cos 0 -> e^0) joins the denominator.
    expected_intra = -math.log(math.e**2 / (math.e**2 + 2))
    head = ContrastiveHead(tau, intra_view_negatives=True)
    assert head(a, a.clone()).item() == pytest.approx(expected_intra, rel=1e-6)


@pytest.mark.parametrize("intra", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_formula_on_random_views(intra, symmetric):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    head = ContrastiveHead(0.3, symmetric=symmetric, intra_view_negatives=intra)
    expected = reference(a.tolist(), b.tolist(), 0.3, intra)
    if symmetric:
        expected = (expected + reference(b.tolist(), a.tolist(), 0.3, intra)) / 2
    assert head(a, b).item() == pytest.approx(expected, rel=1e-5)


def test_gradient_reaches_both_views_and_bad_shapes_are_rejected():
    a = torch.randn(5, 3, requires_grad=True)
    b = torch.randn(5, 3, requires_grad=True)
    ContrastiveHead()(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="views must both be"):
        ContrastiveHead()(a, b[:4])
