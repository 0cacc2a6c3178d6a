"""Shared test helpers.

The real datasets (``tiktok``, ``movielens-small``, ``baby``, ``sports`` in MMRec layout) live
outside the repository, in ``$MMGRAPH_SHARED_DATA`` or ``<repo>/../shared/data``. Tests that need
one are marked ``@requires_shared("baby")`` and are skipped where that folder is absent::

    from tests.conftest import requires_shared, shared_data_dir

    @requires_shared("movielens-small")
    def test_something():
        ds = load_dataset(shared_data_dir() / "movielens-small")
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Folder holding the real datasets (it may not exist on every machine)."""
    return Path(os.environ.get("MMGRAPH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def requires_shared(name: str) -> pytest.MarkDecorator:
    """Skip marker for tests that need ``shared_data_dir() / name``."""
    folder = shared_data_dir() / name
    return pytest.mark.skipif(not folder.is_dir(), reason=f"shared dataset {folder} is absent")


@pytest.fixture
def shared_data() -> Path:
    """:func:`shared_data_dir` as a fixture."""
    return shared_data_dir()
