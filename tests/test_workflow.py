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
    assert counts["compute_task_mels"] == n
    assert counts["task_baseline"] == n and counts["baseline_table"] == 1


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


@pytest.mark.slow
def test_data_rules_build_end_to_end(tmp_path):
    """A tiny real build of the data rules: embedded set, stores, baselines (CI runs this)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"]["scale"] = 0.05
    cfg["preprocess"]["stats"]["n_crops"] = 500
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "wd"
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
        timeout=1200,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    stats = yaml.safe_load((wd / "results/mels/pretrain/train/stats.json").read_text())
    assert stats["n_clips"] > 50 and stats["counts"].get("ok") == stats["n_clips"]
    summary = (wd / "results/baselines/summary.csv").read_text()
    assert "verdict" in summary
