"""DRAGON against a dense recomputation of its formulas, and its training on real users."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError
from mmgraph.models import DRAGON
from tests.conftest import requires_shared
from tests.helpers import (
    MODALITIES,
    assert_all_parameters_get_gradients,
    assert_bpr_and_preference_reg_terms,
    assert_needs_item_features,
    assert_round_trip,
    dense_user_weights,
    lonely_user_dataset,
    tiny_dataset,
    train_and_check_valid_recall,
)
from tests.test_graph_and_conv import dense_lightgcn_adjacency

# keep the kNN and co-occurrence disk caches of these tests out of the user's home
pytestmark = pytest.mark.usefixtures("isolated_graph_cache")
BATCH = Batch(torch.tensor([0, 1, 1, 7]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))


def build(num_modalities=2, data=None, **hparams):
    torch.manual_seed(0)
    data = data or tiny_dataset(modalities=MODALITIES[num_modalities])
    hparams = {"embedding_dim": 4, "user_graph_k": 3, "knn_k": 3, **hparams}
    return data, DRAGON.from_dataset(data, **hparams).double()


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

    assert_bpr_and_preference_reg_terms(model, BATCH, expected_users, expected_items, 0.3)
    if num_modalities == 1:
        assert model.fusion is None  # one modality: no user weights


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
    data = lonely_user_dataset()  # user 3 alone has item 4; users 0-2 share items 0-3
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
        assert_all_parameters_get_gradients(model, BATCH, num_modalities)


def test_save_load_round_trip_and_id_only_data_is_refused(tmp_path):
    assert_needs_item_features(DRAGON, "dragon")
    data = tiny_dataset(modalities=MODALITIES[2])
    model = DRAGON.from_dataset(data, embedding_dim=4, user_graph_k=3, knn_k=3)
    loaded, state = assert_round_trip(model, data, tmp_path / "model.pt")
    assert isinstance(loaded, DRAGON) and loaded.hparams["knn_k"] == 3
    assert not any("features" in key or "graph" in key or key == "adj" for key in state)


def test_bad_hyperparameters_are_refused():
    data = tiny_dataset(modalities=MODALITIES[2])
    with pytest.raises(ConfigError, match="user_aggregation"):
        DRAGON.from_dataset(data, user_aggregation="max")
    with pytest.raises(ConfigError, match="user_graph_k"):
        DRAGON.from_dataset(data, user_graph_k=0)


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    train_and_check_valid_recall(DRAGON, tiktok_slice, settings, margin=0.005)
