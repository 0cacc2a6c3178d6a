import pytest
import torch

from mmgraph.nn.noise import bernoulli_like, uniform_like


def test_uniform_like_is_reproducible_under_torch_seed_and_fresh_otherwise():
    x = torch.empty(300, 7)
    torch.manual_seed(4)
    first, second = uniform_like(x), uniform_like(x)
    torch.manual_seed(4)
    assert torch.equal(uniform_like(x), first)
    assert not torch.equal(first, second)
    assert first.shape == x.shape and first.dtype == x.dtype and first.is_contiguous()


def test_uniform_like_values_are_uniform_on_the_unit_interval():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        u = uniform_like(torch.empty(200_000, dtype=dtype))
        assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
        # Each decile holds 10 % of the draws (binomial std 0.07 %), mean 1/2, variance 1/12.
        counts = torch.histc(u.double(), bins=10, min=0, max=1) / u.numel()
        assert torch.allclose(counts, torch.full((10,), 0.1, dtype=torch.float64), atol=0.004)
        assert abs(u.double().mean().item() - 0.5) < 0.003
        assert abs(u.double().var().item() - 1 / 12) < 0.002
    # float32 draws are multiples of 2^-24, like torch.rand's
    u = uniform_like(torch.empty(10_000))
    assert torch.equal(u * 2**24, (u * 2**24).round())


def test_uniform_like_of_a_non_contiguous_or_integer_tensor():
    x = torch.empty(10, 6)[:, ::2]
    assert uniform_like(x).shape == (10, 3)
    half = torch.empty(50, dtype=torch.float16)
    assert uniform_like(half).dtype == torch.float16  # torch.rand_like path


# the byte path for multiples of 1/256, the uniform one otherwise
@pytest.mark.parametrize("p", [0.5, 0.25, 0.3, 0.9])
def test_bernoulli_like_frequency_and_independence(p):
    torch.manual_seed(1)
    mask = bernoulli_like(torch.empty(400, 500), p)
    assert mask.dtype == torch.bool and mask.shape == (400, 500)
    # 200,000 draws: binomial std of the frequency is at most 0.11 %
    assert abs(mask.double().mean().item() - p) < 0.005
    # neighbouring entries (bytes of one 64-bit word) are independent: P(both) = p^2
    pairs = (mask[:, 0::2] & mask[:, 1::2]).double().mean().item()
    assert abs(pairs - p * p) < 0.006


def test_bernoulli_like_is_seeded_and_handles_the_edges():
    x = torch.empty(3, 7, 5)
    torch.manual_seed(2)
    first = bernoulli_like(x, 0.5)
    torch.manual_seed(2)
    assert torch.equal(bernoulli_like(x, 0.5), first)
    assert not bernoulli_like(x, 0.0).any() and bernoulli_like(x, 1.0).all()
    assert bernoulli_like(torch.empty(0, 4), 0.5).shape == (0, 4)
    with pytest.raises(ValueError, match="probability"):
        bernoulli_like(x, 1.5)
