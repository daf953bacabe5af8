"""Batches of random crops for pre-training: planned on the main thread, gathered ahead.

An epoch is planned up front (:func:`plan_epoch`): the shuffled clip order and every batch's crop
starts are drawn from the trainer's numpy generator in exactly the order the step-by-step loop
drew them (permutation, then one ``random`` call per batch), so the generator's state at the end of
an epoch -- what a resume checkpoint stores -- does not depend on how far ahead batches are
gathered.

:class:`CropLoader` then gathers the planned crops from the memory-mapped store on a background
thread, ``depth`` batches ahead, into pinned host memory when the target is a CUDA device, and
hands them over with a non-blocking copy. The batches are identical to gathering them
synchronously (``depth=0``; tested).

The store is a log-mel store (batches ``(B, 1, n_mels, frames)``) or a waveform store
(:class:`abt.data.wavestore.WaveStore`, for waveform augmentation blocks: batches ``(B, N)``,
each crop read with the margins the blocks need around its planned start); :func:`open_store`
opens either.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from abt.data.melstore import MelStore
from abt.data.wavestore import WaveStore

Store = MelStore | WaveStore


def open_store(path: str | Path | Store) -> Store:
    """The pre-training store at ``path``: a waveform store where it holds ``waves.npy``, else
    a log-mel store (each checks its own files on opening)."""
    if isinstance(path, MelStore | WaveStore):
        return path
    return WaveStore(path) if (Path(path) / "waves.npy").is_file() else MelStore(path)


@dataclass(frozen=True)
class EpochPlan:
    """Clip indices and crop starts of every batch of one epoch: ``(steps, batch)`` each."""

    indices: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def plan_epoch(
    store: Store, rng: np.random.Generator, batch_size: int, steps: int, crop_frames: int
) -> EpochPlan:
    """Shuffle the store (last incomplete batch dropped) and draw every batch's crop starts
    (``crop_frames``: the crop's length in the store's unit, frames or samples)."""
    perm = rng.permutation(len(store))
    idx = np.empty((steps, batch_size), dtype=np.int64)
    starts = np.empty((steps, batch_size), dtype=np.int64)
    for i in range(steps):
        idx[i] = perm[i * batch_size : (i + 1) * batch_size]
        starts[i] = store.random_starts(rng, idx[i], crop_frames)
    return EpochPlan(idx, starts)


class CropLoader:
    """Iterate the batches of an :class:`EpochPlan` as ``(B, 1, n_mels, crop_frames)`` float32
    tensors on ``device`` (a waveform store: ``(B, left + crop_frames + right)`` samples, with
    ``margin = (left, right)``), gathered ``depth`` batches ahead on a background thread.

    Use as a context manager (or call :meth:`close`) so that a run that stops mid-epoch (an error,
    ``stop_after_epochs``) also stops the thread.
    """

    def __init__(
        self,
        store: Store,
        plan: EpochPlan,
        crop_frames: int,
        pad_value: float,
        device: torch.device,
        depth: int = 2,
        margin: tuple[int, int] = (0, 0),
    ) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if margin != (0, 0) and not isinstance(store, WaveStore):
            raise ValueError(f"crop margins {margin} need a waveform store; {store.path} is not")
        self.store, self.plan, self.margin = store, plan, margin
        self.crop_frames, self.pad_value = int(crop_frames), float(pad_value)
        self.device = torch.device(device)
        self.depth = int(depth)
        self.pin = self.device.type == "cuda"
        self._stop = threading.Event()
        self._queue: queue.Queue[tuple[int, torch.Tensor | BaseException]] = queue.Queue(
            maxsize=max(self.depth, 1)
        )
        self._thread: threading.Thread | None = None

    def host_batch(self, i: int) -> torch.Tensor:
        """Batch ``i`` on the host, laid out ``(B, 1, F, T)`` or ``(B, N)`` (pinned when
        feeding a GPU)."""
        idx, starts = self.plan.indices[i], self.plan.starts[i]
        if isinstance(self.store, WaveStore):
            x = torch.from_numpy(
                self.store.crops(idx, starts, self.crop_frames, self.pad_value, self.margin)
            )
        else:  # (B, T, F) -> (B, 1, F, T)
            crops = self.store.crops(idx, starts, self.crop_frames, self.pad_value)
            x = torch.from_numpy(crops).transpose(1, 2).unsqueeze(1)
        out = torch.empty(x.shape, dtype=torch.float32, pin_memory=self.pin)
        out.copy_(x)
        return out

    def _fill(self) -> None:
        try:
            for i in range(len(self.plan)):
                if self._stop.is_set():
                    return
                item: tuple[int, torch.Tensor | BaseException] = (i, self.host_batch(i))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._queue.put((-1, e))

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.depth == 0:
            for i in range(len(self.plan)):
                yield self.host_batch(i).to(self.device, non_blocking=self.pin)
            return
        self._thread = threading.Thread(target=self._fill, name="abt-crops", daemon=True)
        self._thread.start()
        for i in range(len(self.plan)):
            j, item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            assert j == i, (j, i)
            yield item.to(self.device, non_blocking=self.pin)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)
            self._thread = None

    def __enter__(self) -> CropLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
