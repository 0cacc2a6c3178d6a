"""LGMRec and its learnable-hyperedge hypergraph against dense recomputations of the paper."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.sampling import Batch
from mmgraph.models import LGMRec
from mmgraph.nn.hypergraph import LearnableHypergraph
from mmgraph.nn.losses import population_infonce
from tests.conftest import requires_shared
from tests.helpers import (
    assert_all_parameters_get_gradients,
    assert_cold_items_rank_as_zero_id_rows,
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)
from tests.test_graph_and_conv import dense_lightgcn_adjacency

BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))
TWO = {"image": 8, "text": 6}
THREE = {"image": 8, "audio": 5, "text": 6}
SMALL = {"embedding_dim": 4, "hyper_layers": 2, "num_hyperedges": 3, "alpha": 0.7}


def build(modalities=TWO, **hparams):
    data = tiny_dataset(modalities=modalities)
    torch.manual_seed(0)
    return data, LGMRec.from_dataset(data, **{**SMALL, **hparams}).double()


def unit_rows(x):
    return torch.stack([row / max(row.norm().item(), 1e-12) for row in x])


def dense_softmax_rows(logits, tau):
    out = torch.zeros_like(logits)
    for r, row in enumerate(logits):
        e = torch.exp(row / tau - (row / tau).max())
        out[r] = e / e.sum()
    return out


def dense_lgmrec(model, data, noise=None):
    """Final ``[U + I, d]`` embeddings and the hypergraph views, from the paper's formulas."""
    U, n_items = data.num_users, data.num_items
    edges = data.edge_index()
    adj = dense_lightgcn_adjacency(edges, U, n_items).double()
    R = torch.zeros(U, n_items, dtype=torch.float64)
    R[edges[0], edges[1]] = 1.0
    P, Q = model.user_embedding.weight, model.item_embedding.weight
    # local, collaborative: LightGCN's layer mean
    layers = [torch.cat([P, Q])]
    for _ in range(model.encoder.num_layers):
        layers.append(adj @ layers[-1])
    collaborative = sum(layers) / len(layers)
    local = collaborative.clone()
    hyper = []
    layer = model.hypergraph
    for index, m in enumerate(data.modalities):
        X = data.features(m).double()
        # local, modality: users start from the mean of their items, last hop kept
        F_m = X @ model.projections[index].weight.T
        G_m = torch.stack([F_m[R[u] > 0].mean(0) for u in range(U)])
        h = torch.cat([G_m, F_m])
        for _ in range(model.modality_layers):
            h = adj @ h
        local = local + unit_rows(h)
        # global: Gumbel-softmax memberships, dropout, item -> hyperedge -> node hops
        item_logits = X @ layer.hyperedges[index].weight.T
        user_logits = R @ item_logits
        if noise is not None:
            draw = noise[index]
            item_logits = item_logits + draw.item_gumbel
            user_logits = user_logits + draw.user_gumbel
        H_i = dense_softmax_rows(item_logits, layer.temperature)
        H_u = dense_softmax_rows(user_logits, layer.temperature)
        if noise is not None:
            H_i = H_i * draw.item_keep.double() / layer.keep_rate
            H_u = H_u * draw.user_keep.double() / layer.keep_rate
        E = collaborative[U:]
        for _ in range(layer.num_layers):
            Z = H_i.T @ E
            E = H_i @ Z
        hyper.append((H_u @ Z, E))
    global_ = sum(torch.cat(view) for view in hyper)
    return local + model.alpha * unit_rows(global_), hyper


def dense_infonce_sum(anchors, candidates, positives, tau):
    total = 0.0
    anchors, candidates = unit_rows(anchors), unit_rows(candidates)  # zero rows stay zero
    for a, p in zip(anchors, positives, strict=True):
        cos = torch.stack([torch.dot(a, c) for c in candidates])
        total = total - torch.log(torch.exp(cos[p] / tau) / torch.exp(cos / tau).sum())
    return total


def dense_losses(model, data, noise):
    final, hyper = dense_lgmrec(model, data, noise)
    users, items = final[: data.num_users], final[data.num_users :]
    u, i, j = users[BATCH.users], items[BATCH.pos_items], items[BATCH.neg_items]
    bpr = -torch.log(torch.sigmoid((u * i).sum(1) - (u * j).sum(1))).mean()
    tau = model.temperature
    hcl = 0.0
    for a in range(len(hyper)):
        for b in range(a + 1, len(hyper)):
            (ua, ia), (ub, ib) = hyper[a], hyper[b]
            hcl = hcl + dense_infonce_sum(ua[BATCH.users], ub, BATCH.users, tau)
            hcl = hcl + dense_infonce_sum(ia[BATCH.pos_items], ib, BATCH.pos_items, tau)
    reg = (u.norm() + i.norm() + j.norm()) / len(BATCH.users)
    return {
        "loss_bpr": bpr,
        "loss_hcl": model.cl_weight * hcl,
        "loss_reg": model.reg_weight * reg,
    }


@pytest.mark.parametrize("modalities", [TWO, THREE])
def test_forward_is_local_plus_alpha_global_with_noise_free_memberships(modalities):
    data, model = build(modalities)
    final, _ = dense_lgmrec(model, data)
    users, items = model()
    assert users.shape == (30, 4) and items.shape == (20, 4)
    torch.testing.assert_close(torch.cat([users, items]), final, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("modalities", [TWO, THREE])
def test_every_loss_term_matches_the_dense_formulas_with_fixed_draws(modalities):
    data, model = build(modalities, cl_weight=0.3, reg_weight=0.2)
    torch.manual_seed(1)
    noise = model.hypergraph.draw(data.num_users, data.num_items)
    assert all(t is not None for draw in noise for t in draw)
    terms = model.loss(BATCH, noise=noise)
    expected = dense_losses(model, data, noise)
    assert set(terms) == set(expected)
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value.item(), rel=1e-9), key
    assert terms["loss_hcl"] > 0
    # the draws matter: the noise-free loss differs
    plain = dense_losses(model, data, None)
    assert abs(terms["loss_bpr"].item() - plain["loss_bpr"].item()) > 1e-6


def test_switched_off_randomness_makes_the_loss_the_noise_free_one():
    data, model = build(gumbel_noise=False, keep_rate=1.0, cl_weight=0.3)
    noise = model.hypergraph.draw(data.num_users, data.num_items)
    assert all(t is None for draw in noise for t in draw)
    expected = dense_losses(model, data, None)
    first, second = model.loss(BATCH), model.loss(BATCH)
    for key, value in expected.items():
        assert first[key].item() == pytest.approx(value.item(), rel=1e-9), key
        assert torch.equal(first[key], second[key])


def test_training_draws_are_fresh_per_call_and_reproducible_from_the_seed():
    _, model = build()
    torch.manual_seed(3)
    first = model.loss(BATCH)
    second = model.loss(BATCH)
    torch.manual_seed(3)
    again = model.loss(BATCH)
    assert first["loss_bpr"] != second["loss_bpr"]
    assert torch.equal(first["loss_bpr"], again["loss_bpr"])
    users, items = model()  # ranking is deterministic
    assert all(torch.equal(a, b) for a, b in zip((users, items), model(), strict=True))


def test_draws_have_the_right_distributions():
    layer = LearnableHypergraph([3], num_hyperedges=50, keep_rate=0.25)
    torch.manual_seed(0)
    (draw,) = layer.draw(num_users=400, num_items=300)
    assert draw.item_gumbel.shape == (300, 50) and draw.user_keep.shape == (400, 50)
    gumbel = draw.item_gumbel.double()
    assert gumbel.mean().item() == pytest.approx(0.5772, abs=0.03)  # Euler–Mascheroni
    assert gumbel.var().item() == pytest.approx(math.pi**2 / 6, rel=0.05)
    assert draw.user_keep.float().mean().item() == pytest.approx(0.25, abs=0.01)
    # kept memberships are scaled by 1 / keep_rate, dropped ones are zero
    logits = torch.randn(300, 50)
    weights = layer.membership(logits, None, draw.item_keep)
    plain = torch.softmax(logits / layer.temperature, dim=1)
    torch.testing.assert_close(weights[draw.item_keep], plain[draw.item_keep] * 4)
    assert (weights[~draw.item_keep] == 0).all()


def test_one_modality_keeps_both_views_and_has_no_contrast():
    data, model = build({"text": 6})
    final, _ = dense_lgmrec(model, data)
    torch.testing.assert_close(torch.cat(model()), final, atol=1e-10, rtol=1e-8)
    assert model.loss(BATCH)["loss_hcl"] == 0


def test_every_parameter_gets_a_gradient():
    data = tiny_dataset(modalities=TWO)
    model = LGMRec.from_dataset(data, embedding_dim=4)
    model.on_epoch_start(1)
    assert_all_parameters_get_gradients(model, BATCH)


def test_refuses_an_id_only_dataset_and_round_trips(tmp_path):
    assert_needs_item_features(LGMRec, "lgmrec")
    data = tiny_dataset(modalities=TWO)
    model = LGMRec.from_dataset(data, embedding_dim=4, num_hyperedges=3)
    assert_round_trip(model, data, tmp_path / "model.pt")
    assert not any(key.startswith("features") for key in model.state_dict())


def test_cold_items_are_ranked_as_with_a_zero_id_row():
    data = tiny_dataset(num_users=12, num_items=30, per_user=5, modalities=TWO)
    assert_cold_items_rank_as_zero_id_rows(LGMRec, data)


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 2, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    train_and_check_valid_recall(LGMRec, tiktok_slice, settings, margin=0.005)


def test_population_infonce_equals_cross_entropy_in_value_and_gradients():
    torch.manual_seed(0)
    anchors = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    positives = torch.tensor([0, 3, 3, 10, 2, 7, 0])
    loss = population_infonce(anchors, candidates, positives, 0.3)
    loss.backward()
    a, c = anchors.detach().clone(), candidates.detach().clone()
    a.requires_grad_(), c.requires_grad_()
    logits = F.normalize(a, dim=1) @ F.normalize(c, dim=1).T / 0.3
    expected = F.cross_entropy(logits, positives, reduction="sum")
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(anchors.grad, a.grad)
    torch.testing.assert_close(candidates.grad, c.grad)
    assert loss.item() == pytest.approx(dense_infonce_sum(a, c, positives, 0.3).item(), rel=1e-12)
