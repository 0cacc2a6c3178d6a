"""Shared test helpers.

The real datasets (``tiktok``, ``movielens-small``, ``baby``, ``sports`` in MMRec layout) live
outside the repository, in ``$MMGRAPH_SHARED_DATA`` or ``<repo>/../shared/data``. Tests that need
one are marked ``@requires_shared("baby")`` and are skipped where that folder is absent::

    from tests.conftest import requires_shared, shared_data_dir

    @requires_shared("movielens-small")
    def test_something():
        ds = load_dataset(shared_data_dir() / "movielens-small")

Fixtures for the model tests: ``isolated_graph_cache`` (opt in with
``pytestmark = pytest.mark.usefixtures("isolated_graph_cache")``) and the session-wide
``tiktok_full`` / ``tiktok_slice`` datasets (skipped where ``tiktok`` is absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmgraph.data import InteractionDataset, load_dataset
from tests.helpers import user_slice

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


@pytest.fixture
def isolated_graph_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$MMGRAPH_CACHE`` at a fresh folder, keeping the kNN and co-occurrence disk
    caches of a test out of the user's home. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("isolated_graph_cache")``."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MMGRAPH_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiktok_full() -> InteractionDataset:
    """The shared ``tiktok`` dataset, loaded once a session; skips where it is absent (mark
    the tests ``@requires_shared("tiktok")`` as well). Do not modify it."""
    folder = shared_data_dir() / "tiktok"
    if not folder.is_dir():
        pytest.skip(f"shared dataset {folder} is absent")
    with pytest.warns(UserWarning):  # the loader reports the cold users it drops
        return load_dataset(folder)


@pytest.fixture(scope="session")
def tiktok_slice(tiktok_full: InteractionDataset) -> InteractionDataset:
    """Users 0-2999 of ``tiktok``: ~43k training interactions, image + audio features."""
    return user_slice(tiktok_full, 0, 3000)
