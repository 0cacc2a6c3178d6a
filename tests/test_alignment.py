import pytest
import torch

from mmgraph.nn import (
    AlignmentHead,
    distribution_distance,
    gaussian_stats,
    grouped_gaussian_stats,
)


def test_gaussian_stats_are_mean_and_unbiased_variance_of_all_entries():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # mean 3; squared deviations 4+1+0+9 = 14
    mean, var = gaussian_stats(x)
    assert mean.item() == pytest.approx(3.0)
    assert var.item() == pytest.approx(14 / 3)  # n - 1 = 3


def test_distribution_distance_by_hand():
    a = torch.tensor([1.0, 3.0])  # mean 2, var 2
    b = torch.tensor([0.0, 0.0, 3.0])  # mean 1, var 3
    assert distribution_distance(a, b).item() == pytest.approx(abs(2 - 3) + abs(2 - 1))


# Views with hand-picked (mean, var): g (0, 2), r (1, 2), v (2, 8), t (0, 0.5).
G = torch.tensor([-1.0, 1.0])
R = torch.tensor([0.0, 2.0])
V = torch.tensor([0.0, 4.0])
T = torch.tensor([-0.5, 0.5])
D = {
    ("g", "r"): 0 + 1,
    ("g", "v"): 6 + 2,
    ("g", "t"): 1.5 + 0,
    ("r", "v"): 6 + 1,
    ("r", "t"): 1.5 + 1,
    ("v", "t"): 7.5 + 2,
}


@pytest.mark.parametrize(
    "levels, pairs",
    [
        ((1,), [("g", "r")]),
        ((2,), [("g", "v"), ("g", "t")]),
        ((3,), [("r", "v"), ("r", "t")]),
        ((4,), [("v", "t")]),
        ((1, 2, 3, 4), list(D)),
    ],
)
def test_alignment_levels_sum_the_right_pairs(levels, pairs):
    head = AlignmentHead(levels)
    expected = sum(D[p] for p in pairs)
    assert head(G, R, [V, T]).item() == pytest.approx(expected)


def test_alignment_with_one_modality_and_gradients():
    g = G.clone().requires_grad_(True)
    v = V.clone().requires_grad_(True)
    head = AlignmentHead()
    loss = head(g, R, [v])  # level 4 has no pair
    assert loss.item() == pytest.approx(D["g", "r"] + D["g", "v"] + D["r", "v"])
    loss.backward()
    assert g.grad.abs().sum() > 0 and v.grad.abs().sum() > 0
    assert AlignmentHead([4])(G, R, [V]).item() == 0.0
    with pytest.raises(ValueError, match="subset"):
        AlignmentHead([5])


def test_stats_of_parts_and_repeats_equal_those_of_the_materialised_view():
    torch.manual_seed(0)
    users, items = torch.randn(7, 3), torch.randn(5, 3) + 2.0
    for repeats in (1, 2, 3):
        view = torch.cat([users, items]).repeat(1, repeats)
        mean, var = gaussian_stats(users, items, repeats=repeats)
        assert mean.item() == pytest.approx(view.mean().item(), rel=1e-6)
        assert var.item() == pytest.approx(view.var().item(), rel=1e-6)
    with pytest.raises(ValueError, match="at least one part"):
        gaussian_stats()


def _materialised_stats(parts, repeats):
    view = torch.cat([part.reshape(part.size(0), -1) for part in parts]).repeat(1, repeats)
    return view.mean(), view.var()


@pytest.mark.parametrize("repeats", [1, 3])
def test_stats_value_and_gradient_equal_autograd_on_the_materialised_view(repeats):
    torch.manual_seed(1)
    users = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    items = (torch.randn(3, 4, dtype=torch.float64) * 2 + 1.5).requires_grad_(True)
    mean, var = gaussian_stats(users, items, repeats=repeats)
    ref_mean, ref_var = _materialised_stats([users, items], repeats)
    assert torch.allclose(mean, ref_mean) and torch.allclose(var, ref_var)
    weights = (0.7, -1.3)  # a loss that reads both outputs
    got = torch.autograd.grad(weights[0] * mean + weights[1] * var, [users, items])
    want = torch.autograd.grad(weights[0] * ref_mean + weights[1] * ref_var, [users, items])
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w)
    # only one output read: the other's gradient is None inside the backward
    (g_users,) = torch.autograd.grad(gaussian_stats(users, items)[1], [users])
    (w_users,) = torch.autograd.grad(_materialised_stats([users, items], 1)[1], [users])
    assert torch.allclose(g_users, w_users)


def test_grouped_stats_are_the_stats_of_each_slice_of_dim_1():
    torch.manual_seed(2)
    users = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    items = (torch.randn(7, 3, 4, dtype=torch.float64) - 0.5).requires_grad_(True)
    means, variances = grouped_gaussian_stats(users, items, repeats=2)
    assert means.shape == variances.shape == (3,)
    loss = (means * torch.tensor([1.0, -2.0, 0.5])).sum() + variances.square().sum()
    got = torch.autograd.grad(loss, [users, items])
    ref_loss = 0.0
    for g, w in enumerate([1.0, -2.0, 0.5]):
        mean, var = _materialised_stats([users[:, g], items[:, g]], 2)
        assert torch.allclose(means[g], mean) and torch.allclose(variances[g], var)
        ref_loss = ref_loss + w * mean + var.square()
    want = torch.autograd.grad(ref_loss, [users, items])
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w)
    assert torch.autograd.gradcheck(
        lambda u, i: grouped_gaussian_stats(u, i, repeats=3), (users, items)
    )
    with pytest.raises(ValueError, match="same G"):
        grouped_gaussian_stats(users, items[:, :2])


def test_stats_stay_accurate_for_a_large_offset_in_float32():
    """Σx² - (Σx)²/n in float64 over float32 row sums: mean 3 and std 0.1 (ratio 30)."""
    torch.manual_seed(3)
    x = torch.randn(20000, 64) * 0.1 + 3.0
    mean, var = gaussian_stats(x)
    ref = x.double()
    assert mean.item() == pytest.approx(ref.mean().item(), rel=1e-6)
    assert var.item() == pytest.approx(ref.var().item(), rel=1e-4)
