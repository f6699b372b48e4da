"""Stream forgeries raise tampering alarms end to end: the emulated board, a forger between it and the host,
the real driver, the board's packet audit (ingest.integrity), the live session, the replayed capture and
``detect`` on the capture.

The Cyton is served on a pseudo-terminal, the Muse through bleak and the emulated radio; both as fast as
the driver reads (arrival times then say nothing of the device's clock, so timing is not judged), except
one Cyton served at its real pace with timing judged.
"""

import threading

import pytest

from dreamsync.detection import detect_file, stream_events
from dreamsync.pipeline import LiveSession
from firmware_sim import ble
from firmware_sim.adjustments import StreamForgery
from firmware_sim.adjustments.stream import CYTON, MUSE, chain, per_characteristic
from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
from firmware_sim.faults import FaultSpec, PacketFaults
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.protocols import muse as mufw
from firmware_sim.protocols.cyton import CytonFirmware
from firmware_sim.serial_pty import PtySerialServer
from ingest.boards.cyton import CytonBoard
from ingest.boards.muse import MuseBoard
from ingest.integrity import WHATS, StreamAnomaly
from ingest.replay import CaptureReplay
from test_integrity import Delayed  # a packet filter applied only from the 64th packet on

#: Ordinary link faults: loss, duplicates, reordering (never an alarm).
FAULTS = FaultSpec(loss=0.01, duplicate=0.01, reorder=0.02)
STREAM_WHATS = tuple(f"{what}: " for what in WHATS)


@pytest.fixture(autouse=True)
def empty_registry():
    yield
    ble.clear_registry()


def live(device, seconds):
    """Run a live session on ``device`` for ``seconds`` of signal; returns the summary and, per alarm, the
    stream time (s) it was raised at."""
    raised_at = []
    timer = threading.Timer(60.0, device.stop)  # a failing driver must not hang the suite
    timer.start()
    try:
        with device:
            session = LiveSession(device, duration=seconds,
                                  on_adjustment=lambda event, ok: raised_at.append(session.summary.samples / device.fs))
            summary = session.run()
    finally:
        timer.cancel()
    return summary, raised_at


def stream_alarms(summary):
    return [e for e, ok in summary.adjustments if e.kind == "tampering" and e.evidence.startswith(STREAM_WHATS)]


def serve_cyton(tmp_path, forger, realtime=False, seconds=40.0):
    source = SimulatedHeadband("cyton", hours=seconds / 3600 + 0.01, seed=4, fs=250)
    faults = Delayed(PacketFaults(FAULTS, seed=4))
    firmware = CytonFirmware(source, packet_filter=chain(forger, faults) if forger else faults)
    with PtySerialServer(firmware, realtime=realtime) as server:
        board = CytonBoard(server.port, capture=tmp_path / "cyton.dsraw")
        if not realtime:
            board.audit_options = {"check_timing": False}
        summary, raised_at = live(board, seconds)
    return summary, raised_at, board


def test_stream_events_carry_what_and_evidence():
    anomaly = StreamAnomaly(12.5, 3.0, "resequence", "a block of 0.25 s delivered after later ones", 0.8)
    (event,) = stream_events([anomaly])
    assert (event.onset, event.duration, event.kind, event.score) == (12.5, 3.0, "tampering", 0.8)
    assert event.evidence == "resequence: a block of 0.25 s delivered after later ones"


def test_cyton_over_a_pty_replayed_packets_raise_a_live_alarm_capture_and_detect_agree(tmp_path):
    """10 s of packets from 20 s on replaced by those sent 15 s earlier, old sequence numbers and all."""
    forger = StreamForgery("replay", **CYTON, onset_s=20.0, duration_s=10.0, source_back_s=15.0)
    summary, raised_at, board = serve_cyton(tmp_path, forger)
    onset = forger.truth[0]["onset"]
    alarms = stream_alarms(summary)
    assert len(alarms) == 1, summary.adjustments
    assert abs(alarms[0].onset - onset) <= 1.0 and alarms[0].score >= 0.5
    index = [e for e, _ in summary.adjustments].index(alarms[0])
    assert raised_at[index] - onset <= 10.0  # live: raised within 10 s of stream time
    assert [a.what for a in board.stream_anomalies] == [alarms[0].evidence.split(":")[0]]

    # the capture replayed as a device raises the same alarm, and detect on it reports it
    replayed, _ = live(CaptureReplay(tmp_path / "cyton.dsraw"), 40.0)
    again = stream_alarms(replayed)
    assert len(again) == 1 and abs(again[0].onset - alarms[0].onset) <= 0.1
    report = detect_file(str(tmp_path / "cyton.dsraw"))
    found = [e for e, ok in report.events if e.evidence.startswith(STREAM_WHATS)]
    assert len(found) == 1 and abs(found[0].onset - onset) <= 1.0 and found[0] in report.alarms
    assert report.to_json()["recording"].endswith("cyton.dsraw")


def test_cyton_over_a_pty_with_link_faults_only_raises_no_stream_alarm(tmp_path):
    summary, _, board = serve_cyton(tmp_path, None)
    assert summary.samples >= 250 * 39
    assert stream_alarms(summary) == [] and board.stream_anomalies == []
    assert [e for e, ok in detect_file(str(tmp_path / "cyton.dsraw")).events if e.kind == "tampering"] == []


def test_cyton_in_real_time_slowed_delivery_raises_a_timing_alarm(tmp_path):
    """At the board's real pace, with timing judged: from 4 s, 2 s of stream arrive at half the rate."""
    forger = StreamForgery("warp", **CYTON, onset_s=4.0, duration_s=2.0, factor=0.5)
    summary, raised_at, _ = serve_cyton(tmp_path, forger, realtime=True, seconds=7.0)
    alarms = stream_alarms(summary)
    assert len(alarms) == 1, summary.adjustments
    assert alarms[0].evidence.split(":")[0] in ("time-warp", "clock-jump") and abs(alarms[0].onset - 4.0) <= 0.6


@pytest.mark.parametrize("forge", [True, False], ids=["resequenced", "faults-only"])
def test_muse_through_bleak_resequenced_packets_raise_a_live_alarm(forge, tmp_path):
    """A Muse S through bleak and the emulated radio: from 10 s, every two 1-s blocks of packets are swapped."""
    source = SimulatedHeadband("muse-s", hours=0.02, seed=2, fs=256)
    faults = {u: Delayed(PacketFaults(FAULTS, seed=i)) for i, u in enumerate(mufw.EEG_UUIDS)}
    forgers = per_characteristic(mufw.EEG_UUIDS, mode="resequence", **MUSE, onset_s=10.0, duration_s=6.0,
                                 block_s=1.0)
    filters = {u: chain(forgers[u], faults[u]) if forge else faults[u] for u in mufw.EEG_UUIDS}
    firmware = mufw.MuseFirmware(source, model="muses", keepalive_timeout_s=None)
    with EmulatedDevice(firmware, realtime=False, packet_filter=filters) as device:
        board = MuseBoard(name=device.name, scan_timeout=2.0, backend=EmulatedBackend, scanner_backend=EmulatedScanner)
        board.audit_options = {"check_timing": False}
        summary, raised_at = live(board, 25.0)
    alarms = stream_alarms(summary)
    if not forge:
        assert alarms == []
        return
    assert len(alarms) == 1 and alarms[0].evidence.startswith("resequence: "), summary.adjustments
    assert abs(alarms[0].onset - 10.0) <= 1.0
    index = [e for e, _ in summary.adjustments].index(alarms[0])
    assert raised_at[index] - 10.0 <= 10.0
