"""Feature-masking consistency loss (MENTOR's "general feature enhancement, feature view")."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.nn.noise import bernoulli_like


class FeatureMaskingLoss(nn.Module):
    r"""Cosine consistency between a randomly masked view and a learned view of the same rows.

    .. math::
        \mathcal L_f(H) = 1 - \frac{1}{N} \sum_{n=1}^{N}
        \cos\big(\operatorname{Dropout}_p(h_n),\; W h_n + b\big)

    where :math:`W, b` is a ``Linear(dim, dim)`` target network. Gradients reach both the
    representation :math:`H` and the target network; a caller that wants MENTOR's released
    behaviour (a constant loss) evaluates it under ``torch.no_grad()``. Masking follows the
    module's training mode; each entry is zeroed with probability ``p`` and the kept ones are
    not rescaled (dropout's ``1/(1-p)`` does not change the cosine).

    Args:
        dim: width ``D`` of the rows.
        p: dropout (masking) probability.

    Shapes:
        ``h: [N, D]`` -> scalar.
    """

    def __init__(self, dim: int, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"masking probability must be in [0, 1), got {p}")
        self.p = p
        self.target = nn.Linear(dim, dim)

    def forward(self, h: Tensor) -> Tensor:
        masked = h
        if self.training and self.p > 0:
            # Dropout without its 1/(1-p) rescaling, which the cosine ignores; bernoulli_like
            # is faster on the CPU than dropout's own sampling.
            masked = h * bernoulli_like(h, 1.0 - self.p)
        return 1.0 - F.cosine_similarity(masked, self.target(h), dim=-1).mean()

    def extra_repr(self) -> str:
        return f"p={self.p}"
