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
from mmgraph.nn.diffusion import (
    Denoiser,
    GaussianDiffusion,
    diffusion_betas,
    signal_injection_loss,
    timestep_embedding,
)
from mmgraph.nn.encoders import (
    FeatureProjector,
    ModalityFusion,
    ModalityProjection,
    MultiBranchLightGCN,
    UserItemInput,
    stack_user_item_inputs,
)
from mmgraph.nn.graph_refine import (
    BipartiteGraph,
    EdgeWeightFusion,
    RoutingEdgeScorer,
    WeightedGCN,
    edge_dots,
    edge_softmax,
    route_preferences,
    weighted_matmul,
)
from mmgraph.nn.hypergraph import (
    LearnableHypergraph,
    MembershipNoise,
    interaction_matrix,
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
    population_infonce,
    triple_bpr_loss,
)
from mmgraph.nn.masking import FeatureMaskingLoss
from mmgraph.nn.mmgcn_conv import MMGCNBranch, MMGCNConv, mmgcn_adjacency
from mmgraph.nn.perturb import (
    GraphPerturbation,
    degree_sensitive_edge_sample,
    drop_edges,
    drop_entries,
)
from mmgraph.nn.purifier import BehaviorAwareFuser, BehaviorGuidedPurifier, PurifierGate
from mmgraph.nn.ranking import mask_seen, topk_recommendations
from mmgraph.nn.sparse import csr_submatrix, csr_transpose, sparse_matmul
from mmgraph.nn.ssl_augment import (
    AugmentedViews,
    FineCoarseContrast,
    dot_infonce,
    draw_dropout_masks,
    draw_masked_branches,
    dropout_propagation,
    mask_item_branches,
)
from mmgraph.nn.structure import (
    ModalityGraphGenerator,
    UserItemGraph,
    gumbel_real_rows,
    interaction_rows,
    normalized_unseen_scores,
    sample_candidates,
    self_loop_adjacency,
    topk_unseen_items,
    user_item_graph,
)
from mmgraph.nn.user_graph import UserGraphAggregation, cooccurrence_weights

__all__ = [
    "AdversarialDiscriminator",
    "AlignmentHead",
    "AugmentedViews",
    "BehaviorAwareFuser",
    "BehaviorGuidedPurifier",
    "BipartiteGraph",
    "ContrastiveHead",
    "Denoiser",
    "EdgeWeightFusion",
    "FeatureMaskingLoss",
    "FeatureProjector",
    "FineCoarseContrast",
    "GaussianDiffusion",
    "GraphPerturbation",
    "ItemGraphPropagation",
    "ItemIDDropout",
    "LatentItemGraph",
    "LearnableHypergraph",
    "LightGCNConv",
    "LightGCNEncoder",
    "MMGCNBranch",
    "MMGCNConv",
    "MembershipNoise",
    "ModalityAttention",
    "ModalityFusion",
    "ModalityGraphGenerator",
    "ModalityProjection",
    "MultiBranchLightGCN",
    "PurifierGate",
    "RoutingEdgeScorer",
    "Triple",
    "UserGraphAggregation",
    "UserItemGraph",
    "UserItemInput",
    "WeightedGCN",
    "bpr_loss",
    "cooccurrence_weights",
    "cosine_edge_weights",
    "cosine_knn_edges",
    "csr_submatrix",
    "csr_transpose",
    "degree_sensitive_edge_sample",
    "diffusion_betas",
    "distribution_distance",
    "dot_infonce",
    "draw_dropout_masks",
    "draw_masked_branches",
    "drop_edges",
    "drop_entries",
    "dropout_propagation",
    "edge_dots",
    "edge_softmax",
    "embedding_l2",
    "embedding_norm",
    "gather_triple",
    "gaussian_stats",
    "gradient_penalty",
    "grouped_gaussian_stats",
    "gumbel_real_rows",
    "interaction_matrix",
    "interaction_rows",
    "item_graph_csr",
    "mask_item_branches",
    "mask_seen",
    "mmgcn_adjacency",
    "negative_cosine",
    "normalized_unseen_scores",
    "population_infonce",
    "propagate_items",
    "route_preferences",
    "row_sum_normalization",
    "sample_candidates",
    "self_loop_adjacency",
    "signal_injection_loss",
    "similarity_knn_graph",
    "sparse_matmul",
    "stack_user_item_inputs",
    "timestep_embedding",
    "topk_recommendations",
    "topk_unseen_items",
    "triple_bpr_loss",
    "user_item_graph",
    "weighted_matmul",
]
