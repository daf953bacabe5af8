"""Shared pieces of the task and pool builders: build context, speakers, text, backgrounds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from abt.data.embedded.audio import (
    SILENCE_RMS,
    TARGET_DBFS,
    fade,
    normalise,
    rng_for,
    set_rms,
    trim_silence,
)
from abt.data.embedded.sources import Universe, rank_split
from abt.data.embedded.speech import Voice, speak
from abt.data.embedded.textures import texture_crop, texture_source
from abt.data.hear_tasks import TaskSpec

TRAINVALTEST = ("train", "valid", "test")
FOLDS5 = ("fold00", "fold01", "fold02", "fold03", "fold04")


@dataclass
class Context:
    seed: int
    scale: float
    universe: Universe

    def n(self, base: int, minimum: int) -> int:
        """A clip count: ``base`` at scale 1, never below ``minimum``."""
        return max(minimum, int(round(base * self.scale)))

    def rng(self, *keys: object) -> np.random.Generator:
        return rng_for(self.seed, *keys)


@dataclass
class TaskClip:
    split: str
    filename: str
    audio: np.ndarray
    labels: list
    sources: list[str]


@dataclass
class TaskOutput:
    """What a task builder returns: the spec, a clip generator, and the source-id prefixes that
    must not be shared between splits (the task's split keys)."""

    spec: TaskSpec
    clips: Iterable[TaskClip]
    disjoint_prefixes: tuple[str, ...]


def allocate(n: int, splits: Sequence[str], fractions: Sequence[float]) -> dict[str, int]:
    """Split a clip budget ``n`` over splits (largest remainder), each at least 1."""
    w = np.asarray(fractions, np.float64) / np.sum(fractions)
    sizes = np.floor(w * n).astype(int)
    for i in np.argsort(-(w * n - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[i] += 1
    return {s: max(1, int(k)) for s, k in zip(splits, sizes, strict=True)}


def split_ids(
    ctx: Context, group: str, ids: Sequence, splits: Sequence[str], fractions: Sequence[float]
) -> dict[str, list]:
    chunks = rank_split(ids, ctx.seed, group, fractions)
    return dict(zip(splits, chunks, strict=True))


def balanced_labels(n: int, classes: Sequence[str], rng: np.random.Generator) -> list[str]:
    """``n`` labels cycling through ``classes`` (balanced to within one), in random order."""
    labs = [classes[i % len(classes)] for i in range(n)]
    return [labs[i] for i in rng.permutation(n)]


def finish(x: np.ndarray, rng: np.random.Generator, jitter_db: float = 3.0) -> np.ndarray:
    """Loudness-normalise a finished clip to the target RMS, +- ``jitter_db``."""
    return normalise(x, TARGET_DBFS + float(rng.uniform(-jitter_db, jitter_db)))


# ------------------------------------------------------------------------------------ speech

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
OTHER_WORDS = (
    "bed bird cat dog happy house marvin sheila tree wow zero one two three four five six seven "
    "eight nine forward backward follow learn visual"
).split()

SUBJECTS = (
    "the old man", "a small dog", "my sister", "the teacher", "our neighbour", "the driver",
    "a young girl", "the farmer", "his brother", "the doctor", "a tall woman", "the children",
    "the captain", "my friend", "the baker", "a quiet student",
)  # fmt: skip
VERBS = (
    "found", "painted", "carried", "forgot", "wanted", "opened", "watched", "cleaned", "sold",
    "dropped", "followed", "ordered", "borrowed", "repaired", "described", "remembered",
)  # fmt: skip
OBJECTS = (
    "a red box", "the heavy door", "some fresh bread", "an old map", "the blue car",
    "a wooden chair",
    "the broken clock", "a long letter", "the silver key", "a warm coat", "the green bottle",
    "seven apples", "the little boat", "a paper bag", "the kitchen table", "an empty cup",
)  # fmt: skip
PLACES = (
    "near the river", "in the morning", "after dinner", "at the station", "behind the house",
    "on the hill", "before the storm", "in the garden", "at the market", "under the bridge",
    "during the game", "by the window",
)  # fmt: skip
# the twelve sentences of CREMA-D, spoken in every emotion (the prosody task keeps them fixed)
FIXED_SENTENCES = (
    "It's eleven o'clock.", "That is exactly what happened.", "I'm on my way to the meeting.",
    "I wonder what this is about.", "The airplane is almost full.",
    "Maybe tomorrow it will be cold.", "I would like a new alarm clock.",
    "I think I have a doctor's appointment.", "Don't forget a jacket.",
    "I think I've seen this before.", "The surface is slick.",
    "We'll stop in a couple of minutes.",
)  # fmt: skip


def sentence(rng: np.random.Generator) -> str:
    parts = [SUBJECTS, VERBS, OBJECTS, PLACES]
    return " ".join(p[int(rng.integers(len(p)))] for p in parts) + "."


@dataclass(frozen=True)
class Speaker:
    """A voice plus its habitual pitch, range and speaking rate (fixed per voice and seed)."""

    voice: Voice
    pitch: int
    prange: int
    rate: int

    @classmethod
    def of(cls, seed: int, voice: Voice) -> Speaker:
        r = rng_for(seed, "speaker", voice.name)
        return cls(
            voice, int(r.integers(20, 81)), int(r.integers(30, 71)), int(r.integers(140, 201))
        )

    def say(
        self,
        text: str,
        rng: np.random.Generator,
        *,
        pitch_shift: float = 0.0,
        range_mul: float = 1.0,
        rate_mul: float = 1.0,
        volume: int = 100,
        wordgap: int = 0,
        jitter: bool = True,
    ) -> np.ndarray:
        """One utterance, silence-trimmed, at an RMS of 0.05 (empty if nothing came out)."""
        jp = rng.normal(0, 4) if jitter else 0.0
        jr = rng.normal(1, 0.06) if jitter else 1.0
        y = speak(
            text,
            self.voice,
            rate=int(np.clip(self.rate * rate_mul * jr, 80, 400)),
            pitch=int(np.clip(self.pitch + pitch_shift + jp, 0, 99)),
            prange=int(np.clip(self.prange * range_mul, 0, 99)),
            volume=int(np.clip(volume, 10, 200)),
            wordgap=wordgap,
        )
        y = trim_silence(y, rel_db=-40.0)
        if len(y) == 0 or np.sqrt(np.mean(y**2)) < 1e-4:
            return np.zeros(0, np.float32)
        return fade(set_rms(y, 0.05), 3.0)


# ------------------------------------------------------------------------------- backgrounds


def background_pool(
    ctx: Context,
    group: str,
    kinds: Sequence[str],
    splits: Sequence[str],
    fractions: Sequence[float],
    per_kind: int = 12,
) -> dict[str, list[tuple[str, int]]]:
    """Task-half texture recordings of ``kinds`` assigned to splits (source-disjoint)."""
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in splits}
    for kind in kinds:
        ids = ctx.universe.task_textures[kind][:per_kind]
        for s, chunk in split_ids(ctx, f"{group}/{kind}", ids, splits, fractions).items():
            out[s] += [(kind, i) for i in chunk]
    return out


def background(
    ctx: Context, choices: Sequence[tuple[str, int]], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    kind, idx = choices[int(rng.integers(len(choices)))]
    y = texture_crop(kind, idx, ctx.seed, n, rng)
    return y, texture_source(kind, idx)


def nonsilent(x: np.ndarray) -> bool:
    return x.size > 0 and float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) >= SILENCE_RMS
