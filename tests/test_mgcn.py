"""MGCN against a dense recomputation of its formulas, its layers, and training on real users."""

import math

import pytest
import torch

from mmgraph.data.sampling import Batch
from mmgraph.models import MGCN
from mmgraph.nn import BehaviorAwareFuser, BehaviorGuidedPurifier, PurifierGate
from tests.conftest import requires_shared
from tests.helpers import (
    MODALITIES,
    assert_all_parameters_get_gradients,
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)
from tests.test_graph_and_conv import dense_lightgcn_adjacency

# keep the kNN disk cache of these tests out of the user's home
pytestmark = pytest.mark.usefixtures("isolated_graph_cache")
# user 1 and item 3 appear twice: InfoNCE contrasts the rows as the batch gives them
BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 3]), torch.tensor([6, 7, 8, 9]))


def build(num_modalities=2, **hparams):
    torch.manual_seed(0)
    data = tiny_dataset(modalities=MODALITIES[num_modalities])
    hparams = {"embedding_dim": 4, "knn_k": 3, **hparams}
    return data, MGCN.from_dataset(data, **hparams).double()


def dense_knn_graph(x, k):
    """S = D^-1/2 K D^-1/2: K[i, j] = cos(x_i, x_j) for the k largest cosines of row i
    (itself included), D the row sums of K."""
    n = x.size(0)
    cos = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            cos[i, j] = x[i] @ x[j] / (x[i].norm() * x[j].norm())
    knn = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in sorted(range(n), key=lambda j: -cos[i, j].item())[:k]:
            knn[i, j] = cos[i, j]
    d = knn.sum(1)
    return knn / torch.sqrt(d[:, None]) / torch.sqrt(d[None, :])


def linear(layer, x):
    return x @ layer.weight.T + (0 if layer.bias is None else layer.bias)


def dense_views(data, model, k=3):
    """(E^id, E^side) of the paper, written out with dense matrices."""
    num_users = data.num_users
    adj = dense_lightgcn_adjacency(data.edge_index(), num_users, data.num_items).double()
    r_hat = adj[:num_users, num_users:]
    p, q = model.user_embedding.weight, model.item_embedding.weight
    layers = [torch.cat([p, q])]
    for _ in range(2):
        layers.append(adj @ layers[-1])
    behavior = sum(layers) / 3

    views = []
    for m, modality in enumerate(data.modalities):
        x = data.features(modality).double()
        f = linear(model.projection.linears[m], x)
        purified = q * torch.sigmoid(linear(model.purifier.gates[m].linear, f))
        items = dense_knn_graph(x, k) @ purified
        views.append(torch.cat([r_hat @ items, items]))

    if len(views) == 1:  # a softmax over one score is 1, and e^1 - e^s = 0
        return behavior, views[0] / 2
    query = model.fuser.query
    scores = torch.stack(
        [linear(query[2], torch.tanh(linear(query[0], e))).squeeze(1) for e in views], dim=1
    )
    alpha = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True)
    shared = sum(alpha[:, m : m + 1] * e for m, e in enumerate(views))
    side = shared.clone()
    for m, e in enumerate(views):
        prefer = torch.sigmoid(linear(model.fuser.preference[m].linear, behavior))
        side = side + (e - shared) * prefer
    return behavior, side / (len(views) + 1)


def dense_infonce(a, b, tau):
    """mean_i -log(exp(cos(a_i, b_i)/tau) / sum_j exp(cos(a_i, b_j)/tau))."""
    total = 0.0
    for i in range(a.size(0)):
        sims = [a[i] @ b[j] / (a[i].norm() * b[j].norm()) / tau for j in range(b.size(0))]
        total = total - math.log(math.exp(sims[i]) / sum(math.exp(s) for s in sims))
    return total / a.size(0)


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
def test_forward_and_loss_terms_equal_the_dense_formulas(num_modalities):
    data, model = build(num_modalities, reg_weight=0.3, cl_weight=0.7, temperature=0.5)
    # float64 model; its kNN graphs and adjacency were normalised in float32 before .double()
    behavior, side = (v.detach() for v in dense_views(data, model))
    final = behavior + side
    users, items = model()
    assert users.shape == (30, 4) and items.shape == (20, 4)
    assert torch.allclose(users, final[:30], rtol=0, atol=1e-6)
    assert torch.allclose(items, final[30:], rtol=0, atol=1e-6)

    terms = model.loss(BATCH)
    assert set(terms) == {"loss_bpr", "loss_reg", "loss_cl"}
    u_rows = [final[u] for u in BATCH.users.tolist()]
    pos_rows = [final[30 + i] for i in BATCH.pos_items.tolist()]
    neg_rows = [final[30 + i] for i in BATCH.neg_items.tolist()]
    bpr = 0.0
    for u, pos, neg in zip(u_rows, pos_rows, neg_rows, strict=True):
        bpr -= math.log(torch.sigmoid(u @ pos - u @ neg).item())
    assert terms["loss_bpr"].item() == pytest.approx(bpr / 4, rel=1e-6)
    squares = sum(float(row @ row) for row in u_rows + pos_rows + neg_rows)
    assert terms["loss_reg"].item() == pytest.approx(0.3 * squares / (2 * 4), rel=1e-6)
    item_rows = BATCH.pos_items + 30
    cl = dense_infonce(side[item_rows], behavior[item_rows], 0.5) + dense_infonce(
        side[BATCH.users], behavior[BATCH.users], 0.5
    )
    assert terms["loss_cl"].item() == pytest.approx(0.7 * cl, rel=1e-6)


def test_item_graphs_are_the_datas_cosine_knn_graphs_and_knn_k_reaches_them():
    data, model = build(2)
    for m, modality in enumerate(data.modalities):
        expected = dense_knn_graph(data.features(modality).double(), 3)
        graph = getattr(model, f"item_graph_{m}").to_dense()
        assert torch.allclose(graph, expected, atol=1e-6)
        assert torch.equal(getattr(model, f"item_graph_t_{m}").to_dense(), graph.T)
    _, wider = build(2, knn_k=6)
    assert wider.item_graph_0.values().numel() == 20 * 6 > model.item_graph_0.values().numel()
    assert wider.hparams["knn_k"] == 6


def test_cl_weight_zero_leaves_out_the_contrastive_term():
    _, model = build(2, cl_weight=0.0)
    terms = model.loss(BATCH)
    assert terms["loss_cl"].item() == 0.0
    sum(terms.values()).backward()
    assert model.item_embedding.weight.grad.any()


def test_learning_rate_decays_as_in_the_config():
    _, model = build(2)
    (optimizer,) = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    model.on_epoch_start(1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    model.on_epoch_start(51)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.96e-3)
    model.on_epoch_start(101)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.96**2 * 1e-3)


def test_layers_gate_and_fuse_as_stated():
    torch.manual_seed(0)
    gate = PurifierGate(3)
    x, c = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose(
        gate(x, c), x / (1 + torch.exp(-(c @ gate.linear.weight.T + gate.linear.bias)))
    )
    purifier = BehaviorGuidedPurifier(2, 3)
    out = purifier(x, [c, 2 * c])
    assert len(out) == 2 and torch.allclose(out[1], purifier.gates[1](x, 2 * c))
    with pytest.raises(ValueError, match="modalities"):
        purifier(x, [c])
    fuser = BehaviorAwareFuser(2, 3)
    alpha = fuser.attention(torch.randn(5, 2, 3))
    assert torch.allclose(alpha.sum(1), torch.ones(5)) and torch.all(alpha > 0)
    # identical views: no modality-specific part is left, the result is the view scaled by
    # 1/(M+1), whatever the behaviour
    same = x.unsqueeze(1).expand(5, 2, 3)
    assert torch.allclose(fuser(same, c), x / 3, atol=1e-6)
    with pytest.raises(ValueError, match="views"):
        fuser(torch.randn(5, 3, 3), c)
    # one modality: the view halved, no parameters
    single = BehaviorAwareFuser(1, 3)
    assert not list(single.parameters())
    assert torch.equal(single(x.unsqueeze(1), c), x / 2)


def test_every_parameter_gets_a_gradient():
    for num_modalities in (1, 3):
        _, model = build(num_modalities)
        assert_all_parameters_get_gradients(model, BATCH, num_modalities)


def test_save_load_round_trip_and_id_only_data_is_refused(tmp_path):
    assert_needs_item_features(MGCN, "mgcn")
    data = tiny_dataset(modalities=MODALITIES[2])
    model = MGCN.from_dataset(data, embedding_dim=4, knn_k=3, cl_weight=0.1)
    loaded, state = assert_round_trip(model, data, tmp_path / "model.pt")
    assert isinstance(loaded, MGCN) and loaded.hparams["knn_k"] == 3
    assert not any("features" in key or "graph" in key or "interactions" in key for key in state)


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    train_and_check_valid_recall(MGCN, tiktok_slice, settings, margin=0.005)
