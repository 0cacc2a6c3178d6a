"""BPR-MF: matrix factorisation trained with the BPR loss (Rendle et al., UAI 2009)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from mmgraph.data.sampling import Batch
from mmgraph.models.base import Embeddings, Recommender
from mmgraph.nn.losses import embedding_l2, gather_triple, triple_bpr_loss


class BPRMF(Recommender):
    """User and item ID embeddings scored by dot product.

    Args:
        embedding_dim: size ``d`` of the embeddings.
        reg_weight: weight of the L2 penalty on the batch's embeddings
            (``reg_weight * (|e_u|^2 + |e_i+|^2 + |e_i-|^2) / (2B)``).
    """

    name = "bpr"
    #: MMRec's BPR.yaml
    search_grid: ClassVar[dict[str, tuple[Any, ...]]] = {
        "reg_weight": (2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    }

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        embedding_dim: int = 64,
        reg_weight: float = 1e-4,
    ) -> None:
        super().__init__(num_users, num_items, train_edge_index)
        self.add_id_embeddings(embedding_dim)
        self.reg_weight = reg_weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def forward(self) -> Embeddings:
        return self.user_embedding.weight, self.item_embedding.weight

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        rows = gather_triple(*self(), batch)
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_reg": self.reg_weight * embedding_l2(*rows),
        }
