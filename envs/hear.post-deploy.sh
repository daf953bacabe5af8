#!/usr/bin/env bash
# Runs after snakemake creates envs/hear.yaml: the two HEAR packages whose metadata pins
# numpy 1.19 / numba 0.48 / tensorflow go in without their declared dependencies (the working
# versions are pinned in hear.yaml; see envs/hear-eval.constraints.txt and the README).
set -euo pipefail
pip install --no-deps heareval==2021.1.3
pip install --no-deps --ignore-requires-python hearvalidator==2021.0.6
# the measured references (abt.evaluation.references): the HEAR 2021 naive baseline and CREPE
pip install --no-deps hearbaseline==2021.1.1 torchcrepe==0.0.24
