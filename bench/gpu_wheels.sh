#!/usr/bin/env bash
# Prepare, on a machine with PyPI access, the wheels that bench/gpu_check.sh needs on a GPU
# machine whose image has PyTorch, numpy, scipy, scikit-learn, pandas, matplotlib, seaborn,
# PyYAML, tqdm and jinja2 but not abt's other dependencies, and no network (Python 3.12, x86-64).
# They land in .whl/ (git-ignored, ~20 MB); carry that folder to the GPU machine. The list is
# what the GPU checks import beyond such an image: audio I/O (soundfile + cffi, soxr), the
# embedded data set's speech and music sources, optuna (journal storage only) and jsonschema.
#
#   bash bench/gpu_wheels.sh            # then, on the GPU machine: bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p .whl
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  soundfile==0.14.0 cffi==2.1.1 soxr==1.1.0 optuna==5.0.0 colorlog==6.12.0 \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
  espeakng-loader==0.2.4 pretty_midi==0.2.11.post0 mido==1.3.3 importlib_resources==7.1.0 \
  midirenderer==0.1.3 julius==0.2.8
du -sh .whl && ls -1 .whl
