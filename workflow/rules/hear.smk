# Stage 3: evaluation with the official HEAR kit (unmodified, in its own pinned environment),
# random-initialisation baselines, per-run score tables.

HEAR_VARIANT = one_of([*VARIANTS, plan.RANDOM_INIT])


rule setup_hear_env:
    input:
        constraints=HEAR_CONSTRAINTS,
    output:
        stamp="results/envs/hear-eval.json",
    log:
        "logs/setup_hear_env.log",
    benchmark:
        "benchmarks/setup_hear_env.tsv"
    localrule: True
    conda:
        "../../envs/hear.yaml"
    params:
        env_dir=config["hear"]["env_dir"],
        code=CODE["hear_env"],
    script:
        "../scripts/setup_hear_env.py"


rule random_init_encoder:
    input:
        stats=TRAIN_STATS,
    output:
        ckpt=str(plan.run_files(variant=plan.RANDOM_INIT).checkpoint),
    log:
        "logs/random_init_encoder/{encoder}/seed{seed}.log",
    conda:
        "../../envs/torch-cpu.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        run=random_init_run,
        code=CODE["random_init"],
    script:
        "../scripts/random_init_encoder.py"


rule validate_hear_module:
    input:
        ckpt=str(RUN_FILES.checkpoint),
        env=rules.setup_hear_env.output.stamp,
    output:
        HEAR_FILES.validator_log,
    log:
        "logs/validate_hear_module/{encoder}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/validate_hear_module/{encoder}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=HEAR_VARIANT,
    conda:
        "../../envs/hear.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        env_dir=config["hear"]["env_dir"],
        code=CODE["validate"],
    script:
        "../scripts/validate_hear_module.py"


rule extract_hear_embeddings:
    # every task of a run in one kit process (its start-up dominates on small tasks)
    input:
        unpack(run_task_inputs),
        ckpt=str(RUN_FILES.checkpoint),
        env=rules.setup_hear_env.output.stamp,
    output:
        directory(HEAR_FILES.embeddings),
    log:
        "logs/extract_hear_embeddings/{encoder}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/extract_hear_embeddings/{encoder}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=HEAR_VARIANT,
    conda:
        "../../envs/hear.yaml"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=240,
    params:
        env_dir=config["hear"]["env_dir"],
        tasks=run_task_names,
        task_dirs=run_task_dirs,
        audio=run_task_audio,
        code=CODE["embeddings"],
    script:
        "../scripts/extract_hear_embeddings.py"


rule evaluate_hear_run:
    # the kit's predictions for every task of a run in one process -> the run's scores.csv
    input:
        embeddings=HEAR_FILES.embeddings,
        env=rules.setup_hear_env.output.stamp,
    output:
        scores=HEAR_FILES.scores,
        predictions=directory(HEAR_FILES.predictions),
    log:
        "logs/evaluate_hear_run/{encoder}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate_hear_run/{encoder}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=HEAR_VARIANT,
    conda:
        "../../envs/hear.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=600,
    params:
        env_dir=config["hear"]["env_dir"],
        grid=config["hear"]["grid"],
        grid_points=config["hear"]["grid_points"],
        tasks=run_task_names,
        code=CODE["predictions"],
    script:
        "../scripts/evaluate_hear_run.py"
