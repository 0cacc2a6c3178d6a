import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmgraph.cli import main
from mmgraph.eval import paired_test, read_per_user
from tests.helpers import tiny_dataset


def write_mmrec_folder(folder, with_features=True, **sizes):
    """A synthetic dataset in MMRec layout (``tiny.inter`` + ``image_feat.npy``)."""
    data = tiny_dataset(modalities={"image": 4} if with_features else None, **sizes)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["userID\titemID\trating\ttimestamp\tx_label"]
    for label, split in enumerate(("train", "valid", "test")):
        for user, item in data.edge_index(split).T.tolist():
            rows.append(f"{user}\t{item}\t1.0\t0\t{label}")
    (folder / "tiny.inter").write_text("\n".join(rows) + "\n")
    if with_features:
        np.save(folder / "image_feat.npy", data.features("image").numpy())
    return data


@pytest.fixture
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_mmrec_folder(root / "tiny")
    out = root / "run"
    code = main(
        ["train", "--model", "lightgcn", "--dataset", str(root / "tiny"), "--epochs", "3",
         "--set", "batch_size=32", "--set", "num_layers=2", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return root, out


def test_train_writes_the_contracted_files(trained_run, capsys):
    _, out = trained_run
    for name in ("best.pt", "last.pt", "log.jsonl", "metrics.json"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test", "best_epoch"}
    assert {"recall@20", "ndcg@20", "precision@10", "map@50", "hit@5"} <= set(metrics["test"])


def test_evaluate_prints_the_split_metrics(trained_run, capsys):
    _, out = trained_run
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--split", "test"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx(json.loads((out / "metrics.json").read_text())["test"])


def test_evaluate_per_user_writes_values_whose_means_are_the_printed_metrics(trained_run, capsys):
    _, out = trained_run
    capsys.readouterr()
    table = out / "per_user.tsv"
    argv = ["evaluate", "--checkpoint", str(out / "best.pt"), "--per-user", str(table)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    values = read_per_user(table)
    test_users = {u for u, _ in tiny_dataset().edge_index("test").T.tolist()}
    assert values["user"].tolist() == sorted(test_users)
    for key in ("recall@20", "ndcg@10", "warm/recall@20"):
        assert np.nanmean(values[key]) == pytest.approx(printed[key], rel=1e-12)
    assert np.isfinite(values["recall@20"]).all()
    # A model compared with itself differs nowhere: p = 1.
    assert paired_test(values, values, "recall@20").p_value == 1.0


def test_recommend_prints_tsv_without_seen_items(trained_run, capsys):
    _root, out = trained_run
    data = tiny_dataset()
    capsys.readouterr()
    assert (
        main(["recommend", "--checkpoint", str(out / "best.pt"), "--users", "0,3", "--k", "5"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "userID\trank\titemID\tscore"
    rows = [line.split("\t") for line in lines[1:]]
    assert [(r[0], r[1]) for r in rows] == [(u, str(k)) for u in ("0", "3") for k in range(1, 6)]
    train = set(map(tuple, data.edge_index("train").T.tolist()))
    assert all((int(u), int(i)) not in train for u, _, i, _ in rows)
    scores = [float(r[3]) for r in rows[:5]]
    assert scores == sorted(scores, reverse=True)


def test_resume_extends_a_finished_run(trained_run, capsys):
    _, out = trained_run
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--quiet"]) == 0
    log = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3, 4]


def test_list_shows_models_and_bundled_data(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "lightgcn" in text and "bpr" in text and "tiktok" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    for name in ("vbpr", "bm3", "freedom", "lattice", "mentor", "mmssl"):
        assert lines[name].endswith("[needs item features]")
    assert "needs" not in lines["lightgcn"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "lightgcn", "--dataset", "/no/such/folder"], "neither a bundled"),
        (["train", "--model", "nope", "--dataset", "tiktok"], "unknown model 'nope'"),
        (["train", "--model", "bpr", "--dataset", "tiktok", "--set", "lrr=1"], "'lrr'"),
        (["evaluate", "--checkpoint", "/no/such.pt"], "checkpoint file not found"),
        (["train", "--model", "bpr", "--dataset", "tiktok", "--device", "cuda:0"], "cuda"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, message, capsys):
    if "cuda:0" in argv:
        pytest.importorskip("torch").cuda.is_available() and pytest.skip("CUDA present")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mmgraph: error: ") and message in err[-1]


def test_foreign_checkpoint_and_overwrite_protection(trained_run, tmp_path, capsys):
    root, out = trained_run
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint at all")
    assert main(["evaluate", "--checkpoint", str(foreign)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    argv = ["train", "--model", "bpr", "--dataset", str(root / "tiny"), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_console_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mmgraph", "train", "--model", "lightgcn", "--dataset",
         str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]


def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    write_mmrec_folder(tmp_path / "data", num_users=200, num_items=50, per_user=10)
    base = [sys.executable, "-m", "mmgraph", "train", "--model", "lightgcn", "--dataset",
            str(tmp_path / "data"), "--epochs", "12", "--set", "batch_size=16", "--quiet"]  # fmt: skip
    subprocess.run([*base, "--out", str(tmp_path / "straight")], check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*base, "--out", str(killed)], stdout=subprocess.DEVNULL)
    log = killed / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run(
        [sys.executable, "-m", "mmgraph", "train", "--out", str(killed), "--resume", "--quiet"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert json.loads(resumed.stdout) == expected
    assert json.loads((killed / "metrics.json").read_text()) == expected
