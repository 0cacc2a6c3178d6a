"""Layers added for the baselines, checked against dense formulas and hand computations."""

import pytest
import torch

from mmgraph.data.graph import user_item_adjacency
from mmgraph.nn import (
    ItemGraphPropagation,
    LatentItemGraph,
    LightGCNEncoder,
    ModalityProjection,
    degree_sensitive_edge_sample,
    embedding_norm,
    item_graph_csr,
    negative_cosine,
    propagate_items,
    row_sum_normalization,
    similarity_knn_graph,
)
from tests.test_graph_and_conv import dense_lightgcn_adjacency, random_edges


def raw_knn(features: torch.Tensor, k: int) -> torch.Tensor:
    """LATTICE's dense build_sim -> top-k with the cosine values kept (build_knn_neighborhood)."""
    unit = features / features.norm(dim=1, keepdim=True)
    sim = unit @ unit.T
    values, index = sim.topk(k, dim=1)
    return torch.zeros_like(sim).scatter(1, index, values)


def dense_lattice_knn(features: torch.Tensor, k: int) -> torch.Tensor:
    """raw_knn followed by compute_normalized_laplacian (D^-1/2 A D^-1/2, row sums)."""
    return dense_row_sum_norm(raw_knn(features, k))


def dense_row_sum_norm(adj: torch.Tensor) -> torch.Tensor:
    inv_sqrt = adj.sum(1).pow(-0.5)
    return inv_sqrt[:, None] * adj * inv_sqrt[None, :]


def to_dense(graph, num_items: int) -> torch.Tensor:
    edge_index, weight = graph
    dense = torch.zeros(num_items, num_items, dtype=weight.dtype)
    return dense.index_put((edge_index[1], edge_index[0]), weight, accumulate=True)


def test_lightgcn_encoder_is_the_mean_of_dense_powers():
    edges = random_edges(7, 9, 25, seed=1)
    adj = user_item_adjacency(edges, 7, 9)
    dense = dense_lightgcn_adjacency(edges, 7, 9)
    x = torch.randn(16, 5)
    expected = (x + dense @ x + dense @ dense @ x) / 3
    assert torch.allclose(LightGCNEncoder(2)(x, adj), expected, atol=1e-5)
    assert torch.equal(LightGCNEncoder(0)(x, adj), x)


def test_item_graph_propagation_without_residual_is_the_plain_power():
    graph = torch.rand(6, 6) * (torch.rand(6, 6) < 0.4)
    x = torch.randn(6, 3)
    plain = ItemGraphPropagation(2, residual=False)(x, graph.to_sparse_csr())
    assert torch.allclose(plain, graph @ graph @ x, atol=1e-6)
    residual = ItemGraphPropagation(1)(x, graph.to_sparse_csr())
    assert torch.allclose(residual, x + graph @ x, atol=1e-6)


def test_modality_projection_sums_to_one_linear_map_of_the_concatenation():
    features = {"image": torch.randn(10, 4), "text": torch.randn(10, 3)}
    projection = ModalityProjection(features, 5, init="xavier_normal")
    out = projection()
    assert list(out) == ["image", "text"] and out["image"].shape == (10, 5)
    weight = torch.cat([projection.linears[0].weight, projection.linears[1].weight], dim=1)
    bias = projection.linears[0].bias + projection.linears[1].bias
    concat = torch.cat([features["image"], features["text"]], dim=1)
    assert torch.allclose(out["image"] + out["text"], concat @ weight.T + bias, atol=1e-5)
    assert not any(key.startswith("features") for key in projection.state_dict())
    assert torch.equal(projection.raw("text"), features["text"])
    with pytest.raises(ValueError, match="init"):
        ModalityProjection(features, 5, init="orthogonal")


def test_embedding_norm_and_negative_cosine_against_hand_values():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # |a|_F = 5
    b = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # |b|_F = 1, 4 rows
    assert embedding_norm(a, b).item() == pytest.approx((5 + 1) / 4)
    online = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0], [3.0, 3.0]], requires_grad=True)
    loss = negative_cosine(online, target)
    assert loss.item() == pytest.approx(1 - (0.0 + 1.0) / 2)
    loss.backward()
    assert target.grad is None and online.grad is not None


def test_degree_sensitive_sampling_keeps_distinct_edges_in_the_multinomial_distribution():
    edges = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 0, 1, 3]])
    kept = degree_sensitive_edge_sample(edges, 3, 4, 0.5, torch.Generator().manual_seed(0))
    assert kept.shape == (2, 3)
    pairs = {tuple(p) for p in kept.T.tolist()}
    assert len(pairs) == 3 and pairs <= {tuple(p) for p in edges.T.tolist()}
    assert degree_sensitive_edge_sample(edges, 3, 4, 0.0).shape == (2, 0)
    assert torch.equal(degree_sensitive_edge_sample(edges, 3, 4, 1.0), edges)
    # inclusion frequencies equal those of torch.multinomial without replacement (FREEDOM's code)
    d_u, d_i = torch.tensor([3.0, 1.0, 2.0]), torch.tensor([2.0, 2.0, 1.0, 1.0])
    weight = (d_u[edges[0]] * d_i[edges[1]]).rsqrt()
    gen = torch.Generator().manual_seed(1)
    trials = 6000
    ours, reference = torch.zeros(6), torch.zeros(6)
    for _ in range(trials):
        kept = degree_sensitive_edge_sample(edges, 3, 4, 0.5, gen)
        ours += (edges.T[:, None, :] == kept.T[None]).all(-1).any(1).float()
        reference[torch.multinomial(weight, 3, replacement=False, generator=gen)] += 1
    assert torch.allclose(ours / trials, reference / trials, atol=0.03)
    assert (reference / trials).std() > 0.05  # the weights do matter


def test_similarity_knn_graph_equals_lattices_dense_build_in_values_and_gradients():
    torch.manual_seed(0)
    features = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    edge_index, weight = similarity_knn_graph(features, 4)
    dense = dense_lattice_knn(features, 4)
    assert torch.allclose(to_dense((edge_index, weight), 12), dense, atol=1e-10)
    probe = torch.randn(12, 12, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad((to_dense((edge_index, weight), 12) * probe).sum(), features)
    (grad_dense,) = torch.autograd.grad((dense * probe).sum(), features)
    assert torch.allclose(grad_ours, grad_dense, atol=1e-10)


def test_row_sum_normalization_counts_duplicate_edges_once_summed():
    edge_index = torch.tensor([[0, 0, 1, 2], [1, 1, 0, 2]])
    weight = torch.tensor([1.0, 2.0, 4.0, 0.0])
    dense = to_dense((edge_index, weight), 3)
    inv = dense.sum(1).pow(-0.5).nan_to_num(posinf=0.0)
    inv[dense.sum(1) <= 0] = 0.0
    expected = inv[:, None] * dense * inv[None, :]
    normalised = row_sum_normalization(edge_index, weight, 3)
    assert torch.allclose(to_dense((edge_index, normalised), 3), expected)


def test_latent_item_graph_equals_the_dense_lattice_formula_with_gradients():
    torch.manual_seed(0)
    features = {"image": torch.randn(15, 6), "text": torch.randn(15, 4)}
    layer = LatentItemGraph(features, dim=5, k=3, skip=0.9).double()
    with torch.no_grad():
        layer.modality_logits.copy_(torch.tensor([0.3, -0.2]))
    graph = layer()
    alpha = torch.softmax(layer.modality_logits, 0)
    projected = layer.projection()
    learned = dense_row_sum_norm(
        sum(a * raw_knn(f, 3) for a, f in zip(alpha, projected.values(), strict=True))
    )
    original = sum(
        a * dense_lattice_knn(x.double(), 3) for a, x in zip(alpha, features.values(), strict=True)
    )
    expected = 0.1 * learned + 0.9 * original
    assert torch.allclose(to_dense(graph, 15), expected, atol=1e-6)  # raw graphs: float32
    probe = torch.randn(15, 15, dtype=torch.float64)
    params = [layer.modality_logits, *layer.projection.parameters()]
    ours = torch.autograd.grad((to_dense(graph, 15) * probe).sum(), params)
    dense = torch.autograd.grad((expected * probe).sum(), params)
    for a, b in zip(ours, dense, strict=True):
        assert torch.allclose(a, b, atol=1e-9)
        assert a.abs().sum() > 0


def test_propagation_over_edge_lists_and_csr_agree_with_the_dense_product():
    torch.manual_seed(0)
    graph = similarity_knn_graph(torch.randn(10, 4), 3)
    x = torch.randn(10, 6, requires_grad=True)
    dense = to_dense(graph, 10)
    expected = dense @ (dense @ x)
    by_edges = propagate_items(x, graph, num_layers=2)
    by_csr = propagate_items(x, item_graph_csr(graph, 10), num_layers=2)
    assert torch.allclose(by_edges, expected, atol=1e-5)
    assert torch.allclose(by_csr, expected, atol=1e-5)
    (grad_csr,) = torch.autograd.grad(by_csr.sum(), x)
    assert torch.allclose(
        grad_csr, (dense.T @ dense.T).sum(1, keepdim=True).expand(-1, 6), atol=1e-5
    )
