"""InfoNCE contrastive head shared by MENTOR, MMSSL and the contrastive baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.nn.functional import l2_normalize


class ContrastiveHead(nn.Module):
    r"""InfoNCE between two views whose rows are aligned (row ``i`` of both is one node).

    With cosine similarity :math:`s` and temperature :math:`\tau`, for anchor :math:`a_i`:

    .. math::
        \ell_i = -\log \frac{e^{s(a_i, b_i)/\tau}}
        {\sum_j e^{s(a_i, b_j)/\tau} + \mathbb{1}_{\text{intra}} \sum_{j \ne i} e^{s(a_i, a_j)/\tau}}

    The loss is the mean of :math:`\ell_i` (and of the mirrored term with ``a``/``b`` swapped
    when ``symmetric``). Which rows are passed decides in-batch (the batch's users/items,
    memory ``O(B^2)``) versus full-population (all rows, ``O(N^2)``) contrast.

    - MENTOR's graph-view term: ``intra_view_negatives=False, symmetric=False``.
    - MMSSL / GRACE: ``intra_view_negatives=True`` (negatives also from the anchor's view).

    Args:
        temperature: :math:`\tau`.
        symmetric: average both directions.
        intra_view_negatives: add the anchor view's other rows as negatives.

    Shapes:
        ``a: [N, d]``, ``b: [N, d]`` -> scalar.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        symmetric: bool = False,
        intra_view_negatives: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.symmetric = symmetric
        self.intra_view_negatives = intra_view_negatives

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(f"views must both be [N, d], got {tuple(a.shape)}, {tuple(b.shape)}")
        a = l2_normalize(a)
        b = l2_normalize(b)
        loss = self._one_direction(a, b)
        if self.symmetric:
            loss = (loss + self._one_direction(b, a)) / 2
        return loss

    def _one_direction(self, a: Tensor, b: Tensor) -> Tensor:
        logits = a @ b.T / self.temperature
        if self.intra_view_negatives:
            intra = a @ a.T / self.temperature
            intra = intra.masked_fill(
                torch.eye(a.size(0), dtype=torch.bool, device=a.device), -torch.inf
            )
            logits = torch.cat([logits, intra], dim=1)
        target = torch.arange(a.size(0), device=a.device)
        return F.cross_entropy(logits, target)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, "
            f"intra_view_negatives={self.intra_view_negatives}"
        )
