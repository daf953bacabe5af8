"""Source ids and the deterministic hash splits that keep evaluation sources out of pre-training.

A *source* is the thing a model could memorise: an eSpeak voice (``voice:en-us+m3``), a General-MIDI
program (``gm:40``) or drum kit (``gmkit:16``), a procedural recording (``tex:rain:17``), a
composed piece (``piece:...``) or a Debian file (``deb:<package>:<path>``).

Every universe of sources is cut in two by :func:`rank_split` — ids sorted by a SHA-256 of
``(seed, group, id)``, cut into consecutive chunks — once, globally: the *pool* half feeds only the
pre-training pool and the *task* half only the HEAR-format tasks. Sources in a task's test split
(or any fold) can therefore never be in the pool. Inside a task the task-half sources are split
again (train/valid/test or folds) with the same function and a task-specific group name. Cutting
within each family (GM family, voice variant, texture kind) keeps both halves diverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from abt.data.embedded.audio import unit_hash
from abt.data.embedded.music import DRUM_KITS, GM_FAMILIES, PITCHED_FAMILIES, programs_in
from abt.data.embedded.speech import Voice, all_voices
from abt.data.embedded.textures import TEXTURES

POOL_FRACTION = 0.5
TEXTURE_RECORDINGS_PER_KIND = 64  # the universe of procedural "recordings" per texture kind


def rank_split(ids: Sequence, seed: int, group: str, fractions: Sequence[float]) -> list[list]:
    """Deterministic hash split of ``ids`` into ``len(fractions)`` chunks.

    Ids are ordered by ``unit_hash(seed, group, id)`` and cut into consecutive chunks whose sizes
    follow ``fractions`` (largest-remainder rounding; every chunk gets at least one id when there
    are at least as many ids as chunks).
    """
    order = sorted(ids, key=lambda s: (unit_hash(seed, group, str(s)), str(s)))
    n, k = len(order), len(fractions)
    w = np.asarray(fractions, dtype=np.float64)
    w = w / w.sum()
    sizes = np.floor(w * n).astype(int)
    rem = n - sizes.sum()
    for i in np.argsort(-(w * n - sizes), kind="stable")[:rem]:
        sizes[i] += 1
    if n >= k:
        while (sizes == 0).any():
            sizes[int(np.argmax(sizes))] -= 1
            sizes[int(np.flatnonzero(sizes == 0)[0])] += 1
    out, a = [], 0
    for s in sizes:
        out.append(order[a : a + s])
        a += s
    return out


def round_robin(ids: Sequence, seed: int, group: str, k: int) -> list[list]:
    """Deal hash-ordered ``ids`` into ``k`` folds in turn (balanced to within one)."""
    order = sorted(ids, key=lambda s: (unit_hash(seed, group, str(s)), str(s)))
    return [order[i::k] for i in range(k)]


@dataclass
class Universe:
    """Every source the generators can use, split once into the pool half and the task half."""

    seed: int
    pool_voices: list[Voice] = field(default_factory=list)
    task_voices: list[Voice] = field(default_factory=list)
    pool_programs: list[int] = field(default_factory=list)
    task_programs: list[int] = field(default_factory=list)
    pool_kits: list[int] = field(default_factory=list)
    task_kits: list[int] = field(default_factory=list)
    pool_textures: dict[str, list[int]] = field(default_factory=dict)
    task_textures: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, seed: int) -> Universe:
        u = cls(seed)
        f = (POOL_FRACTION, 1.0 - POOL_FRACTION)
        voices = all_voices()
        for variant in sorted({v.variant for v in voices}):
            group = [v for v in voices if v.variant == variant]
            pool, task = rank_split(group, seed, f"voices/{variant}", f)
            u.pool_voices += pool
            u.task_voices += task
        for fam in GM_FAMILIES:
            pool, task = rank_split(programs_in([fam]), seed, f"gm/{fam}", f)
            u.pool_programs += pool
            u.task_programs += task
        u.pool_kits, u.task_kits = rank_split(list(DRUM_KITS), seed, "gmkits", f)
        for kind in TEXTURES.names():
            pool, task = rank_split(
                list(range(TEXTURE_RECORDINGS_PER_KIND)), seed, f"tex/{kind}", f
            )
            u.pool_textures[kind] = pool
            u.task_textures[kind] = task
        u.pool_voices.sort(key=lambda v: v.name)
        u.task_voices.sort(key=lambda v: v.name)
        u.pool_programs.sort()
        u.task_programs.sort()
        u.pool_kits.sort()
        u.task_kits.sort()
        return u

    def task_pitched_programs(self) -> list[int]:
        pitched = set(programs_in(PITCHED_FAMILIES))
        return [p for p in self.task_programs if p in pitched]

    def pool_pitched_programs(self) -> list[int]:
        pitched = set(programs_in(PITCHED_FAMILIES))
        return [p for p in self.pool_programs if p in pitched]
