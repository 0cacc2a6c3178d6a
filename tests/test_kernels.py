"""mmgraph.kernels: every kernel equals its plain-autograd reference (values and gradients),
all hand-written autograd Functions live there, and benchmarks/kernels.py runs."""

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmgraph
import mmgraph.kernels as kernels
import mmgraph.nn.encoders
import mmgraph.nn.functional
from benchmarks.kernels import PLAN, count_calls, swapped
from mmgraph.kernels import KERNELS
from mmgraph.models import get_model
from mmgraph.nn import BipartiteGraph, csr_submatrix

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(mmgraph.__file__).parent


# ---------------------------------------------------------------------------- helpers
def leaves(*shapes, dtype=torch.float32, seed=0, grad=True):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator, dtype=dtype).requires_grad_(grad)
        for shape in shapes
    ]


def _run(call, inputs, weights_seed=1):
    copies = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    out = call(*copies)
    outs = out if isinstance(out, tuple) else (out,)
    generator = torch.Generator().manual_seed(weights_seed)
    weights = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights, strict=True))
    if loss.requires_grad:
        loss.backward()
    grads = [None if not x.requires_grad else x.grad for x in copies]
    return [o.detach() for o in outs], grads


def assert_matches_reference(kernel_call, reference_call, inputs, *, atol=1e-6, rtol=1e-5):
    """Outputs and the gradients of a random weighting of them agree."""
    got, got_grads = _run(kernel_call, inputs)
    want, want_grads = _run(reference_call, inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, equal_nan=True)
    for x, a, b in zip(inputs, got_grads, want_grads, strict=True):
        if not x.requires_grad:
            assert a is None and b is None
            continue
        a = torch.zeros_like(x) if a is None else a
        b = torch.zeros_like(x) if b is None else b
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def as64(tensors):
    return [t.detach().double().requires_grad_(t.requires_grad) for t in tensors]


def gradcheck(call, inputs):
    if any(t.requires_grad and t.numel() for t in inputs):
        assert torch.autograd.gradcheck(call, tuple(inputs))


def random_csr(rows, cols, seed, dtype=torch.float32, density=0.4):
    generator = torch.Generator().manual_seed(seed)
    dense = torch.rand(rows, cols, generator=generator, dtype=dtype)
    dense = dense * (torch.rand(rows, cols, generator=generator) < density)
    return dense


# ---------------------------------------------------------------------------- the boundary
def _autograd_functions(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(base) for base in node.bases}
            if bases & {"torch.autograd.Function", "autograd.Function", "Function"}:
                names.append(node.name)
    return names


def test_every_autograd_function_of_mmgraph_lives_in_mmgraph_kernels():
    outside = {
        str(path.relative_to(PACKAGE)): _autograd_functions(path)
        for path in PACKAGE.rglob("*.py")
        if "kernels" not in path.relative_to(PACKAGE).parts
    }
    assert not {path: names for path, names in outside.items() if names}
    inside = [
        name for path in (PACKAGE / "kernels").glob("*.py") for name in _autograd_functions(path)
    ]
    assert len(inside) >= 8  # the AST walk finds them (a guard against a broken walk)
    # each Function is reached through a registered kernel
    sources = "".join(inspect.getsource(f) for pairs in KERNELS.values() for f, _ in pairs)
    assert all(f"{name}.apply" in sources for name in inside), inside


def test_kernels_import_torch_and_no_mmgraph_layer():
    for path in (PACKAGE / "kernels").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in {
                    "__future__",
                    "collections",
                    "itertools",
                    "math",
                    "typing",
                    "torch",
                    "mmgraph",
                }, (path.name, name)
                if top == "mmgraph":
                    assert name.startswith(("mmgraph.kernels", "mmgraph.errors")), (path.name, name)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mmgraph.kernels; "
            "print(sorted(m for m in sys.modules if m.startswith('mmgraph.')))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(name.startswith(("mmgraph.kernels", "mmgraph.errors")) for name in eval(loaded))


def test_every_kernel_has_a_reference_with_its_signature_and_a_documented_saving():
    for name, pairs in KERNELS.items():
        assert pairs, name
        for kernel, reference in pairs:
            assert reference.__name__ == kernel.__name__ + "_reference"
            assert getattr(kernels, reference.__name__) is reference
            kernel_params = inspect.signature(kernel).parameters
            reference_params = inspect.signature(reference).parameters
            assert [(p.name, p.default) for p in kernel_params.values()] == [
                (p.name, p.default) for p in reference_params.values()
            ], name
            doc = inspect.getdoc(kernel)
            assert "**Saves" in doc and "**Used by**" in doc, kernel.__name__


def test_the_layers_call_the_kernels_of_mmgraph_kernels():
    assert mmgraph.nn.functional.l2_normalize is kernels.l2_normalize
    assert mmgraph.nn.encoders.layer_sum_propagation is kernels.layer_sum_propagation
    from mmgraph.nn import edge_dots, gaussian_stats, sparse_matmul, weighted_matmul

    assert sparse_matmul is kernels.sparse_matmul and edge_dots is kernels.edge_dots
    assert weighted_matmul is kernels.weighted_matmul
    assert gaussian_stats is kernels.gaussian_stats


# ---------------------------------------------------------------------------- normalize
NORMALIZE_SHAPES = [(0, 4), (1, 4), (9, 5), (3, 2, 6)]


@pytest.mark.parametrize("shape", NORMALIZE_SHAPES)
def test_l2_normalize_equals_reference(shape):
    (x,) = leaves(shape)
    assert_matches_reference(kernels.l2_normalize, kernels.l2_normalize_reference, [x])
    gradcheck(kernels.l2_normalize, as64([x]))


def test_l2_normalize_equals_reference_on_clamped_rows():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1e-20, 0.0]], requires_grad=True)
    assert_matches_reference(
        kernels.l2_normalize, kernels.l2_normalize_reference, [x], atol=1e-6, rtol=1e-6
    )


# ---------------------------------------------------------------------------- scores
@pytest.mark.parametrize(
    ("num_users", "num_items", "batch", "dim", "block_rows"),
    [
        (5, 4, 0, 3, None),
        (5, 4, 1, 3, None),
        (9, 6, 40, 5, None),
        (9, 6, 40, 5, 7),
        (3, 2, 11, 1, 4),
    ],
)
def test_bpr_scores_equal_reference_to_the_bit(num_users, num_items, batch, dim, block_rows):
    generator = torch.Generator().manual_seed(batch)
    users = torch.randint(0, num_users, (batch,), generator=generator)
    pos, neg = (torch.randint(0, num_items, (batch,), generator=generator) for _ in range(2))
    user_emb, item_emb = leaves((num_users, dim), (num_items, dim))

    def call(function):
        return lambda u, i: function(u, i, users, pos, neg, block_rows)

    got, got_grads = _run(call(kernels.bpr_scores), [user_emb, item_emb])
    want, want_grads = _run(call(kernels.bpr_scores_reference), [user_emb, item_emb])
    # the same gathers, products and in-order scatters: equal to the last bit
    assert all(torch.equal(a, b) for a, b in zip(got + got_grads, want + want_grads, strict=True))
    gradcheck(call(kernels.bpr_scores), as64([user_emb, item_emb]))


# ---------------------------------------------------------------------------- sparse
@pytest.mark.parametrize(("rows", "cols", "dim"), [(0, 4, 3), (1, 4, 3), (6, 5, 1), (7, 7, 4)])
def test_sparse_matmul_equals_reference(rows, cols, dim):
    dense = random_csr(rows, cols, seed=rows)
    (x,) = leaves((cols, dim))

    def call(function, dtype):
        adj_t, adj = dense.to(dtype).to_sparse_csr(), dense.T.to(dtype).to_sparse_csr()
        return lambda x: function(adj_t, x, adj)

    assert_matches_reference(
        call(kernels.sparse_matmul, torch.float32),
        call(kernels.sparse_matmul_reference, torch.float32),
        [x],
    )
    gradcheck(call(kernels.sparse_matmul, torch.float64), as64([x]))


# ---------------------------------------------------------------------------- propagation
def deterministic_perturbation():
    """A fresh ``perturb`` whose noise depends on the call index only (the same in both)."""
    calls = []

    def perturb(h):
        noise = torch.rand(h.shape, generator=torch.Generator().manual_seed(len(calls)))
        calls.append(None)
        h.addcmul_(torch.sign(h), noise.to(h.dtype))

    return perturb


@pytest.mark.parametrize("num_hops", [1, 2, 3])
@pytest.mark.parametrize("rows", [None, [1, 4], [3], []])
@pytest.mark.parametrize("perturbed", [False, True])
def test_layer_sum_propagation_equals_reference(num_hops, rows, perturbed):
    nodes, dim = 6, 4
    dense = random_csr(nodes, nodes, seed=num_hops, density=0.5)  # not symmetric
    index = None if rows is None else torch.tensor(rows, dtype=torch.long)
    (x,) = leaves((nodes, dim))

    def call(function, dtype):
        matrix = dense.to(dtype).to_sparse_csr()
        hops = [(matrix, dense.T.to(dtype).to_sparse_csr())] * num_hops
        if index is not None:  # the last hop computes only the rows read
            hops[-1] = (
                csr_submatrix(matrix, rows=index),
                dense.T[:, index].to(dtype).to_sparse_csr(),
            )

        def run(x):
            return function(x, hops, index, deterministic_perturbation() if perturbed else None)

        return run

    assert_matches_reference(
        call(kernels.layer_sum_propagation, torch.float32),
        call(kernels.layer_sum_propagation_reference, torch.float32),
        [x],
    )
    gradcheck(call(kernels.layer_sum_propagation, torch.float64), as64([x]))


# ---------------------------------------------------------------------------- stats
@pytest.mark.parametrize("shapes", [[(5, 3)], [(1,), (2, 3)], [(0, 4), (3, 4)], [(1, 1)]])
@pytest.mark.parametrize("repeats", [1, 3])
def test_gaussian_stats_equal_reference(shapes, repeats):
    parts = leaves(*shapes)
    kernel = lambda *p: kernels.gaussian_stats(*p, repeats=repeats)  # noqa: E731
    reference = lambda *p: kernels.gaussian_stats_reference(*p, repeats=repeats)  # noqa: E731
    if sum(torch.Size(s).numel() for s in shapes) * repeats == 1:  # one entry: variance nan
        with pytest.warns(UserWarning):
            got, want = kernel(*parts), reference(*parts)
        assert torch.equal(got[0], want[0]) and got[1].isnan() and want[1].isnan()
        return
    assert_matches_reference(kernel, reference, parts)
    gradcheck(kernel, as64(parts))


@pytest.mark.parametrize("shapes", [[(4, 3, 2), (5, 3)], [(1, 2, 3)], [(0, 3, 2), (2, 3, 2)]])
@pytest.mark.parametrize("repeats", [1, 2])
def test_grouped_gaussian_stats_equal_reference(shapes, repeats):
    parts = leaves(*shapes)
    kernel = lambda *p: kernels.grouped_gaussian_stats(*p, repeats=repeats)  # noqa: E731
    reference = lambda *p: kernels.grouped_gaussian_stats_reference(*p, repeats=repeats)  # noqa: E731
    assert_matches_reference(kernel, reference, parts)
    gradcheck(kernel, as64(parts))


# ---------------------------------------------------------------------------- edges
GRAPHS = {
    # users 3 and 4 have no edge, item 1 none either
    "some-empty-rows": (torch.tensor([[0, 0, 1, 2, 2, 2, 1], [0, 2, 3, 0, 2, 3, 0]]), 5, 4),
    "one-edge": (torch.tensor([[1], [2]]), 2, 3),
}


@pytest.mark.parametrize("graph_name", list(GRAPHS))
def test_edge_dots_equal_reference(graph_name):
    edge_index, num_users, num_items = GRAPHS[graph_name]
    graph = BipartiteGraph(edge_index, num_users, num_items)
    user_x, item_x = leaves((num_users, 3), (num_items, 3))

    def call(function):
        return lambda a, b: function(graph, a, b)

    assert_matches_reference(
        call(kernels.edge_dots), call(kernels.edge_dots_reference), [user_x, item_x]
    )
    gradcheck(call(kernels.edge_dots), as64([user_x, item_x]))


@pytest.mark.parametrize("graph_name", list(GRAPHS))
@pytest.mark.parametrize("transpose", [False, True])
def test_weighted_matmul_equals_reference(graph_name, transpose):
    edge_index, num_users, num_items = GRAPHS[graph_name]
    graph = BipartiteGraph(edge_index, num_users, num_items)
    values, x = leaves((graph.num_edges,), (num_users if transpose else num_items, 3))

    def call(function):
        return lambda v, h: function(graph, v, h, transpose)

    assert_matches_reference(
        call(kernels.weighted_matmul), call(kernels.weighted_matmul_reference), [values, x]
    )
    gradcheck(call(kernels.weighted_matmul), as64([values, x]))
    frozen = [values.detach(), x]
    assert_matches_reference(
        call(kernels.weighted_matmul), call(kernels.weighted_matmul_reference), frozen
    )


# ---------------------------------------------------------------------------- infonce
def numerical_gradients(function, inputs, eps=1e-6):
    """Central differences of a scalar ``function`` (gradcheck's backward-twice check does not
    apply: the kernel's backward reuses its buffer and runs once)."""
    grads = []
    for x in inputs:
        grad = torch.zeros_like(x)
        flat, flat_grad = x.detach().view(-1), grad.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            up = function(*inputs).item()
            flat[i] = old - eps
            down = function(*inputs).item()
            flat[i] = old
            flat_grad[i] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


@pytest.mark.parametrize(
    ("batch", "num_candidates", "dim"), [(0, 5, 3), (1, 1, 3), (1, 6, 3), (7, 11, 5)]
)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_matmul_cross_entropy_equals_reference(batch, num_candidates, dim, reduction):
    anchors, candidates = leaves((batch, dim), (num_candidates, dim))
    targets = torch.randint(0, num_candidates, (batch,), generator=torch.Generator().manual_seed(2))

    def call(function):
        return lambda a, c: function(a, c, targets, reduction)

    if batch == 0 and reduction == "mean":  # an empty mean: nan in both
        assert call(kernels.matmul_cross_entropy)(anchors, candidates).isnan()
        assert call(kernels.matmul_cross_entropy_reference)(anchors, candidates).isnan()
        return
    assert_matches_reference(
        call(kernels.matmul_cross_entropy),
        call(kernels.matmul_cross_entropy_reference),
        [anchors, candidates],
    )
    inputs = as64([anchors, candidates])
    loss = call(kernels.matmul_cross_entropy)(*inputs)
    analytic = torch.autograd.grad(loss, inputs, allow_unused=True)
    with torch.no_grad():
        numeric = numerical_gradients(
            call(kernels.matmul_cross_entropy), [x.detach() for x in inputs]
        )
    for a, n in zip(analytic, numeric, strict=True):
        torch.testing.assert_close(a, n, atol=1e-6, rtol=1e-5)


def test_matmul_cross_entropy_backward_runs_once_and_checks_the_reduction():
    anchors, candidates = leaves((3, 2), (4, 2))
    loss = kernels.matmul_cross_entropy(anchors, candidates, torch.tensor([0, 1, 3]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()
    with pytest.raises(ValueError, match="reduction"):
        kernels.matmul_cross_entropy(anchors, candidates, torch.tensor([0, 1, 3]), "none")


# ---------------------------------------------------------------------------- benchmark
def test_benchmark_plan_times_every_kernel_in_registered_models():
    planned = {kernel for target in PLAN for kernel in target.kernels}
    assert planned == set(KERNELS)
    for target in PLAN:
        get_model(target.model)  # raises for an unknown name


def test_swapped_replaces_every_binding_and_restores_them():
    pairs = dict(KERNELS["l2_normalize"])
    with swapped(pairs) as count:
        assert count >= 4  # the kernel module, the package, nn.functional, encoders, ...
        assert mmgraph.nn.functional.l2_normalize is kernels.l2_normalize_reference
        assert mmgraph.nn.encoders.l2_normalize is kernels.l2_normalize_reference
    assert mmgraph.nn.encoders.l2_normalize is kernels.l2_normalize
    assert mmgraph.nn.functional.l2_normalize is kernels.l2_normalize


def test_count_calls_sees_the_kernel_or_only_its_reference():
    from tests.helpers import tiny_dataset

    data = tiny_dataset()
    model = get_model("lightgcn").from_dataset(data, embedding_dim=4)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])
    from mmgraph.data.sampling import Batch

    def step():
        sum(model.loss(Batch(users, pos, neg)).values()).backward()

    # LightGCN's loss propagates over its 3 layers: 3 sparse products
    assert count_calls("sparse_matmul", "kernel", step) == {"kernel": 3, "reference": 0}
    assert count_calls("sparse_matmul", "reference", step) == {"kernel": 0, "reference": 3}


def _run_benchmark(tmp_path, *extra):
    out = tmp_path / "kernels.json"
    command = [sys.executable, "-m", "benchmarks.kernels", "--quick", "--threads", "1"]
    done = subprocess.run(
        [*command, *extra, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert out.with_suffix(".md").exists()
    return json.loads(out.read_text())


def test_kernel_benchmark_quick_run_alternates_every_planned_pair(tmp_path):
    report = _run_benchmark(tmp_path)
    results = report["results"]
    expected = [(t.model, t.overrides, k) for t in PLAN for k in t.kernels]
    assert [(r["model"], r["settings"], r["kernel"]) for r in results] == expected
    for r in results:
        assert "error" not in r, r
        assert r["pairs"] == 2 and len(r["run_medians"]["kernel"]) == 2
        assert r["calls_per_step"] >= 1
        assert r["kernel_step_seconds"] > 0 and r["reference_step_seconds"] > 0
        assert 0 <= r["kernel_faster_pairs"] <= 2
    assert report["settings"]["pairs"] == 2


def test_kernel_benchmark_measures_each_variants_memory_in_its_own_process(tmp_path):
    report = _run_benchmark(
        tmp_path, "--kernels", "sparse_matmul", "--models", "lightgcn", "--memory"
    )
    (result,) = report["results"]
    for variant in ("kernel", "reference"):
        assert result[f"{variant}_peak_rss_mb"] > 0
        growth = result[f"{variant}_step_rss_growth_mb"]
        assert growth is None or growth >= 0
