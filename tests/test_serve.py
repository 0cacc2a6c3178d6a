"""Export for serving: embeddings + manifest read back with numpy, and the faiss item index."""

import ast
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import mmgraph.serve
from mmgraph.cli import main
from mmgraph.data import load_dataset
from mmgraph.data.synthetic import synthetic_dataset
from mmgraph.errors import ConfigError, DataWarning
from mmgraph.models import LightGCN, Recommender, get_model
from mmgraph.serve import ExportedRecommender, IndexSettings, export_model
from mmgraph.serve.ann import build_index, read_index
from tests.conftest import requires_shared
from tests.helpers import tiny_dataset
from tests.test_cli import write_mmrec_folder

faiss = pytest.importorskip("faiss")  # in the `test` extra: runs in CI


def numpy_top_k(users, items, seen_indptr, seen_indices, user_ids, k):
    """Brute-force reference: each user's k best unseen items by inner product (float64)."""
    scores = users[user_ids].astype(np.float64) @ items.T.astype(np.float64)
    out = []
    for row, user in enumerate(user_ids):
        scores[row, seen_indices[seen_indptr[user] : seen_indptr[user + 1]]] = -np.inf
        out.append(np.argsort(-scores[row], kind="stable")[:k])
    return scores, np.stack(out)


def assert_same_ranking(items_a, items_b, scores, tolerance=1e-5):
    """Equal top-k lists, except where two items' scores tie within ``tolerance`` (a float32
    rounding can swap them)."""
    for row, (a, b) in enumerate(zip(items_a, items_b, strict=True)):
        differ = a != b
        if differ.any():
            gap = np.abs(scores[row, a[differ]] - scores[row, b[differ]])
            assert gap.max() <= tolerance * max(1.0, np.abs(scores[row, a]).max()), (row, a, b)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-epoch VBPR run on a tiny dataset folder: a model whose item table is ID ⊕ content."""
    root = tmp_path_factory.mktemp("serve")
    write_mmrec_folder(root / "tiny")
    out = root / "run"
    assert main(["train", "--model", "vbpr", "--dataset", str(root / "tiny"), "--epochs", "3",
                 "--set", "batch_size=32", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    return root, out / "best.pt"


def test_export_round_trip_with_numpy_only(tiny_run, tmp_path):
    root, checkpoint = tiny_run
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e")]) == 0
    folder = tmp_path / "e"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == "vbpr" and manifest["score"] == "inner_product"
    assert manifest["index"] is None and manifest["checkpoint"]["sha256"]
    files = manifest["files"]
    users = np.load(folder / files["user_embeddings"])
    items = np.load(folder / files["item_embeddings"])
    indptr = np.load(folder / files["seen_indptr"])
    indices = np.load(folder / files["seen_indices"])
    assert users.shape == (manifest["num_users"], manifest["dim"]) and users.dtype == np.float32

    dataset = load_dataset(str(root / "tiny"))
    model = Recommender.load(checkpoint, dataset)
    every = torch.arange(dataset.num_users)
    with torch.no_grad():
        expected = model.score(every).numpy()
    np.testing.assert_allclose(users @ items.T, expected, rtol=1e-5, atol=1e-6)
    train = dataset.user_items("train")
    assert np.array_equal(indptr, train.indptr.numpy())
    assert np.array_equal(indices, train.indices.numpy())

    _, model_items = model.recommend(every, k=5)
    scores, reference = numpy_top_k(users, items, indptr, indices, every.numpy(), 5)
    assert_same_ranking(model_items.numpy(), reference, scores)


@requires_shared("tiktok")
def test_flat_index_gives_the_same_top_k_as_recommend_on_tiktok(tmp_path, capsys):
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert main(["train", "--model", "lightgcn", "--dataset", "tiktok", "--epochs", "1",
                     "--out", str(run), "--quiet"]) == 0  # fmt: skip
        assert main(["export", "--checkpoint", str(run / "best.pt"), "--out",
                     str(tmp_path / "e"), "--index", "flat"]) == 0  # fmt: skip
    sample = np.random.default_rng(0).choice(9308, size=300, replace=False)
    wanted = ",".join(map(str, sample))

    def recommend(*source):
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            assert main(["recommend", *source, "--users", wanted, "--k", "20"]) == 0
        rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
        table = {}
        for user, _rank, item, score in rows:
            table.setdefault(int(user), []).append((int(item), float(score)))
        return table

    from_model = recommend("--checkpoint", str(run / "best.pt"))
    from_index = recommend("--index", str(tmp_path / "e"))
    assert sorted(from_model) == sorted(from_index) == sorted(sample.tolist())
    exported = ExportedRecommender.load(tmp_path / "e", use_index=False)
    swapped = 0
    for user in sample.tolist():
        a = np.array([item for item, _ in from_model[user]])
        b = np.array([item for item, _ in from_index[user]])
        assert len(a) == len(b) == 20
        swapped += int((a != b).sum())
        scores = exported.scores(np.array([user]))
        assert_same_ranking(a[None], b[None], scores)
    assert swapped <= 20  # near-ties only: almost every position agrees exactly


@requires_shared("tiktok")
def test_hnsw_recall_against_exact_top_k_on_tiktok(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = load_dataset("tiktok")
    torch.manual_seed(0)
    model = LightGCN.from_dataset(dataset)
    export_model(model, dataset, tmp_path / "e", index=IndexSettings("hnsw", ef_search=64))
    approximate = ExportedRecommender.load(tmp_path / "e")
    exact = ExportedRecommender.load(tmp_path / "e", use_index=False)
    users = np.arange(0, dataset.num_users, 7)
    _, found = approximate.recommend(users, k=20)
    _, truth = exact.recommend(users, k=20)
    recall = np.mean([len(set(f) & set(t)) / 20 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.9
    seen = dataset.user_items("train")
    for user, row in zip(users.tolist(), found, strict=True):
        assert not set(row.tolist()) & set(
            seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist()
        )


def test_raw_ids_are_exported_and_answered(tmp_path, capsys):
    from tests.test_preprocess import random_ratings, write_csv

    source = write_csv(tmp_path / "ratings.csv", random_ratings(5, num_rows=2500, num_users=80))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert main(["preprocess", str(source), str(tmp_path / "data"), "--k-core", "3"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--model", "bpr", "--dataset", str(tmp_path / "data"), "--epochs", "1",
                 "--out", str(run), "--quiet"]) == 0  # fmt: skip
    assert main(["export", "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "e"),
                 "--index", "flat"]) == 0  # fmt: skip
    raw_users = (tmp_path / "e" / "user_ids.txt").read_text().splitlines()
    wanted = f"{raw_users[3]},{raw_users[0]}"
    outputs = []
    for source_args in (["--checkpoint", str(run / "best.pt")], ["--index", str(tmp_path / "e")]):
        capsys.readouterr()
        assert main(["recommend", *source_args, "--users", wanted, "--k", "4", "--raw-ids"]) == 0
        outputs.append([line.split("\t")[:3] for line in capsys.readouterr().out.splitlines()])
    assert outputs[0] == outputs[1]
    assert [row[0] for row in outputs[1][1:]] == [raw_users[3]] * 4 + [raw_users[0]] * 4


def test_flat_index_equals_exact_search_for_heavy_and_light_users(tmp_path):
    """Power-law degrees, and each user's vector the sum of their seen items' vectors, so
    seen items crowd the top of the index's list: the heaviest users need the second search."""
    dataset = synthetic_dataset(users=400, items=300, interactions=12000, seed=3)
    seen = dataset.user_items("train")
    indptr, indices = seen.indptr.numpy(), seen.indices.numpy()
    degrees = np.diff(indptr)
    assert degrees.max() > 20 + np.quantile(degrees, 0.9)
    items = np.random.default_rng(0).normal(size=(dataset.num_items, 64)).astype(np.float32)
    rows = np.repeat(np.arange(dataset.num_users), degrees)
    users = np.zeros((dataset.num_users, 64), np.float32)
    np.add.at(users, rows, items[indices])
    manifest = {"num_users": dataset.num_users, "num_items": dataset.num_items, "dim": 64}
    exact = ExportedRecommender(manifest, users, items, indptr, indices)
    build_index(items, IndexSettings("flat"), tmp_path / "flat.faiss")
    indexed = ExportedRecommender(manifest, users, items, indptr, indices)
    indexed.index = read_index(tmp_path / "flat.faiss")
    every = np.arange(dataset.num_users)
    _, expected = exact.recommend(every, k=20)
    _, found = indexed.recommend(every, k=20)
    assert (found >= 0).all()
    assert_same_ranking(expected, found, exact.scores(every))
    for user in every.tolist():
        assert not set(found[user].tolist()) & set(
            indices[indptr[user] : indptr[user + 1]].tolist()
        )


def test_exact_search_pads_users_with_few_unseen_items(tmp_path):
    dataset = tiny_dataset(num_users=5, num_items=6, per_user=6)  # 4 train items each
    model = get_model("bpr").from_dataset(dataset)
    export_model(model, dataset, tmp_path / "e", index=IndexSettings("flat"))
    for use_index in (False, True):
        exported = ExportedRecommender.load(tmp_path / "e", use_index=use_index)
        scores, items = exported.recommend(np.arange(5), k=4)
        assert np.isneginf(scores[:, 2:]).all() and (items[:, 2:] == -1).all()
        seen = dataset.user_items("train")
        for user in range(5):
            unseen = set(range(6)) - set(
                seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist()
            )
            assert set(items[user, :2].tolist()) == unseen


def test_a_model_with_its_own_score_is_refused(tmp_path):
    class Bilinear(LightGCN):
        def score(self, users, embeddings=None):
            user_emb, item_emb = self() if embeddings is None else embeddings
            return (user_emb[users] @ item_emb.T).sigmoid()

    dataset = tiny_dataset()
    model = Bilinear(dataset.num_users, dataset.num_items, dataset.edge_index("train"))
    with pytest.raises(ConfigError, match="own function.*inner-product models only"):
        export_model(model, dataset, tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_existing_folders_are_never_clobbered(tmp_path, tiny_run, capsys):
    _, checkpoint = tiny_run
    target = tmp_path / "e"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(target)]) == 0
    first = (target / "manifest.json").read_text()
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(target)]) == 2
    assert "holds an export already; pass --overwrite" in capsys.readouterr().err
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(other)]) == 2
    assert "not empty and holds no mmgraph export" in capsys.readouterr().err
    assert (other / "mine.txt").read_text() == "keep"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(target),
                 "--overwrite", "--index", "hnsw"]) == 0  # fmt: skip
    assert json.loads((target / "manifest.json").read_text())["index"]["kind"] == "hnsw"
    assert (target / "manifest.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "notes"]  # no staging left


def test_a_failed_export_leaves_the_previous_one(tmp_path, monkeypatch):
    dataset = tiny_dataset()
    model = get_model("bpr").from_dataset(dataset)
    export_model(model, dataset, tmp_path / "e")
    before = (tmp_path / "e" / "manifest.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("mmgraph.serve.export.build_index", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(model, dataset, tmp_path / "e", index=IndexSettings(), overwrite=True)
    assert (tmp_path / "e" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_bad_export_folders_and_options_give_one_line_errors(tmp_path, tiny_run, capsys):
    assert main(["recommend", "--index", str(tmp_path)]) == 2
    assert "not an mmgraph export (no manifest.json)" in capsys.readouterr().err
    _, checkpoint = tiny_run
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e")]) == 0
    capsys.readouterr()
    assert main(["recommend", "--index", str(tmp_path / "e"), "--raw-ids"]) == 2
    assert "has no user_ids.txt" in capsys.readouterr().err
    np.save(tmp_path / "e" / "item_embeddings.npy", np.zeros((3, 2), np.float32))
    assert main(["recommend", "--index", str(tmp_path / "e")]) == 2
    assert "item_embeddings has shape (3, 2)" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "f"),
                 "--index", "hnsw", "--hnsw-m", "0"]) == 2  # fmt: skip
    assert "hnsw_m must be a positive integer" in capsys.readouterr().err


def test_the_serving_reader_imports_neither_torch_nor_the_model_layers():
    """What a service runs (reading an export, searching its index) needs numpy and faiss."""
    folder = Path(mmgraph.serve.__file__).parent
    for name in ("exported.py", "ann.py"):
        tree = ast.parse((folder / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert "torch" not in imported, name
        assert imported <= {"__future__", "json", "os", "dataclasses", "pathlib", "typing",
                            "numpy", "faiss", "mmgraph.errors", "mmgraph.serve.ann"}, (name, imported)  # fmt: skip
