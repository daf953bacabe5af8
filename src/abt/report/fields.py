"""The quantities an ablation summary derives from its resolved run: the columns a study's
figure may put on its x axis (config ``studies.<name>.x``). Torch- and pandas-free, so the
configuration checks can name the valid columns at parse time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Run = Mapping[str, Any]


def _pre(run: Run) -> Mapping[str, Any]:
    return run["pretrain"]


def _patch(run: Run) -> str:
    patch = (run["encoder"].get("kwargs") or {}).get("patch_size")
    return "x".join(str(int(p)) for p in patch) if patch else ""


def _augment(run: Run) -> str:
    aug = _pre(run).get("augment") or {}
    blocks = [b["name"] for b in aug.get("blocks", [])]
    return "+".join(blocks) + ("+ppn" if aug.get("norm") == "ppn" else "")


def _mask(run: Run) -> Mapping[str, Any]:
    return _pre(run).get("masking") or {}


#: column -> how it is derived from a resolved run (the order of the summary's columns)
DERIVED_FIELDS: dict[str, Callable[[Run], Any]] = {
    "encoder": lambda r: r["encoder"]["key"],
    "arch": lambda r: r["encoder"]["arch"],
    "patch_size": _patch,
    "optimizer": lambda r: r["optimizer"]["key"],
    "epochs": lambda r: int(_pre(r)["epochs"]),
    "batch_size": lambda r: int(_pre(r)["batch_size"]),
    "crop_frames": lambda r: int(_pre(r)["crop_frames"]),
    "lambd": lambda r: float(_pre(r)["objective"]["lambd"]),
    "alpha": lambda r: float(_pre(r)["objective"]["alpha"]),
    "objective": lambda r: _pre(r)["objective"]["name"],
    "method": lambda r: _pre(r)["method"]["name"],
    "projector_depth": lambda r: len(_pre(r)["projector"]["hidden_dims"]) + 1,
    "projector_out": lambda r: int(_pre(r)["projector"]["out_dim"]),
    "augment": _augment,
    "mask_mode": lambda r: _mask(r).get("mode", "none"),
    "mask_ratio": lambda r: (
        float(_mask(r).get("ratio", 0.0)) if _mask(r).get("mode") == "fixed" else 0.0
    ),
}


def derived_fields(run: Run) -> dict[str, Any]:
    """The quantities the ablation figures put on their x axes, from a resolved run config."""
    return {name: derive(run) for name, derive in DERIVED_FIELDS.items()}
