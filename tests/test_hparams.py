"""Hyper-parameter rules: every settable key has one, and a bad value is one error line.

The fuzz test drives ``mmgraph train`` with invalid values for every model's keys and every
trainer key and asserts exit status 2, a single ``mmgraph: error:`` line naming the key, and
no traceback. The invalid values are built here from each rule's declared bounds (below the
low end, above the high end, non-finite, fractional for integers, the wrong type), not by
asking the rule itself.
"""

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmgraph.cli import main
from mmgraph.models import registered_models
from mmgraph.models.hparams import Choice, Flag, Interval, ListOf, Pattern, WeightMap
from mmgraph.train.config import TRAIN_RULES, TrainConfig
from tests.test_cli import write_mmrec_folder

WRONG_TYPES = st.sampled_from(["abc", "[1, 2]", "{a: 1}", "null", "true"])


def _out_of_interval(rule: Interval) -> st.SearchStrategy:
    """Numbers outside ``rule``, as they would be typed."""
    outside = [st.sampled_from([math.nan, math.inf, -math.inf])]
    if rule.low is not None:
        below = st.floats(min_value=1e-9, max_value=1e6).map(lambda gap: rule.low - gap)
        outside.append(below)
        if rule.integer:
            outside.append(st.integers(1, 10**6).map(lambda gap: int(rule.low) - gap))
        if rule.low_open:
            outside.append(st.just(rule.low))
    if rule.high is not None:
        outside.append(st.floats(min_value=1e-9, max_value=1e6).map(lambda gap: rule.high + gap))
        if rule.high_open:
            outside.append(st.just(rule.high))
    if rule.integer:
        outside.append(st.integers(0, 100).map(lambda n: n + 0.5))
    return st.one_of(outside)


def _render(value) -> str:
    """``value`` as the YAML text a user types after ``--set key=``."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n")


def invalid_values(rule) -> st.SearchStrategy:
    """Text values a user could type that ``rule``'s key must refuse."""
    if isinstance(rule, Interval):
        bad = _out_of_interval(rule).map(_render)
        return st.one_of(bad, WRONG_TYPES.filter(lambda v: not (rule.optional and v == "null")))
    if isinstance(rule, Flag):
        return st.sampled_from(["maybe", "2", "0.5", "[true]", "yes please"])
    if isinstance(rule, Choice):
        return st.sampled_from(["nope", "3.5", "[train]", "null", ""])
    if isinstance(rule, Pattern):
        return st.sampled_from(["auc@20", "recall@0", "recall", "gpu", "cuda:x", "1", "[cpu]"])
    if isinstance(rule, ListOf):
        element = invalid_values(rule.element).map(lambda text: f"[{text}]")
        return st.one_of(st.just("[]"), st.just("abc"), element)
    if isinstance(rule, WeightMap):
        return st.sampled_from(
            ["{}", "{image: -1}", "{image: 0}", "{image: .nan}", "[1, 2]", "abc", "{1: 2}"]
        )
    raise AssertionError(f"no invalid values for {rule!r}")


def settable_keys() -> list[tuple[str, str, object]]:
    """(model, key, rule) for every model's hyper-parameters and, once, the trainer's keys."""
    keys = [("lightgcn", key, rule) for key, rule in TRAIN_RULES.items()]
    for name, cls in sorted(registered_models().items()):
        keys += [(name, key, rule) for key, rule in cls.rules().items()]
    return keys


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hparams") / "tiny"
    write_mmrec_folder(folder)
    return folder


def test_every_settable_key_has_a_rule_its_default_satisfies():
    for name, cls in registered_models().items():
        defaults = cls.hyperparameters()
        assert set(cls.rules()) == set(defaults), name
        for key, rule in cls.rules().items():
            assert rule.allows(defaults[key]), (name, key, defaults[key])
    train_defaults = TrainConfig().to_dict()
    assert set(TRAIN_RULES) == set(train_defaults)
    for key, rule in TRAIN_RULES.items():
        assert rule.allows(train_defaults[key]), key


@pytest.mark.parametrize(("model", "key", "rule"), settable_keys(), ids=lambda v: str(v)[:20])
def test_invalid_values_end_in_one_error_line(model, key, rule, dataset_folder, tmp_path, capfd):
    @settings(
        max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(text=invalid_values(rule))
    def check(text):
        argv = ["train", "--model", model, "--dataset", str(dataset_folder), "--epochs", "1",
                "--set", f"{key}={text}", "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
        code = main(argv)
        err = capfd.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("mmgraph: warning:")]
        assert code == 2, (text, err)
        assert len(lines) == 1 and lines[0].startswith("mmgraph: error: "), (text, err)
        assert key in lines[0] and "Traceback" not in err, (text, err)

    check()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "bm3", "--set", "dropout=1.5"], "dropout must be a number in [0, 1), got 1.5"),
        (["--model", "lightgcn", "--set", "lr=-0.1"], "lr must be a number > 0, got -0.1"),
        (["--model", "mmssl", "--set", "head_num=3"], "embedding_dim (64) must be a multiple"),
        (["--model", "mmssl", "--set", "num_candidates=500"], "num_candidates must be in [0, 20]"),
        (["--model", "mentor", "--set", "align_levels=[1,5]"], "align_levels must be a non-empty"),
        (["--model", "freedom", "--set", "item_graph_weights={text: 1}"], "name modalities"),
    ],
)
def test_messages_name_the_key_and_the_range(argv, message, dataset_folder, tmp_path, capsys):
    code = main(["train", "--dataset", str(dataset_folder), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run"), *argv])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_output_folder_that_is_a_file_is_one_error_line(dataset_folder, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a user's file\n")
    code = main(["train", "--model", "bpr", "--dataset", str(dataset_folder), "--epochs", "1",
                 "--out", str(blocker), "--quiet"])  # fmt: skip
    assert code == 2
    assert (
        capsys.readouterr().err == f"mmgraph: error: --out {blocker}: exists and is not a folder\n"
    )
    assert blocker.read_text() == "a user's file\n"  # untouched
    code = main(["train", "--model", "bpr", "--dataset", str(dataset_folder), "--epochs", "1",
                 "--out", str(blocker / "run"), "--quiet"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.startswith(f"mmgraph: error: --out {blocker / 'run'}: ")


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (Interval(0.0, 1.0, high_open=True), [0, 0.0, 0.999], [1.0, -1e-9, math.nan, True, "0.5"]),
        (Interval(1, integer=True), [1, 10**9], [0, 1.0, 2.5, math.inf, None]),
        (Interval(2, integer=True, optional=True), [None, 2], [1, "x"]),
        (Interval(0.0, low_open=True), [1e-30, 5.0], [0.0, -1.0, math.inf]),
        (ListOf(Interval(1, integer=True), unique=True), [[1], [5, 10]], [[], [1, 1], [0], "1"]),
        (ListOf(Choice((1, 2))), [[1, 2, 2]], [[3], [[1]], [True]]),
        (WeightMap(), [None, {"a": 0.0, "b": 1}], [{}, {"a": 0}, {"a": -1}, {1: 1}, [1]]),
        (Pattern(r"cpu|cuda(:[0-9]+)?", ""), ["cpu", "cuda:1"], ["cuda:", "gpu", 1]),
        (Flag(), [True, False], [1, "true", None]),
    ],
)
def test_rules_accept_and_refuse_the_values_their_bounds_say(rule, good, bad):
    assert all(rule.allows(v) for v in good)
    assert not any(rule.allows(v) for v in bad)


def test_descriptions_state_the_bounds():
    assert Interval(0.0, 1.0, high_open=True).describe() == "a number in [0, 1)"
    assert Interval(1, integer=True).describe() == "an integer >= 1"
    assert Interval(2, integer=True, optional=True).describe() == "null or an integer >= 2"
    assert Interval(0.0, low_open=True).describe() == "a number > 0"
    assert ListOf(Choice((1, 2))).describe() == "a non-empty list of values, each one of 1, 2"
