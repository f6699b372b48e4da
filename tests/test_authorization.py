"""Consent windows: reading the sleeper's file, and splitting flagged events into authorized parts and alarms."""

import datetime as dt
import json

import pytest

from dreamsync.authorization import AuthorizedWindow, authorize, event_json, load_authorized
from dsp.events import AdjustmentEvent

START = dt.datetime(2026, 11, 21, 23, 0, 0)


def write(tmp_path, doc):
    path = tmp_path / "consent.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_windows_in_seconds_clock_times_across_midnight_and_iso(tmp_path):
    path = write(tmp_path, {"authorized": [
        {"kind": "auditory", "start": "23:30", "end": "01:00", "note": "study"},
        {"kind": "entrainment", "start": 0, "end": 1800},
        {"kind": "any", "start": "2026-11-22T02:00:00", "end": "2026-11-22T02:10:00"},
        {"kind": "Electrical", "start": "00:30", "end": "00:45:30"}]})
    w = load_authorized(path, START)
    assert w[0] == AuthorizedWindow("auditory", 1800.0, 7200.0, "study")
    assert (w[1].start, w[1].end) == (0.0, 1800.0)
    assert (w[2].kind, w[2].start, w[2].end) == ("any", 3 * 3600.0, 3 * 3600.0 + 600)
    assert (w[3].kind, w[3].start, w[3].end) == ("electrical", 5400.0, 6330.0)
    assert load_authorized(write(tmp_path, [{"kind": "tampering", "start": 5, "end": 6}]), None)[0].end == 6.0


@pytest.mark.parametrize("doc, message", [
    ({"authorized": [{"kind": "magnetic", "start": 0, "end": 1}]}, "unknown kind"),
    ({"authorized": [{"kind": "auditory", "start": 10, "end": 5}]}, "ends before it starts"),
    ({"authorized": [{"kind": "auditory", "start": "25:00", "end": "26:00"}]}, "not a clock time"),
    ({"authorized": [{"kind": "auditory", "start": "soon", "end": 5}]}, "not a time"),
    ({"authorized": [{"kind": "auditory", "start": 0}]}, "needs kind, start and end"),
    ({"windows": []}, "expected a list"),
])
def test_bad_files_give_one_line_saying_where(tmp_path, doc, message):
    path = write(tmp_path, doc)
    with pytest.raises(ValueError, match=message) as err:
        load_authorized(path, START)
    assert "\n" not in str(err.value) and str(err.value).startswith(path)


def test_clock_times_need_a_recording_start(tmp_path):
    with pytest.raises(ValueError, match="no start time"):
        load_authorized(write(tmp_path, [{"kind": "auditory", "start": "23:30", "end": "23:40"}]), None)


def test_not_json_is_reported(tmp_path):
    path = tmp_path / "consent.json"
    path.write_text("{kind: auditory")
    with pytest.raises(ValueError, match="not JSON"):
        load_authorized(str(path), START)


def test_consent_covers_only_its_kind_and_window():
    event = AdjustmentEvent(1000.0, 3000.0, "auditory", 0.97, "142 evoked responses")
    windows = [AuthorizedWindow("auditory", 1000.0, 2000.0), AuthorizedWindow("electrical", 0.0, 1e5)]
    parts = authorize([event], windows, tolerance_s=60.0)
    assert [(e.onset, e.end, ok) for e, ok in parts] == [(1000.0, 2060.0, True), (2060.0, 4000.0, False)]
    assert all(e.evidence == event.evidence and e.kind == "auditory" for e, _ in parts)
    inside = AdjustmentEvent(1010.0, 100.0, "auditory", 0.9, "x")
    assert authorize([inside], windows) == [(inside, True)]
    other = AdjustmentEvent(1010.0, 100.0, "tampering", 0.9, "x")
    assert authorize([other], windows) == [(other, False)]
    anything = authorize([other], [AuthorizedWindow("any", 900.0, 1200.0)])
    assert [ok for _, ok in anything] == [True]


def test_event_json_has_the_contract_fields():
    e = AdjustmentEvent(12.3456, 30.0, "electrical", 0.91234, "line at 12 Hz", channels=(1,), frequency_hz=12.0)
    doc = event_json(e, False, ["EEG C3", "EEG Fpz"])
    assert doc == {"onset": 12.346, "duration": 30.0, "kind": "electrical", "score": 0.9123,
                   "evidence": "line at 12 Hz", "authorized": False, "frequency_hz": 12.0, "channels": ["EEG Fpz"]}
