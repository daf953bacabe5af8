# Stage 2: the method. Encoder tables (Tables 3.1/3.2) and pre-training runs.


rule encoder_tables:
    output:
        csv="results/tables/encoders.csv",
        md="results/tables/encoders.md",
    input:
        code=SRC_FILES,
    params:
        batch_size=16,
        repeats=3,
    log:
        "logs/encoder_tables.log",
    benchmark:
        "benchmarks/encoder_tables.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/encoder_tables.py"


rule pretrain_encoder:
    output:
        ckpt="results/pretrain/{encoder}/{variant}/seed{seed}/model.ckpt",
        metrics="results/pretrain/{encoder}/{variant}/seed{seed}/train_metrics.csv",
        hparams="results/pretrain/{encoder}/{variant}/seed{seed}/hparams.yaml",
    input:
        unpack(monitor_inputs),
        stats=rules.compute_pretrain_mels.output.stats,
        code=SRC_FILES,
    params:
        run=run_config,
        monitor=config["monitor"],
        monitor_task_dir=MONITOR_TASK_DIR,
    log:
        "logs/pretrain_encoder/{encoder}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/pretrain_encoder/{encoder}/{variant}/seed{seed}.tsv"
    threads: 2
    retries: 1
    resources:
        gpu=1,
        mem_mb=pretrain_mem_mb,
        runtime=pretrain_runtime,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/pretrain_encoder.py"
