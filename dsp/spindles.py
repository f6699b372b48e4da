"""Sleep spindles: amplitude-invariant detection and spindle density per epoch.

Method (per channel), the combination of Lacourse et al. (2019, "A7", J Neurosci Methods 316:3-11)
as adapted by YASA's ``spindles_detect`` (Vallat & Walker 2021, eLife 10:e70092):

1. zero-phase Butterworth filters: sigma 11-16 Hz (the AASM spindle band) and broadband 1-30 Hz
   (the upper edge is lowered to 0.45 ``fs`` when 30 Hz is above it, e.g. 22.5 Hz at 50 Hz);
2. three features at every sample, each in a window centred on it:

   - relative sigma power: sigma energy / broadband energy over 2 s (threshold 0.2);
   - sigma-broadband correlation: Pearson r over 0.3 s (threshold 0.65): the broadband signal is
     dominated by the sigma oscillation during a spindle, not during background activity;
   - sigma RMS over 0.3 s, above this recording's own threshold: mean + 1.5 SD of the moving RMS
     (the SD trimmed of the 10 % lowest and highest values) over the samples analysed;

3. a sample is in a spindle where all three criteria hold, after averaging the number of criteria
   met over 0.1 s (so that a one-sample dip does not split a spindle); runs closer than 0.5 s are
   merged, and runs lasting 0.5-2 s are kept.

Every feature and threshold is relative (a ratio, a correlation, or a threshold taken from the same
recording), so scaling the signal does not change the events. Unlike YASA, no absolute cap (YASA
caps the RMS threshold at 10 uV) and no FIR filter; the thresholds and windows are YASA's published
defaults, the band is the AASM's; none was fitted to data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import SignalError
from .filters import design_sos, sosfiltfilt

#: The AASM spindle band in Hz.
SIGMA_HZ = (11.0, 16.0)
#: The reference band for relative power and correlation, in Hz.
BROADBAND_HZ = (1.0, 30.0)
#: Accepted spindle durations in s (YASA's default; the AASM sets only the 0.5-s minimum).
DURATION_S = (0.5, 2.0)
#: Default thresholds: relative sigma power (0..1), correlation (-1..1), RMS in trimmed SDs above the mean.
REL_POWER = 0.2
CORRELATION = 0.65
RMS_SD = 1.5

_REL_WINDOW_S = 2.0
_WINDOW_S = 0.3
_SMOOTH_S = 0.1
_TRIM = 0.10
# Running sums are recomputed from scratch this often, so rounding errors cannot accumulate.
_RESYNC = 1024


@dataclass(frozen=True)
class SpindleEvents:
    """Detected spindles, sorted by onset.

    Attributes
    ----------
    onset : ndarray, shape (n_events,)
        Start in s from the first sample.
    duration : ndarray, shape (n_events,)
        Length in s.
    peak_hz : ndarray, shape (n_events,)
        Frequency in Hz of the broadband spectrum's maximum within the sigma band, over the event.
    amplitude_uv : ndarray, shape (n_events,)
        Peak-to-peak amplitude in uV of the sigma-filtered signal over the event.
    channel : ndarray of int, shape (n_events,)
        Row of the input the event was found in.
    """

    onset: np.ndarray
    duration: np.ndarray
    peak_hz: np.ndarray
    amplitude_uv: np.ndarray
    channel: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)


@njit(cache=True)
def moving_rms(x, half):
    """Root mean square of ``x`` in a window centred on every sample.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Signal, e.g. uV.
    half : int
        Half-width in samples: the window is ``[i - half, i + half]``, clipped at both ends.

    Returns
    -------
    ndarray, shape (n_samples,)
        RMS in the unit of ``x``.
    """
    n = x.size
    out = np.empty(n)
    lo = 0
    hi = -1  # the window is x[lo:hi + 1]
    ss = 0.0
    for i in range(n):
        new_lo = max(0, i - half)
        new_hi = min(n - 1, i + half)
        if i % _RESYNC == 0:
            lo, hi = new_lo, new_hi
            ss = 0.0
            for j in range(lo, hi + 1):
                ss += x[j] * x[j]
        else:
            while hi < new_hi:
                hi += 1
                ss += x[hi] * x[hi]
            while lo < new_lo:
                ss -= x[lo] * x[lo]
                lo += 1
        out[i] = np.sqrt(max(ss, 0.0) / (hi - lo + 1))
    return out


@njit(cache=True)
def moving_power_ratio(num, den, half):
    """Energy of ``num`` over energy of ``den`` in a window centred on every sample.

    With ``num`` a band-passed copy of ``den``, this is the band's share of the power (0..1).

    Parameters
    ----------
    num, den : ndarray, shape (n_samples,)
        Signals in the same unit.
    half : int
        Half-width in samples: the window is ``[i - half, i + half]``, clipped at both ends.

    Returns
    -------
    ndarray, shape (n_samples,)
        ``sum(num**2) / sum(den**2)`` per window; 0 where ``den`` is all zeros.
    """
    n = num.size
    out = np.empty(n)
    lo = 0
    hi = -1
    sn = 0.0
    sd = 0.0
    for i in range(n):
        new_lo = max(0, i - half)
        new_hi = min(n - 1, i + half)
        if i % _RESYNC == 0:
            lo, hi = new_lo, new_hi
            sn = 0.0
            sd = 0.0
            for j in range(lo, hi + 1):
                sn += num[j] * num[j]
                sd += den[j] * den[j]
        else:
            while hi < new_hi:
                hi += 1
                sn += num[hi] * num[hi]
                sd += den[hi] * den[hi]
            while lo < new_lo:
                sn -= num[lo] * num[lo]
                sd -= den[lo] * den[lo]
                lo += 1
        out[i] = max(sn, 0.0) / sd if sd > 0.0 else 0.0
    return out


@njit(cache=True)
def moving_correlation(x, y, half):
    """Pearson correlation of ``x`` and ``y`` in a window centred on every sample.

    Parameters
    ----------
    x, y : ndarray, shape (n_samples,)
        Signals.
    half : int
        Half-width in samples: the window is ``[i - half, i + half]``, clipped at both ends.

    Returns
    -------
    ndarray, shape (n_samples,)
        Correlation, -1..1; 0 where either signal is constant over the window.
    """
    n = x.size
    out = np.empty(n)
    lo = 0
    hi = -1
    sx = sy = sxx = syy = sxy = 0.0
    for i in range(n):
        new_lo = max(0, i - half)
        new_hi = min(n - 1, i + half)
        if i % _RESYNC == 0:
            lo, hi = new_lo, new_hi
            sx = sy = sxx = syy = sxy = 0.0
            for j in range(lo, hi + 1):
                sx += x[j]
                sy += y[j]
                sxx += x[j] * x[j]
                syy += y[j] * y[j]
                sxy += x[j] * y[j]
        else:
            while hi < new_hi:
                hi += 1
                sx += x[hi]
                sy += y[hi]
                sxx += x[hi] * x[hi]
                syy += y[hi] * y[hi]
                sxy += x[hi] * y[hi]
            while lo < new_lo:
                sx -= x[lo]
                sy -= y[lo]
                sxx -= x[lo] * x[lo]
                syy -= y[lo] * y[lo]
                sxy -= x[lo] * y[lo]
                lo += 1
        m = hi - lo + 1
        vx = sxx / m - (sx / m) ** 2
        vy = syy / m - (sy / m) ** 2
        # A variance lost in rounding (below 1e-12 of the mean square) counts as constant.
        if vx <= 1e-12 * sxx / m or vy <= 1e-12 * syy / m:
            out[i] = 0.0
        else:
            r = (sxy / m - (sx / m) * (sy / m)) / np.sqrt(vx * vy)
            out[i] = min(1.0, max(-1.0, r))
    return out


def centred_sum(values: np.ndarray, half: int) -> np.ndarray:
    """Sum of ``values`` over ``[i - half, i + half]`` (clipped at the ends) for every ``i``; exact for integers."""
    n = values.size
    total = np.concatenate([[0], np.cumsum(values)])
    idx = np.arange(n)
    return total[np.minimum(idx + half + 1, n)] - total[np.maximum(idx - half, 0)]


def trimmed_std(values: np.ndarray, cut: float = _TRIM) -> float:
    """Sample SD (ddof 1) of ``values`` without their ``cut`` lowest and ``cut`` highest share."""
    values = np.asarray(values, dtype=np.float64)
    k = int(cut * values.size)
    if values.size - 2 * k < 2:
        return 0.0
    kept = np.partition(values, (k, values.size - k - 1))[k:values.size - k]
    return float(kept.std(ddof=1)) if kept.size > 1 else 0.0


def stage_mask(n_samples: int, fs: float, stages, include, epoch_s: float) -> np.ndarray:
    """Which samples lie in an epoch whose stage is in ``include``; all of them when ``stages`` is None.

    Parameters
    ----------
    n_samples : int
    fs : float
        Sample rate in Hz.
    stages : array_like of int, shape (n_epochs,), or None
        Stage code per epoch (:mod:`dsp.stages`: 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscored).
    include : sequence of int
        Stage codes to analyse.
    epoch_s : float
        Epoch length in s.

    Returns
    -------
    ndarray of bool, shape (n_samples,)
        Samples past the last epoch are excluded.
    """
    if stages is None:
        return np.ones(n_samples, dtype=bool)
    stages = np.asarray(stages)
    epoch = (np.arange(n_samples) / (epoch_s * fs)).astype(np.int64)
    inside = epoch < stages.size
    keep = np.isin(stages, np.asarray(include))
    mask = np.zeros(n_samples, dtype=bool)
    mask[inside] = keep[epoch[inside]]
    return mask


def runs(flags: np.ndarray) -> np.ndarray:
    """``[start, stop)`` sample indices of every run of True in a boolean vector; shape (n_runs, 2)."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def merge_close(spans: np.ndarray, min_gap: int) -> np.ndarray:
    """Join ``[start, stop)`` spans (sorted, disjoint) separated by fewer than ``min_gap`` samples."""
    if len(spans) == 0:
        return spans
    merged = [list(spans[0])]
    for start, stop in spans[1:]:
        if start - merged[-1][1] < min_gap:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    return np.array(merged, dtype=np.int64).reshape(-1, 2)


def _peak_frequency(segment: np.ndarray, fs: float, band: tuple) -> float:
    """Frequency (Hz) of the largest spectral peak of ``segment`` inside ``band``, on a 0.05-Hz grid."""
    seg = segment - np.linspace(segment[0], segment[-1], segment.size)  # remove drift before windowing
    nfft = max(seg.size, int(np.ceil(fs / 0.05)))
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / fs)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    return float(freqs[inside][np.argmax(spectrum[inside])])


def as_rows(eeg) -> np.ndarray:
    """A signal as float64 rows, shape (n_channels, n_samples); one row for a 1-D input."""
    x = np.asarray(eeg, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise SignalError(f"expected (channels, samples) or (samples,), got shape {x.shape}")
    return x


def detect_spindles(
    eeg,
    fs: float,
    *,
    stages=None,
    include=(1, 2, 3),
    epoch_s: float = 30.0,
    sigma_hz: tuple = SIGMA_HZ,
    broadband_hz: tuple = BROADBAND_HZ,
    duration_s: tuple = DURATION_S,
    min_gap_s: float = 0.5,
    rel_power: float = REL_POWER,
    correlation: float = CORRELATION,
    rms_sd: float = RMS_SD,
) -> SpindleEvents:
    """Detect sleep spindles in each EEG channel (see the module docstring for the method).

    Parameters
    ----------
    eeg : array_like, shape (n_channels, n_samples) or (n_samples,)
        EEG in uV; a central lead (C3/C4/Cz) referenced to a mastoid is the usual choice. Non-finite
        samples are ignored (no event within 1 s of one).
    fs : float
        Sample rate in Hz; the sigma band must lie below 0.45 ``fs`` (any rate >= 50 Hz does).
    stages : array_like of int, shape (n_epochs,), optional
        Stage code per epoch (0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscored). When given, only epochs
        whose stage is in ``include`` are searched and set the RMS threshold.
    include : sequence of int, optional
        Stage codes to search, by default N1, N2, N3.
    epoch_s : float, optional
        Length in s of the epochs of ``stages``, by default 30.
    sigma_hz, broadband_hz : (float, float), optional
        Spindle band and reference band in Hz.
    duration_s : (float, float), optional
        Shortest and longest spindle kept, in s.
    min_gap_s : float, optional
        Detections separated by less than this (s) are merged into one.
    rel_power : float, optional
        Threshold on the sigma share of broadband power, 0..1.
    correlation : float, optional
        Threshold on the sigma-broadband correlation, -1..1.
    rms_sd : float, optional
        Sigma RMS threshold in trimmed SDs above this recording's mean moving RMS.

    Returns
    -------
    SpindleEvents
        One entry per spindle, sorted by onset.

    Raises
    ------
    SignalError
        If the rate is too low for the sigma band or the signal is shorter than 2 s.
    """
    x = as_rows(eeg)
    if sigma_hz[1] >= 0.45 * fs:
        raise SignalError(f"{fs:g} Hz is too slow for a {sigma_hz[1]:g}-Hz sigma band "
                          f"(need > {sigma_hz[1] / 0.45:.1f} Hz)")
    n = x.shape[1]
    if n < _REL_WINDOW_S * fs:
        raise SignalError(f"{n} samples at {fs:g} Hz: need at least {_REL_WINDOW_S:g} s")
    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)
    # Detrend each row around its median so that a DC offset does not ring through the filters.
    x = x - np.median(x, axis=1, keepdims=True)
    sigma = sosfiltfilt(design_sos(fs, *sigma_hz), x)
    broad = sosfiltfilt(design_sos(fs, *broadband_hz), x)
    analysed = stage_mask(n, fs, stages, include, epoch_s)
    half = max(1, int(round(_WINDOW_S * fs / 2)))
    half_rel = max(1, int(round(_REL_WINDOW_S * fs / 2)))
    half_smooth = max(1, int(round(_SMOOTH_S * fs / 2)))

    found = []
    for ch in range(x.shape[0]):
        # A lost sample spoils the filters' output for about 1 s around it.
        mask = analysed if finite[ch].all() else analysed & (centred_sum(~finite[ch], int(fs)) == 0)
        if mask.sum() < _REL_WINDOW_S * fs:
            continue
        rel = moving_power_ratio(sigma[ch], broad[ch], half_rel)
        corr = moving_correlation(sigma[ch], broad[ch], half)
        rms = moving_rms(sigma[ch], half)
        rms_threshold = rms[mask].mean() + rms_sd * trimmed_std(rms[mask])
        met = (rel >= rel_power).astype(np.int64) + (corr >= correlation) + (rms >= rms_threshold)
        met[~mask] = 0
        # All three criteria, on average over 0.1 s: a mean count above 2.
        window = 2 * half_smooth + 1
        spans = merge_close(runs(centred_sum(met, half_smooth) > 2 * window), int(round(min_gap_s * fs)))
        for start, stop in spans:
            length = (stop - start) / fs
            if not duration_s[0] <= length <= duration_s[1]:
                continue
            found.append((start / fs, length, _peak_frequency(broad[ch, start:stop], fs, sigma_hz),
                          float(np.ptp(sigma[ch, start:stop])), ch))
    found.sort(key=lambda e: (e[0], e[4]))
    cols = list(zip(*found)) if found else [(), (), (), (), ()]
    return SpindleEvents(
        onset=np.array(cols[0], dtype=np.float64),
        duration=np.array(cols[1], dtype=np.float64),
        peak_hz=np.array(cols[2], dtype=np.float64),
        amplitude_uv=np.array(cols[3], dtype=np.float64),
        channel=np.array(cols[4], dtype=np.int64),
    )


def event_density(onset, duration, n_epochs: int, epoch_s: float = 30.0) -> np.ndarray:
    """Events per minute in each epoch, each event counted in the epoch holding its midpoint.

    Parameters
    ----------
    onset, duration : array_like, shape (n_events,)
        Event starts and lengths in s.
    n_epochs : int
    epoch_s : float, optional
        Epoch length in s, by default 30.

    Returns
    -------
    ndarray, shape (n_epochs,)
        Events per minute; events past the last epoch are ignored.
    """
    mid = np.asarray(onset, dtype=np.float64) + 0.5 * np.asarray(duration, dtype=np.float64)
    epoch = np.floor(mid / epoch_s).astype(np.int64)
    epoch = epoch[(epoch >= 0) & (epoch < n_epochs)]
    return np.bincount(epoch, minlength=n_epochs)[:n_epochs] * (60.0 / epoch_s)


def spindle_density(events: SpindleEvents, n_epochs: int, epoch_s: float = 30.0, *,
                    channel: int | None = None) -> np.ndarray:
    """Spindles per minute in each epoch (a spindle counts in the epoch holding its midpoint).

    Parameters
    ----------
    events : SpindleEvents
        From :func:`detect_spindles`.
    n_epochs : int
        Number of epochs from the first sample.
    epoch_s : float, optional
        Epoch length in s, by default 30.
    channel : int, optional
        Count only this channel's spindles; by default every channel's (a spindle seen on two
        channels then counts twice).

    Returns
    -------
    ndarray, shape (n_epochs,)
        Spindles per minute.
    """
    keep = np.ones(len(events), dtype=bool) if channel is None else events.channel == channel
    return event_density(events.onset[keep], events.duration[keep], n_epochs, epoch_s)
