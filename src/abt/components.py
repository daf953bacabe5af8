"""A pre-training run's components, built from its specification (thesis §3.1-3.3, §4.1): the
encoder and the method around it (projector, objective), the optimiser and its warm-up + cosine
schedule, the augmentation module, the crop sampler's RNG, the gradient scaler, and the speed
options that do not change the method. :class:`abt.trainer.Trainer` trains them; this module
only builds them.

The order is part of the result: the torch and Python RNGs are seeded with the run's seed first,
then the encoder and the projector draw their initial weights, then the augmentation generator
(seed + 1) and the crop sampler (seed + 2) are seeded, so the same specification builds the same
run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from abt import hardware
from abt.augment import AugmentationPipeline
from abt.config import ConfigError
from abt.data.loader import Store
from abt.devices import autocast_dtype
from abt.distributed import DistInfo, convert_sync_batchnorm
from abt.encoders import build_encoder_from_spec
from abt.methods import build_method
from abt.optim import WarmupCosine, build_optimizer
from abt.runspec import RunSpec


@dataclass
class RunComponents:
    """What :func:`build_components` builds (the trainer keeps each as an attribute)."""

    batch_size: int  # the global batch
    local_batch: int  # this process's share of it
    crop_frames: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    encoder: nn.Module
    method: nn.Module
    forward_module: nn.Module  # the method, or its DistributedDataParallel wrapper
    amp_dtype: torch.dtype | None
    speed: dict[str, Any]  # pretrain.speed with every ``auto`` resolved
    masking: Mapping[str, Any]
    mask_warmup_steps: int
    optimizer: torch.optim.Optimizer
    scheduler: WarmupCosine
    warmup_steps: int
    augment: AugmentationPipeline
    rng: np.random.Generator
    scaler: torch.amp.GradScaler


def build_components(
    spec: RunSpec,
    store: Store,
    device: torch.device,
    dist: DistInfo,
    log: Callable[[str], None] = print,
) -> RunComponents:
    """Build a run's components on ``device`` for the process group ``dist``; a configuration
    this store or these processes cannot train is a :class:`~abt.config.ConfigError` saying
    what to change."""
    pre = spec.pretrain
    batch_size = int(pre["batch_size"])
    crop_frames = int(pre["crop_frames"])
    epochs = int(pre["epochs"])
    if len(store) < batch_size:
        raise ConfigError(
            f"the pre-training store {store.path} has {len(store)} clips, fewer than "
            f"one batch of {batch_size}: lower pretrain.batch_size or add data"
        )
    if batch_size % dist.world:
        raise ConfigError(
            f"pretrain.batch_size {batch_size} is not divisible by the {dist.world} "
            "processes; the global batch is split evenly across ranks"
        )
    steps_per_epoch = len(store) // batch_size
    total_steps = epochs * steps_per_epoch

    torch.manual_seed(spec.seed)
    random.seed(spec.seed)
    enc_spec = spec.encoder
    encoder = build_encoder_from_spec(enc_spec, store.n_mels, crop_frames)
    amp_dtype = autocast_dtype(pre["precision"], enc_spec["precision"], device)
    masking = pre["masking"]
    # the sine schedule's warm-up: warmup_epochs, or warmup_epochs of reference_epochs
    warm_epochs = float(masking["warmup_epochs"])
    if masking["reference_epochs"]:
        warm_epochs *= epochs / float(masking["reference_epochs"])
    mask_warmup_steps = int(round(warm_epochs * steps_per_epoch))
    if masking["mode"] != "none" and encoder.unit_frames is None:
        raise ConfigError(
            f"pretrain.masking.mode={masking['mode']!r} needs a ViT encoder; "
            f"{enc_spec['arch']!r} has no patch tokens"
        )
    method = build_method(
        encoder, pre["method"], pre["projector"], pre["objective"], distributed=dist.active
    ).to(device)
    speed = apply_speed(pre, method, encoder, device, amp_dtype)
    forward_module: nn.Module = method
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        if pre["sync_batchnorm"] and device.type == "cuda":
            method = convert_sync_batchnorm(method)  # no host sync per layer
            encoder = method.encoder
            speed["sync_batchnorm"] = True
        cuda = device.type == "cuda"
        forward_module = DistributedDataParallel(
            method,
            device_ids=[device.index or dist.local_rank] if cuda else None,
            find_unused_parameters=False,
        )
    opt = {k: v for k, v in spec.optimizer.items() if k not in ("key", "name")}
    optimizer = build_optimizer(
        spec.optimizer["name"],
        method,
        batch_size=batch_size,
        reference_batch_size=int(pre["reference_batch_size"]),
        grad_scaling=amp_dtype == torch.float16,
        **opt,
    )
    sched = pre["schedule"]
    warmup_steps = int(round(float(sched["warmup_epochs"]) * steps_per_epoch))
    scheduler = WarmupCosine(
        optimizer,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        final_lr=float(sched["final_lr"]),
    )
    augment = build_augment(spec, store).to(device)
    augment.manual_seed(spec.seed + 1, device=device)
    rng = np.random.default_rng(spec.seed + 2)
    return RunComponents(
        batch_size=batch_size, local_batch=batch_size // dist.world, crop_frames=crop_frames,
        epochs=epochs, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        encoder=encoder, method=method, forward_module=forward_module, amp_dtype=amp_dtype,
        speed=speed, masking=masking, mask_warmup_steps=mask_warmup_steps, optimizer=optimizer,
        scheduler=scheduler, warmup_steps=warmup_steps, augment=augment, rng=rng,
        scaler=make_scaler(device, amp_dtype, optimizer, log),
    )  # fmt: skip


def build_augment(spec: RunSpec, store: Store) -> AugmentationPipeline:
    """The run's AA module for its store: on a waveform store it starts with the log-mel
    front-end (``mels``; waveform blocks first, then the spectrogram blocks); waveform blocks on
    a log-mel store are a :class:`~abt.config.ConfigError`."""
    aug = spec.pretrain["augment"]
    norm = aug["norm"]
    wave_input = store.domain == "wave"
    front = {"mels": spec.mels, "crop_frames": int(spec.pretrain["crop_frames"])}
    augment = AugmentationPipeline(
        blocks=aug["blocks"],
        norm=norm,
        mean=store.mean if norm == "dataset" else None,
        std=store.std if norm == "dataset" else None,
        post_norm_scope=aug["post_norm_scope"],
        **(front if wave_input else {}),
    )
    if augment.n_wave and not wave_input:
        names = [type(b).__name__ for b in augment.wave_blocks]
        raise ConfigError(
            f"pretrain.augment.blocks start with waveform blocks {names}, but {store.path} is a "
            "log-mel store: pre-train on the waveform store of the same clips (the workflow's "
            "rule compute_pretrain_waves builds it for such a run)"
        )
    return augment


def apply_speed(
    pre: Mapping[str, Any],
    method: nn.Module,
    encoder: nn.Module,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Apply ``pretrain.speed`` (options that change speed, not the method) and return it
    with every ``auto`` resolved (recorded in ``summary.json``).

    ``channels_last: auto``: convolutional encoders on CUDA. ``compile: auto``: ViT encoders on
    CUDA, unless the sine masking schedule changes the token count every step; an explicit
    ``compile`` with the sine schedule is refused (one recompile per token count, then
    torch's recompile limit and eager). ``cudnn_benchmark``: cuDNN picks the fastest
    convolution for the fixed crop size (evaluations turn it off:
    :func:`abt.hardware.exact_float32`). On CUDA, ``pretrain.tf32`` sets TF32
    (:func:`abt.hardware.set_tf32`).
    """
    speed, masking = pre["speed"], pre["masking"]
    cuda = device.type == "cuda"
    conv = encoder.unit_frames is None
    cl = speed["channels_last"]
    channels_last = (cuda and conv) if cl == "auto" else bool(cl)
    mode = speed["compile"]
    if mode == "auto":
        mode = "default" if cuda and not conv and masking["mode"] != "sine" else "none"
    elif mode != "none" and masking["mode"] == "sine":
        raise ConfigError(
            f"pretrain.speed.compile: {mode} with pretrain.masking.mode: sine: the kept token "
            "count changes with the ratio, so torch.compile recompiles for each count and "
            "falls back to eager at its recompile limit (8). Set pretrain.speed.compile: "
            "auto or none for the sine schedule"
        )
    if channels_last:
        method.to(memory_format=torch.channels_last)
    if mode != "none":  # in place: parameter names (and checkpoints) stay the same
        method.online.compile(mode=None if mode == "default" else mode)
    if cuda and speed["cudnn_benchmark"]:
        torch.backends.cudnn.benchmark = True
    if cuda:
        hardware.set_tf32(pre["tf32"])
    return {
        "channels_last": channels_last,
        "compile": mode,
        "prefetch_batches": int(speed["prefetch_batches"]),
        "autocast": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "tf32": pre["tf32"] if cuda else "none",
        "sync_batchnorm": False,
    }


def make_scaler(
    device: torch.device,
    amp_dtype: torch.dtype | None,
    optimizer: torch.optim.Optimizer,
    log: Callable[[str], None] = print,
) -> torch.amp.GradScaler:
    """The gradient scaler (enabled for float16 autocast). The optimiser is built to skip an
    overflowed step on the device (``build_optimizer(grad_scaling=True)``), so the scaler never
    reads ``found_inf`` on the host; the log says when it cannot."""
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if scaler.is_enabled() and not getattr(optimizer, "_step_supports_amp_scaling", 0):
        log(
            f"[abt] {type(optimizer).__name__} cannot skip an overflowed fp16 step on "
            "the device: the gradient scaler reads the GPU once per step (set the "
            "optimizer's fused: true where it has one)"
        )
    return scaler
