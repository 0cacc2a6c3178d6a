"""Evaluator end to end on a tiny dataset, against a per-user full-sort reference."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mmgraph.data.dataset import InteractionDataset, build_csr
from mmgraph.errors import DataError
from mmgraph.eval import DEFAULT_KS, Evaluator, evaluate_scores, topk_recommendations
from tests.test_metrics import reference_metrics

NUM_USERS = 13


def tiny_dataset(num_items: int, seed: int = 0) -> InteractionDataset:
    """Random disjoint train/valid/test items per user.

    User 0 has no valid items, user 1 no test items, user 2 nothing but training items,
    user 3 no training items, user 4 many training items (few unseen items left).
    """
    gen = torch.Generator().manual_seed(seed)
    users, items, split = [], [], []
    for u in range(NUM_USERS):
        perm = torch.randperm(num_items, generator=gen).tolist()
        n_train = 0 if u == 3 else num_items - 4 if u == 4 else 2 + u % 5
        n_valid = 0 if u in (0, 2) else 1 + u % 3
        n_test = 0 if u in (1, 2) else 1 + (u * 7) % 4
        sizes = (n_train, n_valid, n_test)
        start = 0
        for label, size in enumerate(sizes):
            for item in perm[start : start + size]:
                users.append(u)
                items.append(item)
                split.append(label)
            start += size
    return InteractionDataset.from_interactions(
        torch.tensor(users), torch.tensor(items), torch.tensor(split), num_items=num_items
    )


class StandIn(nn.Module):
    """Dot-product model following the evaluator's contract; records how it is called."""

    def __init__(self, num_users: int, num_items: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.user = nn.Parameter(torch.randn(num_users, 8, generator=gen))
        self.item = nn.Parameter(torch.randn(num_items, 8, generator=gen))
        self.dropout = nn.Dropout(0.5)  # a submodule whose mode must be restored
        self.bias: Tensor | None = None  # optional [U, I] score offset
        self.forward_calls: list[tuple[bool, bool]] = []  # (training, grad enabled)
        self.scored_users: list[Tensor] = []

    def forward(self) -> tuple[Tensor, Tensor]:
        self.forward_calls.append((self.training, torch.is_grad_enabled()))
        return self.user, self.item

    def score(self, users: Tensor, embeddings: tuple[Tensor, Tensor]) -> Tensor:
        self.scored_users.append(users.clone())
        user_emb, item_emb = embeddings
        scores = user_emb[users] @ item_emb.t()
        if self.bias is not None:
            scores = scores + self.bias[users]
        return scores

    def all_scores(self) -> Tensor:
        with torch.no_grad():
            scores = self.user @ self.item.t()
            return scores + self.bias if self.bias is not None else scores


def indicator(dataset: InteractionDataset, split: str) -> Tensor:
    """``[U, I]`` float 0/1 matrix of a split (for building biased stand-in scores)."""
    out = torch.zeros(dataset.num_users, dataset.num_items)
    edges = dataset.edge_index(split)
    out[edges[0], edges[1]] = 1.0
    return out


def items_by_user(dataset: InteractionDataset, split: str) -> list[set[int]]:
    out: list[set[int]] = [set() for _ in range(dataset.num_users)]
    for u, i in dataset.edge_index(split).t().tolist():
        out[u].add(i)
    return out


def brute_force_per_user(
    scores: Tensor, dataset: InteractionDataset, split: str, ks: tuple[int, ...]
) -> dict[str, dict[int, float]]:
    """Per user: drop training items, sort everything else by score, apply the definitions.

    The ``cold/`` and ``warm/`` parts restrict the user's targets to items without / with a
    training interaction (users with no such target are left out of that part).
    """
    train = items_by_user(dataset, "train")
    targets = items_by_user(dataset, split)
    warm_items = set().union(*train)
    out: dict[str, dict[int, float]] = {}
    for u in range(dataset.num_users):
        if not targets[u]:
            continue
        row = scores[u].tolist()
        ranked = sorted((i for i in range(len(row)) if i not in train[u]), key=lambda i: -row[i])
        parts = {
            "": targets[u],
            "cold/": targets[u] - warm_items,
            "warm/": targets[u] & warm_items,
        }
        for prefix, part_targets in parts.items():
            if not part_targets:
                continue
            for k in ks:
                for key, value in reference_metrics(ranked, part_targets, k).items():
                    out.setdefault(prefix + key, {})[u] = value
    return out


def brute_force(
    scores: Tensor, dataset: InteractionDataset, split: str, ks: tuple[int, ...]
) -> dict[str, float]:
    """Means of :func:`brute_force_per_user`, with each part's number of users."""
    per_user = brute_force_per_user(scores, dataset, split, ks)
    means = {key: sum(values.values()) / len(values) for key, values in per_user.items()}
    for part in ("cold", "warm"):
        means[f"{part}/users"] = float(len(per_user.get(f"{part}/recall@{ks[0]}", {})))
    return means


@pytest.mark.parametrize("num_items", [17, 80])  # 17 < max(ks) = 50: the clamped path
@pytest.mark.parametrize("split", ["valid", "test"])
def test_matches_brute_force_for_every_batch_size(num_items: int, split: str) -> None:
    dataset = tiny_dataset(num_items)
    model = StandIn(dataset.num_users, num_items)
    expected = brute_force(model.all_scores(), dataset, split, DEFAULT_KS)
    results = [Evaluator(dataset, batch_size=b).evaluate(model, split) for b in (1, 3, 1000)]
    assert expected["cold/users"] > 0 and expected["warm/users"] > 0
    for got in results:
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    # Batching only changes the order of float64 sums.
    for got in results[1:]:
        assert got == pytest.approx(results[0], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_scores_exactly_the_users_with_targets(split: str) -> None:
    dataset = tiny_dataset(30)
    model = StandIn(dataset.num_users, 30)
    Evaluator(dataset, batch_size=4).evaluate(model, split)
    scored = torch.cat(model.scored_users).tolist()
    expected = [u for u, t in enumerate(items_by_user(dataset, split)) if t]
    assert scored == expected
    # User 0 has no valid items, user 1 no test items, user 2 neither.
    assert 2 not in scored
    assert (0 in scored, 1 in scored) == ((False, True) if split == "valid" else (True, False))


def test_training_items_are_masked_and_only_them() -> None:
    dataset = tiny_dataset(80)
    model = StandIn(dataset.num_users, 80)
    # Training items score highest, then valid, then test items: only a working training
    # mask lets the split's items reach the top.
    model.bias = 300 * indicator(dataset, "train") + 200 * indicator(dataset, "valid")
    model.bias += 100 * indicator(dataset, "test")
    valid = Evaluator(dataset).evaluate(model, "valid")
    assert valid["recall@5"] == pytest.approx(1.0)  # every user has <= 3 valid items
    assert valid["ndcg@5"] == pytest.approx(1.0)
    assert valid["map@5"] == pytest.approx(1.0)
    # At test time valid items are *not* masked (MMRec): they come before the test items.
    test = Evaluator(dataset).evaluate(model, "test")
    assert test["ndcg@5"] < 1.0
    assert test == pytest.approx(brute_force(model.all_scores(), dataset, "test", DEFAULT_KS))


def test_masked_items_never_count_as_hits() -> None:
    # User 0 trained on items 0-4 and has test items 4 (also a training item) and 5: only item
    # 5 is rankable, so the -inf tail of its top-5 list (items 0-4, item 4 included) must
    # count as misses. (MMRec would count item 4 if it landed in the tail.)
    dataset = InteractionDataset.from_interactions(
        torch.tensor([0] * 7 + [1, 1]),
        torch.tensor([0, 1, 2, 3, 4, 4, 5, 0, 1]),
        torch.tensor([0, 0, 0, 0, 0, 2, 2, 0, 2]),
    )
    model = StandIn(2, 6)
    got = Evaluator(dataset, ks=(5,)).evaluate(model, "test")
    # User 0: recall 1/2 (item 5 at rank 1); user 1: item 1 among 5 unseen items -> recall 1.
    assert got["recall@5"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["precision@5"] == pytest.approx((1 / 5 + 1 / 5) / 2)


def test_model_mode_grad_and_single_forward() -> None:
    dataset = tiny_dataset(20)
    model = StandIn(dataset.num_users, 20)
    model.train()
    Evaluator(dataset, batch_size=2).evaluate(model, "test")
    assert model.forward_calls == [(False, False)]  # eval mode, no grad, computed once
    assert model.training and model.dropout.training
    model.eval()
    model.dropout.train()  # mixed modes are restored per submodule
    Evaluator(dataset).evaluate(model, "valid")
    assert not model.training and model.dropout.training


def test_ngcf_ndcg_is_reported_only_on_request() -> None:
    dataset = tiny_dataset(40)
    model = StandIn(dataset.num_users, 40)
    plain = Evaluator(dataset, ks=(10, 5)).evaluate(model, "test")
    metrics = [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map", "hit") for k in (5, 10)]
    parts = [f"{part}/{key}" for part in ("cold", "warm") for key in [*metrics, "users"]]
    assert sorted(plain) == sorted(metrics + parts)
    extended = Evaluator(dataset, ks=(5, 10), ngcf_ndcg=True).evaluate(model, "test")
    for k in (5, 10):
        assert extended[f"ngcf_ndcg@{k}"] >= extended[f"ndcg@{k}"]
        assert extended[f"ndcg@{k}"] == pytest.approx(plain[f"ndcg@{k}"])


@pytest.mark.parametrize("split", ["valid", "test"])
def test_per_user_values_match_brute_force_and_average_to_the_means(split: str) -> None:
    dataset = tiny_dataset(80, seed=3)
    model = StandIn(dataset.num_users, 80, seed=2)
    evaluator = Evaluator(dataset, batch_size=4)
    per_user = evaluator.per_user(model, split)
    means = evaluator.evaluate(model, split)
    expected = brute_force_per_user(model.all_scores(), dataset, split, DEFAULT_KS)
    users = per_user["user"].tolist()
    assert users == sorted(expected["recall@20"])
    for key, reference in expected.items():
        values = per_user[key]
        for position, user in enumerate(users):
            if user in reference:
                assert values[position].item() == pytest.approx(reference[user], abs=1e-12), key
            else:  # not in this part
                assert torch.isnan(values[position]), key
        assert values.nanmean().item() == pytest.approx(means[key], rel=1e-12), key


def test_part_without_targets_reports_only_its_user_count() -> None:
    # Every test item of this dataset has a training interaction: no cold targets.
    dataset = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 2])
    )
    got = Evaluator(dataset, ks=(1,)).evaluate(StandIn(2, 2), "test")
    assert got["cold/users"] == 0 and "cold/recall@1" not in got
    assert got["warm/users"] == 1 and got["warm/recall@1"] == got["recall@1"]


def test_errors() -> None:
    dataset = InteractionDataset.from_interactions(
        torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), torch.tensor([0, 0, 2])
    )
    model = StandIn(2, 3)
    with pytest.raises(DataError, match="no valid interactions"):
        Evaluator(dataset).evaluate(model, "valid")
    with pytest.raises(ValueError, match="split"):
        Evaluator(dataset).evaluate(model, "train")
    with pytest.raises(ValueError, match="ks"):
        Evaluator(dataset, ks=(0, 5))
    seen, targets = dataset.user_items("train"), dataset.user_items("test")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores(lambda u: torch.full((u.numel(), 3), float("nan")), seen, targets, 3)
    with pytest.raises(ValueError, match="shape"):
        evaluate_scores(lambda u: torch.zeros(u.numel(), 4), seen, targets, 3)


# ---------------------------------------------------------------- topk_recommendations


def test_topk_recommendations_excludes_seen_items() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 3, (6, 9), generator=gen).float()  # ties
    seen_rows = torch.tensor([0, 0, 0, 2, 3, 3, 3, 3, 3, 3, 3, 3])
    seen_cols = torch.tensor([1, 4, 8, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    seen = build_csr(seen_rows, seen_cols, 6)
    users = torch.tensor([3, 0, 2, 5])
    original = scores[users].clone()
    values, items = topk_recommendations(scores[users], seen, users, k=4)
    assert values.shape == items.shape == (4, 4)
    seen_sets = {0: {1, 4, 8}, 2: {0}, 3: set(range(8)), 5: set()}
    for row, u in enumerate(users.tolist()):
        finite = values[row] > float("-inf")
        assert not set(items[row][finite].tolist()) & seen_sets[u]
        # Returned values are the user's scores, in non-increasing order.
        assert torch.equal(values[row][finite], original[row][items[row][finite]])
        assert torch.all(values[row][:-1] >= values[row][1:])
        # The k best unseen scores are returned (ties may swap items, not values).
        unseen = sorted(
            (original[row, i].item() for i in range(9) if i not in seen_sets[u]), reverse=True
        )
        assert values[row][finite].tolist() == unseen[:4]
    # User 3 has a single unseen item: the rest of its list is -inf padding.
    assert values[0].isinf().sum().item() == 3 and items[0, 0].item() == 8


def test_topk_recommendations_copy_inplace_and_clamp() -> None:
    scores = torch.arange(12, dtype=torch.float).view(2, 6)
    seen = build_csr(torch.tensor([0]), torch.tensor([5]), 2)
    users = torch.tensor([0, 1])
    before = scores.clone()
    _, items = topk_recommendations(scores, seen, users, k=10)  # clamped to 6 items
    assert items.shape == (2, 6) and torch.equal(scores, before)
    assert items[0, :5].tolist() == [4, 3, 2, 1, 0] and items[1].tolist() == [5, 4, 3, 2, 1, 0]
    topk_recommendations(scores, seen, users, k=2, inplace=True)
    assert scores[0, 5].item() == float("-inf")
