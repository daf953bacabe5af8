# abt: Audio Barlow Twins, reproduced end to end.
#
#   snakemake --cores 2                       # the default target: data, runs, report/tables.tex
#   snakemake --cores 2 report/tables.tex     # the main report (LaTeX + report/report.html)
#   snakemake --cores 2 results/ablations/aug_rrc/summary.csv   # one ablation
#   snakemake --cores 2 paper                 # every study and encoder: report/full/
#
# Configuration: config.yaml (validated against workflow/schemas/config.schema.yaml at parse time).
# Use --configfile config/paper.yaml for the paper's scale.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/hear.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/unknown.smk"


rule all:
    default_target: True
    input:
        TRAIN_STATS,
        rules.baseline_table.output.csv,
        rules.encoder_tables.output.csv,
        expand(
            str(RUN_FILES.checkpoint),
            encoder=config["run"]["encoders"],
            variant="baseline",
            seed=SEEDS,
        ),
        main_hear_targets(),
        rules.report.output,
