# Stage 2: the method. Encoder tables (Tables 3.1/3.2) and pre-training runs.


rule encoder_tables:
    output:
        csv=f"{plan.ENCODER_TABLES}.csv",
        md=f"{plan.ENCODER_TABLES}.md",
    log:
        "logs/encoder_tables.log",
    benchmark:
        "benchmarks/encoder_tables.tsv"
    conda:
        "../../envs/torch-cpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        batch_size=16,
        repeats=3,
        code=CODE["encoder_tables"],
    script:
        "../scripts/encoder_tables.py"


rule pretrain_encoder:
    input:
        unpack(monitor_inputs),
        unpack(sweep_params_input),
        stats=pretrain_stats,
    output:
        **RUN_FILES.outputs(),  # model.ckpt, hparams.yaml, the metrics, summary.json
    log:
        "logs/pretrain_encoder/{encoder}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/pretrain_encoder/{encoder}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/torch-gpu.yaml"
    threads: 2 * max(GPUS_PER_RUN, 1)
    resources:
        gpu=GPUS_PER_RUN,
        mem_mb=pretrain_mem_mb,
        runtime=pretrain_runtime,
    params:
        run=run_identity,
        monitor=plan.canonical(config["monitor"]),
        monitor_task_dir=MONITOR_TASK_DIR,
        nproc=max(GPUS_PER_RUN, 1),
        code=CODE["pretrain"],
    script:
        "../scripts/pretrain_encoder.py"
