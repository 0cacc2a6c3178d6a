"""Loading, validating and bundling MMRec-layout datasets (``mmgraph.data``)."""

from __future__ import annotations

import gzip
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgraph.data import (
    INTERACTS,
    ITEM,
    USER,
    InteractionDataset,
    list_bundled,
    load_dataset,
    load_mmrec,
    mmrec,
)
from mmgraph.errors import DataError, DataWarning
from tests.conftest import requires_shared, shared_data_dir

HEADER = "userID\titemID\trating\ttimestamp\tx_label"
# Two users, each with a train, a valid and a test item.
TOY = [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 1, 0), (1, 2, 1), (1, 0, 2)]

Row = tuple[int, int, int]


def write_inter(
    folder: Path,
    rows: Sequence[Row | str],
    header: str = HEADER,
    name: str = "toy.inter",
    gz: bool = False,
) -> Path:
    """Write ``rows`` ((user, item, x_label) or raw lines) under ``header``; return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for row in rows:
        lines.append(row if isinstance(row, str) else f"{row[0]}\t{row[1]}\t1.0\t0\t{row[2]}")
    text = ("\n".join(lines) + "\n").encode()
    path = folder / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def write_feat(folder: Path, modality: str, table: np.ndarray, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{modality}_feat.npy"
    np.save(path, table)
    if gz:
        gz_path = path.with_name(path.name + ".gz")
        gz_path.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        path = gz_path
    return path


def load_quietly(folder: Path, **kwargs) -> InteractionDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_mmrec(folder, **kwargs)


def edges(ds: InteractionDataset, split: str) -> list[tuple[int, int]]:
    return [tuple(pair) for pair in ds.edge_index(split).t().tolist()]


# ---------------------------------------------------------------------- real datasets
@pytest.fixture(scope="module")
def tiktok() -> InteractionDataset:
    with pytest.warns(DataWarning, match=r"dropped 10 valid/test row\(s\) of 10 user\(s\)"):
        return load_dataset("tiktok")


def test_bundled_tiktok_counts(tiktok: InteractionDataset) -> None:
    assert "tiktok" in list_bundled()
    assert (tiktok.num_users, tiktok.num_items) == (9_308, 6_710)
    # The file has 3,051 / 6,130 valid/test rows; 5 + 5 belong to users without training rows.
    sizes = [tiktok.num_interactions(s) for s in ("train", "valid", "test")]
    assert sizes == [59_541, 3_046, 6_125]
    assert tiktok.modalities == ["audio", "image"]
    assert [tiktok.features(m).shape for m in tiktok.modalities] == [(6_710, 128)] * 2
    assert tiktok.features("image").dtype == torch.float32
    assert (tiktok.name, tiktok.source) == ("tiktok", "tiktok")


def test_bundled_tiktok_keeping_cold_users_matches_readme() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to repair
        ds = load_dataset("tiktok", drop_cold_users=False)
    sizes = [ds.num_interactions(s) for s in ("train", "valid", "test")]
    assert sizes == [59_541, 3_051, 6_130]


@requires_shared("tiktok")
def test_bundled_tiktok_equals_shared_files(tiktok: InteractionDataset) -> None:
    folder = shared_data_dir() / "tiktok"
    bundle = Path(mmrec.__file__).parent.parent / "datasets" / "tiktok"
    for name in ("tiktok.inter", "image_feat.npy", "audio_feat.npy"):
        assert gzip.decompress((bundle / f"{name}.gz").read_bytes()) == (folder / name).read_bytes()
    for modality in ("audio", "image"):
        expected = torch.from_numpy(np.load(folder / f"{modality}_feat.npy"))
        assert torch.equal(tiktok.features(modality), expected)
    with pytest.warns(DataWarning):
        from_folder = load_dataset(folder)
    assert from_folder.fingerprint == tiktok.fingerprint
    assert (from_folder.name, from_folder.source) == ("tiktok", str(folder.resolve()))


@requires_shared("movielens-small")
def test_movielens_small_counts() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(shared_data_dir() / "movielens-small")
    assert (ds.num_users, ds.num_items) == (671, 9_066)
    assert [ds.num_interactions(s) for s in ("train", "valid", "test")] == [80_022, 9_991, 9_991]
    assert ds.modalities == ["genre", "text"]
    assert [ds.features(m).shape[1] for m in ds.modalities] == [20, 384]


@requires_shared("baby")
def test_baby_counts() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(str(shared_data_dir() / "baby"))
    assert (ds.num_users, ds.num_items) == (19_445, 7_050)
    assert [ds.num_interactions(s) for s in ("train", "valid", "test")] == [
        119_674,
        20_559,
        20_559,
    ]
    assert ds.modalities == []


# ---------------------------------------------------------------------- malformed input
def _case_missing_folder(d: Path) -> Path:
    return d / "nope"


def _case_no_inter(d: Path) -> Path:
    write_feat(d, "image", np.ones((3, 2), np.float32))
    return d


def _case_two_inter(d: Path) -> Path:
    write_inter(d, TOY, name="a.inter")
    write_inter(d, TOY, name="b.inter", gz=True)
    return d


def _case_empty_file(d: Path) -> Path:
    d.mkdir()
    (d / "toy.inter").write_bytes(b"")
    return d


def _case_header(header: str) -> Callable[[Path], Path]:
    def setup(d: Path) -> Path:
        write_inter(d, TOY, header=header)
        return d

    return setup


def _case_rows(*rows: Row | str) -> Callable[[Path], Path]:
    def setup(d: Path) -> Path:
        write_inter(d, list(rows))
        return d

    return setup


def _case_feature(table: np.ndarray | bytes, rows: Sequence[Row] = TOY) -> Callable[[Path], Path]:
    def setup(d: Path) -> Path:
        write_inter(d, rows)
        if isinstance(table, bytes):
            (d / "image_feat.npy").write_bytes(table)
        else:
            write_feat(d, "image", table)
        return d

    return setup


def _case_feature_rows_disagree(d: Path) -> Path:
    write_inter(d, TOY)
    write_feat(d, "image", np.ones((4, 2), np.float32))
    write_feat(d, "audio", np.ones((3, 2), np.float32))
    return d


def _case_feature_twice(d: Path) -> Path:
    write_inter(d, TOY)
    write_feat(d, "image", np.ones((3, 2), np.float32), gz=True)
    write_feat(d, "image", np.ones((3, 2), np.float32))
    return d


def _case_bad_gzip(d: Path) -> Path:
    d.mkdir()
    (d / "toy.inter.gz").write_bytes(gzip.compress(b"userID\titemID\tx_label\n0\t0\t0\n")[:-6])
    return d


def _with_nan(row: int, value: float) -> np.ndarray:
    table = np.ones((3, 2), np.float32)
    table[row, 1] = value
    return table


MALFORMED = [
    ("missing folder", _case_missing_folder, r"nope: dataset folder does not exist"),
    ("no inter file", _case_no_inter, r"case: no interaction file \(<name>\.inter"),
    (
        "two inter files",
        _case_two_inter,
        r"case: more than one interaction file \(a\.inter, b\.inter\.gz\)",
    ),
    ("empty file", _case_empty_file, r"toy\.inter: file is empty"),
    (
        "missing column",
        _case_header("userID\titemID\trating\ttimestamp"),
        r"toy\.inter: line 1: header lacks required column\(s\) x_label ",
    ),
    (
        "comma delimiter",
        _case_header("userID,itemID,rating,timestamp,x_label"),
        r"toy\.inter: line 1: header lacks required column\(s\) userID, itemID, x_label .*"
        r"columns must be separated by tabs",
    ),
    (
        "repeated column",
        _case_header("userID\titemID\tuserID\ttimestamp\tx_label"),
        r"toy\.inter: line 1: header repeats column\(s\) userID",
    ),
    (
        "too few fields",
        _case_rows((0, 0, 0), "0\t1\t1.0\t1", (0, 2, 2)),
        r"toy\.inter: line 3 has 4 field\(s\), expected 5 tab-separated fields",
    ),
    (
        "too many fields",
        _case_rows((0, 0, 0), (0, 1, 1), "0\t2\t1.0\t0\t2\t7"),
        r"toy\.inter: line 4 has 6 field\(s\), expected 5",
    ),
    (
        "comma-separated row",
        _case_rows((0, 0, 0), "0,1,1.0,0,1"),
        r"toy\.inter: line 3 has 1 field\(s\), expected 5 .*'0,1,1\.0,0,1'",
    ),
    ("blank line", _case_rows((0, 0, 0), "", (0, 1, 1)), r"toy\.inter: line 3 is empty"),
    (
        "non-integer item",
        _case_rows((0, 0, 0), "0\tabc\t1.0\t0\t1"),
        r"toy\.inter: line 3: itemID must be an integer, got 'abc'",
    ),
    (
        "float user",
        _case_rows("1.5\t0\t1.0\t0\t0"),
        r"toy\.inter: line 2: userID must be an integer, got '1\.5'",
    ),
    (
        "empty field",
        _case_rows((0, 0, 0), "0\t\t1.0\t0\t1"),
        r"toy\.inter: line 3: itemID must be an integer, got ''",
    ),
    (
        "overflowing id",
        _case_rows("99999999999999999999\t0\t1.0\t0\t0"),
        r"toy\.inter: line 2: userID must be an integer, got '99999999999999999999'",
    ),
    (
        "negative user",
        _case_rows((0, 0, 0), (0, 1, 1), (-3, 2, 2)),
        r"toy\.inter: line 4: userID must be a non-negative integer, got -3",
    ),
    (
        "negative item",
        _case_rows((0, -1, 0)),
        r"toy\.inter: line 2: itemID must be a non-negative integer, got -1",
    ),
    (
        "bad x_label",
        _case_rows((0, 0, 0), (0, 1, 3)),
        r"toy\.inter: line 3: x_label must be 0 \(train\), 1 \(valid\) or 2 \(test\), got 3",
    ),
    ("header only", _case_rows(), r"toy\.inter: the train split is empty"),
    (
        "no test rows",
        _case_rows((0, 0, 0), (0, 1, 1)),
        r"toy\.inter: the test split is empty \(no rows with x_label 2\)",
    ),
    (
        "only cold test users",
        _case_rows((0, 0, 0), (0, 1, 1), (1, 2, 2)),
        r"toy\.inter: the test split is empty .*after dropping users with no training",
    ),
    (
        "corrupt gzip",
        _case_bad_gzip,
        r"toy\.inter\.gz: cannot be read",
    ),
    (
        "feature not npy",
        _case_feature(b"definitely not an array"),
        r"image_feat\.npy: not a readable \.npy array",
    ),
    (
        "feature needs pickle",
        _case_feature(np.array([{"a": 1}] * 3, dtype=object)),
        r"image_feat\.npy: not a readable \.npy array",
    ),
    (
        "feature 1-D",
        _case_feature(np.ones(3, np.float32)),
        r"image_feat\.npy: features must be a 2-D array .*got shape \(3,\)",
    ),
    (
        "feature strings",
        _case_feature(np.full((3, 2), "x")),
        r"image_feat\.npy: features must be numeric, got dtype <U1",
    ),
    (
        "feature NaN",
        _case_feature(_with_nan(2, np.nan)),
        r"image_feat\.npy: row 2 \(item 2, 0-based\) contains NaN",
    ),
    (
        "feature inf",
        _case_feature(_with_nan(1, -np.inf)),
        r"image_feat\.npy: row 1 \(item 1, 0-based\) contains an infinite value",
    ),
    (
        "feature rows disagree",
        _case_feature_rows_disagree,
        r"feature files disagree on the number of items: \S*audio_feat\.npy has 3 rows, "
        r"\S*image_feat\.npy has 4",
    ),
    (
        "feature file twice",
        _case_feature_twice,
        r"case: modality 'image' has two feature files \(image_feat\.npy and image_feat\.npy\.gz\)",
    ),
    (
        "item beyond features",
        _case_feature(np.ones((3, 2), np.float32), rows=[(0, 0, 0), (0, 5, 1), (0, 2, 2)]),
        r"toy\.inter: line 3: itemID 5 has no feature row; image_feat\.npy has 3 rows",
    ),
]


@pytest.mark.parametrize(
    ("setup", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_input_raises_one_line_data_error(
    tmp_path: Path, setup: Callable[[Path], Path], message: str
) -> None:
    folder = setup(tmp_path / "case")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=message) as info:
            load_mmrec(folder)
    text = str(info.value)
    assert "\n" not in text
    assert str(tmp_path) in text  # names the file or folder by its path


def test_error_line_numbers_survive_chunking(tmp_path: Path, monkeypatch) -> None:
    rows: list[Row | str] = [(u, u % 7, 0) for u in range(50)]
    rows[37] = "37\tx\t1.0\t0\t0"
    write_inter(tmp_path, rows)
    monkeypatch.setattr(mmrec, "_CHUNK_BYTES", 16)
    with pytest.raises(DataError, match=r"toy\.inter: line 39: itemID must be an integer, got 'x'"):
        load_mmrec(tmp_path)
    rows[37] = "37\t3\t1.0"
    write_inter(tmp_path, rows)
    with pytest.raises(DataError, match=r"toy\.inter: line 39 has 3 field\(s\)"):
        load_mmrec(tmp_path)


def test_unknown_name_or_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^no-such-set: neither a bundled dataset \(tiktok"):
        load_dataset("no-such-set")
    inter = write_inter(tmp_path, TOY)
    with pytest.raises(DataError, match=r"toy\.inter: neither a bundled dataset .* nor an"):
        load_dataset(inter)


# ---------------------------------------------------------------------- repairs
def test_duplicates_keep_lowest_label_then_earliest_row(tmp_path: Path) -> None:
    rows = [
        (0, 5, 2),  # line 2: (0, 5) also at lines 3, 5, 7 -> keep line 3 (train, earliest)
        (0, 5, 0),
        (0, 1, 0),
        (0, 5, 0),
        (0, 2, 1),
        (0, 5, 1),
        (0, 2, 1),  # line 8: repeats line 6 exactly
        (0, 3, 2),
        (1, 1, 0),
        (1, 2, 1),
        (1, 3, 2),
    ]
    write_inter(tmp_path, rows)
    with pytest.warns(DataWarning) as record:
        ds = load_mmrec(tmp_path)
    assert len(record) == 1
    message = str(record[0].message)
    assert "toy.inter: dropped 4 duplicate (userID, itemID) row(s), first at line 2" in message
    assert record[0].filename == __file__  # points at the caller
    assert edges(ds, "train") == [(0, 5), (0, 1), (1, 1)]
    assert edges(ds, "valid") == [(0, 2), (1, 2)]
    assert edges(ds, "test") == [(0, 3), (1, 3)]


def test_cold_valid_test_users_are_dropped(tmp_path: Path) -> None:
    rows = [*TOY, (2, 0, 1), (2, 1, 2), (3, 2, 2), (4, 0, 0)]
    write_inter(tmp_path, rows)
    with pytest.warns(DataWarning, match=r"dropped 3 valid/test row\(s\) of 2 user\(s\) with no"):
        ds = load_mmrec(tmp_path)
    assert ds.num_users == 5  # ids stay valid: largest userID + 1 over the whole file
    assert [ds.num_interactions(s) for s in ("train", "valid", "test")] == [3, 2, 2]
    assert ds.eval_users("test").tolist() == [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = load_mmrec(tmp_path, drop_cold_users=False)
    assert [kept.num_interactions(s) for s in ("train", "valid", "test")] == [3, 3, 4]


def test_clean_file_emits_no_warning(tmp_path: Path) -> None:
    write_inter(tmp_path, TOY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mmrec(tmp_path)


# ---------------------------------------------------------------------- layout details
def test_items_without_interactions_come_from_feature_rows(tmp_path: Path) -> None:
    write_inter(tmp_path / "ids", TOY)
    assert load_mmrec(tmp_path / "ids").num_items == 3
    write_inter(tmp_path / "feat", TOY)
    table = np.arange(20, dtype=np.float64).reshape(10, 2)
    write_feat(tmp_path / "feat", "text", table)
    ds = load_mmrec(tmp_path / "feat")
    assert ds.num_items == 10
    assert ds.data[ITEM].num_nodes == 10 and ds.data[USER].num_nodes == 2
    assert torch.equal(ds.features("text"), torch.from_numpy(table).float())


def test_columns_in_any_order_extra_columns_and_crlf(tmp_path: Path) -> None:
    header = "x_label\tnote\titemID\tuserID"
    lines = [f"{label}\tcomment {u}\t{i}\t{u}" for u, i, label in TOY]
    (tmp_path / "crlf").mkdir()
    text = "\r\n".join([header, *lines]) + "\r\n\r\n"
    (tmp_path / "crlf" / "x.inter").write_bytes(text.encode())
    write_inter(tmp_path / "plain", TOY)
    assert load_mmrec(tmp_path / "crlf").fingerprint == load_mmrec(tmp_path / "plain").fingerprint


def test_gz_and_plain_files_are_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(u, int(rng.integers(0, 40)), label) for u in range(30) for label in (0, 0, 1, 2)]
    image, audio = rng.normal(size=(40, 8)), rng.normal(size=(40, 3)).astype(np.float32)
    for gz in (False, True):
        folder = tmp_path / str(gz)
        write_inter(folder, rows, gz=gz)
        write_feat(folder, "image", image, gz=gz)
        write_feat(folder, "audio", audio, gz=not gz)  # mixed on purpose
    plain, packed = load_quietly(tmp_path / "False"), load_quietly(tmp_path / "True")
    assert plain.fingerprint == packed.fingerprint
    assert plain.modalities == packed.modalities == ["audio", "image"]
    assert plain.num_items == 40


def test_random_tables_match_a_plain_python_reference(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    monkeypatch.setattr(mmrec, "_CHUNK_BYTES", 64)  # many chunk boundaries
    for trial in range(5):
        n = int(rng.integers(20, 200))
        table = np.stack(
            [rng.integers(0, 15, n), rng.integers(0, 1000, n), rng.choice(3, n, p=[0.6, 0.2, 0.2])],
            axis=1,
        ).tolist()
        table += [(0, 0, 1), (0, 1, 2)] + [(u, u, 0) for u in range(15)]  # no empty split
        folder = tmp_path / str(trial)
        write_inter(folder, table)
        ds = load_quietly(folder)
        # Reference: best (label, row) per pair, then cold valid/test users out, in file order.
        best: dict[tuple[int, int], tuple[int, int]] = {}
        for row, (u, i, label) in enumerate(table):
            best[(u, i)] = min(best.get((u, i), (label, row)), (label, row))
        kept = sorted((row, u, i, label) for (u, i), (label, row) in best.items())
        trained = {u for _, u, _, label in kept if label == 0}
        for split, label in (("train", 0), ("valid", 1), ("test", 2)):
            expected = [(u, i) for _, u, i, lab in kept if lab == label and u in trained]
            assert edges(ds, split) == expected
        assert ds.num_users == max(u for u, _, _ in table) + 1
        assert ds.num_items == max(i for _, i, _ in table) + 1
        assert ds.data[INTERACTS].edge_index.dtype == torch.long


def test_error_messages_are_short_for_garbage_lines(tmp_path: Path) -> None:
    write_inter(tmp_path, [(0, 0, 0), "x" * 10_000])
    with pytest.raises(DataError) as info:
        load_mmrec(tmp_path)
    assert len(str(info.value)) < 400
    assert re.search(r"line 3 has 1 field\(s\).*\.\.\.\)$", str(info.value))
