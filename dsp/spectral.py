"""Spectral estimates per epoch: Welch power spectra and band powers."""

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
