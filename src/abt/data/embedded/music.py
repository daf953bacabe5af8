"""Sampled instruments: General-MIDI parts rendered with pretty_midi's bundled TimGM6mb.sf2.

MIDI bytes are written with :mod:`pretty_midi` and rendered by ``midirenderer`` (48 kHz stereo WAV
bytes, deterministic), then mixed down to 16 kHz mono. Instrument sources are GM *programs*
(``gm:<program>``) and drum *kits* (``gmkit:<kit>``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import soundfile as sf

from abt.data.embedded.audio import SR, to_16k

GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
# Drum kits present in TimGM6mb (bank 128); Jazz (32) is a copy of Standard (0) there.
DRUM_KITS = (0, 8, 16, 24, 25, 40, 48)
# Families whose notes have a clear, stable pitch (pitch task, melodies, chords): all but the
# unpitched effect/percussion families.
UNPITCHED_FAMILIES = ("synth_effects", "percussive", "sound_effects")
PITCHED_FAMILIES = tuple(f for f in GM_FAMILIES if f not in UNPITCHED_FAMILIES)


def family(program: int) -> str:
    return GM_FAMILIES[program // 8]


def programs_in(families: tuple[str, ...] | list[str]) -> list[int]:
    return list(_programs_in(tuple(families)))


@lru_cache(maxsize=64)
def _programs_in(families: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(p for p in range(128) if family(p) in families)


def program_source(program: int) -> str:
    return f"gm:{program}"


def kit_source(kit: int) -> str:
    return f"gmkit:{kit}"


@dataclass
class Part:
    """One MIDI track: ``notes`` are ``(pitch, start_s, end_s, velocity)``."""

    program: int
    notes: list[tuple[int, float, float, int]] = field(default_factory=list)
    is_drum: bool = False

    @property
    def source_id(self) -> str:
        return kit_source(self.program) if self.is_drum else program_source(self.program)


@lru_cache(maxsize=1)
def soundfont_path() -> str:
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


@lru_cache(maxsize=1)
def soundfont_bytes() -> bytes:
    with open(soundfont_path(), "rb") as f:
        return f.read()


def soundfont_sha256() -> str:
    return hashlib.sha256(soundfont_bytes()).hexdigest()


def renderer_versions() -> dict[str, str]:
    out = {}
    for pkg in ("midirenderer", "pretty_midi", "mido"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "unknown"
    return out


_TPQ = 480  # ticks per quarter note; tempo 120 bpm -> 960 ticks per second
_TICKS_PER_S = 2 * _TPQ


def _vlq(v: int) -> bytes:
    out = [v & 0x7F]
    v >>= 7
    while v:
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(out))


def _track(events: list[tuple[int, int, bytes]]) -> bytes:
    body = bytearray()
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - now) + msg
        now = tick
    body += b"\x00\xff\x2f\x00"  # end of track
    return b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def midi_bytes(parts: list[Part], end_s: float) -> bytes:
    """A format-1 standard MIDI file (120 bpm) with one track per part, melodic parts on channels
    0-8 and 10-15, drums on channel 9. A silent controller event at ``end_s`` makes the renderer
    run until then; notes are cut at ``end_s``."""
    if sum(not p.is_drum for p in parts) > 15:
        raise ValueError("at most 15 melodic parts fit the 16 MIDI channels")
    tracks = [_track([(0, 0, b"\xff\x51\x03" + (500000).to_bytes(3, "big"))])]
    end_tick = int(round(end_s * _TICKS_PER_S))
    melodic_channels = [c for c in range(16) if c != 9]
    k = 0
    for part in parts:
        if part.is_drum:
            ch = 9
        else:
            ch = melodic_channels[k]
            k += 1
        ev: list[tuple[int, int, bytes]] = [(0, 0, bytes([0xC0 | ch, int(part.program) & 0x7F]))]
        for pitch, start, end, vel in part.notes:
            a = int(round(max(0.0, start) * _TICKS_PER_S))
            b = min(end_tick, int(round(end * _TICKS_PER_S)))
            if b <= a:
                continue
            p = int(np.clip(pitch, 0, 127))
            ev.append((a, 2, bytes([0x90 | ch, p, int(np.clip(vel, 1, 127))])))
            ev.append((b, 1, bytes([0x80 | ch, p, 0])))
        ev.append((end_tick, 3, bytes([0xB0 | ch, 110, 0])))
        tracks.append(_track(ev))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big")
    header += len(tracks).to_bytes(2, "big") + _TPQ.to_bytes(2, "big")
    return header + b"".join(tracks)


def render(parts: list[Part], duration_s: float) -> np.ndarray:
    """Render ``parts`` to exactly ``duration_s`` seconds of 16 kHz mono float32 (unnormalised)."""
    import midirenderer

    n = int(round(duration_s * SR))
    if not any(p.notes for p in parts):
        return np.zeros(n, np.float32)
    wav = midirenderer.render_wave_from(soundfont_bytes(), midi_bytes(parts, duration_s + 0.05))
    x, sr = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    y = to_16k(x, sr)
    out = np.zeros(n, np.float32)
    out[: min(n, len(y))] = y[:n]
    return out


def render_notes(
    program: int, notes: list[tuple[int, float, int]], clip_s: float, gap_s: float = 0.6
) -> list[np.ndarray]:
    """Render single notes ``(pitch, dur_s, velocity)`` of one program in one pass.

    The notes are laid out ``clip_s + gap_s`` apart in one MIDI file (one SoundFont parse for the
    batch), and each comes back as a ``clip_s`` clip starting at its onset.
    """
    if not notes:
        return []
    hop = clip_s + gap_s
    part = Part(program, [(p, i * hop, i * hop + d, v) for i, (p, d, v) in enumerate(notes)])
    y = render([part], hop * len(notes))
    n = int(round(clip_s * SR))
    h = int(round(hop * SR))
    return [y[i * h : i * h + n].copy() for i in range(len(notes))]
