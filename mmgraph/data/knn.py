"""Item–item k-nearest-neighbour graphs built from modality features (LATTICE, FREEDOM, MENTOR).

Each modality gives a fixed graph: item ``i`` is linked to the ``k`` items whose features are
most cosine-similar to its own. The graphs are dataset structure, built once from the frozen
features, so they live in the data layer and are cached:

* in memory on the dataset (``dataset._cache``), and
* on disk under :func:`default_cache_dir` (``$MMGRAPH_CACHE``, else ``~/.cache/mmgraph``),
  keyed by a SHA-256 of everything the graphs depend on (feature bytes, ``k``,
  ``include_self`` and a format version), never by ``k`` alone.

The cache holds the per-modality graphs; fusing them with modality weights
(:func:`fused_knn_graph`) is a cheap sum done on every call, so a change of weights can never
hit a stale file.

Edge convention (PyG's): ``edge_index[0]`` is the *source* (the neighbour ``j``), ``edge_index[1]``
the *target* (the item ``i`` that aggregates), so the matrix ``A[i, j]`` of a graph has its rows
at ``edge_index[1]``; message passing over ``edge_index`` computes ``A @ x``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.utils import to_torch_csr_tensor

from mmgraph.data.dataset import ITEM, InteractionDataset
from mmgraph.errors import CheckpointError, ConfigError, DataError
from mmgraph.io import FORMAT_KEY, atomic_torch_save, safe_torch_load

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE_DIR",
    "KNN_FORMAT",
    "default_cache_dir",
    "default_knn_weights",
    "fused_knn_graph",
    "knn_cache_key",
    "knn_graph",
    "knn_neighbors",
    "modality_knn_graphs",
    "neighbor_edges",
    "similarity_block_shape",
]

#: format of the cached files; part of the cache key, so bumping it invalidates old files.
KNN_FORMAT = "mmgraph-knn/2"
#: environment variable naming the cache folder.
CACHE_ENV = "MMGRAPH_CACHE"
#: entries of one block of the similarity matrix in :func:`knn_graph` (float32: 256 MB).
SIMILARITY_BLOCK_ENTRIES = 1 << 26
#: fewest query rows of a default block. A block of full similarity rows holds
#: ``SIMILARITY_BLOCK_ENTRIES // I`` queries: 67 at a million items, where the product reads
#: every item's features for only 67 rows (39 GFLOP/s on the 2-core CPU). Beyond 32,768 items
#: a block is 2,048 queries against one tile of items at a time (78 GFLOP/s), and the
#: neighbours are the top ``k`` of the tiles' top ``k``.
MIN_BLOCK_ROWS = 2048
#: MENTOR's (and FREEDOM's) fusion of an image and a text graph (``mm_image_weight = 0.1``).
IMAGE_TEXT_WEIGHTS = {"image": 0.1, "text": 0.9}


class _Default(enum.Enum):
    CACHE_DIR = "default"


#: ``cache_dir`` value meaning "use :func:`default_cache_dir`".
DEFAULT_CACHE_DIR = _Default.CACHE_DIR


def default_cache_dir() -> Path:
    """``$MMGRAPH_CACHE`` if set, else ``~/.cache/mmgraph``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/mmgraph").expanduser()


def knn_graph(
    features: Tensor,
    k: int,
    *,
    include_self: bool = True,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Cosine top-``k`` neighbours of every item, with MENTOR's normalisation.

    The cosine-similarity matrix is computed one block at a time (:func:`knn_neighbors`), so
    no dense ``I x I`` matrix ever exists: memory is ``O(I·k)`` plus one block of at most
    :data:`SIMILARITY_BLOCK_ENTRIES` floats (256 MB) whatever ``I``. With the binary kNN
    adjacency :math:`A` (``A[i, j] = 1`` for ``j`` among the neighbours of ``i``) and its row
    sums :math:`r`, the edge weights are those of

    .. math::
        D_{\text{row}}^{-1/2} A D_{\text{col}}^{-1/2}, \qquad
        \hat A_{ij} = \frac{A_{ij}}{\sqrt{r_i}\sqrt{r_j}}

    where both sides use the row sums :math:`r` (FREEDOM/MENTOR's ``compute_normalized_laplacian``).
    Every row has exactly ``k`` entries, so this evaluates to ``1/k``; it is computed from the
    formula all the same.

    Args:
        features: ``[I, d]`` item features of one modality. An all-zero row has cosine 0 with
            every item (the released code divides by its zero norm and gets NaN).
        k: neighbours per item, ``1 <= k < I``.
        include_self: count item ``i`` as one of its own ``k`` neighbours, as MENTOR does (its
            top-k runs over the full similarity row, whose maximum is the item itself). Here
            the self-edge is guaranteed, also when a duplicate or all-zero row ties with it.
            ``False`` excludes it.
        chunk_size: query rows per similarity block (``None``: see :func:`knn_neighbors`).

    Returns:
        ``(edge_index [2, I·k], edge_weight [I·k])``: source = neighbour, target = item, sorted
        by target, neighbours of one item by decreasing similarity.

    Raises:
        DataError: bad shape, non-finite features, or ``k`` out of range.
    """
    return neighbor_edges(
        knn_neighbors(features, k, include_self=include_self, chunk_size=chunk_size)
    )


def neighbor_edges(neighbours: Tensor) -> tuple[Tensor, Tensor]:
    """``[I, k]`` neighbour ids -> the normalised edge list of :func:`knn_graph`.

    Shapes:
        ``neighbours: [I, k]`` -> ``(edge_index [2, I·k], edge_weight [I·k])``.
    """
    num_items, k = neighbours.shape
    target = torch.arange(num_items, device=neighbours.device).repeat_interleave(k)
    edge_index = torch.stack([neighbours.flatten(), target])
    return edge_index, _symmetric_row_normalization(edge_index, num_items)


def knn_neighbors(
    features: Tensor,
    k: int,
    *,
    include_self: bool = True,
    chunk_size: int | None = None,
    start: int = 0,
    stop: int | None = None,
    block_entries: int = SIMILARITY_BLOCK_ENTRIES,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """The ``k`` most cosine-similar items of items ``start .. stop - 1`` (see :func:`knn_graph`).

    Beyond the input, memory is one similarity block, ``chunk_size`` query rows against a tile
    of ``block_entries // chunk_size`` items (all items when they fit, at least one), plus the
    tiles' candidates and the result, all allocated once before the first block: every tile
    of every block is written into the same buffer (``torch.matmul(..., out=)``) and edited
    in place, so memory cannot grow with the rows searched, whatever the allocator keeps of
    freed blocks. No normalised copy of the features is made (a row's ranking does not depend
    on its own norm, so each block is only divided by the *other* items' norms). With several
    tiles, a query's neighbours are the top ``k`` of the union of every tile's top ``k``,
    which contains the row's top ``k``.

    Args:
        features: ``[I, d]`` item features.
        k: neighbours per item, ``1 <= k < I``.
        include_self: see :func:`knn_graph`.
        chunk_size: query rows per block (``None``: as many as fit in ``block_entries``
            with all items, but at least :data:`MIN_BLOCK_ROWS`).
        start, stop: the query items (default all); a part of a large build can be computed
            (or measured) on its own.
        block_entries: similarity entries computed at once (default
            :data:`SIMILARITY_BLOCK_ENTRIES`).
        progress: called after each block of query rows with the number of rows done so
            far (``1 .. stop - start``), e.g. to report a long build's progress or memory.

    Returns:
        ``[stop - start, k]`` neighbour ids per query item, by decreasing similarity.

    Raises:
        DataError: bad shape, non-finite features, or ``k`` out of range.
    """
    if features.dim() != 2:
        raise DataError(f"kNN features must be [num_items, dim], got shape {tuple(features.shape)}")
    num_items = features.size(0)
    if not 1 <= k < num_items:
        raise DataError(
            f"kNN graph needs 1 <= k < num_items, got k={k} for {num_items} items; "
            "choose a smaller knn_k"
        )
    chunk_size, tile = similarity_block_shape(num_items, chunk_size, block_entries)
    stop = num_items if stop is None else stop
    if not 0 <= start <= stop <= num_items:
        raise ValueError(f"need 0 <= start <= stop <= {num_items}, got {start}, {stop}")
    features = features.detach().float()  # matmul(out=) takes no autograd inputs
    for block in torch.split(features, chunk_size):  # no [I, d] boolean temporary
        if not bool(torch.isfinite(block).all()):
            raise DataError("kNN features contain NaN or infinite values")
    norms = torch.linalg.vector_norm(features, dim=1)
    inv_norms = torch.where(norms > 0, 1.0 / norms, 0.0)  # an all-zero row: cosine 0 with all
    neighbours = torch.empty(stop - start, k, dtype=torch.long, device=features.device)
    fill = torch.inf if include_self else -torch.inf
    tiles = [(low, min(low + tile, num_items)) for low in range(0, num_items, tile)]
    widths = [min(k, high - low) for low, high in tiles]  # candidates of each tile
    # Every buffer is allocated once, before the first block: the similarity block (written by
    # matmul(out=), then edited in place) and the tiles' candidates side by side, so the
    # loop allocates only a few small top-k results, whatever the number of blocks.
    max_rows = min(chunk_size, stop - start)
    similarity = features.new_empty(max_rows * tile)
    candidate_values = features.new_empty(max_rows, sum(widths))
    candidate_ids = torch.empty_like(candidate_values, dtype=torch.long)
    for first in range(start, stop, chunk_size):
        last = min(first + chunk_size, stop)
        rows = last - first
        column = 0
        for (low, high), width in zip(tiles, widths, strict=True):
            sim = similarity[: rows * (high - low)].view(rows, high - low)  # contiguous
            torch.matmul(features[first:last], features[low:high].T, out=sim)
            sim.mul_(inv_norms[low:high])  # cosine times |x_i|, a positive factor of the row
            if max(first, low) < min(last, high):  # queries whose own column is in this tile
                own = torch.arange(max(first, low), min(last, high), device=features.device)
                sim[own - first, own - low] = fill
            top = torch.topk(sim, width, dim=1)
            candidate_values[:rows, column : column + width] = top.values
            candidate_ids[:rows, column : column + width] = top.indices.add_(low)
            column += width
        if len(tiles) > 1:
            best = torch.topk(candidate_values[:rows], k, dim=1).indices
            neighbours[first - start : last - start] = candidate_ids[:rows].gather(1, best)
        else:
            neighbours[first - start : last - start] = candidate_ids[:rows]
        if progress is not None:
            progress(last - start)
    return neighbours


def similarity_block_shape(
    num_items: int, chunk_size: int | None = None, block_entries: int = SIMILARITY_BLOCK_ENTRIES
) -> tuple[int, int]:
    """``(query rows, items per tile)`` of :func:`knn_neighbors`' similarity blocks.

    ``chunk_size`` rows (``None``: as many full rows of ``num_items`` as fit in
    ``block_entries``, but at least :data:`MIN_BLOCK_ROWS` and at most ``num_items``) against
    tiles of as many items as then fit (all ``num_items`` when they do).
    """
    if block_entries < 1:
        raise ValueError(f"block_entries must be >= 1, got {block_entries}")
    if chunk_size is None:
        chunk_size = max(1, min(num_items, max(block_entries // num_items, MIN_BLOCK_ROWS)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size, min(num_items, max(1, block_entries // chunk_size))


def _symmetric_row_normalization(edge_index: Tensor, num_items: int) -> Tensor:
    """``r_i^{-1/2} r_j^{-1/2}`` per edge ``j -> i``, ``r`` = row sums of the binary matrix."""
    source, target = edge_index
    row_sum = torch.bincount(target, minlength=num_items).float()
    inv_sqrt = row_sum.pow(-0.5).masked_fill_(row_sum == 0, 0.0)
    return inv_sqrt[target] * inv_sqrt[source]


def default_knn_weights(modalities: list[str]) -> dict[str, float]:
    """MENTOR's ``{"image": 0.1, "text": 0.9}`` for exactly those two modalities, else uniform.

    The released code only knows an image and a text modality; for any other set (TikTok's
    image + audio, MovieLens' genre + text) no published weighting exists, so each modality
    gets ``1 / M``. Pass explicit weights to :func:`fused_knn_graph` to choose otherwise.
    """
    if not modalities:
        raise DataError("a kNN item graph needs at least one modality")
    if set(modalities) == set(IMAGE_TEXT_WEIGHTS):
        return dict(IMAGE_TEXT_WEIGHTS)
    return {m: 1.0 / len(modalities) for m in modalities}


def _check_weights(modalities: list[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return default_knn_weights(modalities)
    if set(weights) != set(modalities):
        raise ConfigError(
            f"kNN graph weights name modalities {sorted(weights)}, but the dataset has "
            f"{sorted(modalities)}; give one weight per modality"
        )
    checked = {}
    for modality, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(
                f"kNN graph weight of {modality!r} must be a number >= 0, got {value!r}"
            )
        checked[modality] = float(value)
    if not any(checked.values()):
        raise ConfigError("kNN graph weights are all zero")
    return checked


def knn_cache_key(features: Mapping[str, Tensor], k: int, include_self: bool) -> str:
    """SHA-256 hex digest of everything the per-modality kNN graphs depend on.

    Args:
        features: modality name -> ``[I, d]`` features (their bytes, shape and dtype count).
        k: neighbours per item.
        include_self: see :func:`knn_graph`.
    """
    digest = hashlib.sha256()
    settings = {"format": KNN_FORMAT, "k": int(k), "include_self": bool(include_self)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for modality in sorted(features):
        feat = features[modality].detach().contiguous().cpu()
        digest.update(f"\0{modality}\0{tuple(feat.shape)}\0{feat.dtype}\0".encode())
        digest.update(feat.numpy().tobytes())
    return digest.hexdigest()


Graphs = dict[str, tuple[Tensor, Tensor]]


def _read_cache(path: Path, key: str) -> Graphs | None:
    if not path.is_file():
        return None
    try:
        stored = safe_torch_load(path, KNN_FORMAT)
        if stored.get("key") != key:
            raise CheckpointError(f"{path}: cache key mismatch")
        return {m: (g["edge_index"], g["edge_weight"]) for m, g in stored["graphs"].items()}
    except (CheckpointError, KeyError, TypeError) as exc:
        warnings.warn(f"ignoring unreadable kNN cache file ({exc}); rebuilding it", stacklevel=3)
        return None


def _write_cache(path: Path, key: str, graphs: Graphs) -> None:
    payload = {
        FORMAT_KEY: KNN_FORMAT,
        "key": key,
        "graphs": {m: {"edge_index": ei, "edge_weight": w} for m, (ei, w) in graphs.items()},
    }
    try:
        atomic_torch_save(payload, path)
    except OSError as exc:  # a read-only cache folder must not stop training
        warnings.warn(f"could not write kNN cache {path}: {exc}", stacklevel=3)


def _weighted_sum(graphs: Graphs, weights: Mapping[str, float], num_items: int) -> Tensor:
    """``sum_m w_m A_m`` as an ``[I, I]`` CSR matrix (rows = targets; shared edges summed)."""
    rows, cols, values = [], [], []
    for modality, (edge_index, edge_weight) in graphs.items():
        rows.append(edge_index[1])
        cols.append(edge_index[0])
        values.append(weights[modality] * edge_weight)
    edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
    return to_torch_csr_tensor(edge_index, torch.cat(values), size=(num_items, num_items))


def modality_knn_graphs(
    dataset: InteractionDataset,
    k: int = 10,
    *,
    include_self: bool = True,
    chunk_size: int | None = None,
    cache_dir: str | os.PathLike | _Default | None = DEFAULT_CACHE_DIR,
) -> Graphs:
    """The :func:`knn_graph` of every modality of a dataset, cached in memory and on disk.

    The graphs are also stored on the dataset as
    ``dataset.data['item', f'similar_{m}', 'item'].edge_index`` / ``.edge_weight`` (those of
    the latest call).

    Args:
        dataset: a dataset with at least one modality.
        k: neighbours per item.
        include_self: see :func:`knn_graph`.
        chunk_size: query rows per similarity block (see :func:`knn_neighbors`).
        cache_dir: folder of the disk cache; default :func:`default_cache_dir`; ``None``
            disables the disk cache (the in-memory cache on the dataset stays).

    Returns:
        modality -> ``(edge_index [2, I·k], edge_weight [I·k])`` as :func:`knn_graph` returns.
    """
    modalities = dataset.modalities
    if not modalities:
        raise DataError(f"dataset {dataset.name!r} has no modality features to build a kNN graph")
    features = dataset.feature_dict()
    key = knn_cache_key(features, k, include_self)
    memory_key = ("modality_knn_graphs", key)
    if memory_key not in dataset._cache:
        path = None
        if cache_dir is not None:
            folder = default_cache_dir() if cache_dir is DEFAULT_CACHE_DIR else Path(cache_dir)
            path = folder / "knn" / f"{key}.pt"
        graphs = _read_cache(path, key) if path is not None else None
        if graphs is None:
            graphs = {
                m: knn_graph(features[m], k, include_self=include_self, chunk_size=chunk_size)
                for m in modalities
            }
            if path is not None:
                _write_cache(path, key, graphs)
        dataset._cache[memory_key] = graphs
    graphs = dataset._cache[memory_key]
    for modality, (edge_index, edge_weight) in graphs.items():
        store = dataset.data[ITEM, f"similar_{modality}", ITEM]
        store.edge_index = edge_index
        store.edge_weight = edge_weight
    return graphs


def fused_knn_graph(
    dataset: InteractionDataset,
    k: int = 10,
    weights: Mapping[str, float] | None = None,
    *,
    include_self: bool = True,
    chunk_size: int | None = None,
    cache_dir: str | os.PathLike | _Default | None = DEFAULT_CACHE_DIR,
) -> Tensor:
    r"""MENTOR's (and FREEDOM's) fused item–item graph :math:`\sum_m w_m \hat A_m` of a dataset.

    Args:
        dataset: a dataset with at least one modality.
        k: neighbours per item.
        weights: modality name -> weight; default :func:`default_knn_weights` (0.1 image /
            0.9 text for an image+text dataset, uniform otherwise).
        include_self, chunk_size, cache_dir: see :func:`modality_knn_graphs`.

    Returns:
        ``[I, I]`` float32 ``torch.sparse_csr`` matrix; row ``i`` holds item ``i``'s neighbours.
    """
    if not dataset.modalities:
        raise DataError(f"dataset {dataset.name!r} has no modality features to build a kNN graph")
    weights = _check_weights(dataset.modalities, weights)
    graphs = modality_knn_graphs(
        dataset, k, include_self=include_self, chunk_size=chunk_size, cache_dir=cache_dir
    )
    return _weighted_sum(graphs, weights, dataset.num_items)
