"""Malformed inputs through the CLI: exit status 2, one stderr line naming the culprit.

Each case builds its bad input in a fresh folder and returns the command line; the expected
fragments name the file, field, line or key at fault.
"""

import gzip
import pickle
import shutil
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mmgraph.cli import main
from mmgraph.errors import DataWarning
from tests.test_cli import write_mmrec_folder

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset folder with id maps (from `preprocess`) and a one-epoch BPR run on it."""
    root = tmp_path_factory.mktemp("malformed")
    ratings = root / "ratings.csv"
    rng = np.random.default_rng(0)
    rows = {(f"u{u}", f"i{i}") for u, i in rng.integers(0, [40, 15], size=(600, 2))}
    ratings.write_text("userID,itemID\n" + "".join(f"{u},{i}\n" for u, i in sorted(rows)))
    assert main(["preprocess", str(ratings), str(root / "data"), "--k-core", "2"]) == 0
    argv = ["train", "--model", "bpr", "--dataset", str(root / "data"), "--epochs", "1",
            "--out", str(root / "run"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return root


def inter_folder(tmp, body, header=HEADER, name="bad.inter"):
    folder = tmp / "ds"
    folder.mkdir()
    (folder / name).write_text(header + body)
    return folder


def good_folder(tmp):
    write_mmrec_folder(tmp / "ds", num_users=10, num_items=8, per_user=4)
    return tmp / "ds"


def train_on(folder):
    return ["train", "--model", "bpr", "--dataset", str(folder), "--epochs", "1", "--quiet"]


def copy_checkpoint(trained, tmp, transform):
    path = tmp / "ckpt.pt"
    path.write_bytes(transform((trained / "run" / "best.pt").read_bytes()))
    return ["evaluate", "--checkpoint", str(path)]


# ---------------------------------------------------------------------- cases
def missing_label_column(tmp, trained):
    folder = inter_folder(tmp, "0\t1\n", header="userID\titemID\n")
    return train_on(folder), ["bad.inter", "line 1", "x_label"]


def non_integer_item(tmp, trained):
    folder = inter_folder(tmp, "0\t1\t1\t0\t0\n0\tbook\t1\t0\t1\n")
    return train_on(folder), ["bad.inter", "line 3", "itemID", "'book'"]


def negative_user(tmp, trained):
    folder = inter_folder(tmp, "0\t1\t1\t0\t0\n-4\t2\t1\t0\t1\n")
    return train_on(folder), ["bad.inter", "line 3", "userID", "-4"]


def ragged_line(tmp, trained):
    folder = inter_folder(tmp, "0\t1\t1\t0\t0\n1\t2\t1\n")
    return train_on(folder), ["bad.inter", "line 3", "3 field(s)"]


def unknown_split_label(tmp, trained):
    folder = inter_folder(tmp, "0\t1\t1\t0\t0\n1\t2\t1\t0\t7\n")
    return train_on(folder), ["bad.inter", "line 3", "x_label", "7"]


def truncated_gzip_inter(tmp, trained):
    folder = tmp / "ds"
    folder.mkdir()
    data = gzip.compress((HEADER + "0\t1\t1\t0\t0\n" * 50).encode())
    (folder / "bad.inter.gz").write_bytes(data[: len(data) // 2])
    return train_on(folder), ["bad.inter.gz", "cannot be read"]


def two_interaction_files(tmp, trained):
    folder = good_folder(tmp)
    shutil.copy(folder / "tiny.inter", folder / "copy.inter")
    return train_on(folder), ["more than one interaction file", "copy.inter"]


def nan_feature(tmp, trained):
    folder = good_folder(tmp)
    table = np.load(folder / "image_feat.npy")
    table[5, 2] = np.nan
    np.save(folder / "image_feat.npy", table)
    return train_on(folder), ["image_feat.npy", "row 5", "NaN"]


def feature_not_npy(tmp, trained):
    folder = good_folder(tmp)
    (folder / "text_feat.npy").write_bytes(b"these are not numbers")
    return train_on(folder), ["text_feat.npy", "not a readable .npy"]


def too_few_feature_rows(tmp, trained):
    folder = good_folder(tmp)
    np.save(folder / "image_feat.npy", np.ones((3, 4), dtype=np.float32))
    return train_on(folder), ["tiny.inter", "itemID", "image_feat.npy has 3 rows"]


def one_dimensional_feature(tmp, trained):
    folder = good_folder(tmp)
    np.save(folder / "image_feat.npy", np.ones(8, dtype=np.float32))
    return train_on(folder), ["image_feat.npy", "2-D", "(8,)"]


def unknown_config_key(tmp, trained):
    config = tmp / "run.yaml"
    config.write_text("model: bpr\nlearning_rate: 0.01\n")
    argv = ["train", "--dataset", str(good_folder(tmp)), "--config", str(config)]
    return argv, ["run.yaml", "'learning_rate'", "did you mean lr"]


def invalid_yaml(tmp, trained):
    config = tmp / "broken.yaml"
    config.write_text("model: bpr\nlr: [0.1\n")
    argv = ["train", "--dataset", str(good_folder(tmp)), "--config", str(config)]
    return argv, ["broken.yaml", "not valid YAML"]


def wrong_value_type(tmp, trained):
    argv = [*train_on(good_folder(tmp)), "--set", "batch_size=many"]
    return argv, ["--set", "'batch_size'", "int", "'many'"]


def truncated_checkpoint(tmp, trained):
    argv = copy_checkpoint(trained, tmp, lambda raw: raw[: len(raw) // 3])
    return argv, ["ckpt.pt", "truncated or corrupt"]


def foreign_checkpoint(tmp, trained):
    path = tmp / "other.pt"
    torch.save({"state_dict": OrderedDict(w=torch.ones(2))}, path)
    return ["evaluate", "--checkpoint", str(path)], ["other.pt", "not an mmgraph"]


def pickled_object_checkpoint(tmp, trained):
    path = tmp / "evil.pt"
    torch.save({"payload": pickle.loads(pickle.dumps(OSError("x")))}, path)
    return ["recommend", "--checkpoint", str(path)], ["evil.pt", "refused to load"]


def checkpoint_for_other_data(tmp, trained):
    folder = tmp / "data"
    shutil.copytree(trained / "data", folder)
    inter = folder / "data.inter"
    lines = inter.read_text().splitlines()
    *head, last = lines
    assert last.endswith("\t2")
    inter.write_text("\n".join([*head, last[:-1] + "1"]) + "\n")  # one test row -> valid
    argv = ["evaluate", "--checkpoint", str(trained / "run" / "best.pt"), "--dataset", str(folder)]
    return argv, ["best.pt", "different data"]


def resume_without_run(tmp, trained):
    return ["train", "--resume", "--out", str(tmp / "nothing")], ["last.pt", "not found"]


def ratings_without_item_column(tmp, trained):
    ratings = tmp / "r.csv"
    ratings.write_text("user,product\na,b\n")
    argv = ["preprocess", str(ratings), str(tmp / "out"), "--user-col", "user"]
    return argv, ["r.csv", "item column 'itemID'", "user, product"]


def ratings_with_empty_user(tmp, trained):
    ratings = tmp / "r.tsv"
    ratings.write_text("userID\titemID\na\tb\n\tc\n")
    return ["preprocess", str(ratings), str(tmp / "out")], ["r.tsv", "line 3", "user id"]


def ratings_with_bad_timestamp(tmp, trained):
    ratings = tmp / "r.csv"
    ratings.write_text("userID,itemID,timestamp\na,b,12\na,c,yesterday\n")
    argv = ["preprocess", str(ratings), str(tmp / "out"), "--split", "chronological"]
    return argv, ["r.csv", "line 3", "timestamp", "'yesterday'"]


def features_misaligned_with_ids(tmp, trained):
    ratings = tmp / "r.csv"
    ratings.write_text("userID,itemID\na,b\n")
    (tmp / "ids.txt").write_text("b\nc\n")
    np.save(tmp / "img.npy", np.ones((3, 2)))
    argv = ["preprocess", str(ratings), str(tmp / "out"), "--k-core", "1",
            "--features", f"image={tmp / 'img.npy'}", "--feature-ids", str(tmp / "ids.txt")]  # fmt: skip
    return argv, ["item_features['image']", "3 feature rows but 2 raw item ids"]


def features_without_ids(tmp, trained):
    ratings = tmp / "r.csv"
    ratings.write_text("userID,itemID\na,b\n")
    argv = ["preprocess", str(ratings), str(tmp / "out"), "--features", "image=x.npy"]
    return argv, ["--features needs --feature-ids"]


def raw_ids_without_maps(tmp, trained):
    folder = good_folder(tmp)
    assert main([*train_on(folder), "--out", str(tmp / "run")]) == 0
    argv = ["recommend", "--checkpoint", str(tmp / "run" / "best.pt"), "--raw-ids"]
    return argv, ["--raw-ids", "u_id_mapping.csv"]


def unknown_raw_user(tmp, trained):
    argv = ["recommend", "--checkpoint", str(trained / "run" / "best.pt"), "--raw-ids",
            "--users", "u1,nobody"]  # fmt: skip
    return argv, ["--users", "'nobody'", "u_id_mapping.csv"]


def plot_without_log(tmp, trained):
    (tmp / "empty-run").mkdir()
    return ["plot", str(tmp / "empty-run")], ["empty-run/log.jsonl", "training log not found"]


CASES = [
    missing_label_column,
    non_integer_item,
    negative_user,
    ragged_line,
    unknown_split_label,
    truncated_gzip_inter,
    two_interaction_files,
    nan_feature,
    feature_not_npy,
    too_few_feature_rows,
    one_dimensional_feature,
    unknown_config_key,
    invalid_yaml,
    wrong_value_type,
    truncated_checkpoint,
    foreign_checkpoint,
    pickled_object_checkpoint,
    checkpoint_for_other_data,
    resume_without_run,
    ratings_without_item_column,
    ratings_with_empty_user,
    ratings_with_bad_timestamp,
    features_misaligned_with_ids,
    features_without_ids,
    raw_ids_without_maps,
    unknown_raw_user,
    plot_without_log,
]


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_malformed_input_gives_exit_2_and_one_line(case, trained, tmp_path, capsys):
    argv, fragments = case(tmp_path, trained)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # a repair would be a second line
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("mmgraph: error: ")
    missing = [f for f in fragments if f not in lines[0]]
    assert not missing, (missing, lines[0])
