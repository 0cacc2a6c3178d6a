"""Item-ID dropout, the cold-start option: the layer, and every model that offers it."""

from __future__ import annotations

import pytest
import torch

from mmgraph.errors import ConfigError
from mmgraph.models import get_model
from mmgraph.nn import ItemIDDropout
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
