"""ResNet-18 with a ResNet-C stem, and the ReGP NRF variant (thesis §3.3.1).

* 1 input channel, no fully-connected head.
* ResNet-C stem (He et al. 2018): three bias-free 3x3 convs (32, 32, 64 channels; strides
  ``s0, 1, 1``), each followed by BN + ReLU, then ``MaxPool2d(3, 2, 1)``.
* BasicBlocks ``[2, 2, 2, 2]`` with 64/128/256/512 channels; downsampling shortcut is a bias-free
  1x1 conv + BN.
* Strides ``[stem, layer1, layer2, layer3, layer4]``: ResNet-18 ``[2, 1, 2, 2, 2]`` followed by
  global average pooling (512-d); ReGP NRF (Niizumi et al. 2022a) ``[1, 1, 2, 2, (1, 2)]`` (a
  ``(freq, time)`` pair) with the global pool Removed and replaced by the AudioNTT reshape
  ``(B, C, F, T) -> (B, T, F*C)`` and temporal max + mean pooling (4096-d for 64 mel bins).
* Init: Kaiming-normal (fan_out, ReLU) convs; BN weight 1, bias 0.
Both variants have 11,195,168 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from abt.encoders.base import ENCODERS, Encoder, temporal_max_mean_pool

Stride = int | tuple[int, int]


def _pair(s: Stride) -> tuple[int, int]:
    return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _conv3x3(c_in: int, c_out: int, stride: Stride = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: Stride = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if _pair(stride) != (1, 1) or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(Encoder):
    """ResNet-C with BasicBlocks; ``regp=True`` replaces global average pooling by ReGP pooling.

    Any number of frames; ``mask_ratio`` is accepted and ignored.
    """

    unit_frames = None

    def __init__(
        self,
        layers: Sequence[int] = (2, 2, 2, 2),
        strides: Sequence[Stride] = (2, 1, 2, 2, 2),
        regp: bool = False,
        n_mels: int = 64,
        stem_channels: tuple[int, int, int] = (32, 32, 64),
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        if len(strides) != 5 or len(layers) != 4 or len(widths) != 4:
            raise ValueError("ResNet needs 5 strides (stem + 4 stages), 4 layer counts, 4 widths")
        s0 = strides[0]
        c1, c2, c3 = stem_channels
        self.stem = nn.Sequential(
            _conv3x3(1, c1, s0), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            _conv3x3(c1, c2), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            _conv3x3(c2, c3), nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # fmt: skip
        stages = []
        c_in = c3
        for n_blocks, width, stride in zip(layers, widths, strides[1:], strict=True):
            blocks = [BasicBlock(c_in, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.regp = regp
        self.n_mels = n_mels
        self.strides = tuple(strides)

        # frequency size of the final map (conv3x3 pad 1, maxpool 3/2/1)
        f = _conv_out(n_mels, 3, _pair(s0)[0], 1)
        f = _conv_out(f, 3, 2, 1)
        for stride in strides[1:]:
            f = _conv_out(f, 3, _pair(stride)[0], 1)
        self.out_freq = f
        self.embed_dim = c_in * f if regp else c_in
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> torch.Tensor:
        self._check_input(x)
        if self.regp and x.shape[2] != self.n_mels:
            raise ValueError(f"ReGP ResNet built for {self.n_mels} mel bins, got {x.shape[2]}")
        z = self.stem(x)
        z = self.layer4(self.layer3(self.layer2(self.layer1(z))))  # (B, C, F', T')
        if self.regp:
            z = z.permute(0, 3, 2, 1).flatten(2)  # (B, T', F'*C), index f*C + c
            return temporal_max_mean_pool(z)
        return z.mean(dim=(2, 3))


@ENCODERS.register("resnet18")
def resnet18(n_mels: int = 64) -> ResNet:
    """ResNet-18 (ResNet-C stem), strides [2, 1, 2, 2, 2], global average pool: 512-d."""
    return ResNet((2, 2, 2, 2), (2, 1, 2, 2, 2), regp=False, n_mels=n_mels)


@ENCODERS.register("resnet18_regp_nrf")
def resnet18_regp_nrf(n_mels: int = 64) -> ResNet:
    """ResNet-18 ReGP NRF, strides [1, 1, 2, 2, (1, 2)], temporal max+mean pool: 4096-d."""
    return ResNet((2, 2, 2, 2), (1, 1, 2, 2, (1, 2)), regp=True, n_mels=n_mels)
