import pytest
import torch

from mmgraph.errors import ConfigError
from mmgraph.models import LightGCN
from mmgraph.train.config import parse_overrides, read_config_file, resolve_config


def test_defaults_and_precedence(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("lr: 0.01\nnum_layers: 2\nepochs: 7\n")
    run = resolve_config(
        LightGCN,
        [
            (str(config_file), read_config_file(config_file)),
            ("--set", parse_overrides(["lr=1e-3", "ks=[10, 20]", "valid_metric=ndcg@10"])),
            ("command line", {"epochs": 3}),
        ],
    )
    assert run.train.lr == 1e-3  # --set beats the file; "1e-3" (YAML string) became a float
    assert run.train.epochs == 3  # explicit beats both
    assert run.train.ks == [10, 20]
    assert run.hparams == {"embedding_dim": 64, "num_layers": 2, "reg_weight": 1e-4}
    assert run.train.batch_size == 2048 and run.train.patience == 20


def test_unknown_key_is_an_error_naming_origin_and_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"--set: unknown config key 'learning_rate'.*lr"):
        resolve_config(LightGCN, [("--set", {"learning_rate": 0.1})])
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_layer: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'num_layer'"):
        resolve_config(LightGCN, [(str(bad), read_config_file(bad))])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs=ten", "key 'epochs' expects int"),
        ("lr=fast", "key 'lr' expects float"),
        ("num_layers=2.5", "key 'num_layers' expects int"),
        ("valid_metric=auc@20", "valid_metric must be one of recall/ndcg/.* got 'auc@20'"),
        ("valid_metric=recall@30", "cut-off in ks"),
        ("batch_size=0", "batch_size must be an integer >= 1, got 0"),
        ("ks=5", "key 'ks' expects list"),
    ],
)
def test_bad_values_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(LightGCN, [("--set", parse_overrides([override]))])


def test_malformed_override_and_file(tmp_path):
    with pytest.raises(ConfigError, match="expects key=value"):
        parse_overrides(["lr"])
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        read_config_file(not_mapping)
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        read_config_file(broken)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        read_config_file(tmp_path / "missing.yaml")


def test_shipped_configs_are_read_by_name_and_resolve_against_their_model():
    from mmgraph.models import get_model
    from mmgraph.train.config import list_bundled_configs

    names = list_bundled_configs()
    assert "tiktok/lightgcn" in names
    for name in names:
        content = dict(read_config_file(name))
        model = get_model(content.pop("model"))
        run = resolve_config(model, [(name, content)])
        # the same run as `--set key=value` for each key (what the accuracy suite passes)
        pairs = [f"{key}={value}" for key, value in content.items()]
        assert run == resolve_config(model, [("--set", parse_overrides(pairs))])
        assert run != resolve_config(model), name  # the file changes something
    lightgcn = read_config_file("tiktok/lightgcn")
    assert lightgcn == {"model": "lightgcn", "num_layers": 2, "reg_weight": 0.01}
    with pytest.raises(ConfigError, match=r"tiktok/nope: config file not found \(shipped"):
        read_config_file("tiktok/nope")


def test_train_takes_a_shipped_config_and_the_accuracy_suite_its_model_pairs(tmp_path):
    import json

    from benchmarks.accuracy import config_model_pairs
    from mmgraph.cli import main

    assert config_model_pairs(["tiktok/lightgcn"]) == [
        "lightgcn:num_layers=2",
        "lightgcn:reg_weight=0.01",
    ]
    no_model = tmp_path / "no_model.yaml"
    no_model.write_text("lr: 0.01\n")
    with pytest.raises(ConfigError, match="needs a `model:` key"):
        config_model_pairs([str(no_model)])
    out = tmp_path / "run"
    args = ["train", "--config", "tiktok/lightgcn", "--dataset", "tiktok", "--epochs", "1"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert "test" in json.loads((out / "metrics.json").read_text())
    saved = torch.load(out / "last.pt", weights_only=True)["config"]
    assert saved["model"] == "lightgcn"
    assert (saved["num_layers"], saved["reg_weight"]) == (2, 0.01)
