import pytest
import torch

from mmgraph.nn import GraphPerturbation, drop_edges


def test_perturbation_keeps_signs_and_adds_noise_of_norm_eps():
    torch.manual_seed(0)
    h = torch.randn(50, 16)
    out = GraphPerturbation(eps=0.1)(h)
    assert torch.equal(torch.sign(out), torch.sign(h))
    delta = out - h
    assert torch.allclose(delta.norm(dim=1), torch.full((50,), 0.1), atol=1e-6)
    assert torch.all(delta * torch.sign(h) >= 0)  # pushed away from zero, never across it
    assert not torch.equal(GraphPerturbation(0.1)(h), GraphPerturbation(0.1)(h))  # fresh noise


def test_perturbation_leaves_zero_coordinates_and_respects_eps_zero():
    h = torch.tensor([[0.0, 1.0, -2.0, -0.0]])
    out = GraphPerturbation(eps=0.5)(h)
    assert out[0, 0] == 0 and out[0, 1] > 1 and out[0, 2] < -2 and out[0, 3] == 0
    assert torch.equal(GraphPerturbation(eps=0.0)(h), h)


def test_in_place_perturbation_equals_forward_under_the_same_seed():
    h = torch.randn(30, 2, 8)
    torch.manual_seed(7)
    expected = GraphPerturbation(0.1)(h)
    torch.manual_seed(7)
    inplace = h.clone()
    assert GraphPerturbation(0.1).perturb_(inplace) is inplace
    assert torch.equal(inplace, expected)


def test_perturbation_gradient_is_identity():
    h = torch.randn(4, 3, requires_grad=True)
    GraphPerturbation(0.1)(h).sum().backward()
    assert torch.equal(h.grad, torch.ones(4, 3))


def test_drop_edges():
    edge_index = torch.stack([torch.arange(10000), torch.arange(10000)])
    gen = torch.Generator().manual_seed(0)
    kept = drop_edges(edge_index, 0.3, generator=gen)
    assert 0.68 < kept.size(1) / 10000 < 0.72
    assert torch.all(kept[0, 1:] > kept[0, :-1])  # original order, no duplicates
    assert torch.equal(drop_edges(edge_index, 0.0), edge_index)
    assert drop_edges(edge_index, 1.0).size(1) == 0
    with pytest.raises(ValueError):
        drop_edges(edge_index, 1.5)
