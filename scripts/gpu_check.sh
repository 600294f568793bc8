#!/usr/bin/env bash
# The GPU check of issue 18, one prepared command for a machine with an NVIDIA GPU:
#   1. the GPU tests (gsplat's CUDA rasterizer vs the CPU kernel, the whole job on CUDA, the device plumbing);
#   2. `mvgen bench gpu`: gsplat CUDA vs the CPU kernel (images within 1e-4, gradients within 1e-3), and generate /
#      fit / e2e timed on the GPU and on the CPU; everything in OUT_DIR/gpu_check.json.
# Usage: scripts/gpu_check.sh [OUT_DIR] [--quick]      (OUT_DIR default: logs/gpu_check; PYTHON=... picks the python)
# Without CUDA it says so in one line and exits 0 (nothing is checked). gsplat compiles its CUDA kernels with nvcc on
# first use (minutes, once per machine): the report's raster first_call_s shows it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT_DIR=${1:-logs/gpu_check}
QUICK=${2:-}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT_DIR"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was checked" >&2
  "$PY" -m mvgen.cli bench gpu --json "$OUT_DIR/gpu_check.json" 2>/dev/null
  exit 0
fi

command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1
echo "gpu_check: GPU tests -> $OUT_DIR/pytest_gpu.log"
PYTHONUNBUFFERED=1 "$PY" -m pytest -q -rs -p no:cacheprovider \
  tests/reconstruction/test_rasterize.py tests/job/test_device.py tests/job/test_gpu_bench.py \
  2>&1 | tee "$OUT_DIR/pytest_gpu.log"
PYTEST_RC=${PIPESTATUS[0]}
echo "gpu_check: mvgen bench gpu -> $OUT_DIR/gpu_check.json"
PYTHONUNBUFFERED=1 "$PY" -m mvgen.cli bench gpu --json "$OUT_DIR/gpu_check.json" --pytest-rc "$PYTEST_RC" $QUICK \
  2>&1 | tee "$OUT_DIR/bench_gpu.log"
exit "${PIPESTATUS[0]}"
