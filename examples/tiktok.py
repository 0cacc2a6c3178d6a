"""TikTok (bundled; image + audio features): LightGCN and BPR-MF with the MMRec protocol.

python examples/tiktok.py [--epochs N]
"""

import argparse

from _common import train_and_report

from mmgraph.data import load_dataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1000)
args = parser.parse_args()

dataset = load_dataset("tiktok")  # ships inside the package
print(dataset)
for model in ("bpr", "lightgcn"):
    train_and_report(dataset, model, epochs=args.epochs)
