"""Speed and memory suite: seconds per epoch, per full evaluation, peak memory, throughput.

Each (model, dataset) pair runs in its own subprocess so that its peak memory is its own.
Results go to a JSON file and a Markdown table with the machine's description::

    python -m benchmarks.speed                         # all models, tiktok + movielens + baby
    python -m benchmarks.speed --models lightgcn --datasets tiktok --epochs 5
    python -m benchmarks.speed --device cuda            # on a GPU machine
    python -m benchmarks.speed --quick                  # smoke run (what the tests execute)
    python -m benchmarks.speed --models mentor --datasets tiktok --set reference=true
    python -m benchmarks.speed --models lightgcn --datasets synthetic-1m --set batch_size=1000000

``--datasets`` takes comma-separated names of :data:`DATASETS`, folders or ``synthetic:...``
specs (see :func:`split_datasets`). ``--set`` overrides config keys (model hyper-parameters
or ``batch_size``) for every pair.

The machine's state goes with the figures: a dense float32 matmul's GFLOP/s and a 256 MiB
copy's GB/s before and after the runs, and the share of CPU time the hypervisor stole
meanwhile (``machine.load`` in the JSON). On a shared virtual machine all three drift within
the hour, and a slower epoch at a slower probe is the machine, not the code.

``--profile N`` adds torch.profiler's top operators (self time per training step, over N
steps after the timed epochs) to each result and to the Markdown.

Timings are medians over ``--epochs`` measured epochs after one warm-up epoch (none with
``--no-warmup``, for runs whose epoch takes minutes); with
``--max-batches N`` (and under ``--quick``) each epoch stops after ``N`` batches and its
time is extrapolated to a full epoch (``batches_timed`` / ``batches_per_epoch`` in the JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgraph.allocator import request_huge_pages
from mmgraph.provenance import git_commit
from mmgraph.threads import configure_threads

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MMGRAPH_SHARED_DATA", REPO.parent / "shared" / "data"))
DATASETS = {
    "tiktok": "tiktok",
    "movielens-small": str(SHARED / "movielens-small"),
    "baby": str(SHARED / "baby"),
    # Synthetic graphs of mmgraph.data.synthetic (image 64-d + text 32-d, planted clusters).
    "synthetic-100k": "synthetic:users=100000,items=20000,interactions=2000000",
    "synthetic-1m": "synthetic:users=1000000,items=100000,interactions=20000000",
}


def sync_device(device: str) -> None:
    """Wait for queued GPU work so that a timer stops when it is done (no-op on CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    model_name: str,
    dataset_ref: str,
    device: str,
    epochs: int,
    max_batches: int | None,
    overrides: dict[str, Any] | None = None,
    evaluate: bool = True,
    warmup: bool = True,
    profile_steps: int = 0,
) -> dict[str, Any]:
    """Time one model on one dataset in this process (``overrides``: config keys)."""
    import torch

    from mmgraph.allocator import retain_freed_memory
    from mmgraph.data import load_dataset
    from mmgraph.eval import Evaluator
    from mmgraph.models import get_model
    from mmgraph.train import resolve_config, seed_everything

    retain_freed_memory()  # as mmgraph train does (fit_run)
    started = time.perf_counter()
    dataset = load_dataset(dataset_ref)
    model_cls = get_model(model_name)
    run = resolve_config(model_cls, [("benchmark", {**(overrides or {}), "device": device})])
    seed_everything(0)
    model = model_cls.from_dataset(dataset, **run.hparams).to(device)
    setup_seconds = time.perf_counter() - started  # loading, graphs (kNN), parameters
    optimizers = model.configure_optimizers(run.train.lr, run.train.weight_decay)
    generator = torch.Generator().manual_seed(0)
    sampler = model.make_sampler(
        dataset,
        run.train.batch_size,
        generator,
        torch.device(device),
        negative_pool=run.train.negative_pool,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def one_epoch(epoch: int) -> tuple[float, float, int]:
        """``(hook seconds, batch seconds, batches)``; the hook is the model's per-epoch
        work (graph rebuilds, DiffMM's denoiser training), timed apart so that a batch
        limit scales only the batches."""
        model.train()
        sync_device(device)
        started = time.perf_counter()
        model.on_epoch_start(epoch)
        sync_device(device)
        hook_seconds = time.perf_counter() - started
        started = time.perf_counter()
        batches = 0
        for batch in sampler:
            model.training_step(batch, optimizers)
            batches += 1
            if max_batches is not None and batches >= max_batches:
                break
        sync_device(device)
        return hook_seconds, time.perf_counter() - started, batches

    if warmup:  # an untimed epoch (or max_batches batches) first
        one_epoch(0)
    hook_times, batch_times, batches = [], [], 0
    for epoch in range(1, epochs + 1):
        hook_seconds, seconds, batches = one_epoch(epoch)
        hook_times.append(hook_seconds)
        batch_times.append(seconds)
    evaluator = Evaluator(dataset, ks=run.train.ks, batch_size=run.train.eval_batch_size)
    eval_times = []
    for _ in range(max(2, epochs) if evaluate else 0):
        sync_device(device)
        started = time.perf_counter()
        evaluator.evaluate(model, "valid")
        sync_device(device)
        eval_times.append(time.perf_counter() - started)
    # With a batch limit the batches' time is extrapolated from the timed batches.
    full_batches = len(sampler)
    epoch_times = [
        h + t * full_batches / batches for h, t in zip(hook_times, batch_times, strict=True)
    ]
    epoch_seconds = statistics.median(epoch_times)
    interactions = dataset.num_interactions("train")
    result = {
        "model": model_name,
        "dataset": dataset.name
        if dataset.name != "synthetic"
        else f"synthetic {dataset.num_users:,} x {dataset.num_items:,}",
        "users": dataset.num_users,
        "items": dataset.num_items,
        "train_interactions": dataset.num_interactions("train"),
        "settings": overrides or {},
        "setup_seconds": setup_seconds,
        "batch_size": run.train.batch_size,
        "warmup": warmup,
        "batches_timed": batches,
        "batches_per_epoch": full_batches,
        "epoch_seconds": epoch_seconds,
        "epoch_seconds_each": epoch_times,
        "epoch_hook_seconds": statistics.median(hook_times),
        "eval_valid_seconds": statistics.median(eval_times) if eval_times else None,
        "eval_users": int(dataset.eval_users("valid").numel()),
        "interactions_per_second": interactions / epoch_seconds,
        "peak_cpu_rss_mb": peak_rss_mb(),
    }
    if device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if profile_steps:
        result["profile_steps"] = profile_steps
        result["profile"] = profile_training(model, sampler, optimizers, profile_steps, device)
    return result


def profile_training(model, sampler, optimizers, steps: int, device: str, top: int = 15) -> list:
    """torch.profiler over ``steps`` training steps: the ``top`` operators by self CPU time,
    as ``{"op", "self_cpu_ms_per_step", "calls_per_step"}`` (plus device time on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    model.train()
    with profile(activities=activities) as prof:
        for batch in itertools.islice(iter(sampler), steps):
            model.training_step(batch, optimizers)
        sync_device(device)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = []
    for event in events[:top]:
        row = {
            "op": event.key,
            "self_cpu_ms_per_step": event.self_cpu_time_total / 1000 / steps,
            "calls_per_step": event.count / steps,
        }
        if device.startswith("cuda"):
            row["self_device_ms_per_step"] = event.self_device_time_total / 1000 / steps
        rows.append(row)
    return rows


def machine_info(device: str) -> dict[str, Any]:
    import torch
    import torch_geometric
    from torch_geometric.typing import WITH_TORCH_SCATTER, WITH_TORCH_SPARSE

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": dt.date.today().isoformat(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "torch_sparse": WITH_TORCH_SPARSE,
        "torch_scatter": WITH_TORCH_SCATTER,
        "device": device,
        "commit": git_commit(REPO),
        # huge pages for torch's CPU buffers (mmgraph.allocator.request_huge_pages)
        "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        "transparent_hugepage": _kernel_thp_mode(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def median_seconds(
    call: Callable[[], Any], device: str, repeats: int, prepare: Callable[[], Any] | None = None
) -> float:
    """Median wall seconds of ``call()`` over ``repeats`` runs after one warm-up run, waiting
    for queued GPU work on both sides; ``prepare()`` runs before each, outside the timer."""
    seconds = []
    for i in range(repeats + 1):
        if prepare is not None:
            prepare()
        sync_device(device)
        started = time.perf_counter()
        call()
        sync_device(device)
        if i:  # the first run is the warm-up
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def matmul_gflops(device: str, size: int = 2048, repeats: int = 5) -> float:
    """Throughput of a ``[size, size] @ [size, size]`` float32 product on ``device`` (median of
    ``repeats`` after one warm-up): a yardstick of how fast the machine runs right now."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    return round(2 * size**3 / median_seconds(lambda: a @ b, device, repeats) / 1e9, 1)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: Linux's ``VmHWM``, the high-water mark of
    its own address space, else ``getrusage``'s ``ru_maxrss``. (On Linux ``ru_maxrss`` also
    covers the address space before ``exec``, i.e. a fork of the parent holding the probes'
    buffers: it read 836 MB for every small model once the copy probe had run.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_gbps(device: str, size_mb: int = 256, repeats: int = 5) -> float:
    """Memory throughput of copying one ``size_mb`` MiB float32 tensor into another (bytes
    read + written per second, median of ``repeats`` after one warm-up): the yardstick for
    the memory-bound part of a step (sparse products, element-wise passes), which a
    neighbour's memory traffic slows down while the matmul probe does not see it."""
    import torch

    count = size_mb * 2**20 // 4
    source = torch.randn(count, device=device)
    target = torch.empty_like(source)
    seconds = median_seconds(lambda: target.copy_(source), device, repeats)
    return round(2 * 4 * count / seconds / 1e9, 1)


class MachineLoad:
    """The machine's state across a measurement, for ``machine.load``: the matmul and copy
    probes when created and at :meth:`finish`, and the share of CPU time stolen between."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.matmul_before, self.copy_before = matmul_gflops(device), copy_gbps(device)
        self.times_before = cpu_times()

    def finish(self) -> dict[str, Any]:
        """Probe again; the ``machine.load`` record."""
        return {
            "matmul_gflops_before": self.matmul_before,
            "matmul_gflops_after": matmul_gflops(self.device),
            "copy_gbps_before": self.copy_before,
            "copy_gbps_after": copy_gbps(self.device),
            "cpu_steal_fraction": steal_fraction(self.times_before, cpu_times()),
        }


def cpu_times() -> list[int] | None:
    """The machine's cumulative CPU time counters (``/proc/stat``'s ``cpu`` line), or ``None``."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(value) for value in fields[1:]] if fields[:1] == ["cpu"] else None


def steal_fraction(start: list[int] | None, end: list[int] | None) -> float | None:
    """Share of CPU time between two :func:`cpu_times` readings that the hypervisor stole
    (the eighth counter, ``steal``); ``None`` where the counters are missing."""
    if start is None or end is None or len(start) < 8 or len(end) < 8:
        return None
    # guest time (counters 9-10) is already counted in user time
    total = sum(end[:8]) - sum(start[:8])
    return round((end[7] - start[7]) / total, 4) if total > 0 else None


def _kernel_thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode (``always`` / ``madvise`` / ``never``)."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    chosen = [word for word in text.split() if word.startswith("[")]
    return chosen[0].strip("[]") if chosen else None


def write_report(out: Path, report: dict[str, Any], table: str) -> None:
    """``report`` as JSON at ``out`` and ``table`` as Markdown beside it (``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)


def describe_machine(info: dict[str, Any]) -> str:
    """``machine_info(...)`` as one sentence: date, CPU, cores, GPU, library versions, commit,
    and the run's load where recorded."""
    load = info.get("load")
    return (
        f"{info['date']} on {info['cpu']} ({info['cpu_count']} cores"
        + (f", {info['gpu']}" if "gpu" in info else "")
        + f"), torch {info['torch']}, PyG {info['torch_geometric']}, "
        f"torch-sparse {info['torch_sparse']}, torch-scatter {info['torch_scatter']}, "
        f"device {info['device']}"
        + (f", commit {info['commit']}" if info.get("commit") else "")
        + (f"; {describe_load(load)}" if load else "")
    )


def describe_load(load: dict[str, Any]) -> str:
    """The ``machine.load`` record of a run as a phrase (matmul speed, stolen CPU time)."""
    text = (
        f"2048² float32 matmul {load['matmul_gflops_before']:g} GFLOP/s before the runs, "
        f"{load['matmul_gflops_after']:g} after"
    )
    if "copy_gbps_before" in load:  # older result files lack it
        text += (
            f", 256 MiB copy {load['copy_gbps_before']:g} GB/s before, "
            f"{load['copy_gbps_after']:g} after"
        )
    steal = load.get("cpu_steal_fraction")
    return text + (f", {steal:.1%} of CPU time stolen meanwhile" if steal is not None else "")


def markdown(info: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        f"Measured {describe_machine(info)}.",
        "",
        "| model | dataset | s/epoch | of which per-epoch hook | s/eval (valid users) |"
        " interactions/s | peak RSS MB |" + (" peak GPU MB |" if "gpu" in info else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if "gpu" in info else ""),
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['dataset']} | error: {r['error']} | | | | |")
            continue
        settings = ", ".join(f"{k}={v}" for k, v in r.get("settings", {}).items())
        name = f"{r['model']} ({settings})" if settings else r["model"]
        row = (
            f"| {name} | {r['dataset']} | {r['epoch_seconds']:.2f}{_extrapolated(r)} | "
            f"{_seconds(r.get('epoch_hook_seconds'))} | {_seconds(r['eval_valid_seconds'])} | {r['interactions_per_second']:,.0f} | "
            f"{r['peak_cpu_rss_mb']:,.0f} |"
        )
        if "gpu" in info:
            row += f" {r.get('peak_gpu_mb', 0):,.0f} |"
        lines.append(row)
    for r in results:
        if r.get("profile"):
            lines += [
                "",
                f"Top operators of {r['model']} on {r['dataset']} (torch.profiler, "
                f"{r['profile_steps']} training steps):",
                "",
                "| operator | self CPU ms/step | calls/step |",
                "|---|---|---|",
            ]
            lines += [
                f"| `{p['op']}` | {p['self_cpu_ms_per_step']:.1f} | {p['calls_per_step']:g} |"
                for p in r["profile"]
            ]
    return "\n".join(lines) + "\n"


def _extrapolated(result: dict[str, Any]) -> str:
    timed, full = result.get("batches_timed"), result.get("batches_per_epoch")
    return f" (from {timed}/{full} batches)" if timed and full and timed < full else ""


def _seconds(value: float | None) -> str:
    return "not timed" if value is None else f"{value:.2f}"


def split_datasets(spec: str) -> list[str]:
    """``"tiktok,synthetic:users=10,items=5"`` -> ``["tiktok", "synthetic:users=10,items=5"]``.

    A comma starts a new dataset unless what follows is a ``key=value`` of a synthetic spec
    (a part starting with ``synthetic`` is the next spec).
    """
    datasets: list[str] = []
    for part in spec.split(","):
        continues = "=" in part and not part.startswith("synthetic")
        if datasets and datasets[-1].startswith("synthetic:") and continues:
            datasets[-1] += "," + part
        else:
            datasets.append(part)
    return datasets


def main(argv: list[str] | None = None) -> int:
    request_huge_pages()  # as the mmgraph command does; before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--datasets", default="tiktok,movielens-small,baby")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per pair")
    parser.add_argument("--quick", action="store_true", help="2 batches, 1 epoch: smoke run")
    parser.add_argument("--out", default=None, help="JSON path (Markdown written beside it)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument("--no-eval", action="store_true", help="time training only")
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="time the first epoch (for runs where one epoch takes minutes and warm-up is noise)",
    )
    parser.add_argument(
        "--max-batches", type=int, help="time this many batches per epoch and extrapolate"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile N training steps"
    )
    parser.add_argument(
        "--threads", help="CPU threads per measured process: N or 'auto' (default: one per core)"
    )
    parser.add_argument("--single", nargs=2, metavar=("MODEL", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_threads(args.threads)  # before this process or its children import torch
    epochs, max_batches = (1, 2) if args.quick else (args.epochs, args.max_batches)

    if args.single:  # child process: one measurement as JSON on stdout
        from mmgraph.train.config import parse_overrides

        overrides = parse_overrides(args.set)
        result = measure(
            args.single[0],
            args.single[1],
            args.device,
            epochs,
            max_batches,
            overrides,
            evaluate=not args.no_eval,
            warmup=not args.no_warmup,
            profile_steps=args.profile,
        )
        print(json.dumps(result))
        return 0

    from mmgraph.models import registered_models

    models = args.models.split(",") if args.models else sorted(registered_models())
    datasets = split_datasets(args.datasets)
    load = MachineLoad(args.device)
    results = []
    for dataset in datasets:
        ref = DATASETS.get(dataset, dataset)
        for model in models:
            command = [sys.executable, "-m", "benchmarks.speed", "--single", model, ref]
            command += ["--device", args.device, "--epochs", str(args.epochs)]
            command += ["--quick"] if args.quick else []
            command += [f"--set={pair}" for pair in args.set]
            command += ["--no-eval"] if args.no_eval else []
            command += ["--no-warmup"] if args.no_warmup else []
            command += [f"--max-batches={args.max_batches}"] if args.max_batches else []
            command += [f"--profile={args.profile}"] if args.profile else []
            command += [f"--threads={os.environ['OMP_NUM_THREADS']}"] if args.threads else []
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
                results.append({"model": model, "dataset": dataset, "error": tail})
            else:
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
    info = machine_info(args.device)
    info["load"] = load.finish()
    stamp = f"{info['date']}-{args.device.replace(':', '')}" + ("-quick" if args.quick else "")
    out = Path(args.out or REPO / "benchmarks" / "results" / f"speed-{stamp}.json")
    table = markdown(info, results)
    write_report(out, {"machine": info, "results": results}, table)
    print(table)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
