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
all rows (every row costs the same). Peak memory is reached within the first block and in
the assembly, so the partial run measures the full build's peak. The measuring process
uses the allocator settings of ``mmgraph train``, which builds the graph in the training
process (:mod:`mmgraph.allocator`). Writes JSON and Markdown, with the machine's state
(the speed suite's probes before and after, ``machine.load``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.speed import (
    REPO,
    MachineLoad,
    describe_machine,
    machine_info,
    peak_rss_mb,
    write_report,
)
from mmgraph.allocator import request_huge_pages


def measure(
    items: int, dim: int, k: int, max_rows: int | None, device: str, seed: int = 0
) -> dict[str, Any]:
    """Build (part of) the graph and return the measurements."""
    import torch

    from mmgraph.allocator import retain_freed_memory
    from mmgraph.data.knn import knn_neighbors, neighbor_edges, similarity_block_shape

    retain_freed_memory()  # as mmgraph train does (fit_run)
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(items, dim, generator=generator).to(device)
    rss_inputs = peak_rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    rows = items if max_rows is None else min(max_rows, items)
    block_rows, tile_items = similarity_block_shape(items)
    begin = time.perf_counter()
    searched = knn_neighbors(features, k, stop=rows)
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
        "block_rows": block_rows,  # knn_neighbors' default block: queries x a tile of items
        "tile_items": tile_items,
        "search_seconds": search_seconds,
        "build_seconds_estimated": search_seconds * items / rows + assemble_seconds,
        "edges": int(weight.numel()),
        "features_mb": features.numel() * 4 / 2**20,
        "rss_after_inputs_mb": rss_inputs,
        "peak_cpu_rss_mb": peak_rss_mb(),
    }
    if device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def markdown(info: dict[str, Any], results: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"Measured {describe_machine(info)}; `{command}`.",
        "",
        "| items × dim | k | block (queries × items) | rows searched | s (searched rows) "
        "| s full build (est.) | peak RSS MB (features MB) |"
        + (" peak GPU MB |" if "gpu" in info else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if "gpu" in info else ""),
    ]
    for r in results:
        row = (
            f"| {r['items']:,} × {r['dim']} | {r['k']} | {r['block_rows']:,} × "
            f"{r['tile_items']:,} | {r['rows_searched']:,} "
            f"| {r['search_seconds']:.1f} | {r['build_seconds_estimated']:,.0f} "
            f"| {r['peak_cpu_rss_mb']:,.0f} ({r['features_mb']:,.0f}) |"
        )
        if "gpu" in info:
            row += f" {r['peak_gpu_mb']:,.0f} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    request_huge_pages()  # as the mmgraph command does; before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-rows", type=int, help="search only the first N rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="2,000 × 32, smoke run")
    parser.add_argument("--out", help="JSON path (Markdown beside it)")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.dim, args.max_rows = 2000, 32, 500
    if args.single:  # the measuring child process
        result = measure(args.items, args.dim, args.k, args.max_rows, args.device)
        print(json.dumps(result))
        return 0
    import subprocess

    command = "python -m benchmarks.knn " + " ".join(argv if argv is not None else sys.argv[1:])
    child = [sys.executable, "-m", "benchmarks.knn", "--single", "--items", str(args.items)]
    child += ["--dim", str(args.dim), "--k", str(args.k), "--device", args.device]
    if args.max_rows is not None:
        child += ["--max-rows", str(args.max_rows)]
    load = MachineLoad(args.device)
    output = subprocess.run(child, cwd=REPO, check=True, capture_output=True, text=True)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    info = machine_info(args.device)
    info["load"] = load.finish()
    device_tag = "gpu" if args.device.startswith("cuda") else "cpu"
    out = Path(
        args.out or REPO / "benchmarks" / "results" / f"knn-{info['date']}-{device_tag}.json"
    )
    table = markdown(info, [result], command)
    write_report(out, {"machine": info, "command": command, "results": [result]}, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
