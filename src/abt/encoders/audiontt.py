"""AudioNTT encoder (thesis §3.3.1, Fig. 3.5; the BYOL-A v2 ``AudioNTT2022`` design).

Two conv blocks ``Conv3x3(64, bias) -> BN -> ReLU -> MaxPool2x2`` extract local features; the
``(B, C, F, T)`` map is reshaped to ``(B, T, F*C)`` with feature index ``f*C + c``; a small MLP
``Linear(F*C, 2048) -> ReLU -> Dropout(0.3) -> Linear(2048, 2048) -> ReLU`` extracts global
features; local and global features are concatenated and pooled over time with max + mean.
For 64 mel bins: 6,333,376 parameters, 3072-d output. Default PyTorch initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from abt.encoders.base import ENCODERS, Encoder, temporal_max_mean_pool


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=True),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2, stride=2),
    )


@ENCODERS.register("audiontt")
class AudioNTT(Encoder):
    """AudioNTT. Any number of frames (>= 4); ``mask_ratio`` is accepted and ignored."""

    unit_frames = None

    def __init__(
        self,
        n_mels: int = 64,
        channels: int = 64,
        hidden_dim: int = 2048,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if n_mels % 4:
            raise ValueError(f"AudioNTT needs n_mels divisible by 4, got {n_mels}")
        self.n_mels = n_mels
        self.features = nn.Sequential(_conv_block(1, channels), _conv_block(channels, channels))
        conv_dim = channels * (n_mels // 4)
        self.fc = nn.Sequential(
            nn.Linear(conv_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.embed_dim = conv_dim + hidden_dim

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.0) -> torch.Tensor:
        self._check_input(x)
        if x.shape[2] != self.n_mels:
            raise ValueError(f"AudioNTT built for {self.n_mels} mel bins, got {x.shape[2]}")
        z = self.features(x)  # (B, C, F', T')
        z = z.permute(0, 3, 2, 1).flatten(2)  # (B, T', F'*C), index f*C + c
        z = torch.cat([z, self.fc(z)], dim=-1)  # (B, T', conv_dim + hidden_dim)
        return temporal_max_mean_pool(z)
