# Stage 4: experiments and the paper. Linear evaluation, ablation and study summaries, the
# thesis's tables and figures, and the rendered report (LaTeX + HTML).
#
#   snakemake --cores 2 results/ablations/<ablation>/summary.csv   # one ablation
#   snakemake --cores 2 results/studies/<study>/summary.csv        # one table/figure's ablations
#   snakemake --cores 2 report/tables.tex                          # the main report
#   snakemake --cores 2 paper                                      # everything (report/full/)


rule linear_eval:
    input:
        unpack(monitor_inputs),
        ckpt="results/pretrain/{encoder}/{variant}/seed{seed}/model.ckpt",
        code=SRC_FILES,
    output:
        "results/linear_eval/{encoder}/{variant}/seed{seed}.json",
    log:
        "logs/linear_eval/{encoder}/{variant}/seed{seed}.log",
    wildcard_constraints:
        variant=HEAR_VARIANT,
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        monitor=config["monitor"],
        task_dir=MONITOR_TASK_DIR,
    script:
        "../scripts/linear_eval.py"


rule ablation_summary:
    input:
        unpack(ablation_inputs),
        code=SRC_FILES,
    output:
        "results/ablations/{ablation}/summary.csv",
    log:
        "logs/ablation_summary/{ablation}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        name=lambda wildcards: wildcards.ablation,
        description=lambda wildcards: steps.ablation_description(
            config, wildcards.ablation
        ),
        run=ablation_run,
        hear_l=config["report"]["hear_l"],
        trained=lambda wildcards: wildcards.ablation != "random_init",
    script:
        "../scripts/ablation_summary.py"


rule study_summary:
    input:
        lambda wildcards: [
            f"results/ablations/{a}/summary.csv"
            for a in study_ablations(wildcards.study)
        ],
    output:
        "results/studies/{study}/summary.csv",
    log:
        "logs/study_summary/{study}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        study=lambda wildcards: config["studies"][wildcards.study],
    script:
        "../scripts/study_summary.py"


rule study_figure:
    input:
        summary="results/studies/{study}/summary.csv",
    output:
        png="results/figures/studies/{study}.png",
        pdf="results/figures/studies/{study}.pdf",
    log:
        "logs/study_figure/{study}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        study=lambda wildcards: config["studies"][wildcards.study],
        run_dirs=study_run_dirs,
        hear_l=config["report"]["hear_l"],
    script:
        "../scripts/study_figure.py"


rule paper_tables:
    input:
        scores=scope_scores,
        ckpts=lambda wildcards: expand(
            "results/pretrain/{encoder}/baseline/seed0/model.ckpt",
            encoder=scope_encoders(wildcards.scope),
        ),
        code=SRC_FILES,
    output:
        directory("results/tables/{scope}"),
    log:
        "logs/paper_tables/{scope}.log",
    wildcard_constraints:
        scope="main|full",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        encoders=lambda wildcards: scope_encoders(wildcards.scope),
        run_dirs=lambda wildcards: {
            e: f"results/pretrain/{e}/baseline/seed0"
            for e in scope_encoders(wildcards.scope)
        },
    script:
        "../scripts/paper_tables.py"


rule training_curves_figure:
    input:
        tables="results/tables/{scope}",
    output:
        png="results/figures/{scope}/training_curves.png",
        pdf="results/figures/{scope}/training_curves.pdf",
    log:
        "logs/training_curves_figure/{scope}.log",
    wildcard_constraints:
        scope="main|full",
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/training_curves_figure.py"


rule report:
    input:
        **report_inputs("main"),
    output:
        tex="report/tables.tex",
        html="report/report.html",
    log:
        "logs/report/main.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        **report_params("main"),
        config=config,
        scope="main",
    script:
        "../scripts/render_report.py"


rule report_full:
    input:
        **report_inputs("full"),
    output:
        tex="report/full/tables.tex",
        html="report/full/report.html",
    log:
        "logs/report/full.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        **report_params("full"),
        config=config,
        scope="full",
    script:
        "../scripts/render_report.py"


rule paper:
    input:
        rules.report_full.output,
    localrule: True
