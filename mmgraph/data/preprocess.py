"""From a raw ratings table to a dataset folder in the MMRec layout.

:func:`preprocess` reads a table of (user, item[, rating][, timestamp]) rows with raw ids of any
form (strings such as Amazon's ``A1HK2FQW6KXQB2``), then follows the MMRec preprocessing
(``../shared/reference/peers.md`` §2):

1. drop repeated (user, item) pairs, keeping the earliest (by timestamp when there is one,
   then by row), since every remaining row is one implicit positive;
2. iterative ``k``-core: remove users and items with fewer than ``k`` interactions until every
   remaining user and item has at least ``k``;
3. re-index users and items ``0..N-1`` in order of first appearance and write the id maps
   ``u_id_mapping.csv`` (``user_id  userID``) and ``i_id_mapping.csv`` (``item_id  itemID``);
4. split each user's interactions: a user with ``n < 10`` gives 1 to valid and 1 to test, else
   ``vt = int(0.2 n)`` rows of which ``vt // 2`` go to valid and the rest to test. ``"random"``
   picks them by a seeded shuffle (MMRec's rule); ``"chronological"`` takes the latest ones,
   valid before test. Users with fewer than 3 interactions (only possible with ``k < 3``) keep
   all of them in train;
5. optionally (``cold_items``), an item cold-start split on top: every row of a random share
   of the items moves to valid or test (:func:`mmgraph.data.cold_start.cold_item_labels`).

The folder gets ``<name>.inter`` and, for item features given aligned by raw item id,
``<modality>_feat.npy`` with row ``i`` = new item ``i``; it loads with
:func:`mmgraph.data.load_dataset`. pandas is optional: it is imported only for a DataFrame
or a Parquet file.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmgraph.errors import ConfigError, DataError, DataWarning

USER_MAP = "u_id_mapping.csv"
ITEM_MAP = "i_id_mapping.csv"
SPLIT_METHODS = ("random", "chronological")
MISSING_FEATURES = ("error", "mean", "zero")

#: ``(raw item ids [n], features [n, dim])`` or ``{raw item id: [dim] vector}``.
FeatureSource = tuple[Sequence[Any], Any] | Mapping[Any, Any]
#: ``(raw user ids, raw item ids)``, each indexed by the 0-based id.
RawIds = tuple[list[str], list[str]]


@dataclass
class PreprocessReport:
    """What :func:`preprocess` did: row counts at each step and the folder it wrote."""

    folder: str
    rows_read: int
    duplicates_dropped: int
    rows_after_k_core: int
    num_users: int
    num_items: int
    splits: dict[str, int] = field(default_factory=dict)
    modalities: dict[str, int] = field(default_factory=dict)
    cold_items: float | None = None
    cold_valid_items: int = 0
    cold_test_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Table:
    """Columns of a ratings table (rows in input order); ids are raw strings."""

    source: str
    users: np.ndarray  # [n] str
    items: np.ndarray  # [n] str
    ratings: np.ndarray | None  # [n] str, written back verbatim
    timestamps: np.ndarray | None  # [n] str, written back verbatim
    order_keys: np.ndarray | None  # [n] float64 parsed timestamps


def preprocess(
    ratings: str | os.PathLike | Any,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    user_col: str | int = "userID",
    item_col: str | int = "itemID",
    rating_col: str | int | None = "rating",
    timestamp_col: str | int | None = "timestamp",
    sep: str | None = None,
    header: bool = True,
    k_core: int = 5,
    split: str = "random",
    seed: int = 2024,
    cold_items: float | None = None,
    item_features: Mapping[str, FeatureSource] | None = None,
    missing_features: str = "error",
    overwrite: bool = False,
) -> PreprocessReport:
    """Turn a ratings table into an MMRec-layout dataset folder.

    Args:
        ratings: a CSV/TSV file (``.gz`` allowed), a Parquet file (needs pandas and pyarrow),
            or a pandas DataFrame.
        out_dir: the folder to write (created; must not hold a dataset unless ``overwrite``).
        name: the ``<name>.inter`` file name; defaults to the folder's name.
        user_col, item_col: column names, or 0-based positions when ``header=False``.
        rating_col, timestamp_col: optional columns, kept verbatim in the ``.inter`` file. The
            defaults (``"rating"``, ``"timestamp"``) are used only when the table has them; a
            column named explicitly must exist. ``None`` ignores the column.
        sep: field separator; by default ``","`` for ``.csv`` and a tab otherwise.
        header: whether the file's first line names the columns.
        k_core: minimum interactions per user and per item (1 keeps everything).
        split: ``"random"`` (MMRec's per-user rule, seeded) or ``"chronological"`` (each
            user's latest interactions go to valid/test; needs a timestamp column).
        seed: seed of the random split and of the cold items.
        cold_items: if given, the share of the items (in (0, 1)) whose rows all move to valid
            or test after the split, so they have no training row (item cold start).
        item_features: ``{modality: source}``, each source either ``(raw_item_ids, array
            [n, dim])`` or ``{raw_item_id: vector}``; raw ids are compared as strings.
        missing_features: what an item without a feature row gets: ``"error"``, the
            modality's ``"mean"`` row (MMRec's choice for images) or ``"zero"``.
        overwrite: replace the files of an existing dataset folder.

    Returns:
        A :class:`PreprocessReport`.

    Raises:
        DataError: a malformed or unreadable table or feature source, or nothing left.
        ConfigError: an invalid option (unknown split method, ``k_core < 1``, ...).
    """
    if split not in SPLIT_METHODS:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_METHODS)}, got {split!r}")
    if missing_features not in MISSING_FEATURES:
        raise ConfigError(
            f"missing_features must be one of {', '.join(MISSING_FEATURES)}, "
            f"got {missing_features!r}"
        )
    if not isinstance(k_core, int) or k_core < 1:
        raise ConfigError(f"k_core must be an integer >= 1, got {k_core!r}")
    # Imported here: cold_start builds on this module's writers.
    from mmgraph.data.cold_start import check_fraction, cold_item_labels

    if cold_items is not None:
        check_fraction(cold_items)
    out = Path(out_dir)
    _check_out_dir(out, overwrite)

    columns = {"user": user_col, "item": item_col, "rating": rating_col, "time": timestamp_col}
    table = read_ratings(ratings, columns, sep=sep, header=header)
    if split == "chronological" and table.timestamps is None:
        raise ConfigError(
            f"{table.source}: the chronological split needs a timestamp column "
            f"(timestamp_col={timestamp_col!r} is not in the table)"
        )
    rows_read = table.users.size
    if not rows_read:
        raise DataError(f"{table.source}: the table has no rows")

    user_codes = _codes(table.users)
    item_codes = _codes(table.items)
    keep = _first_of_pairs(user_codes, item_codes, table.order_keys)
    duplicates = rows_read - keep.size
    if duplicates:
        warnings.warn(
            f"{table.source}: dropped {duplicates} repeated (user, item) row(s), kept the "
            "earliest of each pair",
            DataWarning,
            stacklevel=2,
        )
    keep = keep[k_core_mask(user_codes[keep], item_codes[keep], k_core)]
    if not keep.size:
        raise DataError(
            f"{table.source}: no interactions left after the {k_core}-core filter "
            f"({rows_read} rows read); lower k_core"
        )

    raw_users, users = _first_appearance(table.users[keep])
    raw_items, items = _first_appearance(table.items[keep])
    times = table.order_keys[keep] if table.order_keys is not None else None
    labels = split_labels(users, times, method=split, seed=seed)
    cold_valid = cold_test = np.zeros(0, dtype=np.int64)
    if cold_items is not None:
        labels, cold_valid, cold_test = cold_item_labels(
            users, items, labels, len(raw_items), cold_items, seed
        )
    features = {
        modality: _align_features(modality, source, raw_items, missing_features)
        for modality, source in (item_features or {}).items()
    }

    out.mkdir(parents=True, exist_ok=True)
    name = name or out.resolve().name
    _write_inter(out / f"{name}.inter", table, keep, users, items, labels)
    _write_id_map(out / USER_MAP, "user_id", "userID", raw_users)
    _write_id_map(out / ITEM_MAP, "item_id", "itemID", raw_items)
    for modality, array in features.items():
        np.save(out / f"{modality}_feat.npy", array)
    return PreprocessReport(
        folder=str(out.resolve()),
        rows_read=rows_read,
        duplicates_dropped=duplicates,
        rows_after_k_core=int(keep.size),
        num_users=len(raw_users),
        num_items=len(raw_items),
        splits={s: int((labels == i).sum()) for i, s in enumerate(("train", "valid", "test"))},
        modalities={m: int(a.shape[1]) for m, a in features.items()},
        cold_items=cold_items,
        cold_valid_items=int(cold_valid.size),
        cold_test_items=int(cold_test.size),
    )


# ---------------------------------------------------------------------- reading
def read_ratings(
    ratings: str | os.PathLike | Any,
    columns: Mapping[str, str | int | None],
    *,
    sep: str | None = None,
    header: bool = True,
) -> _Table:
    """The user/item/rating/timestamp columns of a file or DataFrame (see :func:`preprocess`)."""
    if _is_dataframe(ratings):
        return _from_dataframe(ratings, columns, "DataFrame")
    path = Path(ratings)
    if not path.is_file():
        raise DataError(f"{path}: ratings file not found")
    if path.name.endswith((".parquet", ".pq")):
        pandas = _import_pandas("reading a Parquet file")
        try:
            frame = pandas.read_parquet(path)
        except ImportError:
            raise ConfigError(
                f"{path}: reading Parquet needs pyarrow: pip install 'mmgraph[parquet]'"
            ) from None
        except Exception as err:  # pyarrow raises its own types for corrupt files
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise DataError(f"{path}: not a readable Parquet file: {reason}") from None
        return _from_dataframe(frame, columns, str(path))
    if sep is None:
        sep = "," if path.name.removesuffix(".gz").endswith(".csv") else "\t"
    return _from_text(path, columns, sep, header)


def _from_text(path: Path, columns: Mapping[str, Any], sep: str, header: bool) -> _Table:
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    lines: list[list[str]] = []
    try:
        for row in reader:
            if not row:
                continue  # blank line
            if lines and len(row) != len(lines[0]):
                raise DataError(
                    f"{path}: line {reader.line_num} has {len(row)} field(s), expected "
                    f"{len(lines[0])} ({'as in the header' if header else 'as in the first line'}"
                    f"; separator {sep!r})"
                )
            lines.append(row)
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: {err}") from None
    if not lines:
        raise DataError(f"{path}: file is empty")
    names = [name.strip() for name in lines[0]] if header else None
    body = lines[1:] if header else lines
    first_line = 2 if header else 1  # exact unless blank lines or quoted newlines precede
    positions = _column_positions(str(path), names, len(lines[0]), columns, sep)
    picked = {
        key: np.array([row[pos].strip() for row in body], dtype=str) if pos is not None else None
        for key, pos in positions.items()
    }
    return _build_table(str(path), picked, (first_line, "line"), names, positions)


def _column_positions(
    source: str,
    names: list[str] | None,
    width: int,
    columns: Mapping[str, Any],
    sep: str,
) -> dict[str, int | None]:
    positions: dict[str, int | None] = {}
    for key, wanted in columns.items():
        optional = key in ("rating", "time") and wanted in ("rating", "timestamp")
        if wanted is None:
            positions[key] = None
        elif names is None:
            if not isinstance(wanted, int) or not 0 <= wanted < width:
                if optional:
                    positions[key] = None
                    continue
                raise ConfigError(
                    f"{source}: without a header, the {_WHAT[key]} column must be a 0-based "
                    f"position below {width}, got {wanted!r}"
                )
            positions[key] = wanted
        elif str(wanted) in names:
            positions[key] = names.index(str(wanted))
        elif optional:
            positions[key] = None
        else:
            hint = ""
            if len(names) == 1 and any(s in names[0] for s in ",\t;|" if s != sep):
                hint = f"; is the separator {sep!r} right?"
            raise DataError(
                f"{source}: header has no {_WHAT[key]} column {wanted!r} "
                f"(columns: {', '.join(names)}){hint}"
            )
    return positions


_WHAT = {"user": "user", "item": "item", "rating": "rating", "time": "timestamp"}


def _build_table(
    source: str,
    picked: dict[str, np.ndarray | None],
    where: tuple[int, str],
    names: list[str] | None,
    positions: Mapping[str, Any],
) -> _Table:
    """Validate the picked columns; ``where`` is (number of row 0, "line" or "row")."""
    first_line, word = where
    for key in ("user", "item"):
        values = picked[key]
        bad = np.flatnonzero((values == "") | (np.char.find(values, "\t") >= 0))
        if bad.size:
            column = names[positions[key]] if names else f"#{positions[key]}"
            what = "is empty" if values[bad[0]] == "" else "contains a tab"
            raise DataError(
                f"{source}: {word} {first_line + bad[0]}: {_WHAT[key]} id {column} {what}"
            )
    order_keys = None
    if picked["time"] is not None:
        column = names[positions["time"]] if names else f"#{positions['time']}"
        order_keys = _parse_times(f"{source}: {{}}: timestamp {column}", picked["time"], where)
    return _Table(
        source, picked["user"], picked["item"], picked["rating"], picked["time"], order_keys
    )


def _parse_times(context: str, values: np.ndarray, where: tuple[int, str]) -> np.ndarray:
    """``[n]`` float64 sort keys of numeric or ISO-8601 timestamps; ``context`` formats the
    error prefix with the line."""
    first_line, word = where
    try:
        return values.astype(np.float64)
    except ValueError:
        pass
    keys = np.empty(values.size, dtype=np.float64)
    for row, value in enumerate(values):
        try:
            keys[row] = float(value)
        except ValueError:
            try:
                keys[row] = np.datetime64(value, "s").astype(np.int64)
            except ValueError:
                where_text = f"{word} {first_line + row}"
                raise DataError(
                    context.format(where_text)
                    + f" must be a number or an ISO-8601 date, got {value!r}"
                ) from None
    if not np.isfinite(keys).all():
        row = int(np.flatnonzero(~np.isfinite(keys))[0])
        raise DataError(context.format(f"{word} {first_line + row}") + " is not finite")
    return keys


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns")


def _import_pandas(why: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise ConfigError(f"{why} needs pandas: pip install 'mmgraph[parquet]'") from None
    return pandas


def _from_dataframe(frame: Any, columns: Mapping[str, Any], source: str) -> _Table:
    pandas = _import_pandas("a DataFrame input")
    names = [str(c) for c in frame.columns]
    positions = _column_positions(source, names, len(names), columns, sep="")
    picked: dict[str, np.ndarray | None] = {}
    for key, pos in positions.items():
        if pos is None:
            picked[key] = None
            continue
        column = frame.iloc[:, pos]
        missing = column.isna().to_numpy()
        if missing.any():
            raise DataError(
                f"{source}: row {int(np.flatnonzero(missing)[0])}: {_WHAT[key]} column "
                f"{names[pos]} is missing (NaN/None)"
            )
        if key == "time" and pandas.api.types.is_datetime64_any_dtype(column):
            column = column.astype("datetime64[s]").astype("int64")  # Unix seconds
        picked[key] = column.astype(str).to_numpy().astype(str)
    # Rows are reported by 0-based position for a DataFrame.
    return _build_table(source, picked, (0, "row"), names, positions)


# ---------------------------------------------------------------------- filtering
def _codes(values: np.ndarray) -> np.ndarray:
    """``[n]`` int64 codes of equal values (any consistent numbering)."""
    return np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _first_of_pairs(users: np.ndarray, items: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Sorted row ids keeping one row per (user, item): the earliest by time, then by row."""
    rows = np.arange(users.size)
    keys = (rows, items, users) if times is None else (rows, times, items, users)
    order = np.lexsort(keys)
    u, i = users[order], items[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return np.sort(order[first])


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """``[n]`` mask of the rows in the iterative ``k``-core of the (user, item) rows.

    Rows of users or items with fewer than ``k`` rows are removed, repeatedly, until every
    remaining user and item has at least ``k`` (the largest such subset; it may be empty).
    ``users`` and ``items`` are non-negative integer codes; rows are assumed distinct pairs.
    """
    keep = np.ones(users.size, dtype=bool)
    if k <= 1:
        return keep
    while True:
        user_degree = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_degree = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        still = keep & (user_degree[users] >= k) & (item_degree[items] >= k)
        if np.array_equal(still, keep):
            return keep
        keep = still


def _first_appearance(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``(raw ids in order of first appearance, [n] new ids 0..N-1)``."""
    uniques, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return uniques[order].tolist(), rank[inverse.reshape(-1)]


# ---------------------------------------------------------------------- splitting
def split_counts(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(valid, test)`` interactions per user with ``n`` interactions (MMRec's rule)."""
    n = np.asarray(n)
    held = np.where(n < 10, 2, (0.2 * n).astype(np.int64))
    held = np.where(n < 3, 0, held)
    valid = held // 2
    return valid, held - valid


def split_labels(
    users: np.ndarray, times: np.ndarray | None, *, method: str = "random", seed: int = 2024
) -> np.ndarray:
    """``[n]`` ``x_label`` (0/1/2 = train/valid/test) of rows with user ids ``users [n]``.

    ``"random"`` orders each user's rows by a permutation drawn with ``seed``;
    ``"chronological"`` by ``times`` (ties by row). The last rows of that order go to test,
    the ones before them to valid, in the counts of :func:`split_counts`.
    """
    n = users.size
    if method == "random":
        tiebreak = np.random.default_rng(seed).permutation(n)
        order = np.lexsort((tiebreak, users))
    elif method == "chronological":
        if times is None:
            raise ConfigError("the chronological split needs timestamps")
        order = np.lexsort((np.arange(n), times, users))
    else:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    counts = np.bincount(users, minlength=int(users.max(initial=-1)) + 1)
    valid, test = split_counts(counts)
    sorted_users = users[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(n) - starts[sorted_users]
    remaining = counts[sorted_users] - position  # n, n-1, ..., 1 along each user's order
    label = np.zeros(n, dtype=np.int64)
    label[remaining <= test[sorted_users] + valid[sorted_users]] = 1
    label[remaining <= test[sorted_users]] = 2
    labels = np.empty(n, dtype=np.int64)
    labels[order] = label
    return labels


# ---------------------------------------------------------------------- features
def _align_features(
    modality: str, source: FeatureSource, raw_items: list[str], missing: str
) -> np.ndarray:
    """``[num_items, dim]`` float32 rows of ``source`` in new item order."""
    what = f"item_features[{modality!r}]"
    if not modality or any(c in modality for c in "/\\\0") or modality.endswith("_feat"):
        raise ConfigError(f"{what}: {modality!r} is not a usable modality name")
    if isinstance(source, Mapping):
        ids = [str(key) for key in source]
        vectors = list(source.values())
    elif isinstance(source, tuple) and len(source) == 2:
        ids = [str(key) for key in source[0]]
        vectors = source[1]
    else:
        raise ConfigError(
            f"{what}: expected (raw_item_ids, array [n, dim]) or {{raw_item_id: vector}}"
        )
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what}: not a numeric array: {err}") from None
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{what}: expected a 2-D array [n, dim >= 1], got shape {array.shape}")
    if array.shape[0] != len(ids):
        raise DataError(
            f"{what}: {array.shape[0]} feature rows but {len(ids)} raw item ids; they must align"
        )
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise DataError(f"{what}: the row of item {ids[bad[0]]!r} contains NaN or inf")
    index = {raw: row for row, raw in enumerate(ids)}
    if len(index) != len(ids):
        seen: set[str] = set()
        repeated = next(raw for raw in ids if raw in seen or seen.add(raw))
        raise DataError(f"{what}: item id {repeated!r} has more than one feature row")
    rows = np.array([index.get(raw, -1) for raw in raw_items], dtype=np.int64)
    absent = np.flatnonzero(rows < 0)
    if absent.size and missing == "error":
        raise DataError(
            f"{what}: {absent.size} of {len(raw_items)} items have no feature row (first: "
            f"{raw_items[absent[0]]!r}); pass missing_features='mean' or 'zero' to fill them"
        )
    if absent.size == len(raw_items):
        raise DataError(f"{what}: no item of the data has a feature row (are the ids right?)")
    aligned = array[np.maximum(rows, 0)]
    if absent.size:
        present = aligned[rows >= 0]
        aligned[absent] = present.mean(axis=0) if missing == "mean" else 0.0
        warnings.warn(
            f"{what}: {absent.size} item(s) without a feature row got the {missing} vector",
            DataWarning,
            stacklevel=3,
        )
    return aligned


# ---------------------------------------------------------------------- writing
def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding dataset files, or (``overwrite``) delete those files."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if not out.is_dir():
        return
    held = sorted(
        p
        for p in out.iterdir()
        if p.name.endswith((".inter", ".inter.gz", "_feat.npy", "_feat.npy.gz"))
        or p.name in (USER_MAP, ITEM_MAP)
    )
    if held and not overwrite:
        raise ConfigError(
            f"{out}: already holds a dataset ({', '.join(p.name for p in held[:3])}); choose "
            "another folder or pass overwrite=True (--overwrite)"
        )
    for path in held:
        path.unlink()


def _write_inter(
    path: Path,
    table: _Table,
    keep: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    labels: np.ndarray,
) -> None:
    """Rows ordered by user, then split, then time (or original order)."""
    times = table.order_keys[keep] if table.order_keys is not None else np.zeros(keep.size)
    order = np.lexsort((keep, times, labels, users))
    columns = [("userID", users.astype(str)), ("itemID", items.astype(str))]
    if table.ratings is not None:
        columns.append(("rating", table.ratings[keep]))
    if table.timestamps is not None:
        columns.append(("timestamp", table.timestamps[keep]))
    columns.append(("x_label", labels.astype(str)))
    lines = ["\t".join(name for name, _ in columns)]
    values = [column[order] for _, column in columns]
    lines += ["\t".join(row) for row in zip(*values, strict=True)]
    _write_text(path, "\n".join(lines) + "\n")


def _write_id_map(path: Path, raw_name: str, new_name: str, raw_ids: list[str]) -> None:
    lines = [f"{raw_name}\t{new_name}"] + [f"{raw}\t{new}" for new, raw in enumerate(raw_ids)]
    _write_text(path, "\n".join(lines) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (BOM tolerated), or a DataError naming ``what``."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read: {err}") from None


def read_feature_ids(path: str | os.PathLike) -> list[str]:
    """Raw item ids, one per non-blank line (the rows of a user's feature array)."""
    return [line.strip() for line in _read_lines(Path(path), "feature id file") if line.strip()]


def read_id_map(path: str | os.PathLike) -> list[str]:
    """Raw ids by new id from an id-map file (``u_id_mapping.csv`` / ``i_id_mapping.csv``).

    The file is tab-separated with a header; the first column holds the raw id and the second
    the new 0-based id (MMRec's layout).

    Raises:
        DataError: the file is missing or malformed, or the new ids are not ``0..N-1``.
    """
    path = Path(path)
    lines = _read_lines(path, "id map")
    raw_ids: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            raw, new = fields[0], int(fields[1])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}: line {number}: expected '<raw id><TAB><0-based id>', got {line[:80]!r}"
            ) from None
        raw_ids[new] = raw
    if sorted(raw_ids) != list(range(len(raw_ids))):
        raise DataError(f"{path}: the new ids are not 0..{len(raw_ids) - 1}, each once")
    return [raw_ids[i] for i in range(len(raw_ids))]


def read_id_maps(folder: str | os.PathLike, num_users: int, num_items: int) -> RawIds | None:
    """Raw user and item ids by 0-based id from a dataset folder's id maps.

    Returns:
        ``(raw_users [num_users], raw_items [num_items])``, or ``None`` when the folder has
        no ``u_id_mapping.csv`` and ``i_id_mapping.csv`` (a bundled or hand-made dataset).

    Raises:
        DataError: a map is malformed or maps another number of ids than the dataset has.
    """
    folder = Path(folder)
    if not (folder / USER_MAP).is_file() or not (folder / ITEM_MAP).is_file():
        return None
    raw_users, raw_items = read_id_map(folder / USER_MAP), read_id_map(folder / ITEM_MAP)
    for name, ids, count in ((USER_MAP, raw_users, num_users), (ITEM_MAP, raw_items, num_items)):
        if len(ids) != count:
            raise DataError(f"{folder / name}: maps {len(ids)} ids, the dataset has {count}")
    return raw_users, raw_items
