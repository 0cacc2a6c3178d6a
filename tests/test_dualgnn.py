"""DualGNN against a dense recomputation of its formulas, and its training on real users."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data import InteractionDataset, load_dataset
from mmgraph.data.sampling import Batch
from mmgraph.errors import DataError
from mmgraph.eval import Evaluator
from mmgraph.models import DualGNN, Recommender
from mmgraph.nn import UserGraphAggregation, cooccurrence_weights
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
    """Keep the co-occurrence disk cache of these tests out of the user's home."""
    monkeypatch.setenv("MMGRAPH_CACHE", str(tmp_path / "cache"))


def build(num_modalities=2, data=None, **hparams):
    torch.manual_seed(0)
    data = data or tiny_dataset(modalities=MODALITIES[num_modalities])
    hparams = {"embedding_dim": 4, "user_graph_k": 3, **hparams}
    return data, DualGNN.from_dataset(data, **hparams).double()


def dense_user_weights(data, k, aggregation):
    """``[U, U]`` s_uv: top-k users by shared training items (ties: smaller id), then softmax
    of the counts (or 1/|N(u)|) over them, from a dense count matrix and plain loops."""
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


def dense_forward(data, model, k=3, aggregation="softmax"):
    """Users and items from the paper's formulas with dense matrices."""
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items).double()
    user_views, items = [], 0
    for branch, modality in zip(model.modal_inputs, data.modalities, strict=True):
        x_m = data.features(modality).double()
        hidden = F.leaky_relu(branch.projector.hidden(x_m))
        x0 = F.normalize(torch.cat([branch.preference, branch.projector.out(hidden)]), dim=1)
        out = x0 + adj @ x0 + adj @ (adj @ x0)
        user_views.append(out[: data.num_users])
        items = items + out[data.num_users :]
    if model.fusion is None:
        fused = user_views[0]
    else:
        w = model.fusion.weight
        fused = sum(w[:, m : m + 1] * view for m, view in enumerate(user_views))
    s = dense_user_weights(data, k, aggregation)
    return fused + s @ fused, items


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
@pytest.mark.parametrize("aggregation", ["softmax", "mean"])
def test_forward_and_loss_terms_equal_the_dense_formulas(num_modalities, aggregation):
    data, model = build(num_modalities, reg_weight=0.3, user_aggregation=aggregation)
    users, items = model()
    assert users.shape == (30, 4) and items.shape == (20, 4)
    expected_users, expected_items = dense_forward(data, model, 3, aggregation)
    # float64 model; its user-graph weights were computed in float32 before .double()
    assert torch.allclose(users, expected_users, rtol=0, atol=1e-6)
    assert torch.allclose(items, expected_items, rtol=0, atol=1e-12)

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
        assert model.fusion is None  # one modality: no fusion weights (as MMRec uses none)
    assert terms["loss_reg"].item() == pytest.approx(0.3 * reg.item(), rel=1e-9)


def test_fusion_weights_start_as_a_row_softmax_and_the_graph_is_the_data_layers():
    _, model = build(2)
    w = model.fusion.weight
    assert torch.allclose(w.sum(1), torch.ones(30, dtype=w.dtype)) and torch.all(w > 0)
    # user_graph_k reaches the data layer: more neighbours, more edges
    _, wider = build(2, user_graph_k=6)
    assert wider.user_graph.weight._nnz() > model.user_graph.weight._nnz()
    assert int(model.user_graph.weight.crow_indices().diff().max()) == 3
    assert wider.hparams["user_graph_k"] == 6


def test_users_without_co_occurring_users_keep_their_fused_preferences():
    # user 3 alone has item 4; users 0-2 share items 0-3
    users = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0, 1, 2, 3])
    items = torch.tensor([0, 1, 1, 2, 2, 3, 4, 3, 0, 1, 3])
    split = torch.tensor([0] * 7 + [1, 1, 2, 2])
    gen = torch.Generator().manual_seed(0)
    features = {"image": torch.randn(5, 3, generator=gen), "text": torch.randn(5, 2, generator=gen)}
    data = InteractionDataset.from_interactions(users, items, split, features)
    _, model = build(data=data, user_graph_k=2)
    assert model.user_graph.weight.crow_indices().tolist() == [0, 1, 3, 4, 4]
    user_views, item_views = model.modality_outputs()
    fused = model.fuse_users(user_views, item_views)
    final, _ = model()
    assert torch.equal(final[3], fused[3])
    assert not torch.allclose(final[:3], fused[:3])


def test_user_graph_layer_is_a_residual_weighted_hop():
    counts = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).to_sparse_csr()
    weights = cooccurrence_weights(counts).to_dense()
    e = torch.tensor(1.0).exp()
    expected = torch.tensor([[0, e / (e + 1), 1 / (e + 1)], [1, 0, 0], [0, 0, 0]])
    assert torch.allclose(weights, expected)
    assert torch.allclose(
        cooccurrence_weights(counts, "mean").to_dense(),
        torch.tensor([[0, 0.5, 0.5], [1.0, 0, 0], [0, 0, 0]]),
    )
    x = torch.randn(3, 2, requires_grad=True)
    out = UserGraphAggregation(counts)(x)
    assert torch.allclose(out, x + expected @ x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, (torch.eye(3) + expected).T @ torch.ones(3, 2))
    with pytest.raises(ValueError, match="aggregation"):
        cooccurrence_weights(counts, "max")


def test_every_parameter_gets_a_gradient():
    for num_modalities in (1, 3):
        _, model = build(num_modalities)
        sum(model.loss(BATCH).values()).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, num_modalities


def test_save_load_round_trip_and_id_only_data_is_refused(tmp_path):
    with pytest.raises(DataError, match="'dualgnn' needs item modality features"):
        DualGNN.from_dataset(tiny_dataset())
    data = tiny_dataset(modalities=MODALITIES[2])
    model = DualGNN.from_dataset(data, embedding_dim=4, user_graph_k=3)
    model.save(tmp_path / "model.pt")
    loaded = Recommender.load(tmp_path / "model.pt", data)
    assert isinstance(loaded, DualGNN) and loaded.hparams["user_graph_k"] == 3
    for a, b in zip(model(), loaded(), strict=True):
        assert torch.equal(a, b)
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert not any("features" in key or "user_graph" in key or key == "adj" for key in state)


@pytest.fixture(scope="module")
def tiktok_slice():
    with pytest.warns(UserWarning):  # the loader reports the cold users it drops
        full = load_dataset(shared_data_dir() / "tiktok")
    return user_slice(full, 0, 3000)  # 3000 users, ~43k training interactions, image + audio


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    settings.update(ks=[20], valid_metric="recall@20", reg_weight=1e-3)
    run = resolve_config(DualGNN, [("test", settings)])
    seed_everything(0)
    model = DualGNN.from_dataset(tiktok_slice, **run.hparams)
    evaluator = Evaluator(tiktok_slice, ks=[20])
    untrained = evaluator.evaluate(model, "valid")["recall@20"]
    result = Trainer(model, tiktok_slice, run, evaluator.evaluate, progress=False, log=None).fit()
    assert result.valid["recall@20"] > untrained + 0.005
