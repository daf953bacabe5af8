"""The checkpoint formats: the encoder's ``abt-encoder/1`` (write, read, rebuild the encoder),
the trainer's resume checkpoint ``abt-resume/3`` (validated read, atomic write; its content and
provenance checks are the trainer's), and the exported folder.

A ``model.ckpt`` holds what downstream evaluation needs and nothing else it must guess:

* ``encoder`` -- ``{key, arch, kwargs, precision}`` (the run's encoder entry);
* ``n_mels``, ``input_frames`` (the crop length a ViT's positional grid was built for);
* ``state_dict`` -- the encoder's weights (CPU tensors);
* ``norm`` -- ``{mode, mean, std}``: the dataset statistics of the store it was trained on;
* ``mels`` -- the front-end settings *of that store* (not of the configuration), so HEAR and the
  probes compute log-mels exactly as the network saw them;
* ``epoch``, ``step``, ``config`` (the run specification, or ``{random_init, seed}``);
* ``digest`` -- :func:`content_digest` of everything else, recorded when the file is written.

Written by :meth:`abt.trainer.Trainer.save_encoder` and :func:`save_random_init` through
:func:`write_encoder_checkpoint`; read (and validated) by :func:`read_checkpoint`. Only torch and
numpy are imported, so the HEAR evaluation venv can load checkpoints.

**Exported folders** (``abt export``, format ``abt-export/1``) hold the same dictionary in two
shareable files: ``model.safetensors`` (the state dict) and ``config.json`` (everything else,
plus the tensors' names/dtypes/shapes, their content digest :func:`weights_digest`, the run's
provenance digests and the abt version). This module converts both ways (:func:`write_export`,
:func:`read_export`); :func:`read_checkpoint` accepts either, so ``abt.hear.load_model`` and
``abt embed`` give bit-identical embeddings from a ``model.ckpt`` and from its export. Only the
export needs ``safetensors`` (imported when one is read or written).

**Integrity.** Every checkpoint abt writes (``model.ckpt`` and the trainer's resume checkpoint)
goes through :func:`save_sealed`: it records the SHA-256 of its content (every tensor's dtype,
shape and bytes, every value, in order) inside the file, and :func:`load_sealed` recomputes it
after ``torch.load``. A file changed after it was written -- even with its size unchanged, e.g.
zeroed or overwritten bytes in the middle -- is an error naming it, never a different result.
(Checkpoints written before digests were recorded carry none and are read unchecked.) A write
that fails (a full disk, a read-only folder) removes its partial ``.part`` file and raises
:class:`CheckpointWriteError`, whose message says so ("No space left on device").
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from abt.data.mel import MelConfig
from abt.encoders import ENCODERS, build_encoder_from_spec

ENCODER_CKPT_FORMAT = "abt-encoder/1"
_REQUIRED_KEYS = ("format", "encoder", "n_mels", "input_frames", "state_dict", "norm", "mels")


RESUME_FORMAT = "abt-resume/3"  # 3: sealed with a content digest, kept in _staging/


class CheckpointError(ValueError):
    """The file is not a usable abt encoder checkpoint; the message says why."""


class CorruptCheckpointError(CheckpointError):
    """The file's content differs from the digest recorded when it was written."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only, ...); the partial file is gone.
    ``errno`` and ``filename`` are those of the failed write; the message says what to do."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


#: errors of a write that more space or another folder fixes, with what to say
_WRITE_HINTS = {
    errno.ENOSPC: "free space on that file system (or use another folder), then run again",
    errno.EDQUOT: "free space within your disk quota (or use another folder), then run again",
    errno.EROFS: "the folder is on a read-only file system: choose a writable folder",
    errno.EACCES: "the folder is not writable for you: choose a writable folder",
    errno.EPERM: "the folder is not writable for you: choose a writable folder",
}
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError,
                AttributeError, ImportError, IndexError, KeyError)  # fmt: skip


def content_digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content: tensors (dtype, shape, bytes), numbers, strings, and
    the mappings and sequences holding them, in order (``torch.save``/``torch.load`` keep the
    order). The same content gives the same digest whatever file it was read from."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, x: Any) -> None:
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(x, Mapping):
        h.update(b"D%d:" % len(x))
        for k, v in x.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(x, list | tuple):
        h.update(b"L%d:" % len(x))
        for v in x:
            _feed(h, v)
    elif isinstance(x, str):
        b = x.encode()
        h.update(b"S%d:" % len(b) + b)
    elif isinstance(x, bytes | bytearray):
        h.update(b"B%d:" % len(x) + bytes(x))
    elif x is None or isinstance(x, bool):
        h.update(f"{x!r};".encode())
    elif isinstance(x, int):
        h.update(f"I{x};".encode())
    elif isinstance(x, float):
        h.update(f"F{x.hex()};".encode())
    else:  # numpy scalars and arrays, dtypes, sizes: their type and repr
        arr = x if hasattr(x, "tobytes") and hasattr(x, "dtype") else None
        h.update(f"O{type(x).__name__}:".encode())
        h.update(arr.tobytes() if arr is not None else repr(x).encode())


def save_sealed(path: str | os.PathLike[str], obj: Mapping[str, Any]) -> Path:
    """``torch.save`` ``obj`` with its :func:`content_digest` (key ``digest``) to ``path``
    atomically: ``<path>.part`` first, then ``os.replace`` (a reader never sees a partial file,
    a failed write leaves the previous file as it was and no ``.part`` behind)."""
    path = Path(path)
    body = {k: v for k, v in obj.items() if k != "digest"}
    sealed = {**body, "digest": content_digest(body)}
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as fh:  # a Python file: a failed write raises OSError with errno
            torch.save(sealed, fh)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def write_error(path: str | os.PathLike[str], e: OSError) -> CheckpointWriteError:
    """The one-line error of a failed write of ``path`` (``e.strerror`` first: "No space left on
    device"), with what to do."""
    hint = _WRITE_HINTS.get(e.errno or 0, "check the folder, then run again")
    err = CheckpointWriteError(f"{e.strerror or e}: cannot write {path} (the partial file was "
                               f"removed; {hint})")  # fmt: skip
    err.errno, err.filename = e.errno, str(path)
    return err


def load_sealed(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` on the CPU, then the recorded digest checked
    (:class:`CorruptCheckpointError` when it differs; other load failures propagate). Returns
    what was given to :func:`save_sealed` (without the ``digest`` key)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "digest" in obj:
        body = {k: v for k, v in obj.items() if k != "digest"}
        got = content_digest(body)
        if got != obj["digest"]:
            raise CorruptCheckpointError(
                f"{path} is corrupt: its content does not match the digest recorded when it was "
                f"written (sha256 {str(obj['digest'])[:16]}..., now {got[:16]}...); it was "
                "changed on disk after abt wrote it"
            )
        return body  # the seal is checked; what the writer gave save_sealed
    return obj


# -- the resume checkpoint ---------------------------------------------------------------------


class ResumeError(RuntimeError):
    """A resume checkpoint that cannot (or must not) be continued; the message says what to do."""


def _start_over(path: Path) -> str:
    return f"move or delete {path.parent} to start this run over"


def write_resume(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write a resume checkpoint (``state["format"]`` is :data:`RESUME_FORMAT`) sealed and
    atomically (:func:`save_sealed`: a full disk is a clear error and leaves the previous
    checkpoint as it was)."""
    if state.get("format") != RESUME_FORMAT:
        raise ValueError(f"a resume checkpoint's format is {RESUME_FORMAT!r}, not "
                         f"{state.get('format')!r}")  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_sealed(path, state)


def read_resume(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A resume checkpoint, read on the CPU (RNG states must stay CPU byte tensors;
    ``load_state_dict`` moves weights and optimiser state to each parameter's device) and
    checked against its content digest and format; every failure is a :class:`ResumeError`
    naming the file and the run folder to move."""
    path = Path(path)
    try:
        st = load_sealed(path)
    except CorruptCheckpointError as e:
        raise ResumeError(f"{e}. The run cannot continue from it: {_start_over(path)}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError) as e:  # fmt: skip
        raise ResumeError(
            f"{path} cannot be read ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'truncated or not a checkpoint'}). "
            f"The run cannot continue from it: {_start_over(path)}"
        ) from None
    if not isinstance(st, dict) or st.get("format") != RESUME_FORMAT:
        found = st.get("format") if isinstance(st, dict) else type(st).__name__
        raise ResumeError(
            f"{path} is not an {RESUME_FORMAT} checkpoint (found {found!r}): {_start_over(path)}"
        )
    return st


def describe_resume(path: str | os.PathLike[str]) -> str:
    """What a stopped run keeps: ``<path> (epoch N)``, or why there is no usable checkpoint
    (for error messages; never raises for a bad file)."""
    path = Path(path)
    if not path.exists():
        return "none yet"
    try:
        return f"{path} (epoch {int(load_sealed(path)['epoch'])})"
    except CorruptCheckpointError:
        return f"none: {path} is corrupt (changed on disk since it was written)"
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError):
        return f"none: {path} cannot be read"


# -- the encoder checkpoint --------------------------------------------------------------------


def encoder_checkpoint(
    encoder: nn.Module,
    encoder_spec: Mapping[str, Any],
    *,
    n_mels: int,
    input_frames: int,
    norm: Mapping[str, Any],
    mels: Mapping[str, Any] | MelConfig,
    epoch: int,
    step: int,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """The checkpoint dictionary of ``encoder`` (see the module docstring)."""
    mel_cfg = mels if isinstance(mels, MelConfig) else MelConfig.from_dict(dict(mels))
    spec = dict(encoder_spec)
    kwargs = dict(spec.get("kwargs") or {})
    if kwargs.get("patch_size") is not None:  # stored as a list (plain YAML/JSON form)
        kwargs["patch_size"] = [int(p) for p in kwargs["patch_size"]]
    spec["kwargs"] = kwargs
    return {
        "format": ENCODER_CKPT_FORMAT,
        "encoder": spec,
        "n_mels": int(n_mels),
        "input_frames": int(input_frames),
        "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "norm": {"mode": str(norm["mode"]), "mean": float(norm["mean"]), "std": float(norm["std"])},
        "mels": mel_cfg.to_dict(),
        "epoch": int(epoch),
        "step": int(step),
        "config": dict(config),
    }


def write_encoder_checkpoint(path: str | os.PathLike[str], ck: Mapping[str, Any]) -> Path:
    """Write a checkpoint dictionary atomically, with its content digest (:func:`save_sealed`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_sealed(path, ck)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate an ``abt-encoder/1`` checkpoint with ``torch.load(weights_only=True)``,
    or an exported folder (:func:`read_export`: the same dictionary, the same weights)."""
    path = Path(path)
    if str(path) and path.is_dir():
        return read_export(path)
    if not str(path) or not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist (give a model.ckpt or a folder written "
            "by `abt export`)"
        )
    try:
        ck = load_sealed(path)
    except CorruptCheckpointError as e:
        raise CorruptCheckpointError(
            f"{e}: re-create it (re-run the job that wrote it) or restore it from a copy"
        ) from None
    except _LOAD_ERRORS as e:
        raise CheckpointError(
            f"{path} is not an abt encoder checkpoint: torch.load(weights_only=True) refused it "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Checkpoints of "
            "other libraries (Lightning, the authors' code) are not supported; export the encoder "
            f"with abt (format {ENCODER_CKPT_FORMAT!r})."
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != ENCODER_CKPT_FORMAT:
        found = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        keys = sorted(map(str, ck))[:12] if isinstance(ck, dict) else []
        raise CheckpointError(
            f"{path} is not an abt encoder checkpoint: expected format {ENCODER_CKPT_FORMAT!r}, "
            f"found {found!r} (top-level keys {keys})"
        )
    return _validated(ck, path)


def _validated(ck: dict[str, Any], path: Path) -> dict[str, Any]:
    """``ck`` if it is a complete, consistent checkpoint dictionary; else a
    :class:`CheckpointError` naming ``path``."""
    missing = [k for k in _REQUIRED_KEYS if k not in ck]
    if missing:
        raise CheckpointError(f"{path}: abt encoder checkpoint lacks key(s) {missing}")
    enc = ck["encoder"]
    if not isinstance(enc, dict) or not {"arch", "kwargs"} <= set(enc):
        raise CheckpointError(f"{path}: 'encoder' must hold arch and kwargs, got {enc!r}")
    if enc["arch"] not in ENCODERS:
        raise CheckpointError(
            f"{path}: unknown encoder architecture {enc['arch']!r}; known: {list(ENCODERS)}"
        )
    norm = ck["norm"]
    try:
        mean, std = float(norm["mean"]), float(norm["std"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{path}: 'norm' must hold numeric mean and std, got {norm!r}"
        ) from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise CheckpointError(f"{path}: normalisation stats must be finite with std > 0: {norm!r}")
    try:
        mels = MelConfig.from_dict(ck["mels"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: bad 'mels' front-end parameters: {e}") from None
    if int(ck["n_mels"]) != mels.n_mels:
        raise CheckpointError(
            f"{path}: n_mels {ck['n_mels']} differs from mels.n_mels {mels.n_mels}"
        )
    return ck


def build_checkpoint_encoder(ck: Mapping[str, Any], path: str = "<checkpoint>") -> nn.Module:
    """Rebuild the checkpoint's encoder and load its weights strictly (eval mode)."""
    arch = ck["encoder"]["arch"]
    try:
        enc = build_encoder_from_spec(ck["encoder"], int(ck["n_mels"]), int(ck["input_frames"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: cannot build encoder {arch!r} with {ck['encoder'].get('kwargs')}: {e}"
        ) from None
    sd = ck["state_dict"]
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: state_dict must be a mapping, got {type(sd).__name__}")
    own = enc.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path}: the state dict does not match architecture {arch!r} "
            f"{ck['encoder'].get('kwargs')}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} "
            f"({len(unexpected)}), shape mismatches {shapes[:3]}"
        )
    enc.load_state_dict(sd, strict=True)
    return enc.eval()


def load_encoder(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the encoder of a ``model.ckpt`` and load its weights (eval mode)."""
    ck = read_checkpoint(path)
    return build_checkpoint_encoder(ck, str(path)).to(map_location), ck


def save_random_init(
    path: str | os.PathLike[str],
    encoder_key: str,
    arch: str,
    kwargs: Mapping[str, Any] | None,
    norm_mean: float,
    norm_std: float,
    mels: Mapping[str, Any] | MelConfig,
    *,
    seed: int,
    input_frames: int,
    norm_mode: str,
    precision: str,
) -> Path:
    """Write an untrained encoder (random init, seeded) in the checkpoint format.

    ``epoch = step = 0`` and ``config = {"random_init": True, "seed": seed}``. Use the same
    dataset statistics, front-end, input frames (the run's ``pretrain.crop_frames``) and
    normalisation mode as the trained encoders, so that random-init baselines differ only in the
    weights.
    """
    mel_cfg = mels if isinstance(mels, MelConfig) else MelConfig.from_dict(dict(mels))
    spec = {"key": encoder_key, "arch": arch, "kwargs": dict(kwargs or {}), "precision": precision}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        enc = build_encoder_from_spec(spec, mel_cfg.n_mels, input_frames)
    ck = encoder_checkpoint(
        enc, spec, n_mels=mel_cfg.n_mels, input_frames=input_frames,
        norm={"mode": norm_mode, "mean": norm_mean, "std": norm_std}, mels=mel_cfg,
        epoch=0, step=0, config={"random_init": True, "seed": int(seed)},
    )  # fmt: skip
    return write_encoder_checkpoint(path, ck)


# ------------------------------------------------------------------------- exported folders

#: the format of an exported folder's ``config.json`` (``abt export``)
EXPORT_FORMAT = "abt-export/1"
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
#: checkpoint keys that config.json holds as they are (the weights go to model.safetensors)
_EXPORTED_KEYS = ("encoder", "n_mels", "input_frames", "norm", "mels", "epoch", "step", "config")


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's content: every tensor's name, dtype, shape and bytes, in name
    order. The same for a ``model.ckpt`` and its export (the container does not enter it)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _safetensors() -> Any:
    try:
        import safetensors.torch as st
    except ImportError:
        raise CheckpointError(
            "reading or writing an exported folder needs the safetensors package "
            "(pip install safetensors)"
        ) from None
    return st


def export_config(ck: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint dictionary: architecture, front-end, normalisation,
    input frames and the run (as in the checkpoint), the weights' names, dtypes, shapes and
    content digest, the run's provenance digests, the abt version, and ``extra`` (e.g. the
    source checkpoint's file digest)."""
    from abt import __version__

    sd = ck["state_dict"]
    prov = dict((ck.get("config") or {}).get("provenance") or {})
    return {
        "format": EXPORT_FORMAT,
        "checkpoint_format": ENCODER_CKPT_FORMAT,
        "abt_version": __version__,
        **{k: ck[k] for k in _EXPORTED_KEYS},
        "random_init": bool((ck.get("config") or {}).get("random_init", False)),
        "run_digest": prov.get("run"),
        "store_fingerprint": prov.get("store"),
        "code_digest": prov.get("code"),
        "weights": {
            "file": EXPORT_WEIGHTS,
            "content_sha256": weights_digest(sd),
            "tensors": {
                k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
                for k, v in sorted(sd.items())
            },
        },
        **extra,
    }


def write_export(
    folder: str | os.PathLike[str], ck: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """Write ``model.safetensors`` and ``config.json`` of the checkpoint dictionary ``ck`` into
    ``folder`` (each file atomically); returns the config. :func:`read_export` reads back a
    dictionary equal to ``ck`` with bit-identical weights."""
    st = _safetensors()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = export_config(ck, **extra)
    # a copy of each tensor: safetensors refuses tensors that share memory
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in ck["state_dict"].items()}
    tmp = folder / (EXPORT_WEIGHTS + ".part")
    st.save_file(tensors, str(tmp), metadata={"format": "pt", "abt_format": EXPORT_FORMAT})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as any other file here (safetensors writes it owner-only)
    os.replace(tmp, folder / EXPORT_WEIGHTS)
    tmp = folder / (EXPORT_CONFIG + ".part")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, folder / EXPORT_CONFIG)
    return cfg


def read_export(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dictionary of an exported folder (``config.json`` + ``model.safetensors``),
    validated like a ``model.ckpt``: every error names the file and what is wrong."""
    folder = Path(folder)
    cfg_path, w_path = folder / EXPORT_CONFIG, folder / EXPORT_WEIGHTS
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{folder} is a folder without {EXPORT_CONFIG}: give a model.ckpt or a folder "
            "written by `abt export`"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path} cannot be read as JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != EXPORT_FORMAT:
        found = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(
            f"{cfg_path} is not an abt export: expected format {EXPORT_FORMAT!r}, found {found!r}"
        )
    if cfg.get("checkpoint_format") != ENCODER_CKPT_FORMAT:
        raise CheckpointError(
            f"{cfg_path}: checkpoint_format {cfg.get('checkpoint_format')!r} is not "
            f"{ENCODER_CKPT_FORMAT!r} (written by another abt version?)"
        )
    missing = [k for k in (*_EXPORTED_KEYS, "weights") if k not in cfg]
    if missing:
        raise CheckpointError(f"{cfg_path} lacks key(s) {missing}")
    weights = cfg["weights"]
    if not isinstance(weights, dict) or not isinstance(weights.get("tensors"), dict):
        raise CheckpointError(f"{cfg_path}: 'weights' must list the tensors, got {weights!r}")
    if not w_path.is_file():
        raise CheckpointError(f"{w_path} is missing: the export is incomplete")
    st = _safetensors()
    try:
        sd = st.load_file(str(w_path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{w_path} is not a readable safetensors file ({msg})") from None
    want = weights["tensors"]
    absent, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    wrong = [
        f"{k}: file {str(sd[k].dtype).removeprefix('torch.')} {list(sd[k].shape)} vs "
        f"config {want[k].get('dtype')} {want[k].get('shape')}"
        for k in sorted(set(want) & set(sd))
        if [str(sd[k].dtype).removeprefix("torch."), list(sd[k].shape)]
        != [want[k].get("dtype"), want[k].get("shape")]
    ]
    if absent or extra or wrong:
        raise CheckpointError(
            f"{w_path} does not hold the tensors {cfg_path.name} lists: missing {absent[:5]} "
            f"({len(absent)}), unexpected {extra[:5]} ({len(extra)}), dtype/shape mismatches "
            f"{wrong[:3]}"
        )
    digest = weights_digest(sd)
    if weights.get("content_sha256") != digest:
        raise CheckpointError(
            f"{w_path}: the weights' content digest {digest[:16]}... differs from "
            f"{cfg_path.name}'s {str(weights.get('content_sha256'))[:16]}...: the two files do "
            "not belong together (export the run again)"
        )
    ck = {"format": ENCODER_CKPT_FORMAT, **{k: cfg[k] for k in _EXPORTED_KEYS}, "state_dict": sd}
    return _validated(ck, cfg_path)
