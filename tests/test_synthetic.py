import numpy as np
import pytest
import torch

from mmgraph.data import load_dataset
from mmgraph.data.synthetic import SyntheticConfig, parse_spec, synthetic_dataset
from mmgraph.errors import DataError

SMALL = {"users": 600, "items": 400, "interactions": 12000, "clusters": 8}


def all_pairs(dataset):
    return torch.cat([dataset.edge_index(s) for s in ("train", "valid", "test")], dim=1)


def test_same_seed_same_data_and_the_spec_rebuilds_it():
    a, b = synthetic_dataset(**SMALL, seed=5), synthetic_dataset(**SMALL, seed=5)
    assert torch.equal(all_pairs(a), all_pairs(b))
    assert torch.equal(a.features("image"), b.features("image"))
    assert not torch.equal(all_pairs(a), all_pairs(synthetic_dataset(**SMALL, seed=6)))
    rebuilt = load_dataset(a.source)
    assert parse_spec(a.source) == SyntheticConfig(**SMALL, seed=5)
    assert torch.equal(all_pairs(rebuilt), all_pairs(a))


def test_sizes_distinct_pairs_and_power_law_degrees():
    data = synthetic_dataset(**SMALL)
    pairs = all_pairs(data)
    assert data.num_users == 600 and data.num_items == 400
    assert data.modalities == ["image", "text"] and data.features("text").shape == (400, 32)
    keys = pairs[0] * 400 + pairs[1]
    assert keys.unique().numel() == keys.numel()  # no repeated (user, item) pair
    assert 0.8 * 12000 <= keys.numel() <= 12000
    degree = torch.bincount(pairs[0], minlength=600).float()
    assert degree.max() > 5 * degree.median()  # heavy-tailed, not uniform


def test_mmrec_split_rule_per_user():
    data = synthetic_dataset(**SMALL)
    counts = {
        s: torch.bincount(data.edge_index(s)[0], minlength=600).numpy()
        for s in ("train", "valid", "test")
    }
    total = counts["train"] + counts["valid"] + counts["test"]
    held = np.where(total < 10, 2, (total * 0.2).astype(int))
    held = np.where(total < 3, 0, held)
    assert (counts["valid"] == held // 2).all()
    assert (counts["test"] == held - held // 2).all()


def test_planted_signal_in_interactions_and_features():
    config = SyntheticConfig(**SMALL, in_cluster=0.9, feature_noise=0.5)
    data = synthetic_dataset(config)
    features = torch.nn.functional.normalize(data.features("image"), dim=1)
    sim = features @ features.T
    # Items that share users are more alike in feature space than random item pairs.
    users, items = data.edge_index("train")
    first = torch.zeros(600, dtype=torch.long).scatter_reduce(
        0, users, items, reduce="amin", include_self=False
    )
    co_consumed = sim[first[users], items].mean()
    random_pairs = sim[torch.randint(0, 400, (5000,)), torch.randint(0, 400, (5000,))].mean()
    assert co_consumed > random_pairs + 0.3


@pytest.mark.parametrize(
    "spec, match",
    [
        ("synthetic:users=0", "users >= 1"),
        ("synthetic:users=10,items=10,interactions=101", "interactions <= users"),
        ("synthetic:in_cluster=2", "in_cluster"),
        ("synthetic:colour=3", "known keys"),
        ("synthetic:users=1.5", "not a valid value"),
        ("synthetic:modalities=image", "not a valid value"),
        ("synthetic-ish:users=3", "starts with"),
    ],
)
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(DataError, match=match):
        config = parse_spec(spec)
        synthetic_dataset(config)


def test_spec_numbers_and_modalities():
    config = parse_spec("synthetic:users=1e3,items=2_000,modalities=audio:8+text:4")
    assert (config.users, config.items) == (1000, 2000)
    assert dict(config.modalities) == {"audio": 8, "text": 4}
    assert parse_spec("synthetic:modalities=none").modalities == {}
