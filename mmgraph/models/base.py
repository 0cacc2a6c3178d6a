"""The base class every mmgraph recommender derives from."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.optim import Adam

from mmgraph.data.dataset import CSR, InteractionDataset, build_csr
from mmgraph.data.graph import user_item_adjacency
from mmgraph.data.sampling import Batch, BPRSampler
from mmgraph.errors import CheckpointError, ConfigError, DataError
from mmgraph.io import FORMAT_KEY, atomic_torch_save, safe_torch_load
from mmgraph.models.hparams import COMMON_RULES, Rule, check_value
from mmgraph.nn.ranking import topk_recommendations

MODEL_FORMAT = "mmgraph-model/1"
Embeddings = tuple[Tensor, Tensor]

_REGISTRY: dict[str, type[Recommender]] = {}


class Recommender(nn.Module):
    """A top-k recommender over a fixed set of users and items.

    Subclasses set ``name`` (their registry key), take their hyper-parameters as keyword
    arguments with the paper's defaults in the signature, and implement :meth:`forward` and
    :meth:`loss`. Everything else (scoring, recommending, saving, the default training step
    and optimiser) is shared.

    The verbs:
        - ``forward()`` -> ``(user_emb [U, d], item_emb [I, d])``, the representations used
          for ranking.
        - ``loss(batch)`` -> named loss terms (``{"loss_bpr": ..., "loss_reg": ...}``); the
          trainer optimises their sum and logs each one.
        - ``score(users)`` -> ``[B, I]``; ``recommend(users, k)`` -> top-k items.
        - ``save(path)`` / ``Recommender.load(path, dataset)``.

    Args:
        num_users: number of users ``U``.
        num_items: number of items ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs; kept (not saved) to exclude
            seen items from recommendations and for models that propagate on the graph.
    """

    name: ClassVar[str] = ""
    #: trainer settings this model's paper uses (e.g. ``{"lr": 1e-4}``), over the defaults.
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: logged terms of another objective (an adversarial critic's), left out of the logged
    #: total ``loss`` of the recommender.
    separate_loss_terms: ClassVar[frozenset[str]] = frozenset()
    #: the model needs item modality features (it cannot train on an ID-only dataset).
    requires_features: ClassVar[bool] = False
    #: default optimiser uses torch's fused Adam kernel: the same update, ~4x faster per step
    #: on CPU, different in the last float bits (off for models whose published figures were
    #: made with the per-parameter loop).
    fused_adam: ClassVar[bool] = False
    #: constructor arguments filled from the dataset, not hyper-parameters (``features`` is
    #: one too when ``requires_features``).
    dataset_args: ClassVar[tuple[str, ...]] = ("num_users", "num_items", "train_edge_index")
    #: hyper-parameters (with defaults) that only :meth:`dataset_inputs` reads, to derive
    #: structure from the data (a kNN graph's ``k``); the constructor never sees them.
    data_hyperparameters: ClassVar[dict[str, Any]] = {}
    #: allowed values of this model's own hyper-parameters (shared keys: ``COMMON_RULES``);
    #: every hyper-parameter needs a rule (a test checks it).
    hyperparameter_rules: ClassVar[dict[str, Rule]] = {}
    #: the grid its authors (or MMRec's config for it) searched: config key -> values, any
    #: trainer or model key; ``mmgraph tune`` searches it when no ``--grid`` is given.
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):  # only classes that name themselves; not test subclasses
            if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
                raise ValueError(f"two models are registered as {cls.name!r}")
            _REGISTRY[cls.name] = cls

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.hparams: dict[str, Any] = {}
        seen = build_csr(train_edge_index[0], train_edge_index[1], num_users)
        self.register_buffer("seen_indptr", seen.indptr, persistent=False)
        self.register_buffer("seen_indices", seen.indices, persistent=False)

    # ------------------------------------------------------------------ shared parts
    def add_id_embeddings(self, embedding_dim: int, user_dim: int | None = None) -> None:
        """The ID tables ``user_embedding`` ``[U, user_dim or d]`` and ``item_embedding``
        ``[I, d]``, created in this order (the parameter order optimiser states rely on)."""
        self.user_embedding = nn.Embedding(self.num_users, user_dim or embedding_dim)
        self.item_embedding = nn.Embedding(self.num_items, embedding_dim)

    def register_adjacency(self, train_edge_index: Tensor) -> None:
        """Buffer ``adj``: the symmetric-normalised user–item adjacency ``[U + I, U + I]``
        of :func:`~mmgraph.data.graph.user_item_adjacency` (rebuilt from the data, not saved)."""
        adj = user_item_adjacency(train_edge_index, self.num_users, self.num_items)
        self.register_buffer("adj", adj, persistent=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def hyperparameters(cls) -> dict[str, Any]:
        """Hyper-parameter names and defaults: the constructor's keyword arguments, then
        :attr:`data_hyperparameters`."""
        params = inspect.signature(cls.__init__).parameters
        skip = {"self", *cls.dataset_args, *(("features",) if cls.requires_features else ())}
        own = {key: p.default for key, p in params.items() if key not in skip}
        return {**own, **cls.data_hyperparameters}

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        """The allowed values of each hyper-parameter: the model's rules over the common ones."""
        merged = {**COMMON_RULES, **cls.hyperparameter_rules}
        return {key: merged[key] for key in cls.hyperparameters() if key in merged}

    @classmethod
    def check_hyperparameters(cls, hparams: Mapping[str, Any], origin: str = "") -> None:
        """Raise a one-line :class:`ConfigError` for the first value outside its rule.

        Subclasses with constraints between keys extend this (and call ``super()``).
        """
        for key, rule in cls.rules().items():
            if key in hparams:
                check_value(f"{cls.name} {key}", hparams[key], rule, origin)

    @classmethod
    def dataset_inputs(
        cls, dataset: InteractionDataset, hparams: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The constructor arguments taken from ``dataset`` (override to add features).

        Models with ``requires_features`` also get ``features`` (modality name ->
        ``[I, d_m]``). ``hparams`` are all hyper-parameters, defaults filled in, for inputs
        that depend on them (MENTOR's kNN graph depends on ``knn_k``). Structure derived from
        the data is built here, by the data layer, never in the constructor.
        """
        inputs = {
            "num_users": dataset.num_users,
            "num_items": dataset.num_items,
            "train_edge_index": dataset.edge_index("train"),
        }
        if cls.requires_features:
            inputs["features"] = dataset.feature_dict()
        return inputs

    @classmethod
    def from_dataset(cls, dataset: InteractionDataset, **hparams: Any) -> Recommender:
        """Build the model for ``dataset`` with the given hyper-parameters (others default)."""
        known = cls.hyperparameters()
        unknown = sorted(set(hparams) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown hyper-parameter(s) {unknown} for model {cls.name!r}; "
                f"known: {sorted(known)}"
            )
        if cls.requires_features and not dataset.modalities:
            raise DataError(
                f"model {cls.name!r} needs item modality features, but dataset "
                f"{dataset.name!r} has none"
            )
        resolved = {**known, **hparams}
        cls.check_hyperparameters(resolved)
        own = {k: v for k, v in hparams.items() if k not in cls.data_hyperparameters}
        model = cls(**cls.dataset_inputs(dataset, resolved), **own)
        model.hparams = resolved
        return model

    # ------------------------------------------------------------------ the verbs
    def forward(self) -> Embeddings:
        """``(user_emb [U, d], item_emb [I, d])`` used for ranking."""
        raise NotImplementedError

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Named scalar loss terms for one batch; their sum is optimised."""
        raise NotImplementedError

    def score(self, users: Tensor, embeddings: Embeddings | None = None) -> Tensor:
        """``[B, I]`` scores of all items for ``users [B]``.

        Args:
            users: user ids.
            embeddings: the output of ``forward()`` when the caller already has it (the
                evaluator computes it once for all user batches).
        """
        user_emb, item_emb = self() if embeddings is None else embeddings
        return user_emb[users] @ item_emb.T

    @property
    def seen_items(self) -> CSR:
        """Training items per user."""
        return CSR(self.seen_indptr, self.seen_indices)

    @torch.no_grad()
    def recommend(
        self, users: Tensor, k: int = 10, exclude_seen: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Top-``k`` items for each user, best first.

        Args:
            users: ``[B]`` user ids.
            k: list length (at most ``I``).
            exclude_seen: never recommend a user's training items.

        Returns:
            ``(scores [B, k], items [B, k])``; when a user has fewer than ``k`` unseen items the
            tail holds seen items with score ``-inf``.
        """
        was_training = self.training
        self.eval()
        try:
            users = users.to(self.seen_indptr.device)
            scores = self.score(users)
            if not exclude_seen:
                return torch.topk(scores, min(k, self.num_items), dim=1)
            return topk_recommendations(scores, self.seen_items, users, k, inplace=True)
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ training hooks
    def configure_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """Optimisers used by :meth:`training_step` (default: one Adam over all parameters)."""
        if self.fused_adam:
            try:
                return [Adam(self.parameters(), lr=lr, weight_decay=weight_decay, fused=True)]
            except RuntimeError:  # torch < 2.4 on CPU, or a device without the fused kernel
                pass
        return [Adam(self.parameters(), lr=lr, weight_decay=weight_decay)]

    def make_sampler(
        self,
        dataset: InteractionDataset,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device,
        negative_pool: str = "train",
    ) -> BPRSampler:
        """The batches of one epoch (default: all training interactions, one negative each,
        drawn from ``negative_pool``; see :mod:`mmgraph.data.sampling`)."""
        return BPRSampler(dataset, batch_size, generator, device, negative_pool)

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each epoch (for per-epoch caches); default: nothing."""

    def training_step(
        self, batch: Batch, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        """One optimisation step; returns the detached loss terms for logging.

        Models with several optimisers (an adversarial critic, say) override this.
        """
        (optimizer,) = optimizers
        terms = self.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        return {key: value.detach() for key, value in terms.items()}

    # ------------------------------------------------------------------ persistence
    def export(self) -> dict[str, Any]:
        """What :meth:`save` writes: name, sizes, hyper-parameters and the state dict."""
        return {
            FORMAT_KEY: MODEL_FORMAT,
            "model": self.name,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "hparams": dict(self.hparams),
            "state_dict": self.state_dict(),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model atomically (weights-only loadable)."""
        atomic_torch_save(self.export(), path)

    @staticmethod
    def from_export(exported: dict[str, Any], dataset: InteractionDataset) -> Recommender:
        """Rebuild a model from :meth:`export` output for the dataset it was trained on."""
        name = exported.get("model")
        if name not in _REGISTRY:
            raise CheckpointError(f"checkpoint holds unknown model {name!r}")
        if (exported["num_users"], exported["num_items"]) != (
            dataset.num_users,
            dataset.num_items,
        ):
            raise CheckpointError(
                f"checkpoint was trained on {exported['num_users']} users x "
                f"{exported['num_items']} items, but dataset {dataset.name!r} has "
                f"{dataset.num_users} x {dataset.num_items}"
            )
        model = _REGISTRY[name].from_dataset(dataset, **exported["hparams"])
        model.load_state_dict(exported["state_dict"])
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, dataset: InteractionDataset) -> Recommender:
        """Load a model written by :meth:`save` (or a trainer checkpoint) for ``dataset``."""
        exported = safe_torch_load(path, MODEL_FORMAT)
        return cls.from_export(exported, dataset)


def registered_models() -> dict[str, type[Recommender]]:
    """Registry of model name -> class (every imported subclass that sets ``name``)."""
    return dict(_REGISTRY)
