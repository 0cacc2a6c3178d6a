"""--threads: parsing, the load-aware 'auto', and where it takes effect."""

import os
import subprocess
import sys

import pytest
import torch

from mmgraph.errors import ConfigError
from mmgraph.threads import configure_threads, free_cores, parse_threads, threads_from_argv


def test_parse_threads_values():
    assert parse_threads(None) is None
    assert parse_threads("3") == 3 and parse_threads(2) == 2
    assert 1 <= parse_threads("auto") <= (os.cpu_count() or 1)
    for bad in ("0", "-1", "many", "1.5"):
        with pytest.raises(ConfigError, match="--threads must be 'auto' or a positive integer"):
            parse_threads(bad)


def test_auto_takes_the_cores_the_load_leaves(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    for load, expected in ((0.2, 8), (2.6, 5), (7.9, 1), (30.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert free_cores() == expected


def test_threads_from_argv():
    assert threads_from_argv(["train", "--threads", "2", "--quiet"]) == "2"
    assert threads_from_argv(["train", "--threads=auto"]) == "auto"
    assert threads_from_argv(["train", "--quiet"]) is None


def test_configure_threads_sets_torch_and_openmp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    before = torch.get_num_threads()
    try:
        assert configure_threads("1") == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
        configure_threads(None)
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # a user's own setting is kept
    finally:
        torch.set_num_threads(before)


def test_the_command_sets_openmp_before_torch_starts():
    code = (
        "import os, sys\n"
        "from mmgraph.launch import main\n"
        "assert 'torch' not in sys.modules\n"
        "status = main(['train', '--threads', '1'])\n"  # stops at the missing --dataset
        "import torch\n"
        "print(status, os.environ['OMP_NUM_THREADS'], os.environ['OMP_WAIT_POLICY'], "
        "torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["2", "1", "PASSIVE", "1"], done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "mmgraph", "train", "--model", "bpr", "--dataset", "tiktok",
         "--threads", "0"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mmgraph: error: --threads must be 'auto' or a positive integer, got '0'"
    )
