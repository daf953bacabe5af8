"""A log-mel + logistic-regression baseline that tells whether a scene task is sensible.

Features: per-clip mean and standard deviation over time of the log-mel (:mod:`abt.data.mel`),
standardised, then a multinomial logistic regression (fixed seed). ``trainvaltest`` tasks are fit on
train + valid and scored on test; k-fold tasks are scored fold by fold (test = fold i, train = the
rest) and averaged. The score is top-1 accuracy (``pitch_acc`` for pitch tasks, which is the same
thing). Chance is the majority-class rate of the tested split(s). A task is

* ``"too_easy"`` if score >= 0.95,
* ``"not_learnable"`` if score <= chance + 0.05,
* ``"ok"`` otherwise.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from abt.data.hear_tasks import TaskInfo, read_task
from abt.data.mel import LogMelFrontEnd, MelConfig

TOO_EASY = 0.95
MARGIN = 0.05
SEED = 0
MAX_ITER = 5000


def verdict(
    score: float, chance: float, *, too_easy: float = TOO_EASY, margin: float = MARGIN
) -> str:
    """``"too_easy"``, ``"not_learnable"`` or ``"ok"`` (see module docstring)."""
    if score >= too_easy:
        return "too_easy"
    if score <= chance + margin:
        return "not_learnable"
    return "ok"


def clip_features(wave: np.ndarray, front_end: LogMelFrontEnd) -> np.ndarray:
    """Mean and std over time of the log-mel of one clip: ``(2 * n_mels,)`` float64."""
    import torch

    x = np.asarray(wave, dtype=np.float32)
    if len(x) < front_end.min_samples:
        x = np.pad(x, (0, front_end.min_samples - len(x)))
    with torch.no_grad():
        m = front_end(torch.from_numpy(x)).numpy().astype(np.float64)
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])


def task_features(info: TaskInfo, mel_cfg: MelConfig) -> dict[str, tuple[np.ndarray, list[str]]]:
    """``split -> (features [n, 2*n_mels], labels)`` for a scene task (clips in file-name order;
    the label is the first one of each clip)."""
    import soundfile as sf

    cfg = mel_cfg
    if info.sample_rate != cfg.sample_rate:
        raise ValueError(
            f"{info.task_dir}: audio is at {info.sample_rate} Hz, "
            f"the front-end expects {cfg.sample_rate} Hz"
        )
    fe = LogMelFrontEnd(cfg)
    out = {}
    for split in info.splits:
        names = sorted(info.labels[split])
        feats = []
        for fname in names:
            x, _ = sf.read(str(info.audio_path(split, fname)), dtype="float32", always_2d=True)
            feats.append(clip_features(x.mean(axis=1), fe))
        feats_arr = np.stack(feats) if feats else np.zeros((0, 2 * cfg.n_mels))
        out[split] = (feats_arr, [(info.labels[split][f] or [""])[0] for f in names])
    return out


def _fit_score(xtr, ytr, xte, yte) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(ytr)) < 2:
        majority = Counter(ytr).most_common(1)[0][0]
        return float(np.mean([y == majority for y in yte]))
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=MAX_ITER, random_state=SEED)
    )
    model.fit(xtr, ytr)
    return float(np.mean(model.predict(xte) == np.asarray(yte)))


def _majority_rate(labels: list[str]) -> float:
    return Counter(labels).most_common(1)[0][1] / len(labels) if labels else 0.0


def _folds(info: TaskInfo) -> list[tuple[list[str], str]]:
    """(train splits, test split) pairs: k-fold -> every fold once; else train+valid -> test."""
    if info.is_kfold:
        return [([s for s in info.splits if s != t], t) for t in info.splits]
    return [(["train", "valid"], "test")]


def _multilabel_baseline(info: TaskInfo, mel_cfg: MelConfig) -> dict[str, Any]:
    """Multilabel scene tasks (fsd50k-like): one-vs-rest logistic regression, macro mAP over the
    classes present in the test split; chance is their mean prevalence (a random scorer's AP)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = task_features(info, mel_cfg)
    idx = info.label_to_idx

    def targets(split: str) -> np.ndarray:
        y = np.zeros((len(info.labels[split]), len(idx)), dtype=int)
        for i, fname in enumerate(sorted(info.labels[split])):
            for lab in info.labels[split][fname]:
                y[i, idx[lab]] = 1
        return y

    scores, chances, per_split = [], [], {}
    for train, test in _folds(info):
        xtr = np.concatenate([feats[s][0] for s in train])
        ytr = np.concatenate([targets(s) for s in train])
        yte = targets(test)
        cols = (ytr.sum(0) > 0) & (ytr.sum(0) < len(ytr)) & (yte.sum(0) > 0)
        model = make_pipeline(
            StandardScaler(),
            OneVsRestClassifier(LogisticRegression(max_iter=MAX_ITER, random_state=SEED)),
        )
        model.fit(xtr, ytr[:, cols])
        prob = np.asarray(model.predict_proba(feats[test][0])).reshape(len(yte), -1)
        scores.append(float(average_precision_score(yte[:, cols], prob, average="macro")))
        chances.append(float(yte[:, cols].mean()))
        per_split[test] = scores[-1]
    score, chance = float(np.mean(scores)), float(np.mean(chances))
    return {
        "task": info.task_name,
        "split_mode": info.split_mode,
        "n_classes": len(info.vocabulary),
        "n_clips": info.n_clips(),
        "metric": "mAP",
        "score": score,
        "chance": chance,
        "verdict": verdict(score, chance),
        "per_split": per_split,
    }


def task_baseline(task_dir: str | Path, mel_cfg: MelConfig) -> dict[str, Any]:
    """Baseline score, chance level and verdict of one task.

    Multiclass scene tasks get the baseline of the module docstring; multilabel scene tasks a
    one-vs-rest variant scored by mAP; event tasks the frame-level :func:`event_baseline`."""
    info = read_task(task_dir)
    if info.embedding_type == "event":
        return event_baseline(task_dir, mel_cfg)
    if info.prediction_type != "multiclass":
        return _multilabel_baseline(info, mel_cfg)
    feats = task_features(info, mel_cfg)
    metric = "pitch_acc" if info.evaluation[0] == "pitch_acc" else "top1_acc"
    if info.is_kfold:
        scores, chances = [], []
        for test in info.splits:
            train = [s for s in info.splits if s != test]
            xtr = np.concatenate([feats[s][0] for s in train])
            ytr = [y for s in train for y in feats[s][1]]
            scores.append(_fit_score(xtr, ytr, *feats[test]))
            chances.append(_majority_rate(feats[test][1]))
        score, chance = float(np.mean(scores)), float(np.mean(chances))
        per_split = dict(zip(info.splits, scores, strict=True))
    else:
        xtr = np.concatenate([feats["train"][0], feats["valid"][0]])
        ytr = feats["train"][1] + feats["valid"][1]
        score = _fit_score(xtr, ytr, *feats["test"])
        chance = _majority_rate(feats["test"][1])
        per_split = {"test": score}
    return {
        "task": info.task_name,
        "split_mode": info.split_mode,
        "n_classes": len(info.vocabulary),
        "n_clips": info.n_clips(),
        "metric": metric,
        "score": score,
        "chance": chance,
        "verdict": verdict(score, chance),
        "per_split": per_split,
    }


BLOCK_FRAMES = 10  # event baseline resolution: 10 log-mel frames = 100 ms


def _event_blocks(x: np.ndarray, fe: LogMelFrontEnd) -> np.ndarray:
    """Log-mel averaged over 100 ms blocks, each stacked with its two neighbours."""
    import torch

    with torch.no_grad():
        m = fe(torch.from_numpy(np.asarray(x, np.float32))).numpy().astype(np.float64)
    nb = max(1, len(m) // BLOCK_FRAMES)
    b = m[: nb * BLOCK_FRAMES].reshape(nb, BLOCK_FRAMES, -1).mean(axis=1)
    pad = np.concatenate([b[:1], b, b[-1:]])
    return np.concatenate([pad[:-2], pad[1:-1], pad[2:]], axis=1)


def event_baseline(task_dir: str | Path, mel_cfg: MelConfig) -> dict[str, Any]:
    """An optional frame-level reference for event tasks (not a HEAR metric): 100 ms blocks of
    log-mel (+-1 block context) -> one-vs-rest logistic regression, fit on train + valid, scored
    by micro-F1 of the active labels per block on test. Chance is the F1 of calling every label
    active in every block."""
    import soundfile as sf
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    info = read_task(task_dir)
    if info.embedding_type != "event":
        raise ValueError(f"{info.task_dir}: not an event task")
    cfg = mel_cfg
    fe = LogMelFrontEnd(cfg)
    idx = info.label_to_idx
    block_ms = BLOCK_FRAMES * cfg.hop_length * 1000.0 / cfg.sample_rate
    data = {}
    for split in info.splits:
        xs, ys = [], []
        for fname in sorted(info.labels[split]):
            x, _ = sf.read(str(info.audio_path(split, fname)), dtype="float32", always_2d=True)
            feats = _event_blocks(x.mean(axis=1), fe)
            centres = (np.arange(len(feats)) + 0.5) * block_ms
            y = np.zeros((len(feats), len(idx)), dtype=int)
            for ev in info.labels[split][fname]:
                y[(centres >= ev["start"]) & (centres <= ev["end"]), idx[ev["label"]]] = 1
            xs.append(feats)
            ys.append(y)
        data[split] = (np.concatenate(xs), np.concatenate(ys))
    train = [s for s in info.splits if s != "test"] if not info.is_kfold else info.splits[1:]
    test = "test" if not info.is_kfold else info.splits[0]
    xtr = np.concatenate([data[s][0] for s in train])
    ytr = np.concatenate([data[s][1] for s in train])
    xte, yte = data[test]
    keep = ytr.sum(axis=0) > 0
    model = make_pipeline(
        StandardScaler(),
        OneVsRestClassifier(LogisticRegression(max_iter=MAX_ITER, random_state=SEED)),
    )
    pred = np.zeros_like(yte)
    if keep.any():
        model.fit(xtr, ytr[:, keep])
        pred[:, keep] = np.asarray(model.predict(xte)).reshape(len(xte), -1)

    def f1(p: np.ndarray, t: np.ndarray) -> float:
        tp = float((p & t).sum())
        return 2 * tp / max(1.0, float(p.sum() + t.sum()))

    score, chance = f1(pred, yte), f1(np.ones_like(yte), yte)
    return {
        "per_split": {test: score},
        "task": info.task_name,
        "split_mode": info.split_mode,
        "n_classes": len(info.vocabulary),
        "n_clips": info.n_clips(),
        "metric": "frame_f1_100ms",
        "score": score,
        "chance": chance,
        "verdict": verdict(score, chance),
    }


def baseline_table(task_dirs, mel_cfg: MelConfig, *, include_events: bool = False):
    """A :class:`pandas.DataFrame` with one row per multiclass scene task among ``task_dirs``
    (other task types are skipped; with ``include_events`` event tasks get a row from the
    frame-level :func:`event_baseline`): task, split_mode, n_classes, n_clips, metric, score,
    chance, verdict."""
    import pandas as pd

    rows = []
    for d in task_dirs:
        info = read_task(d)
        if info.embedding_type == "event" and not include_events:
            continue
        if info.embedding_type == "scene" and info.prediction_type != "multiclass":
            continue
        r = task_baseline(d, mel_cfg)
        r.pop("per_split", None)
        rows.append(r)
    cols = ["task", "split_mode", "n_classes", "n_clips", "metric", "score", "chance", "verdict"]
    return pd.DataFrame(rows, columns=cols)
