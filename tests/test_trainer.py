import json

import pytest
import torch

from mmgraph.errors import ConfigError, MMGraphError
from mmgraph.eval import Evaluator
from mmgraph.models import LightGCN, Recommender
from mmgraph.train import (
    Trainer,
    TrainingDiverged,
    resolve_config,
    run_folder_state,
    seed_everything,
)
from tests.helpers import tiny_dataset


def make_trainer(data, out_dir, epochs, seed=7, patience=20, model_cls=LightGCN):
    run = resolve_config(
        model_cls,
        [("test", {"epochs": epochs, "seed": seed, "batch_size": 16, "patience": patience})],
    )
    seed_everything(run.train.seed)
    model = model_cls.from_dataset(data, **run.hparams)
    evaluator = Evaluator(data, ks=run.train.ks)
    return Trainer(model, data, run, evaluator.evaluate, out_dir, progress=False, log=None)


def test_outputs_and_test_metrics_come_from_the_best_valid_epoch(tmp_path):
    data = tiny_dataset()
    result = make_trainer(data, tmp_path, epochs=6).fit()
    for name in ("best.pt", "last.pt", "log.jsonl", "metrics.json"):
        assert (tmp_path / name).is_file()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    best = max(log, key=lambda r: (r["valid"]["recall@20"], -r["epoch"]))
    assert result.best_epoch == best["epoch"]
    assert result.valid == best["valid"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch and "recall@20" in metrics["test"]
    # The reported test metrics are those of the weights saved at the best-valid epoch.
    best_model = Recommender.load(tmp_path / "best.pt", data)
    assert Evaluator(data).evaluate(best_model, "test") == pytest.approx(metrics["test"])
    assert {"loss_bpr", "loss_reg", "loss"} <= set(log[0]["loss"])


def test_same_seed_gives_identical_runs(tmp_path):
    data = tiny_dataset()
    a = make_trainer(data, tmp_path / "a", epochs=4).fit()
    b = make_trainer(data, tmp_path / "b", epochs=4).fit()
    assert a.to_dict() == b.to_dict()
    c = make_trainer(data, tmp_path / "c", epochs=4, seed=8).fit()
    assert [r["loss"] for r in c.history] != [r["loss"] for r in a.history]


def test_resume_continues_exactly(tmp_path):
    data = tiny_dataset()
    straight = make_trainer(data, tmp_path / "straight", epochs=6, patience=2)
    expected = straight.fit()
    make_trainer(data, tmp_path / "split", epochs=3, patience=2).fit()
    resumed_trainer = make_trainer(data, tmp_path / "split", epochs=6, patience=2)
    resumed = resumed_trainer.fit(resume=True)
    assert resumed.to_dict() == expected.to_dict()
    for a, b in zip(straight.model.parameters(), resumed_trainer.model.parameters()):
        assert torch.equal(a, b)
    log = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert len(log) == len((tmp_path / "straight" / "log.jsonl").read_text().splitlines())


def test_a_capped_run_is_partial_under_a_higher_cap_an_early_stopped_one_finished(tmp_path):
    data = tiny_dataset()

    def config(epochs, patience, **more):
        values = {"epochs": epochs, "seed": 7, "batch_size": 16, "patience": patience, **more}
        return resolve_config(LightGCN, [("test", values)])

    make_trainer(data, tmp_path / "capped", epochs=3, patience=50).fit()
    assert run_folder_state(tmp_path / "capped", config(3, 50), data) == "finished"
    assert run_folder_state(tmp_path / "capped", config(6, 50), data) == "partial"
    with pytest.raises(ConfigError, match="trained for 3 epochs, more than epochs=2"):
        run_folder_state(tmp_path / "capped", config(2, 50), data)
    with pytest.raises(ConfigError, match="another configuration: lr="):
        run_folder_state(tmp_path / "capped", config(6, 50, lr=0.5), data)
    stopped = make_trainer(data, tmp_path / "stopped", epochs=60, patience=1).fit()
    assert len(stopped.history) < 60  # early stopping ended it
    assert run_folder_state(tmp_path / "stopped", config(600, 1), data) == "finished"


def test_a_run_that_predates_a_new_key_matches_that_keys_default_only(tmp_path):
    data = tiny_dataset()
    make_trainer(data, tmp_path, epochs=2, patience=50).fit()
    for name in ("last.pt", "best.pt"):  # as written before ``num_layers`` existed
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        del checkpoint["config"]["num_layers"]
        torch.save(checkpoint, tmp_path / name)

    def config(**more):
        values = {"epochs": 2, "seed": 7, "batch_size": 16, "patience": 50, **more}
        return resolve_config(LightGCN, [("test", values)])

    assert LightGCN.hyperparameters()["num_layers"] == 3
    assert run_folder_state(tmp_path, config(), data) == "finished"
    with pytest.raises(ConfigError, match="another configuration: num_layers=None \\(now 2\\)"):
        run_folder_state(tmp_path, config(num_layers=2), data)


def test_refuses_to_overwrite_a_previous_run(tmp_path):
    data = tiny_dataset()
    make_trainer(data, tmp_path, epochs=1).fit()
    with pytest.raises(MMGraphError, match="already holds a run"):
        make_trainer(data, tmp_path, epochs=1).fit()


class ExplodingLightGCN(LightGCN):
    """Its BPR term turns NaN in the third epoch."""

    def on_epoch_start(self, epoch):
        self.epoch = epoch

    def loss(self, batch):
        terms = super().loss(batch)
        if self.epoch == 3:
            terms["loss_bpr"] = terms["loss_bpr"] * float("nan")
        return terms


def test_nan_loss_stops_with_term_and_epoch_and_keeps_last_good_checkpoint(tmp_path):
    data = tiny_dataset()
    trainer = make_trainer(data, tmp_path, epochs=5, model_cls=ExplodingLightGCN)
    with pytest.raises(TrainingDiverged, match="'loss_bpr' became nan in epoch 3"):
        trainer.fit()
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["training"]["epoch"] == 2
