"""A new model from mmgraph.nn parts, trained with the shared trainer.

ContentGCN: each item starts as its ID embedding plus its projected modality features, the
user–item graph smooths both sides (LightGCN), and an InfoNCE term pulls an item's ID
embedding towards its content embedding, so that content carries part of the score.

python examples/custom_model.py [--dataset tiktok] [--epochs 50]
"""

import argparse
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmgraph.data import load_dataset
from mmgraph.data.graph import user_item_adjacency
from mmgraph.models import Recommender
from mmgraph.models.hparams import NON_NEGATIVE, POSITIVE
from mmgraph.nn import (
    ContrastiveHead,
    LightGCNEncoder,
    ModalityProjection,
    embedding_l2,
    gather_triple,
    triple_bpr_loss,
)
from mmgraph.train import fit_run, resolve_config


class ContentGCN(Recommender):
    name = "content_gcn"  # registers the model: the trainer, config and CLI helpers see it
    requires_features = True  # dataset_inputs then passes `features` ({modality: [I, d_m]})
    hyperparameter_rules: ClassVar[dict[str, Any]] = {
        "num_layers": POSITIVE,
        "reg_weight": NON_NEGATIVE,
        "align_weight": NON_NEGATIVE,
        "temperature": POSITIVE,
    }

    def __init__(self, num_users, num_items, train_edge_index, features, embedding_dim=64,
                 num_layers=2, reg_weight=1e-4, align_weight=0.1, temperature=0.2):  # fmt: skip
        super().__init__(num_users, num_items, train_edge_index)
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.content = ModalityProjection(features, embedding_dim)  # {m: [I, d]}
        self.encoder = LightGCNEncoder(num_layers)
        self.align = ContrastiveHead(temperature)
        self.reg_weight, self.align_weight = reg_weight, align_weight
        adj = user_item_adjacency(train_edge_index, num_users, num_items)
        self.register_buffer("adj", adj, persistent=False)  # derived from data: not saved

    def item_content(self) -> Tensor:
        """``[I, d]``: the sum of the projected modality features."""
        return torch.stack(list(self.content().values())).sum(0)

    def forward(self) -> tuple[Tensor, Tensor]:
        users, item_ids = self.embedding.weight.split([self.num_users, self.num_items])
        start = torch.cat([users, item_ids + self.item_content()])
        return self.encoder(start, self.adj).split([self.num_users, self.num_items])

    def loss(self, batch) -> dict[str, Tensor]:
        rows = gather_triple(*self(), batch)
        item_ids = self.embedding.weight[self.num_users :].index_select(0, batch.pos_items)
        content = self.item_content().index_select(0, batch.pos_items)
        return {
            "loss_bpr": triple_bpr_loss(*rows),
            "loss_reg": self.reg_weight * embedding_l2(*rows),
            "loss_align": self.align_weight * self.align(item_ids, content),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="tiktok")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    run = resolve_config(ContentGCN, [("example", {"epochs": args.epochs})])
    result = fit_run(dataset, run, progress=False, log=print)
    print(f"content_gcn on {dataset.name}: best epoch {result.best_epoch}, "
          f"test recall@20 {result.test['recall@20']:.4f}")  # fmt: skip
