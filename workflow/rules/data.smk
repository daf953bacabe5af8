# Stage 1: data. The embedded data set, the log-mel stores, the per-task sanity baselines.


rule build_embedded_dataset:
    output:
        manifest=f"{EMBEDDED_DIR}/manifest.json",
        clips=f"{EMBEDDED_DIR}/pool/clips.csv",
        tasks=directory(f"{EMBEDDED_DIR}/tasks"),
    input:
        code=SRC_FILES,
    params:
        seed=config["embedded"]["seed"],
        scale=config["embedded"]["scale"],
        tasks=config["embedded"]["tasks"],
        use_debian=config["embedded"]["use_debian"],
    log:
        "logs/build_embedded_dataset.log",
    benchmark:
        "benchmarks/build_embedded_dataset.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/audio.yaml"
    script:
        "../scripts/build_embedded_dataset.py"


rule compute_pretrain_mels:
    output:
        mels="results/mels/pretrain/train/mels.npy",
        index="results/mels/pretrain/train/index.csv",
        manifest="results/mels/pretrain/train/manifest.csv",
        stats="results/mels/pretrain/train/stats.json",
    input:
        clips=pretrain_clip_list,
        code=SRC_FILES,
    params:
        data=config["data"]["pretrain"],
        mels=config["mels"],
        preprocess=config["preprocess"],
        embedded_dir=EMBEDDED_DIR,
    log:
        "logs/compute_pretrain_mels.log",
    benchmark:
        "benchmarks/compute_pretrain_mels.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../../envs/audio.yaml"
    script:
        "../scripts/compute_pretrain_mels.py"


rule compute_task_mels:
    output:
        directory("results/mels/tasks/{task}"),
    input:
        task=task_input,
        code=SRC_FILES,
    params:
        task_dir=task_dir,
        mels=config["mels"],
        preprocess=config["preprocess"],
    log:
        "logs/compute_task_mels/{task}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/audio.yaml"
    script:
        "../scripts/compute_task_mels.py"


rule task_baseline:
    output:
        "results/baselines/{task}.json",
    input:
        task=task_input,
        code=SRC_FILES,
    params:
        task_dir=task_dir,
        mels=config["mels"],
    log:
        "logs/task_baseline/{task}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/audio.yaml"
    script:
        "../scripts/task_baseline.py"


rule baseline_table:
    output:
        csv="results/baselines/summary.csv",
        md="results/baselines/summary.md",
    input:
        expand("results/baselines/{task}.json", task=TASKS),
    log:
        "logs/baseline_table.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/baseline_table.py"
