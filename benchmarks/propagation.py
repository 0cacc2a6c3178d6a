"""Sparse propagation backends: one LightGCN hop, forward + backward, per available backend.

    python -m benchmarks.propagation                        # tiktok + baby, widths 64 and 448
    python -m benchmarks.propagation --datasets synthetic-100k --widths 64
    python -m benchmarks.propagation --quick                # smoke run (what the tests execute)

Backends, each computing ``Â X`` and its gradient on the dataset's normalised training
adjacency (``[U + I, U + I]``):

- ``csr``: :func:`mmgraph.nn.sparse_matmul`, the path every mmgraph model takes: torch's
  native CSR product with the transpose-free backward, on the CPU by the row-parallel
  ``spmm_reduce`` kernel (``torch.sparse.mm(adj, x, "sum")``);
- ``csr-matmul``: the same with torch's default ``adj @ x`` (MKL on the CPU), mmgraph's
  path until 2026-12;
- ``message-passing``: :class:`mmgraph.nn.LightGCNConv` on ``edge_index`` + ``edge_weight``
  (PyG's gather/scatter);
- ``torch-sparse``: ``torch_sparse.SparseTensor`` matmul, only when the ``fast`` extra is
  installed.

The figures decide which path is the default: an extension is used only where it measures
faster. Results (median seconds of several hops after a warm-up) go to JSON and Markdown.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.speed import (
    DATASETS,
    REPO,
    describe_machine,
    machine_info,
    median_seconds,
    split_datasets,
    write_report,
)
from mmgraph.allocator import request_huge_pages


def backends(adj, device: str) -> dict[str, Callable]:
    """Backend name -> ``x [N, d] -> Â x [N, d]`` (differentiable in ``x``)."""
    from torch_geometric.typing import WITH_TORCH_SPARSE
    from torch_geometric.utils import to_edge_index

    from mmgraph.nn import LightGCNConv, sparse_matmul

    edge_index, edge_weight = to_edge_index(adj)
    conv = LightGCNConv().to(device)
    found = {
        "csr": lambda x: sparse_matmul(adj, x, adj),
        "csr-matmul": default_kernel_hop(adj),
        "message-passing": lambda x: conv(x, edge_index, edge_weight),
    }
    if WITH_TORCH_SPARSE:
        from torch_sparse import SparseTensor

        matrix = SparseTensor.from_torch_sparse_csr_tensor(adj)
        found["torch-sparse"] = lambda x: matrix @ x
    return found


def default_kernel_hop(adj) -> Callable:
    """``x -> adj @ x`` by torch's default kernel, with backward ``adj @ grad`` (symmetric)."""
    import torch

    class DefaultKernelProduct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return adj @ x

        @staticmethod
        def backward(ctx, grad):
            return adj @ grad

    return DefaultKernelProduct.apply


def time_hop(hop: Callable, x, device: str, repeats: int) -> float:
    """Median seconds of ``hop(x)`` forward plus backward, after one warm-up."""
    import torch

    grad = torch.randn_like(x)

    def clear_grad() -> None:
        x.grad = None

    return median_seconds(lambda: hop(x).backward(grad), device, repeats, prepare=clear_grad)


def measure(dataset_ref: str, widths: list[int], device: str, repeats: int) -> list[dict]:
    import torch

    from mmgraph.data import load_dataset
    from mmgraph.data.graph import user_item_adjacency

    dataset = load_dataset(DATASETS.get(dataset_ref, dataset_ref))
    adj = user_item_adjacency(dataset.edge_index("train"), dataset.num_users, dataset.num_items)
    adj = adj.to(device)
    nodes = dataset.num_users + dataset.num_items
    hops = backends(adj, device)
    results = []
    for width in widths:
        x = torch.randn(nodes, width, device=device, requires_grad=True)
        reference = None
        for name, hop in hops.items():
            with torch.no_grad():
                out = hop(x)
            reference = out if reference is None else reference
            results.append(
                {
                    "dataset": dataset_ref,
                    "nodes": nodes,
                    "nonzeros": int(adj._nnz()),
                    "width": width,
                    "backend": name,
                    "seconds": time_hop(hop, x, device, repeats),
                    # every backend computes the same product (checked, not assumed)
                    "max_abs_diff_to_csr": float((out - reference).abs().max()),
                }
            )
    return results


def markdown(info: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        f"Measured {describe_machine(info)}.",
        "",
        "| dataset | nodes | non-zeros | width | backend | ms per hop (fwd + bwd) | "
        "max diff to csr |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['nodes']:,} | {r['nonzeros']:,} | {r['width']} | "
            f"{r['backend']} | {1000 * r['seconds']:.1f} | {r['max_abs_diff_to_csr']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    request_huge_pages()  # as the mmgraph command does; before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="tiktok,baby")
    parser.add_argument("--widths", default="64,448", help="comma-separated feature widths")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiktok, width 8, 2 repeats")
    parser.add_argument("--out", default=None, help="JSON path (Markdown written beside it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.widths, args.repeats = "tiktok", "8", 2
    widths = [int(w) for w in args.widths.split(",")]
    results = []
    for dataset in split_datasets(args.datasets):
        results += measure(dataset, widths, args.device, args.repeats)
    info = machine_info(args.device)
    out = Path(args.out or REPO / "benchmarks" / "results" / f"propagation-{info['date']}.json")
    table = markdown(info, results)
    write_report(out, {"machine": info, "results": results}, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
