"""A folder written next to its destination and moved into place only when complete: how every
abt output that other jobs read (a store, a prepared task) is written all or nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path

from abt.data.clips import StoreError
from abt.locks import pid_alive
from abt.outputs import OutputKind, check_output, mark


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` says the file system is full (or over quota)."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


class Staging:
    """A folder written next to its destination and moved into place only when complete
    (a store: :meth:`install`; a whole folder, e.g. a prepared task: :meth:`replace_folder`).

    ``kind`` (what is written) is checked against the destination first
    (:func:`abt.outputs.check_output`: nothing abt did not write is replaced) and recorded there
    by the marker. Disk full while writing is a :class:`StoreError` saying so; the staging folder
    (the partial files) is always removed."""

    def __init__(self, out: Path, kind: OutputKind | None = None) -> None:
        self.out, self.kind = out, kind
        if kind is not None:
            check_output(out, kind, command=f"writing {kind.name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        prefix, host = f".{out.name}.tmp-", socket.gethostname()
        for old in out.parent.glob(f"{prefix}*"):  # left behind by a killed process here
            h, pid, _ = (old.name[len(prefix) :].rsplit("-", 2) + ["", ""])[:3]
            if h == host and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        self.dir = out.parent / f"{prefix}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if exc is not None and disk_full(exc):
            what = self.kind.name if self.kind else "the output"
            raise StoreError(
                f"{self.out}: disk full ({exc.strerror}) while writing {what}; the partial files "
                f"were removed. Free space on the file system of {self.out.parent} (or point the "
                "output elsewhere) and run again"
            ) from None

    def install(self, names: Sequence[str], owned: Sequence[str] | None = None) -> None:
        """Replace the files at the destination by ``names`` (``stats.json`` last); the files
        of this kind of folder (``owned``: by default ``kind.entries``) not in ``names`` are
        removed, other entries of the folder are kept."""
        if owned is None:
            owned = self.kind.entries if self.kind is not None else names
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "stats.json").unlink(missing_ok=True)  # from here on no reader accepts it
        if self.kind is not None:
            mark(self.out, self.kind)
        for f in owned:
            if f not in names:
                (self.out / f).unlink(missing_ok=True)
        for f in sorted(names, key=lambda n: n == "stats.json"):
            os.replace(self.dir / f, self.out / f)

    def replace_folder(self) -> None:
        """Make the staging folder the destination (an existing destination is removed)."""
        if self.kind is not None:
            mark(self.dir, self.kind)
        if self.out.exists():
            old = self.out.parent / f"{self.dir.name}.old"
            os.replace(self.out, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(self.dir, self.out)
