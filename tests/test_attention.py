import pytest
import torch

from mmgraph.nn.attention import ModalityAttention


def test_output_shape_and_head_check():
    attention = ModalityAttention(8, num_heads=2)
    assert attention(torch.randn(3, 5, 8)).shape == (3, 5, 8)
    with pytest.raises(ValueError):
        ModalityAttention(8, num_heads=3)


def test_reference_mode_is_a_linear_map_of_each_view():
    torch.manual_seed(0)
    attention = ModalityAttention(8, num_heads=4, reference=True)
    views = torch.randn(2, 5, 8)
    weight = sum(attention.w_out[h * 8 : (h + 1) * 8] for h in range(4))
    assert torch.allclose(attention(views), views @ weight, atol=1e-6)
    # a view's output ignores the other views entirely
    changed = views.clone()
    changed[1] = torch.randn(5, 8)
    assert torch.allclose(attention(changed)[0], attention(views)[0])


def test_attention_mixes_views_so_it_is_not_a_per_view_linear_map():
    torch.manual_seed(0)
    attention = ModalityAttention(8, num_heads=4)
    views = torch.randn(2, 200, 8)
    out = attention(views)
    # Best least-squares linear map from each view to its output leaves a clear residual.
    for m in range(2):
        solution = torch.linalg.lstsq(views[m], out[m]).solution
        residual = (views[m] @ solution - out[m]).norm() / out[m].norm()
        assert residual > 0.05
    changed = views.clone()
    changed[1] = torch.randn(200, 8)
    assert not torch.allclose(attention(changed)[0], out[0])


def test_attention_matches_an_explicit_per_node_computation():
    torch.manual_seed(1)
    attention = ModalityAttention(4, num_heads=2)
    views = torch.randn(3, 2, 4)
    out = attention(views)
    q, k, v = views @ attention.w_q, views @ attention.w_k, views @ attention.w_v
    for n in range(2):
        heads = []
        for h in range(2):
            cols = slice(2 * h, 2 * h + 2)
            logits = q[:, n, cols] @ k[:, n, cols].T / 2**0.5  # [M, M]
            heads.append(logits.softmax(dim=1) @ v[:, n])  # [M, d]
        expected = torch.cat(heads, dim=1) @ attention.w_out
        assert torch.allclose(out[:, n], expected, atol=1e-6)


def test_every_weight_gets_a_gradient():
    attention = ModalityAttention(8, num_heads=2)
    attention(torch.randn(2, 6, 8)).pow(2).sum().backward()
    for name, param in attention.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
