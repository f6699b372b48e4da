"""Per-epoch features that sleep stages differ in, from EEG and EMG.

EEG features are defined on 0.5-22 Hz, below the Nyquist frequency of every rate the stager
accepts (>= 50 Hz). EEG is first resampled to a working rate of 50 Hz (:func:`to_working_rate`), so
a 50-Hz and a 256-Hz recording give comparable numbers, and a 256-Hz night costs no more to stage
than a 50-Hz one beyond the resampling.

- ``delta_log_power``: log10 power in 0.5-4 Hz (uV^2). The only EEG feature that depends on the
  amplifier's gain and the electrode distance; the stager estimates that offset per recording.
- ``theta_share``, ``alpha_share``, ``sigma_share``, ``beta_share``: log10 of the power in 4-8,
  8-12, 12-16 and 16-22 Hz as a share of the 0.5-22 Hz power. Shares do not depend on gain.
- ``spectral_slope``: slope of log10 power against log10 frequency over 2-20 Hz (steeper in deeper sleep).
- ``permutation_entropy``: of order 3 on the 0.5-22 Hz signal at 20-ms lags, 0..1 (lower in deeper sleep).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .complexity import permutation_entropy
from .filters import design_sos, sosfiltfilt
from .resample import resample
from .spectral import band_powers, epoch_psd

EEG_FEATURES = ("delta_log_power", "theta_share", "alpha_share", "sigma_share", "beta_share",
                "spectral_slope", "permutation_entropy")
#: Which EEG features shift with the recording's gain (log10 power: +2 log10(a) for a signal scaled by a).
GAIN_DEPENDENT = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
_SLOPE_HZ = (2.0, 20.0)
#: Rate (Hz) the EEG features are computed at.
WORKING_RATE_HZ = 50.0
_EEG_BANDS_HZ = np.array([[0.5, 4.0], [4.0, 8.0], [8.0, 12.0], [12.0, 16.0], [16.0, 22.0]])
EMG_BAND_HZ = (10.0, 100.0)


def fill_missing(epochs: np.ndarray) -> np.ndarray:
    """Replace a few lost samples (NaN) by their epoch's mean so spectra stay defined.

    Only for feature extraction, never for output data. An all-missing epoch becomes zeros.

    Parameters
    ----------
    epochs : ndarray, shape (..., n_samples)

    Returns
    -------
    ndarray, same shape
    """
    bad = ~np.isfinite(epochs)
    if not bad.any():
        return epochs
    finite = np.where(bad, 0.0, epochs)
    counts = np.maximum((~bad).sum(axis=-1, keepdims=True), 1)
    return np.where(bad, finite.sum(axis=-1, keepdims=True) / counts, epochs)


@njit(cache=True)
def hold_missing(x, last):
    """Replace each non-finite sample by the last finite one before it, in place.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples)
        Signal; NaN marks lost samples.
    last : ndarray, shape (n_rows,)
        Last finite value of each row before ``x`` (0 at the start of a stream); updated in place.

    Returns
    -------
    ndarray
        ``x``, filled.
    """
    for r in range(x.shape[0]):
        held = last[r]
        for i in range(x.shape[1]):
            if np.isfinite(x[r, i]):
                held = x[r, i]
            else:
                x[r, i] = held
        last[r] = held
    return x


def to_working_rate(eeg: np.ndarray, fs: float) -> np.ndarray:
    """EEG resampled to :data:`WORKING_RATE_HZ` for feature extraction, lost samples held.

    Lost samples (NaN) are replaced by the last value before them so the anti-alias filter does not
    spread them; epochs with more than a few lost samples are unscorable anyway.

    Parameters
    ----------
    eeg : ndarray, shape (n_channels, n_samples)
        EEG in uV at ``fs``.
    fs : float
        Sample rate in Hz (>= 50).

    Returns
    -------
    ndarray, shape (n_channels, ceil(n_samples * 50 / fs)), float64
    """
    rows = []
    for row in eeg:  # one channel at a time: a whole night in float64 is large
        x = np.array(row, dtype=np.float64)[None, :]
        finite = np.isfinite(x[0])
        hold_missing(x, np.array([x[0, np.argmax(finite)] if finite.any() else 0.0]))
        rows.append(x[0] if fs == WORKING_RATE_HZ else resample(x, fs, WORKING_RATE_HZ)[0])
    return np.array(rows)


def eeg_features(epochs: np.ndarray, fs: float) -> np.ndarray:
    """EEG features of every epoch, averaged over channels.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        EEG in uV; NaN marks lost samples (filled for the spectrum only).
    fs : float
        Sample rate in Hz (>= 50).

    Returns
    -------
    ndarray, shape (n_epochs, len(EEG_FEATURES))
        Columns as :data:`EEG_FEATURES` (log10 units, except the entropy, 0..1).
    """
    n_ch, n_ep, n_s = epochs.shape
    filled = fill_missing(epochs)
    freqs, psd = epoch_psd(filled.reshape(n_ch * n_ep, n_s), fs)
    power = band_powers(psd, freqs, _EEG_BANDS_HZ).reshape(n_ch, n_ep, -1) + 1e-12
    shares = np.log10(power / power.sum(axis=-1, keepdims=True))
    shares[..., 0] = np.log10(power[..., 0])
    fit = (freqs >= _SLOPE_HZ[0]) & (freqs <= _SLOPE_HZ[1])
    logf = np.log10(freqs[fit])
    logp = np.log10(psd[:, fit] + 1e-12)
    slope = ((logp - logp.mean(axis=1, keepdims=True)) @ (logf - logf.mean())) / ((logf - logf.mean()) ** 2).sum()
    band = sosfiltfilt(design_sos(fs, 0.5, 22.0), filled.reshape(n_ch, n_ep * n_s)).reshape(n_ch * n_ep, n_s)
    # at the working rate, consecutive samples are 20 ms apart; keep that lag at any other rate
    delay = max(1, int(round(fs / WORKING_RATE_HZ)))
    entropy = permutation_entropy(band, 3, delay)
    out = np.concatenate([shares, slope.reshape(n_ch, n_ep, 1), entropy.reshape(n_ch, n_ep, 1)], axis=-1)
    return out.mean(axis=0)


def emg_log_power(epochs: np.ndarray, fs: float) -> np.ndarray:
    """Log10 EMG power (uV^2) in 10-100 Hz (capped at 0.45 fs) per epoch, averaged over channels.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        EMG in uV.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (n_epochs,)
    """
    n_ch, n_ep, n_s = epochs.shape
    freqs, psd = epoch_psd(fill_missing(epochs).reshape(n_ch * n_ep, n_s), fs)
    band = np.array([[EMG_BAND_HZ[0], min(EMG_BAND_HZ[1], 0.45 * fs)]])
    return np.log10(band_powers(psd, freqs, band)[:, 0] + 1e-12).reshape(n_ch, n_ep).mean(axis=0)
