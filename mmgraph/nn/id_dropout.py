"""Item-ID and whole-item dropout: cold-start training options for models with content features.

A model that adds a free item-ID embedding to what it derives from item content learns to
rank warm items by their IDs; an item without training interactions keeps its random
initial ID row, and its content path was never made to carry a score alone. Dropping whole
ID rows during training (as DropoutNet, Volkovs et al., NeurIPS 2017, drops preference
inputs) makes the content path score the dropped items; at inference the ID rows of items
without training interactions are zeroed, so that they are scored as the dropped items were.

A graph model still sees a dropped ID row's item through its training edges, so it keeps
scoring that item by the graph. :class:`ItemDropout` drops whole items for an epoch, ID row
and edges, so that they are scored during training exactly as an unseen item is at ranking.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmgraph.errors import ConfigError


class ItemIDDropout(nn.Module):
    """Zero whole rows of an item-ID table: random rows in training, cold rows in eval.

    With ``p = 0`` it returns its input unchanged in both modes (no random draw), so models
    keep their behaviour bit for bit unless the option is set.

    Args:
        p: probability that an item's ID row is zeroed in a training forward pass (one draw
            per item and call, from torch's global generator; rows are not rescaled, so
            that a warm item's ID has the same scale in training and ranking).
        train_items: ``[E]`` item ids of the training interactions (items that never occur
            are the cold ones).
        num_items: ``I``.

        option: the hyper-parameter's name, for the error message.

    Raises:
        ConfigError: if ``p`` is not in ``[0, 1)``.
    """

    def __init__(
        self, p: float, train_items: Tensor, num_items: int, option: str = "item_id_dropout"
    ) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"{option} must be in [0, 1), got {p}")
        self.p = p
        cold = torch.ones(num_items, dtype=torch.bool)
        cold[train_items] = False
        self.register_buffer("cold_items", cold, persistent=False)

    def forward(self, table: Tensor) -> Tensor:
        """``[I, d]`` -> ``[I, d]`` with the dropped (training) or cold (eval) rows zeroed."""
        if self.p == 0.0:
            return table
        if self.training:
            keep = torch.rand(table.size(0), device=table.device) >= self.p
        else:
            keep = ~self.cold_items
        return table * keep.unsqueeze(1).to(table.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ItemDropout(ItemIDDropout):
    """Treat a random fraction of the items as unseen for a whole epoch: zero their ID rows
    and leave their training edges out of the propagated graph, while the loss still trains
    on their interactions, so that the content path must score them.

    Call :meth:`resample` before each epoch, then use the same draw for the ID table
    (:meth:`forward`) and the graph (:meth:`kept_edges`). In eval mode it zeroes the ID rows of
    the items without training interactions (as :class:`ItemIDDropout`). With ``p = 0``
    nothing is drawn and both calls return their input.

    Args:
        p: fraction of the items dropped in an epoch (one draw per item, torch's global
            generator).
        train_items: ``[E]`` item ids of the training interactions.
        num_items: ``I``.
        option: the hyper-parameter's name, for the error message.
    """

    def __init__(
        self, p: float, train_items: Tensor, num_items: int, option: str = "item_dropout"
    ) -> None:
        super().__init__(p, train_items, num_items, option)
        self.register_buffer("dropped", torch.zeros(num_items, dtype=torch.bool), persistent=False)

    def resample(self) -> None:
        """Draw this epoch's dropped items ``[I]`` (nothing when ``p = 0``)."""
        if self.p:
            self.dropped = torch.rand(self.dropped.numel(), device=self.dropped.device) < self.p

    def forward(self, table: Tensor) -> Tensor:
        """``[I, d]`` -> ``[I, d]`` with this epoch's dropped (training) or the cold (eval) rows
        zeroed."""
        if self.p == 0.0:
            return table
        return table * (~self.without_id()).unsqueeze(1).to(table.dtype)

    def without_id(self) -> Tensor:
        """``[I]`` the items scored without an ID row: this epoch's dropped items (training) or
        the items without training interactions (eval)."""
        return self.dropped if self.training else self.cold_items

    def kept_edges(self, edge_index: Tensor) -> Tensor:
        """``[2, E]`` (user, item) pairs -> those whose item is not dropped this epoch."""
        if self.p == 0.0:
            return edge_index
        return edge_index[:, ~self.dropped[edge_index[1]]]
