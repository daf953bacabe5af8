"""Multi-process (DDP) pre-training helpers: ``torchrun --nproc_per_node N -m abt.cli pretrain``.

The trainer runs data-parallel when ``WORLD_SIZE`` > 1 (set by torchrun): every rank draws the
same *global* batch (identical crop and augmentation random streams on every rank, so the
Mixup memory bank is identical too) and forwards only its slice; the Barlow Twins
cross-correlation is all-reduced and divided by the global batch (:mod:`abt.objective`); DDP
averages the gradients, which -- because every rank's loss is the global loss -- gives exactly
the single-process gradient of the global batch. BatchNorm layers are converted to
SyncBatchNorm on GPUs (``pretrain.sync_batchnorm``: :class:`StaticSyncBatchNorm`, torch's without
its per-layer host synchronisation); on CPU (gloo) torch has no SyncBatchNorm, so BatchNorm
statistics stay per rank there. Rank 0 writes every file; all ranks resume from the same
checkpoint, each rank its own CUDA generator (:mod:`abt.devicestate`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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


# --------------------------------------------------------------------------------------------
# SyncBatchNorm without a host synchronisation
# --------------------------------------------------------------------------------------------


class _StaticSyncBatchNormFn(torch.nn.modules._functions.SyncBatchNorm):
    """torch's SyncBatchNorm autograd function (its backward unchanged) with a forward that does
    not drop the statistics of empty ranks by boolean-mask indexing: that indexing has a
    data-dependent shape, so torch reads the mask on the host -- one synchronisation per
    BatchNorm layer per forward. Every rank of an abt run forwards a non-empty slice of the
    global batch (``batch_size / world`` clips), so there is nothing to drop; an empty input is
    an error here."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, input, weight, bias, running_mean, running_var, eps, momentum, process_group, world
    ):
        if not (
            input.is_contiguous(memory_format=torch.channels_last)
            or input.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            input = input.contiguous()
        if weight is not None:
            weight = weight.contiguous()
        if input.numel() == 0:
            raise ValueError("SyncBatchNorm got an empty batch slice on this rank")
        c = input.shape[1]
        mean, invstd = torch.batch_norm_stats(input, eps)
        count = torch.full((1,), input.numel() // c, dtype=mean.dtype, device=mean.device)
        combined = torch.cat([mean, invstd, count], dim=0)  # (2C + 1)
        if process_group._get_backend_name() != "gloo":
            flat = torch.empty(world * combined.numel(), dtype=combined.dtype,
                               device=combined.device)  # fmt: skip
            dist.all_gather_into_tensor(flat, combined, process_group)
            combined = flat.view(world, combined.numel())
        else:  # gloo has no all_gather_into_tensor
            parts = [torch.empty_like(combined) for _ in range(world)]
            dist.all_gather(parts, combined, process_group)
            combined = torch.stack(parts, dim=0)
        mean_all, invstd_all, count_all = torch.split(combined, c, dim=1)
        counts = count_all.view(-1)
        if running_mean is not None and counts.dtype != running_mean.dtype:
            counts = counts.to(running_mean.dtype)
        mean, invstd = torch.batch_norm_gather_stats_with_counts(
            input, mean_all, invstd_all, running_mean, running_var, momentum, eps, counts
        )
        ctx.save_for_backward(input, weight, mean, invstd, count_all.to(torch.int32))
        ctx.process_group = process_group
        return torch.batch_norm_elemt(input, weight, bias, mean, invstd, eps)


class StaticSyncBatchNorm(nn.SyncBatchNorm):
    """:class:`torch.nn.SyncBatchNorm` whose synchronised training forward never waits for the
    GPU (:class:`_StaticSyncBatchNormFn`); everything else (eval mode, one process, the cumulative
    average of ``momentum=None``) is torch's own."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = self.process_group or (dist.group.WORLD if dist.is_initialized() else None)
        sync = (
            self.training
            and self.momentum is not None
            and group is not None
            and input.device.type == "cuda"
            and dist.get_world_size(group) > 1
        )
        if not sync:
            return super().forward(input)
        self._check_input_dim(input)
        track = self.track_running_stats
        if track:
            self.num_batches_tracked.add_(1)
        return _StaticSyncBatchNormFn.apply(
            input, self.weight, self.bias, self.running_mean if track else None,
            self.running_var if track else None, self.eps, self.momentum, group,
            dist.get_world_size(group),
        )  # fmt: skip


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``module`` as a :class:`StaticSyncBatchNorm` (same parameters,
    buffers and state-dict keys as torch's conversion)."""
    module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if type(m) is nn.SyncBatchNorm:
            m.__class__ = StaticSyncBatchNorm
    return module


def broadcast(info: DistInfo, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision only rank 0 can make, e.g. from files)."""
    if not info.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
