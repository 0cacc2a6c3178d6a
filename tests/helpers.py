"""Shared test helpers: small synthetic datasets, dense reference formulas, common checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mmgraph.data import InteractionDataset
from mmgraph.data.sampling import Batch
from mmgraph.errors import DataError
from mmgraph.eval import Evaluator
from mmgraph.models import Recommender
from mmgraph.train import Trainer, resolve_config, seed_everything

#: item modalities of the tiny datasets with one, two and three modalities
MODALITIES: dict[int, dict[str, int]] = {
    1: {"image": 8},
    2: {"image": 8, "text": 6},
    3: {"image": 8, "text": 6, "audio": 5},
}


def tiny_dataset(
    num_users: int = 30,
    num_items: int = 20,
    per_user: int = 6,
    modalities: dict[str, int] | None = None,
    seed: int = 0,
) -> InteractionDataset:
    """Every user has ``per_user`` distinct items: the last two go to valid and test."""
    gen = torch.Generator().manual_seed(seed)
    users, items, split = [], [], []
    for user in range(num_users):
        chosen = torch.randperm(num_items, generator=gen)[:per_user]
        users += [user] * per_user
        items += chosen.tolist()
        split += [0] * (per_user - 2) + [1, 2]
    features = {
        name: torch.randn(num_items, dim, generator=gen) for name, dim in (modalities or {}).items()
    }
    return InteractionDataset.from_interactions(
        torch.tensor(users),
        torch.tensor(items),
        torch.tensor(split),
        features,
        num_users=num_users,
        num_items=num_items,
        name="tiny",
    )


def lonely_user_dataset() -> InteractionDataset:
    """Four users and five items with image and text features: user 3 alone has item 4 (so
    shares no item with anyone); users 0-2 share items 0-3."""
    users = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0, 1, 2, 3])
    items = torch.tensor([0, 1, 1, 2, 2, 3, 4, 3, 0, 1, 3])
    split = torch.tensor([0] * 7 + [1, 1, 2, 2])
    gen = torch.Generator().manual_seed(0)
    features = {"image": torch.randn(5, 3, generator=gen), "text": torch.randn(5, 2, generator=gen)}
    return InteractionDataset.from_interactions(users, items, split, features)


def user_slice(dataset: InteractionDataset, first: int, last: int) -> InteractionDataset:
    """Users ``first..last-1`` (renumbered from 0) with the items they touch (renumbered)."""
    users, items, split = [], [], []
    for label, name in enumerate(("train", "valid", "test")):
        edges = dataset.edge_index(name)
        keep = (edges[0] >= first) & (edges[0] < last)
        users.append(edges[0][keep] - first)
        items.append(edges[1][keep])
        split.append(torch.full((int(keep.sum()),), label))
    kept, items = torch.unique(torch.cat(items), return_inverse=True)
    features = {m: dataset.features(m)[kept] for m in dataset.modalities}
    return InteractionDataset.from_interactions(
        torch.cat(users), items, torch.cat(split), features, last - first, kept.numel()
    )


def dense_user_weights(data: InteractionDataset, k: int, aggregation: str) -> torch.Tensor:
    """``[U, U]`` s_uv: top-k users by shared training items (ties: smaller id), then softmax
    of the counts (or 1/|N(u)|) over them, from a dense count matrix and plain loops."""
    num_users = data.num_users
    a = torch.zeros(num_users, data.num_items, dtype=torch.float64)
    edges = data.edge_index()
    a[edges[0], edges[1]] = 1.0
    shared = a @ a.T
    s = torch.zeros(num_users, num_users, dtype=torch.float64)
    for u in range(num_users):
        others = [v for v in range(num_users) if v != u and shared[u, v] > 0]
        others = sorted(others, key=lambda v: (-shared[u, v].item(), v))[:k]
        if not others:
            continue
        counts = shared[u, others]
        if aggregation == "softmax":
            s[u, others] = counts.exp() / counts.exp().sum()
        else:
            s[u, others] = 1.0 / len(others)
    return s


def assert_needs_item_features(model_cls: type[Recommender], name: str) -> None:
    """``model_cls`` refuses an ID-only dataset with an error that names the model ``name``."""
    with pytest.raises(DataError, match=f"'{name}' needs item modality features"):
        model_cls.from_dataset(tiny_dataset())


def assert_round_trip(
    model: Recommender, data: InteractionDataset, path: Path
) -> tuple[Recommender, dict[str, torch.Tensor]]:
    """Save ``model`` to ``path``, load it back on ``data`` and assert that both give equal
    embeddings; returns the loaded model and the state dict stored in the file."""
    model.save(path)
    loaded = Recommender.load(path, data)
    for a, b in zip(model(), loaded(), strict=True):
        assert torch.equal(a, b)
    return loaded, torch.load(path, weights_only=True)["state_dict"]


def parameters_without_gradient(model: torch.nn.Module) -> list[str]:
    """Names of the parameters whose gradient is missing or all zero."""
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]


def assert_all_parameters_get_gradients(model: Recommender, batch: Batch, label: Any = "") -> None:
    """Back-propagate the summed loss terms of ``batch`` and assert that every parameter of
    ``model`` gets a non-zero gradient (``label`` goes into the failure message)."""
    sum(model.loss(batch).values()).backward()
    missing = parameters_without_gradient(model)
    assert not missing, f"{label} {missing}"


def assert_bpr_and_preference_reg_terms(
    model: Recommender, batch: Batch, users: torch.Tensor, items: torch.Tensor, reg_weight: float
) -> None:
    """The loss terms of a model with per-modality ``modal_inputs`` (DualGNN, DRAGON) on
    ``batch`` are exactly ``loss_bpr``, the mean -log sigmoid of the score differences of the
    expected ``users`` and ``items`` (rel 1e-6), and ``loss_reg``, ``reg_weight`` times the mean
    squared batch preferences of every branch plus, with several modalities, the mean squared
    fusion weights; with one modality there are none (rel 1e-9)."""
    terms = model.loss(batch)
    assert set(terms) == {"loss_bpr", "loss_reg"}
    u = users[batch.users]
    pos = (u * items[batch.pos_items]).sum(1)
    neg = (u * items[batch.neg_items]).sum(1)
    bpr = sum(-torch.log(torch.sigmoid(p - n)) for p, n in zip(pos, neg)) / len(pos)
    assert terms["loss_bpr"].item() == pytest.approx(bpr.item(), rel=1e-6)
    reg = sum((b.preference[batch.users] ** 2).mean() for b in model.modal_inputs)
    if len(model.modal_inputs) > 1:
        reg = reg + (model.fusion.weight**2).mean()
    else:
        assert model.fusion is None
    assert terms["loss_reg"].item() == pytest.approx(reg_weight * reg.item(), rel=1e-9)


def assert_cold_items_rank_as_zero_id_rows(
    model_cls: type[Recommender], data: InteractionDataset
) -> None:
    """In eval mode, a model with ``item_id_dropout`` ranks the items without training
    interactions (there must be some) as the same model whose ID rows of those items are zero."""
    cold = torch.ones(data.num_items, dtype=torch.bool)
    cold[data.edge_index("train")[1]] = False
    assert cold.any()
    torch.manual_seed(0)
    with_option = model_cls.from_dataset(data, item_id_dropout=0.5).eval()
    plain = model_cls.from_dataset(data).eval()
    plain.load_state_dict(with_option.state_dict())
    users = torch.arange(data.num_users)
    before = plain.score(users)
    with torch.no_grad():
        plain.item_embedding.weight[cold] = 0.0
    expected = plain.score(users)
    assert not torch.allclose(before, expected)  # the cold ID rows did count before
    torch.testing.assert_close(with_option.score(users), expected)


def train_and_check_valid_recall(
    model_cls: type[Recommender],
    dataset: InteractionDataset,
    settings: dict[str, Any],
    margin: float,
) -> Recommender:
    """Train ``model_cls`` on ``dataset`` with ``settings`` (seeded with 0, recall@20 as the
    valid metric) and assert that its valid recall@20 beats the untrained model's by more
    than ``margin``; returns the trained model."""
    run = resolve_config(
        model_cls, [("test", {**settings, "ks": [20], "valid_metric": "recall@20"})]
    )
    seed_everything(0)
    model = model_cls.from_dataset(dataset, **run.hparams)
    evaluator = Evaluator(dataset, ks=[20])
    untrained = evaluator.evaluate(model, "valid")["recall@20"]
    result = Trainer(model, dataset, run, evaluator.evaluate, progress=False, log=None).fit()
    assert result.valid["recall@20"] > untrained + margin
    return model
