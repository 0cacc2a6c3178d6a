import pytest

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
