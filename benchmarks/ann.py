"""Recall and speed of the faiss item indexes of ``mmgraph export`` against exact top-k.

For one catalogue, the top-``k`` unseen items of ``--queries`` sampled users are computed
exactly (numpy, the same path as ``mmgraph recommend --index`` on an export without index),
then with a flat faiss index and with HNSW at several ``efSearch`` values. Reported per
method: recall@k against the exact lists (the share of each user's exact top-k found,
averaged over users), queries per second (users answered per second, in blocks of 1,024,
seen items removed), and for HNSW the build time and index size::

    python -m benchmarks.ann --checkpoint runs/lgn/best.pt       # a trained model's embeddings
    python -m benchmarks.ann --synthetic-items 1000000            # a 1M-item synthetic catalogue
    python -m benchmarks.ann --quick                              # smoke run (tests)

The synthetic catalogue is :func:`mmgraph.data.synthetic.synthetic_dataset` with
``--synthetic-items`` items in clusters: an item's vector is its 64-d clustered feature, a
user's vector the mean of their training items' vectors (a content profile), seen items are
their training items. Threads: faiss and numpy use ``OMP_NUM_THREADS`` (recorded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.speed import REPO, MachineLoad, describe_machine, machine_info, write_report
from mmgraph.serve import ExportedRecommender, IndexSettings
from mmgraph.serve.ann import build_index, import_faiss, read_index
from mmgraph.threads import configure_threads

EF_SEARCH = (16, 32, 64, 128, 256)


def from_checkpoint(path: str, dataset_ref: str | None) -> tuple[ExportedRecommender, str]:
    """The checkpoint's model exported to a temporary folder and read back (no index)."""
    from mmgraph.serve import export_model
    from mmgraph.train import load_checkpoint

    model, dataset, _ = load_checkpoint(path, dataset_ref)
    with tempfile.TemporaryDirectory() as folder:
        export_model(model, dataset, Path(folder) / "e")
        served = ExportedRecommender.load(Path(folder) / "e")
    return served, f"{model.name} on {dataset.name} ({path})"


def synthetic(items: int, seed: int = 0) -> tuple[ExportedRecommender, str]:
    """A clustered synthetic catalogue with content-profile users (see the module docstring)."""
    from mmgraph.data.synthetic import synthetic_dataset

    users = max(1000, items // 20)
    dataset = synthetic_dataset(
        users=users, items=items, interactions=users * 40, modalities={"image": 64}, seed=seed
    )
    item_vectors = dataset.features("image").numpy().astype(np.float32)
    seen = dataset.user_items("train")
    indptr, indices = seen.indptr.numpy(), seen.indices.numpy()
    rows = np.repeat(np.arange(dataset.num_users), np.diff(indptr))
    user_vectors = np.zeros((dataset.num_users, 64), np.float64)
    np.add.at(user_vectors, rows, item_vectors[indices])
    user_vectors /= np.maximum(np.diff(indptr), 1)[:, None]
    manifest = {"num_users": dataset.num_users, "num_items": items, "dim": 64}
    served = ExportedRecommender(
        manifest, user_vectors.astype(np.float32), item_vectors, indptr, indices
    )
    return served, f"synthetic: {items:,} items x 64 (clustered), {dataset.num_users:,} users"


def answer(served: ExportedRecommender, users: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """``(items [B, k], queries per second)`` of ``served.recommend`` over ``users``."""
    begin = time.perf_counter()
    _, items = served.recommend(users, k)
    return items, users.size / (time.perf_counter() - begin)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of ``|found ∩ truth| / |truth|`` (``-1`` padding ignored)."""
    shares = []
    for got, want in zip(found, truth, strict=True):
        want = set(want[want >= 0].tolist())
        if want:
            shares.append(len(want & set(got.tolist())) / len(want))
    return float(np.mean(shares))


def measure(served: ExportedRecommender, queries: int, k: int, hnsw_m: int) -> dict[str, Any]:
    faiss = import_faiss()
    rng = np.random.default_rng(0)
    users = np.sort(
        rng.choice(served.num_users, size=min(queries, served.num_users), replace=False)
    )
    served.index = None
    truth, exact_qps = answer(served, users, k)
    rows = [{"method": "exact (numpy)", "recall": 1.0, "qps": exact_qps}]
    with tempfile.TemporaryDirectory() as folder:
        for settings in (IndexSettings("flat"), IndexSettings("hnsw", hnsw_m=hnsw_m)):
            path = Path(folder) / f"{settings.kind}.faiss"
            begin = time.perf_counter()
            build_index(served.item_embeddings, settings, path)
            build_seconds = time.perf_counter() - begin
            served.index = read_index(path)
            size_mb = path.stat().st_size / 2**20
            for ef in EF_SEARCH if settings.kind == "hnsw" else (None,):
                if ef is not None:
                    served.index.hnsw.efSearch = ef
                found, qps = answer(served, users, k)
                rows.append(
                    {
                        "method": settings.kind if ef is None else f"hnsw M={hnsw_m} ef={ef}",
                        "recall": recall(found, truth),
                        "qps": qps,
                        "build_seconds": build_seconds,
                        "index_mb": size_mb,
                    }
                )
    return {
        "queries": int(users.size),
        "k": k,
        "num_items": served.num_items,
        "dim": int(served.item_embeddings.shape[1]),
        "threads": faiss.omp_get_max_threads(),
        "rows": rows,
    }


def markdown(info: dict[str, Any], results: list[dict[str, Any]], command: str) -> str:
    lines = [f"Measured {describe_machine(info)}; `{command}`.", ""]
    for result in results:
        lines += [
            f"**{result['catalogue']}**: {result['queries']:,} users, top-{result['k']} unseen "
            f"items, {result['threads']} thread(s).",
            "",
            "| method | recall@k vs exact | queries/s | build s | index MB |",
            "|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            build = f"{row['build_seconds']:.1f}" if "build_seconds" in row else "–"
            size = f"{row['index_mb']:,.0f}" if "index_mb" in row else "–"
            lines.append(
                f"| {row['method']} | {row['recall']:.4f} | {row['qps']:,.0f} | {build} | {size} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="repeatable")
    parser.add_argument("--dataset", help="override the checkpoint's recorded dataset")
    parser.add_argument("--synthetic-items", type=int, action="append", default=[])
    parser.add_argument("--queries", type=int, default=2000, help="users sampled")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--hnsw-m", type=int, default=IndexSettings().hnsw_m)
    parser.add_argument("--quick", action="store_true", help="20,000 synthetic items, smoke run")
    parser.add_argument("--out", help="JSON path (Markdown beside it)")
    parser.add_argument("--threads", help="CPU threads: N or 'auto' (default: OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    if args.threads:
        import_faiss().omp_set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if args.quick:
        args.synthetic_items, args.queries = [20_000], 200
    command = "python -m benchmarks.ann " + " ".join(argv if argv is not None else sys.argv[1:])
    load = MachineLoad("cpu")
    results = []
    catalogues = [lambda p=p: from_checkpoint(p, args.dataset) for p in args.checkpoint]
    catalogues += [lambda n=n: synthetic(n) for n in args.synthetic_items]
    for make in catalogues:
        served, label = make()
        results.append({"catalogue": label, **measure(served, args.queries, args.k, args.hnsw_m)})
        print(label, flush=True)
    info = machine_info("cpu")
    info["load"] = load.finish()
    out = Path(args.out or REPO / "benchmarks" / "results" / f"ann-{info['date']}-cpu.json")
    table = markdown(info, results, command)
    write_report(out, {"machine": info, "command": command, "results": results}, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
