# abt: Audio Barlow Twins, reproduced end to end.
#
#   snakemake --cores 2                       # everything configured so far (rule all)
#   snakemake --cores 2 results/baselines/summary.csv
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


rule all:
    default_target: True
    input:
        rules.compute_pretrain_mels.output.stats,
        "results/baselines/summary.csv",
        rules.encoder_tables.output.csv,
        expand(
            "results/pretrain/{encoder}/baseline/seed0/model.ckpt",
            encoder=config["run"]["encoders"],
        ),
        main_hear_targets(),
