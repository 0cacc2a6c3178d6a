import pytest
import torch

from mmgraph.data.dataset import ITEM
from mmgraph.data.knn import (
    KNN_FORMAT,
    default_knn_weights,
    fused_knn_graph,
    knn_cache_key,
    knn_graph,
    knn_neighbors,
    modality_knn_graphs,
    similarity_block_shape,
)
from mmgraph.errors import ConfigError, DataError
from mmgraph.nn import LightGCNConv
from tests.helpers import tiny_dataset


def brute_force_similarity(features, include_self):
    """Dense cosine matrix with the diagonal forced in (+inf) or out (-inf)."""
    unit = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = unit @ unit.T
    sim.fill_diagonal_(float("inf") if include_self else float("-inf"))
    return sim


def dense(edge_index, weight, n):
    """``A[target, source]`` of a kNN edge list."""
    matrix = torch.zeros(n, n)
    matrix[edge_index[1], edge_index[0]] = weight
    return matrix


def normalized_from_binary(binary):
    """D_row^{-1/2} A D_col^{-1/2} with r = row sums on both sides (MENTOR's formula)."""
    r = binary.sum(1)
    inv = torch.where(r > 0, r.pow(-0.5), torch.zeros_like(r))
    return inv[:, None] * binary * inv[None, :]


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_knn_graph_equals_dense_brute_force_without_ties(include_self, chunk_size):
    features = torch.randn(23, 5, generator=torch.Generator().manual_seed(chunk_size))
    k = 4
    edge_index, weight = knn_graph(features, k, include_self=include_self, chunk_size=chunk_size)
    assert edge_index.shape == (2, 23 * k) and weight.shape == (23 * k,)
    sim = brute_force_similarity(features, include_self)
    binary = torch.zeros(23, 23).scatter_(1, sim.topk(k, dim=1).indices, 1.0)
    assert torch.allclose(dense(edge_index, weight, 23), normalized_from_binary(binary))
    assert torch.allclose(weight, torch.full_like(weight, 1 / k))  # the formula gives 1/k here


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("chunk_size", [2, 5, 64])
def test_knn_graph_with_ties_selects_a_valid_top_k(include_self, chunk_size):
    gen = torch.Generator().manual_seed(1)
    features = torch.randint(0, 2, (30, 3), generator=gen).float()  # many equal rows/cosines
    features[4] = 0.0  # a zero row: cosine 0 with everything
    k = 5
    edge_index, weight = knn_graph(features, k, include_self=include_self, chunk_size=chunk_size)
    sim = brute_force_similarity(features, include_self)
    source, target = edge_index
    for item in range(30):
        chosen = source[target == item]
        assert chosen.unique().numel() == k
        assert (item in chosen.tolist()) == include_self
        # Tie-robust: the chosen similarities are exactly the k largest values of the row.
        expected = sim[item].topk(k).values
        got = sim[item, chosen].sort(descending=True).values
        assert torch.allclose(got, expected)
    binary = (dense(edge_index, torch.ones_like(weight), 30) > 0).float()
    assert torch.allclose(dense(edge_index, weight, 30), normalized_from_binary(binary))


def test_knn_graph_edge_convention_matches_message_passing():
    features = torch.randn(12, 4)
    edge_index, weight = knn_graph(features, 3)
    x = torch.randn(12, 2)
    by_messages = LightGCNConv()(x, edge_index, edge_weight=weight)
    assert torch.allclose(by_messages, dense(edge_index, weight, 12) @ x, atol=1e-6)


def test_knn_graph_rejects_bad_k_and_features():
    features = torch.randn(5, 3)
    for k in (5, 6, 0):
        with pytest.raises(DataError, match="1 <= k < num_items"):
            knn_graph(features, k)
    with pytest.raises(DataError, match="NaN"):
        knn_graph(torch.full((5, 3), float("nan")), 2)


def test_fused_graph_is_the_weighted_sum_and_is_stored_on_the_dataset():
    data = tiny_dataset(modalities={"image": 8, "text": 6})
    fused = fused_knn_graph(data, 4, cache_dir=None)
    expected = torch.zeros(20, 20)
    for modality, weight in (("image", 0.1), ("text", 0.9)):
        edge_index, edge_weight = knn_graph(data.features(modality), 4)
        expected += weight * dense(edge_index, edge_weight, 20)
        store = data.data[ITEM, f"similar_{modality}", ITEM]
        assert torch.equal(store.edge_index, edge_index)
        assert torch.equal(store.edge_weight, edge_weight)
    assert fused.layout == torch.sparse_csr
    assert torch.allclose(fused.to_dense(), expected)
    assert torch.allclose(fused.to_dense().sum(1), torch.ones(20))  # rows are means
    custom = fused_knn_graph(data, 4, {"image": 1.0, "text": 0.0}, cache_dir=None)
    image = knn_graph(data.features("image"), 4)
    assert torch.allclose(custom.to_dense(), dense(*image, 20))


def test_default_weights_and_weight_validation():
    assert default_knn_weights(["text", "image"]) == {"image": 0.1, "text": 0.9}
    assert default_knn_weights(["image", "audio"]) == {"image": 0.5, "audio": 0.5}
    assert default_knn_weights(["a", "b", "c"]) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )
    data = tiny_dataset(modalities={"image": 8, "audio": 4})
    with pytest.raises(ConfigError, match="one weight per modality"):
        fused_knn_graph(data, 3, {"image": 1.0}, cache_dir=None)
    with pytest.raises(ConfigError, match=">= 0"):
        fused_knn_graph(data, 3, {"image": -1.0, "audio": 1.0}, cache_dir=None)
    with pytest.raises(DataError, match="no modality"):
        fused_knn_graph(tiny_dataset(), 3, cache_dir=None)


def test_cache_key_depends_on_features_k_and_self():
    features = {"image": torch.randn(10, 4), "text": torch.randn(10, 3)}
    base = knn_cache_key(features, 5, True)
    assert base == knn_cache_key({m: f.clone() for m, f in features.items()}, 5, True)
    changed = dict(features, text=features["text"].clone())
    changed["text"][3, 1] += 1e-3
    assert knn_cache_key(changed, 5, True) != base
    assert knn_cache_key(features, 6, True) != base
    assert knn_cache_key(features, 5, False) != base


def test_new_weights_reuse_the_cached_modality_graphs(tmp_path, monkeypatch):
    data = tiny_dataset(modalities={"image": 8, "text": 6})
    first = fused_knn_graph(data, 4, {"image": 0.1, "text": 0.9}, cache_dir=tmp_path)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the kNN graph was rebuilt instead of read from the cache")

    monkeypatch.setattr("mmgraph.data.knn.knn_graph", no_rebuild)
    fresh = tiny_dataset(modalities={"image": 8, "text": 6})
    second = fused_knn_graph(fresh, 4, {"image": 0.5, "text": 0.5}, cache_dir=tmp_path)
    graphs = modality_knn_graphs(fresh, 4, cache_dir=tmp_path)
    dense = {m: torch.zeros(20, 20) for m in graphs}
    for m, (edge_index, weight) in graphs.items():
        dense[m].index_put_((edge_index[1], edge_index[0]), weight, accumulate=True)
    expected = 0.5 * dense["image"] + 0.5 * dense["text"]
    assert torch.allclose(second.to_dense(), expected)
    assert not torch.allclose(first.to_dense(), second.to_dense())
    assert len(list((tmp_path / "knn").glob("*.pt"))) == 1


def test_disk_cache_hit_returns_identical_tensors(tmp_path, monkeypatch):
    data = tiny_dataset(modalities={"image": 8, "text": 6})
    first = fused_knn_graph(data, 4, cache_dir=tmp_path)
    files = list((tmp_path / "knn").glob("*.pt"))
    assert len(files) == 1
    stored = torch.load(files[0], weights_only=True)
    assert stored["mmgraph_format"] == KNN_FORMAT
    graphs = modality_knn_graphs(data, 4, cache_dir=tmp_path)
    assert graphs is modality_knn_graphs(data, 4, cache_dir=tmp_path)  # in-memory hit

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the kNN graph was rebuilt instead of read from the cache")

    monkeypatch.setattr("mmgraph.data.knn.knn_graph", no_rebuild)
    fresh = tiny_dataset(modalities={"image": 8, "text": 6})  # same data, empty memory cache
    second = fused_knn_graph(fresh, 4, cache_dir=tmp_path)
    for a, b in (
        (first.crow_indices(), second.crow_indices()),
        (first.col_indices(), second.col_indices()),
        (first.values(), second.values()),
    ):
        assert torch.equal(a, b)
    image = data.data[ITEM, "similar_image", ITEM]
    assert torch.equal(fresh.data[ITEM, "similar_image", ITEM].edge_index, image.edge_index)
    with pytest.raises(AssertionError, match="rebuilt"):  # another k is another key
        fused_knn_graph(fresh, 3, cache_dir=tmp_path)


def test_default_cache_dir_follows_the_environment_and_survives_a_corrupt_file(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MMGRAPH_CACHE", str(tmp_path))
    data = tiny_dataset(modalities={"image": 8})
    expected = fused_knn_graph(data, 3)
    (path,) = (tmp_path / "knn").glob("*.pt")
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable kNN cache"):
        rebuilt = fused_knn_graph(tiny_dataset(modalities={"image": 8}), 3)
    assert torch.equal(rebuilt.to_dense(), expected.to_dense())
    assert torch.load(path, weights_only=True)["mmgraph_format"] == KNN_FORMAT


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize(("chunk_size", "block_entries"), [(3, 18), (7, 14), (5, 5), (23, 23)])
def test_tiled_blocks_equal_the_dense_brute_force(include_self, chunk_size, block_entries):
    # Tiles of 6, 2, 1 and 1 items: narrower than k too, and the last tile a remainder.
    features = torch.randn(23, 5, generator=torch.Generator().manual_seed(chunk_size))
    k = 4
    neighbours = knn_neighbors(
        features, k, include_self=include_self, chunk_size=chunk_size, block_entries=block_entries
    )
    sim = brute_force_similarity(features, include_self)
    assert torch.equal(neighbours, sim.topk(k, dim=1).indices)  # also by decreasing similarity
    assert torch.equal(neighbours, knn_neighbors(features, k, include_self=include_self))


@pytest.mark.parametrize("include_self", [True, False])
def test_tiled_blocks_with_ties_select_a_valid_top_k(include_self):
    gen = torch.Generator().manual_seed(1)
    features = torch.randint(0, 2, (30, 3), generator=gen).float()  # many equal rows/cosines
    features[4] = 0.0
    k = 5
    neighbours = knn_neighbors(
        features, k, include_self=include_self, chunk_size=4, block_entries=28
    )
    sim = brute_force_similarity(features, include_self)
    for item in range(30):
        chosen = neighbours[item]
        assert chosen.unique().numel() == k
        assert (item in chosen.tolist()) == include_self
        assert torch.equal(sim[item, chosen], sim[item].topk(k).values)


def test_default_blocks_tile_the_items_only_beyond_the_minimum_rows(monkeypatch):
    import mmgraph.data.knn as knn

    features = torch.randn(40, 6, generator=torch.Generator().manual_seed(4))
    expected = brute_force_similarity(features, True).topk(3, dim=1).indices
    tiles = []
    topk = torch.topk

    def recording_topk(x, *args, **kwargs):
        tiles.append(x.shape)
        return topk(x, *args, **kwargs)

    monkeypatch.setattr(knn, "MIN_BLOCK_ROWS", 8)
    monkeypatch.setattr(torch, "topk", recording_topk)
    # 400 entries: 10 full rows >= 8 per block, one tile of all 40 items.
    assert torch.equal(knn_neighbors(features, 3, block_entries=400), expected)
    assert tiles == [(10, 40)] * 4
    tiles.clear()
    # 160 entries: 4 full rows < 8, so blocks of 8 queries x tiles of 20 items (+ the merge).
    assert torch.equal(knn_neighbors(features, 3, block_entries=160), expected)
    assert tiles == [(8, 20), (8, 20), (8, 6)] * 5
    with pytest.raises(ValueError, match="block_entries"):
        knn_neighbors(features, 3, block_entries=0)


def test_neighbours_of_a_row_range_equal_those_rows_of_the_full_build():
    features = torch.randn(50, 7, generator=torch.Generator().manual_seed(3))
    full = knn_neighbors(features, 5, chunk_size=8)
    assert torch.equal(knn_neighbors(features, 5, chunk_size=3, start=11, stop=29), full[11:29])
    assert knn_neighbors(features, 5, start=50, stop=50).shape == (0, 5)
    with pytest.raises(ValueError, match="start <= stop"):
        knn_neighbors(features, 5, start=30, stop=20)


def fresh_block_neighbours(features, k, include_self, chunk_size, tile):
    """The tiled search with a fresh similarity block per tile (the path before the buffer)."""
    num_items = features.size(0)
    norms = torch.linalg.vector_norm(features, dim=1)
    inv_norms = torch.where(norms > 0, 1.0 / norms, 0.0)
    fill = float("inf") if include_self else float("-inf")
    rows = []
    for first in range(0, num_items, chunk_size):
        last = min(first + chunk_size, num_items)
        values, indices = [], []
        for low in range(0, num_items, tile):
            high = min(low + tile, num_items)
            sim = features[first:last] @ features[low:high].T
            sim.mul_(inv_norms[low:high])
            for item in range(max(first, low), min(last, high)):
                sim[item - first, item - low] = fill
            top = torch.topk(sim, min(k, high - low), dim=1)
            values.append(top.values)
            indices.append(top.indices + low)
        if len(values) == 1:
            rows.append(indices[0])
        else:
            best = torch.topk(torch.cat(values, dim=1), k, dim=1).indices
            rows.append(torch.cat(indices, dim=1).gather(1, best))
    return torch.cat(rows)


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize(
    ("chunk_size", "block_entries"),
    # one block of full rows; a remainder block; a remainder tile; tiles narrower than k;
    # one item per tile; more rows per block than items
    [(None, 10**6), (16, 10**6), (16, 16 * 25), (9, 27), (4, 4), (200, 200 * 19)],
)
def test_buffer_path_is_bit_identical_to_fresh_blocks(include_self, chunk_size, block_entries):
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(61, 24, generator=gen)
    features[5] = 0.0  # an all-zero row: cosine 0 with every item, a tie of all its columns
    k = 6
    rows, tile = similarity_block_shape(61, chunk_size, block_entries)
    neighbours = knn_neighbors(
        features, k, include_self=include_self, chunk_size=chunk_size, block_entries=block_entries
    )
    expected = fresh_block_neighbours(features, k, include_self, rows, tile)
    assert torch.equal(neighbours, expected)
    # the same neighbours whatever the block shape (but for the tied row), and for any rows
    default = knn_neighbors(features, k, include_self=include_self)
    assert torch.equal(neighbours[6:], default[6:]) and torch.equal(neighbours[:5], default[:5])
    part = knn_neighbors(
        features, k, include_self=include_self, chunk_size=chunk_size,
        block_entries=block_entries, start=13, stop=50,
    )  # fmt: skip
    assert torch.equal(part, expected[13:50])


def test_every_block_reuses_one_similarity_buffer(monkeypatch):
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(5))
    written = []
    matmul = torch.matmul

    def recording_matmul(a, b, *, out=None):
        assert out is not None, "a similarity block was allocated in the loop"
        written.append((out.untyped_storage().data_ptr(), out.shape))
        return matmul(a, b, out=out)

    monkeypatch.setattr(torch, "matmul", recording_matmul)
    done = []
    neighbours = knn_neighbors(features, 3, chunk_size=8, block_entries=160, progress=done.append)
    monkeypatch.undo()
    assert torch.equal(neighbours, brute_force_similarity(features, True).topk(3, dim=1).indices)
    # 7 blocks (the last of 2 rows) x 3 tiles (20, 20, 10 items), all in one storage
    assert [shape for _, shape in written] == [(8, 20), (8, 20), (8, 10)] * 6 + [
        (2, 20),
        (2, 20),
        (2, 10),
    ]
    assert len({pointer for pointer, _ in written}) == 1
    assert done == [8, 16, 24, 32, 40, 48, 50]  # progress: query rows done after each block


def test_features_that_require_grad_give_the_same_neighbours():
    features = torch.randn(30, 5, generator=torch.Generator().manual_seed(8))
    expected = knn_neighbors(features, 4, chunk_size=7, block_entries=70)
    tracked = features.clone().requires_grad_()
    assert torch.equal(knn_neighbors(tracked, 4, chunk_size=7, block_entries=70), expected)
