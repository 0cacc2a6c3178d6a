"""Recommend from an export folder with numpy (and faiss when the folder has an index).

Nothing here needs torch or a dataset: this is what a service runs. See
:mod:`mmgraph.serve.export` for the folder's files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmgraph.errors import CheckpointError, ConfigError
from mmgraph.serve.ann import read_index, search

EXPORT_FORMAT = "mmgraph-export/1"
MANIFEST = "manifest.json"
#: users scored per block: bounds the ``[B, I]`` score block of an exact search.
USER_BLOCK = 1024


@dataclass
class ExportedRecommender:
    """A recommender read back from an export folder.

    Attributes:
        manifest: the folder's ``manifest.json``.
        user_embeddings: ``[U, d]`` float32.
        item_embeddings: ``[I, d]`` float32.
        seen_indptr: ``[U + 1]`` int64; user ``u``'s training items are
            ``seen_indices[seen_indptr[u]:seen_indptr[u + 1]]``.
        seen_indices: ``[nnz]`` int64.
        user_ids: raw user id per row, when exported.
        item_ids: raw item id per row, when exported.
        index: the faiss index over the items, when exported and loaded.
    """

    manifest: dict[str, Any]
    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    user_ids: list[str] | None = None
    item_ids: list[str] | None = None
    index: Any = None

    @classmethod
    def load(cls, folder: str | os.PathLike, use_index: bool = True) -> ExportedRecommender:
        """Read an export folder (the index too, when it has one and ``use_index``).

        Raises:
            CheckpointError: the folder is not an mmgraph export or its files disagree.
        """
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise CheckpointError(f"{folder}: not an mmgraph export (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{manifest_path}: unreadable: {err}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
            raise CheckpointError(f"{manifest_path}: not an {EXPORT_FORMAT} manifest")
        files = manifest["files"]

        def array(key: str) -> np.ndarray:
            path = folder / files[key]
            if not path.is_file():
                raise CheckpointError(f"{path}: missing from the export")
            return np.load(path, allow_pickle=False)

        def ids(key: str) -> list[str] | None:
            if key not in files:
                return None
            return (folder / files[key]).read_text(encoding="utf-8").splitlines()

        exported = cls(
            manifest=manifest,
            user_embeddings=array("user_embeddings"),
            item_embeddings=array("item_embeddings"),
            seen_indptr=array("seen_indptr"),
            seen_indices=array("seen_indices"),
            user_ids=ids("user_ids"),
            item_ids=ids("item_ids"),
        )
        exported._check(folder)
        if use_index and "index" in files:
            exported.index = read_index(folder / files["index"])
        return exported

    def _check(self, folder: Path) -> None:
        num_users, num_items = self.manifest["num_users"], self.manifest["num_items"]
        shapes = {
            "user_embeddings": (self.user_embeddings.shape, (num_users, self.manifest["dim"])),
            "item_embeddings": (self.item_embeddings.shape, (num_items, self.manifest["dim"])),
            "seen_indptr": (self.seen_indptr.shape, (num_users + 1,)),
        }
        for key, (found, expected) in shapes.items():
            if tuple(found) != expected:
                raise CheckpointError(f"{folder}: {key} has shape {found}, expected {expected}")
        for key, ids, count in (
            ("user_ids", self.user_ids, num_users),
            ("item_ids", self.item_ids, num_items),
        ):
            if ids is not None and len(ids) != count:
                raise CheckpointError(f"{folder}: {key} lists {len(ids)} ids, expected {count}")

    @property
    def num_users(self) -> int:
        return int(self.user_embeddings.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_embeddings.shape[0])

    def scores(self, users: np.ndarray) -> np.ndarray:
        """``[B, I]`` scores of every item for ``users [B]`` (seen items included)."""
        return self.user_embeddings[users] @ self.item_embeddings.T

    def recommend(self, users: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` unseen items per user, best first: from the index when there is one.

        Args:
            users: ``[B]`` user ids.
            k: list length.

        Returns:
            ``(scores [B, k], items [B, k])``; a user with fewer than ``k`` unseen items (or an
            approximate search that found fewer) is padded with score ``-inf`` and item ``-1``.
        """
        users = np.asarray(users, dtype=np.int64)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if users.size and not (users.min() >= 0 and users.max() < self.num_users):
            raise ConfigError(f"user ids must be in [0, {self.num_users})")
        k = min(k, self.num_items)
        blocks = [
            self._recommend_block(users[start : start + USER_BLOCK], k)
            for start in range(0, users.size, USER_BLOCK)
        ]
        if not blocks:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])

    def _recommend_block(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.seen_indptr[users], self.seen_indptr[users + 1]
        rows = np.repeat(np.arange(users.size), stop - start)
        seen = self.seen_indices[_ranges(start, stop)]
        if self.index is None:
            scores = self.scores(users)
            scores[rows, seen] = -np.inf
            return _top_k(scores, k)
        degree = stop - start
        # Ask for k more than most users here have seen (90th percentile), so that k unseen
        # items usually remain after dropping the seen ones; users with more seen items than
        # that and fewer than k left are asked again for k + their seen count. For a flat
        # index both give exactly the top-k unseen items.
        count = min(self.num_items, k + int(np.quantile(degree, 0.9)))
        scores, items = self._search_unseen(users, rows, seen, count, k)
        short = (items[:, -1] < 0) & (count < np.minimum(self.num_items, k + degree))
        if short.any():
            again = np.flatnonzero(short)
            count = min(self.num_items, k + int(degree[again].max()))
            keep = np.isin(rows, again)
            scores[again], items[again] = self._search_unseen(
                users[again], np.searchsorted(again, rows[keep]), seen[keep], count, k
            )
        return scores, items

    def _search_unseen(
        self, users: np.ndarray, rows: np.ndarray, seen: np.ndarray, count: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of the index's best ``count`` items per user after dropping the seen
        pairs ``(rows, seen)`` (``rows`` index ``users``); padded with ``-inf`` / ``-1``."""
        found_scores, found_items = search(self.index, self.user_embeddings[users], count)
        seen_keys = rows * self.num_items + seen
        keys = np.arange(users.size)[:, None] * self.num_items + found_items
        drop = np.isin(keys, seen_keys) | (found_items < 0)
        found_scores = np.where(drop, -np.inf, found_scores).astype(np.float32)
        found_items = np.where(drop, -1, found_items)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept first, rank order kept
        return (
            np.take_along_axis(found_scores, order, axis=1),
            np.take_along_axis(found_items, order, axis=1),
        )


def _ranges(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``concat(arange(start[b], stop[b]) for b)`` without a Python loop."""
    lengths = stop - start
    offsets = np.repeat(start - np.cumsum(lengths) + lengths, lengths)
    return np.arange(int(lengths.sum())) + offsets


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values [B, k], columns [B, k])`` of each row's ``k`` largest, best first; ``-inf``
    entries (seen items) come back as column ``-1``."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    return values, np.where(np.isneginf(values), -1, items)
