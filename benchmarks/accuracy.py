"""Accuracy suite: test metrics at the best-valid epoch per model, dataset and seed.

Every run is an ordinary ``mmgraph train`` run (:func:`mmgraph.train.fit_run`: the shared
trainer, early stopping on the valid split, test evaluated once on the best-valid weights), in
its own folder ``RUNS/<dataset>/<model>-seed<seed>``. Results go to ``OUT/<tag>.json`` (one
entry per (model, dataset, seed)) and the Markdown table ``OUT/<tag>.md`` built from it::

    python -m benchmarks.accuracy                       # all models, tiktok + movielens-small + baby
    python -m benchmarks.accuracy --models lightgcn,bpr --datasets tiktok --seeds 1,2,3
    python -m benchmarks.accuracy --models mentor --set-model mentor:lr=1e-3 --tag accuracy-x
    python -m benchmarks.accuracy --quick               # smoke run (what the tests execute)

Incremental: a run whose folder already holds a finished run of the same configuration
(``metrics.json``) is read back instead of retrained, a started one is resumed, and a second
invocation with the same ``--tag`` merges its entries into the JSON (an entry of the same
(model, dataset, seed) is replaced, the others are kept). A model that needs item features
(``requires_features = True``, or one whose construction fails with a ConfigError/DataError
on a dataset without features) is recorded as skipped on such a dataset (baby).

``--datasets`` takes names of :data:`benchmarks.speed.DATASETS`, folders or ``synthetic:``
specs; ``--set KEY=VALUE`` applies to every model that has the key, ``--set-model
MODEL:KEY=VALUE`` to one model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.speed import DATASETS, REPO, describe_machine, machine_info, split_datasets
from mmgraph.data import InteractionDataset, load_dataset
from mmgraph.errors import ConfigError, DataError, MMGraphError
from mmgraph.eval import (
    Evaluator,
    paired_test,
    read_seed_means,
    write_per_user,
)
from mmgraph.models import Recommender, get_model, registered_models
from mmgraph.threads import configure_threads
from mmgraph.train import (
    RunConfig,
    TrainConfig,
    build_model,
    fit_run,
    parse_overrides,
    read_config_file,
    read_run,
    resolve_config,
    run_folder_state,
)

#: the metrics recorded per run (valid and test): over all test items, and over the items
#: without (``cold/``) and with (``warm/``) training interactions.
METRICS = (
    "recall@10",
    "recall@20",
    "ndcg@10",
    "ndcg@20",
    "cold/recall@20",
    "cold/ndcg@20",
    "warm/recall@20",
    "warm/ndcg@20",
)
#: the metrics shown in the Markdown table.
TABLE_METRICS = ("recall@20", "ndcg@20", *METRICS[4:])
HEADERS = {
    "recall@10": "R@10",
    "recall@20": "R@20",
    "ndcg@10": "N@10",
    "ndcg@20": "N@20",
    "cold/recall@20": "cold R@20",
    "cold/ndcg@20": "cold N@20",
    "warm/recall@20": "warm R@20",
    "warm/ndcg@20": "warm N@20",
}
#: the model every other is compared with by a paired test over users, and on which metrics.
BASELINE = "lightgcn"
TESTED_METRICS = ("recall@20", "ndcg@20", "cold/recall@20")
#: per-user test metrics of a run's best-valid weights (``mmgraph evaluate --per-user``).
PER_USER_FILE = "test_per_user.tsv"
DEFAULT_SEEDS = "2024,2025,2026"
#: ``--quick``: a tiny synthetic set with features and one without (exercises the skip).
QUICK_DATASETS = [
    "synthetic:users=120,items=60,interactions=1500",
    "synthetic:users=120,items=60,interactions=1500,modalities=none",
]
QUICK_EPOCHS = 2
CAP_MARK = "¹"

Layer = tuple[str, dict[str, Any]]


# ---------------------------------------------------------------------- configuration
def parse_model_overrides(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["mentor:lr=1e-3"]`` -> ``{"mentor": ["lr=1e-3"]}`` (model names checked)."""
    pairs: dict[str, list[str]] = {}
    for spec in specs:
        model, sep, pair = spec.partition(":")
        if not sep or not model or "=" not in pair:
            raise ConfigError(f"--set-model expects MODEL:KEY=VALUE, got {spec!r}")
        pairs.setdefault(get_model(model).name, []).append(pair)
    return pairs


def config_model_pairs(configs: Sequence[str]) -> list[str]:
    """``--set-model`` specs (``"lightgcn:num_layers=2"``) of config files or shipped configs,
    each naming its model in a ``model:`` key."""
    specs = []
    for name in configs:
        content = dict(read_config_file(name))
        model = content.pop("model", None)
        if not isinstance(model, str):
            raise ConfigError(f"{name}: --config needs a `model:` key naming the model")
        for key, value in content.items():
            text = value if isinstance(value, str) else json.dumps(value)
            specs.append(f"{model}:{key}={text}")
    return specs


def _known_keys(model_cls: type[Recommender]) -> set[str]:
    return set(TrainConfig().to_dict()) | set(model_cls.hyperparameters())


def shared_pairs_for(
    model_classes: Sequence[type[Recommender]], pairs: Sequence[str]
) -> dict[str, list[str]]:
    """The ``--set`` pairs that apply to each model (those whose key it has).

    Raises:
        ConfigError: a key no selected model has (``mmgraph train``'s message, with its
            "did you mean").
    """
    parsed = parse_overrides(pairs)
    keys = [pair.partition("=")[0].strip() for pair in pairs]
    for key in parsed:
        if not any(key in _known_keys(cls) for cls in model_classes):
            resolve_config(model_classes[0], [("--set", {key: parsed[key]})])  # raises
    return {
        cls.name: [pair for key, pair in zip(keys, pairs, strict=True) if key in _known_keys(cls)]
        for cls in model_classes
    }


def resolve_run(
    model_cls: type[Recommender],
    pairs: Sequence[str],
    model_pairs: Sequence[str],
    seed: int,
    epochs: int | None,
) -> RunConfig:
    """The configuration of one run: defaults -> ``--set`` -> ``--set-model`` -> seed/epochs."""
    layers: list[Layer] = [
        ("--set", parse_overrides(pairs)),
        (f"--set-model {model_cls.name}", parse_overrides(model_pairs, origin="--set-model")),
        ("command line", {"seed": seed, **({"epochs": epochs} if epochs else {})}),
    ]
    return resolve_config(model_cls, layers)


def needs_features(model_cls: type[Recommender]) -> bool:
    """Whether the model declares that it needs item modality features."""
    return bool(getattr(model_cls, "requires_features", False))


def dataset_ref(label: str) -> str:
    """The ``--dataset`` argument for a label (``baby`` -> ``../shared/data/baby`` when the
    shared folder is the repository's sibling; absolute otherwise)."""
    ref = DATASETS.get(label, label)
    if Path(ref).is_absolute():
        relative = os.path.relpath(ref, REPO)
        return relative if not relative.startswith(("../../", "/")) else ref
    return ref


def _folder_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)[:120]


def train_command(
    model: str, ref: str, seed: int, epochs: int | None, pairs: Sequence[str], run_dir: Path
) -> str:
    """The ``mmgraph train`` command line that reproduces one run (from the repository)."""
    argv = ["mmgraph", "train", "--model", model, "--dataset", ref, "--seed", str(seed)]
    argv += ["--epochs", str(epochs)] if epochs else []
    for pair in pairs:
        argv += ["--set", pair]
    argv += ["--out", _display_path(run_dir)]
    return shlex.join(argv)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------- one run
def run_entry(
    model_cls: type[Recommender],
    label: str,
    dataset: InteractionDataset,
    config: RunConfig,
    run_dir: Path,
    pairs: Sequence[str],
    epochs: int | None,
    log: Callable[[str], None],
    epoch_log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or read back) one (model, dataset, seed) and return its JSON entry.

    Args:
        model_cls: the model.
        label: the dataset's name in the report (``tiktok``, a folder, a synthetic spec).
        dataset: the loaded dataset.
        config: the run's resolved configuration.
        run_dir: the run's folder.
        pairs: the ``KEY=VALUE`` overrides applied to this model (for the command line).
        epochs: the ``--epochs`` cap given, if any (for the command line).
        log: receives one line per run (trained, reused, skipped, failed).
        epoch_log: receives the trainer's per-epoch lines (``None``: silent).
    """
    seed = config.train.seed
    ref = dataset_ref(label)
    entry: dict[str, Any] = {
        "model": model_cls.name,
        "dataset": label,
        "seed": seed,
        "dataset_ref": ref,
        "overrides": dict(
            (pair.partition("=")[0].strip(), pair.partition("=")[2]) for pair in pairs
        ),
        "config": config.to_dict(),
        "command": train_command(model_cls.name, ref, seed, epochs, pairs, run_dir),
        "run_dir": _display_path(run_dir),
    }
    name = f"[{label}] {model_cls.name} seed {seed}"
    if not dataset.modalities and needs_features(model_cls):
        reason = f"{model_cls.name} needs item modality features; {label} has none"
        log(f"{name}: skipped ({reason})")
        return {**entry, "status": "skipped", "reason": reason}
    state = run_folder_state(run_dir, config, dataset)
    if state == "finished":
        log(f"{name}: reusing the finished run in {run_dir}")
    else:
        try:
            model = build_model(dataset, config)
        except (ConfigError, DataError) as exc:
            if dataset.modalities:
                raise
            log(f"{name}: skipped ({exc})")
            return {**entry, "status": "skipped", "reason": str(exc)}
        log(f"{name}: {'resuming' if state == 'partial' else 'training'} in {run_dir}")
        try:
            fit_run(
                dataset,
                config,
                run_dir,
                model=model,
                resume=state == "partial",
                log=(lambda line: epoch_log(f"  {line}")) if epoch_log else None,
            )
        except MMGraphError as exc:  # diverged, or a model rejecting this data
            log(f"{name}: error: {exc}")
            return {**entry, "status": "error", "reason": str(exc)}
    summary = read_run(run_dir, config.train)
    per_user = run_dir / PER_USER_FILE
    if state != "finished" or not per_user.is_file():  # absent, or from before an extension
        model = Recommender.load(run_dir / "best.pt", dataset)
        values = Evaluator(dataset, ks=config.train.ks).per_user(model, "test")
        write_per_user(values, per_user)
    return {
        **entry,
        "status": "done",
        "reused": state == "finished",
        "valid": {m: summary.valid.get(m) for m in METRICS},
        "test": {m: summary.test.get(m) for m in METRICS},
        "best_epoch": summary.best_epoch,
        "last_epoch": summary.last_epoch,
        "epoch_cap": config.train.epochs,
        "stopped_early": summary.stopped_early,
        "cut_by_epoch_cap": not summary.stopped_early,
        "seconds": summary.seconds,
        "per_user": _display_path(per_user),
    }


# ---------------------------------------------------------------------- report
def format_mean_std(values: Sequence[float | None], digits: int = 4) -> str:
    """``[0.1]`` -> ``"0.1000"``; ``[0.1, 0.2]`` -> ``"0.1500 ± 0.0707"`` (sample std);
    ``"–"`` when there is no value."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    mean, std = statistics.fmean(present), statistics.stdev(present)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_p_value(test: dict[str, Any] | None) -> str:
    """``"+0.003"``: the two-sided p-value signed by the direction of the mean difference
    against the baseline (``+``: above it; no sign when the means are equal); ``"–"`` when there
    is no test."""
    if test is None:
        return "–"
    sign = "+" if test["difference"] > 0 else "−" if test["difference"] < 0 else ""
    return f"{sign}{test['p_value']:.2g}"


def variant(model: str, pairs: Sequence[str]) -> str:
    """A model with its overrides, as one name: ``vbpr``, ``vbpr item_id_dropout=0.5``."""
    return " ".join([model, *pairs])


def _entry_variant(entry: dict[str, Any]) -> str:
    """:func:`variant` of a report entry or a summary row (both have model and overrides)."""
    return variant(entry["model"], [f"{k}={v}" for k, v in entry["overrides"].items()])


def _key(entry: dict[str, Any]) -> tuple[str, str, int]:
    """Entries of the same model with other overrides are other rows of the table."""
    return _entry_variant(entry), entry["dataset"], entry["seed"]


def summarise(
    entries: Sequence[dict[str, Any]], previous: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One row per (dataset, model), in order of first appearance: the seeds, per-metric mean
    and std over the finished seeds (test and valid), skipped/error reasons and paired tests.

    Per-user files live in the run folders, which are not committed: where one of a test's
    files is gone, the row keeps the test of ``previous`` (an earlier summary of the same
    report) if that was made from the same files, else the test is marked unavailable
    (``n/a`` in the table).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault((entry["dataset"], _entry_variant(entry)), []).append(entry)
    rows = []
    for (dataset, _), group in groups.items():
        model = group[0]["model"]
        done = [e for e in group if e["status"] == "done"]
        row: dict[str, Any] = {"dataset": dataset, "model": model}
        row["seeds"] = [e["seed"] for e in done]
        row["other"] = {e["seed"]: f"{e['status']}: {e['reason']}" for e in group if e not in done}
        for split in ("test", "valid"):
            row[split] = {}
            for metric in METRICS:
                values = [e[split][metric] for e in done if e[split].get(metric) is not None]
                row[split][metric] = {
                    "mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "values": values,
                }
        row["epochs"] = [
            {
                "seed": e["seed"],
                "best": e["best_epoch"],
                "last": e["last_epoch"],
                "cap": e["epoch_cap"],
                "cut_by_epoch_cap": e["cut_by_epoch_cap"],
            }
            for e in done
        ]
        row["overrides"] = group[0]["overrides"]
        row["per_user"] = [e["per_user"] for e in done if e.get("per_user")]
        rows.append(row)
    stored = {(r["dataset"], _entry_variant(r)): r for r in previous}
    for row in rows:
        try:
            row["paired_test"] = _paired_tests(row, rows)
        except FileNotFoundError:
            old = stored.get((row["dataset"], _entry_variant(row)), {})
            if old.get("per_user") == row["per_user"] and _baseline_files(
                old, previous
            ) == _baseline_files(row, rows):
                row["paired_test"] = old["paired_test"]
            else:  # shown as "n/a": the test needs runs that are no longer on disk
                row["paired_test"] = {"unavailable": "per-user files of some seeds not kept"}
    return rows


def _baseline_row(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The :data:`BASELINE` run whose overrides are all the row's own (a ``--set
    patience=50`` given to every model is in both), the one with the most of them."""
    own = row["overrides"].items()
    baselines = [
        r
        for r in rows
        if r["dataset"] == row["dataset"]
        and r["model"] == BASELINE
        and r["overrides"].items() <= own
        and r["per_user"]
    ]
    return max(baselines, key=lambda r: len(r["overrides"])) if baselines else None


def _baseline_files(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str] | None:
    baseline = _baseline_row(row, rows)
    return baseline["per_user"] if baseline else None


def _paired_tests(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Wilcoxon signed-rank tests over users of ``row``'s model against its baseline row
    (:func:`_baseline_row`) on the same dataset, each user's test metric averaged over the
    model's seeds first."""
    baseline = _baseline_row(row, rows)
    if baseline is None or not row["per_user"] or baseline is row:
        return {}
    missing = [p for p in [*row["per_user"], *baseline["per_user"]] if not _repo_path(p).exists()]
    if missing:
        raise FileNotFoundError(missing[0])
    mine = read_seed_means([_repo_path(p) for p in row["per_user"]])
    theirs = read_seed_means([_repo_path(p) for p in baseline["per_user"]])
    out = {}
    for metric in TESTED_METRICS:
        try:
            test = paired_test(mine, theirs, metric)
        except DataError:  # no user with a target in this part
            continue
        out[metric] = {
            "against": BASELINE,
            "users": test.users,
            "difference": test.difference,
            "p_value": test.p_value,
        }
    return out


def _repo_path(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: header (runs, machines, commands), one table per dataset."""
    lines = [
        f"# Accuracy: {report['tag']}",
        "",
        "Test metrics at the best-valid epoch (MMRec full-ranking protocol; the shared trainer "
        "with early stopping on the valid split, test evaluated once on the best-valid "
        "weights); mean ± sample std over seeds where there are several. `cold` counts only "
        "test items without a training interaction (averaged over the users that have one), "
        f"`warm` the others. `p`: two-sided Wilcoxon signed-rank test over users against "
        f"{BASELINE} (each user's metric averaged over the seeds), signed by the direction "
        "of the difference. Produced by:",
        "",
    ]
    for run in report["invocations"]:
        lines.append(f"- `{run['command']}` ({describe_machine(run['machine'])})")
    cut = False
    for dataset in dict.fromkeys(row["dataset"] for row in report["summary"]):
        rows = [row for row in report["summary"] if row["dataset"] == dataset]
        lines += ["", f"## {dataset}", ""]
        header = " | ".join(HEADERS[m] for m in TABLE_METRICS)
        lines += [f"| model | {header} | p R@20 / N@20 / cold R@20 | best / last epoch | seeds |"]
        lines += ["|---|" + "---|" * len(TABLE_METRICS) + "---|---|---|"]
        for row in rows:
            name = row["model"]
            if row["overrides"]:
                name += " (" + ", ".join(f"{k}={v}" for k, v in row["overrides"].items()) + ")"
            if not row["seeds"]:
                reasons = "; ".join(sorted(set(row["other"].values())))
                lines.append(f"| {name} | {reasons} |" + " |" * (len(TABLE_METRICS) + 2))
                continue
            epochs = []
            for e in row["epochs"]:
                mark = CAP_MARK if e["cut_by_epoch_cap"] else ""
                cut = cut or bool(mark)
                epochs.append(f"{e['best']} / {e['last']}{mark}")
            cells = [format_mean_std(row["test"][m]["values"]) for m in TABLE_METRICS]
            seeds = ", ".join(str(seed) for seed in row["seeds"])
            if row["other"]:
                seeds += " (" + "; ".join(f"{s}: {r}" for s, r in row["other"].items()) + ")"
            tests = row.get("paired_test") or {}
            p_values = " / ".join(format_p_value(tests.get(m)) for m in TESTED_METRICS)
            if not tests or "unavailable" in tests:
                p_values = "n/a" if tests else "–"
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {p_values} | "
                f"{', '.join(epochs)} | {seeds} |"
            )
    if cut:
        lines += [
            "",
            f"{CAP_MARK} Stopped by the epoch cap (`epochs`) before early stopping (patience) "
            "ended it: the run may still have been improving on valid, so its metrics are a "
            "lower bound of what the configuration reaches.",
        ]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_report(path: Path, tag: str) -> dict[str, Any]:
    """The existing report of ``tag`` (to merge into), or an empty one."""
    if not path.is_file():
        return {"tag": tag, "invocations": [], "entries": [], "summary": []}
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not an accuracy report to merge into ({exc})") from None
    if not isinstance(report, dict) or not {"entries", "invocations"} <= set(report):
        raise DataError(f"{path}: not an accuracy report to merge into (no entries)")
    return report


def save_report(report: dict[str, Any], json_path: Path) -> None:
    report["summary"] = summarise(report["entries"], report.get("summary", ()))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    _write(json_path, json.dumps(report, indent=2) + "\n")
    _write(json_path.with_suffix(".md"), markdown(report))


def merge_entry(report: dict[str, Any], entry: dict[str, Any]) -> None:
    """Put ``entry`` into the report, replacing one of the same (model, dataset, seed)."""
    entries = report["entries"]
    for index, old in enumerate(entries):
        if _key(old) == _key(entry):
            entries[index] = entry
            return
    entries.append(entry)


# ---------------------------------------------------------------------- main
def _parse_ints(spec: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got {spec!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated (default: every registered model)")
    parser.add_argument("--datasets", help="comma-separated (default tiktok,movielens-small,baby)")
    parser.add_argument("--seeds", help=f"comma-separated (default {DEFAULT_SEEDS}; --quick: 2024)")
    parser.add_argument("--epochs", type=int, help="max epochs (default: the trainer's)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="for every model"
    )
    parser.add_argument(
        "--set-model",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="for one model, e.g. mentor:lr=1e-3",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME_OR_FILE",
        help="a config with a `model:` key (a shipped one, e.g. tiktok/lightgcn): its keys "
        "for that model, as --set-model",
    )
    parser.add_argument("--out", help="results folder (default benchmarks/results)")
    parser.add_argument("--tag", help="file name stem (default accuracy-<date>)")
    parser.add_argument("--runs-dir", help="run folders (default runs/accuracy/<tag>)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny synthetic data")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument("--threads", help="CPU threads: N or 'auto' (default: one per core)")
    return parser


def run(argv: Sequence[str]) -> int:
    """The suite; returns the exit status (1 when a run failed)."""
    args = _parser().parse_args(argv)
    configure_threads(args.threads)
    names = args.models.split(",") if args.models else sorted(registered_models())
    model_classes = [get_model(name.strip()) for name in names if name.strip()]
    if args.datasets:
        labels = split_datasets(args.datasets)
    else:
        labels = QUICK_DATASETS if args.quick else ["tiktok", "movielens-small", "baby"]
    seeds = _parse_ints(args.seeds or ("2024" if args.quick else DEFAULT_SEEDS), "--seeds")
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else None)
    if not model_classes or not labels or not seeds:
        raise ConfigError("--models, --datasets and --seeds must not be empty")
    shared = shared_pairs_for(model_classes, args.set)
    per_model = parse_model_overrides([*config_model_pairs(args.config), *args.set_model])
    pairs = {cls.name: [*shared[cls.name], *per_model.get(cls.name, [])] for cls in model_classes}
    configs = {  # every configuration is checked before anything trains
        (cls.name, seed): resolve_run(
            cls, shared[cls.name], per_model.get(cls.name, []), seed, epochs
        )
        for cls in model_classes
        for seed in seeds
    }

    info = machine_info(next(iter(configs.values())).train.device)
    tag = args.tag or f"accuracy-{info['date']}" + ("-quick" if args.quick else "")
    json_path = Path(args.out or REPO / "benchmarks" / "results") / f"{tag}.json"
    runs_dir = Path(args.runs_dir or REPO / "runs" / "accuracy" / tag)
    report = load_report(json_path, tag)
    command = shlex.join(["python", "-m", "benchmarks.accuracy", *argv])
    report["invocations"].append({"command": command, "machine": info})

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    failed = False
    for label in labels:
        dataset = load_dataset(DATASETS.get(label, label))
        folders = {
            key: runs_dir
            / _folder_name(label)
            / _folder_name(f"{variant(key[0], pairs[key[0]])}-seed{key[1]}")
            for key in configs
        }
        for (model, seed), config in configs.items():  # all checked before any trains
            if dataset.modalities or not needs_features(get_model(model)):
                run_folder_state(folders[model, seed], config, dataset)
        for (model, seed), config in configs.items():
            entry = run_entry(
                get_model(model),
                label,
                dataset,
                config,
                folders[model, seed],
                pairs[model],
                epochs,
                log=log,
                epoch_log=None if args.quiet else log,
            )
            failed = failed or entry["status"] == "error"
            merge_entry(report, entry)
            save_report(report, json_path)
    save_report(report, json_path)
    print(markdown(report))
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: input errors print one ``accuracy: error: ...`` line and exit 2."""
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except MMGraphError as exc:
        print(f"accuracy: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
