"""Adapter: rule compute_pretrain_waves -> abt.jobs.data.compute_pretrain_waves."""

from pathlib import Path

from abt.jobs import function
from abt.plan import job_preprocess
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("pretrain_waves"),
    data=sm.params.data,
    mels=sm.params.mels,
    pre=job_preprocess(sm.params.preprocess, sm.config),  # + the knobs params do not compare
    waves=sm.params.waves,
    embedded_dir=sm.params.embedded_dir,
    out_dir=str(Path(sm.output.stats).parent),
    extra={"code": sm.params.code},  # the store's fingerprint covers its code
)
