"""An embedded baseline of the authors' pre-training pipeline, for side-by-side benchmarks.

A straightforward reimplementation of the authors' data loading and augmentation
(jonahanton/SSL_audio @ a5544e6, itself BYOL-A v2's augmentation code), used only by ``bench/``:

* one random 96-frame crop per clip, read clip by clip (``Dataset.__getitem__``);
* the AA module applied per clip, twice (two views), on the CPU inside DataLoader worker
  processes, each worker with its own Mixup FIFO (a Python list of 2,048 tensors);
* ``F.interpolate(bicubic)`` per crop for RRC;
* on the GPU: fp16 autocast with a GradScaler, ``loss.item()`` and a finiteness check every step.

The model, loss and optimiser are abt's (the same networks), so the comparison isolates the data
path and the step loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

EPS = float(np.finfo(np.float32).eps)


class PerSampleAA:
    """Mixup -> RRC -> RLF applied to one ``(1, F, T)`` clip at a time (BYOL-A v2 / ABT style)."""

    def __init__(self, mean: float, std: float, seed: int = 0) -> None:
        self.mean, self.std = mean, std
        self.memory: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def mixup(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.memory:
            lam = 0.2 * self.rng.random()
            z = self.memory[self.rng.randrange(len(self.memory))]
            out = torch.log((1 - lam) * x.exp() + lam * z.exp() + EPS)
        self.memory = (self.memory + [x])[-2048:]
        return out

    def rrc(self, x: torch.Tensor) -> torch.Tensor:
        _, f, t = x.shape
        cf, ct = f, int(t * 1.5)
        canvas = torch.zeros(1, cf, ct)
        i0, j0 = (cf - f) // 2, (ct - t) // 2
        canvas[:, i0 : i0 + f, j0 : j0 + t] = x
        h = min(int(self.rng.uniform(0.6, 1.5) * f), cf)
        w = min(max(int(self.rng.uniform(0.6, 1.5) * t), 1), ct)
        i = self.rng.randint(0, cf - h) if cf > h else 0
        j = self.rng.randint(0, ct - w) if ct > w else 0
        crop = canvas[:, i : i + h, j : j + w]
        return F.interpolate(crop[None], size=(f, t), mode="bicubic", align_corners=True)[0]

    def rlf(self, x: torch.Tensor) -> torch.Tensor:
        g0, g1 = self.rng.uniform(-1, 1), self.rng.uniform(-1, 1)
        return x + torch.linspace(g0, g1, x.shape[-1])[None, None, :]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.rlf(self.rrc(self.mixup(x)))


def per_clip_crop(store: Any, i: int, rng: np.random.Generator, frames: int = 96) -> torch.Tensor:
    """A random ``frames``-frame crop of clip ``i``, ``(1, n_mels, frames)``, silence-padded."""
    clip = np.asarray(store.clip(int(i)))
    s = int(rng.integers(0, max(clip.shape[0] - frames, 0) + 1))
    x = torch.from_numpy(np.ascontiguousarray(clip[s : s + frames].T))[None]
    if x.shape[-1] < frames:
        x = F.pad(x, (0, frames - x.shape[-1]), value=store.silence_value)
    return x


class AuthorsDataset(torch.utils.data.Dataset):
    """``__getitem__`` -> two augmented views of one random crop, as in the authors' Dataset.
    Each DataLoader worker process holds its own copy (its own Mixup FIFO and RNGs)."""

    def __init__(self, store: Any, frames: int = 96, seed: int = 0) -> None:
        self.store, self.frames, self.seed = store, frames, seed
        self.aug: PerSampleAA | None = None
        self.rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.aug is None:  # first call in this worker
            info = torch.utils.data.get_worker_info()
            wid = info.id if info is not None else 0
            self.aug = PerSampleAA(self.store.mean, self.store.std, self.seed + wid)
            self.rng = np.random.default_rng(self.seed + 100 + wid)
        assert self.rng is not None
        x = per_clip_crop(self.store, i, self.rng, self.frames)
        return self.aug(x), self.aug(x)


def authors_loader(store: Any, batch: int, workers: int, pin: bool) -> Iterator[Any]:
    """An endless stream of ``(v1, v2)`` batches from worker processes (shuffled epochs)."""
    ds = AuthorsDataset(store)
    while True:
        dl = torch.utils.data.DataLoader(
            ds,
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=False,  # the authors' workers restart every epoch
        )
        yield from dl


class AuthorsStep:
    """The authors' step loop around abt's networks: fp16 autocast + GradScaler on CUDA, the loss
    read (``.item()``) and checked every step."""

    def __init__(self, method: torch.nn.Module, optimizer: Any, device: torch.device) -> None:
        self.method, self.optimizer, self.device = method, optimizer, device
        self.cuda = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)

    def __call__(self, v1: torch.Tensor, v2: torch.Tensor) -> float:
        v1 = v1.to(self.device, non_blocking=True)
        v2 = v2.to(self.device, non_blocking=True)
        self.method.train()
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.cuda):
            loss = self.method([v1, v2])["loss"]
        value = loss.item()
        if not math.isfinite(value):
            raise SystemExit(1)  # the authors' code exits on a non-finite loss
        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value
