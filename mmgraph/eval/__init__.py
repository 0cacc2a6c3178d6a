"""Exact, vectorised full-ranking evaluation (MMRec protocol)."""

from mmgraph.eval.evaluator import (
    DEFAULT_KS,
    Evaluator,
    evaluate_scores,
    model_device,
    run_evaluate,
)
from mmgraph.eval.metrics import ngcf_ndcg, ranking_metrics
from mmgraph.nn.ranking import mask_seen, topk_recommendations

__all__ = [
    "DEFAULT_KS",
    "Evaluator",
    "evaluate_scores",
    "mask_seen",
    "model_device",
    "ngcf_ndcg",
    "ranking_metrics",
    "run_evaluate",
    "topk_recommendations",
]
