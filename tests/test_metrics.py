"""mmgraph.eval.metrics against the definitions, an independent implementation and hand values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch_geometric.metrics import (
    LinkPredHitRatio,
    LinkPredMAP,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from mmgraph.eval import ngcf_ndcg, ranking_metrics

# ---------------------------------------------------------------- brute-force references


def reference_metrics(ranked: list[int], targets: set[int], k: int) -> dict[str, float]:
    """MMRec metrics of one user, straight from the definitions (plain loops, 1-based ranks).

    ``ranked`` may be shorter than ``k``; missing ranks are misses.
    """
    h = [1 if r <= len(ranked) and ranked[r - 1] in targets else 0 for r in range(1, k + 1)]
    found = sum(h)
    dcg = sum(h[r - 1] / math.log2(r + 1) for r in range(1, k + 1))
    idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(targets), k) + 1))
    ap = 0.0
    for r in range(1, k + 1):
        precision_r = sum(h[:r]) / r
        ap += precision_r * h[r - 1]
    return {
        f"recall@{k}": found / len(targets),
        f"ndcg@{k}": dcg / idcg,
        f"precision@{k}": found / k,
        f"map@{k}": ap / min(len(targets), k),
        f"hit@{k}": 1.0 if found > 0 else 0.0,
    }


def mmssl_ndcg_at_k(r: list[int], k: int) -> float:
    """The NGCF/MMSSL ``ndcg_at_k`` (method 1): ideal DCG from the sorted retrieved hits."""

    def dcg_at_k(rel: list[int], k: int) -> float:
        rel = rel[:k]
        return sum(rel[i] / math.log2(i + 2) for i in range(len(rel)))

    dcg_max = dcg_at_k(sorted(r, reverse=True), k)
    if not dcg_max:
        return 0.0
    return dcg_at_k(r, k) / dcg_max


# ---------------------------------------------------------------- random cases


def random_case(
    seed: int, num_users: int, num_items: int, k_max: int
) -> tuple[list[set[int]], Tensor]:
    """Tied integer scores, target sets with special users, and the ranked top-``k_max`` items.

    User 0 has exactly one target, user 1 has every top-``k_max`` item as a target plus more
    (all hits, ``|T| > K``), user 2 has more targets than ``k_max``; the others are random.

    Returns:
        ``(targets, ranked [B, k_max])``: ``ranked`` is ``torch.topk`` of the scores.
    """
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (num_users, num_items), generator=gen).float()  # many ties
    ranked = torch.topk(scores, k_max, dim=1).indices
    targets = []
    for u in range(num_users):
        if u == 0:
            size = 1
        elif u == 2:
            size = min(num_items, k_max + 1 + u % 3)
        else:
            size = int(torch.randint(1, num_items + 1, (1,), generator=gen))
        chosen = torch.randperm(num_items, generator=gen)[:size].tolist()
        if u == 1:
            chosen = ranked[u].tolist() + chosen[:2]
        targets.append(set(chosen))
    return targets, ranked


def hits_of(ranked: Tensor, targets: list[set[int]]) -> Tensor:
    """``[B, K]`` bool hit matrix, built with a plain loop."""
    return torch.tensor(
        [[item in t for item in row] for row, t in zip(ranked.tolist(), targets, strict=True)]
    )


def num_targets_of(targets: list[set[int]]) -> Tensor:
    return torch.tensor([len(t) for t in targets])


case_params = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(3, 12),  # users
    st.integers(1, 25),  # k_max (items >= k_max + 3 so user 2 fits)
    st.integers(3, 20),  # extra items
)

# ---------------------------------------------------------------- against the definitions


@settings(max_examples=60, deadline=None)
@given(case_params, st.data())
def test_ranking_metrics_match_reference(params, data) -> None:
    seed, num_users, k_max, extra = params
    targets, ranked = random_case(seed, num_users, k_max + extra, k_max)
    ks = sorted(set(data.draw(st.lists(st.integers(1, k_max), min_size=1, max_size=4))))
    got = ranking_metrics(hits_of(ranked, targets), num_targets_of(targets), ks)
    assert set(got) == {
        f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map", "hit") for k in ks
    }
    for u in range(num_users):
        for k in ks:
            expected = reference_metrics(ranked[u].tolist(), targets[u], k)
            for key, value in expected.items():
                assert got[key][u].item() == pytest.approx(value, rel=1e-12, abs=1e-15), (u, key)


def test_special_users_behave() -> None:
    targets, ranked = random_case(0, 6, 30, 10)
    got = ranking_metrics(hits_of(ranked, targets), num_targets_of(targets), [10])
    # user 1: every retrieved item is a target -> precision, ndcg, map and hit are 1,
    # recall is 10 / |T| < 1.
    for key in ("precision@10", "ndcg@10", "map@10", "hit@10"):
        assert got[key][1].item() == pytest.approx(1.0)
    assert got["recall@10"][1].item() == pytest.approx(10 / len(targets[1]))
    assert len(targets[0]) == 1 and len(targets[2]) > 10


# ---------------------------------------------------------------- hand-computed values


def test_hand_computed_two_hits_of_three_targets() -> None:
    # Targets at ranks 1 and 3, plus one target that was not retrieved: |T| = 3, k = 5.
    hits = torch.tensor([[True, False, True, False, False]])
    got = ranking_metrics(hits, torch.tensor([3]), [1, 2, 5])
    inv_log3 = 1 / math.log2(3)
    expected = {
        "recall@5": 2 / 3,
        "precision@5": 2 / 5,
        "ndcg@5": (1 + 1 / 2) / (1 + inv_log3 + 1 / 2),  # DCG 1/log2(2) + 1/log2(4)
        "map@5": (1 / 1 + 2 / 3) / 3,  # = 5/9
        "hit@5": 1.0,
        "recall@1": 1 / 3,
        "precision@1": 1.0,
        "ndcg@1": 1.0,
        "map@1": 1.0,
        "recall@2": 1 / 3,
        "precision@2": 1 / 2,
        "ndcg@2": 1 / (1 + inv_log3),
        "map@2": 1 / 2,
    }
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value, rel=1e-12), key
    assert got["map@5"].item() == pytest.approx(5 / 9)
    # NGCF-style NDCG normalises by the 2 retrieved hits, not the 3 targets.
    ngcf = ngcf_ndcg(hits, [5])["ngcf_ndcg@5"].item()
    assert ngcf == pytest.approx((1 + 1 / 2) / (1 + inv_log3))


def test_hand_computed_single_target_and_miss() -> None:
    hits = torch.tensor([[False, True, False, False, False], [False] * 5])
    got = ranking_metrics(hits, torch.tensor([1, 2]), [5])
    assert got["recall@5"].tolist() == pytest.approx([1.0, 0.0])
    assert got["precision@5"].tolist() == pytest.approx([1 / 5, 0.0])
    assert got["ndcg@5"].tolist() == pytest.approx([1 / math.log2(3), 0.0])
    assert got["map@5"].tolist() == pytest.approx([1 / 2, 0.0])
    assert got["hit@5"].tolist() == [1.0, 0.0]
    # |T| = 1: the retrieved-hit IDCG equals the true one, so NGCF NDCG agrees here.
    assert ngcf_ndcg(hits, [5])["ngcf_ndcg@5"].tolist() == pytest.approx([1 / math.log2(3), 0.0])


def test_invalid_inputs_raise() -> None:
    hits = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError, match="zero targets"):
        ranking_metrics(hits, torch.tensor([1, 0]), [2])
    with pytest.raises(ValueError, match="more hits than targets"):
        ranking_metrics(torch.tensor([[True, True]]), torch.tensor([1]), [2])
    with pytest.raises(ValueError, match="every k"):
        ranking_metrics(hits, torch.tensor([1, 1]), [3])
    with pytest.raises(ValueError, match="every k"):
        ngcf_ndcg(hits, [0])
    with pytest.raises(ValueError, match="bool"):
        ranking_metrics(hits.float(), torch.tensor([1, 1]), [1])
    with pytest.raises(ValueError, match="num_targets"):
        ranking_metrics(hits, torch.tensor([1]), [1])


# ---------------------------------------------------------------- against PyG


@settings(max_examples=30, deadline=None)
@given(case_params, st.integers(1, 25))
def test_ranking_metrics_match_pyg(params, k) -> None:
    """PyG's link-prediction metrics as an independent oracle.

    In PyG 2.8.1, for binary relevance and distinct predicted items, LinkPredRecall
    (hits / |T|), LinkPredPrecision (hits / k), LinkPredNDCG (IDCG at min(|T|, k)),
    LinkPredMAP (/ min(|T|, k)) and LinkPredHitRatio all match MMRec's definitions, and PyG
    averages over the rows that have at least one label, as we do. Differences outside this
    test's inputs: PyG counts duplicate label edges in |T| (we count distinct items), counts a
    duplicated predicted item twice, computes in the default dtype (float32), and PyG
    2.5 to 2.6.1 require ``pred_index_mat`` to have exactly ``k`` columns (passed here).
    """
    seed, num_users, k_max, extra = params
    k = min(k, k_max)
    targets, ranked = random_case(seed, num_users, k_max + extra, k_max)
    # One user without targets: PyG must skip it in the mean; we never see it.
    targets = [*targets, set()]
    ranked = torch.cat([ranked, ranked[:1]])
    label_index = torch.tensor(
        [(u, i) for u, t in enumerate(targets) for i in sorted(t)], dtype=torch.long
    ).t()
    ours = ranking_metrics(hits_of(ranked[:-1], targets[:-1]), num_targets_of(targets[:-1]), [k])
    oracles = {
        "recall": LinkPredRecall(k),
        "precision": LinkPredPrecision(k),
        "ndcg": LinkPredNDCG(k),
        "map": LinkPredMAP(k),
        "hit": LinkPredHitRatio(k),
    }
    for name, metric in oracles.items():
        metric.update(ranked[:, :k], label_index)
        expected = metric.compute().item()
        assert ours[f"{name}@{k}"].mean().item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------- NGCF / MMSSL NDCG


@settings(max_examples=40, deadline=None)
@given(case_params, st.data())
def test_ngcf_ndcg_matches_mmssl_formula_and_dominates(params, data) -> None:
    seed, num_users, k_max, extra = params
    targets, ranked = random_case(seed, num_users, k_max + extra, k_max)
    # Also a user with no hit at all (its NGCF NDCG is defined as 0).
    targets[-1] = {-1}
    hits = hits_of(ranked, targets)
    ks = sorted(set(data.draw(st.lists(st.integers(1, k_max), min_size=1, max_size=4))))
    got = ngcf_ndcg(hits, ks)
    standard = ranking_metrics(hits, num_targets_of(targets), ks)
    for k in ks:
        for u in range(num_users):
            r = [int(x) for x in hits[u].tolist()]  # hit vector of the top-K_max list
            assert got[f"ngcf_ndcg@{k}"][u].item() == pytest.approx(mmssl_ndcg_at_k(r, k))
        assert torch.all(got[f"ngcf_ndcg@{k}"] >= standard[f"ndcg@{k}"] - 1e-12)
