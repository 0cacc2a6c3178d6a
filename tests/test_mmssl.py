import warnings

import pytest
import torch

from mmgraph.data import InteractionDataset, load_dataset
from mmgraph.data.sampling import DistinctUserSampler
from mmgraph.errors import DataError
from mmgraph.eval import Evaluator
from mmgraph.models import Recommender, get_model
from mmgraph.models.mmssl import MMSSL
from mmgraph.nn import AdversarialDiscriminator
from mmgraph.train import Trainer, resolve_config, seed_everything
from tests.conftest import requires_shared, shared_data_dir
from tests.helpers import tiny_dataset

MODALITIES = {"image": 8, "audio": 6}


def build(data=None, **hparams):
    torch.manual_seed(0)
    return MMSSL.from_dataset(data or tiny_dataset(modalities=MODALITIES), **hparams)


def batches(model, data, batch_size=16, seed=0):
    return model.make_sampler(data, batch_size, torch.Generator().manual_seed(seed), "cpu")


def run_epoch(model, data, optimizers, epoch):
    model.train()
    model.on_epoch_start(epoch)
    for batch in batches(model, data, seed=epoch):
        terms = model.training_step(batch, optimizers)
    return terms


def test_registered_with_paper_training_defaults():
    assert get_model("mmssl") is MMSSL
    run = resolve_config(MMSSL)
    assert (run.train.lr, run.train.weight_decay, run.train.batch_size, run.train.patience) == (
        5.5e-4,
        0.01,
        1024,
        7,
    )
    assert run.hparams["critic_lr"] == 3e-4 and run.hparams["cl_rate"] == 0.03


def test_needs_at_least_one_modality():
    with pytest.raises(DataError, match="modality"):
        MMSSL.from_dataset(tiny_dataset())


@pytest.mark.parametrize("modalities", [{"text": 5}, {"a": 4, "b": 3, "c": 7}])
def test_any_number_of_modalities(modalities):
    data = tiny_dataset(modalities=modalities)
    model = build(data)
    user, item = model()
    assert user.shape == (30, 64) and item.shape == (20, 64)
    terms = run_epoch(model, data, model.configure_optimizers(1e-3, 0.0), 1)
    assert set(terms) == {"loss_bpr", "loss_reg", "loss_feat", "loss_cl", "loss_adv", "loss_critic"}
    assert all(torch.isfinite(v) for v in terms.values())


def test_sampler_is_the_distinct_user_sampler():
    model, data = build(), tiny_dataset(modalities=MODALITIES)
    assert isinstance(batches(model, data), DistinctUserSampler)


def test_optimisers_split_the_parameters_between_recommender_and_critic():
    model = build()
    generator_opt, critic_opt = model.configure_optimizers(5.5e-4, 0.01)
    assert isinstance(generator_opt, torch.optim.AdamW) and isinstance(critic_opt, torch.optim.Adam)
    assert critic_opt.defaults["betas"] == (0.5, 0.9) and critic_opt.defaults["lr"] == 3e-4
    gen = {id(p) for g in generator_opt.param_groups for p in g["params"]}
    critic = {id(p) for g in critic_opt.param_groups for p in g["params"]}
    assert critic == {id(p) for p in model.critic.parameters()}
    assert not gen & critic and gen | critic == {id(p) for p in model.parameters()}


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(module, before):
    return {name for name, p in module.named_parameters() if not torch.equal(p, before[name])}


@pytest.mark.parametrize("frozen_side", ["critic", "recommender"])
def test_each_step_updates_only_its_own_parameters(frozen_side):
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data)
    generator_opt, critic_opt = model.configure_optimizers(1e-2, 0.01)
    # a zero learning rate (and hence zero decay) switches one side's step off
    off = critic_opt if frozen_side == "critic" else generator_opt
    for group in off.param_groups:
        group["lr"] = 0.0
    critic_before = snapshot(model.critic)
    all_before = snapshot(model)
    model.train()
    model.training_step(next(iter(batches(model, data))), [generator_opt, critic_opt])
    critic_changed = changed(model.critic, critic_before)
    recommender_changed = {n for n in changed(model, all_before) if not n.startswith("critic.")}
    if frozen_side == "critic":
        assert not critic_changed and "user_embedding.weight" in recommender_changed
        # every recommender parameter learns (the attention and encoders too)
        assert {"attention.w_q", "attention.w_k", "attention.w_v", "attention.w_out"} <= (
            recommender_changed
        )
    else:
        assert not recommender_changed and "net.0.weight" in critic_changed


def test_generated_graphs_are_non_empty_and_change_with_training():
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data)
    assert model.structure.k == 10  # the floor: int(20 * 1e-4) = 0 would disable the graphs
    optimizers = model.configure_optimizers(1e-2, 0.0)
    run_epoch(model, data, optimizers, 1)
    assert not bool(model.structure.generated)  # epoch 1 propagates on the training graph
    run_epoch(model, data, optimizers, 2)
    first = model.structure.topk_items.clone()
    assert bool((first >= 0).all())  # every user has k edges in every modality
    seen = {(u, i) for u, i in data.edge_index("train").T.tolist()}
    assert all((u, i) not in seen for u, row in enumerate(first[0].tolist()) for i in row)
    graphs = model.structure.graphs(model.train_graph)
    assert all(g.to_user._nnz() == 30 * 10 for g in graphs)
    for epoch in (3, 4, 5):
        run_epoch(model, data, optimizers, epoch)
    assert not torch.equal(model.structure.topk_items, first)


def test_contrastive_views_come_from_the_generated_graph():
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data)
    model.structure.refresh(*model.modality_branch(dropout=False), model.seen_items)
    out = model.propagate()
    graph = model.structure.graphs(model.train_graph)[0]
    expected = graph.to_user @ model.item_embedding.weight
    assert torch.allclose(out.structure_user[0], expected, atol=1e-6)


@pytest.mark.parametrize("reference", [False, True])
def test_without_generated_graphs_the_views_stay_on_the_training_graph(reference):
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data, generate_graphs=False, reference=reference)
    optimizers = model.configure_optimizers(1e-2, 0.0)
    for epoch in (1, 2, 3):
        run_epoch(model, data, optimizers, epoch)
    assert not bool(model.structure.generated)
    assert bool((model.structure.topk_items == -1).all())
    model.eval()
    out = model.propagate()
    expected = model.train_graph.to_user @ model.item_embedding.weight
    for view in out.structure_user:
        assert torch.allclose(view, expected, atol=1e-6)
    with_graphs = build(data, reference=reference)
    optimizers = with_graphs.configure_optimizers(1e-2, 0.0)
    for epoch in (1, 2):
        run_epoch(with_graphs, data, optimizers, epoch)
    assert bool(with_graphs.structure.generated)  # the switch, not the schedule, kept it off


def test_reference_mode_reproduces_the_released_code():
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data, reference=True)
    assert model.structure.k == 0  # int(20 * 1e-4)
    assert model.critic.net[1].negative_slope == 1.0 and model.critic.batch_norm
    assert model.attention.reference
    graph = model.train_graph
    assert graph.to_user_t is not graph.to_item  # one-sided normalisation
    optimizers = model.configure_optimizers(5.5e-4, 0.01)
    run_epoch(model, data, optimizers, 1)
    # after the second batch the modality graphs are rebuilt from nothing: empty
    assert all(g.to_user._nnz() == 0 for g in model.structure.graphs(graph))
    out = model.propagate()
    assert all(bool((view == 0).all()) for view in out.structure_user)
    lrs = [g["lr"] for g in optimizers[0].param_groups]
    model.on_epoch_start(200)
    assert [g["lr"] for g in optimizers[0].param_groups] == lrs  # scheduler never stepped


def test_faithful_learning_rate_follows_the_codes_schedule():
    model = build()
    generator_opt, critic_opt = model.configure_optimizers(5.5e-4, 0.01)
    model.on_epoch_start(51)
    assert generator_opt.param_groups[0]["lr"] == pytest.approx(5.5e-4 * 0.96)
    assert critic_opt.param_groups[0]["lr"] == 3e-4


def test_candidate_critic_has_width_c_and_trains():
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data, num_candidates=8)
    assert isinstance(model.critic, AdversarialDiscriminator)
    assert model.critic.in_features == 8
    out = model.propagate()
    batch = next(iter(batches(model, data)))
    fake, real = model.critic_rows(out, batch)
    # real rows once per user; the critic compares them with both modalities' fake rows
    assert fake.shape == (2 * len(batch), 8) and real.shape == (len(batch), 8)
    assert torch.allclose(real.norm(dim=1), torch.ones(len(batch)))
    # rows are sorted score profiles (a column is a different item at every step)
    assert bool((fake[:, :-1] >= fake[:, 1:]).all() and (real[:, :-1] >= real[:, 1:]).all())
    terms = run_epoch(model, data, model.configure_optimizers(1e-3, 0.0), 1)
    assert all(torch.isfinite(v) for v in terms.values())


def test_full_width_rows_are_the_codes_u_sim_with_positives_zeroed():
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data)
    out = model.propagate()
    batch = next(iter(batches(model, data)))
    fake, real = model.critic_rows(out, batch)
    assert fake.shape == (2 * len(batch), 20) and fake.requires_grad and not real.requires_grad
    seen = model.seen_items
    for row, user in enumerate(batch.users.tolist()):
        items = seen.indices[seen.indptr[user] : seen.indptr[user + 1]]
        assert bool((fake[row, items] == 0).all())
        scores = out.modality_user[0][user] @ out.modality_item[0].T
        scores[items] = 0
        assert torch.allclose(fake[row], scores / scores.norm(), atol=1e-6)


def test_save_and_load_restore_the_generated_graphs(tmp_path):
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data)
    model.structure.refresh(*model.modality_branch(dropout=False), model.seen_items)
    model.eval()
    expected = model.score(torch.arange(5))
    model.save(tmp_path / "m.pt")
    loaded = Recommender.load(tmp_path / "m.pt", data).eval()
    assert bool(loaded.structure.generated)
    assert torch.allclose(loaded.score(torch.arange(5)), expected, atol=1e-6)


def make_trainer(data, out_dir, epochs, **overrides):
    settings = {"epochs": epochs, "seed": 3, "batch_size": 16, **overrides}
    run = resolve_config(MMSSL, [("test", settings)])
    seed_everything(run.train.seed)
    model = MMSSL.from_dataset(data, **run.hparams)
    evaluator = Evaluator(data, ks=run.train.ks)
    return Trainer(model, data, run, evaluator.evaluate, out_dir, progress=False, log=None)


def test_trainer_resume_is_exact(tmp_path):
    data = tiny_dataset(modalities=MODALITIES)
    straight = make_trainer(data, tmp_path / "a", 4).fit()
    make_trainer(data, tmp_path / "b", 2).fit()
    resumed = make_trainer(data, tmp_path / "b", 4).fit(resume=True)
    assert resumed.to_dict() == straight.to_dict()
    for record in straight.history:  # the critic's loss is logged, not added to the total
        losses = record["loss"]
        assert losses["loss_critic"] != 0
        expected = sum(v for k, v in losses.items() if k not in ("loss", "loss_critic"))
        assert losses["loss"] == pytest.approx(expected)


def tiktok_slice(every: int = 8) -> InteractionDataset:
    """Every ``every``-th user of the shared TikTok set (user ids are sorted by activity, so
    a stride keeps the degree mix), items renumbered to those they touch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = load_dataset(shared_data_dir() / "tiktok")
    edges = [full.edge_index(split) for split in ("train", "valid", "test")]
    split = torch.cat([torch.full((e.size(1),), label) for label, e in enumerate(edges)])
    users, items = torch.cat(edges, dim=1)
    keep = users % every == 0
    kept_items, items = torch.unique(items[keep], return_inverse=True)
    features = {m: x[kept_items] for m, x in full.feature_dict().items()}
    return InteractionDataset.from_interactions(
        users[keep] // every, items, split[keep], features, name="tiktok-slice"
    )


@requires_shared("tiktok")
def test_short_run_on_real_data_beats_the_untrained_model():
    data = tiktok_slice()  # 1,164 users, 3,229 items, 7,232 training interactions
    trainer = make_trainer(data, None, 2, batch_size=1024, lr=5e-3, num_candidates=128)
    untrained = Evaluator(data, ks=[20]).evaluate(trainer.model, "valid")["recall@20"]
    result = trainer.fit()
    assert result.valid["recall@20"] > untrained + 0.02  # measured: 0.005 -> 0.054
    assert all(torch.isfinite(torch.tensor(r["loss"]["loss"])) for r in result.history)


def test_zero_adversarial_weight_skips_the_critic():
    data = tiny_dataset(modalities=MODALITIES)
    model = build(data, adv_rate=0.0)
    before = [p.detach().clone() for p in model.critic.parameters()]
    terms = run_epoch(model, data, model.configure_optimizers(1e-3, 0.0), 1)
    assert terms["loss_adv"] == 0 and terms["loss_critic"] == 0
    assert all(torch.equal(p, q) for p, q in zip(model.critic.parameters(), before, strict=True))
