"""VBPR (He & McAuley, AAAI 2016): BPR with a visual (here: any modality) item factor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.nn.encoders import ModalityProjection
from mmgraph.nn.id_dropout import ItemIDDropout
from mmgraph.nn.losses import embedding_norm, gather_triple, triple_bpr_loss


class VBPR(Recommender):
    r"""Matrix factorisation whose item factor has an ID part and a content part.

    .. math::
        \hat y_{ui} = \langle [\gamma_u \,\|\, \theta_u],\;
        [\gamma_i \,\|\, \textstyle\sum_m E_m x_{i,m}] \rangle

    with :math:`\gamma_u, \theta_u, \gamma_i \in \mathbb R^d` free and :math:`E_m` one linear map
    per modality (:class:`~mmgraph.nn.ModalityProjection`; their sum is one linear map of the
    concatenated features, MMRec's generalisation of VBPR's visual factor to several
    modalities). Loss: ``loss_bpr + reg_weight * embedding_norm(u, i+, i-)`` over the batch's
    rows (MMRec's ``EmbLoss``: Frobenius norms, not squared, divided by the batch size).

    Follows MMRec's VBPR, which drops the paper's item and visual bias terms
    :math:`\beta_i + \beta'^\top x_i` (a user-independent item score). Features are frozen
    (MMRec trains the raw feature table).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        train_edge_index: ``[2, E]`` training (user, item) pairs.
        features: modality name -> ``[I, d_m]`` item features (at least one).
        embedding_dim: ``d`` (user factors are ``2d`` wide).
        reg_weight: weight of the norm penalty; 0.1 was chosen from MMRec's grid (2.0 … 1e-5)
            on TikTok's valid split with ``mmgraph tune`` (1e-3 and 1e-2 overfit: valid R@20
            0.020 against 0.049).
        item_id_dropout: cold-start option (:class:`~mmgraph.nn.ItemIDDropout`): the chance
            that an item's ID row is zeroed in a training step; items without training
            interactions are then ranked with a zero ID row. 0 (default) turns it off.
    """

    name = "vbpr"
    #: MMRec's VBPR.yaml
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "reg_weight": (2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    }
    requires_features = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        features: Mapping[str, Tensor],
        embedding_dim: int = 64,
        reg_weight: float = 0.1,
        item_id_dropout: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.add_id_embeddings(embedding_dim, user_dim=2 * embedding_dim)
        self.id_dropout = ItemIDDropout(item_id_dropout, train_edge_index[1], num_items)
        self.content = ModalityProjection(features, embedding_dim)
        self.reg_weight = reg_weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.content.reset_parameters()

    def forward(self) -> Embeddings:
        content = torch.stack(list(self.content().values())).sum(0)
        item_ids = self.id_dropout(self.item_embedding.weight)
        return self.user_embedding.weight, torch.cat([item_ids, content], dim=1)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        rows = gather_triple(*self(), batch)
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_reg": self.reg_weight * embedding_norm(*rows),
        }
