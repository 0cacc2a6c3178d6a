"""Entry point of the ``mmgraph`` command: process-wide settings first, then the CLI.

:func:`mmgraph.allocator.request_huge_pages` only takes effect before the process's first
tensor allocation, and OpenMP reads ``OMP_NUM_THREADS`` / ``OMP_WAIT_POLICY`` once
(:mod:`mmgraph.threads`), so both run here, before :mod:`mmgraph.cli` imports torch.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

from mmgraph.allocator import request_huge_pages
from mmgraph.errors import ConfigError
from mmgraph.threads import configure_threads, threads_from_argv


def main(argv: Sequence[str] | None = None) -> int:
    request_huge_pages()
    # OpenMP reads its variables once, when torch starts its pool; a bad value is reported
    # by the CLI (configure_threads runs again there).
    with contextlib.suppress(ConfigError):
        configure_threads(threads_from_argv(sys.argv[1:] if argv is None else argv))
    from mmgraph.cli import main as cli_main

    return cli_main(argv)
