"""The device-dependent parts of a resume checkpoint: random-number streams and the gradient
scaler, carried across device types, GPU counts and precisions.

A run's digest deliberately ignores the hardware (:mod:`abt.runspec`), so a run started on one
machine may be continued on another. What that means for each piece of state:

* **Same device type and count** (the usual case): every stream continues exactly.
* **The augmentation generator** lives on the training device. A CPU generator (Mersenne
  Twister, a 5,056-byte state) and a CUDA one (Philox, 16 bytes) are different algorithms, so a
  stream cannot move between them: resumed on the other device type, the generator is seeded
  from the run's seed and the step (deterministic: resuming the same checkpoint twice gives the
  same run) and the log says so. An uninterrupted run on the other device would draw other
  numbers anyway, and GPU kernels are not bit-identical to CPU ones.
* **CUDA generators**: each rank saves the state of the GPU it trains on, in rank order (not
  every visible GPU of rank 0's process), and continues from its own. Resumed with fewer or more
  visible GPUs, a rank still finds its state; resumed with more ranks than were saved, a new rank
  takes rank 0's (the ranks' streams are equal when their slices are: same seed, same draws).
  Resumed on CUDA from a CPU checkpoint, the CUDA generator is seeded from the seed and the step.
* **CPU generators** (torch, numpy, Python) are the same on every machine and always continue.
* **The gradient scaler** (fp16 only): a checkpoint written without gradient scaling (bf16,
  fp32, CPU) continued where fp16 enables it starts the loss scale afresh, as a new fp16 run does;
  a scale saved by an fp16 run is carried through later segments that do not scale (and used
  again if a later segment scales).

Each mapping that is not an exact continuation returns a note for the run's log; a state that
cannot be used at all raises :class:`DeviceStateError` (the trainer names the checkpoint and what
to do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


class DeviceStateError(ValueError):
    """A saved device state that cannot be restored here (the message says what differs)."""


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence: well mixed, platform independent)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _bytes(t: Any) -> torch.Tensor:
    """A generator state as the CPU byte tensor ``set_state`` requires."""
    return torch.as_tensor(t).to(device="cpu", dtype=torch.uint8)


# -- capture ---------------------------------------------------------------------------------


def gather_cuda_rng(device: torch.device, world: int) -> list[torch.Tensor]:
    """The CUDA generator state of the GPU each rank trains on, in rank order (``[]`` off CUDA).
    Under DDP on GPUs a collective: every rank must call it."""
    if device.type != "cuda":
        return []
    mine = torch.cuda.get_rng_state(device)
    if world <= 1:
        return [mine]
    import torch.distributed as dist

    states: list[Any] = [None] * world
    dist.all_gather_object(states, mine)
    return [_bytes(s) for s in states]


def capture(aug_generator: torch.Generator | None, cuda_rng: Sequence[torch.Tensor]) -> dict:
    """The RNG part of a resume checkpoint (with ``cuda_rng`` from :func:`gather_cuda_rng`)."""
    return {
        "aug_generator": aug_generator.get_state() if aug_generator is not None else None,
        "aug_generator_device": aug_generator.device.type if aug_generator is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": list(cuda_rng),
    }


# -- restore ---------------------------------------------------------------------------------


def _generator_device(state: Any, recorded: str | None) -> str:
    if recorded:
        return recorded
    return "cpu" if torch.as_tensor(state).numel() > 64 else "cuda"  # 5056 vs 16 bytes


def _set(gen_set: Any, state: torch.Tensor, what: str, saved_on: str) -> None:
    try:
        gen_set(state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise DeviceStateError(
            f"the {what} state saved on {saved_on} ({state.numel()} bytes) does not fit this "
            f"{what} ({str(e).splitlines()[0]}); it was written by another torch build"
        ) from None


def restore(
    st: Mapping[str, Any],
    *,
    aug_generator: torch.Generator | None,
    device: torch.device,
    rank: int,
    world: int,
    seed: int,
    step: int,
) -> list[str]:
    """Restore the RNG part of a resume checkpoint on this device; returns notes for the log
    about every stream that could not continue exactly (see the module docstring)."""
    notes: list[str] = []
    saved = st.get("aug_generator")
    if aug_generator is not None and saved is not None:
        here = aug_generator.device.type
        there = _generator_device(saved, st.get("aug_generator_device"))
        if there == here:
            _set(aug_generator.set_state, _bytes(saved), "augmentation generator", there)
        else:
            aug_generator.manual_seed(derived_seed(seed + 1, step))
            notes.append(
                f"the augmentation generator was saved on {there} and cannot continue on {here} "
                f"(different generator algorithms): seeded from the run's seed and step {step}"
            )
    _set(torch.set_rng_state, _bytes(st["torch_rng"]), "torch CPU generator", "cpu")
    cuda = [_bytes(t) for t in st.get("cuda_rng") or []]
    if device.type == "cuda":
        if cuda:
            mine = cuda[rank] if rank < len(cuda) else cuda[0]
            _set(lambda s: torch.cuda.set_rng_state(s, device), mine, "CUDA generator", "cuda")
            if len(cuda) != world:
                notes.append(
                    f"the run was saved by {len(cuda)} process(es) and continues with {world}: "
                    "each rank keeps its own CUDA stream where it had one (rank 0's otherwise); "
                    "the ranks' slices of the batch changed"
                )
        else:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(derived_seed(seed, step))
            notes.append(f"no CUDA generator state (saved on cpu): seeded from seed, step {step}")
    elif cuda:
        notes.append("the CUDA generator states of the checkpoint are not used on the cpu")
    return notes


HARDWARE_KEYS = ("type", "name", "world", "autocast")


def hardware_change(saved: Mapping[str, Any] | None, here: Mapping[str, Any]) -> str | None:
    """A log line when a checkpoint written on other hardware (device type, GPU model, number
    of processes, autocast dtype) is continued here; ``None`` when nothing of that changed."""
    if not saved or all(saved.get(k) == here.get(k) for k in HARDWARE_KEYS):
        return None

    def what(h: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} {h.get(k)}" for k in HARDWARE_KEYS if h.get(k) is not None)

    return f"saved on {what(saved)}; continues on {what(here)}"


# -- gradient scaler -------------------------------------------------------------------------


def scaler_state(scaler: torch.amp.GradScaler, carried: Mapping[str, Any] | None) -> dict:
    """What a checkpoint stores for the scaler: its state, or -- while it is disabled -- the
    state carried from an earlier fp16 segment (``{}`` when there never was one)."""
    return scaler.state_dict() if scaler.is_enabled() else dict(carried or {})


def load_scaler(
    scaler: torch.amp.GradScaler, saved: Mapping[str, Any] | None
) -> tuple[dict | None, str | None]:
    """Load a saved scaler state into ``scaler``; returns ``(carried, note)``: the state to keep
    for later checkpoints while this scaler is disabled, and a note for the log."""
    saved = dict(saved or {})
    if not scaler.is_enabled():
        return (saved or None), None
    if not saved:
        return None, (
            "the checkpoint was written without gradient scaling (bf16, fp32 or cpu); fp16 "
            f"gradient scaling starts afresh here (scale {scaler.get_scale():g})"
        )
    scaler.load_state_dict(saved)
    return None, None
