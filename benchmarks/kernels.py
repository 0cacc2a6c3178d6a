"""Hand-written kernels against their plain-autograd references, inside the models' steps.

    python -m benchmarks.kernels --threads 2                   # every kernel, TikTok
    python -m benchmarks.kernels --kernels sparse_matmul --models lightgcn --pairs 10
    python -m benchmarks.kernels --threads 2 --memory          # also each variant's peak memory
    python -m benchmarks.kernels --quick                       # smoke run (what the tests execute)

For every (model, kernel) of :data:`PLAN` (the models whose training step runs the
kernel) it times the model's training step with the kernel of :mod:`mmgraph.kernels` and with
its reference swapped in: every attribute of a loaded ``mmgraph`` module that is the kernel
function is set to the reference (:func:`swapped`), so every layer that calls the kernel
calls the reference instead. Runs alternate, kernel, reference, kernel, reference, ...
(``--pairs`` of each, at least 5 for a decision), each run ``--steps`` training steps on the
same batches of one model (its parameters keep training). One step of each variant before
the runs counts the calls (a model that never calls the kernel, or still calls it with
the reference swapped in, is an error) and warms up.

Reported per (model, kernel): the median step seconds of each variant, the gain
``100 · (reference − kernel) / kernel``, i.e. the time the kernel saves as a share of the
model's step as it runs (with the kernel), and in how many alternated pairs the kernel's run
was the faster. A kernel is worth keeping where the gain is at least 10 % of a model's step,
or where it bounds memory that matters.

Memory: on a GPU each run's peak allocation above what was allocated before it
(``torch.cuda.max_memory_allocated``). On the CPU, with ``--memory``, each (model, kernel,
variant) runs once more in a fresh process: the peak RSS growth of that process's first
training step (``VmHWM`` reset through ``/proc/self/clear_refs`` just before it), the difference
between the two variants being what the kernel saves.

JSON and Markdown go to ``benchmarks/results/kernels-<date>-<device>.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.speed import (
    DATASETS,
    REPO,
    MachineLoad,
    describe_machine,
    machine_info,
    sync_device,
    write_report,
)
from mmgraph.allocator import request_huge_pages
from mmgraph.threads import configure_threads


class Target(NamedTuple):
    """A model (with config overrides) and the kernels of ``mmgraph.kernels.KERNELS`` that
    its training step runs, each timed in it."""

    model: str
    overrides: dict[str, Any]
    kernels: tuple[str, ...]


#: every kernel in the models whose steps use it
PLAN: tuple[Target, ...] = (
    Target("lightgcn", {}, ("bpr_scores", "sparse_matmul")),
    Target("mentor", {}, ("l2_normalize", "bpr_scores", "layer_sum_propagation", "gaussian_stats")),
    Target("grcn", {}, ("edge_dots", "weighted_matmul", "l2_normalize")),
    Target("lgmrec", {}, ("matmul_cross_entropy", "sparse_matmul")),
    Target("diffmm", {}, ("matmul_cross_entropy", "sparse_matmul", "l2_normalize")),
)

#: ``--quick``: a small synthetic graph (with image and text features), small batches
QUICK_DATASET = "synthetic:users=120,items=80,interactions=1500"
QUICK_OVERRIDES = {"batch_size": 128}

VARIANTS = ("kernel", "reference")


# ---------------------------------------------------------------------------- swapping
@contextlib.contextmanager
def swapped(replacements: dict[Callable, Callable]) -> Iterator[int]:
    """Within the block, every attribute of a loaded ``mmgraph`` module that *is* a key of
    ``replacements`` is its value; yields how many attributes were replaced."""
    by_id = {id(old): new for old, new in replacements.items()}
    changed = []
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", None) or ""
        if name != "mmgraph" and not name.startswith("mmgraph."):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in by_id:
                setattr(module, attr, by_id[id(value)])
                changed.append((module, attr, value))
    try:
        yield len(changed)
    finally:
        for module, attr, value in reversed(changed):
            setattr(module, attr, value)


def variant_functions(kernel: str, variant: str) -> dict[Callable, Callable]:
    """The swap that makes ``variant`` run: none for the kernel, kernel -> reference else."""
    from mmgraph.kernels import KERNELS

    return {} if variant == "kernel" else dict(KERNELS[kernel])


def count_calls(kernel: str, variant: str, call: Callable[[], Any]) -> dict[str, int]:
    """Run ``call()`` with ``variant`` swapped in and count the calls of the kernel's entry
    points and of their references, however they are reached (by their code objects, under
    a profile hook: a binding the swap missed still counts as a kernel call)."""
    from mmgraph.kernels import KERNELS

    codes = {}
    for function, reference in KERNELS[kernel]:
        codes[function.__code__] = "kernel"
        codes[reference.__code__] = "reference"
    counts = {"kernel": 0, "reference": 0}

    def profile(frame, event, _arg) -> None:
        if event == "call" and frame.f_code in codes:
            counts[codes[frame.f_code]] += 1

    with swapped(variant_functions(kernel, variant)):
        sys.setprofile(profile)
        try:
            call()
        finally:
            sys.setprofile(None)
    return counts


# ---------------------------------------------------------------------------- one model
class ModelStep:
    """A model built on a dataset, with its optimisers and a fixed list of batches."""

    def __init__(
        self, model_name: str, dataset, device: str, overrides: dict[str, Any], steps: int
    ) -> None:
        import torch

        from mmgraph.models import get_model
        from mmgraph.train import resolve_config, seed_everything

        model_cls = get_model(model_name)
        run = resolve_config(model_cls, [("benchmark", {**overrides, "device": device})])
        seed_everything(0)
        self.device = device
        self.model = model_cls.from_dataset(dataset, **run.hparams).to(device)
        self.optimizers = self.model.configure_optimizers(run.train.lr, run.train.weight_decay)
        sampler = self.model.make_sampler(
            dataset,
            run.train.batch_size,
            torch.Generator().manual_seed(0),
            torch.device(device),
            negative_pool=run.train.negative_pool,
        )
        self.batch_size = run.train.batch_size
        self.model.train()
        self.model.on_epoch_start(0)  # per-epoch state (DiffMM's generated graphs, ...)
        self.batches = []
        for batch in sampler:
            self.batches.append(batch)
            if len(self.batches) == steps:
                break

    def step(self, index: int = 0) -> None:
        self.model.training_step(self.batches[index % len(self.batches)], self.optimizers)

    def timed_run(self) -> tuple[list[float], float | None]:
        """Seconds of each step over the batches, and the GPU's peak MiB above the start."""
        import torch

        cuda = self.device.startswith("cuda")
        if cuda:
            sync_device(self.device)
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        seconds = []
        for index in range(len(self.batches)):
            sync_device(self.device)
            started = time.perf_counter()
            self.step(index)
            sync_device(self.device)
            seconds.append(time.perf_counter() - started)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
        return seconds, peak


def measure_pair(step: ModelStep, kernel: str, pairs: int) -> dict[str, Any]:
    """Alternated runs of one model's step with ``kernel`` and with its reference."""
    result: dict[str, Any] = {"kernel": kernel}
    calls = {v: count_calls(kernel, v, step.step) for v in VARIANTS}  # also the warm-up
    result["calls_per_step"] = calls["kernel"]["kernel"]
    if not calls["kernel"]["kernel"]:
        result["error"] = "the model's step never calls this kernel"
        return result
    if calls["reference"]["kernel"] or not calls["reference"]["reference"]:
        result["error"] = "swapping in the reference left calls of the kernel"
        return result
    runs: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    peaks: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(pairs):
        for variant in VARIANTS:  # kernel, reference, kernel, reference, ...
            with swapped(variant_functions(kernel, variant)):
                seconds, peak = step.timed_run()
            runs[variant].append(seconds)
            if peak is not None:
                peaks[variant].append(peak)
    medians = {v: statistics.median([s for run in runs[v] for s in run]) for v in VARIANTS}
    run_medians = {v: [statistics.median(run) for run in runs[v]] for v in VARIANTS}
    pairs_ = zip(run_medians["kernel"], run_medians["reference"], strict=True)
    faster = sum(kernel_run < reference_run for kernel_run, reference_run in pairs_)
    result.update(
        {
            "pairs": pairs,
            "steps_per_run": len(step.batches),
            "kernel_step_seconds": medians["kernel"],
            "reference_step_seconds": medians["reference"],
            "gain_pct_of_step": 100
            * (medians["reference"] - medians["kernel"])
            / medians["kernel"],
            "kernel_faster_pairs": faster,
            "run_medians": run_medians,
        }
    )
    if peaks["kernel"]:
        result["kernel_peak_mb"] = max(peaks["kernel"])
        result["reference_peak_mb"] = max(peaks["reference"])
    return result


# ---------------------------------------------------------------------------- CPU memory
def rss_mb(field: str = "VmRSS") -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def first_step_memory(
    model_name: str, kernel: str, variant: str, dataset_ref: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """In this (fresh) process: peak RSS growth of the model's first training step."""
    from mmgraph.allocator import retain_freed_memory
    from mmgraph.data import load_dataset

    retain_freed_memory()  # as mmgraph train does
    step = ModelStep(model_name, load_dataset(dataset_ref), "cpu", overrides, steps=1)
    with swapped(variant_functions(kernel, variant)):
        before = rss_mb()
        try:  # Linux >= 4.0: VmHWM restarts from the current RSS
            Path("/proc/self/clear_refs").write_text("5")
            reset = True
        except OSError:
            reset = False
        step.step()
        peak = rss_mb("VmHWM")
    return {
        "peak_rss_mb": peak,
        "step_rss_growth_mb": None if not reset or peak is None else peak - before,
    }


def cpu_memory(
    target: Target, kernel: str, dataset_ref: str, args: argparse.Namespace
) -> dict[str, Any]:
    """:func:`first_step_memory` of each variant, each in its own process."""
    out = {}
    for variant in VARIANTS:
        command = [sys.executable, "-m", "benchmarks.kernels", "--memory-child"]
        command += [target.model, kernel, variant, "--dataset", dataset_ref]
        command += [f"--set={pair}" for pair in args.set]
        command += [f"--set={key}={value}" for key, value in target.overrides.items()]
        command += ["--quick"] if args.quick else []
        command += [f"--threads={os.environ['OMP_NUM_THREADS']}"] if args.threads else []
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
            out[f"{variant}_memory_error"] = tail
            continue
        child = json.loads(done.stdout.strip().splitlines()[-1])
        out[f"{variant}_step_rss_growth_mb"] = child["step_rss_growth_mb"]
        out[f"{variant}_peak_rss_mb"] = child["peak_rss_mb"]
    return out


# ---------------------------------------------------------------------------- report
def markdown(info: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        f"Measured {describe_machine(info)}.",
        "",
        "| model | kernel | calls/step | kernel ms/step | reference ms/step | gain % of step | "
        "kernel faster | peak MB kernel / reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {_model_cell(r)} | {r['kernel']} | error: {r['error']} ||||||")
            continue
        memory = _memory_cell(r)
        lines.append(
            f"| {_model_cell(r)} | {r['kernel']} | {r['calls_per_step']} | "
            f"{1000 * r['kernel_step_seconds']:.1f} | {1000 * r['reference_step_seconds']:.1f} | "
            f"{r['gain_pct_of_step']:+.1f} | {r['kernel_faster_pairs']}/{r['pairs']} | "
            f"{memory} |"
        )
    return "\n".join(lines) + "\n"


def _model_cell(result: dict[str, Any]) -> str:
    settings = ", ".join(f"{key}={value}" for key, value in result.get("settings", {}).items())
    return result["model"] + (f" ({settings})" if settings else "")


def _memory_cell(result: dict[str, Any]) -> str:
    for kernel_key, reference_key in (
        ("kernel_peak_mb", "reference_peak_mb"),
        ("kernel_step_rss_growth_mb", "reference_step_rss_growth_mb"),
    ):
        kernel, reference = result.get(kernel_key), result.get(reference_key)
        if kernel is not None and reference is not None:
            return f"{kernel:.0f} / {reference:.0f}"
    return ""


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    request_huge_pages()  # as the mmgraph command does; before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default=None, help="comma-separated (default: all)")
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--pairs", type=int, default=5, help="alternated runs of each variant")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="CPU: peak memory per variant")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, 2 pairs")
    parser.add_argument("--out", default=None, help="JSON path (Markdown written beside it)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument(
        "--threads", help="CPU threads: N or 'auto' (default: torch's, one per core)"
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_threads(args.threads)  # before torch starts its thread pool

    from mmgraph.train.config import parse_overrides

    overrides = {**(QUICK_OVERRIDES if args.quick else {}), **parse_overrides(args.set)}
    dataset_ref = QUICK_DATASET if args.quick else DATASETS.get(args.dataset, args.dataset)
    if args.memory_child:  # child process: one first-step memory measurement on stdout
        model_name, kernel, variant = args.memory_child
        print(json.dumps(first_step_memory(model_name, kernel, variant, dataset_ref, overrides)))
        return 0

    from mmgraph.allocator import retain_freed_memory
    from mmgraph.data import load_dataset
    from mmgraph.kernels import KERNELS

    pairs, steps = (2, 1) if args.quick else (args.pairs, args.steps)
    kernels = args.kernels.split(",") if args.kernels else list(KERNELS)
    planned = {target.model for target in PLAN}
    models = args.models.split(",") if args.models else sorted(planned)
    unknown = [k for k in kernels if k not in KERNELS] + [m for m in models if m not in planned]
    if unknown:
        parser.error(f"unknown {unknown}: kernels {list(KERNELS)}, models {sorted(planned)}")
    retain_freed_memory()  # as mmgraph train does (fit_run)
    dataset = load_dataset(dataset_ref)
    load = MachineLoad(args.device)
    results = []
    for target in PLAN:
        chosen = [k for k in target.kernels if k in kernels]
        if target.model not in models or not chosen:
            continue
        settings = {**overrides, **target.overrides}
        step = ModelStep(target.model, dataset, args.device, settings, steps)
        for kernel in chosen:
            result = {
                "model": target.model,
                "settings": target.overrides,
                **measure_pair(step, kernel, pairs),
            }
            if args.memory and args.device == "cpu" and "error" not in result:
                result.update(cpu_memory(target, kernel, dataset_ref, args))
            result["batch_size"] = step.batch_size
            results.append(result)
            print(json.dumps(result), file=sys.stderr)
    info = machine_info(args.device)
    info["load"] = load.finish()
    report = {
        "machine": info,
        "dataset": dataset_ref,
        "settings": {"pairs": pairs, "steps": steps, "overrides": overrides},
        "results": results,
    }
    stamp = f"{info['date']}-{args.device.replace(':', '')}" + ("-quick" if args.quick else "")
    out = Path(args.out or REPO / "benchmarks" / "results" / f"kernels-{stamp}.json")
    table = markdown(info, results)
    write_report(out, report, table)
    print(table)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
