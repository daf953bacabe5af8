"""Compatibility patches that let the unmodified HEAR 2021 kit run on a modern stack.

Imported at interpreter start by ``sitecustomize.py`` (this directory is on ``PYTHONPATH`` in the
evaluation venv only, see :mod:`abt.evaluation.heareval_env`). Patches are applied lazily, right
after the patched module is first imported, so starting Python stays cheap:

1. ``pytorch_lightning.loops.fit_loop.FitLoop.current_epoch`` gets back the setter it had in
   Lightning 1.5 (writes ``epoch_progress.current.completed``). heareval's
   ``task_predictions.py`` sets ``trainer.fit_loop.current_epoch = best_epoch`` before testing;
   on Lightning >= 1.6 that silently created a plain attribute, test saw the last epoch instead
   of the best one, and every event task crashed with ``KeyError: <epoch>`` after the grid search
   (upstream hearbenchmark/hear-eval-kit#432, open; this is the fix suggested there).
2. ``pynvml.nvmlDeviceGetName`` returns ``bytes`` again (pynvml >= 11.5 returns ``str`` and
   heareval's ``gpu_max_mem`` calls ``.decode()`` on it; GPU only). The evaluation venv pins
   pynvml 11.4.1, so this is a second line of defence.
3. ``librosa.filters.mel`` accepts the sample rate as its first positional argument again.
   hearbaseline 2021.1.1's naive baseline calls ``librosa.filters.mel(44100, n_fft=4096,
   n_mels=256)``, written for librosa 0.8; from librosa 0.10 on every argument is keyword-only
   and the call raises ``TypeError``. The patch passes the positional value as ``sr=`` (same
   filters: the other defaults, Slaney norm and no HTK, did not change).
4. A stand-in ``torchaudio`` (``fallback/torchaudio``), put at the *end* of ``sys.path``, so an
   installed torchaudio always wins. torchcrepe imports torchaudio at module level for
   ``torchcrepe.load.audio`` (reading files), which the HEAR wrapper never calls, and no
   torchaudio release exists for torch 2.13; every use of the stand-in raises.

Lightning 2.x needs two more patches (``Trainer(gpus=...)``, removed ``*_epoch_end`` hooks); they
are not implemented: the venv pins pytorch-lightning 1.9.5 and :func:`check` fails loudly on 2.x.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

#: names of the patches applied so far (for tests and the venv self-check)
PATCHED: set[str] = set()


def _patch_fit_loop(mod: ModuleType) -> None:
    cls = getattr(mod, "FitLoop", None) or getattr(mod, "_FitLoop", None)
    if cls is None:
        return
    existing = cls.__dict__.get("current_epoch")
    if isinstance(existing, property) and getattr(existing.fset, "_hear_compat", False):
        return

    def _get(self: Any) -> int:
        return self.epoch_progress.current.completed

    def _set(self: Any, value: int) -> None:
        self.epoch_progress.current.completed = int(value)

    _set._hear_compat = True  # type: ignore[attr-defined]
    cls.current_epoch = property(_get, _set, doc="Current epoch (settable; hear-eval-kit#432).")
    PATCHED.add("fit_loop.current_epoch")


def _patch_pynvml(mod: ModuleType) -> None:
    fn = getattr(mod, "nvmlDeviceGetName", None)
    if fn is None or getattr(fn, "_hear_compat", False):
        return

    def nvmlDeviceGetName(handle: Any) -> bytes:
        name = fn(handle)
        return name.encode("utf-8") if isinstance(name, str) else name

    nvmlDeviceGetName._hear_compat = True  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = nvmlDeviceGetName
    PATCHED.add("pynvml.nvmlDeviceGetName")


def _patch_librosa_mel(mod: ModuleType) -> None:
    fn = getattr(mod, "mel", None)
    if fn is None or getattr(fn, "_hear_compat", False):
        return

    def mel(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and "sr" not in kwargs:  # librosa <= 0.9: mel(sr, n_fft, ...)
            kwargs["sr"] = args[0]
            args = ()
        return fn(*args, **kwargs)

    mel._hear_compat = True  # type: ignore[attr-defined]
    mel.__doc__ = fn.__doc__
    mod.mel = mel
    PATCHED.add("librosa.filters.mel")


_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "pytorch_lightning.loops.fit_loop": _patch_fit_loop,
    "pynvml": _patch_pynvml,
    "librosa.filters": _patch_librosa_mel,
}
#: stand-ins for modules that may be missing, searched after everything else on ``sys.path``
FALLBACK_DIR = str(Path(__file__).resolve().parent / "fallback")


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Runs a patch function right after one of :data:`_HOOKS`' modules is executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _HOOKS[name](module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    if not any(isinstance(f, _PostImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportHook())
    if FALLBACK_DIR not in sys.path:
        sys.path.append(FALLBACK_DIR)
    for name, patch in _HOOKS.items():  # already imported: patch now
        if name in sys.modules:
            patch(sys.modules[name])


def check() -> None:
    """Self-test: ``Trainer().fit_loop.current_epoch = 7`` must reach ``trainer.current_epoch``."""
    import pytorch_lightning as pl

    major = int(pl.__version__.split(".")[0])
    if major >= 2:
        raise RuntimeError(
            f"pytorch-lightning {pl.__version__}: heareval 2021.1.3 needs extra shims for 2.x "
            "that hear_compat does not implement; pin pytorch-lightning==1.9.5"
        )
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit_loop.current_epoch = 7
    if trainer.current_epoch != 7 or "fit_loop.current_epoch" not in PATCHED:
        raise RuntimeError("hear_compat: FitLoop.current_epoch patch is not effective")


install()
