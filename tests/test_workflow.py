"""The Snakemake workflow: lint clean, the DAG builds, typos and missing data fail early."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smk(*args, cwd=ROOT, check=False, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [*SNAKEMAKE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=check,
    )


def job_counts(out: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run."""
    counts = {}
    in_table = False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\S+)\s+(\d+)\s*$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


def test_lint_is_clean():
    r = smk("--lint")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_snakefiles_are_formatted():
    """snakefmt (pinned in the test extra, line length from pyproject.toml) leaves them as they
    are: the Snakefile and every rule file read like the Python beside them."""
    import shutil

    here = str(Path(sys.executable).parent)
    exe = shutil.which("snakefmt", path=here) or shutil.which("snakefmt")
    assert exe, "snakefmt is not installed: pip install -e '.[test]'"
    r = subprocess.run([exe, "--check", "Snakefile", "workflow/"], cwd=ROOT, capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_dry_run_builds_the_data_dag():
    r = smk("--dry-run", "--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stdout + r.stderr
    # the catch-all rules for misspelt names never match a known one (they did: a "$" in the
    # wildcard constraint tested the end of the path; 27 "unknown variant 'baseline'" errors)
    assert "InputFunctionException" not in r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    from abt.data.embedded import TASKS

    n = len(TASKS)
    assert counts["build_embedded_dataset"] == 1
    assert counts["compute_pretrain_mels"] == 1
    assert counts["compute_task_mels"] == 1  # the stores of the linear-probe monitoring task
    assert counts["task_baseline"] == n and counts["baseline_table"] == 1
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    n_aug = len(cfg["report"]["study_subset"]["augmentations"])  # the rows at this scale
    hear_l = len(cfg["report"]["hear_l"])
    assert counts["pretrain_encoder"] == 1 + n_aug and counts["random_init_encoder"] == 1
    # one kit process per run for all its tasks: the main encoder and its random init (every
    # task), each ablation (the HEAR-L tasks)
    assert counts["extract_hear_embeddings"] == 2 + n_aug and hear_l == 4
    assert counts["evaluate_hear_run"] == counts["extract_hear_embeddings"]
    assert counts["report"] == 1 and "report_full" not in counts
    # fine-tuning (beyond the thesis): the main encoder and its random init on each
    # finetune.tasks entry, for the report's table
    assert cfg["finetune"]["tasks"] == ["embedded_envsounds"] and cfg["finetune"]["random_init"]
    assert counts["finetune"] == 2


@pytest.mark.parametrize("tasks, random_init, jobs", [
    (["embedded_envsounds", "embedded_emotion"], True, 4),
    (["embedded_envsounds"], False, 1),
    ([], True, 0),
])  # fmt: skip
def test_the_default_target_plans_a_fine_tuning_per_run_and_task(
    tmp_path, tasks, random_init, jobs
):
    p = tmp_path / "ft.yaml"
    p.write_text(yaml.safe_dump({"finetune": {"tasks": tasks, "random_init": random_init}}))
    r = smk("--dry-run", "--forceall", "--quiet", "rules", "--configfile", str(p))
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    assert counts.get("finetune", 0) == jobs
    assert counts["compute_task_mels"] == len({"embedded_envsounds", *tasks})  # + monitoring's
    assert counts["report"] == counts["paper_tables"] == 1


def test_dry_run_of_the_main_report():
    """report/tables.tex at the default scale: Tables 3.1/3.2, the default encoder trained and
    at random init on every embedded task, and the augmentation study (Table 4.6)."""
    r = smk("report/tables.tex", "--dry-run", "--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    from abt.data.embedded import TASKS

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    n, hear_l = len(TASKS), len(cfg["report"]["hear_l"])
    aug = cfg["report"]["study_subset"]["augmentations"]
    assert cfg["report"]["studies"] == ["augmentations"] and len(aug) == 4
    assert set(aug) < set(cfg["studies"]["augmentations"]["ablations"])  # the others: targets
    assert counts["pretrain_encoder"] == 1 + len(aug)
    assert counts["extract_hear_embeddings"] == 2 + len(aug) and n == 7 and hear_l == 4
    assert counts["linear_eval"] == len(aug) + 1
    assert counts["ablation_summary"] == len(aug) + 1 and counts["study_summary"] == 1
    assert counts["encoder_tables"] == counts["paper_tables"] == counts["report"] == 1
    assert counts["training_curves_figure"] == counts["study_figure"] == 1
    assert counts["finetune"] == 2  # the trained encoder and its random init, one task
    assert (
        cfg["report"]["sweeps"] == [] and "sweep_worker" not in counts
    )  # own targets, full report
    # a measured reference (the HEAR naive baseline, 44.1 kHz: each task's view at that rate)
    assert cfg["hear"]["references"] == ["naive"]
    assert counts["validate_reference"] == counts["evaluate_reference"] == 1
    assert counts["extract_reference_embeddings"] == 1 and counts["task_at_rate"] == n


def test_the_readmes_crepe_command_adds_crepe_and_nothing_else():
    """README: CREPE beside the default run is one command (a --config override of
    hear.references); it plans CREPE's three jobs (16 kHz: no task view) beside naive's."""
    import shlex

    (line,) = [ln for ln in (ROOT / "README.md").read_text().splitlines()
               if "--config 'hear={references:" in ln]  # fmt: skip
    args = shlex.split(line)[1:]  # without .venv/bin/snakemake
    assert args[:3] == ["--cores", "2", "report/tables.tex"]
    r = smk("report/tables.tex", "--dry-run", "--forceall", "--quiet", "rules", *args[3:])
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    assert counts["validate_reference"] == counts["evaluate_reference"] == 2
    assert counts["task_at_rate"] == 7  # naive's 44.1 kHz views only


def test_one_ablation_is_one_target():
    r = smk("results/ablations/crop_160/summary.csv", "--dry-run", "--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    hear_l = len(cfg["report"]["hear_l"])
    assert counts["pretrain_encoder"] == 1 and counts["linear_eval"] == 1
    assert counts["extract_hear_embeddings"] == counts["evaluate_hear_run"] == 1 and hear_l == 4
    assert counts["ablation_summary"] == 1 and "report" not in counts
    assert "random_init_encoder" not in counts
    r = smk("results/studies/lambda/summary.csv", "--dry-run", "--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stdout + r.stderr
    assert job_counts(r.stdout + r.stderr)["ablation_summary"] == 7


def test_unknown_ablation_fails_when_the_dag_is_built():
    """A misspelt ablation, study, sweep or variant target fails when the DAG is built, with the
    closest valid names and the list of valid ones."""
    cases = [
        ("results/ablations/crop_161/summary.csv", "unknown ablation 'crop_161'", "crop_160"),
        ("results/studies/lambdaa/summary.csv", "unknown study 'lambdaa'", "lambda"),
        ("results/sweeps/vitc_x/summary/best_params.yaml", "unknown sweep 'vitc_x'", "vitc_t"),
        ("results/pretrain/audiontt/aug_rcc/seed0/model.ckpt", "unknown variant 'aug_rcc'",
         "aug_rrc"),
    ]  # fmt: skip
    for target, message, close in cases:
        r = smk("--dry-run", target)
        out = r.stdout + r.stderr
        assert r.returncode != 0, target
        assert message in out and f"Did you mean {close}" in out, out[-2000:]
        assert "Known " in out


@pytest.mark.parametrize(
    "target, message, close",
    [
        ("results/pretrain/audiontx/baseline/seed0/model.ckpt", "unknown encoder 'audiontx'",
         "audiontt"),
        ("results/pretrain/audiontt/baseline/seedX/model.ckpt", "unknown seed 'seedX'", "seed0"),
        ("results/hear/audiontt/aug_rcc/seed0/scores.csv", "unknown variant 'aug_rcc'",
         "aug_rrc"),
        ("results/baselines/embedded_envsound.json", "unknown task 'embedded_envsound'",
         "embedded_envsounds"),
        ("report/table.tex", "unknown report target 'report/table.tex'", "report/tables.tex"),
        ("papr", "unknown target 'papr'", "paper"),
        ("results/finetune/audiontt/baseline/seed0/embedded_envsound.json",
         "unknown task 'embedded_envsound'", "embedded_envsounds"),
        ("results/finetune/audiontt/basline/seed0/embedded_envsounds.json",
         "unknown variant 'basline'", "baseline"),
        ("results/finetune/audiontx/baseline/seed0/embedded_envsounds.json",
         "unknown encoder 'audiontx'", "audiontt"),
        ("results/hear/references/naiv/scores.csv", "unknown reference 'naiv'", "naive"),
    ],
)  # fmt: skip
def test_other_misspelt_targets_name_the_nearest_known_ones(target, message, close):
    """Regression: a misspelt encoder, seed, task, report file or rule got only Snakemake's
    "No rule to produce"."""
    r = smk("--dry-run", target)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "No rule to produce" not in out, target
    assert message in out and f"Did you mean {close}" in out, out[-2000:]


def test_a_repeated_key_in_a_configfile_fails_at_parse_time(tmp_path):
    """Regression: Snakemake's loader kept the last of two `pretrain:` blocks."""
    p = tmp_path / "over.yaml"
    p.write_text("pretrain:\n  batch_size: 8\npretrain:\n  epochs: 2\n")
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0
    assert "over.yaml, line 3: key 'pretrain' appears a second time" in r.stdout + r.stderr


def test_config_typo_fails_at_parse_time(tmp_path):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["mels"]["hop_lenght"] = 160
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0
    assert "'mels.hop_lenght' is not allowed" in r.stdout + r.stderr


def test_missing_pretrain_folder_fails_early_naming_the_key(tmp_path):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["data"]["pretrain"].update(
        source="folder", audio_dir=str(tmp_path / "nope"), clip_list=str(tmp_path / "x.csv")
    )
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0
    assert (
        "data.pretrain.audio_dir" in r.stdout + r.stderr and "does not exist" in r.stdout + r.stderr
    )


def test_unknown_embedded_task_fails_at_parse_time(tmp_path):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"]["tasks"] = ["no_such_task"]
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0 and "no_such_task" in r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole default DAG on a tiny configuration, run once for the tests below (CI runs it):
    embedded data at scale 0.05, stores, baselines, encoder tables, a short AudioNTT pre-training
    with probe monitoring, and the official HEAR kit (fast grid) on the trained and the
    random-init encoder for every embedded task, and the fine-tuning of both on one task."""
    tmp = tmp_path_factory.mktemp("wf")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"].update(scale=0.05, task_scale=None)
    cfg["preprocess"]["stats"]["n_crops"] = 500
    cfg["pretrain"].update(epochs=3, batch_size=32)
    cfg["monitor"]["every_epochs"] = 1
    cfg["hear"].update(grid="smoke", env_dir=str(ROOT / ".venv-hear"))
    # the report with a two-row augmentation study (+ random init), one epoch per ablation
    cfg["ablation_defaults"]["pretrain"]["epochs"] = 1
    cfg["report"]["study_subset"] = {"augmentations": ["aug_mixup_rrc_rlf", "aug_rlf"]}
    cfg["report"]["hear_l"] = ["embedded_emotion", "embedded_envsounds"]
    cfg["sweep_defaults"].update(trials=2, epochs=2)  # a sweep in the report: 2 short trials
    cfg["report"]["sweeps"] = ["audiontt_lars"]
    cfg["hear"]["references"] = []  # added afterwards (test_measured_references_run_beside_...)
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    wd = tmp / "wd"
    wd.mkdir()
    r = smk(
        "--cores",
        "2",
        "--configfile",
        str(p),
        "--directory",
        str(wd),
        "--snakefile",
        str(ROOT / "Snakefile"),
        timeout=3000,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    return wd


@pytest.mark.slow
def test_data_rules_end_to_end(tiny_run):
    stats = yaml.safe_load((tiny_run / "results/mels/pretrain/train/stats.json").read_text())
    assert stats["n_clips"] > 50 and stats["counts"].get("ok") == stats["n_clips"]
    import pandas as pd

    base = pd.read_csv(tiny_run / "results/baselines/summary.csv")
    assert {"task", "score", "chance", "verdict"} <= set(base.columns) and len(base) >= 7
    assert base["score"].notna().all() and (base["chance"] < base["score"]).all()
    enc = pd.read_csv(tiny_run / "results/tables/encoders.csv")
    assert enc.loc[enc.name == "audiontt", "params_total"].item() == 6_333_376


@pytest.mark.slow
def test_pretraining_end_to_end(tiny_run):
    import pandas as pd

    run = tiny_run / "results/pretrain/audiontt/baseline/seed0"
    m = pd.read_csv(run / "train_metrics.csv")
    assert m["loss"].iloc[-1] < m["loss"].iloc[0]
    probe = pd.read_csv(run / "epoch_metrics.csv")
    assert list(probe["epoch"]) == [1, 2, 3] and probe["probe_100"].between(0, 1).all()
    hp = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hp["pretrain"]["projector"] == {"hidden_dims": [8192], "out_dim": 1048}


@pytest.mark.slow
def test_hear_scores_end_to_end(tiny_run):
    import pandas as pd

    from abt.data.embedded import TASKS

    for variant in ("baseline", "random_init"):
        df = pd.read_csv(tiny_run / f"results/hear/audiontt/{variant}/seed0/scores.csv")
        prim = df[df["primary"] & (df["split"] == "mean")]
        assert set(prim["task"]) == set(TASKS.names()), variant
        assert (df["grid"] == "smoke").all() and prim["value"].notna().all()
    log = (tiny_run / "results/hear/audiontt/baseline/seed0/validator.log").read_text()
    assert "Looks good!" in log


@pytest.mark.slow
def test_report_end_to_end(tiny_run):
    """The default target renders report/tables.tex and the HTML report from the runs."""
    import pandas as pd

    study = pd.read_csv(tiny_run / "results/studies/augmentations/summary.csv")
    assert study["ablation"].tolist() == ["aug_mixup_rrc_rlf", "aug_rlf", "random_init"]
    assert study["hear_l_avg_pct"].between(0, 100).all()
    assert study["linear_eval_100"].between(0, 1).all()
    assert study.loc[study.ablation == "aug_rlf", "delta_pts"].isna().all()
    assert study["epochs"].tolist() == [1, 1, 0]  # the random-init row is not pre-trained
    assert (study.loc[study.epochs > 0, "projector_out"] == 256).all()
    t41 = pd.read_csv(tiny_run / "results/tables/main/table_4_1.csv")
    assert set(t41["kind"]) == {"trained", "random_init"}
    tex = (tiny_run / "report/tables.tex").read_text()
    assert "on the smoke grid (1 point)" in " ".join(tex.split())  # as the runner recorded it
    ft = pd.read_csv(tiny_run / "results/tables/main/finetune.csv")  # beyond the thesis
    assert ft[["encoder", "variant", "task"]].values.tolist() == [
        ["audiontt", "baseline", "embedded_envsounds"],
        ["audiontt", "random_init", "embedded_envsounds"],
    ]
    assert ((ft["ci_low"] <= ft["test"]) & (ft["test"] <= ft["ci_high"])).all()
    keys = ("table_3_1", "table_4_1", "table_4_4", "table_4_5", "table_4_6", "reported_4_6")
    for key in (*keys, "finetune"):
        assert (
            rf"\input{{tables/{key}}}" in tex and (tiny_run / f"report/tables/{key}.tex").exists()
        )
    page = (tiny_run / "report/report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "pre-training beat its random" in page
    trials = pd.read_csv(tiny_run / "results/sweeps/audiontt_lars/summary/trials.csv")
    assert len(trials) == 2 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert (tiny_run / "report/tables/sweep_audiontt_lars.tex").exists()


@pytest.mark.slow
def test_spreads_end_to_end(tiny_run):
    """The kit's own test predictions give the spreads: the recomputed primary scores equal the
    kit's for every task (incl. the event task), each task has a paired interval of trained vs
    random init, and the augmentation study an ordering with its uncertainty."""
    import pandas as pd

    from abt.report.stats import load_task_items

    scores = pd.read_csv(tiny_run / "results/hear/audiontt/baseline/seed0/scores.csv")
    prim = scores[scores["primary"] & scores["split"].isin(["test", "mean"])]
    for _, r in prim.iterrows():
        d = tiny_run / "results/hear/audiontt/baseline/seed0/predictions" / r["task"]
        assert load_task_items(d, r["task"]).score() == pytest.approx(r["value"], abs=1e-6)
    vs = pd.read_csv(tiny_run / "results/tables/main/hear_vs_random.csv")
    assert set(vs["task"]) == set(prim["task"]) and (vs["diff_lo"] <= vs["diff_hi"]).all()
    assert ((vs["diff"] >= vs["diff_lo"] - 1e-9) & (vs["diff"] <= vs["diff_hi"] + 1e-9)).all()
    study = pd.read_csv(tiny_run / "results/studies/augmentations/summary.csv")
    assert study["p_best"].sum() == pytest.approx(1.0)
    assert (study["hear_l_avg_lo"] <= study["hear_l_avg_pct"] + 1e-9).all()
    page = (tiny_run / "report/report.html").read_text()
    assert "by more than the spread" in page and "Target: first or tied" in page
    rand = pd.read_csv(tiny_run / "results/tables/main/random_init_probe.csv")
    assert rand["run"].tolist() == ["audiontt"] and rand["probe_100"].between(0, 1).all()


@pytest.mark.slow
def test_the_studies_beyond_the_thesis_run(tiny_run):
    """Beyond the thesis, in the same working directory, two rows of each study (+ random init):
    waveform_augment (its waveform ablation pre-trains on the waveform store of the same pool,
    built by its own rule), cvt and encoder_scale; each scored like every other row, and the
    rows the augmentation study already ran are reused."""
    import pandas as pd

    from abt.rundir import RunDir

    cfg = yaml.safe_load((tiny_run.parent / "tiny.yaml").read_text())
    rows = {"waveform_augment": ["wav_time_shift", "aug_mixup_rrc_rlf"],
            "cvt": ["cvt_13", "aug_mixup_rrc_rlf"], "encoder_scale": ["vitc_t_16x8"]}  # fmt: skip
    cfg["report"]["study_subset"].update(rows)
    cfg["report"]["studies"] = [*cfg["report"]["studies"], *rows]
    p = tiny_run.parent / "tiny_beyond.yaml"
    p.write_text(yaml.safe_dump(cfg))
    targets = [*(f"results/studies/{study}/summary.csv" for study in rows), "report/tables.tex"]
    args = ("--configfile", str(p), "--directory", str(tiny_run), "--snakefile",
            str(ROOT / "Snakefile"))  # fmt: skip
    plan = smk(*targets, *args, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    jobs = plan.stdout + plan.stderr
    assert "compute_pretrain_waves" in jobs and "compute_pretrain_mels" not in jobs
    assert not re.search(r"^random_init_encoder\s", jobs, re.M)  # AudioNTT's: reused
    r = smk(*targets, "--cores", "2", *args, timeout=2400)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    waves = json.loads((tiny_run / "results/waves/pretrain/train/stats.json").read_text())
    mels = json.loads((tiny_run / "results/mels/pretrain/train/stats.json").read_text())
    assert waves["n_clips"] == mels["n_clips"] and waves["mels"] == mels["mels"]
    run = tiny_run / "results/pretrain/audiontt/wav_time_shift/seed0"
    hp = yaml.safe_load((run / "hparams.yaml").read_text())
    assert [b["name"] for b in hp["pretrain"]["augment"]["blocks"]] == ["time_shift"]
    assert RunDir(run).record()["provenance"]["store"] == waves["fingerprint"]
    for study, names in rows.items():
        df = pd.read_csv(tiny_run / f"results/studies/{study}/summary.csv")
        assert df["ablation"].tolist() == [*names, "random_init"], study
        assert df["hear_l_avg_pct"].between(0, 100).all(), study
        assert df["linear_eval_100"].between(0, 1).all(), study
    assert (tiny_run / "results/pretrain/cvt_13/cvt_13/seed0/model.ckpt").is_file()
    tex = (tiny_run / "report/tables.tex").read_text()
    for study in rows:  # each study's table in the report, beside the thesis's
        assert rf"\input{{tables/study_{study}}}" in tex, study
        assert (tiny_run / f"report/tables/study_{study}.tex").is_file(), study


@pytest.mark.slow
def test_measured_references_run_beside_the_runs(tiny_run):
    """hear.references: the HEAR naive baseline (44.1 kHz) measured on every task of the same
    working directory, with nothing of the runs redone: each task gets a 44100/ view from its
    16 kHz files (recorded as upsampled), the kit scores the reference like a run, and the report
    shows its rows in Tables 4.1-4.4 and its paired comparison with the trained run."""
    import pandas as pd
    import soundfile as sf

    cfg = yaml.safe_load((tiny_run.parent / "tiny.yaml").read_text())
    cfg["hear"]["references"] = ["naive"]
    p = tiny_run.parent / "tiny_refs.yaml"
    p.write_text(yaml.safe_dump(cfg))
    args = ("--configfile", str(p), "--directory", str(tiny_run), "--snakefile",
            str(ROOT / "Snakefile"))  # fmt: skip
    plan = smk("report/tables.tex", *args, "--dry-run", "--quiet", "rules")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    counts = job_counts(plan.stdout + plan.stderr)
    from abt.plan import embedded_task_names

    n_tasks = len(embedded_task_names(cfg))
    assert counts["task_at_rate"] == n_tasks and counts["evaluate_reference"] == 1
    for rule in ("pretrain_encoder", "extract_hear_embeddings", "setup_hear_env"):
        assert rule not in counts, rule  # the runs and the kit's venv are reused
    r = smk("report/tables.tex", "--cores", "2", *args, timeout=2400)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    views = sorted((tiny_run / "results/data/rates/44100").iterdir())
    assert len(views) == n_tasks
    for view in views:
        wav = next((view / "44100").rglob("*.wav"))
        assert sf.info(wav).samplerate == 44100 and (view / "16000").is_symlink()
        rec = json.loads((view / "sample_rates.json").read_text())["44100"]
        assert rec["upsampled_files"] == rec["files"] > 0  # said, not hidden
    ref = tiny_run / "results/hear/references/naive"
    assert json.loads((ref / "check.json").read_text())["sample_rate"] == 44100
    scores = pd.read_csv(ref / "scores.csv")
    assert set(scores["encoder"]) == {"naive"} and set(scores["variant"]) == {"reference"}
    vs = pd.read_csv(tiny_run / "results/tables/main/hear_vs_references.csv")
    assert len(vs) == n_tasks and set(vs["reference"]) == {"naive"}
    assert ((vs["score_lo"] <= vs["score"] + 1e-9) & (vs["score"] <= vs["score_hi"] + 1e-9)).all()
    prim = scores[scores["primary"] & (scores["split"] == "mean")]
    by_task = dict(zip(vs["task"], vs["score"], strict=True))
    for _, row in prim.iterrows():  # the bootstrap's point estimate is the kit's score
        assert by_task[row["task"]] == pytest.approx(row["value"], abs=1e-6)
    t41 = pd.read_csv(tiny_run / "results/tables/main/table_4_1.csv")
    assert (t41["kind"] == "reference").sum() == 1
    assert "HEAR naive baseline (measured here)" in set(t41["model"])
    tex = (tiny_run / "report/tables.tex").read_text()
    assert r"\input{tables/hear_vs_references}" in tex
    row = "HEAR naive baseline (measured here) & "  # its row, after the encoders' rows
    assert row in (tiny_run / "report/tables/table_4_1.tex").read_text()


def _csv_task(folder):
    """A user's labelled audio: 15 clips of three classes in three formats and two rates (the
    44.1 kHz ones in a sub-folder), listed in ``sounds.csv`` with a header and no split."""
    import soundfile as sf
    from fakedata import tone

    rows = []
    for i in range(5):
        for k, (label, sr, name) in enumerate((("low", 44100, f"low/{i}.wav"),
                                               ("mid", 16000, f"mid {i}.flac"),
                                               ("high", 22050, f"high_{i}.ogg"))):  # fmt: skip
            p = folder / name
            p.parent.mkdir(parents=True, exist_ok=True)
            x = tone(0.5, sr, f=300.0 * (k + 1) * (1 + 0.05 * i))[:, 0]
            sf.write(p, x, sr, **({"format": "OGG", "subtype": "VORBIS"} if sr == 22050 else {}))
            rows.append(f"{name},{label}")
    (folder / "sounds.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    return folder / "sounds.csv"


@pytest.mark.slow
def test_a_users_module_on_a_users_csv_task_through_the_workflow(tmp_path):
    """Bring your own model and your own labelled audio, through Snakemake: a CSV task in
    data.tasks is prepared (rule prepare_task), a tiny HEAR module shipped as a wheel is
    installed into a kit venv of its own (setup_hear_env), validated and scored by the kit
    beside the naive baseline (whose 44.1 kHz view of the task is made from the user's original
    files, upsampling only those below that rate). A changed clip re-prepares the task and
    re-scores both; a CSV with a bad row fails at its preparation, naming the line."""
    import numpy as np
    import pandas as pd
    import soundfile as sf
    from hearmodules import GOOD, make_wheel

    wheel = make_wheel(tmp_path, {"byo_good": GOOD})
    csv = _csv_task(tmp_path / "sounds")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["data"]["tasks"] = {"my_sounds": str(csv)}  # the tasks the runs name: the user's
    cfg["monitor"]["task"], cfg["finetune"]["tasks"] = "my_sounds", ["my_sounds"]
    cfg["report"]["hear_l"] = ["my_sounds"]
    cfg["hear"].update(grid="smoke", env_dir=str(tmp_path / "venv-hear"), references=[
        "naive", {"name": "mine", "module": "byo_good", "pip": str(wheel), "label": "My model",
                  "sample_rate": 16000}])  # fmt: skip
    p = tmp_path / "byo.yaml"
    p.write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "wd"
    wd.mkdir()
    args = ("--configfile", str(p), "--directory", str(wd), "--snakefile", str(ROOT / "Snakefile"))
    targets = [f"results/hear/references/{n}/scores.csv" for n in ("mine", "naive")]
    r = smk(*targets, "--cores", "2", *args, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    # the user's wheel, installed with the kit's pins into a venv of its own: the one abt's runs
    # are scored with (and naive is) does not change when a user's package is added or rebuilt
    users = json.loads((tmp_path / "venv-hear-users" / ".abt-hear-env.json").read_text())
    kit = json.loads((tmp_path / "venv-hear" / ".abt-hear-env.json").read_text())
    assert users["extra"] == [str(wheel)] and kit["extra"] == []
    meta = json.loads((wd / "results/data/tasks/my_sounds/task_metadata.json").read_text())
    assert meta["prediction_type"] == "multiclass" and meta["csv"]["split"]["seed"] == 0
    assert json.loads((wd / "results/hear/references/mine/check.json").read_text())[
        "sample_rate"] == 16000  # fmt: skip
    view = wd / "results/data/rates/44100/my_sounds"
    rec = json.loads((view / "sample_rates.json").read_text())["44100"]
    assert rec["files"] == 15 and rec["upsampled_files"] == 10  # the 44.1 kHz clips are not
    assert {sf.info(w).samplerate for w in (view / "44100").rglob("*.wav")} == {44100}
    for name in ("mine", "naive"):
        scores = pd.read_csv(wd / f"results/hear/references/{name}/scores.csv")
        prim = scores[scores["primary"] & (scores["split"] == "mean")]
        assert list(prim["task"]) == ["my_sounds"] and prim["value"].between(0, 1).all()

    # a clip of the CSV re-recorded: the task is prepared again and both references re-scored
    clip = tmp_path / "sounds" / "mid 0.flac"
    original, st = clip.read_bytes(), clip.stat()
    x, sr = sf.read(clip)
    sf.write(clip, np.concatenate([x, x]), sr)
    plan = smk(*targets, "--dry-run", "--quiet", "rules", *args)
    counts = job_counts(plan.stdout + plan.stderr)
    assert counts.get("prepare_task") == 1 and counts.get("evaluate_reference") == 2, plan.stdout
    assert "setup_hear_env" not in counts and "setup_users_hear_env" not in counts
    clip.write_bytes(original)  # put back as it was (bytes, size and time): nothing to do
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    plan = smk(*targets, "--dry-run", "--quiet", "rules", *args)
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout + plan.stderr
    # the user's wheel rebuilt at the same path (a new version of the module, same pin): the
    # users' venv is rebuilt and the module validated and scored again; naive is not
    import time

    time.sleep(0.01)
    make_wheel(tmp_path, {"byo_good": GOOD.replace("audio.std(1", "2 * audio.std(1")})
    plan = smk(*targets, "--dry-run", "--quiet", "rules", *args)
    counts = job_counts(plan.stdout + plan.stderr)
    assert counts.get("setup_users_hear_env") == 1 and "setup_hear_env" not in counts
    assert counts.get("validate_reference") == counts.get("evaluate_reference") == 1

    bad = tmp_path / "sounds" / "bad.csv"
    bad.write_text(csv.read_text() + "gone.wav,low\n")  # line 17: a missing file
    cfg["data"]["tasks"]["bad_sounds"] = str(bad)
    p.write_text(yaml.safe_dump(cfg))
    r = smk("results/data/tasks/bad_sounds/task_metadata.json", "--cores", "1", *args)
    assert r.returncode != 0
    log = (wd / "logs/prepare_task/bad_sounds.log").read_text()
    assert "line 17: file 'gone.wav' does not exist" in log, log[-2000:]


EVENT_TASKS = ("dcase2016_task2", "maestro")


def _fake_hear_release(root, tasks):
    """The HEAR 2021 release as downloaded, tiny: each task at 48 kHz only, every other one as
    its Zenodo archive (hear2021-<task>-48000.tar.gz, tasks/<task>/ inside), the rest extracted
    under tasks/; event tasks as events, a few as k-fold tasks."""
    from fakedata import hear_task, to_archive

    for i, (key, entry) in enumerate(sorted(tasks.items())):
        prefix, mode = entry.rsplit("-", 1)
        name, version = prefix.split("-", 1)
        kind = "event" if key in EVENT_TASKS else "scene"
        folds = 2 if (i % 3 == 0 and kind == "scene") else 0
        where = root / "build" if i % 2 else root / "tasks"
        d = hear_task(where, name, kind=kind, folds=folds, n=1, seconds=0.2, version=version,
                      mode=mode)  # fmt: skip
        assert d.name == entry
        if i % 2:
            to_archive(d, root / f"hear2021-{entry}-48000.tar.gz")
    import shutil

    shutil.rmtree(root / "build")


def _paper_config(tmp_path, make_dirs=True):
    """config/paper.yaml with its data paths moved under tmp_path: AudioSet (the official segment
    CSV and downloaded clips), FSD50K as downloaded, the HEAR 2021 tasks as published."""
    from fakedata import audioset_tree, fsd50k_tree, tone

    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    root = tmp_path / "data"
    pre = cfg["data"]["pretrain"]
    pre["audio_dir"] = str(root / "audioset" / "audio")
    pre["clip_list"] = str(root / "audioset" / "unbalanced_train_segments.csv")
    abl = cfg["data"]["ablation_pretrain"]
    abl["audio_dir"] = str(root / "fsd50k" / "FSD50K.dev_audio")
    abl["clip_list"] = str(root / "fsd50k" / "FSD50K.ground_truth" / "dev.csv")
    cfg["data"]["tasks_root"] = str(root / "hear2021")
    if make_dirs:
        rows = [("--aaaaaaaaa", "30.000", "40.000"), ("bbbbbbbbbbb", "0.000", "10.000")]
        audioset_tree(root / "audioset", rows, {"Y--aaaaaaaaa.wav": tone(0.5, 44100)})
        fsd50k_tree(root / "fsd50k", {"1": "train", "2": "val"}, ["3"])
        _fake_hear_release(root / "hear2021", cfg["data"]["tasks"])
    p = tmp_path / "paper.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p, cfg


def _study_ablations(cfg, studies):
    names = set()
    for s in studies:
        names |= set(cfg["studies"][s]["ablations"])
        if cfg["studies"][s].get("random_init"):
            names.add("random_init")
    return names


def test_paper_configuration_dry_runs(tmp_path):
    """report/tables.tex at the paper's scale: 6 encoders x 18 HEAR tasks, every study (with
    its ablations pre-trained on FSD50K dev and scored on HEAR-L)."""
    p, cfg = _paper_config(tmp_path)
    r = smk(
        "report/tables.tex", "--dry-run", "--forceall", "--quiet", "rules", "--configfile", str(p)
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    counts = job_counts(r.stdout + r.stderr)
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    n_enc, n_tasks = len(cfg["run"]["encoders"]), len(cfg["data"]["tasks"])
    assert n_tasks == 18 and n_enc == 6
    abl = _study_ablations(base, cfg["report"]["studies"])
    trained = abl - {"random_init"}
    assert trained == set(base["ablations"])  # every ablation is in some study
    assert "build_embedded_dataset" not in counts  # real data only
    assert counts["prepare_task"] == n_tasks  # 16 kHz task folders from the downloaded release
    assert counts["compute_pretrain_mels"] == 2  # AudioSet and FSD50K dev stores
    assert counts["compute_pretrain_waves"] == 1  # FSD50K dev's, for waveform_augment
    # the measured references (naive at 44.1 kHz, crepe at 16 kHz) on every task, like a run
    assert cfg["hear"]["references"] == ["naive", "crepe"]
    for rule in ("validate_reference", "extract_reference_embeddings", "evaluate_reference"):
        assert counts[rule] == 2, rule
    assert counts["task_at_rate"] == n_tasks  # each task's 44100/ from its 48 kHz release
    shards = cfg["preprocess"]["shards"]
    assert shards == 64 and counts["compute_pretrain_mels_shard"] == 2 * shards  # merged in order
    assert counts["pretrain_encoder"] == n_enc + len(trained)
    assert counts["random_init_encoder"] == n_enc
    hear_l = len(cfg["report"]["hear_l"])
    assert counts["extract_hear_embeddings"] == 2 * n_enc + len(trained) and hear_l == 5
    assert counts["evaluate_hear_run"] == counts["extract_hear_embeddings"]
    assert counts["linear_eval"] == len(trained) + n_enc  # + every random init (curve floors)
    assert counts["ablation_summary"] == len(abl)
    assert counts["study_summary"] == counts["study_figure"] == len(base["studies"])
    # the FSD50K stores for linear-probe monitoring, ESC-50's for fine-tuning
    assert cfg["finetune"]["tasks"] == ["esc50"] and counts["compute_task_mels"] == 2
    assert counts["finetune"] == 2 * n_enc  # every encoder trained and at random init
    assert counts["report"] == 1
    # the thesis's sweeps (those with a figure); the sweeps beyond the thesis (no figure) are
    # targets of their own (report/full/ has them)
    thesis_sweeps = {k for k, v in base["sweeps"].items() if v.get("figure")}
    assert thesis_sweeps and len(thesis_sweeps) < len(base["sweeps"])
    n_sweeps = len(thesis_sweeps)
    assert set(cfg["report"]["sweeps"]) == thesis_sweeps
    assert counts["sweep_summary"] == n_sweeps
    assert counts["sweep_worker"] == n_sweeps * cfg["sweep_defaults"]["workers"] == n_sweeps * 4
    # the one command that prepares every input (README, "Running the paper")
    r = smk("data", "--dry-run", "--forceall", "--quiet", "rules", "--configfile", str(p))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert job_counts(r.stdout + r.stderr) == {
        "prepare_task": n_tasks, "compute_pretrain_mels_shard": 2 * shards,
        "compute_pretrain_mels": 2, "compute_task_mels": 2, "data": 1, "total": 170,
        "compute_pretrain_waves": 1,  # FSD50K dev's, for the waveform_augment study
        "task_at_rate": n_tasks,  # the naive baseline's 44.1 kHz folders
    }  # fmt: skip


def test_paper_configuration_fails_early_on_missing_data(tmp_path):
    p, cfg = _paper_config(tmp_path, make_dirs=False)
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0
    assert (
        "data.pretrain.audio_dir" in r.stdout + r.stderr and "does not exist" in r.stdout + r.stderr
    )

    p, cfg = _paper_config(tmp_path / "2")
    for a in (tmp_path / "2" / "data" / "hear2021").glob("hear2021-tfds_gtzan-*"):
        a.unlink()
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0
    assert "config key 'data.tasks.gtzan_genre' ('tfds_gtzan-1.0.0-full'): no task" in r.stdout


def test_paper_data_preparation_runs(tmp_path):
    """The preparation jobs themselves, through Snakemake on the fake release: a task from its
    archive and one from an extracted folder become checked 16 kHz task folders."""
    from abt.config import deep_merge
    from abt.data.hear_tasks import read_task

    p, cfg = _paper_config(tmp_path)
    full = deep_merge(yaml.safe_load((ROOT / "config.yaml").read_text()), cfg)
    p.write_text(yaml.safe_dump(full))  # --directory: config.yaml is not read from there
    wd = tmp_path / "wd"
    wd.mkdir()
    targets = [f"results/data/tasks/{t}/task_metadata.json" for t in ("esc50", "fsd50k")]
    r = smk("--cores", "2", "--configfile", str(p), "--directory", str(wd), "--snakefile",
            str(ROOT / "Snakefile"), *targets)  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    kinds = set()
    for t in ("esc50", "fsd50k"):
        d = wd / "results" / "data" / "tasks" / t
        rep = json.loads((d / "prepare_report.json").read_text())
        kinds.add(rep["kind"])
        assert rep["prepared"] == rep["listed"] > 0 and rep["source_rates"] == {
            "48000": rep["listed"]
        }
        assert read_task(d, sample_rate=16000, check_audio=True).task_name == t
    assert kinds == {"hear_archive", "hear_folder"}


def test_gpu_demo_configuration_dry_runs():
    """config/gpu-demo.yaml (one GPU, about an hour and a half): the paper's six encoders with
    their random inits, the augmentation and lambda studies and the three beyond the thesis, on a
    larger embedded data set."""
    r = smk("report/tables.tex", "--dry-run", "--forceall", "--quiet", "rules", "--configfile",
            "config/gpu-demo.yaml")  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    counts = job_counts(r.stdout + r.stderr)
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    demo = yaml.safe_load((ROOT / "config/gpu-demo.yaml").read_text())
    studies = demo["report"]["studies"]
    assert studies == ["augmentations", "lambda", "encoder_scale", "cvt", "waveform_augment"]
    trained = _study_ablations(base, studies) - {"random_init"}
    n_enc = len(demo["run"]["encoders"])
    assert n_enc == 6 and counts["pretrain_encoder"] == n_enc + len(trained)
    assert counts["random_init_encoder"] == n_enc
    assert counts["evaluate_hear_run"] == 2 * n_enc + len(trained)
    assert counts["study_summary"] == 5 and counts["report"] == 1
    assert counts["compute_pretrain_waves"] == 1  # the pool's, for waveform_augment
    hyper = {k for k in demo.get("pretrain", {}) if k != "epochs"}
    assert not hyper and set(demo) <= {
        "run",
        "embedded",
        "preprocess",
        "pretrain",
        "ablation_defaults",
        "report",
        "hear",
    }  # scale knobs only, and the measured references (what is compared, not how runs train)
    assert set(demo["hear"]) == {"references"}
    assert counts["evaluate_reference"] == 2 and counts["task_at_rate"] == 7  # naive's 44.1 kHz


def test_rule_params_are_canonical_and_leave_out_what_cannot_change_a_result():
    """Snakemake compares params by repr: key order must not show, and the speed, logging,
    checkpointing and worker knobs must not be in them (the jobs read those from the
    configuration). The end-to-end check with snakemake -n is in tests/test_reruns.py."""
    from abt import plan
    from abt.config import load_config
    from abt.runspec import resolve

    cfg = load_config(ROOT / "config.yaml")
    ident = plan.canonical(resolve(cfg).identity())
    shuffled = {**cfg, "pretrain": dict(reversed(list(cfg["pretrain"].items())))}
    assert repr(plan.canonical(resolve(shuffled).identity())) == repr(ident)
    knobs = {"log_every": 99, "checkpoint_every": 7, "on_stale_resume": "error",
             "speed": {**cfg["pretrain"]["speed"], "prefetch_batches": 0}}  # fmt: skip
    assert plan.canonical(resolve(cfg, overrides=knobs).identity()) == ident
    assert plan.canonical(resolve(cfg, overrides={"epochs": 7}).identity()) != ident
    pre = plan.preprocess_params(cfg)
    stats = dict(reversed(list(cfg["preprocess"]["stats"].items())))
    other = {**cfg, "preprocess": {**cfg["preprocess"], "workers": 9, "stats": stats}}
    assert "workers" not in pre and repr(plan.preprocess_params(other)) == repr(pre)
    assert plan.job_preprocess(pre, other)["workers"] == 9  # what the job builds with


def _dry_run_jobs(*targets: str) -> dict[str, list[dict[str, list[str]]]]:
    """rule -> its planned jobs' ``input`` and ``output`` files, from a dry run's job list."""
    r = smk(*targets, "--dry-run", "--forceall")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    jobs: dict[str, list[dict[str, list[str]]]] = {}
    job = None
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            job = {"input": [], "output": []}
            jobs.setdefault(m.group(1), []).append(job)
            continue
        m = re.match(r"^\s+(input|output): (.*)$", line)
        if m and job is not None:
            job[m.group(1)] = [f.strip() for f in m.group(2).split(",")]
    return jobs


def test_every_file_of_a_run_is_declared_where_it_is_written_and_where_it_is_read():
    """The pre-training rule declares every output abt.rundir names (epoch_metrics.csv was
    written but not declared, and read by the report through params); the report's jobs
    declare the run files they read."""
    from abt import plan, rundir

    jobs = _dry_run_jobs("report/tables.tex")
    run = plan.run_files("audiontt", "baseline", 0)
    (pre,) = [j for j in jobs["pretrain_encoder"] if str(run.checkpoint) in j["output"]]
    assert set(pre["output"]) == {str(run.root / f) for f in rundir.OUTPUTS}
    (tables,) = jobs["paper_tables"]
    assert str(run.epoch_metrics) in tables["input"]
    (report,) = jobs["report"]
    assert str(run.hparams) in report["input"]
    aug = plan.run_files("audiontt", "aug_mixup_rrc_rlf", 0)
    assert str(aug.hparams) in report["input"]  # the study rows' runs, printed in the report
    (study,) = jobs["study_summary"]
    assert plan.AblationFiles("aug_rrc").bootstrap in study["input"]


PARSE_TIME_GUARD = """
import atexit, json, os, sys

_BLOCKED = ("torch", "soundfile", "soxr")
_seen = []


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            _seen.append(name)
            raise ImportError(f"parse time imported {name}")
        return None


sys.meta_path.insert(0, _Block())
atexit.register(lambda: open(os.environ["ABT_IMPORT_LOG"], "w").write(json.dumps(_seen)))
"""


@pytest.mark.parametrize("scale", ["default", "paper"])
def test_parse_time_imports_no_training_or_audio_stack(tmp_path, scale):
    """Planning a run (parsing the Snakefile, every input and params function of the whole DAG)
    imports neither torch nor soundfile nor soxr: a dry run on a login node, or Snakemake
    parsing the workflow again for each cluster job, never pays for them. Every import attempt
    is recorded, so one that the code catches is reported too."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(PARSE_TIME_GUARD)
    log = tmp_path / "imports.json"
    extra = ["--configfile", str(_paper_config(tmp_path)[0])] if scale == "paper" else []
    env = {**os.environ, "PYTHONPATH": f"{guard}{os.pathsep}{ROOT / 'src'}",
           "ABT_IMPORT_LOG": str(log)}  # fmt: skip
    r = subprocess.run(
        [*SNAKEMAKE, "report/tables.tex", "--dry-run", "--forceall", "--quiet", "rules", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert json.loads(log.read_text()) == []
