"""MMGCN against a dense recomputation of the paper's layers and MMRec's loss."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.graph import bipartite_edge_index
from mmgraph.data.sampling import Batch
from mmgraph.models import MMGCN
from mmgraph.nn import MMGCNConv, mmgcn_adjacency
from tests.conftest import requires_shared
from tests.helpers import (
    assert_all_parameters_get_gradients,
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)

BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))
SWITCHES = [
    {},  # MMRec's defaults: concatenation, ID embedding, mean aggregation, 256-d projection
    {"concat": False},
    {"has_id": False, "aggregation": "add"},
    {"latent_dim": None, "num_layers": 2},
]


def data_with_features():
    return tiny_dataset(modalities={"image": 8, "text": 6})


def neighbours(data) -> list[list[int]]:
    """Training neighbours of every node (users first, item ``i`` is node ``U + i``)."""
    adjacent = [[] for _ in range(data.num_users + data.num_items)]
    for user, item in data.edge_index("train").T.tolist():
        adjacent[user].append(data.num_users + item)
        adjacent[data.num_users + item].append(user)
    return adjacent


def lrelu(x):
    return F.leaky_relu(x, 0.01)


def dense_layer(conv, x, adjacent, id_embedding, aggregation):
    """One MMGCN layer from the paper's equations, the aggregation as a loop over nodes."""
    messages = x @ conv.weight
    aggregated = torch.zeros_like(messages)
    for node, others in enumerate(adjacent):
        if others:
            total = messages[others].sum(0)
            aggregated[node] = total / len(others) if aggregation == "mean" else total
    h = lrelu(aggregated)
    own = lrelu(x @ conv.self_linear.weight.T + conv.self_linear.bias)
    if id_embedding is not None:
        own = own + id_embedding
    w2, b2 = conv.combine.weight, conv.combine.bias
    if conv.concat:
        return lrelu(torch.cat([h, own], dim=1) @ w2.T + b2)
    return lrelu(h @ w2.T + b2 + own)


def dense_representation(model, data, aggregation):
    adjacent = neighbours(data)
    outputs = []
    for modality, branch in zip(data.modalities, model.branches, strict=True):
        items = data.features(modality)
        if branch.projection is not None:
            items = items @ branch.projection.weight.T + branch.projection.bias
        x = torch.cat([branch.preference, items])
        x = x / x.norm(dim=1, keepdim=True)
        for conv in branch.convs:
            x = dense_layer(conv, x, adjacent, model.id_embedding, aggregation)
        outputs.append(x)
    return torch.stack(outputs).mean(0)


@pytest.mark.parametrize("switches", SWITCHES, ids=str)
def test_forward_and_loss_match_the_dense_formulas(switches):
    data = data_with_features()
    model = MMGCN.from_dataset(data, embedding_dim=4, reg_weight=0.3, **switches)
    expected = dense_representation(model, data, switches.get("aggregation", "mean"))
    users, items = model()
    assert users.shape == (30, 4) and items.shape == (20, 4)
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-5)
    assert len(model.branches[0].convs) == switches.get("num_layers", 3)
    assert (model.id_embedding is None) == (switches.get("has_id") is False)

    # MMRec's batch: each user twice, its positive and negative item interleaved
    user_rows = BATCH.users.repeat_interleave(2)
    item_rows = torch.stack([BATCH.pos_items, BATCH.neg_items]).T.reshape(-1)
    scores = (expected[user_rows] * expected[30 + item_rows]).sum(1).view(-1, 2)
    expected_bpr = -torch.log(torch.sigmoid(scores[:, 0] - scores[:, 1])).mean()
    reg = sum(branch.preference.pow(2).mean() for branch in model.branches)
    if model.id_embedding is not None:
        table = model.id_embedding
        reg = reg + (table[user_rows] ** 2 + table[30 + item_rows] ** 2).mean()
    terms = model.loss(BATCH)
    assert set(terms) == {"loss_bpr", "loss_reg"}
    assert terms["loss_bpr"].item() == pytest.approx(expected_bpr.item(), rel=1e-5)
    assert terms["loss_reg"].item() == pytest.approx(0.3 * reg.item(), rel=1e-5)


def test_conv_sparse_and_message_passing_paths_agree_in_value_and_gradient():
    data = data_with_features()
    edges = bipartite_edge_index(data.edge_index("train"), data.num_users)
    for aggregation in ("mean", "add"):
        adj_t = mmgcn_adjacency(edges, 50, aggregation)
        adj = adj_t.to_dense().T.to_sparse_csr()
        conv = MMGCNConv(7, 4, concat=True, aggregation=aggregation)
        x = torch.randn(50, 7, requires_grad=True)
        ids = torch.randn(50, 4)
        weights = torch.randn(50, 4)
        (fast,) = torch.autograd.grad((conv(x, adj_t, ids, adj) * weights).sum(), x)
        (slow,) = torch.autograd.grad((conv(x, edges, ids) * weights).sum(), x)
        assert torch.allclose(conv(x, adj_t, ids, adj), conv(x, edges, ids), atol=1e-6)
        assert torch.allclose(fast, slow, atol=1e-6)
    # a node without neighbours aggregates zero under the mean
    isolated = mmgcn_adjacency(torch.tensor([[0], [1]]), 3).to_dense()
    assert torch.equal(isolated, torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 0]]))


def test_every_parameter_gets_a_gradient():
    model = MMGCN.from_dataset(data_with_features(), embedding_dim=4)
    assert_all_parameters_get_gradients(model, BATCH)


def test_reference_freezes_the_id_table_and_preferences():
    data = data_with_features()
    model = MMGCN.from_dataset(data, embedding_dim=4, reference=True)
    sum(model.loss(BATCH).values()).backward()
    frozen = {"id_embedding", "branches.0.preference", "branches.1.preference"}
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == (name not in frozen), name
        assert (parameter.grad is None) == (name in frozen), name
    # with nothing trainable in it, the regulariser is a logged constant
    assert not model.loss(BATCH)["loss_reg"].requires_grad


def test_refuses_an_id_only_dataset_and_round_trips(tmp_path):
    assert_needs_item_features(MMGCN, "mmgcn")
    data = data_with_features()
    model = MMGCN.from_dataset(data, embedding_dim=4, latent_dim=8, concat=False)
    loaded, saved = assert_round_trip(model, data, tmp_path / "model.pt")
    assert isinstance(loaded, MMGCN) and not loaded.branches[0].convs[0].concat
    assert not any(key.startswith(("features", "adj")) for key in saved)


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    settings.update(latent_dim=32)
    train_and_check_valid_recall(MMGCN, tiktok_slice, settings, margin=0.005)
