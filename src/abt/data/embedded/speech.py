"""Formant speech from eSpeak NG (the ``espeakng-loader`` wheel), driven through ctypes.

eSpeak NG keeps synthesis state in C statics (pitch flutter phase, noise generators ...) that
survive ``espeak_Terminate``/``espeak_Initialize``: the same text twice in one process gives
different samples. To make every utterance a pure function of its parameters, each call loads a
*private copy* of the shared library (dlopen of a copied file gives fresh statics), initialises it,
synthesises, and unloads it (dlclose). That costs ~4 ms per utterance and makes clips independent
of the order in which they are made. ``espeak_Initialize`` also seeds eSpeak's noise generator
(breath and whisper noise) from the clock, so every call re-seeds it (``espeak_ng_SetRandSeed``)
from a hash of its arguments. The library is still process-global while loaded: one synthesis at
a time per process (parallelise with processes, not threads).
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import importlib.metadata
import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from abt.data.embedded.audio import int_seed, to_16k

# English voice bases bundled with eSpeak NG, and the voice variants (``voices/!v``) we use.
ENGLISH_BASES = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbcwmd",
    "en-gb-x-gbclan",
    "en-us-nyc",
)
# Whisper variants have no voicing (no pitch): they are kept out of the prosody task.
UNVOICED_VARIANTS = frozenset({"whisper", "whisperf"})
# Variants that are effects rather than speakers (robotic/ring-modulated): left out everywhere.
EFFECT_VARIANTS = frozenset({"Demonic", "UniRobot", "anikaRobot"})

_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE, _ESPEAK_WORDGAP = 1, 2, 3, 4, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Voice:
    """One eSpeak "speaker": a language base plus a voice variant (``en-us+m3``)."""

    base: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.base}+{self.variant}"

    @property
    def source_id(self) -> str:
        return f"voice:{self.name}"

    @property
    def voiced(self) -> bool:
        return self.variant not in UNVOICED_VARIANTS


def _package_dir() -> str:
    import espeakng_loader

    return os.path.dirname(espeakng_loader.get_library_path())


def variant_names() -> list[str]:
    import espeakng_loader

    vdir = os.path.join(espeakng_loader.get_data_path(), "voices", "!v")
    names = sorted(n for n in os.listdir(vdir) if not n.startswith(("_", ".")))
    return [n for n in names if n not in EFFECT_VARIANTS and " " not in n]


def all_voices() -> list[Voice]:
    """Every English base x variant (several hundred distinct "speakers"), in a fixed order."""
    return [Voice(b, v) for b in ENGLISH_BASES for v in variant_names()]


def espeak_version() -> str:
    try:
        return importlib.metadata.version("espeakng-loader")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _private_copy(lib: str) -> str:
    """A copy of the library under a content-addressed name in the temp dir (made once, shared by
    processes and builds): loading it never aliases a copy someone else has already loaded."""
    with open(lib, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()[:16]
    d = os.path.join(tempfile.gettempdir(), f"abt-espeak-{os.getuid()}")
    path = os.path.join(d, f"libespeak-ng-{digest}.so")
    if not os.path.isfile(path) or os.path.getsize(path) != len(data):
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".so.part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: concurrent builders never see a partial file
    return path


class _Engine:
    """Loads a private copy of libespeak-ng for each utterance (see module docstring)."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        self._lib_path = _private_copy(espeakng_loader.get_library_path())
        self._data = espeakng_loader.get_data_path().encode()
        self._chunks: list[np.ndarray] = []
        self._cb = _CALLBACK(self._collect)
        self._libc = ctypes.CDLL(None)
        self.sample_rate = 22050

    def _collect(self, wav, n, _events) -> int:  # noqa: ANN001 (ctypes callback)
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(
        self,
        text: str,
        voice: str,
        rate: int,
        pitch: int,
        prange: int,
        volume: int,
        wordgap: int,
        rand_seed: int,
    ) -> np.ndarray:
        with self._lock:
            lib = ctypes.CDLL(self._lib_path)
            try:
                lib.espeak_Initialize.argtypes = [
                    ctypes.c_int,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                ]
                lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
                lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                lib.espeak_Synth.argtypes = [
                    ctypes.c_void_p,
                    ctypes.c_size_t,
                    ctypes.c_uint,
                    ctypes.c_int,
                    ctypes.c_uint,
                    ctypes.c_uint,
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                ]
                sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data, 0)
                if sr <= 0:
                    raise RuntimeError(f"espeak_Initialize failed ({sr})")
                self.sample_rate = int(sr)
                lib.espeak_SetSynthCallback(self._cb)
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ValueError(f"eSpeak NG has no voice {voice!r}")
                lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
                lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
                lib.espeak_SetParameter(_ESPEAK_RANGE, int(prange), 0)
                lib.espeak_SetParameter(_ESPEAK_VOLUME, int(volume), 0)
                lib.espeak_SetParameter(_ESPEAK_WORDGAP, int(wordgap), 0)
                # espeak_Initialize seeds eSpeak's noise generator (breath, whisper) from the clock
                lib.espeak_ng_SetRandSeed(ctypes.c_long(rand_seed))
                self._libc.srand(1)
                self._chunks.clear()
                buf = text.encode("utf-8") + b"\0"
                err = lib.espeak_Synth(
                    buf, len(buf), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
                )
                if err != 0:
                    raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r}")
                lib.espeak_Synchronize()
                lib.espeak_Terminate()
                out = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
                self._chunks.clear()
                return out
            finally:
                handle = lib._handle
                del lib
                _ctypes.dlclose(handle)


_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def speak(
    text: str,
    voice: Voice | str,
    *,
    rate: int = 170,
    pitch: int = 50,
    prange: int = 50,
    volume: int = 100,
    wordgap: int = 0,
) -> np.ndarray:
    """Synthesise ``text``; returns float32 mono at 16 kHz (a pure function of its arguments).

    ``rate`` words/min (80-450), ``pitch`` and ``prange`` 0-100, ``volume`` 0-200, ``wordgap`` in
    units of 10 ms.
    """
    name = voice.name if isinstance(voice, Voice) else voice
    eng = _engine()
    rand_seed = int_seed(text, name, rate, pitch, prange, volume, wordgap) % (2**31 - 1) + 1
    pcm = eng.synth(text, name, rate, pitch, prange, volume, wordgap, rand_seed)
    return to_16k(pcm.astype(np.float32) / 32768.0, eng.sample_rate)
