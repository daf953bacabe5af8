"""What a store is built from: one clip (:class:`ClipSpec`), the clips of a HEAR task split, and
the error every store stage raises (:class:`StoreError`). Standard library only; the clip-list
formats are :mod:`abt.data.cliplists`'.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ClipSpec:
    """One input clip: a stable id, the audio file, and the recording/source it comes from."""

    clip_id: str
    path: str
    source_id: str = ""


class StoreError(RuntimeError):
    """A store cannot be built or read; the message names the file and what to do."""


def sha256_file(path: Path, skip: int = 0) -> str:
    """SHA-256 hex digest of a file's bytes from offset ``skip``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(skip)
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def list_hear_split(task_dir: str | Path, split: str, sample_rate: int = 16000) -> list[ClipSpec]:
    """Clips of one split of a HEAR-format task (``<split>.json`` keys, ``<sr>/<split>/`` files)."""
    task_dir = Path(task_dir)
    labels_path = task_dir / f"{split}.json"
    if not labels_path.is_file():
        raise StoreError(f"{labels_path} is missing: is {task_dir} a HEAR task directory?")
    with open(labels_path) as fh:
        labels = json.load(fh)
    audio = task_dir / str(sample_rate) / split
    specs = []
    for name in sorted(labels):
        p = audio / name
        specs.append(ClipSpec(name, str(p) if p.is_file() else "", name))
    return specs


def hear_split_source(task_dir: str | Path, split: str) -> dict[str, Any]:
    """The provenance of a task split's store: the task folder and the split file's digest."""
    p = Path(task_dir) / f"{split}.json"
    return {"task_dir": str(task_dir), "split": split, "sha256": sha256_file(p)}
