"""profiles/slurm: the SLURM executor plugin submits the workflow's jobs with the right flags.

No cluster here: tests/fake_slurm/ holds fake sbatch/srun/sacct/squeue/... programs that record
their arguments and run the jobs on this machine (see tests/fake_slurm/fake_slurm.py).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm"
FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"
GPU_RULES = {
    "pretrain_encoder",
    "sweep_worker",
    "extract_hear_embeddings",
    "evaluate_hear_run",
    "linear_eval",
}
# poll the fake scheduler quickly (the plugin waits 40 s before its first status check)
FAST_POLLING = [
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
]


@pytest.fixture(scope="module")
def profile():
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


@pytest.fixture(scope="module")
def plugin():
    return pytest.importorskip("snakemake_executor_plugin_slurm")


def account(profile):
    return profile["default-resources"]["slurm_account"]


def partition(profile, rule):
    res = (profile.get("set-resources") or {}).get(rule) or {}
    return res.get("slurm_partition", profile["default-resources"]["slurm_partition"])


def smk(*args, cwd=ROOT, env=None, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def fake_slurm_env(tmp_path, profile):
    """PATH with the fake SLURM first (copied, so their mode bits do not matter), state in tmp."""
    bin_dir = tmp_path / "fake_slurm_bin"
    shutil.copytree(FAKE_SLURM, bin_dir, ignore=shutil.ignore_patterns("__pycache__"))
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    state = tmp_path / "fake_slurm_state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT / "src"),
        FAKE_SLURM_DIR=str(state),
        FAKE_SLURM_PYTHON=sys.executable,
        FAKE_SLURM_ACCOUNTS=str(account(profile)),  # what sacctmgr lists for this user
    )
    return env, state


def calls(state, cmd):
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["cmd"] == cmd]


def submissions(state):
    """Rule name -> the sbatch calls that submitted its jobs (from the job's --allowed-rules)."""
    out = {}
    for c in calls(state, "sbatch"):
        m = re.search(r"--allowed-rules\s+'?([\w]+)", c["options"].get("--wrap", ""))
        assert m, c["argv"]
        out.setdefault(m.group(1), []).append(c)
    return out


def value(argv, flag):
    """The value of `flag value` or `flag=value` in argv (None when absent)."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def test_profile_keeps_accounts_and_partitions_out_of_the_rules(profile):
    """Every rule that declares gpu goes to the profile's GPU partition; no rule names a SLURM
    account, partition or flag (rules declare threads, mem_mb, runtime, gpu only)."""
    declared = set()
    for smk_file in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk_file.read_text()
        assert not re.search(r"slurm_|\bgres\b|sbatch|--gpus|\bpartition", text), smk_file
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.M | re.S):
            if re.search(r"^\s+gpu\s*=", m.group(2), re.M):
                declared.add(m.group(1))
    assert declared == GPU_RULES
    assert profile["executor"] == "slurm"
    assert account(profile) and partition(profile, "build_embedded_dataset")
    for rule in GPU_RULES:
        assert partition(profile, rule) != partition(profile, "build_embedded_dataset"), rule


def test_dry_run_with_the_slurm_profile(plugin, profile):
    r = smk(
        "--workflow-profile",
        str(PROFILE),
        "--dry-run",
        "--forceall",
        "results/pretrain/audiontt/baseline/seed0/model.ckpt",
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "Using workflow specific profile" in out and "profiles/slurm" in out
    block = out.split("rule pretrain_encoder:", 1)[1].split("\n\n", 1)[0]
    resources = re.search(r"resources: (.*)", block).group(1)
    assert f"slurm_partition={partition(profile, 'pretrain_encoder')}" in resources
    assert f"slurm_account={account(profile)}" in resources
    for res in ("gpu=1", "mem_mb=16000", "runtime=1440"):
        assert res in resources.split(", "), resources


@pytest.mark.slow
def test_workflow_jobs_are_submitted_with_gpu_time_and_memory_flags(plugin, profile, tmp_path):
    """A tiny configuration through the real plugin and the fake SLURM: the data rules, one
    (GPU) pre-training run, the baseline table (a localrule, run here, never submitted)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"].update(scale=0.05, task_scale=None, tasks=["embedded_envsounds"])
    cfg["preprocess"]["stats"]["n_crops"] = 500
    cfg["pretrain"].update(epochs=1, batch_size=32)
    cfg["monitor"]["task"] = None
    cfg["report"].update(studies=[], hear_l=["embedded_envsounds"])
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "wd"
    wd.mkdir()
    env, state = fake_slurm_env(tmp_path, profile)
    env["FAKE_SLURM_SYNC"] = "1"  # jobs end before sbatch returns: no waiting on status checks
    ckpt = "results/pretrain/audiontt/baseline/seed0/model.ckpt"
    r = smk(
        ckpt,
        "results/baselines/summary.csv",
        "--workflow-profile",
        str(PROFILE),
        *FAST_POLLING,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(wd),
        "--configfile",
        str(cfg_file),
        env=env,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert (wd / ckpt).stat().st_size > 0
    assert (wd / "results/baselines/summary.csv").exists()

    jobs = submissions(state)
    assert set(jobs) == {
        "build_embedded_dataset",
        "compute_pretrain_mels",
        "task_baseline",
        "pretrain_encoder",
    }, jobs.keys()
    assert "baseline_table" not in jobs  # localrule: runs on the submit host
    assert "localrule baseline_table:" in out

    (gpu_call,) = jobs["pretrain_encoder"]
    argv = gpu_call["argv"]
    assert "--gpus=1" in argv
    assert value(argv, "-t") == "1440"  # runtime: 24 h on the first attempt
    assert value(argv, "--mem") == "16000"
    assert value(argv, "--cpus-per-task") == "2"
    assert value(argv, "-p") == partition(profile, "pretrain_encoder")
    assert value(argv, "-A") == account(profile)
    assert value(argv, "--nodes") == "1"  # multi-GPU (DDP) runs stay on one node
    assert value(argv, "-D") == str(wd)
    assert "--parsable" in argv

    (cpu_call,) = jobs["build_embedded_dataset"]
    argv = cpu_call["argv"]
    assert not any(a.startswith(("--gpus", "--gres")) for a in argv)
    assert value(argv, "-t") == "60" and value(argv, "--mem") == "4000"
    assert value(argv, "--cpus-per-task") == "2" and value(argv, "--ntasks") == "1"
    assert value(argv, "-p") == partition(profile, "build_embedded_dataset")
    assert value(argv, "-A") == account(profile)
    (baseline_call,) = jobs["task_baseline"]
    assert value(baseline_call["argv"], "--cpus-per-task") == "1"

    # inside the allocation the job step asks srun for the GPU as well
    job_ids = {c["job_id"]: c for c in calls(state, "srun")}
    assert len(job_ids) == 4
    steps = [c for c in job_ids.values() if "pretrain_encoder" in c["argv"]]
    assert len(steps) == 1 and "--gpus=1" in steps[0]["argv"]
    assert "--cpus-per-task=2" in steps[0]["argv"]
    assert calls(state, "sacct")  # status queries went through sacct


@pytest.mark.slow
def test_a_failed_job_is_reported_and_resubmitted_with_more_memory(plugin, profile, tmp_path):
    """sacct's FAILED reaches Snakemake; the profile's retry resubmits with attempt 2 resources."""
    (tmp_path / "Snakefile").write_text(
        "rule linear_eval:  # a GPU rule name of the workflow: the profile's GPU partition\n"
        "    output: 'fails.txt'\n"
        "    threads: 1\n"
        "    resources:\n"
        "        gpu=1,\n"
        "        mem_mb=lambda wildcards, attempt: 1000 * attempt,\n"
        "        runtime=lambda wildcards, attempt: 10 * attempt,\n"
        "    shell: 'echo failing on purpose; exit 3'\n"
    )
    env, state = fake_slurm_env(tmp_path, profile)
    r = smk(
        "--workflow-profile",
        str(PROFILE),
        *FAST_POLLING,
        "fails.txt",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-6000:]
    assert "SLURM status is: 'FAILED'" in out
    attempts = submissions(state)["linear_eval"]
    assert [value(c["argv"], "--mem") for c in attempts] == ["1000", "2000"]
    assert [value(c["argv"], "-t") for c in attempts] == ["10", "20"]
    assert all("--gpus=1" in c["argv"] for c in attempts)
    assert all(value(c["argv"], "-p") == partition(profile, "linear_eval") for c in attempts)
    assert not (tmp_path / "fails.txt").exists()
