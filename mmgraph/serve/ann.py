"""Approximate nearest-neighbour indexes over item embeddings (the optional ``ann`` extra).

`faiss <https://github.com/facebookresearch/faiss>`_ (``pip install faiss-cpu``) indexes the
item table for maximum inner product search: ``flat`` is exact (a brute-force scan, the same
top-k as numpy), ``hnsw`` a graph index that answers far faster on large catalogues at some
recall (see ``docs/serving.md`` for figures). Only numpy and faiss are imported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmgraph.errors import ConfigError

INDEX_FILE = "items.faiss"
INDEX_KINDS = ("flat", "hnsw")


@dataclass(frozen=True)
class IndexSettings:
    """How to build an item index.

    Attributes:
        kind: ``"flat"`` (exact) or ``"hnsw"``.
        hnsw_m: neighbours per node of the HNSW graph (faiss's ``M``; more = better recall,
            more memory).
        ef_construction: candidate list size while building the graph.
        ef_search: default candidate list size while searching (raised to the number of
            items asked for when that is larger).
    """

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"--index must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def import_faiss() -> Any:
    """The ``faiss`` module, or a ConfigError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "an item index needs faiss: pip install 'mmgraph[ann]' (or faiss-cpu)"
        ) from None
    return faiss


def build_index(items: np.ndarray, settings: IndexSettings, path: Path) -> dict[str, Any]:
    """Build an inner-product index over ``items [I, d]`` (float32) and write it to ``path``.

    Returns:
        The index's entry for the export manifest (its settings and file).
    """
    faiss = import_faiss()
    items = np.ascontiguousarray(items, dtype=np.float32)
    dim = items.shape[1]
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
        index.hnsw.efSearch = settings.ef_search
    index.add(items)
    faiss.write_index(index, str(path))
    return {**asdict(settings), "file": path.name, "metric": "inner_product"}


def read_index(path: Path) -> Any:
    """A faiss index written by :func:`build_index`."""
    faiss = import_faiss()
    return faiss.read_index(str(path))


def search(index: Any, queries: np.ndarray, count: int, ef_search: int | None = None) -> tuple:
    """``(scores [B, count], items [B, count])`` of the index's best items per query row.

    Missing results (an HNSW search that found fewer) have item ``-1``.
    """
    faiss = import_faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef_search or index.hnsw.efSearch, count)
        return index.search(queries, count, params=params)
    return index.search(queries, count)
