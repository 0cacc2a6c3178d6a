"""VBPR, BM3, FREEDOM and LATTICE against dense recomputations of their formulas."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.knn import fused_knn_graph
from mmgraph.data.sampling import Batch
from mmgraph.models import BM3, FREEDOM, LATTICE, VBPR, get_model
from mmgraph.nn.losses import bpr_loss
from tests.conftest import requires_shared
from tests.helpers import (
    assert_all_parameters_get_gradients,
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)
from tests.test_baseline_layers import dense_lattice_knn, dense_row_sum_norm, raw_knn
from tests.test_graph_and_conv import dense_lightgcn_adjacency

BASELINES = ["vbpr", "bm3", "freedom", "lattice"]
BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))


def data_with_features():
    return tiny_dataset(modalities={"image": 8, "text": 6})


def layer_mean(adj: torch.Tensor, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    layers = [x]
    for _ in range(num_layers):
        layers.append(adj @ layers[-1])
    return torch.stack(layers).mean(0)


def test_vbpr_scores_concatenate_id_and_content_factors():
    data = data_with_features()
    model = VBPR.from_dataset(data, embedding_dim=4, reg_weight=0.5)
    content = sum(
        linear(data.features(m)) for m, linear in zip(data.modalities, model.content.linears)
    )
    items = torch.cat([model.item_embedding.weight, content], dim=1)
    users, ranked_items = model()
    assert users.shape == (30, 8) and torch.allclose(ranked_items, items, atol=1e-6)
    u = users[BATCH.users]
    pos, neg = items[BATCH.pos_items], items[BATCH.neg_items]
    terms = model.loss(BATCH)
    assert terms["loss_bpr"].item() == pytest.approx(
        bpr_loss((u * pos).sum(1), (u * neg).sum(1)).item(), rel=1e-5
    )
    norms = u.norm() + pos.norm() + neg.norm()
    assert terms["loss_reg"].item() == pytest.approx(0.5 * norms.item() / 4, rel=1e-5)


def test_bm3_encoder_predictor_and_bootstrap_losses():
    data = data_with_features()
    model = BM3.from_dataset(data, embedding_dim=4, num_layers=2, dropout=0.0, reg_weight=0.3)
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items)
    x = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    out = layer_mean(adj, x, 2)
    users, items = out[:30], out[30:] + model.item_embedding.weight
    ranked_users, ranked_items = model()
    assert torch.allclose(ranked_users, model.predictor(users), atol=1e-5)
    assert torch.allclose(ranked_items, model.predictor(items), atol=1e-5)

    def ell(a, b):
        return 1 - F.cosine_similarity(a, b, dim=-1).mean()

    u, i = BATCH.users, BATCH.pos_items
    p = model.predictor
    align = ell(p(users[u]), items[i]) + ell(p(items[i]), users[u])
    modal = 0.0
    for m, linear in zip(data.modalities, model.content.linears, strict=True):
        f = linear(data.features(m))
        modal = modal + ell(p(f[i]), items[i]) + ell(p(f[i]), f[i])
    terms = model.loss(BATCH)
    assert terms["loss_align"].item() == pytest.approx(align.item(), rel=1e-5)
    assert terms["loss_modal"].item() == pytest.approx(2.0 * modal.item(), rel=1e-5)
    expected_reg = 0.3 * (users.norm() + items.norm()) / data.num_items
    assert terms["loss_reg"].item() == pytest.approx(expected_reg.item(), rel=1e-5)
    # the targets carry no gradient: with only loss_align, the predictor's gradient equals
    # that of the formula with the targets detached
    model.zero_grad()
    terms["loss_align"].backward()
    detached = ell(p(users[u]), items[i].detach()) + ell(p(items[i]), users[u].detach())
    (expected,) = torch.autograd.grad(detached, model.user_embedding.weight)
    assert torch.allclose(model.user_embedding.weight.grad, expected, atol=1e-6)


def test_bm3_target_dropout_changes_only_the_targets():
    data = data_with_features()
    model = BM3.from_dataset(data, embedding_dim=4, dropout=0.5)
    torch.manual_seed(0)
    first = model.loss(BATCH)
    torch.manual_seed(1)
    second = model.loss(BATCH)
    assert first["loss_align"] != second["loss_align"]
    assert first["loss_reg"] == second["loss_reg"]


def test_freedom_embeddings_use_the_frozen_item_graph_and_the_full_graph_at_eval():
    data = data_with_features()
    model = FREEDOM.from_dataset(data, embedding_dim=4, knn_k=3, reg_weight=0.2)
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items)
    graph = fused_knn_graph(data, 3).to_dense()
    q = model.item_embedding.weight
    out = layer_mean(adj, torch.cat([model.user_embedding.weight, q]), 2)
    users, items = model()
    assert torch.allclose(users, out[:30], atol=1e-5)
    assert torch.allclose(items, out[30:] + graph @ q, atol=1e-5)
    # the loss propagates over a pruned graph; with dropout 0 that is the full graph
    full = FREEDOM.from_dataset(data, embedding_dim=4, knn_k=3, reg_weight=0.2, dropout=0.0)
    full.load_state_dict(model.state_dict())
    terms = full.loss(BATCH)
    u = users[BATCH.users]
    expected_bpr = bpr_loss(
        (u * items[BATCH.pos_items]).sum(1), (u * items[BATCH.neg_items]).sum(1)
    )
    modal = sum(
        bpr_loss((u * f[BATCH.pos_items]).sum(1), (u * f[BATCH.neg_items]).sum(1))
        for f in (
            linear(data.features(m))
            for m, linear in zip(data.modalities, full.content.linears, strict=True)
        )
    )
    assert terms["loss_bpr"].item() == pytest.approx(expected_bpr.item(), rel=1e-5)
    assert terms["loss_modal"].item() == pytest.approx(0.2 * modal.item(), rel=1e-5)


def test_freedom_prunes_a_fresh_normalised_graph_every_epoch():
    data = data_with_features()
    model = FREEDOM.from_dataset(data, embedding_dim=4, knn_k=3, dropout=0.75)
    num_edges = data.edge_index().size(1)
    torch.manual_seed(0)
    model.on_epoch_start(1)
    first = model.pruned_adj.to_dense()
    kept = int(num_edges * 0.25)
    assert int((first[:30, 30:] > 0).sum()) == kept
    # its weights are the LightGCN normalisation of the kept edges
    users, items = (first[:30, 30:] > 0).nonzero().T
    expected = dense_lightgcn_adjacency(torch.stack([users, items]), 30, 20)
    assert torch.allclose(first, expected, atol=1e-6)
    model.on_epoch_start(2)
    assert not torch.equal(first, model.pruned_adj.to_dense())


def test_lattice_forward_matches_the_dense_formula():
    data = data_with_features()
    model = LATTICE.from_dataset(data, embedding_dim=4, knn_k=3).double()
    layer = model.item_graph
    alpha = layer.modality_weights
    projected = layer.projection()
    learned = dense_row_sum_norm(
        sum(a * raw_knn(f, 3) for a, f in zip(alpha, projected.values(), strict=True))
    )
    original = sum(
        a * dense_lattice_knn(data.features(m).double(), 3)
        for a, m in zip(alpha, data.modalities, strict=True)
    )
    graph = 0.1 * learned + 0.9 * original
    q = model.item_embedding.weight
    h = graph @ q
    adj = dense_lightgcn_adjacency(data.edge_index(), 30, 20).double()
    out = layer_mean(adj, torch.cat([model.user_embedding.weight, q]), 2)
    users, items = model()
    assert torch.allclose(users, out[:30], atol=1e-6)
    assert torch.allclose(items, out[30:] + F.normalize(h, dim=1), atol=1e-6)


def test_lattice_learns_its_graph_on_the_first_batch_of_each_epoch_only():
    data = data_with_features()
    model = LATTICE.from_dataset(data, embedding_dim=4, knn_k=3)
    projection = model.item_graph.projection.linears[0].weight
    model.on_epoch_start(1)
    sum(model.loss(BATCH).values()).backward()
    assert projection.grad.abs().sum() > 0 and model.item_graph.modality_logits.grad is not None
    model.zero_grad(set_to_none=True)
    sum(model.loss(BATCH).values()).backward()
    assert projection.grad is None  # reused graph, no gradient to the projections
    assert model.item_embedding.weight.grad.abs().sum() > 0
    model.on_epoch_start(2)
    sum(model.loss(BATCH).values()).backward()
    assert projection.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BASELINES)
def test_feature_models_refuse_an_id_only_dataset_and_round_trip(name, tmp_path):
    assert_needs_item_features(get_model(name), name)
    data = data_with_features()
    hparams = {"embedding_dim": 4} | ({"knn_k": 3} if name in ("freedom", "lattice") else {})
    model = get_model(name).from_dataset(data, **hparams)
    assert_round_trip(model, data, tmp_path / "model.pt")
    assert not any(key.startswith("content.features") for key in model.state_dict())


@pytest.mark.parametrize("name", BASELINES)
def test_every_parameter_gets_a_gradient(name):
    data = data_with_features()
    hparams = {"embedding_dim": 4} | ({"knn_k": 3} if name in ("freedom", "lattice") else {})
    model = get_model(name).from_dataset(data, **hparams)
    model.on_epoch_start(1)
    assert_all_parameters_get_gradients(model, BATCH)


@requires_shared("tiktok")
@pytest.mark.parametrize("name", BASELINES)
def test_training_on_real_tiktok_users_improves_valid_recall(name, tiktok_slice):
    settings = {"epochs": 4, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    train_and_check_valid_recall(get_model(name), tiktok_slice, settings, margin=0.005)
