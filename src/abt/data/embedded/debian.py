"""Optional real recordings from Debian data packages (detected, never required).

Each entry of :data:`DEBIAN_SOURCES` knows where one package installs its sounds and lists them as
:class:`DebItem`s (sorted, so the selection is deterministic). They feed only the pre-training
pool; the tasks are pip-only so that their definition does not depend on the machine.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from abt.data.embedded.audio import read_audio, to_16k
from abt.registry import Registry

ROOT = Path("/")


@dataclass(frozen=True)
class DebItem:
    """One optional recording: a file of a Debian package (``origin="deb"``) or of an installed
    pip distribution (``origin="pip"``, :mod:`.pipsounds`; ``rel`` is then the file's path inside
    the distribution, so the id does not depend on where the environment lives)."""

    package: str
    path: str  # file on disk
    member: str = ""  # entry inside a container file (openttd's opensfx.cat)
    kind: str = "recording"  # recording | speech | drums
    origin: str = "deb"
    rel: str = ""

    @property
    def source_id(self) -> str:
        rel = self.rel or self.path.lstrip("/")
        return f"{self.origin}:{self.package}:{rel}" + (f"#{self.member}" if self.member else "")


Lister = Callable[[Path], list[DebItem]]
DEBIAN_SOURCES: Registry[Lister] = Registry("Debian sound source")
AUDIO_EXT = (".wav", ".ogg", ".oga", ".flac")


def _files(root: Path, rel: str, exts=AUDIO_EXT) -> list[Path]:
    base = root / rel
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.suffix.lower() in exts and p.is_file())


@DEBIAN_SOURCES.register("sound-theme-freedesktop")
def _freedesktop(root: Path) -> list[DebItem]:
    return [
        DebItem("sound-theme-freedesktop", str(p))
        for p in _files(root, "usr/share/sounds/freedesktop")
    ]


@DEBIAN_SOURCES.register("tuxpaint-stamps-default")
def _tuxpaint(root: Path) -> list[DebItem]:
    out = []
    for p in _files(root, "usr/share/tuxpaint/stamps"):
        kind = "speech" if "_desc" in p.stem else "recording"
        out.append(DebItem("tuxpaint-stamps-default", str(p), kind=kind))
    return out


@DEBIAN_SOURCES.register("klettres-data")
def _klettres(root: Path) -> list[DebItem]:
    return [
        DebItem("klettres-data", str(p), kind="speech") for p in _files(root, "usr/share/klettres")
    ]


@DEBIAN_SOURCES.register("hydrogen-data")
def _hydrogen(root: Path) -> list[DebItem]:
    return [
        DebItem("hydrogen-data", str(p), kind="drums")
        for p in _files(root, "usr/share/hydrogen/data/drumkits")
    ]


@DEBIAN_SOURCES.register("asterisk-core-sounds-en-wav")
def _asterisk_prompts(root: Path) -> list[DebItem]:
    # ~560 telephone prompts read by one professional speaker (8 kHz); the silence files are not
    # recordings
    return [
        DebItem("asterisk-core-sounds-en-wav", str(p), kind="speech")
        for p in _files(root, "usr/share/asterisk/sounds/en_US_f_Allison")
        if p.parent.name != "silence"
    ]


@DEBIAN_SOURCES.register("asterisk-moh-opsound-wav")
def _asterisk_moh(root: Path) -> list[DebItem]:
    # five real music tracks (CC-BY-SA "music on hold"): long, so every crop is a new excerpt
    return [
        DebItem("asterisk-moh-opsound-wav", str(p)) for p in _files(root, "usr/share/asterisk/moh")
    ]


@DEBIAN_SOURCES.register("bucklespring-data")
def _bucklespring(root: Path) -> list[DebItem]:
    # 171 recordings of the keys of one mechanical keyboard (press and release)
    return [
        DebItem("bucklespring-data", str(p), kind="drums")
        for p in _files(root, "usr/share/buckle/wav")
    ]


def _opensfx_entries(path: Path) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of the WAV entries in OpenTTD's ``opensfx.cat``.

    The file starts with a table of ``(offset, size)`` uint32 pairs (the first offset, with bit 31
    cleared, is the table's length); each entry is a length-prefixed name and a RIFF/WAVE payload.
    """
    data = path.read_bytes()
    first = struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF
    out = []
    for i in range(first // 8):
        off, size = struct.unpack_from("<II", data, 8 * i)
        off &= 0x7FFFFFFF
        if off + 1 > len(data) or size == 0:
            continue
        nlen = data[off]
        name = data[off + 1 : off + 1 + nlen].split(b"\0")[0].decode("latin-1").strip()
        riff = data.find(b"RIFF", off, off + size)
        if riff < 0:
            continue
        rsize = struct.unpack_from("<I", data, riff + 4)[0] + 8
        out.append((name or f"entry{i:03d}", riff, rsize))
    return out


@DEBIAN_SOURCES.register("openttd-opensfx")
def _opensfx(root: Path) -> list[DebItem]:
    cat = root / "usr/share/games/openttd/baseset/opensfx/opensfx.cat"
    if not cat.is_file():
        return []
    try:
        entries = _opensfx_entries(cat)
    except (struct.error, OSError):
        return []
    return [DebItem("openttd-opensfx", str(cat), member=f"{i:03d}") for i in range(len(entries))]


def detect(root: Path | None = None) -> dict[str, list[DebItem]]:
    """Every registered package installed under ``root`` (default :data:`ROOT`, ``/``) -> its
    items; packages with no items are left out."""
    root = ROOT if root is None else Path(root)
    found = {}
    for name in DEBIAN_SOURCES.names():
        items = DEBIAN_SOURCES.get(name)(root)
        if items:
            found[name] = items
    return found


@lru_cache(maxsize=256)
def load(item: DebItem) -> np.ndarray:
    """The item as 16 kHz mono float32 (8-bit and odd-rate sources are resampled like the rest)."""
    if item.member:
        idx = int(item.member)
        _, off, size = _opensfx_entries(Path(item.path))[idx]
        with open(item.path, "rb") as f:
            f.seek(off)
            payload = f.read(size)
        x, sr = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
        return to_16k(x, sr)
    return read_audio(item.path)
