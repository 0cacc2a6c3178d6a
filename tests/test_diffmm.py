"""DiffMM and its diffusion layers against dense recomputations of the paper's formulas."""

import math

import pytest
import torch

from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError
from mmgraph.models import DiffMM, get_model
from mmgraph.nn import Denoiser, GaussianDiffusion, diffusion_betas, population_infonce
from tests.conftest import requires_shared
from tests.helpers import (
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)

BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))
SMALL = {"embedding_dim": 6, "denoiser_dims": [12, 5], "time_embedding_dim": 7}


def data_with_features(modalities=None):
    return tiny_dataset(modalities=modalities or {"image": 8, "text": 6})


def dense_interactions(data):
    r = torch.zeros(data.num_users, data.num_items)
    users, items = data.edge_index("train")
    r[users, items] = 1.0
    return r


def dense_self_loop_adjacency(r):
    """D^{-1/2} (A + I) D^{-1/2} of the bipartite graph of the 0/1 matrix ``r``."""
    num_users, num_items = r.shape
    a = torch.zeros(num_users + num_items, num_users + num_items)
    a[:num_users, num_users:] = r
    a[num_users:, :num_users] = r.T
    a += torch.eye(num_users + num_items)
    degree = a.sum(1)
    return a / torch.sqrt(degree[:, None] * degree[None, :])


def dense_schedule(steps, scale, low, high):
    """(betas, alpha_bar) in plain python floats, from the schedule's definition."""
    variance = [scale * (low + (high - low) * t / max(steps - 1, 1)) for t in range(steps)]
    betas = [1e-4] + [
        min(1 - (1 - variance[t]) / (1 - variance[t - 1]), 0.999) for t in range(1, steps)
    ]
    alpha_bar, product = [], 1.0
    for beta in betas:
        product *= 1 - beta
        alpha_bar.append(product)
    return betas, alpha_bar


def dense_denoiser(denoiser, x, t):
    """The MLP written out: sinusoidal time embedding, linear, tanh layers, linear output."""
    dim = denoiser.time_dim
    half = dim // 2
    rows = []
    for step in t.tolist():
        freqs = [math.exp(-math.log(10000.0) * j / half) for j in range(half)]
        emb = [math.cos(step * f) for f in freqs] + [math.sin(step * f) for f in freqs]
        rows.append(emb + [0.0] * (dim - 2 * half))
    emb = torch.tensor(rows)
    emb = emb @ denoiser.time_layer.weight.T + denoiser.time_layer.bias
    h = torch.cat([x, emb], dim=1)
    for layer in denoiser.encoder:
        h = torch.tanh(h @ layer.weight.T + layer.bias)
    for index, layer in enumerate(denoiser.decoder):
        h = h @ layer.weight.T + layer.bias
        if index < len(denoiser.decoder) - 1:
            h = torch.tanh(h)
    return h


def dense_reverse(denoiser, x):
    betas, alpha_bar = dense_schedule(5, 0.1, 1e-4, 0.02)
    for t in reversed(range(5)):
        prev = alpha_bar[t - 1] if t > 0 else 1.0
        coef_x0 = betas[t] * math.sqrt(prev) / (1 - alpha_bar[t])
        coef_xt = (1 - prev) * math.sqrt(1 - betas[t]) / (1 - alpha_bar[t])
        x = coef_x0 * dense_denoiser(denoiser, x, torch.full((x.size(0),), t)) + coef_xt * x
    return x


def dense_nce(anchor, target, nodes, tau):
    losses = []
    for n in nodes.tolist():
        a = anchor[n] / anchor[n].norm()
        logits = torch.stack([a @ (row / row.norm()) / tau for row in target])
        losses.append(-torch.log_softmax(logits, dim=0)[n])
    return torch.stack(losses).mean()


def dense_model(model, data, generated):
    """(Z, views) from the formulas with dense matrices; ``generated[m]`` is ``[U, k]``."""
    r = dense_interactions(data)
    num_users = data.num_users
    a = dense_self_loop_adjacency(r)
    e_u, e_i = model.user_embedding.weight, model.item_embedding.weight
    ids = torch.cat([e_u, e_i])
    omega = torch.softmax(model.modal_weight, dim=0)
    fused, views = 0, []
    for m, modality in enumerate(data.modalities):
        linear = model.content.linears[m]
        f = data.features(modality) @ linear.weight.T + linear.bias
        x = torch.cat([e_u, f / f.norm(dim=1, keepdim=True)])
        r_m = torch.zeros_like(r)
        for user in range(num_users):
            r_m[user, generated[m][user]] = 1.0
        g = dense_self_loop_adjacency(r_m)
        h = a @ x
        h = h + a @ torch.cat([h[:num_users], e_i])
        h = h + 0.2 * g @ ids
        fused = fused + omega[m] * h
        views.append(g @ x + a @ (g @ x))  # one GCN layer, layer sum
    z = fused + a @ fused + 0.5 * fused / fused.norm(dim=1, keepdim=True)
    return z, views


def regenerated(data, **hparams):
    torch.manual_seed(0)
    model = DiffMM.from_dataset(data, **{**SMALL, "keep_rate": 1.0, **hparams})
    model.regenerate_graphs()
    return model


# ---------------------------------------------------------------------------- layers
def test_schedule_constants_follow_the_definition():
    betas, alpha_bar = dense_schedule(5, 0.1, 1e-4, 0.02)
    assert torch.allclose(
        diffusion_betas(5, 0.1, 1e-4, 0.02), torch.tensor(betas, dtype=torch.float64)
    )
    diffusion = GaussianDiffusion(5, 0.1, 1e-4, 0.02)
    assert torch.allclose(diffusion.alpha_bar, torch.tensor(alpha_bar))
    snr = [ab / (1 - ab) for ab in alpha_bar]
    weights = [1.0] + [snr[t - 1] - snr[t] for t in range(1, 5)]
    assert torch.allclose(diffusion.loss_weight, torch.tensor(weights), rtol=1e-5)
    assert diffusion.posterior_coef_x0[0] == pytest.approx(1.0)  # the last step returns x0_hat
    assert diffusion.posterior_coef_xt[0] == 0.0


def test_reverse_from_a_noised_start_uses_the_given_noise():
    torch.manual_seed(0)
    denoiser = Denoiser(9, hidden_dims=(4,), time_dim=4).eval()
    diffusion = GaussianDiffusion(5, 0.1, 1e-4, 0.02)
    x0, noise = torch.rand(3, 9), torch.randn(3, 9)
    _, alpha_bar = dense_schedule(5, 0.1, 1e-4, 0.02)
    start = math.sqrt(alpha_bar[1]) * x0 + math.sqrt(1 - alpha_bar[1]) * noise
    expected = dense_reverse(denoiser, start)
    got = diffusion.reverse(denoiser, x0, start_step=2, noise=noise)
    assert torch.allclose(got, expected, atol=1e-5)


def test_denoiser_dropout_only_in_training_and_when_asked():
    torch.manual_seed(0)
    denoiser = Denoiser(50, hidden_dims=(8,), time_dim=4, dropout=0.5)
    x, t = torch.rand(4, 50), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(denoiser(x, t, dropout=False), dense_denoiser(denoiser, x, t), atol=1e-6)
    assert not torch.allclose(denoiser(x, t), denoiser(x, t, dropout=False))
    denoiser.eval()
    assert torch.equal(denoiser(x, t), denoiser(x, t, dropout=False))


# ---------------------------------------------------------------------------- the model
def test_generated_graph_is_each_users_top_k_of_the_dense_reverse_process():
    data = data_with_features()
    model = regenerated(data, rebuild_k=3, diffusion_batch_size=7)  # 5 user batches
    r = dense_interactions(data)
    for m, denoiser in enumerate(model.denoisers):
        expected = dense_reverse(denoiser, r).topk(3, dim=1).indices
        got = model.generated_items[m]
        assert torch.equal(got.sort(dim=1).values, expected.sort(dim=1).values)
    one_batch = regenerated(data, rebuild_k=3, diffusion_batch_size=1000)
    assert torch.equal(one_batch.generated_items, model.generated_items)


def test_generated_graph_is_sparse_with_at_most_k_edges_per_user():
    data = data_with_features()
    k = 3
    model = regenerated(data, rebuild_k=k)
    num_users, num_nodes = data.num_users, data.num_users + data.num_items
    assert model.generated_items.shape == (2, num_users, k)
    for m in range(2):
        graph = model.generated_graph(m)
        assert graph.layout == torch.sparse_csr and graph.shape == (num_nodes, num_nodes)
        per_row = graph.crow_indices().diff()
        assert (per_row[:num_users] <= k + 1).all()  # k items and the self-loop
        assert graph.values().numel() <= 2 * num_users * k + num_nodes


def test_diffusion_rows_are_built_per_user_batch_never_for_all_users():
    data = data_with_features()
    torch.manual_seed(0)
    model = DiffMM.from_dataset(data, **SMALL, diffusion_batch_size=8)
    shapes = []
    build = model.user_rows
    model.user_rows = lambda users: shapes.append(tuple(users.shape)) or build(users)
    model.configure_optimizers(1e-3, 0.0)
    model.on_epoch_start(1)
    assert shapes and max(s[0] for s in shapes) <= 8
    assert sum(s[0] for s in shapes) == 2 * data.num_users  # one training, one generation pass


def test_forward_and_loss_terms_equal_the_dense_formulas():
    data = data_with_features()
    model = regenerated(data, rebuild_k=2, reg_weight=0.3, cl_weight=0.7, temperature=0.4)
    z, views = dense_model(model, data, model.generated_items)
    users, items = model()
    assert torch.allclose(torch.cat([users, items]), z, atol=1e-5)

    terms = model.loss(BATCH)
    num_users = data.num_users
    u = z[BATCH.users]
    pos, neg = z[num_users + BATCH.pos_items], z[num_users + BATCH.neg_items]
    bpr = -torch.nn.functional.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
    reg = model.user_embedding.weight.pow(2).sum() + model.item_embedding.weight.pow(2).sum()
    cl = sum(
        dense_nce(z[:num_users], v[:num_users], BATCH.users, 0.4)
        + dense_nce(z[num_users:], v[num_users:], BATCH.pos_items, 0.4)
        for v in views
    )
    assert set(terms) == {"loss_bpr", "loss_reg", "loss_cl"}
    assert terms["loss_bpr"].item() == pytest.approx(bpr.item(), rel=1e-5)
    assert terms["loss_reg"].item() == pytest.approx(0.3 * reg.item(), rel=1e-5)
    assert terms["loss_cl"].item() == pytest.approx(0.7 * cl.item(), rel=1e-5)


def test_modality_pair_contrast_equals_the_dense_formula():
    data = data_with_features({"image": 8, "text": 6, "audio": 5})
    model = regenerated(data, cl_method="modalities", cl_weight=1.0, temperature=0.5)
    _, views = dense_model(model, data, model.generated_items)
    n = data.num_users
    expected = sum(
        dense_nce(views[a][:n], views[b][:n], BATCH.users, 0.5)
        + dense_nce(views[a][n:], views[b][n:], BATCH.pos_items, 0.5)
        for a, b in [(0, 1), (0, 2), (1, 2)]
    )
    assert model.loss(BATCH)["loss_cl"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_diffusion_loss_terms_equal_the_dense_formulas():
    data = data_with_features()
    model = regenerated(data, msi_weight=0.3).eval()  # eval: no input dropout
    users = torch.tensor([0, 3, 4, 9, 3])
    generator = torch.Generator().manual_seed(1)
    timesteps = [torch.randint(0, 5, (5,), generator=generator) for _ in range(2)]
    noise = [torch.randn(5, data.num_items, generator=generator) for _ in range(2)]
    terms = model.diffusion_loss(users, timesteps, noise)

    _, alpha_bar = dense_schedule(5, 0.1, 1e-4, 0.02)
    snr = [ab / (1 - ab) for ab in alpha_bar]
    x0 = dense_interactions(data)[users]
    diff = msi = 0.0
    for m, modality in enumerate(data.modalities):
        t = timesteps[m]
        root = torch.tensor([math.sqrt(alpha_bar[s]) for s in t.tolist()])[:, None]
        root_rest = torch.tensor([math.sqrt(1 - alpha_bar[s]) for s in t.tolist()])[:, None]
        x0_hat = dense_denoiser(model.denoisers[m], root * x0 + root_rest * noise[m], t)
        weight = torch.tensor([1.0 if s == 0 else snr[s - 1] - snr[s] for s in t.tolist()])
        diff += (weight * ((x0 - x0_hat) ** 2).mean(1)).mean()
        linear = model.content.linears[m]
        f = data.features(modality) @ linear.weight.T + linear.bias
        msi += ((x0_hat @ f - x0 @ model.item_embedding.weight) ** 2).mean()
    assert terms["loss_diff"].item() == pytest.approx(diff.item(), rel=1e-5)
    assert terms["loss_msi"].item() == pytest.approx(0.3 * msi.item(), rel=1e-5)


def test_training_graphs_keep_entries_scaled_by_the_keep_rate():
    data = data_with_features()
    torch.manual_seed(0)
    model = DiffMM.from_dataset(data, **SMALL, keep_rate=0.5, rebuild_k=2)
    model.regenerate_graphs()
    (full, _), _ = model.full_graphs()
    dense_full = full.to_dense()
    (dropped, dropped_t), _ = model.draw_training_graphs()
    dense = dropped.to_dense()
    kept = dense != 0
    assert torch.allclose(dense[kept], 2 * dense_full[kept])
    assert 0.3 < kept.sum() / (dense_full != 0).sum() < 0.7
    assert torch.equal(dropped_t.to_dense(), dense.T)
    assert model.training_graphs()[0][0] is dropped  # kept for the epoch
    model.regenerate_graphs()
    assert model.training_graphs()[0][0] is not dropped  # redrawn after a regeneration


def test_every_parameter_gets_a_gradient_from_its_own_loss():
    data = data_with_features()
    model = regenerated(data)
    sum(model.loss(BATCH).values()).backward()
    denoising = {id(p) for p in model.denoisers.parameters()}
    named = list(model.named_parameters())
    missing = [
        n for n, p in named if id(p) not in denoising and (p.grad is None or not p.grad.any())
    ]
    assert not missing
    assert all(p.grad is None for p in model.denoisers.parameters())
    model.zero_grad(set_to_none=True)
    sum(model.diffusion_loss(torch.arange(10)).values()).backward()
    missing = [n for n, p in named if id(p) in denoising and (p.grad is None or not p.grad.any())]
    assert not missing
    assert all(p.grad is None for p in model.parameters() if id(p) not in denoising)


def test_each_phase_updates_only_its_own_parameters():
    data = data_with_features()
    torch.manual_seed(0)
    model = DiffMM.from_dataset(data, **SMALL)
    recommender_opt, diffusion_opt = model.configure_optimizers(1e-2, 0.0)
    denoising = {id(p) for p in model.denoisers.parameters()}
    assert {id(p) for g in diffusion_opt.param_groups for p in g["params"]} == denoising
    own = {id(p) for g in recommender_opt.param_groups for p in g["params"]}
    assert own | denoising == {id(p) for p in model.parameters()} and not own & denoising

    def snapshot():
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def changed(before):
        return {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}

    before = snapshot()
    model.train()
    model.on_epoch_start(1)
    assert changed(before) == {n for n, p in model.named_parameters() if id(p) in denoising}
    assert (model.generated_items >= 0).all()
    before = snapshot()
    terms = model.training_step(BATCH, [recommender_opt, diffusion_opt])
    assert changed(before) == {n for n, p in model.named_parameters() if id(p) not in denoising}
    assert terms["loss_diff"] > 0 and terms["loss_msi"] > 0  # the epoch's diffusion means
    assert model.separate_loss_terms == {"loss_diff", "loss_msi"}


def test_refuses_an_id_only_dataset_and_round_trips_with_its_graphs(tmp_path):
    assert_needs_item_features(get_model("diffmm"), "diffmm")
    data = data_with_features()
    model = regenerated(data, rebuild_k=2)
    loaded, _ = assert_round_trip(model, data, tmp_path / "model.pt")
    assert torch.equal(loaded.generated_items, model.generated_items)
    fresh = DiffMM.from_dataset(data, **SMALL, keep_rate=1.0, rebuild_k=2)
    fresh()  # caches the self-loop-only graphs, which loading must replace
    fresh.load_state_dict(model.state_dict())
    for a, b in zip(model(), fresh(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("modalities", [{"image": 8}, {"image": 8, "text": 6, "audio": 4}])
def test_any_number_of_modalities(modalities):
    data = data_with_features(modalities)
    model = regenerated(data, cl_method="modalities")
    users, items = model()
    assert users.shape == (30, 6) and items.shape == (20, 6)
    terms = model.loss(BATCH)
    assert (terms["loss_cl"] == 0) == (len(modalities) == 1)  # no pair with one modality


def test_inconsistent_hyperparameters_are_config_errors():
    data = data_with_features()
    with pytest.raises(ConfigError, match="noise_min"):
        DiffMM.from_dataset(data, noise_min=0.5, noise_max=0.1)
    with pytest.raises(ConfigError, match="sampling_steps"):
        DiffMM.from_dataset(data, diffusion_steps=3, sampling_steps=4)
    with pytest.raises(ConfigError, match="noise_scale"):
        DiffMM.from_dataset(data, noise_scale=100.0)
    with pytest.raises(ConfigError, match="rebuild_k"):
        DiffMM.from_dataset(data, rebuild_k=21)


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 2, "lr": 1e-2, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    settings.update(denoiser_dims=[64])
    model = train_and_check_valid_recall(DiffMM, tiktok_slice, settings, margin=0.005)
    assert (model.generated_items >= 0).all()


def test_mean_population_infonce_gradients_equal_autograd_cross_entropy():
    """DiffMM's reduction, with a node repeated in the batch."""
    generator = torch.Generator().manual_seed(0)
    anchor = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    nodes = torch.tensor([3, 0, 3, 6])
    loss = population_infonce(anchor[nodes], target, nodes, 0.3, "mean")
    grads = torch.autograd.grad(loss, (anchor, target))
    a = torch.nn.functional.normalize(anchor[nodes], dim=1)
    t = torch.nn.functional.normalize(target, dim=1)
    expected = torch.nn.functional.cross_entropy(a @ t.T / 0.3, nodes)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for got, want in zip(grads, torch.autograd.grad(expected, (anchor, target)), strict=True):
        assert torch.allclose(got, want, atol=1e-10)
