"""DualGNN against a dense recomputation of its formulas, and its training on real users."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.sampling import Batch
from mmgraph.models import DualGNN
from mmgraph.nn import UserGraphAggregation, cooccurrence_weights
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

# keep the co-occurrence disk cache of these tests out of the user's home
pytestmark = pytest.mark.usefixtures("isolated_graph_cache")
BATCH = Batch(torch.tensor([0, 1, 1, 7]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))


def build(num_modalities=2, data=None, **hparams):
    torch.manual_seed(0)
    data = data or tiny_dataset(modalities=MODALITIES[num_modalities])
    hparams = {"embedding_dim": 4, "user_graph_k": 3, **hparams}
    return data, DualGNN.from_dataset(data, **hparams).double()


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

    assert_bpr_and_preference_reg_terms(model, BATCH, expected_users, expected_items, 0.3)
    if num_modalities == 1:
        assert model.fusion is None  # one modality: no fusion weights (as MMRec uses none)


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
    data = lonely_user_dataset()  # user 3 alone has item 4; users 0-2 share items 0-3
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
        assert_all_parameters_get_gradients(model, BATCH, num_modalities)


def test_save_load_round_trip_and_id_only_data_is_refused(tmp_path):
    assert_needs_item_features(DualGNN, "dualgnn")
    data = tiny_dataset(modalities=MODALITIES[2])
    model = DualGNN.from_dataset(data, embedding_dim=4, user_graph_k=3)
    loaded, state = assert_round_trip(model, data, tmp_path / "model.pt")
    assert isinstance(loaded, DualGNN) and loaded.hparams["user_graph_k"] == 3
    assert not any("features" in key or "user_graph" in key or key == "adj" for key in state)


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    settings.update(reg_weight=1e-3)
    train_and_check_valid_recall(DualGNN, tiktok_slice, settings, margin=0.005)
