import pytest
import torch
from torch import nn

from mmgraph.nn.adversarial import AdversarialDiscriminator, frozen, gradient_penalty


def test_gradient_penalty_of_a_linear_critic_is_weight_times_squared_norm_gap():
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[2.0, -1.0, 2.0]]))  # |w| = 3
        critic.bias.fill_(0.5)
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    gp = gradient_penalty(critic, real, fake, weight=0.3)
    assert gp.item() == pytest.approx(0.3 * (3.0 - 1.0) ** 2)


def test_gradient_penalty_interpolates_each_row_with_its_own_alpha():
    # critic(x) = |x|^2 / 2 has gradient x, so the penalty is the mean of (|x_hat| - 1)^2.
    real = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    fake = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    alpha = torch.tensor([[0.5], [0.25]])
    gp = gradient_penalty(lambda x: 0.5 * x.pow(2).sum(1), real, fake, weight=0.3, alpha=alpha)
    # x_hat = [2, 0] and [0, 4]: norms 2 and 4.
    assert gp.item() == pytest.approx(0.3 * ((2 - 1) ** 2 + (4 - 1) ** 2) / 2)


def test_gradient_penalty_trains_the_critic():
    critic = nn.Linear(4, 1)
    gradient_penalty(critic, torch.randn(6, 4), torch.randn(6, 4)).backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_discriminator_loss_is_wasserstein_estimate_plus_penalty():
    torch.manual_seed(0)
    critic = AdversarialDiscriminator(16).eval()  # eval: dropout off, deterministic
    real, fake = torch.randn(8, 16), torch.randn(8, 16)
    alpha = torch.rand(8, 1)
    expected = -critic(real).mean() + critic(fake).mean()
    expected = expected + gradient_penalty(critic, real, fake, 0.3, alpha)
    assert critic.discriminator_loss(real, fake, alpha).item() == pytest.approx(expected.item())


def test_critic_architecture_sizes_and_linear_output():
    critic = AdversarialDiscriminator(64)
    linears = [m for m in critic.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (16, 8), (8, 1)]
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Sigmoid)) for m in critic.net)
    assert critic.net[1].negative_slope == 0.2
    assert critic(torch.randn(10, 64)).shape == (10,)


def test_released_code_configuration():
    critic = AdversarialDiscriminator(64, negative_slope=1.0, batch_norm=True, sigmoid_scale=100)
    kinds = [type(m).__name__ for m in critic.net]
    assert kinds == [
        "Linear", "LeakyReLU", "BatchNorm1d", "Dropout",
        "Linear", "LeakyReLU", "BatchNorm1d", "Dropout",
        "Linear", "Sigmoid",
    ]  # fmt: skip
    x = torch.randn(5, 16)
    assert torch.equal(critic.net[1](x), x)  # LeakyReLU(True): slope 1, the identity
    out = critic(torch.randn(10, 64))
    assert bool(((out > 0) & (out < 100)).all())


def test_generator_loss_reaches_the_fake_rows_but_not_the_critic():
    critic = AdversarialDiscriminator(8)
    fake = torch.randn(6, 8, requires_grad=True)
    critic.generator_loss(fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())


def test_frozen_restores_flags_after_an_error():
    layer = nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    with pytest.raises(RuntimeError), frozen(layer):
        raise RuntimeError
    assert layer.weight.requires_grad and not layer.bias.requires_grad


@pytest.mark.parametrize("reference", [False, True])
def test_fast_discriminator_loss_equals_the_textbook_form_in_value_and_gradients(reference):
    # value and critic gradients of -mean D(real) + mean D(fake) + GP written out with
    # gradient_penalty on the stacked rows (dropout off; batch norm, when on, in train mode)
    torch.manual_seed(0)
    critic = AdversarialDiscriminator(
        12,
        negative_slope=1.0 if reference else 0.2,
        batch_norm=reference,
        sigmoid_scale=100.0 if reference else None,
        dropout=(0.0, 0.0),
    ).double()  # float64: batch norm makes some true gradients ~0, float32 noise ~1e-4
    real, fake = torch.randn(3, 12).double(), torch.randn(6, 12).double()
    alpha = torch.rand(6, 1).double()
    stacked = real.repeat(2, 1)
    expected = -critic(stacked).mean() + critic(fake).mean()
    expected = expected + gradient_penalty(critic, stacked, fake, 0.3, alpha)
    want = torch.autograd.grad(expected, list(critic.parameters()))
    loss = critic.discriminator_loss(real, fake, alpha, repeats=2)
    got = torch.autograd.grad(loss, list(critic.parameters()))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="does not match"):
        critic.discriminator_loss(real, fake, alpha)
