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
        code=SRC_FILES,
    output:
        "results/sweeps/{sweep}/workers/{slot}.json",
    log:
        "logs/sweep_worker/{sweep}/{slot}.log",
    wildcard_constraints:
        slot=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=pretrain_mem_mb,
        runtime=pretrain_runtime,
    params:
        config=config,
        sweep_dir="results/sweeps/{sweep}",
        monitor_task_dir=MONITOR_TASK_DIR,
    script:
        "../scripts/sweep_worker.py"


rule sweep_summary:
    input:
        lambda wildcards: expand(
            "results/sweeps/{{sweep}}/workers/{slot}.json",
            slot=range(config["sweep_defaults"]["workers"]),
        ),
    output:
        trials="results/sweeps/{sweep}/summary/trials.csv",
        importances="results/sweeps/{sweep}/summary/importances.csv",
        best="results/sweeps/{sweep}/summary/best_params.yaml",
        png="results/sweeps/{sweep}/summary/figure.png",
        pdf="results/sweeps/{sweep}/summary/figure.pdf",
    log:
        "logs/sweep_summary/{sweep}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        config=config,
        sweep_dir="results/sweeps/{sweep}",
    script:
        "../scripts/sweep_summary.py"
