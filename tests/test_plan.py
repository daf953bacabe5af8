"""Planning (abt.plan), tested without Snakemake: what the report of each scope reads, what an
ablation's and a study's summaries read. The workflow's rules adapt these functions to
wildcards; tests/test_workflow.py dry-runs the whole DAG."""

import copy

import pytest

from abt import plan
from abt.checks import check_references
from abt.config import REPO_ROOT, ConfigError, load_config, load_schema

CFG = load_config(REPO_ROOT / "config.yaml")


def cfg(**changes):
    c = copy.deepcopy(CFG)
    for key, value in changes.items():
        section, name = key.split("__")
        c[section][name] = value
    return c


def test_the_main_scope_reads_the_configured_encoders_studies_and_sweeps():
    rs = plan.ReportScope(CFG, "main")
    assert rs.encoders == CFG["run"]["encoders"] == ["audiontt"]
    assert rs.studies == CFG["report"]["studies"] == ["augmentations"]
    assert rs.sweeps == CFG["report"]["sweeps"] == []
    p = rs.params()
    assert p["studies"] == {"augmentations": "results/studies/augmentations/summary.csv"}
    assert p["figures"] == {
        "training_curves": "results/figures/main/training_curves.png",
        "augmentations": "results/figures/studies/augmentations.png",
    }
    rows = plan.study_rows(CFG, "augmentations")
    assert rows[-1] == plan.RANDOM_INIT  # a study row without a run of its own
    assert list(p["hparams"]) == ["audiontt/baseline", *rows[:-1]]
    assert (
        p["hparams"]["audiontt/baseline"] == "results/pretrain/audiontt/baseline/seed0/hparams.yaml"
    )


def test_the_full_scope_adds_the_full_encoders_and_every_study_and_sweep():
    rs = plan.ReportScope(CFG, "full")
    full = CFG["report"]["full_encoders"]
    assert rs.encoders == ["audiontt", *[e for e in full if e != "audiontt"]]
    assert rs.studies == sorted(CFG["studies"]) and rs.sweeps == sorted(CFG["sweeps"])
    assert set(rs.params()["sweeps"]) == set(CFG["sweeps"])


@pytest.mark.parametrize("scope", ["main", "full"])
def test_the_reports_inputs_are_the_files_its_params_name(scope):
    rs = plan.ReportScope(CFG, scope)
    p, i = rs.params(), rs.inputs()
    assert i["studies"] == list(p["studies"].values())
    assert set(i["hparams"]) == set(p["hparams"].values())
    for png in p["figures"].values():
        assert png in i["figures"] and png.replace(".png", ".pdf") in i["figures"]
    for name, summary in p["sweeps"].items():
        files = plan.SweepFiles(name)
        assert summary == files.summary
        assert {files.trials, files.importances, files.best, files.png, files.pdf} <= set(
            i["sweeps"]
        )
    assert i["tables"] == f"results/tables/{scope}"
    assert i["encoders"] == "results/tables/encoders.csv"


def test_the_paper_tables_read_each_encoders_trained_and_random_runs():
    rs = plan.ReportScope(CFG, "main")
    assert rs.scores() == [
        "results/hear/audiontt/baseline/seed0/scores.csv",
        "results/hear/audiontt/random_init/seed0/scores.csv",
        "results/hear/references/naive/scores.csv",  # the measured reference's rows
    ]
    assert rs.trained_predictions() == {
        "audiontt": "results/hear/audiontt/baseline/seed0/predictions"
    }  # what the reference is paired with
    assert rs.predictions() == {"audiontt": {
        "baseline": "results/hear/audiontt/baseline/seed0/predictions",
        "random_init": "results/hear/audiontt/random_init/seed0/predictions",
    }}  # fmt: skip
    assert rs.random_probes() == {"audiontt": "results/linear_eval/audiontt/random_init/seed0.json"}
    assert rs.epoch_metrics() == {
        "audiontt": "results/pretrain/audiontt/baseline/seed0/epoch_metrics.csv"
    }
    ev = rs.evaluations()
    assert ev["predictions"] == list(rs.predictions()["audiontt"].values())
    assert ev["finetune"] == [
        f"results/finetune/audiontt/{v}/seed0/{t}.json"
        for v in ("baseline", "random_init") for t in CFG["finetune"]["tasks"]
    ]  # fmt: skip


def test_without_random_init_or_monitoring_nothing_of_theirs_is_read():
    c = cfg(hear__random_init=False, monitor__task=None, finetune__tasks=[])
    rs = plan.ReportScope(c, "main")
    assert rs.scores() == [
        "results/hear/audiontt/baseline/seed0/scores.csv",
        "results/hear/references/naive/scores.csv",
    ]
    assert rs.predictions() == {} and rs.random_probes() == {} and rs.finetune() == {}
    assert rs.evaluations()["predictions"] == rs.evaluations()["finetune"] == []
    assert plan.hear_variants(c) == ["baseline"]


def test_every_seed_is_scored_the_first_one_is_compared():
    c = copy.deepcopy(CFG)
    c["run"]["seeds"] = [3, 4]
    rs = plan.ReportScope(c, "main")
    runs = [s.split("/")[-2] for s in rs.scores()]
    assert runs == ["seed3", "seed4", "seed3", "seed4", "naive"]  # a reference: one, seedless
    assert rs.run_dirs() == {"audiontt": "results/pretrain/audiontt/baseline/seed3"}
    a = plan.ablation_inputs(c, "aug_rrc")
    assert a["ckpts"] == [f"results/pretrain/audiontt/aug_rrc/seed{s}/model.ckpt" for s in (3, 4)]
    assert len(a["linear_evals"]) == len(a["scores"]) == len(a["predictions"]) == 2


def test_an_unknown_scope_is_named():
    with pytest.raises(
        ValueError, match="unknown report scope 'nope'; known: \\['full', 'main'\\]"
    ):
        plan.ReportScope(CFG, "nope")


def test_a_study_reads_each_rows_summary_and_bootstrap_and_draws_its_curves():
    rows = plan.study_rows(CFG, "augmentations")
    got = plan.study_inputs(CFG, "augmentations")
    assert got["summaries"] == [f"results/ablations/{a}/summary.csv" for a in rows]
    assert got["bootstraps"] == [plan.AblationFiles(a).bootstrap for a in rows]
    curves = {s for s, st in CFG["studies"].items() if st["plot"] == "curves"}
    for study in CFG["studies"]:
        em = plan.study_epoch_metrics(CFG, study)
        if study in curves:
            assert set(em) == set(plan.study_rows(CFG, study)) - {plan.RANDOM_INIT}
        else:
            assert em == {}


def test_the_random_init_row_describes_the_main_runs_architecture():
    assert plan.ablation_run_variant(plan.RANDOM_INIT) == plan.MAIN_VARIANT
    assert plan.ablation_run_variant("aug_rrc") == "aug_rrc"
    assert plan.ablation_encoder(CFG, plan.RANDOM_INIT) == CFG["pretrain"]["encoder"]


def test_each_variant_name_has_a_kind_and_the_kind_chooses_the_store():
    assert plan.variant_kind(CFG, "baseline") == plan.MAIN
    assert plan.variant_kind(CFG, plan.RANDOM_INIT) == plan.RANDOM
    assert plan.variant_kind(CFG, "aug_rrc") == plan.ABLATION
    with pytest.raises(Exception, match="unknown variant 'nope'; known: baseline, random_init, "):
        plan.variant_kind(CFG, "nope")
    c = copy.deepcopy(CFG)
    assert c["data"].get("ablation_pretrain") is None  # the default: one store for every run
    assert {plan.kind_corpus(c, k) for k in (plan.MAIN, plan.ABLATION, plan.SWEEP)} == {"train"}
    c["data"]["ablation_pretrain"] = {"source": "folder"}  # FSD50K dev in the thesis
    assert plan.kind_corpus(c, plan.MAIN) == plan.kind_corpus(c, plan.RANDOM) == "train"
    assert plan.kind_corpus(c, plan.ABLATION) == plan.kind_corpus(c, plan.SWEEP) == "ablation"
    assert plan.variant_corpus(c, "aug_rrc") == "ablation"


def test_a_reference_with_a_package_of_its_own_runs_in_the_users_venv(tmp_path):
    wheel = tmp_path / "mine-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    mine = {"name": "mine", "module": "my_pkg.hear", "pip": str(wheel), "sample_rate": 16000}
    c = cfg(hear__references=["naive", mine, {**mine, "name": "pinned", "pip": "my-pkg==1.0"}])
    naive, own, pinned = plan.references(c)
    assert plan.reference_env(c, naive) == (".venv-hear", plan.KIT_ENV_STAMP)
    for ref in (own, pinned):
        assert plan.reference_env(c, ref) == (".venv-hear-users", plan.USERS_ENV_STAMP)
    assert plan.users_pip_references(c) == [own, pinned]
    assert plan.reference_wheels(c) == [str(wheel.absolute())]  # the set-up's inputs


def test_the_input_duration_rows_are_scored_on_fig_4_9s_tasks_every_other_row_on_hear_l():
    """Fig. 4.9 scores ESC-50, Speech Commands 5h, GTZAN, FSD50K and CREMA-D (its caption), not
    HEAR-L's LibriCount: the crop rows are evaluated on and averaged over the study's tasks."""
    fig_4_9 = ["embedded_envsounds", "embedded_keywords", "embedded_genre", "embedded_emotion"]
    assert plan.study_tasks(CFG, "input_duration") == fig_4_9
    for row in plan.study_rows(CFG, "input_duration"):
        assert plan.row_tasks(CFG, row) == plan.run_tasks(CFG, row) == fig_4_9
    hear_l = CFG["report"]["hear_l"]
    assert "embedded_speakercount" in hear_l and "embedded_speakercount" not in fig_4_9
    assert plan.study_tasks(CFG, "augmentations") == hear_l
    for row in ("aug_rrc", "bs_32", plan.RANDOM_INIT):
        assert plan.row_tasks(CFG, row) == hear_l
    assert plan.run_tasks(CFG, plan.RANDOM_INIT) == list(plan.task_dirs(CFG))  # every task
    paper = load_config(REPO_ROOT / "config.yaml", overrides=[REPO_ROOT / "config/paper.yaml"])
    fig_4_9_paper = "esc50 speech_commands_5h gtzan_genre fsd50k crema_d".split()
    assert plan.row_tasks(paper, "crop_160") == fig_4_9_paper
    assert plan.row_tasks(paper, "aug_rrc") == "crema_d libricount fsd50k esc50 gtzan_genre".split()


def test_a_row_two_studies_score_on_different_tasks_is_an_error_naming_both():
    c = copy.deepcopy(CFG)
    c["studies"]["lambda"]["ablations"].append("crop_32")
    both = r"\(studies\.lambda: .*; studies\.input_duration: "
    with pytest.raises(ConfigError, match=r"ablation row 'crop_32' is compared by studies that "
                       r"score different tasks " + both):  # fmt: skip
        plan.row_tasks(c, "crop_32")
    with pytest.raises(ConfigError, match="ablation row 'crop_32'"):
        check_references(c, load_schema(REPO_ROOT / "workflow/schemas/config.schema.yaml"))
    # a task the configuration does not evaluate: named when the study's jobs are planned (or
    # at parse time for a study of the report), not for every study of a smaller configuration
    schema = load_schema(REPO_ROOT / "workflow/schemas/config.schema.yaml")
    bad = copy.deepcopy(CFG)
    bad["studies"]["input_duration"]["tasks"][1] = "embedded_keywrds"
    check_references(bad, schema)  # input_duration is not in report.studies
    typo = (r"'studies\.input_duration\.tasks\.1': 'embedded_keywrds' is not one of the "
            r"evaluated tasks .* \(did you mean embedded_keywords\b")  # fmt: skip
    for planned in (lambda: plan.run_tasks(bad, "crop_32"),
                    lambda: plan.study_tasks(bad, "input_duration")):  # fmt: skip
        with pytest.raises(ConfigError, match=typo):
            planned()
    bad["report"]["studies"] = ["augmentations", "input_duration"]
    with pytest.raises(ConfigError, match=typo):
        check_references(bad, schema)
    fewer = copy.deepcopy(CFG)  # one task evaluated, as the re-run and SLURM tests configure
    fewer["embedded"]["tasks"] = ["embedded_envsounds"]
    fewer["report"].update(studies=[], hear_l=["embedded_envsounds"])
    check_references(fewer, schema)  # input_duration's tasks are not checked: it is not run
    with pytest.raises(ConfigError, match=r"studies\.input_duration\.tasks\.1': "
                       r"'embedded_keywords' is not one of the evaluated tasks"):  # fmt: skip
        plan.run_tasks(fewer, "crop_32")
    c["studies"]["lambda"]["tasks"] = list(c["studies"]["input_duration"]["tasks"])
    assert plan.row_tasks(c, "crop_32") == c["studies"]["input_duration"]["tasks"]
    # what a row is scored on does not depend on which rows a report shows (a SCALE knob)
    c = copy.deepcopy(CFG)
    c["report"]["study_subset"] = {"input_duration": ["crop_32"]}
    assert plan.row_tasks(c, "crop_160") == plan.row_tasks(CFG, "crop_160")
