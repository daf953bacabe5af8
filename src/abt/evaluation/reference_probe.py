"""Run inside the HEAR kit's venv: ``python -m abt.evaluation.reference_probe STAGE MODULE``.

``import``: import the HEAR module. ``embed``: also ``load_model`` (with ``--model`` if given)
and pass two 1 s clips of seeded noise at the model's rate through ``get_scene_embeddings`` and
``get_timestamp_embeddings``, checking what the kit relies on: a ``torch.nn.Module`` (TensorFlow
is a stub here), an integer ``sample_rate`` the kit accepts (it names the ``<task>/<rate>/``
folder read), integer embedding sizes, float32 outputs of shapes ``[2, scene_embedding_size]``,
``[2, T, timestamp_embedding_size]`` and ``[2, T]`` (T >= 1), finite values, timestamps
non-decreasing and inside the clip. Prints one JSON line: ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}`` (exit 1). Only numpy and torch are imported besides the module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from typing import Any

RATES = (16000, 22050, 32000, 44100, 48000)
CLIP_S = 1.0


class ProbeError(Exception):
    pass


def _int_attr(model: Any, name: str) -> int:
    if not hasattr(model, name):
        raise ProbeError(f"the model has no attribute {name!r} (HEAR API)")
    v = getattr(model, name)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ProbeError(f"model.{name} must be a positive int, got {v!r}")
    return int(v)


def _check(x: Any, what: str, shape: tuple) -> Any:
    import numpy as np
    import torch

    if not isinstance(x, torch.Tensor):
        raise ProbeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32 and what != "timestamps":
        raise ProbeError(f"{what} must be float32, got {x.dtype}")
    got = tuple(x.shape)
    wrong = len(got) != len(shape) or any(
        w is not None and g != w for g, w in zip(got, shape, strict=True)
    )
    if wrong:
        want = "[" + ", ".join("T" if w is None else str(w) for w in shape) + "]"
        raise ProbeError(f"{what} has shape {list(got)}, expected {want}")
    a = x.detach().cpu().double().numpy()
    if not np.isfinite(a).all():
        raise ProbeError(f"{what} holds {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def embed(module: Any, model_path: str | None, device: str) -> dict[str, Any]:
    import numpy as np
    import torch

    for fn in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings"):
        if not callable(getattr(module, fn, None)):
            raise ProbeError(f"the module has no function {fn!r} (HEAR API)")
    model = module.load_model(model_path) if model_path else module.load_model()
    if not isinstance(model, torch.nn.Module):
        raise ProbeError(
            f"load_model returned a {type(model).__name__}, not a torch.nn.Module (the kit here "
            "runs PyTorch HEAR modules only)"
        )
    rate = getattr(model, "sample_rate", None)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in RATES:
        raise ProbeError(
            f"model.sample_rate is {rate!r}; the kit reads <task>/<sample_rate>/ and accepts "
            f"the ints {list(RATES)}"
        )
    d_scene = _int_attr(model, "scene_embedding_size")
    d_ts = _int_attr(model, "timestamp_embedding_size")
    model.to(device)
    g = torch.Generator().manual_seed(0)
    audio = (torch.rand((2, int(CLIP_S * rate)), generator=g) * 2 - 1).to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        scene = module.get_scene_embeddings(audio, model)
        _check(scene, "scene embeddings", (2, d_scene))
        out = module.get_timestamp_embeddings(audio, model)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise ProbeError("get_timestamp_embeddings must return (embeddings, timestamps)")
        emb, ts = out
        e = _check(emb, "timestamp embeddings", (2, None, d_ts))
        t = _check(ts, "timestamps", (2, e.shape[1]))
    if e.shape[1] < 1:
        raise ProbeError("get_timestamp_embeddings returned no frames for a 1 s clip")
    if (np.diff(t, axis=1) < 0).any():
        raise ProbeError("timestamps must not decrease")
    if t.min() < 0 or t.max() > 1000.0 * CLIP_S:
        raise ProbeError(
            f"timestamps run from {t.min():.1f} to {t.max():.1f} ms, outside the "
            f"{1000 * CLIP_S:.0f} ms clip (they must be in milliseconds)"
        )
    return {
        "sample_rate": rate,
        "scene_embedding_size": d_scene,
        "timestamp_embedding_size": d_ts,
        "clip_seconds": CLIP_S,
        "n_timestamps": int(e.shape[1]),
        "embed_seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("stage", choices=["import", "embed"])
    ap.add_argument("module")
    ap.add_argument("--model")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    try:
        mod = importlib.import_module(a.module)
        res: dict[str, Any] = {"ok": True, "module": a.module}
        if a.stage == "embed":
            res.update(embed(mod, a.model, a.device))
    except ProbeError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    except BaseException as e:  # noqa: BLE001 - a user's module may raise anything
        traceback.print_exc(file=sys.stderr)
        msg = f"{type(e).__name__}: {e}".strip()
        print(json.dumps({"ok": False, "error": msg.splitlines()[0] if msg else repr(e)}))
        return 1
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
