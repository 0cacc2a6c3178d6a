r"""Graph refining (GRCN, Wei et al., ACM MM 2020): content-scored, soft-pruned user–item edges.

A refined graph keeps the training edges but weighs each of them by how well the item's
content matches the user's preference in every modality:

1. :class:`RoutingEdgeScorer` (one per modality) routes the user preferences towards the
   content of their items and scores each edge by attention, once from the item's side and
   once from the user's side;
2. :class:`EdgeWeightFusion` fuses the modalities' scores of an edge into one weight, which
   soft-prunes (ReLU) edges that no modality vouches for;
3. :class:`WeightedGCN` propagates node embeddings over the weighted edges.

**Edge order.** The training pairs are held once, by :class:`BipartiteGraph`, sorted by
(user, item): "edge ``e``" is the ``e``-th pair in that order. Per-edge tensors are ``[E]``
in that order; the two directions of every edge are ``[2E]``, the ``E`` user -> item
messages first, then the ``E`` item -> user messages. Node ``u`` is user ``u`` and node
``U + i`` is item ``i`` wherever users and items share one table.

**Products.** Everything is differentiable in the edge values: the refining is trained by the
loss of the convolution that uses it. The two products with per-edge values are the kernels
:func:`~mmgraph.kernels.edge_dots` (:math:`s_e = \langle a_{u(e)}, b_{i(e)} \rangle`, a
sampled dense–dense product) and :func:`~mmgraph.kernels.weighted_matmul` (:math:`A(v) x`
with :math:`A_{u(e), i(e)} = v_e`), on torch's CSR kernels; a :class:`BipartiteGraph` is
their edge pattern. Both are re-exported here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import softmax

from mmgraph.kernels import edge_dots, l2_normalize, weighted_matmul

EDGE_WEIGHT_MODES = ("confid", "max", "mean")

__all__ = [
    "EDGE_WEIGHT_MODES",
    "BipartiteGraph",
    "EdgeWeightFusion",
    "RoutingEdgeScorer",
    "WeightedGCN",
    "edge_dots",
    "edge_softmax",
    "route_preferences",
    "weighted_matmul",
]


class BipartiteGraph(nn.Module):
    """The structure of a user–item graph as CSR indices, in both orientations.

    Holds no weights: the entries of its ``[U, I]`` matrix (and of the ``[I, U]``
    transpose) are supplied per call, as ``[E]`` values in edge order (see the module
    docstring). The indices are non-persistent buffers, so they follow the owning model's
    ``.to(device)`` and stay out of checkpoints.

    Args:
        edge_index: ``[2, E]`` (user, item) pairs, in any order.
        num_users: ``U``.
        num_items: ``I``.

    Attributes:
        users, items: ``[E]`` endpoints of every edge, in edge order.
    """

    def __init__(self, edge_index: Tensor, num_users: int, num_items: int) -> None:
        super().__init__()
        users, items = edge_index[0].long(), edge_index[1].long()
        order = torch.argsort(users * num_items + items, stable=True)
        users, items = users[order], items[order]
        by_item = torch.argsort(items * num_users + users, stable=True)
        self.num_users, self.num_items = num_users, num_items
        self.register_buffer("users", users, persistent=False)
        self.register_buffer("items", items, persistent=False)
        self.register_buffer("crow", _crow(users, num_users), persistent=False)
        self.register_buffer("crow_t", _crow(items[by_item], num_items), persistent=False)
        self.register_buffer("col_t", users[by_item], persistent=False)
        #: edge ids in the transpose's CSR order: its values are ``values[by_item]``
        self.register_buffer("by_item", by_item, persistent=False)

    @property
    def num_edges(self) -> int:
        return self.users.numel()

    def matrix(self, values: Tensor, transpose: bool = False) -> Tensor:
        """``[U, I]`` CSR matrix with ``values [E]`` (edge order) at the edges; its ``[I, U]``
        transpose with ``transpose``."""
        if transpose:
            return torch.sparse_csr_tensor(
                self.crow_t,
                self.col_t,
                values.index_select(0, self.by_item),
                (self.num_items, self.num_users),
                check_invariants=False,
            )
        return torch.sparse_csr_tensor(
            self.crow,
            self.items,
            values,
            (self.num_users, self.num_items),
            check_invariants=False,
        )

    def extra_repr(self) -> str:
        return f"num_users={self.num_users}, num_items={self.num_items}, " + (
            f"num_edges={self.num_edges}"
        )


def _crow(rows: Tensor, num_rows: int) -> Tensor:
    """CSR row pointer ``[num_rows + 1]`` of sorted row ids."""
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=num_rows), 0, out=crow[1:])
    return crow


def edge_softmax(scores: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    r"""Softmax of edge scores within each group (the edges that share a node).

    .. math::
        \alpha_e = \frac{\exp s_e}{\sum_{e' : g(e') = g(e)} \exp s_{e'}}

    Shapes:
        ``scores: [E]``, ``groups: [E]`` node ids in ``[0, num_groups)`` -> ``[E]``.
    """
    return softmax(scores, groups, num_nodes=num_groups)


def route_preferences(
    preference: Tensor, content: Tensor, graph: BipartiteGraph, num_routing: int
) -> Tensor:
    r"""Neighbour routing: move each user's preference towards the content of its items.

    For ``num_routing`` iterations, with unit rows :math:`p_u` and :math:`c_i`:

    .. math::
        a_{ui} = \operatorname{softmax}_{i \in N(u)} \langle p_u, c_i \rangle, \qquad
        p_u \leftarrow \operatorname{l2norm}\Big(p_u + \sum_{i \in N(u)} a_{ui} c_i\Big)

    Args:
        preference: ``[U, C]`` unit-norm user preferences (one modality).
        content: ``[I, C]`` unit-norm item content.
        graph: the training graph.
        num_routing: iterations ``T >= 0`` (0 returns ``preference``).

    Returns:
        ``[U, C]`` routed unit-norm preferences.
    """
    for _ in range(num_routing):
        logits = edge_dots(graph, preference, content)
        weight = edge_softmax(logits, graph.users, graph.num_users)
        update = weighted_matmul(graph, weight, content)
        preference = l2_normalize(update.add_(preference))  # the product is a fresh tensor
    return preference


class RoutingEdgeScorer(nn.Module):
    r"""One modality of GRCN's graph refining layer: routed preferences, edge scores, and the
    modality's attention-propagated node representations.

    With learned preferences :math:`P \in \mathbb R^{U \times C}` and the modality's item
    content :math:`f` (computed by the caller, e.g. a projection and LeakyReLU):
    :math:`p = \operatorname{l2norm}(P)`, :math:`c = \operatorname{l2norm}(f)`, then
    :math:`p \leftarrow` :func:`route_preferences` (``num_routing`` iterations) and, with
    :math:`s_{ui} = \langle p_u, c_i \rangle`,

    .. math::
        \alpha^{\to i}_{ui} = \operatorname{softmax}_{u' \in N(i)} s_{u'i}, \qquad
        \alpha^{\to u}_{ui} = \operatorname{softmax}_{i' \in N(u)} s_{ui'}

    .. math::
        r_u = p_u + \sum_{i \in N(u)} \alpha^{\to u}_{ui} c_i, \qquad
        r_i = c_i + \sum_{u \in N(i)} \alpha^{\to i}_{ui} p_u

    The scores are :math:`\alpha^{\to i}` for the user -> item messages and
    :math:`\alpha^{\to u}` for the item -> user messages (each normalised over the messages
    that reach the same node).

    Args:
        num_users: ``U``.
        dim: ``C``, the width of preferences and content.
        num_routing: routing iterations ``T`` (GRCN: 3).

    Shapes:
        ``content: [I, C]`` -> ``(users [U, C], items [I, C], scores [2E])`` (the
        representations :math:`r`; scores: user -> item messages, then item -> user, each in
        edge order).
    """

    def __init__(self, num_users: int, dim: int, num_routing: int = 3) -> None:
        super().__init__()
        if num_routing < 0:
            raise ValueError(f"num_routing must be >= 0, got {num_routing}")
        self.num_routing = num_routing
        self.preference = nn.Parameter(torch.empty(num_users, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.preference)

    def forward(self, content: Tensor, graph: BipartiteGraph) -> tuple[Tensor, Tensor, Tensor]:
        c = l2_normalize(content)
        p = route_preferences(l2_normalize(self.preference), c, graph, self.num_routing)
        logits = edge_dots(graph, p, c)
        to_item = edge_softmax(logits, graph.items, graph.num_items)
        to_user = edge_softmax(logits, graph.users, graph.num_users)
        users = weighted_matmul(graph, to_user, c).add_(p)
        items = weighted_matmul(graph, to_item, p, transpose=True).add_(c)
        return users, items, torch.cat([to_item, to_user])

    def extra_repr(self) -> str:
        return f"num_users={self.preference.size(0)}, dim={self.preference.size(1)}, " + (
            f"num_routing={self.num_routing}"
        )


class EdgeWeightFusion(nn.Module):
    r"""Fuse per-modality edge scores into one weight per message, then soft-prune.

    With scores :math:`\alpha^m_e` of message :math:`e` (sent by node :math:`s(e)`) in
    modality :math:`m`:

    - ``"confid"`` (GRCN's default): :math:`w_e = \max_m \alpha^m_e\, \kappa_{s(e), m}`, with
      a learned confidence :math:`\kappa \in \mathbb R^{N \times M}` per node and modality
      (Xavier-normal; it may turn negative, which is what lets pruning drop an edge);
    - ``"max"``: :math:`w_e = \max_m \alpha^m_e`;
    - ``"mean"``: :math:`w_e = \frac{1}{M} \sum_m \alpha^m_e`.

    With ``pruning`` the weight is :math:`\max(w_e, 0)` (edges with a negative weight carry
    no message); the softmax scores are positive, so pruning only acts in ``"confid"`` mode.

    Args:
        num_nodes: ``N`` (only ``"confid"`` uses it).
        num_modalities: ``M >= 1``.
        mode: ``"confid"``, ``"max"`` or ``"mean"``.
        pruning: apply the ReLU.

    Shapes:
        ``scores: [E, M]``, ``senders: [E]`` node ids -> ``[E]``.
    """

    def __init__(
        self, num_nodes: int, num_modalities: int, mode: str = "confid", pruning: bool = True
    ) -> None:
        super().__init__()
        if mode not in EDGE_WEIGHT_MODES:
            raise ValueError(f"mode must be one of {EDGE_WEIGHT_MODES}, got {mode!r}")
        if num_modalities < 1:
            raise ValueError("edge weight fusion needs at least one modality")
        self.mode = mode
        self.pruning = pruning
        self.confidence = (
            nn.Parameter(torch.empty(num_nodes, num_modalities)) if mode == "confid" else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.confidence is not None:
            nn.init.xavier_normal_(self.confidence)

    def forward(self, scores: Tensor, senders: Tensor) -> Tensor:
        if self.confidence is not None:
            scores = scores * self.confidence.index_select(0, senders)
        weight = scores.mean(1) if self.mode == "mean" else scores.max(1).values
        return torch.relu(weight) if self.pruning else weight

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, pruning={self.pruning}"


class WeightedGCN(nn.Module):
    r"""Parameter-free propagation over a user–item graph with a weight per message, with a
    layer-sum readout.

    .. math::
        h^{(l+1)}_u = \sum_{i \in N(u)} w^{\to u}_{ui}\, h^{(l)}_i, \qquad
        h^{(l+1)}_i = \sum_{u \in N(i)} w^{\to i}_{ui}\, h^{(l)}_u, \qquad
        \text{out} = \sum_{l=0}^{L} h^{(l)}

    No normalisation is added: the weights are the adjacency as given (they need not be
    symmetric). Differentiable in the weights (:func:`weighted_matmul`).

    Args:
        num_layers: hops ``L >= 0`` (GRCN: 2).

    Shapes:
        ``users: [U, d]``, ``items: [I, d]``, ``edge_weight: [2E]`` (user -> item messages
        :math:`w^{\to i}`, then item -> user :math:`w^{\to u}`, each in edge order) ->
        ``(users [U, d], items [I, d])``.
    """

    def __init__(self, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers

    def forward(
        self, users: Tensor, items: Tensor, graph: BipartiteGraph, edge_weight: Tensor
    ) -> tuple[Tensor, Tensor]:
        to_item, to_user = edge_weight.split(graph.num_edges)
        total_users, total_items = users, items
        for layer in range(self.num_layers):
            users, items = (
                weighted_matmul(graph, to_user, items),
                weighted_matmul(graph, to_item, users, transpose=True),
            )
            if layer == 0:  # the readout must not write into the caller's tensors
                total_users, total_items = total_users + users, total_items + items
            else:
                total_users.add_(users)
                total_items.add_(items)
        return total_users, total_items

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"
