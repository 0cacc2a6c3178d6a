"""Loss functions shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Bayesian personalised ranking: ``mean(-log sigmoid(s+ - s-))`` over ``[B]`` scores."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def embedding_l2(*embeddings: Tensor) -> Tensor:
    """``sum_k |E_k|_F^2 / (2B)`` for ``[B, d]`` tensors: LightGCN's per-batch L2 penalty."""
    batch_size = embeddings[0].size(0)
    return sum(e.pow(2).sum() for e in embeddings) / (2 * batch_size)


def embedding_norm(*embeddings: Tensor) -> Tensor:
    """``sum_k |E_k|_F / n`` with ``n`` the rows of the last tensor: MMRec's ``EmbLoss``.

    Not squared (unlike :func:`embedding_l2`); VBPR and BM3 in MMRec regularise with it.
    """
    return sum(torch.linalg.vector_norm(e) for e in embeddings) / embeddings[-1].size(0)


def negative_cosine(online: Tensor, target: Tensor) -> Tensor:
    """``1 - mean_b cos(online_b, target_b)`` over ``[B, d]`` rows; no gradient to ``target``.

    The bootstrap objective of BYOL / BM3: the target is a stop-gradient view.
    """
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()
