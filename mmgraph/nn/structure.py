"""Score rows and generated user–item graphs for adversarial structure learning (MMSSL).

The pieces, each usable alone:

- :func:`user_item_graph`: a normalised bipartite propagation pair built from edges;
  :func:`self_loop_adjacency`: the ``[U + I, U + I]`` matrix with self-loops (DiffMM).
- :func:`interaction_rows`, :func:`normalized_unseen_scores` (the code's ``u_sim``) and
  :func:`gumbel_real_rows`: the "fake" and "real" score rows a critic compares.
- :func:`sample_candidates`: a per-step item subset for critics on large catalogues.
- :class:`ModalityGraphGenerator`: per-modality graphs from each user's top-k items by
  modality score, kept in the state dict so a checkpoint restores the graphs it was
  evaluated with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import to_torch_csr_tensor

from mmgraph.data.dataset import CSR
from mmgraph.nn.ranking import topk_recommendations


class UserItemGraph(NamedTuple):
    """Propagation matrices of a bipartite graph, with the transposes a cheap backward needs.

    Attributes:
        to_user: ``[U, I]`` sparse CSR, ``user_x = to_user @ item_x``.
        to_item: ``[I, U]`` sparse CSR, ``item_x = to_item @ user_x``.
        to_user_t: ``[I, U]`` transpose of ``to_user`` (the same tensor as ``to_item`` when
            the normalisation is symmetric).
        to_item_t: ``[U, I]`` transpose of ``to_item``.
    """

    to_user: Tensor
    to_item: Tensor
    to_user_t: Tensor
    to_item_t: Tensor

    def to(self, device: torch.device | str) -> UserItemGraph:
        return UserItemGraph(*(matrix.to(device) for matrix in self))


def user_item_graph(
    users: Tensor, items: Tensor, num_users: int, num_items: int, symmetric: bool = True
) -> UserItemGraph:
    r"""Normalised propagation matrices of the binary graph with edges ``(users[e], items[e])``.

    - ``symmetric=True`` (LightGCN): :math:`\hat R = D_u^{-1/2} R D_i^{-1/2}`, ``to_user =
      R̂`` and ``to_item = R̂^T``.
    - ``symmetric=False`` (MMSSL's ``csr_norm(mean_flag=True)``): each side is normalised by
      its own degree only, ``to_user = D_u^{-1/2} R`` and ``to_item = D_i^{-1/2} R^T``.

    Duplicate edges count once; nodes without edges get empty rows.

    Args:
        users: ``[E]`` user ids.
        items: ``[E]`` item ids.
        num_users: ``U``.
        num_items: ``I``.
        symmetric: which normalisation.
    """
    users, items = users.long(), items.long()
    key = torch.unique(users * num_items + items)
    users, items = key // num_items, key % num_items
    deg_u = torch.bincount(users, minlength=num_users).float()
    deg_i = torch.bincount(items, minlength=num_items).float()
    forward = torch.stack([users, items])
    backward = torch.stack([items, users])
    if symmetric:
        weight = (deg_u[users] * deg_i[items]).rsqrt()
        to_user = to_torch_csr_tensor(forward, weight, size=(num_users, num_items))
        to_item = to_torch_csr_tensor(backward, weight, size=(num_items, num_users))
        return UserItemGraph(to_user, to_item, to_item, to_user)
    user_weight, item_weight = deg_u[users].rsqrt(), deg_i[items].rsqrt()
    return UserItemGraph(
        to_torch_csr_tensor(forward, user_weight, size=(num_users, num_items)),
        to_torch_csr_tensor(backward, item_weight, size=(num_items, num_users)),
        to_torch_csr_tensor(backward, user_weight, size=(num_items, num_users)),
        to_torch_csr_tensor(forward, item_weight, size=(num_users, num_items)),
    )


def self_loop_adjacency(users: Tensor, items: Tensor, num_users: int, num_items: int) -> Tensor:
    r"""DiffMM's :math:`D^{-1/2} (A + I) D^{-1/2}` of a binary user–item graph.

    ``A`` is the ``[U + I, U + I]`` bipartite adjacency of the edges ``(users[e], items[e])``
    (duplicates count once), every node gets a self-loop and ``D`` counts it. Symmetric.

    Returns:
        ``[U + I, U + I]`` sparse CSR.
    """
    num_nodes = num_users + num_items
    key = torch.unique(users.long() * num_items + items.long())
    users, items = key // num_items, key % num_items + num_users
    loops = torch.arange(num_nodes, device=key.device)
    rows = torch.cat([users, items, loops])
    cols = torch.cat([items, users, loops])
    degree = torch.bincount(rows, minlength=num_nodes).float()
    weight = (degree.index_select(0, rows) * degree.index_select(0, cols)).rsqrt()
    return to_torch_csr_tensor(torch.stack([rows, cols]), weight, size=(num_nodes, num_nodes))


def interaction_rows(
    seen: CSR, users: Tensor, num_items: int, columns: Tensor | None = None
) -> Tensor:
    """Dense 0/1 rows of the interaction matrix for a batch of users.

    Args:
        seen: per-user training items.
        users: ``[B]`` user ids.
        num_items: ``I``.
        columns: ``[C]`` item ids to keep (in this order); all ``I`` items when ``None``.

    Returns:
        ``[B, C]`` (or ``[B, I]``) float rows, 1 where the user interacted with the item.
    """
    position, item = seen.rows_of(users)
    width = num_items if columns is None else columns.numel()
    rows = torch.zeros(users.numel(), width, device=users.device)
    if columns is not None:
        column_of = torch.full((num_items,), -1, dtype=torch.long, device=users.device)
        column_of[columns] = torch.arange(columns.numel(), device=users.device)
        item = column_of[item]
        keep = item >= 0
        position, item = position[keep], item[keep]
    rows[position, item] = 1.0
    return rows


def normalized_unseen_scores(user_emb: Tensor, item_emb: Tensor, interactions: Tensor) -> Tensor:
    r"""MMSSL's ``u_sim``: dot-product scores with training items zeroed, each row L2-normalised.

    .. math:: S = \operatorname{normalize}_{\text{row}}\big((P Q^\top) \odot (1 - R_b)\big)

    Args:
        user_emb: ``[B, d]`` the batch users' embeddings ``P``.
        item_emb: ``[C, d]`` embeddings ``Q`` of the scored items.
        interactions: ``[B, C]`` 0/1 rows ``R_b`` (:func:`interaction_rows`).

    Returns:
        ``[B, C]``.
    """
    return F.normalize((user_emb @ item_emb.T) * (1 - interactions), dim=1)


def gumbel_real_rows(
    interactions: Tensor,
    collaborative: Tensor,
    temperature: float = 0.005,
    noise_scale: float = 1e-5,
    pre_scale: float = 100.0,
    gumbel: Tensor | None = None,
    reference: bool = False,
) -> Tensor:
    r"""MMSSL's "real" rows: Gumbel-softmax-perturbed interactions plus a collaborative signal.

    .. math::
        \tilde R = \operatorname{softmax}_{\text{row}}\Big(\frac{R_b + s\,g}{\tau}\Big), \qquad
        \text{real} = \operatorname{normalize}_{\text{row}}(\tilde R + \beta\, S^{cf})

    with :math:`g \sim \mathrm{Gumbel}(0, 1)` (noise scale :math:`s`, temperature
    :math:`\tau`, injection scale :math:`\beta`): the binary rows become a near-uniform
    distribution over each user's observed items, to which the (normalised) collaborative
    scores are added so the critic compares score rows with score rows.

    ``reference=True`` reproduces the released code's operator precedence,
    ``softmax(R_b - s * log(-log u) / τ)``, where only the noise is divided by τ: the softmax
    is then nearly uniform over *all* items (observed ones get ``e`` times the weight).

    Args:
        interactions: ``[B, C]`` 0/1 rows :math:`R_b`.
        collaborative: ``[B, C]`` collaborative score rows :math:`S^{cf}` (e.g.
            :func:`normalized_unseen_scores` of the final embeddings), treated as constants.
        temperature: :math:`\tau` (``real_data_tau``).
        noise_scale: :math:`s` (``log_log_scale``).
        pre_scale: :math:`\beta` (``ui_pre_scale``).
        gumbel: ``[B, C]`` Gumbel noise; sampled as ``-log(-log(u + 1e-8) + 1e-8)`` when ``None``.
        reference: the released code's precedence.

    Returns:
        ``[B, C]`` rows of unit L2 norm.
    """
    if gumbel is None:
        uniform = torch.rand_like(interactions)
        gumbel = -torch.log(-torch.log(uniform + 1e-8) + 1e-8)
    if reference:
        logits = interactions + noise_scale * gumbel / temperature
    else:
        logits = (interactions + noise_scale * gumbel) / temperature
    rows = logits.softmax(dim=1) + pre_scale * collaborative.detach()
    return F.normalize(rows, dim=1)


def sample_candidates(
    num_items: int,
    num_candidates: int,
    include: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``C`` distinct items drawn uniformly, those in ``include`` first.

    ``include`` (e.g. the batch's positive items) guarantees that every real row of the
    step has at least one observed item among the candidates; if it holds more than ``C``
    distinct items, a uniform subset of them is kept.

    Args:
        num_items: ``I``.
        num_candidates: ``C <= I``.
        include: item ids to take before the others.
        generator: source of randomness (the global one when ``None``).

    Returns:
        ``[C]`` item ids, ascending.
    """
    if not 0 < num_candidates <= num_items:
        raise ValueError(f"num_candidates must be in [1, {num_items}], got {num_candidates}")
    device = include.device if include is not None else torch.device("cpu")
    gen_device = generator.device if generator is not None else device
    keys = torch.rand(num_items, generator=generator, device=gen_device).to(device)
    if include is not None:
        keys[include] += 1.0
    return torch.topk(keys, num_candidates).indices.sort().values


def sort_rows_descending(rows: Tensor) -> Tensor:
    """Every row of ``rows [N, C]`` sorted in descending order, differentiably.

    The result is ``rows.sort(dim=1, descending=True).values`` (a gather of ``rows``, so
    gradients flow back to the original positions). On CPU for float32 it sorts with NumPy,
    2-3x faster than ``torch.sort`` there: values only when no gradient is needed, else an
    exact argsort of 64-bit keys (the order-preserving integer image of ``-x`` in the high
    half, the column in the low half, so equal values keep their column order).
    """
    if rows.device.type != "cpu" or rows.dtype != torch.float32 or rows.dim() != 2:
        return rows.sort(dim=1, descending=True).values
    array = (-rows.detach()).contiguous().numpy()
    if not rows.requires_grad:
        return torch.from_numpy(np.sort(array, axis=1)).neg_()
    bits = array.view(np.int32)
    key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).astype(np.int64) << 32
    key |= np.arange(array.shape[1], dtype=np.int64)
    key.sort(axis=1)
    return rows.gather(1, torch.from_numpy(key & 0xFFFFFFFF))


def topk_unseen_items(
    user_emb: Tensor, item_emb: Tensor, seen: CSR, users: Tensor, k: int
) -> Tensor:
    """The ``k`` highest-scoring items of each user among those not seen in training.

    Args:
        user_emb: ``[B, d]`` embeddings of ``users``.
        item_emb: ``[I, d]`` embeddings of all items.
        seen: per-user training items.
        users: ``[B]`` user ids.
        k: items per user.

    Returns:
        ``[B, k]`` item ids; ``-1`` where a user has fewer than ``k`` unseen items.
    """
    scores = user_emb @ item_emb.T
    values, items = topk_recommendations(scores, seen, users, k, inplace=True)
    return items.masked_fill(values == float("-inf"), -1)


class ModalityGraphGenerator(nn.Module):
    r"""MMSSL's modality-aware user–item graphs :math:`\hat A^m`, from top-k modality scores.

    For each modality ``m`` the graph links every user to ``k`` items chosen by the scores
    :math:`\langle h^m_u, h^m_i \rangle` of that modality's user/item representations; the
    chosen items are stored in the ``topk_items`` buffer (``-1`` = no edge) and the
    normalised propagation matrices (:func:`user_item_graph`) are rebuilt from it on demand.
    Until the first generation, :meth:`graphs` returns the ``fallback`` graph (MMSSL starts
    from the training graph).

    Two ways to fill it:

    - :meth:`refresh`: recompute every user's top-k unseen items at once (in user chunks).
    - :meth:`accumulate` (per batch) then :meth:`rebuild`: the released code's scheme, where
      users not accumulated since the last rebuild get no edges.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        num_modalities: ``M``.
        k: items per user (0 gives empty graphs, as the released code's default on TikTok).
        symmetric: normalisation of :func:`user_item_graph`.
    """

    def __init__(
        self, num_users: int, num_items: int, num_modalities: int, k: int, symmetric: bool = True
    ) -> None:
        super().__init__()
        if k < 0 or k > num_items:
            raise ValueError(f"k must be in [0, {num_items}], got {k}")
        self.num_users = num_users
        self.num_items = num_items
        self.k = k
        self.symmetric = symmetric
        shape = (num_modalities, num_users, k)
        self.register_buffer("topk_items", torch.full(shape, -1, dtype=torch.long))
        self.register_buffer("generated", torch.zeros((), dtype=torch.bool))
        self._pending: Tensor | None = None
        self._graphs: list[UserItemGraph] | None = None
        self._built_for: tuple[int, torch.device] | None = None
        self._version = 0
        self.register_load_state_dict_post_hook(lambda module, _keys: module._invalidate())

    def _invalidate(self) -> None:
        self._version += 1

    def graphs(self, fallback: UserItemGraph) -> list[UserItemGraph]:
        """One :class:`UserItemGraph` per modality (``fallback`` before any generation)."""
        if not bool(self.generated):
            return [fallback] * self.topk_items.size(0)
        device = self.topk_items.device
        if self._built_for != (self._version, device):
            self._graphs = [self._build(table) for table in self.topk_items]
            self._built_for = (self._version, device)
        return self._graphs

    def _build(self, table: Tensor) -> UserItemGraph:
        users = torch.arange(self.num_users, device=table.device).unsqueeze(1).expand_as(table)
        keep = table >= 0
        return user_item_graph(
            users[keep], table[keep], self.num_users, self.num_items, self.symmetric
        )

    @torch.no_grad()
    def refresh(
        self,
        user_embs: Sequence[Tensor],
        item_embs: Sequence[Tensor],
        seen: CSR,
        chunk_size: int | None = None,
    ) -> None:
        """Set every user's edges to its top-``k`` unseen items under each modality.

        Args:
            user_embs: per modality, ``[U, d]`` user representations.
            item_embs: per modality, ``[I, d]`` item representations.
            seen: per-user training items (excluded).
            chunk_size: users scored at once (default: about 4M scores per chunk).
        """
        if self.k == 0:
            self.topk_items.fill_(-1)
        else:
            chunk_size = chunk_size or max(1, 2**22 // max(self.num_items, 1))
            seen = seen.to(self.topk_items.device)
            for m, (user_emb, item_emb) in enumerate(zip(user_embs, item_embs, strict=True)):
                for users in torch.arange(self.num_users, device=user_emb.device).split(chunk_size):
                    self.topk_items[m, users] = topk_unseen_items(
                        user_emb[users], item_emb, seen, users, self.k
                    )
        self.generated.fill_(True)
        self._invalidate()

    @torch.no_grad()
    def accumulate(self, users: Tensor, items: Tensor) -> None:
        """Remember ``items [M, B, k]`` as the next edges of ``users [B]`` (see :meth:`rebuild`)."""
        if self._pending is None:
            self._pending = torch.full_like(self.topk_items, -1)
        self._pending[:, users] = items

    @torch.no_grad()
    def rebuild(self) -> None:
        """Regenerate the graphs from what was accumulated since the last rebuild, then forget it.

        Users without accumulated items get no edges (the released code's behaviour).
        """
        if self._pending is None:
            self.topk_items.fill_(-1)
        else:
            self.topk_items.copy_(self._pending)
        self._pending = None
        self.generated.fill_(True)
        self._invalidate()

    def extra_repr(self) -> str:
        return f"k={self.k}, symmetric={self.symmetric}"
