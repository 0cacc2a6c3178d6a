"""LightGCN-style propagation over a pre-normalised adjacency."""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from mmgraph.nn.sparse import sparse_matmul


class LightGCNConv(MessagePassing):
    r"""Parameter-free graph convolution of LightGCN (He et al., SIGIR 2020).

    .. math::
        \mathbf{X}' = \hat{\mathbf{A}} \mathbf{X}

    Unlike :class:`torch_geometric.nn.conv.LGConv`, the normalisation is *not* recomputed on
    every call: build :math:`\hat A` once (:func:`mmgraph.data.normalized_adjacency`) and pass
    it here. A sparse matrix takes the fast path (one sparse–dense product, with a cheap
    backward when ``adj`` is given); an ``edge_index`` with ``edge_weight`` takes the
    message-passing path, and both compute the same result.

    Shapes:
        - input: ``x [N_src, d]``; ``adj_t [N_dst, N_src]`` sparse **or** ``edge_index [2, E]``
          (source, target) with ``edge_weight [E]``; ``adj [N_src, N_dst]`` optional transpose
          of ``adj_t`` (the same tensor for a symmetric :math:`\hat A`).
        - output: ``[N_dst, d]``.
    """

    def __init__(self) -> None:
        super().__init__(aggr="add")

    def forward(
        self,
        x: Tensor,
        adj_t: Tensor,
        edge_weight: Tensor | None = None,
        adj: Tensor | None = None,
    ) -> Tensor:
        return self.propagate(adj_t, x=x, edge_weight=edge_weight, adj=adj)

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else x_j * edge_weight.view(-1, 1)

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor, adj: Tensor | None) -> Tensor:
        return sparse_matmul(adj_t, x, adj)


class LightGCNEncoder(nn.Module):
    r"""``L`` LightGCN hops with the layer-mean readout (LightGCN, LATTICE, FREEDOM, BM3).

    .. math::
        E = \frac{1}{L+1} \sum_{l=0}^{L} \hat A^{l} E^{(0)}

    Args:
        num_layers: hops ``L >= 0``.

    Shapes:
        ``x: [N, d]``, ``adj: [N, N]`` symmetric sparse :math:`\hat A` -> ``[N, d]``.
    """

    def __init__(self, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers
        self.conv = LightGCNConv()

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        total = x
        for _ in range(self.num_layers):
            x = self.conv(x, adj, adj=adj)
            total = total + x
        return total / (self.num_layers + 1)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"
