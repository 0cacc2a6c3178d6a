"""DiffMM (Jiang et al., ACM MM 2024): multi-modal graph diffusion for recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.sampling import Batch
from mmgraph.errors import ConfigError, DataError
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import (
    DROP_PROBABILITY,
    NON_NEGATIVE,
    POSITIVE,
    Choice,
    Interval,
    ListOf,
    Rule,
    config_error,
)
from mmgraph.nn.diffusion import Denoiser, GaussianDiffusion, signal_injection_loss
from mmgraph.nn.encoders import ModalityProjection
from mmgraph.nn.functional import l2_normalize
from mmgraph.nn.losses import gather_triple, population_infonce, triple_bpr_loss
from mmgraph.nn.perturb import drop_entries
from mmgraph.nn.sparse import sparse_matmul
from mmgraph.nn.structure import interaction_rows, self_loop_adjacency

#: ``"main"``: each modality view against the main view (the authors' ``cl_method 1``, their
#: TikTok setting); ``"modalities"``: every pair of modality views (``cl_method 0``).
CL_METHODS = ("main", "modalities")

#: a graph for propagation: ``(adj_t, adj)``, the matrix and its transpose (for the backward)
Graph = tuple[Tensor, Tensor]


class DiffMM(Recommender):
    r"""Modality-aware graph diffusion plus cross-modal contrast (Jiang et al., ACM MM 2024).

    **Diffusion.** Per modality ``m`` a :class:`~mmgraph.nn.Denoiser` :math:`f_m` learns to
    reconstruct users' interaction rows :math:`x_0 = R_u \in \{0,1\}^I` from their noised
    versions (:class:`~mmgraph.nn.GaussianDiffusion`, ``T = diffusion_steps``):

    .. math::
        \mathcal L^m = \frac1B \sum_b w_{t_b} \tfrac1I \lVert x_{0,b} - f_m(x_{t_b,b}, t_b)
        \rVert^2 + \lambda_\text{msi} \tfrac{1}{Bd} \sum_b
        \lVert f_m(x_{t_b,b}, t_b)\, F_m - x_{0,b} E_i \rVert^2

    (the second term, modality-aware signal injection, ties the denoised row to the
    modality: :math:`F_m = W_m x^m + b_m` the projected item features and :math:`E_i` the
    item ID table, both constants here). The denoiser sees only :math:`(x_t, t)`; the modality
    reaches it through this term. The deterministic reverse process from :math:`x_0`
    (:meth:`~mmgraph.nn.GaussianDiffusion.reverse`) gives :math:`\hat x^m_u`, and the
    generated graph links each user to its ``rebuild_k`` top items of :math:`\hat x^m_u`
    (seen items included, as in the authors' code).

    **Graphs.** :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}` of the training graph and
    :math:`\hat G_m` of the generated one (:func:`~mmgraph.nn.self_loop_adjacency`, ``[N, N]``,
    ``N = U + I``). In training :math:`\hat G_m` has its entries kept with probability
    ``keep_rate`` and scaled by ``1 / keep_rate``, drawn once per epoch; ``forward()`` uses the
    full :math:`\hat G_m`. Before the first generation :math:`\hat G_m = I` (self-loops only).

    **Recommender.** With :math:`E = [E_u; E_i]` (``[N, d]``),
    :math:`X_m = [E_u; \mathrm{l2norm}(F_m)]` and learned modality weights
    :math:`\omega = \mathrm{softmax}(w)`:

    .. math::
        H_m = \hat A X_m + \hat A [(\hat A X_m)_u; E_i] + \lambda_\text{adj} \hat G_m E,\qquad
        \bar H = \sum_m \omega_m H_m

        Z = \sum_{l=0}^{L} \hat A^l \bar H + \lambda_\text{ris}\, \mathrm{l2norm}(\bar H)

    :math:`Z = [Z_u; Z_i]` is returned by ``forward()`` (``[U, d]``, ``[I, d]``). The
    modality views are :math:`V_m = \sum_{l=0}^{L} \hat A^l \hat G_m X_m`.

    **Loss** (recommender step): ``loss_bpr`` (BPR on :math:`\langle z_u, z_i \rangle`),
    ``loss_reg`` :math:`= \lambda (\lVert E_u \rVert^2 + \lVert E_i \rVert^2)` (the full
    tables, every batch), ``loss_cl`` :math:`= \lambda_\text{cl} \sum_m
    [\mathrm{NCE}(Z_u, V_{m,u}) + \mathrm{NCE}(Z_i, V_{m,i})]` over the batch's users and
    positive items, each against all users / items (:func:`~mmgraph.nn.population_infonce`,
    averaged, temperature ``temperature``; ``cl_method="modalities"`` contrasts every pair of views
    :math:`(V_m, V_{m'})`, :math:`m < m'`, instead).

    **Training** (the authors' alternation). :meth:`on_epoch_start` first trains the
    denoisers for one pass over all users in shuffled batches of ``diffusion_batch_size``,
    with their own Adam (``diffusion_lr``), then regenerates every user's top-k edges per
    modality, then draws the epoch's edge-dropped graphs; the batches of the epoch then train
    the recommender (Adam over everything but the denoisers, ``lr`` / ``weight_decay`` from
    the trainer). ``loss_diff`` and ``loss_msi`` (the last diffusion pass's means, 0 before
    one ran) are logged with every batch, outside the recommender's total.

    **Memory.** The diffusion never holds a dense users x items matrix: its largest dense
    blocks are ``[diffusion_batch_size, I]`` float rows (the observed, noised and denoised rows
    of one user batch, a handful at once in the backward pass), and each denoiser's
    ``[I + time_embedding_dim, h]`` / ``[h, I]`` weights; the generated graphs are stored as
    ``[M, U, rebuild_k]`` item ids and propagated as sparse matrices. A training batch's
    contrastive logits are ``[B, U]`` and ``[B, I]``.

    **Defaults** (the authors' ``Params.py`` with their TikTok command ``--reg 1e-4 --ssl_reg
    1e-2 --trans 1 --e_loss 0.1 --cl_method 1``): ``d = 64``, one GCN layer, ``reg_weight``
    1e-4, ``cl_weight`` 1e-2, ``temperature`` 0.5, ``keep_rate`` 0.5, ``ris_lambda`` 0.5,
    ``ris_adj_lambda`` 0.2, ``rebuild_k`` 1, ``msi_weight`` (``e_loss``) 0.1, 5 steps, noise
    scale 0.1 over [1e-4, 0.02], ``sampling_steps`` 0, denoiser ``(1000,)`` with a 10-wide time
    embedding and input dropout 0.5, ``lr`` 1e-3 for both optimisers, batch 1024, 50 epochs.

    Deviations from the authors' code (HKUDS/DiffMM; MMRec has no DiffMM):
        - Any number of modalities (the code hard-codes image + text, plus audio on TikTok);
          the modality weights start uniform as there.
        - Interaction rows are built per user batch from the sparse training matrix; the code
          keeps the dense ``U x I`` matrix in memory. The denoisers get one backward pass per
          modality (the same gradients as the code's single backward of their sum) and share
          one Adam (per-parameter, identical to the code's three).
        - ``forward()`` (evaluation) propagates on the full generated graphs; the code
          evaluates on the epoch's edge-dropped ones.
        - Before the first generation the generated graphs are self-loops only; the code has
          none until its first epoch builds them (so does the trainer here).
        - Negatives come from the shared sampler (``negative_pool``); the code draws them
          uniformly among each user's non-interacted items. BPR is a mean over the batch (the
          code divides the sum by the nominal batch size) computed with ``logsigmoid``.
        - Features are projected by a linear map with bias (the code's ``trans=1``, its TikTok
          and Sports setting); ``trans=0`` (LeakyReLU of a bias-free map, Baby) is not offered.
        - The denoiser's ``norm`` and ``sampling_noise`` options stay at the code's default
          (off); the schedule's constants are float32 (the code's loss weights are float64).
        - ``on_epoch_start`` trains the denoisers only once :meth:`configure_optimizers` has
          given them an optimiser (it always regenerates the graphs).

    Args:
        features: modality name -> ``[I, d_m]`` frozen item features (at least one).
        embedding_dim: ``d`` (``latdim``).
        num_layers: ``L``, GCN layers after the modality fusion (``gnn_layer``).
        reg_weight: :math:`\lambda` (``reg``).
        cl_weight: :math:`\lambda_\text{cl}` (``ssl_reg``).
        temperature: InfoNCE temperature (``temp``).
        cl_method: ``"main"`` or ``"modalities"`` (``cl_method`` 1 / 0).
        keep_rate: fraction of generated-graph entries kept in training (``keepRate``).
        ris_lambda: :math:`\lambda_\text{ris}`, weight of the normalised fused modality term.
        ris_adj_lambda: :math:`\lambda_\text{adj}`, weight of the generated-graph term.
        rebuild_k: generated items per user and modality.
        msi_weight: :math:`\lambda_\text{msi}` (``e_loss``).
        diffusion_steps: ``T`` (``steps``).
        noise_scale: schedule scale (``noise_scale``).
        noise_min: schedule start (``noise_min``).
        noise_max: schedule end (``noise_max``).
        sampling_steps: 0 denoises the observed rows themselves; ``s > 0`` noises them to step
            ``s - 1`` first (``sampling_steps``).
        denoiser_dims: the denoiser's hidden widths (``dims``).
        time_embedding_dim: width of its timestep embedding (``d_emb_size``).
        denoiser_dropout: its input dropout while training.
        diffusion_lr: the denoisers' Adam learning rate (the code uses ``lr``).
        diffusion_batch_size: users per diffusion batch (the code uses ``batch``).
    """

    name = "diffmm"
    #: not the paper's search ranges (not available here): the values the authors' three run
    #: commands (TikTok, Baby, Sports) use for the three loss weights they change per dataset
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "reg_weight": (1e-6, 1e-5, 1e-4),
        "cl_weight": (1e-2, 1e-1),
        "msi_weight": (0.01, 0.1, 0.5),
    }
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 1024, "epochs": 50}
    requires_features = True
    separate_loss_terms = frozenset({"loss_diff", "loss_msi"})
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "cl_weight": NON_NEGATIVE,
        "temperature": POSITIVE,
        "cl_method": Choice(CL_METHODS),
        "keep_rate": Interval(0.0, 1.0, low_open=True),
        "ris_lambda": NON_NEGATIVE,
        "ris_adj_lambda": NON_NEGATIVE,
        "rebuild_k": Interval(1, integer=True),
        "msi_weight": NON_NEGATIVE,
        "diffusion_steps": Interval(1, integer=True),
        "noise_scale": POSITIVE,
        "noise_min": NON_NEGATIVE,
        "noise_max": NON_NEGATIVE,
        "sampling_steps": Interval(0, integer=True),
        "denoiser_dims": ListOf(Interval(1, integer=True)),
        "time_embedding_dim": Interval(1, integer=True),
        "denoiser_dropout": DROP_PROBABILITY,
        "diffusion_lr": POSITIVE,
        "diffusion_batch_size": Interval(1, integer=True),
    }

    @classmethod
    def check_hyperparameters(cls, hparams: Mapping[str, Any], origin: str = "") -> None:
        super().check_hyperparameters(hparams, origin)
        low, high = hparams.get("noise_min"), hparams.get("noise_max")
        if low is not None and high is not None:
            if low > high:
                raise config_error(
                    f"diffmm noise_min ({low}) must not exceed noise_max ({high})", origin
                )
            scale = hparams.get("noise_scale")
            if scale is not None and scale * high >= 1:
                raise config_error(
                    f"diffmm noise_scale * noise_max must be < 1, got {scale} * {high}", origin
                )
        steps, start = hparams.get("diffusion_steps"), hparams.get("sampling_steps")
        if steps is not None and start is not None and start > steps:
            raise config_error(
                f"diffmm sampling_steps ({start}) must not exceed diffusion_steps ({steps})",
                origin,
            )

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 1,
        reg_weight: float = 1e-4,
        cl_weight: float = 1e-2,
        temperature: float = 0.5,
        cl_method: str = "main",
        keep_rate: float = 0.5,
        ris_lambda: float = 0.5,
        ris_adj_lambda: float = 0.2,
        rebuild_k: int = 1,
        msi_weight: float = 0.1,
        diffusion_steps: int = 5,
        noise_scale: float = 0.1,
        noise_min: float = 1e-4,
        noise_max: float = 0.02,
        sampling_steps: int = 0,
        denoiser_dims: Sequence[int] = (1000,),
        time_embedding_dim: int = 10,
        denoiser_dropout: float = 0.5,
        diffusion_lr: float = 1e-3,
        diffusion_batch_size: int = 1024,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        if not features:
            raise DataError("DiffMM needs at least one item modality; the dataset has none")
        if rebuild_k > num_items:
            raise ConfigError(
                f"diffmm rebuild_k must be at most the number of items ({num_items}), "
                f"got {rebuild_k}"
            )
        if cl_method not in CL_METHODS:
            raise ConfigError(f"diffmm cl_method must be one of {CL_METHODS}, got {cl_method!r}")
        self.modalities = list(features)
        self.num_layers = num_layers
        self.reg_weight = reg_weight
        self.cl_weight = cl_weight
        self.temperature = temperature
        self.cl_method = cl_method
        self.keep_rate = keep_rate
        self.ris_lambda = ris_lambda
        self.ris_adj_lambda = ris_adj_lambda
        self.msi_weight = msi_weight
        self.sampling_steps = sampling_steps
        self.diffusion_lr = diffusion_lr
        self.diffusion_batch_size = diffusion_batch_size

        self.add_id_embeddings(embedding_dim)
        self.content = ModalityProjection(features, embedding_dim)
        self.modal_weight = nn.Parameter(torch.full((len(features),), 1.0 / len(features)))
        self.diffusion = GaussianDiffusion(diffusion_steps, noise_scale, noise_min, noise_max)
        self.denoisers = nn.ModuleList(
            Denoiser(num_items, list(denoiser_dims), time_embedding_dim, denoiser_dropout)
            for _ in self.modalities
        )
        adj = self_loop_adjacency(train_edge_index[0], train_edge_index[1], num_users, num_items)
        self.register_buffer("adj", adj, persistent=False)
        #: each user's generated items per modality, ``-1`` before the first generation
        self.register_buffer(
            "generated_items", torch.full((len(features), num_users, rebuild_k), -1)
        )
        self._diffusion_optimizer: torch.optim.Optimizer | None = None
        self._diffusion_means = {"loss_diff": 0.0, "loss_msi": 0.0}
        self._version = 0  # bumped whenever generated_items changes
        self._full_graphs: tuple[tuple[int, torch.device], list[Graph]] | None = None
        self._train_graphs: tuple[tuple[int, torch.device], list[Graph]] | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module._invalidate())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.content.reset_parameters()
        nn.init.constant_(self.modal_weight, 1.0 / len(self.modalities))
        for denoiser in self.denoisers:
            denoiser.reset_parameters()

    def _invalidate(self) -> None:
        self._version += 1

    # ------------------------------------------------------------------ generated graphs
    def _cache_key(self) -> tuple[int, torch.device]:
        return self._version, self.generated_items.device

    def generated_graph(self, modality: int) -> Tensor:
        r""":math:`\hat G_m`, ``[N, N]`` sparse CSR, from the stored top-k items."""
        table = self.generated_items[modality]
        users = torch.arange(self.num_users, device=table.device).unsqueeze(1).expand_as(table)
        keep = table >= 0
        return self_loop_adjacency(users[keep], table[keep], self.num_users, self.num_items)

    def full_graphs(self) -> list[Graph]:
        """Per modality the full generated graph (symmetric: its own transpose)."""
        key = self._cache_key()
        if self._full_graphs is None or self._full_graphs[0] != key:
            graphs = [self.generated_graph(m) for m in range(len(self.modalities))]
            self._full_graphs = (key, [(g, g) for g in graphs])
        return self._full_graphs[1]

    def draw_training_graphs(self) -> list[Graph]:
        """Draw this epoch's edge-dropped generated graphs (torch's global generator)."""
        graphs = [drop_entries(g, self.keep_rate) for g, _ in self.full_graphs()]
        self._train_graphs = (self._cache_key(), graphs)
        return graphs

    def training_graphs(self) -> list[Graph]:
        """The epoch's edge-dropped graphs (drawn now if the generation changed since)."""
        if self._train_graphs is None or self._train_graphs[0] != self._cache_key():
            return self.draw_training_graphs()
        return self._train_graphs[1]

    # ------------------------------------------------------------------ recommender
    def _propagate(self, x: Tensor) -> Tensor:
        return sparse_matmul(self.adj, x, self.adj)

    def _layer_sum(self, x: Tensor) -> Tensor:
        """:math:`\\sum_{l=0}^{L} \\hat A^l x`."""
        total = x
        for _ in range(self.num_layers):
            x = self._propagate(x)
            total = total + x
        return total

    def modality_inputs(self) -> list[Tensor]:
        """Per modality :math:`X_m = [E_u; \\mathrm{l2norm}(F_m)]`, ``[N, d]``."""
        users = self.user_embedding.weight
        return [torch.cat([users, l2_normalize(f)]) for f in self.content().values()]

    def encode(self, graphs: Sequence[Graph], inputs: Sequence[Tensor]) -> Tensor:
        """``Z`` (``[N, d]``) propagated with the generated ``graphs``."""
        users, items = self.user_embedding.weight, self.item_embedding.weight
        ids = torch.cat([users, items])
        weights = torch.softmax(self.modal_weight, dim=0)
        fused = ids.new_zeros(())
        for m, ((g, g_t), x) in enumerate(zip(graphs, inputs, strict=True)):
            h = self._propagate(x)
            h = h + self._propagate(torch.cat([h[: self.num_users], items]))
            h = h + self.ris_adj_lambda * sparse_matmul(g, ids, g_t)
            fused = fused + weights[m] * h
        return self._layer_sum(fused) + self.ris_lambda * l2_normalize(fused)

    def views(self, graphs: Sequence[Graph], inputs: Sequence[Tensor]) -> list[Tensor]:
        """Per modality the contrastive view :math:`V_m`, ``[N, d]``."""
        return [
            self._layer_sum(sparse_matmul(g, x, g_t))
            for (g, g_t), x in zip(graphs, inputs, strict=True)
        ]

    def forward(self) -> Embeddings:
        z = self.encode(self.full_graphs(), self.modality_inputs())
        return z[: self.num_users], z[self.num_users :]

    def _contrast(self, a: Tensor, b: Tensor, batch: Batch) -> Tensor:
        """Mean InfoNCE of the batch's users (positive items) in ``a`` against all users
        (items) of ``b``, the two parts summed."""
        users, items, t = self.num_users, batch.pos_items, self.temperature
        user_rows = a[:users].index_select(0, batch.users)
        item_rows = a[users:].index_select(0, items)
        user_part = population_infonce(user_rows, b[:users], batch.users, t, "mean")
        item_part = population_infonce(item_rows, b[users:], items, t, "mean")
        return user_part + item_part

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        graphs, inputs = self.training_graphs(), self.modality_inputs()
        z = self.encode(graphs, inputs)
        views = self.views(graphs, inputs)
        rows = gather_triple(z[: self.num_users], z[self.num_users :], batch)
        if self.cl_method == "main":
            pairs = [(z, view) for view in views]
        else:
            pairs = [
                (views[a], views[b]) for a in range(len(views)) for b in range(a + 1, len(views))
            ]
        contrast = sum((self._contrast(a, b, batch) for a, b in pairs), z.new_zeros(()))
        tables = self.user_embedding.weight.pow(2).sum() + self.item_embedding.weight.pow(2).sum()
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_reg": self.reg_weight * tables,
            "loss_cl": self.cl_weight * contrast,
        }

    # ------------------------------------------------------------------ diffusion
    def user_rows(self, users: Tensor) -> Tensor:
        """``[B, I]`` dense 0/1 training rows of ``users``."""
        return interaction_rows(self.seen_items, users, self.num_items)

    def diffusion_loss(
        self,
        users: Tensor,
        timesteps: Sequence[Tensor] | None = None,
        noise: Sequence[Tensor] | None = None,
        backward: bool = False,
    ) -> dict[str, Tensor]:
        """The denoisers' loss terms on one user batch (sums over modalities).

        Args:
            users: ``[B]`` user ids.
            timesteps: per modality ``[B]`` steps (drawn when ``None``).
            noise: per modality ``[B, I]`` noise (drawn when ``None``).
            backward: back-propagate each modality's terms as soon as they are computed
                (one modality's activations alive at a time); the returned terms are then
                detached.

        Returns:
            ``{"loss_diff", "loss_msi"}`` (``loss_msi`` weighted by ``msi_weight``).
        """
        x0 = self.user_rows(users)
        with torch.no_grad():
            id_items = self.item_embedding.weight.detach()
            projected = [f.detach() for f in self.content().values()]
        total_diff, total_msi = x0.new_zeros(()), x0.new_zeros(())
        for m, denoiser in enumerate(self.denoisers):
            t = None if timesteps is None else timesteps[m]
            eps = None if noise is None else noise[m]
            x0_hat, weighted = self.diffusion.loss_terms(denoiser, x0, t, eps)
            diff = weighted.mean()
            msi = self.msi_weight * signal_injection_loss(x0_hat, x0, projected[m], id_items)
            if backward:
                (diff + msi).backward()
                diff, msi = diff.detach(), msi.detach()
            total_diff, total_msi = total_diff + diff, total_msi + msi
        return {"loss_diff": total_diff, "loss_msi": total_msi}

    def train_diffusion(self, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One pass of the denoisers over all users in shuffled batches; the terms' means."""
        device = self.generated_items.device
        order = torch.randperm(self.num_users).to(device)
        sums = {"loss_diff": 0.0, "loss_msi": 0.0}
        batches = order.split(self.diffusion_batch_size)
        for users in batches:
            optimizer.zero_grad(set_to_none=True)
            terms = self.diffusion_loss(users, backward=True)
            optimizer.step()
            for key, value in terms.items():
                sums[key] += float(value)
        return {key: value / len(batches) for key, value in sums.items()}

    @torch.no_grad()
    def regenerate_graphs(self) -> None:
        """Set every user's generated items: the top ``rebuild_k`` of its denoised row, per
        modality, in user batches of ``diffusion_batch_size``."""
        device = self.generated_items.device
        k = self.generated_items.size(2)
        for users in torch.arange(self.num_users, device=device).split(self.diffusion_batch_size):
            x0 = self.user_rows(users)
            for m, denoiser in enumerate(self.denoisers):
                denoised = self.diffusion.reverse(denoiser, x0, self.sampling_steps)
                self.generated_items[m, users] = denoised.topk(k, dim=1).indices
        self._invalidate()

    # ------------------------------------------------------------------ training hooks
    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """``[Adam(recommender), Adam(denoisers, diffusion_lr)]``; disjoint parameter sets."""
        denoising = {id(p) for p in self.denoisers.parameters()}
        recommender = [p for p in self.parameters() if id(p) not in denoising]
        recommender_opt = torch.optim.Adam(recommender, lr=lr, weight_decay=weight_decay)
        diffusion_opt = torch.optim.Adam(self.denoisers.parameters(), lr=self.diffusion_lr)
        self._diffusion_optimizer = diffusion_opt
        return [recommender_opt, diffusion_opt]

    def on_epoch_start(self, epoch: int) -> None:
        """Train the denoisers (once they have an optimiser), regenerate the graphs and draw
        the epoch's edge-dropped copies."""
        if self._diffusion_optimizer is not None:
            self._diffusion_means = self.train_diffusion(self._diffusion_optimizer)
        self.regenerate_graphs()
        self.draw_training_graphs()

    def training_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        """One recommender step; the denoisers' epoch means ride along for logging."""
        optimizer = optimizers[0]
        terms = self.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        out = {key: value.detach() for key, value in terms.items()}
        device = out["loss_bpr"].device
        for key, value in self._diffusion_means.items():
            out[key] = torch.tensor(value, device=device)
        return out
