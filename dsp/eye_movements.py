"""Rapid eye movements (REMs) from one or two EOG channels, their density, and a slow-eye-movement index.

Rule for REMs (in the spirit of YASA's ``rem_detect``, which thresholds the negative product of
LOC and ROC; here the AASM's shape criterion is added):

1. causal Butterworth band-pass 0.5-5 Hz of each EOG channel. Causal on purpose: a zero-phase
   filter spreads a saccade's step symmetrically in time, so a lobe would start before the eye
   moves and the "initial deflection" would be blurred; the causal filter delays events by its
   group delay instead (about 0.05 s);
2. the analysed signal is LOC - ROC with two channels (the eyes move together, so the two outer
   canthus electrodes deflect in opposite directions and the difference doubles them, while EEG
   common to both cancels), or the single channel given; it is cut into half-waves at its zero
   crossings (:func:`dsp.slowwaves.half_waves`);
3. a half-wave is a REM when
   - its deflection is large: with two channels, the geometric mean of the two channels' opposite
     deflections at the half-wave's extreme, ``sqrt(-LOC * ROC)``, is 50-325 uV (YASA's amplitude
     limits; a same-sign deflection, i.e. not conjugate, is rejected); with one channel, ``|x|``;
   - it is sharp: the signal rises (or falls) to the extreme, without turning, in less than 0.5 s
     (AASM: REMs have an initial deflection usually lasting < 500 ms, slow eye movements > 500 ms).
     The rise is timed from the last turning point before the extreme, not from the zero
     crossing: a saccade often starts while the signal is still away from zero (the filter's
     undershoot after the previous one).
   One event per half-wave: two saccades in the same direction within one half-wave count once.

The slow-eye-movement index is the share of each epoch covered by conjugate 0.1-1 Hz half-waves
whose rise to the extreme lasts >= 0.5 s and whose deflection exceeds ``min_amplitude_uv``: a cheap
marker of drowsiness (N1), not a validated detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import SignalError
from .filters import design_sos, sosfilt, steady_state
from .slowwaves import add_cover, half_waves
from .spindles import as_rows, event_density, stage_mask

#: REM band in Hz.
REM_BAND_HZ = (0.5, 5.0)
#: Deflection limits per channel in uV (YASA's defaults).
AMPLITUDE_UV = (50.0, 325.0)
#: AASM: a REM's initial deflection usually lasts < 0.5 s, a slow eye movement's > 0.5 s.
MAX_RISE_S = 0.5
SEM_BAND_HZ = (0.1, 1.0)


@dataclass(frozen=True)
class EyeMovementEvents:
    """Detected rapid eye movements, sorted by onset.

    Attributes
    ----------
    onset : ndarray, shape (n_events,)
        Start of the rise to the extreme (the last turning point before it), s from the first
        sample; later than the eye's movement by the causal filter's delay (about 0.05 s).
    duration : ndarray, shape (n_events,)
        From the onset to the end of the half-wave (the next zero crossing), s.
    peak_s : ndarray, shape (n_events,)
        Time of the extreme, s.
    amplitude_uv : ndarray, shape (n_events,)
        Deflection at the extreme in uV: ``sqrt(-LOC * ROC)`` with two channels, ``|x|`` with one.
    rise_s : ndarray, shape (n_events,)
        Time from the onset to the extreme, s.
    direction : ndarray of int, shape (n_events,)
        Sign of the analysed signal at the extreme (LOC - ROC, or the channel): +1 or -1.
    """

    onset: np.ndarray
    duration: np.ndarray
    peak_s: np.ndarray
    amplitude_uv: np.ndarray
    rise_s: np.ndarray
    direction: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)


@njit(cache=True)
def rise_starts(x, peaks):
    """Where the monotonic rise (or fall) to each peak starts: the last turning point before it.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Signal.
    peaks : ndarray of int, shape (n_peaks,)
        Sample index of each extreme; a peak with ``x >= 0`` is a maximum, else a minimum.

    Returns
    -------
    ndarray of int64, shape (n_peaks,)
        For a maximum, the smallest ``j <= peak`` with ``x[j:peak + 1]`` strictly increasing (for a
        minimum, strictly decreasing); 0 if that reaches the first sample.
    """
    out = np.empty(peaks.size, dtype=np.int64)
    for k in range(peaks.size):
        j = peaks[k]
        if x[peaks[k]] >= 0.0:
            while j > 0 and x[j - 1] < x[j]:
                j -= 1
        else:
            while j > 0 and x[j - 1] > x[j]:
                j -= 1
        out[k] = j
    return out


def _deflections(eog: np.ndarray, fs: float, band_hz: tuple):
    """Band-passed analysed signal, its half-waves, the deflection at each extreme and the rise start."""
    if band_hz[1] >= 0.45 * fs:
        raise SignalError(f"{fs:g} Hz is too slow for a {band_hz[1]:g}-Hz band edge")
    if not np.isfinite(eog).all():
        raise SignalError("eye-movement detection needs finite samples (fill or cut gaps first)")
    if eog.shape[0] not in (1, 2):
        raise SignalError(f"expected one or two EOG channels (LOC, ROC), got {eog.shape[0]}")
    sos = design_sos(fs, *band_hz, order=2)
    centred = np.ascontiguousarray(eog - np.median(eog, axis=1, keepdims=True))
    filtered = sosfilt(sos, centred, steady_state(sos, centred[:, 0]))
    analysed = filtered[0] - filtered[1] if eog.shape[0] == 2 else filtered[0]
    hw = half_waves(analysed)
    at = hw[:, 2]
    if eog.shape[0] == 2:
        product = filtered[0, at] * filtered[1, at]
        # Only opposite deflections (a negative product) are eye movements; others get 0.
        deflection = np.sqrt(np.maximum(-product, 0.0))
    else:
        deflection = np.abs(analysed[at])
    return analysed, hw, deflection, rise_starts(analysed, at)


def detect_rapid_eye_movements(
    eog,
    fs: float,
    *,
    stages=None,
    include=(4,),
    epoch_s: float = 30.0,
    band_hz: tuple = REM_BAND_HZ,
    amplitude_uv: tuple = AMPLITUDE_UV,
    max_rise_s: float = MAX_RISE_S,
) -> EyeMovementEvents:
    """Detect rapid eye movements (see the module docstring for the rule).

    Parameters
    ----------
    eog : array_like, shape (2, n_samples), (1, n_samples) or (n_samples,)
        EOG in uV: LOC and ROC (E1, E2: outer canthi, each to a mastoid), or one of them.
    fs : float
        Sample rate in Hz (above 11.2 Hz for the 5-Hz edge).
    stages : array_like of int, shape (n_epochs,), optional
        Stage code per epoch; when given, only eye movements peaking in epochs whose stage is in
        ``include`` are kept.
    include : sequence of int, optional
        Stage codes searched when ``stages`` is given, by default REM only (4).
    epoch_s : float, optional
        Length in s of the epochs of ``stages``, by default 30.
    band_hz : (float, float), optional
        Band-pass edges in Hz.
    amplitude_uv : (float, float), optional
        Smallest and largest accepted deflection per channel, uV.
    max_rise_s : float, optional
        Longest accepted rise to the extreme (from the last turning point), s.

    Returns
    -------
    EyeMovementEvents
    """
    eog = as_rows(eog)
    analysed, hw, deflection, start = _deflections(eog, fs, band_hz)
    rise = (hw[:, 2] - start) / fs
    keep = ((deflection >= amplitude_uv[0]) & (deflection <= amplitude_uv[1]) & (rise < max_rise_s)
            & stage_mask(eog.shape[1], fs, stages, include, epoch_s)[hw[:, 2]])
    hw, start = hw[keep], start[keep]
    return EyeMovementEvents(
        onset=start / fs,
        duration=(hw[:, 1] - start) / fs,
        peak_s=hw[:, 2] / fs,
        amplitude_uv=deflection[keep],
        rise_s=rise[keep],
        direction=np.sign(analysed[hw[:, 2]]).astype(np.int64),
    )


def eye_movement_density(events: EyeMovementEvents, n_epochs: int, epoch_s: float = 30.0) -> np.ndarray:
    """Rapid eye movements per minute in each epoch (counted in the epoch holding their midpoint).

    Parameters
    ----------
    events : EyeMovementEvents
        From :func:`detect_rapid_eye_movements`.
    n_epochs : int
        Number of epochs from the first sample.
    epoch_s : float, optional
        Epoch length in s, by default 30.

    Returns
    -------
    ndarray, shape (n_epochs,)
        Eye movements per minute.
    """
    return event_density(events.onset, events.duration, n_epochs, epoch_s)


def slow_eye_movement_index(eog, fs: float, n_epochs: int, epoch_s: float = 30.0, *,
                            min_amplitude_uv: float = 25.0, band_hz: tuple = SEM_BAND_HZ) -> np.ndarray:
    """Share of each epoch covered by slow eye movements (a heuristic drowsiness marker).

    Slow eye movements here are half-waves of the 0.1-1 Hz (causal) band-passed LOC - ROC (or single
    channel) whose rise to the extreme lasts >= 0.5 s and whose deflection (as in
    :func:`detect_rapid_eye_movements`, conjugate with two channels) is at least ``min_amplitude_uv``.

    Parameters
    ----------
    eog : array_like, shape (2, n_samples), (1, n_samples) or (n_samples,)
        EOG in uV: LOC and ROC, or one of them (then EEG delta cannot be told apart).
    fs : float
        Sample rate in Hz.
    n_epochs : int
        Number of epochs from the first sample.
    epoch_s : float, optional
        Epoch length in s, by default 30.
    min_amplitude_uv : float, optional
        Smallest deflection per channel, uV (a heuristic default, not fitted to data).
    band_hz : (float, float), optional
        Band-pass edges in Hz.

    Returns
    -------
    ndarray, shape (n_epochs,)
        Covered share, 0..1.
    """
    eog = as_rows(eog)
    _, hw, deflection, start = _deflections(eog, fs, band_hz)
    keep = (deflection >= min_amplitude_uv) & ((hw[:, 2] - start) / fs >= MAX_RISE_S)
    covered = np.zeros(n_epochs)
    for start, stop, _ in hw[keep]:  # half-waves never overlap
        add_cover(covered, start / fs, stop / fs, epoch_s)
    return covered / epoch_s
