"""Item-ID dropout: a cold-start training option for models with content features.

A model that adds a free item-ID embedding to what it derives from item content learns to
rank warm items by their IDs; an item without training interactions keeps its random
initial ID row, and its content path was never made to carry a score alone. Dropping whole
ID rows during training (as DropoutNet, Volkovs et al., NeurIPS 2017, drops preference
inputs) makes the content path score the dropped items; at inference the ID rows of items
without training interactions are zeroed, so that they are scored as the dropped items were.
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

    Raises:
        ConfigError: if ``p`` is not in ``[0, 1)``.
    """

    def __init__(self, p: float, train_items: Tensor, num_items: int) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"item_id_dropout must be in [0, 1), got {p}")
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
