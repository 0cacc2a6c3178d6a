"""How many CPU threads a run uses, and how its idle OpenMP threads wait.

torch runs its CPU kernels on an OpenMP pool of one thread per core by default, and an idle
OpenMP thread first spins (busy-waits) for a while before it sleeps. On a machine whose cores
other jobs also use, the spinning threads take turns with the other jobs' work: two
LightGCN jobs with two threads each on two cores made an epoch 10-25x slower than one thread
each (``docs/performance.md``, *A shared CPU*).

``--threads N`` (``train``, ``tune``, the benchmarks) fixes the pool size; ``--threads auto``
takes the cores left free by the machine's current load, ``cpu_count - round(load average
over the last minute)``, at least 1. The OpenMP variables must be set before the OpenMP runtime
starts, i.e. before torch is imported: the ``mmgraph`` command does it in
:mod:`mmgraph.launch`; :func:`configure_threads` also sets torch's intra-op count afterwards,
which is what a library caller gets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from mmgraph.errors import ConfigError

#: ``OMP_WAIT_POLICY`` set when the user has not set one: idle threads sleep at once
#: instead of spinning (see ``docs/performance.md`` for the measurement behind it).
DEFAULT_WAIT_POLICY: str | None = "PASSIVE"


def parse_threads(value: str | int | None) -> int | None:
    """``None`` (torch's default: one per core), ``"auto"`` resolved now, or a positive int."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return free_cores()
    try:
        threads = int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--threads must be 'auto' or a positive integer, got {value!r}"
        ) from None
    if threads < 1:
        raise ConfigError(f"--threads must be 'auto' or a positive integer, got {value!r}")
    return threads


def free_cores() -> int:
    """Cores not busy with other work: ``cpu_count - round(1-minute load average)``, >= 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return cores
    return max(1, min(cores, cores - round(load)))


def threads_from_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--threads`` in a command line (``--threads N`` or ``--threads=N``)."""
    for index, arg in enumerate(argv):
        if arg == "--threads" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


def configure_threads(value: str | int | None) -> int | None:
    """Apply a ``--threads`` value: OpenMP's variables (effective only before torch starts its
    pool) and, if torch is imported, its intra-op thread count.

    ``OMP_WAIT_POLICY`` gets :data:`DEFAULT_WAIT_POLICY` unless the user set it.

    Returns:
        The thread count applied, or ``None`` for torch's default.
    """
    threads = parse_threads(value)
    if DEFAULT_WAIT_POLICY is not None:
        os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MKL_NUM_THREADS"] = str(threads)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)
    return threads
