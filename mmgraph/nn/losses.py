"""Loss functions shared by the models."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Bayesian personalised ranking: ``mean(-log sigmoid(s+ - s-))`` over ``[B]`` scores."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def embedding_l2(*embeddings: Tensor) -> Tensor:
    """``sum_k |E_k|_F^2 / (2B)`` for ``[B, d]`` tensors: LightGCN's per-batch L2 penalty."""
    batch_size = embeddings[0].size(0)
    return sum(e.pow(2).sum() for e in embeddings) / (2 * batch_size)
