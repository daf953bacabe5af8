"""The unlabelled pre-training pool (the AudioSet stand-in): 2 s clips of speech, music, single
notes, textures, mixtures and (when installed) real recordings from Debian packages, ~30 % of
them over room tone at 0-30 dB SNR. Only pool-half sources are used (see :mod:`.sources`)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from abt.data.embedded import debian
from abt.data.embedded.audio import (
    SR,
    db_to_amp,
    fit_length,
    mix_snr,
    nonsilent_crop,
    place,
    random_channel,
    rms,
    set_rms,
    speed,
    trim_silence,
    write_wav,
)
from abt.data.embedded.common import Context, Speaker, finish, sentence
from abt.data.embedded.compose import STYLES, compose
from abt.data.embedded.music import program_source, render, render_notes
from abt.data.embedded.textures import TEXTURES, texture, texture_crop, texture_source
from abt.registry import Registry

CLIP_S = 2.0
N = int(CLIP_S * SR)
ROOM_TONE_FRACTION = 0.3
KIND_WEIGHTS = {  # share of the pool per kind ("recording" only when optional sounds are present)
    "speech": 0.25,
    "music": 0.2,
    "note": 0.1,
    "texture": 0.2,
    "mixture": 0.15,
    "recording": 0.1,
}

Maker = Callable[[Context, np.random.Generator, dict], tuple[np.ndarray, list[str]]]
POOL_KINDS: Registry[Maker] = Registry("pool clip kind")


def _crop_or_place(y: np.ndarray, r: np.random.Generator) -> np.ndarray:
    if len(y) >= N:
        return nonsilent_crop(y, N, r)
    x = np.zeros(N, np.float32)
    place(x, y, int(r.integers(0, N - len(y) + 1)))
    return x


@POOL_KINDS.register("speech")
def _speech(ctx, r, deb):
    vs = ctx.universe.pool_voices
    spk = Speaker.of(ctx.seed, vs[int(r.integers(len(vs)))])
    y = spk.say(sentence(r), r, rate_mul=float(r.uniform(0.8, 1.25)))
    return _crop_or_place(y, r), [spk.voice.source_id]


@POOL_KINDS.register("music")
def _music(ctx, r, deb):
    ps = ctx.universe.pool_pitched_programs()
    progs = {role: ps[int(r.integers(len(ps)))] for role in ("melody", "chords", "bass")}
    kits = ctx.universe.pool_kits
    style = STYLES[int(r.integers(len(STYLES)))]
    parts = compose(style, r, CLIP_S, progs, kits[int(r.integers(len(kits)))])
    piece = f"piece:pool:{ctx.seed}:{int(r.integers(2**31))}"
    return render(parts, CLIP_S), [piece] + sorted({p.source_id for p in parts if p.notes})


@POOL_KINDS.register("note")
def _note(ctx, r, deb):
    ps = ctx.universe.pool_programs
    p = ps[int(r.integers(len(ps)))]
    y = render_notes(
        p, [(int(r.integers(30, 97)), float(r.uniform(0.2, 1.6)), int(r.integers(40, 128)))], CLIP_S
    )[0]
    if rms(y) < 1e-5:
        p = ctx.universe.pool_pitched_programs()[0]
        y = render_notes(p, [(60, 1.0, 100)], CLIP_S)[0]
    x = np.zeros(N, np.float32)
    place(x, y, int(r.integers(0, int(0.5 * SR))))
    return x, [program_source(p)]


@POOL_KINDS.register("texture")
def _texture(ctx, r, deb):
    kinds = TEXTURES.names()
    kind = kinds[int(r.integers(len(kinds)))]
    idxs = ctx.universe.pool_textures[kind]
    idx = idxs[int(r.integers(len(idxs)))]
    f = float(2.0 ** (r.uniform(-2, 2) / 12))
    y = fit_length(speed(texture(kind, idx, ctx.seed, int(N * f) + 1, r), f), N)
    return y, [texture_source(kind, idx)]


def _deb_groups(deb: dict[str, list[debian.DebItem]]) -> dict[tuple[str, str], list]:
    groups: dict[tuple[str, str], list] = {}
    for pkg in sorted(deb):
        for item in deb[pkg]:
            groups.setdefault((pkg, item.kind), []).append(item)
    return groups


@POOL_KINDS.register("recording")
def _recording(ctx, r, deb):
    # equal shares per (package, kind): e.g. tuxpaint's 440 sound effects are not drowned by
    # its 7,400 spoken descriptions
    groups = _deb_groups(deb)
    keys = sorted(groups)
    for _ in range(8):
        items = groups[keys[int(r.integers(len(keys)))]]
        item = items[int(r.integers(len(items)))]
        try:
            y = debian.load(item)
        except (RuntimeError, OSError, ValueError, TypeError):  # unreadable: skipped, not fatal
            continue
        y = trim_silence(y, rel_db=-40.0)
        if len(y) < int(0.1 * SR) or rms(y) <= 0:
            continue
        y = set_rms(y, 0.05)
        if item.kind in ("speech", "drums") and len(y) < N // 2:  # short syllables / drum hits
            x = np.zeros(N, np.float32)
            t = int(r.integers(0, N // 4))
            while t < N:
                place(x, y, t)
                t += len(y) + int(r.integers(int(0.05 * SR), int(0.4 * SR)))
            return x, [item.source_id]
        return _crop_or_place(y, r), [item.source_id]
    return _texture(ctx, r, deb)


@POOL_KINDS.register("mixture")
def _mixture(ctx, r, deb):
    parts = ["speech", "music", "note", "texture"] + (["recording"] if deb else [])
    k = int(r.integers(2, 4))
    picks = r.choice(len(parts), size=k, replace=False)
    mix = np.zeros(N, np.float32)
    srcs: list[str] = []
    for j in picks:
        y, s = POOL_KINDS.get(parts[int(j)])(ctx, r, deb)
        if rms(y) > 0:
            mix += set_rms(y, 0.05) * db_to_amp(float(r.uniform(-10, 10)))
            srcs += s
    return mix, srcs


SOURCE_SEP = ";"  # joins the source ids of one clip in the CSV files (voice ids contain "+")


def pool_size(ctx: Context) -> int:
    return ctx.n(3000, 20)


def make_pool_clips(
    ctx: Context, pool_dir: Path, deb: dict[str, list[debian.DebItem]], start: int, stop: int
) -> list[tuple[str, str, str, str]]:
    """Write pool clips ``start..stop-1`` to ``pool_dir/audio``; returns their ``clips.csv`` rows.

    Each clip depends only on ``(seed, index)`` (and the Debian items), so chunks can be made in
    any order or in parallel."""
    audio_dir = pool_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: w for k, w in KIND_WEIGHTS.items() if k != "recording" or deb}
    kinds = list(weights)
    p = np.array([weights[k] for k in kinds])
    p = p / p.sum()
    rooms = ctx.universe.pool_textures["room_tone"]
    rows = []
    for i in range(start, stop):
        r = ctx.rng("pool", i)
        kind = kinds[int(r.choice(len(kinds), p=p))]
        x, srcs = POOL_KINDS.get(kind)(ctx, r, deb)
        if rms(x) < 1e-6:  # nothing came out (should not happen): fall back to a texture
            x, srcs = _texture(ctx, r, deb)
        if r.random() < ROOM_TONE_FRACTION:
            room = rooms[int(r.integers(len(rooms)))]
            x = mix_snr(x, texture_crop("room_tone", room, ctx.seed, N, r), float(r.uniform(0, 30)))
            srcs = srcs + [texture_source("room_tone", room)]
        x = random_channel(x, r, 0.3)
        clip_id = f"pool-{i:06d}"
        write_wav(audio_dir / f"{clip_id}.wav", finish(x, r, 6.0))
        rows.append((clip_id, f"audio/{clip_id}.wav", SOURCE_SEP.join(dict.fromkeys(srcs)), kind))
    return rows


def write_pool_index(pool_dir: Path, rows: list[tuple[str, str, str, str]]) -> dict:
    """Write ``clips.csv``; returns the manifest section (plus ``_sources``, the set of ids)."""
    with open(pool_dir / "clips.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["clip_id", "path", "source_id", "kind"])
        w.writerows(rows)
    sources: set[str] = set()
    used: Counter = Counter()
    used_pip: Counter = Counter()
    for row in rows:
        ids = row[2].split(SOURCE_SEP)
        sources.update(ids)
        used.update({s.split(":")[1] for s in ids if s.startswith("deb:")})
        used_pip.update({s.split(":")[1] for s in ids if s.startswith("pip:")})
    return {
        "n_clips": len(rows),
        "clip_seconds": CLIP_S,
        "kinds": dict(sorted(Counter(r[3] for r in rows).items())),
        "n_sources": len(sources),
        "debian_clips_by_package": dict(sorted(used.items())),
        "pip_clips_by_package": dict(sorted(used_pip.items())),
        "_sources": sources,
    }
