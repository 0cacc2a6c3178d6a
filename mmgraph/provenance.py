"""Which code produced a file: the mmgraph version and, in a git checkout, its commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def git_commit(folder: str | Path = PACKAGE_DIR) -> str | None:
    """The checkout's short commit, ``-dirty`` when tracked files differ from it.

    ``None`` outside a git checkout (an installed wheel) or without a ``git`` executable.
    """
    try:  # --exclude='*' ignores tags: always the commit itself
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude=*"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None
