"""Linear-probe monitoring during pre-training (thesis §4.2.2, Table 4.5, Fig. 4.4; §4.1.1).

A true linear classifier on frozen embeddings of a HEAR-format task (FSD50K in the paper, an
embedded task by default): Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 1e-8),
batch 200, at most 100 epochs, early stopping on the validation score with patience 10, the best
weights restored, scored on the test split. Two label budgets: 100 % of the training labels, and
5 examples per class (three random subsets drawing 5 clips of every class, all of a class that
has fewer; multi-label clips count for all their labels; mean ± std of the three test scores).

Embeddings come from the log-mel task stores (``results/mels/tasks/<task>/<split>``), normalised
with the *pre-training* dataset statistics, exactly as the HEAR module does: convolutional
encoders see the whole clip (or a ``crop_frames`` crop: random, as the thesis, seeded so that
every evaluation of a run sees the same crops), ViTs average 96-frame units.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abt.data.melstore import MelStore
from abt.hear import HearModel


@dataclass(frozen=True)
class ProbeConfig:
    """The linear classifier's training (``monitor.classifier``, every key given: the schema
    owns the defaults). ``standardize`` the embeddings (training-split statistics) and the
    ``seed`` of the classifier's initialisation and batches are fixed by the protocol."""

    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    standardize: bool = True
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeConfig:
        return cls(**dict(d))


@dataclass
class TaskData:
    """Embeddings and labels of one task split set (train / valid / test)."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]  # int class ids (multiclass) or multi-hot (multilabel)
    n_classes: int
    multilabel: bool
    metric: str


# --------------------------------------------------------------------------------------------
# embeddings
# --------------------------------------------------------------------------------------------


#: how a clip longer than the probe's crop is cropped (``monitor.crop``)
CROPS = ("random", "center")


def _fit_length(
    x: np.ndarray,
    crop_frames: int | None,
    silence: float,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``crop_frames`` frames of the clip -- a uniformly random crop when ``rng`` is given (the
    thesis: "randomly cropped"), else the centre one -- or padding with silence for shorter
    clips."""
    x = np.asarray(x, dtype=np.float32)
    if crop_frames is None:
        return x
    if x.shape[0] > crop_frames:
        span = x.shape[0] - crop_frames
        s = int(rng.integers(0, span + 1)) if rng is not None else span // 2
        return x[s : s + crop_frames]
    if x.shape[0] < crop_frames:
        pad = np.full((crop_frames - x.shape[0], x.shape[1]), silence, np.float32)
        return np.concatenate([x, pad])
    return x


@torch.no_grad()
def embed_logmels(
    model: HearModel,
    logmels: Sequence[np.ndarray],
    *,
    crop_frames: int | None = None,
    rng: np.random.Generator | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Embeddings ``(N, D)`` of raw ``(frames, n_mels)`` log-mels through the HEAR module's scene
    path (the checkpoint's dataset normalisation; ViTs average units, conv encoders see the whole
    clip). ``crop_frames``: a crop (random with ``rng``, else centred), or padding with silence
    for shorter clips. Clips of equal length are embedded together, ``batch_size`` at a time (in
    eval mode a clip's embedding does not depend on its batch mates)."""
    silence = model.mels.silence_value
    clips = [_fit_length(x, crop_frames, silence, rng) for x in logmels]
    out: list[np.ndarray | None] = [None] * len(clips)
    by_len: dict[int, list[int]] = {}
    for i, x in enumerate(clips):
        by_len.setdefault(x.shape[0], []).append(i)
    for idx in by_len.values():
        for lo in range(0, len(idx), batch_size):
            part = idx[lo : lo + batch_size]
            x = np.stack([clips[i] for i in part])  # (b, T, F)
            t = torch.from_numpy((x - model.norm_mean) / model.norm_std).transpose(1, 2)[:, None]
            emb = model.scene_from_logmel(t.to(model.device)).float().cpu().numpy()
            for j, i in enumerate(part):
                out[i] = emb[j]
    dim = model.scene_embedding_size
    return np.stack(out) if out else np.zeros((0, dim), np.float32)  # type: ignore[arg-type]


def embed_logmel(
    model: HearModel, logmel: np.ndarray, *, crop_frames: int | None = None
) -> np.ndarray:
    """:func:`embed_logmels` of one clip."""
    return embed_logmels(model, [logmel], crop_frames=crop_frames)[0]


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _split_roles(splits: Sequence[str]) -> dict[str, list[str]]:
    """train/valid/test roles; k-fold tasks use fold 0 as test, fold 1 as valid (HEAR order)."""
    if {"train", "valid", "test"} <= set(splits):
        return {"train": ["train"], "valid": ["valid"], "test": ["test"]}
    folds = sorted(splits)
    if len(folds) < 3:
        raise ValueError(f"a probe task needs train/valid/test or >= 3 folds, got {folds}")
    return {"test": [folds[0]], "valid": [folds[1]], "train": folds[2:]}


def load_task_embeddings(
    encoder: nn.Module,
    task_dir: str | Path,
    stores_dir: str | Path,
    *,
    mean: float,
    std: float,
    crop_frames: int | None,
    device: torch.device | str | None = None,
    crop: str = "random",
    seed: int = 0,
) -> TaskData:
    """Embed every clip of a task from its mel stores, with labels from the task's split JSONs,
    on ``device`` (default: where the encoder's parameters are). ``crop`` (``random``: seeded by
    ``seed`` and the split, so every evaluation sees the same crops; ``center``) applies to clips
    longer than ``crop_frames``."""
    if crop not in CROPS:
        raise ValueError(f"monitor.crop must be one of {CROPS}, got {crop!r}")
    from abt.data.hear_tasks import read_task
    from abt.data.mel import MelConfig

    info = read_task(task_dir)
    if info.embedding_type != "scene":
        raise ValueError(
            f"linear-probe monitoring needs a scene task; {info.task_name} is {info.embedding_type}"
        )
    vocab = {lab: i for i, lab in enumerate(info.vocabulary)}
    roles = _split_roles(info.splits)
    model: HearModel | None = None
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    multilabel = info.prediction_type == "multilabel"
    for role, splits in roles.items():
        feats, labels = [], []
        for split in splits:
            st = MelStore(Path(stores_dir) / split)
            lab = info.labels[split]
            if model is None:
                model = HearModel(encoder, MelConfig.from_dict(st.stats["mels"]), mean, std)
                model = model.to(device if device is not None else _device_of(encoder))
            clips = [st.clip(i) for i in range(len(st))]
            rng = (
                np.random.default_rng([seed, zlib.crc32(split.encode())])
                if crop == "random"
                else None
            )
            feats.extend(embed_logmels(model, clips, crop_frames=crop_frames, rng=rng))
            for cid in st.clip_ids:
                ids = [vocab[v] for v in lab[cid]]
                if multilabel:
                    y = np.zeros(len(vocab), np.float32)
                    y[ids] = 1
                    labels.append(y)
                else:
                    labels.append(ids[0])
        xs[role] = np.stack(feats).astype(np.float32)
        ys[role] = np.stack(labels) if multilabel else np.asarray(labels, dtype=np.int64)
    metric = "mAP" if multilabel else "top1_acc"
    return TaskData(xs, ys, len(vocab), multilabel, metric)


# --------------------------------------------------------------------------------------------
# the linear classifier
# --------------------------------------------------------------------------------------------


def _score(logits: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
    if multilabel:
        from sklearn.metrics import average_precision_score

        keep = y.sum(0) > 0
        return float(average_precision_score(y[:, keep], logits[:, keep], average="macro"))
    return float((logits.argmax(1) == y).mean())


def _linear(d_in: int, d_out: int, seed: int) -> nn.Linear:
    """``nn.Linear`` with torch's default initialisation drawn from a generator of its own
    (the same weights as ``torch.manual_seed(seed)`` then ``nn.Linear``), so that a probe during
    pre-training leaves the global CPU and CUDA generators -- the run's dropout and masking
    streams -- untouched."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.device("meta"):
        model = nn.Linear(d_in, d_out)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        nn.init.kaiming_uniform_(model.weight, a=math.sqrt(5), generator=g)
        bound = 1 / math.sqrt(d_in) if d_in > 0 else 0.0
        nn.init.uniform_(model.bias, -bound, bound, generator=g)
    return model


def fit_linear_probe(
    data: TaskData, cfg: ProbeConfig, train_idx: np.ndarray | None = None
) -> dict[str, float]:
    """Train the linear classifier; returns {"test": score, "valid": best score, "epochs": n}."""
    g = torch.Generator().manual_seed(cfg.seed)
    xtr = data.x["train"] if train_idx is None else data.x["train"][train_idx]
    ytr = data.y["train"] if train_idx is None else data.y["train"][train_idx]
    mu, sd = (xtr.mean(0), xtr.std(0) + 1e-8) if cfg.standardize else (0.0, 1.0)

    def prep(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mu) / sd).astype(np.float32))

    Xtr, Xva, Xte = prep(xtr), prep(data.x["valid"]), prep(data.x["test"])
    Ytr = torch.from_numpy(ytr)
    model = _linear(Xtr.shape[1], data.n_classes, cfg.seed)
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss() if data.multilabel else nn.CrossEntropyLoss()
    best, best_state, bad, epochs = -math.inf, None, 0, 0
    for epoch in range(cfg.max_epochs):
        model.train()
        perm = torch.randperm(len(Xtr), generator=g)
        for i in range(0, len(Xtr), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            opt.zero_grad()
            loss_fn(model(Xtr[b]), Ytr[b]).backward()
            opt.step()
        epochs = epoch + 1
        model.eval()
        with torch.no_grad():
            val = _score(model(Xva).numpy(), data.y["valid"], data.multilabel)
        if val >= best:  # ties count as improvement (as the authors' classifier does)
            best, bad = val, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    with torch.no_grad():
        test = _score(model(Xte).numpy(), data.y["test"], data.multilabel)
    return {"test": test, "valid": best, "epochs": epochs}


def low_shot_subsets(y: np.ndarray, per_class: int, n_subsets: int, seed: int) -> list[np.ndarray]:
    """``n_subsets`` random training subsets: ``per_class`` clips drawn for every class (all of a
    class's clips if it has fewer). Multilabel: a clip is drawn for one class but counts for each
    of its labels, so a class can end up with more than ``per_class`` positives (co-occurring
    labels); a multiclass subset holds exactly ``min(per_class, n_c)`` clips of each class."""
    rng = np.random.default_rng(seed)
    out = []
    classes = range(y.shape[1]) if y.ndim == 2 else np.unique(y)
    for _ in range(n_subsets):
        chosen: list[int] = []
        for c in classes:
            members = np.flatnonzero(y[:, c] > 0) if y.ndim == 2 else np.flatnonzero(y == c)
            k = min(per_class, len(members))
            chosen.extend(rng.choice(members, size=k, replace=False).tolist())
        out.append(np.unique(np.asarray(chosen, dtype=np.int64)))
    return out


def probe_scores(
    data: TaskData, cfg: ProbeConfig, per_class: int, n_subsets: int
) -> dict[str, float]:
    """100 % labels and ``per_class`` labels per class (mean ± std over ``n_subsets``)."""
    full = fit_linear_probe(data, cfg)
    low = [
        fit_linear_probe(data, cfg, idx)["test"]
        for idx in low_shot_subsets(data.y["train"], per_class, n_subsets, cfg.seed)
    ]
    return {
        "probe_metric": data.metric,
        "probe_100": full["test"],
        f"probe_{per_class}pc_mean": float(np.mean(low)),
        # the spread over the subsets as the thesis's tables give it (the authors' np.std, ddof 0)
        f"probe_{per_class}pc_std": float(np.std(low)),
    }


class ProbeMonitor:
    """Trainer callback: every ``every_epochs`` epochs (and at the end), probe the encoder."""

    def __init__(
        self,
        task_dir: str | Path,
        stores_dir: str | Path,
        *,
        every_epochs: int,
        crop_frames: int | None,
        classifier: Mapping[str, Any],
        per_class: int,
        n_subsets: int,
        crop: str,
        at_start: bool = False,
    ) -> None:
        self.task_dir, self.stores_dir = Path(task_dir), Path(stores_dir)
        self.every, self.crop = int(every_epochs), crop_frames
        self.cfg = ProbeConfig.from_dict(classifier)
        self.per_class, self.n_subsets = per_class, n_subsets
        self.at_start = at_start
        self.crop_mode = crop

    @classmethod
    def from_config(
        cls,
        monitor: Mapping[str, Any],
        task_dir: str | Path,
        stores_dir: str | Path,
        every_epochs: int | None = None,
        crop_frames: int | None = None,
    ) -> ProbeMonitor:
        """The probe the ``monitor`` config section describes (completed with the schema's
        defaults and checked); ``every_epochs`` and ``crop_frames`` override its interval and
        crop (sweeps: every epoch, 96 frames)."""
        from abt.config import schema_defaults

        monitor = schema_defaults("monitor", dict(monitor))
        return cls(
            task_dir,
            stores_dir,
            every_epochs=monitor["every_epochs"] if every_epochs is None else every_epochs,
            crop_frames=monitor["crop_frames"] if crop_frames is None else crop_frames,
            crop=monitor["crop"],
            classifier=monitor["classifier"],
            per_class=monitor["per_class"],
            n_subsets=monitor["subsets"],
        )

    def evaluate(
        self, encoder: nn.Module, mean: float, std: float, device: Any = None
    ) -> dict[str, float]:
        was_training = encoder.training
        data = load_task_embeddings(
            encoder,
            self.task_dir,
            self.stores_dir,
            mean=mean,
            std=std,
            crop_frames=self.crop,
            device=device,
            crop=self.crop_mode,
            seed=self.cfg.seed,
        )
        encoder.train(was_training)
        return probe_scores(data, self.cfg, self.per_class, self.n_subsets)

    def __call__(self, trainer: Any, epoch: int) -> dict[str, float] | None:
        if epoch % self.every and epoch != trainer.epochs:
            return None
        return self.evaluate(trainer.encoder, trainer.store.mean, trainer.store.std, trainer.device)
