"""MovieLens-small (text + genre features) from ../shared/data: LightGCN and BPR-MF.

python examples/movielens.py [--epochs N]
"""

import argparse

from _common import SHARED, train_and_report

from mmgraph.data import load_dataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1000)
args = parser.parse_args()

dataset = load_dataset(SHARED / "movielens-small")
print(dataset)
for model in ("bpr", "lightgcn"):
    train_and_report(dataset, model, epochs=args.epochs)
