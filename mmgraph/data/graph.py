"""Normalised propagation matrices, computed once per dataset (never per forward call)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor


def bipartite_edge_index(train_edge_index: Tensor, num_users: int) -> Tensor:
    """Undirected user–item graph over ``num_users + num_items`` nodes (items offset by users).

    Args:
        train_edge_index: ``[2, E]`` (user, item) training pairs.
        num_users: number of users ``U``.

    Returns:
        ``[2, 2E]`` edges in both directions; node ``u`` is a user, node ``U + i`` is item ``i``.
    """
    users, items = train_edge_index[0], train_edge_index[1] + num_users
    return torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)


def normalized_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Symmetric normalisation :math:`\hat A = D^{-1/2} A D^{-1/2}` as a sparse CSR matrix.

    No self-loops are added (LightGCN). Isolated nodes get all-zero rows. For an undirected
    ``edge_index`` the result is symmetric, so it is its own transpose: pass it as both
    ``adj_t`` and ``adj`` to :class:`mmgraph.nn.LightGCNConv`.

    Args:
        edge_index: ``[2, E]`` edges (both directions for an undirected graph).
        num_nodes: number of nodes ``N``.

    Returns:
        ``[N, N]`` float32 ``torch.sparse_csr`` tensor.
    """
    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    return to_torch_csr_tensor(edge_index, weight, size=(num_nodes, num_nodes))


def user_item_adjacency(train_edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    """LightGCN's :math:`\\hat A` over users and items: ``[U + I, U + I]`` sparse CSR."""
    edges = bipartite_edge_index(train_edge_index, num_users)
    return normalized_adjacency(edges, num_users + num_items)
