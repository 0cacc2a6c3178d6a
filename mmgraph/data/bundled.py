"""Datasets shipped inside the package, and one entry point for bundled names and folders.

A bundled dataset is an MMRec-layout folder ``mmgraph/datasets/<name>/`` whose files are
gzip-compressed (``<name>.inter.gz``, ``<modality>_feat.npy.gz``); it is read with
:func:`~mmgraph.data.mmrec.load_mmrec` like any other folder.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.mmrec import _load
from mmgraph.data.synthetic import SPEC_PREFIX, parse_spec, synthetic_dataset
from mmgraph.errors import DataError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def _bundle_root() -> Traversable:
    return resources.files("mmgraph") / "datasets"


def list_bundled() -> list[str]:
    """Sorted names of the datasets shipped with the package (``["tiktok"]``)."""
    root = _bundle_root()
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and any(f.name.endswith(".inter.gz") for f in entry.iterdir())
    )


def load_dataset(
    name_or_path: str | os.PathLike, *, drop_cold_users: bool = True
) -> InteractionDataset:
    """Load a bundled dataset by name, an MMRec-layout folder by path, or a synthetic one.

    ``"synthetic:users=...,items=...,..."`` (see :mod:`mmgraph.data.synthetic`) generates a
    dataset instead; ``"synthetic"`` alone uses the generator's defaults.

    A string that names a bundled dataset loads that dataset (``source`` and ``name`` are the
    bundled name), even if a folder of that name exists in the working directory; pass a
    :class:`~pathlib.Path` (or ``"./tiktok"``) to load the folder instead. Otherwise the
    argument must be an existing folder (``source`` is its absolute path, ``name`` its name).

    Args:
        name_or_path: a name from :func:`list_bundled`, or a dataset folder.
        drop_cold_users: see :func:`~mmgraph.data.mmrec.load_mmrec`.

    Raises:
        DataError: if the argument is neither, or the files are malformed.
    """
    if isinstance(name_or_path, str) and name_or_path.split(":")[0] == SPEC_PREFIX:
        return synthetic_dataset(parse_spec(name_or_path if ":" in name_or_path else "synthetic:"))
    bundled = list_bundled()
    if isinstance(name_or_path, str) and name_or_path in bundled:
        with resources.as_file(_bundle_root() / name_or_path) as folder:
            dataset = _load(Path(folder), name_or_path, drop_cold_users, stacklevel=3)
        dataset.source = name_or_path
        return dataset
    path = Path(name_or_path)
    if path.is_dir():
        return _load(path, None, drop_cold_users, stacklevel=3)
    raise DataError(
        f"{os.fspath(name_or_path)}: neither a bundled dataset "
        f"({', '.join(bundled) or 'none are installed'}) nor an existing folder"
    )
