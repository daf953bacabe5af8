"""Pre-training on the packed log-mel store (thesis §3.1, §4.1).

One step: sample B clips (shuffled epoch, last incomplete batch dropped), take one random
``crop_frames`` crop of each from the memory-mapped store, make two views with the AA module on the
training device, run the method (encoder + projector, Barlow Twins loss), step the optimiser with
the warm-up + cosine schedule.

Beyond the thesis (§5): on a waveform store (:class:`abt.data.wavestore.WaveStore`, opened by
:func:`abt.data.loader.open_store`) each crop is the samples of ``crop_frames`` frames plus the
margins the waveform blocks need; the AA module then augments the waveforms, computes the log-mels
on the training device and goes on with the spectrogram blocks (:mod:`abt.wave_augment`).

Exact resume: after every ``checkpoint_every`` epochs, ``<run_dir>/_staging/last.ckpt`` holds
the model, optimiser, schedule, grad scaler, every RNG (numpy crop sampler, augmentation
generator, torch global, CUDA, python), the Mixup memory banks, the epoch, the step and the
metrics rows so far (the augmentation generator's state once, device-aware:
:mod:`abt.devicestate`), in the format :mod:`abt.checkpoint` owns (``abt-resume/3``, written and
read by :func:`~abt.checkpoint.write_resume` / :func:`~abt.checkpoint.read_resume`: sealed with
its content digest, so a file changed on disk is an error, never a different result). A run
killed at any moment and started again continues from there and ends with the same weights and
metrics as an uninterrupted run (CPU, same seed and thread count; tested). A non-finite loss
stops the run with a clear message and leaves the last good checkpoint untouched.

Nothing lost: an attempt trains in ``_staging/`` and replaces the run's outputs only when it
finishes (:mod:`abt.rundir`); until then the previous outputs stay as they were.

Honest re-runs: a resume checkpoint records the run's provenance -- the digest of its
specification (:meth:`abt.runspec.RunSpec.digest`), the fingerprint of its store and the digest
of the training code (:func:`abt.codehash.code_digest`). It is continued only when all three
match; otherwise the stale ``_staging/`` is moved to ``_superseded/<UTC time>-<digest>/``, the
log says why, and the run starts over (``pretrain.on_stale_resume: restart``; ``error`` stops
instead). A finished run asked to run again trains again; its finished state (``_finished/``,
with its ``model.ckpt``) is moved to ``_superseded/`` the same way. One process owns a run
directory at a time (:func:`abt.locks.folder_lock`); ``fit(wait_for_lock=True)`` waits for the
holder, and when that one finished this very run (same provenance) returns its summary without
training.

Outputs in ``run_dir``: ``model.ckpt`` (:mod:`abt.checkpoint`), ``train_metrics.csv``,
``epoch_metrics.csv`` (callbacks, e.g. linear probes), ``hparams.yaml``, ``summary.json``; their
names, formats and publication are :mod:`abt.rundir`'s (the trainer hands it the run, the
summary and its checkpoint writer).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from abt import devicestate, hardware, rundir
from abt.checkpoint import (  # noqa: F401  (RESUME_FORMAT, ResumeError: re-exported)
    RESUME_FORMAT,
    CheckpointWriteError,
    ResumeError,
    describe_resume,
    encoder_checkpoint,
    read_resume,
    write_encoder_checkpoint,
    write_resume,
)
from abt.codehash import code_digest
from abt.components import build_components
from abt.config import ConfigError
from abt.data.loader import CropLoader, EpochPlan, Store, open_store, plan_epoch
from abt.data.mel import MelConfig
from abt.devices import pick_device
from abt.distributed import barrier, broadcast, init_from_env
from abt.encoders import MASK_SCHEDULES
from abt.locks import folder_lock
from abt.runlog import CsvLog
from abt.runspec import RunSpec
from abt.tracking import Tracker

EpochCallback = Callable[["Trainer", int], Mapping[str, Any] | None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the message names the step and the last good checkpoint."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a run; the message says what is kept and how to resume."""


def _silent(*_: Any) -> None:
    return None


def store_fingerprint(store: Store) -> str:
    """The store's provenance digest (``stats.json``), or, for a store written before stores
    recorded one, a digest of its statistics and index."""
    if store.fingerprint:
        return store.fingerprint
    import hashlib

    h = hashlib.sha256(json.dumps(store.stats, sort_keys=True, default=str).encode())
    h.update((store.path / "index.csv").read_bytes())
    return "legacy:" + h.hexdigest()[:16]


class Trainer:
    """Resumable Barlow Twins pre-training of one (encoder, variant, seed)."""

    def __init__(
        self,
        run: RunSpec | Mapping[str, Any],
        store: str | Path | Store,
        run_dir: str | Path,
        *,
        device: str | None = "auto",
        callbacks: Sequence[EpochCallback] = (),
        progress: bool | None = None,
        log: Callable[[str], None] = print,
        tracker: Tracker | None = None,
    ) -> None:
        self.spec = RunSpec.from_dict(run)
        self.cfg = self.spec.to_dict()  # what hparams.yaml and the checkpoints hold
        self.pre = self.spec.pretrain
        self.store = open_store(store)
        self.run_dir = Path(run_dir)
        self.files = rundir.RunDir(self.run_dir)
        self.resume_path = self.files.resume
        self._ckpt_epoch: int | None = None  # the epoch of the resume checkpoint on disk
        self.device = pick_device(device)
        self.seed = self.spec.seed  # the run's one seed (RunSpec): nothing overrides it
        self.callbacks = list(callbacks)
        self.progress = progress
        self.log = log
        self._check_store_front_end()

        self.dist = init_from_env(self.device)
        if not self.dist.main:  # one copy of every log line: rank 0's (errors still raise)
            self.log, self.progress = _silent, False
        c = build_components(self.spec, self.store, self.device, self.dist, self.log)
        self.batch_size, self.local_batch = c.batch_size, c.local_batch
        self.crop_frames, self.epochs = c.crop_frames, c.epochs
        self.steps_per_epoch, self.total_steps = c.steps_per_epoch, c.total_steps
        self.encoder, self.method, self.forward_module = c.encoder, c.method, c.forward_module
        self.amp_dtype, self.speed = c.amp_dtype, c.speed
        self.masking, self.mask_warmup_steps = c.masking, c.mask_warmup_steps
        self.optimizer, self.scheduler, self.warmup_steps = c.optimizer, c.scheduler, c.warmup_steps
        self.augment, self.rng = c.augment, c.rng
        self.scaler, self._scaler_carried = c.scaler, None  # none carried from an fp16 segment
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimiser steps
        # the optional experiment tracker mirrors the rows the CSVs store (rank 0 only)
        self.tracker = tracker if tracker is not None and self.dist.main else Tracker()
        self.metrics = CsvLog(
            self.files.staged("train_metrics"),
            enabled=self.dist.main,
            sink=self.tracker.feed("step", "train/"),
        )
        self.epoch_metrics = CsvLog(
            self.files.staged("epoch_metrics"),
            enabled=self.dist.main,
            sink=self.tracker.feed("step", "probe/"),
        )
        self.provenance = {
            "run": self.spec.digest(),
            "store": store_fingerprint(self.store),
            "code": code_digest("abt.trainer"),
        }

    def _check_store_front_end(self) -> None:
        """The run's ``mels`` settings must be those the store was built with."""
        built = self.store.stats.get("mels")
        if built and MelConfig.from_dict(built) != MelConfig.from_dict(self.spec.mels):
            raise ConfigError(
                f"the store {self.store.path} was built with mels settings {built}, the run asks "
                f"for {self.spec.mels}: rebuild the store with the run's settings"
            )

    # ------------------------------------------------------------------------------------------

    def mask_ratio(self, step: int) -> float:
        mode = self.masking["mode"]
        if mode == "none":
            return 0.0
        fn = MASK_SCHEDULES.get(mode)
        warm = self.mask_warmup_steps
        value = self.masking["ratio"] if mode == "fixed" else self.masking["beta"]
        return float(fn(step, self.total_steps, warm, float(value)))

    @property
    def crop_length(self) -> int:
        """A crop's length in the store's unit: ``crop_frames`` log-mel frames, or on a
        waveform store the samples the front-end turns into them (margins aside)."""
        if self.store.domain == "wave":
            return self.augment.out_samples
        return self.crop_frames

    def plan_epoch(self) -> EpochPlan:
        """This epoch's clip order and crop starts (draws from ``self.rng``)."""
        return plan_epoch(
            self.store, self.rng, self.batch_size, self.steps_per_epoch, self.crop_length
        )

    def loader(self, plan: EpochPlan, depth: int | None = None) -> CropLoader:
        """The epoch's batches on the training device, gathered ahead on a thread."""
        wave = self.store.domain == "wave"
        return CropLoader(
            self.store,
            plan,
            self.crop_length,
            self.store.pad_value(self.pre["pad"]),
            self.device,
            depth=self.speed["prefetch_batches"] if depth is None else depth,
            margin=self.augment.input_margins() if wave else (0, 0),
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        """One optimiser step on the global batch ``x`` ``(B, 1, F, T)`` (on the device).

        Returns ``[loss, on_diag, off_diag]`` as a tensor on the device: nothing here waits for
        the GPU, the caller reads the accumulated values every ``log_every`` steps.
        """
        self.method.train()
        views = self.augment.views(x, 2)  # the global batch: identical on every rank
        if self.dist.active:  # this rank's slice of the global batch
            lo = self.dist.rank * self.local_batch
            views = [v[lo : lo + self.local_batch] for v in views]
        if self.speed["channels_last"]:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with self._autocast():
            out = self.forward_module(views, mask_ratio=self.mask_ratio(self.step))
        loss = out["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.method.after_step()
        self.step += 1
        return torch.stack([loss.detach(), out["on_diag"].detach(), out["off_diag"].detach()])

    # ------------------------------------------------------------------------------------------

    def state(self, cuda_rng: Sequence[torch.Tensor] | None = None) -> dict[str, Any]:
        """The resume checkpoint's content; ``cuda_rng``: every rank's CUDA generator state
        (:func:`abt.devicestate.gather_cuda_rng`; default: this process's own)."""
        if cuda_rng is None:
            cuda_rng = devicestate.gather_cuda_rng(self.device, 1)
        return {
            "format": RESUME_FORMAT,
            "epoch": self.epoch,
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": devicestate.scaler_state(self.scaler, self._scaler_carried),
            "augment": _without_generator(self.augment.state_dict()),
            **devicestate.capture(self.augment.generator, cuda_rng),
            "hardware": _hardware(self),
            "np_rng": self.rng.bit_generator.state,
            "py_rng": random.getstate(),
            "config": self.cfg,
            "provenance": self.provenance,
            "metrics": {"train": self.metrics.text(), "epoch": self.epoch_metrics.text()},
        }

    def load_state(self, st: Mapping[str, Any]) -> None:
        """Continue from a resume checkpoint's content, on whatever hardware this run has
        (:mod:`abt.devicestate`: exact on the same device type; what is mapped is logged)."""
        self.method.load_state_dict(st["method"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self._scaler_carried, note = devicestate.load_scaler(self.scaler, st["scaler"])
        notes = [note] if note else []
        # the generator is restored below, device-aware; a file written before the pipeline's
        # state left it out holds it there too (a CUDA one would not fit a CPU generator)
        self.augment.load_state_dict(_without_generator(st["augment"]))
        try:  # generator states are CPU byte tensors whatever device the run (or the file) is on
            notes += devicestate.restore(
                st, aug_generator=self.augment.generator, device=self.device,
                rank=self.dist.rank, world=self.dist.world, seed=self.seed, step=int(st["step"]),
            )  # fmt: skip
        except devicestate.DeviceStateError as e:
            raise ResumeError(
                f"{self.resume_path}: {e}. Resume it with the torch build that wrote it, or move "
                f"or delete {self.resume_path.parent} to start this run over"
            ) from None
        self.rng.bit_generator.state = st["np_rng"]
        random.setstate(_as_tuple(st["py_rng"]))
        self.epoch, self.step = int(st["epoch"]), int(st["step"])
        moved = devicestate.hardware_change(st.get("hardware"), _hardware(self))
        for n in ([moved] if moved else []) + notes if self.dist.main else ():
            self.log(f"[abt] resuming on other hardware: {n}")
        self.metrics.restore(st["metrics"]["train"])
        self.epoch_metrics.restore(st["metrics"]["epoch"])

    def save_resume(self) -> None:
        """Write the resume checkpoint (:func:`abt.checkpoint.write_resume`)."""
        cuda_rng = devicestate.gather_cuda_rng(self.device, self.dist.world)  # every rank's
        if not self.dist.main:
            return
        write_resume(self.resume_path, self.state(cuda_rng))
        self._ckpt_epoch = self.epoch

    def stale_reasons(self, st: Mapping[str, Any]) -> list[str]:
        """Why a resume checkpoint is not this run's (empty: it is)."""
        theirs = st.get("provenance") or {}
        why = []
        if theirs.get("run") != self.provenance["run"]:
            diff = _diff(RunSpec.from_dict(st["config"]).identity(), self.spec.identity())
            why.append("the run's configuration changed (" + "; ".join(diff[:6]) + ")")
        if theirs.get("store") != self.provenance["store"]:
            why.append(
                f"the pre-training store changed ({self.store.path}: fingerprint "
                f"{theirs.get('store')} -> {self.provenance['store']})"
            )
        if theirs.get("code") != self.provenance["code"]:
            why.append(
                f"the training code changed (abt.trainer and what it imports: "
                f"{theirs.get('code')} -> {self.provenance['code']})"
            )
        return why

    def _set_aside(self, reason: str, st: Mapping[str, Any]) -> None:
        """Move the stale attempt (``_staging/``) to its own ``_superseded/`` folder; the run's
        outputs stay until this attempt finishes."""
        label = str((st.get("provenance") or {}).get("run") or "unknown")[:12]
        dest = self.files.supersede(self.files.staging, reason, label)
        self.log(f"[abt] {self.run_dir}: starting over: {reason}; the old state is in {dest}")

    def try_resume(self) -> bool:
        """Continue from ``_staging/last.ckpt`` when it is this run's (see the module docstring);
        returns whether the run resumed."""
        if not self.resume_path.exists():
            return False
        st = read_resume(self.resume_path)
        why = self.stale_reasons(st)
        if why:
            if self.pre["on_stale_resume"] == "error":
                raise ResumeError(
                    f"{self.resume_path} was written with a different configuration, store or "
                    f"code ({'; '.join(why)}). Move or delete "
                    f"{self.resume_path.parent} to start over (or set "
                    "pretrain.on_stale_resume: restart)"
                )
            barrier(self.dist)  # every rank has read it before rank 0 moves it
            if self.dist.main:
                self._set_aside("; ".join(why), st)
            return False
        self.load_state(st)
        self._ckpt_epoch = self.epoch
        self.log(f"[abt] resumed from {self.resume_path}: epoch {self.epoch}, step {self.step}")
        return True

    def _prepare_run_dir(self, waited: bool) -> dict[str, Any] | None:
        """Rank 0, under the run's lock, before anything is read: complete what a killed process
        left (:meth:`abt.rundir.RunDir.recover`), then deal with a finished attempt on record.
        Returns its summary when this process waited for the lock and the holder finished this
        very run (nothing to train); else moves the finished state to ``_superseded/`` (the run
        trains again; its outputs stay until this attempt finishes) and returns ``None``."""
        self.files.recover(self.log)
        rec = self.files.record()
        if rec is None:
            return None
        current = rec.get("provenance") == self.provenance
        if waited and current and self.files.outputs_intact(rec):
            self.log(
                f"[abt] {self.run_dir}: the process this one waited for finished this very run "
                "(same configuration, store and code): nothing to train"
            )
            return dict(json.loads(self.files.summary.read_text()))
        if current:
            why = "the run had finished and is asked to run again"
        elif rec.get("provenance") and rec.get("config"):
            why = "the finished run is not this one: " + "; ".join(self.stale_reasons(rec))
        else:
            why = "the finished run's record is unreadable"
        label = str((rec.get("provenance") or {}).get("run") or "unknown")[:12]
        dest = self.files.supersede(self.files.finished, why, label)
        self.log(
            f"[abt] {self.run_dir}: {why}; its finished state (model.ckpt, metrics, last.ckpt) "
            f"is kept in {dest}; the run's outputs stay until this attempt finishes"
        )
        return None

    # ------------------------------------------------------------------------------------------

    def encoder_checkpoint(self) -> dict[str, Any]:
        """What downstream evaluation needs: weights, architecture, normalisation and the
        front-end of the store it was trained on (:mod:`abt.checkpoint`)."""
        return encoder_checkpoint(
            self.encoder,
            self.spec.encoder,
            n_mels=self.store.n_mels,
            input_frames=self.crop_frames,
            norm={
                "mode": self.pre["augment"]["norm"],
                "mean": self.store.mean,
                "std": self.store.std,
            },  # fmt: skip
            mels=self.store.stats.get("mels") or self.spec.mels,
            epoch=self.epoch,
            step=self.step,
            config={**self.cfg, "provenance": self.provenance},
        )

    def save_encoder(self, path: str | Path) -> None:
        if self.dist.main:
            write_encoder_checkpoint(path, self.encoder_checkpoint())

    def _epoch_end_callbacks(self) -> None:
        """Run the callbacks (linear probes) for the epoch just completed; rank 0 only."""
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        for cb in self.callbacks if self.dist.main else ():
            res = cb(self, self.epoch)
            if res:
                row.update(res)
        barrier(self.dist)
        if len(row) > 2:
            self.epoch_metrics.write(row)

    def interrupted_message(self) -> str:
        """What Ctrl-C leaves: the checkpoint kept, the outputs, how to resume."""
        if self._ckpt_epoch is not None and self.resume_path.exists():
            kept = (f"the checkpoint of epoch {self._ckpt_epoch} is kept in "
                    f"{self.resume_path}")  # fmt: skip
            todo = "run the same command again to resume from it"
        else:
            kept = "no checkpoint of this attempt was written yet"
            todo = "run the same command again to start it"
        outputs = (f"; the finished outputs in {self.run_dir} are unchanged"
                   if self.files.checkpoint.exists() else "")  # fmt: skip
        at = min(self.epoch + 1, self.epochs)  # the epoch being trained (or finished)
        return f"interrupted at epoch {at} of {self.epochs}: {kept}{outputs}; {todo}"

    def non_finite_error(self, value: float, first_step: int) -> NonFiniteLossError:
        last = describe_resume(self.resume_path)
        return NonFiniteLossError(
            f"non-finite loss ({value}) at epoch {self.epoch + 1}, steps {first_step}-{self.step}; "
            f"the run stopped and the last good checkpoint is kept: {last}. Lower the learning "
            "rate or check the input data, then run again to resume."
        )

    def fit(
        self, stop_after_epochs: int | None = None, wait_for_lock: bool = False
    ) -> dict[str, Any]:
        """Train to ``pretrain.epochs`` (resuming if this run's checkpoint exists) and write the
        outputs; the run directory is owned by this process meanwhile (``wait_for_lock``: wait
        for another owner instead of failing; see the module docstring)."""
        if stop_after_epochs is not None and int(stop_after_epochs) < 1:
            raise ConfigError(
                f"stop_after_epochs (--stop-after-epochs) must be at least 1 epoch, got "
                f"{stop_after_epochs}; leave it out to train all {self.epochs} epochs"
            )
        rundir.run_started()
        try:
            if self.dist.main:
                self.files.check_usable()
                lock = folder_lock(self.run_dir, "pre-training run", self.log, wait=wait_for_lock)
            else:
                lock = contextlib.nullcontext(False)
            with lock as waited, self.tracker:  # the tracker is flushed and closed at the end
                return self._fit(stop_after_epochs, bool(waited))
        except KeyboardInterrupt:
            raise Interrupted(self.interrupted_message()) from None
        except CheckpointWriteError:
            raise
        except OSError as e:
            if e.errno in rundir.WRITE_ERRNOS:
                raise self.files.write_error(e) from None
            raise

    def _fit(self, stop_after_epochs: int | None, waited: bool = False) -> dict[str, Any]:
        main = self.dist.main
        barrier(self.dist)
        done = self._prepare_run_dir(waited) if main else None
        done = broadcast(self.dist, done)
        if done is not None:
            return done
        if not self.try_resume():
            self.tracker.start_over()  # what a tracker holds of an earlier attempt is not this run
            self.metrics.restore("")
            self.epoch_metrics.restore("")
        if main:
            self.tracker.log_params(self.cfg)
            self.files.stage_hparams(self.cfg)
        barrier(self.dist)
        log_every = int(self.pre["log_every"])
        ckpt_every = int(self.pre["checkpoint_every"])
        if self.epoch > 0 and not self.epoch_metrics.has("epoch", self.epoch):
            # the run stopped between its checkpoint and the epoch's callbacks (e.g. a probe)
            self._epoch_end_callbacks()
        from tqdm.auto import tqdm

        t_start = time.time()
        epochs_run = 0
        while self.epoch < self.epochs:
            bar = tqdm(
                total=self.steps_per_epoch,
                desc=f"epoch {self.epoch + 1}/{self.epochs}",
                disable=self.progress is False if self.progress is not None else None,
                leave=False,
            )
            window = _MetricWindow(self)
            with self.loader(self.plan_epoch()) as batches:
                for i, x in enumerate(batches):
                    lrs = self.scheduler.get_last_lr()  # the learning rates of this step
                    window.add(self.train_step(x), lrs)
                    bar.update(1)
                    if self.step % log_every == 0 or i == self.steps_per_epoch - 1:
                        row = window.flush(t_start)  # the only host synchronisation
                        self.metrics.write(row)
                        bar.set_postfix(loss=f"{row['loss']:.3f}")
            bar.close()
            self.epoch += 1
            epochs_run += 1
            if self.epoch % ckpt_every == 0 or self.epoch == self.epochs:
                self.save_resume()
                if main:  # a test hook (ABT_TEST_HOLD): interruption tests stop here
                    rundir.hold_point({"run_dir": str(self.run_dir), "epoch": self.epoch,
                                       "step": self.step})  # fmt: skip
            self._epoch_end_callbacks()
            self.log(
                f"[abt] epoch {self.epoch}/{self.epochs} step {self.step} "
                f"loss {self.metrics.last.get('loss', float('nan')):.4f}"
            )
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                break
        summary = {
            "epochs": self.epoch,
            "steps": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "batch_size": self.batch_size,
            "n_clips": len(self.store),
            "final_loss": self.metrics.last.get("loss"),
            "seconds": round(time.time() - t_start, 2),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.dist.world,
            "distributed": self.dist.active,
            "backend": torch.distributed.get_backend() if self.dist.active else None,
            "speed": self.speed,
            "provenance": self.provenance,
        }
        if self.epoch >= self.epochs and main:  # finished: publish the outputs (abt.rundir)
            record = {"provenance": self.provenance, "config": self.cfg}
            self.files.publish(summary, record, self.save_encoder)
        barrier(self.dist)
        return summary


class _MetricWindow:
    """Loss terms summed on the device over the steps since the last metrics row."""

    def __init__(self, trainer: Trainer) -> None:
        self.tr = trainer
        self.sums: torch.Tensor | None = None
        self.lrs: list[float] = []
        self.n = 0
        self.first_step = trainer.step + 1
        self.t0 = time.perf_counter()

    def add(self, terms: torch.Tensor, lrs: Sequence[float]) -> None:
        self.sums = terms if self.sums is None else self.sums + terms
        self.lrs = [a + b for a, b in zip(self.lrs, lrs, strict=True)] if self.lrs else list(lrs)
        self.n += 1

    def flush(self, t_start: float) -> dict[str, Any]:
        """The metrics row of the window (reads the device once); a non-finite loss raises
        :class:`NonFiniteLossError` before anything of this window is written or saved."""
        assert self.sums is not None
        loss, on_diag, off_diag = (v / self.n for v in self.sums.tolist())
        tr = self.tr
        if not math.isfinite(loss):
            raise tr.non_finite_error(loss, self.first_step)
        dt = time.perf_counter() - self.t0
        row = {
            "epoch": tr.epoch + 1,
            "step": tr.step,
            "loss": loss,
            "on_diag": on_diag,
            "off_diag": off_diag,
            **{f"lr{i}": v / self.n for i, v in enumerate(self.lrs)},
            "mask_ratio": tr.mask_ratio(tr.step - 1),
            "clips_per_s": self.n * tr.batch_size / max(dt, 1e-9),
            "elapsed_s": round(time.time() - t_start, 2),
        }
        self.sums, self.lrs, self.n = None, [], 0
        self.first_step, self.t0 = tr.step + 1, time.perf_counter()
        return row


def _without_generator(augment_state: Mapping[str, Any]) -> dict[str, Any]:
    """The augmentation pipeline's state without its generator's, which the resume checkpoint
    holds once, device-aware (``aug_generator``, :mod:`abt.devicestate`); the rest (the Mixup
    memory) as it is."""
    return {**augment_state, "_extra_state": {"generator_state": None, "generator_device": None}}


def _hardware(tr: Trainer) -> dict[str, Any]:
    """The hardware a resume checkpoint records (and the log compares on resume)."""
    autocast = tr.speed["autocast"]
    return {**hardware.describe(tr.device), "world": tr.dist.world, "autocast": autocast}


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two nested configurations."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]
