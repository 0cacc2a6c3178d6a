import csv
import warnings
from collections import Counter

import numpy as np
import pytest

from mmgraph.cli import main
from mmgraph.data import load_dataset
from mmgraph.data.preprocess import (
    ITEM_MAP,
    USER_MAP,
    k_core_mask,
    preprocess,
    read_id_map,
    split_counts,
    split_labels,
)
from mmgraph.errors import ConfigError, DataError, DataWarning


def random_ratings(seed, num_rows=600, num_users=60, num_items=40):
    """Rows (user, item, rating, timestamp) with raw string ids, repeats and skewed degrees."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, num_rows) % num_users
    items = rng.zipf(1.4, num_rows) % num_items
    times = rng.permutation(num_rows) * 10 + 1_000_000
    return [
        (f"u{u}", f"item-{i}", f"{rng.integers(1, 6)}.0", str(t))
        for u, i, t in zip(users, items, times, strict=True)
    ]


def write_csv(path, rows, header=("userID", "itemID", "rating", "timestamp"), sep=","):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def read_inter(folder):
    """``[(userID, itemID, x_label, timestamp)]`` of the folder's .inter file."""
    (path,) = folder.glob("*.inter")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        return [
            (int(r["userID"]), int(r["itemID"]), int(r["x_label"]), r.get("timestamp"))
            for r in reader
        ]


def brute_force_k_core(pairs, k):
    """Remove one user or item with fewer than k pairs at a time until none is left (the
    k-core does not depend on the order of removal)."""
    pairs = set(pairs)
    while True:
        users = Counter(u for u, _ in pairs)
        items = Counter(i for _, i in pairs)
        weak_user = next((u for u in sorted(users) if users[u] < k), None)
        if weak_user is not None:
            pairs = {(u, i) for u, i in pairs if u != weak_user}
            continue
        weak_item = next((i for i in sorted(items) if items[i] < k), None)
        if weak_item is None:
            return pairs
        pairs = {(u, i) for u, i in pairs if i != weak_item}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_k_core_matches_a_brute_force_loop(seed, k):
    rows = random_ratings(seed)
    pairs = sorted({(u, i) for u, i, _, _ in rows})
    users = np.unique([u for u, _ in pairs], return_inverse=True)[1]
    items = np.unique([i for _, i in pairs], return_inverse=True)[1]
    kept = {pair for pair, keep in zip(pairs, k_core_mask(users, items, k), strict=True) if keep}
    assert kept == brute_force_k_core(pairs, k)
    if kept:  # every survivor has degree >= k
        assert min(Counter(u for u, _ in kept).values()) >= k
        assert min(Counter(i for _, i in kept).values()) >= k


def test_id_maps_round_trip_and_the_folder_loads(tmp_path):
    rows = random_ratings(0, num_rows=1500)
    source = write_csv(tmp_path / "ratings.csv", rows)
    with pytest.warns(DataWarning, match="repeated"):
        report = preprocess(source, tmp_path / "out", k_core=3)
    raw_users = read_id_map(tmp_path / "out" / USER_MAP)
    raw_items = read_id_map(tmp_path / "out" / ITEM_MAP)
    inter = read_inter(tmp_path / "out")
    back = {(raw_users[u], raw_items[i]) for u, i, _, _ in inter}
    assert back == brute_force_k_core({(u, i) for u, i, _, _ in rows}, 3)
    assert len(inter) == len(back) == report.rows_after_k_core
    # New ids follow the order of first appearance among the kept rows (the earliest of each
    # repeated pair), in file order.
    earliest = {}
    for row, (u, i, _, t) in enumerate(rows):
        if (u, i) in back and int(t) < earliest.get((u, i), (np.inf, 0))[0]:
            earliest[(u, i)] = (int(t), row)
    kept = sorted((row, u, i) for (u, i), (_, row) in earliest.items())
    assert raw_users == list(dict.fromkeys(u for _, u, _ in kept))
    assert raw_items == list(dict.fromkeys(i for _, _, i in kept))
    dataset = load_dataset(tmp_path / "out")
    assert (dataset.num_users, dataset.num_items) == (report.num_users, report.num_items)
    assert sum(report.splits.values()) == report.rows_after_k_core
    assert dataset.num_interactions("test") == report.splits["test"]


def test_duplicates_keep_the_earliest_row(tmp_path):
    rows = [("a", "x", "1", "50"), ("a", "x", "5", "10"), ("a", "y", "2", "20")]
    source = write_csv(tmp_path / "r.csv", rows)
    with pytest.warns(DataWarning, match="dropped 1 repeated"):
        report = preprocess(source, tmp_path / "out", k_core=1)
    assert report.duplicates_dropped == 1
    text = next((tmp_path / "out").glob("*.inter")).read_text()
    assert "\t5\t10\t" in text and "\t1\t50\t" not in text


@pytest.mark.parametrize("method", ["random", "chronological"])
def test_split_follows_the_mmrec_rule_per_user(tmp_path, method):
    rng = np.random.default_rng(1)
    sizes = [3, 4, 9, 10, 11, 14, 15, 19, 20, 24, 37]
    rows = [
        (f"user{n}", f"i{j}", "1", str(int(rng.integers(10**9)))) for n in sizes for j in range(n)
    ]
    source = write_csv(tmp_path / "r.tsv", rows, sep="\t")
    preprocess(source, tmp_path / "out", k_core=1, split=method)
    raw_users = read_id_map(tmp_path / "out" / USER_MAP)
    inter = read_inter(tmp_path / "out")
    for user, n in zip(raw_users, sizes, strict=True):
        assert user == f"user{n}"
    for uid, n in enumerate(sizes):
        labels = Counter(label for u, _, label, _ in inter if u == uid)
        vt = 2 if n < 10 else int(0.2 * n)
        assert (labels[1], labels[2]) == (vt // 2, vt - vt // 2)
        assert labels[0] == n - vt
        if method == "chronological":
            mine = sorted((int(t), label) for u, _, label, t in inter if u == uid)
            assert [label for _, label in mine] == sorted(label for _, label in mine)


def test_split_counts_and_small_users():
    valid, test = split_counts(np.array([1, 2, 3, 9, 10, 15, 50]))
    assert valid.tolist() == [0, 0, 1, 1, 1, 1, 5]
    assert test.tolist() == [0, 0, 1, 1, 1, 2, 5]
    labels = split_labels(np.array([0, 1, 1]), None, method="random", seed=0)
    assert labels.tolist() == [0, 0, 0]


def test_same_seed_same_files_other_seed_other_split(tmp_path):
    source = write_csv(tmp_path / "r.csv", random_ratings(3, num_rows=1500))
    folders = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            preprocess(source, tmp_path / name, name="data", seed=seed, k_core=2)
        folders.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert folders[0] == folders[1]
    assert folders[0]["data.inter"] != folders[2]["data.inter"]
    assert folders[0][USER_MAP] == folders[2][USER_MAP]


def test_item_features_are_aligned_by_raw_id(tmp_path):
    rows = [(f"u{u}", f"m{i}", "1", str(u * 100 + i)) for u in range(12) for i in range(6)]
    source = write_csv(tmp_path / "r.csv", rows)
    raw = [f"m{i}" for i in range(7)][::-1]  # another order, plus an item without ratings
    table = np.array([[float(r[1:]), 1.0] for r in raw])
    preprocess(source, tmp_path / "out", item_features={"image": (raw, table)})
    dataset = load_dataset(tmp_path / "out")
    items = read_id_map(tmp_path / "out" / ITEM_MAP)
    feats = dataset.features("image").numpy()
    assert feats.shape == (6, 2)
    assert feats[:, 0].tolist() == [float(r[1:]) for r in items]
    # A mapping works too; a missing item is an error unless filled.
    partial = {f"m{i}": [float(i)] for i in range(5)}
    with pytest.raises(DataError, match="1 of 6 items have no feature row"):
        preprocess(source, tmp_path / "o2", item_features={"text": partial})
    with pytest.warns(DataWarning, match="mean vector"):
        preprocess(
            source, tmp_path / "o3", item_features={"text": partial}, missing_features="mean"
        )
    filled = np.load(tmp_path / "o3" / "text_feat.npy")
    assert filled[items.index("m5"), 0] == pytest.approx(2.0)


def test_no_header_positions_and_gzip(tmp_path):
    import gzip

    rows = [(str(t), f"u{u}", f"i{i}") for t, (u, i) in enumerate((u, i) for u in range(6) for i in range(6))]  # fmt: skip
    path = tmp_path / "r.tsv.gz"
    path.write_bytes(gzip.compress("".join("\t".join(r) + "\n" for r in rows).encode()))
    report = preprocess(
        path, tmp_path / "out", header=False, user_col=1, item_col=2, timestamp_col=0,
        rating_col=None, split="chronological",
    )  # fmt: skip
    assert (report.num_users, report.num_items, report.rows_after_k_core) == (6, 6, 36)
    header = next((tmp_path / "out").glob("*.inter")).read_text().splitlines()[0]
    assert header == "userID\titemID\ttimestamp\tx_label"


def test_dataframe_input_matches_the_csv(tmp_path):
    pandas = pytest.importorskip("pandas")
    rows = random_ratings(4, num_rows=800)
    write_csv(tmp_path / "r.csv", rows)
    frame = pandas.DataFrame(rows, columns=["user", "item", "stars", "ts"])
    frame["ts"] = frame["ts"].astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        preprocess(tmp_path / "r.csv", tmp_path / "a", name="d", k_core=2)
        preprocess(
            frame, tmp_path / "b", name="d", k_core=2, user_col="user", item_col="item",
            rating_col="stars", timestamp_col="ts",
        )  # fmt: skip
    for name in ("d.inter", USER_MAP, ITEM_MAP):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_parquet_with_datetimes_matches_the_dataframe(tmp_path):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pandas.DataFrame(
        {"user": ["a", "a", "b", "b"], "item": [1, 2, 1, 2],
         "when": pandas.to_datetime(["2020-01-02", "2020-01-01", "2021-05-01", "2021-04-01"])}
    )  # fmt: skip
    frame.to_parquet(tmp_path / "r.parquet")
    options = {"user_col": "user", "item_col": "item", "timestamp_col": "when", "k_core": 1}
    preprocess(tmp_path / "r.parquet", tmp_path / "a", name="d", **options)
    preprocess(frame, tmp_path / "b", name="d", **options)
    text = (tmp_path / "a" / "d.inter").read_text()
    assert text == (tmp_path / "b" / "d.inter").read_text()
    assert "\t1577836800\t" in text  # 2020-01-01 as Unix seconds


def test_option_and_table_errors(tmp_path):
    source = write_csv(tmp_path / "r.csv", random_ratings(0))
    with pytest.raises(ConfigError, match="split must be one of"):
        preprocess(source, tmp_path / "o", split="temporal")
    with pytest.raises(ConfigError, match="k_core"):
        preprocess(source, tmp_path / "o", k_core=0)
    with pytest.raises(DataError, match="no user column 'uid'"):
        preprocess(source, tmp_path / "o", user_col="uid")
    no_time = write_csv(tmp_path / "n.csv", [("a", "b")], header=("userID", "itemID"))
    with pytest.raises(ConfigError, match="chronological split needs a timestamp"):
        preprocess(no_time, tmp_path / "o", split="chronological")
    with pytest.raises(DataError, match="no interactions left after the 50-core"):
        preprocess(no_time, tmp_path / "o", k_core=50)
    preprocess(no_time, tmp_path / "done", k_core=1)
    with pytest.raises(ConfigError, match="already holds a dataset"):
        preprocess(no_time, tmp_path / "done", k_core=1)
    preprocess(no_time, tmp_path / "done", k_core=1, overwrite=True)


def test_cli_preprocess_train_and_recommend_with_raw_ids(tmp_path, capsys):
    rows = random_ratings(5, num_rows=2500, num_users=80, num_items=30)
    source = write_csv(tmp_path / "ratings.csv", rows)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"item-{i}\n" for i in range(30)))
    np.save(tmp_path / "img.npy", np.random.default_rng(0).normal(size=(30, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert main(["preprocess", str(source), str(tmp_path / "data"), "--k-core", "3",
                     "--features", f"image={tmp_path / 'img.npy'}",
                     "--feature-ids", str(ids)]) == 0  # fmt: skip
    assert (tmp_path / "data" / "image_feat.npy").is_file()
    run = tmp_path / "run"
    argv = ["train", "--model", "bpr", "--dataset", str(tmp_path / "data"), "--epochs", "1",
            "--out", str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    raw_users = read_id_map(tmp_path / "data" / USER_MAP)
    raw_items = read_id_map(tmp_path / "data" / ITEM_MAP)
    capsys.readouterr()
    wanted = f"{raw_users[4]},{raw_users[0]}"
    assert main(["recommend", "--checkpoint", str(run / "best.pt"), "--users", wanted,
                 "--k", "3", "--raw-ids"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "userID\trank\titemID\tscore"
    out = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in out] == [raw_users[4]] * 3 + [raw_users[0]] * 3
    assert all(r[2] in raw_items for r in out)
    train = {(raw_users[u], raw_items[i]) for u, i, label, _ in read_inter(tmp_path / "data") if label == 0}  # fmt: skip
    assert all((r[0], r[2]) not in train for r in out)
