import inspect
import itertools
import math
import warnings

import pytest
import torch

from mmgraph.data import load_dataset
from mmgraph.data.sampling import Batch
from mmgraph.errors import CheckpointError, ConfigError
from mmgraph.models import BPRMF, LightGCN, Recommender, get_model, registered_models
from mmgraph.nn.losses import bpr_loss, embedding_l2, gather_triple, triple_bpr_loss
from mmgraph.train import resolve_config, seed_everything
from tests.helpers import tiny_dataset
from tests.test_graph_and_conv import dense_lightgcn_adjacency


def test_bpr_loss_and_l2_against_hand_computation():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 1.0])
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.0))) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)
    a = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # |a|^2 = 6
    b = torch.tensor([[3.0, 0.0], [0.0, 0.0]])  # |b|^2 = 9
    assert embedding_l2(a, b).item() == pytest.approx((6 + 9) / (2 * 2))


def test_triple_head_gathers_the_batch_rows_and_scores_by_inner_product():
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    items = torch.tensor([[1.0, 1.0], [3.0, 0.0], [0.0, -1.0]])
    batch = Batch(torch.tensor([1, 0]), torch.tensor([0, 1]), torch.tensor([2, 2]))
    rows = gather_triple(users, items, batch)
    assert torch.equal(rows.user, users[[1, 0]]) and torch.equal(rows.neg, items[[2, 2]])
    # user 1 scores item 0 at 2 and item 2 at -2; user 0 scores item 1 at 3 and item 2 at 0
    expected = (math.log(1 + math.exp(-4.0)) + math.log(1 + math.exp(-3.0))) / 2
    assert triple_bpr_loss(*rows).item() == pytest.approx(expected, rel=1e-6)


def test_data_hyperparameters_reach_the_data_layer_not_the_constructor():
    for cls in registered_models().values():
        constructor = inspect.signature(cls.__init__).parameters
        assert not set(cls.data_hyperparameters) & set(constructor), cls.name
        assert set(cls.data_hyperparameters) <= set(cls.hyperparameters())
    freedom = get_model("freedom")
    data = tiny_dataset(modalities={"image": 8})
    sparse, dense = freedom.from_dataset(data, knn_k=2), freedom.from_dataset(data, knn_k=5)
    assert sparse.hparams["knn_k"] == 2
    assert sparse.item_graph.values().numel() < dense.item_graph.values().numel()


def test_lightgcn_forward_is_the_layer_mean_of_dense_propagation():
    data = tiny_dataset()
    model = LightGCN.from_dataset(data, embedding_dim=8, num_layers=3)
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items)
    e = model.embedding.weight.detach()
    layers = [e]
    for _ in range(3):
        layers.append(adj @ layers[-1])
    expected = torch.stack(layers).mean(0)
    users, items = model()
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-5)


def test_lightgcn_gradient_matches_dense_autograd():
    data = tiny_dataset()
    model = LightGCN.from_dataset(data, embedding_dim=4, num_layers=2)
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items)
    e = model.embedding.weight.detach().clone().requires_grad_(True)
    readout = (e + adj @ e + adj @ (adj @ e)) / 3
    weights = torch.randn_like(readout)
    (readout * weights).sum().backward()
    users, items = model()
    (torch.cat([users, items]) * weights).sum().backward()
    assert torch.allclose(model.embedding.weight.grad, e.grad, atol=1e-5)


@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_loss_terms_are_named_and_regularise_batch_embeddings(name):
    data = tiny_dataset()
    model = get_model(name).from_dataset(data, reg_weight=0.5)
    batch = Batch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    terms = model.loss(batch)
    assert set(terms) == {"loss_bpr", "loss_reg"}
    assert terms["loss_reg"] > 0
    no_reg = get_model(name).from_dataset(data, reg_weight=0.0)
    assert no_reg.loss(batch)["loss_reg"] == 0


def test_recommend_excludes_seen_items_and_is_sorted():
    data = tiny_dataset(num_users=10, num_items=8, per_user=5)
    model = BPRMF.from_dataset(data, embedding_dim=4)
    users = torch.arange(10)
    scores, items = model.recommend(users, k=8)
    seen = data.user_items("train")
    for user in range(10):
        train_items = set(seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist())
        finite = torch.isfinite(scores[user])
        assert set(items[user][finite].tolist()).isdisjoint(train_items)
        assert int(finite.sum()) == 8 - len(train_items)
        assert torch.all(scores[user][finite][:-1] >= scores[user][finite][1:])
    kept, _kept_items = model.recommend(users, k=3, exclude_seen=False)
    full = model.score(users)
    assert torch.allclose(kept, torch.topk(full, 3).values)
    assert model.training  # recommend restores the mode


def test_save_and_load_round_trip(tmp_path):
    data = tiny_dataset()
    model = LightGCN.from_dataset(data, embedding_dim=8, num_layers=2)
    model.save(tmp_path / "model.pt")
    loaded = Recommender.load(tmp_path / "model.pt", data)
    assert isinstance(loaded, LightGCN) and loaded.encoder.num_layers == 2
    for a, b in zip(model(), loaded()):
        assert torch.equal(a, b)
    assert "adj" not in torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]


def test_load_rejects_other_dataset_sizes(tmp_path):
    model = BPRMF.from_dataset(tiny_dataset())
    model.save(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="30 users x 20 items"):
        Recommender.load(tmp_path / "model.pt", tiny_dataset(num_users=31))


def test_unknown_hyperparameter_and_model_are_errors():
    with pytest.raises(ConfigError, match="embeding_dim"):
        LightGCN.from_dataset(tiny_dataset(), embeding_dim=3)
    with pytest.raises(ConfigError, match="unknown model 'nope'; available: .*lightgcn"):
        get_model("nope")


def test_registry_lists_the_foundation_models():
    assert {"bpr", "lightgcn"} <= set(registered_models())
    assert LightGCN.hyperparameters() == {"embedding_dim": 64, "num_layers": 3, "reg_weight": 1e-4}


#: MMSSL with its sampled critic: the full one takes about 8 s per TikTok step here.
_SETTINGS = {"mmssl": {"num_candidates": 1024}}


def _two_training_steps(name: str) -> dict[str, torch.Tensor]:
    """Parameters and gradients after two default training steps on the bundled TikTok."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader reports the cold users it drops
        dataset = load_dataset("tiktok")
    model_cls = get_model(name)
    run = resolve_config(model_cls, [("test", {"device": "cpu", **_SETTINGS.get(name, {})})])
    seed_everything(0)
    model = model_cls.from_dataset(dataset, **run.hparams)
    optimizers = model.configure_optimizers(run.train.lr, run.train.weight_decay)
    sampler = model.make_sampler(
        dataset, run.train.batch_size, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    model.train()
    for batch in itertools.islice(iter(sampler), 2):
        model.training_step(batch, list(optimizers))
    named = dict(model.named_parameters())
    return {
        **{f"{key}.grad": p.grad.clone() for key, p in named.items() if p.grad is not None},
        **{key: p.detach().clone() for key, p in named.items()},
    }


@pytest.mark.parametrize("name", sorted(registered_models()))
def test_training_with_two_threads_is_reproducible_bit_for_bit(name):
    # On the CPU a gather's autograd backward (an accumulating index_put_) adds rows in an
    # order that depends on the threads; the models gather with index_select and
    # bpr_scores, whose backward passes add in index order.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = _two_training_steps(name), _two_training_steps(name)
    finally:
        torch.set_num_threads(threads)
    assert first.keys() == second.keys()
    assert [key for key in first if not torch.equal(first[key], second[key])] == []
