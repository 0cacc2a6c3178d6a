"""Multi-head self-attention across the modality views of the same node (MMSSL)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ModalityAttention(nn.Module):
    r"""Self-attention over the ``M`` modality views of each node, as in MMSSL.

    For node :math:`n` with views :math:`x^1_n, \dots, x^M_n` and head :math:`h` (key width
    :math:`d_h = d / H`):

    .. math::
        \alpha^{h}_{m m'} = \operatorname{softmax}_{m'}
            \frac{\langle (x^m W_Q)_h, (x^{m'} W_K)_h \rangle}{\sqrt{d_h}}, \qquad
        z^m = \big\Vert_{h=1}^{H} \sum_{m'} \alpha^{h}_{m m'} \, x^{m'} W_V
            \; W_O

    Each head attends with its own :math:`d_h`-wide query/key slice and mixes full-width
    values; the ``H`` head outputs are concatenated (``H d``) and projected back to ``d`` by
    :math:`W_O \in \mathbb{R}^{Hd \times d}` (the ``w_self_attention_cat`` shape of the
    released code).

    ``reference=True`` reproduces the released code (``MMSSL/Models.py``), where the keys are
    the reshaped queries and the values are broadcast along the query axis, so the attention
    weights sum out and every view is only mapped linearly: :math:`z^m = x^m \sum_h W_O^{(h)}`
    with :math:`W_O^{(h)}` the ``h``-th ``d x d`` block of :math:`W_O`.

    Args:
        dim: view width ``d`` (divisible by ``num_heads``).
        num_heads: ``H``.
        reference: reproduce the released code's no-op attention.

    Shapes:
        ``views: [M, N, d]`` -> ``[M, N, d]``.
    """

    def __init__(self, dim: int, num_heads: int = 4, reference: bool = False) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads} >= 1")
        self.dim = dim
        self.num_heads = num_heads
        self.reference = reference
        self.w_q = nn.Parameter(torch.empty(dim, dim))
        self.w_k = nn.Parameter(torch.empty(dim, dim))
        self.w_v = nn.Parameter(torch.empty(dim, dim))
        self.w_out = nn.Parameter(torch.empty(num_heads * dim, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.w_q, self.w_k, self.w_v, self.w_out):
            nn.init.xavier_uniform_(weight)

    def forward(self, views: Tensor) -> Tensor:
        if views.dim() != 3 or views.size(-1) != self.dim:
            raise ValueError(f"views must be [M, N, {self.dim}], got {tuple(views.shape)}")
        heads, dim = self.num_heads, self.dim
        if self.reference:
            return views @ self.w_out.view(heads, dim, dim).sum(0)
        m, n, _ = views.shape
        query = (views @ self.w_q).view(m, n, heads, dim // heads)
        key = (views @ self.w_k).view(m, n, heads, dim // heads)
        logits = torch.einsum("mnhc,knhc->nmhk", query, key) / math.sqrt(dim // heads)
        weights = logits.softmax(dim=-1)  # [N, M (query), H, M (key)]
        # z^m = sum_h sum_k a^h_mk x^k W_V W_O^(h): fold W_V into each head's block of W_O
        # (one [d, H d] product instead of a value projection plus an [M, N, H, d] mix)
        folded = torch.einsum("de,hef->dhf", self.w_v, self.w_out.view(heads, dim, dim))
        projected = views @ folded.reshape(dim, heads * dim)  # [M, N, H d]
        projected = projected.view(m, n, heads, dim).permute(1, 2, 0, 3)  # [N, H, M (key), d]
        mixed = torch.bmm(weights.reshape(n, m, heads * m), projected.reshape(n, heads * m, dim))
        return mixed.transpose(0, 1)  # [M, N, d]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, reference={self.reference}"
