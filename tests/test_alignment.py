import pytest
import torch

from mmgraph.nn import AlignmentHead, distribution_distance, gaussian_stats


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
