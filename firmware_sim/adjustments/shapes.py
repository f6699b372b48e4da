"""Small waveform building blocks shared by the adjustment kinds (ramps, slow noise, pink noise)."""

from __future__ import annotations

import numpy as np
from scipy import signal


def gauss(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Gaussian bump of unit height at ``centre`` with SD ``width`` (same units as ``t``)."""
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def ramp(n: int, n_ramp: int) -> np.ndarray:
    """Envelope of ``n`` samples rising from 0 to 1 over ``n_ramp`` samples (raised cosine), flat, then
    falling back over the last ``n_ramp``; shape (n,). ``n_ramp`` is capped at ``n // 2``."""
    env = np.ones(n)
    n_ramp = min(int(n_ramp), n // 2)
    if n_ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_ramp) + 0.5) / n_ramp)
        env[:n_ramp] = rise
        env[n - n_ramp:] = rise[::-1]
    return env


def slow_noise(rng: np.random.Generator, n: int, fs: float, tau_s: float, sd: float) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck noise: SD ``sd``, correlation time ``tau_s`` (s); shape (n,).

    Used for slow wandering of phase and rate (narrow spectral lines that stay phase-stable)."""
    if sd == 0 or n == 0:
        return np.zeros(n)
    a = np.exp(-1.0 / (tau_s * fs))
    start = sd * rng.standard_normal()
    out, _ = signal.lfilter([sd * np.sqrt(1.0 - a * a)], [1.0, -a], rng.standard_normal(n), zi=[a * start])
    return out


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink (1/f power) noise of unit RMS and zero mean, shape (n,)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    rms = np.sqrt(np.mean(x * x))
    return x / rms if rms > 0 else x
