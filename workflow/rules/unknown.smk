# Targets that name nothing the configuration defines: a misspelt ablation, study, sweep,
# variant, encoder, seed, task, report file or rule fails when the DAG is built, naming the
# closest valid names of its kind and listing them all (instead of "No rule to produce").
# Each catch-all's wildcard constraints exclude every valid name, so it never matches a path a
# real rule produces (tests/test_workflow.py checks that the full DAG builds without it).

SEED_DIRS = [f"seed{s}" for s in SEEDS]
REPORT_TARGETS = [
    f"{d}/{f}" for d in plan.REPORT_DIRS.values() for f in ("tables.tex", "report.html")
]
TARGET_NAME = r"[A-Za-z0-9_-]+"  # a bare target, e.g. `snakemake papr`: no folder, no suffix

# label: (kind, the valid names, how a name is shown, outputs, wildcard constraints)
CATCH_ALL = {
    "ablation": ("ablation", ABLATIONS, "{}", [plan.AblationFiles("{name}").summary],
                 {"name": not_one_of(ABLATIONS)}),
    "study": ("study", STUDIES, "{}",
              [plan.StudyFiles("{name}").summary, plan.StudyFiles("{name}").png],
              {"name": not_one_of(STUDIES, then=r"\.png$|/")}),
    "sweep": ("sweep", SWEEPS, "{}", [plan.SweepFiles("{name}").best],
              {"name": not_one_of(SWEEPS)}),
    "encoder": ("encoder", ENCODERS, "{}", ["results/{stage}/{name}/{rest}"],
                {"stage": one_of(["pretrain", "hear", "linear_eval", "finetune"]),
                 "name": not_one_of([*ENCODERS, plan.REFERENCES_FOLDER]), "rest": ".+"}),
    "reference": ("reference", REFERENCE_NAMES, "{}", [f"{plan.REFERENCE_RUN.format(reference='{name}')}/{{rest}}"],
                  {"name": not_one_of(REFERENCE_NAMES), "rest": ".+"}),
    "variant": ("variant", VARIANTS, "{}", ["results/{stage}/{encoder}/{name}/seed{seed}/{rest}"],
                {"stage": one_of(["pretrain", "hear", "finetune"]),
                 "name": not_one_of([*VARIANTS, plan.RANDOM_INIT]), "rest": ".+"}),
    "seed": ("seed", SEED_DIRS, "{}", ["results/{stage}/{encoder}/{variant}/{name}/{rest}"],
             {"stage": one_of(["pretrain", "hear", "finetune"]), "variant": "[^/]+",
              "name": r"(?!seed\d+/)[^/]+", "rest": ".+"}),
    "linear_eval_seed": ("seed", SEED_DIRS, "{}", ["results/linear_eval/{encoder}/{variant}/{name}.json"],
                         {"variant": "[^/]+", "name": r"(?!seed\d+\.json$)[^/]+"}),
    "task_stores": ("task", list(TASKS), "{}", [plan.TASK_STORES.format(task="{name}")],
                    {"name": not_one_of(TASKS, then="$")}),
    "finetune_task": ("task", list(TASKS), "{}",
                      ["results/finetune/{encoder}/{variant}/{seed}/{name}.json"],
                      {"encoder": "[^/]+", "variant": "[^/]+", "seed": "[^/]+",
                       "name": not_one_of(TASKS, then=r"\.json$")}),
    "task_baseline": ("task", list(TASKS), "{}", [plan.BASELINE.format(task="{name}")],
                      {"name": not_one_of([*TASKS, "summary"], then=r"\.json$")}),
    "prepared_task": ("task", list(TASKS), "{}", [f"{task_sources.PREPARED_TASKS_DIR}/{{name}}/{{rest}}"],
                      {"name": not_one_of(TASKS), "rest": ".+"}),
    "report": ("report target", [t[len("report/"):] for t in REPORT_TARGETS], "report/{}",
               ["report/{name}"], {"name": rf"(?!(?:{one_of([t[len('report/'):] for t in REPORT_TARGETS])})$).+"}),
    "target": ("target", target_rules, "{}", ["{name}"], {"name": TARGET_NAME}),
}  # fmt: skip

for label, (kind, known, shown, outputs, constraints) in CATCH_ALL.items():

    rule:
        name:
            f"unknown_{label}"
        input:
            unknown(kind, known, shown),
        output:
            *outputs,
        log:
            unknown_log(label, outputs),
        wildcard_constraints:
            **constraints,
        localrule: True
        conda:
            "../../envs/report.yaml"
        shell:
            "false"
