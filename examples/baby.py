"""Amazon Baby (interactions only) from ../shared/data: LightGCN, to compare with the
published LightGCN figures under the MMRec protocol (R@20 0.0754, N@20 0.0328).

    python examples/baby.py [--epochs N]
"""

import argparse

from _common import SHARED, train_and_report

from mmgraph.data import load_dataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1000)
args = parser.parse_args()

dataset = load_dataset(SHARED / "baby")
print(dataset)
train_and_report(dataset, "lightgcn", epochs=args.epochs)
