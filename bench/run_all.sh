#!/usr/bin/env bash
# Runs every CPU benchmark, one after another (never concurrently: they share 2 cores), writing
# JSON to bench/results/ and the markdown tables to bench/results/all.md. Record figures in
# bench/RESULTS.md together with the machine line and the load average each run printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p bench/results
{
  echo "## store"; $PY bench/bench_store.py --out bench/results/store.json
  echo "## augmentation (1 thread)"; $PY bench/bench_augment.py --threads 1 --repeats 11 --out bench/results/augment_t1.json
  echo "## augmentation (2 threads)"; $PY bench/bench_augment.py --threads 2 --repeats 11 --out bench/results/augment_t2.json
  echo "## training step"; $PY bench/bench_train_step.py --batch 128 --steps 5 --warmup 2 --out bench/results/train_step.json
  echo "## waveform augmentation"; $PY bench/bench_wave_augment.py --batch 128 --repeats 3 --steps 3 --out bench/results/wave_augment.json
  echo "## HEAR embeddings"; $PY bench/bench_hear.py --out bench/results/hear.json
  echo "## audio fingerprint"; $PY bench/bench_fingerprint.py --out bench/results/fingerprint.json
  echo "## store checks"; $PY bench/bench_store_check.py --out bench/results/store_check.json
  echo "## TF32 emulated (pretrain.tf32)"; $PY bench/bench_tf32.py --batch 128 --out bench/results/tf32.json
  if $PY -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
    echo "## GPU pre-training"; $PY bench/bench_gpu.py --out bench/results/gpu.json
  fi
} 2>&1 | tee bench/results/all.md
