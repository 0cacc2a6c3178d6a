import numpy as np
import pytest
import torch

from mmgraph.data import build_csr
from mmgraph.nn.structure import (
    ModalityGraphGenerator,
    gumbel_real_rows,
    interaction_rows,
    normalized_unseen_scores,
    sample_candidates,
    topk_unseen_items,
    user_item_graph,
)

# users 0..2, items 0..3: user 0 -> {0, 1}, user 1 -> {1}, user 2 -> {1, 3}
USERS = torch.tensor([0, 0, 1, 2, 2])
ITEMS = torch.tensor([0, 1, 1, 1, 3])
DENSE = torch.tensor([[1.0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 1]])


def seen():
    return build_csr(USERS, ITEMS, 3)


def test_symmetric_graph_is_lightgcn_normalisation_and_its_own_transpose():
    graph = user_item_graph(USERS, ITEMS, 3, 4, symmetric=True)
    deg_u, deg_i = DENSE.sum(1), DENSE.sum(0)
    expected = DENSE / torch.sqrt(deg_u[:, None] * deg_i[None, :]).clamp(min=1)
    assert torch.allclose(graph.to_user.to_dense(), expected)
    assert torch.allclose(graph.to_item.to_dense(), expected.T)
    assert graph.to_user_t is graph.to_item


def test_one_sided_graph_matches_the_released_code():
    graph = user_item_graph(USERS, ITEMS, 3, 4, symmetric=False)
    to_user = DENSE / DENSE.sum(1, keepdim=True).sqrt()
    to_item = DENSE.T / DENSE.T.sum(1, keepdim=True).clamp(min=1).sqrt()
    assert torch.allclose(graph.to_user.to_dense(), to_user)
    assert torch.allclose(graph.to_item.to_dense(), to_item)
    assert torch.allclose(graph.to_user_t.to_dense(), to_user.T)
    assert torch.allclose(graph.to_item_t.to_dense(), to_item.T)


def test_duplicate_edges_count_once_and_empty_graphs_propagate_zeros():
    graph = user_item_graph(torch.tensor([0, 0]), torch.tensor([2, 2]), 2, 3)
    assert graph.to_user.to_dense()[0, 2] == 1.0
    empty = user_item_graph(torch.tensor([], dtype=torch.long), torch.tensor([]), 2, 3)
    assert torch.equal(empty.to_user @ torch.ones(3, 4), torch.zeros(2, 4))


def test_interaction_rows_full_and_on_candidate_columns():
    users = torch.tensor([2, 0])
    assert torch.equal(interaction_rows(seen(), users, 4), DENSE[[2, 0]])
    columns = torch.tensor([3, 0])
    assert torch.equal(interaction_rows(seen(), users, 4, columns), DENSE[[2, 0]][:, [3, 0]])


def test_normalized_unseen_scores_is_the_codes_u_sim():
    user = torch.tensor([[1.0, 2.0]])
    item = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    observed = torch.tensor([[0.0, 1.0, 0.0]])
    # raw scores [1, 2, 11]; the observed item is zeroed -> [1, 0, 11] / sqrt(122)
    expected = torch.tensor([[1.0, 0.0, 11.0]]) / np.sqrt(122)
    assert torch.allclose(normalized_unseen_scores(user, item, observed), expected)


def _hand_real_rows(observed, collaborative, gumbel, reference, tau=0.005, scale=1e-5, pre=100.0):
    r, g, s = (t.double().numpy() for t in (observed, gumbel, collaborative))
    logits = r + scale * g / tau if reference else (r + scale * g) / tau
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    rows = soft + pre * s
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("reference", [False, True])
def test_gumbel_real_rows_match_a_hand_computation(reference):
    observed = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    gumbel = torch.tensor([[0.3, -1.2, 2.0, 0.1], [1.5, 0.0, -0.4, 0.7]])
    collaborative = torch.tensor([[0.0, 0.01, 0.0, -0.02], [0.005, -0.001, 0.002, 0.0]])
    rows = gumbel_real_rows(observed, collaborative, gumbel=gumbel, reference=reference)
    expected = _hand_real_rows(observed, collaborative, gumbel, reference)
    assert np.allclose(rows.double().numpy(), expected, atol=1e-6)


def test_faithful_real_rows_put_the_softmax_mass_on_observed_items():
    observed = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    rows = gumbel_real_rows(observed, torch.zeros(1, 4), gumbel=torch.zeros(1, 4))
    assert torch.allclose(rows, torch.tensor([[1.0, 0.0, 1.0, 0.0]]) / np.sqrt(2))
    code = gumbel_real_rows(observed, torch.zeros(1, 4), gumbel=torch.zeros(1, 4), reference=True)
    # the code's precedence: unobserved items keep weight, observed ones get only e times more
    assert code[0, 1] > 0 and (code[0, 0] / code[0, 1]).item() == pytest.approx(np.e)


def test_sample_candidates_are_distinct_and_include_the_given_items():
    gen = torch.Generator().manual_seed(0)
    include = torch.tensor([7, 3, 7])
    cand = sample_candidates(50, 10, include, generator=gen)
    assert cand.numel() == 10 and cand.unique().numel() == 10
    assert {3, 7} <= set(cand.tolist())
    with pytest.raises(ValueError):
        sample_candidates(5, 6)


def test_topk_unseen_items_skips_seen_items_and_pads_with_minus_one():
    user_emb = torch.tensor([[1.0], [1.0]])
    item_emb = torch.tensor([[4.0], [3.0], [2.0], [1.0]])
    top = topk_unseen_items(user_emb, item_emb, seen(), torch.tensor([0, 1]), 3)
    assert top.tolist() == [[2, 3, -1], [0, 2, 3]]


def test_generator_refresh_builds_k_edges_per_user_and_restores_from_state_dict():
    gen = ModalityGraphGenerator(3, 4, num_modalities=2, k=1)
    fallback = user_item_graph(USERS, ITEMS, 3, 4)
    assert gen.graphs(fallback)[0] is fallback
    item_a = torch.tensor([[0.0], [0.0], [1.0], [0.5]])  # modality a prefers item 2
    item_b = torch.tensor([[0.0], [0.0], [0.5], [1.0]])  # modality b prefers item 3
    users = torch.ones(3, 1)
    gen.refresh([users, users], [item_a, item_b], seen())
    assert gen.topk_items[:, :, 0].tolist() == [[2, 2, 2], [3, 3, 2]]  # user 2 has seen item 3
    graph_a, graph_b = gen.graphs(fallback)
    assert graph_a.to_user.to_dense()[:, 2].tolist() == pytest.approx([1 / np.sqrt(3)] * 3)
    assert graph_b.to_user.to_dense()[:, 3].tolist() == pytest.approx([1 / np.sqrt(2)] * 2 + [0])
    other = ModalityGraphGenerator(3, 4, num_modalities=2, k=1)
    other.load_state_dict(gen.state_dict())
    assert torch.equal(other.graphs(fallback)[1].to_user.to_dense(), graph_b.to_user.to_dense())


def test_generator_rebuild_keeps_only_accumulated_users():
    gen = ModalityGraphGenerator(3, 4, num_modalities=1, k=2)
    gen.accumulate(torch.tensor([1]), torch.tensor([[[0, 2]]]))
    gen.rebuild()
    assert gen.topk_items[0].tolist() == [[-1, -1], [0, 2], [-1, -1]]
    gen.rebuild()  # nothing accumulated since: the released code's empty graph
    assert gen.graphs(None)[0].to_user._nnz() == 0


def test_sort_rows_descending_matches_torch_sort_and_routes_gradients():
    from mmgraph.nn.structure import sort_rows_descending

    rows = torch.tensor([[0.5, -1.0, 2.0, 0.5, 0.0], [-0.0, 3.0, -2.0, 1.0, float("-inf")]])
    want = rows.sort(dim=1, descending=True).values
    assert torch.equal(sort_rows_descending(rows), want)
    leaf = rows.clone().requires_grad_(True)
    out = sort_rows_descending(leaf)
    assert torch.equal(out.detach(), want)
    # weight position j by j: the largest entry gets 0, the smallest 4
    (out * torch.arange(5.0)).sum().backward()
    assert leaf.grad[0, 2] == 0 and leaf.grad[0, 1] == 4 and leaf.grad[1, 4] == 4
    assert sorted(leaf.grad[0].tolist()) == [0, 1, 2, 3, 4]
