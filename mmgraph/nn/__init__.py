"""Layers and functional pieces (no I/O): convolutions, heads, losses, ranking."""

from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.conv import LightGCNConv
from mmgraph.nn.losses import bpr_loss, embedding_l2
from mmgraph.nn.ranking import mask_seen, topk_recommendations
from mmgraph.nn.sparse import blocked_sparse_matmul, csr_transpose, sparse_matmul

__all__ = [
    "ContrastiveHead",
    "LightGCNConv",
    "blocked_sparse_matmul",
    "bpr_loss",
    "csr_transpose",
    "embedding_l2",
    "mask_seen",
    "sparse_matmul",
    "topk_recommendations",
]
