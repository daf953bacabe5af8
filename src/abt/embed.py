"""Embeddings of your own audio files with a trained encoder (``abt embed``).

    abt embed CKPT_OR_EXPORT INPUT... --out DIR [--timestamps] [--batch N] [--device D]

``CKPT_OR_EXPORT`` is a ``model.ckpt`` or a folder written by ``abt export`` (the same weights:
bit-identical embeddings). Each ``INPUT`` is a file or a folder (searched recursively). Every file
is decoded as the pre-training data is (:func:`abt.data.audio.load_audio`: any format and rate
soundfile reads, several channels averaged to mono, resampled with soxr HQ to the model's rate)
and embedded by the HEAR module (:mod:`abt.hear`: the checkpoint's front-end and normalisation):

* scene embeddings (default): ``DIR/<relative path>.npy`` of shape ``(D,)``;
* ``--timestamps``: ``DIR/<relative path>.npy`` of shape ``(T, D)`` (950 ms frames every 50 ms)
  and ``DIR/<relative path>.times.npy`` ``(T,)``, the frame centres in milliseconds.

**Names.** ``<relative path>`` is the input file's path relative to the deepest folder that holds
every input (a single folder input: its own tree; files: their folder), with its full file name
kept (``a/x.wav`` -> ``a/x.wav.npy``), so two files of the same name in different folders, or
``x.wav`` next to ``x.flac``, never share an output.

**Outcomes.** ``DIR/index.csv`` lists every input file (written as it goes): ``input``,
``status``, ``reason``, ``duration_s``, ``sample_rate`` and ``channels`` of the file, ``notes``
(resampling, down-mixing), ``embedding`` and ``times`` (paths relative to ``DIR``). Statuses:
``ok``; ``unreadable``, ``empty``, ``non_finite``, ``too_short`` (shorter than one STFT window,
64 ms) as the stores record them; ``failed`` (the encoder raised, e.g. out of memory on a very
long file; the message is the reason); ``not_audio`` (a file in an input folder whose suffix is
not an audio format soundfile reads: listed, not tried; a file named on the command line is
always tried). Silent files are embedded. Nothing is fatal: the command ends with the counts and
exits 0 when at least one file was embedded, 1 when none was (including when the inputs hold no
audio file). A missing input path, or an ``--out`` that is or lies inside an input folder, is an
error before anything is written.

**Batching.** ``--batch N`` files are decoded at a time and files of equal length among them go
through the encoder together; files of different lengths are never padded to each other, so
every embedding equals the one-file-at-a-time result (tested) up to float32 rounding: on CPUs
whose kernels depend on the batch size (seen on an AMD EPYC) a batch can differ in the last bits;
``--batch 1`` is the HEAR API's one-clip pass bit for bit.

**An existing ``--out``.** A folder that is not empty is refused, unless ``--force``: then the
files the previous run listed in its ``index.csv`` are removed first (nothing else is touched),
so no stale embedding survives next to the new ones.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abt.data.audio import OK, LoadPolicy, LoadResult, load_audio
from abt.devices import pick_device
from abt.hear import HearModel, load_model
from abt.outputs import replacing

INDEX = "index.csv"
INDEX_COLUMNS = (
    "input",
    "status",
    "reason",
    "duration_s",
    "sample_rate",
    "channels",
    "notes",
    "embedding",
    "times",
)
NOT_AUDIO = "not_audio"
FAILED = "failed"
#: file suffixes tried inside input folders: soundfile's formats and their usual aliases
_ALIASES = ("wave", "oga", "opus", "aif", "aifc", "snd", "sph", "iff", "8svx", "mat")
#: bytes of framed audio per pass in timestamp mode (each 950 ms frame is copied once)
_TIMESTAMP_BYTES = 256 * 2**20


class EmbedError(ValueError):
    """Bad ``abt embed`` arguments (a missing input, an unusable ``--out``); says what to do."""


def audio_suffixes() -> frozenset[str]:
    import soundfile as sf

    formats = {f.lower() for f in sf.available_formats() if f.upper() != "RAW"}
    return frozenset({f".{s}" for s in (*formats, *_ALIASES)})


@dataclass(frozen=True)
class Item:
    """One input file: its path as found, and the name of its outputs relative to ``--out``."""

    path: Path
    rel: str
    audio: bool = True

    @property
    def embedding(self) -> str:
        return self.rel + ".npy"

    @property
    def times(self) -> str:
        return self.rel + ".times.npy"


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Item]:
    """The files of ``inputs`` (files, or folders searched recursively, in sorted order), each
    once, named relative to the deepest folder holding them all."""
    if not inputs:
        raise EmbedError("abt embed needs at least one input file or folder")
    suffixes = audio_suffixes()
    found: list[tuple[Path, bool]] = []
    roots = []
    for given in map(Path, inputs):
        if given.is_dir():
            roots.append(os.path.abspath(given))
            files = sorted(p for p in given.rglob("*") if p.is_file())
            found += [(p, p.suffix.lower() in suffixes) for p in files]
        elif given.is_file():
            roots.append(os.path.dirname(os.path.abspath(given)))
            found.append((given, True))
        else:
            raise EmbedError(f"input {str(given)!r} does not exist (a file or a folder of audio)")
    root = os.path.commonpath(roots)
    seen: set[Path] = set()
    items = []
    for p, audio in found:
        key = p.resolve()
        if key in seen:
            continue
        seen.add(key)
        rel = Path(os.path.relpath(os.path.abspath(p), root)).as_posix()
        items.append(Item(p, rel, audio))
    names = [n for it in items if it.audio for n in (it.embedding, it.times)]
    dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if dup:
        raise EmbedError(f"two inputs would write the same output file(s) {dup[:3]}; rename one")
    return items


def prepare_out(
    out: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], force: bool = False
) -> Path:
    """Check ``out`` (not an input folder nor inside one; empty unless ``force``) and create it;
    with ``force``, remove the outputs a previous run listed in its index."""
    out = Path(out)
    target = out.resolve()
    for given in map(Path, inputs):
        if given.is_dir():
            src = given.resolve()
            if target == src or src in target.parents:
                raise EmbedError(
                    f"--out {str(out)!r} is inside the input folder {str(given)!r}: the "
                    "embeddings would be mixed with the audio; choose a folder outside it"
                )
    hint = f"choose a new folder, or pass --force to replace the embeddings listed in its {INDEX}"
    if replacing(out, force=force, name="--out", hint=hint, error=EmbedError):
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _remove_previous(out: Path) -> None:
    index = out / INDEX
    if not index.is_file():
        return
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for col in ("embedding", "times"):
            name = row.get(col) or ""
            p = (out / name).resolve()
            if name and out.resolve() in p.parents and p.is_file():
                p.unlink()
    index.unlink()


def audio_policy(model: HearModel) -> LoadPolicy:
    """How ``abt embed`` decodes files for ``model``: its sample rate; files shorter than one
    STFT window are ``too_short``; silent files are kept."""
    from abt.config import schema_defaults

    return LoadPolicy(
        sample_rate=model.sample_rate,
        min_duration_s=model.mels.n_fft / model.sample_rate,
        on_silent="keep",
        silence_peak=float(schema_defaults("preprocess")["silence_peak"]),  # noted, not excluded
    )


def load_wave(path: str | os.PathLike[str], model: HearModel) -> torch.Tensor:
    """A file as the model's input: mono, at ``model.sample_rate``, a 1-D float32 tensor
    (``get_scene_embeddings(load_wave(p, model)[None], model)`` embeds one file exactly as
    ``abt embed`` does). An unusable file raises :class:`EmbedError` with the reason."""
    res = load_audio(path, audio_policy(model))
    if not res.ok:
        raise EmbedError(f"{path}: {res.status}: {res.reason}")
    return torch.from_numpy(res.wave)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, path)


class _Index:
    """``index.csv``, one row per input, flushed as it goes (a killed run leaves a true list)."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "w", newline="")
        self.w = csv.DictWriter(self.fh, fieldnames=INDEX_COLUMNS)
        self.w.writeheader()
        self.counts: dict[str, int] = {}

    def add(
        self,
        item: Item,
        status: str,
        reason: str = "",
        res: LoadResult | None = None,
        duration: float | None = None,
        outputs: Sequence[str] = (),
    ) -> None:
        if duration is None and res is not None and res.orig_sample_rate:
            duration = res.orig_frames / res.orig_sample_rate
        self.w.writerow(
            {
                "input": str(item.path),
                "status": status,
                "reason": reason,
                "duration_s": "" if duration is None else round(duration, 4),
                "sample_rate": res.orig_sample_rate
                if res is not None and res.orig_sample_rate
                else "",
                "channels": res.orig_channels if res is not None and res.orig_channels else "",
                "notes": "; ".join(res.notes) if res is not None else "",
                "embedding": outputs[0] if outputs else "",
                "times": outputs[1] if len(outputs) > 1 else "",
            }
        )
        self.fh.flush()
        self.counts[status] = self.counts.get(status, 0) + 1

    def close(self) -> None:
        self.fh.close()


def _embed_group(
    model: HearModel, waves: list[np.ndarray], timestamps: bool
) -> list[tuple[np.ndarray, ...]]:
    """Embeddings of equal-length waveforms, one tuple per file: ``(scene,)`` or ``(emb, ms)``."""
    x = torch.from_numpy(np.stack(waves))
    if not timestamps:
        return [(e,) for e in model.scene(x).float().cpu().numpy()]
    emb, ts = model.timestamps(x)
    emb, ts = emb.float().cpu().numpy(), ts.float().cpu().numpy()
    return [(emb[i], ts[i]) for i in range(len(waves))]


def _per_pass(model: HearModel, n_samples: int, batch: int, timestamps: bool) -> int:
    if not timestamps:
        return batch
    framed = model.n_timestamps(n_samples) * model.frame_samples * 4
    return max(1, min(batch, _TIMESTAMP_BYTES // max(framed, 1)))


def embed_files(
    model: HearModel,
    items: Sequence[Item],
    out: Path,
    *,
    timestamps: bool = False,
    batch: int = 16,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Embed ``items`` into ``out`` (see the module docstring); returns the status counts."""
    from tqdm.auto import tqdm

    if batch < 1:
        raise EmbedError(f"--batch must be >= 1, got {batch}")
    policy = audio_policy(model)
    index = _Index(out / INDEX)
    bar = tqdm(
        total=len(items),
        desc="embedding",
        unit="file",
        disable=None if progress is None else not progress,
    )
    try:
        for item in (it for it in items if not it.audio):
            index.add(item, NOT_AUDIO, "not an audio file suffix (name the file to try it)")
            bar.update(1)
        audio = [it for it in items if it.audio]
        for lo in range(0, len(audio), batch):
            chunk = audio[lo : lo + batch]
            loaded = [(it, load_audio(it.path, policy)) for it in chunk]
            for it, res in loaded:
                if not res.ok:
                    index.add(it, res.status, res.reason, res)
                    bar.update(1)
            by_len: dict[int, list[tuple[Item, LoadResult]]] = {}
            for it, res in loaded:
                if res.ok:
                    by_len.setdefault(res.wave.shape[0], []).append((it, res))  # type: ignore[union-attr]
            for n_samples, group in by_len.items():
                per = _per_pass(model, n_samples, batch, timestamps)
                for g in range(0, len(group), per):
                    _write_group(model, group[g : g + per], out, timestamps, index)
                    bar.update(len(group[g : g + per]))
            bar.set_postfix(
                failed=sum(v for k, v in index.counts.items() if k not in (OK, NOT_AUDIO))
            )
    finally:
        bar.close()
        index.close()
    counts = dict(index.counts)
    n_audio = sum(1 for it in items if it.audio)
    bad = {k: v for k, v in sorted(counts.items()) if k not in (OK, NOT_AUDIO)}
    msg = f"[abt] embedded {counts.get(OK, 0)} of {n_audio} audio files into {out}"
    if bad:
        msg += "; not embedded: " + ", ".join(f"{v} {k}" for k, v in bad.items())
    if counts.get(NOT_AUDIO):
        msg += f"; {counts[NOT_AUDIO]} other files skipped (not_audio)"
    log(msg + f" (see {out / INDEX})")
    return counts


def _write_group(
    model: HearModel,
    group: Sequence[tuple[Item, LoadResult]],
    out: Path,
    timestamps: bool,
    index: _Index,
) -> None:
    try:
        embs = _embed_group(model, [res.wave for _, res in group], timestamps)  # type: ignore[misc]
    except RuntimeError as e:  # e.g. out of memory: try the files one at a time
        if len(group) > 1:
            for one in group:
                _write_group(model, [one], out, timestamps, index)
            return
        item, res = group[0]
        index.add(item, FAILED, f"the encoder failed: {str(e).splitlines()[0]}", res)
        return
    for (item, res), arrays in zip(group, embs, strict=True):
        names = (item.embedding, item.times)[: len(arrays)]
        for name, arr in zip(names, arrays, strict=True):
            _save(out / name, np.ascontiguousarray(arr, dtype=np.float32))
        duration = res.wave.shape[0] / model.sample_rate  # type: ignore[union-attr]
        index.add(item, OK, "", res, duration=duration, outputs=names)


def run_embed(
    model_path: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    timestamps: bool = False,
    batch: int = 16,
    device: str = "auto",
    force: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``abt embed``: check the arguments, load the model on ``device``, embed every input."""
    model = load_model(str(model_path)).to(pick_device(device))
    items = collect_inputs(inputs)
    out_dir = prepare_out(out, inputs, force=force)
    counts = embed_files(
        model, items, out_dir, timestamps=timestamps, batch=batch, progress=progress, log=log
    )
    return {"out": str(out_dir), "device": str(model.device), "counts": counts}
