"""The embedded default data set: a deterministic, pip-only stand-in for AudioSet + HEAR 2021.

``build_embedded(out_dir, seed=..., scale=...)`` writes an unlabelled pre-training pool and a
suite of small HEAR-format tasks (registered in :data:`TASKS`) from eSpeak NG speech, General-MIDI
SoundFont music, procedural textures and, when installed, Debian sound packages (pool only).
The names below are imported when first used: planning reads :mod:`abt.data.embedded.names`
without importing the audio stack.
"""

import importlib
from typing import Any

_FROM = {
    "EMBEDDED_VERSION": "abt.data.embedded.build",
    "SourceLeakError": "abt.data.embedded.build",
    "build_embedded": "abt.data.embedded.build",
    "check_sources": "abt.data.embedded.build",
    "generator_versions": "abt.data.embedded.build",
    "TASKS": "abt.data.embedded.tasks",
}

__all__ = sorted(_FROM)


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_FROM[name]), name)
