#!/usr/bin/env bash
# Runs after snakemake creates envs/audio.yaml (from the yaml or from its pin file): the embedded
# data set's PyPI-only packages, exact pins equal to pyproject.toml, wheels only, without their
# declared dependencies (those are conda pins in audio.yaml; tests/test_envs.py checks that).
# Editing this file changes the env's hash: snakemake then builds a new env.
set -euo pipefail
pip install --no-deps --only-binary :all: espeakng-loader==0.2.4 midirenderer==0.1.3 pretty_midi==0.2.11.post0
