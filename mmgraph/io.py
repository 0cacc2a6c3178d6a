"""Atomic writes and safe loading of ``.pt`` files (checkpoints, saved models)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmgraph.errors import CheckpointError

FORMAT_KEY = "mmgraph_format"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` with :func:`torch.save` so that ``path`` is never left half-written.

    The bytes go to a temporary file in the same folder, are flushed to disk, and replace
    ``path`` with one ``os.replace`` (atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_torch_load(path: str | os.PathLike, expected_format: str) -> dict:
    """Load an mmgraph ``.pt`` file with ``weights_only=True`` (no arbitrary unpickling).

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, not a dict, or was not
            written by mmgraph with ``expected_format``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        text = str(exc)
        if "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: refused to load: it holds Python objects other than tensors and "
                "plain data, which mmgraph never writes (weights_only=True)"
            ) from None
        reason = (text.splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(obj, dict) or obj.get(FORMAT_KEY) != expected_format:
        found = obj.get(FORMAT_KEY) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: not an mmgraph {expected_format!r} file (found format {found!r})"
        )
    return obj
