"""Per-user metric files and the paired test that compares two models on the same users.

``mmgraph evaluate --per-user FILE`` writes one row per evaluated user (tab-separated, a
``userID`` column then every metric; ``nan`` where a user has no target in a ``cold/`` or
``warm/`` part). :func:`paired_test` compares two such tables with the Wilcoxon signed-rank
test over the users both evaluated, the usual test for per-user ranking metrics (they are
bounded and far from normal).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wilcoxon
from torch import Tensor

from mmgraph.errors import DataError

__all__ = [
    "PairedTest",
    "average_per_user",
    "paired_test",
    "read_per_user",
    "read_seed_means",
    "write_per_user",
]

USER_COLUMN = "userID"


def write_per_user(values: Mapping[str, Tensor], path: str | os.PathLike) -> None:
    """Write :meth:`Evaluator.per_user` output as a TSV (``userID`` first), atomically."""
    path = Path(path)
    names = [name for name in values if name != "user"]
    table = torch.stack([values[name].double().cpu() for name in names], dim=1).numpy()
    users = values["user"].cpu().numpy()
    lines = ["\t".join([USER_COLUMN, *names])]
    lines += [
        "\t".join([str(user), *(repr(float(v)) for v in row)])
        for user, row in zip(users, table, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_per_user(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A file of :func:`write_per_user`: ``{"user": [N] int, metric: [N] float}``."""
    path = Path(path)
    try:
        header, *rows = path.read_text().splitlines()
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read per-user metrics ({exc})") from None
    names = header.split("\t")
    if names[0] != USER_COLUMN or len(names) < 2:
        raise DataError(f"{path}: expected a header '{USER_COLUMN}<TAB>metric...', got {header!r}")
    try:
        table = np.array([[float(v) for v in row.split("\t")] for row in rows], dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: a row is not all numbers") from None
    table = table.reshape(len(rows), len(names))
    out = {"user": table[:, 0].astype(np.int64)}
    out.update({name: table[:, column] for column, name in enumerate(names) if column > 0})
    return out


def average_per_user(tables: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each user's mean over several runs (seeds) of the same split: one value per user, so
    that a paired test over users compares models, not seeds.

    Raises:
        DataError: if the tables do not list the same users and metrics.
    """
    first = tables[0]
    for table in tables[1:]:
        if table.keys() != first.keys() or not np.array_equal(table["user"], first["user"]):
            raise DataError("per-user tables of different users or metrics cannot be averaged")
    out = {"user": first["user"]}
    for name in first:
        if name != "user":
            out[name] = np.mean([table[name] for table in tables], axis=0)
    return out


def read_seed_means(paths: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Each user's mean over per-user files of several runs (seeds) of the same split:
    :func:`average_per_user` of :func:`read_per_user` of each path."""
    return average_per_user([read_per_user(path) for path in paths])


@dataclass
class PairedTest:
    """Outcome of :func:`paired_test` on one metric."""

    metric: str
    users: int  # users with a value in both tables
    mean_a: float
    mean_b: float
    p_value: float  # two-sided Wilcoxon signed-rank; 1.0 when every difference is zero

    @property
    def difference(self) -> float:
        return self.mean_a - self.mean_b


def paired_test(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], metric: str
) -> PairedTest:
    """Wilcoxon signed-rank test of ``metric`` between two per-user tables.

    Users are matched by id; a user counts when both tables have a finite value (parts
    leave ``nan`` for users without a target there). Users whose two values are equal are
    dropped (``zero_method="wilcox"``).

    Raises:
        DataError: if ``metric`` is missing from a table or no user is shared.
    """
    for table in (a, b):
        if metric not in table:
            raise DataError(f"per-user table has no metric {metric!r}")
    index_b = {int(user): row for row, user in enumerate(b["user"])}
    pairs = [
        (a[metric][row], b[metric][index_b[int(user)]])
        for row, user in enumerate(a["user"])
        if int(user) in index_b
    ]
    values = np.array([p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])])
    if values.size == 0:
        raise DataError(f"no user has a {metric!r} value in both tables")
    diff = values[:, 0] - values[:, 1]
    p_value = 1.0 if not np.any(diff) else float(wilcoxon(diff, zero_method="wilcox").pvalue)
    return PairedTest(
        metric, len(values), float(values[:, 0].mean()), float(values[:, 1].mean()), p_value
    )
