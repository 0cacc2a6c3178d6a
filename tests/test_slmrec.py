"""SLMRec and its augmentation layers against dense recomputations of the paper's formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.sampling import Batch
from mmgraph.models import SLMRec
from mmgraph.nn.ssl_augment import (
    draw_dropout_masks,
    draw_masked_branches,
    dropout_propagation,
    mask_item_branches,
)
from tests.conftest import requires_shared
from tests.helpers import (
    assert_all_parameters_get_gradients,
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)
from tests.test_graph_and_conv import dense_lightgcn_adjacency

TASKS = ["FAC", "FD", "FM", "FD+FM"]
BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))
NUM_USERS, NUM_ITEMS = 30, 20


def data_with_features():
    # dataset order genre, text, image: the model orders its branches image, text, genre
    return tiny_dataset(modalities={"genre": 3, "text": 6, "image": 8})


def linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return x @ module.weight.T + module.bias


def dense_layer_mean(adj, x, num_layers, keep=None, p=0.0):
    """(1/(L+1)) sum_l h_l with h_{l+1} = keep_l * (adj @ h_l) / (1 - p)."""
    layers = [x]
    for layer in range(num_layers):
        h = adj @ layers[-1]
        if keep is not None:
            h = h * keep[layer] / (1.0 - p)
        layers.append(h)
    return sum(layers) / (num_layers + 1)


def layer0_tables(model, data):
    """Per branch (ID, then the modalities in hierarchy order): the ``[U + I, d]`` input."""
    p = model.user_embedding.weight
    items = [model.item_embedding.weight]
    for m in model.modalities:
        k = model.content.modalities.index(m)
        items.append(linear(model.content.linears[k], F.normalize(data.features(m), dim=1)))
    return [torch.cat([p, q]) for q in items]


def dense_fuse(model, user_parts, item_parts):
    """Fusion of per-branch ``[n, d]`` lists: concat (or mean), then the two linear maps."""
    if model.mm_fusion_mode == "concat":
        users, items = torch.cat(user_parts, 1), torch.cat(item_parts, 1)
    else:
        users, items = sum(user_parts) / len(user_parts), sum(item_parts) / len(item_parts)
    return linear(model.user_fusion, users), linear(model.item_fusion, items)


def dense_branches(model, data, adj, keep=None, view=0, p=0.0, masked=None):
    """Per-branch ``(users [U, d], items [I, d])`` of one (optionally augmented) view."""
    out = []
    for b, x in enumerate(layer0_tables(model, data)):
        if masked is not None and b == int(masked[view]):
            x = torch.cat([x[:NUM_USERS], torch.zeros_like(x[NUM_USERS:])])
        branch_keep = None if keep is None else [k[:, view, b].float() for k in keep]
        e = dense_layer_mean(adj, x, model.num_layers, branch_keep, p)
        out.append((e[:NUM_USERS], e[NUM_USERS:]))
    return out


def dense_infonce(a, b, tau, cosine=True):
    """-(1/B) sum_k log( exp(s(a_k, b_k)/tau) / sum_j exp(s(a_k, b_j)/tau) ), plain loops."""
    total = 0.0
    n = a.size(0)
    for k in range(n):
        if cosine:
            sims = [F.cosine_similarity(a[k], b[j], dim=0) / tau for j in range(n)]
        else:
            sims = [(a[k] * b[j]).sum() / tau for j in range(n)]
        total = total - (sims[k] - torch.logsumexp(torch.stack(sims), 0))
    return total / n


def make(task="FAC", **hparams):
    data = data_with_features()
    settings = {"embedding_dim": 4, "num_layers": 2, "ssl_task": task} | hparams
    return data, SLMRec.from_dataset(data, **settings)


@pytest.mark.parametrize("fusion", ["concat", "mean"])
def test_forward_is_the_fused_layer_mean_of_every_branch(fusion):
    data, model = make(mm_fusion_mode=fusion)
    assert model.modalities == ["image", "text", "genre"]
    adj = dense_lightgcn_adjacency(data.edge_index(), NUM_USERS, NUM_ITEMS)
    branches = dense_branches(model, data, adj)
    users, items = dense_fuse(model, [u for u, _ in branches], [i for _, i in branches])
    got_users, got_items = model()
    assert got_users.shape == (NUM_USERS, 4) and got_items.shape == (NUM_ITEMS, 4)
    assert torch.allclose(got_users, users, atol=1e-5)
    assert torch.allclose(got_items, items, atol=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_every_loss_term_matches_the_dense_formulas(task):
    hparams = {"ssl_alpha": 0.7, "ssl_temp": 0.5, "temp": 0.3, "reg_weight": 0.4}
    data, model = make(task, dropout_rate=0.25, **hparams)
    adj = dense_lightgcn_adjacency(data.edge_index(), NUM_USERS, NUM_ITEMS)
    a, pos = BATCH.users, BATCH.pos_items
    torch.manual_seed(3)
    terms = model.loss(BATCH)
    torch.manual_seed(3)
    views = model.draw_views()  # the draws loss() made
    assert set(terms) == {"loss_rec", "loss_ssl", "loss_reg"}

    branches = dense_branches(model, data, adj)
    users, items = dense_fuse(model, [u for u, _ in branches], [i for _, i in branches])
    rec = dense_infonce(users[a], items[pos], 0.3)
    assert terms["loss_rec"].item() == pytest.approx(rec.item(), rel=1e-5)

    if task == "FAC":
        assert views is None
        z, ssl = branches[0][1][pos], 0.0
        widths = [4, 4, 2]  # d for the finer spaces, d/2 for the coarsest
        for k, (chain, head) in enumerate(zip(model.fac.chain, model.fac.heads, strict=True)):
            z = linear(chain, z)
            target = linear(head, branches[k + 1][1][pos])
            assert z.shape == target.shape == (4, widths[k])
            ssl = ssl + dense_infonce(z, target, 0.5, cosine=False)
    else:
        p = 0.25 if "FD" in task else 0.0
        assert len(views.keep_masks) == (2 if "FD" in task else 0)
        assert (views.masked_branches is not None) == ("FM" in task)
        keep = views.keep_masks or None
        fused = []
        for v in range(2):
            view = dense_branches(model, data, adj, keep, v, p, views.masked_branches)
            fused.append(dense_fuse(model, [x[0] for x in view], [x[1] for x in view]))
        (u1, i1), (u2, i2) = fused
        ssl = dense_infonce(u1[a], u2[a], 0.5) + dense_infonce(i1[pos], i2[pos], 0.5)
    assert terms["loss_ssl"].item() == pytest.approx(0.7 * ssl.item(), rel=1e-5)

    p0, q0 = model.user_embedding.weight[a], model.item_embedding.weight[pos]
    reg = 0.4 * (p0.pow(2).sum() + q0.pow(2).sum()) / (2 * len(a))
    assert terms["loss_reg"].item() == pytest.approx(reg.item(), rel=1e-5)
    # explicit views replay the same loss
    replay = model.loss(BATCH, views)
    assert all(torch.equal(replay[key], terms[key]) for key in terms)


@pytest.mark.parametrize("task", ["FD", "FM", "FD+FM"])
def test_each_loss_draws_fresh_views(task):
    _, model = make(task)
    values = set()
    for seed in range(6):
        torch.manual_seed(seed)
        terms = model.loss(BATCH)
        values.add(round(terms["loss_ssl"].item(), 6))
        assert terms["loss_rec"] == model.loss(BATCH)["loss_rec"]  # not augmented
    assert len(values) > 1


@pytest.mark.parametrize("task", TASKS)
def test_every_parameter_gets_a_gradient(task):
    _, model = make(task, reg_weight=0.1)
    torch.manual_seed(0)
    assert_all_parameters_get_gradients(model, BATCH, task)
    assert (model.fac is not None) == (task == "FAC")


def test_save_load_round_trip_and_id_only_refusal(tmp_path):
    data, model = make("FD+FM", mm_fusion_mode="mean")
    loaded, _ = assert_round_trip(model, data, tmp_path / "model.pt")
    assert isinstance(loaded, SLMRec) and loaded.ssl_task == "FD+FM"
    assert not any(key.startswith("content.features") for key in model.state_dict())
    assert_needs_item_features(SLMRec, "slmrec")


def test_one_modality_has_one_fac_space_of_full_width():
    data = tiny_dataset(modalities={"text": 6})
    model = SLMRec.from_dataset(data, embedding_dim=4)
    assert [head.out_features for head in model.fac.heads] == [4]
    assert model.user_fusion.in_features == 8  # ID + text, concatenated


def test_item_id_dropout_zeroes_id_rows_in_training_only():
    _, model = make(item_id_dropout=0.5)
    torch.manual_seed(0)
    id_rows = model.branch_stack()[NUM_USERS:, 0]
    assert (id_rows.abs().sum(1) == 0).any() and (id_rows.abs().sum(1) > 0).any()
    model.eval()  # every tiny item has a training interaction: nothing is cold
    assert torch.equal(model.branch_stack()[NUM_USERS:, 0], model.item_embedding.weight)


# ---------------------------------------------------------------------- augmentation layers
def test_masked_branches_are_distinct_and_cover_every_pair():
    pairs = set()
    torch.manual_seed(0)
    for _ in range(200):
        first, second = draw_masked_branches(3).tolist()
        assert first != second
        pairs.add((first, second))
    assert len(pairs) == 6
    with pytest.raises(ValueError):
        draw_masked_branches(1)


def test_mask_item_branches_zeroes_one_item_branch_per_view():
    stack = torch.randn(5, 3, 2)  # 2 users, 3 items
    views = mask_item_branches(stack, torch.tensor([2, 0]), num_users=2)
    assert views.shape == (5, 2, 3, 2)
    expected = stack.unsqueeze(1).repeat(1, 2, 1, 1)
    expected[2:, 0, 2] = 0.0
    expected[2:, 1, 0] = 0.0
    assert torch.equal(views, expected)


def test_dropout_masks_and_propagation():
    torch.manual_seed(0)
    masks = draw_dropout_masks(200, 2, 3, 8, num_layers=2, p=0.3)
    assert len(masks) == 2 and masks[0].shape == (200, 2, 3, 8) and masks[0].dtype == torch.bool
    kept = masks[0].float().mean().item()
    assert abs(kept - 0.7) < 4 * math.sqrt(0.21 / masks[0].numel())
    assert not torch.equal(masks[0], masks[1])
    assert draw_dropout_masks(4, 2, 3, 8, 2, p=0.0) == ()

    data = tiny_dataset()
    adj = dense_lightgcn_adjacency(data.edge_index(), NUM_USERS, NUM_ITEMS)
    sparse = adj.to_sparse_csr()
    x = torch.randn(NUM_USERS + NUM_ITEMS, 2, 3, 4)
    keep = [torch.rand(NUM_USERS + NUM_ITEMS, 2, 3, 4) > 0.3 for _ in range(2)]
    out = dropout_propagation(x, sparse, 2, keep, 0.3)
    for v in range(2):
        for b in range(3):
            slices = [k[:, v, b].float() for k in keep]
            expected = dense_layer_mean(adj, x[:, v, b], 2, slices, 0.3)
            assert torch.allclose(out[:, v, b], expected, atol=1e-5)
    plain = dropout_propagation(x, sparse, 2, (), 0.0)
    assert torch.allclose(plain[:, 1, 2], dense_layer_mean(adj, x[:, 1, 2], 2), atol=1e-5)


# ---------------------------------------------------------------------- real data
@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 3, "lr": 1e-3, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    model = train_and_check_valid_recall(SLMRec, tiktok_slice, settings, margin=0.005)
    assert model.modalities == ["image", "audio"]
