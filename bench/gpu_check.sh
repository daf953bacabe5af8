#!/usr/bin/env bash
# The GPU checks of issue 11 in one run: the CUDA test suite (tests/gpu) and the GPU benchmark.
# On a GPU machine, from the repository root:
#
#   bash bench/gpu_check.sh [OUT_DIR]       # default OUT_DIR: bench/results/gpu
#
# It uses the machine's own PyTorch (any CUDA build); missing pure dependencies come from .whl/
# when present (see bench/gpu_wheels.sh), installed into a scratch folder, never over the
# system's packages. Logs and bench/results JSON go to OUT_DIR. Try it on a CPU first:
#   ABT_TEST_DEVICE=cpu BENCH_ARGS="--device cpu --smoke" bash bench/gpu_check.sh /tmp/gpu-dry
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/results/gpu}}
mkdir -p "$out"
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/abt-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/abt-site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi || true; $py -c "import torch; print('torch', torch.__version__, 'cuda',
  torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
} 2>&1 | tee "$out/machine.txt"
rc=0
$py -m pytest tests/gpu -m cuda -v -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.log" || rc=1
# shellcheck disable=SC2086
$py bench/bench_gpu.py ${BENCH_ARGS:-} --out "$out/gpu.json" 2>&1 | tee "$out/bench_gpu.log" || rc=1
exit $rc
