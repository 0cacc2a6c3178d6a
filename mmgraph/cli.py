"""Command line: ``mmgraph train | evaluate | recommend | list``.

Errors caused by input (files, config keys, checkpoints) print one ``mmgraph: error: ...``
line on stderr and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmgraph.data import InteractionDataset, list_bundled, load_dataset
from mmgraph.errors import CheckpointError, ConfigError, MMGraphError
from mmgraph.eval import Evaluator
from mmgraph.io import safe_torch_load
from mmgraph.models import Recommender, get_model, registered_models
from mmgraph.models.base import MODEL_FORMAT
from mmgraph.train import (
    DistributedContext,
    RunConfig,
    TrainConfig,
    Trainer,
    destroy_distributed,
    init_distributed,
    parse_overrides,
    read_config_file,
    resolve_config,
    seed_everything,
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgraph", description="Multimodal recommendation on PyTorch Geometric."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and report test metrics")
    train.add_argument("--model", help="model name (see `mmgraph list`)")
    train.add_argument("--dataset", help="bundled dataset name or MMRec-layout folder")
    train.add_argument("--config", help="YAML file of config keys")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="cpu, cuda or cuda:N")
    train.add_argument("--out", help="output folder (default runs/<model>-<dataset>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="run as one process of `torchrun` (data-parallel over its processes and machines)",
    )

    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint on one split")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--split", choices=["valid", "test"], default="test")
    evaluate.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    evaluate.add_argument("--device", default="cpu")

    recommend = commands.add_parser("recommend", help="top-k items as TSV")
    recommend.add_argument("--checkpoint", required=True)
    recommend.add_argument("--users", default="all", help="'all' or comma-separated user ids")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    recommend.add_argument("--device", default="cpu")

    commands.add_parser("list", help="available models and bundled datasets")
    return parser


# ---------------------------------------------------------------------- train
def _resolve_run(args: argparse.Namespace, previous: dict[str, Any] | None) -> RunConfig:
    layers: list[tuple[str, dict[str, Any]]] = []
    model_name = args.model
    if previous is not None:
        model_name = model_name or previous["model"]
        layers.append(("checkpoint config", previous))
    file_layer = read_config_file(args.config) if args.config else {}
    model_name = model_name or file_layer.get("model")
    if not model_name:
        raise ConfigError("--model is required (or a `model:` key in --config)")
    if file_layer:
        layers.append((str(args.config), file_layer))
    if args.set:
        layers.append(("--set", parse_overrides(args.set)))
    explicit = {
        key: getattr(args, key)
        for key in ("epochs", "seed", "device")
        if getattr(args, key) is not None
    }
    layers.append(("command line", explicit))
    return resolve_config(get_model(model_name), layers)


def _train(args: argparse.Namespace) -> int:
    previous = None
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out, the folder of the run to continue")
        checkpoint = safe_torch_load(Path(args.out) / "last.pt", MODEL_FORMAT)
        previous = checkpoint.get("config")
        dataset_ref = args.dataset or checkpoint["dataset"]["source"]
    else:
        if not args.dataset:
            raise ConfigError("--dataset is required")
        dataset_ref = args.dataset
    dataset = load_dataset(dataset_ref)
    config = _resolve_run(args, previous)
    out = Path(args.out or f"runs/{config.model}-{dataset.name}")
    settings = config.train
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {settings.device!r} requested but CUDA is not available")
    if not args.distributed:
        return _fit_and_report(args, dataset, config, out, None)
    joined = torch.distributed.is_initialized()  # a caller's own group is left to it
    context = init_distributed(settings.device)
    try:
        return _fit_and_report(args, dataset, config, out, context)
    finally:
        if not joined:
            destroy_distributed()


def _fit_and_report(
    args: argparse.Namespace,
    dataset: InteractionDataset,
    config: RunConfig,
    out: Path,
    context: DistributedContext | None,
) -> int:
    """Build the model and train it; in a distributed run only rank 0 reports."""
    settings = config.train
    quiet = args.quiet or (context is not None and not context.is_main)
    say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
    say(f"dataset: {dataset}")
    say(f"config: {json.dumps(config.to_dict())}")
    if context is not None:
        say(f"distributed: {context.world_size} processes, global batch {settings.batch_size}")
    seed_everything(settings.seed)
    model = get_model(config.model).from_dataset(dataset, **config.hparams)
    evaluator = Evaluator(
        dataset,
        ks=settings.ks,
        batch_size=settings.eval_batch_size,
        shard=context.shard if context is not None else None,
    )
    trainer = Trainer(
        model,
        dataset,
        config,
        evaluator.evaluate,
        out_dir=out,
        progress=not quiet and sys.stderr.isatty(),
        log=say,
        distributed=context,
    )
    result = trainer.fit(resume=args.resume)
    say(f"wrote {out / 'best.pt'}, {out / 'last.pt'}, {out / 'log.jsonl'}, {out / 'metrics.json'}")
    if context is None or context.is_main:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


# ---------------------------------------------------------------------- checkpoints
def _load_checkpoint(
    path: str, dataset_ref: str | None
) -> tuple[Recommender, InteractionDataset, dict[str, Any]]:
    """The model of a checkpoint, its dataset, and the run config recorded with it."""
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


def _evaluate(args: argparse.Namespace) -> int:
    model, dataset, config = _load_checkpoint(args.checkpoint, args.dataset)
    model.to(args.device)
    evaluator = Evaluator(dataset, ks=config.get("ks", TrainConfig().ks))
    metrics = evaluator.evaluate(model, args.split)
    print(json.dumps(metrics, indent=2))
    return 0


def _parse_users(spec: str, num_users: int) -> torch.Tensor:
    if spec == "all":
        return torch.arange(num_users)
    try:
        users = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--users expects 'all' or comma-separated integer ids, got {spec!r}"
        ) from None
    bad = [u for u in users if not 0 <= u < num_users]
    if bad or not users:
        raise ConfigError(f"--users: ids {bad or spec!r} are not in [0, {num_users})")
    return torch.tensor(users)


def _recommend(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    model, dataset, _ = _load_checkpoint(args.checkpoint, args.dataset)
    model.to(args.device)
    users = _parse_users(args.users, dataset.num_users)
    out = sys.stdout
    out.write("userID\trank\titemID\tscore\n")
    for chunk in users.split(4096):
        scores, items = model.recommend(chunk, k=args.k)
        for user, row_scores, row_items in zip(
            chunk.tolist(), scores.tolist(), items.tolist(), strict=True
        ):
            for rank, (score, item) in enumerate(zip(row_scores, row_items, strict=True), start=1):
                if score == float("-inf"):
                    break  # the user has fewer than k unseen items
                out.write(f"{user}\t{rank}\t{item}\t{score:.6g}\n")
    return 0


def _list(args: argparse.Namespace) -> int:
    print("models:")
    for name, cls in sorted(registered_models().items()):
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"  {name:12s} {cls.__name__}: {summary}")
    print("bundled datasets:")
    for name in list_bundled():
        print(f"  {name}")
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "recommend": _recommend, "list": _list}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``mmgraph: warning: ...`` line (no source line of library code)."""
    print(f"mmgraph: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmgraph`` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command](args)
    except MMGraphError as exc:
        print(f"mmgraph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmgraph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
