"""Multi-process (DDP) pre-training helpers: ``torchrun --nproc_per_node N -m abt.cli pretrain``.

The trainer runs data-parallel when ``WORLD_SIZE`` > 1 (set by torchrun): every rank draws the
same *global* batch (identical crop and augmentation random streams on every rank, so the
Mixup memory bank is identical too) and forwards only its slice; the Barlow Twins
cross-correlation is all-reduced and divided by the global batch (:mod:`abt.objective`); DDP
averages the gradients, which -- because every rank's loss is the global loss -- gives exactly
the single-process gradient of the global batch. BatchNorm layers are converted to
SyncBatchNorm on GPUs (``pretrain.sync_batchnorm``); on CPU (gloo) torch has no SyncBatchNorm, so
BatchNorm statistics stay per rank there. Rank 0 writes every file; all ranks resume from the same
checkpoint.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (a process group exists, even of one process)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1 or self.launched


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_from_env(device: torch.device | None = None) -> DistInfo:
    """Join the process group torchrun describes; a plain process (not started by torchrun) runs
    alone. ``torchrun --nproc_per_node 1`` takes the distributed path with one process (the
    single-GPU check of NCCL, DDP and SyncBatchNorm)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not launched_by_torchrun():
        if world > 1:
            raise RuntimeError(
                f"WORLD_SIZE={world} but RANK/LOCAL_RANK are not set: start multi-process "
                "pre-training with torchrun"
            )
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        cuda = (device is None or device.type == "cuda") and torch.cuda.is_available()
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(
        rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, launched=True
    )


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def broadcast(info: DistInfo, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision only rank 0 can make, e.g. from files)."""
    if not info.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
