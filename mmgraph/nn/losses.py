"""Loss functions shared by the models."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmgraph.data.sampling import Batch
from mmgraph.kernels import l2_normalize, matmul_cross_entropy


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Bayesian personalised ranking: ``mean(-log sigmoid(s+ - s-))`` over ``[B]`` scores."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


class Triple(NamedTuple):
    """The rows of a batch's BPR triples: ``user``, ``pos``, ``neg``, each ``[B, d]``."""

    user: Tensor
    pos: Tensor
    neg: Tensor


def gather_triple(user_emb: Tensor, item_emb: Tensor, batch: Batch) -> Triple:
    """The rows of ``user_emb [U, d]`` and ``item_emb [I, d]`` for ``batch``'s users,
    positive and negative items."""
    return Triple(
        user_emb.index_select(0, batch.users),
        item_emb.index_select(0, batch.pos_items),
        item_emb.index_select(0, batch.neg_items),
    )


def triple_bpr_loss(user: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """:func:`bpr_loss` of inner-product scores ``<u, i+>``, ``<u, i->`` of ``[B, d]`` rows
    (a :class:`Triple`)."""
    return bpr_loss((user * pos).sum(-1), (user * neg).sum(-1))


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


def population_infonce(
    anchors: Tensor,
    candidates: Tensor,
    positives: Tensor,
    temperature: float = 0.2,
    reduction: str = "sum",
) -> Tensor:
    r"""InfoNCE of each anchor against *all* rows of another view.

    .. math::
        \ell_b = -\log \frac{\exp(\cos(a_b, c_{p_b}) / \tau)}
        {\sum_{j=1}^{N} \exp(\cos(a_b, c_j) / \tau)}

    summed over the anchors (``reduction="sum"``: LGMRec's ``ssl_triple_loss``, the positive
    being the same node's row in the other modality) or averaged (``"mean"``: DiffMM's
    ``contrastLoss``, the anchors being the batch's rows of the whole-population view).

    The value and gradients equal ``F.cross_entropy(logits, positives, reduction=...)`` of the
    ``[B, N]`` cosine logits; the kernel :func:`~mmgraph.kernels.matmul_cross_entropy` keeps
    one ``[B, N]`` buffer.

    Shapes:
        ``anchors: [B, d]``, ``candidates: [N, d]``, ``positives: [B]`` row indices of
        ``candidates`` -> scalar.
    """
    scaled = l2_normalize(anchors) / temperature  # scales [B, d], not the [B, N] logits
    return matmul_cross_entropy(scaled, l2_normalize(candidates), positives, reduction)
