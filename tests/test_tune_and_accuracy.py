"""``mmgraph tune`` (grid search selected on valid) and ``benchmarks/accuracy.py``."""

import csv
import json
import math
from dataclasses import fields
from pathlib import Path

import pytest

from benchmarks.accuracy import TABLE_METRICS, format_mean_std, load_report, save_report
from benchmarks.accuracy import main as accuracy_main
from mmgraph.cli import main
from mmgraph.models import get_model, registered_models
from mmgraph.train import TrainConfig, read_run, runner
from mmgraph.train.tune import (
    PointResult,
    expand_grid,
    model_grid,
    parse_grid,
    select_point,
    tune_grid,
)
from tests.helpers import tiny_dataset

SPEC = "synthetic:users=120,items=60,interactions=1500"
NO_FEATURES = SPEC + ",modalities=none"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "out"
    argv = ["tune", "--model", "lightgcn", "--dataset", SPEC, "--grid", "num_layers=1,2",
            "--set", "batch_size=256", "--epochs", "2", "--out", str(out)]  # fmt: skip
    assert main([*argv, "--quiet"]) == 0
    return argv, out


def _read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tune_selects_the_valid_argmax_and_tests_only_that_point(tuned, capsys):
    _, out = tuned
    rows = _read_csv(out / "tune.csv")
    assert [row["num_layers"] for row in rows] == ["1", "2"]
    scores = [float(row["valid_recall@20"]) for row in rows]
    chosen = scores.index(max(scores))  # index() is the first maximum: the documented tie rule
    best = json.loads((out / "best.json").read_text())
    assert best["run"] == rows[chosen]["run"] and best["point"] == {"num_layers": chosen + 1}
    assert best["valid"]["recall@20"] == pytest.approx(scores[chosen])
    assert best["best_epoch"] == int(rows[chosen]["best_epoch"])
    assert {"recall@20", "ndcg@20"} <= set(best["test"]) and best["command"].startswith("mmgraph")
    assert not any(name.startswith("test") for name in rows[0])
    for row in rows:  # no point's test was computed, the chosen one's included
        assert json.loads((out / row["run"] / "metrics.json").read_text())["test"] == {}


def test_tune_reuses_finished_points_and_refuses_another_configuration(tuned, capsys):
    argv, out = tuned
    before = (out / "best.json").read_text()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.count("reusing the finished run") == 2
    assert "*  " + json.loads(before)["run"] in captured.out
    assert json.loads((out / "best.json").read_text())["test"] == json.loads(before)["test"]
    assert main([*argv, "--set", "reg_weight=0.5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reg_weight=" in err[0] and "(now 0.5)" in err[0]


def test_unknown_grid_key_is_one_error_line_before_anything_runs(tmp_path, capsys):
    argv = ["tune", "--model", "lightgcn", "--dataset", SPEC, "--grid", "num_layer=1,2",
            "--out", str(tmp_path / "t")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmgraph: error: --grid: unknown config key")
    assert "'num_layer'" in err[0] and "did you mean num_layers" in err[0]
    assert not (tmp_path / "t").exists()


def test_tune_without_a_grid_searches_the_models_own(tmp_path, capsys):
    out = tmp_path / "t"
    argv = ["tune", "--model", "bpr", "--dataset", NO_FEATURES, "--set", "batch_size=512",
            "--epochs", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    rows = _read_csv(out / "tune.csv")
    assert [float(row["reg_weight"]) for row in rows] == list(
        get_model("bpr").search_grid["reg_weight"]
    )


def test_every_model_grid_resolves_to_distinct_valid_points():
    for name, cls in registered_models().items():
        points = expand_grid(cls, model_grid(cls))  # resolves and checks every point's values
        sizes = [len(values) for values in cls.search_grid.values()]
        assert len(points) == math.prod(sizes) >= 4, name


def test_selection_sees_valid_metrics_only():
    fake = [  # the test-best point (2) is not the valid-best (1, tied with 3: first wins)
        {"valid": {"recall@20": 0.30}, "test": {"recall@20": 0.20}},
        {"valid": {"recall@20": 0.40}, "test": {"recall@20": 0.10}},
        {"valid": {"recall@20": 0.35}, "test": {"recall@20": 0.90}},
        {"valid": {"recall@20": 0.40}, "test": {"recall@20": 0.50}},
    ]
    assert select_point([point["valid"] for point in fake], "recall@20") == 1
    assert select_point([None, {"recall@20": math.nan}, {"recall@20": 0.0}], "recall@20") == 2
    assert select_point([None], "recall@20") is None
    assert "test" not in {field.name for field in fields(PointResult)}


def test_tune_grid_evaluates_test_once(tmp_path, monkeypatch):
    dataset = tiny_dataset()
    splits = []
    run_evaluator = runner.run_evaluator

    def counting(dataset, train_config, shard=None):
        evaluate = run_evaluator(dataset, train_config, shard)
        return lambda model, split: splits.append(split) or evaluate(model, split)

    monkeypatch.setattr(runner, "run_evaluator", counting)
    axes = parse_grid(["lr=1e-2,1e-3"])
    points = expand_grid(get_model("bpr"), axes, fixed_layers=[("cli", {"epochs": 1})])
    result = tune_grid(dataset, points, tmp_path)
    assert splits.count("test") == 1 and splits.count("valid") == 2
    assert set(result.test) >= {"recall@20"} and result.best.valid is not None


def test_grid_values_are_typed_like_set_values():
    axes = parse_grid(["lr=1e-3,0.01", "ks=[10,20],[5,20]", "reference=true,false"])
    assert [axis.values for axis in axes] == [("1e-3", 0.01), ([10, 20], [5, 20]), (True, False)]
    points = expand_grid(get_model("mentor"), axes, fixed_layers=[])
    assert len(points) == 8 and points[0].values == {"lr": 0.001, "ks": [10, 20], "reference": True}
    assert points[-1].name == "run-008" and points[-1].config.train.ks == [5, 20]


def test_read_run_tells_early_stopping_from_the_epoch_cap(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"valid": {}, "test": {}, "best_epoch": 1}))
    log = [{"epoch": e, "train_seconds": 1.0, "valid": {}, "improved": e == 1} for e in (1, 2, 3)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    assert read_run(tmp_path, TrainConfig(epochs=3, patience=2)).stopped_early
    summary = read_run(tmp_path, TrainConfig(epochs=3, patience=5))
    assert not summary.stopped_early and (summary.last_epoch, summary.seconds) == (3, 3.0)


def test_mean_std_formatting():
    assert format_mean_std([0.1]) == "0.1000"
    assert format_mean_std([0.1, 0.2]) == "0.1500 ± 0.0707"  # sample std
    assert format_mean_std([None, 0.25]) == "0.2500" and format_mean_std([]) == "–"


def _markdown_rows(markdown):
    """``{(dataset, model): [cells]}`` from the report's tables."""
    rows, dataset = {}, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            dataset = line[3:]
        elif line.startswith("| ") and not line.startswith("| model"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[dataset, cells[0]] = cells[1:]
    return rows


def test_accuracy_quick_run_merges_and_its_markdown_matches_the_json(tmp_path, capsys):
    common = ["--quick", "--out", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
              "--tag", "t", "--quiet"]  # fmt: skip
    assert accuracy_main([*common, "--models", "bpr,mentor"]) == 0
    assert accuracy_main([*common, "--models", "lightgcn,bpr"]) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    entries = {(e["model"], e["dataset"]): e for e in report["entries"]}
    assert len(report["entries"]) == 6 and len(report["invocations"]) == 2
    assert entries["mentor", NO_FEATURES]["status"] == "skipped"
    assert entries["bpr", SPEC]["reused"] and not entries["lightgcn", SPEC]["reused"]
    assert entries["bpr", SPEC]["command"].startswith("mmgraph train --model bpr")
    rows = _markdown_rows((tmp_path / "t.md").read_text())
    for (model, dataset), entry in entries.items():
        cells = rows[dataset, model]
        if entry["status"] == "skipped":
            assert cells[0].startswith("skipped: ")
            continue
        assert cells[: len(TABLE_METRICS)] == [
            "–" if entry["test"][m] is None else f"{entry['test'][m]:.4f}" for m in TABLE_METRICS
        ]
        epochs = cells[len(TABLE_METRICS) + 1].rstrip("¹")
        assert epochs == f"{entry['best_epoch']} / {entry['last_epoch']}"


def test_report_keeps_stored_paired_tests_when_per_user_files_are_gone(tmp_path):
    argv = ["--quick", "--out", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
            "--tag", "t", "--quiet", "--models", "lightgcn,bpr", "--datasets", SPEC]  # fmt: skip
    assert accuracy_main(argv) == 0
    path = tmp_path / "t.json"
    report = load_report(path, "t")
    bpr = next(row for row in report["summary"] if row["model"] == "bpr")
    assert set(bpr["paired_test"]) >= {"recall@20", "ndcg@20"}
    for entry in report["entries"]:  # the run folders are not committed
        Path(entry["per_user"]).unlink()
    save_report(report, path)
    again = next(row for row in load_report(path, "t")["summary"] if row["model"] == "bpr")
    assert again["paired_test"] == bpr["paired_test"]
    bpr_entry = next(e for e in report["entries"] if e["model"] == "bpr")
    extra = {**bpr_entry, "seed": 2025, "per_user": str(tmp_path / "gone.tsv")}
    report["entries"].append(extra)  # a new seed: the stored test no longer describes the row
    save_report(report, path)
    row = next(r for r in load_report(path, "t")["summary"] if r["model"] == "bpr")
    assert "unavailable" in row["paired_test"]
    assert "| n/a |" in (tmp_path / "t.md").read_text()


def test_accuracy_extends_capped_runs_to_a_higher_cap(tmp_path):
    common = ["--quick", "--out", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
              "--tag", "t", "--quiet", "--models", "bpr", "--datasets", SPEC,
              "--set", "patience=50"]  # fmt: skip
    assert accuracy_main([*common, "--epochs", "1"]) == 0
    (entry,) = json.loads((tmp_path / "t.json").read_text())["entries"]
    assert entry["last_epoch"] == 1 and entry["cut_by_epoch_cap"]
    per_user = Path(entry["per_user"])
    assert "\t0." in per_user.read_text()
    per_user.write_text(per_user.read_text().replace("\t0.", "\t9."))  # would be kept if reused
    assert accuracy_main([*common, "--epochs", "3"]) == 0
    (extended,) = json.loads((tmp_path / "t.json").read_text())["entries"]
    assert not extended["reused"] and extended["epoch_cap"] == 3
    assert extended["last_epoch"] == 3 and extended["run_dir"] == entry["run_dir"]
    log = (Path(entry["run_dir"]) / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3]
    assert "\t9." not in per_user.read_text()  # recomputed from the extended run's best.pt
