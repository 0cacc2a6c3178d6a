"""Graph-view augmentations: embedding noise (SimGCL / MENTOR) and edge dropout (SGL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GraphPerturbation(nn.Module):
    r"""Direction-preserving uniform noise on propagated embeddings (SimGCL, MENTOR).

    .. math::
        h' = h + \epsilon \, \operatorname{sign}(h) \odot
        \frac{\delta}{\lVert \delta \rVert_2}, \qquad \delta \sim \mathcal U[0, 1)^{d}

    The noise has norm ``eps`` per row and the sign of ``h`` in every coordinate, so ``h'``
    stays in ``h``'s orthant (coordinates that are exactly 0 are left unchanged). It is drawn on
    ``h``'s device from torch's global generator, in training and eval mode alike: a model
    decides where to use the perturbed view.

    Args:
        eps: noise magnitude :math:`\epsilon` (MENTOR: 0.1).

    Shapes:
        ``h: [..., d]`` -> ``[..., d]``; rows are normalised over the last dimension.
    """

    def __init__(self, eps: float = 0.1) -> None:
        super().__init__()
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = eps

    def forward(self, h: Tensor) -> Tensor:
        noise = F.normalize(torch.rand_like(h), dim=-1)
        return h + torch.sign(h) * noise * self.eps

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def drop_edges(edge_index: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Keep every edge independently with probability ``1 - p`` (SGL's edge dropout).

    Re-normalise the kept edges (:func:`mmgraph.data.graph.normalized_adjacency`) before
    propagating. For an undirected graph, pass one direction and add the reverse afterwards
    so that both directions are dropped together. (MENTOR's released code builds edge-dropped
    graphs but never propagates on them, so :class:`~mmgraph.models.MENTOR` does not use this.)

    Args:
        edge_index: ``[2, E]`` edges.
        p: drop probability in ``[0, 1]``.
        generator: source of randomness (CPU generator; the mask is moved to the edges' device).

    Returns:
        ``[2, E_kept]`` the kept edges, in their original order.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"edge drop probability must be in [0, 1], got {p}")
    keep = torch.rand(edge_index.size(1), generator=generator) >= p
    return edge_index[:, keep.to(edge_index.device)]
