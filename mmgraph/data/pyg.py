"""PyG ``HeteroData`` in: any user–item graph, and PyG's recommendation datasets.

:func:`heterodata_to_dataset` turns a :class:`~torch_geometric.data.HeteroData` into an
:class:`~mmgraph.data.InteractionDataset`. It reads one edge type ``(src, rel, dst)``: the
source node type is the user side, the destination the item side. What it expects:

* ``edge_index`` ``[2, E]`` integer (user, item) pairs, ids in ``[0, num_nodes)`` of their
  node type (``num_nodes`` set, or inferable by PyG from ``x``; otherwise the largest id + 1);
* optionally ``edge_label_index`` ``[2, E_label]``: PyG's MovieLens100K and AmazonBook keep
  their test edges there;
* optionally a time per edge: ``time`` ``[E]`` (``time_attr``) for the ``edge_index`` edges and
  ``edge_label_time`` ``[E_label]`` (PyG's name in link loaders) for the label edges;
* item features as 2-D tensors ``[num_nodes, dim]`` on the destination node type.

The edges of ``edge_index`` and ``edge_label_index`` are **merged** and re-split with the
MMRec protocol, the same code as ``mmgraph preprocess`` (:mod:`mmgraph.data.preprocess`):
repeated (user, item) pairs are dropped keeping the earliest (by time when there is one; label
edges without a time count as later than every timed edge, then by position), an iterative
``k``-core, users and items renumbered ``0..N-1`` in order of first appearance (nodes without
an edge are dropped), MMRec's per-user valid/test split, optionally an item cold-start split.
PyG's own train/test division is therefore not kept; results follow the protocol of the rest
of mmgraph. A graph whose edge type already carries mmgraph's split
(``valid_edge_label_index`` and ``test_edge_label_index``, as ``InteractionDataset.data``
has) is taken as it is, so ``InteractionDataset.from_heterodata(ds.data)`` rebuilds ``ds``
exactly (same fingerprint).

The result keeps the way back to the input graph: ``dataset.data['user'].node_id`` ``[U]`` and
``dataset.data['item'].node_id`` ``[I]`` (int64) hold the input node index of each new user /
item (the identity for an already split graph).

The adapters :func:`from_pyg_movielens`, :func:`from_pyg_movielens100k`,
:func:`from_pyg_movielens1m` and :func:`from_pyg_amazon_book` know the layout of PyG's classes
(PyG 2.8.1) and name their item features; :func:`from_pyg` dispatches on the class name.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.data import BaseData

from mmgraph.data.cold_start import check_fraction, cold_item_labels
from mmgraph.data.dataset import FEATURE_PREFIX, ITEM, SPLITS, USER, InteractionDataset
from mmgraph.data.mmrec import _cold_rows
from mmgraph.data.preprocess import (
    SPLIT_METHODS,
    _first_appearance,
    _first_of_pairs,
    k_core_mask,
    split_labels,
)
from mmgraph.errors import ConfigError, DataError, DataWarning

EdgeType = tuple[str, str, str]

TRAIN_KEY = "edge_index"
LABEL_KEY = "edge_label_index"
#: attributes of an edge type that already carries mmgraph's split.
SPLIT_KEYS = ("valid_edge_label_index", "test_edge_label_index")

MOVIELENS_EDGE: EdgeType = ("user", "rates", "movie")
AMAZON_BOOK_EDGE: EdgeType = ("user", "rates", "book")


# ---------------------------------------------------------------------- main entry
def heterodata_to_dataset(
    data: HeteroData,
    edge_type: tuple[str, str, str] | None = None,
    *,
    features: Mapping[str, str] | None = None,
    time_attr: str = "time",
    split: str = "random",
    seed: int = 2024,
    k_core: int = 1,
    cold_items: float | None = None,
    name: str = "heterodata",
) -> InteractionDataset:
    """An :class:`InteractionDataset` from one user→item edge type of a ``HeteroData``.

    See the module docstring for the layout read and the MMRec split applied.

    Args:
        data: the graph (a PyG dataset object is accepted too: its ``dataset[0]``).
        edge_type: ``(user type, relation, item type)``. ``None``: the only edge type between
            two different node types, or of two such types that are reverses of each other
            (``('user', 'rates', 'movie')`` / ``('movie', 'rated_by', 'user')``), the one whose
            source type is ``user``.
        features: modality name -> attribute name on the item node type (``[num_nodes, dim]``).
            ``None``: every 2-D floating attribute with one row per item node; ``x_<name>``
            becomes modality ``<name>``, any other attribute (PyG's ``x``) keeps its name.
            ``{}``: no features.
        time_attr: the edge attribute holding one time per ``edge_index`` edge (label edges:
            ``edge_label_<time_attr>``); used to keep the earliest of repeated pairs and by the
            chronological split.
        split: ``"random"`` (MMRec's per-user rule, seeded) or ``"chronological"`` (each user's
            latest interactions go to valid/test; needs a time for every edge).
        seed: seed of the random split and of the cold items.
        k_core: minimum interactions per user and per item (1 keeps everything).
        cold_items: if given, the share of the items (in (0, 1)) whose rows all move to valid or
            test (item cold start, :func:`~mmgraph.data.cold_start.cold_item_labels`).
        name: the dataset's name.

    Returns:
        The dataset; ``data['user'].node_id`` ``[U]`` and ``data['item'].node_id`` ``[I]`` map
        its ids back to the input node indices, and feature rows follow the new item ids.

    Raises:
        ConfigError: an invalid option, an unknown or ambiguous edge type, or a chronological
            split without a time for every edge.
        DataError: malformed edges, times or features, nothing left after the ``k``-core, or
            an empty valid or test split.
    """
    graph = _as_heterodata(data, "heterodata_to_dataset")
    _check_options(split, k_core, cold_items)
    edge_type = pick_edge_type(graph, edge_type)
    store = graph[edge_type]
    if TRAIN_KEY not in store:
        raise DataError(f"edge type {edge_type} has no {TRAIN_KEY}")
    present = [key for key in SPLIT_KEYS if key in store]
    if present:
        if len(present) == 1:
            missing = next(key for key in SPLIT_KEYS if key not in store)
            raise DataError(f"edge type {edge_type} has {present[0]} but no {missing}")
        if split != "random" or k_core != 1 or cold_items is not None:
            raise ConfigError(
                f"edge type {edge_type} already carries mmgraph's split ({', '.join(SPLIT_KEYS)}),"
                " which is used as it is: leave split, k_core and cold_items at their defaults"
            )
        return _from_split_graph(graph, edge_type, features, name)
    return _from_edges(graph, edge_type, features, time_attr, split, seed, k_core, cold_items, name)


def pick_edge_type(data: HeteroData, edge_type: tuple[str, str, str] | None = None) -> EdgeType:
    """The user→item edge type to read (see :func:`heterodata_to_dataset`).

    Raises:
        ConfigError: ``edge_type`` is not in the graph or joins a node type to itself, or none
            was given and the graph has no unambiguous candidate.
    """
    if edge_type is not None:
        chosen = tuple(edge_type)
        if len(chosen) != 3 or chosen not in data.edge_types:
            raise ConfigError(
                f"edge_type {edge_type!r} is not an edge type of the graph "
                f"(it has {data.edge_types})"
            )
        if chosen[0] == chosen[2]:
            raise ConfigError(
                f"edge_type {chosen} joins node type {chosen[0]!r} to itself; the user and item "
                "sides must be different node types"
            )
        return chosen  # type: ignore[return-value]
    candidates = [et for et in data.edge_types if et[0] != et[2]]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) == 2:
        first, second = candidates
        if first[0] == second[2] and first[2] == second[0]:
            from_users = [et for et in candidates if et[0] == USER]
            if from_users:
                return from_users[0]
    raise ConfigError(
        "cannot tell which edge type holds the (user, item) interactions; pass edge_type= "
        f"(candidates between two different node types: {candidates or 'none'})"
    )


# ---------------------------------------------------------------------- the two paths
def _from_split_graph(
    data: HeteroData,
    edge_type: EdgeType,
    features: Mapping[str, str] | None,
    name: str,
) -> InteractionDataset:
    """A graph with mmgraph's split (train ``edge_index``, ``valid_``/``test_edge_label_index``),
    taken as it is: same edge order, no dedupe or re-indexing."""
    store = data[edge_type]
    keys = (TRAIN_KEY, *SPLIT_KEYS)
    parts = [_read_index(store, edge_type, key) for key in keys]
    num_users, num_items = _check_ids(data, edge_type, dict(zip(keys, parts, strict=True)))
    item_features = _item_features(data, edge_type[2], num_items, features)
    labels = torch.cat([torch.full((p.size(1),), i, dtype=torch.long) for i, p in enumerate(parts)])
    edges = torch.cat(parts, dim=1)
    dataset = InteractionDataset.from_interactions(
        edges[0],
        edges[1],
        labels,
        item_features,
        num_users=num_users,
        num_items=num_items,
        name=name,
    )
    _attach_node_ids(dataset, torch.arange(num_users), torch.arange(num_items))
    return dataset


def _from_edges(
    data: HeteroData,
    edge_type: EdgeType,
    features: Mapping[str, str] | None,
    time_attr: str,
    split: str,
    seed: int,
    k_core: int,
    cold_items: float | None,
    name: str,
) -> InteractionDataset:
    """Merge ``edge_index`` and ``edge_label_index``, then the MMRec pipeline of
    :func:`mmgraph.data.preprocess.preprocess` (see the module docstring)."""
    store = data[edge_type]
    parts = {TRAIN_KEY: _read_index(store, edge_type, TRAIN_KEY)}
    if LABEL_KEY in store:
        parts[LABEL_KEY] = _read_index(store, edge_type, LABEL_KEY)
    _, num_items = _check_ids(data, edge_type, parts)
    item_features = _item_features(data, edge_type[2], num_items, features)
    times, complete = _edge_times(store, edge_type, time_attr, parts)
    if split == "chronological" and not complete:
        raise ConfigError(_no_time_message(edge_type, time_attr, parts, times is not None))

    edges = torch.cat(list(parts.values()), dim=1).numpy()
    users, items = edges[0], edges[1]
    keep = _first_of_pairs(users, items, times)
    if keep.size < users.size:
        warnings.warn(
            f"edge type {edge_type}: dropped {users.size - keep.size} repeated (user, item) "
            "edge(s), kept the earliest of each pair",
            DataWarning,
            stacklevel=3,
        )
    keep = keep[k_core_mask(users[keep], items[keep], k_core)]
    if not keep.size:
        raise DataError(
            f"edge type {edge_type}: no interactions left after the {k_core}-core filter "
            f"({users.size} edges); lower k_core"
        )
    user_ids, new_users = _first_appearance(users[keep])
    item_ids, new_items = _first_appearance(items[keep])
    kept_times = times[keep] if times is not None else None
    labels = split_labels(new_users, kept_times if complete else None, method=split, seed=seed)
    if cold_items is not None:
        labels = cold_item_labels(new_users, new_items, labels, len(item_ids), cold_items, seed)[0]
    rows = _drop_cold_users(edge_type, new_users, labels)

    # Row order of a preprocessed .inter file: by user, then split, then time, then input order.
    sort_times = kept_times if kept_times is not None else np.zeros(keep.size)
    order = np.lexsort((keep, sort_times, labels, new_users))
    order = order[rows[order]]
    _require_splits(edge_type, labels[order])
    item_index = torch.as_tensor(np.asarray(item_ids, dtype=np.int64))
    dataset = InteractionDataset.from_interactions(
        torch.from_numpy(new_users[order]),
        torch.from_numpy(new_items[order]),
        torch.from_numpy(labels[order]),
        {modality: feat[item_index] for modality, feat in item_features.items()},
        num_users=len(user_ids),
        num_items=len(item_ids),
        name=name,
    )
    _attach_node_ids(dataset, torch.as_tensor(np.asarray(user_ids, dtype=np.int64)), item_index)
    return dataset


# ---------------------------------------------------------------------- validation
def _as_heterodata(data: Any, what: str) -> HeteroData:
    """``data`` itself if it is a ``HeteroData``, else ``data[0]`` of a PyG dataset object."""
    if isinstance(data, HeteroData):
        return data
    if isinstance(data, BaseData):
        raise ConfigError(
            f"{what}: expected a HeteroData with user and item node types, got a homogeneous "
            f"{type(data).__name__}"
        )
    indexable = hasattr(data, "__getitem__") and hasattr(data, "__len__")
    if indexable and not isinstance(data, (str, bytes, Mapping, Tensor)):
        if len(data) == 0:
            raise DataError(f"{what}: the dataset {type(data).__name__} holds no graph")
        graph = data[0]
        if isinstance(graph, HeteroData):
            return graph
        raise DataError(
            f"{what}: {type(data).__name__}[0] is a {type(graph).__name__}, not a HeteroData"
        )
    raise ConfigError(f"{what}: expected a PyG dataset or a HeteroData, got {type(data).__name__}")


def _check_options(split: str, k_core: int, cold_items: float | None) -> None:
    if split not in SPLIT_METHODS:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_METHODS)}, got {split!r}")
    if not isinstance(k_core, int) or isinstance(k_core, bool) or k_core < 1:
        raise ConfigError(f"k_core must be an integer >= 1, got {k_core!r}")
    if cold_items is not None:
        check_fraction(cold_items)


def _read_index(store: Any, edge_type: EdgeType, key: str) -> Tensor:
    """``[2, E]`` int64 copy-free CPU view of ``store[key]``, shape and dtype checked."""
    value = store[key]
    if not isinstance(value, Tensor):
        raise DataError(
            f"edge type {edge_type}: {key} must be a tensor [2, num_edges], "
            f"got {type(value).__name__}"
        )
    value = value.as_subclass(Tensor).detach().cpu()  # a plain tensor, not PyG's EdgeIndex
    integer = not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    if value.dim() != 2 or value.size(0) != 2 or not integer:
        raise DataError(
            f"edge type {edge_type}: {key} must be an integer tensor [2, num_edges], got "
            f"{str(value.dtype).removeprefix('torch.')} {list(value.shape)}"
        )
    return value.long()


def _check_ids(
    data: HeteroData, edge_type: EdgeType, parts: Mapping[str, Tensor]
) -> tuple[int, int]:
    """``(num user nodes, num item nodes)``; every id of ``parts`` (``{key: [2, E]}``) must be
    in ``[0, num_nodes)`` of its node type."""
    sizes = []
    for row, node_type in ((0, edge_type[0]), (1, edge_type[2])):
        num_nodes, inferred = _num_nodes(data, node_type, [p[row] for p in parts.values()])
        for key, index in parts.items():
            if not index.size(1):
                continue
            low, high = int(index[row].min()), int(index[row].max())
            if low < 0:
                raise DataError(
                    f"edge type {edge_type}: {key} holds the negative {node_type} id {low}"
                )
            if high >= num_nodes:
                how = " (inferred; set num_nodes)" if inferred else ""
                raise DataError(
                    f"edge type {edge_type}: {key} holds {node_type} id {high}, but node type "
                    f"{node_type!r} has {num_nodes} nodes{how}"
                )
        sizes.append(num_nodes)
    return sizes[0], sizes[1]


def _num_nodes(data: HeteroData, node_type: str, ids: list[Tensor]) -> tuple[int, bool]:
    """``(number of nodes, whether it was inferred from the largest id)``."""
    if node_type in data.node_types:  # data[node_type] would create a missing store
        with warnings.catch_warnings():  # PyG warns when it cannot infer num_nodes
            warnings.simplefilter("ignore")
            num_nodes = data[node_type].num_nodes
        if num_nodes is not None:
            return int(num_nodes), False
    return max((int(i.max()) + 1 for i in ids if i.numel()), default=0), True


def _edge_times(
    store: Any, edge_type: EdgeType, time_attr: str, parts: Mapping[str, Tensor]
) -> tuple[np.ndarray | None, bool]:
    """``(order keys [E_all] float64 or None, whether every edge has its own time)``.

    ``E_all`` counts the edges of ``parts`` in order. Label edges without a time get ``+inf``
    (later than every timed edge); without ``time_attr`` there are no keys at all.
    """
    train = _read_times(store, edge_type, time_attr, parts[TRAIN_KEY].size(1), TRAIN_KEY)
    if train is None:
        return None, False
    if LABEL_KEY not in parts:
        return train, True
    num_label = parts[LABEL_KEY].size(1)
    label = _read_times(store, edge_type, f"edge_label_{time_attr}", num_label, LABEL_KEY)
    if label is None:
        return np.concatenate([train, np.full(num_label, np.inf)]), False
    return np.concatenate([train, label]), True


def _read_times(
    store: Any, edge_type: EdgeType, attr: str, num_edges: int, index_key: str
) -> np.ndarray | None:
    """``[num_edges]`` float64 times of ``store[attr]``, or ``None`` when it is absent."""
    if attr not in store:
        return None
    value = store[attr]
    where = f"edge type {edge_type}: attribute {attr!r}"
    if not isinstance(value, Tensor) or value.is_complex() or value.dtype == torch.bool:
        raise DataError(f"{where} must be a numeric tensor [{num_edges}] (one time per edge)")
    value = value.detach().cpu()
    if value.dim() == 2 and value.size(1) == 1:
        value = value.flatten()
    if value.dim() != 1 or value.numel() != num_edges:
        raise DataError(
            f"{where} has shape {list(value.shape)}, but {index_key} has {num_edges} edges; "
            "expected one time per edge"
        )
    times = value.double().numpy()
    if not np.isfinite(times).all():
        raise DataError(
            f"{where}: the time of edge {int(np.flatnonzero(~np.isfinite(times))[0])} "
            "is NaN or infinite"
        )
    return times


def _no_time_message(
    edge_type: EdgeType, time_attr: str, parts: Mapping[str, Tensor], has_train_times: bool
) -> str:
    if not has_train_times:
        return (
            f"the chronological split needs the edge attribute {time_attr!r} (time_attr) on "
            f"edge type {edge_type}; it has none, use split='random'"
        )
    return (
        f"the chronological split needs a time for every edge, but edge type {edge_type} has "
        f"{time_attr!r} only for its {TRAIN_KEY} edges, not for its {parts[LABEL_KEY].size(1)} "
        f"{LABEL_KEY} edges (PyG keeps none for them); add 'edge_label_{time_attr}' or use "
        "split='random'"
    )


def _item_features(
    data: HeteroData, item_type: str, num_items: int, features: Mapping[str, str] | None
) -> dict[str, Tensor]:
    """``{modality: [num_items, dim] float32}`` of the item node type, in input node order."""
    if item_type not in data.node_types:
        if features:
            raise DataError(f"node type {item_type!r} does not exist, so it has no features")
        return {}
    store = data[item_type]
    if features is None:
        features = _default_features(store, item_type, num_items)
    tensors = {}
    for modality, attr in features.items():
        if not isinstance(modality, str) or not modality:
            raise ConfigError(
                f"features: modality names must be non-empty strings, got {modality!r}"
            )
        tensors[modality] = _read_feature(store, item_type, attr, num_items)
    return tensors


def _default_features(store: Any, item_type: str, num_items: int) -> dict[str, str]:
    """``{modality: attribute}`` of every 2-D floating ``[num_items, dim]`` attribute."""
    found: dict[str, str] = {}
    for key, value in store.items():
        if not (
            isinstance(value, Tensor)
            and value.dim() == 2
            and value.is_floating_point()
            and value.size(0) == num_items
        ):
            continue
        prefixed = key.startswith(FEATURE_PREFIX) and len(key) > len(FEATURE_PREFIX)
        modality = key[len(FEATURE_PREFIX) :] if prefixed else key
        if modality in found:
            raise ConfigError(
                f"node type {item_type!r}: attributes {found[modality]!r} and {key!r} would both "
                f"be modality {modality!r}; pass features={{modality: attribute}}"
            )
        found[modality] = key
    return found


def _read_feature(store: Any, item_type: str, attr: str, num_items: int) -> Tensor:
    """``[num_items, dim]`` float32 ``store[attr]``, checked."""
    where = f"node type {item_type!r}: feature attribute {attr!r}"
    if attr not in store:
        raise DataError(f"{where} does not exist (it has {', '.join(store.keys()) or 'none'})")
    value = store[attr]
    if not isinstance(value, Tensor) or value.is_complex() or value.dtype == torch.bool:
        raise DataError(f"{where} must be a numeric tensor [num_nodes, dim]")
    value = value.detach().cpu()
    if value.dim() != 2 or value.size(1) == 0:
        raise DataError(f"{where} must be 2-D [num_nodes, dim >= 1], got {list(value.shape)}")
    if value.size(0) != num_items:
        raise DataError(
            f"{where} has {value.size(0)} rows, but node type {item_type!r} has {num_items} nodes"
        )
    value = value.float()
    finite = torch.isfinite(value).all(dim=1)
    if not finite.all():
        row = int(torch.nonzero(~finite)[0])
        raise DataError(f"{where}: row {row} contains NaN or inf")
    return value


# ---------------------------------------------------------------------- after the split
def _drop_cold_users(edge_type: EdgeType, users: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[n]`` mask of the rows to keep: valid/test rows of users without a training row go
    (only possible with cold items), as the MMRec loader drops them."""
    cold = _cold_rows(users, labels, int(users.max(initial=-1)) + 1)
    if cold.any():
        warnings.warn(
            f"edge type {edge_type}: dropped {int(cold.sum())} valid/test interaction(s) of "
            f"{np.unique(users[cold]).size} user(s) left with no training interaction",
            DataWarning,
            stacklevel=4,
        )
    return ~cold


def _require_splits(edge_type: EdgeType, labels: np.ndarray) -> None:
    for label, split in enumerate(SPLITS):
        if not (labels == label).any():
            raise DataError(
                f"edge type {edge_type}: the {split} split is empty (MMRec's split holds out "
                "rows only of users with 3 or more interactions)"
            )


def _attach_node_ids(dataset: InteractionDataset, users: Tensor, items: Tensor) -> None:
    """Store the input node index of every user ``[U]`` and item ``[I]`` as ``node_id``."""
    dataset.data[USER].node_id = users.long()
    dataset.data[ITEM].node_id = items.long()


# ---------------------------------------------------------------------- PyG's datasets
def from_pyg_movielens(data: Any, *, text_dim: int = 384, **kwargs: Any) -> InteractionDataset:
    """PyG's ``MovieLens`` (or its ``HeteroData``): edge type ``('user', 'rates', 'movie')``.

    ``movie.x`` ``[num_movies, text_dim + num_genres]`` is the sentence-transformer embedding of
    the title followed by the genre one-hots; it becomes modalities ``text`` (the first
    ``text_dim`` columns) and ``genre`` (the rest). ``kwargs`` go to
    :func:`heterodata_to_dataset` (``split``, ``seed``, ``k_core``, ...; they may override
    ``features`` and ``name``, which default to these modalities and ``pyg-movielens``).
    """
    graph = _as_heterodata(data, "from_pyg_movielens")
    x = _movie_x(graph, "from_pyg_movielens")
    if isinstance(text_dim, bool) or not isinstance(text_dim, int) or not 0 < text_dim < x.size(1):
        raise ConfigError(
            f"text_dim must be an integer in [1, {x.size(1) - 1}] (movie.x has {x.size(1)} "
            f"columns: title embedding, then genres), got {text_dim!r}"
        )
    view = _with_item_features(graph, "movie", {"text": x[:, :text_dim], "genre": x[:, text_dim:]})
    defaults = {"features": {"text": "x_text", "genre": "x_genre"}, "name": "pyg-movielens"}
    return heterodata_to_dataset(view, MOVIELENS_EDGE, **{**defaults, **kwargs})


def from_pyg_movielens100k(data: Any, **kwargs: Any) -> InteractionDataset:
    """PyG's ``MovieLens100K`` (or its ``HeteroData``): ``('user', 'rates', 'movie')``, the
    ``edge_index`` (u1.base) and ``edge_label_index`` (u1.test) edges merged and re-split;
    ``movie.x`` (genre one-hots) becomes modality ``genre``. ``user.x`` is not used."""
    graph = _as_heterodata(data, "from_pyg_movielens100k")
    _movie_x(graph, "from_pyg_movielens100k")
    defaults = {"features": {"genre": "x"}, "name": "pyg-movielens100k"}
    return heterodata_to_dataset(graph, MOVIELENS_EDGE, **{**defaults, **kwargs})


def from_pyg_movielens1m(data: Any, **kwargs: Any) -> InteractionDataset:
    """PyG's ``MovieLens1M`` (or its ``HeteroData``): ``('user', 'rates', 'movie')``;
    ``movie.x`` (genre one-hots) becomes modality ``genre``. ``user.x`` is not used."""
    graph = _as_heterodata(data, "from_pyg_movielens1m")
    _movie_x(graph, "from_pyg_movielens1m")
    defaults = {"features": {"genre": "x"}, "name": "pyg-movielens1m"}
    return heterodata_to_dataset(graph, MOVIELENS_EDGE, **{**defaults, **kwargs})


def from_pyg_amazon_book(data: Any, **kwargs: Any) -> InteractionDataset:
    """PyG's ``AmazonBook`` (or its ``HeteroData``): ``('user', 'rates', 'book')``, the
    ``edge_index`` and ``edge_label_index`` edges merged and re-split; no features."""
    graph = _as_heterodata(data, "from_pyg_amazon_book")
    defaults = {"features": {}, "name": "pyg-amazon-book"}
    return heterodata_to_dataset(graph, AMAZON_BOOK_EDGE, **{**defaults, **kwargs})


#: PyG dataset class name -> adapter.
ADAPTERS: dict[str, Callable[..., InteractionDataset]] = {
    "MovieLens": from_pyg_movielens,
    "MovieLens100K": from_pyg_movielens100k,
    "MovieLens1M": from_pyg_movielens1m,
    "AmazonBook": from_pyg_amazon_book,
}


def from_pyg(dataset: Any, **kwargs: Any) -> InteractionDataset:
    """Any PyG dataset object or ``HeteroData``: the adapter of its class (:data:`ADAPTERS`,
    by class name), else :func:`heterodata_to_dataset` on it (or on ``dataset[0]``)."""
    adapter = ADAPTERS.get(type(dataset).__name__)
    if adapter is not None:
        return adapter(dataset, **kwargs)
    return heterodata_to_dataset(_as_heterodata(dataset, "from_pyg"), **kwargs)


def _movie_x(graph: HeteroData, what: str) -> Tensor:
    """``movie.x`` ``[num_movies, dim]``, or a DataError naming what is missing."""
    if "movie" not in graph.node_types or "x" not in graph["movie"]:
        raise DataError(f"{what}: the graph has no movie.x (node type 'movie', attribute 'x')")
    x = graph["movie"].x
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise DataError(f"{what}: movie.x must be a 2-D tensor [num_movies, dim]")
    return x


def _with_item_features(
    graph: HeteroData, item_type: str, tensors: Mapping[str, Tensor]
) -> HeteroData:
    """A shallow copy of ``graph`` (tensors shared) whose ``item_type`` store also holds
    ``x_<modality>`` for each of ``tensors``; ``graph`` itself is not changed."""
    view = copy.copy(graph)
    store = view[item_type]
    num_nodes = graph[item_type].num_nodes
    if num_nodes is not None:
        store.num_nodes = num_nodes
    for modality, tensor in tensors.items():
        store[FEATURE_PREFIX + modality] = tensor
    return view
