"""Optional recordings shipped inside pip distributions (detected, never required; pool only).

A few well-known packages carry sound files in their wheels. Each entry of :data:`PIP_SOURCES`
names a distribution and the folders of its sounds; :func:`detect` lists the files of the
distributions installed in this environment from their installed-file records
(``importlib.metadata``: nothing is imported). The items are :class:`~.debian.DebItem` with
``origin="pip"`` and an id relative to the distribution (``pip:pyo:pyo/examples/snds/flute.aif``),
so the pool does not depend on where the environment lives -- only on which distributions (and
versions: the manifest records them) are installed.

Surveyed wheels (all their audio files): ``pyo`` 1.1.0 (LGPL-3, 8 MB wheel): 16 real recordings
(metal hits, flute, guitar chord, drum loop, voices; 45 s in all) and one room impulse response,
which is not a sound and is left out; ``pygame`` 2.6.1 (LGPL-2.1): 6 short sounds (a car door,
a punch, an explosion, a house-music loop, ...); ``arcade`` 3.3.3 (MIT, Kenney's CC0 assets, a
43 MB wheel that pins pillow, pyglet and pymunk): 55 synthesised game effects and 2 music
tracks. Not used: ``chime`` (its themes are jingles of commercial games).
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Callable
from dataclasses import dataclass

from abt.data.embedded.debian import AUDIO_EXT, DebItem
from abt.registry import Registry

#: (distribution, folders of its sounds, kind); a file listed twice in other formats (arcade's
#: laser1.mp3/.ogg/.wav) is used once, its first format in AUDIO_EXT order
PipLister = Callable[[], list[DebItem]]
PIP_SOURCES: Registry[PipLister] = Registry("pip sound source")
EXTS = (*AUDIO_EXT, ".aif", ".aiff", ".mp3")


@dataclass(frozen=True)
class PipSounds:
    dist: str
    folders: tuple[str, ...]
    kind: str = "recording"
    exclude: tuple[str, ...] = ()

    def __call__(self) -> list[DebItem]:
        try:
            d = md.distribution(self.dist)
        except md.PackageNotFoundError:
            return []
        by_stem: dict[str, tuple[int, str]] = {}
        for f in d.files or ():
            rel = str(f).replace("\\", "/")
            folder, _, name = rel.rpartition("/")
            ext = "." + name.rpartition(".")[2].lower()
            if folder not in self.folders or ext not in EXTS or name in self.exclude:
                continue
            stem = f"{folder}/{name.rpartition('.')[0]}"
            rank = EXTS.index(ext)
            if stem not in by_stem or rank < by_stem[stem][0]:
                by_stem[stem] = (rank, rel)
        items = []
        for _, rel in sorted(by_stem.values(), key=lambda t: t[1]):
            path = d.locate_file(rel)
            if path.is_file():
                items.append(DebItem(self.dist, str(path), kind=self.kind, origin="pip", rel=rel))
        return items


PIP_SOURCES.add(
    "pyo",
    PipSounds("pyo", ("pyo/examples/snds", "pyo/lib/snds"), exclude=("IRMediumHallStereo.wav",)),
)
PIP_SOURCES.add("pygame", PipSounds("pygame", ("pygame/examples/data",)))
_ARCADE = ("arcade/resources/assets/sounds", "arcade/resources/assets/music")
PIP_SOURCES.add("arcade", PipSounds("arcade", _ARCADE))


def detect() -> dict[str, list[DebItem]]:
    """Every registered distribution installed here -> its items, keyed ``pip:<dist>`` (so they
    never collide with a Debian package's name); distributions without sounds are left out."""
    found = {}
    for name in PIP_SOURCES.names():
        items = PIP_SOURCES.get(name)()
        if items:
            found[f"pip:{name}"] = items
    return found


def versions(found: dict[str, list[DebItem]]) -> dict[str, str]:
    """The installed version of every distribution in ``found`` (for the manifest)."""
    return {k: md.distribution(k.split(":", 1)[1]).version for k in sorted(found)}
