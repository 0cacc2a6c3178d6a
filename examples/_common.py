"""What the example scripts share: train one model on one dataset with the library API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmgraph.data import InteractionDataset
from mmgraph.eval import Evaluator
from mmgraph.models import get_model
from mmgraph.train import Trainer, resolve_config, seed_everything

SHARED = Path(os.environ.get("MMGRAPH_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))


def train_and_report(
    dataset: InteractionDataset, model_name: str, out_dir: str | None = None, **overrides
) -> dict:
    """Train ``model_name`` with its paper defaults (plus ``overrides``) and print test metrics."""
    model_cls = get_model(model_name)
    run = resolve_config(model_cls, [("example", overrides)])
    seed_everything(run.train.seed)
    model = model_cls.from_dataset(dataset, **run.hparams)
    evaluator = Evaluator(dataset, ks=run.train.ks, batch_size=run.train.eval_batch_size)
    result = Trainer(model, dataset, run, evaluator.evaluate, out_dir=out_dir).fit()
    test = {k: round(v, 4) for k, v in result.test.items() if k.endswith(("@10", "@20"))}
    print(
        f"{model_name} on {dataset.name}: best epoch {result.best_epoch}, test {json.dumps(test)}"
    )
    return result.to_dict()
