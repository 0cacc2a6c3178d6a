import importlib.util
import json
import sys

import pytest
import torch

from mmgraph.cli import main
from mmgraph.errors import ConfigError, DataError
from mmgraph.models import LightGCN
from mmgraph.plot import export_tensorboard, item_embeddings, read_log
from tests.helpers import tiny_dataset
from tests.test_cli import write_mmrec_folder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    write_mmrec_folder(root / "tiny")
    out = root / "run"
    argv = ["train", "--model", "lightgcn", "--dataset", str(root / "tiny"), "--epochs", "3",
            "--set", "batch_size=32", "--set", "num_layers=1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_without_matplotlib_the_cli_names_the_extra(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    capsys.readouterr()
    assert main(["plot", str(run_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["mmgraph: error: plotting needs matplotlib: pip install 'mmgraph[plot]'"]


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="optional 'plot' extra (matplotlib) not installed",
)
def test_plot_writes_learning_curves_and_tsne_png(run_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["plot", str(run_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "curves.png"), str(tmp_path / "tsne.png")]
    for name in ("curves.png", "tsne.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_read_log_reports_bad_lines(run_dir, tmp_path):
    assert [r["epoch"] for r in read_log(run_dir)] == [1, 2, 3]
    bad = tmp_path / "log.jsonl"
    bad.write_text(json.dumps({"epoch": 1}) + "\n{cut short\n")
    with pytest.raises(DataError, match="line 2 is not JSON"):
        read_log(tmp_path)
    with pytest.raises(DataError, match="training log not found"):
        read_log(tmp_path / "nothing")


class TwoModalityLightGCN(LightGCN):
    """A model that exposes per-modality item embeddings (as multimodal models may)."""

    def modality_item_embeddings(self):
        item = self()[1]
        return {"image": item[:, :4], "text": item * 2}


def test_item_embeddings_prefers_the_per_modality_method():
    data = tiny_dataset()
    plain = LightGCN.from_dataset(data, embedding_dim=8)
    (name, emb), *rest = item_embeddings(plain).items()
    assert name == "item" and not rest and emb.shape == (data.num_items, 8)
    multi = TwoModalityLightGCN.from_dataset(data, embedding_dim=8)
    found = item_embeddings(multi)
    assert {k: tuple(v.shape) for k, v in found.items()} == {"image": (20, 4), "text": (20, 8)}
    assert torch.equal(found["text"], multi()[1] * 2)


def test_tensorboard_export_or_a_clear_error(run_dir, tmp_path, monkeypatch):
    history = read_log(run_dir)
    if importlib.util.find_spec("tensorboard") is not None:
        export_tensorboard(history, tmp_path / "tb")
        assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        export_tensorboard(history, tmp_path / "tb2")
