"""Fine-tuning evaluation: the encoder trained end to end with a linear head on a labelled task.

Beyond the thesis, which evaluates by linear probes and the HEAR kit; it defines fine-tuning
(§2.3, Eq. 2.12: the encoder's pre-trained weights are the start, encoder and head are trained
together). The protocol follows EVAR (Niizumi et al., ``nttcslab/eval-audio-repr``
``finetune.py``) and the Barlow Twins evaluation (``facebookresearch/barlowtwins``
``evaluate.py``) where they agree, at the scale of a CPU (docs/fidelity.md rows B13-B17):

* **Model**: a linear head on the encoder's scene embedding, through the HEAR module's scene path
  (:meth:`abt.hear.HearModel.scene_forward`: conv encoders pool over the whole input, ViTs average
  96-frame units), with a BatchNorm without affine parameters in front (EVAR's ``TaskHead``;
  ``head_norm``); head weights drawn from N(0, 0.01), bias 0 (both references).
* **Learning rates**: ``optimizer`` (a builder of :data:`abt.optim.OPTIMIZERS`, SGD with momentum
  0.9 by default as both references; weight decay on weights only) sets the head's rate; the
  encoder's is ``encoder_lr_ratio`` times it, group by group (Barlow Twins' ``--lr-backbone`` /
  ``--lr-classifier``). ``freeze_encoder``: the encoder is not trained (and stays in eval mode:
  its BatchNorm statistics do not move either) -- linear evaluation through the same loop.
  Linear warm-up over ``warmup_epochs``, then cosine decay to 0, per step
  (:class:`abt.optim.WarmupCosine`).
* **Inputs**: log-mels from the task's stores (``results/mels/tasks/<task>/<split>``, as the
  linear probe reads them), normalised with the checkpoint's dataset statistics. Training clips
  are randomly cropped to ``crop_frames`` (shorter ones padded with silence), then optionally
  masked and mixed:

  - SpecAugment-style masks (``masking``): ``n_freq`` bands of ``w ~ U{0..freq}`` mel bins and
    ``n_time`` bands of ``U{0..time}`` frames per clip, each starting at ``s ~ U{0..size - w}``,
    set to 0 (the dataset mean after normalisation);
  - Mixup (``mixup.alpha`` > 0): each clip mixed with a random partner of its batch,
    ``λ ~ Beta(α, α)`` per clip, in the mel power domain (``log(λ e^a + (1 - λ) e^b)`` of the raw
    log-mels, as the thesis's Mixup block and as mixing the waveforms does to their spectra),
    the targets mixed by the same ``λ``.

  Validation and test clips are embedded whole, as the HEAR module embeds them.
* **Selection**: after every epoch the validation score; the best epoch's weights (encoder, head)
  are restored at the end; training stops after ``patience`` epochs without a strictly better
  validation score (EVAR's rule; the first best epoch is kept on ties).
* **Score**: the task's own metric (the first of ``evaluation`` in ``task_metadata.json``:
  ``top1_acc``, ``pitch_acc`` or ``mAP``, computed by :mod:`abt.report.stats` as for the HEAR
  scores) on the test split, with the 95 % interval of a bootstrap of the test predictions
  (``n_boot`` replicates; the same resampling as the HEAR scores, so two checkpoints fine-tuned
  on one task are paired). k-fold tasks use the probe's folds: fold 0 tests, fold 1 validates,
  the others train.
* **Determinism**: every random draw (batch order, crops, masks, Mixup) comes from one generator
  seeded by ``seed``; torch's own generator (dropout, if any) is forked and seeded, so a call
  leaves the caller's generators alone. On the CPU two calls give the same weights and scores.

:func:`finetune` is what a job calls; :func:`finetune_task` the same on a loaded encoder.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abt.data.melstore import MelStore
from abt.hear import HearModel
from abt.optim import WarmupCosine, build_optimizer, param_groups
from abt.probe import _fit_length, _split_roles, embed_logmels
from abt.report.stats import ACCURACY_METRICS, Split, TaskItems, interval

#: the metrics fine-tuning can score (:class:`abt.report.stats.Split`)
METRICS = (*ACCURACY_METRICS, "mAP")


class FinetuneError(ValueError):
    """A task or setting fine-tuning cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class FinetuneSettings:
    """The ``finetune`` section of the configuration (its defaults: the schema's)."""

    epochs: int
    batch_size: int
    crop_frames: int
    optimizer: dict[str, Any]
    encoder_lr_ratio: float
    freeze_encoder: bool
    warmup_epochs: float
    patience: int
    head_norm: bool
    masking: dict[str, int]
    mixup: dict[str, float]
    n_boot: int
    seed: int

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> FinetuneSettings:
        """From a validated ``finetune`` section (keys that choose *what* is fine-tuned --
        ``tasks``, ``random_init`` -- are the workflow's, not the training's)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: copy.deepcopy(v) for k, v in section.items() if k in known})


@dataclass
class TaskClips:
    """The log-mel clips and targets of one task, by role (train / valid / test)."""

    name: str
    clips: dict[str, list[np.ndarray]]
    targets: dict[str, np.ndarray]  # (n, C) float: one-hot (multiclass) or multi-hot
    multilabel: bool
    metric: str
    mels: dict[str, Any]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def load_task_clips(task_dir: str | Path, stores_dir: str | Path) -> TaskClips:
    """Every clip of a scene task from its mel stores (``stores_dir/<split>``), with targets from
    the task's split JSONs and its primary metric."""
    from abt.data.hear_tasks import read_task

    info = read_task(task_dir)
    if info.embedding_type != "scene":
        raise FinetuneError(
            f"fine-tuning needs a scene task; {info.task_name} is {info.embedding_type} "
            f"({task_dir}): choose a scene task in finetune.tasks"
        )
    metric = info.evaluation[0]
    if metric not in METRICS:
        raise FinetuneError(
            f"{info.task_name}: fine-tuning scores {list(METRICS)}, not the task's metric "
            f"{metric!r} ({task_dir}/task_metadata.json)"
        )
    multilabel = info.prediction_type == "multilabel"
    vocab = {lab: i for i, lab in enumerate(info.vocabulary)}
    clips: dict[str, list[np.ndarray]] = {}
    targets: dict[str, np.ndarray] = {}
    mels: dict[str, Any] | None = None
    for role, splits in _split_roles(info.splits).items():
        xs, ys = [], []
        for split in splits:
            st = MelStore(Path(stores_dir) / split)
            mels = mels or dict(st.stats["mels"])
            if dict(st.stats["mels"]) != mels:
                raise FinetuneError(
                    f"{Path(stores_dir) / split}: its front-end differs from the other splits' "
                    "stores; compute the task's stores again"
                )
            xs += [st.clip(i) for i in range(len(st))]
            for cid in st.clip_ids:
                y = np.zeros(len(vocab), np.float32)
                y[[vocab[v] for v in info.labels[split][cid]]] = 1.0
                ys.append(y)
        if not xs:
            raise FinetuneError(f"{info.task_name}: no clips for the {role} split(s) {splits}")
        clips[role], targets[role] = xs, np.stack(ys)
    assert mels is not None
    return TaskClips(info.task_name, clips, targets, multilabel, metric, mels)


# --------------------------------------------------------------------------------------------
# masking and Mixup
# --------------------------------------------------------------------------------------------


def draw_spans(
    rng: np.random.Generator, n: int, size: int, width: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` spans per clip of ``n`` along an axis of ``size``: widths ``w ~ U{0..width}``
    (at most ``size``), starts ``s ~ U{0..size - w}``; ``(starts, widths)``, each ``(n, count)``."""
    w = rng.integers(0, min(width, size) + 1, size=(n, count))
    s = np.floor(rng.random((n, count)) * (size - w + 1)).astype(np.int64)
    return s, w


def apply_spans(
    x: torch.Tensor, starts: np.ndarray, widths: np.ndarray, dim: int, value: float = 0.0
) -> torch.Tensor:
    """``x`` ``(B, 1, F, T)`` with cells ``[s, s + w)`` along ``dim`` (2: mel bins, 3: frames) of
    each clip set to ``value`` (a new tensor)."""
    idx = torch.arange(x.shape[dim])
    s = torch.as_tensor(starts)[..., None]
    e = s + torch.as_tensor(widths)[..., None]
    hit = ((idx >= s) & (idx < e)).any(dim=1)  # (B, size)
    shape = [x.shape[0], 1, 1, 1]
    shape[dim] = x.shape[dim]
    return x.masked_fill(hit.reshape(shape).to(x.device), value)


def spec_mask(
    x: torch.Tensor, masking: Mapping[str, int], rng: np.random.Generator
) -> torch.Tensor:
    """SpecAugment-style masks (``masking``: ``freq``/``time`` widths, ``n_freq``/``n_time``
    counts) on a normalised batch ``(B, 1, F, T)``; masked cells become 0."""
    b, _, f, t = x.shape
    if masking["n_freq"] and masking["freq"]:
        x = apply_spans(x, *draw_spans(rng, b, f, masking["freq"], masking["n_freq"]), dim=2)
    if masking["n_time"] and masking["time"]:
        x = apply_spans(x, *draw_spans(rng, b, t, masking["time"], masking["n_time"]), dim=3)
    return x


def mix(
    x: torch.Tensor,
    y: torch.Tensor,
    lam: torch.Tensor,
    partner: torch.Tensor,
    *,
    mean: float,
    std: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip ``i`` of the normalised batch ``x`` mixed with clip ``partner[i]`` in the mel power
    domain, ``log(λ_i e^a + (1 - λ_i) e^b)`` of the raw log-mels ``a, b`` (``x * std + mean``),
    normalised again; targets ``λ_i y_i + (1 - λ_i) y_partner``."""
    lam = lam.to(x.dtype)
    raw = x * std + mean
    lx = lam.reshape(-1, 1, 1, 1)
    mixed = torch.logaddexp(raw + torch.log(lx), raw[partner] + torch.log1p(-lx))
    ly = lam.reshape(-1, 1).to(y.dtype)
    return (mixed - mean) / std, ly * y + (1 - ly) * y[partner]


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    rng: np.random.Generator,
    *,
    mean: float,
    std: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mix` with ``λ ~ Beta(alpha, alpha)`` per clip and a random permutation of the
    batch as partners; ``alpha`` 0: unchanged."""
    if alpha <= 0:
        return x, y
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=x.shape[0]))
    partner = torch.from_numpy(rng.permutation(x.shape[0]))
    return mix(x, y, lam, partner, mean=mean, std=std)


# --------------------------------------------------------------------------------------------
# model and optimiser
# --------------------------------------------------------------------------------------------


class FinetuneModel(nn.Module):
    """The HEAR module's encoder and front-end (``hear``) with a linear head on its scene
    embedding; ``forward`` takes normalised log-mels ``(B, 1, F, T)``."""

    def __init__(self, hear: HearModel, n_classes: int, *, head_norm: bool, seed: int) -> None:
        super().__init__()
        self.hear = hear
        dim = int(hear.scene_embedding_size)
        self.norm = nn.BatchNorm1d(dim, affine=False) if head_norm else nn.Identity()
        self.head = nn.Linear(dim, n_classes)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():  # drawn from a generator of its own: the global one is not used
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g) * 0.01)
            self.head.bias.zero_()

    @property
    def encoder(self) -> nn.Module:
        return self.hear.encoder

    def classify(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.hear.scene_forward(x))


def build_finetune_optimizer(
    model: FinetuneModel, settings: FinetuneSettings
) -> torch.optim.Optimizer:
    """The optimiser of ``settings.optimizer`` over the head at its learning rate(s), plus --
    unless ``freeze_encoder`` -- the encoder's parameter groups with the same options at
    ``encoder_lr_ratio`` times them (group ``name``: ``encoder_weights``, ``encoder_no_decay``).
    Learning rates are absolute (no batch-size scaling); every group records ``peak_lr``."""
    from abt.config import ConfigError, schema_defaults

    try:  # the optimiser's options it leaves out: the schema's defaults (as `optimizers` entries)
        hp = dict(schema_defaults("optimizers.finetune", dict(settings.optimizer)))
    except ConfigError as e:
        raise FinetuneError(f"finetune.optimizer {settings.optimizer}: {e}") from None
    name = hp.pop("name")
    bs = settings.batch_size
    head = nn.ModuleList([model.norm, model.head])
    try:
        opt = build_optimizer(name, head, batch_size=bs, reference_batch_size=bs, **hp)
    except (KeyError, TypeError) as e:
        raise FinetuneError(f"finetune.optimizer {settings.optimizer}: {e}") from None
    if settings.freeze_encoder:
        return opt
    by_name = {g["name"]: g for g in opt.param_groups}
    for g in param_groups(model.encoder):
        like = by_name.get(g["name"], opt.param_groups[0])
        group = {k: v for k, v in like.items() if k != "params"}
        group.update(params=g["params"], name=f"encoder_{g['name']}")
        group["lr"] = group["peak_lr"] = like["peak_lr"] * settings.encoder_lr_ratio
        opt.add_param_group(group)
    return opt


def _batches(order: np.ndarray, bs: int) -> list[np.ndarray]:
    """``order`` in batches of ``bs``; a last batch of one clip joins the one before (BatchNorm
    cannot train on a single embedding)."""
    out = [order[i : i + bs] for i in range(0, len(order), bs)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2:] = [np.concatenate(out[-2:])]
    return out


def _loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return nn.functional.binary_cross_entropy_with_logits(logits, y)
    return -(y * nn.functional.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _split(metric: str, name: str, scores: np.ndarray, targets: np.ndarray) -> Split:
    """A test or validation split as :mod:`abt.report.stats` scores it."""
    if metric == "mAP":
        return Split(name, metric, {"targets": targets, "scores": scores})
    correct = (scores.argmax(1) == targets.argmax(1)).astype(np.float64)
    return Split(name, metric, {"correct": correct})


def predict(model: FinetuneModel, clips: Sequence[np.ndarray], multilabel: bool) -> np.ndarray:
    """Class probabilities (softmax; multilabel: sigmoid) of whole clips, in eval mode."""
    model.eval()
    emb = embed_logmels(model.hear, clips)
    with torch.no_grad():
        logits = model.classify(torch.from_numpy(emb).to(model.hear.device)).float().cpu()
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

EpochHook = Callable[[int, FinetuneModel, float], None]


def finetune_task(
    encoder: nn.Module,
    data: TaskClips,
    settings: FinetuneSettings,
    *,
    mean: float,
    std: float,
    device: torch.device | str = "cpu",
    on_epoch: EpochHook | None = None,
) -> tuple[dict[str, Any], FinetuneModel, dict[str, np.ndarray]]:
    """Fine-tune ``encoder`` (changed in place) on ``data``; returns the result (see
    :func:`finetune`), the model with the best epoch's weights, and the test predictions
    (``target``, ``prediction``). ``on_epoch(epoch, model, valid_score)`` runs after every
    epoch's validation (tests)."""
    t0 = time.time()
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's generators are left alone
        torch.manual_seed(settings.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(settings.seed)
        model, best_epoch, best_state, best, history = _train(
            encoder, data, settings, mean, std, device, on_epoch
        )
        model.load_state_dict(best_state)
        pred = predict(model, data.clips["test"], data.multilabel)
    items = TaskItems(data.name, data.metric, [_split(data.metric, "test", pred,
                                                      data.targets["test"])])  # fmt: skip
    lo, hi = interval(items.replicates(settings.n_boot))
    result = {
        "task": data.name,
        "metric": data.metric,
        "test": items.score(),
        "ci_low": lo,
        "ci_high": hi,
        "n_test": len(data.clips["test"]),
        "valid": best,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": len(history) < settings.epochs,
        "history": history,
        "freeze_encoder": settings.freeze_encoder,
        "settings": asdict(settings),
        "device": str(device),
        "seconds": round(time.time() - t0, 2),
    }
    return result, model, {"target": data.targets["test"], "prediction": pred}


def _train(
    encoder: nn.Module,
    data: TaskClips,
    settings: FinetuneSettings,
    mean: float,
    std: float,
    device: torch.device,
    on_epoch: EpochHook | None,
) -> tuple[FinetuneModel, int, dict[str, Any], float, list[dict[str, Any]]]:
    """The training loop of :func:`finetune_task`: the model, the best epoch, its weights and
    validation score, and the history."""
    from abt.data.mel import MelConfig

    hear = HearModel(encoder, MelConfig.from_dict(data.mels), mean, std).to(device)
    n_classes = data.targets["train"].shape[1]
    model = FinetuneModel(hear, n_classes, head_norm=settings.head_norm, seed=settings.seed)
    model.to(device)
    if settings.freeze_encoder:
        model.encoder.requires_grad_(False)
    opt = build_finetune_optimizer(model, settings)
    x_train, y_train = data.clips["train"], torch.from_numpy(data.targets["train"])
    bs = min(settings.batch_size, len(x_train))
    per_epoch = len(_batches(np.arange(len(x_train)), bs))
    total = settings.epochs * per_epoch
    sched = WarmupCosine(opt, min(round(settings.warmup_epochs * per_epoch), total), total)
    rng = np.random.default_rng(settings.seed)
    silence = hear.mels.silence_value
    history: list[dict[str, Any]] = []
    best, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, settings.epochs + 1):
        model.train()
        if settings.freeze_encoder:
            model.encoder.eval()
        losses = []
        order = rng.permutation(len(x_train))
        for idx in _batches(order, bs):
            crops = np.stack([_fit_length(x_train[i], settings.crop_frames, silence, rng)
                              for i in idx])  # fmt: skip
            x = torch.from_numpy((crops - mean) / std).float().transpose(1, 2)[:, None]
            x = spec_mask(x, settings.masking, rng)
            x, y = mixup(x, y_train[idx], float(settings.mixup["alpha"]), rng,
                         mean=mean, std=std)  # fmt: skip
            loss = _loss(model(x.to(device)), y.to(device), data.multilabel)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        valid = _valid_score(model, data)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "valid": valid})
        if on_epoch is not None:
            on_epoch(epoch, model, valid)
        if valid > best:
            best, best_epoch = valid, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    return model, best_epoch, best_state, best, history


def _valid_score(model: FinetuneModel, data: TaskClips) -> float:
    """The task's metric on the validation split (whole clips)."""
    pred = predict(model, data.clips["valid"], data.multilabel)
    return _split(data.metric, "valid", pred, data.targets["valid"]).score()


def finetune(
    ckpt: str | Path,
    task_dir: str | Path,
    stores: str | Path,
    settings: FinetuneSettings | Mapping[str, Any],
    out_json: str | Path,
    *,
    device: str = "auto",
) -> dict[str, Any]:
    """Fine-tune the encoder of ``ckpt`` (a ``model.ckpt`` or an exported folder) on the scene
    task ``task_dir`` from its mel stores ``stores`` (``stores/<split>``, the checkpoint's
    front-end), with ``settings`` (:class:`FinetuneSettings` or the config's ``finetune``
    section), on ``device`` (:func:`abt.devices.pick_device`). Writes ``out_json`` (the result:
    ``test`` score with ``ci_low``/``ci_high``, ``valid``, ``best_epoch``, ``history``, ...) and,
    beside it, ``<stem>.predictions.npz`` (``target``, ``prediction``: the test predictions the
    interval comes from, for paired comparisons). Returns the result."""
    from abt.checkpoint import load_encoder
    from abt.data.mel import MelConfig
    from abt.devices import pick_device

    if not isinstance(settings, FinetuneSettings):
        settings = FinetuneSettings.from_config(settings)
    dev = pick_device(device)
    with torch.random.fork_rng(devices=[]):  # building the encoder draws its initial weights
        encoder, ck = load_encoder(ckpt, dev)
    data = load_task_clips(task_dir, stores)
    if MelConfig.from_dict(data.mels) != MelConfig.from_dict(ck["mels"]):
        raise FinetuneError(
            f"the stores {stores} were computed with another front-end than {ckpt} was trained "
            f"on ({data.mels} vs {ck['mels']}): compute the task's stores with the checkpoint's "
            "mels settings"
        )
    result, _, pred = finetune_task(
        encoder, data, settings, mean=float(ck["norm"]["mean"]), std=float(ck["norm"]["std"]),
        device=dev,
    )  # fmt: skip
    result = {"checkpoint": str(ckpt), **result}
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out.with_name(out.stem + ".predictions.npz"), **pred)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    return result
