"""Entry point of the ``mmgraph`` command: process-wide settings first, then the CLI.

:func:`mmgraph.allocator.request_huge_pages` only takes effect before the process's first
tensor allocation, so it runs here, before :mod:`mmgraph.cli` imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmgraph.allocator import request_huge_pages


def main(argv: Sequence[str] | None = None) -> int:
    request_huge_pages()
    from mmgraph.cli import main as cli_main

    return cli_main(argv)
