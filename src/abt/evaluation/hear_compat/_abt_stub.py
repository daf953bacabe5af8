"""What the stand-in modules of the HEAR evaluation venv share (``tensorflow`` here, and
``fallback/torchaudio``): a function that raises with the stand-in's message, and a module- or
namespace-level ``__getattr__`` that hands it out for every public name. This folder is on the
venv's ``PYTHONPATH``, so both stand-ins import it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn


def unavailable(message: str) -> Callable[..., NoReturn]:
    """A function that raises ``RuntimeError(message)`` whatever it is called with."""

    def _unavailable(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise RuntimeError(message)

    return _unavailable


def getattr_raising(fn: Callable[..., NoReturn]) -> Callable[[str], Any]:
    """A ``__getattr__`` answering ``fn`` for every name but dunders (``AttributeError``), so
    ``hasattr(stub, "__path__")`` and friends stay truthful."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return fn

    return __getattr__
