"""What the example scripts share: train one model on one dataset with the library API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmgraph.data import InteractionDataset
from mmgraph.models import get_model
from mmgraph.train import fit_run, resolve_config

SHARED = Path(os.environ.get("MMGRAPH_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))


def train_and_report(
    dataset: InteractionDataset, model_name: str, out_dir: str | None = None, **overrides
) -> dict:
    """Train ``model_name`` with its paper defaults (plus ``overrides``) and print test metrics."""
    run = resolve_config(get_model(model_name), [("example", overrides)])
    result = fit_run(dataset, run, out_dir, progress=True, log=print)
    test = {k: round(v, 4) for k, v in result.test.items() if k.endswith(("@10", "@20"))}
    print(
        f"{model_name} on {dataset.name}: best epoch {result.best_epoch}, test {json.dumps(test)}"
    )
    return result.to_dict()


#: the models the TikTok and MovieLens examples train by default (all that use features too).
ALL_MODELS = "bpr,lightgcn,vbpr,bm3,freedom,lattice,mmgcn,grcn,dualgnn,slmrec,mgcn,dragon,lgmrec,diffmm,mentor,mmssl"
