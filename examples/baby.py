"""Amazon Baby (interactions only) from ../shared/data: the ID-only models BPR-MF and
LightGCN, to compare with the published LightGCN figures under the MMRec protocol
(R@20 0.0754, N@20 0.0328). The feature models need image/text features Baby lacks here.

    python examples/baby.py [--epochs N] [--models bpr,lightgcn]
"""

import argparse

from _common import SHARED, train_and_report

from mmgraph.data import load_dataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1000)
parser.add_argument("--models", default="bpr,lightgcn", help="comma-separated")
args = parser.parse_args()

dataset = load_dataset(SHARED / "baby")
print(dataset)
for model in args.models.split(","):
    train_and_report(dataset, model, epochs=args.epochs)
