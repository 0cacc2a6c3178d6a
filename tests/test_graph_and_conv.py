import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from mmgraph.data.graph import bipartite_edge_index, normalized_adjacency, user_item_adjacency
from mmgraph.nn.conv import LightGCNConv
from mmgraph.nn.sparse import sparse_matmul


def dense_lightgcn_adjacency(edges: torch.Tensor, num_users: int, num_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 written out densely from the definition."""
    n = num_users + num_items
    a = torch.zeros(n, n)
    a[edges[0], num_users + edges[1]] = 1.0
    a[num_users + edges[1], edges[0]] = 1.0
    deg = a.sum(1)
    inv_sqrt = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def random_edges(num_users: int, num_items: int, num_edges: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=gen)[:num_edges]
    return torch.stack([keys // num_items, keys % num_items])


def test_user_item_adjacency_equals_dense_definition():
    edges = random_edges(7, 5, 15, seed=1)
    adj = user_item_adjacency(edges, 7, 5)
    assert adj.layout == torch.sparse_csr
    expected = dense_lightgcn_adjacency(edges, 7, 5)
    assert torch.allclose(adj.to_dense(), expected, atol=1e-6)
    assert torch.allclose(adj.to_dense(), adj.to_dense().T)


def test_isolated_nodes_get_zero_rows():
    edges = torch.tensor([[0], [0]])
    adj = user_item_adjacency(edges, 3, 4).to_dense()
    assert adj[1].abs().sum() == 0 and adj[3 + 2].abs().sum() == 0
    assert torch.isclose(adj[0, 3], torch.tensor(1.0))


def test_conv_sparse_and_message_passing_paths_match_dense():
    edges = random_edges(6, 8, 20, seed=2)
    adj = user_item_adjacency(edges, 6, 8)
    dense = adj.to_dense()
    x = torch.randn(14, 5)
    conv = LightGCNConv()
    edge_index, weight = gcn_norm(bipartite_edge_index(edges, 6), None, 14, add_self_loops=False)
    assert torch.allclose(conv(x, adj, adj=adj), dense @ x, atol=1e-6)
    assert torch.allclose(conv(x, adj), dense @ x, atol=1e-6)
    assert torch.allclose(conv(x, edge_index, edge_weight=weight), dense @ x, atol=1e-6)


def test_sparse_matmul_gradient_uses_transpose_correctly():
    # A non-symmetric matrix: the backward must use A^T, which we pass explicitly.
    gen = torch.Generator().manual_seed(3)
    dense = (torch.rand(6, 4, generator=gen) > 0.5).float() * torch.rand(6, 4, generator=gen)
    x = torch.randn(4, 3, requires_grad=True)
    grad_out = torch.randn(6, 3)
    out = sparse_matmul(dense.to_sparse_csr(), x, dense.T.contiguous().to_sparse_csr())
    (grad,) = torch.autograd.grad(out, x, grad_out)
    assert torch.allclose(out, dense @ x, atol=1e-6)
    assert torch.allclose(grad, dense.T @ grad_out, atol=1e-6)


def test_normalized_adjacency_generic_graph():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    adj = normalized_adjacency(edge_index, 3).to_dense()
    s = 2**-0.5
    expected = torch.tensor([[0, s, 0], [s, 0, s], [0, s, 0]])
    assert torch.allclose(adj, expected, atol=1e-6)
