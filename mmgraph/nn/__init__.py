"""Layers and functional pieces (no I/O): convolutions, heads, losses, ranking."""

from mmgraph.nn.adversarial import AdversarialDiscriminator, gradient_penalty
from mmgraph.nn.alignment import AlignmentHead, distribution_distance, gaussian_stats
from mmgraph.nn.attention import ModalityAttention
from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.conv import LightGCNConv
from mmgraph.nn.encoders import (
    FeatureProjector,
    ItemGraphPropagation,
    ModalityFusion,
    MultiBranchLightGCN,
    UserItemInput,
)
from mmgraph.nn.losses import bpr_loss, embedding_l2
from mmgraph.nn.masking import FeatureMaskingLoss
from mmgraph.nn.perturb import GraphPerturbation, drop_edges
from mmgraph.nn.ranking import mask_seen, topk_recommendations
from mmgraph.nn.sparse import blocked_sparse_matmul, csr_transpose, sparse_matmul
from mmgraph.nn.structure import (
    ModalityGraphGenerator,
    UserItemGraph,
    gumbel_real_rows,
    interaction_rows,
    normalized_unseen_scores,
    sample_candidates,
    topk_unseen_items,
    user_item_graph,
)

__all__ = [
    "AdversarialDiscriminator",
    "AlignmentHead",
    "ContrastiveHead",
    "FeatureMaskingLoss",
    "FeatureProjector",
    "GraphPerturbation",
    "ItemGraphPropagation",
    "LightGCNConv",
    "ModalityAttention",
    "ModalityFusion",
    "ModalityGraphGenerator",
    "MultiBranchLightGCN",
    "UserItemGraph",
    "UserItemInput",
    "blocked_sparse_matmul",
    "bpr_loss",
    "csr_transpose",
    "distribution_distance",
    "drop_edges",
    "embedding_l2",
    "gaussian_stats",
    "gradient_penalty",
    "gumbel_real_rows",
    "interaction_rows",
    "mask_seen",
    "normalized_unseen_scores",
    "sample_candidates",
    "sparse_matmul",
    "topk_recommendations",
    "topk_unseen_items",
    "user_item_graph",
]
