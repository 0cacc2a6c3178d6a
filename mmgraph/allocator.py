"""Process-wide memory allocator settings for CPU training loops.

A training step frees and re-allocates the same large activation buffers (8-16 MB each for
MENTOR on TikTok) every step. glibc's ``malloc`` gives freed memory back to the kernel once
more than ``M_TRIM_THRESHOLD`` is free at the top of its heap (and serves large blocks by
``mmap``), so the next step's buffers come back as fresh pages, each zero-filled by a page
fault: about 17,000 faults per MENTOR step on TikTok. Keeping freed memory in the process
removes them (about 300 faults per step) and made MENTOR's TikTok epoch 14 % faster on the
2-core CPU (median of six interleaved runs each, 11.5 s -> 9.9 s). The price: the process
keeps up to ``trim_threshold`` of freed heap instead of returning it, i.e. its RSS stays near
its peak, as PyTorch's CUDA caching allocator does on GPUs.

Blocks above 32 MiB (a million-node graph's activations) are always served by ``mmap`` and
fault in every 4 KB page each time: :func:`request_huge_pages` asks PyTorch (its
``THP_MEM_ALLOC_ENABLE`` switch, torch >= 2.2) to back CPU buffers of 2 MB and more with
transparent huge pages, one fault per 2 MB.

These are settings of the whole process, so the library never applies them on import:
:func:`mmgraph.train.fit_run` (``mmgraph train`` / ``tune``, the examples, the accuracy
benchmark) and the speed benchmark call :func:`retain_freed_memory`, and the ``mmgraph``
command and the speed and propagation benchmarks call :func:`request_huge_pages` before torch
is imported; a script that drives :class:`~mmgraph.train.Trainer` itself can call them at
start.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's ``mallopt`` parameters (``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest ``M_MMAP_THRESHOLD`` glibc accepts on 64-bit systems (``HEAP_MAX_SIZE / 2``).
MAX_MMAP_THRESHOLD = 32 * 2**20

_applied = False


def retain_freed_memory(trim_threshold: int = 2**30) -> bool:
    """Keep freed memory for reuse instead of returning it to the kernel (glibc only).

    Sets ``M_MMAP_THRESHOLD`` to 32 MiB (blocks up to that size come from the heap, not from
    a fresh ``mmap`` each time) and ``M_TRIM_THRESHOLD`` to ``trim_threshold`` bytes. Setting
    either fixes both (glibc then stops adapting them), which is why both are set.

    Args:
        trim_threshold: free bytes at the top of the heap above which glibc returns memory.

    Returns:
        ``True`` when the settings were applied (now or by an earlier call), ``False`` on
        systems without glibc's ``mallopt`` (macOS, Windows, musl), where nothing changes.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = min(trim_threshold, 2**31 - 1)
    _applied = (
        mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, trim) == 1
    )
    return _applied


def request_huge_pages() -> None:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the environment already sets it.

    PyTorch reads the variable once, at the process's first tensor allocation; later calls
    change nothing. It takes effect where the kernel allows transparent huge pages on request
    (``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise`` or ``always``). Child
    processes inherit it.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
