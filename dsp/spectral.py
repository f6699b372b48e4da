"""Spectral estimates per epoch: Welch and multitaper power spectra, band powers."""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import signal


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


def epoch_psd(epochs: np.ndarray, fs: float, window_seconds: float = 4.0):
    """Welch power spectrum of every epoch (Hann windows, 50 % overlap, mean detrended).

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
    nperseg = min(epochs.shape[-1], int(round(window_seconds * fs)))
    return signal.welch(epochs, fs, window="hann", nperseg=nperseg, axis=-1)


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
    tapers, ratios = signal.windows.dpss(n, half_nbw, int(2 * half_nbw), sym=False, return_ratios=True)
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
