"""Data-parallel training over two CPU processes (Gloo on 127.0.0.1), against one process.

One spawned pair of processes runs every scenario (``_worker``); the tests read what each
rank saved. The environment variables set in ``_worker`` are the ones ``torchrun`` sets.
"""

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from mmgraph.cli import main
from mmgraph.data.sampling import BPRSampler
from mmgraph.eval import Evaluator, evaluate_scores
from mmgraph.models import LightGCN
from mmgraph.train import Trainer, resolve_config, seed_everything
from mmgraph.train.distributed import (
    DistributedContext,
    ShardedSampler,
    destroy_distributed,
    init_distributed,
    shard_batch,
)
from tests.helpers import tiny_dataset
from tests.test_cli import write_mmrec_folder

WORLD_SIZE = 2
CLI_TRAIN = ["train", "--model", "lightgcn", "--set", "batch_size=32", "--set", "num_layers=2"]


class TwoOptimiserLightGCN(LightGCN):
    """LightGCN plus a scalar fitted by a second optimiser in its own backward pass (the shape
    of MMSSL's critic step)."""

    def __init__(self, num_users, num_items, train_edge_index, num_layers: int = 2):
        super().__init__(num_users, num_items, train_edge_index, num_layers=num_layers)
        self.scale = nn.Parameter(torch.ones(()))

    def configure_optimizers(self, lr, weight_decay):
        embedding = [p for name, p in self.named_parameters() if name != "scale"]
        return [torch.optim.Adam(embedding, lr=lr), torch.optim.SGD([self.scale], lr=0.1)]

    def training_step(self, batch, optimizers):
        main_opt, aux_opt = optimizers
        user_emb, item_emb = self()
        dots = (user_emb[batch.users] * item_emb[batch.pos_items]).sum(-1).detach()
        loss_aux = (self.scale * dots - 1).pow(2).mean()
        aux_opt.zero_grad(set_to_none=True)
        loss_aux.backward()
        aux_opt.step()
        terms = self.loss(batch)
        main_opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        main_opt.step()
        return {"loss_aux": loss_aux.detach(), **{k: v.detach() for k, v in terms.items()}}


def one_epoch(model_cls, context=None, batch_size=17):
    """Parameters after one epoch with global batch ``batch_size`` (120 interactions: 7 full
    batches of 17 and one of 1 row, so shards are uneven and one rank gets no real row)."""
    data = tiny_dataset()
    run = resolve_config(model_cls, [("test", {"epochs": 1, "seed": 3, "batch_size": batch_size})])
    seed_everything(run.train.seed)
    model = model_cls.from_dataset(data, **run.hparams)
    shard = context.shard if context is not None else None
    evaluate = Evaluator(data, ks=run.train.ks, shard=shard).evaluate
    trainer = Trainer(model, data, run, evaluate, progress=False, log=None, distributed=context)
    result = trainer.fit()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, result.to_dict()


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    context = init_distributed("cpu")
    results = {}
    try:
        # (a) the CLI: a run, its resumption, and a straight run to compare with.
        dataset = ["--dataset", os.path.join(root, "tiny"), "--quiet", "--distributed"]
        run = os.path.join(root, "run")
        straight = os.path.join(root, "straight")
        results["codes"] = [
            main([*CLI_TRAIN, *dataset, "--epochs", "2", "--out", run]),
            main([*CLI_TRAIN, *dataset, "--epochs", "3", "--out", run, "--resume"]),
            main([*CLI_TRAIN, *dataset, "--epochs", "3", "--out", straight]),
            main([*CLI_TRAIN, *dataset, "--epochs", "3", "--out", straight]),  # refused: exists
        ]
        try:  # rank 0's failure reaches every rank (none is left waiting in a collective)
            context.on_main(lambda: Path(root, "missing.pt").read_text())
        except FileNotFoundError as exc:
            results["on_main_error"] = exc.filename
        # (b) sharded evaluation against one process's, in the same process.
        data = tiny_dataset()
        seed_everything(11)
        model = LightGCN.from_dataset(data, num_layers=2)
        results["eval"] = [
            (
                Evaluator(data, batch_size=size, ngcf_ndcg=True).evaluate(model, split),
                Evaluator(data, batch_size=size, ngcf_ndcg=True, shard=context.shard).evaluate(
                    model, split
                ),
            )
            for size in (7, 100)  # 5 batches split 3/2; 1 batch, so rank 1 scores nothing
            for split in ("valid", "test")
        ]
        # (c) one epoch with the same global batch as one process.
        results["lightgcn"] = one_epoch(LightGCN, context)
        results["two_optimisers"] = one_epoch(TwoOptimiserLightGCN, context)
    finally:
        destroy_distributed()
    torch.save(results, os.path.join(root, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the two ranks saved (``[rank0, rank1]``) and the scratch folder."""
    root = tmp_path_factory.mktemp("distributed")
    write_mmrec_folder(root / "tiny")
    processes = mp.spawn(
        _worker, args=(WORLD_SIZE, _free_port(), str(root)), nprocs=WORLD_SIZE, join=False
    )
    deadline = time.monotonic() + 240
    while not processes.join(timeout=1):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.terminate()
            pytest.fail("the distributed workers did not finish in 240 s")
    saved = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    return saved, root


def test_cli_run_writes_one_checkpoint_set_from_rank_zero(ranks):
    saved, root = ranks
    for rank in saved:
        assert rank["codes"] == [0, 0, 0, 2]
        assert rank["on_main_error"].endswith("missing.pt")
    for out in (root / "run", root / "straight"):
        names = sorted(path.name for path in out.iterdir())
        assert names == ["best.pt", "last.pt", "log.jsonl", "metrics.json"]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert [record["epoch"] for record in log] == [1, 2, 3]
    # The resumed run is the straight run: same metrics, same weights.
    metrics = [json.loads((root / out / "metrics.json").read_text()) for out in ("run", "straight")]
    assert metrics[0] == metrics[1]
    last = [torch.load(root / out / "last.pt") for out in ("run", "straight")]
    for key, value in last[1]["state_dict"].items():
        assert torch.equal(last[0]["state_dict"][key], value)
    assert len(last[0]["training"]["rank_rng"]) == WORLD_SIZE


def test_sharded_evaluation_equals_one_process_exactly(ranks):
    saved, _ = ranks
    for rank in saved:
        for single, sharded in rank["eval"]:
            assert sharded == single
    assert saved[0]["eval"] == saved[1]["eval"]


@pytest.mark.parametrize("model", ["lightgcn", "two_optimisers"])
def test_one_epoch_on_two_ranks_matches_one_process(ranks, model):
    saved, _ = ranks
    model_cls = {"lightgcn": LightGCN, "two_optimisers": TwoOptimiserLightGCN}[model]
    expected, expected_result = one_epoch(model_cls)
    (state0, result0), (state1, result1) = saved[0][model], saved[1][model]
    assert result0 == result1  # every rank reports the same (rank 0's) metrics
    for key, value in expected.items():
        assert torch.equal(state0[key], state1[key])  # the ranks never drift apart
        torch.testing.assert_close(state0[key], value, rtol=1e-5, atol=1e-6)
    assert result0["valid"] == pytest.approx(expected_result["valid"])


# ---------------------------------------------------------------------- no processes needed
def test_shards_partition_every_global_batch_with_weights_summing_to_one():
    data = tiny_dataset()  # 120 training interactions: 7 batches of 17, then 1 row

    def sampler():
        return BPRSampler(data, 17, torch.Generator().manual_seed(0))

    reference = list(sampler())
    shards = [list(ShardedSampler(sampler(), rank, 3)) for rank in range(3)]
    assert all(len(shard) == len(reference) for shard in shards)
    for index, batch in enumerate(reference):
        parts = [shard[index] for shard in shards]
        assert sum(weight for _, weight in parts) == pytest.approx(1.0)
        kept = [part for part, weight in parts if weight > 0]
        for field in ("users", "pos_items", "neg_items"):
            joined = torch.cat([getattr(part, field) for part in kept])
            assert torch.equal(joined, getattr(batch, field))
        for part, weight in parts:
            assert weight == 0 or weight == pytest.approx(len(part) / len(batch))
    # The last batch has one row: two of three ranks step on it with weight 0.
    assert [weight for _, weight in (shard[-1] for shard in shards)] == [0.0, 0.0, 1.0]
    assert all(len(shard[-1][0]) == 1 for shard in shards)


def test_shard_batch_rejects_non_dataclass_batches():
    with pytest.raises(TypeError, match="dataclass"):
        shard_batch(torch.arange(4), 0, 2)


def test_unsharded_call_with_a_trivial_shard_is_unchanged():
    data = tiny_dataset()
    seed_everything(0)
    model = LightGCN.from_dataset(data)
    assert Evaluator(data, batch_size=7, shard=(0, 1)).evaluate(model, "test") == Evaluator(
        data, batch_size=7
    ).evaluate(model, "test")
    with pytest.raises(ValueError, match="initialised"):
        Evaluator(data, shard=(1, 2)).evaluate(model, "test")
    seen, targets = data.user_items("train"), data.user_items("test")
    with pytest.raises(ValueError, match="rank"):
        evaluate_scores(lambda u: torch.zeros(len(u), 20), seen, targets, 20, shard=(2, 2))


def test_cli_distributed_outside_torchrun_is_a_clear_error(tmp_path, monkeypatch, capsys):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    write_mmrec_folder(tmp_path / "tiny")
    argv = [*CLI_TRAIN, "--dataset", str(tmp_path / "tiny"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--distributed", "--epochs", "1"]) == 2
    assert "torchrun" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_context_reports_shard():
    context = DistributedContext(rank=1, world_size=4, local_rank=1, device=torch.device("cpu"))
    assert context.shard == (1, 4) and not context.is_main
