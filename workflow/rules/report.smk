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
        ckpt=str(RUN_FILES.checkpoint),
    output:
        plan.LINEAR_EVAL,
    log:
        "logs/linear_eval/{encoder}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/linear_eval/{encoder}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=HEAR_VARIANT,
    conda:
        "../../envs/torch-gpu.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        monitor=plan.canonical(config["monitor"]),
        task_dir=MONITOR_TASK_DIR,
        code=CODE["linear_eval"],
    script:
        "../scripts/linear_eval.py"


rule finetune:
    # fine-tuning evaluation (beyond the thesis; EVAR's protocol): one run on one task
    input:
        ckpt=f"{PRETRAIN_RUN}/model.ckpt",
        task=task_input,
        stores=plan.TASK_STORES,
    output:
        result=plan.FINETUNE,
        predictions=plan.FINETUNE_PREDICTIONS,
    log:
        "logs/finetune/{encoder}/{variant}/seed{seed}/{task}.log",
    benchmark:
        "benchmarks/finetune/{encoder}/{variant}/seed{seed}/{task}.tsv"
    wildcard_constraints:
        variant=HEAR_VARIANT,
    conda:
        "../../envs/torch-gpu.yaml"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        settings=plan.finetune_params(config),
        task_dir=task_dir,
        code=CODE["finetune"],
    script:
        "../scripts/finetune.py"


rule ablation_summary:
    input:
        unpack(ablation_inputs),
    output:
        summary=plan.AblationFiles().summary,
        bootstrap=plan.AblationFiles().bootstrap,
    log:
        "logs/ablation_summary/{ablation}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        description=ablation_description,
        run=ablation_run,
        hear_l=ablation_tasks,
        seeds=SEEDS,
        code=CODE["ablation"],
    script:
        "../scripts/ablation_summary.py"


rule study_summary:
    input:
        unpack(study_inputs),
    output:
        plan.StudyFiles().summary,
    log:
        "logs/study_summary/{study}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        study=study_config,
        code=CODE["study"],
    script:
        "../scripts/study_summary.py"


rule study_figure:
    input:
        unpack(study_figure_inputs),
        summary=plan.StudyFiles().summary,
    output:
        png=plan.StudyFiles().png,
        pdf=plan.StudyFiles().pdf,
    log:
        "logs/study_figure/{study}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        study=study_config,
        epoch_metrics=study_figure_curves,
        hear_l=study_tasks,
        code=CODE["study_figure"],
    script:
        "../scripts/study_figure.py"


rule paper_tables:
    input:
        unpack(scope_evaluations),
        scores=scope_scores,
    output:
        directory(plan.TABLES_DIR),
    log:
        "logs/paper_tables/{scope}.log",
    wildcard_constraints:
        scope=one_of(plan.REPORT_DIRS),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        encoders=scope_encoder_list,
        epoch_metrics=scope_epoch_metrics,
        predictions=scope_predictions,
        random_init_probes=scope_random_probes,
        finetune=scope_finetune,
        references=lambda w: report_scope(w).references(),
        trained_predictions=lambda w: report_scope(w).trained_predictions(),
        code=CODE["paper_tables"],
    script:
        "../scripts/paper_tables.py"


rule training_curves_figure:
    input:
        tables=plan.TABLES_DIR,
    output:
        png=f"{plan.CURVES_FIGURE}.png",
        pdf=f"{plan.CURVES_FIGURE}.pdf",
    log:
        "logs/training_curves_figure/{scope}.log",
    wildcard_constraints:
        scope=one_of(plan.REPORT_DIRS),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        code=CODE["curves_figure"],
    script:
        "../scripts/training_curves_figure.py"


# One rule per scope (report/ and report/full/), defined once.
for scope, rule_name in (("main", "report"), ("full", "report_full")):

    rule:
        name:
            rule_name
        input:
            **plan.ReportScope(config, scope).inputs(),
        output:
            tex=f"{plan.REPORT_DIRS[scope]}/tables.tex",
            html=f"{plan.REPORT_DIRS[scope]}/report.html",
        log:
            f"logs/report/{scope}.log",
        localrule: True
        conda:
            "../../envs/report.yaml"
        params:
            **plan.ReportScope(config, scope).params(),
            config=plan.canonical(config),
            scope=scope,
            tasks=TASKS,
            code=CODE["report"],
        script:
            "../scripts/render_report.py"


rule paper:
    input:
        rules.report_full.output,
    localrule: True
