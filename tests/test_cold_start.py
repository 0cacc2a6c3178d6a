import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmgraph.cli import main
from mmgraph.data import cold_item_labels, load_dataset, write_cold_item_split
from mmgraph.data.mmrec import _read_inter
from mmgraph.data.preprocess import preprocess
from mmgraph.errors import ConfigError
from tests.conftest import requires_shared, shared_data_dir

BAD_FRACTIONS = [0, 1, 1.5, -0.1]


def tiny_table(num_users: int = 12, num_items: int = 20, per_user: int = 8):
    """``(users, items, labels)`` ``[num_users * per_user]``: user ``u`` has items
    ``u, u + 1, ...`` (mod ``num_items``); its last two rows are valid, then test."""
    users = np.repeat(np.arange(num_users), per_user)
    items = (users + np.tile(np.arange(per_user), num_users)) % num_items
    labels = np.tile(np.r_[np.zeros(per_user - 2, dtype=np.int64), 1, 2], num_users)
    return users, items, labels


def write_tiny_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tiny.inter`` (with rating and timestamp), a gzipped and a plain feature file, a README."""
    users, items, labels = tiny_table()
    folder.mkdir(parents=True)
    rows = ["userID\titemID\trating\ttimestamp\tx_label"] + [
        f"{u}\t{i}\t{(u + i) % 5 + 1}.0\t{1000 + r}\t{x}"
        for r, (u, i, x) in enumerate(zip(users, items, labels))
    ]
    (folder / "tiny.inter").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    np.save(folder / "text_feat.npy", rng.normal(size=(20, 3)).astype(np.float32))
    image = rng.normal(size=(20, 4)).astype(np.float32)
    np.save(folder / "image.npy", image)  # gzipped below, then removed
    (folder / "image_feat.npy.gz").write_bytes(gzip.compress((folder / "image.npy").read_bytes()))
    (folder / "image.npy").unlink()
    (folder / "README.md").write_text("tiny\n")
    return users, items, labels


def check_cold_split(items, old, new, cold_valid, cold_test, fraction):
    """The contract of :func:`cold_item_labels` on ``[num_rows]`` arrays."""
    present = np.unique(items)
    assert np.intersect1d(cold_valid, cold_test).size == 0
    assert cold_valid.size + cold_test.size == round(fraction * present.size)
    assert cold_valid.size == (cold_valid.size + cold_test.size) // 2
    assert np.isin(cold_valid, present).all() and np.isin(cold_test, present).all()
    assert (new[np.isin(items, cold_valid)] == 1).all()
    assert (new[np.isin(items, cold_test)] == 2).all()
    warm = ~np.isin(items, np.r_[cold_valid, cold_test])
    np.testing.assert_array_equal(new[warm], old[warm])
    held_out = np.r_[cold_valid, cold_test]
    assert not np.isin(held_out, items[new == 0]).any()  # no training row at all


def train_less_items(dataset) -> set[int]:
    """Items (of ``0..num_items-1``) without a training interaction in a loaded dataset."""
    has_train = np.zeros(dataset.num_items, dtype=bool)
    has_train[dataset.edge_index("train")[1].numpy()] = True
    return set(np.flatnonzero(~has_train).tolist())


def read_cold_items(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(items, labels)`` of a written ``.inter``, the items whose rows are all valid or all
    test, and each item's lowest label (3 for an item without rows)."""
    (inter,) = folder.glob("*.inter")
    _, items, labels = _read_inter(inter)
    lowest = np.full(items.max() + 1, 3)
    highest = np.full(items.max() + 1, -1)
    np.minimum.at(lowest, items, labels)
    np.maximum.at(highest, items, labels)
    return items, labels, np.flatnonzero((lowest == highest) & (lowest > 0)), lowest


# ---------------------------------------------------------------------- labels
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 7])
def test_cold_item_labels_on_a_tiny_table(fraction, seed):
    users, items, labels = tiny_table()
    new, cold_valid, cold_test = cold_item_labels(users, items, labels, 20, fraction, seed)
    check_cold_split(items, labels, new, cold_valid, cold_test, fraction)
    assert new.dtype == cold_valid.dtype == cold_test.dtype == np.int64


def test_same_seed_same_labels_other_seed_other_items():
    users, items, labels = tiny_table()
    first = cold_item_labels(users, items, labels, 20, 0.5, 3)
    again = cold_item_labels(users, items, labels, 20, 0.5, 3)
    other = cold_item_labels(users, items, labels, 20, 0.5, 4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1]) or not np.array_equal(first[2], other[2])


def test_items_without_training_rows_can_be_drawn_items_without_rows_cannot():
    # Items 1 and 2 occur only in valid / test; items 6 and 7 have no row at all.
    users = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    items = np.array([0, 1, 3, 4, 0, 2, 5, 4])
    labels = np.array([0, 1, 0, 0, 0, 2, 0, 0])
    drawn = set()
    for seed in range(10):
        new, cold_valid, cold_test = cold_item_labels(users, items, labels, 8, 0.5, seed)
        check_cold_split(items, labels, new, cold_valid, cold_test, 0.5)
        drawn |= set(cold_valid) | set(cold_test)
    assert {1, 2} & drawn and not {6, 7} & drawn


@pytest.mark.parametrize("fraction", [*BAD_FRACTIONS, math.nan, True])
def test_bad_fraction_is_a_config_error(fraction):
    with pytest.raises(ConfigError, match=r"--cold-items.*between 0 and 1"):
        cold_item_labels(*tiny_table(), 20, fraction, 0)


def test_fractions_that_hold_out_nothing_or_everything_are_refused():
    users, items, labels = tiny_table()
    with pytest.raises(ConfigError, match="holds out no item"):
        cold_item_labels(users, items, labels, 20, 0.01, 0)  # round(0.01 * 19 items) == 0
    with pytest.raises(ConfigError, match="leaves no training row"):
        cold_item_labels(users, items, labels, 20, 0.99, 0)  # round(18.81): all 19 items


# ---------------------------------------------------------------------- folders
def test_written_tiny_folder_keeps_columns_and_files_and_loads(tmp_path):
    users, items, labels = write_tiny_folder(tmp_path / "tiny")
    report = write_cold_item_split(tmp_path / "tiny", tmp_path / "cold", 0.3, seed=5)
    out = tmp_path / "cold"
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "cold_split.json",
        "image_feat.npy",
        "text_feat.npy",
        "tiny.inter",
    ]
    assert (out / "README.md").read_text() == "tiny\n"
    source_lines = (tmp_path / "tiny" / "tiny.inter").read_text().splitlines()
    cold_lines = (out / "tiny.inter").read_text().splitlines()
    assert [line.rsplit("\t", 1)[0] for line in cold_lines] == [
        line.rsplit("\t", 1)[0] for line in source_lines
    ]  # same header, rows and columns; only x_label may change

    new, cold_valid, cold_test = cold_item_labels(users, items, labels, 20, 0.3, 5)
    np.testing.assert_array_equal(_read_inter(out / "tiny.inter")[2], new)
    assert json.loads((out / "cold_split.json").read_text()) == report.to_dict()
    assert report.to_dict() == {
        "folder": str(out.resolve()),
        "source": str((tmp_path / "tiny").resolve()),
        "fraction": 0.3,
        "seed": 5,
        "num_items": 19,  # item 19 has features but no rows
        "cold_valid_items": cold_valid.size,
        "cold_test_items": cold_test.size,
        "splits_before": {"train": 72, "valid": 12, "test": 12},
        "splits_after": {
            s: int((new == i).sum()) for i, s in enumerate(("train", "valid", "test"))
        },
        "users_without_train": np.setdiff1d(users, users[new == 0]).size,
    }

    before, after = load_dataset(tmp_path / "tiny"), load_dataset(out)
    np.testing.assert_array_equal(after.features("image"), before.features("image"))
    assert train_less_items(after) == train_less_items(before) | set(cold_valid) | set(cold_test)


def test_existing_output_needs_overwrite_and_source_is_protected(tmp_path):
    write_tiny_folder(tmp_path / "tiny")
    write_cold_item_split(tmp_path / "tiny", tmp_path / "cold", 0.3, seed=5)
    with pytest.raises(ConfigError, match="already holds a dataset"):
        write_cold_item_split(tmp_path / "tiny", tmp_path / "cold", 0.3, seed=6)
    write_cold_item_split(tmp_path / "tiny", tmp_path / "cold", 0.3, seed=6, overwrite=True)
    assert json.loads((tmp_path / "cold" / "cold_split.json").read_text())["seed"] == 6
    with pytest.raises(ConfigError, match="is the source folder"):
        write_cold_item_split(tmp_path / "tiny", tmp_path / "tiny", 0.3, overwrite=True)
    assert (tmp_path / "tiny" / "tiny.inter").is_file()


def test_bundled_name_is_a_source(tmp_path):
    report = write_cold_item_split("tiktok", tmp_path / "cold", 0.2, seed=2024)
    assert report.source == "tiktok"
    out = tmp_path / "cold"
    assert {"tiktok.inter", "image_feat.npy", "audio_feat.npy", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    _, labels, cold, _ = read_cold_items(out)
    assert report.splits_after == {
        s: int((labels == i).sum()) for i, s in enumerate(("train", "valid", "test"))
    }
    assert report.cold_valid_items + report.cold_test_items == round(0.2 * report.num_items)
    assert cold.size >= report.cold_valid_items + report.cold_test_items
    with pytest.warns(UserWarning, match=f"of {report.users_without_train} user"):
        dataset = load_dataset(out)
    with pytest.warns(UserWarning, match="no training interaction"):
        assert dataset.num_items == load_dataset("tiktok").num_items


# ---------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def tiktok_cold(tmp_path_factory):
    """The shared TikTok folder cold-split by the CLI with fraction 0.2, seed 2024."""
    out = tmp_path_factory.mktemp("cold") / "tiktok"
    argv = ["cold-split", str(shared_data_dir() / "tiktok"), str(out), "--fraction", "0.2"]
    assert main([*argv, "--seed", "2024"]) == 0
    return out


@requires_shared("tiktok")
def test_tiktok_cold_split_contract(tiktok_cold, capsys):
    source = shared_data_dir() / "tiktok"
    users, items, labels = _read_inter(source / "tiktok.inter")
    new, cold_valid, cold_test = cold_item_labels(users, items, labels, items.max() + 1, 0.2, 2024)
    check_cold_split(items, labels, new, cold_valid, cold_test, 0.2)
    np.testing.assert_array_equal(_read_inter(tiktok_cold / "tiktok.inter")[2], new)
    report = json.loads((tiktok_cold / "cold_split.json").read_text())
    assert (report["cold_valid_items"], report["cold_test_items"]) == (
        cold_valid.size,
        cold_test.size,
    )
    assert report["splits_before"]["train"] == int((labels == 0).sum())

    with pytest.warns(UserWarning, match="no training interaction"):
        after = load_dataset(tiktok_cold)
    with pytest.warns(UserWarning, match="no training interaction"):
        before = load_dataset(source)
    assert after.num_items == before.num_items
    assert train_less_items(after) == train_less_items(before) | set(cold_valid) | set(cold_test)


@requires_shared("tiktok")
def test_tiktok_same_seed_same_files_other_seed_other_items(tiktok_cold, tmp_path, capsys):
    source = str(shared_data_dir() / "tiktok")
    capsys.readouterr()
    assert main(["cold-split", source, str(tmp_path / "same"), "--fraction", "0.2"]) == 0
    summary = capsys.readouterr().out.splitlines()
    assert len(summary) == 1 and summary[0].startswith(f"wrote {(tmp_path / 'same').resolve()}")
    for name in ("tiktok.inter", "image_feat.npy", "audio_feat.npy"):
        assert (tmp_path / "same" / name).read_bytes() == (tiktok_cold / name).read_bytes()
    argv = ["cold-split", source, str(tmp_path / "other"), "--fraction", "0.2", "--seed", "1"]
    assert main(argv) == 0
    _, _, cold_same, _ = read_cold_items(tiktok_cold)
    _, _, cold_other, _ = read_cold_items(tmp_path / "other")
    assert not np.array_equal(cold_same, cold_other)


# ---------------------------------------------------------------------- command line
@pytest.mark.parametrize("fraction", BAD_FRACTIONS)
def test_cli_bad_fraction_gives_one_line_and_exit_2(tmp_path, fraction, capsys):
    write_tiny_folder(tmp_path / "tiny")
    argv = ["cold-split", str(tmp_path / "tiny"), str(tmp_path / "cold")]
    assert main([*argv, "--fraction", str(fraction)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmgraph: error: ")
    assert "--fraction" in err[0] and str(float(fraction)) in err[0]
    assert not (tmp_path / "cold").exists()


def test_cli_existing_output_needs_overwrite(tmp_path, capsys):
    write_tiny_folder(tmp_path / "tiny")
    argv = ["cold-split", str(tmp_path / "tiny"), str(tmp_path / "cold"), "--fraction", "0.3"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmgraph: error: ") and "--overwrite" in err[0]
    assert main([*argv, "--overwrite"]) == 0


def test_cli_missing_source_gives_one_line_and_exit_2(tmp_path, capsys):
    assert main(["cold-split", str(tmp_path / "nope"), str(tmp_path / "cold")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a bundled dataset" in err[0]


# ---------------------------------------------------------------------- preprocess
def write_ratings_csv(path: Path) -> None:
    users, items, _ = tiny_table()
    rows = ["user,item,timestamp"] + [
        f"u{u},i{i},{100 + r}" for r, (u, i) in enumerate(zip(users, items))
    ]
    path.write_text("\n".join(rows) + "\n")


def test_preprocess_cold_items_after_the_split(tmp_path):
    write_ratings_csv(tmp_path / "ratings.csv")
    common = {"user_col": "user", "item_col": "item", "k_core": 1, "seed": 3}
    plain = preprocess(tmp_path / "ratings.csv", tmp_path / "plain", **common)
    report = preprocess(tmp_path / "ratings.csv", tmp_path / "cold", cold_items=0.5, **common)
    assert (plain.cold_items, plain.cold_valid_items, plain.cold_test_items) == (None, 0, 0)
    assert (report.cold_items, report.cold_valid_items, report.cold_test_items) == (0.5, 5, 5)

    users, items, old = _read_inter(tmp_path / "plain" / "plain.inter")
    new_users, new_items, new = _read_inter(tmp_path / "cold" / "cold.inter")
    order = np.lexsort((items, users))
    new_order = np.lexsort((new_items, new_users))
    expected = cold_item_labels(users[order], items[order], old[order], 20, 0.5, 3)
    np.testing.assert_array_equal(new[new_order], expected[0])
    check_cold_split(items[order], old[order], new[new_order], *expected[1:], 0.5)
    assert report.splits == {
        s: int((new == i).sum()) for i, s in enumerate(("train", "valid", "test"))
    }


@pytest.mark.parametrize("fraction", BAD_FRACTIONS)
def test_cli_preprocess_bad_cold_items(tmp_path, fraction, capsys):
    write_ratings_csv(tmp_path / "ratings.csv")
    argv = ["preprocess", str(tmp_path / "ratings.csv"), str(tmp_path / "out")]
    argv += ["--user-col", "user", "--item-col", "item", "--cold-items", str(fraction)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmgraph: error: ") and "--cold-items" in err[0]
    assert not (tmp_path / "out").exists()


def test_cli_preprocess_cold_items(tmp_path, capsys):
    write_ratings_csv(tmp_path / "ratings.csv")
    argv = ["preprocess", str(tmp_path / "ratings.csv"), str(tmp_path / "out"), "--k-core", "1"]
    argv += ["--user-col", "user", "--item-col", "item", "--cold-items", "0.3", "--seed", "9"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cold_items"] == 0.3
    assert (printed["cold_valid_items"], printed["cold_test_items"]) == (3, 3)  # round(5.7)
    _, _, cold, _ = read_cold_items(tmp_path / "out")
    assert cold.size >= 6
    assert len(train_less_items(load_dataset(tmp_path / "out"))) >= 6
