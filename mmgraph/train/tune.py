"""Grid search of hyper-parameters, selected on the valid split only (``mmgraph tune``).

A grid is a list of axes ``key -> [values]`` (``--grid lr=1e-3,1e-4`` or a YAML file of
``key: [values]``); keys are model hyper-parameters or trainer keys, and every value is typed
exactly as a ``--set`` value (:func:`~mmgraph.train.parse_overrides`, then
:func:`~mmgraph.train.resolve_config`). All points of the Cartesian product are resolved,
and so checked, before anything trains.

Each point is an ordinary run of the shared trainer (:func:`~mmgraph.train.fit_run`) in its
own folder ``OUT/run-NNN`` (``best.pt``, ``last.pt``, ``log.jsonl``, ``metrics.json``), with
``evaluate_test=False``: the points' test metrics are never computed. The chosen point is the
one with the highest ``valid_metric`` at its best-valid epoch (:func:`select_point`, which is
given valid metrics only; ties go to the first point in grid order), and only then is test
evaluated, once, on that point's ``best.pt``. A point whose folder already holds a finished
run of the same configuration is reused, a started one is resumed.

Grid order: axes in the order given (grid-file keys first, then ``--grid`` flags), the last
axis varying fastest; ``run-001`` is the first point.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgraph.data.dataset import InteractionDataset
from mmgraph.errors import ConfigError, MMGraphError
from mmgraph.models.base import Recommender
from mmgraph.train.config import (
    RunConfig,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from mmgraph.train.runner import (
    evaluate_checkpoint,
    fit_run,
    read_run,
    run_folder_state,
)
from mmgraph.train.trainer import TrainingDiverged

Layer = tuple[str, Mapping[str, Any]]

#: keys a grid may not search: the model is one per tune, and points must be compared on one
#: metric.
UNSEARCHABLE = {
    "model": "the model is fixed per tune; run one tune per model",
    "valid_metric": "points must be compared on one valid metric; fix it with --set",
}


@dataclass(frozen=True)
class GridAxis:
    """One searched key and its values (raw, as parsed; typed by :func:`expand_grid`).

    Attributes:
        key: a config key.
        values: the values to try, in order.
        origin: where the axis came from (``"--grid"`` or the grid file), for error messages.
    """

    key: str
    values: tuple[Any, ...]
    origin: str


@dataclass
class GridPoint:
    """One configuration of the grid.

    Attributes:
        index: 1-based position in grid order.
        values: the searched keys' typed values (``{"lr": 0.001, "num_layers": 2}``).
        config: the full resolved configuration of this point.
    """

    index: int
    values: dict[str, Any]
    config: RunConfig

    @property
    def name(self) -> str:
        """The point's folder name, ``run-001`` for the first."""
        return f"run-{self.index:03d}"


@dataclass
class PointResult:
    """What a point's run gave; deliberately holds no test metrics.

    Attributes:
        point: the grid point.
        status: ``"trained"``, ``"resumed"``, ``"reused"`` (a finished folder) or
            ``"failed"`` (training diverged; ``error`` says how).
        best_epoch: the epoch selected on valid (0 when failed).
        last_epoch: the last epoch trained (0 when failed).
        valid: valid metrics at ``best_epoch`` (``None`` when failed).
        seconds: training + valid-evaluation seconds, from the run's ``log.jsonl``.
        error: why the point failed.
    """

    point: GridPoint
    status: str
    best_epoch: int = 0
    last_epoch: int = 0
    valid: dict[str, float] | None = None
    seconds: float = 0.0
    error: str = ""


@dataclass
class TuneResult:
    """Outcome of :func:`tune_grid`.

    Attributes:
        points: one result per grid point, in grid order.
        chosen: index into ``points`` of the point selected on valid.
        valid_metric: the metric it was selected on.
        test: test metrics of the chosen point (the only test evaluation of the search).
        command: the command line that ran the search (recorded in ``best.json``).
    """

    points: list[PointResult]
    chosen: int
    valid_metric: str
    test: dict[str, float]
    command: str = ""

    @property
    def best(self) -> PointResult:
        return self.points[self.chosen]


# ---------------------------------------------------------------------- the grid
def _split_values(raw: str) -> list[str]:
    """``"1e-3,[10,20],'a,b'"`` -> ``["1e-3", "[10,20]", "'a,b'"]``: commas inside brackets,
    braces or quotes do not separate values."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(raw):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(raw[start:index])
            start = index + 1
    parts.append(raw[start:])
    return [part.strip() for part in parts]


def parse_grid(pairs: Sequence[str]) -> list[GridAxis]:
    """``["lr=1e-3,1e-4", "ks=[10,20],[20,50]"]`` -> one axis per flag.

    Each value is parsed as a ``--set`` value is (YAML); the split on commas keeps lists and
    quoted strings whole.

    Raises:
        ConfigError: a flag is not ``KEY=V1,V2,...`` or has an empty or invalid value.
    """
    axes = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {pair!r}")
        pieces = _split_values(raw)
        if not all(pieces):
            raise ConfigError(f"--grid {pair!r}: has an empty value")
        values = [parse_overrides([f"{key}={piece}"], origin="--grid")[key] for piece in pieces]
        axes.append(GridAxis(key, tuple(values), "--grid"))
    return axes


def read_grid_file(path: str | os.PathLike) -> list[GridAxis]:
    """Axes from a YAML mapping ``key: [values]`` (a flat mapping, like ``--config``'s).

    Raises:
        ConfigError: the file is missing or not such a mapping.
    """
    content = read_config_file(path)
    axes = []
    for key, values in content.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{path}: grid key {key!r} must map to a non-empty list of values, got {values!r}"
            )
        axes.append(GridAxis(str(key), tuple(values), str(path)))
    if not axes:
        raise ConfigError(f"{path}: the grid file is empty")
    return axes


def model_grid(model_cls: type[Recommender]) -> list[GridAxis]:
    """The axes of ``model_cls``'s own :attr:`~mmgraph.models.base.Recommender.search_grid`.

    Raises:
        ConfigError: the model declares none.
    """
    if not model_cls.search_grid:
        raise ConfigError(
            f"model {model_cls.name!r} declares no search grid: give --grid KEY=V1,V2,... "
            "or --grid-file FILE"
        )
    origin = f"{model_cls.name}.search_grid"
    return [GridAxis(key, tuple(values), origin) for key, values in model_cls.search_grid.items()]


def expand_grid(
    model_cls: type[Recommender],
    axes: Sequence[GridAxis],
    base_layers: Sequence[Layer] = (),
    fixed_layers: Sequence[Layer] = (),
) -> list[GridPoint]:
    """Every point of the Cartesian product of ``axes``, resolved and checked.

    A point's configuration is layered ``base_layers`` (a ``--config`` file) -> its grid
    values -> ``fixed_layers`` (``--set``, ``--epochs``, ...).

    Raises:
        ConfigError: no axes; a key given twice, both searched and fixed, or unsearchable;
            an unknown key or a badly typed value (the message of ``mmgraph train``); two
            points that are the same configuration.
    """
    if not axes:
        raise ConfigError("nothing to search: give --grid KEY=V1,V2,... or --grid-file FILE")
    origins: dict[str, str] = {}
    for axis in axes:
        if axis.key in UNSEARCHABLE:
            raise ConfigError(
                f"{axis.origin}: {axis.key!r} cannot be searched: {UNSEARCHABLE[axis.key]}"
            )
        if axis.key in origins:
            raise ConfigError(
                f"grid key {axis.key!r} is given twice ({origins[axis.key]}, {axis.origin})"
            )
        origins[axis.key] = axis.origin
        for origin, layer in fixed_layers:
            if axis.key in layer:
                raise ConfigError(
                    f"{axis.origin}: key {axis.key!r} is both searched and fixed by {origin}; "
                    "drop one"
                )
    points: list[GridPoint] = []
    seen: dict[str, str] = {}
    for index, combination in enumerate(itertools.product(*(a.values for a in axes)), start=1):
        grid_layers = [
            (axis.origin, {axis.key: value}) for axis, value in zip(axes, combination, strict=True)
        ]
        config = resolve_config(model_cls, [*base_layers, *grid_layers, *fixed_layers])
        resolved = config.to_dict()
        point = GridPoint(index, {axis.key: resolved[axis.key] for axis in axes}, config)
        key = json.dumps(point.values, sort_keys=True, default=str)
        if key in seen:
            raise ConfigError(
                f"grid points {seen[key]} and {point.name} are the same configuration "
                f"({describe(point.values)}): a value is listed twice"
            )
        seen[key] = point.name
        points.append(point)
    return points


def describe(values: Mapping[str, Any]) -> str:
    """``{"lr": 0.001, "num_layers": 2}`` -> ``"lr=0.001 num_layers=2"``."""
    return " ".join(f"{key}={_text(value)}" for key, value in values.items())


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


# ---------------------------------------------------------------------- selection
def select_point(valid_metrics: Sequence[Mapping[str, float] | None], metric: str) -> int | None:
    """Index of the point with the highest ``metric``, given each point's *valid* metrics.

    Model selection sees only valid metrics: this is its whole input. Ties go to the first
    point in grid order; points without metrics (failed) or with a NaN score never win.

    Returns:
        The index, or ``None`` when no point has a score.
    """
    best, best_score = None, -math.inf
    for index, valid in enumerate(valid_metrics):
        score = None if valid is None else valid.get(metric)
        if score is None or math.isnan(score):
            continue
        if best is None or score > best_score:
            best, best_score = index, score
    return best


# ---------------------------------------------------------------------- the search
def tune_grid(
    dataset: InteractionDataset,
    points: Sequence[GridPoint],
    out_dir: str | os.PathLike,
    *,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Train every point (reusing finished folders), select on valid, test the chosen point.

    Writes ``out_dir/run-NNN/`` per point, ``out_dir/tune.csv`` (one row per point: grid
    values, status, best and last epoch, valid metrics at the best epoch, seconds; rewritten
    after each point) and ``out_dir/best.json`` (the chosen point, its configuration, valid
    and test metrics, ``command``).

    Args:
        dataset: the data every point trains on.
        points: the grid (:func:`expand_grid`).
        out_dir: the search's folder.
        command: the command line, recorded in ``best.json``.
        log: receives progress lines (``None``: silent).

    Raises:
        ConfigError: a point's folder holds a run of another configuration (checked for all
            points before anything trains).
        MMGraphError: every point failed.
    """
    if not points:
        raise ConfigError("the grid has no points")
    say = log or (lambda line: None)
    out = Path(out_dir)
    states = [run_folder_state(out / point.name, point.config, dataset) for point in points]
    results: list[PointResult] = []
    for point, state in zip(points, states, strict=True):
        run_dir = out / point.name
        label = f"{point.name} ({point.index}/{len(points)}) {describe(point.values)}"
        if state == "finished":
            say(f"{label}: reusing the finished run in {run_dir}")
            status = "reused"
        else:
            say(f"{label}: {'resuming' if state == 'partial' else 'training'} in {run_dir}")
            status = "resumed" if state == "partial" else "trained"
            try:
                fit_run(
                    dataset,
                    point.config,
                    run_dir,
                    resume=state == "partial",
                    evaluate_test=False,
                    log=lambda line: say(f"  {line}"),
                )
            except TrainingDiverged as exc:
                say(f"{label}: failed: {exc}")
                results.append(PointResult(point, "failed", error=str(exc)))
                _write_csv(out / "tune.csv", results)
                continue
        summary = read_run(run_dir, point.config.train)
        results.append(
            PointResult(
                point,
                status,
                best_epoch=summary.best_epoch,
                last_epoch=summary.last_epoch,
                valid=dict(summary.valid),  # summary.test is not looked at
                seconds=summary.seconds,
            )
        )
        _write_csv(out / "tune.csv", results)
    metric = points[0].config.train.valid_metric
    chosen = select_point([result.valid for result in results], metric)
    if chosen is None:
        raise MMGraphError(f"no grid point finished training; see {out / 'tune.csv'}")
    best = results[chosen]
    train_config = best.point.config.train
    test = evaluate_checkpoint(out / best.point.name / "best.pt", dataset, train_config, "test")
    result = TuneResult(results, chosen, metric, test, command)
    _write_best(out / "best.json", result, dataset)
    return result


def _metric_names(results: Sequence[PointResult]) -> list[str]:
    names: list[str] = []
    for result in results:
        names += [name for name in result.valid or {} if name not in names]
    return names


def _write_csv(path: Path, results: Sequence[PointResult]) -> None:
    keys = list(results[0].point.values)
    metrics = _metric_names(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["run", *keys, "status", "best_epoch", "last_epoch"]
            + [f"valid_{m}" for m in metrics]
            + ["seconds", "error"]
        )
        for r in results:
            valid = r.valid or {}
            writer.writerow(
                [r.point.name, *(_text(r.point.values[k]) for k in keys), r.status]
                + ([r.best_epoch, r.last_epoch] if r.valid is not None else ["", ""])
                + [repr(valid[m]) if m in valid else "" for m in metrics]
                + [f"{r.seconds:.3f}", r.error]
            )
    os.replace(tmp, path)


def _write_best(path: Path, result: TuneResult, dataset: InteractionDataset) -> None:
    best = result.best
    report = {
        "run": best.point.name,
        "point": best.point.values,
        "valid_metric": result.valid_metric,
        "best_epoch": best.best_epoch,
        "valid": best.valid,
        "test": result.test,
        "config": best.point.config.to_dict(),
        "dataset": {"name": dataset.name, "source": dataset.source},
        "points": len(result.points),
        "selection": "highest valid_metric at each point's best-valid epoch; ties go to the "
        "first point in grid order; test is evaluated for this point only",
        "command": result.command,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def format_table(result: TuneResult) -> str:
    """The points as a plain-text table (chosen point marked ``*``) and the chosen point's
    valid and test metrics."""
    metric = result.valid_metric
    keys = list(result.points[0].point.values)
    header = ["", "run", *keys, "best_epoch", f"valid {metric}", "seconds", "status"]
    rows = [header]
    for index, r in enumerate(result.points):
        score = (r.valid or {}).get(metric)
        rows.append(
            ["*" if index == result.chosen else "", r.point.name]
            + [_text(r.point.values[k]) for k in keys]
            + [str(r.best_epoch) if r.valid is not None else "-"]
            + [f"{score:.4f}" if score is not None else "-", f"{r.seconds:.1f}", r.status]
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    best = result.best
    cutoff = metric.partition("@")[2]
    shown = [f"recall@{cutoff}", f"ndcg@{cutoff}"]
    shown = [metric, *(name for name in shown if name != metric)]
    test = ", ".join(f"{name} {result.test[name]:.4f}" for name in shown if name in result.test)
    lines += [
        "",
        f"chosen: {best.point.name} {describe(best.point.values)} (valid {metric} "
        f"{best.valid[metric]:.4f} at epoch {best.best_epoch}; ties go to the first in grid "
        "order)",
        f"test of the chosen point: {test}",
    ]
    return "\n".join(lines)
