"""retain_freed_memory changes the whole process, so each case runs in a fresh interpreter."""

import os
import subprocess
import sys

import pytest

# Allocate and free 40 blocks of 8 MB (under the 32 MiB mmap threshold); report how much of
# the freed memory the process still holds, from /proc/self/statm.
SCRIPT = """
import os, sys
import torch
from mmgraph.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
blocks = [torch.ones(2 * 2**20) for _ in range(40)]
del blocks
print(applied, (rss() - before) / 2**20)
"""


def kept_mb(mode: str) -> tuple[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    applied, kept = done.stdout.split()
    return applied, float(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_stays_in_the_process_and_default_returns_it():
    applied, kept = kept_mb("retain")
    assert applied == "True"
    assert kept > 250  # most of the 320 MB freed stays mapped for reuse
    _, kept_default = kept_mb("default")
    assert kept_default < 50  # glibc's default gives it back


def test_other_systems_are_left_alone(monkeypatch):
    import mmgraph.allocator as allocator

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.retain_freed_memory() is False


def test_huge_pages_are_requested_unless_the_environment_decides(monkeypatch):
    from mmgraph.allocator import request_huge_pages

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    request_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    request_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


def test_the_command_entry_point_sets_it_before_torch_is_imported():
    probe = (
        "import sys; from mmgraph import launch; "
        "launch.request_huge_pages(); import os; "
        "print('torch' in sys.modules, os.environ['THP_MEM_ALLOC_ENABLE'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["False", "1"], done.stderr  # launch imports no torch
    listed = subprocess.run(
        [sys.executable, "-m", "mmgraph", "list"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0 and "mentor" in listed.stdout
