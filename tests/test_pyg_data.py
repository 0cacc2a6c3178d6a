"""PyG HeteroData in, and the adapters for PyG's recommendation datasets.

PyG's datasets cannot be downloaded here, so each builder below makes a small HeteroData with
exactly the node types, edge types, attribute names, dtypes and shapes that the PyG 2.8.1
class's ``process()`` produces (``torch_geometric/datasets/movie_lens*.py``,
``amazon_book.py``).
"""

import math
import warnings
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch_geometric.data import Data, HeteroData

from mmgraph.cli import main
from mmgraph.data import (
    InteractionDataset,
    from_pyg,
    from_pyg_amazon_book,
    from_pyg_movielens,
    from_pyg_movielens1m,
    from_pyg_movielens100k,
    heterodata_to_dataset,
    load_mmrec,
)
from mmgraph.data.mmrec import write_mmrec
from mmgraph.data.preprocess import preprocess, read_id_map, split_counts
from mmgraph.errors import ConfigError, DataError, DataWarning
from mmgraph.eval import Evaluator
from mmgraph.models import get_model
from mmgraph.train import Trainer, resolve_config, seed_everything
from tests.helpers import tiny_dataset

NUM_USERS = 30
NUM_ITEMS = 42  # items 40 and 41 get no interaction: they must be dropped
RATES = ("user", "rates", "movie")
RATED_BY = ("movie", "rated_by", "user")


def random_edges(seed, num_users=NUM_USERS, low=5, high=16):
    """``(users [E], items [E], times [E] int64 distinct, ratings [E] int64)``, each user with
    ``low..high-1`` distinct items of the first 40, rows shuffled."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(num_users):
        chosen = rng.choice(40, int(rng.integers(low, high)), replace=False)
        users += [user] * chosen.size
        items += chosen.tolist()
    order = rng.permutation(len(users))
    times = 880_000_000 + rng.permutation(len(users)) * 60
    ratings = rng.integers(1, 6, len(users))
    return (
        torch.tensor(users)[order],
        torch.tensor(items)[order],
        torch.from_numpy(times),
        torch.from_numpy(ratings),
    )


def genres(num_items, width, seed):
    return (
        torch.rand(num_items, width, generator=torch.Generator().manual_seed(seed)) < 0.3
    ).float()


def movielens(seed=0):
    """PyG ``MovieLens``: movie.x = [title embedding 384 | genres 20], user.num_nodes,
    one edge type with edge_index, edge_label (rating, long) and time (long)."""
    users, items, times, ratings = random_edges(seed)
    data = HeteroData()
    emb = torch.randn(NUM_ITEMS, 384, generator=torch.Generator().manual_seed(seed))
    data["movie"].x = torch.cat([emb, genres(NUM_ITEMS, 20, seed)], dim=-1)
    data["user"].num_nodes = NUM_USERS
    data[RATES].edge_index = torch.stack([users, items])
    data[RATES].edge_label = ratings
    data[RATES].time = times
    return data


def movielens100k(seed=0, duplicates=4):
    """PyG ``MovieLens100K``: movie.x genres [., 19], user.x [., 24]; train edges in edge_index
    (+ rating, time, reverse type), test edges in edge_label_index (+ edge_label float), some
    of them repeating train pairs."""
    users, items, times, ratings = random_edges(seed)
    cut = int(0.8 * users.numel())
    data = HeteroData()
    data["movie"].x = genres(NUM_ITEMS, 19, seed)
    data["user"].x = torch.rand(NUM_USERS, 24, generator=torch.Generator().manual_seed(seed))
    edge_index = torch.stack([users[:cut], items[:cut]])
    data[RATES].edge_index = edge_index
    data[RATES].rating = ratings[:cut]
    data[RATES].time = times[:cut]
    data[RATED_BY].edge_index = edge_index.flip([0])
    data[RATED_BY].rating = ratings[:cut]
    data[RATED_BY].time = times[:cut]
    repeated = edge_index[:, :duplicates]
    data[RATES].edge_label_index = torch.cat([torch.stack([users[cut:], items[cut:]]), repeated], 1)
    data[RATES].edge_label = torch.rand(users.numel() - cut + duplicates) * 5
    return data


def movielens1m(seed=0):
    """PyG ``MovieLens1M``: movie.x genres [., 18], user.x [., 30]; edge_index, rating, time,
    and the reverse edge type."""
    users, items, times, ratings = random_edges(seed)
    data = HeteroData()
    data["movie"].x = genres(NUM_ITEMS, 18, seed)
    data["user"].x = torch.rand(NUM_USERS, 30, generator=torch.Generator().manual_seed(seed))
    edge_index = torch.stack([users, items])
    data[RATES].edge_index = edge_index
    data[RATES].rating = ratings
    data[RATES].time = times
    data[RATED_BY].edge_index = edge_index.flip([0])
    data[RATED_BY].rating = ratings
    data[RATED_BY].time = times
    return data


def amazon_book(seed=0):
    """PyG ``AmazonBook``: num_nodes only; train edges in edge_index (+ reverse type), test
    edges in edge_label_index."""
    users, items, _, _ = random_edges(seed)
    cut = int(0.8 * users.numel())
    data = HeteroData()
    data["user"].num_nodes = NUM_USERS
    data["book"].num_nodes = NUM_ITEMS
    edge_index = torch.stack([users[:cut], items[:cut]])
    data["user", "rates", "book"].edge_index = edge_index
    data["book", "rated_by", "user"].edge_index = edge_index.flip([0])
    data["user", "rates", "book"].edge_label_index = torch.stack([users[cut:], items[cut:]])
    return data


def plain_graph(seed=0):
    """A hand-made graph with its own type names and two item feature attributes."""
    users, items, _, _ = random_edges(seed)
    data = HeteroData()
    data["customer"].num_nodes = NUM_USERS
    gen = torch.Generator().manual_seed(seed)
    data["product"].x_image = torch.randn(NUM_ITEMS, 8, generator=gen)
    data["product"].x = torch.randn(NUM_ITEMS, 5, generator=gen)
    data["product"].category = torch.arange(NUM_ITEMS)  # 1-D integer: not a feature
    data["customer", "buys", "product"].edge_index = torch.stack([users, items])
    return data


def convert(builder, **kwargs):
    """The adapter of ``builder``'s graph, with the duplicate warning of movielens100k."""
    adapter = ADAPTER_OF[builder]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return adapter(builder(), **kwargs)


ADAPTER_OF = {
    movielens: from_pyg_movielens,
    movielens100k: from_pyg_movielens100k,
    movielens1m: from_pyg_movielens1m,
    amazon_book: from_pyg_amazon_book,
    plain_graph: heterodata_to_dataset,
}
BUILDERS = list(ADAPTER_OF)


def edge_store(graph):
    return next(graph[et] for et in graph.edge_types if et[0] in ("user", "customer"))


def input_pairs(graph):
    """Distinct (user, item) pairs of edge_index + edge_label_index, in input ids."""
    store = edge_store(graph)
    pairs = set(map(tuple, store.edge_index.t().tolist()))
    if "edge_label_index" in store:
        pairs |= set(map(tuple, store.edge_label_index.t().tolist()))
    return pairs


def output_pairs(ds, split=None):
    """(user, item) pairs of the dataset's splits, mapped back to input ids by node_id."""
    user_ids, item_ids = ds.data["user"].node_id, ds.data["item"].node_id
    pairs = []
    for s in [split] if split else ["train", "valid", "test"]:
        edges = ds.edge_index(s)
        pairs += list(zip(user_ids[edges[0]].tolist(), item_ids[edges[1]].tolist()))
    return pairs


# ---------------------------------------------------------------------- merge and split
@pytest.mark.parametrize("builder", BUILDERS)
def test_merge_keeps_every_distinct_pair_once_and_node_id_maps_back(builder):
    graph = builder()
    ds = convert(builder)
    pairs = output_pairs(ds)
    assert len(pairs) == len(set(pairs)) == len(input_pairs(graph))
    assert set(pairs) == input_pairs(graph)
    assert sum(ds.num_interactions(s) for s in ("train", "valid", "test")) == len(pairs)
    # Only nodes with an edge are kept, each once; every new id maps to one input node.
    for side, row in (("user", 0), ("item", 1)):
        node_id = ds.data[side].node_id
        assert node_id.dtype == torch.int64 and node_id.numel() == ds.data[side].num_nodes
        assert node_id.unique().numel() == node_id.numel()
        assert set(node_id.tolist()) == {pair[row] for pair in input_pairs(graph)}
    assert ds.num_items == 40 and ds.num_users == NUM_USERS


def test_repeated_pairs_are_dropped_with_a_warning():
    graph = movielens100k(duplicates=4)
    with pytest.warns(DataWarning, match=r"dropped 4 repeated \(user, item\) edge"):
        ds = from_pyg_movielens100k(graph)
    assert len(output_pairs(ds)) == len(input_pairs(graph))


@pytest.mark.parametrize(
    ("builder", "split"),
    [(builder, "random") for builder in BUILDERS]
    + [(movielens, "chronological"), (movielens1m, "chronological")],
)
def test_every_user_split_follows_the_mmrec_rule(builder, split):
    ds = convert(builder, split=split)
    counts = {s: ds.user_items(s).degree() for s in ("train", "valid", "test")}
    total = counts["train"] + counts["valid"] + counts["test"]
    valid, test = split_counts(total.numpy())
    assert np.array_equal(counts["valid"].numpy(), valid)
    assert np.array_equal(counts["test"].numpy(), test)
    # Both branches of the rule occur: n < 10 (1 + 1) and n >= 10 (int(0.2 n), half valid).
    assert (total < 10).any() and (total >= 10).any()
    big = total >= 10
    assert torch.equal(counts["valid"][big], (0.2 * total[big]).long() // 2)


def assert_chronological(ds, time_of):
    """Per user: every train time < every valid time < every test time."""
    latest, earliest = defaultdict(dict), defaultdict(dict)
    for split in ("train", "valid", "test"):
        for user, item in output_pairs(ds, split):
            t = time_of[(user, item)]
            latest[split][user] = max(latest[split].get(user, -math.inf), t)
            earliest[split][user] = min(earliest[split].get(user, math.inf), t)
    assert set(latest["test"]) == set(latest["valid"]) == set(latest["train"])
    for user in latest["test"]:
        assert latest["train"][user] < earliest["valid"][user]
        assert latest["valid"][user] < earliest["test"][user]


def times_by_pair(index, times):
    return dict(zip(map(tuple, index.t().tolist()), times.tolist(), strict=True))


@pytest.mark.parametrize("builder", [movielens, movielens1m])
def test_chronological_puts_each_users_latest_interactions_in_valid_then_test(builder):
    graph = builder()
    ds = convert(builder, split="chronological")
    assert_chronological(ds, times_by_pair(graph[RATES].edge_index, graph[RATES].time))


def test_chronological_without_label_times_is_a_config_error_and_label_times_fix_it():
    graph = movielens100k(duplicates=0)
    with pytest.raises(ConfigError, match="only for its edge_index edges.*edge_label_time"):
        from_pyg_movielens100k(graph, split="chronological")
    with pytest.raises(ConfigError, match="needs the edge attribute 'stamp'"):
        from_pyg_movielens100k(graph, split="chronological", time_attr="stamp")
    store = graph[RATES]
    store.edge_label_time = 880_000_000 + 60 * torch.randperm(store.edge_label_index.size(1))
    store.edge_label_time += 30  # distinct from the edge_index times
    ds = from_pyg_movielens100k(graph, split="chronological")
    time_of = times_by_pair(store.edge_index, store.time)
    time_of |= times_by_pair(store.edge_label_index, store.edge_label_time)
    assert_chronological(ds, time_of)


def test_random_split_is_seeded():
    a, b = convert(movielens1m, seed=1), convert(movielens1m, seed=1)
    c = convert(movielens1m, seed=2)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert torch.equal(a.data["user"].node_id, c.data["user"].node_id)


def test_earliest_of_repeated_pairs_is_kept_by_time():
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = 1, 4
    # user 0 rates item 3 twice: late (row 0) and early (row 4); the early copy must decide
    # the chronological order, so item 3 stays in train and items 1, 2 are held out.
    data["user", "rates", "item"].edge_index = torch.tensor([[0, 0, 0, 0, 0], [3, 0, 1, 2, 3]])
    data["user", "rates", "item"].time = torch.tensor([100, 2, 3, 4, 1])
    with pytest.warns(DataWarning, match="dropped 1 repeated"):
        ds = heterodata_to_dataset(data, split="chronological")
    item_ids = ds.data["item"].node_id
    assert item_ids[ds.edge_index("train")[1]].tolist() == [3, 0]
    assert item_ids[ds.edge_index("valid")[1]].tolist() == [1]
    assert item_ids[ds.edge_index("test")[1]].tolist() == [2]


# ---------------------------------------------------------------------- same as preprocess
@pytest.mark.parametrize(
    ("options"),
    [
        {"k_core": 1, "split": "random"},
        {"k_core": 3, "split": "chronological", "seed": 5},
        {"k_core": 2, "split": "random", "cold_items": 0.2},
    ],
)
def test_same_dataset_as_preprocess_then_load(tmp_path, options):
    graph = movielens1m(seed=3)
    store = graph[RATES]
    rows = zip(*store.edge_index.tolist(), store.time.tolist(), strict=True)
    csv = tmp_path / "ratings.csv"
    csv.write_text("userID,itemID,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    genre = graph["movie"].x.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # cold users dropped by both
        preprocess(
            csv,
            tmp_path / "out",
            item_features={"genre": ([str(i) for i in range(NUM_ITEMS)], genre)},
            **options,
        )
        loaded = load_mmrec(tmp_path / "out")
        ours = from_pyg_movielens1m(graph, **options)
    assert ours.fingerprint == loaded.fingerprint
    for side, file in (("user", "u_id_mapping.csv"), ("item", "i_id_mapping.csv")):
        raw = [int(r) for r in read_id_map(tmp_path / "out" / file)]
        assert ours.data[side].node_id.tolist() == raw


def test_cold_items_have_no_training_row():
    ds = convert(amazon_book, cold_items=0.25, seed=3)
    train_items = set(ds.edge_index("train")[1].tolist())
    valid_items = set(ds.edge_index("valid")[1].tolist())
    test_items = set(ds.edge_index("test")[1].tolist())
    cold = (valid_items | test_items) - train_items
    assert len(cold) == round(0.25 * 40)
    assert len(output_pairs(ds)) <= len(input_pairs(amazon_book()))


# ---------------------------------------------------------------------- features
@pytest.mark.parametrize(
    ("builder", "modality", "columns"),
    [
        (movielens, "text", slice(0, 384)),
        (movielens, "genre", slice(384, 404)),
        (movielens100k, "genre", slice(None)),
        (movielens1m, "genre", slice(None)),
    ],
)
def test_feature_rows_follow_node_id(builder, modality, columns):
    graph = builder()
    ds = convert(builder)
    x = graph["movie"].x[:, columns]
    node_id = ds.data["item"].node_id
    assert ds.features(modality).dtype == torch.float32
    assert torch.equal(ds.features(modality), x[node_id])
    assert not torch.equal(node_id, torch.arange(ds.num_items))  # a real re-indexing


def test_adapter_modalities_and_names():
    expected = {
        movielens: (["text", "genre"], "pyg-movielens"),
        movielens100k: (["genre"], "pyg-movielens100k"),
        movielens1m: (["genre"], "pyg-movielens1m"),
        amazon_book: ([], "pyg-amazon-book"),
    }
    for builder, (modalities, name) in expected.items():
        ds = convert(builder)
        assert (ds.modalities, ds.name) == (modalities, name)
    assert convert(movielens, text_dim=380).features("genre").size(1) == 24
    assert convert(movielens1m, features={}, name="ids").modalities == []


def test_default_features_take_every_item_matrix():
    graph = plain_graph()
    graph["product"].wrong_rows = torch.randn(NUM_ITEMS - 1, 3)
    graph["product"].x_int = torch.ones(NUM_ITEMS, 3, dtype=torch.long)
    ds = heterodata_to_dataset(graph)
    assert ds.modalities == ["image", "x"]
    assert torch.equal(ds.features("image"), graph["product"].x_image[ds.data["item"].node_id])
    explicit = heterodata_to_dataset(graph, features={"counts": "x_int"})
    assert explicit.modalities == ["counts"] and explicit.features("counts").dtype == torch.float32


def test_adapters_do_not_change_the_input_graph():
    graph = movielens()
    before = {key: list(graph[key].keys()) for key in graph.node_types + graph.edge_types}
    from_pyg_movielens(graph)
    after = {key: list(graph[key].keys()) for key in graph.node_types + graph.edge_types}
    assert before == after


# ---------------------------------------------------------------------- round trip
@pytest.mark.parametrize("builder", [movielens, amazon_book])
def test_dataset_data_round_trips_exactly(builder):
    ds = convert(builder)
    again = InteractionDataset.from_heterodata(ds.data, name=ds.name)
    assert again.fingerprint == ds.fingerprint
    assert again.modalities == ds.modalities
    for split in ("train", "valid", "test"):
        assert torch.equal(again.edge_index(split), ds.edge_index(split))
    assert torch.equal(again.data["item"].node_id, torch.arange(ds.num_items))


def test_node_id_leaves_fingerprint_and_modalities_alone():
    ds = convert(movielens)
    rebuilt = InteractionDataset.from_interactions(
        torch.cat([ds.edge_index(s)[0] for s in ("train", "valid", "test")]),
        torch.cat([ds.edge_index(s)[1] for s in ("train", "valid", "test")]),
        torch.cat(
            [
                torch.full((ds.num_interactions(s),), i)
                for i, s in enumerate(("train", "valid", "test"))
            ]
        ),
        ds.feature_dict(),
        num_users=ds.num_users,
        num_items=ds.num_items,
    )
    assert "node_id" not in rebuilt.data["item"]
    assert rebuilt.fingerprint == ds.fingerprint and rebuilt.modalities == ds.modalities


def test_a_hand_built_dataset_round_trips():
    ds = tiny_dataset(modalities={"image": 4, "text": 3})
    again = InteractionDataset.from_heterodata(ds.data)
    assert again.fingerprint == ds.fingerprint and again.modalities == ["image", "text"]


# ---------------------------------------------------------------------- edge type and dispatch
def test_edge_type_is_picked_or_named():
    assert heterodata_to_dataset(plain_graph()).num_users == NUM_USERS
    graph = movielens1m()
    assert convert(movielens1m).num_interactions("train") == heterodata_to_dataset(
        graph
    ).num_interactions("train")
    graph["movie", "similar", "movie"].edge_index = torch.tensor([[0], [1]])  # same type: ignored
    heterodata_to_dataset(graph)
    graph["user", "follows", "movie"].edge_index = torch.tensor([[0], [1]])
    with pytest.raises(ConfigError, match=r"pass edge_type=.*'follows'"):
        heterodata_to_dataset(graph)
    assert heterodata_to_dataset(graph, RATES).num_users == NUM_USERS
    with pytest.raises(ConfigError, match="is not an edge type"):
        heterodata_to_dataset(graph, ("user", "likes", "movie"))
    with pytest.raises(ConfigError, match="to itself"):
        heterodata_to_dataset(graph, ("movie", "similar", "movie"))
    reverse_only = HeteroData()
    reverse_only["a", "to", "b"].edge_index = torch.tensor([[0], [0]])
    reverse_only["b", "to", "a"].edge_index = torch.tensor([[0], [0]])
    with pytest.raises(ConfigError, match="cannot tell"):
        heterodata_to_dataset(reverse_only)


class _FakeDataset:
    """Stands in for a PyG dataset object: ``dataset[0]`` is the graph."""

    def __init__(self, graph):
        self.graph = graph

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.graph


@pytest.mark.parametrize(
    ("class_name", "builder", "name"),
    [
        ("MovieLens", movielens, "pyg-movielens"),
        ("MovieLens100K", movielens100k, "pyg-movielens100k"),
        ("MovieLens1M", movielens1m, "pyg-movielens1m"),
        ("AmazonBook", amazon_book, "pyg-amazon-book"),
        ("SomethingElse", plain_graph, "heterodata"),
    ],
)
def test_from_pyg_dispatches_on_the_class_name(class_name, builder, name):
    dataset = type(class_name, (_FakeDataset,), {})(builder())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = from_pyg(dataset, seed=7)
        direct = ADAPTER_OF[builder](builder(), seed=7)
    assert ds.name == name and ds.fingerprint == direct.fingerprint


def test_from_pyg_takes_a_bare_heterodata_and_refuses_other_things():
    assert from_pyg(plain_graph()).name == "heterodata"
    with pytest.raises(ConfigError, match="expected a PyG dataset or a HeteroData, got int"):
        from_pyg(3)
    with pytest.raises(ConfigError, match="got a homogeneous Data"):
        from_pyg(Data(edge_index=torch.tensor([[0], [1]])))
    with pytest.raises(DataError, match="holds no graph"):
        from_pyg(type("Empty", (), {"__len__": lambda s: 0, "__getitem__": lambda s, i: 0})())


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda g: delattr(g[RATES], "edge_index"),
            r"\('user', 'rates', 'movie'\) has no edge_index",
        ),
        (
            lambda g: setattr(g[RATES], "edge_index", g[RATES].edge_index.float()),
            "edge_index must be an integer tensor \\[2, num_edges\\], got float32",
        ),
        (
            lambda g: setattr(g[RATES], "edge_index", g[RATES].edge_index[:1]),
            r"edge_index must be .*got int64 \[1, ",
        ),
        (
            lambda g: setattr(g[RATES], "edge_index", g[RATES].edge_index.flatten()),
            r"got int64 \[\d+\]",
        ),
        (
            lambda g: g[RATES].edge_index.__setitem__((0, 3), -1),
            "edge_index holds the negative user id -1",
        ),
        (
            lambda g: g[RATES].edge_index.__setitem__((0, 3), 30),
            "edge_index holds user id 30, but node type 'user' has 30 nodes",
        ),
        (
            lambda g: g[RATES].edge_index.__setitem__((1, 3), 99),
            "edge_index holds movie id 99, but node type 'movie' has 42 nodes",
        ),
        (
            lambda g: setattr(g[RATES], "time", g[RATES].time[:-1]),
            r"attribute 'time' has shape \[\d+\], but edge_index has \d+ edges",
        ),
        (
            lambda g: setattr(
                g[RATES], "time", g[RATES].time.double().index_fill(0, torch.tensor([2]), math.nan)
            ),
            "attribute 'time': the time of edge 2 is NaN",
        ),
        (
            lambda g: g["movie"].x.__setitem__((5, 1), math.inf),
            "feature attribute 'x': row 5 contains NaN or inf",
        ),
        (lambda g: setattr(g["movie"], "x", g["movie"].x[:, 0]), r"movie.x must be a 2-D tensor"),
    ],
    ids=[
        "no-edge-index",
        "float-ids",
        "one-row",
        "flat",
        "negative-id",
        "user-id-too-large",
        "item-id-too-large",
        "time-length",
        "time-nan",
        "feature-inf",
        "feature-1d",
    ],
)
def test_malformed_graphs_are_one_line_data_errors(mutate, match):
    graph = movielens1m()
    mutate(graph)
    with pytest.raises(DataError, match=match) as caught:
        from_pyg_movielens1m(graph)
    assert "\n" not in str(caught.value)


def test_more_data_errors():
    graph = movielens100k(duplicates=0)
    graph[RATES].edge_label_index[1, 0] = 42
    with pytest.raises(DataError, match="edge_label_index holds movie id 42"):
        from_pyg_movielens100k(graph)
    graph = movielens100k(duplicates=0)
    graph[RATES].edge_label_time = torch.arange(3)
    with pytest.raises(DataError, match=r"'edge_label_time' has shape \[3\], but edge_label_index"):
        from_pyg_movielens100k(graph)
    graph = plain_graph()
    graph["product"].num_nodes = NUM_ITEMS + 2
    with pytest.raises(DataError, match="'x_image' has 42 rows, but node type 'product' has 44"):
        heterodata_to_dataset(graph, features={"image": "x_image"})
    with pytest.raises(DataError, match="feature attribute 'x_audio' does not exist"):
        heterodata_to_dataset(plain_graph(), features={"audio": "x_audio"})
    with pytest.raises(
        DataError, match=r"attribute 'category' must be 2-D \[num_nodes, dim >= 1\]"
    ):
        heterodata_to_dataset(plain_graph(), features={"kind": "category"})
    with pytest.raises(DataError, match="no interactions left after the 100-core"):
        heterodata_to_dataset(plain_graph(), k_core=100)
    small = HeteroData()
    small["user", "rates", "item"].edge_index = torch.tensor([[0, 0, 1], [0, 1, 1]])
    with pytest.raises(DataError, match="the valid split is empty"):
        heterodata_to_dataset(small)
    with pytest.raises(DataError, match=r"\('user', 'rates', 'item'\) has no edge_index"):
        only_label = HeteroData()
        only_label["user", "rates", "item"].edge_label_index = torch.tensor([[0], [0]])
        heterodata_to_dataset(only_label)
    ds = tiny_dataset()
    del ds.data["user", "interacts", "item"].test_edge_label_index
    with pytest.raises(DataError, match="has valid_edge_label_index but no test_edge_label_index"):
        InteractionDataset.from_heterodata(ds.data)
    with pytest.raises(DataError, match="has no movie.x"):
        from_pyg_movielens100k(amazon_book())


def test_bad_options_are_config_errors():
    graph = movielens1m()
    for kwargs, match in [
        ({"split": "temporal"}, "split must be one of random, chronological"),
        ({"k_core": 0}, "k_core must be an integer >= 1"),
        ({"cold_items": 1.5}, "strictly between 0 and 1"),
    ]:
        with pytest.raises(ConfigError, match=match):
            from_pyg_movielens1m(graph, **kwargs)
    with pytest.raises(ConfigError, match=r"text_dim must be an integer in \[1, 403\]"):
        from_pyg_movielens(movielens(), text_dim=404)
    ds = tiny_dataset()
    with pytest.raises(ConfigError, match="already carries mmgraph's split"):
        InteractionDataset.from_heterodata(ds.data, k_core=5)


# ---------------------------------------------------------------------- end to end
TRAIN_SETTINGS = {
    "epochs": 2,
    "seed": 0,
    "batch_size": 64,
    "embedding_dim": 8,
    "ks": [10],
    "valid_metric": "recall@10",
}


@pytest.mark.parametrize(
    ("builder", "model_name"),
    [
        (movielens, "vbpr"),
        (movielens100k, "vbpr"),
        (movielens1m, "vbpr"),
        (amazon_book, "lightgcn"),
        (plain_graph, "vbpr"),
    ],
)
def test_train_evaluate_and_recommend(builder, model_name, tmp_path):
    ds = convert(builder)
    model_cls = get_model(model_name)
    run = resolve_config(model_cls, [("test", TRAIN_SETTINGS)])
    seed_everything(0)
    model = model_cls.from_dataset(ds, **run.hparams)
    evaluator = Evaluator(ds, ks=run.train.ks)
    result = Trainer(model, ds, run, evaluator.evaluate, tmp_path, progress=False, log=None).fit()
    for split in ("valid", "test"):
        metrics = evaluator.evaluate(model, split)
        rates = {k: v for k, v in metrics.items() if "@" in k}
        assert rates and all(math.isfinite(v) and 0 <= v <= 1 for v in rates.values())
    assert len(result.history) == 2
    assert result.test and all(math.isfinite(v) for v in result.test.values())
    users = torch.arange(ds.num_users)
    _, items = model.recommend(users, k=10)
    seen = ds.user_items("train")
    for user in users.tolist():
        train_items = set(seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist())
        assert not train_items & set(items[user].tolist())
    assert int(items.min()) >= 0 and int(items.max()) < ds.num_items


def test_write_mmrec_gives_the_cli_a_folder_with_the_input_ids(tmp_path, capsys):
    """HeteroData -> dataset -> folder: loads back equal, and the CLI trains, exports and
    recommends with the input graph's node indices as raw ids."""
    ds = convert(movielens100k)
    folder = write_mmrec(ds, tmp_path / "ml100k")
    loaded = load_mmrec(folder)
    assert loaded.fingerprint == ds.fingerprint
    assert read_id_map(folder / "u_id_mapping.csv") == [
        str(i) for i in ds.data["user"].node_id.tolist()
    ]
    with pytest.raises(ConfigError, match="already holds a dataset"):
        write_mmrec(ds, folder)
    run = tmp_path / "run"
    assert main(["train", "--model", "vbpr", "--dataset", str(folder), "--epochs", "1",
                 "--set", "batch_size=64", "--out", str(run), "--quiet"]) == 0  # fmt: skip
    assert main(["export", "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "e")]) == 0
    user = int(ds.data["user"].node_id[5])  # an input node index
    capsys.readouterr()
    assert main(["recommend", "--index", str(tmp_path / "e"), "--users", str(user), "--k", "3",
                 "--raw-ids"]) == 0  # fmt: skip
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[0] for row in rows] == [str(user)] * 3
    seen = ds.user_items("train")
    seen_input_ids = {
        int(ds.data["item"].node_id[i]) for i in seen.indices[seen.indptr[5] : seen.indptr[6]]
    }
    assert not seen_input_ids & {int(row[2]) for row in rows}


def test_write_mmrec_refuses_what_a_folder_cannot_hold(tmp_path):
    ds = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 1, 2, 0, 1, 2]),
        torch.tensor([0, 1, 2, 0, 1, 2]), num_users=3, num_items=3,
    )  # fmt: skip
    with pytest.raises(DataError, match="last users have no interaction"):
        write_mmrec(ds, tmp_path / "x")
