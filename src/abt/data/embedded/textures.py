"""Procedural environmental sounds (numpy/scipy): rain, wind, engines, sirens, clocks, beeps ...

A *recording* is ``(kind, index)``: its parameters (the "physical source": drop size, engine
speed, siren type, room hum frequency ...) are drawn from a generator named by
``(seed, kind, index)``; each clip is a new realisation drawn from the clip's own generator. The
source id of a recording is ``tex:<kind>:<index>``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import scipy.signal as sps

from abt.data.embedded.audio import SR, butter, rng_for
from abt.registry import Registry

TextureFn = Callable[[np.random.Generator, np.random.Generator, int], np.ndarray]
TEXTURES: Registry[TextureFn] = Registry("texture")


def texture_source(kind: str, index: int) -> str:
    return f"tex:{kind}:{index}"


def texture(kind: str, index: int, seed: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of recording ``(kind, index)``, a fresh realisation drawn from ``rng``."""
    params = rng_for(seed, "texture-params", kind, index)
    y = TEXTURES.get(kind)(params, rng, n)
    return np.nan_to_num(y.astype(np.float32))


RECORDING_S = 12.0  # length of a cached background "recording"


@lru_cache(maxsize=96)
def _recording(kind: str, index: int, seed: int) -> np.ndarray:
    y = texture(
        kind, index, seed, int(RECORDING_S * SR), rng_for(seed, "texture-recording", kind, index)
    )
    y.setflags(write=False)
    return y


def texture_crop(kind: str, index: int, seed: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample crop of one fixed 12 s realisation of recording ``(kind, index)``
    (cheap: the realisation is cached). Used for backgrounds, which recur across many clips."""
    y = _recording(kind, index, seed)
    if n >= len(y):
        return np.tile(y, int(np.ceil(n / len(y))))[:n].copy()
    a = int(rng.integers(0, len(y) - n + 1))
    return y[a : a + n].copy()


# ------------------------------------------------------------------------------------ helpers


def _t(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SR


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown, -1 blue)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f[0] = f[1]
    spec *= f ** (-exponent / 2.0)
    y = np.fft.irfft(spec, n)
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def _smooth_env(rng: np.random.Generator, n: int, rate_hz: float, depth: float) -> np.ndarray:
    """A slowly varying positive envelope (random control points, cubic-ish interpolation)."""
    k = max(2, int(n / SR * rate_hz) + 2)
    pts = 1.0 + depth * rng.uniform(-1, 1, k)
    x = np.linspace(0, k - 1, n)
    env = np.interp(x, np.arange(k), pts)
    env = sps.lfilter([0.002], [1, -0.998], env) / 1.0 if n > 10 else env
    env = env / (np.mean(env) + 1e-9)
    return np.clip(env, 0.05, None)


def _events(rng: np.random.Generator, n: int, rate_hz: float, jitter: float = 1.0) -> np.ndarray:
    """Onset sample indices of a (jittered) Poisson/periodic process; at least one onset falls
    in the first 40 % of the clip (no silent realisations of sparse sounds)."""
    if rate_hz <= 0:
        return np.zeros(0, int)
    if jitter >= 1.0:
        k = rng.poisson(rate_hz * n / SR)
        on = rng.integers(0, n, size=k)
        if k == 0 or on.min() > 0.4 * n:
            on = np.append(on, rng.integers(0, max(1, int(0.4 * n))))
        return np.sort(on)
    period = SR / rate_hz
    start = rng.uniform(0, min(period, 0.4 * n))
    idx = np.arange(start, n, period)
    idx = idx + rng.normal(0, jitter * period * 0.25, size=len(idx))
    return np.clip(idx, 0, n - 1).astype(int)


def _impulse_train(n: int, onsets: np.ndarray, amps: np.ndarray) -> np.ndarray:
    x = np.zeros(n, np.float64)
    np.add.at(x, onsets, amps)
    return x


def _resonator(f: float, decay_s: float, length_s: float | None = None) -> np.ndarray:
    length_s = length_s or min(1.0, decay_s * 6)
    t = _t(max(2, int(length_s * SR)))
    return np.sin(2 * np.pi * f * t) * np.exp(-t / decay_s)


def _noise_burst(rng: np.random.Generator, dur_s: float, decay_s: float) -> np.ndarray:
    t = _t(max(2, int(dur_s * SR)))
    return rng.standard_normal(len(t)) * np.exp(-t / decay_s)


def _conv(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return sps.fftconvolve(x, k)[: len(x)]


def _tone(freq: np.ndarray | float, n: int, harmonics: tuple[float, ...] = (1.0,)) -> np.ndarray:
    f = np.broadcast_to(np.asarray(freq, np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / SR
    return sum(a * np.sin((i + 1) * phase) for i, a in enumerate(harmonics))


def _gate(
    n: int, period_s: float, duty: float, offset_s: float = 0.0, ramp_ms: float = 4
) -> np.ndarray:
    t = _t(n) + offset_s
    g = ((t % period_s) < duty * period_s).astype(np.float64)
    k = max(1, int(ramp_ms * SR / 1000))
    return np.convolve(g, np.ones(k) / k, mode="same")


# --------------------------------------------------------------------------------- generators


@TEXTURES.register("rain")
def rain(p, r, n):
    rate = p.uniform(80, 900)
    f_lo, f_hi = sorted(p.uniform(1500, 7000, 2))
    decay = p.uniform(0.002, 0.012)
    hiss_level = p.uniform(0.05, 0.6)
    y = np.zeros(n)
    for f in np.linspace(f_lo, f_hi, 4):
        on = _events(r, n, rate / 4)
        y += _conv(
            _impulse_train(n, on, r.exponential(1.0, len(on))),
            _resonator(f * r.uniform(0.8, 1.2), decay),
        )
    hiss = butter(coloured_noise(r, n, 0.5), "bandpass", (1000, 7500))
    return y / (np.std(y) + 1e-9) + hiss_level * hiss * _smooth_env(r, n, 0.5, 0.3)


@TEXTURES.register("wind")
def wind(p, r, n):
    centre = p.uniform(200, 1500)
    gust_rate = p.uniform(0.2, 1.5)
    depth = p.uniform(0.3, 0.9)
    x = coloured_noise(r, n, p.uniform(0.5, 1.5))
    lo = butter(x, "bandpass", (centre * 0.5, min(7000, centre * 2.5)))
    whistle = butter(x, "bandpass", (centre * 1.9, min(7500, centre * 2.1)), order=2) * p.uniform(
        0, 2
    )
    return (lo + whistle) * _smooth_env(r, n, gust_rate, depth)


@TEXTURES.register("engine")
def engine(p, r, n):
    f0 = p.uniform(18, 70)
    rev = p.uniform(0.0, 0.3)
    harm = tuple(p.uniform(0.1, 1.0, 8) / np.arange(1, 9) ** p.uniform(0.3, 1.2))
    f = f0 * _smooth_env(r, n, 0.3, rev)
    y = _tone(f, n, harm)
    y *= 1 + 0.5 * np.sin(2 * np.pi * np.cumsum(f / 2) / SR)  # firing irregularity
    noise = butter(coloured_noise(r, n, 1.0), "lowpass", p.uniform(300, 2500))
    return butter(y, "lowpass", p.uniform(400, 4000)) + p.uniform(0.2, 1.0) * noise


@TEXTURES.register("siren")
def siren(p, r, n):
    lo = p.uniform(450, 900)
    hi = lo * p.uniform(1.4, 2.2)
    period = p.choice([p.uniform(0.15, 0.4), p.uniform(1.5, 4.0)])  # yelp or wail
    shape = p.integers(0, 2)
    t = _t(n) + r.uniform(0, period)
    ph = (t % period) / period
    sweep = np.abs(2 * ph - 1) if shape else 0.5 - 0.5 * np.cos(2 * np.pi * ph)
    f = lo + (hi - lo) * sweep
    y = _tone(f, n, (1.0, 0.5, 0.3, 0.15))
    doppler = _smooth_env(r, n, 0.2, 0.6)
    return butter(y * doppler, "lowpass", p.uniform(2000, 7000)) + 0.05 * r.standard_normal(n)


@TEXTURES.register("clock_tick")
def clock_tick(p, r, n):
    rate = p.choice([1.0, 2.0, 2.5, 3.0, 4.0, 5.0])
    f1, f2 = p.uniform(1500, 6000, 2)
    decay = p.uniform(0.002, 0.01)
    on = _events(r, n, rate, jitter=0.02)
    amps = np.where(np.arange(len(on)) % 2 == 0, 1.0, p.uniform(0.5, 1.0))
    tick = _resonator(f1, decay, 0.08) + 0.5 * _resonator(f2, decay / 2, 0.08)
    y = _conv(_impulse_train(n, on, amps), tick)
    return y + 0.01 * r.standard_normal(n)


@TEXTURES.register("alarm_beep")
def alarm_beep(p, r, n):
    f = p.uniform(900, 4000)
    period = p.uniform(0.2, 1.2)
    duty = p.uniform(0.2, 0.6)
    chirp = p.uniform(-0.2, 0.2)
    g = _gate(n, period, duty, offset_s=r.uniform(0, period))
    harm = (1.0, 0.0, p.uniform(0, 0.5), 0.0, p.uniform(0, 0.3))
    freq = f * (1 + chirp * ((_t(n) % period) / period))
    return _tone(freq, n, harm) * g + 0.01 * r.standard_normal(n)


@TEXTURES.register("footsteps")
def footsteps(p, r, n):
    rate = p.uniform(1.3, 2.6)
    bright = p.uniform(300, 3000)
    on = _events(r, n, rate, jitter=0.1)
    y = np.zeros(n)
    for o in on:
        b = butter(
            _noise_burst(r, 0.12, p.uniform(0.01, 0.04)), "lowpass", bright * r.uniform(0.8, 1.2)
        )
        thud = _resonator(p.uniform(60, 140), 0.03, 0.15)
        s = b + 0.8 * thud[: len(b)]
        e = min(n, o + len(s))
        y[o:e] += s[: e - o] * r.uniform(0.6, 1.0)
    return y + 0.02 * butter(r.standard_normal(n), "lowpass", 1000)


@TEXTURES.register("door_knock")
def door_knock(p, r, n):
    modes = p.uniform(120, 900, 3)
    decay = p.uniform(0.015, 0.06)
    group_rate = p.uniform(0.5, 1.5)
    knock = sum(
        _resonator(m, decay * r.uniform(0.5, 1.2), 0.3) * a
        for m, a in zip(modes, (1, 0.6, 0.3), strict=True)
    )
    knock = knock + 0.3 * _noise_burst(r, 0.3, 0.004)
    onsets = []
    for g in _events(r, n, group_rate, jitter=0.3):
        k = int(r.integers(2, 6))
        gap = r.uniform(0.12, 0.25) * SR
        onsets += [int(g + i * gap) for i in range(k)]
    on = np.clip(np.array(onsets, int), 0, n - 1)
    return _conv(
        _impulse_train(n, on, r.uniform(0.6, 1.0, len(on))), knock
    ) + 0.01 * r.standard_normal(n)


@TEXTURES.register("birdsong")
def birdsong(p, r, n):
    base = p.uniform(1800, 5000)
    span = p.uniform(0.2, 1.0)
    note_dur = p.uniform(0.03, 0.15)
    rate = p.uniform(2, 10)
    y = np.zeros(n)
    for o in _events(r, n, rate):
        m = int(note_dur * SR * r.uniform(0.7, 1.3))
        t = _t(m)
        f = base * (1 + span * r.uniform(-0.5, 0.5) * np.sin(np.pi * t / t[-1] * r.uniform(0.5, 2)))
        s = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.hanning(m)
        e = min(n, o + m)
        y[o:e] += s[: e - o] * r.uniform(0.3, 1.0)
    return y + 0.02 * coloured_noise(r, n, 1.0)


@TEXTURES.register("insects")
def insects(p, r, n):
    f = p.uniform(3000, 7000) if p.random() < 0.6 else p.uniform(350, 900)
    am = p.uniform(20, 120)
    carrier = butter(r.standard_normal(n), "bandpass", (f * 0.85, min(7900, f * 1.15)))
    tone = _tone(f * _smooth_env(r, n, 1.0, 0.02), n, (1.0, 0.3))
    mod = 0.5 + 0.5 * np.sin(2 * np.pi * am * _t(n) + r.uniform(0, 6.28))
    y = (p.uniform(0.3, 1.0) * carrier / (np.std(carrier) + 1e-9) + p.uniform(0, 1) * tone) * mod
    period, duty = p.uniform(0.5, 3.0), p.uniform(0.5, 1.0)
    return y * _gate(n, period, duty, r.uniform(0, 0.5 * duty * period), ramp_ms=60)


@TEXTURES.register("water_bubbles")
def water_bubbles(p, r, n):
    rate = p.uniform(10, 120)
    f_lo, f_hi = sorted(p.uniform(300, 3000, 2))
    y = np.zeros(n)
    for o in _events(r, n, rate):
        m = int(r.uniform(0.01, 0.06) * SR)
        t = _t(m)
        f0 = r.uniform(f_lo, f_hi + 1)
        f = f0 * (1 + r.uniform(0.5, 2.0) * t / t[-1])
        s = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / (t[-1] / 3))
        e = min(n, o + m)
        y[o:e] += s[: e - o] * r.uniform(0.2, 1.0)
    flow = butter(coloured_noise(r, n, 0.8), "bandpass", (200, 4000))
    return y / (np.std(y) + 1e-9) + p.uniform(0.1, 0.8) * flow


@TEXTURES.register("crackling_fire")
def crackling_fire(p, r, n):
    rate = p.uniform(5, 60)
    on = _events(r, n, rate)
    clicks = _impulse_train(n, on, r.pareto(2.0, len(on)) + 0.2)
    y = butter(_conv(clicks, _noise_burst(r, 0.01, 0.002)), "highpass", p.uniform(500, 2500))
    roar = butter(coloured_noise(r, n, 1.5), "lowpass", p.uniform(200, 900))
    return y / (np.std(y) + 1e-9) + p.uniform(0.2, 1.5) * roar * _smooth_env(r, n, 2, 0.4)


@TEXTURES.register("applause")
def applause(p, r, n):
    rate = p.uniform(20, 200)
    y = np.zeros(n)
    on = _events(r, n, rate)
    clap = butter(
        _noise_burst(r, 0.03, 0.006), "bandpass", (p.uniform(500, 1500), p.uniform(3000, 7000))
    )
    y = _conv(_impulse_train(n, on, r.uniform(0.3, 1.0, len(on))), clap)
    return y * _smooth_env(r, n, 0.5, 0.3)


@TEXTURES.register("typing")
def typing(p, r, n):
    rate = p.uniform(4, 10)
    on = _events(r, n, rate, jitter=0.8)
    key = _resonator(p.uniform(1500, 4500), 0.004, 0.05) + 0.5 * _noise_burst(r, 0.05, 0.003)
    y = _conv(_impulse_train(n, on, r.uniform(0.4, 1.0, len(on))), key)
    return y + 0.01 * r.standard_normal(n)


@TEXTURES.register("helicopter")
def helicopter(p, r, n):
    blade = p.uniform(12, 30)
    thump = _gate(n, 1.0 / blade, 0.2, r.uniform(0, 1), ramp_ms=8)
    body = butter(coloured_noise(r, n, 1.2), "lowpass", p.uniform(300, 1200))
    whine = _tone(p.uniform(800, 3000), n) * p.uniform(0.02, 0.2)
    return body * (0.3 + thump) + whine


@TEXTURES.register("phone_ring")
def phone_ring(p, r, n):
    f1 = p.uniform(400, 1200)
    f2 = f1 * p.uniform(1.05, 1.5)
    trill = p.uniform(10, 25)
    period = p.uniform(1.0, 3.0)
    on = _gate(n, period, p.uniform(0.3, 0.6), r.uniform(0, period))
    tr = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * trill * _t(n)))
    y = (_tone(f1, n, (1, 0.3, 0.2)) + _tone(f2, n, (1, 0.3))) * (0.4 + 0.6 * tr)
    return y * on + 0.01 * r.standard_normal(n)


@TEXTURES.register("room_tone")
def room_tone(p, r, n):
    mains = p.choice([50.0, 60.0])
    hum_level = p.uniform(0.0, 0.5)
    hvac_centre = p.uniform(100, 600)
    colour = p.uniform(0.5, 2.0)
    hum = _tone(mains * (1 + r.normal(0, 0.001)), n, tuple(p.uniform(0, 1, 5) / np.arange(1, 6)))
    hvac = butter(coloured_noise(r, n, 1.0), "bandpass", (hvac_centre * 0.5, hvac_centre * 2))
    floor = coloured_noise(r, n, colour)
    return floor + hum_level * hum / (np.std(hum) + 1e-9) + p.uniform(0.2, 1.5) * hvac


@TEXTURES.register("coloured_noise")
def coloured_noise_texture(p, r, n):
    exponent = p.choice([-1.0, 0.0, 1.0, 2.0]) + p.uniform(-0.3, 0.3)
    return coloured_noise(r, n, exponent) * _smooth_env(r, n, 0.3, p.uniform(0, 0.3))


@TEXTURES.register("keys_jingle")
def keys_jingle(p, r, n):
    modes = p.uniform(2500, 7500, 6)
    y = np.zeros(n)
    for o in _events(r, n, p.uniform(15, 60)):
        m = int(0.08 * SR)
        s = sum(
            _resonator(f * r.uniform(0.95, 1.05), r.uniform(0.005, 0.03), 0.08)[:m]
            * r.uniform(0, 1)
            for f in modes
        )
        e = min(n, o + m)
        y[o:e] += s[: e - o]
    return y


@TEXTURES.register("door_slam")
def door_slam(p, r, n):
    y = np.zeros(n)
    for o in _events(r, n, p.uniform(0.3, 1.0), jitter=0.5):
        thud = _resonator(p.uniform(50, 150), p.uniform(0.05, 0.15), 0.6) * 2
        rattle = butter(_noise_burst(r, 0.6, p.uniform(0.03, 0.1)), "bandpass", (300, 4000))
        s = thud + rattle
        e = min(n, o + len(s))
        y[o:e] += s[: e - o]
    return y


@TEXTURES.register("hand_clap")
def hand_clap(p, r, n):
    y = np.zeros(n)
    clap = butter(
        _noise_burst(r, 0.05, p.uniform(0.004, 0.012)),
        "bandpass",
        (p.uniform(600, 1400), p.uniform(2500, 6000)),
    )
    for o in _events(r, n, p.uniform(2, 5), jitter=0.2):
        e = min(n, o + len(clap))
        y[o:e] += clap[: e - o] * r.uniform(0.6, 1.0)
    return y
