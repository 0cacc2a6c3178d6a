"""Item-ID dropout, the cold-start option: the layer, and every model that offers it."""

from __future__ import annotations

import pytest
import torch

from mmgraph.errors import ConfigError
from mmgraph.models import get_model
from mmgraph.nn import ItemDropout, ItemIDDropout
from tests.helpers import assert_cold_items_rank_as_zero_id_rows, tiny_dataset

MODELS = ["vbpr", "bm3", "freedom", "lattice", "mmssl"]


def test_zero_rate_is_the_identity_in_both_modes():
    layer = ItemIDDropout(0.0, torch.tensor([0, 2]), 4)
    table = torch.randn(4, 3)
    assert layer(table) is table
    assert layer.eval()(table) is table


def test_training_drops_whole_rows_at_the_rate_and_eval_zeroes_exactly_the_cold_rows():
    train_items = torch.tensor([0, 1, 1, 5, 7])
    layer = ItemIDDropout(0.3, train_items, 20000)
    table = torch.randn(20000, 4) + 10.0  # no zero entries of its own
    torch.manual_seed(0)
    out = layer.train()(table)
    dropped = (out == 0).all(1)
    assert torch.equal(out[~dropped], table[~dropped])  # kept rows are not rescaled
    assert ((out == 0).any(1) == dropped).all()  # rows are dropped whole
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.015)
    out = layer.eval()(table)
    warm = torch.zeros(20000, dtype=torch.bool)
    warm[train_items] = True
    assert torch.equal(out[warm], table[warm]) and (out[~warm] == 0).all()


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rates_outside_zero_one_are_a_config_error(rate):
    with pytest.raises(ConfigError, match=r"item_id_dropout must be in \[0, 1\)"):
        ItemIDDropout(rate, torch.tensor([0]), 2)


@pytest.mark.parametrize("name", MODELS)
def test_cold_items_are_ranked_as_with_a_zero_id_row(name):
    data = tiny_dataset(num_users=12, num_items=30, per_user=5, modalities={"a": 8, "b": 6})
    assert_cold_items_rank_as_zero_id_rows(get_model(name), data)


@pytest.mark.parametrize("name", MODELS)
def test_dropped_rows_get_no_gradient_through_the_score(name):
    data = tiny_dataset(num_users=12, num_items=30, per_user=5, modalities={"a": 8, "b": 6})
    torch.manual_seed(0)
    model = get_model(name).from_dataset(data, item_id_dropout=0.5).train()
    outputs = []
    model.id_dropout.register_forward_hook(lambda module, args, out: outputs.append(out))
    user_emb, item_emb = model()
    (user_emb.sum() + item_emb.sum()).backward()
    (masked,) = outputs  # one draw per forward pass
    kept = (masked != 0).any(1)
    assert 0 < kept.sum() < kept.numel()
    table = model.item_embedding.weight
    grad = table.grad.abs().sum(1)
    assert (grad[~kept] == 0).all() and (grad[kept] > 0).any()


# ---------------------------------------------------------------- whole-item dropout


def test_item_dropout_at_zero_draws_nothing_and_changes_nothing():
    layer = ItemDropout(0.0, torch.tensor([0, 2]), 4)
    edges = torch.tensor([[0, 1], [0, 2]])
    state = torch.random.get_rng_state()
    layer.resample()
    assert torch.equal(torch.random.get_rng_state(), state)
    table = torch.randn(4, 3)
    assert layer(table) is table and layer.kept_edges(edges) is edges


def test_item_dropout_drops_the_same_items_from_the_table_and_the_edges_for_an_epoch():
    num_items = 20000
    edges = torch.stack([torch.randint(0, 50, (60000,)), torch.randint(0, num_items, (60000,))])
    layer = ItemDropout(0.3, edges[1, :100], num_items).train()
    table = torch.randn(num_items, 4) + 10.0
    torch.manual_seed(0)
    layer.resample()
    out = layer(table)
    dropped = (out == 0).all(1)
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert torch.equal(layer(table), out)  # one draw holds until the next resample
    assert torch.equal(out[~dropped], table[~dropped])
    kept = layer.kept_edges(edges)
    assert torch.equal(kept, edges[:, ~dropped[edges[1]]])
    layer.resample()
    assert not torch.equal((layer(table) == 0).all(1), dropped)


def test_item_dropout_rate_outside_zero_one_names_its_option():
    with pytest.raises(ConfigError, match=r"item_dropout must be in \[0, 1\)"):
        ItemDropout(1.0, torch.tensor([0]), 2)


def _freedom_without_id_rows(model, without_id):
    """``S @ Q' + sum_m W_m x_m`` (``Q'``: the ID table with the ``without_id`` rows zeroed)."""
    zeroed = model.item_embedding.weight * (~without_id).unsqueeze(1)
    return model.item_graph.to_dense() @ zeroed + sum(model.content().values())


def test_freedom_item_dropout_scores_dropped_items_by_item_graph_and_content():
    """A dropped item has no edge in the epoch's graph and a zero ID row, so its training
    embedding is the item-graph hop over the other items' IDs plus its projected content."""
    data = tiny_dataset(num_users=12, num_items=30, per_user=5, modalities={"a": 8, "b": 6})
    torch.manual_seed(0)
    model = get_model("freedom").from_dataset(data, item_dropout=0.4, dropout=0.0).train()
    model.on_epoch_start(0)
    dropped = model.item_dropout.dropped
    assert 0 < dropped.sum() < dropped.numel()
    adj = model.pruned_adj.to_dense()
    item_block = adj[model.num_users :, : model.num_users]
    assert (item_block[dropped] == 0).all() and (item_block[~dropped].sum(1) > 0).any()
    _, items = model.encode(model.pruned_adj)
    expected = _freedom_without_id_rows(model, dropped)
    torch.testing.assert_close(items[dropped], expected[dropped])


def test_freedom_item_dropout_at_zero_keeps_the_pruned_graph_of_the_plain_model():
    data = tiny_dataset(num_users=12, num_items=30, per_user=5, modalities={"a": 8, "b": 6})
    plain = get_model("freedom").from_dataset(data)
    option = get_model("freedom").from_dataset(data, item_dropout=0.0)
    torch.manual_seed(1)
    plain.on_epoch_start(0)
    torch.manual_seed(1)
    option.on_epoch_start(0)
    assert torch.equal(plain.pruned_adj.to_dense(), option.pruned_adj.to_dense())


def test_freedom_item_dropout_ranks_cold_items_by_item_graph_and_content_and_warm_plus_content():
    data = tiny_dataset(num_users=12, num_items=30, per_user=5, modalities={"a": 8, "b": 6})
    torch.manual_seed(0)
    model = get_model("freedom").from_dataset(data, item_dropout=0.5).eval()
    cold = model.item_dropout.cold_items
    assert cold.any()
    users, items = model()
    torch.testing.assert_close(items[cold], _freedom_without_id_rows(model, cold)[cold])
    plain = get_model("freedom").from_dataset(data).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        plain.item_embedding.weight[cold] = 0.0
    plain_users, plain_items = plain()
    torch.testing.assert_close(users, plain_users)
    content = sum(model.content().values())
    torch.testing.assert_close(items[~cold], plain_items[~cold] + content[~cold])
