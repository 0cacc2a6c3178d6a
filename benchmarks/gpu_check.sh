#!/usr/bin/env bash
# The GPU check: run it once on a CUDA machine (about 6 minutes on one H100-class GPU).
#
#   bash benchmarks/gpu_check.sh            # results to benchmarks/results/
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#
# Needs python3 with torch (CUDA build), torch-geometric, numpy, scipy, scikit-learn, PyYAML,
# tqdm, pytest and hypothesis; mmgraph itself is used from this checkout (PYTHONPATH), so
# nothing is installed. It writes, each file named with the date:
#   gpu-DATE-device.txt    nvidia-smi's name, memory and driver, torch's CUDA version
#   gpu-DATE-tests.txt     tests/test_cuda.py: every model's forward, loss terms, gradients
#                          and one optimiser step on CUDA equal to CPU; the evaluator too
#   speed-DATE-cuda.{json,md}  s/epoch, s/eval and peak memory of every model on TikTok and
#                          on a synthetic graph of Amazon Baby's size (19,445 users, 7,050
#                          items, 160,792 interactions)
#   knn-DATE-cuda.{json,md}    the kNN builder on 200,000 items x 384 dimensions
# Each step has its own time limit and the script goes on after a failed step, so one
# failure still leaves the others' results; the exit status is that of the worst step.
# torch-sparse is not built here (its source build takes longer than the whole check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
PY="${PYTHON:-python3}"
STAMP="$(date -u +%Y-%m-%d)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
status=0
step() {  # step SECONDS COMMAND...: run with a time limit, remember a failure
    timeout "$1" "${@:2}" || { echo "gpu_check: step failed ($?): ${*:2}" >&2; status=1; }
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'pyg', g.__version__)"
} 2>&1 | tee "$OUT/gpu-$STAMP-device.txt"

step 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$OUT/gpu-$STAMP-tests.txt" 2>&1
cat "$OUT/gpu-$STAMP-tests.txt"
step 240 "$PY" -m benchmarks.speed --device cuda --epochs 3 \
    --datasets tiktok,synthetic:users=19445,items=7050,interactions=160792 \
    --out "$OUT/speed-$STAMP-cuda.json"
step 90 "$PY" -m benchmarks.knn --device cuda --items 200000 --dim 384 \
    --out "$OUT/knn-$STAMP-cuda.json"
exit "$status"
