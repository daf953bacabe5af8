"""Adapter: rule sweep_worker -> abt.jobs.pretrain.sweep_worker (several share one study)."""

from pathlib import Path

from abt.jobs import function
from abt.plan import SweepFiles
from abt.sweeps import sweep_run_config
from abt.workflow_io import checked_identity, run

sm = snakemake  # noqa: F821
spec = sm.params.spec  # the base run's identity: the full run is resolved from the configuration
base = checked_identity(sweep_run_config(sm.config, sm.wildcards.sweep), spec["run"])
run(
    sm,
    function("sweep_worker"),
    name=sm.wildcards.sweep,
    space=spec["space"],
    settings=spec["settings"],
    run=base,
    monitor=sm.params.monitor,
    seed=sm.params.seed,
    sweep_dir=SweepFiles(sm.wildcards.sweep).root,
    store_dir=str(Path(sm.input.stats).parent),
    monitor_task_dir=sm.params.monitor_task_dir,
    monitor_stores=sm.input.monitor_stores,
    slot=int(sm.wildcards.slot),
    out_json=sm.output[0],
    track=sm.config.get("track"),  # the experiment tracker: not a param (never decides a re-run)
)
