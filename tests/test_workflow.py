"""The Snakemake workflow: lint clean, the DAG builds, typos and missing data fail early."""

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


def test_dry_run_builds_the_data_dag():
    r = smk("--dry-run", "--forceall", "--quiet", "rules")
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    from abt.data.embedded import TASKS

    n = len(TASKS)
    assert counts["build_embedded_dataset"] == 1
    assert counts["compute_pretrain_mels"] == 1
    assert counts["compute_task_mels"] == 1  # the stores of the linear-probe monitoring task
    assert counts["task_baseline"] == n and counts["baseline_table"] == 1
    assert counts["pretrain_encoder"] == 1 and counts["random_init_encoder"] == 1
    assert counts["extract_hear_embeddings"] == 2 * n and counts["evaluate_hear_task"] == 2 * n


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
    random-init encoder for every embedded task."""
    tmp = tmp_path_factory.mktemp("wf")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"]["scale"] = 0.05
    cfg["preprocess"]["stats"]["n_crops"] = 500
    cfg["pretrain"].update(epochs=3, batch_size=32)
    cfg["monitor"]["every_epochs"] = 1
    cfg["hear"].update(grid="fast", env_dir=str(ROOT / ".venv-hear"))
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
        assert (df["grid"] == "fast").all() and prim["value"].notna().all()
    log = (tiny_run / "results/hear/audiontt/baseline/seed0/validator.log").read_text()
    assert "Looks good!" in log


def _paper_config(tmp_path, make_dirs=True):
    """config/paper.yaml with its data paths moved under tmp_path (placeholder HEAR tasks)."""
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    root = tmp_path / "data"
    pre = cfg["data"]["pretrain"]
    pre["audio_dir"] = str(root / "audioset" / "audio")
    pre["clip_list"] = str(root / "audioset" / "unbalanced_train_segments.csv")
    for name, path in list(cfg["data"]["tasks"].items()):
        cfg["data"]["tasks"][name] = str(root / "hear" / Path(path).name)
    if make_dirs:
        Path(pre["audio_dir"]).mkdir(parents=True)
        Path(pre["clip_list"]).write_text("# YTID, start_seconds, end_seconds, positive_labels\n")
        for path in cfg["data"]["tasks"].values():
            Path(path).mkdir(parents=True)
            (Path(path) / "task_metadata.json").write_text("{}")
    p = tmp_path / "paper.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p, cfg


def test_paper_configuration_dry_runs(tmp_path):
    p, cfg = _paper_config(tmp_path)
    r = smk("--dry-run", "--forceall", "--quiet", "rules", "--configfile", str(p))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    counts = job_counts(r.stdout + r.stderr)
    n_enc, n_tasks = len(cfg["run"]["encoders"]), len(cfg["data"]["tasks"])
    assert n_tasks == 18 and n_enc == 6
    assert "build_embedded_dataset" not in counts  # real data only
    assert counts["pretrain_encoder"] == n_enc and counts["random_init_encoder"] == n_enc
    assert counts["extract_hear_embeddings"] == 2 * n_enc * n_tasks
    assert counts["evaluate_hear_task"] == 2 * n_enc * n_tasks
    assert counts["compute_task_mels"] == 1  # the FSD50K stores for linear-probe monitoring


def test_paper_configuration_fails_early_on_missing_data(tmp_path):
    p, cfg = _paper_config(tmp_path, make_dirs=False)
    r = smk("--dry-run", "--configfile", str(p))
    assert r.returncode != 0
    assert (
        "data.pretrain.audio_dir" in r.stdout + r.stderr and "does not exist" in r.stdout + r.stderr
    )
