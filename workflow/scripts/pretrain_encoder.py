"""Adapter: rule pretrain_encoder -> abt.jobs.pretrain.pretrain_torchrun (resumes from _staging/
when it is this run's). The rule's params hold the run's identity (what decides a re-run); the
full run, with its speed, logging and checkpointing knobs, is resolved here from the
configuration. A second job of the same run (snakemake --nolock) waits for the first."""

from pathlib import Path

from abt.jobs import function
from abt.runspec import resolve
from abt.workflow_io import checked_identity, run

sm = snakemake  # noqa: F821
spec = resolve(sm.config, sm.wildcards.encoder, sm.wildcards.variant, int(sm.wildcards.seed))
run(
    sm,
    function("pretrain"),
    nproc=sm.params.nproc,
    run=checked_identity(spec, sm.params.run),
    store_dir=str(Path(sm.input.stats).parent),
    run_dir=str(Path(sm.output.checkpoint).parent),
    monitor=sm.params.monitor,
    monitor_task_dir=sm.params.monitor_task_dir,
    monitor_stores=sm.input.get("monitor_stores"),
    sweep_params=sm.input.get("sweep_params"),
    wait_for_lock=True,
    track=sm.config.get("track"),  # the experiment tracker: not a param (never decides a re-run)
)
