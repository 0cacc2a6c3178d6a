"""Per-user top-K ranking metrics computed from a hit matrix (pure tensor functions).

Every function takes ``hits`` of shape ``[B, K_max]`` (bool): ``hits[b, r]`` is ``True`` when the
item at 1-based rank ``r + 1`` of user ``b``'s ranked list is one of the user's targets ``T_u``.
Definitions follow MMRec (and RecBole); ``h_r`` is the hit at rank ``r``:

* ``recall@k    = Σ_{r≤k} h_r / |T_u|``  (denominator ``|T_u|``, not ``min(|T_u|, k)``)
* ``precision@k = Σ_{r≤k} h_r / k``
* ``ndcg@k      = DCG / IDCG``, ``DCG = Σ_{r≤k} h_r / log2(r + 1)``,
  ``IDCG = Σ_{r≤min(|T_u|, k)} 1 / log2(r + 1)``
* ``map@k       = Σ_{r≤k} prec(r) · h_r / min(|T_u|, k)`` with ``prec(r) = Σ_{j≤r} h_j / r``
* ``hit@k       = 1[Σ_{r≤k} h_r > 0]``

:func:`ngcf_ndcg` is the NGCF/LATTICE/MMSSL variant of NDCG, kept only to compare with numbers
published by that lineage; it is *not* comparable to ``ndcg@k``.

All accumulation is in float64 (float32 on devices without float64 support).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["METRIC_NAMES", "ngcf_ndcg", "ranking_metrics"]

METRIC_NAMES = ("recall", "ndcg", "precision", "map", "hit")


def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _check_hits_ks(hits: Tensor, ks: Sequence[int]) -> list[int]:
    if hits.dim() != 2 or hits.dtype != torch.bool:
        raise ValueError(f"hits must be a [B, K] bool tensor, got {hits.dtype} {tuple(hits.shape)}")
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks must not be empty")
    bad = [k for k in ks if k < 1 or k > hits.size(1)]
    if bad:
        raise ValueError(f"every k must lie in [1, {hits.size(1)}] (hits.size(1)); got {bad}")
    return ks


def _discount(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[length]`` gains ``1 / log2(r + 1)`` for ranks ``r = 1..length``."""
    ranks = torch.arange(1, length + 1, dtype=dtype, device=device)
    return 1.0 / torch.log2(ranks + 1.0)


def ranking_metrics(hits: Tensor, num_targets: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Recall, NDCG, precision, MAP and hit rate at every ``k``, per user.

    Users without targets have undefined recall/NDCG/MAP and must not be passed (the
    evaluator ranks only users with at least one target in the split).

    Args:
        hits: ``[B, K_max]`` bool, ``hits[b, r]`` = the item at rank ``r + 1`` is a target.
        num_targets: ``[B]`` number of targets ``|T_u|`` per user (all of them, not only
            those retrieved in the top ``K_max``); must be ``>= 1`` and ``>=`` the row's hits.
        ks: cut-offs, each in ``[1, K_max]``.

    Returns:
        ``{"recall@k", "ndcg@k", "precision@k", "map@k", "hit@k": [B] float}`` for each ``k``.

    Raises:
        ValueError: on bad shapes, ``k`` outside ``[1, K_max]``, a user with zero targets, or
            a user with more hits than targets.
    """
    ks = _check_hits_ks(hits, ks)
    if num_targets.shape != hits.shape[:1]:
        raise ValueError(
            f"num_targets has shape {tuple(num_targets.shape)}, expected [{hits.size(0)}]"
        )
    dtype = _float_dtype(hits.device)
    h = hits.to(dtype)
    n = num_targets.to(dtype)
    cum_hits = h.cumsum(1)  # [B, K_max]: hits within the top r
    # One device sync for both checks; the message is worked out only on failure.
    if bool(((n < 1) | (cum_hits[:, -1] > n)).any()):
        if bool((n < 1).any()):
            raise ValueError("num_targets contains users with zero targets; drop them first")
        raise ValueError("some users have more hits than targets (num_targets too small)")

    gain = _discount(hits.size(1), dtype, hits.device)  # [K_max]
    cum_dcg = (h * gain).cumsum(1)  # [B, K_max]
    # ideal[m] = Σ_{r≤m} gain_r, so ideal[min(|T_u|, k)] is the IDCG.
    ideal = torch.cat([gain.new_zeros(1), gain.cumsum(0)])  # [K_max + 1]
    ranks = torch.arange(1, hits.size(1) + 1, dtype=dtype, device=hits.device)
    cum_ap = (cum_hits / ranks * h).cumsum(1)  # [B, K_max]: Σ_{j≤r} prec(j) h_j

    out: dict[str, Tensor] = {}
    for k in ks:
        found = cum_hits[:, k - 1]
        capped = n.clamp(max=k)
        out[f"recall@{k}"] = found / n
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / ideal[capped.long()]
        out[f"precision@{k}"] = found / k
        out[f"map@{k}"] = cum_ap[:, k - 1] / capped
        out[f"hit@{k}"] = (found > 0).to(dtype)
    return out


def ngcf_ndcg(hits: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """NDCG as computed by NGCF / LATTICE / MMSSL (``utility/metrics.py::ndcg_at_k``).

    Its ideal DCG is built from the *retrieved* hits, sorted: with ``m`` = number of hits in
    the whole top-``K_max`` list, ``IDCG@k = Σ_{r≤min(m, k)} 1 / log2(r + 1)`` (0/0 → 0).
    Since ``m <= |T_u|`` this is never below :func:`ranking_metrics`' ``ndcg@k`` and it is
    inflated whenever the list misses targets (a single hit at rank 1 scores 1.0 however many
    targets were missed). It also depends on ``K_max = hits.size(1)``. Use it only to compare
    with numbers published under that protocol, never as the NDCG of mmgraph.

    Args:
        hits: ``[B, K_max]`` bool hit matrix of the top-``K_max`` lists.
        ks: cut-offs, each in ``[1, K_max]``.

    Returns:
        ``{"ngcf_ndcg@k": [B] float}`` for each ``k``.
    """
    ks = _check_hits_ks(hits, ks)
    dtype = _float_dtype(hits.device)
    h = hits.to(dtype)
    gain = _discount(hits.size(1), dtype, hits.device)
    cum_dcg = (h * gain).cumsum(1)
    ideal = torch.cat([gain.new_zeros(1), gain.cumsum(0)])
    retrieved = hits.sum(1)  # [B] hits in the whole top-K_max list
    out: dict[str, Tensor] = {}
    for k in ks:
        idcg = ideal[retrieved.clamp(max=k)]
        dcg = cum_dcg[:, k - 1]
        out[f"ngcf_ndcg@{k}"] = torch.where(idcg > 0, dcg / idcg, 0.0)
    return out
