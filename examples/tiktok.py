"""TikTok (bundled; image + audio): every model (BPR-MF, LightGCN, VBPR, BM3, FREEDOM,
LATTICE, MMGCN, GRCN, DualGNN, SLMRec, MGCN, DRAGON, LGMRec, DiffMM,
MENTOR, MMSSL), MMRec protocol.

python examples/tiktok.py [--epochs N] [--models bpr,lightgcn,vbpr,...]
"""

import argparse

from _common import ALL_MODELS, train_and_report

from mmgraph.data import load_dataset

# MMSSL's paper critic reads a score row over all items (about 45 s per batch on 2 CPU cores
# for TikTok); the scalable critic over 1,024 sampled items keeps an epoch near a minute.
CPU_SETTINGS = {"mmssl": {"num_candidates": 1024}}

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1000)
parser.add_argument("--models", default=ALL_MODELS, help="comma-separated")
args = parser.parse_args()

dataset = load_dataset("tiktok")  # ships inside the package
print(dataset)
for model in args.models.split(","):
    train_and_report(dataset, model, epochs=args.epochs, **CPU_SETTINGS.get(model, {}))
