"""Graph-view augmentations: embedding noise (SimGCL / MENTOR), edge dropout (SGL) and
entry dropout of a sparse matrix (DiffMM)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_edge_index, to_torch_csr_tensor

from mmgraph.nn.noise import uniform_like
from mmgraph.nn.sparse import csr_transpose


class GraphPerturbation(nn.Module):
    r"""Direction-preserving uniform noise on propagated embeddings (SimGCL, MENTOR).

    .. math::
        h' = h + \epsilon \, \operatorname{sign}(h) \odot
        \frac{\delta}{\lVert \delta \rVert_2}, \qquad \delta \sim \mathcal U[0, 1)^{d}

    The noise has norm ``eps`` per row and the sign of ``h`` in every coordinate, so ``h'``
    stays in ``h``'s orthant (coordinates that are exactly 0 are left unchanged). It is drawn on
    ``h``'s device by :func:`~mmgraph.nn.noise.uniform_like` (seeded from torch's global
    generator), in training and eval mode alike: a model decides where to use the perturbed
    view.

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
        # One fused h + sign(h) * noise: half the time of copysign and a zero mask.
        return h.addcmul(torch.sign(h.detach()), self._scaled_uniform(h))

    @torch.no_grad()
    def perturb_(self, h: Tensor) -> Tensor:
        """``forward`` in place, without gradient (``sign(h)`` has none), and returns ``h``.

        For a caller that owns ``h``: a fresh product that no backward pass reads.
        """
        return h.addcmul_(torch.sign(h), self._scaled_uniform(h))

    def _scaled_uniform(self, h: Tensor) -> Tensor:
        """``eps · δ / ‖δ‖`` over the last dimension, ``δ ~ U[0, 1)``, shaped like ``h``."""
        noise = uniform_like(h)
        norm = torch.linalg.vector_norm(noise, dim=-1, keepdim=True).clamp_min(1e-12)
        return noise.mul_(self.eps / norm)

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


def drop_entries(adj: Tensor, keep_rate: float) -> tuple[Tensor, Tensor]:
    """Keep each stored entry of ``adj`` with probability ``keep_rate``, scaled by
    ``1 / keep_rate`` (DiffMM's ``SpAdjDropEdge``: entries, self-loops included, are
    dropped independently, so the result is not symmetric). Torch's global generator.

    Returns:
        ``(dropped, dropped^T)``, both sparse CSR.
    """
    if keep_rate >= 1.0:
        return adj, adj
    edge_index, values = to_edge_index(adj)
    keep = torch.rand(values.numel(), device=values.device) < keep_rate
    dropped = to_torch_csr_tensor(
        edge_index[:, keep], values[keep] / keep_rate, size=tuple(adj.shape)
    )
    return dropped, csr_transpose(dropped)


def degree_sensitive_edge_sample(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    keep_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""FREEDOM's degree-sensitive edge pruning of a user–item graph.

    Keeps ``floor(E · keep_ratio)`` distinct edges, drawn without replacement with probability
    proportional to :math:`w_{ui} = 1 / \sqrt{d_u d_i}` (edges between low-degree nodes are
    kept more often). The draw uses exponential keys (Efraimidis & Spirakis, 2006): the edges
    with the smallest :math:`-\log(r_e) / w_e`, :math:`r_e \sim \mathcal U(0, 1)`, which has
    the distribution of ``torch.multinomial(w, n, replacement=False)`` (FREEDOM's code) in
    ``O(E log E)`` and without ``multinomial``'s limit of :math:`2^{24}` categories.

    Args:
        edge_index: ``[2, E]`` (user, item) training pairs, no duplicates.
        num_users: ``U``.
        num_items: ``I``.
        keep_ratio: fraction of edges kept, in ``[0, 1]`` (FREEDOM: ``1 - dropout``).
        generator: source of randomness (CPU generator; ``None``: torch's global one).

    Returns:
        ``[2, E_kept]`` the kept pairs (re-normalise before propagating).
    """
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    num_kept = int(edge_index.size(1) * keep_ratio)
    users, items = edge_index
    user_degree = torch.bincount(users, minlength=num_users).float()
    item_degree = torch.bincount(items, minlength=num_items).float()
    weight = (user_degree[users] * item_degree[items]).rsqrt()
    uniform = torch.rand(edge_index.size(1), generator=generator).to(weight.device)
    keys = -torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)) / weight
    kept = torch.topk(keys, num_kept, largest=False).indices
    return edge_index[:, kept.sort().values]
