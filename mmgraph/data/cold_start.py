"""Item cold-start splits: hold out whole items, so valid/test items are never seen in training.

The usual MMRec split holds out interactions per user, so almost every test item also has
training rows and an ID embedding learns it. Content-based recommenders exist for the opposite
scenario: an item with no interaction history, known only by its features.
:func:`cold_item_labels` picks a random ``fraction`` of the items that occur in the rows and
moves *every* row of them to valid (the first half, ``len // 2`` items) or test (the rest):

* a held-out item has no training row at all;
* the valid and test cold items are disjoint, so a test cold item is unseen in training and
  never seen in valid either (tuning on valid cannot peek at the test items);
* every row of the other items keeps its old label (warm items still have per-user
  valid/test rows).

:func:`write_cold_item_split` applies it to a dataset folder (or bundled name) and writes a
plain MMRec folder plus ``cold_split.json``; ``mmgraph preprocess --cold-items`` applies it after
the usual split. Users whose every item was held out are left without a training row; the
loader drops their valid/test rows with a warning, and the report counts them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from importlib import resources
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from mmgraph.data.bundled import _bundle_root, list_bundled
from mmgraph.data.dataset import SPLITS
from mmgraph.data.mmrec import (
    FEATURE_SUFFIXES,
    _find_inter_file,
    _parse_header,
    _read_bytes,
    _read_inter,
)
from mmgraph.data.preprocess import _check_out_dir, _write_text
from mmgraph.errors import ConfigError, DataError

REPORT_FILE = "cold_split.json"


@dataclass
class ColdSplitReport:
    """What :func:`write_cold_item_split` did; also written as ``cold_split.json``.

    ``splits_before`` / ``splits_after`` count the rows per split (``train``, ``valid``,
    ``test``) of the interaction file, before the loader drops anything. ``users_without_train``
    counts the users that occur in the rows but have no training row after the split.
    """

    folder: str
    source: str
    fraction: float
    seed: int
    num_items: int  # items that occur in the rows (the population sampled from)
    cold_valid_items: int
    cold_test_items: int
    splits_before: dict[str, int] = field(default_factory=dict)
    splits_after: dict[str, int] = field(default_factory=dict)
    users_without_train: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the command line."""
        before = "/".join(str(self.splits_before[s]) for s in SPLITS)
        after = "/".join(str(self.splits_after[s]) for s in SPLITS)
        return (
            f"wrote {self.folder}: {self.cold_valid_items + self.cold_test_items} of "
            f"{self.num_items} items held out ({self.cold_valid_items} valid, "
            f"{self.cold_test_items} test); train/valid/test rows {before} -> {after}; "
            f"{self.users_without_train} user(s) without a training row"
        )


# ---------------------------------------------------------------------- labels
def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float, or a ConfigError unless it is a number in (0, 1)."""
    ok = isinstance(fraction, Real) and not isinstance(fraction, bool)
    if not ok or not math.isfinite(fraction) or not 0 < fraction < 1:
        raise ConfigError(
            f"the cold-item fraction (--cold-items / --fraction) must be a number strictly "
            f"between 0 and 1, got {fraction!r}"
        )
    return float(fraction)


def cold_item_labels(
    users: np.ndarray,
    items: np.ndarray,
    labels: np.ndarray,
    num_items: int,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel the rows so that a random ``fraction`` of the items are cold in valid or test.

    With ``numpy.random.default_rng(seed)``, ``round(fraction * n)`` of the ``n`` distinct items
    of ``items`` are drawn uniformly without replacement, in random order; the first
    ``len // 2`` of them are the valid cold items and the rest the test cold items. Every row
    of a valid (test) cold item gets ``x_label`` 1 (2) whatever its old label; every other row
    keeps its label.

    Args:
        users: ``[num_rows]`` user ids (only checked to align with ``items``; the split is per
            item, not per user).
        items: ``[num_rows]`` item ids in ``[0, num_items)``.
        labels: ``[num_rows]`` ``x_label`` values 0/1/2 (train/valid/test).
        num_items: number of item ids.
        fraction: share of the occurring items to hold out, in (0, 1).
        seed: seed of the draw.

    Returns:
        ``(new_labels [num_rows], cold_valid_items [v], cold_test_items [t])``, int64; the item
        arrays are sorted, disjoint and ``v + t == round(fraction * n)``.

    Raises:
        ConfigError: ``fraction`` not in (0, 1), or so small that no item is held out, or so
            large that no training row is left.
        DataError: misaligned arrays or item ids outside ``[0, num_items)``.
    """
    fraction = check_fraction(fraction)
    users, items, labels = (np.asarray(a).reshape(-1) for a in (users, items, labels))
    if not users.size == items.size == labels.size:
        raise DataError(
            f"users, items and labels must align, got {users.size}, {items.size} and "
            f"{labels.size} rows"
        )
    if items.size and (items.min() < 0 or items.max() >= num_items):
        raise DataError(f"item ids must be in [0, {num_items}), got {items.min()}..{items.max()}")
    present = np.unique(items)
    if not present.size:
        raise DataError("there are no interactions to split")
    count = round(fraction * present.size)
    if count == 0:
        raise ConfigError(
            f"the cold-item fraction {fraction} holds out no item: round({fraction} * "
            f"{present.size} items) is 0; use a larger fraction"
        )
    held = np.random.default_rng(seed).permutation(present)[:count]
    cold_valid, cold_test = np.sort(held[: count // 2]), np.sort(held[count // 2 :])

    role = np.zeros(num_items, dtype=np.int64)  # 0 = warm, else the forced label
    role[cold_valid], role[cold_test] = 1, 2
    forced = role[items]
    new_labels = np.where(forced > 0, forced, labels).astype(np.int64)
    if not (new_labels == 0).any():
        raise ConfigError(
            f"the cold-item fraction {fraction} leaves no training row: the {count} held-out "
            f"item(s) of {present.size} cover every training interaction; use a smaller fraction"
        )
    return new_labels, cold_valid, cold_test


def split_sizes(labels: np.ndarray) -> dict[str, int]:
    """``{"train": rows, "valid": rows, "test": rows}`` of ``labels [num_rows]``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(SPLITS))
    return {split: int(counts[i]) for i, split in enumerate(SPLITS)}


def users_without_train(users: np.ndarray, labels: np.ndarray) -> int:
    """Number of distinct users of ``users [num_rows]`` with no row labelled 0 (train)."""
    return int(np.setdiff1d(users, users[labels == 0]).size)


# ---------------------------------------------------------------------- folders
def write_cold_item_split(
    source: str | os.PathLike,
    out: str | os.PathLike,
    fraction: float,
    seed: int = 2024,
    overwrite: bool = False,
) -> ColdSplitReport:
    """Write a copy of a dataset whose valid/test hold out whole items (see the module doc).

    The interaction file keeps its name (``<name>.inter``, written uncompressed), its columns
    and row order; only ``x_label`` changes (see :func:`cold_item_labels`). Every other file at
    the top of the source folder is copied, ``<modality>_feat.npy.gz`` decompressed to
    ``<modality>_feat.npy``; subfolders are not copied. ``cold_split.json`` records the report.

    Args:
        source: a dataset folder, or the name of a bundled dataset (a string naming a bundled
            dataset means that dataset, as in :func:`~mmgraph.data.load_dataset`).
        out: the folder to write (created; must not hold a dataset unless ``overwrite``).
        fraction: share of the items occurring in the rows to hold out, in (0, 1).
        seed: seed of the draw.
        overwrite: replace the dataset files of an existing folder.

    Returns:
        A :class:`ColdSplitReport`.

    Raises:
        ConfigError: a bad fraction, ``out`` is the source or already holds a dataset.
        DataError: the source is missing or its interaction file is malformed.
    """
    fraction = check_fraction(fraction)
    label, context = _source_folder(source)
    with context as folder:
        folder = Path(folder)
        out_dir = Path(out)
        if out_dir.resolve() == folder.resolve():
            raise ConfigError(f"{out_dir}: the output folder is the source folder; choose another")
        inter_path = _find_inter_file(folder)
        users, items, labels = _read_inter(inter_path)
        header, lines = _inter_lines(inter_path, users.size)
        num_items = int(items.max()) + 1 if items.size else 0
        new_labels, cold_valid, cold_test = cold_item_labels(
            users, items, labels, num_items, fraction, seed
        )

        _check_out_dir(out_dir, overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        column = _parse_header(inter_path, header)[1][2]
        inter_name = inter_path.name.removesuffix(".gz")
        _write_text(out_dir / inter_name, _relabelled(header, lines, column, labels, new_labels))
        _copy_other_files(folder, inter_path, out_dir)

    report = ColdSplitReport(
        folder=str(out_dir.resolve()),
        source=label,
        fraction=fraction,
        seed=seed,
        num_items=int(np.unique(items).size),
        cold_valid_items=int(cold_valid.size),
        cold_test_items=int(cold_test.size),
        splits_before=split_sizes(labels),
        splits_after=split_sizes(new_labels),
        users_without_train=users_without_train(users, new_labels),
    )
    _write_text(out_dir / REPORT_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _source_folder(source: str | os.PathLike) -> tuple[str, AbstractContextManager[Path]]:
    """``(label for the report, context manager giving the folder path)``."""
    bundled = list_bundled()
    if isinstance(source, str) and source in bundled:
        return source, resources.as_file(_bundle_root() / source)
    path = Path(source)
    if not path.is_dir():
        raise DataError(
            f"{os.fspath(source)}: neither a bundled dataset "
            f"({', '.join(bundled) or 'none are installed'}) nor an existing folder"
        )
    return str(path.resolve()), nullcontext(path)


def _inter_lines(path: Path, num_rows: int) -> tuple[str, list[str]]:
    """``(header, [num_rows] body lines)`` of an interaction file already checked by
    :func:`~mmgraph.data.mmrec._read_inter` (same line rules: BOM, CRLF, trailing blanks)."""
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: is not UTF-8 text: {err}") from None
    lines = text.replace("\r\n", "\n").rstrip("\r\n").split("\n")
    if len(lines) - 1 != num_rows:  # unreachable for a file _read_inter accepted
        raise DataError(f"{path}: expected {num_rows} interaction lines, found {len(lines) - 1}")
    return lines[0].rstrip("\r"), lines[1:]


def _relabelled(
    header: str, lines: list[str], column: int, old: np.ndarray, new: np.ndarray
) -> str:
    """The file's text with field ``column`` (``x_label``) of the changed rows replaced."""
    lines = list(lines)
    for row in np.flatnonzero(old != new).tolist():
        fields = lines[row].split("\t")
        fields[column] = str(new[row])
        lines[row] = "\t".join(fields)
    return "\n".join([header, *lines]) + "\n"


def _copy_other_files(folder: Path, inter_path: Path, out: Path) -> None:
    """Copy the source's files except the interaction file; gunzip the feature files."""
    written: dict[str, str] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path == inter_path or not path.is_file():
            continue
        gzipped_feature = path.name.endswith(FEATURE_SUFFIXES[1])
        target = path.name.removesuffix(".gz") if gzipped_feature else path.name
        if target in written:
            raise DataError(
                f"{folder}: both {written[target]} and {path.name} would be written as {target}"
            )
        written[target] = path.name
        if gzipped_feature:
            (out / target).write_bytes(_read_bytes(path))
        else:
            shutil.copyfile(path, out / target)  # not copy2: a read-only source mode
