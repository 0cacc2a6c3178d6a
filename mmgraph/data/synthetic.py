"""Synthetic interaction datasets with planted multimodal signal, from toy size to millions.

The generator draws a catalogue whose items belong to latent clusters, users who mostly
consume one cluster, and modality features that are noisy copies of cluster centroids, so a
multimodal model has real signal to find (items of one cluster share users *and* features).
Degrees follow power laws, as in real interaction data. Everything is vectorised NumPy and
deterministic given the seed; 1M users × 100k items × 20M interactions take about a minute
and a few GB.

A dataset can be named by a spec string wherever a dataset is (``--dataset``,
:func:`mmgraph.data.load_dataset`)::

    synthetic:users=1000000,items=100000,interactions=20000000,seed=0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.preprocess import split_labels
from mmgraph.errors import DataError

SPEC_PREFIX = "synthetic"
#: at most this many draws per user to replace merged duplicates.
_TOP_UP_ROUNDS = 8


@dataclass(frozen=True)
class SyntheticConfig:
    """What :func:`synthetic_dataset` generates.

    Attributes:
        users: number of users ``U``.
        items: number of items ``I``.
        interactions: target number of distinct (user, item) pairs; the result has slightly
            fewer when duplicates drawn for a user are merged.
        clusters: latent item clusters ``C``.
        in_cluster: probability that an interaction comes from the user's own cluster.
        user_exponent: power-law exponent of user activity (rank ``r`` gets weight
            ``r^-user_exponent``).
        item_exponent: the same for item popularity.
        modalities: modality name -> feature width.
        feature_noise: standard deviation of the per-item noise around the cluster centroid
            (centroids have unit variance per dimension; larger = weaker signal).
        seed: random seed.
    """

    users: int = 1000
    items: int = 500
    interactions: int = 20000
    clusters: int = 20
    in_cluster: float = 0.8
    user_exponent: float = 0.8
    item_exponent: float = 0.8
    modalities: Mapping[str, int] = field(default_factory=lambda: {"image": 64, "text": 32})
    feature_noise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.users < 1 or self.items < 2 or self.clusters < 1:
            problems.append("users >= 1, items >= 2 and clusters >= 1")
        if not 1 <= self.interactions <= self.users * self.items:
            problems.append("1 <= interactions <= users * items")
        if not 0.0 <= self.in_cluster <= 1.0:
            problems.append("0 <= in_cluster <= 1")
        if self.user_exponent < 0 or self.item_exponent < 0 or self.feature_noise < 0:
            problems.append("non-negative exponents and feature_noise")
        if any(dim < 1 for dim in self.modalities.values()):
            problems.append("modality widths >= 1")
        if problems:
            raise DataError(f"synthetic dataset needs {'; '.join(problems)}: got {self}")

    def spec(self) -> str:
        """The spec string that :func:`parse_spec` turns back into this config."""
        parts = []
        for key, value in asdict(self).items():
            if key == "modalities":
                value = "+".join(f"{name}:{dim}" for name, dim in value.items()) or "none"
            parts.append(f"{key}={value}")
        return f"{SPEC_PREFIX}:" + ",".join(parts)


def parse_spec(spec: str) -> SyntheticConfig:
    """``"synthetic:users=1000,items=500,modalities=image:64+text:32"`` -> config.

    Numbers accept ``1e6`` and ``1_000_000``; keys not given keep their defaults; the
    modality list is ``name:width`` joined by ``+`` (``none`` for no features).
    """
    head, _, body = spec.partition(":")
    if head != SPEC_PREFIX:
        raise DataError(f"{spec!r}: a synthetic dataset spec starts with '{SPEC_PREFIX}:'")
    types = {f.name: f.type for f in fields(SyntheticConfig)}
    values: dict = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key not in types:
            raise DataError(f"{spec!r}: bad entry {part!r}; known keys: {', '.join(sorted(types))}")
        try:
            if key == "modalities":
                values[key] = _parse_modalities(raw)
            elif types[key] in ("float", float):
                values[key] = float(raw)
            else:
                number = float(raw.replace("_", ""))
                if number != int(number):
                    raise ValueError(raw)
                values[key] = int(number)
        except ValueError:
            raise DataError(f"{spec!r}: {key}={raw!r} is not a valid value") from None
    return SyntheticConfig(**values)


def _parse_modalities(raw: str) -> dict[str, int]:
    if raw in ("", "none"):
        return {}
    modalities = {}
    for item in raw.split("+"):
        name, _, dim = item.partition(":")
        if not name or not dim:
            raise ValueError(item)
        modalities[name] = int(dim)
    return modalities


def synthetic_dataset(config: SyntheticConfig | None = None, **overrides) -> InteractionDataset:
    """Generate a dataset (see the module docstring), split per user as MMRec does.

    Users with fewer than 10 interactions give one to valid and one to test (users with
    fewer than 3 keep all in train); others give 20 % to valid and test, half each.

    Args:
        config: what to generate; ``overrides`` replace its fields (or the defaults').

    Returns:
        The dataset; ``source`` is the spec string, so checkpoints can rebuild it.
    """
    config = SyntheticConfig(**{**asdict(config or SyntheticConfig()), **overrides})
    rng = np.random.default_rng(config.seed)
    num_users, num_items = config.users, config.items

    item_cluster = rng.integers(0, config.clusters, num_items)
    item_weight = _power_law(num_items, config.item_exponent, rng)
    user_cluster = rng.integers(0, config.clusters, num_users)
    degree = _degrees(config, rng)

    order = np.argsort(item_cluster, kind="stable")
    starts = np.searchsorted(item_cluster[order], np.arange(config.clusters + 1))
    clusters = [order[starts[c] : starts[c + 1]] for c in range(config.clusters)]
    pairs = np.empty(0, dtype=np.int64)
    missing = degree
    for _ in range(_TOP_UP_ROUNDS):  # repeated draws of a user are merged, then topped up
        users = np.repeat(np.arange(num_users), missing)
        items = _draw_items(users, user_cluster, clusters, item_weight, config.in_cluster, rng)
        before = pairs.size
        pairs = _sorted_unique(np.concatenate([pairs, users * num_items + items]))
        missing = np.maximum(degree - np.bincount(pairs // num_items, minlength=num_users), 0)
        if pairs.size - before <= 0.001 * config.interactions:
            break  # what is still missing belongs to users near their cluster's size
    users, items = pairs // num_items, pairs % num_items
    split = split_labels(users, None, method="random", seed=int(rng.integers(2**31)))
    features = {
        name: _features(item_cluster, config.clusters, dim, config.feature_noise, rng)
        for name, dim in config.modalities.items()
    }
    return InteractionDataset.from_interactions(
        torch.from_numpy(users),
        torch.from_numpy(items),
        torch.from_numpy(split),
        features,
        num_users=num_users,
        num_items=num_items,
        name="synthetic",
        source=config.spec(),
    )


def _draw_items(
    users: np.ndarray,
    user_cluster: np.ndarray,
    clusters: list[np.ndarray],
    item_weight: np.ndarray,
    in_cluster: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """One item per entry of ``users``: from the user's cluster with probability
    ``in_cluster``, else from the whole catalogue, by popularity within either."""
    items = np.empty(users.size, dtype=np.int64)
    own = rng.random(users.size) < in_cluster
    items[~own] = _draw(np.arange(item_weight.size), item_weight, int((~own).sum()), rng)
    wanted = user_cluster[users]
    for cluster, members in enumerate(clusters):
        rows = np.flatnonzero(own & (wanted == cluster))
        if members.size == 0:  # an empty cluster: fall back to the whole catalogue
            members = np.arange(item_weight.size)
        items[rows] = _draw(members, item_weight[members], rows.size, rng)
    return items


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort is several times faster than ``np.unique`` here)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if values.size else values


def _power_law(size: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ``rank^-exponent`` assigned to ``size`` entries in random order, summing to 1."""
    weight = np.arange(1, size + 1, dtype=np.float64) ** -exponent
    weight = weight[rng.permutation(size)]
    return weight / weight.sum()


def _degrees(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: power law, at least 1, at most ``I``, summing to the target."""
    share = _power_law(config.users, config.user_exponent, rng)
    extra = config.interactions - config.users
    degree = np.ones(config.users, dtype=np.int64)
    if extra > 0:
        degree += rng.multinomial(extra, share)
    else:  # fewer interactions than users: that many users with one each
        degree[rng.permutation(config.users)[config.interactions :]] = 0
    return np.minimum(degree, config.items)


def _draw(
    population: np.ndarray, weight: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` draws with replacement from ``population`` by ``weight`` (inverse CDF)."""
    cdf = np.cumsum(weight, dtype=np.float64)
    picks = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    return population[np.minimum(picks, population.size - 1)]


def _features(
    item_cluster: np.ndarray, clusters: int, dim: int, noise: float, rng: np.random.Generator
) -> torch.Tensor:
    """``[I, dim]`` float32: the item's cluster centroid plus Gaussian noise."""
    centroids = rng.standard_normal((clusters, dim), dtype=np.float32)
    noisy = centroids[item_cluster]
    noisy += noise * rng.standard_normal(noisy.shape, dtype=np.float32)
    return torch.from_numpy(noisy)
