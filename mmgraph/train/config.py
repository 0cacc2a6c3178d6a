"""Run configuration with one clear precedence and no silent typos.

A run is configured by a flat set of keys: the trainer's (:class:`TrainConfig`) and the model's
hyper-parameters (its constructor signature). Values are layered, later layers winning:

1. :class:`TrainConfig` defaults,
2. the model's ``train_defaults`` (its paper's learning rate, batch size, ...),
3. the model's constructor defaults,
4. a YAML file (``--config FILE``),
5. ``--set key=value`` overrides,
6. explicit arguments (``--epochs``, ``--seed``, ``--device``).

An unknown key, a value of the wrong type or one outside the key's rule (:data:`TRAIN_RULES`,
the model's :meth:`~mmgraph.models.base.Recommender.rules`) is a
:class:`~mmgraph.errors.ConfigError` that names the key, the allowed values and where the value
came from.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mmgraph.data.sampling import NEGATIVE_POOLS
from mmgraph.errors import ConfigError
from mmgraph.models.base import Recommender
from mmgraph.models.hparams import (
    NON_NEGATIVE,
    POSITIVE,
    Choice,
    Interval,
    ListOf,
    Pattern,
    Rule,
    check_value,
)

METRIC_NAMES = ("recall", "ndcg", "precision", "map", "hit")

#: allowed values of the trainer's keys (``valid_metric`` must also name a cut-off in ``ks``).
TRAIN_RULES: dict[str, Rule] = {
    "epochs": Interval(1, integer=True),
    "batch_size": Interval(1, integer=True),
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "patience": Interval(0, integer=True),
    "valid_metric": Pattern(
        rf"({'|'.join(METRIC_NAMES)})@[1-9][0-9]*", f"one of {'/'.join(METRIC_NAMES)} @ k"
    ),
    "eval_every": Interval(1, integer=True),
    "eval_batch_size": Interval(1, integer=True),
    "ks": ListOf(Interval(1, integer=True), unique=True),
    "seed": Interval(0, 2**32 - 1, integer=True),
    "device": Pattern(r"cpu|cuda(:[0-9]+)?", "cpu, cuda or cuda:N"),
    "negative_pool": Choice(NEGATIVE_POOLS),
}


@dataclass
class TrainConfig:
    """Trainer settings (MMRec's protocol by default).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: training interactions per batch.
        lr: learning rate of the recommender's optimiser.
        weight_decay: optimiser weight decay.
        patience: stop after this many evaluations without improvement of ``valid_metric``.
        valid_metric: the valid-split metric used for model selection (``"recall@20"``).
        eval_every: evaluate on valid every this many epochs.
        eval_batch_size: users per full-ranking batch (memory ``eval_batch_size * I``).
        ks: cut-offs of the reported metrics.
        seed: seed of python, numpy, torch and the sampler.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        negative_pool: where BPR negatives come from: ``"train"`` (items with a training
            interaction, MMRec's loader) or ``"all"`` (:mod:`mmgraph.data.sampling`).
    """

    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20
    valid_metric: str = "recall@20"
    eval_every: int = 1
    eval_batch_size: int = 4096
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    seed: int = 2024
    device: str = "cpu"
    negative_pool: str = "train"

    def __post_init__(self) -> None:
        for key, rule in TRAIN_RULES.items():
            check_value(key, getattr(self, key), rule)
        if int(self.valid_metric.partition("@")[2]) not in self.ks:
            raise ConfigError(
                f"valid_metric {self.valid_metric!r} needs its cut-off in ks={self.ks}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunConfig:
    """A resolved configuration: the model's name, trainer settings and hyper-parameters."""

    model: str
    train: TrainConfig
    hparams: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, **self.train.to_dict(), **self.hparams}


#: names MMRec / RecBole users type, and the mmgraph key they mean (suggested, never accepted
#: silently: a config that means something else must not run under a guess).
PEER_NAMES = {
    "learning_rate": "lr",
    "train_batch_size": "batch_size",
    "stopping_step": "patience",
    "epoch": "epochs",
    "topk": "ks",
    "embedding_size": "embedding_dim",
    "embed_size": "embedding_dim",
    "n_layers": "num_layers",
    "gpu_id": "device",
}


def _suggest(key: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=3)
    if key in PEER_NAMES and PEER_NAMES[key] in known and PEER_NAMES[key] not in close:
        close.insert(0, PEER_NAMES[key])
    return f"; did you mean {', '.join(close)}?" if close else ""


def _coerce(key: str, value: Any, default: Any, origin: str) -> Any:
    """``value`` converted to the type of ``default``, or a ConfigError naming ``key``."""

    def fail() -> ConfigError:
        return ConfigError(
            f"{origin}: key {key!r} expects {type(default).__name__} "
            f"(default {default!r}), got {value!r}"
        )

    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise fail()
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise fail()
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if default:
            return [_coerce(key, v, default[0], origin) for v in value]
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise fail()
        return value
    return value


def parse_overrides(pairs: Iterable[str], origin: str = "--set") -> dict[str, Any]:
    """``["lr=1e-3", "ks=[10,20]"]`` -> ``{"lr": "1e-3", "ks": [10, 20]}`` (values as YAML).

    ``origin`` names the flag in error messages (``mmgraph tune`` types ``--grid`` values here).
    """
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{origin} expects key=value, got {pair!r}")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"{origin} {pair!r}: value is not valid YAML ({reason})") from None
    return parsed


#: the settings mmgraph ships, ``<dataset>/<model>.yaml``, each chosen on a valid split
BUNDLED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def list_bundled_configs() -> list[str]:
    """Names of the shipped configs (``"tiktok/lightgcn"``), for ``--config NAME``."""
    return sorted(
        p.relative_to(BUNDLED_CONFIGS).with_suffix("").as_posix()
        for p in BUNDLED_CONFIGS.glob("*/*.yaml")
    )


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A flat YAML mapping of config keys (``model`` may be included): a file, or the name of
    a shipped config (:func:`list_bundled_configs`) when no such file exists."""
    path = Path(path)
    if not path.is_file() and str(path) in list_bundled_configs():
        path = BUNDLED_CONFIGS / f"{path}.yaml"
    if not path.is_file():
        shipped = ", ".join(list_bundled_configs())
        raise ConfigError(f"{path}: config file not found (shipped configs: {shipped})")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(content).__name__}")
    return content


def resolve_config(
    model_cls: type[Recommender],
    layers: Iterable[tuple[str, Mapping[str, Any]]] = (),
) -> RunConfig:
    """Merge the default layers with user-given ones, checking every key and value.

    Args:
        model_cls: the model being configured.
        layers: ``(origin, {key: value})`` pairs in increasing precedence; ``origin`` (a file
            name, ``"--set"``) appears in error messages.
    """
    train_defaults = TrainConfig().to_dict()
    model_defaults = model_cls.hyperparameters()
    clash = set(train_defaults) & set(model_defaults)
    if clash:  # a model author's mistake, caught at first use
        raise ConfigError(f"model {model_cls.name!r} hyper-parameters shadow trainer keys {clash}")
    defaults = {**train_defaults, **model_defaults}
    values = dict(defaults)
    values.update(
        {
            key: _coerce(key, v, defaults[key], f"{model_cls.name} train_defaults")
            for key, v in model_cls.train_defaults.items()
        }
    )
    rules = {**TRAIN_RULES, **model_cls.rules()}
    for origin, layer in layers:
        for key, value in layer.items():
            if key == "model":
                continue
            if key not in defaults:
                raise ConfigError(
                    f"{origin}: unknown config key {key!r} for model {model_cls.name!r}"
                    + _suggest(key, defaults)
                )
            values[key] = _coerce(key, value, defaults[key], origin)
            if key in rules:
                check_value(key, values[key], rules[key], origin)
    train_keys = {f.name for f in fields(TrainConfig)}
    train = TrainConfig(**{k: v for k, v in values.items() if k in train_keys})
    hparams = {k: v for k, v in values.items() if k not in train_keys}
    model_cls.check_hyperparameters(hparams)
    return RunConfig(model=model_cls.name, train=train, hparams=hparams)
