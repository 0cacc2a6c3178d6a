"""Allowed values of hyper-parameters, declared once per key and checked before anything builds.

Each model lists a :class:`Rule` for every hyper-parameter of its constructor
(:attr:`~mmgraph.models.base.Recommender.hyperparameter_rules`, over :data:`COMMON_RULES` for
the keys several models share); :func:`mmgraph.train.resolve_config` checks every value a user
gave against it, so that a bad value fails with one line naming the key and the allowed range
instead of a traceback from inside torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mmgraph.errors import ConfigError

__all__ = [
    "COMMON_RULES",
    "Choice",
    "Flag",
    "Interval",
    "ListOf",
    "Pattern",
    "Rule",
    "WeightMap",
    "check_value",
    "config_error",
]


class Rule(Protocol):
    """A set of allowed values: ``describe()`` names it, ``allows(value)`` tests membership."""

    def describe(self) -> str: ...

    def allows(self, value: Any) -> bool: ...


def config_error(message: str, origin: str = "") -> ConfigError:
    """A :class:`ConfigError` whose one line starts with where the value came from."""
    return ConfigError(f"{origin}: {message}" if origin else message)


def check_value(key: str, value: Any, rule: Rule, origin: str = "") -> None:
    """Raise a one-line :class:`ConfigError` naming ``key``, ``rule`` and ``origin`` when
    ``value`` is outside ``rule``."""
    if not rule.allows(value):
        raise config_error(f"{key} must be {rule.describe()}, got {value!r}", origin)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


@dataclass(frozen=True)
class Interval:
    """A finite number (an integer when ``integer``) between ``low`` and ``high``.

    ``None`` bounds are open-ended; ``low_open`` / ``high_open`` exclude the bound itself;
    ``optional`` also allows ``None`` (the key's "off" or "automatic" value).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{_format(self.low)}, {_format(self.high)}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_format(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_format(self.high)}"
        else:
            text = f"a finite {kind[2:] if self.integer else 'number'}"
        return f"null or {text}" if self.optional else text

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def allows(self, value: Any) -> bool:
        return not isinstance(value, bool) and value in self.values


@dataclass(frozen=True)
class Pattern:
    """A string matching the regular expression ``regex`` in full; ``description`` names it."""

    regex: str
    description: str

    def describe(self) -> str:
        return self.description

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false``."""

    def describe(self) -> str:
        return "true or false"

    def allows(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class ListOf:
    """A non-empty list (``min_length`` or more) whose elements each satisfy ``element``."""

    element: Interval | Choice
    min_length: int = 1
    unique: bool = False

    def describe(self) -> str:
        size = "a non-empty list" if self.min_length == 1 else f"a list of {self.min_length}+"
        unique = " distinct" if self.unique else ""
        return f"{size} of{unique} values, each {self.element.describe()}"

    def allows(self, value: Any) -> bool:
        if not isinstance(value, Sequence) or isinstance(value, str):
            return False
        if len(value) < self.min_length or not all(self.element.allows(v) for v in value):
            return False
        return not self.unique or len(set(value)) == len(value)


@dataclass(frozen=True)
class WeightMap:
    """``null`` or a mapping of modality name to a finite weight >= 0, not all zero (which
    modalities exist is checked against the dataset when the model is built)."""

    def describe(self) -> str:
        return "null or a mapping of modality name to a weight >= 0, not all zero"

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, Mapping) or not value:
            return False
        weights = list(value.values())
        if not all(isinstance(k, str) for k in value):
            return False
        if not all(_is_number(w) and math.isfinite(w) and w >= 0 for w in weights):
            return False
        return any(w > 0 for w in weights)


#: a probability of dropping something, where dropping everything would leave nothing to learn
DROP_PROBABILITY = Interval(0.0, 1.0, high_open=True)
#: a loss weight or a regulariser's coefficient
NON_NEGATIVE = Interval(0.0)
#: a temperature, learning rate or other scale that must be strictly positive
POSITIVE = Interval(0.0, low_open=True)

#: rules of the keys several models share (a model's own rule for the same key wins).
COMMON_RULES: dict[str, Rule] = {
    "embedding_dim": Interval(1, integer=True),
    "num_layers": Interval(0, integer=True),
    "item_graph_layers": Interval(0, integer=True),
    "knn_k": Interval(1, integer=True),
    "item_graph_weights": WeightMap(),
    "reg_weight": NON_NEGATIVE,
    "dropout": DROP_PROBABILITY,
    "item_id_dropout": DROP_PROBABILITY,
    "reference": Flag(),
}
