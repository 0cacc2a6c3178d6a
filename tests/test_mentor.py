import math

import pytest
import torch
import torch.nn.functional as F

from mmgraph.data.knn import fused_knn_graph
from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError, DataError
from mmgraph.models import MENTOR, get_model
from mmgraph.nn import AlignmentHead
from mmgraph.nn.noise import uniform_like
from tests.conftest import requires_shared
from tests.helpers import (
    MODALITIES,
    assert_all_parameters_get_gradients,
    assert_needs_item_features,
    assert_round_trip,
    parameters_without_gradient,
    tiny_dataset,
    train_and_check_valid_recall,
    user_slice,
)
from tests.test_graph_and_conv import dense_lightgcn_adjacency

# keep the kNN disk cache of these tests out of the user's home
pytestmark = pytest.mark.usefixtures("isolated_graph_cache")
BATCH = Batch(torch.tensor([0, 1, 1, 7]), torch.tensor([2, 3, 4, 5]), torch.tensor([6, 7, 8, 9]))


def build(num_modalities=2, **hparams):
    """MENTOR with every loss term: the paper's feature masking (weight 1.5) unless given."""
    hparams.setdefault("mask_weight_f", 1.5)
    torch.manual_seed(0)
    data = tiny_dataset(modalities=MODALITIES[num_modalities])
    return data, MENTOR.from_dataset(data, embedding_dim=4, knn_k=3, **hparams)


def dense_branch(data, branch, item_input):
    """x0 + A x0 + A^2 x0 of one branch, then items get + S items (dense S)."""
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items)
    x0 = F.normalize(torch.cat([branch.preference, branch.projector(item_input)]), dim=1)
    out = x0 + adj @ x0 + adj @ (adj @ x0)
    users, items = out[: data.num_users], out[data.num_users :]
    graph = fused_knn_graph(data, 3, cache_dir=None).to_dense()
    return users, items + graph @ items


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
def test_forward_is_the_weighted_concatenation_of_dense_branches(num_modalities):
    data, model = build(num_modalities)
    users, items = model()
    assert users.shape == (30, 4 * num_modalities) and items.shape == (20, 4 * num_modalities)
    weights = model.fusion.weight
    for m, modality in enumerate(data.modalities):
        branch_users, branch_items = dense_branch(
            data, model.modal_inputs[m], data.features(modality)
        )
        block = slice(4 * m, 4 * m + 4)
        assert torch.allclose(users[:, block], weights[:, m : m + 1] * branch_users, atol=1e-5)
        assert torch.allclose(items[:, block], branch_items, atol=1e-5)
    model.eval()  # ranking has no randomness: eval and train mode agree
    assert torch.equal(model()[0], users)


def test_loss_terms_match_a_dense_recomputation():
    data, model = build(2)
    terms = model.loss(BATCH)
    assert set(terms) == {"loss_bpr", "loss_reg", "loss_align", "loss_mask_f", "loss_mask_g"}
    users, items = model()
    u = users[BATCH.users]
    pos, neg = (u * items[BATCH.pos_items]).sum(1), (u * items[BATCH.neg_items]).sum(1)
    assert terms["loss_bpr"].item() == pytest.approx(
        -F.logsigmoid(pos - neg).mean().item(), rel=1e-5
    )
    prefs = sum(b.preference[BATCH.users].pow(2).mean() for b in model.modal_inputs)
    reg = 1e-3 * (prefs + model.fusion.weight.pow(2).mean())
    assert terms["loss_reg"].item() == pytest.approx(reg.item(), rel=1e-5)
    # Alignment views [U + I, 2d]: guide = [id | id], per modality [m | m], fused = [users; items].
    views = []
    for branch, item_input in (
        (model.modal_inputs[0], data.features("image")),
        (model.modal_inputs[1], data.features("text")),
        (model.id_input, model.id_items),
    ):
        views.append(torch.cat(dense_branch(data, branch, item_input)).repeat(1, 2))
    image, text, guide = views
    expected = 0.1 * AlignmentHead()(guide, torch.cat([users, items]), [image, text])
    assert terms["loss_align"].item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
def test_alignment_value_and_gradient_equal_the_formula_on_materialised_views(num_modalities):
    """D(a, b) = |var_a - var_b| + |mean_a - mean_b| (torch's mean and unbiased var) over the
    pairs of levels 1-4, on views built in full: [id | ... | id], [m | ... | m], fused."""
    data, model = build(num_modalities)
    with torch.no_grad():  # one modality starts at weight 1: fused == modal, |0| has no slope
        model.fusion.weight.uniform_(0.5, 1.5)
    loss = model.loss(BATCH)["loss_align"]
    params = [model.id_items, model.fusion.weight, model.modal_inputs[0].preference]
    got = torch.autograd.grad(loss, params)

    m = num_modalities
    names = list(MODALITIES[num_modalities])
    modal = [
        torch.cat(dense_branch(data, branch, data.features(name))).repeat(1, m)
        for branch, name in zip(model.modal_inputs, names, strict=True)
    ]
    guide = torch.cat(dense_branch(data, model.id_input, model.id_items)).repeat(1, m)
    fused = torch.cat(model())

    def distance(a, b):
        return (a.var() - b.var()).abs() + (a.mean() - b.mean()).abs()

    pairs = [(guide, fused)] + [(guide, v) for v in modal] + [(fused, v) for v in modal]
    pairs += [(a, b) for i, a in enumerate(modal) for b in modal[i + 1 :]]
    expected = 0.1 * sum(distance(a, b) for a, b in pairs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    want = torch.autograd.grad(expected, params)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-7)


def test_graph_view_contrast_matches_a_dense_noisy_recomputation():
    """Value and gradient; the last hop is computed (and its noise drawn) only for the rows the
    loss reads: the batch's users, its positive items and their kNN neighbours."""
    data, model = build(2)
    torch.manual_seed(5)
    loss = model.loss(BATCH)["loss_mask_g"]
    params = [p for branch in model.noisy_inputs for p in branch.parameters()]
    params.append(model.fusion.weight)
    adj = dense_lightgcn_adjacency(data.edge_index(), data.num_users, data.num_items)
    graph = fused_knn_graph(data, 3, cache_dir=None).to_dense()
    features = [data.features("image"), data.features("text")] * 2  # two noisy copies each
    x = torch.stack(
        [
            F.normalize(torch.cat([branch.preference, branch.projector(feat)]), dim=1)
            for branch, feat in zip(model.noisy_inputs, features, strict=True)
        ],
        dim=1,
    )  # [U + I, 4, d]
    u, i = BATCH.users.unique(), BATCH.pos_items.unique()
    read_items = (graph[i] != 0).any(0)
    read_items[i] = True
    read_items = read_items.nonzero().squeeze(1)  # the items the kNN hop reads
    rows = torch.cat([u, data.num_users + read_items])

    def perturb(h):
        noise = uniform_like(h)
        return h + torch.sign(h) * 0.1 * noise / noise.norm(dim=-1, keepdim=True)

    torch.manual_seed(5)  # one uniform tensor for hop 1 ([U + I, 4, d]), one for hop 2's rows
    h1 = perturb(torch.einsum("nm,mbd->nbd", adj, x))
    h2 = perturb(torch.einsum("nm,mbd->nbd", adj[rows], h1))
    total = (x + h1)[rows] + h2
    users, items = total[: len(u)], total[len(u) :]
    items = items[torch.searchsorted(read_items, i)] + torch.einsum(
        "ij,jbd->ibd", graph[i][:, read_items], items
    )
    users = model.fusion.weight[u].repeat(1, 2).unsqueeze(-1) * users  # w_image, w_text, ...

    def info_nce(a, b):  # one direction, cosine, temperature 0.2, no intra-view negatives
        logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.2
        return F.cross_entropy(logits, torch.arange(a.size(0)))

    expected = 1e-3 * (
        info_nce(users[:, :2].flatten(1), users[:, 2:].flatten(1))
        + info_nce(items[:, :2].flatten(1), items[:, 2:].flatten(1))
    )
    assert 0 < len(read_items) < data.num_items  # the test graph exercises the restriction
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    for got, want in zip(
        torch.autograd.grad(loss, params), torch.autograd.grad(expected, params), strict=True
    ):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-9)


def test_reference_bpr_is_log2_and_contrast_population_differs(monkeypatch):
    _, faithful = build(2)
    _, reference = build(2, reference=True)
    reference.load_state_dict(faithful.state_dict())
    bpr = faithful.loss(BATCH)["loss_bpr"]
    assert reference.loss(BATCH)["loss_bpr"].item() == pytest.approx(bpr.item() / math.log(2))

    for model, expected in ((faithful, [3, 4]), (reference, [30, 20])):
        rows: list[int] = []

        def record(a, b, rows=rows):
            rows.append(a.size(0))
            return a.sum() * 0

        monkeypatch.setattr(model.contrast, "forward", record)
        model.loss(BATCH)
        assert rows == expected  # unique batch users/positive items vs all

    # A cap samples the batch's unique nodes (3 users, 4 items) and leaves the reference alone.
    for hparams, expected in (({}, [2, 2]), ({"reference": True}, [30, 20])):
        _, capped = build(2, max_contrast_nodes=2, **hparams)
        sizes: list[int] = []
        monkeypatch.setattr(
            capped.contrast, "forward", lambda a, b, sizes=sizes: sizes.append(len(a)) or a.sum()
        )
        capped.loss(BATCH)
        assert sizes == expected


def test_gradients_reach_every_parameter_and_reference_leaves_the_masking_mlp_untrained():
    _, model = build(2)
    assert_all_parameters_get_gradients(model, BATCH)

    _, model = build(2, reference=True)
    terms = model.loss(BATCH)
    assert not terms["loss_mask_f"].requires_grad  # the released code's constant
    sum(terms.values()).backward()
    missing = parameters_without_gradient(model)
    assert missing == ["feature_masking.target.weight", "feature_masking.target.bias"]


def test_zero_weights_skip_their_branches():
    _, model = build(2, mask_weight_g=0.0, align_weight=0.0, mask_weight_f=0.0)
    assert len(model.noisy_inputs) == 0 and model.id_input is None and model.id_items is None
    assert set(model.loss(BATCH)) == {"loss_bpr", "loss_reg"}
    _, full = build(2)
    assert len(full.noisy_inputs) == 4  # two noisy copies of each modality branch
    default = MENTOR.from_dataset(tiny_dataset(modalities=MODALITIES[2]), knn_k=3)
    assert default.feature_masking is None and "loss_mask_f" not in default.loss(BATCH)


def test_configuration_errors():
    assert_needs_item_features(MENTOR, "mentor")
    data = tiny_dataset(modalities={"image": 8})
    with pytest.raises(ConfigError, match=r"mentor temperature must be a number > 0, got 0.0"):
        MENTOR.from_dataset(data, temperature=0.0)
    with pytest.raises(ConfigError, match=r"mentor dropout must be a number in \[0, 1\), got 1.0"):
        MENTOR.from_dataset(data, dropout=1.0)
    with pytest.raises(DataError, match="k < num_items"):
        MENTOR.from_dataset(data, knn_k=20)
    assert get_model("mentor") is MENTOR
    defaults = MENTOR.hyperparameters()
    assert defaults["knn_k"] == 10 and defaults["mask_weight_g"] == 1e-3
    assert MENTOR.train_defaults["lr"] == 1e-4 and "dataset" not in defaults


def test_save_and_load_round_trip(tmp_path):
    data, model = build(2)
    assert_round_trip(model, data, tmp_path / "mentor.pt")


def test_checkpoints_with_the_unused_masking_head_still_load():
    """Before the head was left out at mask_weight_f=0, such checkpoints stored its weights."""
    _, trained_with_head = build(2)
    _, model = build(2, mask_weight_f=0)
    assert model.feature_masking is None
    model.load_state_dict(trained_with_head.state_dict())
    for a, b in zip(model(), trained_with_head(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict({**trained_with_head.state_dict(), "stray.weight": torch.zeros(1)})


@requires_shared("tiktok")
def test_training_on_real_tiktok_users_improves_valid_recall(tiktok_full):
    data = user_slice(tiktok_full, 2000, 3000)  # 1000 users, ~10k interactions, image + audio
    # 5 epochs: with MMRec's negative pool (the default) valid recall rises more slowly on
    # this slice, whose valid/test items are often absent from its training rows.
    settings = {"epochs": 5, "lr": 1e-3, "batch_size": 1024, "embedding_dim": 16, "seed": 0}
    train_and_check_valid_recall(MENTOR, data, settings, margin=0.005)


def test_modality_item_embeddings_are_the_item_outputs_of_each_branch():
    data, model = build(2)
    per_modality = model.modality_item_embeddings()
    assert list(per_modality) == data.modalities
    for m, modality in enumerate(data.modalities):
        _, items = dense_branch(data, model.modal_inputs[m], data.features(modality))
        assert torch.allclose(per_modality[modality], items, atol=1e-5)


def test_mentor_steps_with_the_fused_adam_kernel_other_models_do_not():
    _, model = build(2)
    assert model.configure_optimizers(1e-3, 0.0)[0].defaults["fused"] is True
    lightgcn = get_model("lightgcn").from_dataset(tiny_dataset())
    assert not lightgcn.configure_optimizers(1e-3, 0.0)[0].defaults["fused"]


def test_training_step_gradient_equals_the_gradient_of_the_summed_loss():
    _, model = build(2)
    torch.manual_seed(1)
    terms = model.loss(BATCH)
    sum(terms.values()).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    torch.manual_seed(1)  # same noise and masks: two backward passes, one gradient
    logged = model.training_step(BATCH, [torch.optim.SGD(model.parameters(), lr=0.0)])
    assert logged.keys() == terms.keys()
    assert all(logged[key].item() == pytest.approx(terms[key].item()) for key in terms)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[name], atol=1e-7), name
