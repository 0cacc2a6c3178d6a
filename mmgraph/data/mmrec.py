"""Reading a dataset folder in the MMRec layout.

A folder holds

* exactly one ``<name>.inter`` (or ``<name>.inter.gz``): tab-separated, a header naming at least
  ``userID``, ``itemID`` and ``x_label`` (any order; ``rating``, ``timestamp`` and other columns
  are ignored), one interaction per line, 0-based ids, ``x_label`` 0/1/2 = train/valid/test;
* any number of ``<modality>_feat.npy`` (or ``.npy.gz``): ``[num_items, dim]`` numeric arrays
  whose row ``i`` describes item ``i``.

Every problem is reported as a one-line :class:`~mmgraph.errors.DataError` that names the file
and, where there is one, the line. Repairable problems (duplicate pairs, valid/test rows of users
without training data) are fixed and reported with a :class:`~mmgraph.errors.DataWarning`.

The interaction table is parsed with vectorised numpy over the raw bytes (in slices of
``_CHUNK_BYTES``), so files with tens of millions of rows load in seconds with bounded memory;
a per-token Python pass runs only to pinpoint a malformed value.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from mmgraph.data.dataset import ITEM, SPLITS, USER, InteractionDataset
from mmgraph.data.preprocess import (
    ITEM_MAP,
    USER_MAP,
    _check_out_dir,
    _write_id_map,
    _write_text,
)
from mmgraph.errors import DataError, DataWarning

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
INTER_SUFFIXES = (".inter", ".inter.gz")
FEATURE_SUFFIXES = ("_feat.npy", "_feat.npy.gz")

_CHUNK_BYTES = 1 << 25
_MAX_DIGITS = 18  # any 18-digit decimal fits in int64
_INTEGER = re.compile(rb"\s*[+-]?[0-9]+\s*")
_NON_SPACE = re.compile(rb"\S")
_TAB, _NEWLINE, _ZERO = 9, 10, 48


def load_mmrec(
    folder: str | os.PathLike,
    name: str | None = None,
    *,
    drop_cold_users: bool = True,
) -> InteractionDataset:
    """Load and validate an MMRec-layout folder.

    Args:
        folder: the dataset folder.
        name: dataset name recorded on the result; defaults to the folder's name.
        drop_cold_users: drop valid/test rows of users that have no training row (MMRec's
            ``filter_out_cod_start_users``), with a warning.

    Returns:
        The dataset, ``source`` set to the absolute folder path. ``num_users`` is the largest
        ``userID`` + 1 and ``num_items`` the feature rows (or the largest ``itemID`` + 1 without
        features), both over all rows of the file, dropped ones included.

    Raises:
        DataError: for any missing or malformed file (see the module docstring).
    """
    return _load(Path(folder), name, drop_cold_users, stacklevel=3)


def _load(
    folder: Path, name: str | None, drop_cold_users: bool, stacklevel: int
) -> InteractionDataset:
    """:func:`load_mmrec` with the warning ``stacklevel`` of the public caller's caller."""
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder does not exist or is not a folder")
    inter_path = _find_inter_file(folder)
    users, items, labels = _read_inter(inter_path)
    features = _read_features(_find_feature_files(folder))
    num_users = int(users.max()) + 1 if users.size else 0
    num_items = _count_items(inter_path, items, features)

    keep, dropped, first_line = _first_of_duplicates(users, items, labels, num_items)
    if dropped:
        warnings.warn(
            f"{inter_path}: dropped {dropped} duplicate (userID, itemID) row(s), first at line "
            f"{first_line}; kept per pair the row with the lowest x_label "
            "(train, then valid, then test), then the earliest",
            DataWarning,
            stacklevel=stacklevel,
        )
        users, items, labels = users[keep], items[keep], labels[keep]

    _require_split(inter_path, labels, 0, "")
    after = ""
    if drop_cold_users:
        cold = _cold_rows(users, labels, num_users)
        if cold.any():
            warnings.warn(
                f"{inter_path}: dropped {int(cold.sum())} valid/test row(s) of "
                f"{np.unique(users[cold]).size} user(s) with no training interaction",
                DataWarning,
                stacklevel=stacklevel,
            )
            users, items, labels = users[~cold], items[~cold], labels[~cold]
            after = " after dropping users with no training interaction"
    _require_split(inter_path, labels, 1, after)
    _require_split(inter_path, labels, 2, after)

    return InteractionDataset.from_interactions(
        torch.from_numpy(users),
        torch.from_numpy(items),
        torch.from_numpy(labels),
        features={m: torch.from_numpy(f) for m, (_, f) in features.items()},
        num_users=num_users,
        num_items=num_items,
        name=name or folder.resolve().name,
        source=str(folder.resolve()),
    )


# ---------------------------------------------------------------------- files
def _find_inter_file(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.name.endswith(INTER_SUFFIXES) and p.is_file())
    if not found:
        raise DataError(f"{folder}: no interaction file (<name>.inter or <name>.inter.gz) found")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{folder}: more than one interaction file ({names}); keep exactly one")
    return found[0]


def _find_feature_files(folder: Path) -> dict[str, Path]:
    """``{modality: path}`` of the ``*_feat.npy[.gz]`` files, in sorted filename order."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        suffix = next((s for s in FEATURE_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or not path.is_file():
            continue
        modality = path.name[: -len(suffix)]
        if not modality:
            raise DataError(f"{path}: feature file has no modality name (<modality>_feat.npy)")
        if modality in found:
            raise DataError(
                f"{folder}: modality {modality!r} has two feature files "
                f"({found[modality].name} and {path.name}); keep one"
            )
        found[modality] = path
    return found


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when the name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read: {err}") from err


# ---------------------------------------------------------------------- interactions
def _read_inter(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse and validate an ``.inter`` file.

    Returns:
        ``(users, items, labels)``, each ``[num_rows]`` int64; row ``r`` is line ``r + 2``.
    """
    raw = _read_bytes(path)
    start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    if not _NON_SPACE.search(raw, start):
        raise DataError(
            f"{path}: file is empty; expected a tab-separated header with "
            f"{', '.join(REQUIRED_COLUMNS)} and one interaction per line"
        )
    header_end = raw.find(b"\n", start)
    header_end = len(raw) if header_end < 0 else header_end
    header = raw[start:header_end].decode("utf-8", errors="replace").rstrip("\r")
    columns = _parse_header(path, header)

    stop = len(raw)
    while stop > header_end and raw[stop - 1] in b"\r\n":  # ignore trailing blank lines
        stop -= 1
    users, items, labels = _parse_body(raw, header_end + 1, stop, columns, path)
    _check_non_negative(path, "userID", users)
    _check_non_negative(path, "itemID", items)
    bad = np.flatnonzero((labels < 0) | (labels > 2))
    if bad.size:
        raise DataError(
            f"{path}: line {bad[0] + 2}: x_label must be 0 (train), 1 (valid) or 2 (test), "
            f"got {labels[bad[0]]}"
        )
    return users, items, labels


def _parse_header(path: Path, header: str) -> tuple[int, list[int]]:
    """``(number of fields, [index of userID, itemID, x_label])`` from the header line."""
    names = [name.strip() for name in header.split("\t")]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        hint = ""
        if len(names) == 1 and any(sep in header for sep in ", ;|"):
            hint = "; columns must be separated by tabs"
        raise DataError(
            f"{path}: line 1: header lacks required column(s) {', '.join(missing)} "
            f"(header is {_shorten(header.encode())}){hint}"
        )
    repeated = [c for c in REQUIRED_COLUMNS if names.count(c) > 1]
    if repeated:
        raise DataError(f"{path}: line 1: header repeats column(s) {', '.join(repeated)}")
    return len(names), [names.index(c) for c in REQUIRED_COLUMNS]


def _parse_body(
    raw: bytes, start: int, stop: int, columns: tuple[int, list[int]], path: Path
) -> list[np.ndarray]:
    """The wanted integer columns of the lines in ``raw[start:stop]``, each ``[num_rows]``."""
    num_fields, wanted = columns
    parts: list[list[np.ndarray]] = [[] for _ in wanted]
    first_row = 0
    while start < stop:
        end = raw.find(b"\n", min(start + _CHUNK_BYTES, stop), stop)
        end = stop if end < 0 else end
        chunk = raw[start:end]
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = np.frombuffer(chunk, dtype=np.uint8)
        bounds = _field_bounds(data, num_fields, first_row, path)
        for slot, column in enumerate(wanted):
            starts = bounds[column:-1:num_fields] + 1
            ends = bounds[column + 1 :: num_fields]
            parts[slot].append(
                _parse_integers(data, starts, ends, first_row, path, REQUIRED_COLUMNS[slot])
            )
        first_row += (bounds.size - 1) // num_fields
        start = end + 1
    return [np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _field_bounds(data: np.ndarray, num_fields: int, first_row: int, path: Path) -> np.ndarray:
    """Separator offsets of a slice of whole lines: field ``k`` is ``(b[k] + 1, b[k + 1])``.

    Returns:
        ``[num_lines * num_fields + 1]`` int64 byte offsets, starting with ``-1`` and ending
        with ``data.size``; fields are numbered row-major.

    Raises:
        DataError: when a line does not have ``num_fields`` tab-separated fields.
    """
    candidates = np.flatnonzero(data <= _NEWLINE)  # one comparison pass instead of two
    bounds = np.concatenate(([-1], candidates[data[candidates] >= _TAB], [data.size]))
    # Index (in field numbering) of each line's last field, then fields per line.
    last_field = np.flatnonzero(data[bounds[1:-1]] == _NEWLINE)
    last_field = np.concatenate((last_field, [bounds.size - 2]))
    per_line = np.diff(last_field, prepend=-1)
    bad = np.flatnonzero(per_line != num_fields)
    if bad.size:
        line = int(bad[0])
        text = data.tobytes().split(b"\n")[line]  # error path only
        what = "is empty" if not text.strip() else f"has {per_line[line]} field(s)"
        raise DataError(
            f"{path}: line {first_row + line + 2} {what}, expected {num_fields} "
            f"tab-separated fields as in the header (line is {_shorten(text)})"
        )
    return bounds


def _parse_integers(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    first_row: int,
    path: Path,
    column: str,
) -> np.ndarray:
    """``[num_rows]`` int64 values of one column given its fields' byte offsets."""
    lengths = ends - starts
    width = min(int(lengths.max()) if lengths.size else 0, _MAX_DIGITS)
    bad = (lengths == 0) | (lengths > _MAX_DIGITS)
    values = np.zeros(starts.size, dtype=np.int64)
    # Right-align every field to `width` digits; the missing leading digits count as zeros.
    for back in range(width, 0, -1):
        digit = (data[ends - back] - _ZERO) * (lengths >= back)  # uint8: non-digits wrap past 9
        bad |= digit > 9
        values = values * 10 + digit
    if not bad.any():
        return values
    # Rare path: signs, spaces or garbage; parse the flagged fields one by one.
    for row in np.flatnonzero(bad):
        text = bytes(data[starts[row] : ends[row]])
        number = int(text) if _INTEGER.fullmatch(text) else None
        if number is None or not -(2**63) <= number < 2**63:
            raise DataError(
                f"{path}: line {first_row + row + 2}: {column} must be an integer, "
                f"got {_shorten(text)}"
            )
        values[row] = number
    return values


def _shorten(text: bytes, limit: int = 80) -> str:
    """``repr`` of a field or line for an error message, cut to about ``limit`` characters."""
    shown = repr(text[:limit].decode("utf-8", errors="replace"))
    return shown + "..." if len(text) > limit else shown


def _check_non_negative(path: Path, column: str, values: np.ndarray) -> None:
    """Raise on the first negative id; row ``r`` is line ``r + 2``."""
    bad = np.flatnonzero(values < 0)
    if bad.size:
        raise DataError(
            f"{path}: line {bad[0] + 2}: {column} must be a non-negative integer, "
            f"got {values[bad[0]]}"
        )


def _count_items(
    inter_path: Path, items: np.ndarray, features: dict[str, tuple[Path, np.ndarray]]
) -> int:
    """Number of items: the feature rows when there are features, else max ``itemID`` + 1."""
    if not features:
        return int(items.max()) + 1 if items.size else 0
    feature_path, table = next(iter(features.values()))
    num_items = table.shape[0]
    bad = np.flatnonzero(items >= num_items)
    if bad.size:
        raise DataError(
            f"{inter_path}: line {bad[0] + 2}: itemID {items[bad[0]]} has no feature row; "
            f"{feature_path.name} has {num_items} rows (item ids 0..{num_items - 1})"
        )
    return num_items


# ---------------------------------------------------------------------- repairs
def _first_of_duplicates(
    users: np.ndarray, items: np.ndarray, labels: np.ndarray, num_items: int
) -> tuple[np.ndarray, int, int]:
    """Rows to keep when (user, item) pairs repeat: lowest ``x_label``, then earliest row.

    Returns:
        ``(keep, num_dropped, first dropped line)``; ``keep`` is ``[num_kept]`` sorted row ids.
    """
    rows = np.arange(users.size)
    if not users.size:
        return rows, 0, 0
    # Order by (user, item, x_label, row): the first row of each pair is the one to keep.
    if (int(users.max()) + 1) * num_items * 3 < 2**62:
        order = np.argsort((users * num_items + items) * 3 + labels, kind="stable")
    else:
        order = np.lexsort((rows, labels, items, users))
    u, i = users[order], items[order]
    first = np.ones(users.size, dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    if first.all():
        return rows, 0, 0
    dropped = order[~first]
    return np.sort(order[first]), dropped.size, int(dropped.min()) + 2


def _cold_rows(users: np.ndarray, labels: np.ndarray, num_users: int) -> np.ndarray:
    """``[num_rows]`` mask of valid/test rows whose user has no training row."""
    has_train = np.zeros(num_users, dtype=bool)
    has_train[users[labels == 0]] = True
    return (labels != 0) & ~has_train[users]


def _require_split(path: Path, labels: np.ndarray, label: int, after: str) -> None:
    if not (labels == label).any():
        raise DataError(
            f"{path}: the {SPLITS[label]} split is empty (no rows with x_label {label}{after})"
        )


# ---------------------------------------------------------------------- features
def _read_features(paths: dict[str, Path]) -> dict[str, tuple[Path, np.ndarray]]:
    """Load every feature file; all must have the same number of rows.

    Returns:
        ``{modality: (path, [num_items, dim] float32 array)}`` in the order of ``paths``.
    """
    features = {modality: (path, _read_feature(path)) for modality, path in paths.items()}
    if features:
        first_path, first = next(iter(features.values()))
        for path, table in features.values():
            if table.shape[0] != first.shape[0]:
                raise DataError(
                    f"feature files disagree on the number of items: {first_path} has "
                    f"{first.shape[0]} rows, {path} has {table.shape[0]}"
                )
    return features


def _read_feature(path: Path) -> np.ndarray:
    """``[num_items, dim]`` float32 table of one ``*_feat.npy[.gz]`` file, validated."""
    raw = _read_bytes(path)
    try:
        table = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array: {err}") from err
    if not isinstance(table, np.ndarray):
        raise DataError(f"{path}: is an .npz archive; expected a single .npy array")
    if table.dtype.kind not in "biuf":
        raise DataError(f"{path}: features must be numeric, got dtype {table.dtype}")
    if table.ndim != 2 or table.shape[1] == 0:
        raise DataError(
            f"{path}: features must be a 2-D array [num_items, dim >= 1], got shape {table.shape}"
        )
    with np.errstate(over="ignore"):
        table = table.astype(np.float32)
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        what = "NaN" if np.isnan(table[row]).any() else "an infinite value (or beyond float32)"
        raise DataError(f"{path}: row {row} (item {row}, 0-based) contains {what}")
    return table


# ---------------------------------------------------------------------- writing
def write_mmrec(
    dataset: InteractionDataset, out_dir: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write ``dataset`` as an MMRec-layout folder that :func:`load_mmrec` reads back equal.

    The folder gets ``<name>.inter`` (``userID itemID x_label``: train, then valid, then test
    rows in the dataset's order), one ``<modality>_feat.npy`` per modality and, when the
    dataset keeps its input node ids (``data['user'].node_id`` / ``data['item'].node_id``,
    as :func:`~mmgraph.data.heterodata_to_dataset` sets), the id maps ``u_id_mapping.csv`` /
    ``i_id_mapping.csv`` with those ids as raw ids. This gives a dataset built in Python
    (from a ``HeteroData``, say) a folder that ``mmgraph train --dataset`` and the checkpoints
    of its runs can name.

    Returns:
        The folder.

    Raises:
        DataError: the folder could not describe the dataset exactly (a user without any
            interaction after the last one that has some, or the same for items without
            features: the loader counts users and items from the rows).
        ConfigError: the folder holds a dataset and ``overwrite`` is not set.
    """
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    parts = [dataset.edge_index(split) for split in SPLITS]
    edges = torch.cat(parts, dim=1)
    if dataset.num_users and (not edges.numel() or int(edges[0].max()) + 1 != dataset.num_users):
        raise DataError(
            f"dataset {dataset.name!r}: its last users have no interaction, so an .inter file "
            "cannot keep num_users; re-index the users first"
        )
    if not dataset.modalities and int(edges[1].max()) + 1 != dataset.num_items:
        raise DataError(
            f"dataset {dataset.name!r}: its last items have no interaction and there are no "
            "features, so an .inter file cannot keep num_items; re-index the items first"
        )
    labels = torch.cat([torch.full((p.size(1),), i) for i, p in enumerate(parts)])
    out.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label"] + [
        f"{u}\t{i}\t{label}" for u, i, label in zip(*edges.tolist(), labels.tolist(), strict=True)
    ]
    _write_text(out / f"{dataset.name}.inter", "\n".join(lines) + "\n")
    for modality, features in dataset.feature_dict().items():
        np.save(out / f"{modality}_feat.npy", features.numpy())
    node_ids = [dataset.data[kind].get("node_id") for kind in (USER, ITEM)]
    if all(ids is not None for ids in node_ids):
        _write_id_map(out / USER_MAP, "user_id", "userID", [str(i) for i in node_ids[0].tolist()])
        _write_id_map(out / ITEM_MAP, "item_id", "itemID", [str(i) for i in node_ids[1].tolist()])
    return out
