"""A fake SLURM for tests: sbatch, srun, sacct, squeue, scancel, sinfo, scontrol, sacctmgr, sshare.

The executables next to this file run ``$FAKE_SLURM_PYTHON fake_slurm.py <command> ARGS``
(python3 when unset). Put this folder first on PATH and set FAKE_SLURM_DIR to a writable
folder. Every call is appended to ``$FAKE_SLURM_DIR/calls.jsonl`` as
``{"cmd": ..., "argv": [...], "cwd": ..., ...}``.

sbatch parses the options the SLURM executor plugin passes (``--parsable`` output: the job id),
writes ``jobs/<id>.json`` (name, state) and starts the job in the background on this machine:
``--wrap`` commands with ``/bin/sh -c``, batch scripts (a file, or ``/dev/stdin``) with
``/bin/sh``, with SLURM_JOB_ID etc. set, output to ``--output`` (``%j`` replaced) in ``-D``
(FAKE_SLURM_SYNC=1: sbatch returns when the job has ended, which spares tests the plugin's
growing status-check interval; FAKE_SLURM_EXIT=<code>: jobs are recorded but never run, and end
at once with that exit status, for tests of the sbatch flags alone).
sacct and squeue report PENDING / RUNNING / COMPLETED / FAILED / CANCELLED from those files in
the ``<id>|<state>`` format the plugin parses. srun strips its options and runs the command.

Environment: FAKE_SLURM_ACCOUNTS (comma-separated accounts sacctmgr lists; empty: none),
FAKE_SLURM_PARTITIONS (sinfo's partitions, the default one marked ``*``).
Only the standard library; runs on any Python 3.8+.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

# sbatch/srun options that take a separate value (``--opt value``); ``--opt=value`` always works
VALUE_OPTIONS = {
    "-A",
    "--account",
    "-p",
    "--partition",
    "-t",
    "--time",
    "-J",
    "--job-name",
    "-o",
    "--output",
    "-e",
    "--error",
    "-D",
    "--chdir",
    "--comment",
    "--clusters",
    "-M",
    "-C",
    "--constraint",
    "--mem",
    "--mem-per-cpu",
    "--mem-per-gpu",
    "-c",
    "--cpus-per-task",
    "--cpus-per-gpu",
    "-n",
    "--ntasks",
    "-N",
    "--nodes",
    "-G",
    "--gpus",
    "--gres",
    "--qos",
    "-a",
    "--array",
    "--exclude",
    "--reservation",
    "--jobid",
    "--export",
    "--cpu-bind",
}


def state_dir():
    d = os.environ.get("FAKE_SLURM_DIR")
    if not d:
        sys.exit("fake slurm: set FAKE_SLURM_DIR to a writable folder")
    os.makedirs(os.path.join(d, "jobs"), exist_ok=True)
    return d


@contextmanager
def locked(name):
    with open(os.path.join(state_dir(), name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def record(cmd, argv, **extra):
    entry = {"cmd": cmd, "argv": list(argv), "cwd": os.getcwd(), "time": time.time(), **extra}
    with locked("calls"), open(os.path.join(state_dir(), "calls.jsonl"), "a") as f:
        f.write(json.dumps(entry) + "\n")


def parse_options(argv):
    """Split argv into ({option: value}, rest): options until the first positional argument."""
    opts, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        if a.startswith("--") and "=" in a:
            key, value = a.split("=", 1)
        elif a in VALUE_OPTIONS and i + 1 < len(argv):
            key, value = a, argv[i + 1]
            i += 1
        elif not a.startswith("--") and len(a) > 2 and a[:2] in VALUE_OPTIONS:
            key, value = a[:2], a[2:]  # -n1, -t60
        else:
            key, value = a, True
        opts[key] = value
        i += 1
    return opts, argv[i:]


def job_file(jobid):
    return os.path.join(state_dir(), "jobs", f"{jobid}.json")


def read_job(jobid):
    try:
        with open(job_file(jobid)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_job(jobid, **fields):
    with locked("jobs"):
        job = read_job(jobid) or {}
        job.update(fields)
        tmp = job_file(jobid) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(job, f)
        os.replace(tmp, job_file(jobid))
    return job


def all_jobs():
    d = os.path.join(state_dir(), "jobs")
    jobs = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".json"):
            job = read_job(name[: -len(".json")])
            if job:
                jobs.append(job)
    return jobs


def next_jobid():
    path = os.path.join(state_dir(), "counter")
    with locked("counter"):
        try:
            with open(path) as f:
                n = int(f.read().strip() or 1000)
        except OSError:
            n = 1000
        n += 1
        with open(path, "w") as f:
            f.write(str(n))
    return str(n)


def opt(opts, *names, default=None):
    for n in names:
        if n in opts:
            return opts[n]
    return default


def array_indices(spec):
    """'1-3' / '1,4' / '1-7:2' (a '%limit' suffix is ignored) -> [1, 2, 3] ..."""
    out = []
    for part in str(spec).split("%")[0].split(","):
        step = 1
        if ":" in part:
            part, step = part.split(":")
            step = int(step)
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1, step))
        elif part:
            out.append(int(part))
    return out


def sbatch(argv):
    opts, rest = parse_options(argv)
    script = None
    if "--wrap" in opts:
        command = ["/bin/sh", "-c", opts["--wrap"]]
    elif rest:
        if rest[0] in ("/dev/stdin", "-"):
            script = sys.stdin.read()
        else:
            with open(rest[0]) as f:
                script = f.read()
        command = None
    else:
        script = sys.stdin.read()
        command = None
    record("sbatch", argv, options=opts, script=script)

    jobid = next_jobid()
    if script is not None:
        path = os.path.join(state_dir(), f"job_{jobid}.sh")
        with open(path, "w") as f:
            f.write(script)
        command = ["/bin/sh", path, *rest[1:]]

    workdir = opt(opts, "-D", "--chdir", default=os.getcwd())
    name = opt(opts, "-J", "--job-name", default="sbatch")
    output = opt(opts, "-o", "--output", default=os.path.join(workdir, "slurm-%j.out"))
    tasks = array_indices(opts["--array"]) if opt(opts, "-a", "--array") else [None]
    for task in tasks:
        tid = jobid if task is None else f"{jobid}_{task}"
        write_job(
            tid,
            id=tid,
            name=name,
            state="PENDING",
            account=opt(opts, "-A", "--account"),
            partition=opt(opts, "-p", "--partition"),
            command=command,
        )
        env = dict(os.environ)
        env.update(
            SLURM_JOB_ID=jobid if task is None else tid,
            SLURM_JOBID=jobid if task is None else tid,
            SLURM_JOB_NAME=str(name),
            SLURM_SUBMIT_DIR=os.getcwd(),
            SLURM_CPUS_PER_TASK=str(opt(opts, "-c", "--cpus-per-task", default=1)),
        )
        gpus = opt(opts, "-G", "--gpus")
        if gpus:
            env["SLURM_GPUS"] = str(gpus)
        if task is not None:
            env.update(SLURM_ARRAY_JOB_ID=jobid, SLURM_ARRAY_TASK_ID=str(task))
        if os.environ.get("FAKE_SLURM_EXIT"):
            code = int(os.environ["FAKE_SLURM_EXIT"])
            write_job(tid, state="COMPLETED" if code == 0 else "FAILED", exit_code=code)
            continue
        log = str(output).replace("%j", jobid).replace("%A", jobid)
        log = log.replace("%a", "" if task is None else str(task))
        # the job: a runner process (this file with "--run-job"), detached so that sbatch returns
        # at once, or waited for with FAKE_SLURM_SYNC=1 (the job has ended when sbatch returns)
        runner = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--run-job", tid, log],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if os.environ.get("FAKE_SLURM_SYNC") == "1":
            runner.wait()
    print(jobid if "--parsable" in opts else f"Submitted batch job {jobid}")
    return 0


def run_job(tid, log):
    job = read_job(tid)
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "a") as out:
        proc = subprocess.Popen(job["command"], stdout=out, stderr=subprocess.STDOUT)
        write_job(tid, state="RUNNING", pid=proc.pid, start=time.time())
        rc = proc.wait()
    if (read_job(tid) or {}).get("state") != "CANCELLED":
        write_job(tid, state="COMPLETED" if rc == 0 else "FAILED", exit_code=rc, end=time.time())
    return 0


def matches(job, opts):
    name = opt(opts, "--name", "-n")
    if name and job.get("name") not in str(name).split(","):
        return False
    ids = opt(opts, "-j", "--jobs")
    if ids:
        wanted = {i.split(".")[0] for i in str(ids).split(",")}
        return job["id"] in wanted or job["id"].split("_")[0] in wanted
    return True


def sacct(argv):
    record("sacct", argv)
    opts, _ = parse_options_loose(argv)
    fmt = str(opt(opts, "--format", "-o", default="")).lower()
    if "state" not in fmt:  # Reason / Account / NodeList queries: nothing to report
        return 0
    for job in all_jobs():
        if matches(job, opts):
            print(f"{job['id']}|{job['state']}")
    return 0


def squeue(argv):
    record("squeue", argv)
    opts, _ = parse_options_loose(argv)
    for job in all_jobs():
        if matches(job, opts):
            print(f"{job['id']}|{job['state']}")
    return 0


def parse_options_loose(argv):
    """Query tools: every ``--opt value``/``-x value`` pair, flags where no value follows."""
    opts, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" in a:
            key, value = a.split("=", 1)
        elif a.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            key, value = a, argv[i + 1]
            i += 1
        else:
            key, value = a, True
        opts[key] = value
        i += 1
    return opts, []


def scancel(argv):
    record("scancel", argv)
    for jobid in (a for a in argv if not a.startswith("-")):
        for job in all_jobs():
            if job["id"] == jobid or job["id"].split("_")[0] == jobid:
                write_job(job["id"], state="CANCELLED")
                if job.get("pid"):
                    try:
                        os.kill(job["pid"], signal.SIGTERM)
                    except OSError:
                        pass
    return 0


def srun(argv):
    """Inside a job: run the command after the options (``srun -n1 --cpus-per-task=2 cmd ...``)."""
    opts, rest = parse_options(argv)
    record("srun", argv, options=opts, job_id=os.environ.get("SLURM_JOB_ID"))
    if not rest:
        sys.exit("fake srun: no command")
    sys.stdout.flush()
    os.execvp(rest[0], rest)


def sinfo(argv):
    record("sinfo", argv)
    parts = os.environ.get("FAKE_SLURM_PARTITIONS", "cpu*,gpu").split(",")
    print("PARTITION")
    print("\n".join(p for p in parts if p))
    return 0


def scontrol(argv):
    record("scontrol", argv)
    if argv[:2] == ["show", "config"]:
        print("MaxArraySize            = 1001")
        print("MinJobAge               = 300 sec")
    return 0


def sacctmgr(argv):
    record("sacctmgr", argv)
    for account in os.environ.get("FAKE_SLURM_ACCOUNTS", "").split(","):
        if account.strip():
            print(f"{account.strip():>20}")
    return 0


def sshare(argv):
    record("sshare", argv)
    return 0


COMMANDS = {
    f.__name__: f for f in (sbatch, srun, sacct, squeue, scancel, sinfo, scontrol, sacctmgr, sshare)
}


def main(cmd, argv):
    return COMMANDS[cmd](argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run-job"]:
        sys.exit(run_job(sys.argv[2], sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        sys.exit(main(sys.argv[1], sys.argv[2:]))
    sys.exit("usage: fake_slurm.py {" + ",".join(COMMANDS) + "} ARGS...")
