"""`dreamsync detect` end to end: simulated nights with and without injected adjustments, consent, bad input."""

import json

import pytest

from conftest import run_cli


def overlaps(event, truth):
    return event["onset"] < truth["onset"] + truth["duration"] and truth["onset"] < event["onset"] + event["duration"]


@pytest.fixture(scope="module")
def stimulated(tmp_path_factory):
    """A 1.5-h simulated night with slow-oscillatory tACS and a 40-Hz steady-state response in NREM."""
    folder = tmp_path_factory.mktemp("detect")
    edf = folder / "night.edf"
    res = run_cli("simulate", "--hours", "1.5", "--seed", "5", "--inject", "electrical,entrainment",
                  "--faults", "loss=0.002", "--out", edf)
    assert res.returncode == 0, res.stderr
    truth = json.loads(edf.with_suffix(".truth.json").read_text())["adjustments"]
    assert {t["kind"] for t in truth} == {"electrical", "entrainment"}
    return edf, truth


def test_detect_finds_each_injected_kind_and_writes_the_contract(stimulated, tmp_path):
    edf, truth = stimulated
    out = tmp_path / "events.json"
    res = run_cli("detect", edf, "--out", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    events = doc["events"]
    for t in truth:
        assert any(e["kind"] == t["kind"] and overlaps(e, t) for e in events), (t, events)
    for e in events:
        assert set(e) >= {"onset", "duration", "kind", "score", "evidence", "authorized"}
        assert 0 <= e["score"] <= 1 and e["duration"] > 0 and e["evidence"] and e["authorized"] is False
        assert any(overlaps(e, t) for t in truth), f"false alarm: {e}"
    assert doc["alarms"] == len(events)
    assert res.stdout.count("ALARM") == len(events)


def test_consented_adjustments_raise_no_alarm(stimulated, tmp_path):
    edf, truth = stimulated
    electrical = [t for t in truth if t["kind"] == "electrical"]
    consent = tmp_path / "consent.json"
    consent.write_text(json.dumps({"authorized": [
        {"kind": "electrical", "start": t["onset"], "end": t["onset"] + t["duration"]} for t in electrical]}))
    out = tmp_path / "events.json"
    res = run_cli("detect", edf, "--authorized", consent, "--out", out)
    assert res.returncode == 0, res.stderr
    events = json.loads(out.read_text())["events"]
    assert all(e["authorized"] for e in events if e["kind"] == "electrical")
    assert any(e["kind"] == "electrical" for e in events)
    assert not any(e["authorized"] for e in events if e["kind"] != "electrical")


def test_a_clean_night_raises_no_alarm(tmp_path):
    edf = tmp_path / "clean.edf"
    assert run_cli("simulate", "--hours", "1", "--seed", "11", "--faults", "loss=0.002", "--out", edf).returncode == 0
    res = run_cli("detect", edf, "--out", tmp_path / "events.json")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "events.json").read_text())["events"] == []


@pytest.mark.parametrize("content, message", [("{nope", "not JSON"),
                                               ('[{"kind": "magnetic", "start": 0, "end": 5}]', "unknown kind")])
def test_a_bad_consent_file_is_one_line_and_exit_2(stimulated, tmp_path, content, message):
    consent = tmp_path / "consent.json"
    consent.write_text(content)
    res = run_cli("detect", stimulated[0], "--authorized", consent)
    assert res.returncode == 2 and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_missing_or_truncated_recording_is_one_line_and_exit_2(stimulated, tmp_path):
    res = run_cli("detect", tmp_path / "nothing.edf")
    assert res.returncode == 2 and "no such file" in res.stderr
    cut = tmp_path / "cut.edf"
    data = stimulated[0].read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    res = run_cli("detect", cut)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_replay_prints_an_alarm_line_as_the_adjustment_is_found(stimulated):
    edf, truth = stimulated
    res = run_cli("replay", edf, "--speed", "max", "--quiet")
    assert res.returncode == 0, res.stderr
    alarms = [line for line in res.stdout.splitlines() if line.startswith("ALARM")]
    assert {line.split()[2] for line in alarms} == {"electrical", "entrainment"}
    assert "adjustments: " in res.stdout and f"{len(alarms)} alarm(s)" in res.stdout
