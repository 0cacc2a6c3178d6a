"""On CUDA, every model computes what it computes on CPU; so does the evaluator.

Runs only where CUDA is available (``benchmarks/gpu_check.sh`` on a GPU machine); CI has no
GPU and skips the module. Each model is built twice from one seed and one copy moved to the
GPU, so both start from the same weights; its random parts (dropout, noise, edge pruning, Gumbel draws)
are switched off by :data:`DETERMINISTIC`, so that forward, every loss term, the gradients
and one optimiser step can be compared within float32 tolerance. A last test runs each model's
own training step with its random parts on, on the GPU only, and checks that it moves the
weights and stays finite.
"""

import pytest
import torch

from mmgraph.data.sampling import BPRSampler
from mmgraph.eval import Evaluator
from mmgraph.models import registered_models
from tests.helpers import tiny_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: settings that make each model's loss a function of the weights and the batch alone
DETERMINISTIC = {
    "bpr": {},
    "lightgcn": {},
    "vbpr": {},
    "bm3": {"dropout": 0.0},
    "freedom": {"dropout": 0.0},
    "lattice": {},
    "mentor": {"dropout": 0.0, "noise_eps": 0.0, "mask_weight_g": 0.0},
    "mmssl": {"drop_rate": 0.0, "adv_rate": 0.0},
    "mmgcn": {},
    "grcn": {},
    "dualgnn": {},
    "diffmm": {"keep_rate": 1.0, "denoiser_dropout": 0.0},
    "mgcn": {},
    "dragon": {},
    "slmrec": {"dropout_rate": 0.0},
    "lgmrec": {"keep_rate": 1.0, "gumbel_noise": False},
}
ATOL, RTOL = 1e-4, 1e-3


def _data():
    return tiny_dataset(num_users=40, num_items=30, modalities={"image": 12, "text": 8})


def _batch(data, device):
    generator = torch.Generator().manual_seed(0)
    batch = next(iter(BPRSampler(data, 64, generator)))
    return type(batch)(*(t.to(device) for t in (batch.users, batch.pos_items, batch.neg_items)))


def _pair(name):
    """The model built twice from one seed (equal weights), the second moved to the GPU."""
    data = _data()
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(registered_models()[name].from_dataset(data, **DETERMINISTIC[name]))
    return data, models[0], models[1].to("cuda")


def test_every_model_is_covered():
    assert set(DETERMINISTIC) == set(registered_models())


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_forward_loss_gradients_and_step_equal_cpu(name):
    data, cpu, gpu = _pair(name)
    for model in (cpu, gpu):
        model.eval()
    with torch.no_grad():
        for a, b in zip(cpu(), gpu(), strict=True):
            torch.testing.assert_close(b.cpu(), a, atol=ATOL, rtol=RTOL)
    steps = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        model.train()
        model.on_epoch_start(1)
        optimizers = model.configure_optimizers(lr=1e-2, weight_decay=0.0)
        terms = model.training_step(_batch(data, device), optimizers)
        steps.append((terms, {k: p.detach().cpu() for k, p in model.named_parameters()}))
    (cpu_terms, cpu_weights), (gpu_terms, gpu_weights) = steps
    assert cpu_terms.keys() == gpu_terms.keys()
    for key in cpu_terms:
        torch.testing.assert_close(gpu_terms[key].cpu(), cpu_terms[key], atol=ATOL, rtol=RTOL)
    for key in cpu_weights:  # after one step: equal gradients moved equal weights equally
        torch.testing.assert_close(gpu_weights[key], cpu_weights[key], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_default_training_step_runs_on_cuda(name):
    data = _data()
    torch.manual_seed(0)
    model = registered_models()[name].from_dataset(data).to("cuda")
    model.train()
    model.on_epoch_start(1)
    before = [p.detach().clone() for p in model.parameters()]
    terms = model.training_step(_batch(data, "cuda"), model.configure_optimizers(1e-2, 0.0))
    assert all(torch.isfinite(value).all() for value in terms.values())
    moved = [
        not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True)
    ]
    assert any(moved)


def test_evaluator_on_cuda_equals_cpu():
    data, cpu, gpu = _pair("lightgcn")
    for split in ("valid", "test"):
        on_cpu = Evaluator(data).evaluate(cpu.eval(), split)
        on_gpu = Evaluator(data).evaluate(gpu.eval(), split)
        assert on_cpu.keys() == on_gpu.keys()
        for key, value in on_cpu.items():
            assert on_gpu[key] == pytest.approx(value, abs=1e-6), key
