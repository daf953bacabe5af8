"""Adapter: rule paper_tables -> abt.jobs.report.paper_tables."""

from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("paper_tables"),
    encoders=list(sm.params.encoders),
    scores_csvs=list(sm.input.scores),
    epoch_metrics=dict(sm.params.epoch_metrics),
    predictions={e: dict(v) for e, v in dict(sm.params.predictions).items()},
    random_init_probes=dict(sm.params.random_init_probes),
    finetune={
        e: {v: dict(r) for v, r in dict(runs).items()}
        for e, runs in dict(sm.params.finetune).items()
    },  # fmt: skip
    references={n: dict(r) for n, r in dict(sm.params.references).items()},
    trained_predictions=dict(sm.params.trained_predictions),
    out_dir=sm.output[0],
)
