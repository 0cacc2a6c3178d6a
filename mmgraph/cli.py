"""Command line: ``mmgraph`` with the subcommands ``preprocess``, ``cold-split``, ``train``,
``tune``, ``evaluate``, ``recommend``, ``export``, ``plot`` and ``list``.

Errors caused by input (files, config keys, checkpoints) print one ``mmgraph: error: ...``
line on stderr and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgraph.data import InteractionDataset, list_bundled, load_dataset, write_cold_item_split
from mmgraph.data.preprocess import (
    ITEM_MAP,
    USER_MAP,
    RawIds,
    preprocess,
    read_feature_ids,
    read_id_maps,
)
from mmgraph.errors import ConfigError, DataError, MMGraphError
from mmgraph.eval import (
    Evaluator,
    paired_test,
    read_seed_means,
    write_per_user,
)
from mmgraph.io import safe_torch_load
from mmgraph.models import get_model, registered_models
from mmgraph.models.base import MODEL_FORMAT
from mmgraph.plot import (
    export_tensorboard,
    item_embeddings,
    plot_item_tsne,
    plot_learning_curves,
    read_log,
)
from mmgraph.serve import INDEX_KINDS, ExportedRecommender, IndexSettings, export_model
from mmgraph.threads import configure_threads
from mmgraph.train import (
    DistributedContext,
    RunConfig,
    TrainConfig,
    destroy_distributed,
    fit_run,
    init_distributed,
    list_bundled_configs,
    load_checkpoint,
    parse_overrides,
    read_config_file,
    resolve_config,
)
from mmgraph.train.tune import (
    expand_grid,
    format_table,
    model_grid,
    parse_grid,
    read_grid_file,
    tune_grid,
)

#: ``(origin, {key: value})``: one layer of configuration, as :func:`resolve_config` takes it.
Layer = tuple[str, dict[str, Any]]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgraph", description="Multimodal recommendation on PyTorch Geometric."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and report test metrics")
    train.add_argument("--model", help="model name (see `mmgraph list`)")
    train.add_argument("--dataset", help="bundled dataset name or MMRec-layout folder")
    train.add_argument(
        "--config", help="YAML file of config keys, or a shipped config (mmgraph list)"
    )
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="cpu, cuda or cuda:N")
    train.add_argument(
        "--threads",
        help="CPU threads: N, or 'auto' for the cores the current load leaves free "
        "(default: one per core)",
    )
    train.add_argument("--out", help="output folder (default runs/<model>-<dataset>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="run as one process of `torchrun` (data-parallel over its processes and machines)",
    )

    tune = commands.add_parser(
        "tune", help="grid search selected on valid; test of the chosen point only"
    )
    tune.add_argument("--model", help="model name (see `mmgraph list`)")
    tune.add_argument("--dataset", help="bundled dataset name or MMRec-layout folder")
    tune.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a searched config key and its values, typed as --set values (repeatable)",
    )
    tune.add_argument("--grid-file", help="YAML file of `key: [values]` to search")
    tune.add_argument("--config", help="YAML file of config keys (the base of every point)")
    tune.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config key"
    )
    tune.add_argument("--epochs", type=int)
    tune.add_argument("--seed", type=int)
    tune.add_argument("--device", help="cpu, cuda or cuda:N")
    tune.add_argument(
        "--threads",
        help="CPU threads: N, or 'auto' for the cores the current load leaves free "
        "(default: one per core)",
    )
    tune.add_argument("--out", help="output folder (default runs/tune-<model>-<dataset>)")
    tune.add_argument("--quiet", action="store_true", help="no per-point or per-epoch lines")

    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint on one split")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--split", choices=["valid", "test"], default="test")
    evaluate.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument(
        "--per-user",
        metavar="FILE",
        help="also write every user's metrics as TSV (for paired tests between models)",
    )

    compare = commands.add_parser(
        "compare",
        help="paired test over users between two models' per-user files (evaluate --per-user)",
    )
    compare.add_argument(
        "files", nargs="+", metavar="FILE", help="model A: per-user TSVs, one per seed"
    )
    compare.add_argument(
        "--against",
        nargs="+",
        required=True,
        metavar="FILE",
        help="model B: per-user TSVs of the same split, one per seed",
    )
    compare.add_argument(
        "--metrics",
        default="recall@20,ndcg@20",
        help="comma-separated metrics to test (default recall@20,ndcg@20)",
    )

    recommend = commands.add_parser("recommend", help="top-k items as TSV")
    source = recommend.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run's best.pt or last.pt")
    source.add_argument(
        "--index",
        metavar="DIR",
        help="an `mmgraph export` folder: answer from its faiss index (exact numpy without one)",
    )
    recommend.add_argument("--users", default="all", help="'all' or comma-separated user ids")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    recommend.add_argument("--device", default="cpu")
    recommend.add_argument(
        "--raw-ids",
        action="store_true",
        help=f"--users and the output use the raw ids of the dataset's {USER_MAP} / {ITEM_MAP}",
    )

    export = commands.add_parser(
        "export", help="final embeddings as .npy + manifest for serving (optional faiss index)"
    )
    export.add_argument("--checkpoint", required=True, help="a run's best.pt or last.pt")
    export.add_argument("--out", required=True, help="the export folder to write")
    export.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    export.add_argument("--device", default="cpu")
    export.add_argument(
        "--index", choices=INDEX_KINDS, help="also write a faiss inner-product item index"
    )
    defaults = IndexSettings()
    export.add_argument("--hnsw-m", type=int, default=defaults.hnsw_m, help="HNSW graph degree")
    export.add_argument("--ef-construction", type=int, default=defaults.ef_construction)
    export.add_argument("--ef-search", type=int, default=defaults.ef_search)
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export")

    prep = commands.add_parser(
        "preprocess", help="ratings table -> MMRec-layout dataset folder (k-core, id maps, split)"
    )
    prep.add_argument("ratings", help="CSV/TSV file (.gz allowed) or Parquet (needs pandas)")
    prep.add_argument("out", help="dataset folder to write")
    prep.add_argument("--name", help="<name>.inter (default: the folder's name)")
    prep.add_argument("--user-col", default="userID", help="user column (default userID)")
    prep.add_argument("--item-col", default="itemID", help="item column (default itemID)")
    prep.add_argument("--rating-col", default="rating", help="kept if present (default rating)")
    prep.add_argument(
        "--timestamp-col", default="timestamp", help="used if present (default timestamp)"
    )
    prep.add_argument("--sep", help="field separator (default ',' for .csv, else tab)")
    prep.add_argument(
        "--no-header", action="store_true", help="no header line; columns are 0-based positions"
    )
    prep.add_argument("--k-core", type=int, default=5, help="min interactions per user and item")
    prep.add_argument("--split", choices=["random", "chronological"], default="random")
    prep.add_argument(
        "--seed", type=int, default=2024, help="seed of the random split and --cold-items"
    )
    prep.add_argument(
        "--cold-items",
        type=float,
        metavar="FRACTION",
        help="then move every row of this share of the items to valid/test (item cold start)",
    )
    prep.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="MODALITY=FILE.npy",
        help="item features [n, dim], row r for the item on line r of --feature-ids",
    )
    prep.add_argument("--feature-ids", help="raw item id of each --features row, one per line")
    prep.add_argument("--missing-features", choices=["error", "mean", "zero"], default="error")
    prep.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    cold = commands.add_parser(
        "cold-split",
        help="copy a dataset with whole items held out in valid/test (item cold start)",
    )
    cold.add_argument("source", help="bundled dataset name or MMRec-layout folder")
    cold.add_argument("out", help="dataset folder to write")
    cold.add_argument(
        "--fraction", type=float, default=0.2, help="share of the items held out (default 0.2)"
    )
    cold.add_argument("--seed", type=int, default=2024, help="seed of the held-out items")
    cold.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    plot = commands.add_parser("plot", help="learning curves and item t-SNE of a run as PNG")
    plot.add_argument("run_dir", help="output folder of `mmgraph train`")
    plot.add_argument("--out", help="folder for the PNG files (default: the run folder)")
    plot.add_argument("--no-tsne", action="store_true", help="learning curves only")
    plot.add_argument("--max-items", type=int, default=2000, help="items in the t-SNE sample")
    plot.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    plot.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write log.jsonl as TensorBoard scalars to <out>/tensorboard",
    )

    commands.add_parser("list", help="available models and bundled datasets")
    return parser


# ---------------------------------------------------------------------- train
def _config_layers(
    args: argparse.Namespace, previous: dict[str, Any] | None = None
) -> tuple[str, list[Layer], list[Layer]]:
    """The model's name, the base layers (a checkpoint's config, ``--config``) and the fixed
    ones (``--set``, then ``--epochs/--seed/--device``), each in increasing precedence."""
    base: list[Layer] = []
    model_name = args.model
    if previous is not None:
        model_name = model_name or previous["model"]
        base.append(("checkpoint config", previous))
    file_layer = read_config_file(args.config) if args.config else {}
    model_name = model_name or file_layer.get("model")
    if not model_name:
        raise ConfigError("--model is required (or a `model:` key in --config)")
    if file_layer:
        base.append((str(args.config), file_layer))
    fixed: list[Layer] = []
    if args.set:
        fixed.append(("--set", parse_overrides(args.set)))
    explicit = {
        key: getattr(args, key)
        for key in ("epochs", "seed", "device")
        if getattr(args, key) is not None
    }
    fixed.append(("command line", explicit))
    return model_name, base, fixed


def _resolve_run(args: argparse.Namespace, previous: dict[str, Any] | None) -> RunConfig:
    model_name, base, fixed = _config_layers(args, previous)
    return resolve_config(get_model(model_name), [*base, *fixed])


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")


def _check_output_folder(out: Path) -> None:
    """``out`` is a folder this process can write, or can be created as one (nothing is
    created here: a run that fails before training leaves no folder behind)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable")


def _train(args: argparse.Namespace) -> int:
    configure_threads(args.threads)
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
    config = _resolve_run(args, previous)  # a bad value fails before the data loads
    train_config = config.train
    _check_device(train_config.device)
    dataset = load_dataset(dataset_ref)
    out = Path(args.out or f"runs/{config.model}-{dataset.name}")
    _check_output_folder(out)
    if not args.distributed:
        return _fit_and_report(args, dataset, config, out, None)
    joined = torch.distributed.is_initialized()  # a caller's own group is left to it
    context = init_distributed(train_config.device)
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
    train_config = config.train
    quiet = args.quiet or (context is not None and not context.is_main)
    say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
    say(f"dataset: {dataset}")
    say(f"config: {json.dumps(config.to_dict())}")
    if context is not None:
        say(f"distributed: {context.world_size} processes, global batch {train_config.batch_size}")
    result = fit_run(
        dataset,
        config,
        out,
        resume=args.resume,
        progress=not quiet and sys.stderr.isatty(),
        log=say,
        distributed=context,
    )
    say(f"wrote {out / 'best.pt'}, {out / 'last.pt'}, {out / 'log.jsonl'}, {out / 'metrics.json'}")
    if context is None or context.is_main:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


# ---------------------------------------------------------------------- tune
def _tune(args: argparse.Namespace) -> int:
    """Grid search: every point checked before the dataset loads and anything trains."""
    configure_threads(args.threads)
    if not args.dataset:
        raise ConfigError("--dataset is required")
    model_name, base, fixed = _config_layers(args)
    axes = read_grid_file(args.grid_file) if args.grid_file else []
    axes += parse_grid(args.grid)
    model_cls = get_model(model_name)
    if not axes:
        axes = model_grid(model_cls)
    points = expand_grid(model_cls, axes, base, fixed)
    _check_device(points[0].config.train.device)
    dataset = load_dataset(args.dataset)
    out = Path(args.out or f"runs/tune-{points[0].config.model}-{dataset.name}")
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    say(f"dataset: {dataset}")
    say(f"grid: {len(points)} points of {', '.join(axis.key for axis in axes)} in {out}")
    result = tune_grid(dataset, points, out, command=args.command_line, log=say)
    say(f"wrote {out / 'tune.csv'}, {out / 'best.json'}")
    print(format_table(result))
    return 0


# ---------------------------------------------------------------------- checkpoints
def _evaluate(args: argparse.Namespace) -> int:
    model, dataset, config = load_checkpoint(args.checkpoint, args.dataset)
    model.to(args.device)
    evaluator = Evaluator(dataset, ks=config.get("ks", TrainConfig().ks))
    if args.per_user:
        values = evaluator.per_user(model, args.split)
        write_per_user(values, args.per_user)
    metrics = evaluator.evaluate(model, args.split)
    print(json.dumps(metrics, indent=2))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Each user's mean over A's files against the same over B's, Wilcoxon per metric."""
    mine = read_seed_means(args.files)
    theirs = read_seed_means(args.against)
    results = []
    for metric in [m.strip() for m in args.metrics.split(",") if m.strip()]:
        test = paired_test(mine, theirs, metric)
        results.append({**asdict(test), "difference": test.difference})
    print(json.dumps(results, indent=2))
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


def _id_maps(dataset: InteractionDataset) -> RawIds:
    """Raw user and item ids by 0-based id, from the id maps in the dataset's folder."""
    raw_ids = read_id_maps(dataset.source or "", dataset.num_users, dataset.num_items)
    if raw_ids is None:
        raise ConfigError(
            f"--raw-ids: dataset {dataset.source!r} has no {USER_MAP} and {ITEM_MAP} "
            "(`mmgraph preprocess` writes them)"
        )
    return raw_ids


def _parse_raw_users(spec: str, raw_users: list[str]) -> torch.Tensor:
    if spec == "all":
        return torch.arange(len(raw_users))
    index = {raw: new for new, raw in enumerate(raw_users)}
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [raw for raw in wanted if raw not in index]
    if unknown or not wanted:
        raise ConfigError(f"--users: raw user id(s) {unknown or spec!r} are not in {USER_MAP}")
    return torch.tensor([index[raw] for raw in wanted])


def _recommend(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    if args.index:
        return _recommend_from_export(args)
    model, dataset, _ = load_checkpoint(args.checkpoint, args.dataset)
    model.to(args.device)
    raw_users, raw_items = _id_maps(dataset) if args.raw_ids else (None, None)
    users = _pick_users(args.users, dataset.num_users, raw_users)
    _write_recommendations(
        ((chunk, *model.recommend(chunk, k=args.k)) for chunk in users.split(4096)),
        raw_users,
        raw_items,
    )
    return 0


def _recommend_from_export(args: argparse.Namespace) -> int:
    exported = ExportedRecommender.load(args.index)
    raw_users, raw_items = exported.user_ids, exported.item_ids
    if args.raw_ids and (raw_users is None or raw_items is None):
        raise ConfigError(f"--raw-ids: the export {args.index} has no user_ids.txt / item_ids.txt")
    if not args.raw_ids:
        raw_users = raw_items = None
    users = _pick_users(args.users, exported.num_users, raw_users)
    _write_recommendations(
        ((chunk, *exported.recommend(chunk.numpy(), k=args.k)) for chunk in users.split(4096)),
        raw_users,
        raw_items,
    )
    return 0


def _pick_users(spec: str, num_users: int, raw_users: list[str] | None) -> torch.Tensor:
    if raw_users is None:
        return _parse_users(spec, num_users)
    return _parse_raw_users(spec, raw_users)


def _write_recommendations(
    chunks: Iterable[tuple[Any, Any, Any]],
    raw_users: list[str] | None,
    raw_items: list[str] | None,
) -> None:
    """TSV ``userID rank itemID score`` of ``(users [B], scores [B, k], items [B, k])``
    chunks; entries scored ``-inf`` (no unseen item left) are not written."""
    out = sys.stdout
    out.write("userID\trank\titemID\tscore\n")
    for users, scores, items in chunks:
        for user, row_scores, row_items in zip(
            users.tolist(), scores.tolist(), items.tolist(), strict=True
        ):
            for rank, (score, item) in enumerate(zip(row_scores, row_items, strict=True), start=1):
                if score == float("-inf"):
                    break
                user_id = raw_users[user] if raw_users is not None else user
                item_id = raw_items[item] if raw_items is not None else item
                out.write(f"{user_id}\t{rank}\t{item_id}\t{score:.6g}\n")


def _export(args: argparse.Namespace) -> int:
    index_settings = None
    if args.index:
        index_settings = IndexSettings(
            args.index, args.hnsw_m, args.ef_construction, args.ef_search
        )
    model, dataset, _ = load_checkpoint(args.checkpoint, args.dataset)
    model.to(args.device)
    raw_ids = read_id_maps(dataset.source or "", dataset.num_users, dataset.num_items)
    manifest = export_model(
        model,
        dataset,
        args.out,
        raw_ids=raw_ids,
        index=index_settings,
        checkpoint=args.checkpoint,
        overwrite=args.overwrite,
    )
    print(
        f"exported {manifest['model']}: {manifest['num_users']} users x "
        f"{manifest['num_items']} items x {manifest['dim']} dims to {args.out}"
        + (f" with a {args.index} index" if args.index else "")
    )
    return 0


# ---------------------------------------------------------------------- preprocess
def _read_feature_args(args: argparse.Namespace) -> dict[str, tuple[list[str], Any]]:
    """``{modality: (raw item ids, [n, dim] array)}`` from ``--features`` / ``--feature-ids``."""
    if not args.features:
        if args.feature_ids:
            raise ConfigError("--feature-ids is given without any --features")
        return {}
    if not args.feature_ids:
        raise ConfigError("--features needs --feature-ids (the raw item id of each row)")
    raw_ids = read_feature_ids(args.feature_ids)
    sources = {}
    for spec in args.features:
        modality, sep, file = spec.partition("=")
        if not sep or not modality or not file:
            raise ConfigError(f"--features expects MODALITY=FILE.npy, got {spec!r}")
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"{file}: not a readable .npy array ({err})") from None
        if not isinstance(array, np.ndarray):
            raise DataError(f"{file}: is an .npz archive; expected a single .npy array")
        sources[modality] = (raw_ids, array)
    return sources


def _preprocess(args: argparse.Namespace) -> int:
    def column(value: str | None) -> str | int | None:
        if value is None or not args.no_header:
            return value
        if value in ("rating", "timestamp"):  # the defaults: absent without a header
            return None
        if not value.isdigit():
            raise ConfigError(f"--no-header: columns must be 0-based positions, got {value!r}")
        return int(value)

    report = preprocess(
        args.ratings,
        args.out,
        name=args.name,
        user_col=column(args.user_col),
        item_col=column(args.item_col),
        rating_col=column(args.rating_col),
        timestamp_col=column(args.timestamp_col),
        sep=args.sep,
        header=not args.no_header,
        k_core=args.k_core,
        split=args.split,
        seed=args.seed,
        cold_items=args.cold_items,
        item_features=_read_feature_args(args),
        missing_features=args.missing_features,
        overwrite=args.overwrite,
    )
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _cold_split(args: argparse.Namespace) -> int:
    report = write_cold_item_split(
        args.source, args.out, args.fraction, seed=args.seed, overwrite=args.overwrite
    )
    print(report.summary())
    return 0


# ---------------------------------------------------------------------- plot
def _plot(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found")
    out = Path(args.out) if args.out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    history = read_log(run_dir)
    written = [plot_learning_curves(history, out / "curves.png")]
    if args.tensorboard:
        written.append(export_tensorboard(history, out / "tensorboard"))
    if not args.no_tsne:
        model, _, _ = load_checkpoint(str(run_dir / "best.pt"), args.dataset)
        written.append(plot_item_tsne(item_embeddings(model), out / "tsne.png", args.max_items))
    for path in written:
        print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    print("models:")
    for name, cls in sorted(registered_models().items()):
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        needs = " [needs item features]" if cls.requires_features else ""
        print(f"  {name:12s} {cls.__name__}: {summary}{needs}")
    print("bundled datasets:")
    for name in list_bundled():
        print(f"  {name}")
    print("shipped configs (--config NAME):")
    for name in list_bundled_configs():
        print(f"  {name}")
    return 0


COMMANDS = {
    "preprocess": _preprocess,
    "cold-split": _cold_split,
    "train": _train,
    "tune": _tune,
    "evaluate": _evaluate,
    "compare": _compare,
    "recommend": _recommend,
    "export": _export,
    "plot": _plot,
    "list": _list,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``mmgraph: warning: ...`` line (no source line of library code)."""
    print(f"mmgraph: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmgraph`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser().parse_args(argv)
    args.command_line = shlex.join(["mmgraph", *argv])
    warnings.showwarning = _show_warning
    try:
        return COMMANDS[args.command](args)
    except MMGraphError as exc:
        print(f"mmgraph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's flush quiet
        return 0
    except OSError as exc:  # a path the user gave: missing, not writable, disk full, ...
        if exc.filename is None:
            raise
        print(f"mmgraph: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
