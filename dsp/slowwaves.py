"""Slow waves and K-complex candidates, and the share of each epoch covered by slow waves.

Method (per channel), after Massimini et al. (2004) and Carrier et al. (2011) as in YASA's
``sw_detect``, with the AASM's slow-wave band and amplitude:

1. zero-phase Butterworth band-pass 0.3-2 Hz (order 2: little ringing around an isolated wave);
2. the filtered signal is cut at its zero crossings into half-waves (a numba kernel);
3. a slow wave is a negative half-wave lasting 0.3-1.5 s followed by a positive one lasting
   0.1-1 s, whose trough is at least 40 uV deep and whose trough-to-peak (peak-to-peak) amplitude is
   at least 75 uV (the AASM's N3 criterion). Both amplitudes are parameters and are reported, so a
   caller can apply thresholds relative to the recording instead (e.g. for a frontal consumer
   headband whose slow waves are smaller); ``min_trough_uv=0, min_ptp_uv=0`` returns every wave
   with the right shape.

Amplitudes are measured on the filtered signal, which slightly underestimates sharp waves.

K-complex candidates (AASM: a well-delineated negative sharp wave immediately followed by a positive
component standing out from the background, lasting >= 0.5 s) are slow waves that (a) last >= 0.5 s,
(b) stand out: their peak-to-peak amplitude is at least ``contrast`` times that of a sine with the
RMS of the surrounding +-5 s of the filtered signal, and (c) are isolated: no other slow wave of at
least half their amplitude within ``isolation_s``. It is a candidate rule, not validated against
expert K-complex marks (none are available here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import SignalError
from .filters import design_sos, sosfiltfilt
from .spindles import as_rows, stage_mask

#: Slow-wave band in Hz.
BAND_HZ = (0.3, 2.0)
#: Duration limits in s of the negative and the positive half-wave.
NEG_DURATION_S = (0.3, 1.5)
POS_DURATION_S = (0.1, 1.0)
#: AASM N3: slow waves of at least 75 uV peak to peak.
MIN_PTP_UV = 75.0
MIN_TROUGH_UV = 40.0
#: Half-length in s of the background window around each wave.
BACKGROUND_S = 5.0


@dataclass(frozen=True)
class SlowWaveEvents:
    """Detected slow waves, sorted by onset.

    Attributes
    ----------
    onset : ndarray, shape (n_events,)
        Start of the negative half-wave (the down zero crossing), s from the first sample.
    duration : ndarray, shape (n_events,)
        Negative plus positive half-wave, s.
    trough_s : ndarray, shape (n_events,)
        Time of the negative peak, s.
    trough_uv : ndarray, shape (n_events,)
        Negative peak of the filtered signal, uV (negative).
    peak_uv : ndarray, shape (n_events,)
        Positive peak that follows, uV.
    ptp_uv : ndarray, shape (n_events,)
        ``peak_uv - trough_uv``, uV.
    background_uv : ndarray, shape (n_events,)
        RMS in uV of the filtered signal over +-5 s around the wave, the wave itself excluded.
    channel : ndarray of int, shape (n_events,)
        Row of the input the wave was found in.
    """

    onset: np.ndarray
    duration: np.ndarray
    trough_s: np.ndarray
    trough_uv: np.ndarray
    peak_uv: np.ndarray
    ptp_uv: np.ndarray
    background_uv: np.ndarray
    channel: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)


@njit(cache=True)
def half_waves(x):
    """Cut a signal into half-waves at its zero crossings.

    A sample belongs to the positive side when ``x >= 0``. The partial half-waves before the first
    and after the last crossing are dropped, so consecutive rows alternate in sign.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        A zero-mean (band-passed) signal.

    Returns
    -------
    ndarray of int64, shape (n_half_waves, 3)
        Per half-wave: first sample, one past its last sample, and the sample of its extreme
        (the minimum of a negative half-wave, the maximum of a positive one; the first on ties).
    """
    n = x.size
    count = 0
    for i in range(1, n):
        if (x[i] >= 0.0) != (x[i - 1] >= 0.0):
            count += 1
    out = np.empty((max(count - 1, 0), 3), dtype=np.int64)
    k = -1  # index of the half-wave being filled; -1 before the first crossing
    for i in range(1, n):
        positive = x[i] >= 0.0
        if positive != (x[i - 1] >= 0.0):
            if k >= 0:
                out[k, 1] = i
            k += 1
            if k >= out.shape[0]:
                break
            out[k, 0] = i
            out[k, 2] = i
        elif k >= 0:
            best = out[k, 2]
            if (positive and x[i] > x[best]) or (not positive and x[i] < x[best]):
                out[k, 2] = i
    return out


def _background_rms(f: np.ndarray, start: np.ndarray, stop: np.ndarray, half: int) -> np.ndarray:
    """RMS of ``f`` over ``[start - half, stop + half)`` without ``[start, stop)``, per wave."""
    n = f.size
    energy = np.concatenate([[0.0], np.cumsum(f * f)])
    lo, hi = np.maximum(start - half, 0), np.minimum(stop + half, n)
    outside = (energy[hi] - energy[lo]) - (energy[stop] - energy[start])
    count = (hi - lo) - (stop - start)
    return np.sqrt(np.maximum(outside, 0.0) / np.maximum(count, 1))


def detect_slow_waves(
    eeg,
    fs: float,
    *,
    stages=None,
    include=(2, 3),
    epoch_s: float = 30.0,
    band_hz: tuple = BAND_HZ,
    neg_duration_s: tuple = NEG_DURATION_S,
    pos_duration_s: tuple = POS_DURATION_S,
    min_trough_uv: float = MIN_TROUGH_UV,
    min_ptp_uv: float = MIN_PTP_UV,
    max_ptp_uv: float | None = None,
) -> SlowWaveEvents:
    """Detect slow waves (negative then positive half-wave) in each EEG channel.

    Parameters
    ----------
    eeg : array_like, shape (n_channels, n_samples) or (n_samples,)
        EEG in uV, all finite.
    fs : float
        Sample rate in Hz (anything from a few Hz up).
    stages : array_like of int, shape (n_epochs,), optional
        Stage code per epoch (0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscored); when given, only waves
        whose trough lies in an epoch whose stage is in ``include`` are kept.
    include : sequence of int, optional
        Stage codes searched when ``stages`` is given, by default N2 and N3.
    epoch_s : float, optional
        Length in s of the epochs of ``stages``, by default 30.
    band_hz : (float, float), optional
        Band-pass edges in Hz.
    neg_duration_s, pos_duration_s : (float, float), optional
        Accepted durations in s of the negative and the positive half-wave.
    min_trough_uv : float, optional
        Smallest accepted depth of the negative peak, uV (positive number).
    min_ptp_uv : float, optional
        Smallest accepted peak-to-peak amplitude, uV; 75 is the AASM's N3 criterion.
    max_ptp_uv : float, optional
        Largest accepted peak-to-peak amplitude, uV (an artefact guard); no limit by default.

    Returns
    -------
    SlowWaveEvents

    Raises
    ------
    SignalError
        If the signal has non-finite samples or the band does not fit below 0.45 ``fs``.
    """
    x = as_rows(eeg)
    if not np.isfinite(x).all():
        raise SignalError("slow-wave detection needs finite samples (fill or cut gaps first)")
    if band_hz[1] >= 0.45 * fs:
        raise SignalError(f"{fs:g} Hz is too slow for a {band_hz[1]:g}-Hz band edge")
    filtered = sosfiltfilt(design_sos(fs, *band_hz, order=2), x - np.median(x, axis=1, keepdims=True))
    analysed = stage_mask(x.shape[1], fs, stages, include, epoch_s)
    cols = {k: [] for k in SlowWaveEvents.__dataclass_fields__}
    for ch, f in enumerate(filtered):
        hw = half_waves(f)
        if len(hw) < 2:
            continue
        neg, pos = hw[:-1], hw[1:]
        trough, peak = f[neg[:, 2]], f[pos[:, 2]]
        neg_len = (neg[:, 1] - neg[:, 0]) / fs
        pos_len = (pos[:, 1] - pos[:, 0]) / fs
        ptp = peak - trough
        keep = ((trough < 0)
                & (neg_len >= neg_duration_s[0]) & (neg_len <= neg_duration_s[1])
                & (pos_len >= pos_duration_s[0]) & (pos_len <= pos_duration_s[1])
                & (-trough >= min_trough_uv) & (ptp >= min_ptp_uv)
                & analysed[neg[:, 2]])
        if max_ptp_uv is not None:
            keep &= ptp <= max_ptp_uv
        neg, pos = neg[keep], pos[keep]
        cols["onset"].append(neg[:, 0] / fs)
        cols["duration"].append((pos[:, 1] - neg[:, 0]) / fs)
        cols["trough_s"].append(neg[:, 2] / fs)
        cols["trough_uv"].append(trough[keep])
        cols["peak_uv"].append(peak[keep])
        cols["ptp_uv"].append(ptp[keep])
        cols["background_uv"].append(_background_rms(f, neg[:, 0], pos[:, 1], int(round(BACKGROUND_S * fs))))
        cols["channel"].append(np.full(int(keep.sum()), ch, dtype=np.int64))
    merged = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    merged["channel"] = merged["channel"].astype(np.int64)
    order = np.lexsort((merged["channel"], merged["onset"]))
    return SlowWaveEvents(**{k: v[order] for k, v in merged.items()})


def slow_wave_share(waves: SlowWaveEvents, n_epochs: int, epoch_s: float = 30.0, *,
                    min_ptp_uv: float = MIN_PTP_UV, channel: int | None = None) -> np.ndarray:
    """Share of each epoch covered by slow waves at least ``min_ptp_uv`` peak to peak.

    The AASM scores N3 when >= 20 % of an epoch is slow-wave activity of >= 75 uV.

    Parameters
    ----------
    waves : SlowWaveEvents
        From :func:`detect_slow_waves` (detected with amplitude limits no stricter than wanted here).
    n_epochs : int
        Number of epochs from the first sample.
    epoch_s : float, optional
        Epoch length in s, by default 30.
    min_ptp_uv : float, optional
        Peak-to-peak threshold in uV (absolute, or one the caller derived from the recording).
    channel : int, optional
        Use only this channel's waves; by default all (time covered on several channels counts once).

    Returns
    -------
    ndarray, shape (n_epochs,)
        Covered share, 0..1.
    """
    keep = waves.ptp_uv >= min_ptp_uv
    if channel is not None:
        keep &= waves.channel == channel
    start, stop = waves.onset[keep], waves.onset[keep] + waves.duration[keep]
    order = np.argsort(start, kind="stable")
    covered = np.zeros(n_epochs)
    run_start, run_stop = None, None
    for s, e in zip(start[order], stop[order]):  # merge overlaps, then spread each run over epochs
        if run_stop is not None and s <= run_stop:
            run_stop = max(run_stop, e)
            continue
        if run_stop is not None:
            add_cover(covered, run_start, run_stop, epoch_s)
        run_start, run_stop = s, e
    if run_stop is not None:
        add_cover(covered, run_start, run_stop, epoch_s)
    return covered / epoch_s


def add_cover(covered: np.ndarray, start: float, stop: float, epoch_s: float) -> None:
    """Add the seconds of ``[start, stop)`` falling in each epoch to ``covered`` (in place)."""
    first = max(int(np.floor(start / epoch_s)), 0)
    last = min(int(np.floor(stop / epoch_s)), covered.size - 1)
    for e in range(first, last + 1):
        covered[e] += max(0.0, min(stop, (e + 1) * epoch_s) - max(start, e * epoch_s))


def k_complex_candidates(waves: SlowWaveEvents, *, contrast: float = 2.0, isolation_s: float = 3.0,
                         min_duration_s: float = 0.5) -> np.ndarray:
    """Which slow waves are K-complex candidates: large, isolated, standing out from the background.

    Parameters
    ----------
    waves : SlowWaveEvents
        From :func:`detect_slow_waves`; its amplitude thresholds are the candidates' minimum size.
    contrast : float, optional
        Smallest ratio of the wave's peak-to-peak amplitude to that of a sine with the background
        RMS (``2 * sqrt(2) * background_uv``).
    isolation_s : float, optional
        No other wave of the same channel with at least half the peak-to-peak amplitude may have
        its trough within this many seconds of the candidate's.
    min_duration_s : float, optional
        Shortest candidate in s (AASM: >= 0.5 s).

    Returns
    -------
    ndarray of bool, shape (n_events,)
    """
    out = (waves.duration >= min_duration_s) & (waves.ptp_uv >= contrast * 2.0 * np.sqrt(2.0) * waves.background_uv)
    for i in np.flatnonzero(out):
        near = ((waves.channel == waves.channel[i]) & (np.abs(waves.trough_s - waves.trough_s[i]) <= isolation_s)
                & (waves.ptp_uv >= 0.5 * waves.ptp_uv[i]))
        near[i] = False
        out[i] = not near.any()
    return out
