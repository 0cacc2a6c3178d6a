"""LightGCN (He et al., SIGIR 2020): ID embeddings smoothed over the user–item graph."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.nn.conv import LightGCNEncoder
from mmgraph.nn.functional import bpr_scores
from mmgraph.nn.losses import bpr_loss, embedding_l2


class LightGCN(Recommender):
    r"""LightGCN with layer-mean readout.

    .. math::
        E^{(l+1)} = \hat A E^{(l)}, \qquad E = \frac{1}{L+1} \sum_{l=0}^{L} E^{(l)}

    over the joint ``[U + I, d]`` user/item embedding table, where :math:`\hat A` is the
    symmetric-normalised training graph (built once at construction, kept out of the state
    dict). Scores are dot products of the readouts.

    Args:
        embedding_dim: size ``d`` of the embeddings.
        num_layers: propagation depth ``L``.
        reg_weight: L2 weight on the batch's layer-0 embeddings (as in the paper).
    """

    name = "lightgcn"
    #: MMRec's LightGCN config (20 points)
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "num_layers": (1, 2, 3, 4),
        "reg_weight": (1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
    }

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        embedding_dim: int = 64,
        num_layers: int = 3,
        reg_weight: float = 1e-4,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        self.encoder = LightGCNEncoder(num_layers)
        self.reg_weight = reg_weight
        self.register_adjacency(train_edge_index)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.embedding.weight)

    def forward(self) -> Embeddings:
        out = self.encoder(self.embedding.weight, self.adj)
        return torch.split(out, [self.num_users, self.num_items])

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        user_emb, item_emb = self()
        scores = bpr_scores(user_emb, item_emb, batch.users, batch.pos_items, batch.neg_items)
        # index_select: its backward adds in index order on any number of threads
        ego = self.embedding.weight
        ego_u = ego.index_select(0, batch.users)
        ego_pos = ego.index_select(0, self.num_users + batch.pos_items)
        ego_neg = ego.index_select(0, self.num_users + batch.neg_items)
        return {
            "loss_bpr": bpr_loss(*scores),
            "loss_reg": self.reg_weight * embedding_l2(ego_u, ego_pos, ego_neg),
        }
