"""CvT encoders on log-mel input (beyond the thesis: its §5 names CvT as a direction; Wu et al.
2021, "CvT: Introducing Convolutions to Vision Transformers").

Three stages, each a *convolutional token embedding* then Transformer blocks whose attention uses a
*convolutional projection*:

* Token embedding: ``Conv2d(c_in, d_i, kernel k_i, stride s_i, padding p_i)`` over the stage's
  input map, then LayerNorm over channels; kernels 7/3/3, strides 4/2/2 (Wu et al. §3.1, Table 2),
  paddings 2/1/1 (the public code's).
  On a ``(1, 64, T)`` log-mel the token grids are ``16 x T/4``, ``8 x T/8`` and ``4 x T/16``: the
  last stage has a stride of 16 in frequency and in time.
* Convolutional projection (§3.2): the tokens are laid out on their grid, and q, k and v each come
  from a depthwise 3x3 convolution (no bias) + BatchNorm, flattened, then a Linear layer (with
  bias) -- a depthwise-separable convolution. q uses stride 1, k and v stride 2 ("squeezed"
  projection: 4x fewer keys and values).
* Blocks: pre-norm, ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, MLP ratio 4, GELU.
* No positional embedding (§3.3/§4.4: the convolutions carry position), so any input length runs.
* A [CLS] token joins in the last stage only (it is not on the grid: the convolutional projections
  act on the grid tokens and the [CLS] token is concatenated to q, k and v unprojected, as in the
  public code); the output is the final-LayerNorm [CLS] token, ``(B, d_3)``.

Configurations: CvT-13 depths [1, 2, 10], CvT-21 [1, 4, 16]; both dims [64, 192, 384], heads
[1, 3, 6]. With 3 input channels and a 1000-class head (ImageNet) these have 20.0 M and 31.6 M
parameters (Wu et al. Table 2; ``tests/test_encoders.py`` checks the counts).

Choices the paper leaves open (docs/fidelity.md, "Beyond the thesis"): attention is scaled by
``head_dim ** -0.5`` (the public code scales by the full width ``d ** -0.5``); GELU, not the code's
"QuickGELU" approximation; no dropout or stochastic depth (the other encoders have none either).
``unit_frames`` is ``None``: like the convolutional encoders a clip is one pass (the [CLS] token
attends to every frame), and the HEAR module feeds whole clips and 950 ms timestamp windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from abt.encoders.base import ENCODERS, Encoder
from abt.encoders.vit import Block

#: (depths, dims, heads) per registered configuration (Wu et al. 2021, Table 2)
CVT_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "cvt_13": ((1, 2, 10), (64, 192, 384), (1, 3, 6)),
    "cvt_21": ((1, 4, 16), (64, 192, 384), (1, 3, 6)),
}
EMBED_KERNELS = (7, 3, 3)
EMBED_STRIDES = (4, 2, 2)
EMBED_PADDINGS = (2, 1, 1)


class ConvEmbed(nn.Module):
    """Convolutional token embedding: a strided overlapping conv, then LayerNorm per token."""

    def __init__(self, c_in: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c_in, dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x)  # (B, d, H, W)
        return self.norm(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvProjection(nn.Module):
    """Depthwise 3x3 conv (no bias) + BatchNorm on the token grid, flattened to tokens."""

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(grid)).flatten(2).transpose(1, 2)  # (B, N', d)


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional projections (q stride 1, k and v ``kv_stride``)."""

    def __init__(self, dim: int, num_heads: int, kv_stride: int = 2) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.conv_q = ConvProjection(dim, 1)
        self.conv_k = ConvProjection(dim, kv_stride)
        self.conv_v = ConvProjection(dim, kv_stride)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], n_cls: int) -> torch.Tensor:
        b, n, d = x.shape
        cls, tokens = x[:, :n_cls], x[:, n_cls:]
        g = tokens.transpose(1, 2).reshape(b, d, grid[0], grid[1])
        heads = self.num_heads

        def project(conv: ConvProjection, lin: nn.Linear) -> torch.Tensor:
            t = lin(torch.cat([cls, conv(g)], dim=1))
            return t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)

        q = project(self.conv_q, self.proj_q)
        k = project(self.conv_k, self.proj_k)
        v = project(self.conv_v, self.proj_v)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim^-0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CvTStage(nn.Module):
    """Token embedding + ``depth`` blocks; ``cls=True`` prepends a learnable [CLS] token."""

    def __init__(self, c_in: int, dim: int, depth: int, heads: int, stage: int, cls: bool) -> None:
        super().__init__()
        self.embed = ConvEmbed(
            c_in, dim, EMBED_KERNELS[stage], EMBED_STRIDES[stage], EMBED_PADDINGS[stage]
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls else None
        self.blocks = nn.ModuleList(
            Block(dim, heads, attention=ConvAttention, eps=1e-5) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.embed(x)  # (B, d, H, W)
        b, d, h, w = z.shape
        tokens = z.flatten(2).transpose(1, 2)  # (B, H*W, d)
        n_cls = 0
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
            n_cls = 1
        for block in self.blocks:
            tokens = block(tokens, (h, w), n_cls)
        cls = tokens[:, 0] if n_cls else None
        return tokens[:, n_cls:].transpose(1, 2).reshape(b, d, h, w), cls


class CvT(Encoder):
    """CvT on ``(B, in_chans, n_mels, T)``: three convolutional-Transformer stages, the final
    LayerNorm's [CLS] token out. ``mask_ratio`` is accepted and ignored (no token masking: the
    convolutional projections need the whole grid; the trainer refuses masking for encoders
    with ``unit_frames=None``)."""

    unit_frames = None

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        heads: Sequence[int],
        n_mels: int = 64,
        in_chans: int = 1,
    ) -> None:
        super().__init__()
        if not len(depths) == len(dims) == len(heads) == len(EMBED_KERNELS):
            raise ValueError(f"CvT needs {len(EMBED_KERNELS)} stages of depths, dims and heads")
        self.n_mels = int(n_mels)
        self.in_chans = int(in_chans)
        self.depths, self.dims, self.heads = tuple(depths), tuple(dims), tuple(heads)
        last = len(dims) - 1
        c_in = self.in_chans
        stages = []
        for i, (depth, dim, h) in enumerate(zip(depths, dims, heads, strict=True)):
            stages.append(CvTStage(c_in, dim, depth, h, i, cls=i == last))
            c_in = dim
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.embed_dim = int(dims[-1])
        self._init_weights()

    #: stride of the last stage's token grid in frequency and in time (4 * 2 * 2)
    token_stride = EMBED_STRIDES[0] * EMBED_STRIDES[1] * EMBED_STRIDES[2]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for stage in self.stages:
            if stage.cls_token is not None:
                nn.init.trunc_normal_(stage.cls_token, std=0.02)

    def stage_info(self) -> dict[str, list[int]]:
        """Stage layout (Wu et al. Table 2 columns)."""
        return {"depths": list(self.depths), "dims": list(self.dims), "heads": list(self.heads),
                "kernels": list(EMBED_KERNELS), "strides": list(EMBED_STRIDES),
                "paddings": list(EMBED_PADDINGS)}  # fmt: skip

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected input of shape (B, {self.in_chans}, n_mels, T), got {tuple(x.shape)}"
            )
        cls = None
        for stage in self.stages:
            x, cls = stage(x)
        assert cls is not None
        return self.norm(cls)


def _register_cvts() -> None:
    for name, (depths, dims, heads) in CVT_CONFIGS.items():
        ENCODERS.add(name, partial(CvT, depths=depths, dims=dims, heads=heads))


_register_cvts()
