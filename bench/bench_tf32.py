"""What TF32 would change for a float32 encoder (``pretrain.tf32``), measured on the CPU by
emulation: every matrix product and/or convolution of a training step (forward and backward)
gets its float32 inputs rounded to TF32 (10 mantissa bits, round to nearest, ties away, as the
tensor cores' conversion does) and accumulates in float32.

    python bench/bench_tf32.py [--encoder audiontt] [--batch 128] [--out bench/results/tf32.json]

For ``none`` (IEEE float32 everywhere), ``conv`` (TF32 convolutions: PyTorch's default, abt's
default) and ``all`` (matrix products too): the loss and the gradient of one step of the AudioSet
configuration (projector 8192-1048) relative to a float64 reference, ``|x - x64| / |x64|``.
Also the share of the step's FLOPs in matrix products and in convolutions
(``torch.utils.flop_counter``): the most TF32 matrix products could speed up. Speed itself is
not measured here (no TF32 units on a CPU).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write  # noqa: E402

from abt.config import REPO_ROOT, load_config  # noqa: E402
from abt.encoders import build_encoder_from_spec  # noqa: E402
from abt.methods import build_method  # noqa: E402
from abt.runspec import resolve  # noqa: E402

aten = torch.ops.aten
MATMUL = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
CONV = {aten.convolution.default, aten.convolution_backward.default}


def to_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32's 10-bit mantissa (nearest, ties away from zero)."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view_as(t)


class TF32(TorchDispatchMode):
    """Round the float32 inputs of the chosen op families to TF32 (forward and backward)."""

    def __init__(self, ops: set) -> None:
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func in self.ops:
            args = tuple(
                to_tf32(a) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a
                for a in args
            )
        return func(*args, **(kwargs or {}))


MODES = {"none": set(), "conv": CONV, "all": CONV | MATMUL}


def _step(method: torch.nn.Module, views: list[torch.Tensor]) -> tuple[float, torch.Tensor]:
    method.zero_grad(set_to_none=True)
    out = method(views)
    out["loss"].backward()
    grad = torch.cat([p.grad.flatten() for p in method.parameters() if p.grad is not None])
    return float(out["loss"].detach()), grad.double()


class Float64:
    """The float64 reference: the projector's last layer and the cross-correlation cast to
    float32 on purpose (``.float()``, row AJ of docs/fidelity.md); here they stay float64."""

    def __enter__(self) -> None:
        self._float = torch.Tensor.float
        real = self._float
        torch.Tensor.float = lambda t, *a, **k: t if t.dtype == torch.float64 else real(t, *a, **k)

    def __exit__(self, *exc: object) -> None:
        torch.Tensor.float = self._float


def flop_shares(method: torch.nn.Module, views: list[torch.Tensor]) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        method(views)["loss"].backward()
    by_op = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    total = sum(by_op.values())
    conv = sum(v for k, v in by_op.items() if "convolution" in k)
    return {"gflops": total / 1e9, "conv_share": conv / total, "matmul_share": 1 - conv / total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="audiontt")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    cfg = load_config(REPO_ROOT / "config.yaml")
    run = resolve(cfg, a.encoder, "baseline", 0)
    torch.manual_seed(0)
    enc = build_encoder_from_spec(run.encoder, 64, 96)
    pre = run.pretrain
    method = build_method(enc, pre["method"], pre["projector"], pre["objective"]).train()
    for m in method.modules():  # the same function in every precision: no random dropout masks
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(a.batch, 1, 64, 96, generator=g) for _ in range(2)]
    ref = copy.deepcopy(method).double()
    with Float64():
        loss64, grad64 = _step(ref, [v.double() for v in views])
    rows = []
    for mode, ops in MODES.items():
        m = copy.deepcopy(method)
        with TF32(ops):
            loss, grad = _step(m, views)
        rows.append({
            "tf32": mode,
            "loss_rel_err": abs(loss - loss64) / abs(loss64),
            "grad_rel_err": float((grad - grad64).norm() / grad64.norm()),
        })  # fmt: skip
        print(rows[-1], flush=True)
    shares = flop_shares(copy.deepcopy(method), views)
    payload = {"machine": machine(), "encoder": a.encoder, "batch": a.batch,
               "projector": pre["projector"], "flops": shares, "results": rows}  # fmt: skip
    write(a.out, payload)
    print(f"\n{a.encoder}, batch {a.batch}, projector {pre['projector']}: "
          f"{shares['gflops']:.0f} GFLOP per step, {100 * shares['matmul_share']:.0f} % in matrix "
          f"products, {100 * shares['conv_share']:.0f} % in convolutions")  # fmt: skip
    print("| pretrain.tf32 | loss rel. error vs float64 | gradient rel. error vs float64 |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['tf32']} | {r['loss_rel_err']:.1e} | {r['grad_rel_err']:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
