"""The user co-occurrence graph against a dense brute force, its blocking and its cache."""

import pytest
import torch

import mmgraph.data.cooccurrence as cooccurrence
from mmgraph.data import InteractionDataset, user_cooccurrence_graph
from mmgraph.data.cooccurrence import COOCCURRENCE_FORMAT, cooccurrence_cache_key
from mmgraph.errors import ConfigError, DataError
from tests.helpers import tiny_dataset


def brute_force(edges, num_users, num_items, k):
    """Dense ``[U, U]``: each user's top-k others by shared distinct items, ties to the smaller
    id, written out with a dense product and plain loops."""
    a = torch.zeros(num_users, num_items)
    a[edges[0], edges[1]] = 1.0  # a repeated interaction counts once
    shared = a @ a.T
    expected = torch.zeros(num_users, num_users)
    for u in range(num_users):
        others = [v for v in range(num_users) if v != u and shared[u, v] > 0]
        others.sort(key=lambda v: (-shared[u, v].item(), v))
        for v in others[:k]:
            expected[u, v] = shared[u, v]
    return expected, shared


def random_edges(seed, num_users=26, num_items=9, num_edges=45):
    """Few items for many users: many equal counts; users 24 and 25 have no interaction, and
    user 23 alone has item 8 (no co-occurring user); some pairs repeat."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, num_users - 3, (num_edges,), generator=gen)
    items = torch.randint(0, num_items - 1, (num_edges,), generator=gen)
    edges = torch.stack([torch.cat([users, users[:5], torch.tensor([23])]),
                         torch.cat([items, items[:5], torch.tensor([8])])])  # fmt: skip
    return edges, num_users, num_items


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 30])
def test_equals_the_dense_brute_force_whatever_the_blocking(seed, k):
    edges, num_users, num_items = random_edges(seed)
    expected, shared = brute_force(edges, num_users, num_items, k)
    shared.fill_diagonal_(0)
    # the data exercise what the brute force decides: users without any co-occurring user,
    # and (for k < 30) a cut-off between users with equal counts
    assert (shared.sum(1) == 0).sum() >= 3
    if k < 30:
        cut_ties = 0
        for u in range(num_users):
            kept = expected[u][expected[u] > 0]
            if kept.numel() == k:
                left_out = shared[u][(expected[u] == 0) & (shared[u] > 0)]
                cut_ties += int((left_out == kept.min()).any())
        assert cut_ties > 0
    for blocking in [{}, {"block_users": 1}, {"block_users": 4}, {"block_entries": 7}]:
        graph = user_cooccurrence_graph(
            edges, k, num_users=num_users, num_items=num_items, **blocking
        )
        assert torch.equal(graph.to_dense(), expected), blocking


def test_shape_and_dtype_contract():
    edges, num_users, num_items = random_edges(5)
    graph = user_cooccurrence_graph(edges, 3, num_users=num_users, num_items=num_items)
    assert graph.layout == torch.sparse_csr and graph.dtype == torch.float32
    assert graph.shape == (num_users, num_users)
    crow, cols, values = graph.crow_indices(), graph.col_indices(), graph.values()
    assert crow.dtype == cols.dtype == torch.long
    assert int(crow.diff().max()) <= 3 and int(crow.diff()[23:].sum()) == 0
    assert torch.all(values > 0) and torch.equal(values, values.round())
    for u in range(num_users):
        row = cols[crow[u] : crow[u + 1]]
        assert torch.all(row != u) and torch.all(row[1:] > row[:-1])  # no self, sorted columns
    # the sizes default to the largest ids + 1 (users 24, 25 and item 8 absent: 24 x 24)
    inferred = user_cooccurrence_graph(edges[:, edges[0] < 23], 3)
    assert inferred.shape == (23, 23)


def test_blocks_bound_the_entries_held_at_once(monkeypatch):
    edges, num_users, num_items = random_edges(6)
    seen = []
    original = cooccurrence._block_top_k

    def spy(product, start, k):
        seen.append((product.size(0), product._nnz()))
        return original(product, start, k)

    monkeypatch.setattr(cooccurrence, "_block_top_k", spy)
    user_cooccurrence_graph(edges, 2, num_users=num_users, num_items=num_items, block_entries=8)
    assert len(seen) > 3 and sum(rows for rows, _ in seen) == num_users
    assert all(nnz <= 8 or rows == 1 for rows, nnz in seen)
    seen.clear()
    user_cooccurrence_graph(edges, 2, num_users=num_users, num_items=num_items, block_users=5)
    assert [rows for rows, _ in seen] == [5, 5, 5, 5, 5, 1]


def test_no_interactions_give_an_empty_graph_and_bad_input_is_refused():
    graph = user_cooccurrence_graph(torch.empty(2, 0, dtype=torch.long), 3, num_users=4)
    assert graph.shape == (4, 4) and graph._nnz() == 0
    edges = torch.tensor([[0, 1], [0, 0]])
    for k in (0, 2.5, True):
        with pytest.raises(ConfigError, match="k >= 1"):
            user_cooccurrence_graph(edges, k)
    with pytest.raises(ConfigError, match="block_users"):
        user_cooccurrence_graph(edges, 2, block_users=0)
    with pytest.raises(DataError, match=r"\[2, E\]"):
        user_cooccurrence_graph(torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(DataError, match="integer ids"):
        user_cooccurrence_graph(edges.float(), 2)
    with pytest.raises(DataError, match="beyond num_users=1"):
        user_cooccurrence_graph(edges, 2, num_users=1)
    with pytest.raises(DataError, match="negative"):
        user_cooccurrence_graph(-edges, 2)


def test_dataset_graph_is_its_training_graph_and_is_cached(tmp_path, monkeypatch):
    data = tiny_dataset()
    expected, _ = brute_force(data.edge_index(), data.num_users, data.num_items, 4)
    graph = user_cooccurrence_graph(data, 4, cache_dir=tmp_path)
    assert torch.equal(graph.to_dense(), expected)
    assert user_cooccurrence_graph(data, 4, cache_dir=tmp_path) is graph  # in-memory hit

    def rebuilt(*args, **kwargs):
        raise AssertionError("the co-occurrence graph was rebuilt instead of read from cache")

    monkeypatch.setattr(cooccurrence, "_top_cooccurring", rebuilt)
    fresh = tiny_dataset()  # same data, empty memory cache: read from disk
    again = user_cooccurrence_graph(fresh, 4, cache_dir=tmp_path)
    assert torch.equal(again.crow_indices(), graph.crow_indices())
    assert torch.equal(again.col_indices(), graph.col_indices())
    assert torch.equal(again.values(), graph.values())
    with pytest.raises(AssertionError, match="rebuilt"):  # another k is another key
        user_cooccurrence_graph(fresh, 3, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="rebuilt"):  # no disk cache
        user_cooccurrence_graph(tiny_dataset(), 4, cache_dir=None)


def test_cache_key_depends_on_edges_sizes_and_k():
    edges = torch.tensor([[0, 1, 2], [0, 0, 1]])
    base = cooccurrence_cache_key(edges, 3, 2, 5)
    assert base == cooccurrence_cache_key(edges.clone(), 3, 2, 5)
    assert cooccurrence_cache_key(edges[:, :2], 3, 2, 5) != base
    assert cooccurrence_cache_key(edges, 4, 2, 5) != base
    assert cooccurrence_cache_key(edges, 3, 3, 5) != base
    assert cooccurrence_cache_key(edges, 3, 2, 6) != base


def test_default_cache_dir_follows_the_environment_and_survives_a_corrupt_file(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MMGRAPH_CACHE", str(tmp_path))
    data = InteractionDataset.from_interactions(
        torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 1]), torch.zeros(4, dtype=torch.long)
    )
    expected = user_cooccurrence_graph(data, 2)
    (path,) = (tmp_path / "cooccurrence").glob("*.pt")
    path.write_bytes(b"not a torch file")
    fresh = InteractionDataset.from_interactions(
        torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 1]), torch.zeros(4, dtype=torch.long)
    )
    with pytest.warns(UserWarning, match="unreadable co-occurrence cache"):
        rebuilt = user_cooccurrence_graph(fresh, 2)
    assert torch.equal(rebuilt.to_dense(), expected.to_dense())
    assert torch.equal(expected.to_dense(), torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0.0]]))
    assert torch.load(path, weights_only=True)["mmgraph_format"] == COOCCURRENCE_FORMAT
