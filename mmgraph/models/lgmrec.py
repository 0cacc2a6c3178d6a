"""LGMRec (Guo et al., AAAI 2024): local and global graph learning for multimodal recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import NON_NEGATIVE, POSITIVE, Flag, Interval, Rule
from mmgraph.nn.conv import LightGCNEncoder
from mmgraph.nn.hypergraph import (
    LearnableHypergraph,
    MembershipNoise,
    interaction_matrix,
)
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.losses import embedding_norm, gather_triple, population_infonce, triple_bpr_loss
from mmgraph.nn.sparse import csr_transpose, sparse_matmul

#: per modality, ``(users [U, d], items [I, d])`` of the hypergraph (global) view
HyperViews = list[tuple[Tensor, Tensor]]


class LGMRec(Recommender):
    r"""Local graph embeddings (collaborative + modality) plus global hypergraph embeddings.

    **Local, collaborative** (CGE): :math:`E_c = \frac{1}{L+1}\sum_{l=0}^{L} \hat A^l [P; Q]`,
    LightGCN over the training graph (:math:`\hat A = D^{-1/2} A D^{-1/2}`, ``[U + I, U + I]``)
    from the ID tables :math:`P` (``[U, d]``) and :math:`Q` (``[I, d]``).

    **Local, modality** (MGE), decoupled from the IDs: per modality :math:`m` the item
    features are projected, :math:`F_m = X_m W_m` (``[I, d]``, no bias), users start from
    the mean of their items, :math:`G_m = D_u^{-1} R F_m` (``[U, d]``; :math:`R` the binary
    ``[U, I]`` interaction matrix), and both are propagated :math:`L_m` hops, keeping the
    last: :math:`E_m = \hat A^{L_m} [G_m; F_m]`. Local: :math:`E_\ell = E_c + \sum_m
    \bar E_m` with :math:`\bar x` the row-wise L2 normalisation.

    **Global** (:class:`~mmgraph.nn.LearnableHypergraph`): per modality ``A`` learnable
    hyperedges with memberships :math:`H^m_I = \text{Gumbel-softmax}_\tau(X_m V_m)` and
    :math:`H^m_U = \text{Gumbel-softmax}_\tau(R X_m V_m)`, both dropped out (keep rate
    :math:`k`), and :math:`L_h` hops from the collaborative item embeddings:
    :math:`Z = {H^m_I}^\top E^{(l-1)}`, :math:`E^{(l)} = H^m_I Z`, giving
    :math:`(U^m, I^m) = (H^m_U Z^{(L_h)}, E^{(L_h)})`. Global: :math:`E_g = \sum_m
    [U^m; I^m]`.

    **Ranking:** :math:`[u; i] = E_\ell + \alpha\, \bar E_g`.

    **Loss** ``loss_bpr + loss_hcl + loss_reg``: BPR on :math:`\langle u, i \rangle`;
    ``cl_weight *`` the hypergraph contrast, for every pair of modalities :math:`a < b` (in
    the dataset's order) :math:`\sum_{\text{batch}} \mathrm{InfoNCE}_\tau(U^a_u, U^b) +
    \mathrm{InfoNCE}_\tau(I^a_{i^+}, I^b)`, each anchor against all users (items) of the
    other modality, cosine similarities, *summed* over the batch
    (:func:`~mmgraph.nn.population_infonce`); ``reg_weight *``
    :func:`~mmgraph.nn.embedding_norm` of the batch's final user, positive and negative rows
    (norms, not squared, over the batch size).

    **Defaults** (MMRec's ``LGMRec.yaml``, tuned for Baby): ``d = 64``, ``L = 2``,
    ``L_m = 2``, ``L_h = 1``, ``A = 4``, ``k = 0.5``, :math:`\alpha = 0.3`,
    ``cl_weight = 1e-4``, ``reg_weight = 1e-6``, :math:`\tau = 0.2` (fixed in the code);
    Adam, lr 1e-3, batch 2048 (MMRec's overall defaults). The grid searches the values the
    yaml lists for Baby, Sports and Clothing.

    Deviations from MMRec's ``lgmrec.py`` (the same as the authors' latest code):

    - Any number of modalities: MGE and the hypergraph run per modality; the contrast takes
      every pair of modalities (MMRec: image anchors against text). With one modality there
      is no contrast (``loss_hcl = 0``), but the local and global views are kept (MMRec falls
      back to the collaborative embeddings alone unless both image and text exist).
    - Ranking (:meth:`forward`) uses noise-free memberships, :math:`\operatorname{softmax}(L
      / \tau)` without dropout, so that rankings are deterministic; MMRec also draws Gumbel
      noise at evaluation. Training draws the noise (and dropout masks) once per
      :meth:`loss` call, as MMRec does per batch; ``gumbel_noise=False`` with
      ``keep_rate=1`` makes training deterministic.
    - Gumbel noise is :math:`-\log(-\log u)` from a uniform draw
      (:func:`~mmgraph.nn.hypergraph.standard_gumbel_like`; torch: :math:`-\log` of an
      exponential draw), dropout masks from :func:`~mmgraph.nn.noise.bernoulli_like`: the
      same distributions.
    - User modality means divide by the degree (MMRec: by degree + 1e-7).
    - ``cf_model="mf"`` is ``num_layers=0``.
    - ``item_id_dropout``: optional cold-start training (off by default).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` distinct training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` item features (at least one; frozen).
        embedding_dim: ``d`` (``embedding_size`` = ``feat_embed_dim`` = 64).
        num_layers: collaborative hops ``L`` (``n_ui_layers``).
        modality_layers: modality hops ``L_m`` (``n_mm_layers``).
        hyper_layers: hypergraph hops ``L_h`` (``n_hyper_layer``; grid {1, 2}).
        num_hyperedges: ``A`` per modality (``hyper_num``; grid {4, 64}).
        keep_rate: :math:`k`, membership dropout keep rate (grid {0.5, 0.4, 0.2}).
        alpha: :math:`\alpha`, weight of the global embeddings (grid {0.3, 0.6, 0.2}).
        temperature: :math:`\tau` of the Gumbel-softmax and of the contrast.
        gumbel_noise: draw Gumbel noise in training.
        cl_weight: weight of the hypergraph contrast.
        reg_weight: weight of the embedding norm penalty.
        item_id_dropout: cold-start option (:class:`~mmgraph.nn.ItemIDDropout`): the chance
            that an item's ID row is zeroed in a training step; items without training
            interactions are then ranked with a zero ID row. 0 (default) turns it off.
    """

    name = "lgmrec"
    #: the values MMRec's LGMRec.yaml gives for Baby (set), Sports and Clothing (commented
    #: out): 36 points
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "hyper_layers": (1, 2),
        "num_hyperedges": (4, 64),
        "keep_rate": (0.5, 0.4, 0.2),
        "alpha": (0.3, 0.6, 0.2),
    }
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "modality_layers": Interval(0, integer=True),
        "hyper_layers": Interval(1, integer=True),
        "num_hyperedges": Interval(1, integer=True),
        "keep_rate": Interval(0.0, 1.0, low_open=True),
        "alpha": NON_NEGATIVE,
        "temperature": POSITIVE,
        "gumbel_noise": Flag(),
        "cl_weight": NON_NEGATIVE,
    }
    requires_features = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 2,
        modality_layers: int = 2,
        hyper_layers: int = 1,
        num_hyperedges: int = 4,
        keep_rate: float = 0.5,
        alpha: float = 0.3,
        temperature: float = 0.2,
        gumbel_noise: bool = True,
        cl_weight: float = 1e-4,
        reg_weight: float = 1e-6,
        item_id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        if not features:
            raise ValueError("LGMRec needs at least one modality")
        self.modalities = list(features)
        self.dim = embedding_dim
        self.modality_layers = modality_layers
        self.alpha = alpha
        self.temperature = temperature
        self.cl_weight = cl_weight
        self.reg_weight = reg_weight
        self.add_id_embeddings(embedding_dim)
        self.id_dropout = ItemIDDropout(item_id_dropout, train_edge_index[1], num_items)
        self.encoder = LightGCNEncoder(num_layers)
        self.projections = nn.ModuleList(
            nn.Linear(x.size(1), embedding_dim, bias=False) for x in features.values()
        )
        self.hypergraph = LearnableHypergraph(
            [x.size(1) for x in features.values()],
            num_hyperedges,
            hyper_layers,
            temperature,
            keep_rate,
            gumbel_noise,
        )
        for index, x in enumerate(features.values()):
            self.register_buffer(f"features_{index}", x.float(), persistent=False)
        self.register_adjacency(train_edge_index)
        interactions = interaction_matrix(train_edge_index, num_users, num_items)
        self.register_buffer("interactions", interactions, persistent=False)
        self.register_buffer("interactions_t", csr_transpose(interactions), persistent=False)
        degree = torch.bincount(train_edge_index[0], minlength=num_users).float()
        self.register_buffer(
            "user_inv_degree", 1.0 / degree.clamp_min(1).unsqueeze(1), persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        for linear in self.projections:
            nn.init.xavier_uniform_(linear.weight)
        self.hypergraph.reset_parameters()

    def features(self) -> list[Tensor]:
        """The frozen ``[I, d_m]`` features, in :attr:`modalities` order."""
        return [getattr(self, f"features_{index}") for index in range(len(self.modalities))]

    def collaborative(self) -> Tensor:
        """``[U + I, d]`` CGE: LightGCN's layer mean of the ID tables."""
        x = torch.cat([self.user_embedding.weight, self.id_dropout(self.item_embedding.weight)])
        return self.encoder(x, self.adj)

    def modality_views(self) -> list[Tensor]:
        """Per modality ``[U + I, d]`` MGE, before normalisation.

        The modalities are propagated together, as one ``[U + I, M d]`` matrix.
        """
        items = torch.cat(
            [linear(x) for linear, x in zip(self.projections, self.features(), strict=True)], 1
        )
        users = sparse_matmul(self.interactions, items, self.interactions_t) * self.user_inv_degree
        h = torch.cat([users, items])
        for _ in range(self.modality_layers):
            h = sparse_matmul(self.adj, h, self.adj)
        return list(h.split(self.dim, dim=1))

    def encode(
        self, noise: Sequence[MembershipNoise] | None = None
    ) -> tuple[Tensor, Tensor, HyperViews]:
        """``(users [U, d], items [I, d], hyper views)``; ``noise`` from
        :meth:`LearnableHypergraph.draw` (``None``: noise-free memberships)."""
        collaborative = self.collaborative()
        local = collaborative + sum(F.normalize(view, dim=1) for view in self.modality_views())
        hyper = self.hypergraph(
            collaborative[self.num_users :],
            self.features(),
            self.interactions,
            self.interactions_t,
            noise,
        )
        global_ = sum(torch.cat(view) for view in hyper)
        final = local + self.alpha * F.normalize(global_, dim=1)
        users, items = final.split([self.num_users, self.num_items])
        return users, items, hyper

    def forward(self) -> Embeddings:
        users, items, _ = self.encode()
        return users, items

    def loss(
        self, batch: Batch, noise: Sequence[MembershipNoise] | None = None
    ) -> dict[str, Tensor]:
        """The loss terms; ``noise`` fixes the hypergraph's draws (default: fresh ones)."""
        if noise is None:
            noise = self.hypergraph.draw(self.num_users, self.num_items, self.adj.device)
        users, items, hyper = self.encode(noise)
        rows = gather_triple(users, items, batch)
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_hcl": self.cl_weight * self.hyper_contrast(hyper, batch),
            "loss_reg": self.reg_weight * embedding_norm(*rows),
        }

    def hyper_contrast(self, hyper: HyperViews, batch: Batch) -> Tensor:
        """Summed InfoNCE between the modalities' hypergraph views of the batch's users and
        positive items (0 with one modality)."""
        total = self.user_embedding.weight.new_zeros(())
        for (users_a, items_a), (users_b, items_b) in combinations(hyper, 2):
            total = total + population_infonce(
                users_a.index_select(0, batch.users), users_b, batch.users, self.temperature
            )
            total = total + population_infonce(
                items_a.index_select(0, batch.pos_items), items_b, batch.pos_items, self.temperature
            )
        return total
