"""The embedded default data set: a deterministic, pip-only stand-in for AudioSet + HEAR 2021.

``build_embedded(out_dir, seed=..., scale=...)`` writes an unlabelled pre-training pool and a
suite of small HEAR-format tasks (registered in :data:`TASKS`) from eSpeak NG speech, General-MIDI
SoundFont music, procedural textures and, when installed, Debian sound packages (pool only).
"""

from abt.data.embedded.build import (
    EMBEDDED_VERSION,
    SourceLeakError,
    build_embedded,
    check_sources,
    generator_versions,
)
from abt.data.embedded.tasks import TASKS

__all__ = [
    "EMBEDDED_VERSION",
    "TASKS",
    "SourceLeakError",
    "build_embedded",
    "check_sources",
    "generator_versions",
]
