r"""User–user graph layers (DualGNN): preferences aggregated over co-occurring users.

The graph is a fixed sparse ``[U, U]`` matrix whose row ``u`` lists ``u``'s neighbours with the
number of training items they share (:func:`mmgraph.data.cooccurrence.user_cooccurrence_graph`
builds it). :func:`cooccurrence_weights` turns those counts into aggregation weights, and
:class:`UserGraphAggregation` propagates user representations over the weighted graph.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import softmax

from mmgraph.nn.item_graph import ItemGraphPropagation
from mmgraph.nn.sparse import csr_transpose

#: ways of weighting a user's neighbours (DualGNN's ``user_aggr_mode``).
USER_AGGREGATIONS = ("softmax", "mean")


def cooccurrence_weights(graph: Tensor, aggregation: str = "softmax") -> Tensor:
    r"""Row weights :math:`s_{uv}` of a co-occurrence graph with counts :math:`c_{uv}`.

    .. math::
        s_{uv} = \frac{\exp c_{uv}}{\sum_{w \in N(u)} \exp c_{uw}} \;(\text{softmax}), \qquad
        s_{uv} = \frac{1}{|N(u)|} \;(\text{mean})

    over the neighbours :math:`N(u)` stored in row ``u`` (DualGNN's ``softmax`` and ``mean``
    user aggregation). A row without neighbours stays empty (it aggregates to zero).

    Shapes:
        ``graph: [U, U]`` sparse CSR counts -> ``[U, U]`` sparse CSR weights, same pattern.
    """
    if aggregation not in USER_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {USER_AGGREGATIONS}, got {aggregation!r}")
    if graph.layout != torch.sparse_csr:
        raise ValueError(f"the user graph must be a sparse CSR matrix, got {graph.layout}")
    num_rows = graph.size(0)
    crow, values = graph.crow_indices(), graph.values()
    rows = torch.repeat_interleave(
        torch.arange(num_rows, device=values.device), crow.diff(), output_size=values.numel()
    )
    if aggregation == "softmax":
        weights = softmax(values.float(), rows, num_nodes=num_rows)
    else:
        weights = crow.diff().float().reciprocal()[rows]
    return torch.sparse_csr_tensor(crow, graph.col_indices(), weights, size=graph.shape)


class UserGraphAggregation(nn.Module):
    r"""Residual hop(s) over a fixed weighted user–user graph (DualGNN's user graph).

    .. math::
        \text{out}_u = x_u + \sum_{v \in N(u)} s_{uv}\, x_v

    with :math:`s` from :func:`cooccurrence_weights` (one hop, residual, as DualGNN; the hop is
    :class:`~mmgraph.nn.ItemGraphPropagation`'s, over the user graph). The weights are
    non-persistent buffers (dataset structure, not learned; rebuilt from the data on load).

    Args:
        cooccurrence: ``[U, U]`` sparse CSR co-occurrence counts.
        aggregation: ``"softmax"`` (DualGNN's default) or ``"mean"``.
        num_layers: hops (DualGNN: 1).
        residual: add the input (DualGNN) or return the aggregation alone.

    Shapes:
        ``x: [U, D]`` -> ``[U, D]``.
    """

    def __init__(
        self,
        cooccurrence: Tensor,
        aggregation: str = "softmax",
        num_layers: int = 1,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if cooccurrence.dim() != 2 or cooccurrence.size(0) != cooccurrence.size(1):
            raise ValueError(f"the user graph must be [U, U], got {list(cooccurrence.shape)}")
        self.aggregation = aggregation
        weight = cooccurrence_weights(cooccurrence, aggregation)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("weight_t", csr_transpose(weight), persistent=False)
        self.propagation = ItemGraphPropagation(num_layers, residual)

    def forward(self, x: Tensor) -> Tensor:
        return self.propagation(x, self.weight, self.weight_t)

    def extra_repr(self) -> str:
        return f"aggregation={self.aggregation!r}, num_users={self.weight.size(0)}"
