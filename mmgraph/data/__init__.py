"""Datasets: the :class:`InteractionDataset` contract, loaders and bundled data."""

from mmgraph.data.bundled import list_bundled, load_dataset
from mmgraph.data.cold_start import ColdSplitReport, cold_item_labels, write_cold_item_split
from mmgraph.data.dataset import (
    CSR,
    INTERACTS,
    ITEM,
    REV_INTERACTS,
    USER,
    InteractionDataset,
    build_csr,
)
from mmgraph.data.mmrec import load_mmrec

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
    "list_bundled",
    "load_dataset",
    "load_mmrec",
    "write_cold_item_split",
]
