# Stage 3: evaluation with the official HEAR kit (unmodified, in its own pinned environment),
# random-initialisation baselines, per-run score tables.

HEAR_VARIANT = one_of([*VARIANTS, plan.RANDOM_INIT])


rule setup_hear_env:
    # the kit and the shipped references: what abt's runs are scored with
    input:
        constraints=HEAR_CONSTRAINTS,
    output:
        stamp=plan.KIT_ENV_STAMP,
    log:
        "logs/setup_hear_env.log",
    benchmark:
        "benchmarks/setup_hear_env.tsv"
    localrule: True
    conda:
        "../../envs/hear.yaml"
    params:
        env_dir=config["hear"]["env_dir"],
        references=[],
        code=CODE["hear_env"],
    script:
        "../scripts/setup_hear_env.py"


rule setup_users_hear_env:
    # the kit again, with the users' references' packages (pip): the runs' venv is never touched
    input:
        constraints=HEAR_CONSTRAINTS,
        wheels=plan.reference_wheels(config),
    output:
        stamp=plan.USERS_ENV_STAMP,
    log:
        "logs/setup_users_hear_env.log",
    benchmark:
        "benchmarks/setup_users_hear_env.tsv"
    localrule: True
    conda:
        "../../envs/hear.yaml"
    params:
        env_dir=plan.users_env_dir(config),
        references=[r.to_entry() for r in plan.users_pip_references(config)],
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


# ---- measured references (hear.references): other HEAR modules, evaluated like the runs

REF_FILES = plan.reference_files()


rule task_at_rate:
    # a task folder with the <rate>/ folder a reference reads, from the task's source
    input:
        task=lambda w: plan.task_input_path(config, w.task),
    output:
        directory(plan.RATE_TASK),
    log:
        "logs/task_at_rate/{rate}/{task}.log",
    benchmark:
        "benchmarks/task_at_rate/{rate}/{task}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        task_dir=lambda w: TASKS[w.task],
        source=task_at_rate_source,
        code=CODE["task_at_rate"],
    script:
        "../scripts/task_at_rate.py"


rule validate_reference:
    # import, hear-validator, one short clip through both embedding functions: before any task
    input:
        env=reference_env_stamp,
        model=reference_model,
    output:
        REF_FILES.check,
    log:
        "logs/validate_reference/{reference}.log",
    benchmark:
        "benchmarks/validate_reference/{reference}.tsv"
    conda:
        "../../envs/hear.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        env_dir=reference_env_dir,
        reference=reference_entry,
        code=CODE["reference_check"],
    script:
        "../scripts/validate_reference.py"


rule extract_reference_embeddings:
    input:
        tasks=reference_task_inputs,
        check=REF_FILES.check,
        env=reference_env_stamp,
        model=reference_model,
    output:
        directory(REF_FILES.embeddings),
    log:
        "logs/extract_reference_embeddings/{reference}.log",
    benchmark:
        "benchmarks/extract_reference_embeddings/{reference}.tsv"
    conda:
        "../../envs/hear.yaml"
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=240,
    params:
        env_dir=reference_env_dir,
        reference=reference_entry,
        tasks=list(TASKS),
        task_dirs=reference_task_dirs,
        audio=reference_task_audio,
        code=CODE["reference_embeddings"],
    script:
        "../scripts/extract_reference_embeddings.py"


rule evaluate_reference:
    # the kit's predictions on a reference's embeddings, exactly as on a run's
    input:
        embeddings=REF_FILES.embeddings,
        env=reference_env_stamp,
    output:
        scores=REF_FILES.scores,
        predictions=directory(REF_FILES.predictions),
    log:
        "logs/evaluate_reference/{reference}.log",
    benchmark:
        "benchmarks/evaluate_reference/{reference}.tsv"
    conda:
        "../../envs/hear.yaml"
    threads: 1
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=600,
    params:
        env_dir=reference_env_dir,
        grid=config["hear"]["grid"],
        grid_points=config["hear"]["grid_points"],
        tasks=list(TASKS),
        code=CODE["predictions"],
    script:
        "../scripts/evaluate_hear_run.py"
