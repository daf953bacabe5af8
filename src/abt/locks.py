"""Exclusive ownership of a folder being written (a run directory, a store, a sweep's study).

:func:`folder_lock` holds an ``fcntl.flock`` on ``<folder>/.lock`` for as long as the ``with``
block runs; a second process asking for the same folder fails at once with a message naming the
holder (pid, host, start time, command). The kernel releases a flock when its process dies, so
the lock of a killed process (SIGKILL, a node failure, a SLURM time limit) is taken over by the
next one, which says so. On file systems without flock (some Lustre mounts) an ``O_EXCL`` lock
file takes its place; its holder is known to be dead only on the same host (otherwise the message
says how to remove it).

``folder_lock(..., wait=True)`` waits for the holder instead (saying so) and yields ``True`` when
it had to wait: the workflow's pre-training job uses it, so that a second job of the same run
(``snakemake --nolock`` beside a running Snakemake) neither fails -- which would make Snakemake
delete the holder's outputs -- nor trains the run again once the holder finished it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK_NAME = ".lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class LockedError(RuntimeError):
    """The folder is being written by another live process; the message names it."""


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }


def _describe(info: dict[str, Any]) -> str:
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
        f"({info.get('command', '')!r})"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(
    folder: str | Path, what: str = "run", log: Callable[[str], None] = print, wait: bool = False
) -> Iterator[bool]:
    """Own ``folder`` (created if needed) for the ``with`` block, which gets whether it waited;
    :class:`LockedError` if a live process owns it (``wait``: wait for it to end instead)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    waited = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockedError(
                    f"{folder} is in use by another {what}: {_describe(_read(path))}. Two "
                    f"processes must not write one {what} folder: wait for it to finish, or stop "
                    "it, then run again"
                ) from None
            log(f"[abt] {folder} is in use by another {what}: {_describe(_read(path))}; waiting "
                "for it to end")  # fmt: skip
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                raise
            os.close(fd)
            fd = -1
            with _exclusive_file(folder, what, log, wait) as waited:
                yield waited
            return
        previous = _read(path)
        if previous.get("pid"):
            log(
                f"[abt] {folder}: took over the lock left by {_describe(previous)}, which ended "
                "without releasing it (killed?)"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        try:
            yield waited
        finally:
            os.ftruncate(fd, 0)  # released cleanly: no holder left behind
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if fd >= 0:
            os.close(fd)


@contextlib.contextmanager
def critical_section(path: str | Path) -> Iterator[None]:
    """A *blocking* exclusive flock on ``path`` for a short critical section shared by several
    processes (a sweep's "count trials, then ask for one"; building the HEAR kit's venv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _exclusive_file(
    folder: Path, what: str, log: Callable[[str], None], wait: bool = False
) -> Iterator[bool]:
    path = folder / (LOCK_NAME + ".excl")
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            info = _read(path)
            same_host = info.get("host") == socket.gethostname()
            if same_host and info.get("pid") and not pid_alive(int(info["pid"])):
                log(f"[abt] {folder}: removed the stale lock of {_describe(info)}")
                path.unlink(missing_ok=True)
                continue
            if wait:  # no flock to block on: poll
                if not waited:
                    log(f"[abt] {folder} is in use by another {what}: {_describe(info)}; "
                        "waiting for it to end")  # fmt: skip
                waited = True
                time.sleep(2.0)
                continue
            raise LockedError(
                f"{folder} is in use by another {what}: {_describe(info)} (this file system has "
                f"no flock; if that process is gone, delete {path})"
            ) from None
    try:
        os.write(fd, json.dumps(_holder()).encode())
        os.close(fd)
        yield waited
    finally:
        path.unlink(missing_ok=True)
