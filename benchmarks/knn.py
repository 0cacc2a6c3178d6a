"""Memory and time of the modality kNN graph build (:func:`mmgraph.data.knn.knn_graph`).

Builds the cosine top-k graph of ``--items`` random ``--dim``-d features in a fresh process
and reports its peak memory (CPU RSS of the whole process, features included;
``torch.cuda.max_memory_allocated`` on a GPU) and time::

    python -m benchmarks.knn --items 1000000 --dim 384                   # the full build
    python -m benchmarks.knn --items 1000000 --dim 384 --max-rows 20000  # part, extrapolated
    python -m benchmarks.knn --quick                                     # smoke run (tests)

With ``--max-rows R`` only the neighbours of the first ``R`` items are searched (each against
all items, with the same similarity blocks as the full build), then the edge list of all
items is assembled as in the full build; the time of the search is extrapolated linearly to
all rows (every row costs the same). A partial run shows only the memory of its first rows:
whether memory stays flat over a whole build is measured by a full one, which reports the
process's RSS (``VmRSS``) and peak RSS (``VmHWM``) once ``--report-fractions`` of the rows
are searched (default after 10 %, 50 % and 100 %).

The measuring process uses the allocator settings of ``mmgraph train``, which builds the
graph in the training process (:mod:`mmgraph.allocator`); ``--no-retain-freed-memory`` and
``--no-huge-pages`` turn one of them off, and ``--chunk-size`` / ``--block-entries`` change
the similarity blocks, to vary one factor at a time. ``--label`` names the run and
``--append`` adds it to an existing report (a before / after table). Writes JSON and
Markdown, with the machine's state (the speed suite's probes before and after,
``machine.load``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.speed import (
    REPO,
    MachineLoad,
    describe_load,
    describe_machine,
    machine_info,
    peak_rss_mb,
    write_report,
)
from mmgraph.allocator import request_huge_pages

DEFAULT_FRACTIONS = (0.1, 0.5, 1.0)


def memory_mb() -> dict[str, float]:
    """This process's resident (``VmRSS``) and peak resident (``VmHWM``) memory in MiB."""
    fields = {"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}
    found: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in fields:
                found[fields[name]] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found or {"peak_rss_mb": peak_rss_mb()}


def parse_fractions(text: str) -> list[float]:
    """``"0.1,0.5,1.0"`` -> ``[0.1, 0.5, 1.0]``, each in ``(0, 1]``, sorted."""
    fractions = sorted({float(part) for part in text.split(",") if part.strip()})
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise argparse.ArgumentTypeError(f"fractions must lie in (0, 1], got {text!r}")
    return fractions


class ProgressMemory:
    """The :func:`~mmgraph.data.knn.knn_neighbors` ``progress`` callback of a benchmark: RSS
    and time at the first block that completes each fraction of the searched rows."""

    def __init__(self, rows: int, fractions: tuple[float, ...] | list[float]) -> None:
        self.rows = rows
        self.pending = [(f, math.ceil(f * rows)) for f in sorted(fractions)]
        self.records: list[dict[str, Any]] = []
        self.begin = time.perf_counter()

    def __call__(self, done: int) -> None:
        while self.pending and done >= self.pending[0][1]:
            fraction, _ = self.pending.pop(0)
            seconds = time.perf_counter() - self.begin
            self.records.append({"fraction": fraction, "rows": done, "seconds": seconds})
            self.records[-1].update(memory_mb())


def measure(
    items: int,
    dim: int,
    k: int,
    max_rows: int | None,
    device: str,
    seed: int = 0,
    *,
    fractions: tuple[float, ...] | list[float] = DEFAULT_FRACTIONS,
    retain_freed: bool = True,
    chunk_size: int | None = None,
    block_entries: int | None = None,
) -> dict[str, Any]:
    """Build (part of) the graph and return the measurements."""
    import torch

    from mmgraph.allocator import retain_freed_memory
    from mmgraph.data.knn import (
        SIMILARITY_BLOCK_ENTRIES,
        knn_neighbors,
        neighbor_edges,
        similarity_block_shape,
    )

    if retain_freed:
        retain_freed_memory()  # as mmgraph train does (fit_run)
    block_entries = block_entries or SIMILARITY_BLOCK_ENTRIES
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(items, dim, generator=generator).to(device)
    rss_inputs = peak_rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    rows = items if max_rows is None else min(max_rows, items)
    block_rows, tile_items = similarity_block_shape(items, chunk_size, block_entries)
    progress = ProgressMemory(rows, fractions)
    begin = time.perf_counter()
    searched = knn_neighbors(
        features, k, stop=rows, chunk_size=chunk_size, block_entries=block_entries,
        progress=progress,
    )  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    search_seconds = time.perf_counter() - begin
    neighbours = torch.zeros(items, k, dtype=torch.long, device=device)
    neighbours[:rows] = searched
    del searched
    begin = time.perf_counter()
    _, weight = neighbor_edges(neighbours)
    assemble_seconds = time.perf_counter() - begin
    result = {
        "items": items,
        "dim": dim,
        "k": k,
        "rows_searched": rows,
        "block_rows": block_rows,  # knn_neighbors' block: queries x a tile of items
        "tile_items": tile_items,
        "block_entries": block_entries,
        "allocator": {
            "retain_freed_memory": retain_freed,
            "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        },
        "search_seconds": search_seconds,
        "build_seconds_estimated": search_seconds * items / rows + assemble_seconds,
        "edges": int(weight.numel()),
        "features_mb": features.numel() * 4 / 2**20,
        "rss_after_inputs_mb": rss_inputs,
        "progress": progress.records,  # RSS once each fraction of the rows is searched
        "peak_cpu_rss_mb": peak_rss_mb(),
    }
    if device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def allocator_name(result: dict[str, Any]) -> str:
    """The allocator settings of a result, in words (older results: ``mmgraph train``'s)."""
    settings = result.get("allocator", {"retain_freed_memory": True})
    retain = settings["retain_freed_memory"]
    huge = settings.get("thp_mem_alloc_enable", "1") == "1"
    if retain and huge:
        return "train"
    if retain:
        return "train, no huge pages"
    return "no retain" if huge else "glibc defaults"


def progress_cells(result: dict[str, Any]) -> tuple[str, str]:
    """``("peak at 10 / 50 / 100 %", "RSS then")`` cells of a result's ``progress``."""
    records = result.get("progress") or []
    peaks = " / ".join(f"{r['peak_rss_mb']:,.0f}" for r in records)
    current = " / ".join(f"{r['rss_mb']:,.0f}" for r in records if "rss_mb" in r)
    return peaks or "–", current or "–"


def markdown(info: dict[str, Any], results: list[dict[str, Any]]) -> str:
    fractions = " / ".join(f"{100 * p['fraction']:g}" for p in (results[-1].get("progress") or []))
    lines = [
        f"Measured {describe_machine(dict(info, load=None))}; each run's load is listed below.",
        "",
        "| items × dim | k | block (queries × items) | rows searched | s (searched rows) "
        "| s full build (est.) | peak RSS MB (features MB) "
        f"| peak RSS MB after {fractions or '–'} % of rows | RSS MB then | allocator | run |"
        + (" peak GPU MB |" if "gpu" in info else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if "gpu" in info else ""),
    ]
    for index, r in enumerate(results, 1):
        peaks, current = progress_cells(r)
        row = (
            f"| {r['items']:,} × {r['dim']} | {r['k']} | {r['block_rows']:,} × "
            f"{r['tile_items']:,} | {r['rows_searched']:,} "
            f"| {r['search_seconds']:.1f} | {r['build_seconds_estimated']:,.0f} "
            f"| {r['peak_cpu_rss_mb']:,.0f} ({r['features_mb']:,.0f}) "
            f"| {peaks} | {current} | {allocator_name(r)} | {r.get('label') or index} |"
        )
        if "gpu" in info:
            row += f" {r.get('peak_gpu_mb', 0):,.0f} |"
        lines.append(row)
    lines.append("")
    for index, r in enumerate(results, 1):
        load = f"; {describe_load(r['load'])}" if r.get("load") else ""
        lines.append(
            f"- {r.get('label') or index}: `{r['command']}` (commit {r.get('commit')}{load})"
        )
    return "\n".join(lines) + "\n"


def child_command(args: argparse.Namespace) -> list[str]:
    """The measuring process's command line."""
    child = [sys.executable, "-m", "benchmarks.knn", "--single", "--items", str(args.items)]
    child += ["--dim", str(args.dim), "--k", str(args.k), "--device", args.device]
    child += ["--report-fractions", ",".join(map(str, args.report_fractions))]
    for flag, value in (
        ("--max-rows", args.max_rows),
        ("--chunk-size", args.chunk_size),
        ("--block-entries", args.block_entries),
    ):
        if value is not None:
            child += [flag, str(value)]
    if args.no_retain_freed_memory:
        child.append("--no-retain-freed-memory")
    return child


def main(argv: list[str] | None = None) -> int:
    request_huge_pages()  # as the mmgraph command does; before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-rows", type=int, help="search only the first N rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="2,000 × 32, smoke run")
    parser.add_argument(
        "--report-fractions",
        type=parse_fractions,
        default=list(DEFAULT_FRACTIONS),
        help="record RSS once these fractions of the rows are searched (default 0.1,0.5,1.0)",
    )
    parser.add_argument("--chunk-size", type=int, help="query rows per similarity block")
    parser.add_argument("--block-entries", type=int, help="similarity entries per block")
    parser.add_argument(
        "--no-retain-freed-memory",
        action="store_true",
        help="keep glibc's trim / mmap thresholds (mmgraph.allocator.retain_freed_memory off)",
    )
    parser.add_argument(
        "--no-huge-pages",
        action="store_true",
        help="THP_MEM_ALLOC_ENABLE=0 (mmgraph.allocator.request_huge_pages off)",
    )
    parser.add_argument("--label", help="name of this run in the report")
    parser.add_argument("--append", action="store_true", help="add to the report at --out")
    parser.add_argument("--out", help="JSON path (Markdown beside it)")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.dim, args.max_rows = 2000, 32, 500
    if args.single:  # the measuring child process
        result = measure(
            args.items, args.dim, args.k, args.max_rows, args.device,
            fractions=args.report_fractions, retain_freed=not args.no_retain_freed_memory,
            chunk_size=args.chunk_size, block_entries=args.block_entries,
        )  # fmt: skip
        print(json.dumps(result))
        return 0
    import subprocess

    command = "python -m benchmarks.knn " + shlex.join(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="0") if args.no_huge_pages else None
    load = MachineLoad(args.device)
    output = subprocess.run(
        child_command(args), cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    result = json.loads(output.stdout.strip().splitlines()[-1])
    info = machine_info(args.device)
    info["load"] = load.finish()
    result.update(label=args.label, command=command, commit=info["commit"], load=info["load"])
    device_tag = "gpu" if args.device.startswith("cuda") else "cpu"
    out = Path(
        args.out or REPO / "benchmarks" / "results" / f"knn-{info['date']}-{device_tag}.json"
    )
    results = [result]
    if args.append and out.is_file():
        results = json.loads(out.read_text())["results"] + results
    table = markdown(info, results)
    write_report(out, {"machine": info, "command": command, "results": results}, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
