"""HEAR 2021 API for abt encoder checkpoints (thesis §3.4.2): ``load_model``,
``get_scene_embeddings``, ``get_timestamp_embeddings``.

Run by the official kit as ``python -m heareval.embeddings.runner abt.hear --model model.ckpt``
(see :mod:`abt.evaluation.heareval_env`). Only torch and numpy are imported, so the module works in
the separate evaluation venv.

Protocol (the authors' wrapper, jonahanton/SSL_audio, with its bugs fixed; docs/fidelity.md rows
19-20):

* **Front-end = pre-training front-end.** The log-mel parameters are the checkpoint's ``mels``
  (64 ms window, *not* the authors' HEAR ``win_length=400``).
* **Normalisation = the checkpoint's dataset statistics** ``(x - mean) / std`` — never batch
  statistics, so a clip's embedding does not depend on the other clips of the batch.
* **Scene embeddings.** Convolutional encoders (``unit_frames is None``) take the whole clip in
  one pass (their temporal max+mean pooling covers every frame). ViTs: the clip's log-mel is split
  into ``unit_frames`` (96) frame units; the last unit is padded with the *normalised log-mel of
  silence* ``(log(eps) - mean) / std`` only if it is partial (a clip of exactly k·96 frames gets k
  units — no all-zero extra unit); the embedding is the plain mean of the unit embeddings ([CLS]).
* **Timestamp embeddings.** 950 ms frames at a 50 ms hop (thesis §3.4.2; hear-baseline framing):
  the audio is zero-padded by half a frame on both sides, frame k is centred at ``k·50`` ms and
  there are ``1 + n_samples // hop`` frames (2.0 s -> 41 frames, 0..2000 ms; 1.07 s -> 22 frames,
  0..1050 ms; the last timestamp never passes the end of the audio). Each frame -> log-mel
  (96 frames) -> normalise -> encoder, in chunks of ``chunk_size`` frames.
* **Short clips.** A waveform shorter than one STFT window (``n_fft`` samples, 64 ms) is
  zero-padded (silence) at the end to that length before the front-end (the reflect-padded STFT
  needs more than ``n_fft/2`` samples). A conv encoder's input is further zero-padded to the
  fewest frames the encoder accepts (AudioNTT: 4 frames; the ResNets accept 1), found at load
  time. A ViT clip shorter than one unit is one partial unit (padded with silence as above).
* Silence is finite everywhere: ``log(0 + eps) = -15.9``.

:mod:`abt.checkpoint` owns the checkpoint format (re-exported here: :func:`read_checkpoint`,
:func:`save_random_init`, ...); :func:`load_model` takes a ``model.ckpt`` or a folder written by
``abt export`` (bit-identical embeddings). Embeddings are computed in true float32 on every
device (:func:`abt.hardware.exact_float32`). Files on disk: :mod:`abt.embed` (``abt embed``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from abt.checkpoint import (  # re-exported: the HEAR module's checkpoint API
    ENCODER_CKPT_FORMAT,
    CheckpointError,
    build_checkpoint_encoder,
    read_checkpoint,
    save_random_init,
)
from abt.data.mel import LogMelFrontEnd, MelConfig
from abt.devices import pick_device
from abt.hardware import exact_float32

FRAME_MS = 950.0
HOP_MS = 50.0
DEFAULT_CHUNK = 256
__all__ = [
    "ENCODER_CKPT_FORMAT",
    "CheckpointError",
    "HearModel",
    "build_checkpoint_encoder",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "load_model",
    "read_checkpoint",
    "save_random_init",
]


# ------------------------------------------------------------------------------------ model


#: what PyTorch's convolution and pooling layers say when an input is shorter than the layer needs
_TOO_SHORT = re.compile(
    r"output size is too small|kernel size can't be greater than actual input size|"
    r"padded input size per channel|pad should be at most half",
    re.IGNORECASE,
)


def _min_conv_frames(encoder: nn.Module, n_mels: int) -> int:
    """Fewest frames a conv encoder accepts, probed once with tiny inputs on the encoder's own
    device and dtype. Only "input too short" errors mean "try longer"; anything else (a device
    or dtype mismatch, a bug) propagates unchanged."""
    p = next(encoder.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    last = ""
    with torch.no_grad():
        for t in (1, 2, 4, 8, 16, 32, 64, 128):
            try:
                encoder(torch.zeros(1, 1, n_mels, t, device=device, dtype=dtype))
                return t
            except RuntimeError as e:
                if not _TOO_SHORT.search(str(e)):
                    raise
                last = str(e).splitlines()[0]
    raise CheckpointError(
        f"the encoder rejects every input length up to 128 frames as too short ({last})"
    )


class HearModel(nn.Module):
    """The object ``load_model`` returns: encoder + front-end as submodules (``.to()`` moves both).

    Attributes required by the HEAR API: ``sample_rate``, ``scene_embedding_size``,
    ``timestamp_embedding_size`` (both the encoder's ``embed_dim``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        mels: MelConfig,
        norm_mean: float,
        norm_std: float,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.encoder = encoder.eval()
        self.frontend = LogMelFrontEnd(mels)
        self.mels = mels
        self.sample_rate = int(mels.sample_rate)
        self.norm_mean = float(norm_mean)
        self.norm_std = float(norm_std)
        self.chunk_size = int(chunk_size)
        self.info = dict(info or {})
        dim = int(encoder.embed_dim)
        self.scene_embedding_size = dim
        self.timestamp_embedding_size = dim
        self.unit_frames: int | None = getattr(encoder, "unit_frames", None)
        self.frame_samples = int(round(FRAME_MS / 1000.0 * self.sample_rate))
        self.hop_samples = int(round(HOP_MS / 1000.0 * self.sample_rate))
        # shortest waveform fed to the front-end: one STFT window (>= the reflect-pad minimum)
        self.min_samples = max(mels.n_fft, self.frontend.min_samples)
        self.min_frames = (
            _min_conv_frames(self.encoder, mels.n_mels) if self.unit_frames is None else 1
        )
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.frontend.fb.device

    @property
    def silence(self) -> float:
        """The normalised log-mel value of digital silence (the padding value of ViT units)."""
        return (self.mels.silence_value - self.norm_mean) / self.norm_std

    def _prepare(self, audio: torch.Tensor) -> torch.Tensor:
        if not isinstance(audio, torch.Tensor):
            audio = torch.as_tensor(audio)
        if audio.dim() != 2:
            raise ValueError(
                f"audio must be a (n_sounds, n_samples) tensor, got shape {tuple(audio.shape)}"
            )
        audio = audio.to(device=self.device, dtype=torch.float32)
        if not torch.isfinite(audio).all():
            raise ValueError("audio contains NaN or Inf samples")
        return audio

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` waveform -> normalised log-mel ``(B, 1, n_mels, frames)``."""
        if wave.shape[-1] < self.min_samples:
            wave = nn.functional.pad(wave, (0, self.min_samples - wave.shape[-1]))
        x = self.frontend(wave)  # (B, frames, n_mels)
        x = (x - self.norm_mean) / self.norm_std
        return x.transpose(1, 2).unsqueeze(1)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """One encoder pass, the input in the encoder's dtype, float32 embeddings out; on CUDA in
        true float32 (no TF32, which cuDNN uses for convolutions by default), so that GPU
        embeddings equal CPU ones to float32 precision, and without cuDNN autotuning (a probe
        during training brings whole clips of many lengths: one tuning pass per new shape)."""
        p = next(self.encoder.parameters(), None)
        if p is not None and p.is_floating_point() and x.dtype != p.dtype:
            x = x.to(p.dtype)
        if x.device.type != "cuda":
            return self.encoder(x).float()
        with exact_float32():
            return self.encoder(x).float()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder over ``x`` ``(M, 1, n_mels, T)`` in chunks of ``chunk_size``."""
        return torch.cat([self._run(c) for c in torch.split(x, self.chunk_size)], dim=0)

    def units(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Split ``(B, 1, F, T)`` into ``unit_frames`` units -> ``(B*U, 1, F, unit)``, ``U``.

        The last unit is padded with :attr:`silence` only when it is partial.
        """
        unit = int(self.unit_frames)  # type: ignore[arg-type]
        b, _, f, t = x.shape
        n_units = max(1, math.ceil(t / unit))
        pad = n_units * unit - t
        if pad:
            x = nn.functional.pad(x, (0, pad), value=self.silence)
        x = x.reshape(b, 1, f, n_units, unit).permute(0, 3, 1, 2, 4).reshape(-1, 1, f, unit)
        return x, n_units

    @torch.no_grad()
    def scene(self, audio: torch.Tensor) -> torch.Tensor:
        audio = self._prepare(audio)
        if audio.shape[0] == 0:
            return torch.zeros(0, self.scene_embedding_size, device=self.device)
        return self.scene_from_logmel(self.logmel(audio))

    @torch.no_grad()
    def scene_from_logmel(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embeddings of normalised log-mels ``(B, 1, n_mels, T)``: conv encoders see the
        whole clip, ViTs average ``unit_frames`` units (the last padded only if partial)."""
        return self.scene_forward(x)

    def scene_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`scene_from_logmel` with gradients (fine-tuning: :mod:`abt.finetune`)."""
        n = x.shape[0]
        if self.unit_frames is None:
            if x.shape[-1] < self.min_frames:
                x = nn.functional.pad(x, (0, self.min_frames - x.shape[-1]), value=self.silence)
            # bound memory on long clips: clips per pass so that clips * frames <= chunk * 96
            per = max(1, (self.chunk_size * 96) // x.shape[-1])
            return torch.cat([self._run(c) for c in torch.split(x, per)], dim=0)
        u, n_units = self.units(x)
        return self._encode(u).reshape(n, n_units, -1).mean(dim=1)

    def n_timestamps(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_samples

    @torch.no_grad()
    def timestamps(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = self._prepare(audio)
        n, n_samples = audio.shape
        n_frames = self.n_timestamps(n_samples)
        half = self.frame_samples // 2
        padded = nn.functional.pad(audio, (half, self.frame_samples - half))
        frames = padded.unfold(-1, self.frame_samples, self.hop_samples)[:, :n_frames]
        frames = frames.reshape(n * n_frames, self.frame_samples)
        embs = []
        for c in torch.split(frames, self.chunk_size):
            x = self.logmel(c)
            if self.unit_frames is not None:
                u, n_units = self.units(x)  # 96 frames -> exactly one unit for a 96-frame ViT
                embs.append(self._run(u).reshape(c.shape[0], n_units, -1).mean(dim=1))
            else:
                embs.append(self._run(x))
        emb = (
            torch.cat(embs, dim=0).reshape(n, n_frames, -1)
            if n
            else torch.zeros(0, n_frames, self.timestamp_embedding_size, device=self.device)
        )
        ts = torch.arange(n_frames, dtype=torch.float64) * (self.hop_samples / self.sample_rate)
        ts = (ts * 1000.0).to(torch.float32).to(self.device)
        return emb, ts.unsqueeze(0).expand(n, -1).contiguous()


# ------------------------------------------------------------------------------- HEAR API


def load_model(model_file_path: str = "", **kwargs: Any) -> HearModel:
    """HEAR API: load an abt encoder as a :class:`HearModel`: a checkpoint (``model.ckpt``) or a
    folder written by ``abt export`` (the same weights: bit-identical embeddings).

    ``kwargs`` (``--model-options`` of the kit): ``chunk_size`` (frames/units per encoder pass,
    default 256) and ``device`` (default: the CPU, as the HEAR API expects; ``"auto"`` picks
    CUDA, then Apple MPS, then the CPU: :func:`abt.devices.pick_device`). The path is required:
    there is no default model.
    """
    if not model_file_path:
        raise ValueError(
            "abt.hear.load_model needs the path of an abt encoder checkpoint (model.ckpt, "
            "written by `abt pretrain` or abt.hear.save_random_init) or of a folder written by "
            "`abt export`; pass --model PATH"
        )
    known = ["chunk_size", "device"]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"abt.hear.load_model: unknown option(s) {unknown}; known: {known}")
    ck = read_checkpoint(model_file_path)
    encoder = build_checkpoint_encoder(ck, str(model_file_path))
    mels = MelConfig.from_dict(ck["mels"])
    info = {
        "path": str(model_file_path),
        "encoder": dict(ck["encoder"]),
        "epoch": ck.get("epoch"),
        "step": ck.get("step"),
        "norm_mode": ck["norm"].get("mode"),
    }
    model = HearModel(
        encoder,
        mels,
        float(ck["norm"]["mean"]),
        float(ck["norm"]["std"]),
        chunk_size=int(kwargs.get("chunk_size", DEFAULT_CHUNK)),
        info=info,
    )
    device = kwargs.get("device")
    return model if device is None else model.to(pick_device(device))


def _check_model(model: Any) -> HearModel:
    if not isinstance(model, HearModel):
        raise TypeError(f"model must come from abt.hear.load_model, got {type(model).__name__}")
    if model.training:
        model.eval()
    return model


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """HEAR API: ``audio (n_sounds, n_samples)`` at ``model.sample_rate`` -> ``(n_sounds, D)``."""
    return _check_model(model).scene(audio)


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAR API: -> embeddings ``(n_sounds, n_frames, D)``, timestamps ``(n_sounds, n_frames)`` ms.

    950 ms frames centred every 50 ms from 0 ms; ``n_frames = 1 + n_samples // 800`` at 16 kHz.
    """
    return _check_model(model).timestamps(audio)
