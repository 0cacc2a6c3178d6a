"""Layers and functional pieces (no I/O): convolutions, heads, losses, ranking."""

from mmgraph.nn.adversarial import AdversarialDiscriminator, gradient_penalty
from mmgraph.nn.alignment import (
    AlignmentHead,
    distribution_distance,
    gaussian_stats,
    grouped_gaussian_stats,
)
from mmgraph.nn.attention import ModalityAttention
from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.conv import LightGCNConv, LightGCNEncoder
from mmgraph.nn.encoders import (
    FeatureProjector,
    ModalityFusion,
    ModalityProjection,
    MultiBranchLightGCN,
    UserItemInput,
    stack_user_item_inputs,
)
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.item_graph import (
    ItemGraphPropagation,
    LatentItemGraph,
    cosine_edge_weights,
    cosine_knn_edges,
    item_graph_csr,
    propagate_items,
    row_sum_normalization,
    similarity_knn_graph,
)
from mmgraph.nn.losses import (
    Triple,
    bpr_loss,
    embedding_l2,
    embedding_norm,
    gather_triple,
    negative_cosine,
    triple_bpr_loss,
)
from mmgraph.nn.masking import FeatureMaskingLoss
from mmgraph.nn.perturb import GraphPerturbation, degree_sensitive_edge_sample, drop_edges
from mmgraph.nn.ranking import mask_seen, topk_recommendations
from mmgraph.nn.sparse import csr_submatrix, csr_transpose, sparse_matmul
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
    "ItemIDDropout",
    "LatentItemGraph",
    "LightGCNConv",
    "LightGCNEncoder",
    "ModalityAttention",
    "ModalityFusion",
    "ModalityGraphGenerator",
    "ModalityProjection",
    "MultiBranchLightGCN",
    "Triple",
    "UserItemGraph",
    "UserItemInput",
    "bpr_loss",
    "cosine_edge_weights",
    "cosine_knn_edges",
    "csr_submatrix",
    "csr_transpose",
    "degree_sensitive_edge_sample",
    "distribution_distance",
    "drop_edges",
    "embedding_l2",
    "embedding_norm",
    "gather_triple",
    "gaussian_stats",
    "gradient_penalty",
    "grouped_gaussian_stats",
    "gumbel_real_rows",
    "interaction_rows",
    "item_graph_csr",
    "mask_seen",
    "negative_cosine",
    "normalized_unseen_scores",
    "propagate_items",
    "row_sum_normalization",
    "sample_candidates",
    "similarity_knn_graph",
    "sparse_matmul",
    "stack_user_item_inputs",
    "topk_recommendations",
    "topk_unseen_items",
    "triple_bpr_loss",
    "user_item_graph",
]
