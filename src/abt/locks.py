"""Exclusive ownership of a folder being written (a run directory, a store, a sweep's study).

:func:`folder_lock` holds a lock on ``<folder>/.lock`` for as long as the ``with`` block runs; a
second process asking for the same folder fails at once with a message naming the holder (pid,
host, start time, command). The locks come from ``filelock``, so they work wherever Python does:
``flock`` on Linux and macOS, ``LockFileEx`` on Windows (no ``fcntl`` needed: ``import abt`` and the
CLI work there). The operating system releases these locks when their process dies, so the lock
of a killed process (SIGKILL, a node failure, a SLURM time limit) is taken over by the next one,
which says so. On file systems without flock (some Lustre mounts) an ``O_EXCL`` marker file,
``<folder>/.lock.excl`` (filelock's ``SoftFileLock``), takes its place: its holder is known to be
dead only on the same host (filelock removes it then; otherwise the message says how to remove
it). abt switches to it itself (``fallback_to_soft=False``): filelock's own fallback reuses the
lock file's name and, in filelock 3.32, deletes a live holder's marker when it falls back.

Who holds a folder is written to ``<folder>/.lock.holder`` (JSON: pid, host, since when, command)
once the lock is taken, and removed when it is released cleanly: a holder file found by the next
owner is the trace of a holder that was killed. It is a file of its own because the lock file is
filelock's (its content is filelock's marker on file systems without flock, and Windows forbids
reading a locked byte range).

``folder_lock(..., wait=True)`` waits for the holder instead (saying so) and yields ``True`` when
it had to wait: the workflow's pre-training job uses it, so that a second job of the same run
(``snakemake --nolock`` beside a running Snakemake) neither fails -- which would make Snakemake
delete the holder's outputs -- nor trains the run again once the holder finished it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock.holder"
SOFT_NAME = ".lock.excl"
#: the entries a locked folder holds besides its contents (:mod:`abt.outputs` ignores them)
LOCK_FILES = (LOCK_NAME, HOLDER_NAME, SOFT_NAME)
#: what flock answers on a file system that does not implement it
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
#: seconds between two attempts while waiting for a holder
POLL_S = 0.2


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
    if not info.get("pid"):
        return "a process that has not named itself yet"
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
        f"({info.get('command', '')!r})"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _clear(path: Path) -> None:
    """Remove a holder file; emptied instead where it cannot be removed (Windows, while another
    process reads it)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        with contextlib.suppress(OSError):
            path.write_text("")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return _win_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _win_pid_alive(pid: int) -> bool:  # pragma: no cover  (Windows only)
    import ctypes
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    k32.OpenProcess.restype = wintypes.HANDLE
    k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    handle = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = wintypes.DWORD()
        if not k32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        k32.CloseHandle(handle)


def _native(path: Path) -> filelock.BaseFileLock:
    """The platform's lock on ``path`` (flock, LockFileEx; filelock's marker file where Python
    has neither), without filelock's own fallback to a marker file."""
    return filelock.FileLock(str(path), thread_local=False, fallback_to_soft=False)


def _attempt(lock: filelock.BaseFileLock, timeout: float) -> None:
    """Acquire, blocking (``timeout`` < 0) or not (0). Not blocking, a second attempt follows a
    failed one: an attempt on a marker file that finds a dead holder's marker (on this host)
    only removes it (filelock 3.32)."""
    try:
        lock.acquire(timeout=timeout, poll_interval=POLL_S)
    except filelock.Timeout:
        if timeout != 0:
            raise
        lock.acquire(timeout=0)


def _acquire(
    lock: filelock.BaseFileLock, timeout: float, log: Callable[[str], None]
) -> filelock.BaseFileLock:
    """``lock.acquire(timeout)`` (:class:`filelock.Timeout` if it is held); on a file system
    without flock, the ``O_EXCL`` marker file :data:`SOFT_NAME` beside it instead (said through
    ``log``). Returns the lock that was taken."""
    try:
        _attempt(lock, timeout)
        return lock
    except OSError as e:
        if isinstance(e, filelock.Timeout) or e.errno not in _NO_FLOCK:
            raise
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
    path = Path(lock.lock_file)
    soft = filelock.SoftFileLock(str(path.with_name(SOFT_NAME)), thread_local=False)
    log(f"[abt] {path.parent}: this file system has no flock ({code}); "
        f"locking with the marker file {soft.lock_file}")  # fmt: skip
    try:
        _attempt(soft, timeout)
    except filelock.Timeout:
        raise filelock.Timeout(soft.lock_file) from None
    return soft


def _is_soft(e: filelock.Timeout) -> bool:
    """Whether the lock that timed out is a marker file (no flock here, or no lock primitive)."""
    return Path(e.lock_file).name == SOFT_NAME or filelock.FileLock is filelock.SoftFileLock


@contextlib.contextmanager
def folder_lock(
    folder: str | Path, what: str = "run", log: Callable[[str], None] = print, wait: bool = False
) -> Iterator[bool]:
    """Own ``folder`` (created if needed) for the ``with`` block, which gets whether it waited;
    :class:`LockedError` if a live process owns it (``wait``: wait for it to end instead)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, holder = folder / LOCK_NAME, folder / HOLDER_NAME
    waited = False
    try:
        lock = _acquire(_native(path), 0, log)
    except filelock.Timeout as e:
        info = _read(holder)
        if not wait:
            hint = (
                f" (this file system has no flock; if that process is gone, delete {e.lock_file})"
                if _is_soft(e)
                else ""
            )
            raise LockedError(
                f"{folder} is in use by another {what}: {_describe(info)}{hint}. Two processes "
                f"must not write one {what} folder: wait for it to finish, or stop it, then run "
                "again"
            ) from None
        log(f"[abt] {folder} is in use by another {what}: {_describe(info)}; waiting for it to "
            "end")  # fmt: skip
        lock = _acquire(_native(path), -1, log)
        waited = True
    try:
        previous = _read(holder)
        if previous.get("pid"):
            log(
                f"[abt] {folder}: took over the lock left by {_describe(previous)}, which ended "
                "without releasing it (killed?)"
            )
        holder.write_text(json.dumps(_holder()))
        yield waited
    finally:
        _clear(holder)  # released cleanly: no holder left behind
        lock.release()


@contextlib.contextmanager
def critical_section(path: str | Path) -> Iterator[None]:
    """A *blocking* exclusive lock on ``path`` for a short critical section shared by several
    processes (a sweep's "count trials, then ask for one"; building the HEAR kit's venv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _acquire(_native(path), -1, lambda _msg: None)
    try:
        yield
    finally:
        lock.release()
