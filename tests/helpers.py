"""Small synthetic datasets for fast unit tests."""

from __future__ import annotations

import torch

from mmgraph.data import InteractionDataset


def tiny_dataset(
    num_users: int = 30,
    num_items: int = 20,
    per_user: int = 6,
    modalities: dict[str, int] | None = None,
    seed: int = 0,
) -> InteractionDataset:
    """Every user has ``per_user`` distinct items: the last two go to valid and test."""
    gen = torch.Generator().manual_seed(seed)
    users, items, split = [], [], []
    for user in range(num_users):
        chosen = torch.randperm(num_items, generator=gen)[:per_user]
        users += [user] * per_user
        items += chosen.tolist()
        split += [0] * (per_user - 2) + [1, 2]
    features = {
        name: torch.randn(num_items, dim, generator=gen) for name, dim in (modalities or {}).items()
    }
    return InteractionDataset.from_interactions(
        torch.tensor(users),
        torch.tensor(items),
        torch.tensor(split),
        features,
        num_users=num_users,
        num_items=num_items,
        name="tiny",
    )
