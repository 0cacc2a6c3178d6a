r"""The user co-occurrence graph (DualGNN): each user's top-``k`` users by shared training items.

Two users co-occur when both have a training interaction with the same item; their weight is
the number of distinct items they share, :math:`C = A A^\top` for the binary user–item matrix
:math:`A \in \{0, 1\}^{U \times I}` (repeated interactions count once), without its diagonal.
Every user keeps the ``k`` largest entries of its row of :math:`C`:

* only users with at least one shared item are neighbours (a row of :math:`C` may have fewer
  than ``k`` positive entries, or none: such a user gets fewer neighbours, or an empty row);
* a user is never its own neighbour;
* ties are broken deterministically: by decreasing count, then by increasing user id (of two
  users sharing as many items with ``u``, the one with the smaller id is kept).

This is MMRec's ``preprocessing/dualgnn-gen-u-u-matrix.py`` (the counts of distinct shared
items, top-200 per user, stored in ``user_graph_dict.npy``) followed by the per-epoch top-``k``
cut of its ``DualGNN.topk_sample``, without MMRec's dense ``U x U`` matrix and with a defined
order among ties (MMRec's ``torch.topk`` leaves it to the kernel).

Memory is bounded: :math:`C` is computed one block of users at a time, as the sparse product
``A[block] @ A^T``, and reduced to its top ``k`` per row before the next block. A block holds
at most ``block_entries`` entries of :math:`C` (bounded by ``sum_{i in items(u)} deg(i)`` and
``U`` per user); no dense ``U x U`` matrix, nor a dense block, is ever built.

The graph depends only on the training interactions, so for a dataset it is cached like the
kNN graphs of :mod:`mmgraph.data.knn`: in memory on the dataset and on disk under
:func:`~mmgraph.data.knn.default_cache_dir`, keyed by a SHA-256 of the training edges, the sizes,
``k`` and a format version (never by ``k`` alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.utils import to_torch_csr_tensor

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.knn import DEFAULT_CACHE_DIR, _Default, default_cache_dir
from mmgraph.errors import CheckpointError, ConfigError, DataError
from mmgraph.io import FORMAT_KEY, atomic_torch_save, safe_torch_load

__all__ = [
    "COOCCURRENCE_BLOCK_ENTRIES",
    "COOCCURRENCE_FORMAT",
    "cooccurrence_cache_key",
    "user_cooccurrence_graph",
]

#: format of the cached files; part of the cache key, so bumping it invalidates old files.
COOCCURRENCE_FORMAT = "mmgraph-cooccurrence/1"
#: entries of the co-occurrence matrix held at once (a block of users' rows; a few int64
#: tensors of this length, about 200 MB).
COOCCURRENCE_BLOCK_ENTRIES = 1 << 22


def user_cooccurrence_graph(
    source: InteractionDataset | Tensor,
    k: int,
    *,
    num_users: int | None = None,
    num_items: int | None = None,
    block_users: int | None = None,
    block_entries: int = COOCCURRENCE_BLOCK_ENTRIES,
    cache_dir: str | os.PathLike | _Default | None = DEFAULT_CACHE_DIR,
) -> Tensor:
    """The top-``k`` co-occurring users of every user (see the module docstring).

    Args:
        source: a dataset (its training interactions are used; the result is cached), or a
            ``[2, E]`` tensor of training (user, item) pairs (computed, never cached).
        k: most neighbours per user, ``>= 1`` (DualGNN: 40). Users with fewer co-occurring
            users keep all of them.
        num_users, num_items: sizes for an edge tensor (default: largest id + 1); ignored for a
            dataset.
        block_users: most users per block (``None``: only ``block_entries`` limits a block).
            The result does not depend on the blocking.
        block_entries: most co-occurrence entries per block (a single user whose row is
            longer makes a block of its own).
        cache_dir: folder of the disk cache for a dataset; default
            :func:`~mmgraph.data.knn.default_cache_dir`; ``None`` disables the disk cache (the
            in-memory cache on the dataset stays).

    Returns:
        ``[U, U]`` float32 ``torch.sparse_csr`` matrix: row ``u`` holds ``u``'s neighbours
        (at most ``k``, columns in increasing user id) with the number of distinct training
        items they share with ``u`` as values (exact below :math:`2^{24}`). It is not
        symmetric: ``v`` may be among ``u``'s top ``k`` and not the reverse.

    Raises:
        ConfigError: ``k``, ``block_users`` or ``block_entries`` below 1.
        DataError: a malformed edge tensor.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"the user co-occurrence graph needs an integer k >= 1, got {k!r}")
    if block_users is not None and block_users < 1:
        raise ConfigError(f"block_users must be >= 1, got {block_users}")
    if block_entries < 1:
        raise ConfigError(f"block_entries must be >= 1, got {block_entries}")
    if not isinstance(source, InteractionDataset):
        edges, users, items = _check_edges(source, num_users, num_items)
        return _top_cooccurring(edges, users, items, k, block_users, block_entries)
    edges, users, items = source.edge_index("train"), source.num_users, source.num_items
    key = cooccurrence_cache_key(edges, users, items, k)
    memory_key = ("user_cooccurrence_graph", key)
    if memory_key not in source._cache:
        path = None
        if cache_dir is not None:
            folder = default_cache_dir() if cache_dir is DEFAULT_CACHE_DIR else Path(cache_dir)
            path = folder / "cooccurrence" / f"{key}.pt"
        graph = _read_cache(path, key) if path is not None else None
        if graph is None:
            graph = _top_cooccurring(edges, users, items, k, block_users, block_entries)
            if path is not None:
                _write_cache(path, key, graph)
        source._cache[memory_key] = graph
    return source._cache[memory_key]


def cooccurrence_cache_key(edge_index: Tensor, num_users: int, num_items: int, k: int) -> str:
    """SHA-256 hex digest of everything the co-occurrence graph depends on.

    Args:
        edge_index: ``[2, E]`` training (user, item) pairs (their bytes and order count).
        num_users, num_items: the sizes.
        k: neighbours per user.
    """
    digest = hashlib.sha256()
    settings = {
        "format": COOCCURRENCE_FORMAT,
        "k": int(k),
        "num_users": int(num_users),
        "num_items": int(num_items),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(edge_index.detach().long().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def _check_edges(
    edge_index: Tensor, num_users: int | None, num_items: int | None
) -> tuple[Tensor, int, int]:
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index)
        raise DataError(f"training edges must be a [2, E] (user, item) tensor, got {shape}")
    if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool:
        raise DataError(f"training edges must hold integer ids, got {edge_index.dtype}")
    edge_index = edge_index.long().cpu()
    empty = edge_index.size(1) == 0
    if not empty and int(edge_index.min()) < 0:
        raise DataError("training edges hold a negative id")
    users = num_users if num_users is not None else 0 if empty else int(edge_index[0].max()) + 1
    items = num_items if num_items is not None else 0 if empty else int(edge_index[1].max()) + 1
    if not empty and (int(edge_index[0].max()) >= users or int(edge_index[1].max()) >= items):
        raise DataError(
            f"training edges reference ids beyond num_users={users} / num_items={items}"
        )
    return edge_index, users, items


def _binary_csr(rows: Tensor, cols: Tensor, num_rows: int, num_cols: int) -> Tensor:
    """``[num_rows, num_cols]`` float32 CSR with a 1 at every (row, col) pair (duplicates once)."""
    matrix = to_torch_csr_tensor(torch.stack([rows, cols]), size=(num_rows, num_cols))
    return torch.sparse_csr_tensor(
        matrix.crow_indices(),
        matrix.col_indices(),
        torch.ones_like(matrix.values()),
        size=(num_rows, num_cols),
    )


def _user_blocks(
    row_bound: Tensor, block_entries: int, block_users: int | None
) -> list[tuple[int, int]]:
    """``(start, stop)`` user ranges whose rows' entry bounds sum to at most ``block_entries``
    (a single longer row makes a block alone), each at most ``block_users`` users long."""
    total = torch.cumsum(row_bound, 0)
    num_users = row_bound.numel()
    blocks, start = [], 0
    while start < num_users:
        before = int(total[start - 1]) if start else 0
        stop = int(torch.searchsorted(total, before + block_entries, right=True))
        stop = max(stop, start + 1)
        if block_users is not None:
            stop = min(stop, start + block_users)
        blocks.append((start, stop))
        start = stop
    return blocks


def _top_cooccurring(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    k: int,
    block_users: int | None,
    block_entries: int,
) -> Tensor:
    """The graph of :func:`user_cooccurrence_graph` for checked training edges."""
    users, items = edge_index[0], edge_index[1]
    user_item = _binary_csr(users, items, num_users, num_items)
    item_user = _binary_csr(items, users, num_items, num_users)
    # Entries of user u's row of C = A A^T are at most sum of its items' degrees, and U.
    item_degree = item_user.crow_indices().diff()
    row_bound = torch.zeros(num_users, dtype=torch.long)
    row_users = torch.repeat_interleave(
        torch.arange(num_users), user_item.crow_indices().diff(), output_size=user_item._nnz()
    )
    row_bound.index_add_(0, row_users, item_degree[user_item.col_indices()])
    row_bound.clamp_(max=num_users)

    crow, col = user_item.crow_indices(), user_item.col_indices()
    kept_rows, kept_cols, kept_counts = [], [], []
    for start, stop in _user_blocks(row_bound, block_entries, block_users):
        low, high = int(crow[start]), int(crow[stop])
        block = torch.sparse_csr_tensor(
            crow[start : stop + 1] - low,
            col[low:high],
            torch.ones(high - low),
            size=(stop - start, num_items),
        )
        rows, neighbours, counts = _block_top_k(block @ item_user, start, k)
        kept_rows.append(rows + start)
        kept_cols.append(neighbours)
        kept_counts.append(counts)
    rows = torch.cat(kept_rows) if kept_rows else torch.empty(0, dtype=torch.long)
    cols = torch.cat(kept_cols) if kept_cols else torch.empty(0, dtype=torch.long)
    counts = torch.cat(kept_counts) if kept_counts else torch.empty(0)
    return to_torch_csr_tensor(
        torch.stack([rows, cols]), counts.float(), size=(num_users, num_users)
    )


def _block_top_k(product: Tensor, start: int, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The top ``k`` off-diagonal entries of each row of a block of :math:`C`.

    Args:
        product: ``[B, U]`` CSR rows ``start .. start + B - 1`` of :math:`C`.
        start: the block's first user (its diagonal is at column ``start + row``).
        k: entries kept per row.

    Returns:
        ``(rows [n], cols [n], counts [n])``: block-local rows, neighbour ids and counts, by
        row, then by decreasing count and increasing neighbour id.
    """
    num_rows, num_users = product.shape
    crow = product.crow_indices()
    rows = torch.repeat_interleave(torch.arange(num_rows), crow.diff(), output_size=product._nnz())
    cols = product.col_indices()
    counts = product.values().round().long()
    off_diagonal = (cols != rows + start) & (counts > 0)
    rows, cols, counts = rows[off_diagonal], cols[off_diagonal], counts[off_diagonal]
    # Within a row the key is unique: larger counts first, then smaller user ids; the stable
    # sort by row keeps that order inside each row.
    order = torch.sort(cols - counts * num_users).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    rows, cols, counts = rows[order], cols[order], counts[order]
    per_row = torch.bincount(rows, minlength=num_rows)
    first = torch.cumsum(per_row, 0) - per_row
    rank = torch.arange(rows.numel()) - first[rows]
    keep = rank < k
    return rows[keep], cols[keep], counts[keep]


def _read_cache(path: Path, key: str) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        stored = safe_torch_load(path, COOCCURRENCE_FORMAT)
        if stored.get("key") != key:
            raise CheckpointError(f"{path}: cache key mismatch")
        return torch.sparse_csr_tensor(
            stored["crow_indices"], stored["col_indices"], stored["values"], size=stored["size"]
        )
    except (CheckpointError, KeyError, TypeError, RuntimeError) as exc:
        warnings.warn(
            f"ignoring unreadable co-occurrence cache file ({exc}); rebuilding it", stacklevel=3
        )
        return None


def _write_cache(path: Path, key: str, graph: Tensor) -> None:
    payload = {
        FORMAT_KEY: COOCCURRENCE_FORMAT,
        "key": key,
        "crow_indices": graph.crow_indices(),
        "col_indices": graph.col_indices(),
        "values": graph.values(),
        "size": list(graph.shape),
    }
    try:
        atomic_torch_save(payload, path)
    except OSError as exc:  # a read-only cache folder must not stop training
        warnings.warn(f"could not write co-occurrence cache {path}: {exc}", stacklevel=3)
