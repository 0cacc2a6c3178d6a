"""Hand-written autograd kernels, each beside a plain-autograd reference of the same function.

Every ``torch.autograd.Function`` of mmgraph lives here, behind one boundary: the layers
(:mod:`mmgraph.nn`) and models call these functions and read like their equations. This is a
shared leaf below :mod:`mmgraph.nn`: it imports torch (and :mod:`mmgraph.errors`) only, never
a layer.

Each kernel ``f`` has a reference ``f_reference`` with the same signature, written with
torch's autograd: the tests (``tests/test_kernels.py``) check that values and gradients
agree, and ``benchmarks/kernels.py`` times the training step of the models that use ``f``
with ``f`` and with ``f_reference`` swapped in (:data:`KERNELS`), alternating. Each kernel's
docstring says what it saves (time or memory) and where it is used.

=====================================  ======================  ==============================
kernel                                 module                  used by
=====================================  ======================  ==============================
:func:`l2_normalize`                   :mod:`.normalize`       MENTOR, DRAGON, DualGNN, GRCN,
                                                               MMGCN, DiffMM, contrast heads
:func:`bpr_scores`                     :mod:`.scores`          LightGCN, MENTOR, DRAGON,
                                                               DualGNN
:func:`sparse_matmul`                  :mod:`.sparse`          every graph propagation
:func:`layer_sum_propagation`          :mod:`.propagation`     MultiBranchLightGCN (MENTOR,
                                                               DRAGON, DualGNN, SLMRec)
:func:`gaussian_stats`,                :mod:`.stats`           MENTOR (alignment)
:func:`grouped_gaussian_stats`
:func:`edge_dots`                      :mod:`.edges`           GRCN
:func:`weighted_matmul`                :mod:`.edges`           GRCN
:func:`matmul_cross_entropy`           :mod:`.infonce`         LGMRec (sum), DiffMM (mean)
=====================================  ======================  ==============================
"""

from collections.abc import Callable

from mmgraph.kernels.edges import (
    EdgePattern,
    edge_dots,
    edge_dots_reference,
    weighted_matmul,
    weighted_matmul_reference,
)
from mmgraph.kernels.infonce import matmul_cross_entropy, matmul_cross_entropy_reference
from mmgraph.kernels.normalize import l2_normalize, l2_normalize_reference
from mmgraph.kernels.propagation import layer_sum_propagation, layer_sum_propagation_reference
from mmgraph.kernels.scores import bpr_scores, bpr_scores_reference
from mmgraph.kernels.sparse import sparse_dense_product, sparse_matmul, sparse_matmul_reference
from mmgraph.kernels.stats import (
    gaussian_stats,
    gaussian_stats_reference,
    grouped_gaussian_stats,
    grouped_gaussian_stats_reference,
)

#: kernel name -> its ``(kernel, reference)`` function pairs (one autograd Function may have
#: several entry points): what ``benchmarks/kernels.py`` swaps to time a model without it
KERNELS: dict[str, tuple[tuple[Callable, Callable], ...]] = {
    "l2_normalize": ((l2_normalize, l2_normalize_reference),),
    "bpr_scores": ((bpr_scores, bpr_scores_reference),),
    "sparse_matmul": ((sparse_matmul, sparse_matmul_reference),),
    "layer_sum_propagation": ((layer_sum_propagation, layer_sum_propagation_reference),),
    "gaussian_stats": (
        (gaussian_stats, gaussian_stats_reference),
        (grouped_gaussian_stats, grouped_gaussian_stats_reference),
    ),
    "edge_dots": ((edge_dots, edge_dots_reference),),
    "weighted_matmul": ((weighted_matmul, weighted_matmul_reference),),
    "matmul_cross_entropy": ((matmul_cross_entropy, matmul_cross_entropy_reference),),
}

__all__ = [
    "KERNELS",
    "EdgePattern",
    "bpr_scores",
    "bpr_scores_reference",
    "edge_dots",
    "edge_dots_reference",
    "gaussian_stats",
    "gaussian_stats_reference",
    "grouped_gaussian_stats",
    "grouped_gaussian_stats_reference",
    "l2_normalize",
    "l2_normalize_reference",
    "layer_sum_propagation",
    "layer_sum_propagation_reference",
    "matmul_cross_entropy",
    "matmul_cross_entropy_reference",
    "sparse_dense_product",
    "sparse_matmul",
    "sparse_matmul_reference",
]
