"""Adjustments the sleeper consented to, and which flagged events they cover.

The sleeper (or their clinician) lists what may be done to their sleep in a JSON file::

    {"authorized": [
        {"kind": "auditory", "start": "23:30", "end": "02:00", "note": "closed-loop study night"},
        {"kind": "entrainment", "start": 0, "end": 1800},
        {"kind": "electrical", "start": "2026-11-21T23:40:00", "end": "2026-11-22T00:20:00"}
    ]}

(a plain list of windows works too). ``start``/``end`` are seconds from the recording's start
(numbers), clock times ``"HH:MM[:SS]"`` (taken within 12 h of the recording's start, so a window
may cross midnight), or ISO date-times. ``kind`` is one of the adjustment kinds or ``"any"``.

An event is authorized only where a window of its kind covers it: the part of a flagged episode
outside every window (beyond a small tolerance for detector timing) stays an alarm, so a consent for
half an hour of sound cannot hide a night of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass

from dsp.events import KINDS, AdjustmentEvent

#: Slack in s around each window for detector timing (onsets are found within seconds, evoked
#: series within a minute of their start).
TOLERANCE_S = 60.0


@dataclass(frozen=True)
class AuthorizedWindow:
    """One consented adjustment: kind (or ``"any"``) and time window in s from the recording's start."""

    kind: str
    start: float
    end: float
    note: str = ""

    def covers(self, kind: str) -> bool:
        """Whether the window is for adjustments of ``kind``."""
        return self.kind in ("any", kind)


def load_authorized(path: str, recording_start: dt.datetime | None) -> list:
    """Read an authorization file.

    Parameters
    ----------
    path : str
        JSON file as described in this module's docstring.
    recording_start : datetime or None
        Clock time of the recording's first sample; needed when windows are given as clock times.

    Returns
    -------
    list of AuthorizedWindow

    Raises
    ------
    ValueError
        One line saying what is wrong and where (unreadable JSON, unknown kind, bad time, end
        before start, clock times for a recording without a start time).
    """
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    items = doc.get("authorized") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of windows or {{\"authorized\": [...]}}")
    windows = []
    for n, item in enumerate(items, 1):
        where = f"{path}: window {n}"
        if not isinstance(item, dict) or not {"kind", "start", "end"} <= item.keys():
            raise ValueError(f"{where}: needs kind, start and end")
        kind = str(item["kind"]).strip().lower()
        if kind not in KINDS + ("any",):
            raise ValueError(f"{where}: unknown kind {item['kind']!r} (known: {', '.join(KINDS)}, any)")
        start = _seconds(item["start"], recording_start, where)
        end = _seconds(item["end"], recording_start, where)
        if isinstance(item["end"], str) and _CLOCK.fullmatch(item["end"].strip()) and end <= start:
            end += 86400.0  # "23:30" to "01:00" crosses midnight
        if not end > start:
            raise ValueError(f"{where}: ends before it starts")
        windows.append(AuthorizedWindow(kind, start, end, str(item.get("note", ""))))
    return windows


_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?")


def _seconds(value, recording_start: dt.datetime | None, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    clock = _CLOCK.fullmatch(text)
    try:
        moment = None if clock else dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{where}: not a time: {value!r} (seconds, HH:MM[:SS] or an ISO date-time)") from None
    if recording_start is None:
        raise ValueError(f"{where}: clock time {text!r} but the recording has no start time; give seconds")
    if clock:
        h, m, s = int(clock.group(1)), int(clock.group(2)), float(clock.group(3) or 0)
        if h > 23 or m > 59 or s >= 60:
            raise ValueError(f"{where}: not a clock time: {text!r}")
        moment = dt.datetime.combine(recording_start.date(), dt.time(h, m)) + dt.timedelta(seconds=s)
        # the occurrence within 12 h of the start: 00:30 after a 23:00 start is the next day
        if moment - recording_start < dt.timedelta(hours=-12):
            moment += dt.timedelta(days=1)
        elif moment - recording_start >= dt.timedelta(hours=12):
            moment -= dt.timedelta(days=1)
    elif moment.tzinfo is not None and recording_start.tzinfo is None:
        moment = moment.replace(tzinfo=None)
    return (moment - recording_start).total_seconds()


def authorize(events, windows, tolerance_s: float = TOLERANCE_S) -> list:
    """Split flagged events into the parts the sleeper consented to and the rest.

    Parameters
    ----------
    events : sequence of AdjustmentEvent
        Flagged episodes.
    windows : sequence of AuthorizedWindow
        Consented adjustments.
    tolerance_s : float
        Slack added at both ends of every window, in s.

    Returns
    -------
    list of (AdjustmentEvent, bool)
        Every flagged stretch with whether it is authorized, by onset. A part outside every
        matching window remains an alarm of its own (same kind, score and evidence).
    """
    out = []
    for event in events:
        spans = sorted((max(w.start - tolerance_s, event.onset), min(w.end + tolerance_s, event.end))
                       for w in windows if w.covers(event.kind) and event.overlaps(w.start - tolerance_s,
                                                                                   w.end + tolerance_s))
        t = event.onset
        for a, b in spans:
            if a > t:
                out.append((dataclasses.replace(event, onset=t, duration=a - t), False))
            if b > max(a, t):
                out.append((dataclasses.replace(event, onset=max(a, t), duration=b - max(a, t)), True))
            t = max(t, b)
        if event.end > t:
            out.append((dataclasses.replace(event, onset=t, duration=event.end - t), False))
    return sorted(out, key=lambda pair: (pair[0].onset, pair[0].kind))


def event_json(event: AdjustmentEvent, authorized: bool, labels=None) -> dict:
    """An event as written by ``dreamsync detect``: onset/duration in s, kind, score, evidence, authorized."""
    doc = {"onset": round(event.onset, 3), "duration": round(event.duration, 3), "kind": event.kind,
           "score": round(float(event.score), 4), "evidence": event.evidence, "authorized": bool(authorized)}
    if event.frequency_hz is not None:
        doc["frequency_hz"] = round(float(event.frequency_hz), 4)
    if labels is not None and event.channels:
        doc["channels"] = [labels[i] for i in event.channels]
    return doc
