"""The DreamSync audit: device log, consent and signal reconciled, end to end through the emulated BLE band.

Every night here is recorded as a user would: the emulated band served through bleak, read by the real
driver, written to EDF+ with its adjustment log beside it (in-process with the pipeline, or with the
``dreamsync`` command in a subprocess), then audited from the files.
"""

import datetime as dt
import json

import pytest

from conftest import run_cli
from dreamsync.audit import (EXIT_VIOLATIONS, LiveAudit, audit_file, audit_html, audit_section, log_path_for,
                             reconcile, save_adjustment_log)
from dreamsync.authorization import AuthorizedWindow
from dreamsync.band import BandScenario, parse_optout, parse_plan, parse_rogue
from dsp.events import AdjustmentEvent
from firmware_sim import ble

MINUTES = 8
#: Detector onsets against the device's log times: electrical and 40-Hz lines are found within seconds.
ONSET_TOLERANCE_S = 20.0


@pytest.fixture(autouse=True, scope="module")
def empty_registry():
    yield
    ble.clear_registry()


def record_night(path, scenario, seed):
    """Record an emulated DreamSync night through the BLE driver; returns (edf, the band's truth)."""
    from dreamsync.band import emulated_dreamsync
    from dreamsync.pipeline import record

    board = emulated_dreamsync(scenario, speed=0.0, hours=MINUTES / 60, seed=seed)
    summary = record(board, str(path))
    assert summary.samples_lost == 0 and board.log_document is not None
    save_adjustment_log(board.log_document, str(path))
    return str(path), board.emulator.firmware.truth


def consent(path, *windows):
    path.write_text(json.dumps({"authorized": [{"kind": k, "start": a, "end": b} for k, a, b in windows]}))
    return str(path)


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """Honest firmware: a consented vendor tACS, the sleeper's own 40-Hz sound, then an opt-out that
    makes the band refuse the vendor's next request."""
    folder = tmp_path_factory.mktemp("honest")
    scenario = BandScenario(vendor_plan=parse_plan("current@1m/2m/12/4,current@6m30s/1m/12/4"),
                            sleeper_plan=parse_plan("audio-rhythm@3m30s/1m30s/40/2"), optout=parse_optout("5m30s"))
    edf, truth = record_night(folder / "night.edf", scenario, seed=3)
    return edf, truth, consent(folder / "consent.json", ("electrical", 0, 240))


@pytest.fixture(scope="module")
def ignoring(tmp_path_factory):
    """Rogue firmware that goes on with vendor adjustments after the opt-out (and logs them)."""
    folder = tmp_path_factory.mktemp("ignoring")
    scenario = BandScenario(vendor_plan=parse_plan("current@4m/2m/40/3"), optout=parse_optout("1m"),
                            rogue=parse_rogue("ignore-optout"))
    edf, truth = record_night(folder / "night.edf", scenario, seed=5)
    # the sleeper even consented to stimulation then; the opt-out still wins
    return edf, truth, consent(folder / "consent.json", ("electrical", 0, 600))


def test_honest_firmware_with_consent_gives_a_clean_audit(honest):
    edf, truth, authorized = honest
    result = audit_file(edf, authorized=authorized)
    assert result.log.intact and result.clean, result.table()
    statuses = [(r.kind, r.source, r.status) for r in result.rows]
    assert statuses == [("electrical", "vendor", "consented"), ("entrainment", "sleeper", "consented"),
                        ("electrical", "vendor", "refused")]
    assert [t["origin"] for t in truth] == ["vendor", "sleeper"]  # the refused one was never performed
    for row, done in zip(result.rows, truth):
        assert row.detected and row.onset == pytest.approx(done["onset"], abs=0.01)
    assert len(result.optout) == 1 and result.optout[0][1] is None
    assert result.optout[0][0] == pytest.approx(330, abs=15)  # the host's opt-out, within the band's lead
    doc = audit_section(result)
    assert json.loads(json.dumps(doc)) == doc and doc["clean"] and doc["counts"]["consented"] == 2
    assert "clean" in result.table().splitlines()[-1]
    html = audit_html(result)
    assert html.count("<tr>") == 1 + len(result.rows) and "hash chain intact" in html and "refused" in html


def test_without_consent_the_vendors_adjustment_is_reported(honest):
    edf, _, _ = honest
    result = audit_file(edf)
    assert [r.status for r in result.rows if r.source == "vendor"] == ["unconsented", "refused"]
    assert not result.clean


def test_a_tampered_log_is_reported_as_tampered(honest, tmp_path):
    edf, _, authorized = honest
    doc = json.loads(open(log_path_for(edf)).read())
    entry = bytearray.fromhex(doc["entries"][0])
    entry[16] = 1  # the vendor's current said to be 0.1 uV
    doc["entries"][0] = entry.hex()
    forged = tmp_path / "forged.adjustments.json"
    forged.write_text(json.dumps(doc))
    result = audit_file(edf, authorized=authorized, log=str(forged))
    assert not result.log.intact and not result.clean
    assert any(p.startswith("entry 0: hash") for p in result.log.problems)
    assert any("differs from the copy notified live" in p for p in result.log.problems)
    assert "TAMPERED" in result.table() and audit_section(result)["log"]["tampered"]


def test_an_optout_violation_is_reported(ignoring):
    edf, truth, authorized = ignoring
    result = audit_file(edf, authorized=authorized)
    assert result.log.intact and not result.clean
    violations = result.optout_violations
    assert [(r.kind, r.source, r.status, r.logged, r.detected) for r in violations] == [
        ("electrical", "vendor", "optout-violation", True, True)]
    assert violations[0].onset == pytest.approx(truth[0]["onset"], abs=0.01) and truth[0]["during_optout"]
    assert audit_section(result)["counts"]["optout_violations"] == 1


# == the command line, through the emulated BLE link =================================================
@pytest.fixture(scope="module")
def covert_cli(tmp_path_factory):
    """``dreamsync record --device dreamsync`` with rogue firmware doing two covert adjustments."""
    folder = tmp_path_factory.mktemp("covert")
    edf = folder / "night.edf"
    res = run_cli("record", "--device", "dreamsync", "--hours", MINUTES / 60, "--speed", "max", "--seed", "7",
                  "--vendor-plan", "current@1m30s/2m/12/4,audio-rhythm@5m/2m/40/2",
                  "--sleeper-plan", "light-flicker@3m30s/1m/40/3", "--rogue", "covert", "--out", edf)
    assert res.returncode == 0, res.stderr
    assert (folder / "night.adjustments.json").exists() and (folder / "night.dsraw").exists()
    return edf, res


def test_record_saves_the_log_read_over_ble(covert_cli):
    edf, res = covert_cli
    assert "adjustment log: 1 entries read from DS1-000127" in res.stdout
    doc = json.loads(open(log_path_for(str(edf))).read())
    assert doc["format"] == "dreamsync-adjustment-log/1" and doc["first_tick"] == 0 and len(doc["live"]) == 1


def test_covert_adjustments_are_reported_as_covert_with_their_times(covert_cli, tmp_path):
    edf, _ = covert_cli
    out = tmp_path / "audit.json"
    res = run_cli("audit", edf, "--out", out)
    assert res.returncode == EXIT_VIOLATIONS, res.stderr
    assert "COVERT" in res.stdout and "summary: " in res.stdout
    doc = json.loads(out.read_text())
    covert = [r for r in doc["rows"] if r["status"] == "covert"]
    assert [r["kind"] for r in covert] == ["electrical", "entrainment"]
    for row, planned in zip(covert, (90.0, 300.0)):
        assert row["onset"] == pytest.approx(planned, abs=ONSET_TOLERANCE_S) and not row["logged"]
        assert row["source"] == "unknown" and dt.datetime.fromisoformat(row["clock"])
    sleeper = [r for r in doc["rows"] if r["source"] == "sleeper"]
    assert len(sleeper) == 1 and sleeper[0]["logged"]
    assert doc["log"]["intact"] and not doc["clean"]


def test_the_nights_report_has_the_audit_section(covert_cli, tmp_path):
    edf, _ = covert_cli
    out = tmp_path / "report.html"
    res = run_cli("report", edf, "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert "DreamSync audit" in page and "hash chain intact" in page
    assert page.count(">covert<") == 2  # the two covert rows of the audit table


def test_audit_json_on_stdout_and_bad_input(covert_cli, tmp_path):
    edf, _ = covert_cli
    res = run_cli("audit", edf, "--json")
    assert res.returncode == EXIT_VIOLATIONS and json.loads(res.stdout)["counts"]["covert"] == 2
    lonely = tmp_path / "lonely.edf"
    lonely.write_bytes(open(edf, "rb").read())
    res = run_cli("audit", lonely)
    assert res.returncode == 2 and "no adjustment log" in res.stderr and res.stderr.count("\n") == 1


def test_cli_options_of_the_emulated_band_are_checked():
    res = run_cli("record", "--device", "dreamsync", "--vendor-plan", "laser@1m/1m", "--out", "x.edf")
    assert res.returncode == 2 and "unknown actuator 'laser'" in res.stderr
    res = run_cli("record", "--device", "dreamsync", "--rogue", "sneaky", "--out", "x.edf")
    assert res.returncode == 2 and "unknown rogue mode sneaky" in res.stderr
    res = run_cli("audit", "--help")
    assert res.returncode == 0 and "example" in res.stdout and "4 violations" in res.stdout


def test_live_raises_the_audit_alarms_as_they_happen():
    res = run_cli("live", "--device", "dreamsync", "--speed", "max", "--hours", 6 / 60, "--plain", "--quiet",
                  "--no-record", "--optout", "1m", "--rogue", "ignore-optout,erase-log",
                  "--vendor-plan", "current@3m/2m/12/4")
    assert res.returncode == 0, res.stderr
    audit_lines = [line for line in res.stdout.splitlines() if line.startswith("AUDIT")]
    assert len(audit_lines) == 2 and "OPTOUT-VIOLATION: vendor current" in audit_lines[0]
    assert "log is TAMPERED: entry 1 was notified live but is missing" in audit_lines[1]  # found at the end


# == reconciliation rules, on their own ==============================================================
def _document(entries, journal=(), serial="DS1-TEST"):
    """A log document with a valid chain over ``entries`` ((tick, event, actuator, origin, duration), ...)."""
    import hashlib
    import struct

    head = hashlib.sha256(b"dreamsync-log-v1:" + serial.encode()).digest()
    raw = []
    for i, (tick, event, actuator, origin, duration) in enumerate(entries):
        body = struct.pack("<IIBBBBHHH", i, tick, event, actuator, origin, 0, duration, 1200, 40)
        head = hashlib.sha256(head + body).digest()
        raw.append((body + head).hex())
    return {"device": {"serial": serial}, "first_tick": 2500, "tick_hz": 250.0, "entries": raw, "head": head.hex(),
            "live": raw, "journal": list(journal)}


def test_reconcile_matches_by_kind_and_time_and_names_each_status():
    doc = _document([(2500 + 100 * 250, 1, 5, 1, 120),    # vendor current at 100 s: detected, consented
                     (2500 + 400 * 250, 1, 4, 0, 60),     # sleeper flicker at 400 s: nothing detected
                     (2500 + 700 * 250, 1, 5, 1, 60)],    # vendor current at 700 s, no consent
                    journal=[{"command": "optout_on", "status": "ok", "tick": 2500 + 650 * 250}])
    detected = [AdjustmentEvent(104.0, 110.0, "electrical", 0.9, "line at 12 Hz"),
                AdjustmentEvent(402.0, 50.0, "auditory", 0.8, "evoked series"),   # wrong kind: not the flicker
                AdjustmentEvent(702.0, 50.0, "electrical", 0.9, "line at 12 Hz")]
    result = reconcile(doc, detected, [AuthorizedWindow("electrical", 60, 300)])
    assert [(r.onset, r.kind, r.source, r.status) for r in result.rows] == [
        (100.0, "electrical", "vendor", "consented"), (400.0, "entrainment", "sleeper", "no-trace"),
        (402.0, "auditory", "unknown", "covert"), (700.0, "electrical", "vendor", "optout-violation")]
    assert result.optout == [(650.0, None)] and not result.clean and len(result.optout_violations) == 1


def test_live_audit_alarms_once_for_unlogged_detections_and_logged_violations():
    doc = _document([(2500 + 10 * 250, 2, 0, 0, 0), (2500 + 100 * 250, 1, 5, 1, 60)])
    live = [bytes.fromhex(e) for e in doc["entries"]]
    audit = LiveAudit([AuthorizedWindow("electrical", 0, 1000)])
    assert audit.update(live[:1], 2500, 30.0) == []  # the opt-out itself raises nothing
    alarms = audit.update(live, 2500, 120.0)
    assert [(a.status, a.source) for a in alarms] == [("optout-violation", "vendor")]
    audit.detection(AdjustmentEvent(101.0, 30.0, "electrical", 0.9, "line"))  # accounted for by the log
    audit.detection(AdjustmentEvent(300.0, 30.0, "entrainment", 0.9, "line at 40 Hz"))
    assert audit.update(live, 2500, 340.0) == []  # still within the tolerance
    late = audit.update(live, 2500, 400.0)
    assert [(a.status, a.kind, a.during_optout) for a in late] == [("covert", "entrainment", True)]
    assert audit.update(live, 2500, 1000.0) == [] and len(audit.alarms) == 2
