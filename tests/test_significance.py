"""The paired test over users against scipy's Wilcoxon on hand-made tables."""

import numpy as np
import pytest
from scipy.stats import wilcoxon

from mmgraph.errors import DataError
from mmgraph.eval import average_per_user, paired_test, read_per_user, write_per_user


def test_pairs_users_by_id_skips_nan_and_matches_scipy():
    a = {"user": np.array([0, 1, 2, 3, 4, 5]), "r": np.array([0.5, 0.2, 1.0, 0.0, np.nan, 0.7])}
    # b lists the users in another order and lacks user 5.
    b = {"user": np.array([4, 3, 2, 1, 0]), "r": np.array([0.1, 0.3, 0.4, 0.1, 0.0])}
    test = paired_test(a, b, "r")
    # Users 0-3 are shared and finite: differences 0.5, 0.1, 0.6, -0.3.
    diff = np.array([0.5, 0.1, 0.6, -0.3])
    assert test.users == 4
    assert test.mean_a == pytest.approx(np.mean([0.5, 0.2, 1.0, 0.0]))
    assert test.difference == pytest.approx(diff.mean())
    assert test.p_value == pytest.approx(wilcoxon(diff).pvalue)


def test_large_consistent_gain_is_significant_and_equal_tables_are_not():
    rng = np.random.default_rng(0)
    base = rng.random(500)
    a = {"user": np.arange(500), "r": base + 0.05}
    b = {"user": np.arange(500), "r": base}
    assert paired_test(a, b, "r").p_value < 1e-6
    assert paired_test(b, b, "r").p_value == 1.0


def test_average_per_user_and_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    values = {
        "user": torch.tensor([2, 5]),
        "recall@20": torch.tensor([0.25, 1.0], dtype=torch.float64),
        "cold/recall@20": torch.tensor([float("nan"), 0.5], dtype=torch.float64),
    }
    write_per_user(values, tmp_path / "a.tsv")
    read = read_per_user(tmp_path / "a.tsv")
    assert read["user"].tolist() == [2, 5]
    assert read["recall@20"].tolist() == [0.25, 1.0]
    assert np.isnan(read["cold/recall@20"][0]) and read["cold/recall@20"][1] == 0.5
    other = {**read, "recall@20": np.array([0.75, 0.0])}
    assert average_per_user([read, other])["recall@20"].tolist() == [0.5, 0.5]
    with pytest.raises(DataError, match="different users"):
        average_per_user([read, {**read, "user": np.array([2, 6])}])
    with pytest.raises(DataError, match="no metric 'ndcg@5'"):
        paired_test(read, read, "ndcg@5")
    (tmp_path / "bad.tsv").write_text("user\tr\n1\t0.5\n")
    with pytest.raises(DataError, match="expected a header"):
        read_per_user(tmp_path / "bad.tsv")


def test_compare_command_averages_seeds_per_user_then_matches_scipy(tmp_path, capsys):
    import json

    from mmgraph.cli import main

    def write(name, users, values):
        rows = ["userID\trecall@20"] + [f"{u}\t{v}" for u, v in zip(users, values, strict=True)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        return str(tmp_path / name)

    a = [
        write("a1.tsv", [0, 1, 2, 3], [0.5, 0.0, 1.0, 0.2]),
        write("a2.tsv", [0, 1, 2, 3], [0.3, 0.4, 1.0, 0.0]),
    ]
    b = [write("b1.tsv", [0, 1, 2, 3], [0.1, 0.1, 0.2, 0.5])]
    assert main(["compare", *a, "--against", *b, "--metrics", "recall@20"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    # Seed means of A per user: 0.4, 0.2, 1.0, 0.1; differences to B: 0.3, 0.1, 0.8, -0.4.
    diff = np.array([0.3, 0.1, 0.8, -0.4])
    assert result["users"] == 4
    assert result["mean_a"] == pytest.approx(0.425)
    assert result["difference"] == pytest.approx(diff.mean())
    assert result["p_value"] == pytest.approx(wilcoxon(diff).pvalue)
    assert main(["compare", *a, "--against", *b, "--metrics", "ndcg@20"]) == 2
    assert "no metric 'ndcg@20'" in capsys.readouterr().err
