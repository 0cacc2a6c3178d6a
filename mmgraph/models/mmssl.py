"""MMSSL (Wei et al., WWW 2023): multi-modal self-supervised learning for recommendation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgraph.data.dataset import InteractionDataset
from mmgraph.data.sampling import Batch, DistinctUserSampler
from mmgraph.errors import ConfigError, DataError
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.models.hparams import (
    DROP_PROBABILITY,
    NON_NEGATIVE,
    POSITIVE,
    Flag,
    Interval,
    Rule,
    config_error,
)
from mmgraph.nn.adversarial import AdversarialDiscriminator
from mmgraph.nn.attention import ModalityAttention
from mmgraph.nn.contrastive import ContrastiveHead
from mmgraph.nn.conv import LightGCNConv
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.losses import embedding_l2, gather_triple, triple_bpr_loss
from mmgraph.nn.structure import (
    ModalityGraphGenerator,
    UserItemGraph,
    gumbel_real_rows,
    interaction_rows,
    normalized_unseen_scores,
    sample_candidates,
    sort_rows_descending,
    user_item_graph,
)

#: the released code's learning-rate schedule, ``0.96 ** (epoch / 50)`` (built, never stepped).
LR_DECAY, LR_DECAY_EPOCHS = 0.96, 50


class MMSSLOutput(NamedTuple):
    """Everything one MMSSL forward pass produces (per-modality lists in modality order).

    Attributes:
        user: ``[U, d]`` final user representations (ranking, BPR).
        item: ``[I, d]`` final item representations.
        modality_user: per modality ``[U, d]`` feature branch ``h^m_u``.
        modality_item: per modality ``[I, d]`` feature branch ``h^m_i``.
        structure_user: per modality ``[U, d]`` ID embeddings propagated on the generated
            graph, ``g^m_u`` (the contrastive views).
    """

    user: Tensor
    item: Tensor
    modality_user: list[Tensor]
    modality_item: list[Tensor]
    structure_user: list[Tensor]


class MMSSL(Recommender):
    r"""Adversarial modality-aware structure learning plus cross-modal contrast (WWW 2023).

    Per modality ``m`` the frozen item features pass a linear encoder with dropout,
    :math:`f^m = \mathrm{drop}(W_m x^m)`, and the training graph
    (:math:`h^m_u = \hat R f^m`, :math:`h^m_i = \check R h^m_u`). A generated graph
    :math:`\hat A^m` links each user to the ``k`` unseen items its modality scores rank first;
    propagating the ID embeddings on it gives views :math:`g^m_u = \hat A^m E_i`,
    :math:`g^m_i = \hat A^{m\top} E_u`, fused by multi-head self-attention across modalities
    (:class:`~mmgraph.nn.ModalityAttention`) and added to the ID embeddings
    (:math:`+ 0.36\,\mathrm{l2norm}`). Two layers of user–item propagation follow (the item
    layer reads the new user layer; the last layer is a softmax over the embedding dims), the
    layer mean is taken and :math:`0.55\,\mathrm{l2norm}(h^m)` of every modality is added.
    Every graph is normalised as in the released code, :math:`\hat R = D_u^{-1/2} R` towards
    users and :math:`\check R = D_i^{-1/2} R^\top` towards items, not LightGCN's symmetric
    form: the 0.55 / 0.36 weights are tuned to the degree-scaled ID layers this gives (full
    TikTok, ``adv_rate=0``, valid Recall@20 after epochs 1 / 2: 0.059 / 0.064 one-sided vs
    0.023 / 0.021 with ``symmetric_norm``).

    ``model_cat_rate`` (0.55, the paper's one setting for every dataset) is the knob that
    matters on data with weak features: on TikTok (image + audio, ``num_candidates=1024``,
    seed 2024) best valid Recall@20 is 0.0896 / 0.0867 / 0.0837 / 0.0686 for 0 / 0.1 / 0.3 /
    0.55 (``mmgraph tune``; the shipped ``tiktok/mmssl`` config takes 0).

    Training (one :meth:`training_step` per batch of distinct users): the critic
    (:class:`~mmgraph.nn.AdversarialDiscriminator`) learns to tell "fake" rows, the modality
    score rows ``u_sim(h^m_u, h^m_i)``, from "real" rows, Gumbel-perturbed interactions plus
    100 x the collaborative score row (:func:`~mmgraph.nn.gumbel_real_rows`), with WGAN-GP;
    then the recommender minimises ``loss_bpr + loss_reg + loss_feat + loss_cl + loss_adv``
    (``loss_cl``: InfoNCE between :math:`g^m_u` and the final user embedding, intra-view
    negatives; ``loss_adv = -G_rate·mean D(fake)``). ``loss_critic`` is logged too, outside the
    logged total ``loss`` (another objective). Each
    optimiser updates only its own parameters: AdamW for the recommender (``lr``,
    ``weight_decay`` from the trainer), Adam(``critic_lr``, betas (0.5, 0.9)) for the critic.
    With ``adv_rate=0`` the critic cannot reach the recommender and is skipped altogether.

    Deviations from the released code (HKUDS/MMSSL; ``reference=True`` restores those marked *):
        - *Attention uses W_Q, W_K, W_V and W_O; the code's keys are its queries and its values skip the weights, an exact no-op.
        - *Generated graphs: every user's top-k unseen items by cosine of h^m, refreshed for all users at each epoch start (from epoch 2) without dropout; the code ranks by dot product, rebuilds per batch from at most one batch and so empties them.
        - *k = max(min_topk, int(I · m_topk_rate)) >= 1; the code's int(I · 1e-4) is 0 on TikTok and Baby.
        - *The critic's LeakyReLU has slope 0.2; the code's LeakyReLU(True) has slope 1, the identity.
        - *The critic has no batch norm and a linear output (a plain WGAN-GP critic); the code's BN and sigmoid x 100 stop it from learning (see AdversarialDiscriminator).
        - *Real rows are softmax((R + s·g)/τ); the code's precedence gives softmax(R + s·g/τ), nearly uniform over all items.
        - *The recommender's learning rate follows 0.96^(epoch/50); the code builds that scheduler and never steps it.
        - *Negatives come from the trainer's ``negative_pool`` (default: items with a training interaction, MMRec's loader); the code draws them from all items.
        - Every modality of the dataset is used (TikTok here: audio + image); the code takes exactly image + text.
        - The critic step reuses the generator step's forward pass (detached), so both see one dropout mask; the code runs a second, no-grad forward.
        - ``num_candidates > 0`` (new): the critic reads C sampled items per step (rows sorted into score profiles), for catalogues too large for an I-wide critic.
        - The code's unused parameters (common_trans, gnn_trans, image/text embedding tables, two attention matrices) are left out.
        - Hyper-parameter names follow ``MMSSL/utility/parser.py`` except embed_size -> embedding_dim, weight_size -> num_layers, D_lr -> critic_lr, G_rate -> adv_rate, gp_rate x 0.3 -> gp_weight, regs -> reg_weight.

    Args:
        features: modality name -> ``[I, dim]`` frozen item features (at least one).
        embedding_dim: ``d``.
        num_layers: user–item propagation layers (``len(weight_size)``).
        drop_rate: dropout on the encoded features.
        model_cat_rate: weight of the l2-normalised modality branch in the output.
        id_cat_rate: weight of the l2-normalised attention output added to the ID embeddings.
        head_num: attention heads.
        critic_lr: the critic's Adam learning rate.
        adv_rate: weight of the generator's adversarial loss.
        gp_weight: gradient-penalty weight.
        real_data_tau: Gumbel-softmax temperature of the real rows.
        log_log_scale: Gumbel noise scale of the real rows.
        ui_pre_scale: weight of the collaborative scores injected into the real rows.
        tau: InfoNCE temperature.
        cl_rate: weight of the contrastive loss.
        feat_reg_decay: L2 weight on the modality branch (all rows, divided by ``I``).
        reg_weight: L2 weight on the batch's final embeddings (divided by ``B``).
        m_topk_rate: generated items per user as a fraction of ``I``.
        min_topk: at least this many generated items per user (ignored when ``reference``).
        num_candidates: critic width; 0 = all ``I`` items (the paper), else ``C`` sampled items.
        symmetric_norm: LightGCN's :math:`D_u^{-1/2} R D_i^{-1/2}` on every graph instead of
            the released code's one-sided form (an ablation; ignored when ``reference``).
        generate_graphs: build the modality-aware graphs :math:`\hat A^m`; ``False`` (an
            ablation) keeps the training graph in their place for the whole run, so the
            contrastive views and the attention input are ID embeddings propagated on the
            observed interactions.
        reference: reproduce the released code (the starred deviations above).
        item_id_dropout: cold-start option (:class:`~mmgraph.nn.ItemIDDropout`): the chance
            that an item's ID row is zeroed in a training step; items without training
            interactions are then ranked with a zero ID row. 0 (default) turns it off.
    """

    name = "mmssl"
    #: no grid is published (one setting for all datasets); the weight of the modality branch
    #: is the key whose paper value 0.55 is last of these four on TikTok valid
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"model_cat_rate": (0.0, 0.1, 0.3, 0.55)}
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 5.5e-4,
        "weight_decay": 0.01,
        "batch_size": 1024,
        "patience": 7,
    }
    requires_features = True
    separate_loss_terms = frozenset({"loss_critic"})
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {
        "drop_rate": DROP_PROBABILITY,
        "model_cat_rate": NON_NEGATIVE,
        "id_cat_rate": NON_NEGATIVE,
        "head_num": Interval(1, integer=True),
        "critic_lr": POSITIVE,
        "adv_rate": NON_NEGATIVE,
        "gp_weight": NON_NEGATIVE,
        "real_data_tau": POSITIVE,
        "log_log_scale": NON_NEGATIVE,
        "ui_pre_scale": NON_NEGATIVE,
        "tau": POSITIVE,
        "cl_rate": NON_NEGATIVE,
        "feat_reg_decay": NON_NEGATIVE,
        "m_topk_rate": Interval(0.0, 1.0),
        "min_topk": Interval(0, integer=True),
        "num_candidates": Interval(0, integer=True),
        "symmetric_norm": Flag(),
        "generate_graphs": Flag(),
    }

    @classmethod
    def check_hyperparameters(cls, hparams: Mapping[str, Any], origin: str = "") -> None:
        super().check_hyperparameters(hparams, origin)
        dim, heads = hparams.get("embedding_dim"), hparams.get("head_num")
        if dim is not None and heads is not None and dim % heads:
            message = f"mmssl embedding_dim ({dim}) must be a multiple of head_num ({heads})"
            raise config_error(message, origin)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: dict[str, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 2,
        drop_rate: float = 0.2,
        model_cat_rate: float = 0.55,
        id_cat_rate: float = 0.36,
        head_num: int = 4,
        critic_lr: float = 3e-4,
        adv_rate: float = 1e-4,
        gp_weight: float = 0.3,
        real_data_tau: float = 0.005,
        log_log_scale: float = 1e-5,
        ui_pre_scale: float = 100.0,
        tau: float = 0.5,
        cl_rate: float = 0.03,
        feat_reg_decay: float = 1e-5,
        reg_weight: float = 1e-5,
        m_topk_rate: float = 1e-4,
        min_topk: int = 10,
        num_candidates: int = 0,
        symmetric_norm: bool = False,
        generate_graphs: bool = True,
        reference: bool = False,
        item_id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        if not features:
            raise DataError("MMSSL needs at least one item modality; the dataset has none")
        if not 0 <= num_candidates <= num_items:
            raise ConfigError(
                f"mmssl num_candidates must be in [0, {num_items}] (the number of items), "
                f"got {num_candidates}"
            )
        self.modalities = list(features)
        self.num_layers = num_layers
        self.model_cat_rate = model_cat_rate
        self.id_cat_rate = id_cat_rate
        self.critic_lr = critic_lr
        self.adv_rate = adv_rate
        self.real_data_tau = real_data_tau
        self.log_log_scale = log_log_scale
        self.ui_pre_scale = ui_pre_scale
        self.cl_rate = cl_rate
        self.feat_reg_decay = feat_reg_decay
        self.reg_weight = reg_weight
        self.num_candidates = num_candidates
        self.reference = reference
        self.generate_graphs = generate_graphs
        symmetric_norm = symmetric_norm and not reference

        self.add_id_embeddings(embedding_dim)
        self.id_dropout = ItemIDDropout(item_id_dropout, train_edge_index[1], num_items)
        self.encoders = nn.ModuleList(
            nn.Linear(x.size(1), embedding_dim) for x in features.values()
        )
        for index, x in enumerate(features.values()):
            self.register_buffer(f"features_{index}", x.float(), persistent=False)
        self.dropout = nn.Dropout(drop_rate)
        self.conv = LightGCNConv()
        self.attention = ModalityAttention(embedding_dim, head_num, reference=reference)
        self.contrast = ContrastiveHead(tau, symmetric=False, intra_view_negatives=True)

        k = int(num_items * m_topk_rate)
        k = k if reference else min(max(k, min_topk, 1), num_items)
        self.structure = ModalityGraphGenerator(
            num_users, num_items, len(features), k, symmetric=symmetric_norm
        )
        self.critic = AdversarialDiscriminator(
            num_candidates or num_items,
            negative_slope=1.0 if reference else 0.2,
            batch_norm=reference,
            sigmoid_scale=100.0 if reference else None,
            gp_weight=gp_weight,
        )
        graph = user_item_graph(
            train_edge_index[0],
            train_edge_index[1],
            num_users,
            num_items,
            symmetric=symmetric_norm,
        )
        for field, matrix in zip(UserItemGraph._fields, graph, strict=True):
            self.register_buffer(f"train_{field}", matrix, persistent=False)
        self._generator_optimizer: torch.optim.Optimizer | None = None
        self._batch_index = 0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        for encoder in self.encoders:
            nn.init.xavier_uniform_(encoder.weight)
        self.attention.reset_parameters()
        self.critic.reset_parameters()

    # ------------------------------------------------------------------ forward
    @property
    def train_graph(self) -> UserItemGraph:
        """The normalised training interaction graph."""
        return UserItemGraph(*(getattr(self, f"train_{f}") for f in UserItemGraph._fields))

    def _to_users(self, item_x: Tensor, graph: UserItemGraph) -> Tensor:
        return self.conv(item_x, graph.to_user, adj=graph.to_user_t)

    def _to_items(self, user_x: Tensor, graph: UserItemGraph) -> Tensor:
        return self.conv(user_x, graph.to_item, adj=graph.to_item_t)

    def modality_branch(self, dropout: bool = True) -> tuple[list[Tensor], list[Tensor]]:
        """Per modality ``(h^m_u [U, d], h^m_i [I, d])``: encoded features on the training graph."""
        graph = self.train_graph
        users, items = [], []
        for index, encoder in enumerate(self.encoders):
            encoded = encoder(getattr(self, f"features_{index}"))
            if dropout:
                encoded = self.dropout(encoded)
            user_x = self._to_users(encoded, graph)
            users.append(user_x)
            items.append(self._to_items(user_x, graph))
        return users, items

    def propagate(self) -> MMSSLOutput:
        """The full forward pass (:class:`MMSSLOutput`)."""
        modality_user, modality_item = self.modality_branch()
        id_user = self.user_embedding.weight
        id_item = self.id_dropout(self.item_embedding.weight)
        generated = self.structure.graphs(self.train_graph)
        structure_user = [self._to_users(id_item, graph) for graph in generated]
        structure_item = [self._to_items(id_user, graph) for graph in generated]
        fused_user = self.attention(torch.stack(structure_user)).mean(0)
        fused_item = self.attention(torch.stack(structure_item)).mean(0)

        graph = self.train_graph
        user = id_user + self.id_cat_rate * F.normalize(fused_user, dim=1)
        item = id_item + self.id_cat_rate * F.normalize(fused_item, dim=1)
        user_sum, item_sum = user, item
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            user = self._to_users(item, graph)
            user = user.softmax(dim=-1) if last else user
            item = self._to_items(user, graph)
            item = item.softmax(dim=-1) if last else item
            user_sum, item_sum = user_sum + user, item_sum + item
        user = user_sum / (self.num_layers + 1)
        item = item_sum / (self.num_layers + 1)
        for h_user, h_item in zip(modality_user, modality_item, strict=True):
            user = user + self.model_cat_rate * F.normalize(h_user, dim=1)
            item = item + self.model_cat_rate * F.normalize(h_item, dim=1)
        return MMSSLOutput(user, item, modality_user, modality_item, structure_user)

    def forward(self) -> Embeddings:
        out = self.propagate()
        return out.user, out.item

    # ------------------------------------------------------------------ losses
    def critic_rows(self, out: MMSSLOutput, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(fake [M B, F], real [B, F])`` score rows for the critic.

        ``fake`` (with gradient) stacks each modality's ``u_sim(h^m_u, h^m_i)``; ``real``
        (constant) holds the Gumbel real rows, once: the critic compares them with every
        modality's rows (``real.repeat(M, 1)``, ``repeats=M`` of
        :meth:`~mmgraph.nn.AdversarialDiscriminator.discriminator_loss`). ``F`` is ``I``, or
        ``num_candidates`` items sampled for this step (the batch's positives first), whose
        rows are then sorted in descending order: a column holds a different item at every
        step, so the critic compares score profiles.
        """
        users = batch.users
        columns = None
        if self.num_candidates:
            columns = sample_candidates(self.num_items, self.num_candidates, batch.pos_items)
        observed = interaction_rows(self.seen_items, users, self.num_items, columns)

        def scored(items: Tensor) -> Tensor:
            return items if columns is None else items.index_select(0, columns)

        fake = torch.cat(
            [
                normalized_unseen_scores(h_user.index_select(0, users), scored(h_item), observed)
                for h_user, h_item in zip(out.modality_user, out.modality_item, strict=True)
            ]
        )
        with torch.no_grad():
            collaborative = normalized_unseen_scores(out.user[users], scored(out.item), observed)
            real = gumbel_real_rows(
                observed,
                collaborative,
                self.real_data_tau,
                self.log_log_scale,
                self.ui_pre_scale,
                reference=self.reference,
            )
        if columns is not None:
            fake, real = sort_rows_descending(fake), sort_rows_descending(real)
        return fake, real

    def generator_terms(
        self, out: MMSSLOutput, batch: Batch, fake: Tensor | None
    ) -> dict[str, Tensor]:
        """The recommender's weighted loss terms (their sum is what its optimiser minimises);
        ``fake=None`` (``adv_rate = 0``) gives a zero adversarial term without the critic."""
        users = batch.users
        rows = gather_triple(out.user, out.item, batch)
        feat = sum(h.pow(2).sum() for h in (*out.modality_user, *out.modality_item))
        contrast = sum(
            self.contrast(view.index_select(0, users), rows.user) for view in out.structure_user
        )
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_reg": self.reg_weight * embedding_l2(*rows),
            "loss_feat": self.feat_reg_decay * feat / (2 * self.num_items),
            "loss_cl": self.cl_rate * contrast,
            "loss_adv": (
                torch.zeros((), device=rows.user.device)
                if fake is None
                else self.adv_rate * self.critic.generator_loss(fake)
            ),
        }

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """The recommender's loss terms against the current critic (no critic update)."""
        out = self.propagate()
        fake, _ = self.critic_rows(out, batch)
        return self.generator_terms(out, batch, fake)

    # ------------------------------------------------------------------ training hooks
    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """``[AdamW(recommender), Adam(critic)]``; the two parameter sets are disjoint."""
        critic = {id(p) for p in self.critic.parameters()}
        recommender = [p for p in self.parameters() if id(p) not in critic]
        generator_opt = torch.optim.AdamW(recommender, lr=lr, weight_decay=weight_decay)
        for group in generator_opt.param_groups:
            group["initial_lr"] = lr
        critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr, betas=(0.5, 0.9))
        self._generator_optimizer = generator_opt
        return [generator_opt, critic_opt]

    def make_sampler(
        self,
        dataset: InteractionDataset,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device,
        negative_pool: str = "train",
    ) -> DistinctUserSampler:
        """Distinct-user batches; ``reference`` draws negatives from all items, as the
        released code does, whatever ``negative_pool`` says."""
        pool = "all" if self.reference else negative_pool
        return DistinctUserSampler(dataset, batch_size, generator, device, pool)

    def on_epoch_start(self, epoch: int) -> None:
        self._batch_index = 0
        if self.reference:
            return
        if self._generator_optimizer is not None:
            factor = LR_DECAY ** ((epoch - 1) / LR_DECAY_EPOCHS)
            for group in self._generator_optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
        if epoch > 1 and self.generate_graphs:
            self.refresh_structure()

    @torch.no_grad()
    def refresh_structure(self) -> None:
        """Regenerate every user's modality-aware edges from the current (dropout-free) model.

        Items are ranked by cosine similarity, the form in which the model uses ``h^m``
        (``l2norm``): with the degree-scaled item side, raw dot products rank the same few
        popular items first for everyone (on TikTok: 197 distinct items in 93k edges).
        """
        users, items = self.modality_branch(dropout=False)
        users = [F.normalize(h, dim=1) for h in users]
        items = [F.normalize(h, dim=1) for h in items]
        self.structure.refresh(users, items, self.seen_items)

    def training_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        """Critic step, then recommender step, on one shared forward pass."""
        generator_opt, critic_opt = optimizers
        out = self.propagate()
        if self.adv_rate == 0:
            # the critic cannot reach the recommender: skip its (dominant) cost entirely
            terms = self.generator_terms(out, batch, None)
            loss_critic = torch.zeros((), device=out.user.device)
        else:
            fake, real = self.critic_rows(out, batch)
            loss_critic = self.critic.discriminator_loss(real, fake, repeats=len(self.encoders))
            critic_opt.zero_grad(set_to_none=True)
            loss_critic.backward()
            critic_opt.step()
            terms = self.generator_terms(out, batch, fake)
        generator_opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        generator_opt.step()
        if self.reference and self.generate_graphs:
            self._reference_structure_step(out, batch)
        terms["loss_critic"] = loss_critic
        return {key: value.detach() for key, value in terms.items()}

    @torch.no_grad()
    def _reference_structure_step(self, out: MMSSLOutput, batch: Batch) -> None:
        """The released code's per-batch graph update (T = 1): rebuild on every batch but
        the first of each epoch, from what the previous batches accumulated."""
        index, self._batch_index = self._batch_index, self._batch_index + 1
        if index != 0:
            self.structure.rebuild()
            return
        users, k = batch.users, self.structure.k
        if k == 0:
            self.structure.accumulate(users, self.structure.topk_items[:, users])
            return
        observed = interaction_rows(self.seen_items, users, self.num_items)
        top = [
            normalized_unseen_scores(h_user[users], h_item, observed).topk(k, dim=1).indices
            for h_user, h_item in zip(out.modality_user, out.modality_item, strict=True)
        ]
        self.structure.accumulate(users, torch.stack(top))
