#!/usr/bin/env bash
# The first thing a session with a GPU runs: every GPU check in one command, one results file.
#
#   bash bench/gpu_check.sh [OUT_DIR]          # on the GPU machine, from the repository root
#   bash bench/gpu_check.sh --cpu [OUT_DIR]    # the same end to end on a CPU (emulation)
#
# OUT_DIR (default: $OUT where set, else bench/results/gpu) receives results.md -- the one file
# to paste into bench/RESULTS.md -- and the logs behind it (6 files in all):
#   1. the CUDA suite, tests/gpu (pre-training with probes, stop, resume; HEAR on the GPU; linear
#      evaluation; a sweep trial; torchrun with NCCL; set_sync_debug_mode("error") around
#      training steps and the SyncBatchNorm function)                        -> cuda_tests.log
#   2. bench/gpu_steps.py under TORCH_LOGS=recompiles,graph_breaks: host synchronisations per
#      step and where, torch.compile frames / graph breaks of ViT_C-B        -> steps.log/.json
#   3. bench/bench_gpu.py with the default path, fp32, bf16 and fp16 (AudioNTT, ViT_C-B 16x8,
#      batch 128)                                                             -> bench_gpu.log/gpu.json
#
# Device time on one H200 (measured 2026-12-04): 263 s in all -- CUDA suite 150 s (torch.compile
# of ViT_C-T for bf16 and fp16 is most of it), gpu_steps 59 s (one compile of ViT_C-B),
# bench_gpu 51 s (8 rows of 5 warm-up + 20 timed steps, the compile cached). Each stage has a time limit (STAGE_LIMITS, seconds; 280 + 120 + 170 by
# default, under the device tool's 10-minute command limit); a stage that runs over is reported
# as such in results.md and the next one still runs.
#
# A bare GPU machine (its image's python3 with PyTorch, no network): missing pure and binary
# dependencies come from .whl/ (bench/gpu_wheels.sh prepares them where pip works; carry .whl),
# installed into a scratch folder, never over the system's packages. PYTHON picks the
# interpreter (default python3), WHEELS the wheel folder (default .whl; "none": install nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
cpu=0
if [ "${1:-}" = "--cpu" ]; then
  cpu=1
  shift
fi
out=${1:-${OUT:-bench/results/gpu}}
mkdir -p "$out"
py=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/abt-site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/abt-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ $cpu = 1 ]; then
  export ABT_TEST_DEVICE=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  dev=(--device cpu --smoke)
  read -r l1 l2 l3 <<<"${STAGE_LIMITS:-3600 900 900}"
else
  dev=(--device cuda)
  read -r l1 l2 l3 <<<"${STAGE_LIMITS:-280 120 170}"
fi
res="$out/results.md"
status() { # stage rc -> a word for the table
  case $2 in 0) echo "ok" ;; 124 | 137) echo "TIMED OUT (limit $3 s)" ;; *) echo "FAILED (exit $2)" ;; esac
}
t0=$(date +%s)
{
  echo "## GPU check ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo
  [ $cpu = 1 ] && echo "**CPU emulation** (\`--cpu\`): no GPU figure below is a measurement." && echo
  echo '```'
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
  else
    echo "nvidia-smi: not found"
  fi
  $py -c "import torch, platform; c = torch.cuda.is_available(); print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if c else 'no GPU', 'sm_%d%d' % torch.cuda.get_device_capability(0) if c else '')"
  echo '```'
} >"$res" 2>&1

# 1. the CUDA suite
timeout "$l1" $py -m pytest tests/gpu -m cuda -v -rs -p no:cacheprovider >"$out/cuda_tests.log" 2>&1
rc1=$?
t1=$(date +%s)
# 2. synchronisations and compilation, with dynamo's reasons
TORCH_LOGS=recompiles,graph_breaks timeout "$l2" $py bench/gpu_steps.py "${dev[@]}" \
  --out "$out/steps.json" >"$out/steps.log" 2>&1
rc2=$?
t2=$(date +%s)
# 3. throughput: the default path and each precision
timeout "$l3" $py bench/bench_gpu.py "${dev[@]}" --options default fp32 bf16 fp16 --steps 20 \
  --warmup 5 --out "$out/gpu.json" >"$out/bench_gpu.log" 2>&1
rc3=$?
t3=$(date +%s)

{
  echo
  echo "| stage | result | wall s |"
  echo "|---|---|---:|"
  echo "| CUDA suite (tests/gpu) | $(status 1 $rc1 "$l1") | $((t1 - t0)) |"
  echo "| bench/gpu_steps.py (syncs, compile) | $(status 2 $rc2 "$l2") | $((t2 - t1)) |"
  echo "| bench/bench_gpu.py (default, fp32, bf16, fp16) | $(status 3 $rc3 "$l3") | $((t3 - t2)) |"
  echo
  echo "### CUDA suite"
  echo '```'
  grep -E "(PASSED|FAILED|SKIPPED|ERROR)( |$)|^(FAILED|ERROR|SKIPPED) " "$out/cuda_tests.log" |
    sed 's/ *\[ *[0-9]*%\]//' | sort -u
  tail -n 1 "$out/cuda_tests.log" | tr -d '\n'
  echo
  echo '```'
  echo
  echo "### Host synchronisations and torch.compile (bench/gpu_steps.py)"
  echo
  grep -E '^\|' "$out/steps.log"
  grep -E '^sync: ' "$out/steps.log" | head -20
  echo
  echo "TORCH_LOGS (recompiles, graph breaks): $(grep -cE '__recompiles|__graph_breaks|Graph break' "$out/steps.log") lines"
  echo '```'
  grep -E '__recompiles|__graph_breaks|Graph break|recompile_limit' "$out/steps.log" | head -20
  echo '```'
  echo
  echo "### Throughput (bench/bench_gpu.py; batch 128, with --cpu 4)"
  echo
  grep -E '^(\||matmul peak)' "$out/bench_gpu.log"
  for f in cuda_tests.log steps.log bench_gpu.log; do
    if grep -qE "Traceback|Error" "$out/$f" && [ "$f" != cuda_tests.log ]; then
      echo
      echo "$f, last lines:"
      echo '```'
      tail -n 15 "$out/$f"
      echo '```'
    fi
  done
} >>"$res" 2>&1
cat "$res"
[ $rc1 = 0 ] && [ $rc2 = 0 ] && [ $rc3 = 0 ]
