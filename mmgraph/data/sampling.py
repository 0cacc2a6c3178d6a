"""Vectorised BPR sampling: shuffled training interactions with uniform negatives.

Negatives come from a *pool* of items (``NEGATIVE_POOLS``):

* ``"train"`` (the default): items with at least one training interaction, as MMRec's loader
  draws them (its published figures were made that way). An item that never occurs in
  training is never pushed down as a negative; its score is left to what the model shares
  with other items (content features, graph neighbours).
* ``"all"``: every item of the catalogue (the released MMSSL code, LightGCN's and most
  PyG examples).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mmgraph.data.dataset import CSR, InteractionDataset
from mmgraph.errors import DataError


@dataclass
class Batch:
    """One mini-batch of BPR triples, all ``[B]`` int64 on the same device."""

    users: Tensor
    pos_items: Tensor
    neg_items: Tensor

    def __len__(self) -> int:
        return self.users.numel()


NEGATIVE_POOLS = ("train", "all")


def negative_candidates(dataset: InteractionDataset, pool: str) -> Tensor | None:
    """The candidate negatives of ``pool``: ``[P]`` sorted item ids, or ``None`` for all items.

    Raises:
        ValueError: for a pool name not in :data:`NEGATIVE_POOLS`.
    """
    if pool == "all":
        return None
    if pool == "train":
        return torch.unique(dataset.edge_index("train")[1])
    raise ValueError(f"negative_pool must be one of {', '.join(NEGATIVE_POOLS)}, got {pool!r}")


class NegativeSampler:
    """Uniform negative items from a pool that the user has not interacted with in training.

    Rejection sampling, fully vectorised: candidates are drawn with ``torch.randint`` (over
    the pool's positions) and a candidate ``(u, j)`` is rejected when the key
    ``u * num_items + j`` is found (binary search) among the sorted training keys; only
    rejected positions are drawn again.

    Args:
        seen: per-user training items (:meth:`InteractionDataset.user_items`).
        num_items: size of the catalogue ``I``.
        candidates: ``[P]`` item ids to draw from (:func:`negative_candidates`); ``None``: all
            ``I`` items (then the draws are exactly ``torch.randint(I)``).
        max_rounds: give up after this many redraws (only reachable when a user has seen
            almost every candidate).
    """

    def __init__(
        self,
        seen: CSR,
        num_items: int,
        candidates: Tensor | None = None,
        max_rounds: int = 1000,
    ) -> None:
        degree = seen.degree()
        if candidates is None:
            seen_candidates, pool_size, what = degree, num_items, "items"
        else:
            in_pool = torch.zeros(num_items, dtype=torch.long)
            in_pool[candidates] = 1
            rows = torch.repeat_interleave(torch.arange(seen.num_rows), degree)
            seen_candidates = torch.zeros(seen.num_rows, dtype=torch.long)
            seen_candidates.index_add_(0, rows, in_pool[seen.indices])
            pool_size, what = candidates.numel(), "candidate negative items"
        if pool_size == 0:
            raise DataError("the negative pool is empty: no item can be sampled as a negative")
        if seen_candidates.numel() and int(seen_candidates.max()) >= pool_size:
            user = int(torch.argmax(seen_candidates))
            raise DataError(
                f"user {user} has interacted with all {pool_size} {what} in training: "
                "no negative item can be sampled for them"
            )
        users = torch.repeat_interleave(torch.arange(seen.num_rows), degree)
        # CSR rows are sorted by user and items within a row, so the keys are sorted too.
        self.keys = users * num_items + seen.indices
        self.num_items = num_items
        self.candidates = candidates
        self.max_rounds = max_rounds

    def to(self, device: torch.device | str) -> NegativeSampler:
        self.keys = self.keys.to(device)
        if self.candidates is not None:
            self.candidates = self.candidates.to(device)
        return self

    def is_seen(self, users: Tensor, items: Tensor) -> Tensor:
        """``[B]`` bool: whether ``items[b]`` is a training item of ``users[b]``."""
        if self.keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        query = users * self.num_items + items
        position = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return self.keys[position] == query

    def sample(self, users: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One negative item per entry of ``users`` (``[B]`` -> ``[B]``)."""
        negatives = self._draw(users.numel(), users.device, generator)
        todo = torch.nonzero(self.is_seen(users, negatives)).flatten()
        for _ in range(self.max_rounds):
            if todo.numel() == 0:
                return negatives
            negatives[todo] = self._draw(todo.numel(), users.device, generator)
            todo = todo[self.is_seen(users[todo], negatives[todo])]
        raise RuntimeError(f"negative sampling did not converge in {self.max_rounds} rounds")

    def _draw(self, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        size = self.num_items if self.candidates is None else self.candidates.numel()
        draw = torch.randint(size, (n,), generator=generator, device=generator_device(generator))
        draw = draw.to(device)
        return draw if self.candidates is None else self.candidates[draw]


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Where random numbers of ``generator`` are drawn (torch's default generator: CPU)."""
    return generator.device if generator is not None else torch.device("cpu")


class BPRSampler:
    """Epoch iterator over shuffled training interactions, one negative per positive.

    This is MMRec's training loader (every training interaction once per epoch, batches of
    ``batch_size`` rows) without its per-interaction Python loop.

    Args:
        dataset: the dataset whose training interactions are sampled.
        batch_size: interactions per batch ``B``.
        generator: source of randomness (its state is what a checkpoint saves).
        device: where batches are produced.
        negative_pool: ``"train"`` or ``"all"`` (see the module docstring).
    """

    def __init__(
        self,
        dataset: InteractionDataset,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        negative_pool: str = "train",
    ) -> None:
        edges = dataset.edge_index("train")
        self.device = torch.device(device)
        self.users = edges[0].to(self.device)
        self.items = edges[1].to(self.device)
        self.batch_size = batch_size
        self.generator = generator
        self.negatives = NegativeSampler(
            dataset.user_items("train"),
            dataset.num_items,
            negative_candidates(dataset, negative_pool),
        ).to(self.device)

    def __len__(self) -> int:
        return -(-self.users.numel() // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        gen_device = generator_device(self.generator)
        order = torch.randperm(self.users.numel(), generator=self.generator, device=gen_device)
        order = order.to(self.device)
        for start in range(0, order.numel(), self.batch_size):
            rows = order[start : start + self.batch_size]
            users = self.users[rows]
            yield Batch(users, self.items[rows], self.negatives.sample(users, self.generator))


class DistinctUserSampler:
    """MMSSL's training batches: distinct users, one positive and one negative item each.

    Every batch draws ``batch_size`` *distinct* users uniformly from the users that have
    training items (all of them when there are fewer), one positive uniformly from each
    user's training items and one uniform negative the user has not interacted with. An
    epoch has ``num_train // batch_size + 1`` batches (MMSSL ``utility/load_data.py``), so
    a user may appear in several batches of one epoch and some interactions in none.

    Args:
        dataset: the dataset whose training interactions are sampled.
        batch_size: users per batch ``B``.
        generator: source of randomness (its state is what a checkpoint saves).
        device: where batches are produced.
        negative_pool: ``"train"`` or ``"all"`` (see the module docstring; the released
            MMSSL code draws from all items).
    """

    def __init__(
        self,
        dataset: InteractionDataset,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        negative_pool: str = "train",
    ) -> None:
        seen = dataset.user_items("train")
        degree = seen.degree()
        self.device = torch.device(device)
        self.active_users = torch.nonzero(degree > 0).flatten().to(self.device)
        if self.active_users.numel() == 0:
            raise DataError(f"dataset {dataset.name!r} has no training interactions")
        self.indptr = seen.indptr.to(self.device)
        self.indices = seen.indices.to(self.device)
        self.degree = degree.to(self.device)
        self.batch_size = batch_size
        self.num_batches = dataset.num_interactions("train") // batch_size + 1
        self.generator = generator
        self.negatives = NegativeSampler(
            seen, dataset.num_items, negative_candidates(dataset, negative_pool)
        ).to(self.device)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        gen_device = generator_device(self.generator)
        size = min(self.batch_size, self.active_users.numel())
        for _ in range(self.num_batches):
            order = torch.randperm(
                self.active_users.numel(), generator=self.generator, device=gen_device
            )
            users = self.active_users[order[:size].to(self.device)]
            draw = torch.rand(size, generator=self.generator, device=gen_device).to(self.device)
            offset = (draw * self.degree[users]).long().clamp_(max=self.degree[users] - 1)
            positives = self.indices[self.indptr[users] + offset]
            yield Batch(users, positives, self.negatives.sample(users, self.generator))
