"""GRCN and its graph-refining layers against dense recomputations of the paper's formulas."""

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data import InteractionDataset
from mmgraph.data.sampling import Batch
from mmgraph.models import GRCN
from mmgraph.nn import BipartiteGraph, edge_dots, route_preferences, weighted_matmul
from tests.conftest import requires_shared
from tests.helpers import (
    assert_all_parameters_get_gradients,
    assert_needs_item_features,
    assert_round_trip,
    tiny_dataset,
    train_and_check_valid_recall,
)

BATCH = Batch(torch.tensor([0, 1, 2, 1]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))
SMALL = {"embedding_dim": 4, "latent_dim": 3}


def data_with_features(**kwargs):
    return tiny_dataset(modalities={"image": 8, "text": 6}, **kwargs)


def interaction_mask(data) -> torch.Tensor:
    """``[U, I]`` boolean matrix of the training pairs."""
    mask = torch.zeros(data.num_users, data.num_items, dtype=torch.bool)
    users, items = data.edge_index("train")
    mask[users, items] = True
    return mask


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over the entries of ``mask`` along ``dim``, written out; zero elsewhere."""
    out = torch.zeros_like(scores)
    for index in range(scores.size(1 - dim)):
        line = scores.select(1 - dim, index)
        keep = mask.select(1 - dim, index)
        if keep.any():
            exp = torch.exp(line[keep] - line[keep].max())
            out.select(1 - dim, index)[keep] = exp / exp.sum()
    return out


def dense_grcn(model: GRCN, data, num_routing: int, mode: str, pruning: bool):
    """``[U + I, D + M·C]`` from the paper's equations with dense ``U x I`` matrices."""
    num_users, num_items = data.num_users, data.num_items
    mask = interaction_mask(data)
    views, to_user, to_item = [], [], []
    for modality, linear, scorer in zip(
        data.modalities, model.content.linears, model.scorers, strict=True
    ):
        x = data.features(modality).to(linear.weight.dtype)
        c = F.normalize(F.leaky_relu(x @ linear.weight.T + linear.bias), dim=1)
        p = F.normalize(scorer.preference, dim=1)
        for _ in range(num_routing):
            routing = masked_softmax(p @ c.T, mask, dim=1)  # over each user's items
            p = F.normalize(p + routing @ c, dim=1)
        scores = p @ c.T
        over_items = masked_softmax(scores, mask, dim=1)  # item -> user messages
        over_users = masked_softmax(scores, mask, dim=0)  # user -> item messages
        views.append(torch.cat([p + over_items @ c, c + over_users.T @ p]))
        to_user.append(over_items)
        to_item.append(over_users)
    to_user, to_item = torch.stack(to_user), torch.stack(to_item)  # [M, U, I]
    if mode == "confid":
        kappa = model.edge_fusion.confidence  # [U + I, M]; the sender's confidence
        to_user = to_user * kappa[num_users:].T.unsqueeze(1)
        to_item = to_item * kappa[:num_users].T.unsqueeze(2)
    if mode == "mean":
        weight_to_user, weight_to_item = to_user.mean(0), to_item.mean(0)
    else:
        weight_to_user, weight_to_item = to_user.max(0).values, to_item.max(0).values
    if pruning:
        weight_to_user, weight_to_item = weight_to_user.relu(), weight_to_item.relu()
    adjacency = torch.zeros(num_users + num_items, num_users + num_items, dtype=x.dtype)
    adjacency[:num_users, num_users:] = weight_to_user * mask  # row: receiver, column: sender
    adjacency[num_users:, :num_users] = (weight_to_item * mask).T
    h = F.normalize(model.id_embedding, dim=1)
    ids = h + adjacency @ h + adjacency @ (adjacency @ h)
    return torch.cat([ids, *views], dim=1)


def dense_loss(model: GRCN, out: torch.Tensor, data, reg_weight: float):
    users, items = out[: data.num_users], out[data.num_users :]
    bpr = 0.0
    for u, i, j in zip(BATCH.users, BATCH.pos_items, BATCH.neg_items, strict=True):
        diff = users[u] @ items[i] - users[u] @ items[j]
        bpr = bpr - torch.log(torch.sigmoid(diff))
    bpr = bpr / len(BATCH.users)
    # MMRec's rows: each user twice (once per item of its pair), the positive and the negative
    ids = model.id_embedding
    user_rows = BATCH.users.repeat_interleave(2)
    item_rows = torch.stack([BATCH.pos_items, BATCH.neg_items], 1).flatten() + data.num_users
    reg = (ids[user_rows] ** 2 + ids[item_rows] ** 2).mean()
    for scorer in model.scorers:
        reg = reg + (scorer.preference[user_rows] ** 2).mean()
    return bpr, reg_weight * reg


@pytest.mark.parametrize(
    ("num_routing", "mode", "pruning"),
    [
        (3, "confid", True),
        (0, "confid", True),
        (2, "confid", False),
        (1, "max", True),
        (2, "mean", True),
    ],
)
def test_forward_and_loss_match_the_dense_formulas(num_routing, mode, pruning):
    data = data_with_features()
    model = GRCN.from_dataset(
        data,
        **SMALL,
        num_routing=num_routing,
        edge_weight_mode=mode,
        pruning=pruning,
        reg_weight=0.3,
    ).double()
    if mode == "confid":  # confidences of both signs, large enough to matter
        with torch.no_grad():
            model.edge_fusion.confidence.normal_()
    expected = dense_grcn(model, data, num_routing, mode, pruning)
    users, items = model()
    assert users.shape == (30, 4 + 2 * 3) and items.shape == (20, 4 + 2 * 3)
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-10)
    bpr, reg = dense_loss(model, expected, data, 0.3)
    terms = model.loss(BATCH)
    assert set(terms) == {"loss_bpr", "loss_reg"}
    assert terms["loss_bpr"].item() == pytest.approx(bpr.item(), rel=1e-10)
    assert terms["loss_reg"].item() == pytest.approx(reg.item(), rel=1e-10)


def test_gradients_match_the_dense_formulas():
    data = data_with_features()
    model = GRCN.from_dataset(data, **SMALL, num_routing=2).double()
    with torch.no_grad():
        model.edge_fusion.confidence.normal_()
    bpr, reg = dense_loss(model, dense_grcn(model, data, 2, "confid", True), data, 1e-3)
    params = [p for _, p in model.named_parameters()]
    expected = torch.autograd.grad(bpr + reg, params)
    actual = torch.autograd.grad(sum(model.loss(BATCH).values()), params)
    for (name, _), a, e in zip(model.named_parameters(), actual, expected, strict=True):
        assert torch.allclose(a, e, atol=1e-10), name


def test_every_parameter_gets_a_gradient():
    model = GRCN.from_dataset(data_with_features(), **SMALL)
    model.on_epoch_start(1)
    assert_all_parameters_get_gradients(model, BATCH)


def test_refuses_an_id_only_dataset_and_round_trips(tmp_path):
    assert_needs_item_features(GRCN, "grcn")
    data = data_with_features()
    model = GRCN.from_dataset(data, **SMALL, edge_weight_mode="max", num_routing=1)
    loaded, _ = assert_round_trip(model, data, tmp_path / "model.pt")
    assert isinstance(loaded, GRCN) and loaded.scorers[0].num_routing == 1
    saved = model.state_dict()
    assert not any(key.startswith(("content.features", "graph.")) for key in saved)
    assert "edge_fusion.confidence" not in saved  # "max" has no confidences


def test_routing_pulls_preferences_towards_the_content_of_their_items():
    data = data_with_features()
    graph = BipartiteGraph(data.edge_index("train"), data.num_users, data.num_items)
    gen = torch.Generator().manual_seed(0)
    p = F.normalize(torch.randn(30, 5, generator=gen), dim=1)
    c = F.normalize(torch.randn(20, 5, generator=gen), dim=1)
    agreement = []
    for num_routing in (0, 1, 3):
        routed = route_preferences(p, c, graph, num_routing)
        assert torch.allclose(routed.norm(dim=1), torch.ones(30))
        agreement.append(edge_dots(graph, routed, c).sum().item())
    assert agreement[0] < agreement[1] < agreement[2]


def test_pruning_drops_edges_whose_sender_distrusts_every_modality():
    data = data_with_features()
    model = GRCN.from_dataset(data, **SMALL)
    with torch.no_grad():
        model.edge_fusion.confidence.fill_(-1.0)
    ids = F.normalize(model.id_embedding, dim=1)
    users, items = model()
    assert torch.equal(torch.cat([users, items])[:, :4], ids)  # every message pruned
    model.edge_fusion.pruning = False
    users, items = model()
    assert not torch.allclose(torch.cat([users, items])[:, :4], ids)


def test_item_id_dropout_ranks_cold_items_by_content_only():
    data = data_with_features()
    users, items = data.edge_index("train")
    cold = items == 19  # move item 19's training pairs to valid: it becomes cold
    split = torch.where(cold, 1, 0)
    rest = [data.edge_index(name) for name in ("valid", "test")]
    data = InteractionDataset.from_interactions(
        torch.cat([users, *(e[0] for e in rest)]),
        torch.cat([items, *(e[1] for e in rest)]),
        torch.cat([split, torch.full((rest[0].size(1),), 1), torch.full((rest[1].size(1),), 2)]),
        {m: data.features(m) for m in data.modalities},
        num_users=30,
        num_items=20,
    )
    model = GRCN.from_dataset(data, **SMALL, item_id_dropout=0.5).eval()
    _, item_emb = model()
    assert torch.equal(item_emb[19, :4], torch.zeros(4))
    assert item_emb[:19, :4].abs().sum(1).min() > 0
    model.train()
    torch.manual_seed(0)
    _, dropped = model()
    assert (dropped[:, :4].abs().sum(1) == 0).any()


@pytest.mark.parametrize("transpose", [False, True])
def test_weighted_products_have_the_dense_values_and_gradients(transpose):
    gen = torch.Generator().manual_seed(0)
    edges = torch.tensor([[3, 0, 2, 0, 1, 3], [1, 2, 0, 0, 3, 2]])  # unsorted on purpose
    graph = BipartiteGraph(edges, num_users=4, num_items=5)
    assert graph.users.tolist() == [0, 0, 1, 2, 3, 3] and graph.items.tolist() == [0, 2, 3, 0, 1, 2]
    values = torch.randn(6, generator=gen, dtype=torch.double, requires_grad=True)
    x = torch.randn(4 if transpose else 5, 3, generator=gen, dtype=torch.double).requires_grad_()
    dense = torch.zeros(4, 5, dtype=torch.double).index_put((graph.users, graph.items), values)
    expected = (dense.T if transpose else dense) @ x
    assert torch.allclose(weighted_matmul(graph, values, x, transpose), expected)
    assert torch.autograd.gradcheck(
        lambda v, y: weighted_matmul(graph, v, y, transpose), (values, x)
    )
    a = torch.randn(4, 3, generator=gen, dtype=torch.double, requires_grad=True)
    b = torch.randn(5, 3, generator=gen, dtype=torch.double, requires_grad=True)
    assert torch.allclose(edge_dots(graph, a, b), (a @ b.T)[graph.users, graph.items])
    assert torch.autograd.gradcheck(lambda p, q: edge_dots(graph, p, q), (a, b))


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_slice):
    settings = {"epochs": 4, "lr": 3e-2, "batch_size": 4096, "seed": 0}
    settings.update(embedding_dim=16, latent_dim=16)
    train_and_check_valid_recall(GRCN, tiktok_slice, settings, margin=0.005)
