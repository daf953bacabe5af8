"""The embedded HEAR-format tasks: one builder per task, registered by name in :data:`TASKS`.

Every builder takes a :class:`~abt.data.embedded.common.Context` and returns a
:class:`~abt.data.embedded.common.TaskOutput` (spec, clip generator, split-key source prefixes).
All sources come from the task half of the :class:`~abt.data.embedded.sources.Universe`; each
clip's randomness comes from ``rng_for(seed, task, split, index)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from abt.data.embedded.audio import (
    SR,
    active_span,
    butter,
    db_to_amp,
    fade,
    fit_length,
    mix_snr,
    place,
    random_channel,
    rms,
    speed,
    trim_silence,
)
from abt.data.embedded.common import (
    FIXED_SENTENCES,
    FOLDS5,
    KEYWORDS,
    OTHER_WORDS,
    TRAINVALTEST,
    Context,
    Speaker,
    TaskClip,
    TaskOutput,
    allocate,
    background,
    background_pool,
    balanced_labels,
    finish,
    nonsilent,
    sentence,
    split_ids,
)
from abt.data.embedded.compose import STYLES, compose
from abt.data.embedded.music import program_source, render, render_notes
from abt.data.embedded.names import TASK_NAMES
from abt.data.embedded.sources import round_robin
from abt.data.embedded.textures import texture, texture_source
from abt.data.hear_tasks import TaskSpec
from abt.registry import Registry

TaskBuilder = Callable[[Context], TaskOutput]
TASKS: Registry[TaskBuilder] = Registry("embedded task")

SCENE_METRICS = ("top1_acc", "mAP", "d_prime", "aucroc")
PITCH_METRICS = ("pitch_acc", "chroma_acc")
EVENT_METRICS = ("event_onset_200ms_fms", "segment_1s_er")
TVT_FRACTIONS = (0.6, 0.2, 0.2)


def _scene_spec(name: str, split_mode: str, duration: float, vocab, metrics=SCENE_METRICS):
    splits = TRAINVALTEST if split_mode == "trainvaltest" else FOLDS5
    return TaskSpec(
        task_name=name,
        embedding_type="scene",
        prediction_type="multiclass",
        split_mode=split_mode,
        splits=tuple(splits),
        sample_duration=duration,
        evaluation=tuple(metrics),
        vocabulary=tuple(vocab),
    )


def _semitones(r: np.random.Generator, max_st: float) -> float:
    return float(2.0 ** (r.uniform(-max_st, max_st) / 12.0))


# ------------------------------------------------------------------------------ keywords


def balanced_fold_items(
    ctx: Context, name: str, per_fold: int, classes: Sequence[str]
) -> Iterator[tuple[str, int, str, np.random.Generator]]:
    """``(fold, index, label, rng)`` of every clip of a five-fold task: ``per_fold`` clips per
    fold with balanced labels, each with its own keyed generator."""
    for fold in FOLDS5:
        labels = balanced_labels(per_fold, classes, ctx.rng(name, fold, "labels"))
        for i, lab in enumerate(labels):
            yield fold, i, lab, ctx.rng(name, fold, i)


def fold_backgrounds(
    ctx: Context, name: str, kinds: Sequence[str]
) -> dict[str, list[tuple[str, int]]]:
    """Background recordings of each kind dealt round-robin to the five folds (fold-disjoint)."""
    bgs: dict[str, list[tuple[str, int]]] = {f: [] for f in FOLDS5}
    for k in kinds:
        chunks = round_robin(ctx.universe.task_textures[k][:10], ctx.seed, f"{name}/bg/{k}", 5)
        for f, chunk in zip(FOLDS5, chunks, strict=True):
            bgs[f] += [(k, i) for i in chunk]
    return bgs


@TASKS.register("embedded_keywords")
def keywords(ctx: Context) -> TaskOutput:
    """speech_commands analogue: 10 keywords + unknown words + background-only silence, 1 s,
    speaker-disjoint train/valid/test, backgrounds mixed at 0-30 dB SNR."""
    name = "embedded_keywords"
    classes = [*KEYWORDS, "_unknown_", "_silence_"]
    fr = (0.7, 0.1, 0.2)
    voices = split_ids(ctx, f"{name}/voices", ctx.universe.task_voices, TRAINVALTEST, fr)
    bg_kinds = ["room_tone", "coloured_noise", "water_bubbles", "engine", "wind", "typing"]
    bgs = background_pool(ctx, f"{name}/bg", bg_kinds, TRAINVALTEST, fr)
    counts = allocate(ctx.n(1440, 48), TRAINVALTEST, fr)
    n = SR

    def gen() -> Iterator[TaskClip]:
        for split in TRAINVALTEST:
            labels = balanced_labels(counts[split], classes, ctx.rng(name, split, "labels"))
            for i, lab in enumerate(labels):
                r = ctx.rng(name, split, i)
                bg, bg_src = background(ctx, bgs[split], n, r)
                if lab == "_silence_":
                    x, srcs = bg, [bg_src]
                else:
                    vs = voices[split]
                    spk = Speaker.of(ctx.seed, vs[int(r.integers(len(vs)))])
                    word = (
                        lab
                        if lab != "_unknown_"
                        else OTHER_WORDS[int(r.integers(len(OTHER_WORDS)))]
                    )
                    w = spk.say(word, r, rate_mul=float(r.uniform(0.8, 1.25)))
                    if len(w) > 0.95 * n:
                        w = fit_length(speed(w, len(w) / (0.95 * n)), int(0.95 * n))
                    x = np.zeros(n, np.float32)
                    place(x, w, int(r.integers(0, n - len(w) + 1)))
                    x = mix_snr(x, bg, float(r.uniform(0, 30)))
                    srcs = [spk.voice.source_id, bg_src]
                x = random_channel(x, r, 0.6)
                yield TaskClip(split, f"{split}-{i:05d}.wav", finish(x, r), [lab], srcs)

    spec = _scene_spec(name, "trainvaltest", 1.0, classes)
    return TaskOutput(spec, gen(), ("voice:", "tex:"))


# --------------------------------------------------------------------------------- pitch


@TASKS.register("embedded_pitch")
def pitch(ctx: Context) -> TaskOutput:
    """nsynth_pitch analogue: 49 MIDI pitches (36-84) of sampled GM instruments, 1 s,
    instrument-program-disjoint train/valid/test; metrics pitch_acc, chroma_acc (the vocabulary
    is in pitch order, so class index mod 12 is the chroma)."""
    name = "embedded_pitch"
    pitches = list(range(36, 85))
    classes = [str(p) for p in pitches]
    progs = split_ids(
        ctx, f"{name}/programs", ctx.universe.task_pitched_programs(), TRAINVALTEST, TVT_FRACTIONS
    )
    bgs = background_pool(
        ctx, f"{name}/bg", ["room_tone", "coloured_noise"], TRAINVALTEST, TVT_FRACTIONS
    )
    counts = allocate(ctx.n(1176, 98), TRAINVALTEST, TVT_FRACTIONS)
    n = SR

    def gen() -> Iterator[TaskClip]:
        for split in TRAINVALTEST:
            labels = balanced_labels(counts[split], classes, ctx.rng(name, split, "labels"))
            ps = progs[split]
            order = ctx.rng(name, split, "programs").permutation(len(labels))
            prog_of = [ps[int(order[i]) % len(ps)] for i in range(len(labels))]
            params = []
            for i, lab in enumerate(labels):
                r = ctx.rng(name, split, i)
                params.append((int(lab), float(r.uniform(0.5, 0.9)), int(r.integers(50, 128))))
            audio: dict[int, np.ndarray] = {}
            for p in sorted(set(prog_of)):
                idx = [i for i in range(len(labels)) if prog_of[i] == p]
                for i, y in zip(idx, render_notes(p, [params[i] for i in idx], 1.0), strict=True):
                    audio[i] = y
            for i, lab in enumerate(labels):
                r = ctx.rng(name, split, i, "post")
                x = audio.pop(i)
                if rms(x) < 1e-5:  # the SoundFont has no sample there: fall back to a piano
                    x = render_notes(0, [params[i]], 1.0)[0]
                onset = int(r.integers(0, int(0.05 * SR)))
                x = fit_length(np.concatenate([np.zeros(onset, np.float32), x]), n)
                bg, bg_src = background(ctx, bgs[split], n, r)
                x = mix_snr(x, bg, float(r.uniform(25, 50)))
                srcs = [program_source(prog_of[i]), bg_src]
                yield TaskClip(split, f"{split}-{i:05d}.wav", finish(x, r), [lab], srcs)

    spec = _scene_spec(name, "trainvaltest", 1.0, classes, PITCH_METRICS)
    return TaskOutput(spec, gen(), ("gm:", "tex:"))


# --------------------------------------------------------------------------- environment

ENV_CLASSES = (
    "rain",
    "wind",
    "engine",
    "siren",
    "clock_tick",
    "alarm_beep",
    "footsteps",
    "door_knock",
    "birdsong",
    "insects",
    "water_bubbles",
    "crackling_fire",
)


@TASKS.register("embedded_envsounds")
def envsounds(ctx: Context) -> TaskOutput:
    """esc50 analogue: 12 procedural sound classes, 2 s, 5 folds that are disjoint in the
    generator "recordings" (and in the background recordings mixed under them)."""
    name = "embedded_envsounds"
    n_rec = max(5, ctx.n(15, 5))
    recs = {
        k: dict(
            zip(
                FOLDS5,
                round_robin(ctx.universe.task_textures[k][:n_rec], ctx.seed, f"{name}/{k}", 5),
                strict=True,
            )
        )
        for k in ENV_CLASSES
    }
    bgs = fold_backgrounds(ctx, name, ["room_tone", "coloured_noise", "applause", "typing"])
    per_fold = ctx.n(600, 5 * len(ENV_CLASSES)) // 5
    n = 2 * SR

    def gen() -> Iterator[TaskClip]:
        for fold, i, lab, r in balanced_fold_items(ctx, name, per_fold, ENV_CLASSES):
            choices = recs[lab][fold]
            rec = choices[int(r.integers(len(choices)))]
            f = _semitones(r, 1.5)
            x = np.zeros(0, np.float32)
            for _ in range(5):
                x = fit_length(speed(texture(lab, rec, ctx.seed, int(n * f) + 1, r), f), n)
                if rms(x) > 0 and nonsilent(x / rms(x) * 0.05):
                    break
            bg, bg_src = background(ctx, bgs[fold], n, r)
            x = mix_snr(x, bg, float(r.uniform(0, 20)))
            x = random_channel(x, r, 1.0)
            srcs = [texture_source(lab, rec), bg_src]
            yield TaskClip(fold, f"{fold}-{i:05d}.wav", finish(x, r, 6.0), [lab], srcs)

    spec = _scene_spec(name, "new_split_kfold", 2.0, ENV_CLASSES)
    return TaskOutput(spec, gen(), ("tex:",))


# ------------------------------------------------------------------------- speaker count


@TASKS.register("embedded_speakercount")
def speakercount(ctx: Context) -> TaskOutput:
    """libricount analogue: 0-4 simultaneous talkers, 3 s, speaker-disjoint train/valid/test;
    every talker at a random level, the mix loudness-normalised."""
    name = "embedded_speakercount"
    classes = ["0", "1", "2", "3", "4"]
    voices = split_ids(ctx, f"{name}/voices", ctx.universe.task_voices, TRAINVALTEST, TVT_FRACTIONS)
    bgs = background_pool(
        ctx, f"{name}/bg", ["room_tone", "coloured_noise"], TRAINVALTEST, TVT_FRACTIONS
    )
    counts = allocate(ctx.n(500, 20), TRAINVALTEST, TVT_FRACTIONS)
    n = 3 * SR

    def gen() -> Iterator[TaskClip]:
        for split in TRAINVALTEST:
            labels = balanced_labels(counts[split], classes, ctx.rng(name, split, "labels"))
            for i, lab in enumerate(labels):
                r = ctx.rng(name, split, i)
                k = int(lab)
                bg, bg_src = background(ctx, bgs[split], n, r)
                srcs = [bg_src]
                if k == 0:
                    x = bg
                else:
                    mix = np.zeros(n, np.float32)
                    picks = r.choice(len(voices[split]), size=k, replace=False)
                    for j in picks:
                        spk = Speaker.of(ctx.seed, voices[split][int(j)])
                        y = spk.say(sentence(r) + " " + sentence(r), r)
                        start = int(r.uniform(-0.3, 0.5) * SR)
                        if start < 0:
                            y, start = y[-start:], 0
                        place(mix, y * db_to_amp(float(r.uniform(-6, 6))), start)
                        srcs.append(spk.voice.source_id)
                    x = mix_snr(mix, bg, float(r.uniform(10, 35)))
                x = random_channel(x, r, 0.5)
                yield TaskClip(split, f"{split}-{i:05d}.wav", finish(x, r), [lab], srcs)

    spec = _scene_spec(name, "trainvaltest", 3.0, classes)
    return TaskOutput(spec, gen(), ("voice:", "tex:"))


# ------------------------------------------------------------------------------- emotion

EMOTIONS = {  # eSpeak prosody per class: pitch shift, range and rate multipliers, volume, word gap
    "neutral": (0.0, 1.0, 1.0, 100, 0),
    "happy": (10.0, 1.7, 1.12, 115, 0),
    "sad": (-8.0, 0.45, 0.78, 75, 1),
    "angry": (4.0, 1.3, 1.18, 175, 0),
}
# vocal effort: mean high-frequency emphasis (x + a * highpass(x, 1 kHz)) and saturation drive
EFFORT = {"neutral": (0.0, 0.0), "happy": (0.5, 0.0), "sad": (-0.6, 0.0), "angry": (1.0, 2.5)}


def _effort(y: np.ndarray, lab: str, r: np.random.Generator) -> np.ndarray:
    tilt, drive = EFFORT[lab]
    a = float(np.clip(tilt + r.normal(0, 0.35), -0.9, 2.5))
    y = y + a * butter(y, "highpass", 1000.0)
    g = max(0.0, drive + r.normal(0, 0.8))
    if g > 0.1:
        peak = float(np.max(np.abs(y))) or 1.0
        y = np.tanh(g * y / peak) / np.tanh(g) * peak
    return y.astype(np.float32)


@TASKS.register("embedded_emotion")
def emotion(ctx: Context) -> TaskOutput:
    """crema_d analogue: the same twelve sentences in four prosodic renditions, 3 s, five
    speaker-disjoint folds (voiced eSpeak voices only)."""
    name = "embedded_emotion"
    classes = list(EMOTIONS)
    voiced = [v for v in ctx.universe.task_voices if v.voiced]
    folds = dict(zip(FOLDS5, round_robin(voiced, ctx.seed, f"{name}/voices", 5), strict=True))
    bgs = fold_backgrounds(ctx, name, ["room_tone", "coloured_noise"])
    per_fold = ctx.n(480, 40) // 5
    n = 3 * SR

    def gen() -> Iterator[TaskClip]:
        for fold, i, lab, r in balanced_fold_items(ctx, name, per_fold, classes):
            vs = folds[fold]
            spk = Speaker.of(ctx.seed, vs[int(r.integers(len(vs)))])
            ps, rm, tm, vol, gap = EMOTIONS[lab]
            y = spk.say(
                FIXED_SENTENCES[int(r.integers(len(FIXED_SENTENCES)))],
                r,
                pitch_shift=ps + r.normal(0, 5),
                range_mul=rm * float(np.exp(r.normal(0, 0.25))),
                rate_mul=tm * float(np.exp(r.normal(0, 0.08))),
                volume=int(vol * np.exp(r.normal(0, 0.15))),
                wordgap=gap,
            )
            y = _effort(y, lab, r)
            x = np.zeros(n, np.float32)
            room = max(0, n - len(y))
            place(x, y[:n], int(r.integers(0, room + 1)))
            bg, bg_src = background(ctx, bgs[fold], n, r)
            x = mix_snr(x, bg, float(r.uniform(15, 40)))
            x = random_channel(x, r, 0.5)
            srcs = [spk.voice.source_id, bg_src]
            yield TaskClip(fold, f"{fold}-{i:05d}.wav", finish(x, r), [lab], srcs)

    spec = _scene_spec(name, "new_split_kfold", 3.0, classes)
    return TaskOutput(spec, gen(), ("voice:", "tex:"))


# --------------------------------------------------------------------------------- genre


@TASKS.register("embedded_genre")
def genre(ctx: Context) -> TaskOutput:
    """gtzan_genre analogue: six procedural styles, 4 s, five folds; instruments are drawn at
    random (independently of the style) from programs that are disjoint between folds; drum kits
    are shared; crowd/room backgrounds at 5-30 dB SNR."""
    name = "embedded_genre"
    prog_folds = dict(
        zip(
            FOLDS5,
            round_robin(ctx.universe.task_pitched_programs(), ctx.seed, f"{name}/programs", 5),
            strict=True,
        )
    )
    bgs: dict[str, list[tuple[str, int]]] = {f: [] for f in FOLDS5}
    for k in ("room_tone", "applause", "coloured_noise"):
        chunks = round_robin(ctx.universe.task_textures[k][:10], ctx.seed, f"{name}/bg/{k}", 5)
        for f, chunk in zip(FOLDS5, chunks, strict=True):
            bgs[f] += [(k, i) for i in chunk]
    per_fold = ctx.n(400, 30) // 5
    dur = 4.0
    n = int(dur * SR)
    kits = ctx.universe.task_kits

    def gen() -> Iterator[TaskClip]:
        for fold, i, lab, r in balanced_fold_items(ctx, name, per_fold, STYLES):
            ps = prog_folds[fold]
            progs = {role: ps[int(r.integers(len(ps)))] for role in ("melody", "chords", "bass")}
            kit = kits[int(r.integers(len(kits)))]
            parts = compose(lab, r, dur, progs, kit)
            x = render(parts, dur)
            bg, bg_src = background(ctx, bgs[fold], n, r)
            x = mix_snr(x, bg, float(r.uniform(5, 30)))
            x = random_channel(x, r, 1.0)
            srcs = [f"piece:{name}:{ctx.seed}:{fold}:{i}", bg_src]
            srcs += sorted({p.source_id for p in parts if p.notes})
            yield TaskClip(fold, f"{fold}-{i:05d}.wav", finish(x, r, 6.0), [lab], srcs)

    spec = _scene_spec(name, "new_split_kfold", dur, STYLES)
    return TaskOutput(spec, gen(), ("piece:", "gm:", "tex:"))


# ------------------------------------------------------------------------ office events

EVENT_TEXTURES = {  # label -> (texture kind, min s, max s)
    "knock": ("door_knock", 0.5, 1.5),
    "phone": ("phone_ring", 1.0, 2.5),
    "keys": ("keys_jingle", 0.4, 1.5),
    "clap": ("hand_clap", 0.3, 1.2),
    "alarm": ("alarm_beep", 0.8, 2.5),
    "keyboard": ("typing", 0.8, 2.5),
    "doorslam": ("door_slam", 0.3, 0.8),
}
EVENT_CLASSES = (*EVENT_TEXTURES, "speech")


def _event_audio(ctx, lab, split, recs, voices, r) -> tuple[np.ndarray, str]:
    """One event: a trimmed burst of the class's texture (or a short utterance)."""
    if lab == "speech":
        spk = Speaker.of(ctx.seed, voices[split][int(r.integers(len(voices[split])))])
        words = [*OTHER_WORDS, *KEYWORDS]
        text = " ".join(words[int(j)] for j in r.integers(0, len(words), int(r.integers(1, 5))))
        return spk.say(text, r), spk.voice.source_id
    kind, lo, hi = EVENT_TEXTURES[lab]
    choices = recs[lab][split]
    rec = choices[int(r.integers(len(choices)))]
    y = np.zeros(0, np.float32)
    for _ in range(6):
        long = texture(kind, rec, ctx.seed, int((hi + 3.0) * SR), r)
        a, _ = active_span(long, rel_db=-30.0)
        y = trim_silence(long[a : a + int(r.uniform(lo, hi) * SR)], rel_db=-30.0)
        if len(y) > 0.1 * SR and nonsilent(y):
            break
    return fade(y, 10.0), texture_source(kind, rec)


@TASKS.register("embedded_office_events")
def office_events(ctx: Context) -> TaskOutput:
    """dcase2016_task2 analogue: 10 s office scenes, 3-7 non-overlapping events of 8 classes at
    -6/0/+6 dB event-to-background ratio; start/end in ms; source-disjoint train/valid/test."""
    name = "embedded_office_events"
    voices = split_ids(ctx, f"{name}/voices", ctx.universe.task_voices, TRAINVALTEST, TVT_FRACTIONS)
    recs = {
        lab: split_ids(
            ctx,
            f"{name}/{kind}",
            ctx.universe.task_textures[kind][:15],
            TRAINVALTEST,
            TVT_FRACTIONS,
        )
        for lab, (kind, _, _) in EVENT_TEXTURES.items()
    }
    bgs = background_pool(
        ctx, f"{name}/bg", ["room_tone"], TRAINVALTEST, TVT_FRACTIONS, per_kind=20
    )
    counts = allocate(ctx.n(120, 6), TRAINVALTEST, TVT_FRACTIONS)
    dur = 10.0
    n = int(dur * SR)

    def gen() -> Iterator[TaskClip]:
        for split in TRAINVALTEST:
            for i in range(counts[split]):
                r = ctx.rng(name, split, i)
                bg, bg_src = background(ctx, bgs[split], n, r)
                bg = bg / (rms(bg) + 1e-9) * 0.02
                x = bg.copy()
                srcs = [bg_src]
                events = []
                t = float(r.uniform(0.1, 1.0))
                n_events = int(r.integers(3, 8))
                order = list(r.permutation(len(EVENT_CLASSES)))
                for j in range(n_events):
                    lab = EVENT_CLASSES[order[j % len(order)]]
                    y, src = _event_audio(ctx, lab, split, recs, voices, r)
                    if len(y) == 0:
                        continue
                    a, b = active_span(y, rel_db=-30.0)
                    if b <= a:
                        continue
                    start = int(t * SR)
                    if start + len(y) > n - int(0.1 * SR):
                        break
                    ebr = float(r.choice([-6.0, 0.0, 6.0]))
                    y = y * (0.02 * db_to_amp(ebr) / (rms(y[a:b]) + 1e-9))
                    place(x, y, start)
                    srcs.append(src)
                    events.append(
                        {
                            "label": lab,
                            "start": round((start + a) * 1000.0 / SR, 3),
                            "end": round(min(n, start + b) * 1000.0 / SR, 3),
                        }
                    )
                    t = (start + len(y)) / SR + float(r.uniform(0.2, 1.5))
                x = random_channel(x, r, 0.5)
                yield TaskClip(split, f"{split}-{i:05d}.wav", finish(x, r), events, srcs)

    spec = TaskSpec(
        task_name=name,
        embedding_type="event",
        prediction_type="multilabel",
        split_mode="trainvaltest",
        splits=TRAINVALTEST,
        sample_duration=dur,
        evaluation=EVENT_METRICS,
        vocabulary=EVENT_CLASSES,
    )
    return TaskOutput(spec, gen(), ("voice:", "tex:"))


if tuple(TASKS.names()) != TASK_NAMES:  # the planning's list (names.py) is this registry's
    raise RuntimeError(
        f"abt.data.embedded.names.TASK_NAMES {TASK_NAMES} does not list the registered "
        f"embedded tasks {tuple(TASKS.names())}: update it"
    )
