"""Datasets: the :class:`InteractionDataset` contract, loaders and bundled data."""

from mmgraph.data.bundled import list_bundled, load_dataset
from mmgraph.data.cold_start import ColdSplitReport, cold_item_labels, write_cold_item_split
from mmgraph.data.cooccurrence import user_cooccurrence_graph
from mmgraph.data.dataset import (
    CSR,
    INTERACTS,
    ITEM,
    REV_INTERACTS,
    USER,
    InteractionDataset,
    build_csr,
)
from mmgraph.data.mmrec import load_mmrec, write_mmrec
from mmgraph.data.pyg import (
    from_pyg,
    from_pyg_amazon_book,
    from_pyg_movielens,
    from_pyg_movielens1m,
    from_pyg_movielens100k,
    heterodata_to_dataset,
)

__all__ = [
    "CSR",
    "INTERACTS",
    "ITEM",
    "REV_INTERACTS",
    "USER",
    "ColdSplitReport",
    "InteractionDataset",
    "build_csr",
    "cold_item_labels",
    "from_pyg",
    "from_pyg_amazon_book",
    "from_pyg_movielens",
    "from_pyg_movielens1m",
    "from_pyg_movielens100k",
    "heterodata_to_dataset",
    "list_bundled",
    "load_dataset",
    "load_mmrec",
    "user_cooccurrence_graph",
    "write_cold_item_split",
    "write_mmrec",
]
