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
from slurm_local import PROFILE, ROOT, SUBMITTED, edited_profile, site_edits, tiny_config

FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"
GPU_RULES = {
    "pretrain_encoder",
    "sweep_worker",
    "extract_hear_embeddings",
    "evaluate_hear_run",
    "extract_reference_embeddings",
    "evaluate_reference",
    "linear_eval",
    "finetune",
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
    # one retry policy, the executor's (profile `retries`): a rule's own `retries:` would be
    # obeyed again by the Snakemake inside each SLURM job (nested retries in one allocation)
    rules_text = "".join(f.read_text() for f in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert not re.search(r"^\s+retries:", rules_text, re.M)
    assert profile["retries"] == 1
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
    cfg_file = tiny_config(tmp_path / "tiny.yaml")
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
    assert set(jobs) == SUBMITTED, jobs.keys()
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


def read_profile(profile_dir):
    """The profile as Snakemake reads it (YTE template rendered, CLI-style values)."""
    from snakemake.profiles import ProfileConfigFileParser

    with open(Path(profile_dir) / "config.yaml") as f:
        return ProfileConfigFileParser().parse(f)


@pytest.mark.parametrize("sacct", ["answers", "disabled", "absent"])
def test_status_command_is_sacct_where_it_answers_else_squeue(plugin, tmp_path, monkeypatch, sacct):
    """Without an accounting database sacct fails ("accounting storage is disabled") and the
    plugin, polling it, would wait forever: the profile then picks squeue."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if sacct != "absent":
        disabled = "echo 'Slurm accounting storage is disabled' >&2; exit 1"
        script = {"answers": "exit 0", "disabled": disabled}[sacct]
        (bin_dir / "sacct").write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    expected = "sacct" if sacct == "answers" else "squeue"
    assert read_profile(PROFILE)["slurm-status-command"] == expected


@pytest.mark.parametrize(
    "option",
    [["--set-resources", "linear_eval:runtime=60"], ["--default-resources", "mem_mb=1000"]],
)
def test_resources_on_the_command_line_replace_the_profiles_block(plugin, profile, option):
    """profiles/slurm/README.md (troubleshooting) warns of this: one --set-resources entry on
    the command line and the GPU rules lose their partition and limits; one --default-resources
    entry and every job loses the account and the CPU partition."""
    r = smk(
        "results/pretrain/audiontt/baseline/seed0/model.ckpt",
        "--workflow-profile",
        str(PROFILE),
        "--dry-run",
        "--forceall",
        *option,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    block = out.split("rule pretrain_encoder:", 1)[1].split("\n\n", 1)[0]
    resources = re.search(r"resources: (.*)", block).group(1).split(", ")
    if option[0] == "--set-resources":
        assert f"slurm_partition={partition(profile, 'build_embedded_dataset')}" in resources
        assert not any(r.startswith(("max_mem_mb", "nodes=")) for r in resources)
    else:
        assert f"slurm_partition={partition(profile, 'pretrain_encoder')}" in resources
        assert not any(r.startswith("slurm_account") for r in resources)


# How a site asks for GPUs (profile) x how many (run.gpus_per_run): the sbatch flags of a
# pre-training job. The jobs never run (FAKE_SLURM_EXIT) and leave no outputs, so the profile's
# one retry shows the attempt-2 request (twice the memory and time), capped at max_mem_mb /
# max_runtime. In the "gpus" case the jobs fail (sacct: FAILED); the others end "successfully"
# without outputs, which Snakemake retries just the same, sparing the plugin's slower polling.
CAPS = {"max_mem_mb": 20000, "max_runtime": 2000}
CAPPED = (["16000", "20000"], ["1440", "2000"])  # --mem and -t of attempts 1 and 2
TYPED = ('# gpu_model: "a100"', 'gpu_model: "a100"')
GRES = ('# gpu_model: "a100"', 'gres: "gpu:a100:1"\n      gpu: 0')
GPU_FORMS = {
    # name: (run.gpus_per_run, profile edits, GPU partition, GPU flags, (--mem, -t) per attempt)
    "gpus": (2, site_edits(), "gpu", ["--gpus=2"], (["16000", "32000"], ["1440", "1440"])),
    "typed": (2, [*site_edits(**CAPS), TYPED], "gpu", ["--gpus=a100:2"], CAPPED),
    "gres": (1, [*site_edits(**CAPS), GRES], "gpu", ["--gres=gpu:a100:1"], CAPPED),
    "cpu-only": (0, site_edits(gpu="cpu", **CAPS), "cpu", [], CAPPED),
}


@pytest.mark.parametrize("form", GPU_FORMS)
def test_gpu_request_form_count_and_capped_retry(plugin, tmp_path, form):
    gpus, edits, gpu_partition, gpu_flags, (mems, times) = GPU_FORMS[form]
    profile_dir = edited_profile(tmp_path / "profile", *edits)
    wd = tmp_path / "wd"
    stats = wd / "results/mels/pretrain/train/stats.json"  # the job never runs: any input will do
    stats.parent.mkdir(parents=True)
    stats.write_text("{}")
    env, state = fake_slurm_env(tmp_path, yaml.safe_load((profile_dir / "config.yaml").read_text()))
    failed = form == "gpus"
    env["FAKE_SLURM_EXIT"] = "1" if failed else "0"
    r = smk(
        "results/pretrain/audiontt/baseline/seed0/model.ckpt",
        "--allowed-rules",
        "pretrain_encoder",
        "--workflow-profile",
        str(profile_dir),
        *FAST_POLLING,
        "--latency-wait",
        "0",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(wd),
        "--configfile",
        str(tiny_config(tmp_path / "tiny.yaml", gpus_per_run=gpus)),
        env=env,
        timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-6000:]
    assert ("SLURM status is: 'FAILED'" in out) == failed
    attempts = submissions(state)["pretrain_encoder"]  # retries: 1 -> two submissions, no more
    assert [value(c["argv"], "--mem") for c in attempts] == mems
    assert [value(c["argv"], "-t") for c in attempts] == times
    for c in attempts:
        argv = c["argv"]
        assert [a for a in argv if a.startswith(("--gpus", "--gres"))] == gpu_flags
        assert value(argv, "-p") == gpu_partition and value(argv, "-A") == "abt"
        assert value(argv, "--cpus-per-task") == str(2 * max(gpus, 1))
        assert value(argv, "--nodes") == "1"
        assert (value(argv, "--ntasks") == "1") == (not gpu_flags)  # set for CPU jobs only
