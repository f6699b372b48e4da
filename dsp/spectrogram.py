"""Multitaper spectrogram of a whole night: DPSS-tapered power spectra of consecutive windows.

The sleep-EEG convention (Prerau et al. 2017, Physiology 32:60): 30-s windows with a 1-Hz
bandwidth (29 tapers), so that slow waves, spindles and alpha stand out over hours without the
speckle of a single-taper spectrogram. The signal is first brought down to a working rate just
above what is shown (``dsp.resample``, polyphase), which makes an 8-h night a second's work; each
window's spectrum is :func:`dsp.spectral.multitaper_psd` (tapers from :func:`dsp.spectral.dpss_windows`,
spectra with numpy's FFT).
"""

from __future__ import annotations

import numpy as np

from .spectral import multitaper_psd

#: Windows transformed at once (bounds each temporary to a few MB for any length of night).
_BLOCK_WINDOWS = 64
#: A window with more missing samples than this share is left out (NaN) rather than estimated.
MAX_MISSING = 0.5


def multitaper_spectrogram(x, fs: float, *, window_seconds: float = 30.0, step_seconds: float | None = None,
                           bandwidth_hz: float = 1.0, fmax: float = 30.0, working_fs: float | None = 100.0):
    """Multitaper power spectrogram of one channel.

    Parameters
    ----------
    x : array_like, shape (n_samples,)
        Signal in uV; NaN marks missing samples.
    fs : float
        Sample rate in Hz.
    window_seconds : float, optional
        Length of each window in s, by default 30 (one sleep epoch).
    step_seconds : float, optional
        Hop between window starts in s; ``window_seconds`` (no overlap) by default, so window ``i``
        is epoch ``i``.
    bandwidth_hz : float, optional
        Full bandwidth 2W of the tapers in Hz, by default 1 (about ``bandwidth_hz * window_seconds - 1``
        tapers).
    fmax : float, optional
        Highest frequency returned in Hz, by default 30.
    working_fs : float or None, optional
        Rate in Hz the signal is resampled to first when ``fs`` is higher (must exceed
        ``2 * fmax``), by default 100; None keeps ``fs``.

    Returns
    -------
    freqs : ndarray, shape (n_freqs,)
        Frequencies in Hz, 0 to ``fmax``, spaced ``1 / window_seconds``.
    times : ndarray, shape (n_windows,)
        Centre of each window in s from the first sample.
    psd : ndarray, shape (n_freqs, n_windows)
        One-sided power spectral density in uV^2/Hz (the layout of :func:`scipy.signal.spectrogram`).
        Missing samples count as the window's mean, and the window's power is scaled up by the share
        they took; windows missing more than :data:`MAX_MISSING` of their samples are NaN.

    Raises
    ------
    ValueError
        If the signal is shorter than one window, or the parameters do not fit the rate.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be one channel (n_samples,), got shape {x.shape}")
    step_seconds = window_seconds if step_seconds is None else step_seconds
    if not (window_seconds > 0 and step_seconds > 0 and fmax > 0):
        raise ValueError("window_seconds, step_seconds and fmax must be positive")
    missing = ~np.isfinite(x)
    if missing.any():  # the window's level in the holes: no step, so no broadband leakage
        finite = x[~missing]
        x = np.where(missing, np.median(finite) if finite.size else 0.0, x)
    rate = float(fs)
    if working_fs is not None and fs > working_fs:
        if not working_fs > 2 * fmax:
            raise ValueError(f"working_fs ({working_fs:g} Hz) must exceed 2 * fmax ({2 * fmax:g} Hz)")
        from .resample import resample

        x = resample(x, fs, working_fs)
        rate = float(working_fs)
    n_per = int(round(window_seconds * rate))
    hop = int(round(step_seconds * rate))
    if n_per < 2 or x.size < n_per:
        raise ValueError(f"signal of {x.size / rate:g} s is shorter than one {window_seconds:g}-s window")
    n_windows = (x.size - n_per) // hop + 1
    starts = np.arange(n_windows) * hop
    # share of samples missing per window, from the mask at the original rate
    raw_per, raw_hop = int(round(window_seconds * fs)), int(round(step_seconds * fs))
    cumulative = np.concatenate(([0], np.cumsum(missing, dtype=np.int64)))
    raw_starts = np.minimum(np.arange(n_windows) * raw_hop, missing.size)
    raw_ends = np.minimum(raw_starts + raw_per, missing.size)
    lost = (cumulative[raw_ends] - cumulative[raw_starts]) / max(raw_per, 1)

    freqs = np.fft.rfftfreq(n_per, 1.0 / rate)
    keep = freqs <= fmax
    psd = np.empty((int(keep.sum()), n_windows))
    index = np.arange(n_per)
    for a in range(0, n_windows, _BLOCK_WINDOWS):
        b = min(n_windows, a + _BLOCK_WINDOWS)
        windows = x[starts[a:b, None] + index]
        _, block = multitaper_psd(windows, rate, bandwidth_hz)
        psd[:, a:b] = block[:, keep].T
    with np.errstate(divide="ignore", invalid="ignore"):
        psd /= np.where(lost < 1.0, 1.0 - lost, np.nan)
    psd[:, lost > MAX_MISSING] = np.nan
    times = (starts + n_per / 2.0) / rate
    return freqs[keep], times, psd
