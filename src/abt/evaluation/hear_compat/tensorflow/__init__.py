"""A stub of ``tensorflow`` for the HEAR 2021 kit, on ``PYTHONPATH`` of the evaluation venv only.

heareval 2021.1.3 and hearvalidator 2021.0.6 import TensorFlow at module level but only call it
for TensorFlow HEAR modules: ``isinstance(model, tf.Module)`` (False for our torch module), and,
in the embeddings runner, ``tf.test.is_gpu_available()`` when torch sees a GPU (True here, so a
torch-only GPU box does not raise). Everything else raises: only PyTorch modules can be evaluated.
"""

from __future__ import annotations

from typing import Any

from _abt_stub import getattr_raising, unavailable

__version__ = "0.0.0+abt.stub"
ABT_STUB = True
float32 = "float32"

_unavailable = unavailable(
    "tensorflow is a stub in the abt HEAR evaluation venv; only PyTorch HEAR modules can be "
    "evaluated"
)


class Module:
    """Never the base class of anything loaded here, so ``isinstance(m, tf.Module)`` is False."""


class Tensor:
    """Placeholder type."""


class _Namespace:
    def __init__(self, name: str, **attrs: Any) -> None:
        self._name = name
        self.__dict__.update(attrs)

    def __getattr__(self, attr: str) -> Any:
        return getattr_raising(_unavailable)(attr)


test = _Namespace("test", is_gpu_available=lambda *a, **k: True,
                  is_built_with_cuda=lambda: False)  # fmt: skip
config = _Namespace("config", list_physical_devices=lambda *a, **k: [])
random = _Namespace("random")
math = _Namespace("math")
convert_to_tensor = _unavailable
device = _unavailable
constant = _unavailable

__getattr__ = getattr_raising(_unavailable)
