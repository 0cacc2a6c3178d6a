"""One configured run: build the model, fit it with the shared trainer, read its folder back.

``mmgraph train``, ``mmgraph tune`` (one run per grid point) and ``benchmarks/accuracy.py``
all train through :func:`fit_run`, so a run means the same thing everywhere, evaluated by
:func:`run_evaluator`.

A run folder holds what :class:`~mmgraph.train.Trainer` writes (``best.pt``, ``last.pt``,
``log.jsonl``, ``metrics.json``); :func:`run_folder_state` tells whether a folder is new,
partial (resumable) or finished for a given configuration, and :func:`read_run` summarises a
finished one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmgraph.allocator import retain_freed_memory
from mmgraph.data import load_dataset
from mmgraph.data.dataset import InteractionDataset
from mmgraph.errors import CheckpointError, ConfigError
from mmgraph.eval import Evaluator
from mmgraph.io import safe_torch_load
from mmgraph.models import get_model
from mmgraph.models.base import MODEL_FORMAT, Recommender
from mmgraph.train.config import RunConfig, TrainConfig
from mmgraph.train.distributed import DistributedContext
from mmgraph.train.trainer import EvaluateFn, Trainer, TrainResult, seed_everything

RunState = Literal["new", "partial", "finished"]


def run_evaluator(
    dataset: InteractionDataset, train_config: TrainConfig, shard: tuple[int, int] | None = None
) -> EvaluateFn:
    """The ``evaluate(model, split)`` of a run: an :class:`~mmgraph.eval.Evaluator` with the
    run's ``ks`` and ``eval_batch_size``; ``shard`` is ``(rank, world_size)`` or ``None``."""
    return Evaluator(
        dataset, ks=train_config.ks, batch_size=train_config.eval_batch_size, shard=shard
    ).evaluate


def build_model(dataset: InteractionDataset, config: RunConfig) -> Recommender:
    """``config``'s model for ``dataset``, its parameters initialised from ``config``'s seed."""
    seed_everything(config.train.seed)
    return get_model(config.model).from_dataset(dataset, **config.hparams)


def fit_run(
    dataset: InteractionDataset,
    config: RunConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    model: Recommender | None = None,
    resume: bool = False,
    evaluate_test: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train ``config``'s model on ``dataset`` with the shared :class:`Trainer`.

    First calls :func:`mmgraph.allocator.retain_freed_memory` (a setting of the whole
    process: freed memory is kept for the next step's buffers, not returned to the kernel).

    Args:
        dataset: the data.
        config: the resolved run configuration (:func:`~mmgraph.train.resolve_config`).
        out_dir: the run folder (``None``: nothing is written).
        model: an already built model (:func:`build_model`); built here when ``None``.
        resume: continue the run in ``out_dir`` from its ``last.pt``.
        evaluate_test: evaluate test on the best-valid weights at the end (``False`` for
            model selection: test stays empty, also in ``metrics.json``).
        progress: show a progress bar per epoch.
        log: receives one line per evaluation (``None``: silent).
        distributed: this process's rank in a data-parallel run.

    Returns:
        The trainer's result: best epoch, valid (and test) metrics at it, the epoch history.
    """
    retain_freed_memory()
    if model is None:
        model = build_model(dataset, config)
    shard = distributed.shard if distributed is not None else None
    trainer = Trainer(
        model,
        dataset,
        config,
        run_evaluator(dataset, config.train, shard),
        out_dir=out_dir,
        progress=progress,
        log=log,
        distributed=distributed,
        evaluate_test=evaluate_test,
    )
    return trainer.fit(resume=resume)


def _normalized(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(config))


def _model_defaults(model: str) -> dict[str, Any]:
    """The registered model's hyper-parameter defaults as they read back from JSON (``{}``
    for an unknown name; a default JSON cannot hold becomes its ``repr``, equal to no
    recorded value)."""
    try:
        defaults = get_model(model).hyperparameters()
    except ConfigError:
        return {}
    return json.loads(json.dumps(defaults, default=repr))


def run_folder_state(
    out_dir: str | os.PathLike, config: RunConfig, dataset: InteractionDataset
) -> RunState:
    """Whether ``out_dir`` is ``"new"`` (absent or empty), ``"partial"`` (a started run of this
    configuration: resume it) or ``"finished"`` (its ``metrics.json`` is written).

    ``epochs`` alone may differ from the recorded run's: a run its cap ended, asked for more
    epochs, is ``"partial"`` (resuming extends it); one that early stopping ended is finished.

    Raises:
        ConfigError: the folder holds a run of another configuration or dataset, or files
            that are not a run's.
    """
    out = Path(out_dir)
    if not out.exists() or not any(out.iterdir()):
        return "new"
    checkpoint = next((out / n for n in ("last.pt", "best.pt") if (out / n).is_file()), None)
    if checkpoint is None:
        raise ConfigError(
            f"{out}: holds files but no last.pt or best.pt (a run killed in its first epoch, or "
            "not a run folder); delete it to train this run again"
        )
    try:
        recorded = safe_torch_load(checkpoint, MODEL_FORMAT)
    except CheckpointError as exc:
        raise ConfigError(f"{out}: cannot be reused ({exc})") from None
    if (recorded.get("dataset") or {}).get("fingerprint") != dataset.fingerprint:
        raise ConfigError(
            f"{out}: holds a run on other data than {dataset.name!r}; use another output folder"
        )
    old, new = _normalized(recorded.get("config") or {}), _normalized(config.to_dict())
    # a key the recorded run predates, asked for at its default: that run had the behaviour
    added = {
        key
        for key, value in _model_defaults(config.model).items()
        if key not in old and key in new and new[key] == value
    }
    changed = [
        f"{key}={old.get(key)!r} (now {new.get(key)!r})"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and key != "epochs" and key not in added
    ]
    if changed:
        raise ConfigError(
            f"{out}: holds a run of another configuration: {', '.join(changed)}; "
            "use another output folder or delete it"
        )
    training = recorded.get("training")
    if training is None:  # best.pt only
        if not (out / "metrics.json").is_file():
            raise ConfigError(
                f"{out}: holds best.pt but no last.pt; delete it to train this run again"
            )
        if old.get("epochs") != new.get("epochs"):
            raise ConfigError(
                f"{out}: holds a finished run without last.pt, so it cannot be trained to "
                f"epochs={new.get('epochs')} (it had {old.get('epochs')}); use another folder"
            )
        return "finished"
    return _state_under_cap(out, training, config.train)


def _state_under_cap(out: Path, training: dict[str, Any], train_config: TrainConfig) -> RunState:
    """A run's state when asked for ``train_config.epochs`` epochs, from ``last.pt``'s
    ``training`` record: a run that its epoch cap ended is ``"partial"`` under a higher cap
    (resuming it continues exactly as one run with that cap would, when ``eval_every``
    divides the old cap); one that early stopping ended is finished under any cap it fits."""
    epoch, cap = int(training["epoch"]), train_config.epochs
    stopped_early = training["bad_evals"] >= train_config.patience > 0
    if epoch > cap:
        raise ConfigError(
            f"{out}: holds a run trained for {epoch} epochs, more than epochs={cap}; raise "
            "epochs, or use another output folder"
        )
    if (out / "metrics.json").is_file() and (stopped_early or epoch == cap):
        return "finished"
    return "partial"


@dataclass
class RunSummary:
    """A finished run, read back from its folder.

    Attributes:
        best_epoch: the epoch selected on valid.
        last_epoch: the last epoch trained.
        valid: valid metrics at ``best_epoch`` (``{"recall@20": ...}``).
        test: test metrics at ``best_epoch``; empty when the run did not evaluate test.
        stopped_early: ``patience`` evaluations without improvement ended the run; ``False``
            means the ``epochs`` cap did (the run may still have been improving).
        seconds: training and valid-evaluation time summed over ``log.jsonl`` (model setup
            and the test evaluation excluded; the sum over all sessions of a resumed run).
    """

    best_epoch: int
    last_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    stopped_early: bool
    seconds: float


def read_run(out_dir: str | os.PathLike, train_config: TrainConfig) -> RunSummary:
    """Summary of the finished run in ``out_dir``, trained with ``train_config``.

    Raises:
        ConfigError: ``metrics.json`` or ``log.jsonl`` is missing or unreadable.
    """
    out = Path(out_dir)
    try:
        metrics = json.loads((out / "metrics.json").read_text())
        history = [
            json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line
        ]
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{out}: not a finished run ({exc})") from None
    if not history:
        raise ConfigError(f"{out}: log.jsonl is empty")
    evaluations = [record for record in history if "valid" in record]
    without_improvement = 0
    for record in reversed(evaluations):
        if record.get("improved"):
            break
        without_improvement += 1
    return RunSummary(
        best_epoch=int(metrics["best_epoch"]),
        last_epoch=int(history[-1]["epoch"]),
        valid=metrics.get("valid") or {},
        test=metrics.get("test") or {},
        stopped_early=without_improvement >= train_config.patience > 0,
        seconds=sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in history),
    )


def evaluate_checkpoint(
    path: str | os.PathLike,
    dataset: InteractionDataset,
    train_config: TrainConfig,
    split: str = "test",
) -> dict[str, float]:
    """Metrics on ``split`` of the model in a trainer checkpoint (``best.pt``), on ``dataset``.

    Raises:
        CheckpointError: the checkpoint is unreadable or was trained on other data.
    """
    exported = safe_torch_load(path, MODEL_FORMAT)
    if (exported.get("dataset") or {}).get("fingerprint") != dataset.fingerprint:
        raise CheckpointError(f"{path}: was trained on other data than {dataset.name!r}")
    model = Recommender.from_export(exported, dataset).to(train_config.device)
    return run_evaluator(dataset, train_config)(model, split)


def load_checkpoint(
    path: str | os.PathLike, dataset_ref: str | None = None
) -> tuple[Recommender, InteractionDataset, dict[str, Any]]:
    """The model of a checkpoint (``best.pt``, ``last.pt`` or a saved model), its dataset
    (``dataset_ref``, else the one the checkpoint records) and the run config recorded with it.

    Raises:
        CheckpointError: the checkpoint is unreadable, records no dataset and none is given,
            or was trained on other data than the dataset loaded.
    """
    exported = safe_torch_load(path, MODEL_FORMAT)
    recorded = exported.get("dataset") or {}
    ref = dataset_ref or recorded.get("source")
    if not ref:
        raise CheckpointError(f"{path}: records no dataset; pass --dataset")
    dataset = load_dataset(ref)
    fingerprint = recorded.get("fingerprint")
    if fingerprint is not None and fingerprint != dataset.fingerprint:
        raise CheckpointError(
            f"{path}: was trained on different data than {ref!r} (dataset fingerprints differ)"
        )
    return Recommender.from_export(exported, dataset), dataset, exported.get("config") or {}
