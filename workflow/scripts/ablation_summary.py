"""Adapter: rule ablation_summary -> abt.jobs.report.ablation_summary."""

from abt import plan
from abt.jobs import function
from abt.workflow_io import run

sm = snakemake  # noqa: F821
run(
    sm,
    function("ablation"),
    name=sm.wildcards.ablation,
    description=sm.params.description,
    run=sm.params.run,
    scores_csvs=list(sm.input.scores),
    linear_eval_jsons=list(sm.input.linear_evals),
    predictions=list(sm.input.predictions),
    seeds=list(sm.params.seeds),
    hear_l=list(sm.params.hear_l),
    out_csv=sm.output.summary,
    out_bootstrap=sm.output.bootstrap,
    trained=sm.wildcards.ablation != plan.RANDOM_INIT,  # the row without pre-training
)
