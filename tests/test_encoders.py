import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.graph import user_item_adjacency
from mmgraph.nn import (
    FeatureProjector,
    ItemGraphPropagation,
    LightGCNConv,
    ModalityFusion,
    MultiBranchLightGCN,
    UserItemInput,
    csr_transpose,
    stack_user_item_inputs,
)
from mmgraph.nn.noise import uniform_like
from tests.helpers import tiny_dataset


def test_feature_projector_is_linear_leaky_relu_linear():
    proj = FeatureProjector(5, out_dim=3, hidden_dim=7)
    x = torch.randn(4, 5)
    hidden = x @ proj.hidden.weight.T + proj.hidden.bias
    hidden = torch.where(hidden > 0, hidden, 0.01 * hidden)
    assert torch.allclose(proj(x), hidden @ proj.out.weight.T + proj.out.bias, atol=1e-6)


def test_user_item_input_stacks_users_then_projected_items_and_normalises_rows():
    layer = UserItemInput(num_users=6, in_dim=5, dim=4, hidden_dim=8)
    items = torch.randn(3, 5)
    x0 = layer(items)
    assert x0.shape == (9, 4)
    assert torch.allclose(x0.norm(dim=1), torch.ones(9), atol=1e-6)
    assert torch.allclose(x0[:6], F.normalize(layer.preference, dim=1))
    assert torch.allclose(x0[6:], F.normalize(layer.projector(items), dim=1))


def test_stacked_user_item_inputs_equal_the_stacked_branch_tables_with_their_gradients():
    torch.manual_seed(3)
    branches = [UserItemInput(num_users=6, in_dim=d, dim=4, hidden_dim=8) for d in (5, 2, 5)]
    items = [torch.randn(3, 5), torch.randn(3, 2), torch.randn(3, 5)]
    weight = torch.randn(9, 3, 4)
    stacked = stack_user_item_inputs(branches, items)
    (stacked * weight).square().sum().backward()
    got = [p.grad.clone() for b in branches for p in b.parameters()]
    for b in branches:
        b.zero_grad(set_to_none=True)
    reference = torch.stack([b(x) for b, x in zip(branches, items, strict=True)], dim=1)
    (reference * weight).square().sum().backward()
    assert torch.allclose(stacked, reference, rtol=0, atol=1e-7)
    want = [p.grad for b in branches for p in b.parameters()]
    assert len(got) == len(want) == 15
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-7)


def test_multi_branch_propagation_equals_per_branch_lightgcn_layer_sum():
    data = tiny_dataset()
    adj = user_item_adjacency(data.edge_index(), data.num_users, data.num_items)
    x = torch.randn(50, 3, 4)
    conv = LightGCNConv()
    out = MultiBranchLightGCN(num_layers=2)(x, adj)
    for b in range(3):
        h1 = conv(x[:, b], adj, adj=adj)
        h2 = conv(h1, adj, adj=adj)
        assert torch.allclose(out[:, b], x[:, b] + h1 + h2, atol=1e-5)


def test_multi_branch_perturbation_touches_only_flagged_branches():
    data = tiny_dataset()
    adj = user_item_adjacency(data.edge_index(), data.num_users, data.num_items)
    x = torch.randn(50, 3, 4)
    layer = MultiBranchLightGCN(num_layers=2, eps=0.1)
    clean = layer(x, adj)
    noisy = layer(x, adj, perturbed=[False, True, False])
    assert torch.allclose(noisy[:, [0, 2]], clean[:, [0, 2]], atol=1e-6)
    # Hop 1 gets noise of norm 0.1 per row; the noise then propagates through hop 2.
    diff = (noisy[:, 1] - clean[:, 1]).norm(dim=1)
    assert torch.all(diff > 0) and torch.all(diff < 0.1 + 0.1 * 2 + 1e-4)
    with pytest.raises(ValueError, match="flags"):
        layer(x, adj, perturbed=[True])


def test_multi_branch_all_perturbed_equals_dense_noisy_lightgcn():
    data = tiny_dataset()
    adj = user_item_adjacency(data.edge_index(), data.num_users, data.num_items)
    dense = adj.to_dense()
    x = torch.randn(50, 2, 4)
    torch.manual_seed(3)
    out = MultiBranchLightGCN(num_layers=2, eps=0.1)(x, adj, perturbed=True)
    torch.manual_seed(3)  # the layer draws one [N, B, d] uniform tensor per hop, in order
    expected, h = x.clone(), x
    for _ in range(2):
        h = torch.einsum("nm,mbd->nbd", dense, h)
        noise = uniform_like(h)
        h = h + torch.sign(h) * 0.1 * noise / noise.norm(dim=-1, keepdim=True)
        expected = expected + h
    assert torch.allclose(out, expected, atol=1e-5)


def test_item_graph_propagation_is_residual_and_differentiable():
    dense = torch.rand(6, 6) * (torch.rand(6, 6) < 0.5)
    graph = dense.to_sparse_csr()
    x = torch.randn(6, 5, requires_grad=True)
    out = ItemGraphPropagation(num_layers=2)(x, graph, csr_transpose(graph))
    assert torch.allclose(out, x + dense @ (dense @ x), atol=1e-5)
    out.sum().backward()
    column_sums = (torch.eye(6) + dense @ dense).sum(0)  # d sum(x + S^2 x) / d x_j
    assert torch.allclose(x.grad, column_sums[:, None].expand(6, 5), atol=1e-5)
    assert torch.equal(ItemGraphPropagation(num_layers=0)(x, graph), x)


@pytest.mark.parametrize("num_layers", [0, 1, 2, 3])
def test_multi_branch_rows_equal_the_full_output_rows_and_gradient(num_layers):
    data = tiny_dataset()
    adj = user_item_adjacency(data.edge_index(), data.num_users, data.num_items)
    rows = torch.tensor([0, 3, 4, 31, 40, 49])
    layer = MultiBranchLightGCN(num_layers=num_layers)
    x = torch.randn(50, 3, 4, requires_grad=True)
    weights = torch.randn(len(rows), 3, 4)
    out = layer(x, adj, rows=rows)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    full = layer(x, adj)[rows]
    (expected_grad,) = torch.autograd.grad((full * weights).sum(), x)
    assert out.shape == (len(rows), 3, 4)
    assert torch.allclose(out, full, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    with pytest.raises(ValueError, match="strictly increasing"):
        layer(x, adj, rows=torch.tensor([3, 0]))


@pytest.mark.parametrize("perturbed", [True, [False, True]])
def test_multi_branch_rows_draw_the_last_hop_noise_for_those_rows_only(perturbed):
    data = tiny_dataset()
    adj = user_item_adjacency(data.edge_index(), data.num_users, data.num_items)
    dense = adj.to_dense()
    rows = torch.tensor([1, 2, 30, 44])
    x = torch.randn(50, 2, 4)
    torch.manual_seed(3)
    out = MultiBranchLightGCN(num_layers=2, eps=0.1)(x, adj, perturbed=perturbed, rows=rows)
    noisy = [True, True] if perturbed is True else perturbed

    def perturb(h):  # noise on the flagged branches, drawn for h's rows
        noise = uniform_like(h[:, noisy])
        h = h.clone()
        h[:, noisy] += torch.sign(h[:, noisy]) * 0.1 * noise / noise.norm(dim=-1, keepdim=True)
        return h

    torch.manual_seed(3)
    h1 = perturb(torch.einsum("nm,mbd->nbd", dense, x))
    h2 = perturb(torch.einsum("nm,mbd->nbd", dense[rows], h1))
    assert torch.allclose(out, (x + h1)[rows] + h2, atol=1e-5)


@pytest.mark.parametrize("num_layers", [0, 1, 2])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("with_transpose", [True, False])
def test_item_graph_rows_read_only_their_inputs_and_equal_the_full_rows(
    num_layers, residual, with_transpose
):
    gen = torch.Generator().manual_seed(1)
    dense = torch.rand(12, 12, generator=gen) * (torch.rand(12, 12, generator=gen) < 0.15)
    graph = dense.to_sparse_csr()
    transpose = csr_transpose(graph) if with_transpose else None
    layer = ItemGraphPropagation(num_layers, residual=residual)
    rows = torch.tensor([2, 5, 9])
    inputs = layer.input_rows(graph, rows)
    # The inputs are the L-hop neighbourhood of rows (plus rows when residual), from dense S.
    reach = torch.zeros(12, dtype=torch.bool)
    reach[rows] = True
    for _ in range(num_layers):
        reach = (dense[reach] != 0).any(0)
    if residual or not num_layers:
        reach[rows] = True
    assert torch.equal(inputs, reach.nonzero().squeeze(1))

    x = torch.randn(12, 3, requires_grad=True)
    weights = torch.randn(3, 3)
    out = layer(x[inputs], graph, transpose, rows=rows)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    full = layer(x, graph, transpose)[rows]
    (expected_grad,) = torch.autograd.grad((full * weights).sum(), x)
    assert torch.allclose(out, full, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    with pytest.raises(ValueError, match="input_rows"):
        layer(x, graph, transpose, rows=rows)


def test_fusion_of_some_users_takes_their_weights():
    fusion = ModalityFusion(num_users=5, num_modalities=2)
    users, items = torch.randn(5, 2, 3), torch.randn(4, 2, 3)
    ids = torch.tensor([1, 4])
    some_users, some_items = fusion(users[ids], items, ids)
    assert torch.equal(some_users, fusion(users, items)[0][ids])
    assert torch.equal(some_items, items.flatten(1))


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
def test_fusion_weights_users_and_concatenates(num_modalities):
    torch.manual_seed(0)
    fusion = ModalityFusion(num_users=4, num_modalities=num_modalities)
    w = fusion.weight.detach()
    assert torch.allclose(w.sum(1), torch.ones(4))  # starts as a row softmax
    users, items = torch.randn(4, num_modalities, 2), torch.randn(5, num_modalities, 2)
    fused_users, fused_items = fusion(users, items)
    assert fused_users.shape == (4, 2 * num_modalities) and fused_items.shape == (
        5,
        2 * num_modalities,
    )
    for m in range(num_modalities):
        block = slice(2 * m, 2 * m + 2)
        assert torch.allclose(fused_users[:, block], w[:, m : m + 1] * users[:, m])
        assert torch.equal(fused_items[:, block], items[:, m])


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("rows", [None, torch.tensor([0, 2, 3, 7, 11])])
@pytest.mark.parametrize("perturbed", [None, True])
def test_multi_branch_gradient_equals_autograd_of_the_dense_layer_sum(num_layers, rows, perturbed):
    """A non-symmetric matrix, so the backward must use the transpose (``adj``); the noise
    is a constant of the graph (sign(h) has no gradient)."""
    torch.manual_seed(0)
    dense = torch.rand(12, 12) * (torch.rand(12, 12) < 0.4)
    adj_t = dense.to_sparse_csr()
    x = torch.randn(12, 2, 3, dtype=torch.float32, requires_grad=True)
    layer = MultiBranchLightGCN(num_layers=num_layers, eps=0.1)
    out = layer(x, adj_t, csr_transpose(adj_t), perturbed=perturbed, rows=rows)
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    h, expected = x, x
    for _ in range(num_layers):
        h = torch.einsum("nm,mbd->nbd", dense, h)
        expected = expected + h
    expected = expected if rows is None else expected[rows]
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    assert torch.allclose(grad, expected_grad, atol=1e-5)
    if perturbed is None:
        assert torch.allclose(out, expected, atol=1e-5)
