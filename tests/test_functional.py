import pytest
import torch
import torch.nn.functional as F

import mmgraph.nn.functional as mmgraph_functional
from mmgraph.nn.functional import bpr_scores, l2_normalize


def test_l2_normalize_values_equal_the_formula():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1e-20, 0.0]])
    out = l2_normalize(x)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(out[1], torch.zeros(2))  # x / max(0, eps)
    assert out[2, 0].item() == pytest.approx(1e-20 / 1e-12)  # clamped row: x / eps


def test_l2_normalize_gradient_is_the_projection_formula():
    x = torch.randn(30, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    g = torch.randn(30, 7, dtype=torch.float64)
    (l2_normalize(x) * g).sum().backward()
    norm = x.detach().norm(dim=1, keepdim=True)
    y = x.detach() / norm
    # d(x/|x|)^T g = (g - y <g, y>) / |x|, by hand
    expected = (g - y * (g * y).sum(1, keepdim=True)) / norm
    assert torch.allclose(x.grad, expected, atol=1e-12)


def test_l2_normalize_matches_torch_normalize_on_clamped_rows_and_batched_shapes():
    x = torch.randn(5, 3, 6, dtype=torch.float64)
    x[1, 2] = 0.0
    x[3, 0] *= 1e-14  # below eps: scaled by 1/eps, no gradient through the norm
    w = torch.randn(5, 3, 6, dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    (l2_normalize(a) * w).pow(3).sum().backward()
    (F.normalize(b, dim=-1) * w).pow(3).sum().backward()
    assert torch.equal(l2_normalize(x), F.normalize(x, dim=-1))
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=0)


def _triples(num_users, num_items, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, n, (batch,), generator=gen) for n in (num_users, num_items, num_items)]


@pytest.mark.parametrize("block_rows", [1 << 16, 7])  # one block, and blocks with a remainder
def test_bpr_scores_equal_the_gathered_dot_products_values_and_gradients(monkeypatch, block_rows):
    monkeypatch.setattr(mmgraph_functional, "BPR_SCORE_ROWS", block_rows)
    users, pos, neg = _triples(9, 6, 40, seed=0)  # many repeated users and items
    user_emb, item_emb = torch.randn(9, 5), torch.randn(6, 5)
    w_pos, w_neg = torch.randn(40), torch.randn(40)
    leaves = [t.clone().requires_grad_(True) for t in (user_emb, item_emb, user_emb, item_emb)]
    u = leaves[0].index_select(0, users)  # its backward adds in index order, as bpr_scores'
    item = leaves[1]
    expected = ((u * item[pos]).sum(-1), (u * item.index_select(0, neg)).sum(-1))
    (expected[0] * w_pos + expected[1] * w_neg).sum().backward()
    got = bpr_scores(leaves[2], leaves[3], users, pos, neg)
    (got[0] * w_pos + got[1] * w_neg).sum().backward()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    # The same gathers and scatters in the same order: equal to the last bit.
    assert torch.equal(leaves[2].grad, leaves[0].grad)
    assert torch.equal(leaves[3].grad, leaves[1].grad)
    # by hand: d/de_u = w+ e_i+ + w- e_i-, d/de_i+ = w+ e_u, d/de_i- = w- e_u, summed per id
    grad_u = torch.zeros(9, 5).index_add_(
        0, users, w_pos[:, None] * item_emb[pos] + w_neg[:, None] * item_emb[neg]
    )
    grad_i = torch.zeros(6, 5).index_add_(0, pos, w_pos[:, None] * user_emb[users])
    grad_i.index_add_(0, neg, w_neg[:, None] * user_emb[users])
    assert torch.allclose(leaves[2].grad, grad_u, atol=1e-5)
    assert torch.allclose(leaves[3].grad, grad_i, atol=1e-5)


def test_bpr_scores_gradcheck_one_used_output_and_a_frozen_table(monkeypatch):
    monkeypatch.setattr(mmgraph_functional, "BPR_SCORE_ROWS", 4)
    users, pos, neg = _triples(5, 4, 11, seed=1)
    user_emb = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    item_emb = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: bpr_scores(a, b, users, pos, neg), (user_emb, item_emb)
    )
    bpr_scores(user_emb, item_emb, users, pos, neg)[1].sum().backward()  # positives unused
    expected = torch.zeros(4, 3, dtype=torch.float64).index_add_(0, neg, user_emb[users].detach())
    assert torch.allclose(item_emb.grad, expected)
    frozen = item_emb.detach()
    user_emb.grad = None
    bpr_scores(user_emb, frozen, users, pos, neg)[0].sum().backward()
    assert torch.allclose(
        user_emb.grad, torch.zeros(5, 3, dtype=torch.float64).index_add_(0, users, frozen[pos])
    )


def test_bpr_scores_reject_mismatched_shapes():
    users, pos, neg = _triples(5, 4, 6, seed=2)
    with pytest.raises(ValueError, match="index vectors of one length"):
        bpr_scores(torch.randn(5, 3), torch.randn(4, 3), users, pos, neg[:5])
    with pytest.raises(ValueError, match=r"user_emb \[U, d\]"):
        bpr_scores(torch.randn(5, 3), torch.randn(4, 2), users, pos, neg)
