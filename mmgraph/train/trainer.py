"""One trainer for every model: epochs, early stopping on valid, checkpoints, exact resume."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mmgraph.data.dataset import InteractionDataset
from mmgraph.errors import CheckpointError, MMGraphError
from mmgraph.io import atomic_torch_save, safe_torch_load
from mmgraph.models.base import MODEL_FORMAT, Recommender
from mmgraph.train.config import RunConfig
from mmgraph.train.distributed import (
    DistributedContext,
    GradientSync,
    ShardedSampler,
    broadcast_parameters,
)

#: ``evaluate(model, split) -> {"recall@20": ..., ...}``; the CLI passes an
#: :class:`mmgraph.eval.Evaluator`'s ``evaluate`` (the trainer sits below ``mmgraph.eval``).
EvaluateFn = Callable[[Recommender, str], dict[str, float]]


class TrainingDiverged(MMGraphError):
    """A loss term became NaN or infinite."""


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`: valid/test metrics at the best-valid epoch (``test`` is
    empty when the trainer was built with ``evaluate_test=False``)."""

    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "test": self.test, "best_epoch": self.best_epoch}


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _State:
    """Progress that a checkpoint must restore for an exact resume."""

    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_score: float = -math.inf
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0


class Trainer:
    """Trains a :class:`Recommender`, selecting the epoch on the valid split only.

    Each epoch runs ``model.training_step`` over ``model.make_sampler(...)``'s batches; every
    ``eval_every`` epochs it evaluates valid, keeps the best state, writes ``log.jsonl`` and
    the checkpoints ``last.pt`` / ``best.pt`` atomically, and stops after ``patience``
    evaluations without improvement. Test is evaluated once, at the end, on the best-valid
    weights.

    Args:
        model: the recommender to train.
        dataset: the data it was built for.
        config: resolved run configuration (:func:`mmgraph.train.resolve_config`).
        evaluate: ``evaluate(model, split) -> metrics`` (e.g. ``Evaluator(dataset).evaluate``).
        out_dir: where checkpoints and logs go; ``None`` keeps everything in memory.
        progress: show a tqdm bar per epoch.
        log: called with one human-readable line per evaluation.
        distributed: train data-parallel as one rank of this process group
            (:mod:`mmgraph.train.distributed`): each global batch of ``batch_size`` rows is
            split over the ranks, gradients are summed with weights before every optimiser
            step, ``evaluate`` should be sharded (``Evaluator(..., shard=context.shard)``),
            rank 0's metrics decide early stopping, and only rank 0 logs and writes files.
        evaluate_test: evaluate test at the end; ``False`` for model selection (``mmgraph
            tune``), where only the chosen configuration's test is evaluated, later: the
            result's and ``metrics.json``'s ``test`` are then empty.
    """

    def __init__(
        self,
        model: Recommender,
        dataset: InteractionDataset,
        config: RunConfig,
        evaluate: EvaluateFn,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = print,
        distributed: DistributedContext | None = None,
        evaluate_test: bool = True,
    ) -> None:
        self.model = model
        self.dataset = dataset
        self.config = config
        self.train_config = config.train
        self.evaluate = evaluate
        self.evaluate_test = evaluate_test
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.distributed = distributed
        self.is_main = distributed is None or distributed.is_main
        self.progress = progress and self.is_main
        self.log = (log if self.is_main else None) or (lambda line: None)
        self.device = distributed.device if distributed else torch.device(self.train_config.device)
        self.state = _State()
        self.best_model_state: dict[str, torch.Tensor] | None = None
        self.grad_sync: GradientSync | None = None  # set by fit() when distributed

    # ------------------------------------------------------------------ public
    def fit(self, resume: bool = False) -> TrainResult:
        """Train until early stopping or ``epochs``; return test metrics of the best epoch."""
        seed_everything(self.train_config.seed)
        # The batch stream's generator is seeded alike on every rank (ranks slice the same
        # global batches); the global RNGs (dropout, noise) get a per-rank seed below.
        self.generator = torch.Generator().manual_seed(self.train_config.seed)
        self.model.to(self.device)
        self.grad_sync = None
        if self.distributed is not None:
            broadcast_parameters(self.model, self.distributed)
            seed_everything(self.train_config.seed + self.distributed.rank)
        self.optimizers = self.model.configure_optimizers(
            self.train_config.lr, self.train_config.weight_decay
        )
        if resume:
            self._resume()
        elif self.out_dir is not None:
            self._on_main(self._check_fresh_out_dir)
        sampler = self.model.make_sampler(
            self.dataset,
            self.train_config.batch_size,
            self.generator,
            self.device,
            negative_pool=self.train_config.negative_pool,
        )
        if self.distributed is not None:
            sampler = ShardedSampler(sampler, self.distributed.rank, self.distributed.world_size)
            self.grad_sync = GradientSync(self.distributed, self.optimizers)
        try:
            return self._fit(sampler)
        finally:
            if self.grad_sync is not None:
                self.grad_sync.close()

    def _fit(self, sampler) -> TrainResult:
        history = self._on_main(self._read_history)
        while self.state.epoch < self.train_config.epochs and not self._should_stop():
            epoch = self.state.epoch + 1
            started = time.perf_counter()
            losses = self._train_epoch(epoch, sampler)
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": losses,
                "train_seconds": time.perf_counter() - started,
            }
            self.state.epoch = epoch
            if epoch % self.train_config.eval_every == 0 or epoch == self.train_config.epochs:
                record.update(self._validate(epoch))
            history.append(record)
            self._append_log(record)
            self._write_checkpoint("last.pt")
        return self._finish(history)

    # ------------------------------------------------------------------ epochs
    def _train_epoch(self, epoch: int, sampler) -> dict[str, float]:
        self.model.train()
        self.model.on_epoch_start(epoch)
        sums: dict[str, torch.Tensor] = {}
        batches = 0
        bar = tqdm(
            sampler,
            total=len(sampler),
            desc=f"epoch {epoch}",
            leave=False,
            disable=not self.progress,
        )
        for batch in bar:
            if self.grad_sync is None:
                terms = self.model.training_step(batch, self.optimizers)
            else:
                batch, weight = batch
                self.grad_sync.weight = weight
                terms = self._global_terms(self.model.training_step(batch, self.optimizers), weight)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float()
            batches += 1
            self._check_finite(terms, epoch)
        means = {key: float(value) / max(batches, 1) for key, value in sums.items()}
        separate = self.model.separate_loss_terms
        means["loss"] = sum(value for key, value in means.items() if key not in separate)
        return means

    def _global_terms(
        self, terms: dict[str, torch.Tensor], weight: float
    ) -> dict[str, torch.Tensor]:
        """The global batch's loss terms, ``Σ_r weight_r · term_r``, on every rank (so that
        logs and the divergence check agree everywhere)."""
        stacked = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
        summed = self.distributed.all_reduce_(stacked * weight)
        return dict(zip(terms, summed.unbind(), strict=True))

    @staticmethod
    def _check_finite(terms: dict[str, torch.Tensor], epoch: int) -> None:
        for key, value in terms.items():
            if not torch.isfinite(value).all():
                raise TrainingDiverged(
                    f"loss term {key!r} became {float(value)} in epoch {epoch}; training "
                    "stopped, the last checkpoint written is from before this epoch"
                )

    def _validate(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        valid = self._agreed(self.evaluate(self.model, "valid"))
        seconds = time.perf_counter() - started
        score = valid[self.train_config.valid_metric]
        improved = score > self.state.best_score
        if improved:
            self.state.best_score = score
            self.state.best_epoch = epoch
            self.state.best_valid = valid
            self.state.bad_evals = 0
            self.best_model_state = copy.deepcopy(self.model.state_dict())
            self._write_checkpoint("best.pt", best=True)
        else:
            self.state.bad_evals += 1
        metric = self.train_config.valid_metric
        parts = "".join(
            f" {part} {valid[f'{part}/{metric}']:.4f}"
            for part in ("cold", "warm")
            if f"{part}/{metric}" in valid
        )
        self.log(
            f"epoch {epoch:4d}  valid {metric} {score:.4f}{f' ({parts.strip()})' if parts else ''}"
            f"  best {self.state.best_score:.4f} @ {self.state.best_epoch}"
        )
        return {"valid": valid, "eval_seconds": seconds, "improved": improved}

    def _should_stop(self) -> bool:
        return self.state.bad_evals >= self.train_config.patience > 0

    def _finish(self, history: list[dict[str, Any]]) -> TrainResult:
        if self.best_model_state is None:  # no evaluation happened (epochs < eval_every)
            self._validate(self.state.epoch)
        self.model.load_state_dict(self.best_model_state)
        test = self._agreed(self.evaluate(self.model, "test")) if self.evaluate_test else {}
        result = TrainResult(self.state.best_epoch, self.state.best_valid, test, history)
        if self.out_dir is not None and self.is_main:
            metrics = json.dumps(result.to_dict(), indent=2)
            tmp = self.out_dir / ".metrics.json.tmp"
            tmp.write_text(metrics + "\n")
            os.replace(tmp, self.out_dir / "metrics.json")
        if self.distributed is not None:
            self.distributed.barrier()  # every rank returns once the files are complete
        return result

    # ------------------------------------------------------------------ ranks
    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run once (on rank 0 when distributed), its result on every rank."""
        return fn() if self.distributed is None else self.distributed.on_main(fn)

    def _agreed(self, metrics: dict[str, float]) -> dict[str, float]:
        """Rank 0's metrics on every rank: early stopping and best-epoch selection are decided
        from the same numbers everywhere, even with an ``evaluate`` that is not sharded."""
        return metrics if self.distributed is None else self.distributed.broadcast_object(metrics)

    # ------------------------------------------------------------------ persistence
    def _checkpoint(self, best: bool, rank_rng: list[Any] | None = None) -> dict[str, Any]:
        exported = self.model.export()
        exported["dataset"] = {
            "name": self.dataset.name,
            "source": self.dataset.source,
            "fingerprint": self.dataset.fingerprint,
        }
        exported["config"] = self.config.to_dict()
        if best:
            return exported
        exported["training"] = {
            "epoch": self.state.epoch,
            "best_epoch": self.state.best_epoch,
            "best_score": self.state.best_score,
            "best_valid": self.state.best_valid,
            "bad_evals": self.state.bad_evals,
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "sampler_rng": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if rank_rng is not None:
            exported["training"]["rank_rng"] = rank_rng
        return exported

    def _write_checkpoint(self, name: str, best: bool = False) -> None:
        if self.out_dir is None:
            return
        rank_rng = None
        if self.distributed is not None and not best:  # a collective: every rank joins
            rank_rng = self.distributed.all_gather_object(self._rank_rng_state())
        if self.is_main:
            atomic_torch_save(self._checkpoint(best, rank_rng), self.out_dir / name)

    def _rank_rng_state(self) -> dict[str, Any]:
        """This rank's global RNG states (they differ per rank; the sampler's does not)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def _check_fresh_out_dir(self) -> None:
        if (self.out_dir / "last.pt").exists():
            raise MMGraphError(
                f"{self.out_dir} already holds a run (last.pt); pass --resume to continue it "
                "or choose another --out"
            )

    def _resume(self) -> None:
        if self.out_dir is None:
            raise CheckpointError("resume needs an output folder holding last.pt")
        last = self._on_main(lambda: safe_torch_load(self.out_dir / "last.pt", MODEL_FORMAT))
        if "training" not in last:
            raise CheckpointError(f"{self.out_dir / 'last.pt'}: holds no training state")
        if last.get("model") != self.model.name:
            raise CheckpointError(
                f"{self.out_dir / 'last.pt'}: was written for model {last.get('model')!r}, "
                f"not {self.model.name!r}"
            )
        if last.get("dataset", {}).get("fingerprint") != self.dataset.fingerprint:
            raise CheckpointError(
                f"{self.out_dir / 'last.pt'}: was trained on different data than "
                f"{self.dataset.name!r} (fingerprints differ)"
            )
        self.model.load_state_dict(last["state_dict"])
        training = last["training"]
        for optimizer, state in zip(self.optimizers, training["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        self.generator.set_state(training["sampler_rng"])
        rank_rng = training.get("rank_rng") if self.distributed is not None else None
        if rank_rng and len(rank_rng) == self.distributed.world_size:
            own = rank_rng[self.distributed.rank]
            torch.set_rng_state(own["torch"])
            if own["cuda"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(own["cuda"], self.device)
        elif self.distributed is None:
            torch.set_rng_state(training["torch_rng"])
            if training["cuda_rng"]:
                torch.cuda.set_rng_state_all(training["cuda_rng"])
        # else: written by another number of ranks; each rank keeps its fresh per-rank seed.
        self.state = _State(
            epoch=training["epoch"],
            best_epoch=training["best_epoch"],
            best_score=training["best_score"],
            best_valid=training["best_valid"],
            bad_evals=training["bad_evals"],
        )
        if self.state.best_epoch:
            best = self._on_main(lambda: safe_torch_load(self.out_dir / "best.pt", MODEL_FORMAT))
            self.best_model_state = best["state_dict"]
        if self.is_main:
            self._truncate_log(self.state.epoch)
        self.log(f"resumed from {self.out_dir / 'last.pt'} after epoch {self.state.epoch}")

    # ------------------------------------------------------------------ log.jsonl
    def _log_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "log.jsonl"

    def _append_log(self, record: dict[str, Any]) -> None:
        path = self._log_path()
        if path is not None and self.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def _read_history(self) -> list[dict[str, Any]]:
        path = self._log_path()
        if path is None or not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _truncate_log(self, last_epoch: int) -> None:
        """Drop log lines written after the checkpoint we resume from (killed mid-write)."""
        path = self._log_path()
        if path is None or not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["epoch"] <= last_epoch:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short when the process was killed
        path.write_text("".join(line + "\n" for line in kept))
