"""All adjustment detectors together, offline and live: one call for a recording, one monitor for a stream.

The detectors themselves live one per concept: ``dsp.lines`` (electrical and entrainment: injected
spectral lines and DC shifts), ``dsp.evoked`` (auditory: series of evoked responses) and
``dsp.tampering`` (replayed, spliced and time-warped signal). This module only runs them on the same
data and merges what they report.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .detector_input import as_detector_input, second_sd
from .events import AdjustmentEvent, merge_events


def detect_adjustments(data, fs: float, *, valid=None, stages=None) -> list:
    """Flag externally injected adjustments of every kind in a recording.

    Parameters
    ----------
    data : array_like, shape (n_channels, n_samples) or (n_samples,)
        Electrode signals (EEG, EOG, EMG) in uV at one rate. NaN marks missing samples.
    fs : float
        Sample rate in Hz (>= 50).
    valid : array_like of bool, shape (n_samples,), optional
        False where samples are missing (packet loss written as 0); combined with NaN.
    stages : array_like of int, shape (n_epochs,), optional
        Stage codes per 30-s epoch (0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unknown) from the stager;
        the auditory detector uses them to weigh NREM.

    Returns
    -------
    list of AdjustmentEvent
        Sorted by onset (s from the first sample); overlapping events of one kind merged.
    """
    from .evoked import detect_auditory
    from .lines import detect_lines
    from .tampering import detect_tampering

    x, ok = as_detector_input(data, valid)
    events = []
    for rows, usable in _channel_groups(x, fs, ok):
        part = x if len(rows) == x.shape[0] else x[rows]  # no copy of a whole night when all are healthy
        # the auditory alarm level counts every lead tested, whichever group it is tested in
        found = detect_lines(part, fs, valid=usable) \
            + detect_auditory(part, fs, valid=usable, stages=stages, n_leads=x.shape[0]) \
            + detect_tampering(part, fs, valid=usable)
        events += [dataclasses.replace(e, channels=tuple(rows[c] for c in e.channels)) for e in found]
    return merge_events(_unexplained(events, events))


#: Electrical stimulation at or below this frequency (Hz) drives slow-oscillation-like troughs itself.
SLOW_DRIVE_HZ = 4.0


def _unexplained(candidates, known) -> list:
    """``candidates`` without auditory series that slow electrical stimulation in ``known`` explains.

    The evoked-series test assumes the slow-oscillation troughs it is locked to come from the
    brain; during slow-oscillatory tACS the current itself makes them, so an auditory call that
    overlaps such a stimulation is the same adjustment seen twice, not a second one.
    """
    slow = [e for e in known if e.kind == "electrical" and e.frequency_hz is not None
            and e.frequency_hz <= SLOW_DRIVE_HZ]
    return [e for e in candidates
            if not (e.kind == "auditory" and any(e.overlaps(s.onset, s.end) for s in slow))]


def _channel_groups(x: np.ndarray, fs: float, ok: np.ndarray) -> list:
    """Channels to analyse together, each group with its usable samples.

    A failed electrode (railed at the ADC limit or disconnected: flat, SD below ``FLAT_UV`` over a
    second) is a signal-quality fault, not an adjustment: its dead stretches are treated as missing
    for that channel alone, so the step into the rail is never read as a DC shift. Healthy channels
    stay together; each channel with dead stretches is analysed on its own.
    """
    from .quality import FLAT_UV

    step = max(1, int(round(fs)))
    sd, n = second_sd(x, ok, step)
    healthy, groups = [], []
    for row in range(x.shape[0]):
        flat = sd[row] < FLAT_UV
        for k in np.flatnonzero(n < 2):  # too few samples to judge: like the second before
            flat[k] = flat[k - 1] if k else False
        if not flat.any():
            healthy.append(row)
            continue
        dead = np.repeat(flat, step)
        dead = np.concatenate([dead, np.full(x.shape[1] - dead.size, bool(dead[-1]) if dead.size else False)])
        dead &= ok  # missing samples are zeros anyway, already excluded
        if dead.any():
            groups.append(([row], ok & ~dead))
        else:
            healthy.append(row)
    return ([(healthy, ok)] if healthy else []) + groups


class AdjustmentMonitor:
    """Every adjustment detector run causally on a stream, block by block.

    Parameters
    ----------
    fs : float
        Sample rate in Hz (>= 50).
    n_channels : int
        Electrode channels in each block.

    Attributes
    ----------
    events : list of AdjustmentEvent
        Every alarm raised so far, in the order raised, as first raised (see :attr:`views`).
    """

    def __init__(self, fs: float, n_channels: int):
        from .evoked import AuditoryMonitor
        from .lines import LineMonitor
        from .tampering import TamperingMonitor

        self.fs = float(fs)
        self.n_channels = int(n_channels)
        self._monitors = (LineMonitor(fs, n_channels), AuditoryMonitor(fs, n_channels),
                          TamperingMonitor(fs, n_channels))
        self.events: list = []

    def push(self, block, valid=None) -> list:
        """Analyse the next block of samples.

        Parameters
        ----------
        block : array_like, shape (n_channels, n)
            The next samples in uV; NaN marks missing ones.
        valid : array_like of bool, shape (n,), optional
            False where samples are missing.

        Returns
        -------
        list of AdjustmentEvent
            Alarms raised by this block (onsets in s from the first pushed sample).
        """
        x, ok = as_detector_input(block, valid)
        if x.shape[0] != self.n_channels:
            raise ValueError(f"expected {self.n_channels} channels, got {x.shape[0]}")
        new: list = []
        for monitor in self._monitors:
            new += monitor.push(x, ok)
        new = _unexplained(new, self.events + new)
        new.sort(key=lambda e: e.onset)
        self.events += new
        return new

    @property
    def views(self) -> list:
        """Every alarm raised so far in its latest view, sorted by onset: the detectors refine an
        alarm's kind, extent and evidence as more data arrive (e.g. a line first guessed
        entrainment from 8 s is called electrical once its harmonics and blocks are measured)."""
        views = [e for monitor in self._monitors for e in monitor.events]
        return merge_events(_unexplained(views, views))

    def push_gap(self, n_samples: int) -> list:
        """Samples lost between blocks: pushed as missing, so time stays aligned with the stream."""
        if n_samples <= 0:
            return []
        return self.push(np.zeros((self.n_channels, n_samples)), np.zeros(n_samples, dtype=bool))


__all__ = ["AdjustmentEvent", "AdjustmentMonitor", "detect_adjustments"]
