"""Which front-end settings fit together (no third-party imports: the configuration checks use
it at parse time, :class:`abt.data.mel.MelConfig` when it is built, also inside the HEAR kit's
own environment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def mel_problems(mels: Mapping[str, Any]) -> list[str]:
    """What is wrong with a ``mels`` section (empty when nothing): ``0 <= f_min < f_max <=
    sample_rate / 2`` (a band above Nyquist or of width 0 has no energy: the store would hold a
    constant), ``win_length <= n_fft`` (the window must fit the FFT), ``hop_length > 0``."""
    sr = float(mels.get("sample_rate", 16000))
    f_min, f_max = float(mels.get("f_min", 0.0)), float(mels.get("f_max", sr / 2))
    problems = []
    if not 0 <= f_min < f_max:
        problems.append(f"f_min ({f_min:g}) must be below f_max ({f_max:g})")
    if f_max > sr / 2:
        problems.append(f"f_max ({f_max:g}) must be at most half the sample rate ({sr / 2:g} Hz)")
    win, n_fft = mels.get("win_length"), mels.get("n_fft")
    if win is not None and n_fft is not None and int(win) > int(n_fft):
        problems.append(f"win_length ({win}) must be at most n_fft ({n_fft})")
    if int(mels.get("hop_length", 1)) <= 0:
        problems.append(f"hop_length ({mels.get('hop_length')}) must be positive")
    return problems
