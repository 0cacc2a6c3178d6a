"""The dataset object every model, trainer and evaluator works on.

An :class:`InteractionDataset` wraps a PyG :class:`~torch_geometric.data.HeteroData` with

* node types ``user`` and ``item`` (``num_nodes`` set on both),
* the training interactions as edge type ``('user', 'interacts', 'item')`` and its reverse
  ``('item', 'rev_interacts', 'user')``,
* the valid / test interactions as label edges on the forward edge type
  (``valid_edge_label_index`` / ``test_edge_label_index``, each ``[2, num_edges]``),
* one frozen feature tensor per modality on ``item``, stored as ``x_<modality>``
  (``[num_items, dim]``, float32); any number of modalities, including none.

Derived views (per-user CSR item lists, a content fingerprint) are computed once and cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mmgraph.errors import DataError

USER = "user"
ITEM = "item"
INTERACTS = (USER, "interacts", ITEM)
REV_INTERACTS = (ITEM, "rev_interacts", USER)
SPLITS = ("train", "valid", "test")
FEATURE_PREFIX = "x_"

Split = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class CSR:
    """Compressed rows: the items of row ``r`` are ``indices[indptr[r]:indptr[r + 1]]``.

    Attributes:
        indptr: ``[num_rows + 1]`` int64 offsets.
        indices: ``[nnz]`` int64 column ids, sorted within each row.
    """

    indptr: Tensor
    indices: Tensor

    @property
    def num_rows(self) -> int:
        return self.indptr.numel() - 1

    def degree(self) -> Tensor:
        """``[num_rows]`` number of entries per row."""
        return self.indptr[1:] - self.indptr[:-1]

    def to(self, device: torch.device | str) -> CSR:
        return CSR(self.indptr.to(device), self.indices.to(device))

    def rows_of(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Entries of the given rows, vectorised.

        Args:
            rows: ``[B]`` row ids.

        Returns:
            ``(position, column)``, both ``[nnz_B]``: ``position`` indexes into ``rows``.
        """
        start = self.indptr[rows]
        count = self.indptr[rows + 1] - start
        position = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), count)
        # Offset of each entry inside its row: global index minus the row's first global index.
        first = torch.cumsum(count, 0) - count
        within = torch.arange(position.numel(), device=rows.device) - first[position]
        return position, self.indices[start[position] + within]


def build_csr(rows: Tensor, cols: Tensor, num_rows: int) -> CSR:
    """CSR of the pairs ``(rows[e], cols[e])``, columns sorted within each row.

    Args:
        rows: ``[E]`` row ids in ``[0, num_rows)``.
        cols: ``[E]`` column ids (non-negative).
        num_rows: number of rows.
    """
    rows = rows.long()
    cols = cols.long()
    if rows.numel():
        key = rows * (int(cols.max()) + 1) + cols
        order = torch.argsort(key)
        rows, cols = rows[order], cols[order]
    counts = torch.bincount(rows, minlength=num_rows)
    indptr = torch.zeros(num_rows + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(counts, 0)
    return CSR(indptr, cols.contiguous())


@dataclass
class InteractionDataset:
    """A user–item interaction dataset with optional item modality features.

    Build one with :meth:`from_interactions` (or a loader in :mod:`mmgraph.data`), not by
    filling a :class:`HeteroData` by hand.

    Attributes:
        data: the underlying heterogeneous graph (see the module docstring for its layout).
        name: a short human-readable name (``"tiktok"``, a folder name, ...).
        source: where the dataset came from (bundled name or folder path); recorded in
            checkpoints so that a model can be evaluated again later.
    """

    data: HeteroData
    name: str = "custom"
    source: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_interactions(
        cls,
        users: Tensor,
        items: Tensor,
        split: Tensor,
        features: Mapping[str, Tensor] | None = None,
        num_users: int | None = None,
        num_items: int | None = None,
        name: str = "custom",
        source: str | None = None,
    ) -> InteractionDataset:
        """Assemble a dataset from already validated interaction arrays.

        Args:
            users: ``[E]`` user ids (0-based).
            items: ``[E]`` item ids (0-based).
            split: ``[E]`` split labels, 0 = train, 1 = valid, 2 = test (MMRec ``x_label``).
            features: modality name -> ``[num_items, dim]`` float features.
            num_users: defaults to ``max(users) + 1``.
            num_items: defaults to ``max(items) + 1`` or the feature rows, whichever is larger.
            name: dataset name.
            source: bundled name or path the data came from.
        """
        features = dict(features or {})
        users, items, split = users.long(), items.long(), split.long()
        if num_users is None:
            num_users = int(users.max()) + 1 if users.numel() else 0
        if num_items is None:
            num_items = int(items.max()) + 1 if items.numel() else 0
            for feat in features.values():
                num_items = max(num_items, feat.size(0))
        for modality, feat in features.items():
            if feat.dim() != 2 or feat.size(0) != num_items:
                raise DataError(
                    f"features of modality {modality!r} have shape {tuple(feat.shape)}, "
                    f"expected [{num_items}, dim]"
                )
        data = HeteroData()
        data[USER].num_nodes = num_users
        data[ITEM].num_nodes = num_items
        train = split == 0
        data[INTERACTS].edge_index = torch.stack([users[train], items[train]])
        data[REV_INTERACTS].edge_index = torch.stack([items[train], users[train]])
        for label, split_name in ((1, "valid"), (2, "test")):
            mask = split == label
            data[INTERACTS][f"{split_name}_edge_label_index"] = torch.stack(
                [users[mask], items[mask]]
            )
        for modality, feat in features.items():
            data[ITEM][FEATURE_PREFIX + modality] = feat.float().contiguous()
        return cls(data=data, name=name, source=source)

    @classmethod
    def from_heterodata(
        cls,
        data: HeteroData,
        edge_type: tuple[str, str, str] | None = None,
        **kwargs: Any,
    ) -> InteractionDataset:
        """A dataset from a PyG ``HeteroData`` (user→item edges, optional item features).

        Delegates to :func:`mmgraph.data.pyg.heterodata_to_dataset` (see it for ``kwargs``:
        ``features``, ``time_attr``, ``split``, ``seed``, ``k_core``, ``cold_items``,
        ``name``). Unless the edge type already carries mmgraph's split (as ``dataset.data``
        does, which then round-trips exactly), its ``edge_index`` and ``edge_label_index``
        edges are merged and split with the MMRec protocol.
        """
        from mmgraph.data.pyg import heterodata_to_dataset  # pyg imports this module

        return heterodata_to_dataset(data, edge_type, **kwargs)

    # ------------------------------------------------------------------ basic views
    @property
    def num_users(self) -> int:
        return int(self.data[USER].num_nodes)

    @property
    def num_items(self) -> int:
        return int(self.data[ITEM].num_nodes)

    @property
    def modalities(self) -> list[str]:
        """Modality names in insertion order (``["audio", "image"]`` for TikTok: files in sorted order)."""
        return [
            key[len(FEATURE_PREFIX) :]
            for key in self.data[ITEM].keys()  # noqa: SIM118 (a storage, not a dict)
            if key.startswith(FEATURE_PREFIX)
        ]

    def features(self, modality: str) -> Tensor:
        """``[num_items, dim]`` frozen features of one modality."""
        key = FEATURE_PREFIX + modality
        if key not in self.data[ITEM]:
            raise DataError(
                f"dataset {self.name!r} has no modality {modality!r} (it has {self.modalities})"
            )
        return self.data[ITEM][key]

    def feature_dict(self) -> dict[str, Tensor]:
        """All modality features, ``{name: [num_items, dim]}``."""
        return {m: self.features(m) for m in self.modalities}

    def edge_index(self, split: Split = "train") -> Tensor:
        """``[2, num_edges]`` (user, item) pairs of one split."""
        if split == "train":
            return self.data[INTERACTS].edge_index
        if split in ("valid", "test"):
            return self.data[INTERACTS][f"{split}_edge_label_index"]
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")

    def num_interactions(self, split: Split = "train") -> int:
        return self.edge_index(split).size(1)

    def user_items(self, split: Split = "train") -> CSR:
        """Per-user sorted item lists of one split as a :class:`CSR` over users (cached)."""
        key = ("user_items", split)
        if key not in self._cache:
            edges = self.edge_index(split)
            self._cache[key] = build_csr(edges[0], edges[1], self.num_users)
        return self._cache[key]

    def eval_users(self, split: Split) -> Tensor:
        """``[num_eval_users]`` sorted ids of users with at least one item in ``split``."""
        return torch.nonzero(self.user_items(split).degree() > 0).flatten()

    @property
    def fingerprint(self) -> str:
        """SHA-256 over interactions (all splits) and features: identifies the exact data."""
        if "fingerprint" not in self._cache:
            digest = hashlib.sha256()
            digest.update(f"{self.num_users},{self.num_items}".encode())
            for split in SPLITS:
                digest.update(split.encode())
                digest.update(self.edge_index(split).contiguous().numpy().tobytes())
            for modality in self.modalities:
                digest.update(modality.encode())
                digest.update(self.features(modality).contiguous().numpy().tobytes())
            self._cache["fingerprint"] = digest.hexdigest()
        return self._cache["fingerprint"]

    def __repr__(self) -> str:
        sizes = "/".join(str(self.num_interactions(s)) for s in SPLITS)
        mods = ", ".join(f"{m}:{self.features(m).size(1)}" for m in self.modalities) or "none"
        return (
            f"InteractionDataset(name={self.name!r}, users={self.num_users}, "
            f"items={self.num_items}, train/valid/test={sizes}, modalities={mods})"
        )
