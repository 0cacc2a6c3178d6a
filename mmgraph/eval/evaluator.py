"""Exact full-ranking evaluation (the MMRec protocol), streamed over user batches.

For every user with at least one item in the evaluated split, all items are scored, the
user's *training* items are excluded (also at test time: validation items stay rankable, as
in MMRec), the top ``max(ks)`` items are taken and compared with the user's split items.
Metrics are averaged over those users. Memory is ``O(batch_size · num_items)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmgraph.data.dataset import CSR, InteractionDataset, Split
from mmgraph.errors import DataError
from mmgraph.eval.metrics import ngcf_ndcg as _ngcf_ndcg
from mmgraph.eval.metrics import ranking_metrics
from mmgraph.nn.ranking import topk_recommendations

__all__ = ["DEFAULT_KS", "Evaluator", "evaluate_scores"]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)

ScoreFn = Callable[[Tensor], Tensor]
"""Maps ``[B]`` user ids to ``[B, num_items]`` scores."""


def _normalize_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] < 1:
        raise ValueError(f"ks must be a non-empty set of positive integers, got {ks!r}")
    return out


def _dense_rows(csr: CSR, rows: Tensor, num_cols: int) -> Tensor:
    """``[B, num_cols]`` bool matrix with ``True`` at the entries of the given CSR rows."""
    position, column = csr.rows_of(rows)
    dense = torch.zeros(rows.numel(), num_cols, dtype=torch.bool, device=rows.device)
    dense[position, column] = True
    return dense


def _pad_columns(hits: Tensor, width: int) -> Tensor:
    """Right-pad ``[B, K]`` bool hits with misses up to ``[B, width]``."""
    missing = width - hits.size(1)
    if missing <= 0:
        return hits
    return torch.cat([hits, hits.new_zeros(hits.size(0), missing)], dim=1)


def evaluate_scores(
    score_fn: ScoreFn,
    seen: CSR,
    targets: CSR,
    num_items: int,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 2048,
    ngcf_ndcg: bool = False,
    shard: tuple[int, int] | None = None,
    item_parts: Mapping[str, Tensor] | None = None,
    per_user: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """Mean top-K metrics over the users that have at least one target.

    Everything runs on the device of ``targets`` (``seen`` must be on the same device; the
    user id batches passed to ``score_fn`` are there too).

    Items in ``seen`` are set to ``-inf`` before the top-K and never count as hits, even when
    a user has fewer than ``K`` unseen items and they fill the tail of the list. If
    ``max(ks) > num_items`` the list has only ``num_items`` entries and the missing ranks count
    as misses (``precision@k`` still divides by ``k``). ``|T_u|`` counts distinct items.

    An *item part* ``P`` (``item_parts``, e.g. the items without training interactions)
    gets every metric once more, from the same ranked lists, with the targets restricted to
    ``T_u ∩ P`` (hits outside ``P`` do not count) and averaged over the users with at least
    one target in ``P``: ``"<part>/recall@20"``, and ``"<part>/users"``, their number. A part
    that no user has a target in reports only ``"<part>/users": 0``.

    Args:
        score_fn: ``[B]`` user ids -> ``[B, num_items]`` floating scores.
        seen: per-user items to exclude from ranking (the training interactions).
        targets: per-user items of the evaluated split.
        num_items: number of items (width of the score rows).
        ks: cut-offs.
        batch_size: users scored at once.
        ngcf_ndcg: also report the non-standard ``ngcf_ndcg@k`` (see
            :func:`mmgraph.eval.metrics.ngcf_ndcg`).
        shard: ``(rank, world_size)`` of an initialised ``torch.distributed`` group: this
            process scores only user batches ``rank, rank + world_size, ...`` and every rank
            returns the metrics of all users, bit-identical to an unsharded call (see below).
        item_parts: part name -> ``[num_items]`` bool membership (on the device of
            ``targets``).
        per_user: a dict to fill with the per-user values (not with ``shard``): ``"user"``
            ``[N]`` ids of the evaluated users and every metric name ``[N]``; a part's metrics
            are NaN for users without a target in that part.

    Returns:
        ``{"recall@k", "ndcg@k", "precision@k", "map@k", "hit@k"[, "ngcf_ndcg@k"]: mean}``,
        plus the parts' keys.

    Raises:
        ValueError: if no user has a target, or ``score_fn`` returns a wrong shape or NaN.
    """
    # Exactness under sharding: the user batches are those of an unsharded call, each batch's
    # per-metric sums fill one row of ``rows`` [num_batches, num_columns] on exactly one rank
    # (zeros elsewhere, so the all_reduce adds only exact zeros), and the rows are then added
    # in batch order, as an unsharded call does.
    ks = _normalize_ks(ks)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rank, world_size = shard or (0, 1)
    if not 0 <= rank < world_size:
        raise ValueError(
            f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
        )
    if world_size > 1 and not dist.is_initialized():
        raise ValueError("a sharded evaluation needs an initialised torch.distributed group")
    if world_size > 1 and per_user is not None:
        raise ValueError("per-user values are not collected by a sharded evaluation")
    item_parts = dict(item_parts or {})
    for part, members in item_parts.items():
        if members.shape != (num_items,) or members.dtype != torch.bool:
            raise ValueError(f"item part {part!r} must be a [{num_items}] bool tensor")
    users = torch.nonzero(targets.degree() > 0).flatten()
    if users.numel() == 0:
        raise ValueError("no user has a target item; nothing to evaluate")
    k_max = ks[-1]
    batches = users.split(batch_size)
    # Metric names and dtype from an empty batch: ranks that score no batch join the reduction.
    no_hits = torch.zeros(0, k_max, dtype=torch.bool, device=users.device)
    empty = _per_user_metrics(no_hits, users[:0], ks, ngcf_ndcg)
    names = list(empty)
    dtype = empty[names[0]].dtype
    # Columns: the metric sums over all users, then per part the sums and the user count.
    columns = names + [f"{part}/{name}" for part in item_parts for name in [*names, "users"]]
    rows = torch.zeros(len(batches), len(columns), dtype=dtype, device=users.device)
    collected: list[dict[str, Tensor]] = []
    for index in range(rank, len(batches), world_size):
        batch = batches[index]
        scores = score_fn(batch)
        if scores.shape != (batch.numel(), num_items):
            raise ValueError(
                f"score_fn returned shape {tuple(scores.shape)}, "
                f"expected [{batch.numel()}, {num_items}]"
            )
        if bool(torch.isnan(scores).any()):
            raise ValueError("score_fn returned NaN scores")
        values, items = topk_recommendations(scores, seen, batch, k_max, inplace=True)
        target = _dense_rows(targets, batch, num_items)  # [B, I]
        hits = target.gather(1, items) & (values != float("-inf"))
        hits = _pad_columns(hits, k_max)  # [B, k_max]
        metrics = _per_user_metrics(hits, target.sum(1), ks, ngcf_ndcg)
        for part, members in item_parts.items():
            metrics.update(_part_metrics(part, members, hits, items, target, ks, ngcf_ndcg))
        # nansum only for the parts: their NaNs mark users outside the part.
        rows[index] = torch.stack(
            [metrics[name].nansum() if "/" in name else metrics[name].sum() for name in columns]
        )
        if per_user is not None:
            collected.append({"user": batch, **{name: metrics[name] for name in columns}})
    if world_size > 1:
        dist.all_reduce(rows, op=dist.ReduceOp.SUM)
    total = rows[0]
    for row in rows[1:]:  # sequential, as the reference order of additions
        total = total + row
    sums = dict(zip(columns, total.tolist(), strict=True))  # one device sync
    out = {name: sums[name] / users.numel() for name in names}
    for part in item_parts:
        counted = sums[f"{part}/users"]
        out[f"{part}/users"] = counted
        if counted > 0:
            out.update({f"{part}/{name}": sums[f"{part}/{name}"] / counted for name in names})
    if per_user is not None:
        per_user.update(
            {
                key: torch.cat([batch_values[key] for batch_values in collected])
                for key in ["user", *names]
                + [f"{part}/{name}" for part in item_parts for name in names]
            }
        )
    return out


def _part_metrics(
    part: str,
    members: Tensor,
    hits: Tensor,
    items: Tensor,
    target: Tensor,
    ks: Sequence[int],
    ngcf_ndcg: bool,
) -> dict[str, Tensor]:
    """``{"<part>/<metric>": [B], "<part>/users": [B]}`` with targets restricted to the part.

    Args:
        members: ``[I]`` bool, the part's items.
        hits: ``[B, k_max]`` bool hits of the ranked lists ``items [B, <= k_max]``.
        target: ``[B, I]`` bool targets of the batch.

    Users without a target in the part get NaN metrics and 0 in ``users``.
    """
    in_part = _pad_columns(members[items], hits.size(1))  # [B, k_max]
    num_targets = (target & members).sum(1)  # [B]
    counted = num_targets > 0
    values = _per_user_metrics((hits & in_part)[counted], num_targets[counted], ks, ngcf_ndcg)
    out = {}
    for name, value in values.items():
        full = torch.full((hits.size(0),), float("nan"), dtype=value.dtype, device=hits.device)
        full[counted] = value
        out[f"{part}/{name}"] = full
    out[f"{part}/users"] = counted.to(full.dtype)
    return out


def _per_user_metrics(
    hits: Tensor, num_targets: Tensor, ks: Sequence[int], ngcf_ndcg: bool
) -> dict[str, Tensor]:
    """``{name: [B]}`` metric values of ``hits [B, k_max]``."""
    per_user = ranking_metrics(hits, num_targets, ks)
    if ngcf_ndcg:
        per_user.update(_ngcf_ndcg(hits, ks))
    return per_user


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer; CPU for a model with neither."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Switch ``model`` to eval mode; restore every submodule's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class Evaluator:
    """Full-ranking evaluator of a model on the valid or test split of a dataset.

    The model contract: ``model()`` returns the embeddings (for instance
    ``(user_emb [U, d], item_emb [I, d])``) and ``model.score(users [B], embeddings)`` returns
    ``[B, num_items]`` scores. The embeddings are computed once per call to :meth:`evaluate`,
    in eval mode and without gradients; users are then scored in batches of ``batch_size``.

    Only *training* items are masked, at test time too (MMRec); ties in the scores are broken
    arbitrarily by :func:`torch.topk`, as in MMRec.

    Besides the metrics over all targets, every metric is reported over two item parts
    (:func:`evaluate_scores`): ``cold/`` (target items with no training interaction: items
    unseen in training, where only content can rank them) and ``warm/`` (the others).

    Args:
        dataset: the dataset whose splits are evaluated.
        ks: cut-offs (default ``(5, 10, 20, 50)``).
        batch_size: users scored at once (memory ``O(batch_size · num_items)``).
        ngcf_ndcg: also report ``ngcf_ndcg@k``, the inflated MMSSL/NGCF NDCG, only to compare
            with papers of that lineage.
        shard: ``(rank, world_size)`` when every rank of an initialised ``torch.distributed``
            group calls :meth:`evaluate` together: each scores its share of the user batches
            and all get the metrics of all users, equal to one process's bit for bit (for
            instance ``DistributedContext.shard`` of :mod:`mmgraph.train.distributed`).
    """

    def __init__(
        self,
        dataset: InteractionDataset,
        ks: Sequence[int] = DEFAULT_KS,
        batch_size: int = 2048,
        ngcf_ndcg: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.ks = _normalize_ks(ks)
        self.batch_size = batch_size
        self.ngcf_ndcg = ngcf_ndcg
        self.shard = shard
        self._csr: dict[tuple[str, torch.device], CSR] = {}
        warm = torch.zeros(dataset.num_items, dtype=torch.bool)
        warm[dataset.edge_index("train")[1]] = True
        #: ``{"cold": [I] bool, "warm": [I] bool}``: items without / with training interactions.
        self.item_parts = {"cold": ~warm, "warm": warm}

    def _user_items(self, split: Split, device: torch.device) -> CSR:
        """The split's CSR on ``device``, moved once and cached."""
        key = (split, device)
        if key not in self._csr:
            self._csr[key] = self.dataset.user_items(split).to(device)
        return self._csr[key]

    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]:
        """Mean metrics over the users with at least one item in ``split``.

        Args:
            model: see the class docstring; its train/eval modes are restored afterwards.
            split: ``"valid"`` or ``"test"``.

        Returns:
            ``{"recall@20": 0.0812, "ndcg@20": ..., "cold/recall@20": ..., "cold/users": 448,
            "warm/recall@20": ..., ...}`` for every metric and ``k``.

        Raises:
            DataError: if the split has no interactions.
        """
        return self._evaluate(model, split, None)

    def per_user(self, model: nn.Module, split: Split) -> dict[str, Tensor]:
        """Every metric per evaluated user, for paired tests between models.

        Returns:
            ``{"user": [N] ids, "recall@20": [N], ..., "cold/recall@20": [N], ...}`` over the
            ``N`` users with an item in ``split``, in id order; a part's metric is NaN for a
            user without a target in that part.
        """
        if self.shard is not None and self.shard[1] > 1:
            raise ValueError("per-user values need an unsharded Evaluator")
        values: dict[str, Tensor] = {}
        self._evaluate(model, split, values)
        return values

    def _evaluate(
        self, model: nn.Module, split: Split, per_user: dict[str, Tensor] | None
    ) -> dict[str, float]:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        if self.dataset.num_interactions(split) == 0:
            raise DataError(f"dataset {self.dataset.name!r} has no {split} interactions")
        device = model_device(model)
        seen = self._user_items("train", device)
        targets = self._user_items(split, device)
        parts = {name: members.to(device) for name, members in self.item_parts.items()}
        with _eval_mode(model), torch.no_grad():
            embeddings = model()
            return evaluate_scores(
                lambda users: model.score(users, embeddings),
                seen,
                targets,
                self.dataset.num_items,
                self.ks,
                self.batch_size,
                ngcf_ndcg=self.ngcf_ndcg,
                shard=self.shard,
                item_parts=parts,
                per_user=per_user,
            )
