"""Tiny fakes of the real data sets in their published layouts (HEAR 2021 task folders and
archives, AudioSet segment CSVs with downloader file names, FSD50K), for tests."""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import defaults
import numpy as np
import soundfile as sf

from abt.data.hear_tasks import ClipRecord, TaskSpec, kfold_splits, write_task
from abt.data.store import ClipSpec, build_store


def tone(seconds: float, sr: int, f: float = 440.0, amp: float = 0.3, ch: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * f * t)
    return np.repeat(x[:, None], ch, axis=1).astype(np.float32)


def tone_clips(
    d: Path, n: int, *, seed: int, seconds: tuple[float, float], noise: float
) -> list[ClipSpec]:
    """``n`` 16 kHz WAVs ``<d>/<i>.wav``: a sine of random pitch (200-3000 Hz) and random length
    (uniform in ``seconds``) plus white noise of amplitude ``noise``; their clip specs."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        k = int(16000 * rng.uniform(*seconds))
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(200, 3000) * np.arange(k) / 16000)
        sf.write(d / f"{i}.wav", (x + noise * rng.standard_normal(k)).astype(np.float32), 16000)
        specs.append(ClipSpec(str(i), str(d / f"{i}.wav")))
    return specs


def tone_store(d: Path, n: int, *, seed: int, seconds: tuple[float, float], noise: float,
               stats_crops: int) -> Path:  # fmt: skip
    """A mel store ``<d>/store`` of :func:`tone_clips`."""
    specs = tone_clips(d, n, seed=seed, seconds=seconds, noise=noise)
    build_store(specs, d / "store", defaults.store_settings(stats_crops), log=lambda *_: None)
    return d / "store"


def hear_task(
    root: Path,
    name: str = "toy_scene",
    *,
    kind: str = "scene",
    folds: int = 0,
    rate: int = 48000,
    n: int = 2,
    seconds: float = 0.5,
    version: str = "v1",
    mode: str = "full",
) -> Path:
    """A HEAR task folder ``<root>/<name>-<version>-<mode>/`` with audio at ``rate`` only: a
    multiclass scene task (``folds`` > 0: k-fold) or an event task (``kind="event"``)."""
    splits = tuple(kfold_splits(folds)) if folds else ("train", "valid", "test")
    event = kind == "event"
    spec = TaskSpec(
        task_name=name,
        embedding_type="event" if event else "scene",
        prediction_type="multilabel" if event else "multiclass",
        split_mode="new_split_kfold" if folds else "trainvaltest",
        splits=splits,
        sample_duration=seconds,
        evaluation=("event_onset_200ms_fms",) if event else ("top1_acc", "mAP"),
        vocabulary=("a", "b"),
        version=version,
        mode=mode,
    )
    rng = np.random.default_rng(len(name))
    clips = []
    for s in splits:
        for i in range(n):
            x = 0.2 * np.sin(2 * np.pi * (300 + 200 * i) * np.arange(int(seconds * rate)) / rate)
            x = x + 0.01 * rng.standard_normal(x.size)
            lab = ["a", "b"][i % 2]
            ms = 1000.0 * seconds
            labels = [{"label": lab, "start": 0.1 * ms, "end": 0.6 * ms}] if event else [lab]
            clips.append(ClipRecord(s, f"{s}_{i}.wav", x, labels))
    return write_task(root, spec, clips, sample_rate=rate)


def to_archive(task_dir: Path, archive: Path, prefix: str = "tasks") -> Path:
    """The task as published: ``hear2021-<task>-<rate>.tar.gz`` holding ``tasks/<task>/...``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(task_dir, arcname=f"{prefix}/{task_dir.name}" if prefix else task_dir.name)
    return archive


def audioset_tree(
    root: Path,
    rows: list[tuple[str, str, str]],
    files: dict[str, np.ndarray | bytes],
    sr: int = 44100,
) -> tuple[Path, Path]:
    """``unbalanced_train_segments.csv`` (official header comments) and an audio folder with
    ``files`` (stem with extension -> audio or raw bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    audio = root / "audio"
    audio.mkdir(exist_ok=True)
    lines = [
        "# Segments csv created Sun Mar  5 10:54:31 2017",
        f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels=2, "
        "num_positive_labels=3",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ] + [f'{y}, {s}, {e}, "/m/09x0r,/m/04rlf"' for y, s, e in rows]
    csv_path = root / "unbalanced_train_segments.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    for name, x in files.items():
        p = audio / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(x, bytes):
            p.write_bytes(x)
        else:
            sf.write(p, x, sr)
    return csv_path, audio


def fsd50k_tree(root: Path, dev: dict[str, str], eval_: list[str], *, missing: tuple = (),
                sr: int = 44100) -> Path:  # fmt: skip
    """An FSD50K download: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv`` and the audio
    folders (``dev``: fname -> split train|val; ``missing`` fnames get no audio file)."""
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    labels = {"0": "Bark,Dog,Animal", "1": "Guitar,Music"}
    vocab = [(0, "Animal", "/m/0jbk"), (1, "Bark", "/m/05tny_"), (2, "Dog", "/m/0bt9lr"),
             (3, "Guitar", "/m/0342h"), (4, "Music", "/m/04rlf")]  # fmt: skip
    with open(gt / "vocabulary.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(vocab)
    with open(gt / "dev.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fname", "labels", "mids", "split"])
        for i, (fname, split) in enumerate(dev.items()):
            w.writerow([fname, labels[str(i % 2)], "/m/x", split])
    with open(gt / "eval.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fname", "labels", "mids"])
        for i, fname in enumerate(eval_):
            w.writerow([fname, labels[str(i % 2)], "/m/x"])
    for folder, names in (("FSD50K.dev_audio", list(dev)), ("FSD50K.eval_audio", eval_)):
        (root / folder).mkdir()
        for i, fname in enumerate(names):
            if fname not in missing:
                sf.write(root / folder / f"{fname}.wav", tone(0.3 + 0.1 * i, sr, 200 + 50 * i), sr)
    return root


def write_clip_list(path: Path, ids: list[str], column: str = "clip_id") -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([column])
        w.writerows([i] for i in ids)
    return path


def tiny_run(root: Path, *, n_clips: int = 16, epochs: int = 2) -> Path:
    """A finished pre-training run in the workflow's layout, small enough for a unit test: the
    store ``<root>/results/mels/pretrain/train`` of :func:`tone_clips` (0.6-1.2 s) and a run of
    the default encoder (AudioNTT), batch 8, ``<root>/results/pretrain/audiontt/baseline/seed0``
    (``model.ckpt``, ``hparams.yaml``, the metrics, ``summary.json``)."""
    from abt.config import REPO_ROOT, load_config
    from abt.plan import PRETRAIN_STORE, run_dir
    from abt.runspec import resolve
    from abt.trainer import Trainer

    (root / "clips").mkdir(parents=True, exist_ok=True)
    specs = tone_clips(root / "clips", n_clips, seed=0, seconds=(0.6, 1.2), noise=0.02)
    store = root / PRETRAIN_STORE.format(corpus="train")
    build_store(specs, store, defaults.store_settings(50), log=lambda *_: None)
    over = {"epochs": epochs, "batch_size": 8, "projector": {"hidden_dims": [64], "out_dim": 32},
            "log_every": 1}  # fmt: skip
    run = resolve(load_config(REPO_ROOT / "config.yaml"), "audiontt", overrides=over)
    out = root / run_dir("audiontt", "baseline", 0)
    Trainer(run, store, out, progress=False, log=lambda *_: None).fit()
    return out
