# Stage 3: evaluation with the official HEAR kit (unmodified, in its own pinned environment),
# random-initialisation baselines, per-run score tables.

HEAR_VARIANT = "|".join([*(v.replace(".", r"\.") for v in VARIANTS), "random_init"])


rule setup_hear_env:
    input:
        constraints=HEAR_CONSTRAINTS,
    output:
        stamp="results/envs/hear-eval.json",
    log:
        "logs/setup_hear_env.log",
    localrule: True
    conda:
        "../../envs/hear.yaml"
    params:
        env_dir=config["hear"]["env_dir"],
    script:
        "../scripts/setup_hear_env.py"


rule random_init_encoder:
    input:
        stats=TRAIN_STATS,
        code=SRC_FILES,
    output:
        ckpt="results/pretrain/{encoder}/random_init/seed{seed}/model.ckpt",
    log:
        "logs/random_init_encoder/{encoder}/seed{seed}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        run=random_init_run,
    script:
        "../scripts/random_init_encoder.py"


rule validate_hear_module:
    input:
        ckpt="results/pretrain/{encoder}/{variant}/seed{seed}/model.ckpt",
        env=rules.setup_hear_env.output.stamp,
        code=SRC_FILES,
    output:
        "results/hear/{encoder}/{variant}/seed{seed}/validator.log",
    log:
        "logs/validate_hear_module/{encoder}/{variant}/seed{seed}.log",
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
    script:
        "../scripts/validate_hear_module.py"


rule extract_hear_embeddings:
    input:
        ckpt="results/pretrain/{encoder}/{variant}/seed{seed}/model.ckpt",
        task=task_input,
        env=rules.setup_hear_env.output.stamp,
        code=SRC_FILES,
    output:
        directory("results/hear/{encoder}/{variant}/seed{seed}/{task}/embeddings"),
    log:
        "logs/extract_hear_embeddings/{encoder}/{variant}/seed{seed}/{task}.log",
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
        task_dir=task_dir,
    script:
        "../scripts/extract_hear_embeddings.py"


rule evaluate_hear_task:
    input:
        embeddings="results/hear/{encoder}/{variant}/seed{seed}/{task}/embeddings",
        env=rules.setup_hear_env.output.stamp,
        code=SRC_FILES,
    output:
        scores="results/hear/{encoder}/{variant}/seed{seed}/{task}/scores.csv",
        predictions=directory(
            "results/hear/{encoder}/{variant}/seed{seed}/{task}/predictions"
        ),
    log:
        "logs/evaluate_hear_task/{encoder}/{variant}/seed{seed}/{task}.log",
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
    script:
        "../scripts/evaluate_hear_task.py"


rule hear_run_scores:
    input:
        expand(
            "results/hear/{{encoder}}/{{variant}}/seed{{seed}}/{task}/scores.csv",
            task=TASKS,
        ),
    output:
        "results/hear/{encoder}/{variant}/seed{seed}/scores.csv",
    log:
        "logs/hear_run_scores/{encoder}/{variant}/seed{seed}.log",
    wildcard_constraints:
        variant=HEAR_VARIANT,
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/concat_csvs.py"
