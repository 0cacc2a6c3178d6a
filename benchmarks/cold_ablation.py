"""Where a trained model's scores for items without a training interaction come from.

For each checkpoint, the split's Recall@k over all, cold (no training interaction) and warm
target items, first as trained and then under three edits of the cold items only, each undone
before the next:

- ``cold ID rows zeroed``: the items' rows of the ID embedding table set to 0;
- ``cold features permuted``: the cold items' feature rows shuffled among the cold items (each
  modality; the same permutation), so that a cold item carries another cold item's content;
- ``cold features zeroed``: their feature rows set to 0.

If cold Recall survives the first edit and collapses under the second, the cold items are ranked
by their own content; a collapse under the first means the ID rows carry it. It also records the
mean norm of cold and warm item vectors and the share of the top-k slots that go to cold items.

The edits reach what a model reads in ``forward()``: its ``item_embedding`` and its
``features_*`` buffers. Structure a model derived from the features before training (the
item–item kNN graphs of LATTICE, FREEDOM, MGCN, DRAGON, BM3, MENTOR) keeps the original
content, so for those models the feature edits are partial.

    python -m benchmarks.cold_ablation --checkpoint runs/.../best.pt      # its recorded dataset
    python -m benchmarks.cold_ablation --quick                            # smoke run (tests)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks.speed import REPO, machine_info, write_report
from mmgraph.data import InteractionDataset
from mmgraph.eval import Evaluator
from mmgraph.models import Recommender
from mmgraph.threads import configure_threads
from mmgraph.train import load_checkpoint

#: an edit of the cold items: (model, cold item ids [C], generator) -> None, in place
Edit = Callable[[Recommender, Tensor, torch.Generator], None]


def feature_buffers(model: Recommender) -> list[Tensor]:
    """The model's ``[I, d_m]`` item-feature buffers (every module's ``features_*``)."""
    return [
        buffer
        for name, buffer in model.named_buffers()
        if name.rsplit(".", 1)[-1].startswith("features_")
        and buffer.dim() == 2
        and buffer.size(0) == model.num_items
    ]


def zero_id_rows(model: Recommender, cold: Tensor, generator: torch.Generator) -> None:
    model.item_embedding.weight[cold] = 0.0


def permute_features(model: Recommender, cold: Tensor, generator: torch.Generator) -> None:
    shuffled = cold[torch.randperm(cold.numel(), generator=generator)]
    for buffer in feature_buffers(model):
        buffer[cold] = buffer[shuffled].clone()


def zero_features(model: Recommender, cold: Tensor, generator: torch.Generator) -> None:
    for buffer in feature_buffers(model):
        buffer[cold] = 0.0


EDITS: dict[str, Edit] = {
    "cold ID rows zeroed": zero_id_rows,
    "cold features permuted": permute_features,
    "cold features zeroed": zero_features,
}


@contextmanager
def restored(model: Recommender) -> Iterator[None]:
    """Undo any in-place edit of the model's parameters and buffers on exit."""
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    saved = {name: tensor.detach().clone() for name, tensor in tensors.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                tensors[name].copy_(value)


@torch.no_grad()
def item_profile(model: Recommender, cold: Tensor, k: int) -> dict[str, float]:
    """Mean cold / warm item-vector norm and the share of every user's top-``k`` that is cold.

    Scores are the plain inner products of ``forward()`` (training items not masked).
    """
    users, items = model()
    norms = items.norm(dim=1)
    is_cold = torch.zeros(model.num_items, dtype=torch.bool)
    is_cold[cold] = True
    top = torch.cat([(block @ items.T).topk(k, dim=1).indices for block in users.split(4096)])
    return {
        "cold_norm": float(norms[is_cold].mean()) if cold.numel() else float("nan"),
        "warm_norm": float(norms[~is_cold].mean()),
        "cold_top_share": float(is_cold[top].float().mean()),
        "cold_catalogue_share": cold.numel() / model.num_items,
    }


@torch.no_grad()
def ablate(
    model: Recommender, dataset: InteractionDataset, split: str = "test", k: int = 20, seed: int = 0
) -> dict[str, Any]:
    """Recall@``k`` (all / cold / warm) as trained and under each of :data:`EDITS`.

    The model is left as it was given.
    """
    model.eval()
    evaluator = Evaluator(dataset, ks=[k])
    evaluate = evaluator.evaluate
    cold = evaluator.item_parts["cold"].nonzero().squeeze(1)
    if not hasattr(model, "item_embedding") and not feature_buffers(model):
        raise ValueError(f"{model.name} has neither an item_embedding nor feature buffers")

    def recalls(metrics: dict[str, float]) -> dict[str, float]:
        return {part: metrics[f"{part}recall@{k}"] for part in ("", "cold/", "warm/")}

    as_trained = evaluate(model, split)
    rows = [{"edit": "as trained", **recalls(as_trained)}]
    for label, edit in EDITS.items():
        applicable = (
            hasattr(model, "item_embedding")
            if edit is zero_id_rows
            else bool(feature_buffers(model))
        )
        if not applicable:
            continue
        with restored(model):
            edit(model, cold, torch.Generator().manual_seed(seed))
            rows.append({"edit": label, **recalls(evaluate(model, split))})
    return {
        "model": model.name,
        "cold_items": cold.numel(),
        "cold_users": int(as_trained.get("cold/users", 0)),
        **item_profile(model, cold, k),
        "rows": rows,
    }


def markdown(info: dict[str, Any], results: list[dict[str, Any]], command: str, k: int) -> str:
    lines = [
        f"# Cold-item ablation ({info['date']}, {info['cpu']})",
        "",
        f"`{command}`",
        "",
    ]
    for result in results:
        lines += [
            f"## {result['label']}",
            "",
            f"{result['cold_items']} cold items, {result['cold_users']} users with a cold target; "
            f"item-vector norm cold {result['cold_norm']:.2f} / warm {result['warm_norm']:.2f}; "
            f"cold items fill {result['cold_top_share']:.1%} of the top-{k} slots "
            f"({result['cold_catalogue_share']:.1%} of the catalogue).",
            "",
            f"| edit | R@{k} | cold R@{k} | warm R@{k} |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['edit']} | {r['']:.4f} | {r['cold/']:.4f} | {r['warm/']:.4f} |"
            for r in result["rows"]
        ]
        lines.append("")
    return "\n".join(lines)


def quick_model() -> tuple[Recommender, InteractionDataset]:
    """VBPR trained for two epochs on a small synthetic graph with 20 % of its items cold."""
    from mmgraph.data.cold_start import cold_item_labels
    from mmgraph.data.synthetic import synthetic_dataset
    from mmgraph.models import get_model
    from mmgraph.train import resolve_config
    from mmgraph.train.runner import build_model, fit_run

    base = synthetic_dataset(users=300, items=200, interactions=4000)
    parts = [base.edge_index(split) for split in ("train", "valid", "test")]
    edges = torch.cat(parts, dim=1)
    labels = torch.cat([torch.full((p.size(1),), i) for i, p in enumerate(parts)])
    labels, _, _ = cold_item_labels(
        edges[0].numpy(), edges[1].numpy(), labels.numpy(), base.num_items, 0.2, seed=0
    )
    dataset = InteractionDataset.from_interactions(
        edges[0],
        edges[1],
        torch.from_numpy(labels),
        {m: base.features(m) for m in base.modalities},
        base.num_users,
        base.num_items,
        name="quick-cold",
    )
    config = resolve_config(get_model("vbpr"), [("--quick", {"epochs": 2, "seed": 0})])
    model = build_model(dataset, config)
    fit_run(dataset, config, model=model, evaluate_test=False)
    return model, dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="repeatable")
    parser.add_argument("--dataset", help="override the checkpoint's recorded dataset")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="of the feature permutation")
    parser.add_argument("--quick", action="store_true", help="VBPR on a synthetic graph")
    parser.add_argument("--out", help="JSON path (Markdown beside it)")
    parser.add_argument("--threads", help="CPU threads: N or 'auto' (default: OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    if not args.checkpoint and not args.quick:
        parser.error("give --checkpoint PATH (repeatable) or --quick")
    command = "python -m benchmarks.cold_ablation " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    results = []
    loaders = [lambda p=p: load_checkpoint(p, args.dataset)[:2] for p in args.checkpoint]
    if args.quick:
        loaders.append(quick_model)
    for load in loaders:
        model, dataset = load()
        result = ablate(model, dataset, args.split, args.k, args.seed)
        result["label"] = f"{model.name} on {dataset.name}"
        results.append(result)
        print(result["label"], flush=True)
    info = machine_info("cpu")
    out = Path(
        args.out or REPO / "benchmarks" / "results" / f"cold-ablation-{info['date']}-cpu.json"
    )
    table = markdown(info, results, command, args.k)
    write_report(out, {"machine": info, "command": command, "results": results}, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
