"""Serving: export a trained model's embeddings and recommend from them without torch.

:func:`export_model` writes an export folder (embeddings, seen items, id maps, manifest and an
optional faiss index); :class:`ExportedRecommender` reads it back with numpy (and faiss) and
answers top-k queries.
"""

from mmgraph.serve.ann import INDEX_KINDS, IndexSettings
from mmgraph.serve.export import EXPORT_FORMAT, export_model
from mmgraph.serve.exported import ExportedRecommender

__all__ = [
    "EXPORT_FORMAT",
    "INDEX_KINDS",
    "ExportedRecommender",
    "IndexSettings",
    "export_model",
]
