"""Procedural music in a handful of styles, as General-MIDI parts (see :mod:`.music`).

Styles differ in metre, tempo, rhythm, texture, harmony and drum pattern; the *instruments* are
chosen by the caller, independently of the style (so timbre is not a shortcut for the style).
"""

from __future__ import annotations

import numpy as np

from abt.data.embedded.music import Part

STYLES = ("chorale", "waltz", "march", "rock", "swing", "dance")

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = (
    (0, 3, 4, 0),
    (0, 5, 3, 4),
    (0, 4, 5, 3),
    (1, 4, 0, 0),
    (0, 3, 0, 4),
    (5, 3, 0, 4),
)

# GM drum notes
KICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 39, 42, 44, 46, 49, 51


class _Song:
    def __init__(self, rng: np.random.Generator, bpm: float, beats_per_bar: int, dur: float):
        self.rng = rng
        self.beat = 60.0 / bpm
        self.bpb = beats_per_bar
        self.dur = dur
        self.tonic = int(rng.integers(0, 12))
        self.scale = MAJOR if rng.random() < 0.6 else MINOR
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
        self.prog = prog
        self.bar = self.beat * beats_per_bar
        self.n_bars = int(np.ceil(dur / self.bar)) + 1
        self.offset = float(rng.uniform(0, self.bar))  # start mid-bar: no aligned downbeat

    def t(self, bar: int, beat: float) -> float:
        return bar * self.bar + beat * self.beat - self.offset

    def degree_pitch(self, degree: int, octave: int) -> int:
        o, d = divmod(degree, 7)
        return 12 * (octave + 1 + o) + self.tonic + self.scale[d]

    def chord(self, bar: int, octave: int, seventh: bool = False) -> list[int]:
        root = self.prog[bar % len(self.prog)]
        degs = [root, root + 2, root + 4] + ([root + 6] if seventh else [])
        return [self.degree_pitch(d, octave) for d in degs]

    def root(self, bar: int, octave: int) -> int:
        return self.degree_pitch(self.prog[bar % len(self.prog)], octave)

    def keep(
        self, notes: list[tuple[int, float, float, int]]
    ) -> list[tuple[int, float, float, int]]:
        """Notes inside the excerpt; one that began before 0 is kept (from 0) only if it still
        sounds for 0.3 s (otherwise every short note of the previous bar would pile up at 0)."""
        return [
            (p, max(0.0, s), min(e, self.dur), v)
            for p, s, e, v in notes
            if s < self.dur and (s >= 0 or e > 0.3)
        ]


def _vel(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _melody(
    song: _Song, rhythm: list[float], octave: int, legato: float, vlo: int, vhi: int
) -> list[tuple[int, float, float, int]]:
    """A random walk on the scale, with the given rhythm cycle (in beats)."""
    rng = song.rng
    notes = []
    deg = int(rng.integers(0, 7))
    t = 0.0
    i = 0
    total_beats = song.n_bars * song.bpb
    while t < total_beats:
        d = rhythm[i % len(rhythm)]
        if rng.random() > 0.12:  # occasional rest
            start = t * song.beat - song.offset
            notes.append(
                (
                    song.degree_pitch(deg, octave),
                    start,
                    start + d * song.beat * legato,
                    _vel(rng, vlo, vhi),
                )
            )
        deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2]), -3, 10))
        t += d
        i += 1
    return notes


def _band(
    song: _Song,
    p: dict[str, int],
    kit: int,
    mel: list,
    chords: list,
    bass: list,
    drums: list | None = None,
) -> list[Part]:
    """Melody, chords, bass (and drums, on the drum channel) as the parts of a song."""
    parts = [
        Part(p["melody"], song.keep(mel)),
        Part(p["chords"], song.keep(chords)),
        Part(p["bass"], song.keep(bass)),
    ]
    return parts if drums is None else [*parts, Part(kit, song.keep(drums), is_drum=True)]


def chorale(song: _Song, p: dict[str, int], kit: int) -> list[Part]:
    rng = song.rng
    upper, lower, bass = [], [], []
    for bar in range(song.n_bars):
        for half in (0, 2):
            ch = song.chord(bar, 4)
            v = _vel(rng, 55, 80)
            s, e = song.t(bar, half), song.t(bar, half + 2) - 0.02
            upper += [(ch[1], s, e, v), (ch[2] + 12 if rng.random() < 0.5 else ch[0] + 12, s, e, v)]
            lower.append((ch[0], s, e, v))
            bass.append((song.root(bar, 2), s, e, v))
    return _band(song, p, kit, upper, lower, bass)


def waltz(song: _Song, p: dict[str, int], kit: int) -> list[Part]:
    rng = song.rng
    bass, chords = [], []
    for bar in range(song.n_bars):
        bass.append((song.root(bar, 2), song.t(bar, 0), song.t(bar, 0.9), _vel(rng, 80, 100)))
        for b in (1, 2):
            for q in song.chord(bar, 4):
                chords.append((q, song.t(bar, b), song.t(bar, b + 0.45), _vel(rng, 50, 70)))
    mel = _melody(song, [2, 1, 1.5, 0.5, 1, 3], 5, 0.95, 70, 95)
    return _band(song, p, kit, mel, chords, bass)


def march(song: _Song, p: dict[str, int], kit: int) -> list[Part]:
    rng = song.rng
    bass, chords, drums = [], [], []
    for bar in range(song.n_bars):
        r = song.root(bar, 2)
        bass += [
            (r, song.t(bar, 0), song.t(bar, 0.5), 95),
            (r + 7, song.t(bar, 1), song.t(bar, 1.5), 90),
        ]
        for b in (0.5, 1.5):
            for q in song.chord(bar, 4):
                chords.append((q, song.t(bar, b), song.t(bar, b + 0.3), _vel(rng, 60, 80)))
        drums += [
            (KICK, song.t(bar, 0), song.t(bar, 0.2), 100),
            (KICK, song.t(bar, 1), song.t(bar, 1.2), 90),
        ]
        for k in range(8):
            if k in (0, 1, 2, 4, 6) or rng.random() < 0.3:
                drums.append(
                    (SNARE, song.t(bar, k / 4), song.t(bar, k / 4 + 0.1), _vel(rng, 50, 100))
                )
        if bar % 4 == 0:
            drums.append((CRASH, song.t(bar, 0), song.t(bar, 0.5), 90))
    mel = _melody(song, [0.75, 0.25, 0.5, 0.5, 1.0], 5, 0.8, 80, 110)
    return _band(song, p, kit, mel, chords, bass, drums)


def rock(song: _Song, p: dict[str, int], kit: int) -> list[Part]:
    rng = song.rng
    bass, chords, drums = [], [], []
    for bar in range(song.n_bars):
        r = song.root(bar, 2)
        for k in range(8):
            bass.append((r, song.t(bar, k / 2), song.t(bar, k / 2 + 0.45), _vel(rng, 85, 105)))
            drums.append((HAT, song.t(bar, k / 2), song.t(bar, k / 2 + 0.1), _vel(rng, 60, 90)))
        rc = song.root(bar, 3)
        for k in range(8):
            for q in (rc, rc + 7, rc + 12):
                chords.append((q, song.t(bar, k / 2), song.t(bar, k / 2 + 0.4), _vel(rng, 75, 100)))
        for b in (0, 2, 2.5):
            drums.append((KICK, song.t(bar, b), song.t(bar, b + 0.2), 105))
        for b in (1, 3):
            drums.append((SNARE, song.t(bar, b), song.t(bar, b + 0.2), 110))
    mel = _melody(song, [1, 0.5, 0.5, 2], 5, 0.9, 80, 110)
    return _band(song, p, kit, mel, chords, bass, drums)


def swing(song: _Song, p: dict[str, int], kit: int) -> list[Part]:
    rng = song.rng
    sw = 2.0 / 3.0
    bass, chords, drums = [], [], []
    for bar in range(song.n_bars):
        ch = song.chord(bar, 2, seventh=True)
        for b in range(4):
            q = ch[int(rng.integers(0, 4))] if b else ch[0]
            bass.append((q, song.t(bar, b), song.t(bar, b + 0.9), _vel(rng, 70, 90)))
        for b in (0, 1, 1 + sw, 2, 3, 3 + sw):
            drums.append((RIDE, song.t(bar, b), song.t(bar, b + 0.2), _vel(rng, 55, 85)))
        for b in (1, 3):
            drums.append((PEDAL_HAT, song.t(bar, b), song.t(bar, b + 0.1), 70))
        for b in rng.choice([0.0, 1 + sw, 2.0, 3 + sw, 1.0, 2 + sw], size=2, replace=False):
            for q in song.chord(bar, 4, seventh=True):
                chords.append((q, song.t(bar, b), song.t(bar, b + 0.5), _vel(rng, 55, 80)))
    rh = [sw, 1 - sw, sw, 1 - sw, 1.0, sw, 1 - sw + 1.0]
    mel = _melody(song, rh, 5, 0.9, 65, 100)
    return _band(song, p, kit, mel, chords, bass, drums)


def dance(song: _Song, p: dict[str, int], kit: int) -> list[Part]:
    rng = song.rng
    bass, arp, drums = [], [], []
    pattern = [int(i) for i in rng.permutation(3)] + [int(rng.integers(0, 3))]
    for bar in range(song.n_bars):
        ch = song.chord(bar, 4)
        for b in range(4):
            drums.append((KICK, song.t(bar, b), song.t(bar, b + 0.2), 115))
            drums.append((OPEN_HAT, song.t(bar, b + 0.5), song.t(bar, b + 0.7), 80))
            bass.append((song.root(bar, 2), song.t(bar, b + 0.5), song.t(bar, b + 0.9), 100))
        for b in (1, 3):
            drums.append((CLAP, song.t(bar, b), song.t(bar, b + 0.2), 100))
        for k in range(16):
            q = ch[pattern[k % 4]] + (12 if k % 8 >= 4 else 0)
            arp.append((q, song.t(bar, k / 4), song.t(bar, k / 4 + 0.2), _vel(rng, 70, 95)))
    pad = []
    for bar in range(song.n_bars):
        for q in song.chord(bar, 3):
            pad.append((q, song.t(bar, 0), song.t(bar, 4) - 0.02, 55))
    return [
        Part(p["melody"], song.keep(arp)),
        Part(p["chords"], song.keep(pad)),
        Part(p["bass"], song.keep(bass)),
        Part(kit, song.keep(drums), is_drum=True),
    ]


_STYLE_FUNCS = {
    "chorale": chorale,
    "waltz": waltz,
    "march": march,
    "rock": rock,
    "swing": swing,
    "dance": dance,
}
# style -> (min bpm, max bpm, beats per bar)
_TEMPO = {
    "chorale": (56, 84, 4),
    "waltz": (90, 170, 3),
    "march": (96, 126, 2),
    "rock": (96, 140, 4),
    "swing": (110, 190, 4),
    "dance": (118, 132, 4),
}


def compose(
    style: str, rng: np.random.Generator, duration_s: float, programs: dict[str, int], kit: int
) -> list[Part]:
    """Parts for ``duration_s`` seconds of ``style``; ``programs`` maps melody/chords/bass."""
    lo, hi, bpb = _TEMPO[style]
    song = _Song(rng, float(rng.uniform(lo, hi)), bpb, duration_s)
    return _STYLE_FUNCS[style](song, programs, kit)
