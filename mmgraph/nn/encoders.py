"""Encoders of multimodal graph recommenders (DRAGON / MENTOR family).

A model of this family runs several *branches* (one per modality, an ID branch, noisy copies)
through the same user–item graph. Each branch has its own layer-0 table
(:class:`UserItemInput`); :class:`MultiBranchLightGCN` propagates all branches together, since
the products are independent; :class:`~mmgraph.nn.ItemGraphPropagation` adds the item–item
kNN hop and :class:`ModalityFusion` weighs and concatenates the modality branches per user.

Branches are stacked on a middle axis: ``[num_nodes, num_branches, dim]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.kernels import l2_normalize, layer_sum_propagation
from mmgraph.nn.perturb import GraphPerturbation
from mmgraph.nn.sparse import check_increasing_index, csr_submatrix


class FeatureProjector(nn.Module):
    r"""Two-layer MLP from frozen item features to the embedding space.

    .. math::
        f = W_2\, \operatorname{LeakyReLU}(W_1 x + b_1) + b_2

    Args:
        in_dim: feature width ``d_x``.
        out_dim: embedding width ``d`` (MENTOR: 64).
        hidden_dim: hidden width (MENTOR: ``4 d`` = 256).
        negative_slope: LeakyReLU slope (torch's default 0.01, as in MENTOR).

    Shapes:
        ``x: [I, in_dim]`` -> ``[I, out_dim]``.
    """

    def __init__(
        self, in_dim: int, out_dim: int = 64, hidden_dim: int = 256, negative_slope: float = 0.01
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, out_dim)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.leaky_relu(self.hidden(x), self.negative_slope))


class ModalityProjection(nn.Module):
    r"""One linear map per modality from frozen item features to a shared width.

    .. math::
        f_m = W_m x_m + b_m, \qquad x_m \in \mathbb R^{I \times d_m}

    The features are kept as non-persistent buffers (dataset content, not weights: they are not
    written to checkpoints and never trained). Summing the outputs equals one linear map of the
    concatenated features (VBPR's ``E [x_1 \| \dots \| x_M]``).

    Args:
        features: modality name -> ``[I, d_m]`` item features (at least one).
        out_dim: output width ``d``.
        init: ``"default"`` (torch's ``nn.Linear`` init), ``"xavier_normal"`` or
            ``"xavier_uniform"`` for the weights (biases keep torch's init).

    Shapes:
        ``forward() -> {name: [I, out_dim]}``.
    """

    def __init__(
        self, features: Mapping[str, Tensor], out_dim: int = 64, init: str = "default"
    ) -> None:
        super().__init__()
        if not features:
            raise ValueError("ModalityProjection needs at least one modality")
        if init not in ("default", "xavier_normal", "xavier_uniform"):
            raise ValueError(f"unknown init {init!r}")
        self.modalities = list(features)
        self.init = init
        self.linears = nn.ModuleList()
        for index, x in enumerate(features.values()):
            self.register_buffer(f"features_{index}", x.float(), persistent=False)
            self.linears.append(nn.Linear(x.size(1), out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in self.linears:
            linear.reset_parameters()
            if self.init != "default":
                getattr(nn.init, self.init + "_")(linear.weight)

    def raw(self, modality: str) -> Tensor:
        """``[I, d_m]`` frozen features of one modality."""
        return getattr(self, f"features_{self.modalities.index(modality)}")

    def forward(self) -> dict[str, Tensor]:
        return {
            m: linear(self.raw(m)) for m, linear in zip(self.modalities, self.linears, strict=True)
        }


class UserItemInput(nn.Module):
    r"""Layer-0 node table of one user–item GCN branch: learned user preferences, projected items.

    .. math::
        x^{(0)} = \operatorname{l2norm}_\text{rows}\big([P;\; \operatorname{MLP}(X)]\big)

    with :math:`P \in \mathbb R^{U \times d}` (Xavier-normal) and the MLP a
    :class:`FeatureProjector`. For an ID branch ``X`` is a learnable item table.

    Args:
        num_users: ``U``.
        in_dim: width of the item input ``X``.
        dim: embedding width ``d``.
        hidden_dim: hidden width of the projector.

    Shapes:
        ``item_input: [I, in_dim]`` -> ``[U + I, dim]`` (users first).
    """

    def __init__(self, num_users: int, in_dim: int, dim: int = 64, hidden_dim: int = 256) -> None:
        super().__init__()
        self.preference = nn.Parameter(torch.empty(num_users, dim))
        self.projector = FeatureProjector(in_dim, dim, hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.preference)
        self.projector.hidden.reset_parameters()
        self.projector.out.reset_parameters()

    def forward(self, item_input: Tensor) -> Tensor:
        return l2_normalize(torch.cat([self.preference, self.projector(item_input)]))


def stack_user_item_inputs(
    branches: Sequence[UserItemInput], item_inputs: Sequence[Tensor]
) -> Tensor:
    """Layer-0 tables of several branches, stacked for :class:`MultiBranchLightGCN`.

    ``torch.stack([branch(x) for branch, x in zip(branches, item_inputs)], dim=1)``.

    Shapes:
        ``item_inputs[b]: [I, in_dim_b]`` -> ``[U + I, B, dim]``.
    """
    return torch.stack([branch(x) for branch, x in zip(branches, item_inputs, strict=True)], 1)


class MultiBranchLightGCN(nn.Module):
    r"""LightGCN propagation of several independent branches at once, with a layer-sum readout.

    For every branch :math:`b` (an ``[N, d]`` slice of the input):

    .. math::
        h_b^{(l+1)} = \operatorname{perturb}_b\big(\hat A h_b^{(l)}\big), \qquad
        \text{out}_b = \sum_{l=0}^{L} h_b^{(l)}

    where ``perturb`` is :class:`~mmgraph.nn.GraphPerturbation` for the branches flagged in
    ``perturbed`` and the identity otherwise (MENTOR's noisy views; the noise enters the next
    hop). Each hop equals :class:`~mmgraph.nn.LightGCNConv` applied per branch; here the
    branches are one ``[N, B·d]`` matrix, and the hops with the readout are the kernel
    :func:`~mmgraph.kernels.layer_sum_propagation`.

    Args:
        num_layers: hops ``L`` (MENTOR: 2, hard-coded in its code).
        eps: magnitude of the perturbation noise.

    Only some rows of the output: with ``rows``, the last hop is computed for those rows
    only (a row slice of :math:`\hat A`, :func:`~mmgraph.nn.csr_submatrix`) and its noise is
    drawn for them only. The result equals the full output's rows; a loss that reads a batch's
    nodes (MENTOR's in-batch InfoNCE) saves most of the last hop's noise and products.

    The hops and the readout are one autograd node (the noise is a constant, so each hop's
    derivative is the graph's): the same values as autograd's graph of the same operations,
    with a cheaper backward (:func:`~mmgraph.kernels.layer_sum_propagation`).

    Shapes:
        ``x: [N, B, d]``; ``adj_t: [N, N]`` sparse :math:`\hat A`, applied as ``adj_t @ h``;
        ``adj``: its transpose for the cheap backward (default ``adj_t``, right for the symmetric
        :math:`\hat A`); ``perturbed``: ``B`` booleans, one for all branches, or ``None``;
        ``rows``: ``[R]`` strictly increasing node indices (CSR ``adj_t`` and ``adj``), or
        ``None`` for all -> ``[N, B, d]`` (``[R, B, d]`` with ``rows``). Perturbing all or none
        is cheaper than a mix (no branch gather).
    """

    def __init__(self, num_layers: int = 2, eps: float = 0.1) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers
        self.perturbation = GraphPerturbation(eps)

    def forward(
        self,
        x: Tensor,
        adj_t: Tensor,
        adj: Tensor | None = None,
        perturbed: Sequence[bool] | bool | None = None,
        rows: Tensor | None = None,
    ) -> Tensor:
        num_nodes, num_branches, dim = x.shape
        if isinstance(perturbed, bool):
            perturbed = [perturbed] * num_branches
        if perturbed is not None and len(perturbed) != num_branches:
            raise ValueError(f"perturbed has {len(perturbed)} flags for {num_branches} branches")
        flags = [] if perturbed is None else list(perturbed)
        perturb_all = bool(flags) and all(flags)
        noisy = None  # indices of the flagged branches when only some are
        if any(flags) and not perturb_all:
            indices = [index for index, flag in enumerate(flags) if flag]
            noisy = torch.tensor(indices, dtype=torch.long, device=x.device)
        if rows is not None:
            check_increasing_index(rows, "rows")
        adj = adj_t if adj is None else adj
        h = x.reshape(num_nodes, num_branches * dim)
        if not self.num_layers:
            return (h if rows is None else h[rows]).view(-1, num_branches, dim)
        hops = [(adj_t, adj)] * self.num_layers
        if rows is not None:  # (adj_t[rows])^T = adj[:, rows]: the transpose's column slice
            hops[-1] = (csr_submatrix(adj_t, rows=rows), csr_submatrix(adj, cols=rows))

        def perturb(out: Tensor) -> None:
            out3 = out.view(-1, num_branches, dim)
            if noisy is None:  # all branches (MENTOR's noisy stack): no gather/scatter
                self.perturbation.perturb_(out3)
            else:  # noise is drawn for the flagged branches only
                out3.index_copy_(1, noisy, self.perturbation.perturb_(out3.index_select(1, noisy)))

        total = layer_sum_propagation(h, hops, rows, perturb if any(flags) else None)
        return total.view(-1, num_branches, dim)


class ModalityFusion(nn.Module):
    r"""User-specific modality weights, then concatenation (MENTOR's fused view).

    .. math::
        u_r = [\,w_{u,1} u_1 \,\|\, \dots \,\|\, w_{u,M} u_M\,], \qquad
        i_r = [\,i_1 \,\|\, \dots \,\|\, i_M\,]

    :math:`w \in \mathbb R^{U \times M}` starts as a row softmax of a Xavier-normal draw and is
    then a free parameter (no softmax afterwards, as in MENTOR). Items are not weighted.

    Args:
        num_users: ``U``.
        num_modalities: ``M >= 1``.

    Shapes:
        ``user_views: [U, M, d]``, ``item_views: [I, M, d]`` ->
        ``([U, M·d], [I, M·d])``; with ``users: [B]`` user ids, ``user_views`` holds those
        users' rows ``[B, M, d]``.
    """

    def __init__(self, num_users: int, num_modalities: int) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError("fusion needs at least one modality")
        self.weight = nn.Parameter(torch.empty(num_users, num_modalities))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.xavier_normal_(self.weight)
            self.weight.copy_(torch.softmax(self.weight, dim=1))

    def forward(
        self, user_views: Tensor, item_views: Tensor, users: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        weight = self.weight if users is None else self.weight[users]
        return (weight.unsqueeze(-1) * user_views).flatten(1), item_views.flatten(1)
