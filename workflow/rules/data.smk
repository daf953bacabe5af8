# Stage 1: data. Evaluation tasks prepared from what is downloaded, the embedded data set, the
# log-mel stores, the per-task sanity baselines.
from abt.data import prepare_hear  # noqa: E402

# data.tasks entries resolved to their sources (a HEAR folder or archive, an FSD50K download)
TASK_SOURCES = prepare_hear.task_sources(config["data"])


rule prepare_task:
    input:
        # the archive, the task folder's metadata, or FSD50K's dev.csv
        source=lambda wildcards: TASK_SOURCES[wildcards.task].input_file,
        code=SRC_FILES,
    output:
        metadata=f"{prepare_hear.PREPARED_TASKS_DIR}/{{task}}/task_metadata.json",
        report=f"{prepare_hear.PREPARED_TASKS_DIR}/{{task}}/{prepare_hear.REPORT}",
    log:
        "logs/prepare_task/{task}.log",
    benchmark:
        "benchmarks/prepare_task/{task}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: config["data"]["prepare"]["workers"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        source=lambda wildcards: str(TASK_SOURCES[wildcards.task].path),
        options=config["data"]["prepare"],
    script:
        "../scripts/prepare_task.py"


rule build_embedded_dataset:
    input:
        code=SRC_FILES,
    output:
        manifest=f"{EMBEDDED_DIR}/manifest.json",
        clips=f"{EMBEDDED_DIR}/pool/clips.csv",
        tasks=directory(f"{EMBEDDED_DIR}/tasks"),
    log:
        "logs/build_embedded_dataset.log",
    benchmark:
        "benchmarks/build_embedded_dataset.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        seed=config["embedded"]["seed"],
        scale=config["embedded"]["scale"],
        tasks=config["embedded"]["tasks"],
        use_debian=config["embedded"]["use_debian"],
    script:
        "../scripts/build_embedded_dataset.py"


rule compute_pretrain_mels_shard:
    input:
        clips=pretrain_clip_list,
        code=SRC_FILES,
    output:
        directory("results/mels/pretrain/{corpus}/shards/{shard}"),
    log:
        "logs/compute_pretrain_mels/{corpus}/shard{shard}.log",
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        data=lambda wildcards: steps.corpus_data(config, wildcards.corpus),
        mels=config["mels"],
        preprocess=config["preprocess"],
        embedded_dir=EMBEDDED_DIR,
    script:
        "../scripts/compute_pretrain_mels.py"


rule compute_pretrain_mels:
    input:
        unpack(pretrain_shards),
        clips=pretrain_clip_list,
        code=SRC_FILES,
    output:
        mels="results/mels/pretrain/{corpus}/mels.npy",
        index="results/mels/pretrain/{corpus}/index.csv",
        manifest="results/mels/pretrain/{corpus}/manifest.csv",
        stats="results/mels/pretrain/{corpus}/stats.json",
    log:
        "logs/compute_pretrain_mels/{corpus}.log",
    benchmark:
        "benchmarks/compute_pretrain_mels/{corpus}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        data=lambda wildcards: steps.corpus_data(config, wildcards.corpus),
        mels=config["mels"],
        preprocess=config["preprocess"],
        embedded_dir=EMBEDDED_DIR,
    script:
        "../scripts/compute_pretrain_mels.py"


rule compute_task_mels:
    input:
        task=task_input,
        code=SRC_FILES,
    output:
        directory("results/mels/tasks/{task}"),
    log:
        "logs/compute_task_mels/{task}.log",
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        task_dir=task_dir,
        mels=config["mels"],
        preprocess=config["preprocess"],
    script:
        "../scripts/compute_task_mels.py"


rule task_baseline:
    input:
        task=task_input,
        code=SRC_FILES,
    output:
        "results/baselines/{task}.json",
    log:
        "logs/task_baseline/{task}.log",
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task_dir=task_dir,
        mels=config["mels"],
    script:
        "../scripts/task_baseline.py"


rule baseline_table:
    input:
        expand("results/baselines/{task}.json", task=TASKS),
    output:
        csv="results/baselines/summary.csv",
        md="results/baselines/summary.md",
    log:
        "logs/baseline_table.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/baseline_table.py"


rule data:
    """Everything the runs read, prepared: the evaluation tasks, the pre-training stores (and
    the ablations' and sweeps' store), the monitoring task's stores."""
    input:
        tasks=[steps.task_input_path(config, EMBEDDED_DIR, t) for t in TASKS],
        stores=sorted(
            {
                f"results/mels/pretrain/{steps.variant_corpus(config, v)}/stats.json"
                for v in ("baseline", "sweep")
            }
        ),
        monitor=list(steps.monitor_inputs(config, EMBEDDED_DIR).values()),
    localrule: True
