"""MGCN's behaviour-guided purifier and behaviour-aware fuser (Yu et al., ACM MM 2023).

Both rest on one gate: an input scaled element-wise by a sigmoid of a linear map of a
condition, :class:`PurifierGate`. The purifier gates the item-ID embeddings by each
modality's projected features (keeping the feature dimensions that agree with behaviour); the
fuser splits the modality views into a shared part (attention over modalities) and specific
parts, which it gates by the behaviour (user–item) embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class PurifierGate(nn.Module):
    r"""An input gated element-wise by a sigmoid of a linear map of a condition.

    .. math::
        \operatorname{gate}(x, c) = x \odot \sigma(W c + b),
        \qquad W \in \mathbb R^{d \times d}

    Args:
        dim: width ``d`` of the input and of the condition.

    Shapes:
        ``x: [N, d]``, ``condition: [N, d]`` -> ``[N, d]`` (any shapes that broadcast after the
        map, ``[..., d]``).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return x * torch.sigmoid(self.linear(condition))


class BehaviorGuidedPurifier(nn.Module):
    r"""MGCN's purifier: the item-ID table gated by each modality's projected features.

    .. math::
        \dot e_i^m = e_i^{id} \odot \sigma(W_m f_i^m + b_m)

    with :math:`f^m` the projected features of modality :math:`m` (one
    :class:`PurifierGate` per modality).

    Args:
        num_modalities: ``M >= 1``.
        dim: ``d``.

    Shapes:
        ``item_ids: [I, d]``, ``features``: ``M`` tensors ``[I, d]`` -> ``M`` tensors ``[I, d]``.
    """

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError("the purifier needs at least one modality")
        self.gates = nn.ModuleList(PurifierGate(dim) for _ in range(num_modalities))

    def reset_parameters(self) -> None:
        for gate in self.gates:
            gate.reset_parameters()

    def forward(self, item_ids: Tensor, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.gates):
            raise ValueError(f"expected {len(self.gates)} modalities, got {len(features)}")
        return [gate(item_ids, f) for gate, f in zip(self.gates, features, strict=True)]


class BehaviorAwareFuser(nn.Module):
    r"""MGCN's fuser: a modality-shared part by attention plus behaviour-gated specific parts.

    For node :math:`n` with modality views :math:`e^1_n, \dots, e^M_n` and behaviour
    embedding :math:`b_n`:

    .. math::
        \alpha_m = \operatorname{softmax}_m\big(q^\top \tanh(W_q e^m + b_q)\big), \qquad
        e^s = \sum_m \alpha_m e^m, \qquad
        \hat e^m = (e^m - e^s) \odot \sigma(W_m b + b_m)

    .. math::
        e^{side} = \frac{1}{M + 1}\Big(e^s + \sum_m \hat e^m\Big)

    :math:`W_q, b_q, q` are shared by the modalities (MGCN's ``query_common``; :math:`q` has no
    bias), the preference gates :math:`W_m, b_m` are one :class:`PurifierGate` per modality.
    With one modality the shared part is the view itself and the specific part is zero, so
    the result is :math:`e^1 / 2` and the layer holds no parameters (none would get a
    gradient).

    Args:
        num_modalities: ``M >= 1``.
        dim: ``d``.

    Shapes:
        ``views: [N, M, d]``, ``behavior: [N, d]`` -> ``[N, d]``.
    """

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError("the fuser needs at least one modality")
        self.num_modalities = num_modalities
        self.query: nn.Sequential | None = None
        self.preference = nn.ModuleList()
        if num_modalities > 1:
            self.query = nn.Sequential(
                nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False)
            )
            self.preference.extend(PurifierGate(dim) for _ in range(num_modalities))

    def reset_parameters(self) -> None:
        if self.query is not None:
            self.query[0].reset_parameters()
            self.query[2].reset_parameters()
        for gate in self.preference:
            gate.reset_parameters()

    def attention(self, views: Tensor) -> Tensor:
        """``[N, M]`` weights :math:`\\alpha` of the modalities (rows sum to 1)."""
        if self.query is None:
            return views.new_ones(views.shape[:2])
        return torch.softmax(self.query(views).squeeze(-1), dim=-1)

    def forward(self, views: Tensor, behavior: Tensor) -> Tensor:
        num_modalities = self.num_modalities
        if views.dim() != 3 or views.size(1) != num_modalities:
            raise ValueError(f"views must be [N, {num_modalities}, d], got {tuple(views.shape)}")
        if self.query is None:
            return views[:, 0] / 2
        shared = (self.attention(views).unsqueeze(-1) * views).sum(1)
        total = shared
        for m, gate in enumerate(self.preference):
            total = total + gate(views[:, m] - shared, behavior)
        return total / (num_modalities + 1)

    def extra_repr(self) -> str:
        return f"num_modalities={self.num_modalities}"
