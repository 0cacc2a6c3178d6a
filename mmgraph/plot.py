"""Pictures of a run: learning curves from ``log.jsonl`` and a t-SNE of item embeddings.

Needs matplotlib (``pip install "mmgraph[plot]"``); the t-SNE uses scikit-learn. Figures are
drawn with :class:`matplotlib.figure.Figure` directly, so no GUI backend is touched.
:func:`export_tensorboard` writes the same log as TensorBoard scalars (needs ``tensorboard``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmgraph.errors import ConfigError, DataError
from mmgraph.models.base import Recommender

INSTALL_HINT = "pip install 'mmgraph[plot]'"


def _figure(**kwargs: Any) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    return Figure(**kwargs)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of a ``log.jsonl`` (a run folder or the file itself).

    Raises:
        DataError: the file is missing, empty or holds a line that is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: training log not found (is this a run folder of `train`?)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {number} is not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise DataError(f"{path}: line {number} is not an epoch record (no 'epoch')")
        records.append(record)
    if not records:
        raise DataError(f"{path}: the log has no epochs")
    return records


def plot_learning_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Loss terms (left) and valid metrics (right) per epoch, as a PNG.

    Args:
        history: ``log.jsonl`` records (:func:`read_log`).
        path: the PNG to write.
        metrics: valid metrics to draw; default all ``@20`` metrics present (else all).

    Returns:
        ``path``.
    """
    figure = _figure(figsize=(11, 4), layout="constrained")
    losses, valid = figure.subplots(1, 2)
    terms = sorted({key for record in history for key in record.get("loss", {})})
    for term in terms:
        points = [(r["epoch"], r["loss"][term]) for r in history if term in r.get("loss", {})]
        epochs, values = zip(*points, strict=True)
        style = {"linewidth": 2.2, "color": "black"} if term == "loss" else {"linewidth": 1.2}
        losses.plot(epochs, values, label=term, **style)
    positive = all(v > 0 for r in history for v in r.get("loss", {}).values())
    losses.set(title="training loss", xlabel="epoch", ylabel="mean per batch")
    if terms and positive:
        losses.set_yscale("log")  # terms differ by orders of magnitude (loss_reg vs loss_bpr)
    if terms:
        losses.legend(fontsize="small")

    evaluated = [r for r in history if isinstance(r.get("valid"), dict)]
    names = sorted({key for r in evaluated for key in r["valid"]})
    chosen = list(metrics) if metrics else [n for n in names if n.endswith("@20")] or names
    for name in chosen:
        points = [(r["epoch"], r["valid"][name]) for r in evaluated if name in r["valid"]]
        if points:
            epochs, values = zip(*points, strict=True)
            valid.plot(epochs, values, marker=".", label=name)
    best = [r["epoch"] for r in evaluated if r.get("improved")]
    if best:
        valid.axvline(best[-1], color="grey", linestyle="--", linewidth=1, label="best epoch")
    valid.set(title="valid metrics", xlabel="epoch")
    if evaluated:
        valid.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


@torch.no_grad()
def item_embeddings(model: Recommender) -> dict[str, Tensor]:
    """``{name: [num_items, dim]}`` item representations to look at.

    A model with a ``modality_item_embeddings()`` method returning ``{modality: [I, d]}`` gives
    one entry per modality; any other model gives its final item embeddings as ``"item"``.
    """
    was_training = model.training
    model.eval()
    try:
        per_modality = getattr(model, "modality_item_embeddings", None)
        found = dict(per_modality()) if callable(per_modality) else {"item": model()[1]}
    finally:
        model.train(was_training)
    return {name: emb.detach().float().cpu() for name, emb in found.items()}


def plot_item_tsne(
    embeddings: Mapping[str, Tensor],
    path: str | os.PathLike,
    max_items: int = 2000,
    seed: int = 0,
) -> Path:
    """One 2-D t-SNE panel per entry of ``embeddings`` (same sampled items in each), as a PNG.

    Args:
        embeddings: ``{name: [num_items, dim]}`` (:func:`item_embeddings`).
        path: the PNG to write.
        max_items: t-SNE is run on at most this many items, drawn with ``seed``.
        seed: seed of the item sample and of t-SNE.
    """
    from sklearn.manifold import TSNE

    figure = _figure(figsize=(4.2 * len(embeddings), 4.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(embeddings)))
    num_items = next(iter(embeddings.values())).shape[0]
    if num_items < 4:
        raise DataError(f"t-SNE needs at least 4 items, the model has {num_items}")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(num_items, size=min(max_items, num_items), replace=False))
    for axis, (name, emb) in zip(axes, embeddings.items(), strict=True):
        rows = emb[torch.from_numpy(sample)].numpy()
        perplexity = float(min(30.0, max(1.0, (len(sample) - 1) / 3)))
        points = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(rows)
        axis.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
        axis.set(title=f"{name} ({rows.shape[1]}-d)", xticks=[], yticks=[])
    figure.suptitle(f"t-SNE of item embeddings ({len(sample)} of {num_items} items)")
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def export_tensorboard(history: Sequence[Mapping[str, Any]], log_dir: str | os.PathLike) -> Path:
    """Write ``log.jsonl`` records as TensorBoard scalars (``loss/<term>``, ``valid/<metric>``,
    indexed by epoch) into ``log_dir``; view with ``tensorboard --logdir log_dir``.

    Raises:
        ConfigError: the ``tensorboard`` package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("TensorBoard export needs tensorboard: pip install tensorboard") from None
    log_dir = Path(log_dir)
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for record in history:
            epoch = record["epoch"]
            for term, value in record.get("loss", {}).items():
                writer.add_scalar(f"loss/{term}", value, epoch)
            for metric, value in (record.get("valid") or {}).items():
                writer.add_scalar(f"valid/{metric}", value, epoch)
    finally:
        writer.close()
    return log_dir
