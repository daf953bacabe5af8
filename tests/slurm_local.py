"""Helpers for the SLURM tests: edited copies of profiles/slurm, tiny configurations, and a real
single-node SLURM cluster on localhost (Debian's slurm-wlm + munge, optionally slurmdbd with
MariaDB for accounting), started and stopped by the tests themselves.

`LocalSlurm(root, accounting=...)` writes slurm.conf (one node, `localhost`, with the CPUs and
memory `slurmd -C` reports; partitions `cpu` (default, no time limit) and `short` (MaxTime
SHORT_MAX_MINUTES)), starts munged, [MariaDB, slurmdbd,] slurmctld and slurmd with all state,
logs and sockets under `root`, on free localhost ports, and waits until `sinfo` shows the node
idle. Commands reach it through `env` (SLURM_CONF; and, inside jobs, an `srun` wrapper first on
PATH that sets it again: the plugin's job step removes SLURM_* variables before it calls srun,
which on a real cluster finds /etc/slurm/slurm.conf). It needs root and the Debian packages
(`apt-get install slurm-wlm munge`, plus `slurmdbd mariadb-server` for accounting);
`LocalSlurm.missing()` says what is absent.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm"
SHORT_MAX_MINUTES = 2000  # the `short` partition's MaxTime: below a doubled 24 h pre-training
ACCOUNT = "abt"  # the SLURM account the accounting cluster knows (and the profiles name)
# A small workflow target and the rules whose jobs it submits (baseline_table is a localrule)
TARGETS = ["results/pretrain/audiontt/baseline/seed0/model.ckpt", "results/baselines/summary.csv"]
SUBMITTED = {"build_embedded_dataset", "compute_pretrain_mels", "task_baseline", "pretrain_encoder"}

DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo"]
ACCOUNTING_DAEMONS = ["slurmdbd", "sacctmgr", "sacct", "mariadbd", "mariadb-install-db", "mariadb"]


def edited_profile(dest, *edits):
    """A copy of profiles/slurm/config.yaml in `dest` with `(old, new)` text edits, as a user
    makes them (each `old` must occur in the shipped profile). Returns the profile folder."""
    text = (PROFILE / "config.yaml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(text)
    return dest


def site_edits(cpu="cpu", gpu="gpu", account=ACCOUNT, max_mem_mb=None, max_runtime=None):
    """The EDIT lines of the profile: account, partitions, the GPU partition's limits."""
    edits = [
        ('slurm_account: "your_account"', f'slurm_account: "{account}"'),
        ('slurm_partition: "your_cpu_partition"', f'slurm_partition: "{cpu}"'),
        ('slurm_partition: "your_gpu_partition"', f'slurm_partition: "{gpu}"'),
    ]
    if max_mem_mb is not None:
        edits.append(("max_mem_mb: 32000", f"max_mem_mb: {max_mem_mb}"))
    if max_runtime is not None:
        edits.append(("max_runtime: 1440", f"max_runtime: {max_runtime}"))
    return edits


def tiny_config(path, gpus_per_run=1, monitor=False):
    """The shipped config.yaml scaled down to one small embedded task (minutes on a CPU)."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["embedded"].update(scale=0.05, task_scale=None, tasks=["embedded_envsounds"])
    cfg["preprocess"]["stats"]["n_crops"] = 500
    cfg["pretrain"].update(epochs=1, batch_size=32)
    cfg["run"]["gpus_per_run"] = gpus_per_run
    if not monitor:
        cfg["monitor"]["task"] = None
    cfg["report"].update(studies=[], hear_l=["embedded_envsounds"])
    Path(path).write_text(yaml.safe_dump(cfg))
    return Path(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scontrol_fields(text):
    """`scontrol show job -o` / `show partition -o` lines -> [{Key: value}] (one per line)."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            rows.append(dict(re.findall(r"(\S+?)=(\S*)", line)))
    return rows


class LocalSlurm:
    def __init__(self, root, accounting=False):
        self.root = Path(root)
        self.accounting = accounting
        self.conf = self.root / "slurm.conf"
        self.logs = self.root / "log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        self.env["SLURM_CONF"] = str(self.conf)
        self.pidfiles = []
        self.cpus = self.memory_mb = self.db_proc = None

    @staticmethod
    def missing(accounting=False):
        """Why a local cluster cannot run here (None when it can)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return "needs root (slurmd and munged run as root here)"
        tools = DAEMONS + (ACCOUNTING_DAEMONS if accounting else [])
        absent = [t for t in tools if shutil.which(t) is None]
        if absent:
            pkgs = "slurm-wlm munge" + (" slurmdbd mariadb-server" if accounting else "")
            return f"{', '.join(absent)} not installed (apt-get install {pkgs}; .ci/run does)"
        return None

    def run(self, *cmd, check=True, timeout=60):
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def _daemon(self, pidfile, *cmd):
        """Start a daemon that forks itself; wait for its pid file."""
        self.pidfiles.append(pidfile)
        subprocess.run(cmd, env=self.env, check=True, capture_output=True, timeout=60)
        self._wait(lambda: pidfile.exists() and pidfile.read_text().strip(), f"{cmd[0]} pid file")

    def _wait(self, ready, what, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs.glob("*"))
        raise RuntimeError(f"local SLURM: no {what} after {timeout} s\n{logs}")

    def start(self):
        for d in ("state", "spool", "log", "munge", "bin"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        self.env["PATH"] = f"{srun.parent}{os.pathsep}{self.env.get('PATH', '')}"
        (self.root / "munge").chmod(0o755)  # the socket must be reachable by every user
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        sock = self.root / "munge" / "munge.sock"
        self._daemon(
            self.root / "munge" / "munged.pid",
            "munged",
            "--force",
            f"--socket={sock}",
            f"--key-file={key}",
            f"--log-file={self.logs / 'munged.log'}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        )
        node = self.run("slurmd", "-C").stdout.splitlines()[0]
        self.cpus = int(re.search(r"\bCPUs=(\d+)", node).group(1))
        self.memory_mb = int(re.search(r"\bRealMemory=(\d+)", node).group(1))
        node = re.sub(r"^NodeName=\S+", "NodeName=localhost NodeAddr=127.0.0.1", node)
        ports = {"ctld": free_port(), "d": free_port(), "dbd": free_port(), "db": free_port()}
        accounting = ["AccountingStorageType=accounting_storage/none"]
        if self.accounting:
            self._start_database(ports, sock)
            accounting = [
                "AccountingStorageType=accounting_storage/slurmdbd",
                "AccountingStorageHost=localhost",
                f"AccountingStoragePort={ports['dbd']}",
                f"AccountingStoragePass={sock}",  # the munge socket for slurmdbd connections
            ]
        r = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=abttest",
                    "SlurmctldHost=localhost",
                    f"SlurmctldPort={ports['ctld']}",
                    f"SlurmdPort={ports['d']}",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={sock}",
                    "CredType=cred/munge",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={r / 'state'}",
                    f"SlurmdSpoolDir={r / 'spool'}",
                    f"SlurmctldPidFile={r / 'slurmctld.pid'}",
                    f"SlurmdPidFile={r / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.logs / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    *accounting,
                    "JobCompType=jobcomp/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "MinJobAge=3600",  # finished jobs stay in `scontrol show job` for the asserts
                    node,
                    "PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                    f"PartitionName=short Nodes=localhost MaxTime={SHORT_MAX_MINUTES} State=UP",
                    "",
                ]
            )
        )
        if self.accounting:
            self._start_slurmdbd(ports, sock)
        self._daemon(r / "slurmctld.pid", "slurmctld", "-f", str(self.conf))
        self._daemon(r / "slurmd.pid", "slurmd", "-f", str(self.conf), "-N", "localhost")

        def idle():
            out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
            return out and all(s == "idle" for s in out)

        self._wait(idle, "idle node")
        return self

    def _start_database(self, ports, sock):
        db = self.root / "db"
        self.run(
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={db}",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        )
        self.db_socket = self.root / "db.sock"
        pidfile = self.root / "db.pid"
        self.pidfiles.append(pidfile)
        self.db_proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={db}",
                f"--socket={self.db_socket}",
                f"--port={ports['db']}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--user=root",
                f"--pid-file={pidfile}",
                f"--log-error={self.logs / 'mariadb.log'}",
                "--innodb-buffer-pool-size=32M",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        sql = ["mariadb", "--no-defaults", "-S", str(self.db_socket), "-uroot", "-e"]
        self._wait(lambda: self.run(*sql, "SELECT 1", check=False).returncode == 0, "MariaDB")
        self.run(
            *sql,
            "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1' "
            "IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';",
        )

    def _start_slurmdbd(self, ports, sock):
        dbd = self.root / "slurmdbd.conf"  # slurmdbd reads it next to SLURM_CONF
        dbd.write_text(
            "\n".join(
                [
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={sock}",
                    "DbdHost=localhost",
                    f"DbdPort={ports['dbd']}",
                    "SlurmUser=root",
                    f"LogFile={self.logs / 'slurmdbd.log'}",
                    f"PidFile={self.root / 'slurmdbd.pid'}",
                    "StorageType=accounting_storage/mysql",
                    "StorageHost=127.0.0.1",
                    f"StoragePort={ports['db']}",
                    "StorageUser=slurm",
                    "StoragePass=slurm",
                    "StorageLoc=slurm_acct_db",
                    "",
                ]
            )
        )
        dbd.chmod(0o600)
        self._daemon(self.root / "slurmdbd.pid", "slurmdbd")
        add = ["sacctmgr", "--immediate", "add"]
        self._wait(
            lambda: self.run(*add, "cluster", "abttest", check=False).returncode == 0,
            "cluster registered in slurmdbd",
        )
        self.run(*add, "account", ACCOUNT)
        self.run(*add, "user", "root", f"account={ACCOUNT}")

    def jobs(self):
        """Every job slurmctld remembers (MinJobAge: an hour), as `scontrol show job` fields."""
        return scontrol_fields(self.run("scontrol", "show", "job", "-o").stdout)

    def stop(self):
        if self.conf.exists():
            self.run("scancel", "--user", "root", check=False)
        for pidfile in reversed(self.pidfiles):  # slurmd first, munged last
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                continue
            end = time.monotonic() + 30
            while alive(pid) and time.monotonic() < end:
                time.sleep(0.2)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.db_proc is not None:
            self.db_proc.wait(timeout=30)  # our child: reap it


def alive(pid):
    """True while `pid` runs (a zombie, which nobody reaps in some containers, has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
