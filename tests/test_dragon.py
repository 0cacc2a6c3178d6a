"""DRAGON against a dense recomputation of its formulas, and its training on real users."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data import InteractionDataset, load_dataset
from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError, DataError
from mmgraph.eval import Evaluator
from mmgraph.models import DRAGON, Recommender
from mmgraph.train import Trainer, resolve_config, seed_everything
from tests.conftest import requires_shared, shared_data_dir
from tests.helpers import tiny_dataset
from tests.test_graph_and_conv import dense_lightgcn_adjacency
from tests.test_mentor import user_slice

MODALITIES = {
    1: {"image": 8},
    2: {"image": 8, "text": 6},
    3: {"image": 8, "text": 6, "audio": 5},
}
BATCH = Batch(torch.tensor([0, 1, 1, 7]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))


@pytest.fixture(autouse=True)
def graph_cache(tmp_path, monkeypatch):
    """Keep the kNN and co-occurrence disk caches of these tests out of the user's home."""
    monkeypatch.setenv("MMGRAPH_CACHE", str(tmp_path / "cache"))


def build(num_modalities=2, data=None, **hparams):
    torch.manual_seed(0)
    data = data or tiny_dataset(modalities=MODALITIES[num_modalities])
    hparams = {"embedding_dim": 4, "user_graph_k": 3, "knn_k": 3, **hparams}
    return data, DRAGON.from_dataset(data, **hparams).double()


def dense_user_weights(data, k, aggregation):
    """``[U, U]`` s_uv: top-k users by shared training items (ties: smaller id), then softmax
    of the counts (or 1/|N(u)|) over them."""
    num_users = data.num_users
    a = torch.zeros(num_users, data.num_items, dtype=torch.float64)
    edges = data.edge_index()
    a[edges[0], edges[1]] = 1.0
    shared = a @ a.T
    s = torch.zeros(num_users, num_users, dtype=torch.float64)
    for u in range(num_users):
        others = [v for v in range(num_users) if v != u and shared[u, v] > 0]
        others = sorted(others, key=lambda v: (-shared[u, v].item(), v))[:k]
        if not others:
            continue
        counts = shared[u, others]
        if aggregation == "softmax":
            s[u, others] = counts.exp() / counts.exp().sum()
        else:
            s[u, others] = 1.0 / len(others)
    return s


def dense_item_graph(data, k, weights):
    """``[I, I]`` S = sum_m alpha_m D^-1/2 A_m D^-1/2, A_m the cosine top-k (self included)."""
    num_items = data.num_items
    total = torch.zeros(num_items, num_items, dtype=torch.float64)
    for modality in data.modalities:
        x = F.normalize(data.features(modality).double(), dim=1)
        a = torch.zeros(num_items, num_items, dtype=torch.float64)
        for i in range(num_items):
            sim = (x @ x[i]).tolist()
            sim[i] = float("inf")  # an item is always among its own neighbours
            for j in sorted(range(num_items), key=lambda j: -sim[j])[:k]:
                a[i, j] = 1.0
        r = a.sum(1)
        total += weights[modality] * a / (r[:, None].sqrt() * r[None, :].sqrt())
    return total


def default_weights(modalities):
    if set(modalities) == {"image", "text"}:
        return {"image": 0.1, "text": 0.9}
    return {m: 1.0 / len(modalities) for m in modalities}


def dense_forward(data, model, aggregation="softmax", layers=1, weights=None):
    """Users and items from the paper's formulas with dense matrices."""
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items).double()
    user_views, item_views = [], []
    for m, (branch, modality) in enumerate(zip(model.modal_inputs, data.modalities, strict=True)):
        x_m = data.features(modality).double()
        hidden = F.leaky_relu(branch.projector.hidden(x_m))
        x0 = F.normalize(torch.cat([branch.preference, branch.projector.out(hidden)]), dim=1)
        out = x0 + adj @ x0 + adj @ (adj @ x0)
        w_m = 1.0 if model.fusion is None else model.fusion.weight[:, m : m + 1]
        user_views.append(w_m * out[: data.num_users])
        item_views.append(out[data.num_users :])
    h_users, h_items = torch.cat(user_views, dim=1), torch.cat(item_views, dim=1)
    s_items = dense_item_graph(data, 3, weights or default_weights(data.modalities))
    propagated = h_items
    for _ in range(layers):
        propagated = s_items @ propagated
    s_users = dense_user_weights(data, 3, aggregation)
    return h_users + s_users @ h_users, h_items + propagated


@pytest.mark.parametrize(
    ("num_modalities", "aggregation", "layers", "weights"),
    [
        (1, "softmax", 1, None),
        (2, "softmax", 1, None),
        (3, "softmax", 1, None),
        (2, "mean", 2, None),
        (3, "mean", 1, {"image": 0.5, "text": 0.2, "audio": 0.3}),
    ],
)
def test_forward_and_loss_terms_equal_the_dense_formulas(
    num_modalities, aggregation, layers, weights
):
    data, model = build(
        num_modalities,
        reg_weight=0.3,
        user_aggregation=aggregation,
        item_graph_layers=layers,
        item_graph_weights=weights,
    )
    users, items = model()
    width = 4 * num_modalities  # the modality views side by side
    assert users.shape == (30, width) and items.shape == (20, width)
    expected_users, expected_items = dense_forward(data, model, aggregation, layers, weights)
    # float64 model; its graphs' weights were computed in float32 before .double()
    assert torch.allclose(users, expected_users, rtol=0, atol=1e-6)
    assert torch.allclose(items, expected_items, rtol=0, atol=1e-6)

    terms = model.loss(BATCH)
    assert set(terms) == {"loss_bpr", "loss_reg"}
    u = expected_users[BATCH.users]
    pos = (u * expected_items[BATCH.pos_items]).sum(1)
    neg = (u * expected_items[BATCH.neg_items]).sum(1)
    bpr = sum(-torch.log(torch.sigmoid(p - n)) for p, n in zip(pos, neg)) / len(pos)
    assert terms["loss_bpr"].item() == pytest.approx(bpr.item(), rel=1e-6)
    reg = sum((b.preference[BATCH.users] ** 2).mean() for b in model.modal_inputs)
    if num_modalities > 1:
        reg = reg + (model.fusion.weight**2).mean()
    else:
        assert model.fusion is None  # one modality: no user weights
    assert terms["loss_reg"].item() == pytest.approx(0.3 * reg.item(), rel=1e-9)


def test_user_weights_start_as_a_row_softmax_and_the_graphs_are_the_data_layers():
    _, model = build(2)
    w = model.fusion.weight
    assert w.shape == (30, 2)
    assert torch.allclose(w.sum(1), torch.ones(30, dtype=w.dtype)) and torch.all(w > 0)
    assert int(model.user_graph.weight.crow_indices().diff().max()) == 3
    # both data hyper-parameters reach the data layer: more neighbours, more edges
    _, wider = build(2, user_graph_k=6, knn_k=5)
    assert wider.user_graph.weight._nnz() > model.user_graph.weight._nnz()
    assert wider.item_graph._nnz() > model.item_graph._nnz()
    assert wider.hparams["user_graph_k"] == 6 and wider.hparams["knn_k"] == 5
    assert DRAGON.hyperparameters()["user_graph_k"] == 40  # MMRec's k
    assert DRAGON.hyperparameters()["knn_k"] == 10


def test_graphs_are_frozen_and_users_without_co_occurring_users_keep_their_views():
    # user 3 alone has item 4; users 0-2 share items 0-3
    users = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0, 1, 2, 3])
    items = torch.tensor([0, 1, 1, 2, 2, 3, 4, 3, 0, 1, 3])
    split = torch.tensor([0] * 7 + [1, 1, 2, 2])
    gen = torch.Generator().manual_seed(0)
    features = {"image": torch.randn(5, 3, generator=gen), "text": torch.randn(5, 2, generator=gen)}
    data = InteractionDataset.from_interactions(users, items, split, features)
    _, model = build(data=data, user_graph_k=2, knn_k=2)
    final_users, final_items = model()
    h_users, h_items = model.concatenate(*model.modality_outputs())
    assert torch.equal(final_users[3], h_users[3])
    assert not torch.allclose(final_users[:3], h_users[:3])
    assert not torch.allclose(final_items, h_items)
    # DRAGON freezes both homogeneous graphs: they are buffers, not learned
    assert not any("graph" in name for name, _ in model.named_parameters())


def test_every_parameter_gets_a_gradient():
    for num_modalities in (1, 3):
        _, model = build(num_modalities)
        sum(model.loss(BATCH).values()).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, num_modalities


def test_save_load_round_trip_and_id_only_data_is_refused(tmp_path):
    with pytest.raises(DataError, match="'dragon' needs item modality features"):
        DRAGON.from_dataset(tiny_dataset())
    data = tiny_dataset(modalities=MODALITIES[2])
    model = DRAGON.from_dataset(data, embedding_dim=4, user_graph_k=3, knn_k=3)
    model.save(tmp_path / "model.pt")
    loaded = Recommender.load(tmp_path / "model.pt", data)
    assert isinstance(loaded, DRAGON) and loaded.hparams["knn_k"] == 3
    for a, b in zip(model(), loaded(), strict=True):
        assert torch.equal(a, b)
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert not any("features" in key or "graph" in key or key == "adj" for key in state)


def test_bad_hyperparameters_are_refused():
    data = tiny_dataset(modalities=MODALITIES[2])
    with pytest.raises(ConfigError, match="user_aggregation"):
        DRAGON.from_dataset(data, user_aggregation="max")
    with pytest.raises(ConfigError, match="user_graph_k"):
        DRAGON.from_dataset(data, user_graph_k=0)


@pytest.fixture(scope="module")
def tiktok_slice():
    with pytest.warns(UserWarning):  # the loader reports the cold users it drops
        full = load_dataset(shared_data_dir() / "tiktok")
    return user_slice(full, 0, 3000)  # 3000 users, ~43k training interactions, image + audio


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    settings.update(ks=[20], valid_metric="recall@20")
    run = resolve_config(DRAGON, [("test", settings)])
    seed_everything(0)
    model = DRAGON.from_dataset(tiktok_slice, **run.hparams)
    evaluator = Evaluator(tiktok_slice, ks=[20])
    untrained = evaluator.evaluate(model, "valid")["recall@20"]
    result = Trainer(model, tiktok_slice, run, evaluator.evaluate, progress=False, log=None).fit()
    assert result.valid["recall@20"] > untrained + 0.005
