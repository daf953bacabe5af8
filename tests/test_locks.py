"""Folder locks through filelock (abt.locks): one writer per folder, the holder named, a killed
holder's lock taken over, waiting, critical sections, file systems without flock, and the package
importing and locking where ``fcntl`` does not exist (Windows)."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from abt.locks import (
    HOLDER_NAME,
    LOCK_NAME,
    SOFT_NAME,
    LockedError,
    folder_lock,
    pid_alive,
)

SRC = Path(__file__).resolve().parents[1] / "src"

HOLD = """
import sys, time
from abt.locks import folder_lock
with folder_lock(sys.argv[1], "test run", log=lambda m: print(m, flush=True)):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 60)
print("released", flush=True)
"""

#: a sitecustomize that makes `import fcntl` fail, as it does on Windows
NO_FCNTL = """
import sys

class _NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ImportError("No module named 'fcntl' (blocked by the test, as on Windows)")
        return None

sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, _NoFcntl())
"""


#: a sitecustomize that makes flock fail as on a file system without it
NO_FLOCK = """
import errno, fcntl

def _no_flock(*_a, **_k):
    raise OSError(errno.ENOSYS, "Function not implemented")

fcntl.flock = _no_flock
"""


def _env(extra_path: Path | None = None) -> dict[str, str]:
    paths = [str(extra_path)] if extra_path else []
    paths += [str(SRC), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _holder(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), *args], stdout=subprocess.PIPE,
                         text=True, env=env or _env())  # fmt: skip
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    p = _holder(tmp_path / "run")
    try:
        info = json.loads((tmp_path / "run" / HOLDER_NAME).read_text())
        assert info["pid"] == p.pid and info["host"] and info["started"]
        with pytest.raises(LockedError, match=rf"in use by another test run: pid {p.pid} on "):
            with folder_lock(tmp_path / "run", "test run", log=lambda _m: None):
                pass
    finally:
        p.kill()
        p.wait()


def test_a_killed_holders_lock_is_taken_over_and_said_so(tmp_path):
    p = _holder(tmp_path / "run")
    p.kill()
    p.wait()
    assert (tmp_path / "run" / HOLDER_NAME).exists()  # the trace of a holder that was killed
    logs = []
    with folder_lock(tmp_path / "run", "test run", log=logs.append) as waited:
        assert not waited
        assert json.loads((tmp_path / "run" / HOLDER_NAME).read_text())["pid"] == os.getpid()
    assert any(f"took over the lock left by pid {p.pid}" in m for m in logs), logs
    # released cleanly: no holder file, so the next owner takes no lock over
    assert not (tmp_path / "run" / HOLDER_NAME).exists()
    assert (tmp_path / "run" / LOCK_NAME).exists()
    logs.clear()
    with folder_lock(tmp_path / "run", "test run", log=logs.append):
        pass
    assert not logs


def test_wait_waits_for_the_holder_and_says_so(tmp_path):
    p = _holder(tmp_path / "run", "1.5")
    logs = []
    try:
        t0 = time.monotonic()
        with folder_lock(tmp_path / "run", "test run", log=logs.append, wait=True) as waited:
            assert waited and p.poll() is not None  # the holder had ended
            assert time.monotonic() > t0
    finally:
        p.kill()
        p.wait()
    assert any(f"pid {p.pid}" in m and "waiting for it to end" in m for m in logs), logs
    assert not any("took over" in m for m in logs)  # it released cleanly


def test_critical_sections_of_two_processes_do_not_interleave(tmp_path):
    code = textwrap.dedent("""
        import sys, time
        from abt.locks import critical_section
        for _ in range(5):
            with critical_section(sys.argv[1]):
                with open(sys.argv[2], "a") as fh:
                    fh.write(sys.argv[3] + "<")
                    fh.flush()
                    time.sleep(0.02)
                    fh.write(sys.argv[3] + ">")
    """)
    out = tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cs.lock"), str(out), t],
                              env=_env()) for t in "ab"]  # fmt: skip
    assert [p.wait(60) for p in procs] == [0, 0]
    text = out.read_text()
    pairs = [text[i : i + 4] for i in range(0, len(text), 4)]
    assert len(pairs) == 10 and all(q in ("a<a>", "b<b>") for q in pairs), text


def test_pid_alive():
    assert pid_alive(os.getpid())
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not pid_alive(p.pid)


def test_a_file_system_without_flock_uses_a_marker_file(tmp_path, monkeypatch):
    """Some Lustre mounts answer flock with ENOSYS: filelock falls back to an O_EXCL marker file
    (said in the log); a second owner is refused with the message on how to clear a dead one."""
    fcntl = pytest.importorskip("fcntl")

    def no_flock(*_a, **_k):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    logs = []
    with folder_lock(tmp_path / "run", "test run", log=logs.append):
        assert any("has no flock (ENOSYS)" in m for m in logs), logs
        assert (tmp_path / "run" / SOFT_NAME).exists()
        with pytest.raises(LockedError, match=rf"pid {os.getpid()} .*no flock; if that process "
                                              rf"is gone, delete .*{SOFT_NAME}"):  # fmt: skip
            with folder_lock(tmp_path / "run", "test run", log=logs.append):
                pass
    assert not (tmp_path / "run" / SOFT_NAME).exists()  # the marker is removed on release


def test_without_flock_a_killed_holder_on_this_host_is_taken_over(tmp_path):
    """Two processes on a file system without flock: the second is refused while the first
    lives (filelock 3.32's own fallback would delete the live holder's marker and let both in),
    and takes the marker of a killed holder on this host over."""
    pytest.importorskip("fcntl")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_FLOCK)
    env = _env(site)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")],
                         stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    lines = [p.stdout.readline().strip(), p.stdout.readline().strip()]
    assert "has no flock" in lines[0] and lines[1] == "locked", lines
    try:
        r = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path / "run"), "0"], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode != 0 and f"in use by another test run: pid {p.pid}" in r.stderr
        assert "no flock; if that process is gone, delete" in r.stderr
    finally:
        p.kill()
        p.wait()
    r = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path / "run"), "0"], env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"took over the lock left by pid {p.pid}" in r.stdout and "released" in r.stdout


def test_import_and_locks_work_without_fcntl(tmp_path):
    """Windows has no fcntl: the package, the CLI and every module that locks import without it,
    and the locks still name the holder, refuse a second writer and take a killed one's over."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_FCNTL)
    env = _env(site)
    check = textwrap.dedent("""
        import sys
        try:
            import fcntl  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("the test's sitecustomize did not block fcntl")
        import abt, abt.cli, abt.locks, abt.outputs, abt.trainer, abt.sweeps, abt.data.store
        import abt.jobs.data, abt.jobs.pretrain, abt.evaluation.heareval_env
        assert "fcntl" not in sys.modules, "something imported fcntl"
        assert abt.cli.main(["--help"]) in (0, None)
    """)
    r = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stdout + r.stderr
    p = _holder(tmp_path / "run", env=env)
    try:
        refuse = ("import sys\nfrom abt.locks import folder_lock, LockedError\ntry:\n"
                  "    with folder_lock(sys.argv[1], 'test run'): pass\n"
                  "except LockedError as e:\n    print(e)\n")  # fmt: skip
        r = subprocess.run([sys.executable, "-c", refuse, str(tmp_path / "run")], env=env,
                           capture_output=True, text=True)  # fmt: skip
        assert f"in use by another test run: pid {p.pid}" in r.stdout, r.stdout + r.stderr
    finally:
        p.kill()
        p.wait()
    r = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path / "run"), "0"], env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert f"took over the lock left by pid {p.pid}" in out and "released" in out, out
