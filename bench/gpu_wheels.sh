#!/usr/bin/env bash
# Prepare, on a machine with PyPI access, the wheels that bench/gpu_check.sh needs on a GPU
# machine whose image has PyTorch but not abt's other dependencies and no network (Python 3.12,
# x86-64). They land in .whl/ (git-ignored); carry that folder to the GPU machine.
#
#   bash bench/gpu_wheels.sh            # then, on the GPU machine: bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p .whl
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  soundfile==0.14.0 soxr==1.1.0 optuna==5.0.0 colorlog jsonschema==4.26.0 \
  jsonschema-specifications referencing rpds-py
ls -1 .whl
