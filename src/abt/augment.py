"""The audio augmentation (AA) module, batched (thesis §3.2, ablation variants §4.3.1).

Every block acts on a whole batch of log-mel spectrograms ``(B, C, F, T)`` on the training device
(CPU or GPU) with *per-sample* randomness and no Python loop over clips. The original code (a copy
of BYOL-A v2's blocks) runs per clip in DataLoader workers; the blocks here are statistically
equivalent to that (``tests/test_augment.py`` checks them against a per-sample reference).

Blocks (thesis order: Norm -> Mixup -> RRC -> RLF):

- :class:`Normalize` -- dataset mean/std (thesis Fig. 3.2 "Norm").
- :class:`Mixup` -- log-mixup-exp with a FIFO memory bank of past inputs (Eq. 3.8).
- :class:`RandomResizeCrop` -- crop inside a zero-filled virtual canvas, bicubic resize back
  (Eqs. 3.9-3.10).
- :class:`RandomLinearFader` -- add a random linear gain ramp along time (Eqs. 3.11-3.12).
- :class:`GaussianNoise` -- the "Noise" ablation (§4.3.1).
- :class:`PrePostNorm` -- the "PPN" ablation: batch-statistics pre- and post-normalisation.

:class:`AugmentationPipeline` builds the chain from a config list through the
:data:`AUGMENTATIONS` registry and produces the two views ``v, v' ~ AA(x)`` (Eq. 3.1). The block
classes take every parameter explicitly; the schema owns their defaults (the thesis's AA module is
the default of ``pretrain.augment.blocks``), and the pipeline completes and checks a config list
with it (:func:`block_specs`).

Randomness: every block draws from ``self.generator`` (a :class:`torch.Generator`, or the global
RNG when ``None``). Draws happen on the generator's device and are moved to the input's device, so
pass a CUDA generator when augmenting on a GPU (otherwise full-size noise for
:class:`GaussianNoise` is drawn on the CPU and copied). The pipeline owns one generator shared by
its blocks and saves its state in ``state_dict()`` together with the Mixup memory bank, so a resumed
run continues with identical augmentations.

Reduced-precision inputs (float16/bfloat16) are processed in float32 and cast back; the output
always has the input's shape and dtype.

Waveform blocks (:mod:`abt.wave_augment`, beyond the thesis) register here too and may open the
chain: given waveforms ``(B, N)`` the pipeline runs them, then the log-mel front-end of
:mod:`abt.data.mel` on the same device, then normalisation and the spectrogram blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from abt.data.mel import LogMelFrontEnd, MelConfig
from abt.registry import Registry

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)

AUGMENTATIONS: Registry[Any] = Registry("augmentation")


def _check_batch(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a batch (B, C, F, T), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point batch, got {x.dtype}")


def _work_dtype(x: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (interpolation and exp/log are done in at least float32)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _pair(v: Sequence[float], what: str, ordered: bool = True) -> tuple[float, float]:
    t = tuple(float(a) for a in v)
    if len(t) != 2:
        raise ValueError(f"{what} must be a pair, got {v!r}")
    if ordered and t[0] > t[1]:
        raise ValueError(f"{what} must satisfy low <= high, got {v!r}")
    return t  # type: ignore[return-value]


def _within(what: str, v: float, low: float, high: float | None = None) -> None:
    """``low <= v`` (and ``v <= high`` when given), else a ValueError naming ``what``."""
    if not (low <= v and (high is None or v <= high)):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what} must be {bound}, got {v}")


def _one_of(what: str, v: Any, options: Sequence[Any]) -> None:
    """``v`` is one of ``options``, else a ValueError naming ``what`` and the options."""
    if v not in options:
        raise ValueError(f"{what} must be one of {options}, got {v!r}")


class _Block(nn.Module):
    """Base class: a ``generator`` attribute and helpers drawing per-sample random numbers."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.generator = generator

    def _draw(
        self, fn: Any, shape: Sequence[int], device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """``fn`` (``torch.rand``/``torch.randn``) of ``shape`` from ``self.generator`` (drawn on
        the generator's device), returned on ``device`` in ``dtype``."""
        g = self.generator
        if g is None:
            return fn(tuple(shape), device=device, dtype=dtype)
        r = fn(tuple(shape), generator=g, device=g.device, dtype=dtype)
        return r.to(device=device, non_blocking=True)

    def _rand(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        """U[0, 1) of ``shape``."""
        return self._draw(torch.rand, shape, device, dtype)

    def _randn(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
        """N(0, 1) of ``shape``."""
        return self._draw(torch.randn, shape, device, dtype)

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> Tensor:
        """``n`` float32 draws from U[low, high)."""
        return low + (high - low) * self._rand((n,), device, torch.float32)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


@AUGMENTATIONS.register("normalize")
class Normalize(nn.Module):
    """``(x - mean) / std`` with dataset statistics (thesis §3.2, the *Norm* block)."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean:.6g}, std={self.std:.6g}"


def batch_normalize(x: Tensor, eps: float = FLOAT32_EPS) -> Tensor:
    """Standardise by batch statistics per channel (over batch, F, T), BYOL-A ``NormalizeBatch``.

    The standard deviation is the unbiased one (``torch.std``) clamped to at least ``eps``.
    """
    _check_batch(x)
    xw = _work_dtype(x)
    dims = (0, 2, 3)
    mean = xw.mean(dim=dims, keepdim=True)
    std = xw.std(dim=dims, keepdim=True).clamp_min(eps)
    return ((xw - mean) / std).to(x.dtype)


class PrePostNorm(nn.Module):
    """The "PPN" ablation (thesis §4.3.1): replaces dataset normalisation.

    ``pre(x)`` standardises the incoming batch by its own (batch) statistics; ``post(views)``
    standardises the augmented views by batch statistics again, after Mixup/RRC/RLF.

    ``post_norm_scope``: ``"joint"`` computes the post-norm statistics over both views together
    (2B clips, as BYOL-A's training scripts do); ``"per_view"`` normalises each view separately
    (what the ABT code does in ``main.py``). The thesis does not say which.

    Deviation, deliberate: the ABT code's pre-norm is a per-worker *running* statistic with an
    off-by-one bug (original-code-spec §1.3/§1.16 item 7); the thesis says "batch (and not dataset)
    statistics", which is what ``pre`` implements.
    """

    SCOPES = ("joint", "per_view")

    def __init__(self, post_norm_scope: str = "joint", eps: float = FLOAT32_EPS) -> None:
        super().__init__()
        if post_norm_scope not in self.SCOPES:
            raise ValueError(
                f"post_norm_scope must be one of {self.SCOPES}, got {post_norm_scope!r}"
            )
        self.post_norm_scope = post_norm_scope
        self.eps = float(eps)

    def pre(self, x: Tensor) -> Tensor:
        return batch_normalize(x, self.eps)

    def post(self, views: Sequence[Tensor]) -> list[Tensor]:
        views = list(views)
        if self.post_norm_scope == "per_view":
            return [batch_normalize(v, self.eps) for v in views]
        sizes = [v.shape[0] for v in views]
        joint = batch_normalize(torch.cat(views, dim=0), self.eps)
        return list(joint.split(sizes, dim=0))

    def forward(self, x: Tensor) -> Tensor:
        return self.pre(x)

    def extra_repr(self) -> str:
        return f"post_norm_scope={self.post_norm_scope!r}, eps={self.eps:.3g}"


# --------------------------------------------------------------------------------------------
# Mixup
# --------------------------------------------------------------------------------------------


@AUGMENTATIONS.register("mixup")
class Mixup(_Block):
    """Log-mixup-exp with a FIFO memory bank of past inputs (thesis §3.2.1, Eq. 3.8).

    ``out = log((1 - λ) exp(x) + λ exp(x') + eps)``, ``λ ~ U(0, alpha)`` per sample, ``x'`` drawn
    uniformly (with replacement) from the memory bank. The bank is a ring buffer tensor of
    ``memory_size`` past *un-mixed* inputs kept on the input's device.

    Batched semantics (documented choice): every sample of a batch draws its partner from the bank
    *as it was before the batch*; the batch's un-mixed inputs are pushed afterwards (oldest entries
    overwritten). With an empty bank (the first batch) the output is the input, unchanged, as in
    BYOL-A. ``forward`` = ``mix`` then ``push``; :class:`AugmentationPipeline` calls ``mix`` for
    every view and ``push`` once per batch, so the bank holds ``memory_size`` distinct clips (the
    per-clip original pushes every clip once per view, and its second view may mix with the clip
    itself).

    ``push_first=True`` follows the thesis text literally ("each encountered input is stored ...
    before being processed by the Mixup block"): the batch is pushed first, so a clip may draw
    itself or a batch mate as background, and the first batch is mixed too.
    """

    def __init__(
        self,
        alpha: float,
        memory_size: int,
        push_first: bool,
        eps: float = FLOAT32_EPS,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        _within("alpha", alpha, 0, 1)
        _within("memory_size", memory_size, 1)
        self.alpha = float(alpha)
        self.memory_size = int(memory_size)
        self.eps = float(eps)
        self.push_first = bool(push_first)
        self._bank: Tensor | None = None  # (memory_size, C, F, T), allocated on the first push
        self._ptr = 0  # next slot to overwrite
        self._count = 0  # number of valid slots (slots [0, count) while not full)

    # -- memory bank -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of entries in the bank (at most ``memory_size``)."""
        return self._count

    def reset(self) -> None:
        self._bank, self._ptr, self._count = None, 0, 0

    def memory(self) -> Tensor | None:
        """The bank's entries, oldest first (a copy), or ``None`` while empty."""
        if self._bank is None or self._count == 0:
            return None
        if self._count < self.memory_size:
            return self._bank[: self._count].clone()
        return torch.cat([self._bank[self._ptr :], self._bank[: self._ptr]], dim=0)

    def _bank_on(self, device: torch.device) -> Tensor:
        assert self._bank is not None
        if self._bank.device != device:
            self._bank = self._bank.to(device)
        return self._bank

    @torch.no_grad()
    def push(self, x: Tensor) -> None:
        """Append the (un-mixed) batch ``x`` to the FIFO, dropping the oldest entries."""
        _check_batch(x)
        x = x.detach()
        item = tuple(x.shape[1:])
        if self._bank is None:
            self._bank = x.new_zeros((self.memory_size, *item))
        bank = self._bank_on(x.device)
        if tuple(bank.shape[1:]) != item:
            raise ValueError(f"Mixup bank holds items of shape {tuple(bank.shape[1:])}, got {item}")
        m, b = self.memory_size, x.shape[0]
        if b >= m:
            bank.copy_(x[b - m :].to(bank.dtype))
            self._ptr, self._count = 0, m
            return
        slots = (self._ptr + torch.arange(b, device=bank.device)) % m
        bank.index_copy_(0, slots, x.to(bank.dtype))
        self._ptr = (self._ptr + b) % m
        self._count = min(self._count + b, m)

    # -- mixing ------------------------------------------------------------------------------

    @torch.no_grad()
    def mix(self, x: Tensor, lam: Tensor | None = None, index: Tensor | None = None) -> Tensor:
        """Mix ``x`` with partners from the current bank, without pushing.

        ``lam`` (B,) and ``index`` (B,) (slot indices into the bank) override the random draws
        (for tests and reference comparisons).
        """
        _check_batch(x)
        if self._count == 0:
            return x
        b = x.shape[0]
        bank = self._bank_on(x.device)
        if lam is None:
            lam = self._uniform(b, 0.0, self.alpha, x.device)
        if index is None:
            u = self._rand((b,), x.device, torch.float64)
            index = (u * self._count).long().clamp_(max=self._count - 1)
        xw = _work_dtype(x)
        lam = lam.to(device=x.device, dtype=xw.dtype).view(b, 1, 1, 1)
        # log((1 - λ) exp(x) + λ exp(x') + eps), in place on fresh tensors (halves the time on CPU)
        partner = bank.index_select(0, index.to(x.device)).to(xw.dtype).exp_()
        out = xw.exp().mul_(1.0 - lam).addcmul_(partner, lam).add_(self.eps).log_()
        return out.to(x.dtype)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if self.push_first:
            self.push(x)
            return self.mix(x)
        out = self.mix(x)
        self.push(x)
        return out

    # -- state -------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        if self._bank is None:
            bank = None
        elif self._count < self.memory_size:
            bank = self._bank[: self._count].clone()  # slots [0, count) are the valid ones
        else:
            bank = self._bank.clone()  # full: slot layout matters for exact resume
        return {
            "bank": bank,
            "ptr": self._ptr,
            "count": self._count,
            "memory_size": self.memory_size,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if int(state["memory_size"]) != self.memory_size:
            raise ValueError(
                f"Mixup state has memory_size {state['memory_size']}, module has {self.memory_size}"
            )
        bank = state["bank"]
        if bank is None:
            self.reset()
            return
        self._bank = bank.new_zeros((self.memory_size, *bank.shape[1:]))
        self._bank[: bank.shape[0]] = bank
        self._ptr, self._count = int(state["ptr"]), int(state["count"])

    def extra_repr(self) -> str:
        s = f"alpha={self.alpha}, memory_size={self.memory_size}, eps={self.eps:.3g}"
        return s + (", push_first=True" if self.push_first else "")


# --------------------------------------------------------------------------------------------
# Gaussian noise (ablation)
# --------------------------------------------------------------------------------------------


@AUGMENTATIONS.register("noise")
class GaussianNoise(_Block):
    """The "Noise" ablation (thesis §4.3.1): noise ``N(0, λ)``, ``λ ~ U(0, alpha)`` per sample.

    ``mode="additive"`` (thesis): ``x + n`` on the (normalised) spectrogram.
    ``mode="log_mix"`` (ABT/BYOL-A code, ``MixGaussianNoise``):
    ``log((1 - λ) exp(x) + exp(n) + eps)`` (log-normal noise added in the linear domain).
    ``sigma_is_std=True``: λ is the standard deviation (as ``torch.normal(0, λ)`` in the code);
    ``False`` reads ``N(0, λ)`` as a variance, std ``sqrt(λ)``.
    """

    MODES = ("additive", "log_mix")

    def __init__(
        self,
        alpha: float,
        sigma_is_std: bool,
        mode: str,
        eps: float = FLOAT32_EPS,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        _one_of("mode", mode, self.MODES)
        _within("alpha", alpha, 0)
        self.alpha = float(alpha)
        self.sigma_is_std = bool(sigma_is_std)
        self.mode = mode
        self.eps = float(eps)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        _check_batch(x)
        xw = _work_dtype(x)
        b = x.shape[0]
        lam = self._uniform(b, 0.0, self.alpha, x.device).to(xw.dtype).view(b, 1, 1, 1)
        std = lam if self.sigma_is_std else lam.sqrt()
        noise = self._randn(x.shape, x.device, xw.dtype) * std
        if self.mode == "additive":
            out = xw + noise
        else:
            out = torch.log((1.0 - lam) * xw.exp() + noise.exp() + self.eps)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, sigma_is_std={self.sigma_is_std}, mode={self.mode!r}"


# --------------------------------------------------------------------------------------------
# Random resize crop
# --------------------------------------------------------------------------------------------


def _cubic_weights(t: Tensor, a: float = -0.75) -> Tensor:
    """Keys cubic-convolution weights (a=-0.75, PyTorch's bicubic) for taps -1, 0, 1, 2.

    ``t`` is the fractional offset in [0, 1); returns ``t.shape + (4,)``.
    """
    d = torch.stack([t + 1.0, t, 1.0 - t, 2.0 - t], dim=-1).abs()
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0  # |d| <= 1
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a  # 1 < |d| < 2
    return torch.where(d <= 1.0, near, far)


def _resize_matrix(
    start: Tensor, size: Tensor, out_size: int, in_size: int, out: Tensor | None = None
) -> Tensor:
    """Per-sample (B, out_size, in_size) matrices ``W`` with ``W @ v`` = bicubic resize of the crop
    ``v[start : start + size]`` to ``out_size`` with ``align_corners=True``, exactly as
    ``F.interpolate`` does it: taps beyond the crop are clamped to the crop's edge rows; rows of the
    crop outside ``[0, in_size)`` (the zero canvas) contribute zero.
    """
    b = start.shape[0]
    dev = start.device
    o = torch.arange(out_size, device=dev, dtype=torch.float32)
    scale = (size.float() - 1.0) / (out_size - 1) if out_size > 1 else torch.zeros(b, device=dev)
    src = o.unsqueeze(0) * scale.unsqueeze(1)  # (B, out) in crop coordinates
    k = src.floor()
    t = (src - k).clamp_(0.0, 1.0)
    w = _cubic_weights(t)  # (B, out, 4)
    taps = k.long().unsqueeze(-1) + torch.arange(-1, 3, device=dev)  # (B, out, 4)
    taps = torch.minimum(taps.clamp_min(0), (size - 1).view(b, 1, 1))
    rows = taps + start.view(b, 1, 1)
    inside = (rows >= 0) & (rows < in_size)
    w = w * inside
    shape = (b, out_size, in_size)
    if out is not None and out.shape == shape and out.device == dev and out.dtype == w.dtype:
        mat = out.zero_()  # reused workspace: no fresh pages to fault in on CPU
    else:
        mat = torch.zeros(shape, device=dev, dtype=w.dtype)
    return mat.scatter_add_(2, rows.clamp(0, in_size - 1), w)


@AUGMENTATIONS.register("rrc")
class RandomResizeCrop(_Block):
    """Random Resize Crop (thesis §3.2.2, BYOL-A): crop in a virtual canvas, bicubic resize back.

    The canvas has size ``[int(V_F F), int(V_T T)]``, zero-filled, with the input pasted at the
    centre (offset ``(canvas - size) // 2``). Per sample: crop height ``h = floor(U(f1, f2) F)``,
    clipped to ``[1, F]`` (``height_limit="input"``, thesis ``h ~ min(U, 1)``) or to
    ``[1, canvas_F]`` (``"canvas"``, the code; identical when ``V_F = 1``); width
    ``w = floor(U(t1, t2) T)`` clipped to ``[1, canvas_T]``; top-left corner uniform over the
    positions keeping the crop inside the canvas. The crop is resized to ``(F, T)`` with bicubic
    interpolation, ``align_corners=True`` (no clamping of the overshoot, as in the original).

    ``method`` (both batched, no loop over clips):

    - ``"separable"`` (default): per-sample resize matrices ``W_F (F x F)``, ``W_T (T x T)``
      (4 Keys-cubic taps per row) and two batched matmuls ``W_F X W_T^T``; reproduces
      ``F.interpolate`` on the cut-out crop, as the original does per clip, exactly (edge
      replication included) to float rounding, and is the faster of the two on CPU.
    - ``"grid_sample"``: one ``F.grid_sample(mode="bicubic", padding_mode="zeros",
      align_corners=True)`` over the batch, with a per-sample affine grid mapping output pixels
      onto the crop's pixels in input coordinates (zeros outside the input = the canvas fill).
      The bicubic kernel's outer taps read the true neighbours of the crop, where ``F.interpolate``
      on the cut-out crop repeats the crop's edge pixels: differences are confined to the first and
      last source interval of the crop and are statistically negligible.
    """

    HEIGHT_LIMITS = ("input", "canvas")
    METHODS = ("separable", "grid_sample")

    def __init__(
        self,
        virtual_scale: Sequence[float],
        freq_scale: Sequence[float],
        time_scale: Sequence[float],
        height_limit: str,
        method: str,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.virtual_scale = _pair(virtual_scale, "virtual_scale", ordered=False)
        self.freq_scale = _pair(freq_scale, "freq_scale")
        self.time_scale = _pair(time_scale, "time_scale")
        if min(self.virtual_scale) < 1.0:
            raise ValueError(f"virtual_scale must be >= 1, got {virtual_scale}")
        if min(self.freq_scale) <= 0 or min(self.time_scale) <= 0:
            raise ValueError("freq_scale and time_scale must be positive")
        if height_limit not in self.HEIGHT_LIMITS:
            raise ValueError(f"height_limit must be one of {self.HEIGHT_LIMITS}")
        _one_of("method", method, self.METHODS)
        self.height_limit = height_limit
        self.method = method
        self._workspace: dict[str, Tensor] = {}  # resize matrices reused between calls

    def canvas_size(self, n_freq: int, n_time: int) -> tuple[int, int]:
        return int(n_freq * self.virtual_scale[0]), int(n_time * self.virtual_scale[1])

    def sample_params(
        self, batch: int, n_freq: int, n_time: int, device: torch.device | str = "cpu"
    ) -> dict[str, Tensor]:
        """Per-sample crop ``i, j`` (top-left, canvas coordinates) and ``h, w`` (LongTensors)."""
        device = torch.device(device)
        ch, cw = self.canvas_size(n_freq, n_time)
        u = self._rand((4, batch), device, torch.float64)
        f1, f2 = self.freq_scale
        t1, t2 = self.time_scale
        h_max = n_freq if self.height_limit == "input" else ch
        h = ((f1 + (f2 - f1) * u[0]) * n_freq).floor().long().clamp_(1, min(h_max, ch))
        w = ((t1 + (t2 - t1) * u[1]) * n_time).floor().long().clamp_(1, cw)
        i = (u[2] * (ch - h + 1)).floor().long().clamp_(min=0)
        i = torch.minimum(i, ch - h)
        j = (u[3] * (cw - w + 1)).floor().long().clamp_(min=0)
        j = torch.minimum(j, cw - w)
        return {"i": i, "j": j, "h": h, "w": w}

    @torch.no_grad()
    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        _check_batch(x)
        b, _, nf, nt = x.shape
        if params is None:
            params = self.sample_params(b, nf, nt, x.device)
        ch, cw = self.canvas_size(nf, nt)
        # crop origin in input coordinates (canvas offset of the pasted input subtracted)
        top = params["i"].to(x.device) - (ch - nf) // 2
        left = params["j"].to(x.device) - (cw - nt) // 2
        h, w = params["h"].to(x.device), params["w"].to(x.device)
        xw = _work_dtype(x)
        if self.method == "separable":
            ws = self._workspace
            ws["f"] = wf = _resize_matrix(top, h, nf, nf, ws.get("f"))  # (B, F, F)
            ws["t"] = wt = _resize_matrix(left, w, nt, nt, ws.get("t"))  # (B, T, T)
            wf, wt = wf.to(xw.dtype), wt.to(xw.dtype).transpose(1, 2)
            if x.shape[1] == 1:
                out = torch.bmm(torch.bmm(wf, xw.reshape(b, nf, nt)), wt).view(b, 1, nf, nt)
            else:
                out = torch.matmul(torch.matmul(wf.unsqueeze(1), xw), wt.unsqueeze(1))
        else:
            out = F.grid_sample(
                xw,
                self._grid(top, left, h, w, nf, nt, xw.dtype),
                mode="bicubic",
                padding_mode="zeros",
                align_corners=True,
            )
        return out.to(x.dtype)

    @staticmethod
    def _grid(
        top: Tensor, left: Tensor, h: Tensor, w: Tensor, nf: int, nt: int, dtype: torch.dtype
    ) -> Tensor:
        """(B, F, T, 2) sampling grid: output pixel (o_f, o_t) -> crop pixel, normalised."""
        dev = top.device
        b = top.shape[0]

        def axis(start: Tensor, size: Tensor, n: int) -> Tensor:
            frac = torch.arange(n, device=dev, dtype=torch.float64) / max(n - 1, 1)
            pos = start.double().unsqueeze(1) + frac.unsqueeze(0) * (size.double() - 1).unsqueeze(1)
            return (2.0 * pos / max(n - 1, 1) - 1.0).to(dtype)  # align_corners=True

        gy = axis(top, h, nf).view(b, nf, 1).expand(b, nf, nt)
        gx = axis(left, w, nt).view(b, 1, nt).expand(b, nf, nt)
        return torch.stack([gx, gy], dim=-1)

    def extra_repr(self) -> str:
        return (
            f"virtual_scale={self.virtual_scale}, freq_scale={self.freq_scale}, "
            f"time_scale={self.time_scale}, height_limit={self.height_limit!r}, "
            f"method={self.method!r}"
        )


# --------------------------------------------------------------------------------------------
# Random linear fader
# --------------------------------------------------------------------------------------------


@AUGMENTATIONS.register("rlf")
class RandomLinearFader(_Block):
    """Random Linear Fader (thesis §3.2.3, BYOL-A v2): ``x + g0 + (g1 - g0) t / (T - 1)``.

    ``g0, g1 ~ U(-1, 1) * gain`` per sample, broadcast over frequency, ``t = 0..T-1``
    (``torch.linspace(g0, g1, T)`` as in the code; the thesis writes ``t / T`` for ``t = 1..T``,
    a cosmetic difference).
    """

    def __init__(self, gain: float, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.gain = float(gain)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        _check_batch(x)
        b, nt = x.shape[0], x.shape[-1]
        xw = _work_dtype(x)
        g = (self._uniform(2 * b, -1.0, 1.0, x.device) * self.gain).view(2, b, 1)
        ramp = torch.linspace(0.0, 1.0, nt, device=x.device, dtype=torch.float32).view(1, nt)
        fade = g[0] + (g[1] - g[0]) * ramp  # (B, T)
        return (xw + fade.to(xw.dtype).view(b, 1, 1, nt)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"gain={self.gain}"


# --------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------


def block_specs(
    blocks: Iterable[Mapping[str, Any] | nn.Module],
) -> list[dict[str, Any] | nn.Module]:
    """The block specs of ``pretrain.augment.blocks`` checked against the schema, every
    parameter filled in from its defaults (a misspelt or unknown parameter is a
    :class:`~abt.config.ConfigError` naming it, an unknown block the registry's KeyError);
    modules pass through."""
    from abt.config import schema_defaults

    items = list(blocks)
    specs = [dict(b) for b in items if not isinstance(b, nn.Module)]
    for spec in specs:  # an unknown name: the registry's error, naming the known blocks
        if "name" in spec:
            AUGMENTATIONS.get(spec["name"])
    filled = iter(schema_defaults("pretrain.augment.blocks", specs) if specs else [])
    return [b if isinstance(b, nn.Module) else next(filled) for b in items]


def _mel_config(mels: Mapping[str, Any] | None) -> MelConfig:
    """The front-end of a (partial) ``mels`` mapping, completed with the schema's defaults."""
    from abt.config import schema_defaults

    return MelConfig.from_dict(schema_defaults("mels", dict(mels or {})))


def build_block(spec: Mapping[str, Any] | nn.Module) -> nn.Module:
    """Build one block from a complete ``{"name": ..., **parameters}`` (:func:`block_specs`)
    through :data:`AUGMENTATIONS`."""
    if isinstance(spec, nn.Module):
        return spec
    kwargs = dict(spec)
    try:
        name = kwargs.pop("name")
    except KeyError:
        raise KeyError(f"augmentation spec needs a 'name': {spec!r}") from None
    return AUGMENTATIONS.build(name, **kwargs)


class AugmentationPipeline(nn.Module):
    """The AA module: normalisation, then the configured blocks in order (thesis Fig. 3.2).

    Args:
        blocks: ordered block specs (``{"name": "mixup", "alpha": 0.2}``, ...; completed with
            the schema's defaults, :func:`block_specs`) or modules.
        norm: ``"dataset"`` (``(x - mean) / std``, needs ``mean`` and ``std``), ``"ppn"``
            (:class:`PrePostNorm`: batch-statistics pre-norm, post-norm after augmentation) or
            ``"none"`` (inputs already normalised upstream).
        post_norm_scope: PPN post-norm statistics over ``"joint"`` views or ``"per_view"``.
        seed: if given, a CPU generator seeded with it drives every block (see
            :meth:`manual_seed` for a CUDA one).
        mels: the log-mel front-end settings (the ``mels`` section, completed with the schema's
            defaults) for waveform input; needed when the chain starts with waveform blocks
            (:mod:`abt.wave_augment`).
        crop_frames: frames of the log-mel each view has (waveform input): the waveform chain
            ends at :attr:`out_samples` samples and reads :meth:`input_samples` (its margins).

    ``views(x, n)`` returns ``n`` independently augmented views of the batch (Eq. 3.1). The views
    are computed in one pass over an ``(n B)`` batch; each Mixup bank is updated once per batch
    (with the block's input for the first view) after all views have been mixed (before, with
    ``push_first=True``).

    Waveform input ``(B, N)`` (waveform blocks first in ``blocks``): the input is centre-cut to
    :meth:`input_samples`, repeated for the views, put through the waveform blocks (lengths
    planned backwards from :attr:`out_samples`), the log-mel front-end, the normalisation (PPN's
    batch statistics over all views together) and the spectrogram blocks. The Mixup bank then
    holds the first view's waveform-augmented log-mels.
    """

    NORMS = ("dataset", "ppn", "none")

    def __init__(
        self,
        blocks: Iterable[Mapping[str, Any] | nn.Module],
        norm: str,
        mean: float | None = None,
        std: float | None = None,
        post_norm_scope: str = "joint",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        mels: Mapping[str, Any] | MelConfig | None = None,
        crop_frames: int | None = None,
    ) -> None:
        super().__init__()
        _one_of("norm", norm, self.NORMS)
        self.blocks = nn.ModuleList(build_block(s) for s in block_specs(blocks))
        domains = [getattr(b, "domain", "spectrogram") for b in self.blocks]
        self.n_wave = next((i for i, d in enumerate(domains) if d != "wave"), len(domains))
        if "wave" in domains[self.n_wave :]:
            i = domains.index("wave", self.n_wave)
            raise ValueError(
                f"augment.blocks[{i}] ({type(self.blocks[i]).__name__}) is a waveform block after "
                f"the spectrogram block augment.blocks[{self.n_wave}] "
                f"({type(self.blocks[self.n_wave]).__name__}): waveform blocks come first"
            )
        self.mel_cfg: MelConfig | None = None
        self.frontend: LogMelFrontEnd | None = None
        if mels is not None or self.n_wave:
            self.mel_cfg = mels if isinstance(mels, MelConfig) else _mel_config(mels)
            self.frontend = LogMelFrontEnd(self.mel_cfg)
        self.crop_frames = None if crop_frames is None else int(crop_frames)
        self.norm = norm
        self.normalize: nn.Module | None = None
        self.ppn: PrePostNorm | None = None
        if norm == "dataset":
            if mean is None or std is None:
                raise ValueError("norm='dataset' needs mean and std (use norm='none' otherwise)")
            self.normalize = Normalize(mean, std)
        elif norm == "ppn":
            self.ppn = PrePostNorm(post_norm_scope)
        self.generator: torch.Generator | None = None
        if generator is not None:
            self.set_generator(generator)
        elif seed is not None:
            self.manual_seed(seed)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **overrides: Any) -> AugmentationPipeline:
        """Build from a mapping with keys ``blocks``, ``norm``, ``mean``, ``std``,
        ``post_norm_scope``, ``seed`` (all optional)."""
        kw = dict(cfg)
        kw.update(overrides)
        known = {"blocks", "norm", "mean", "std", "post_norm_scope", "seed", "mels", "crop_frames"}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise KeyError(f"unknown augmentation config keys {unknown}; known: {sorted(known)}")
        return cls(**kw)

    # -- randomness --------------------------------------------------------------------------

    def set_generator(self, generator: torch.Generator | None) -> None:
        self.generator = generator
        for blk in self.blocks:
            if isinstance(blk, _Block):
                blk.generator = generator

    def manual_seed(self, seed: int, device: torch.device | str = "cpu") -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        self.set_generator(g)
        return g

    def mixups(self) -> list[Mixup]:
        return [b for b in self.blocks if isinstance(b, Mixup)]

    # -- waveform stage ----------------------------------------------------------------------

    @property
    def wave_blocks(self) -> list[nn.Module]:
        return list(self.blocks[: self.n_wave])

    @property
    def out_samples(self) -> int:
        """Samples of each waveform view at the front-end (``crop_frames`` log-mel frames)."""
        if self.mel_cfg is None or self.crop_frames is None:
            raise ValueError(
                "waveform input needs the pipeline's mels and crop_frames (the log-mel "
                "front-end and the crop length)"
            )
        return self.mel_cfg.samples_for_frames(self.crop_frames)

    def input_samples(self) -> int:
        """Waveform samples a clip's crop must have: :attr:`out_samples` plus the margins the
        waveform blocks need (time shift, time stretch); what the store's crops read."""
        from abt.wave_augment import plan_lengths

        return plan_lengths(self.wave_blocks, self.out_samples)[0]

    def input_margins(self) -> tuple[int, int]:
        """Samples a crop reads before and after its :attr:`out_samples` (the margins of
        :meth:`input_samples`, split evenly, the odd sample after): the crop's planned start is
        that of its output, so the waveform blocks see context on both sides."""
        m = self.input_samples() - self.out_samples
        return m // 2, m - m // 2

    @torch.no_grad()
    def wave_to_logmel(self, x: Tensor, n_views: int = 1) -> Tensor:
        """``n_views`` waveform-augmented copies of ``x`` ``(B, N)`` as un-normalised log-mels
        ``(n_views B, 1, n_mels, crop_frames)``, views one after the other."""
        from abt.wave_augment import _check_wave, centre, plan_lengths

        _check_wave(x)
        assert self.frontend is not None
        lengths = plan_lengths(self.wave_blocks, self.out_samples)
        w = centre(x.float(), lengths[0])
        if n_views > 1:
            w = w.repeat(n_views, 1)
        for blk, n_out in zip(self.wave_blocks, lengths[1:], strict=True):
            w = blk(w, n_out)
        return self.frontend(w).transpose(1, 2).unsqueeze(1)

    # -- application -------------------------------------------------------------------------

    def pre(self, x: Tensor) -> Tensor:
        """Normalisation applied to the incoming batch (dataset statistics or PPN pre-norm)."""
        if self.normalize is not None:
            return self.normalize(x)
        if self.ppn is not None:
            return self.ppn.pre(x)
        return x

    @torch.no_grad()
    def views(self, x: Tensor, n_views: int = 2) -> list[Tensor]:
        """``n_views`` independently augmented views of the batch ``x``: log-mels (B, C, F, T),
        or waveforms (B, N) when the pipeline has a front-end (see the class docstring)."""
        _within("n_views", n_views, 1)
        b = x.shape[0]
        if x.ndim == 2 and self.frontend is not None:
            h = self.pre(self.wave_to_logmel(x, n_views))
        else:
            _check_batch(x)
            if self.n_wave:
                raise ValueError(
                    f"the chain starts with waveform blocks; got a log-mel batch {tuple(x.shape)} "
                    "(waveform input is (B, N): use a waveform store)"
                )
            h = self.pre(x)
            if n_views > 1:
                h = h.repeat(n_views, 1, 1, 1)
        pending: list[tuple[Mixup, Tensor]] = []
        for blk in self.blocks[self.n_wave :]:
            if isinstance(blk, Mixup):
                if blk.push_first:
                    blk.push(h[:b])
                else:
                    pending.append((blk, h[:b]))
                h = blk.mix(h)
            else:
                h = blk(h)
        for blk, inp in pending:
            blk.push(inp)
        out = list(h.split(b, dim=0))
        if self.ppn is not None:
            out = self.ppn.post(out)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.views(x, 1)[0]

    # -- state -------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        g = self.generator
        return {
            "generator_state": None if g is None else g.get_state(),
            "generator_device": None if g is None else str(g.device),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        gs = state.get("generator_state")
        if gs is None:
            return
        if self.generator is None:
            self.set_generator(torch.Generator(device=state["generator_device"]))
        assert self.generator is not None
        # a generator state is a CPU byte tensor, whatever device the checkpoint was mapped to
        self.generator.set_state(torch.as_tensor(gs).to(device="cpu", dtype=torch.uint8))

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}"


from abt import wave_augment as _wave_augment  # noqa: E402,F401  (registers the waveform blocks)
