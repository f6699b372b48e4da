"""Stream-level tampering: the audit of packet counters and arrival times (ingest.integrity) against the
stream forger (firmware_sim.adjustments.stream), through the emulated firmware and the real decoders.

Most tests run the firmware emulators in virtual time (the host's arrival times drawn from a latency
model, so minutes of stream take a second); the end-to-end ones go through the pseudo-terminal and the
emulated BLE radio with the real board drivers and audit the raw capture they wrote.
"""

import threading

import numpy as np
import pytest

from firmware_sim import ble
from firmware_sim.adjustments.stream import (CYTON, GANGLION, MUSE, SequenceField, StreamForgery, chain,
                                             per_characteristic)
from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
from firmware_sim.faults import FaultSpec, PacketFaults
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.protocols import ganglion as ggfw
from firmware_sim.protocols import muse as mufw
from firmware_sim.protocols.cyton import CytonFirmware, encode_packets
from firmware_sim.serial_pty import PtySerialServer
from ingest.boards import ganglion as gg
from ingest.boards import muse as mu
from ingest.boards.cyton import CytonBoard, CytonDecoder
from ingest.integrity import (WHATS, DecoderAudit, StreamAnomaly, StreamAudit, audit_capture, fingerprint,
                              fingerprints, merge_anomalies)

#: Ordinary link faults at the rates the driver tests use: loss, short bursts, duplicates, reordering.
CLEAN = FaultSpec(loss=0.01, burst=0.004, burst_packets=4, duplicate=0.01, reorder=0.02)
EMULATED = {"backend": EmulatedBackend, "scanner_backend": EmulatedScanner}


@pytest.fixture(autouse=True)
def empty_registry():
    yield
    ble.clear_registry()


# == virtual-time harness ==============================================================================
class Arrivals:
    """Host arrival times: the device time a batch left + 1 ms + exponential latency, never earlier
    than the batch before; host stalls (0.1-1.5 s, every ``stall_every`` s on average) delay a backlog."""

    def __init__(self, seed, jitter, stall_every=0.0):
        self.rng, self.jitter, self.stall_every = np.random.default_rng(seed), jitter, stall_every
        self.last = self.free = 0.0

    def __call__(self, t_device, dt):
        t = t_device + 0.001 + self.rng.exponential(self.jitter)
        if self.stall_every and self.rng.random() < dt / self.stall_every:
            self.free = t + self.rng.uniform(0.1, 1.5)
        self.last = max(t, self.free, self.last)
        return 1.7e9 + self.last


class Delayed:
    """Apply ``inner`` from packet ``after`` on (a loss in the very first chunk upsets the board's clock)."""

    def __init__(self, inner, after=64):
        self.inner, self.after, self.seen = inner, after, 0

    def __call__(self, batch):
        head = max(0, min(len(batch), self.after - self.seen))
        self.seen += len(batch)
        return list(batch[:head]) + (list(self.inner(batch[head:])) if head < len(batch) else [])


def run_cyton(seconds, packet_filter=None, seed=0, drift=0.0, stall_every=0.0, restart_at=None):
    """A Cyton streaming ``seconds`` in virtual time through ``packet_filter``, decoded and audited.

    Returns the anomalies and ``[(device time raised, anomaly), ...]`` (the live alarms)."""
    fw = CytonFirmware(SimulatedHeadband("cyton", hours=seconds / 3600 + 0.01, seed=seed, fs=250),
                       packet_filter=packet_filter, rate_error=drift)
    fw.receive(b"b")
    decoder = CytonDecoder()
    audit = DecoderAudit(decoder)
    arrive = Arrivals(seed, 0.004, stall_every)
    raised, batch, t = [], 0.032, 0.0
    while t < seconds:
        if restart_at is not None and t < restart_at <= t + batch:  # the link drops for 3 s
            fw.receive(b"s")
            t += 3.0
            fw.receive(b"b")
            decoder.restart()
            audit.restart()
        t += batch
        data = fw.stream(seconds=batch)
        if data:
            audit.feed(data, 0, arrive(t, batch))
            raised += [(t, a) for a in audit.raised()]
    return audit.finish(), raised


def run_ble(kind, seconds, packet_filter=None, seed=0, drift=0.0, stall_every=0.0, restart_at=None):
    """A Muse or Ganglion (firmware 3) in virtual time: notifications through ``packet_filter`` (one
    callable, or one per characteristic as :class:`~firmware_sim.ble.EmulatedDevice` takes it), every
    20 ms of device time, decoded and audited."""
    hours = seconds / 3600 + 0.01
    if kind == "muse":
        fw = mufw.MuseFirmware(SimulatedHeadband("muse-s", hours=hours, seed=seed, fs=256), keepalive_timeout_s=None)
        start = lambda fw: fw.write(mufw.CONTROL_UUID, mufw.encode_command("d"))  # noqa: E731
        decoder, sources = mu.MuseDecoder(), [s.lower() for s in mu.SOURCES]
    else:
        fw = ggfw.GanglionFirmware(SimulatedHeadband("ganglion", hours=hours, seed=seed, fs=200), firmware=3)
        start = lambda fw: fw.write(ggfw.WRITE_UUID, b"b")  # noqa: E731
        decoder, sources = gg.GanglionDecoder(3), [s.lower() for s in gg.SOURCES]
    fw.connect()
    start(fw)
    audit = DecoderAudit(decoder)
    arrive = Arrivals(seed, 0.01, stall_every)
    raised, step, t = [], 0.02, 0.0
    while t < seconds:
        if restart_at is not None and t < restart_at <= t + step:  # the link drops for 3 s
            fw.disconnect()
            fw.advance(3.0)
            t += 3.0
            fw.connect()
            start(fw)
            decoder.restart()
            audit.restart()
        t += step
        by_uuid: dict = {}
        for when, uuid, payload in fw.advance(step * (1 + drift)):
            by_uuid.setdefault(uuid, []).append((when, payload))
        delivered = []
        for uuid, items in by_uuid.items():  # as the emulated radio does: filter per characteristic
            f = packet_filter.get(uuid) if isinstance(packet_filter, dict) else packet_filter
            payloads = [p for _, p in items] if f is None else list(f([p for _, p in items]))
            delivered += [(items[min(j, len(items) - 1)][0], len(delivered), uuid, p) for j, p in enumerate(payloads)]
        host_time = arrive(t, step)
        for _, _, uuid, payload in sorted(delivered):
            if uuid.lower() in sources:
                audit.feed(payload, sources.index(uuid.lower()), host_time)
        raised += [(t, a) for a in audit.raised()]
    return audit.finish(), raised


def forged(kind, **settings):
    """The forger(s) for ``kind`` after ordinary faults, and the truth log of the first."""
    if kind == "muse":
        forgers = per_characteristic(mufw.EEG_UUIDS, **MUSE, **settings)
        filters = {u: chain(forgers[u], Delayed(PacketFaults(CLEAN, seed=i))) for i, u in enumerate(mufw.EEG_UUIDS)}
        return filters, forgers[mufw.TP9_UUID].truth
    forger = StreamForgery(**(CYTON if kind == "cyton" else GANGLION), **settings)
    return chain(forger, Delayed(PacketFaults(CLEAN, seed=2))), forger.truth


def run(kind, seconds, packet_filter, **kw):
    return run_cyton(seconds, packet_filter, **kw) if kind == "cyton" else run_ble(kind, seconds, packet_filter, **kw)


# == building blocks ===================================================================================
def test_fingerprints_depend_on_every_byte_and_nothing_else():
    rng = np.random.default_rng(0)
    content = rng.integers(0, 256, (200, 31), dtype=np.uint8)
    h = fingerprints(content)
    assert h.dtype == np.uint64 and h.shape == (200,) and np.unique(h).size == 200
    assert np.array_equal(h, fingerprints(content.copy())) and fingerprints(content[7]) == h[7]
    assert [fingerprint(row) for row in content] == [int(x) for x in h]  # the scalar path agrees
    assert fingerprint(bytes(content[3, :19])) == int(fingerprints(content[3:4, :19])[0])
    for byte in range(31):  # one bit anywhere changes the hash
        changed = content[:1].copy()
        changed[0, byte] ^= 1
        assert fingerprints(changed)[0] != h[0]


def test_sequence_fields_renumber_within_their_ranges():
    cyton = encode_packets(np.zeros((3, 8), int), [254, 255, 0])
    field = CYTON["counter"]
    assert [field.number(cyton[i * 33:(i + 1) * 33]) for i in range(3)] == [254, 255, 0]
    assert field.number(field.renumber(cyton[:33], 300)) == 44 and field.renumber(cyton[:33], 254) == cyton[:33]
    g = GANGLION["counter"]
    assert g.number(bytes([150]) + bytes(19)) == 50 and g.number(bytes([205]) + bytes(19)) is None  # impedance
    assert g.renumber(bytes([150]) + bytes(19), 99)[0] == 199 and g.renumber(bytes([50]) + bytes(19), 101)[0] == 1
    m = MUSE["counter"]
    assert m.number(m.renumber(bytes(20), 0x1_0005)) == 5


def packets(n, field=SequenceField(0, 2, 0x10000)):
    return [field.renumber(bytes([0, 0]) + bytes([k % 256, k // 256 % 256]) * 9, k) for k in range(n)]


def test_forger_replays_resequences_and_warps_with_a_truth_log():
    rate = 100.0
    sent = packets(4000)
    field = MUSE["counter"]
    numbers = lambda out: [field.number(p) for p in out]  # noqa: E731

    replay = StreamForgery("replay", field, rate, onset_s=20, duration_s=5, source_back_s=10)
    out = [p for i in range(0, 4000, 7) for p in replay(sent[i:i + 7])]
    assert len(out) == 4000 and out[2000:2500] == sent[1000:1500] and out[:2000] == sent[:2000]
    assert replay.truth == [{"kind": "tampering", "onset": 20.0, "duration": 5.0, "params": {
        "layer": "stream", "mode": "replay", "first_packet": 2000, "packets": 500, "source_onset": 10.0,
        "source_duration": 5.0, "renumbered": False}}]
    renumbered = StreamForgery("replay", field, rate, onset_s=20, duration_s=5, source_back_s=10, renumber=True)
    out = renumbered(sent)
    assert numbers(out) == list(range(4000)) and out[2000][2:] == sent[1000][2:]

    swap = StreamForgery("resequence", field, rate, onset_s=10, duration_s=4, block_s=0.5)
    out = swap(sent)
    assert sorted(numbers(out)) == list(range(4000))
    assert numbers(out)[1000:1100] == list(range(1050, 1100)) + list(range(1000, 1050))

    slow = StreamForgery("warp", field, rate, onset_s=10, duration_s=10, factor=0.8)
    out = [p for i in range(0, 4000, 5) for p in slow(sent[i:i + 5])]
    assert numbers(out) == list(range(len(out))) and len(out) == 4000 - 250  # 12.5 s to send 10 s: 2.5 s behind
    assert slow.truth[0]["params"]["delivered_s"] == pytest.approx(12.5)

    fast = StreamForgery("warp", field, rate, onset_s=10, duration_s=10, factor=1.2)
    out = fast(sent)
    assert numbers(out) == list(range(4200)) and fast.truth[0]["duration"] == pytest.approx(12.0)
    copies = [j for j in range(1, len(out)) if out[j][2:] == out[j - 1][2:]]  # inserted copies, numbered on
    assert len(copies) == 200 and copies[0] == 1005 and copies[-1] < 1000 + 2400

    ganglion = StreamForgery("replay", GANGLION["counter"], 100.0, onset_s=1, duration_s=0.5, source_back_s=0.5)
    message = bytes([206]) + b"hello" + bytes(14)
    assert ganglion([message]) == [message] and ganglion.offered == 0  # not a data packet: untouched
    with pytest.raises(ValueError):
        StreamForgery("replay", field, rate, onset_s=5, source_back_s=10)
    with pytest.raises(ValueError):
        StreamForgery("warp", field, rate, factor=1.0)


def test_merge_joins_overlapping_and_nearby_anomalies():
    a = StreamAnomaly(10.0, 5.0, "replay", "a", 0.9)
    b = StreamAnomaly(12.0, 10.0, "time-warp", "b", 0.7)
    c = StreamAnomaly(40.0, 1.0, "clock-jump", "c", 0.6)
    merged = merge_anomalies([c, b, a])
    assert merged == [StreamAnomaly(10.0, 12.0, "replay", "a; also time-warp", 0.9), c]
    assert len(merge_anomalies([a, StreamAnomaly(18.0, 1.0, "replay", "d", 0.5)], gap_s=2.0)) == 2


def test_decoder_hooks_report_every_framed_packet_once_in_arrival_order():
    seen = []
    decoder = CytonDecoder()
    decoder.on_packets = lambda source, counters, content: seen.append((counters.tolist(), content.shape))
    numbers = [0, 1, 2, 3, 3, 5, 4, 6, 7, 9, 10, 11, 12]  # a duplicate, a swap, a loss
    raw = encode_packets(np.arange(len(numbers) * 8).reshape(-1, 8), numbers)
    chunks = [raw[:50], raw[50:66] + b"\x00garbage" + raw[66:170], raw[170:]]  # split packets, garbage
    for chunk in chunks:
        decoder.feed(chunk)
    reported = [n for counters, _ in seen for n in counters]
    assert reported == numbers[:len(reported)] and len(reported) >= len(numbers) - 1  # each once, as they came
    assert all(shape[1] == 31 for _, shape in seen)
    muse = mu.MuseDecoder()
    got = []
    muse.on_packets = lambda source, counters, content: got.append((source, int(counters[0]), content.shape))
    tp9 = mu.SOURCES.index(mu.EEG_UUIDS[0])
    muse.feed(bytes([0x12, 0x34]) + bytes(18), tp9)
    muse.feed(bytes(20), mu.SOURCES.index(mu.ACCEL_UUID))  # side streams are not audited
    assert got == [(tp9, 0x1234, (1, 18))]
    ganglion = gg.GanglionDecoder(3)
    ids = []
    ganglion.on_packets = lambda source, counters, content: ids.append(int(counters[0]))
    for pid in (0, 1, 150, 205):  # 150: the 19-bit range, position 50; 205: impedance, not data
        ganglion.feed(bytes([pid]) + bytes(19))
    assert ids == [0, 1, 50]
    assert (CytonDecoder.counter_modulus, ganglion.counter_modulus, mu.MuseDecoder.counter_modulus) == (256, 100, 65536)


# == ordinary faults: nothing to report ===============================================================
@pytest.mark.parametrize("kind, seconds", [("cyton", 60), ("muse", 100), ("ganglion", 70)])
def test_ordinary_faults_drift_stalls_and_a_reconnection_raise_nothing(kind, seconds):
    if kind == "muse":
        faults = {u: PacketFaults(CLEAN, seed=i) for i, u in enumerate(mufw.EEG_UUIDS)}
    else:
        faults = Delayed(PacketFaults(CLEAN, seed=5))
    anomalies, raised = run(kind, seconds, faults, seed=4, drift=0.004, stall_every=15.0, restart_at=seconds / 2)
    assert anomalies == [] and raised == []


def test_a_long_clean_stream_through_the_audit_alone():
    """Ten minutes of a Cyton-like stream (read every 0.1 s) with faults, 0.3 % drift and host stalls
    about every minute, without the firmware (fast)."""
    rng = np.random.default_rng(7)
    faults = PacketFaults(FaultSpec(loss=0.01, burst=0.002, burst_packets=10, duplicate=0.01, reorder=0.01), seed=7)
    audit = StreamAudit(250.0, 256)
    arrive = Arrivals(7, 0.004, stall_every=60.0)
    k, per = 0, 25
    for batch in range(int(600 * 250 / per)):
        out = faults([bytes([(k + i) % 256]) for i in range(per)])
        k += per
        if out:
            content = rng.integers(0, 256, (len(out), 30), dtype=np.uint8)
            audit.observe([p[0] for p in out], arrive(k / 250 / 1.003, per / 250), content)
    assert audit.finish() == [] and audit.stats["fresh"] > 0.95 * k


def stepped(audit, rate, modulus, step_s, at_s=30.0, seconds=60.0, seed=1):
    """Feed ``audit`` a clean stream (chunks of 0.05 s) whose arrivals jump by ``step_s`` at ``at_s``
    while its counter runs on (samples cut and the counter renumbered, or a jump of the sample clock)."""
    rng = np.random.default_rng(seed)
    per = max(1, int(round(0.05 * rate)))
    for first in range(0, int(seconds * rate), per):
        k = np.arange(first, first + per)
        t = (first + per) / rate + 0.002 + rng.exponential(0.005) + (step_s if first >= at_s * rate else 0.0)
        audit.observe(k % modulus, 1.7e9 + t, rng.integers(0, 256, (per, 18), dtype=np.uint8))
    return audit.finish()


def test_a_step_in_arrival_times_is_a_clock_jump_unless_it_is_whole_counter_cycles():
    late = stepped(StreamAudit(256 / 12, 0x10000), 256 / 12, 0x10000, 1.5)
    early = stepped(StreamAudit(250.0, 256, behind=64), 250.0, 256, -0.6)
    for found, size in ((late, "+1.5"), (early, "-0.6")):
        assert len(found) == 1 and found[0].what == "clock-jump", found
        assert abs(found[0].onset_s - 30.0) <= 1.0 and size in found[0].evidence
    # 1.5 s of silence, then the counter runs on as if nothing had happened: a Cyton cannot tell this
    # from 256 packets lost (its counter wraps every 1.024 s), so it is read as lost, not reported
    cycles = StreamAudit(250.0, 256, behind=64)
    assert stepped(cycles, 250.0, 256, 1.024) == [] and cycles.stats["by_time"] + cycles.stats["realigned"] == 1


def test_scattered_forged_payloads_and_held_values():
    """Contents of older packets under new numbers here and there (FaultSpec.forge) are flagged once
    three fall within 5 min; a railed input (the same content again and again) never is."""
    rng = np.random.default_rng(3)
    content = rng.integers(0, 256, (3000, 30), dtype=np.uint8)
    forged = content.copy()
    for at in (1000, 1600, 2400):
        forged[at] = content[at - 100 - at // 20]
    railed = np.tile(content[:10], (300, 1))  # a period of 10 packets: held values
    for data, expected in ((forged, ["payload-forgery"]), (content, []), (railed, [])):
        audit = StreamAudit(50.0, 0x10000, index_rate=50.0)  # every packet in the index
        for first in range(0, 3000, 10):
            audit.observe(np.arange(first, first + 10), 1.7e9 + first / 50 + 0.2, data[first:first + 10])
        found = audit.finish()
        assert [a.what for a in found] == expected
        if expected:
            assert found[0].onset_s == 1000 / 50 and found[0].end_s == pytest.approx(2401 / 50)


# == forgeries: found, with their onset ===============================================================
CASES = [
    ("cyton", dict(mode="replay"), {"payload-replay", "replay"}),
    ("cyton", dict(mode="replay", renumber=True), {"payload-replay"}),
    ("cyton", dict(mode="resequence", block_s=0.25), {"resequence"}),
    ("cyton", dict(mode="warp", factor=0.9), {"time-warp"}),
    ("cyton", dict(mode="warp", factor=1.1), {"time-warp"}),
    ("muse", dict(mode="replay"), {"replay"}),
    ("muse", dict(mode="resequence", block_s=1.0), {"resequence"}),
    ("muse", dict(mode="warp", factor=0.9), {"time-warp"}),
    ("ganglion", dict(mode="replay", renumber=True), {"payload-replay"}),
    ("ganglion", dict(mode="warp", factor=1.1), {"time-warp"}),
]


@pytest.mark.parametrize("kind, settings, whats", CASES,
                         ids=[f"{k}-{s['mode']}{'-renumbered' if s.get('renumber') else ''}-{s.get('factor', '')}"
                              for k, s, _ in CASES])
def test_forgeries_are_found_at_their_onset_and_live_within_10_s(kind, settings, whats):
    packet_filter, truth = forged(kind, onset_s=20.0, duration_s=15.0, source_back_s=18.0, **settings)
    anomalies, raised = run(kind, 45.0, packet_filter, seed=3)
    onset, end = truth[0]["onset"], truth[0]["onset"] + truth[0]["duration"]
    assert len(anomalies) == 1, anomalies
    found = anomalies[0]
    assert found.what in whats and set(WHATS) >= {found.what} and 0.5 <= found.score <= 1.0
    assert abs(found.onset_s - onset) <= 0.5 and abs(found.end_s - end) <= 1.5, (found, truth)
    first = min(t for t, a in raised)  # device time the first alarm went off
    assert first - onset <= 10.0


# == end to end: the board drivers, the emulated transports, the raw capture ==========================
def read_samples(board, n):
    got = 0
    for block in board.blocks():
        got += block.n_samples
        if got >= n:
            return


def test_cyton_over_a_pty_in_real_time_time_warp_found_faults_ignored(tmp_path):
    """A Cyton through the pseudo-terminal at its real pace, with link faults; from 4 s a forger delivers
    2 s of stream at half the rate (it takes 4 s). The capture's audit flags exactly that."""
    forger = StreamForgery("warp", **CYTON, onset_s=4.0, duration_s=2.0, factor=0.5)
    source = SimulatedHeadband("cyton", hours=0.01, seed=9, fs=250)
    firmware = CytonFirmware(source, packet_filter=chain(forger, Delayed(PacketFaults(CLEAN, seed=9))))
    with PtySerialServer(firmware, realtime=True) as server:
        with CytonBoard(server.port, capture=tmp_path / "cyton.dsraw") as board:
            board.start()
            read_samples(board, int(250 * 5.5))  # 7 s of host time
    anomalies = audit_capture(tmp_path / "cyton.dsraw")
    assert len(anomalies) == 1, anomalies
    assert anomalies[0].what in ("time-warp", "clock-jump") and abs(anomalies[0].onset_s - 4.0) <= 0.6
    assert "+" in anomalies[0].evidence  # late: delivered slower than the sample clock


def collect(board, n_samples, deadline=20.0):
    timer = threading.Timer(deadline, board.stop)  # a failing driver must not hang the suite
    timer.start()
    try:
        with board:
            board.start()
            read_samples(board, n_samples)
    finally:
        timer.cancel()


@pytest.mark.parametrize("forge", [True, False], ids=["replayed", "faults-only"])
def test_muse_through_bleak_counter_replay_found(forge, tmp_path):
    """A Muse S through bleak and the emulated radio (served as fast as read, so timing is not judged):
    a verbatim replay of 5 s of packets from 10 s on is found at its onset; faults alone raise nothing."""
    source = SimulatedHeadband("muse-s", hours=0.02, seed=2, fs=256)
    faults = {u: Delayed(PacketFaults(CLEAN, seed=i)) for i, u in enumerate(mufw.EEG_UUIDS)}
    forgers = per_characteristic(mufw.EEG_UUIDS, mode="replay", **MUSE, onset_s=10.0, duration_s=5.0,
                                 source_back_s=6.0)
    filters = {u: chain(forgers[u], faults[u]) if forge else faults[u] for u in mufw.EEG_UUIDS}
    fw = mufw.MuseFirmware(source, model="muses", keepalive_timeout_s=None)
    with EmulatedDevice(fw, realtime=False, packet_filter=filters) as device:
        board = mu.MuseBoard(name=device.name, scan_timeout=2.0, capture=tmp_path / "m.dsraw", **EMULATED)
        collect(board, 256 * 20)
    anomalies = audit_capture(tmp_path / "m.dsraw", check_timing=False)
    if not forge:
        assert anomalies == []
        return
    truth = forgers[mufw.TP9_UUID].truth[0]
    assert len(anomalies) == 1 and anomalies[0].what == "replay", anomalies
    # the four EEG characteristics' notifications interleave in arrival order, which a loaded host
    # shifts by a few packets: onset within 5 packets (12 samples each at 256 Hz)
    packet_s = 12 / 256
    found = anomalies[0]
    assert abs(found.onset_s - truth["onset"]) <= 5 * packet_s
    assert abs(found.onset_s + found.duration_s - (truth["onset"] + 5.0)) <= 5 * packet_s  # the end, alike
    assert "already delivered 6." in anomalies[0].evidence


def test_ganglion_through_bleak_renumbered_replay_found(tmp_path):
    """A Ganglion through bleak: 5 s of packets from 12 s on replaced by those 8 s earlier, renumbered so
    the counter runs on; the contents give it away."""
    source = SimulatedHeadband("ganglion", hours=0.02, seed=3, fs=200)
    forger = StreamForgery("replay", **GANGLION, onset_s=12.0, duration_s=5.0, source_back_s=8.0, renumber=True)
    fw = ggfw.GanglionFirmware(source, firmware=3)
    packet_filter = {ggfw.NOTIFY_UUID: chain(forger, Delayed(PacketFaults(CLEAN, seed=4)))}
    with EmulatedDevice(fw, realtime=False, packet_filter=packet_filter) as device:
        board = gg.GanglionBoard(name=device.name, scan_timeout=2.0, capture=tmp_path / "g.dsraw", **EMULATED)
        collect(board, 200 * 22)
    anomalies = audit_capture(tmp_path / "g.dsraw", check_timing=False)
    assert len(anomalies) == 1 and anomalies[0].what == "payload-replay", anomalies
    assert abs(anomalies[0].onset_s - 12.0) <= 0.1 and abs(anomalies[0].duration_s - 5.0) <= 0.2
