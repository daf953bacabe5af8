"""Audio files on disk: which files count as audio, and a cheap fingerprint of a folder of them.

The workflow rebuilds a store when its audio changes (an added, removed, resized or re-timed
file): each rule that reads a folder of audio gets :func:`audio_fingerprint` of that folder as a
parameter, which Snakemake compares with the one recorded when the rule last ran. The fingerprint
digests every audio file's path, size and modification time (``stat``, no contents: reading
AudioSet's ~1 TB would cost as much as the build); a file rewritten in place with the same size
and an unchanged modification time (``touch -r``) is not seen. ``bench/bench_fingerprint.py``
measures the cost (bench/RESULTS.md).

Torch-free and dependency-free: the Snakefile computes fingerprints when it builds the DAG.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

#: the file name endings read as audio (any format soundfile reads)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")

#: the fingerprint of a folder that does not exist
ABSENT = "absent"


def _walk(root: str, rel: str, h: hashlib._Hash) -> int:
    n = 0
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        name = f"{rel}/{e.name}" if rel else e.name
        if e.is_dir(follow_symlinks=True):
            n += _walk(root, name, h)
        elif os.path.splitext(e.name)[1].lower() in AUDIO_EXTENSIONS:
            try:
                st = e.stat(follow_symlinks=True)
            except OSError:  # a dangling link: recorded as such
                h.update(f"{name}\t-1\t-1\n".encode())
                continue
            h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            n += 1
    return n


def audio_fingerprint(folder: str | os.PathLike[str]) -> str:
    """SHA-256 over the relative path, size and ``st_mtime_ns`` of every audio file under
    ``folder`` (recursive, in name order; symbolic links followed); :data:`ABSENT` when the
    folder does not exist."""
    root = os.fspath(folder)
    if not os.path.isdir(root):
        return ABSENT
    h = hashlib.sha256()
    n = _walk(root, "", h)
    return f"{n}:{h.hexdigest()}"


def listed_fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """SHA-256 over the path, size and ``st_mtime_ns`` of each listed file, in the given order
    (a missing file is recorded as such): the fingerprint of audio named by a list (a CSV
    task's rows) rather than found in one folder."""
    h = hashlib.sha256()
    n = 0
    for path in paths:
        try:
            st = os.stat(path)
            h.update(f"{os.fspath(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.fspath(path)}\t-1\t-1\n".encode())
        n += 1
    return f"{n}:{h.hexdigest()}"
