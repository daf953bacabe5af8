"""profiles/slurm against a real SLURM: one node on localhost (tests/slurm_local.py), started by
these tests, with the real sbatch/squeue/sacct and the SLURM executor plugin.

- Without accounting (AccountingStorageType=accounting_storage/none, where sacct fails): a small
  workflow target on a CPU-only cluster, configured as profiles/slurm/README.md says
  (run.gpus_per_run: 0, the GPU block's partition set to the CPU partition).
- With accounting (slurmdbd + MariaDB): a pre-training job that fails on purpose, retried once
  by the executor with more memory and time, capped at the partition's limits.

Skipped, with the reason, where SLURM cannot run (no root, packages not installed: .ci/run
installs them when it can; there, ABT_REQUIRE_REAL_SLURM=1 turns a skip into a failure). The
sbatch flags for GPUs, which one CPU node cannot show, are tested with the fake SLURM
(tests/test_slurm.py).
"""

import os
import subprocess
import sys

import pytest
from slurm_local import (
    ACCOUNT,
    ROOT,
    SHORT_MAX_MINUTES,
    SUBMITTED,
    TARGETS,
    LocalSlurm,
    edited_profile,
    site_edits,
    tiny_config,
)

pytestmark = pytest.mark.slow
CKPT = TARGETS[0]
# the first status check after 1 s (default 40), then 1 s more, +10 s per check that finds no
# finished job (the plugin's backoff, up to 180 s)
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1"]
FAST_POLLING += ["--seconds-between-status-checks", "1"]


def cluster(tmp_path_factory, accounting):
    reason = LocalSlurm.missing(accounting)
    if reason:
        if os.environ.get("ABT_REQUIRE_REAL_SLURM") == "1":
            pytest.fail(f"ABT_REQUIRE_REAL_SLURM=1 but no local SLURM: {reason}")
        pytest.skip(f"no local SLURM{' with accounting' if accounting else ''}: {reason}")
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm"), accounting=accounting)
    try:
        slurm.start()
    except BaseException:
        slurm.stop()
        raise
    return slurm


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A cluster without an accounting database: sacct fails, squeue works."""
    slurm = cluster(tmp_path_factory, accounting=False)
    yield slurm
    slurm.stop()


def driver(slurm, wd, *args):
    """The Snakemake command line and environment, as a user runs it on the login node."""
    cmd = [sys.executable, "-m", "snakemake", *args, *FAST_POLLING]
    cmd += ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(wd)]
    return cmd, dict(slurm.env, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module", autouse=True)
def failing_run(tmp_path_factory):
    """The retry test's run, on a cluster with accounting (slurmdbd + MariaDB), started in the
    background before this module's tests: its jobs take seconds, the plugin's polling after a
    failure (10 s longer each time) most of its two minutes, which the other test overlaps.

    A pre-training job fails on purpose (an unreadable input store) on the `short` partition
    (MaxTime SHORT_MAX_MINUTES, below twice the 24 h the job asks for first). Yields a dict
    (slurm, proc, log, cap_mem), or a string: why no cluster could run it."""
    try:
        slurm = cluster(tmp_path_factory, accounting=True)
    except pytest.skip.Exception as skipped:
        yield str(skipped)
        return
    tmp = tmp_path_factory.mktemp("failing_run")
    cap_mem = min(slurm.memory_mb, 24000)  # below 2 x 16 GB: the retry's request is capped
    profile = edited_profile(
        tmp / "profile",
        *site_edits(gpu="short", max_mem_mb=cap_mem, max_runtime=SHORT_MAX_MINUTES),
    )
    stats = tmp / "wd" / "results/mels/pretrain/train/stats.json"
    stats.parent.mkdir(parents=True)
    stats.write_text("not a mel store")
    cmd, env = driver(
        slurm,
        tmp / "wd",
        CKPT,
        "--allowed-rules",
        "pretrain_encoder",  # no upstream jobs: the garbage store is the input
        "--workflow-profile",
        str(profile),
        "--configfile",
        str(tiny_config(tmp / "tiny.yaml", gpus_per_run=0)),
    )
    log = tmp / "snakemake.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield {"slurm": slurm, "proc": proc, "log": log, "cap_mem": cap_mem}
    if proc.poll() is None:
        proc.terminate()  # Snakemake cancels its SLURM jobs
        proc.wait(timeout=120)
    slurm.stop()


def smk(slurm, wd, *args, timeout=1200):
    cmd, env = driver(slurm, wd, *args)
    # a hang (a status command that never reports) fails at the timeout, never blocks
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def slurm_time(minutes):
    """A time limit as SLURM prints it: 1440 -> 1-00:00:00, 60 -> 01:00:00."""
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days}-" * bool(days) + f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def status_command(slurm, monkeypatch):
    """The status command profiles/slurm picks on this cluster (its YTE template, rendered)."""
    from snakemake.profiles import ProfileConfigFileParser

    monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
    with open(ROOT / "profiles" / "slurm" / "config.yaml") as f:
        return ProfileConfigFileParser().parse(f)["slurm-status-command"]


def rule_of(job):
    """The rule a job ran, from the comment the plugin gives it (rule_<name>[_wildcards_...])."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def test_cpu_only_cluster_without_accounting_runs_a_workflow_target(slurm, tmp_path, monkeypatch):
    # no accounting: sacct fails, and the profile polls squeue instead (with sacct, the plugin
    # would wait forever for the jobs' states: the run below would time out)
    assert slurm.run("sacct", "-X", "-j", "1", check=False).returncode != 0
    assert status_command(slurm, monkeypatch) == "squeue"
    # the README's CPU-only recipe: the GPU block's partition is the CPU partition, and the
    # partition's memory (the node's) caps the memory requests
    profile = edited_profile(
        tmp_path / "profile", *site_edits(gpu="cpu", max_mem_mb=slurm.memory_mb)
    )
    wd = tmp_path / "wd"
    wd.mkdir()
    r = smk(
        slurm,
        wd,
        *TARGETS,
        "--workflow-profile",
        str(profile),
        "--configfile",
        str(tiny_config(tmp_path / "tiny.yaml", gpus_per_run=0)),
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    assert all((wd / target).stat().st_size > 0 for target in TARGETS)
    assert "localrule baseline_table:" in out  # a localrule: runs here, never submitted

    jobs = {rule_of(j): j for j in slurm.jobs()}
    assert set(jobs) == SUBMITTED, jobs.keys()
    for job in jobs.values():
        assert job["JobState"] == "COMPLETED", job
        assert job["Partition"] == "cpu" and job["Account"] == ACCOUNT, job
        assert not {"TresPerJob", "TresPerNode", "TresPerTask"} & set(job), job  # no GPUs
    pretrain = jobs["pretrain_encoder"]
    assert pretrain["TimeLimit"] == slurm_time(1440)
    assert pretrain["MinMemoryNode"] == f"{min(16000, slurm.memory_mb)}M"
    assert pretrain["NumCPUs"] == "2" and pretrain["NumNodes"] == "1"
    data = jobs["build_embedded_dataset"]
    assert data["TimeLimit"] == slurm_time(60) and data["MinMemoryNode"] == "4000M"
    assert data["NumCPUs"] == "2"
    assert jobs["task_baseline"]["NumCPUs"] == "1"


def test_failed_job_is_retried_once_by_the_executor_within_the_partitions_limits(
    failing_run, monkeypatch
):
    """Two jobs, each running the rule once (one job step: no retry inside the allocation), the
    second asking for twice the memory and time, capped at the profile's max_mem_mb and
    max_runtime (the partition's limits), so that SLURM accepts and runs it."""
    if isinstance(failing_run, str):
        pytest.skip(failing_run)
    slurm, cap_mem = failing_run["slurm"], failing_run["cap_mem"]
    assert status_command(slurm, monkeypatch) == "sacct"  # accounting: sacct answers
    rc = failing_run["proc"].wait(timeout=1200)
    out = failing_run["log"].read_text()
    assert rc != 0, out[-8000:]
    assert out.count("SLURM status is: 'FAILED'") == 2, out[-8000:]
    assert "Reason:" in out  # sacct's failure reasons (squeue has none)

    rows = slurm.run(
        "sacct", "--noheader", "--parsable2", "--starttime", "now-1hour",
        "--format=JobID,JobName,State,Partition,Account,ReqMem,Timelimit",
    ).stdout.splitlines()  # fmt: skip
    ids = [row.split("|")[0] for row in rows]
    jobs = [row.split("|") for row in rows if "." not in row.split("|")[0]]
    steps = [i for i in ids if "." in i and i.split(".")[1].isdigit()]
    assert len(jobs) == 2, rows  # retries: 1, applied once, by the executor
    assert [j[2] for j in jobs] == ["FAILED", "FAILED"]
    assert all(j[3] == "short" and j[4] == ACCOUNT for j in jobs), jobs
    assert [j[5] for j in jobs] == [f"{min(16000, cap_mem)}M", f"{cap_mem}M"]
    assert [j[6] for j in jobs] == [slurm_time(1440), slurm_time(SHORT_MAX_MINUTES)]
    # the rule ran once in each allocation: one srun step per job (with a rule-level `retries`,
    # the Snakemake inside the first job retried it there: steps .0 and .1)
    assert sorted(steps) == sorted(f"{j[0]}.0" for j in jobs), rows
