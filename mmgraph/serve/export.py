"""Write a trained model's final embeddings as plain files a service can score from.

An export folder holds (``U`` users, ``I`` items, ``d`` the embedding width)::

    manifest.json           what the files are and how to score with them
    user_embeddings.npy     [U, d] float32
    item_embeddings.npy     [I, d] float32
    seen_indptr.npy         [U + 1] int64  \\ each user's training items (CSR), excluded
    seen_indices.npy        [nnz] int64    /  from recommendations
    user_ids.txt            raw user id of row u, one per line (when the dataset has id maps)
    item_ids.txt            raw item id of row i, likewise
    items.faiss             optional inner-product index over item_embeddings.npy

``score[u, i] = user_embeddings[u] · item_embeddings[i]``: every mmgraph model ranks with
this inner product of its ``forward()`` tables (MENTOR's fused view, VBPR's ID ⊕ content
columns), so the files reproduce :meth:`mmgraph.models.Recommender.recommend` with numpy
alone. A model that overrides :meth:`~mmgraph.models.Recommender.score` is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mmgraph
from mmgraph.data import InteractionDataset
from mmgraph.errors import ConfigError
from mmgraph.models import Recommender
from mmgraph.provenance import git_commit
from mmgraph.serve.ann import INDEX_FILE, IndexSettings, build_index
from mmgraph.serve.exported import EXPORT_FORMAT, MANIFEST

USER_EMBEDDINGS = "user_embeddings.npy"
ITEM_EMBEDDINGS = "item_embeddings.npy"
SEEN_INDPTR = "seen_indptr.npy"
SEEN_INDICES = "seen_indices.npy"
USER_IDS = "user_ids.txt"
ITEM_IDS = "item_ids.txt"


def export_model(
    model: Recommender,
    dataset: InteractionDataset,
    out_dir: str | os.PathLike,
    *,
    raw_ids: tuple[list[str], list[str]] | None = None,
    index: IndexSettings | None = None,
    checkpoint: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``model``'s embeddings, the seen items and a manifest into ``out_dir``.

    The folder appears complete or not at all: files are written into a temporary sibling
    that is renamed into place.

    Args:
        model: a trained recommender (any device; evaluated in ``eval`` mode).
        dataset: the dataset it was trained on (its training items are the seen items).
        out_dir: the export folder; must not exist or be empty, unless ``overwrite`` and it
            holds an earlier export.
        raw_ids: ``(raw user ids [U], raw item ids [I])`` to write beside the embeddings.
        index: build a faiss index over the items with these settings (needs ``faiss-cpu``).
        checkpoint: the checkpoint the model came from, recorded with its SHA-256.
        overwrite: replace an earlier export in ``out_dir``.

    Returns:
        The manifest written to ``manifest.json``.

    Raises:
        ConfigError: the model scores with its own function, or ``out_dir`` is not
            replaceable.
    """
    if type(model).score is not Recommender.score:
        raise ConfigError(
            f"model {model.name!r} scores items with its own function, not an inner product of "
            "user and item embeddings; export supports inner-product models only"
        )
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    user_emb, item_emb = _final_embeddings(model)
    seen = dataset.user_items("train")

    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "model": model.name,
        "hparams": _plain(dict(getattr(model, "hparams", {}))),
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "fingerprint": dataset.fingerprint,
        },
        "num_users": int(user_emb.shape[0]),
        "num_items": int(item_emb.shape[0]),
        "dim": int(user_emb.shape[1]),
        "score": "inner_product",
        "score_formula": f"score[u, i] = {USER_EMBEDDINGS}[u] . {ITEM_EMBEDDINGS}[i]",
        "exclude": f"the items {SEEN_INDICES}[{SEEN_INDPTR}[u]:{SEEN_INDPTR}[u + 1]] of user u",
        "files": {
            "user_embeddings": USER_EMBEDDINGS,
            "item_embeddings": ITEM_EMBEDDINGS,
            "seen_indptr": SEEN_INDPTR,
            "seen_indices": SEEN_INDICES,
        },
        "checkpoint": _describe_checkpoint(checkpoint),
        "mmgraph_version": mmgraph.__version__,
        "commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "index": None,
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    staging.mkdir()  # (not tempfile.mkdtemp: its 0700 mode would become the export's)
    try:
        np.save(staging / USER_EMBEDDINGS, user_emb)
        np.save(staging / ITEM_EMBEDDINGS, item_emb)
        np.save(staging / SEEN_INDPTR, seen.indptr.numpy())
        np.save(staging / SEEN_INDICES, seen.indices.numpy())
        if raw_ids is not None:
            _write_ids(staging / USER_IDS, raw_ids[0])
            _write_ids(staging / ITEM_IDS, raw_ids[1])
            manifest["files"].update(user_ids=USER_IDS, item_ids=ITEM_IDS)
        if index is not None:
            manifest["index"] = build_index(item_emb, index, staging / INDEX_FILE)
            manifest["files"]["index"] = INDEX_FILE
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


@torch.no_grad()
def _final_embeddings(model: Recommender) -> tuple[np.ndarray, np.ndarray]:
    """``(users [U, d], items [I, d])`` float32 arrays of ``model.forward()`` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        user_emb, item_emb = model()
    finally:
        model.train(was_training)
    return (
        np.ascontiguousarray(user_emb.detach().float().cpu().numpy()),
        np.ascontiguousarray(item_emb.detach().float().cpu().numpy()),
    )


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / MANIFEST).is_file():
        raise ConfigError(f"--out {out}: the folder is not empty and holds no mmgraph export")
    if not overwrite:
        raise ConfigError(f"--out {out}: holds an export already; pass --overwrite to replace it")


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an earlier export there is removed only afterwards."""
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(staging, out)
        return
    previous = out.with_name(f".{out.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(out, previous)
    os.replace(staging, out)
    shutil.rmtree(previous, ignore_errors=True)


def _write_ids(path: Path, ids: list[str]) -> None:
    bad = [raw for raw in ids if "\n" in raw or "\r" in raw]
    if bad:
        raise ConfigError(f"raw id {bad[0]!r} holds a line break; it cannot be exported")
    path.write_text("".join(f"{raw}\n" for raw in ids), encoding="utf-8")


def _describe_checkpoint(path: str | os.PathLike | None) -> dict[str, str] | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(Path(path).resolve()), "sha256": digest.hexdigest()}


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and anything else JSON cannot hold as its ``str``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
