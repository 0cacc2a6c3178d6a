r"""Gaussian diffusion over interaction rows and its MLP denoiser (DiffRec / DiffMM).

A user's row of the interaction matrix, :math:`x_0 \in \{0, 1\}^I`, is noised by a Gaussian
forward process and reconstructed by a denoiser that predicts :math:`x_0` from
:math:`(x_t, t)`; running the reverse process from the observed row gives a denoised row whose
top-k items DiffMM links to the user.

- :func:`diffusion_betas`: the authors' noise schedule.
- :class:`GaussianDiffusion`: the schedule's constants, the forward process ``q_sample``, the
  weighted reconstruction loss and the deterministic reverse process.
- :class:`Denoiser`: the timestep-conditioned MLP :math:`\hat x_0 = f_\theta(x_t, t)`.
- :func:`signal_injection_loss`: DiffMM's modality-aware signal injection term.

Every random draw (timesteps, noise, input dropout) can be passed in or switched off, so a
test can fix it. Rows are processed in user batches: the largest tensors are ``[B, I]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the first step's beta, fixed by the authors' ``beta_fixed`` whatever the linear schedule says
FIRST_BETA = 1e-4


def diffusion_betas(steps: int, noise_scale: float, noise_min: float, noise_max: float) -> Tensor:
    r"""The authors' schedule: :math:`1 - \bar\alpha_t` rises linearly from
    ``noise_scale * noise_min`` to ``noise_scale * noise_max`` over ``steps`` steps.

    .. math::
        v_t = s\,\big(n_{\min} + \tfrac{t}{T-1}(n_{\max} - n_{\min})\big),\qquad
        \beta_t = \min\Big(1 - \frac{1 - v_t}{1 - v_{t-1}},\ 0.999\Big),\qquad
        \beta_0 = 10^{-4}

    Returns:
        ``[T]`` float64 betas.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    variance = torch.linspace(
        noise_scale * noise_min, noise_scale * noise_max, steps, dtype=torch.float64
    )
    alpha_bar = 1.0 - variance
    betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return torch.cat([torch.tensor([FIRST_BETA], dtype=torch.float64), betas])


class GaussianDiffusion(nn.Module):
    r"""Forward process, loss and deterministic reverse process of a Gaussian diffusion.

    With :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)`:

    .. math::
        q(x_t \mid x_0):\ x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon

        \mathcal L_\text{diff} = \frac1B \sum_b w_{t_b}\, \frac1I
            \lVert x_{0,b} - f_\theta(x_{t_b,b}, t_b) \rVert^2,\qquad
        w_t = \mathrm{SNR}(t-1) - \mathrm{SNR}(t),\ w_0 = 1,\ \
        \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1 - \bar\alpha_t}

    (the ELBO's step-wise weights for an :math:`x_0`-predicting model). The reverse process
    takes the posterior mean with the predicted :math:`\hat x_0` and no sampling noise:

    .. math::
        x_{t-1} = c^{(1)}_t\, f_\theta(x_t, t) + c^{(2)}_t\, x_t,\quad
        c^{(1)}_t = \frac{\beta_t \sqrt{\bar\alpha_{t-1}}}{1 - \bar\alpha_t},\quad
        c^{(2)}_t = \frac{(1 - \bar\alpha_{t-1}) \sqrt{1 - \beta_t}}{1 - \bar\alpha_t}

    The constants are computed in float64 and kept as float32 buffers (not saved: they follow
    from the arguments).

    Args:
        steps: ``T`` (DiffMM: 5).
        noise_scale: ``s`` (0.1).
        noise_min: ``n_min`` (1e-4).
        noise_max: ``n_max`` (0.02).
    """

    def __init__(
        self,
        steps: int = 5,
        noise_scale: float = 0.1,
        noise_min: float = 1e-4,
        noise_max: float = 0.02,
    ) -> None:
        super().__init__()
        self.steps = steps
        betas = diffusion_betas(steps, noise_scale, noise_min, noise_max)
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        if not bool((alpha_bar > 0).all() and (alpha_bar < 1).all()):
            raise ValueError("the noise schedule must keep 0 < alpha_bar < 1 at every step")
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        snr = alpha_bar / (1.0 - alpha_bar)
        weight = torch.cat([torch.ones(1, dtype=torch.float64), snr[:-1] - snr[1:]])
        constants = {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1.0 - alpha_bar).sqrt(),
            "posterior_coef_x0": betas * alpha_bar_prev.sqrt() / (1.0 - alpha_bar),
            "posterior_coef_xt": (1.0 - alpha_bar_prev) * (1.0 - betas).sqrt() / (1.0 - alpha_bar),
            "loss_weight": weight,
        }
        for key, value in constants.items():
            self.register_buffer(key, value.float(), persistent=False)

    @staticmethod
    def _per_row(values: Tensor, t: Tensor) -> Tensor:
        """``values[t]`` as a ``[B, 1]`` column that broadcasts over ``[B, I]`` rows."""
        return values.index_select(0, t).unsqueeze(1)

    def sample_timesteps(self, batch_size: int, device: torch.device | str) -> Tensor:
        """``[B]`` steps drawn uniformly from ``0..T-1`` (torch's global generator)."""
        return torch.randint(0, self.steps, (batch_size,), device=device)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon`.

        Shapes:
            ``x0: [B, I]``, ``t: [B]``, ``noise: [B, I]`` -> ``[B, I]``.
        """
        return torch.addcmul(
            self._per_row(self.sqrt_alpha_bar, t) * x0,
            self._per_row(self.sqrt_one_minus_alpha_bar, t),
            noise,
        )

    def loss_terms(
        self,
        denoiser: nn.Module,
        x0: Tensor,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The denoiser's prediction and the weighted reconstruction error of each row.

        Args:
            denoiser: ``f(x_t [B, I], t [B]) -> [B, I]`` (a :class:`Denoiser`).
            x0: ``[B, I]`` clean rows.
            t: ``[B]`` steps (drawn by :meth:`sample_timesteps` when ``None``).
            noise: ``[B, I]`` standard normal noise (``randn_like(x0)`` when ``None``).

        Returns:
            ``(x0_hat [B, I], weighted_mse [B])``; :math:`\\mathcal L_\\text{diff}` is the mean
            of the second.
        """
        if t is None:
            t = self.sample_timesteps(x0.size(0), x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        x0_hat = denoiser(self.q_sample(x0, t, noise), t)
        mse = (x0 - x0_hat).pow(2).mean(dim=1)
        return x0_hat, self.loss_weight.index_select(0, t) * mse

    @torch.no_grad()
    def reverse(
        self,
        denoiser: nn.Module,
        x0: Tensor,
        start_step: int = 0,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Denoise ``x0`` through all ``T`` reverse steps (posterior means, no sampling noise).

        Args:
            denoiser: called as ``denoiser(x, t, dropout=False)``.
            x0: ``[B, I]`` observed rows.
            start_step: 0 starts from ``x0`` itself (DiffMM's ``sampling_steps=0``); ``s > 0``
                first noises it to step ``s - 1`` with ``noise``.
            noise: ``[B, I]`` noise for ``start_step > 0`` (``randn_like(x0)`` when ``None``).

        Returns:
            ``[B, I]`` denoised rows.
        """
        if not 0 <= start_step <= self.steps:
            raise ValueError(f"start_step must be in [0, {self.steps}], got {start_step}")
        x = x0
        if start_step > 0:
            t = torch.full((x0.size(0),), start_step - 1, device=x0.device, dtype=torch.long)
            x = self.q_sample(x0, t, torch.randn_like(x0) if noise is None else noise)
        for step in reversed(range(self.steps)):
            t = torch.full((x.size(0),), step, device=x.device, dtype=torch.long)
            x0_hat = denoiser(x, t, dropout=False)
            x = torch.addcmul(
                self.posterior_coef_xt[step] * x, self.posterior_coef_x0[step], x0_hat
            )
        return x

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    r"""Sinusoidal embedding :math:`[\cos(t\,\omega_j); \sin(t\,\omega_j)]`,
    :math:`\omega_j = 10000^{-j/h}`, :math:`j < h = \lfloor d/2 \rfloor` (a zero column pads
    an odd ``dim``).

    Shapes:
        ``t: [B]`` -> ``[B, dim]``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    angles = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class Denoiser(nn.Module):
    r"""The timestep-conditioned MLP :math:`\hat x_0 = f_\theta(x_t, t)` of DiffRec / DiffMM.

    .. math::
        e_t = W_e\, \mathrm{sin\_emb}(t) + b_e,\quad
        h = \tanh(W_1 [\mathrm{drop}(x_t);\, e_t] + b_1),\ \dots,\quad
        \hat x_0 = W_L h + b_L

    An hourglass: ``I + t_dim -> h_k -> ... -> h_1 -> ... -> h_k -> I`` for
    ``hidden_dims = (h_1, ..., h_k)``, tanh after every layer but the last. Weights are drawn
    from :math:`\mathcal N(0, 2 / (\text{fan\_in} + \text{fan\_out}))`, biases from
    :math:`\mathcal N(0, 10^{-6})`, as in the authors' code.

    Args:
        num_items: ``I``, the row width.
        hidden_dims: ``(h_1, ..., h_k)`` (DiffMM's ``dims``: ``(1000,)``).
        time_dim: width of the timestep embedding (``d_emb_size``: 10).
        dropout: input dropout in training (0.5); ``forward(..., dropout=False)`` or eval mode
            turns it off.

    Shapes:
        ``x: [B, I]``, ``t: [B]`` -> ``[B, I]``; parameters ``O(I · h_k)``.
    """

    def __init__(
        self,
        num_items: int,
        hidden_dims: Sequence[int] = (1000,),
        time_dim: int = 10,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ValueError("hidden_dims must name at least one width")
        self.time_dim = time_dim
        self.dropout = dropout
        self.time_layer = nn.Linear(time_dim, time_dim)
        down = [num_items + time_dim, *reversed(hidden_dims)]
        up = [*hidden_dims, num_items]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(down))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(up))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.time_layer, *self.encoder, *self.decoder):
            fan_out, fan_in = layer.weight.shape
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(layer.bias, 0.0, 0.001)

    def forward(self, x: Tensor, t: Tensor, dropout: bool = True) -> Tensor:
        emb = self.time_layer(timestep_embedding(t, self.time_dim))
        if dropout and self.training and self.dropout > 0:
            x = F.dropout(x, self.dropout, training=True)
        h = torch.cat([x, emb], dim=1)
        for layer in self.encoder:
            h = torch.tanh(layer(h))
        for index, layer in enumerate(self.decoder):
            h = layer(h)
            if index < len(self.decoder) - 1:
                h = torch.tanh(h)
        return h


def signal_injection_loss(
    x0_hat: Tensor, x0: Tensor, modality_items: Tensor, id_items: Tensor
) -> Tensor:
    r"""DiffMM's modality-aware signal injection (MSI):
    :math:`\frac{1}{B d} \sum_b \lVert \hat x_{0,b} F_m - x_{0,b} E \rVert^2`.

    The denoised row aggregated over the modality's item features should match the observed
    row aggregated over the item ID embeddings (both constants here: pass them detached).

    Shapes:
        ``x0_hat, x0: [B, I]``, ``modality_items, id_items: [I, d]`` -> scalar.
    """
    return (x0_hat @ modality_items - x0 @ id_items).pow(2).mean()
