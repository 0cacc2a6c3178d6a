r"""MMGCN's graph convolution (Wei et al., ACM MM 2019): one modality's GCN over users and items.

MMGCN runs one GCN per modality over the undirected user–item graph. Each layer has an
*aggregation* step (a node collects its neighbours' representations) and a *combination*
step (the aggregate is merged with the node's own representation and its ID embedding).
:class:`MMGCNConv` is one such layer; :class:`MMGCNBranch` is one modality's stack, with its
own user preference table standing in for the features users do not have.

Node tables stack users first: ``[U + I, d]`` (node ``U + i`` is item ``i``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import degree, to_torch_csr_tensor

from mmgraph.nn.functional import l2_normalize
from mmgraph.nn.sparse import sparse_matmul

AGGREGATIONS = ("mean", "add")


def mmgcn_adjacency(edge_index: Tensor, num_nodes: int, aggregation: str = "mean") -> Tensor:
    r"""The aggregation of :class:`MMGCNConv` as a sparse matrix ``adj_t [N_dst, N_src]``.

    ``"mean"``: :math:`(D^{-1} A)_{ij} = 1/|\mathcal N(i)|` for each edge ``j -> i`` (MMGCN's
    default); ``"add"``: :math:`A_{ij} = 1`. A node without incoming edges gets a zero row, as
    PyG's ``aggr="mean"`` gives it a zero aggregate.

    Args:
        edge_index: ``[2, E]`` (source, target) edges (both directions for an undirected graph).
        num_nodes: ``N``.
        aggregation: ``"mean"`` or ``"add"``.

    Returns:
        ``[N, N]`` float32 ``torch.sparse_csr`` tensor whose row ``i`` weighs ``i``'s in-edges.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    source, target = edge_index
    if aggregation == "mean":
        in_degree = degree(target, num_nodes, dtype=torch.float32)
        weight = in_degree.reciprocal().index_select(0, target)
    else:
        weight = torch.ones(target.numel(), dtype=torch.float32, device=target.device)
    return to_torch_csr_tensor(torch.stack([target, source]), weight, size=(num_nodes, num_nodes))


class MMGCNConv(MessagePassing):
    r"""One MMGCN layer of one modality: aggregation, then combination with the ID embedding.

    .. math::
        h_v &= \sigma\big(\operatorname{agg}_{j \in \mathcal N(v)} W_1^\top x_j\big)
            && \text{(aggregation; no bias)} \\
        \hat x_v &= \sigma(W_3 x_v + b_3) + e_v
            && \text{(the node's own representation plus its ID embedding)} \\
        x'_v &= \sigma\big(W_2 [h_v \,\|\, \hat x_v] + b_2\big) \;\text{(concat)}
            \quad\text{or}\quad \sigma(W_2 h_v + b_2 + \hat x_v)
            && \text{(combination)}

    with :math:`\sigma` the LeakyReLU (slope 0.01), ``agg`` the neighbour mean (or sum), and
    :math:`e_v` omitted when no ID table is given. Weights :math:`W_1, W_2, W_3` are
    Xavier-normal, the biases keep torch's ``nn.Linear`` init.

    Like :class:`~mmgraph.nn.LightGCNConv`, a sparse ``adj_t`` takes the fast path (one
    sparse–dense product; it must already carry the aggregation's weights, see
    :func:`mmgcn_adjacency`) and an ``edge_index`` the message-passing path with PyG's
    ``aggr``; both compute the same result.

    Args:
        in_dim: width of the input representation ``x``.
        out_dim: width of the output and of the ID embedding ``d``.
        concat: combine by concatenation (``True``) or by addition.
        aggregation: ``"mean"`` or ``"add"`` (used by the ``edge_index`` path).
        negative_slope: LeakyReLU slope.

    Shapes:
        - input: ``x [N, in_dim]``; ``adj_t [N, N]`` sparse **or** ``edge_index [2, E]``;
          ``id_embedding [N, out_dim]`` or ``None``; ``adj`` optional transpose of ``adj_t``
          (a cheaper backward, see :func:`~mmgraph.nn.sparse_matmul`).
        - output: ``[N, out_dim]``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        concat: bool = True,
        aggregation: str = "mean",
        negative_slope: float = 0.01,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        super().__init__(aggr=aggregation)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.concat = concat
        self.negative_slope = negative_slope
        self.weight = nn.Parameter(torch.empty(in_dim, in_dim))
        self.self_linear = nn.Linear(in_dim, out_dim)
        self.combine = nn.Linear(in_dim + out_dim if concat else in_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.xavier_normal_(self.weight)
        for linear in (self.self_linear, self.combine):
            linear.reset_parameters()
            nn.init.xavier_normal_(linear.weight)

    def forward(
        self,
        x: Tensor,
        adj_t: Tensor,
        id_embedding: Tensor | None = None,
        adj: Tensor | None = None,
    ) -> Tensor:
        h = self.aggregate_neighbours(x, adj_t, adj)
        own = F.leaky_relu(self.self_linear(x), self.negative_slope)
        if id_embedding is not None:
            own = own + id_embedding
        if self.concat:
            combined = self.combine(torch.cat([h, own], dim=1))
        else:
            combined = self.combine(h) + own
        return F.leaky_relu(combined, self.negative_slope)

    def aggregate_neighbours(self, x: Tensor, adj_t: Tensor, adj: Tensor | None = None) -> Tensor:
        """``h [N, in_dim]``: the activated aggregate of the neighbours' ``x W_1``."""
        messages = x @ self.weight
        return F.leaky_relu(self.propagate(adj_t, x=messages, adj=adj), self.negative_slope)

    def message(self, x_j: Tensor) -> Tensor:
        return x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor, adj: Tensor | None) -> Tensor:
        return sparse_matmul(adj_t, x, adj)

    def __repr__(self) -> str:  # MessagePassing's own repr would hide the switches
        name = type(self).__name__
        return f"{name}({self.in_dim}, {self.out_dim}, concat={self.concat}, aggr={self.aggr})"


class MMGCNBranch(nn.Module):
    r"""One modality's MMGCN: a user preference table, item features, ``L`` :class:`MMGCNConv`.

    .. math::
        x^{(0)} = \operatorname{l2norm}_\text{rows}\big([P_m;\; f_m(X_m)]\big), \qquad
        x^{(l+1)} = \operatorname{MMGCNConv}_l\big(x^{(l)}, \mathcal G, E_\text{id}\big)

    :math:`P_m \in \mathbb R^{U \times d_0}` is the learned user preference for this modality
    (Xavier-normal) and :math:`f_m` a linear projection to ``latent_dim`` (torch's init), or
    the identity when ``latent_dim`` is ``None`` (then :math:`d_0 = d_m`). The first layer
    maps :math:`d_0 \to d`, the others :math:`d \to d`.

    Args:
        num_users: ``U``.
        feature_dim: ``d_m``, width of the modality's item features.
        dim: output width ``d`` (the ID embedding width).
        num_layers: ``L >= 1``.
        latent_dim: projection width :math:`d_0`, or ``None`` for the raw features.
        concat: see :class:`MMGCNConv`.
        aggregation: see :class:`MMGCNConv`.

    Shapes:
        ``features: [I, d_m]``, ``adj_t: [U + I, U + I]``, ``id_embedding: [U + I, d]`` or
        ``None`` -> ``[U + I, d]``.
    """

    def __init__(
        self,
        num_users: int,
        feature_dim: int,
        dim: int,
        num_layers: int = 3,
        latent_dim: int | None = 256,
        concat: bool = True,
        aggregation: str = "mean",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        width = feature_dim if latent_dim is None else latent_dim
        self.preference = nn.Parameter(torch.empty(num_users, width))
        self.projection = None if latent_dim is None else nn.Linear(feature_dim, latent_dim)
        self.convs = nn.ModuleList(
            MMGCNConv(width if layer == 0 else dim, dim, concat, aggregation)
            for layer in range(num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.preference)
        if self.projection is not None:
            self.projection.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def initial(self, features: Tensor) -> Tensor:
        """``x^(0) [U + I, d_0]``: row-normalised preferences and projected item features."""
        items = features if self.projection is None else self.projection(features)
        return l2_normalize(torch.cat([self.preference, items]))

    def forward(
        self,
        features: Tensor,
        adj_t: Tensor,
        id_embedding: Tensor | None = None,
        adj: Tensor | None = None,
    ) -> Tensor:
        x = self.initial(features)
        for conv in self.convs:
            x = conv(x, adj_t, id_embedding, adj)
        return x
