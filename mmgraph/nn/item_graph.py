"""Item–item graph layers: graphs learned from modality embeddings (LATTICE's latent
structure) and propagation over a fixed or learned item graph (FREEDOM, LATTICE, MENTOR).

A graph here is an edge list in PyG's convention: ``edge_index[0]`` the neighbour ``j`` (source),
``edge_index[1]`` the item ``i`` that aggregates (target), with ``edge_weight`` the entry
``A[i, j]``. Weights may carry gradient; :class:`~mmgraph.nn.LightGCNConv` propagates over
``(edge_index, edge_weight)`` by message passing, which is differentiable in both.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import to_torch_csr_tensor

from mmgraph.data.knn import knn_graph
from mmgraph.nn.conv import LightGCNConv
from mmgraph.nn.encoders import ModalityProjection
from mmgraph.nn.sparse import check_increasing_index, csr_submatrix, csr_transpose, sparse_matmul

ItemGraph = tuple[Tensor, Tensor]


def cosine_edge_weights(features: Tensor, edge_index: Tensor) -> Tensor:
    """``cos(x_j, x_i)`` for every edge ``j -> i`` (differentiable in ``features``).

    Shapes:
        ``features: [I, d]``, ``edge_index: [2, E]`` -> ``[E]``.
    """
    unit = F.normalize(features, dim=1)
    return (unit.index_select(0, edge_index[0]) * unit.index_select(0, edge_index[1])).sum(-1)


def row_sum_normalization(edge_index: Tensor, edge_weight: Tensor, num_items: int) -> Tensor:
    r"""LATTICE's :math:`D^{-1/2} A D^{-1/2}` with :math:`D` the *weighted* row sums of ``A``.

    .. math::
        \hat A_{ij} = \frac{A_{ij}}{\sqrt{r_i}\sqrt{r_j}}, \qquad r_i = \sum_j A_{ij}

    Rows whose sum is not positive get ``r^{-1/2} = 0`` (the released code sets infinities to
    0; a non-positive sum would need every top-k cosine of a row to be <= 0). Duplicate edges
    count with their summed weight, as in a dense matrix.

    Shapes:
        ``edge_index: [2, E]``, ``edge_weight: [E]`` -> ``[E]`` normalised weights.
    """
    row_sum = torch.zeros(num_items, dtype=edge_weight.dtype, device=edge_weight.device)
    row_sum = row_sum.index_add(0, edge_index[1], edge_weight)
    inv_sqrt = torch.where(row_sum > 0, row_sum.clamp_min(1e-30).rsqrt(), 0.0)
    return (
        edge_weight
        * inv_sqrt.index_select(0, edge_index[1])
        * inv_sqrt.index_select(0, edge_index[0])
    )


def cosine_knn_edges(features: Tensor, k: int) -> ItemGraph:
    r"""Top-``k`` cosine neighbours of every item, each edge weighted by its cosine.

    The neighbour *selection* (a top-k, not differentiable) runs without gradient in row
    blocks (:func:`mmgraph.data.knn.knn_graph`: no ``I x I`` matrix); the kept weights are then
    recomputed from ``features`` with gradient, which equals LATTICE's dense
    ``build_knn_neighborhood`` in values and gradients (the item itself is one of its ``k``
    neighbours).

    Shapes:
        ``features: [I, d]`` -> ``(edge_index [2, I·k], edge_weight [I·k])``.
    """
    edge_index, _ = knn_graph(features.detach(), k, include_self=True)
    return edge_index, cosine_edge_weights(features, edge_index)


def similarity_knn_graph(features: Tensor, k: int) -> ItemGraph:
    """:func:`cosine_knn_edges` normalised by :func:`row_sum_normalization` (LATTICE's
    ``compute_normalized_laplacian``).

    Shapes:
        ``features: [I, d]`` -> ``(edge_index [2, I·k], edge_weight [I·k])``.
    """
    edge_index, weight = cosine_knn_edges(features, k)
    return edge_index, row_sum_normalization(edge_index, weight, features.size(0))


def weighted_union(graphs: list[ItemGraph], weights: Tensor) -> ItemGraph:
    """``sum_m weights[m] A_m`` as one edge list (shared edges appear once per graph)."""
    edge_index = torch.cat([g[0] for g in graphs], dim=1)
    edge_weight = torch.cat([w * g[1] for w, g in zip(weights, graphs, strict=True)])
    return edge_index, edge_weight


class LatentItemGraph(nn.Module):
    r"""LATTICE's item–item structure: learned kNN graphs of projected features, skip-connected
    to the fixed kNN graphs of the raw features.

    .. math::
        \tilde S = D^{-1/2}\Big(\sum_m \alpha_m\, \mathrm{kNN}(\cos(W_m x_m))\Big) D^{-1/2},
        \qquad S = (1 - \lambda)\, \tilde S + \lambda \sum_m \alpha_m \hat S_m

    with :math:`\alpha = \mathrm{softmax}(a)` learned modality weights, :math:`\hat S_m` the
    row-normalised cosine kNN graph of the raw features of modality :math:`m` (built once, by
    :func:`similarity_knn_graph`) and :math:`\lambda` the skip coefficient (0.9). Gradient
    reaches :math:`W_m` and :math:`a` through the kept cosine weights.

    Args:
        features: modality name -> ``[I, d_m]`` frozen raw features.
        dim: width of the projections :math:`W_m` (LATTICE's ``feat_embed_dim`` = 64).
        k: neighbours per item (10).
        skip: :math:`\lambda` (LATTICE's ``lambda_coeff`` = 0.9).
        original: per-modality fixed graphs (``edge_index``, ``edge_weight``) in the order of
            ``features``; ``None`` builds them here with :func:`similarity_knn_graph`.

    Shapes:
        ``forward() -> (edge_index [2, E], edge_weight [E])`` with ``E = 2·M·I·k``.
    """

    def __init__(
        self,
        features: Mapping[str, Tensor],
        dim: int = 64,
        k: int = 10,
        skip: float = 0.9,
        original: list[ItemGraph] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= skip <= 1.0:
            raise ValueError(f"skip must be in [0, 1], got {skip}")
        self.projection = ModalityProjection(features, dim)
        self.k = k
        self.skip = skip
        self.num_items = next(iter(features.values())).size(0)
        self.modality_logits = nn.Parameter(torch.full((len(features),), 0.5))
        if original is None:
            original = [similarity_knn_graph(x.float(), k) for x in features.values()]
        for index, (edge_index, edge_weight) in enumerate(original):
            self.register_buffer(f"original_index_{index}", edge_index, persistent=False)
            self.register_buffer(f"original_weight_{index}", edge_weight, persistent=False)

    def reset_parameters(self) -> None:
        self.projection.reset_parameters()
        nn.init.constant_(self.modality_logits, 0.5)

    @property
    def modality_weights(self) -> Tensor:
        """``[M]`` softmax weights :math:`\\alpha` of the modalities."""
        return torch.softmax(self.modality_logits, dim=0)

    def original_graphs(self) -> list[ItemGraph]:
        """The fixed per-modality graphs :math:`\\hat S_m`."""
        return [
            (getattr(self, f"original_index_{i}"), getattr(self, f"original_weight_{i}"))
            for i in range(len(self.projection.modalities))
        ]

    def forward(self) -> ItemGraph:
        alpha = self.modality_weights
        learned = [cosine_knn_edges(f, self.k) for f in self.projection().values()]
        learned_index, learned_weight = weighted_union(learned, alpha)
        learned_weight = row_sum_normalization(learned_index, learned_weight, self.num_items)
        original_index, original_weight = weighted_union(self.original_graphs(), alpha)
        edge_index = torch.cat([learned_index, original_index], dim=1)
        edge_weight = torch.cat([(1 - self.skip) * learned_weight, self.skip * original_weight])
        return edge_index, edge_weight


def item_graph_csr(graph: ItemGraph, num_items: int) -> tuple[Tensor, Tensor]:
    """A constant (no-gradient) edge-list graph as ``(S, S^T)`` sparse CSR matrices.

    Duplicate edges are summed. For graphs reused over many steps: the sparse product is several
    times faster than message passing over the edge list.
    """
    edge_index, edge_weight = graph[0], graph[1].detach()
    matrix = to_torch_csr_tensor(edge_index.flip(0), edge_weight, size=(num_items, num_items))
    return matrix, csr_transpose(matrix)


def propagate_items(
    x: Tensor, graph: ItemGraph | tuple[Tensor, Tensor], num_layers: int = 1
) -> Tensor:
    """``S^L x`` over an item graph, differentiable in ``x`` (and in edge weights).

    Args:
        x: ``[I, d]`` item embeddings.
        graph: ``(edge_index [2, E], edge_weight [E])`` (message passing; gradient also reaches
            the weights) or ``(S, S^T)`` sparse CSR matrices from :func:`item_graph_csr`.
        num_layers: hops ``L``.

    Shapes:
        ``-> [I, d]``.
    """
    conv = LightGCNConv()
    first, second = graph
    sparse = first.is_sparse_csr  # (S, S^T), else (edge_index, edge_weight)
    for _ in range(num_layers):
        x = conv(x, first, adj=second) if sparse else conv(x, first, second)
    return x


class ItemGraphPropagation(nn.Module):
    r"""Hop(s) over a fixed item–item graph (MENTOR: residual; FREEDOM: plain).

    .. math::
        \text{out} = x + S^{L} x \quad (\text{residual}), \qquad
        \text{out} = S^{L} x \quad (\text{otherwise})

    with :math:`S` the (fused, row-normalised) kNN graph, e.g.
    :func:`mmgraph.data.knn.fused_knn_graph`. The graph is linear and shared, so stacked
    branches ``[I, B·d]`` are propagated in one call.

    Args:
        num_layers: hops ``L`` over the item graph (MENTOR's ``n_mm_layers`` = 1).
        residual: add the input to the result (MENTOR) or not (FREEDOM, whose model adds the
            result to other item embeddings instead).

    Only some rows of the output: with ``rows``, ``x`` holds only the rows the output's
    ``rows`` depend on, :meth:`input_rows` (their ``L``-hop neighbourhood, plus themselves
    when residual), and every hop multiplies the matching submatrix of :math:`S`
    (:func:`~mmgraph.nn.csr_submatrix`). The result equals the full output's rows.

    Shapes:
        ``x: [I, D]`` (``[len(input_rows(graph, rows)), D]`` with ``rows``); ``graph: [I, I]``
        sparse :math:`S`; ``graph_transpose``: :math:`S^T` for the cheap backward (:math:`S`
        is not symmetric; ``None`` lets torch transpose on every backward); ``rows``: ``[R]``
        strictly increasing item indices (CSR ``graph``) or ``None`` -> ``[I, D]``
        (``[R, D]`` with ``rows``).
    """

    def __init__(self, num_layers: int = 1, residual: bool = True) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers
        self.residual = residual

    def forward(
        self,
        x: Tensor,
        graph: Tensor,
        graph_transpose: Tensor | None = None,
        rows: Tensor | None = None,
    ) -> Tensor:
        if rows is None:
            h = x
            for _ in range(self.num_layers):
                h = sparse_matmul(graph, h, graph_transpose)
            if not self.residual:
                return h
            return x + h if self.num_layers else x
        # needed[l]: rows of S^l x that the output reads; needed[-1]: the rows x holds.
        needed = self._needed_rows(graph, rows)
        if x.size(0) != needed[-1].numel():
            raise ValueError(
                f"x has {x.size(0)} rows; input_rows(graph, rows) has {needed[-1].numel()}"
            )
        h, source = x, needed[-1]
        for target in reversed(needed[:-2]):
            transpose = None
            if graph_transpose is not None:
                transpose = csr_submatrix(graph_transpose, rows=source, cols=target)
            h = sparse_matmul(csr_submatrix(graph, rows=target, cols=source), h, transpose)
            source = target
        if self.residual and self.num_layers:
            return x[torch.searchsorted(needed[-1], rows)] + h
        return h

    def input_rows(self, graph: Tensor, rows: Tensor) -> Tensor:
        """``[R']`` the sorted rows of ``x`` that the output's ``rows`` depend on."""
        return self._needed_rows(graph, rows)[-1]

    def _needed_rows(self, graph: Tensor, rows: Tensor) -> list[Tensor]:
        """``[rows, N(rows), ..., N^L(rows), inputs]``: the rows of each hop's result that the
        output reads (``N``: the columns of those rows of ``S``), then the rows of ``x``."""
        check_increasing_index(rows, "rows")
        needed = [rows]
        for _ in range(self.num_layers):
            columns = csr_submatrix(graph, rows=needed[-1]).col_indices()
            needed.append(_sorted_union(graph.size(1), columns))
        inputs = _sorted_union(graph.size(1), needed[-1], rows) if self.residual else needed[-1]
        return [*needed, inputs]


def _sorted_union(size: int, *indices: Tensor) -> Tensor:
    """The distinct values of ``indices`` (each in ``[0, size)``), sorted: a boolean mask,
    ten times faster than ``torch.unique`` on MENTOR's 25k kNN columns."""
    mask = torch.zeros(size, dtype=torch.bool, device=indices[0].device)
    for index in indices:
        mask[index] = True
    return mask.nonzero().squeeze(1)
