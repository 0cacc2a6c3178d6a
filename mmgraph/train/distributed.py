"""Data-parallel training with ``torch.distributed`` (processes started by ``torchrun``).

Every rank holds the whole dataset, graph and model. The pieces the :class:`Trainer` uses:

- :func:`init_distributed` / :func:`destroy_distributed`: the process group, from the
  environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``); NCCL on GPUs, Gloo on CPU.
- :class:`DistributedContext`: rank, world size, device and the few collectives needed.
- :class:`ShardedSampler`: every rank draws the *same* global batches (shared seed) and keeps
  its slice, with the weight ``rows_kept / global_rows``.
- :class:`GradientSync`: before each ``optimizer.step()`` the gradients of that optimiser's
  parameters become ``Σ_r weight_r · grad_r``, the gradient of the global-batch mean loss.

Why not :class:`torch.nn.parallel.DistributedDataParallel`: DDP synchronises gradients from
hooks armed by *its* ``forward``, once per forward/backward pair, and averages ranks equally.
Our models compute their losses in ``model.loss`` / ``training_step`` (not ``forward``), some
step two optimisers with several backward passes per batch (MMSSL's critic), and the last batch
of an epoch splits unevenly. Synchronising at ``optimizer.step()`` is correct for all of these
without touching model code; DDP's overlap of communication with the backward pass would buy
little here, since LightGCN-style models put nearly all gradient on the embedding table, which
is reached last in the backward pass.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmgraph.errors import ConfigError

T = TypeVar("T")

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in an initialised default process group.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: where this rank's model and batches live.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes files."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``, as :class:`mmgraph.eval.Evaluator` takes it."""
        return self.rank, self.world_size

    @classmethod
    def current(cls, device: torch.device | str) -> DistributedContext:
        """The context of the already initialised default group, computing on ``device``."""
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised (see init_distributed)")
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, torch.device(device))

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        dist.barrier()

    def all_reduce_(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over ranks, in place; returns it."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` (any picklable value) on every rank."""
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result on every rank.

        An exception raised by ``fn`` is raised on every rank too, so that no rank is left
        waiting in a collective for a peer that has given up.
        """
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:
                error = exc
        try:
            pickle.dumps(error)
            sent = error
        except Exception:  # an unpicklable exception must not leave the others waiting
            sent = RuntimeError(f"rank 0 failed: {error!r}")
        result, received = self.broadcast_object((result, sent))
        if self.is_main and error is not None:
            raise error
        if received is not None:
            raise received
        return result


def init_distributed(device: str = "cpu") -> DistributedContext:
    """Join the process group described by ``torchrun``'s environment variables.

    Args:
        device: ``"cpu"`` (Gloo backend) or ``"cuda"`` / ``"cuda:N"`` (NCCL; rank ``r`` uses
            GPU ``LOCAL_RANK``, whatever ``N`` says).

    Raises:
        ConfigError: not started by ``torchrun``, or the device cannot be used.
    """
    missing = [key for key in _TORCHRUN_ENV if key not in os.environ]
    if missing:
        raise ConfigError(
            "--distributed must be started by torchrun (e.g. `torchrun --nproc_per_node 2 "
            f"-m mmgraph train ... --distributed`); environment lacks {', '.join(missing)}"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU"
            )
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
        if not dist.is_initialized():
            dist.init_process_group("nccl", device_id=target)
    elif device == "cpu":
        target = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("gloo")
    else:
        raise ConfigError(f"distributed training runs on 'cpu' or 'cuda', not {device!r}")
    return DistributedContext.current(target)


def destroy_distributed() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------- batches
def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a ``size``-row global batch kept by ``rank`` (sizes differ by
    at most one; a rank gets none when ``size < world_size``)."""
    return rank * size // world_size, (rank + 1) * size // world_size


def _slice_rows(batch: Any, start: int, stop: int) -> Any:
    """``batch`` (a dataclass of tensors) with every ``[len(batch), ...]`` field cut to rows
    ``[start, stop)``; other fields are kept as they are."""
    if not dataclasses.is_dataclass(batch) or isinstance(batch, type):
        raise TypeError(
            f"distributed training shards dataclass batches (like mmgraph Batch); the sampler "
            f"yielded a {type(batch).__name__}"
        )
    size = len(batch)
    cut = {
        f.name: value[start:stop]
        for f in dataclasses.fields(batch)
        if isinstance(value := getattr(batch, f.name), Tensor)
        and value.dim() > 0
        and value.size(0) == size
    }
    return dataclasses.replace(batch, **cut)


def shard_batch(batch: Any, rank: int, world_size: int) -> tuple[Any, float]:
    """This rank's rows of a global batch and their weight in the global mean.

    Models' losses are means over their batch, so rank ``r``'s gradient enters the global
    gradient with weight ``n_r / n``. A rank left without rows (a last batch smaller than the
    world) still runs a step, on one real row with weight 0, so that every rank calls the same
    optimisers the same number of times.

    Returns:
        ``(local_batch, weight)``; the weights of all ranks sum to 1.
    """
    size = len(batch)
    if size == 0:
        raise ValueError("cannot shard an empty batch")
    start, stop = shard_bounds(size, rank, world_size)
    if stop > start:
        return _slice_rows(batch, start, stop), (stop - start) / size
    row = rank % size
    return _slice_rows(batch, row, row + 1), 0.0


class ShardedSampler:
    """Wraps a model's sampler: yields ``(local_batch, weight)`` for this rank.

    The wrapped sampler must draw from the generator the trainer gives it, seeded alike on
    every rank: all ranks then produce the same global batches, and their slices partition
    each one (no interaction is seen twice or skipped in an epoch). Drawing a whole global
    batch costs each rank ``O(B)`` index work, negligible next to a model step.
    """

    def __init__(self, sampler: Iterable[Any], rank: int, world_size: int) -> None:
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[Any, float]]:
        for batch in self.sampler:
            yield shard_batch(batch, self.rank, self.world_size)


# ---------------------------------------------------------------------- gradients
def all_reduce_gradients(
    params: Sequence[nn.Parameter], weight: float, context: DistributedContext
) -> None:
    """Replace each ``p.grad`` by ``Σ_ranks weight_r · p.grad_r``, in one ``all_reduce``.

    A parameter without gradient on every rank keeps ``grad = None`` (optimisers skip it, as
    in one process); one with a gradient on some ranks only counts zeros for the others.
    """
    if not params:
        return
    grads = [p.grad for p in params]
    if any(g is not None and g.layout != torch.strided for g in grads):
        raise NotImplementedError("distributed training does not support sparse gradients")
    dtype = torch.float32
    for g in grads:
        if g is not None:
            dtype = torch.promote_types(dtype, g.dtype)
    device = params[0].device
    flat = torch.cat(
        [
            g.reshape(-1).to(dtype)
            if g is not None
            else torch.zeros(p.numel(), dtype=dtype, device=device)
            for p, g in zip(params, grads, strict=True)
        ]
        + [torch.tensor([float(g is not None) for g in grads], dtype=dtype, device=device)]
    )
    flat[: -len(params)].mul_(weight)
    context.all_reduce_(flat)
    present = flat[-len(params) :].tolist()
    offset = 0
    for p, has_grad in zip(params, present, strict=True):
        summed = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
        if has_grad == 0:
            continue
        if p.grad is None:
            p.grad = summed.to(p.dtype, copy=True)
        else:
            p.grad.copy_(summed)


def _trainable(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The optimiser's parameters that take gradients, each once, in a fixed order."""
    seen: set[int] = set()
    params = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


class GradientSync:
    """Synchronise gradients right before every ``step()`` of the given optimisers.

    Works with any ``training_step`` (several optimisers, several backward passes per batch)
    provided every rank calls the same optimisers' ``step()`` in the same order, which holds
    when that choice depends on the step count and not on the local batch. Gradient clipping
    done inside ``training_step`` before ``step()`` would see the local gradient.

    Args:
        context: the process group.
        optimizers: the optimisers whose steps are synchronised.

    Attributes:
        weight: this rank's share ``n_r / n`` of the current global batch (set per batch).
    """

    def __init__(
        self, context: DistributedContext, optimizers: Sequence[torch.optim.Optimizer]
    ) -> None:
        self.context = context
        self.weight = 1.0 / context.world_size
        self._handles = [opt.register_step_pre_hook(self._before_step) for opt in optimizers]

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        all_reduce_gradients(_trainable(optimizer), self.weight, self.context)

    def close(self) -> None:
        """Remove the hooks (the optimisers behave as in one process again)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def broadcast_parameters(model: nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's parameters and persistent buffers to every rank (in place)."""
    for value in model.state_dict().values():
        if isinstance(value, Tensor) and value.layout == torch.strided:
            dist.broadcast(value, src=0)
