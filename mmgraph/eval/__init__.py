"""Exact, vectorised full-ranking evaluation (MMRec protocol)."""

from mmgraph.eval.evaluator import (
    DEFAULT_KS,
    Evaluator,
    evaluate_scores,
    model_device,
)
from mmgraph.eval.metrics import ngcf_ndcg, ranking_metrics
from mmgraph.eval.significance import (
    PairedTest,
    average_per_user,
    paired_test,
    read_per_user,
    read_seed_means,
    write_per_user,
)
from mmgraph.nn.ranking import mask_seen, topk_recommendations

__all__ = [
    "DEFAULT_KS",
    "Evaluator",
    "PairedTest",
    "average_per_user",
    "evaluate_scores",
    "mask_seen",
    "model_device",
    "ngcf_ndcg",
    "paired_test",
    "ranking_metrics",
    "read_per_user",
    "read_seed_means",
    "topk_recommendations",
    "write_per_user",
]
