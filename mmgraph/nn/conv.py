"""LightGCN-style propagation over a pre-normalised adjacency."""

from __future__ import annotations

from torch import Tensor
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
