"""Spectral estimates per epoch: Welch and multitaper power spectra, band powers.

Welch's estimate is computed here with numpy's FFT, and the multitaper tapers with
``scipy.linalg`` (which numba loads anyway), so neither staging nor detection imports scipy's
signal package (most of a second, with the ``scipy.stats`` it pulls in).
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np
from numba import njit

#: Epochs whose Welch segments are transformed at once: segments and spectra (about 0.5 MB each)
#: stay in the CPU's L2 cache between the passes.
_WELCH_BLOCK_EPOCHS = 20
# Work arrays kept per thread between calls: a fresh MB-sized array costs a page fault per 4 kB
# on first write, more than the FFT itself for a chunk of epochs.
_scratch = threading.local()


def _work_array(name: str, shape: tuple, dtype) -> np.ndarray:
    """A reusable array of ``shape`` and ``dtype`` (contents undefined), one per name and thread."""
    size = math.prod(shape)  # np.prod costs more than the rest of this function
    held = getattr(_scratch, name, None)
    if held is None or held.size < size or held.dtype != dtype:
        held = np.empty(size, dtype=dtype)
        setattr(_scratch, name, held)
    return held[:size].reshape(shape)


@njit(cache=True)
def band_powers(psd, freqs, edges):
    """Power in frequency bands, by the rectangle rule over a one-sided spectrum.

    Parameters
    ----------
    psd : ndarray, shape (n_rows, n_freqs)
        Power spectral density in uV^2/Hz on the uniform grid ``freqs``.
    freqs : ndarray, shape (n_freqs,)
        Frequencies in Hz, uniformly spaced, ascending.
    edges : ndarray, shape (n_bands, 2)
        ``[low, high)`` of each band in Hz.

    Returns
    -------
    ndarray, shape (n_rows, n_bands)
        Power in uV^2 of each row in each band.
    """
    n_rows, n_freqs = psd.shape
    n_bands = edges.shape[0]
    df = freqs[1] - freqs[0] if n_freqs > 1 else 1.0
    out = np.zeros((n_rows, n_bands))
    for b in range(n_bands):
        lo, hi = edges[b, 0], edges[b, 1]
        for j in range(n_freqs):
            if freqs[j] >= lo and freqs[j] < hi:
                for i in range(n_rows):
                    out[i, b] += psd[i, j] * df
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _welch_segments(epochs, window, step, out, means):
    """Fill ``out[e, s]`` with segment ``s`` of epoch ``e`` (``len(window)`` samples from ``s * step``)
    times the window, and ``means[e, s]`` with the segment's mean, in one pass over the samples."""
    n_epochs, n_segments, n_per = out.shape
    for e in range(n_epochs):
        row = epochs[e]
        for s in range(n_segments):
            segment = row[s * step : s * step + n_per]
            target = out[e, s]
            total = 0.0
            for i in range(n_per):
                v = segment[i]
                total += v
                target[i] = v * window[i]
            means[e, s] = total / n_per


@njit(cache=True, nogil=True, fastmath=True)
def _mean_power(parts, means, window_low, scale, out):
    """``out[e, f]``: mean over segments of ``|spectra[e, s, f] - means[e, s] * window_low[f]|^2``,
    times ``scale``, from ``parts``, the spectra's real and imaginary parts side by side (a float64
    view, shape (n_epochs, n_segments, 2 n_freqs)): their squares summed over the segments in one
    vectorised loop, the pairs added at the end. ``window_low`` holds the window's spectrum at the
    first bins, where alone a Hann window's is not 0 (``n/2`` at 0 Hz, ``-n/4`` at the next bin):
    subtracting the mean there equals subtracting it from the samples before the window (Welch's
    ``detrend="constant"``), without a pass over the samples to do it."""
    n_epochs, n_segments, n_parts = parts.shape
    n_freqs = n_parts // 2
    n_low = min(window_low.shape[0], n_freqs)
    squares = np.empty(n_parts)
    for e in range(n_epochs):
        for i in range(n_parts):
            squares[i] = 0.0
        for s in range(n_segments):
            spectrum = parts[e, s]
            for i in range(n_parts):
                squares[i] += spectrum[i] * spectrum[i]
        for f in range(n_freqs):
            out[e, f] = squares[2 * f] + squares[2 * f + 1]
        for f in range(n_low):  # the mean's share, in the bins where the window's spectrum is not 0
            power = 0.0
            for s in range(n_segments):
                re = parts[e, s, 2 * f] - means[e, s] * window_low[f].real
                im = parts[e, s, 2 * f + 1] - means[e, s] * window_low[f].imag
                power += re * re + im * im
            out[e, f] = power
        for f in range(n_freqs):
            out[e, f] *= scale[f] / n_segments


@lru_cache(maxsize=16)
def _welch_design(n_per: int, fs: float) -> tuple:
    """Periodic Hann window, its spectrum at 0 Hz and the first bin (the only bins where it is not 0),
    frequencies and one-sided density scale of ``n_per``-sample segments."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_per) / n_per)
    window_low = np.fft.fft(window)[:2].copy()
    freqs = np.fft.rfftfreq(n_per, 1.0 / fs)
    # density scaling; one-sided: every bin but 0 Hz (and Nyquist, for an even length) counts twice
    scale = np.full(freqs.size, 2.0 / (fs * (window * window).sum()))
    scale[0] /= 2.0
    if n_per % 2 == 0:
        scale[-1] /= 2.0
    for a in (window, window_low, freqs, scale):
        a.setflags(write=False)
    return window, window_low, freqs, scale


def epoch_psd(epochs: np.ndarray, fs: float, window_seconds: float = 4.0):
    """Welch power spectrum of every epoch (Hann windows, 50 % overlap, mean detrended).

    The estimate of :func:`scipy.signal.welch` with ``window="hann"``, ``nperseg`` samples of
    ``window_seconds`` and its defaults (half-overlapping segments, each segment's mean removed,
    density scaling, one-sided, mean over segments), to rounding.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal in uV, one epoch per row, all finite.
    fs : float
        Sample rate in Hz.
    window_seconds : float, optional
        Welch segment length in seconds, by default 4 (0.25-Hz resolution).

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
        Frequencies in Hz.
    psd : ndarray, shape (n_epochs, n_freqs)
        Power spectral density in uV^2/Hz.
    """
    epochs = np.asarray(epochs)
    if epochs.dtype not in (np.float32, np.float64):
        epochs = epochs.astype(np.float64)
    n_epochs, n = epochs.shape
    n_per = min(n, int(round(window_seconds * fs)))
    step = n_per - n_per // 2
    n_segments = (n - n_per) // step + 1
    window, window_low, freqs, scale = _welch_design(n_per, float(fs))
    psd = np.empty((n_epochs, freqs.size))
    block = min(n_epochs, _WELCH_BLOCK_EPOCHS)
    segments = _work_array("segments", (block, n_segments, n_per), np.float64)
    means = _work_array("means", (block, n_segments), np.float64)
    spectra = _work_array("spectra", (block, n_segments, freqs.size), np.complex128)
    for a in range(0, n_epochs, _WELCH_BLOCK_EPOCHS):
        b = min(n_epochs, a + _WELCH_BLOCK_EPOCHS)
        _welch_segments(epochs[a:b], window, step, segments[: b - a], means[: b - a])
        np.fft.rfft(segments[: b - a], axis=-1, out=spectra[: b - a])
        _mean_power(spectra[: b - a].view(np.float64), means[: b - a], window_low, scale, psd[a:b])
    return freqs, psd


def dpss_windows(n: int, half_bandwidth: float, n_tapers: int) -> tuple:
    """Periodic discrete prolate spheroidal (Slepian) tapers and their spectral concentrations.

    The numbers of ``scipy.signal.windows.dpss(n, half_bandwidth, n_tapers, sym=False,
    return_ratios=True)``, by the same method (Percival & Walden 1993: the tridiagonal eigenproblem
    that shares its eigenvectors with the concentration problem, p. 379 for the signs, p. 390 for
    the concentrations), computed here because importing ``scipy.signal`` costs most of a second.

    Parameters
    ----------
    n : int
        Taper length in samples.
    half_bandwidth : float
        Time-half-bandwidth product NW (0 < NW < (n + 1) / 2); the band is +-NW / n cycles per sample.
    n_tapers : int
        Number of tapers K (1 <= K <= n); about 2 NW - 1 are well concentrated.

    Returns
    -------
    tapers : ndarray, shape (n_tapers, n)
        Taper k in row k (unit energy before the periodic window's last sample is dropped); even
        ones with a positive sum, odd ones starting with a positive lobe.
    ratios : ndarray, shape (n_tapers,)
        Share of each taper's energy inside the band (0..1), in decreasing order.
    """
    from scipy.linalg import eigh_tridiagonal

    if not 1 <= n_tapers <= n or not 0.0 < half_bandwidth < (n + 1) / 2.0:
        raise ValueError(f"need 1 <= n_tapers <= n and 0 < NW < (n + 1) / 2, got n={n}, NW={half_bandwidth}, "
                         f"K={n_tapers}")
    m = n + 1  # periodic: the symmetric taper one sample longer, its last sample dropped
    w = half_bandwidth / m
    index = np.arange(m, dtype=np.float64)
    diagonal = ((m - 1 - 2 * index) / 2.0) ** 2 * np.cos(2.0 * np.pi * w)
    off_diagonal = index[1:] * (m - index[1:]) / 2.0
    _, vectors = eigh_tridiagonal(diagonal, off_diagonal, select="i", select_range=(m - n_tapers, m - 1))
    tapers = np.ascontiguousarray(vectors[:, ::-1].T)  # largest eigenvalue (best concentrated) first
    tapers[::2][tapers[::2].sum(axis=1) < 0] *= -1.0
    floor = max(1e-7, 1.0 / m)  # the first sample above numerical noise starts the first lobe
    for k in range(1, n_tapers, 2):
        if tapers[k][tapers[k] ** 2 > floor][0] < 0:
            tapers[k] *= -1.0
    size = 2 * m  # the autocorrelation without wrap-around
    spectrum = np.fft.rfft(tapers, size, axis=1)
    autocorrelation = np.fft.irfft(spectrum * spectrum.conj(), size, axis=1)[:, :m]
    band = 4.0 * w * np.sinc(2.0 * w * index)  # both signs of each lag but 0
    band[0] = 2.0 * w
    return tapers[:, :n], autocorrelation @ band


def multitaper_psd(epochs: np.ndarray, fs: float, bandwidth_hz: float = 1.0):
    """Multitaper power spectrum of every epoch (DPSS tapers, eigenvalue-weighted average).

    Lower variance than a single-taper periodogram at the same resolution, for short epochs. Same
    estimate as :func:`mne.time_frequency.psd_array_multitaper` with ``bandwidth=bandwidth_hz``,
    ``adaptive=False``, ``low_bias=True``, ``normalization="full"`` (rel. difference below 1e-9): each
    epoch's mean is removed, only tapers with a concentration ratio above 0.9 are kept, and the
    one-sided spectra are averaged with the ratios as weights.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples) or (n_samples,)
        Signal in uV, one epoch per row, all finite.
    fs : float
        Sample rate in Hz.
    bandwidth_hz : float, optional
        Full bandwidth 2W of the tapers in Hz, by default 1 (spectral detail finer than this is
        smoothed out); about ``bandwidth_hz * n_samples / fs - 1`` tapers are used. Must be at least
        ``fs / n_samples``.

    Returns
    -------
    freqs : ndarray, shape (n_samples // 2 + 1,)
        Frequencies in Hz, 0 to Nyquist.
    psd : ndarray, shape (n_epochs, n_freqs) or (n_freqs,)
        One-sided power spectral density in uV^2/Hz (integrates to about the variance, as Welch's).
    """
    x = np.asarray(epochs, dtype=np.float64)
    n = x.shape[-1]
    half_nbw = bandwidth_hz * n / (2.0 * fs)
    if half_nbw < 0.5:
        raise ValueError(f"bandwidth_hz must be at least fs / n_samples = {fs / n:g} Hz")
    tapers, ratios = dpss_windows(n, half_nbw, int(2 * half_nbw))
    # low-bias tapers only: each keeps over 90 % of its energy inside the band
    keep = ratios > 0.9 if (ratios > 0.9).any() else ratios == ratios.max()
    tapers, weights = tapers[keep], ratios[keep]
    x = x - x.mean(axis=-1, keepdims=True)
    psd = np.zeros(x.shape[:-1] + (n // 2 + 1,))
    for taper, weight in zip(tapers, weights):  # one taper at a time: memory of one spectrum
        psd += weight * np.abs(np.fft.rfft(x * taper, axis=-1)) ** 2
    psd *= 2.0 / (fs * weights.sum())
    psd[..., 0] /= 2.0  # 0 Hz and Nyquist have no mirror image to fold in
    if n % 2 == 0:
        psd[..., -1] /= 2.0
    return np.fft.rfftfreq(n, 1.0 / fs), psd
