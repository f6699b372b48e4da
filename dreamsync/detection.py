"""Checking a recording for dream adjustments: read, stage, detect, weigh against the sleeper's consent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from .authorization import authorize, event_json

#: Channel kinds the detectors look at (electrodes); accelerometers and the like are left out.
ELECTRODE_KINDS = ("EEG", "EOG", "EMG")


@dataclass(frozen=True)
class DetectionReport:
    """The result of :func:`detect_file`.

    Attributes
    ----------
    path : str
    start : datetime or None
        Clock time of the first sample.
    duration : float
        Length analysed, in s.
    fs : float
        Rate of the analysed channels, in Hz.
    channels : list of str
        Labels of the analysed channels (rows the events' ``channels`` refer to).
    events : list of (AdjustmentEvent, bool)
        Flagged stretches and whether the sleeper authorized them.
    stages : numpy.ndarray of int
        Stage code per 30-s epoch used by the detectors.
    """

    path: str
    start: dt.datetime | None
    duration: float
    fs: float
    channels: list
    events: list
    stages: np.ndarray

    @property
    def alarms(self) -> list:
        """Flagged stretches the sleeper did not authorize."""
        return [e for e, ok in self.events if not ok]

    def to_json(self) -> dict:
        """The ``detect`` output: ``{"events": [...]}`` plus what was analysed."""
        return {
            "recording": self.path,
            "start": self.start.isoformat() if self.start else None,
            "duration": round(self.duration, 3),
            "fs": self.fs,
            "channels": list(self.channels),
            "alarms": len(self.alarms),
            "events": [event_json(e, ok, self.channels) for e, ok in self.events],
        }


def stream_events(anomalies) -> list:
    """Stream anomalies (:class:`ingest.integrity.StreamAnomaly`) as tampering events.

    Parameters
    ----------
    anomalies : iterable of StreamAnomaly
        Onsets in s of stream time from the first sample.

    Returns
    -------
    list of dsp.events.AdjustmentEvent
        Kind ``"tampering"``, evidence ``"<what>: <evidence>"``, same onset, duration and score.
    """
    from dsp.events import AdjustmentEvent

    return [AdjustmentEvent(a.onset_s, a.duration_s, "tampering", a.score, f"{a.what}: {a.evidence}")
            for a in anomalies]


def _is_capture(path: str) -> bool:
    from ingest.capture import MAGIC

    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False  # read_edf says why, in its words


def detection_channels(rec, eeg_indices) -> list:
    """Electrode channels at the staging channels' rate: the EEG ones staged plus EOG/EMG/other EEG."""
    fs = rec.signals[eeg_indices[0]].fs
    rest = [i for i, s in enumerate(rec.signals)
            if s.kind in ELECTRODE_KINDS and s.fs == fs and i not in eeg_indices]
    return list(eeg_indices) + rest


def detect_file(path: str, *, channel: str | None = None, authorized=(), model=None,
                staging=None) -> DetectionReport:
    """Check a recording for externally injected dream adjustments.

    The recording is staged first (the auditory detector weighs NREM), then every detector of
    :mod:`dsp.adjustments` runs on its electrode channels at the staging rate; samples in marked
    gaps are treated as missing, never as signal.

    Parameters
    ----------
    path : str
        EDF/EDF+/BDF file, or a raw capture (``.dsraw``): decoded again (as ``dreamsync convert``
        does) and its packet stream audited (:func:`ingest.integrity.audit_capture`); stream
        anomalies (replayed, re-sequenced or forged packets, arrivals off the sample clock) are
        reported as tampering events.
    channel : str, optional
        EEG channel label(s) to stage from, comma-separated (see
        :func:`~dreamsync.pipeline.staging_channels`).
    authorized : sequence of AuthorizedWindow
        What the sleeper consented to (see :mod:`dreamsync.authorization`).
    model : dsp.model.StagingModel, optional
        Staging parameters; the default model if omitted.
    staging : dsp.staging.StagingResult, optional
        The recording already staged from the same channels (e.g. ``stage_file(path).result``):
        used as is instead of staging again (``model`` is then ignored).

    Returns
    -------
    DetectionReport

    Raises
    ------
    ingest.errors.RecordingError
        Unreadable file, or no EEG channel / no such channel.
    dsp.errors.SignalError
        Recording too short or sampled too slowly to stage.
    """
    from dsp.adjustments import detect_adjustments
    from dsp.errors import SignalError
    from dsp.staging import stage
    from ingest.edf import read_edf

    from .pipeline import other_channels, read_channels, staging_channels

    if _is_capture(path):
        import os
        import tempfile

        from ingest.integrity import audit_capture

        from .pipeline import convert

        with tempfile.TemporaryDirectory() as tmp:
            converted = convert(path, os.path.join(tmp, "capture.edf"))
            report = detect_file(converted.path, channel=channel, model=model, staging=staging)
        events = sorted([e for e, _ in report.events] + stream_events(audit_capture(path)), key=lambda e: e.onset)
        return DetectionReport(path, report.start, report.duration, report.fs, report.channels,
                               authorize(events, authorized), report.stages)
    rec = read_edf(path)
    eeg, emg, eog, acc = staging_channels(rec, path, channel)
    rows = detection_channels(rec, eeg)
    data = read_channels(rec, rows)
    fs = rec.signals[eeg[0]].fs
    labels = [rec.labels[i] for i in rows]
    try:
        staged = staging if staging is not None else stage(data[: len(eeg)], fs, **other_channels(rec, emg, eog, acc),
                                                           model=model)
    except SignalError as err:
        raise SignalError(f"{path}: channels {', '.join(labels[: len(eeg)])}: {err}") from None
    events = detect_adjustments(data, fs, stages=staged.stages)
    return DetectionReport(path, rec.start, data.shape[1] / fs, fs, labels, authorize(events, authorized),
                           staged.stages)
