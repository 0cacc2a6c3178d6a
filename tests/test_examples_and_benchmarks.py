"""The example scripts and the benchmark suite run (smoke runs; no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import benchmarks.speed
from benchmarks.speed import measure, split_datasets, steal_fraction
from tests.conftest import requires_shared

REPO = Path(__file__).resolve().parent.parent


def run_in_repo(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` run from the repository root; the test fails on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


def test_speed_suite_quick_run_writes_json_and_markdown(tmp_path):
    out = tmp_path / "speed.json"
    run_in_repo(
        "-m", "benchmarks.speed", "--quick", "--models", "lightgcn",
        "--datasets", "tiktok", "--profile", "2", "--out", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["machine"]["device"] == "cpu"
    load = report["machine"]["load"]
    assert load["matmul_gflops_before"] > 0 and load["matmul_gflops_after"] > 0
    assert load["copy_gbps_before"] > 0 and load["copy_gbps_after"] > 0
    assert load["cpu_steal_fraction"] is None or 0 <= load["cpu_steal_fraction"] <= 1
    (result,) = report["results"]
    assert result["model"] == "lightgcn" and result["users"] == 9308
    assert result["epoch_seconds"] > 0 and result["peak_cpu_rss_mb"] > 0
    assert result["epoch_seconds_each"] == [result["epoch_seconds"]]  # --quick: one epoch
    # The profile lists operators by self time; LightGCN's step runs the CSR product.
    ops = [row["op"] for row in result["profile"]]
    times = [row["self_cpu_ms_per_step"] for row in result["profile"]]
    assert times == sorted(times, reverse=True) and len(ops) == len(set(ops)) <= 15
    assert "aten::_sparse_mm_reduce_impl" in ops
    table = out.with_suffix(".md").read_text()
    assert "| lightgcn | tiktok |" in table and "(torch.profiler, 2 training steps)" in table
    assert "GFLOP/s before the runs" in table
    commit = report["machine"]["commit"]  # the checkout's, or None outside git
    assert commit is None or (commit.removesuffix("-dirty").isalnum() and commit in table)


def test_speed_suite_counts_the_epoch_hook_once_and_scales_only_batches(monkeypatch):
    # A fake clock: the hook costs 100 units, each batch 1, so an epoch timed from 2 of N
    # batches must read 100 + N, not (100 + 2) * N / 2.
    from mmgraph.models.lightgcn import LightGCN

    clock = [0.0]
    monkeypatch.setattr(benchmarks.speed.time, "perf_counter", lambda: clock[0])

    def hook(self, epoch):
        clock[0] += 100.0

    def step(self, batch, optimizers):
        clock[0] += 1.0

    monkeypatch.setattr(LightGCN, "on_epoch_start", hook)
    monkeypatch.setattr(LightGCN, "training_step", step)
    result = measure(
        "lightgcn", "synthetic:users=200,items=150,interactions=3000", "cpu",
        epochs=1, max_batches=2, overrides={"batch_size": 256}, evaluate=False, warmup=False,
    )  # fmt: skip
    assert result["batches_timed"] == 2 and result["batches_per_epoch"] > 2
    assert result["epoch_hook_seconds"] == 100.0
    assert result["epoch_seconds"] == 100.0 + result["batches_per_epoch"]


@requires_shared("movielens-small")
def test_example_script_trains_and_prints_test_metrics():
    done = run_in_repo(
        "examples/movielens.py", "--epochs", "1", "--models", "lightgcn,mentor", timeout=600
    )
    for model in ("lightgcn", "mentor"):
        assert f"{model} on movielens-small: best epoch 1, test" in done.stdout
    assert '"recall@20"' in done.stdout


def test_dataset_list_keeps_synthetic_specs_whole():
    assert split_datasets("tiktok,synthetic:users=10,items=5,seed=1,baby") == [
        "tiktok",
        "synthetic:users=10,items=5,seed=1",
        "baby",
    ]


def test_steal_fraction_from_proc_stat_counters():
    # user nice system idle iowait irq softirq steal guest guest_nice
    start = [1000, 0, 200, 5000, 30, 0, 10, 60, 400, 0]
    end = [1600, 0, 300, 5270, 30, 0, 20, 80, 700, 0]  # 1000 ticks passed, 20 stolen
    assert steal_fraction(start, end) == 0.02  # guest time is inside user time, not added
    assert steal_fraction(None, end) is None and steal_fraction(start[:4], end[:4]) is None
    assert steal_fraction(start, start) is None


def test_speed_suite_on_a_synthetic_spec_with_overrides(tmp_path):
    out = tmp_path / "speed.json"
    run_in_repo(
        "-m", "benchmarks.speed", "--quick", "--models", "mentor",
        "--datasets", "synthetic:users=200,items=150,interactions=3000",
        "--set", "reference=true", "--no-warmup", "--out", str(out),
    )  # fmt: skip
    (result,) = json.loads(out.read_text())["results"]
    assert result["settings"] == {"reference": True} and result["warmup"] is False
    assert (result["users"], result["items"]) == (200, 150)
    assert "| mentor (reference=True) | synthetic 200 x 150 |" in out.with_suffix(".md").read_text()


def test_knn_benchmark_quick_run_measures_a_partial_build(tmp_path):
    out = tmp_path / "knn.json"
    run_in_repo("-m", "benchmarks.knn", "--quick", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["machine"]["load"]["matmul_gflops_after"] > 0  # the machine's state goes along
    (result,) = report["results"]
    assert (result["items"], result["dim"], result["rows_searched"]) == (2000, 32, 500)
    assert result["edges"] == 2000 * 10
    assert result["build_seconds_estimated"] >= result["search_seconds"] * 4
    assert result["peak_cpu_rss_mb"] >= result["rss_after_inputs_mb"] > 0
    assert (result["block_rows"], result["tile_items"]) == (2000, 2000)  # one block of full rows
    assert "| 2,000 × 32 | 10 | 2,000 × 2,000 | 500 |" in out.with_suffix(".md").read_text()


def test_propagation_benchmark_compares_backends_that_agree(tmp_path):
    out = tmp_path / "propagation.json"
    run_in_repo("-m", "benchmarks.propagation", "--quick", "--out", str(out))
    results = json.loads(out.read_text())["results"]
    assert {r["backend"] for r in results} >= {"csr", "csr-matmul", "message-passing"}
    for r in results:
        assert (r["nodes"], r["width"]) == (9308 + 6710, 8) and r["seconds"] > 0
        assert r["max_abs_diff_to_csr"] < 1e-5  # every backend computes the same product
    assert "| tiktok | 16,018 |" in out.with_suffix(".md").read_text()


def test_ann_benchmark_quick_run_reports_recall_against_exact(tmp_path):
    pytest.importorskip("faiss")  # in the `test` extra: runs in CI
    out = tmp_path / "ann.json"
    run_in_repo("-m", "benchmarks.ann", "--quick", "--out", str(out))
    (result,) = json.loads(out.read_text())["results"]
    assert (result["num_items"], result["queries"], result["k"]) == (20_000, 200, 20)
    methods = {row["method"]: row for row in result["rows"]}
    assert methods["exact (numpy)"]["recall"] == 1.0
    assert methods["flat"]["recall"] == 1.0  # a flat index is exact
    hnsw = [row for name, row in methods.items() if name.startswith("hnsw")]
    assert len(hnsw) == 5 and all(0 < row["recall"] <= 1 and row["qps"] > 0 for row in hnsw)
    assert "| flat | 1.0000 |" in out.with_suffix(".md").read_text()


def test_cold_ablation_quick_run_reports_each_edit(tmp_path):
    out = tmp_path / "cold.json"
    run_in_repo("-m", "benchmarks.cold_ablation", "--quick", "--out", str(out))
    (result,) = json.loads(out.read_text())["results"]
    assert (result["model"], result["cold_items"]) == ("vbpr", 40)  # 20 % of 200 items
    edits = [row["edit"] for row in result["rows"]]
    assert edits == ["as trained", "cold ID rows zeroed", "cold features permuted",
                     "cold features zeroed"]  # fmt: skip
    for row in result["rows"]:
        assert all(0 <= row[part] <= 1 for part in ("", "cold/", "warm/"))
    assert 0 <= result["cold_top_share"] <= 1 and result["cold_catalogue_share"] == 0.2
    assert "| cold features zeroed |" in out.with_suffix(".md").read_text()


def test_cold_ablation_edits_touch_only_cold_items_and_are_undone():
    """VBPR's item vector is its ID row next to its projected content: an edit of the cold
    items' rows must change exactly those items' vectors, and nothing once undone."""
    from benchmarks.cold_ablation import EDITS, restored
    from mmgraph.data.synthetic import synthetic_dataset
    from mmgraph.models import VBPR

    dataset = synthetic_dataset(users=60, items=40, interactions=600)
    model = VBPR.from_dataset(dataset).eval()
    cold = torch.tensor([3, 17, 29])
    with torch.no_grad():
        _, before = model()
        for label, edit in EDITS.items():
            with restored(model):
                edit(model, cold, torch.Generator().manual_seed(0))
                _, edited = model()
            changed = (edited != before).any(dim=1).nonzero().squeeze(1)
            assert changed.tolist() == cold.tolist(), label
            assert torch.equal(model()[1], before), label


def test_custom_model_example_trains_a_user_written_model():
    """The README's build-your-own example: a model from mmgraph.nn parts, shared trainer."""
    spec = "synthetic:users=600,items=400,interactions=12000,seed=0"
    done = run_in_repo("examples/custom_model.py", "--epochs", "3", "--dataset", spec, timeout=600)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("content_gcn on synthetic: best epoch")
    assert float(last.rsplit(" ", 1)[1]) > 20 / 400  # far above chance on the planted clusters
