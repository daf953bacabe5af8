"""Adapter: rules compute_pretrain_mels(_shard) -> abt.steps.compute_pretrain_mels, or
abt.steps.merge_pretrain_mels when the store was built in shards."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from abt import steps, workflow_io  # noqa: E402

sm = snakemake  # noqa: F821
shard = sm.wildcards.get("shard")
if sm.input.get("shards"):
    workflow_io.run(
        sm,
        steps.merge_pretrain_mels,
        shard_dirs=list(sm.input.shards),
        pre=sm.params.preprocess,
        out_dir=str(Path(sm.output.stats).parent),
    )
else:
    workflow_io.run(
        sm,
        steps.compute_pretrain_mels,
        data=sm.params.data,
        mels=sm.params.mels,
        pre=sm.params.preprocess,
        embedded_dir=sm.params.embedded_dir,
        out_dir=sm.output[0] if shard is not None else str(Path(sm.output.stats).parent),
        shard=None if shard is None else int(shard),
        n_shards=sm.params.preprocess["shards"],
    )
