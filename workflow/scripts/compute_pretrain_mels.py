"""Adapter: rules compute_pretrain_mels(_shard) -> abt.jobs.data.compute_pretrain_mels, or
abt.jobs.data.merge_pretrain_mels when the store was built in shards."""

from pathlib import Path

from abt.jobs import function
from abt.plan import job_preprocess
from abt.workflow_io import run

sm = snakemake  # noqa: F821
pre = job_preprocess(sm.params.preprocess, sm.config)  # + the knobs params do not compare
shard = sm.wildcards.get("shard")
if sm.input.get("shards"):
    run(
        sm,
        function("pretrain_mels", "merge_pretrain_mels"),
        shard_dirs=list(sm.input.shards),
        pre=pre,
        out_dir=str(Path(sm.output.stats).parent),
        pad=sm.params.pad,
        extra={"code": sm.params.code},  # the store's fingerprint covers its code
    )
else:
    run(
        sm,
        function("pretrain_mels", "compute_pretrain_mels"),
        data=sm.params.data,
        mels=sm.params.mels,
        pre=pre,
        embedded_dir=sm.params.embedded_dir,
        out_dir=sm.output[0] if shard is not None else str(Path(sm.output.stats).parent),
        shard=None if shard is None else int(shard),
        n_shards=sm.params.preprocess["shards"],
        # a shard's own statistics are not used (the merge computes the store's): silence
        pad=sm.params.pad if shard is None else "silence",
        extra={"code": sm.params.code},
    )
