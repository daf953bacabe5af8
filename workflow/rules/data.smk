# Stage 1: data. Evaluation tasks prepared from what is downloaded, the embedded data set, the
# log-mel stores, the per-task sanity baselines.


rule prepare_task:
    input:
        source=task_source_file,
    output:
        metadata=f"{task_sources.PREPARED_TASKS_DIR}/{{task}}/task_metadata.json",
        report=f"{task_sources.PREPARED_TASKS_DIR}/{{task}}/{task_sources.REPORT}",
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
        source=task_source_path,
        audio=task_source_audio,
        options=plan.canonical(config["data"]["prepare"]),
        code=CODE["prepare_task"],
    script:
        "../scripts/prepare_task.py"


rule build_embedded_dataset:
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
        task_scale=config["embedded"]["task_scale"],
        tasks=config["embedded"]["tasks"],
        use_debian=config["embedded"]["use_debian"],
        code=CODE["embedded"],
    script:
        "../scripts/build_embedded_dataset.py"


rule compute_pretrain_mels_shard:
    input:
        clips=pretrain_clip_list,
    output:
        directory(f"{PRETRAIN_STORE}/shards/{{shard}}"),
    log:
        "logs/compute_pretrain_mels/{corpus}/shard{shard}.log",
    benchmark:
        "benchmarks/compute_pretrain_mels/{corpus}/shard{shard}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        data=corpus_data,
        audio=corpus_audio,
        mels=plan.canonical(config["mels"]),
        preprocess=plan.preprocess_params(config),
        embedded_dir=EMBEDDED_DIR,
        code=CODE["pretrain_mels"],
    script:
        "../scripts/compute_pretrain_mels.py"


rule compute_pretrain_mels:
    input:
        unpack(pretrain_shards),
        clips=pretrain_clip_list,
    output:
        mels=f"{PRETRAIN_STORE}/mels.npy",
        index=f"{PRETRAIN_STORE}/index.csv",
        manifest=f"{PRETRAIN_STORE}/manifest.csv",
        stats=f"{PRETRAIN_STORE}/stats.json",
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
        data=corpus_data,
        audio=corpus_audio,
        mels=plan.canonical(config["mels"]),
        preprocess=plan.preprocess_params(config),
        pad=config["pretrain"]["pad"],
        embedded_dir=EMBEDDED_DIR,
        code=CODE["pretrain_mels"],
    script:
        "../scripts/compute_pretrain_mels.py"


rule compute_pretrain_waves:
    input:
        clips=pretrain_clip_list,
    output:
        waves=f"{PRETRAIN_WAVES}/waves.npy",
        index=f"{PRETRAIN_WAVES}/index.csv",
        manifest=f"{PRETRAIN_WAVES}/manifest.csv",
        stats=f"{PRETRAIN_WAVES}/stats.json",
    log:
        "logs/compute_pretrain_waves/{corpus}.log",
    benchmark:
        "benchmarks/compute_pretrain_waves/{corpus}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        data=corpus_data,
        audio=corpus_audio,
        mels=plan.canonical(config["mels"]),
        preprocess=plan.preprocess_params(config),
        waves=plan.canonical(config.get("waves", {})),
        embedded_dir=EMBEDDED_DIR,
        code=CODE["pretrain_waves"],
    script:
        "../scripts/compute_pretrain_waves.py"


rule compute_task_mels:
    input:
        task=task_input,
    output:
        directory(plan.TASK_STORES),
    log:
        "logs/compute_task_mels/{task}.log",
    benchmark:
        "benchmarks/compute_task_mels/{task}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        task_dir=task_dir,
        audio=task_audio,
        mels=plan.canonical(config["mels"]),
        preprocess=plan.preprocess_params(config),
        code=CODE["task_mels"],
    script:
        "../scripts/compute_task_mels.py"


rule task_baseline:
    input:
        task=task_input,
    output:
        plan.BASELINE,
    log:
        "logs/task_baseline/{task}.log",
    benchmark:
        "benchmarks/task_baseline/{task}.tsv"
    conda:
        "../../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task_dir=task_dir,
        audio=task_audio,
        mels=plan.canonical(config["mels"]),
        code=CODE["task_baseline"],
    script:
        "../scripts/task_baseline.py"


rule baseline_table:
    input:
        expand(plan.BASELINE, task=TASKS),
    output:
        csv=f"{plan.BASELINE_TABLE}.csv",
        md=f"{plan.BASELINE_TABLE}.md",
    log:
        "logs/baseline_table.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        code=CODE["baseline_table"],
    script:
        "../scripts/baseline_table.py"


rule data:
    """Everything the runs read, prepared: the evaluation tasks, the pre-training stores (and
    the ablations' and sweeps' store, and the waveform store of waveform-augmented study rows),
    the monitoring and fine-tuning tasks' stores, the tasks at the references' rates."""
    input:
        tasks=[plan.task_input_path(config, t) for t in TASKS],
        stores=sorted(
            {
                f"{PRETRAIN_STORE.format(corpus=plan.kind_corpus(config, k))}/stats.json"
                for k in (plan.MAIN, plan.SWEEP)
            }
        ),
        waves=plan.study_wave_stores(config),  # of the studies' waveform-augmented rows
        rates=plan.reference_rate_views(config),  # the tasks at the references' rates
        monitor=list(plan.monitor_inputs(config).values()),
        finetune=[plan.TASK_STORES.format(task=t) for t in config["finetune"]["tasks"]],
    localrule: True
