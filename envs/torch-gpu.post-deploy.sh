#!/usr/bin/env bash
# Runs after snakemake creates this torch env (from the yaml or from its pin file): the waveform
# augmentations' resampler, julius (a pure-Python wheel on PyPI; its one dependency, torch, is the
# env's pytorch), exact pin equal to pyproject.toml, without its declared dependencies.
# envs/torch-cpu.post-deploy.sh and envs/torch-gpu.post-deploy.sh are the same file.
set -euo pipefail
pip install --no-deps --only-binary :all: julius==0.2.8
