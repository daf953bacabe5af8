# Hyper-parameter sweeps (Optuna: TPE + Hyperband), thesis §4.1.1 and Figs. 4.1-4.3.
#
#   snakemake --cores 2 results/sweeps/audiontt_lars/summary/best_params.yaml
#
# sweep_defaults.workers worker jobs share one study (results/sweeps/<sweep>/study.journal); on a
# cluster they run as parallel jobs. A re-run after an interruption continues the study.


rule sweep_worker:
    input:
        unpack(monitor_inputs),
        stats=sweep_stats,
    output:
        SWEEP_FILES.worker(),
    log:
        "logs/sweep_worker/{sweep}/{slot}.log",
    benchmark:
        "benchmarks/sweep_worker/{sweep}/{slot}.tsv"
    wildcard_constraints:
        slot=r"\d+",
    conda:
        "../../envs/torch-gpu.yaml"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=pretrain_mem_mb,
        runtime=pretrain_runtime,
    params:
        spec=sweep_spec,
        monitor=plan.canonical(config["monitor"]),
        seed=config["run"]["seed"],
        monitor_task_dir=MONITOR_TASK_DIR,
        code=CODE["sweep_worker"],
    script:
        "../scripts/sweep_worker.py"


rule sweep_summary:
    input:
        expand(
            SWEEP_FILES.worker(),
            allow_missing=True,
            slot=range(config["sweep_defaults"]["workers"]),
        ),
    output:
        trials=SWEEP_FILES.trials,
        importances=SWEEP_FILES.importances,
        best=SWEEP_FILES.best,
        png=SWEEP_FILES.png,
        pdf=SWEEP_FILES.pdf,
    log:
        "logs/sweep_summary/{sweep}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        sweep=sweep_config,
        settings=sweep_settings,
        code=CODE["sweep_summary"],
    script:
        "../scripts/sweep_summary.py"
