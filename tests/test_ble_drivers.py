"""Ganglion and Muse drivers: every vector decoded, fuzzed decoders, and the boards through bleak's real
client against the emulated headbands, with packet faults, link drops and the Muse keep-alive."""

import functools
import threading
import time

import numpy as np
import pytest
from bleak.exc import (BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError,
                       BleakDeviceNotFoundError, BleakError)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED, load_vectors as load
from firmware_sim import ble
from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
from firmware_sim.faults import FaultSpec, PacketFaults
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.protocols import ganglion as ggfw
from firmware_sim.protocols import muse as mufw
from ingest import board as board_module
from ingest.assembly import RunAssembler
from ingest.ble import _device_error
from ingest.boards import ganglion as gg
from ingest.boards import muse as mu
from ingest.errors import DeviceError

VECTORS = SHARED / "vectors"
GANGLION_VECTORS = VECTORS / "openbci_ganglion" / "ganglion_compression_vectors.json"
MUSE_VECTORS = VECTORS / "muse" / "muse_js_test_vectors.json"
ATHENA = VECTORS / "muse_s_athena"
EMULATED = {"backend": EmulatedBackend, "scanner_backend": EmulatedScanner}


@pytest.fixture(autouse=True)
def empty_registry():
    yield
    ble.clear_registry()


# == vectors (decoding direction: bytes -> expected values) ==========================================
@pytest.mark.parametrize("kind,bits", [("decompress_18bit", 18), ("decompress_19bit", 19)])
def test_ganglion_field_vectors(kind, bits):
    for case in load(GANGLION_VECTORS)[kind]:
        fields = gg.unpack_fields(np.array(case["payload_bytes"], dtype=np.uint8), bits)
        assert gg.signed_fields(fields, bits).reshape(2, 4).tolist() == case["expected"], case["name"]


@pytest.mark.parametrize("bits", [18, 19])
def test_ganglion_three_byte_vectors(bits):
    for case in load(GANGLION_VECTORS)["convert_18bit_and_19bit_to_int32"]:
        assert gg.signed_fields(int(case["bytes_hex"], 16), bits) == case["expected"]


def test_ganglion_vectors_through_the_decoder_as_firmware2_deltas():
    """The vectors' fields are deltas: a raw packet, then a packet of them gives previous - delta."""
    for kind, packet_id, bits in (("decompress_18bit", 1, 18), ("decompress_19bit", 101, 19)):
        for case in load(GANGLION_VECTORS)[kind]:
            decoder = gg.GanglionDecoder(firmware=2)
            base = np.array([1_000_000, -2_000_000, 3_000_000, 0])
            raw = bytes([0]) + ggfw.int24_to_bytes(base).tobytes() + b"ABCDEFG"
            payload = bytes([packet_id]) + bytes(case["payload_bytes"])
            runs = decoder.feed(raw) + decoder.feed(payload + bytes(20 - len(payload)))
            first, second = np.array(case["expected"])
            expected = np.stack([base, base - first, base - first - second], axis=1)
            assert np.allclose(np.hstack([r.data for r in runs]), expected * gg.UV_PER_COUNT, rtol=0, atol=1e-9)


def test_ganglion_scale_against_the_vector_file():
    scale = load(GANGLION_VECTORS)["scale"]["uV_per_count"]
    assert gg.UV_PER_COUNT == 1.2e6 / (8388607 * 1.5 * 51) == ggfw.UV_PER_COUNT
    assert scale == pytest.approx(15686 / 8388607, rel=1e-12)  # the file's value is the docs' rounded form
    assert gg.UV_PER_COUNT == pytest.approx(scale, rel=2e-5)


def test_muse_vectors():
    v = load(MUSE_VECTORS)
    unpack = v["eeg_12bit_unpack"]
    assert mu.unpack_uint12(unpack["payload_bytes_after_16bit_sequence"]).tolist() == unpack["expected_raw_12bit"]
    ppg = v["ppg_24bit_unpack"]
    assert mu.unpack_uint24(ppg["payload_bytes"]).tolist() == ppg["expected_uint24"]
    full = v["eeg_full_notification"]
    packet = np.array(full["notification_bytes"], dtype=np.uint8).reshape(1, 1, 20)
    assert mu.eeg_uv(packet).ravel().tolist() == full["expected_samples_uV"]
    assert int.from_bytes(bytes(full["notification_bytes"][:2]), "big") == full["expected_sequence_index"]
    tel, exp = v["telemetry"], v["telemetry"]["expected"]
    t = mu.parse_telemetry(bytes(tel["bytes"]))
    assert (t.sequence, t.battery_percent, t.fuel_gauge_mv, t.temperature) == (
        exp["sequenceId"], exp["batteryLevel"], exp["fuelGaugeVoltage"], exp["temperature"])
    for name, scale in (("accelerometer", mu.ACCEL_G_PER_LSB), ("gyroscope", mu.GYRO_DPS_PER_LSB)):
        case = v[name]
        xyz = mu.imu_values(bytes(case["bytes"]), scale).T
        assert np.allclose(xyz, [[s["x"], s["y"], s["z"]] for s in case["expected"]["samples"]], rtol=1e-12)
        assert int.from_bytes(bytes(case["bytes"][:2]), "big") == case["expected"]["sequenceId"]
    for case in v["command_encoding"]["cases"]:
        assert list(mu.encode_command(case["command"])) == case["bytes"]
        assert mu.decode_command(bytes(case["bytes"])) == case["command"]


def control_fragment(text):
    raw = text.encode("ascii")
    return bytes([len(raw)]) + raw + bytes(19 - len(raw))


def test_muse_control_reassembly_vector_through_the_decoder():
    case = load(MUSE_VECTORS)["control_json_reassembly"]
    decoder = mu.MuseDecoder()
    control = mu.SOURCES.index(mu.CONTROL_UUID)
    for text in case["fragments"]:
        assert decoder.feed(control_fragment(text), control) == []
    assert list(decoder.replies) == case["expected_objects"]  # incl. two objects in one fragment
    assert decoder.battery_percent == 82.0  # from the status reply's "bp"


def test_muse_sequence_vectors_wrap_and_reorder():
    """muse-js's timestamp cases as sequence accounting: the next step, the wrap, a late packet (dropped:
    its place has gone by), the same number on two electrodes (one sequence)."""
    body = bytes([0x80, 0x08, 0x00] * 6)
    for case in load(MUSE_VECTORS)["timestamp_from_sequence"]["cases"]:
        decoder = mu.MuseDecoder()
        if "sequence_bytes" in case:
            step = case["expected_delta_ms"] / (1000 * 12 / 256)
            notes = [(bytes(seq) + body, 1 + e) for seq in case["sequence_bytes"] for e in range(4)]
            runs = [r for payload, source in notes for r in decoder.feed(payload, source)]
            if step > 0:
                assert [r.data.shape[1] for r in runs] == [12, 12] and runs[1].lost_before == 12 * (step - 1)
            else:
                assert len(runs) == 1 and decoder.stats["late"] == 4
        else:
            notes = {mu.characteristic_uuid(n): [0, 15] for n in range(3, 7)}
            for prefix, seq in case["sequence_bytes_per_char"].items():
                notes[prefix + "-4c4d-454d-96be-f03bac821358"] = seq
            runs = [r for u, seq in notes.items() for r in decoder.feed(bytes(seq) + body, mu.SOURCES.index(u))]
            assert len(runs) == 1 and runs[0].data.shape == (4, 12)


# == decoders on the firmware's own packets (no radio) ===============================================
def firmware_packets(firmware_obj, command_writes, seconds):
    firmware_obj.connect()
    for uuid, data in command_writes:
        firmware_obj.write(uuid, data)
    return [(u, p) for _, u, p in firmware_obj.advance(seconds)]


@pytest.mark.parametrize("firmware", [2, 3])
def test_ganglion_gap_to_lost_samples_including_the_wrap(firmware):
    source = np.cumsum(np.random.default_rng(1).normal(0, 2, (4, 1200)), axis=1)
    fw = ggfw.GanglionFirmware(source, firmware=firmware)
    packets = [p for u, p in firmware_packets(fw, [(ggfw.WRITE_UUID, b"b")], 5.0) if p[0] <= 200]
    ids = [p[0] for p in packets]
    wrap = next(i for i in range(5, len(ids)) if ids[i] in (0, 100))  # the cycle restarts (fw 2: raw packet)
    dropped = {wrap - 1, wrap, wrap + 3}
    decoder = gg.GanglionDecoder(firmware)
    lost = [r.lost_before for p in (q for i, q in enumerate(packets) if i not in dropped) for r in decoder.feed(p)]
    size = lambda p: 1 if firmware == 2 and p[0] == 0 else 2  # noqa: E731
    if firmware == 3:
        assert sum(lost) == 2 * 3  # three pairs, across the wrap
    else:
        # the raw packet went with the wrap: deltas are undecodable until the next one (201 samples on)
        assert decoder.stats["undecodable"] > 150
        assert sum(lost) == sum(size(packets[i]) for i in dropped) + decoder.stats["undecodable"]
    assert decoder.stats["samples_lost"] == sum(lost)


def test_ganglion_impedance_and_messages():
    fw = ggfw.GanglionFirmware(np.zeros((4, 10)), impedance_kohm=(8, 9, 7, 10, 5))
    decoder = gg.GanglionDecoder(3)
    for _, p in firmware_packets(fw, [(ggfw.WRITE_UUID, b"v"), (ggfw.WRITE_UUID, b"z")], 1.2):
        decoder.feed(p)
    assert decoder.impedance_kohm == {1: 8.0, 2: 9.0, 3: 7.0, 4: 10.0, 5: 5.0}
    assert decoder.messages[0].startswith("OpenBCI Ganglion v3.0.0\n") and decoder.stats["invalid"] == 0


def test_muse_one_electrode_lost_loses_the_sequence_on_every_channel():
    fw = mufw.MuseFirmware(np.zeros((4, 3000)), keepalive_timeout_s=None, initial_sequence=0xFFF0)
    notes = firmware_packets(fw, [(mufw.CONTROL_UUID, mufw.encode_command("d"))], 2.0)
    eeg = [(u, p) for u, p in notes if u in mu.EEG_UUIDS]
    victims = [(mu.EEG_UUIDS[2], b"\xff\xfe"), (mu.EEG_UUIDS[0], b"\x00\x02")]  # AF8 before the wrap, TP9 after
    decoder = mu.MuseDecoder()
    runs = [r for u, p in eeg if (u, p[:2]) not in victims for r in decoder.feed(p, mu.SOURCES.index(u))]
    n_sequences = len(eeg) // 4
    assert [r.lost_before for r in runs if r.lost_before] == [12, 12] == [12] * decoder.stats["sequences_lost"]
    assert all(r.data.shape[0] == 4 for r in runs)
    assert sum(r.data.shape[1] for r in runs) == 12 * (n_sequences - 2)  # nothing filled in, nothing held back


def eeg_note(seq, value=0x80):
    return (seq & 0xFFFF).to_bytes(2, "big") + bytes([value, 0x08, 0x00] * 6)


def test_muse_corrupt_sequence_number_costs_its_sequence_only():
    """TP9 of sequence 5 arrives numbered 5 + 300: sequence 5 is lost, the stray is taken out again once
    TP9 steps back, and 300 sequences later the real 305 decodes as usual."""
    decoder = mu.MuseDecoder()
    runs = []
    for seq in range(320):
        for e in range(4):
            runs += decoder.feed(eeg_note(seq + 300 if (seq, e) == (5, 0) else seq), 1 + e)
    assert [r.lost_before for r in runs if r.lost_before] == [12] and decoder.stats["strays"] == 1
    assert sum(r.data.shape[1] for r in runs) == 12 * (320 - 1) and decoder.stats["conflicts"] == 0


def test_muse_conflicting_payloads_poison_their_sequence():
    decoder = mu.MuseDecoder()
    runs = decoder.feed(eeg_note(0), 1)
    runs += decoder.feed(eeg_note(0, value=0x90), 1)  # same electrode and number, other bytes
    for seq in range(4):
        for e in range(4):
            runs += decoder.feed(eeg_note(seq), 1 + e)
    assert decoder.stats["conflicts"] == 1 and decoder.stats["duplicates"] == 1
    assert [r.data.shape[1] for r in runs] == [24, 12] and decoder.stats["sequences_lost"] == 1


def test_muse_side_stream_survives_a_corrupt_sequence_number():
    decoder = mu.MuseDecoder()
    accel = mu.SOURCES.index(mu.ACCEL_UUID)
    numbers = list(range(10)) + [0x4000 + 10] + list(range(11, 21)) + list(range(220, 231))  # 10 corrupt, then a jump
    for number in numbers:
        decoder.feed(number.to_bytes(2, "big") + bytes(18), accel)
    runs = list(decoder.sensor_runs)
    assert decoder.stats["strays"] == 1 and decoder.stats["late"] == 0
    assert [r.lost_before for r in runs if r.lost_before] == [3, 3 * 199]  # packet 10, then 21..219
    assert len(runs) == len(numbers) - 1 and all(r.data.shape == (3, 3) for r in runs)


def test_ganglion_duplicates_and_reordering():
    source = np.cumsum(np.random.default_rng(3).normal(0, 2, (4, 400)), axis=1)
    packets = [p for u, p in firmware_packets(ggfw.GanglionFirmware(source), [(ggfw.WRITE_UUID, b"b")], 1.5)]
    wire = list(packets)
    wire[10], wire[11] = wire[11], wire[10]  # one late packet
    wire.insert(20, wire[19])  # one duplicate
    decoder = gg.GanglionDecoder(3)
    runs = [r for p in wire for r in decoder.feed(p)]
    reference = gg.GanglionDecoder(3)
    expected = [r for p in packets for r in reference.feed(p)]
    assert np.array_equal(np.hstack([r.data for r in runs]), np.hstack([r.data for r in expected]))
    assert sum(r.lost_before for r in runs) == 0 and decoder.stats["duplicates"] == 1


# == numba kernel against its numpy reference ========================================================
@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_eeg_kernel_equals_numpy_reference(n_seq, n_el, seed):
    packets = np.random.default_rng(seed).integers(0, 256, (n_seq, n_el, 20), dtype=np.uint8)
    assert np.array_equal(mu.eeg_uv(packets), mu.eeg_uv_numpy(packets))


# == fuzz: random bytes never crash a decoder nor leave the full scale ===============================
def check_runs(runs, decoder, full_scale, n_exg):
    for run in runs:
        assert run.data.shape[0] == len(decoder.channels) and run.data.dtype == np.float64
        assert run.lost_before >= 0
        exg = run.data[:n_exg]
        assert np.all(np.isfinite(exg)) and np.all(np.abs(exg) <= full_scale)
        acc = run.data[n_exg:]
        assert np.all(np.isnan(acc) | (np.abs(acc) <= 128 * gg.ACCEL_G_PER_COUNT))


packet_like = st.one_of(
    st.binary(max_size=24),
    st.tuples(st.integers(0, 255), st.binary(min_size=19, max_size=19)).map(lambda t: bytes([t[0]]) + t[1]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([2, 3]), st.lists(packet_like, max_size=80))
def test_ganglion_decoder_fuzz(firmware, payloads):
    decoder = gg.GanglionDecoder(firmware, accelerometer=True)
    assembler = RunAssembler("fuzz", decoder.channels, decoder.kinds, decoder.fs)
    for k, payload in enumerate(payloads):
        runs = decoder.feed(payload)
        check_runs(runs, decoder, gg.FULL_SCALE_UV, 4)
        for run in runs:
            assembler.add(run, 1000.0 + k * 0.01)
        if k % 37 == 36:
            decoder.restart()


def muse_like(draw_seq):
    return st.tuples(st.integers(-1, 13), st.one_of(
        st.binary(max_size=24),
        st.tuples(draw_seq, st.binary(min_size=18, max_size=18)).map(lambda t: t[0].to_bytes(2, "big") + t[1])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(mu.PRESETS)),
       st.lists(muse_like(st.one_of(st.integers(0, 0xFFFF), st.integers(0xFFFA, 0xFFFF), st.integers(0, 6))),
                max_size=120))
def test_muse_decoder_fuzz(preset, notes):
    decoder = mu.MuseDecoder(preset)
    for source, payload in notes:
        runs = decoder.feed(payload, source)
        check_runs(runs, decoder, mu.FULL_SCALE_UV, decoder.n_electrodes)
        assert all(r.data.shape[1] % 12 == 0 and r.lost_before % 12 == 0 for r in runs)
    limits = {"accelerometer": 32768 * mu.ACCEL_G_PER_LSB, "gyroscope": 32768 * mu.GYRO_DPS_PER_LSB}
    for run in decoder.sensor_runs:
        assert run.lost_before >= 0 and np.all(np.isfinite(run.data))
        assert np.all(np.abs(run.data) <= limits.get(run.sensor, 2**24))
    assert decoder.battery_percent is None or 0 <= decoder.battery_percent <= 100
    assert len(decoder._pending) <= mu.MAX_PENDING + 1


def athena_payloads():
    payloads = []
    for path in sorted(ATHENA.glob("openmuse_*.txt")):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                payloads.append(bytes.fromhex(parts[2].strip()))
    if not payloads:
        pytest.skip(f"{ATHENA} is not present")
    return payloads


def test_real_athena_captures_do_not_upset_the_parsers():
    """A Muse S Athena answers in another protocol: its packets must not crash or fool either decoder."""
    payloads = athena_payloads()
    chunks = [p[i:i + 20] for p in payloads for i in range(0, len(p), 20)] + payloads
    for preset in mu.PRESETS:
        decoder = mu.MuseDecoder(preset)
        for source in range(len(mu.SOURCES)):
            for chunk in chunks:
                check_runs(decoder.feed(chunk, source), decoder, mu.FULL_SCALE_UV, decoder.n_electrodes)
    for firmware in (2, 3):
        decoder = gg.GanglionDecoder(firmware, accelerometer=True)
        for chunk in chunks:
            check_runs(decoder.feed(chunk), decoder, gg.FULL_SCALE_UV, 4)


# == end to end through bleak ========================================================================
class RecordingSource:
    """A headband whose every sample the firmware read is kept (the ground truth)."""

    def __init__(self, headband):
        self._headband = headband
        self.channels, self.kinds, self.fs = headband.channels, headband.kinds, headband.fs
        self._parts = []

    def read(self, n):
        data = self._headband.read(n)
        self._parts.append(np.array(data, dtype=np.float64))
        return data

    @property
    def data(self):
        return np.hstack(self._parts)


class Wire:
    """The packet filter: records every notification the firmware sent (in its order), then applies
    PacketFaults after ``warmup`` packets, so the fault log names packets in that order."""

    def __init__(self, spec: FaultSpec | None, warmup: int = 40, seed: int = 3):
        self.faults = PacketFaults(spec or FaultSpec(), seed)
        self.sent: list = []
        self.warmup = warmup

    def filters(self, uuids):
        return {u: functools.partial(self, u) for u in uuids}

    def __call__(self, uuid, packets):
        start = len(self.sent)
        self.sent += [(uuid, bytes(p)) for p in packets]
        k = max(0, min(len(packets), self.warmup - start))
        return list(packets[:k]) + self.faults(list(packets[k:]))

    def lost(self) -> set:
        return {self.warmup + first + j for first, n in self.faults.lost for j in range(n)}

    def corrupted(self) -> set:
        return {self.warmup + i for i in self.faults.corrupted}


def collect(board, n_samples, deadline=20.0, until=None):
    """Open and start ``board``; its blocks until ``n_samples`` arrived (and ``until()`` holds)."""
    timer = threading.Timer(deadline, board.stop)  # a failing driver must not hang the suite
    timer.start()
    blocks, total = [], 0
    try:
        with board:
            board.start()
            for block in board.blocks():
                blocks.append(block)
                total += block.n_samples
                if total >= n_samples and (until is None or until()):
                    break
    finally:
        timer.cancel()
    assert total >= n_samples, f"only {total} samples within {deadline} s"
    return blocks


def delivered(blocks):
    index = np.concatenate([np.arange(b.first_index, b.end_index) for b in blocks])
    return index, np.hstack([b.data for b in blocks])


def ganglion_packets(wire, firmware):
    """Data packets in the order sent: (wire index, first stream sample, n samples, is raw)."""
    out, first = [], 0
    for i, (_, p) in enumerate(wire.sent):
        if p[0] <= (200 if firmware == 2 else 199):
            n = 1 if firmware == 2 and p[0] == 0 else 2
            out.append((i, first, n, firmware == 2 and p[0] == 0))
            first += n
    return out


def ganglion_truth(wire, firmware):
    """Samples lost (lost packets; firmware 2: and the deltas until the next raw packet), and samples a
    corrupt packet may spoil: from the packet before it to the reach of the reorder window and stray
    detection (firmware 2: on to the next raw packet, as a wrong delta carries on)."""
    packets = ganglion_packets(wire, firmware)
    lost_wire, bad_wire = wire.lost(), wire.corrupted()
    lost, decodable = set(), True
    for i, first, n, raw in packets:
        if i in lost_wire:
            lost.update(range(first, first + n))
            decodable = False
        elif raw:
            decodable = True
        elif firmware == 2 and not decodable:
            lost.update(range(first, first + n))
    taint = set()
    for k in (k for k, (i, *_) in enumerate(packets) if i in bad_wire):
        end = k + gg.STALE + gg.REORDER + 2
        while firmware == 2 and end < len(packets) and not packets[end][3]:
            end += 1
        for _, first, n, _ in packets[max(0, k - 1): end + 1]:
            taint.update(range(first, first + n))
    return lost, taint


def ganglion_board(device, **kw):
    return gg.GanglionBoard(name=device.name, scan_timeout=2.0, **EMULATED, **kw)


GANGLION_TOL = {2: 202 * gg.UV_PER_COUNT, 3: 130 * gg.UV_PER_COUNT}  # LSB lost per delta / truncation
CLEAN = FaultSpec(loss=0.01, burst=0.004, burst_packets=4, duplicate=0.01, reorder=0.02)
DIRTY = FaultSpec(loss=0.005, corrupt=0.01, duplicate=0.005, reorder=0.005)


@pytest.mark.parametrize("spec", [None, CLEAN, DIRTY], ids=["no-faults", "loss-dup-reorder", "corrupt"])
@pytest.mark.parametrize("firmware", [2, 3])
def test_ganglion_end_to_end(firmware, spec, tmp_path):
    source = RecordingSource(SimulatedHeadband("ganglion", hours=0.1, seed=firmware, fs=200))
    wire = Wire(spec)
    fw = ggfw.GanglionFirmware(source, firmware=firmware)
    with EmulatedDevice(fw, realtime=False, packet_filter=wire.filters([ggfw.NOTIFY_UUID])) as device:
        board = ganglion_board(device, capture=tmp_path / "g.dsraw")
        blocks = collect(board, 4000)
    assert board.firmware == firmware and board.capture_header()["firmware"] == firmware
    index, data = delivered(blocks)
    end = blocks[-1].end_index
    lost, taint = ganglion_truth(wire, firmware)
    lost = {i for i in lost if i < end}
    reported = set(range(end)) - set(index.tolist())
    assert sum(b.lost_before for b in blocks) == len(reported) == board.samples_lost
    error = np.abs(data[:4] - source.data[:4, index]).max(axis=0)
    if spec is not DIRTY:
        assert reported == lost  # exactly the samples of lost packets (and undecodable deltas), no more
        assert error.max() <= GANGLION_TOL[firmware]
        if spec is None:
            assert not lost and board.samples_lost == 0
        else:
            assert wire.faults.duplicated and wire.faults.reordered and wire.faults.lost
    else:
        assert wire.faults.corrupted
        assert reported <= lost | taint  # nothing lost that a fault does not explain
        assert set(index[error > GANGLION_TOL[firmware]].tolist()) <= taint  # wrong values only where corrupt
    replay_equals_live(tmp_path / "g.dsraw", blocks)


def replay_equals_live(path, blocks):
    from ingest.replay import open_recording

    with open_recording(path) as replay:
        replay.start()
        again = []
        for block in replay.blocks():
            again.append(block)
            if len(again) == len(blocks):
                break
    assert [(b.first_index, b.lost_before) for b in again] == [(b.first_index, b.lost_before) for b in blocks]
    assert all(np.array_equal(a.data, b.data, equal_nan=True) for a, b in zip(again, blocks))


def test_ganglion_accelerometer_rows_hold_the_last_reading():
    source = RecordingSource(SimulatedHeadband("ganglion", hours=0.1, seed=5, fs=200))
    with EmulatedDevice(ggfw.GanglionFirmware(source, firmware=3), realtime=False) as device:
        board = ganglion_board(device, accelerometer=True, channels=("EEG C3-M2", "EEG C4-M1", "EOG E1-M2", "EMG chin"))
        blocks = collect(board, 1000)
    assert board.channels[-3:] == ("ACC X", "ACC Y", "ACC Z") and board.kinds[2:4] == ("EOG", "EMG")
    index, data = delivered(blocks)
    assert np.array_equal(index, np.arange(len(index)))
    truth = source.data[4:7]
    expected = np.full((3, len(index)), np.nan)
    held = np.full(3, np.nan)
    for pair in range(len(index) // 2):  # firmware 3: ids ending in 1, 2, 0 carry X, Y, Z
        axis = {1: 0, 2: 1, 0: 2}.get(pair % 100 % 10)
        if axis is not None:
            held[axis] = np.clip(np.rint(truth[axis, 2 * pair + 1] / 0.016), -128, 127) * 0.016
        expected[:, 2 * pair: 2 * pair + 2] = held[:, None]
    assert np.allclose(data[4:, : expected.shape[1]], expected, equal_nan=True, atol=1e-12)
    assert np.abs(data[:4] - source.data[:4, index]).max() <= 130 * gg.UV_PER_COUNT  # 18-bit packets


def muse_truth(wire, first_seq):
    """Sequences lost (any electrode's notification lost), and those a corrupt notification may spoil:
    the ones pending when it arrived (the emulator lets a characteristic run up to a few slots ahead
    after a loss, so some ten sequences back) up to the reorder window after it."""
    lost_wire, bad_wire = wire.lost(), wire.corrupted()
    lost, taint = set(), set()
    for i, (uuid, p) in enumerate(wire.sent):
        if uuid in mu.EEG_UUIDS[:4]:
            step = ((p[0] << 8 | p[1]) - first_seq) & 0xFFFF
            if i in lost_wire:
                lost.add(step)
            if i in bad_wire:
                taint.update(range(step - 12, step + mu.STRAY_AHEAD + 2))  # the sequences pending around it
    samples = lambda steps: {12 * s + j for s in steps for j in range(12)}  # noqa: E731
    return samples(lost), samples(taint)


def muse_board(device, **kw):
    return mu.MuseBoard(name=device.name, scan_timeout=2.0, **EMULATED, **kw)


MUSE_TOL = mu.EEG_UV_PER_COUNT / 2 + 1e-9


@pytest.mark.parametrize("spec", [None, CLEAN, DIRTY], ids=["no-faults", "loss-dup-reorder", "corrupt"])
def test_muse_end_to_end(spec, tmp_path):
    source = RecordingSource(SimulatedHeadband("muse-s", hours=0.1, seed=2, fs=256))
    wire = Wire(spec, warmup=60)
    first_seq = 0xFFFF - 40  # the sequence wraps mid-test
    fw = mufw.MuseFirmware(source, model="muses", keepalive_timeout_s=None, initial_sequence=first_seq)
    with EmulatedDevice(fw, realtime=False, packet_filter=wire.filters(mufw.EEG_UUIDS + (
            mufw.ACCEL_UUID, mufw.GYRO_UUID, mufw.TELEMETRY_UUID, mufw.CONTROL_UUID))) as device:
        board = muse_board(device, capture=tmp_path / "m.dsraw")
        blocks = collect(board, 256 * 25)
    assert board.model == "muse-s" and board.capture_header()["board"] == "muse-s"
    assert board.device_info["fw"] == "1.2.13" and board.status["sn"] == "2031-TZRW-1324"
    assert board.battery_percent == pytest.approx(82.0, abs=0.01)
    index, data = delivered(blocks)
    end = blocks[-1].end_index
    lost, taint = muse_truth(wire, first_seq)
    lost = {i for i in lost if i < end}
    reported = set(range(end)) - set(index.tolist())
    assert sum(b.lost_before for b in blocks) == len(reported) == board.samples_lost
    error = np.abs(data - np.clip(source.data[:4, index], -1000.0, 999.51)).max(axis=0)
    if spec is not DIRTY:
        assert reported == lost, (sorted(reported - lost)[:30], sorted(lost - reported)[:30])
        assert error.max() <= MUSE_TOL, (index[error > MUSE_TOL][:20], error.max())
        if spec is not None:
            assert wire.faults.duplicated and wire.faults.reordered and wire.faults.lost
    else:
        assert wire.faults.corrupted
        assert reported <= lost | taint
        assert set(index[error > MUSE_TOL].tolist()) <= taint
    accel = [r for r in board.read_sensors() if r.sensor == "accelerometer"]
    assert accel and all(r.data.shape[0] == 3 and np.all(np.abs(r.data) <= 2.0) for r in accel)
    accel_lost = sum(r.lost_before for r in accel if not r.resync)
    if spec is None:
        assert accel_lost == 0
    elif spec is CLEAN:  # no reorder window on the side streams: a late packet is dropped and counted
        last = max(r.sequence for r in accel)  # (no wrap: the IMU counter starts at 0)
        sent = [(i, p) for i, (u, p) in enumerate(wire.sent) if u == mu.ACCEL_UUID and (p[0] << 8 | p[1]) <= last]
        lost_packets = sum(i in wire.lost() for i, _ in sent)
        late = sum(wire.warmup + j in {i for i, _ in sent} for j in wire.faults.reordered)
        assert 3 * lost_packets <= accel_lost <= 3 * (lost_packets + late)
    replay_equals_live(tmp_path / "m.dsraw", blocks)


def test_muse_aux_preset():
    source = RecordingSource(SimulatedHeadband("muse-2", hours=0.1, seed=4, fs=256))
    with EmulatedDevice(mufw.MuseFirmware(source, keepalive_timeout_s=None), realtime=False) as device:
        board = muse_board(device, preset="p20")
        blocks = collect(board, 600)
    assert board.channels[-1] == "AUX right" and board.kinds[-1] == "MISC" and board.model == "muse-2"
    index, data = delivered(blocks)
    assert np.array_equal(index, np.arange(len(index)))
    assert np.abs(data[:4] - source.data[:4, index]).max() <= MUSE_TOL and np.all(data[4] == 0.0)


@pytest.mark.parametrize("which", ["ganglion", "muse"])
def test_link_drop_reconnects_and_marks_the_gap(which, monkeypatch):
    monkeypatch.setattr(board_module, "RECONNECT_DELAYS", (0.05,))
    if which == "ganglion":
        source = RecordingSource(SimulatedHeadband("ganglion", hours=0.1, seed=6, fs=200))
        fw, make, fs = ggfw.GanglionFirmware(source, firmware=3, free_running_source=True), ganglion_board, 200.0
    else:
        source = RecordingSource(SimulatedHeadband("muse-s", hours=0.1, seed=6, fs=256))
        fw, make, fs = mufw.MuseFirmware(source, keepalive_timeout_s=None, free_running_source=True), muse_board, 256.0
    starts = []  # (wall time, source index) of the first sample of each stream: the ground truth
    start_stream = fw._start_stream

    def recorded_start():
        start_stream()
        starts.append((time.time(), fw.stream_origin))

    fw._start_stream = recorded_start
    with EmulatedDevice(fw, realtime=True) as device:
        board = make(device)
        mark = {}

        def until():  # at the first block: drop the link 0.3 s on; stop 0.4 s after the reconnection
            if "dropped" not in mark:
                mark["dropped"] = device.drop_link("out of range", after=0.3)
            if board.reconnects and "n" not in mark:
                mark["n"] = board.samples_received
            return "n" in mark and board.samples_received > mark["n"] + 0.4 * fs

        blocks = collect(board, 1, deadline=15.0, until=until)
    assert board.disconnects == 1 and board.reconnects == 1 and len(starts) == 2
    gaps = [b for b in blocks if b.lost_before]
    assert len(gaps) == 1
    gap = gaps[0]
    # the new stream is placed where the wall clock says its first sample was, to within 40 ms
    assert abs(gap.first_index - (starts[1][0] - starts[0][0]) * fs) <= 0.04 * fs
    assert gap.lost_before > 0.05 * fs  # reconnecting took at least the back-off and a scan
    index, data = delivered([b for b in blocks if b.first_index >= gap.first_index])
    truth = source.data[:4, starts[1][1] + index - gap.first_index]
    if which == "muse":
        assert np.abs(data - np.clip(truth, -1000, 999.51)).max() <= MUSE_TOL
    else:
        assert np.abs(data - truth).max() <= 130 * gg.UV_PER_COUNT


def test_muse_keepalive_keeps_it_streaming_past_the_timeout():
    source = SimulatedHeadband("muse-s", hours=0.1, seed=7, fs=256)
    fw = mufw.MuseFirmware(source, keepalive_timeout_s=0.5)
    with EmulatedDevice(fw, realtime=True) as device:
        board = muse_board(device, keepalive_s=0.1)
        streaming = []
        blocks = collect(board, int(1.5 * 256), deadline=10.0, until=lambda: streaming.append(fw.streaming) or True)
    assert streaming == [True]  # 1.5 s in, three times the emulator's keep-alive timeout
    assert sum(b.n_samples for b in blocks) >= 1.5 * 256 and board.samples_lost == 0


def test_device_not_found_is_one_line():
    with pytest.raises(DeviceError) as info:
        gg.GanglionBoard(name="Ganglion-0000", scan_timeout=0.2, **EMULATED).open()
    message = str(info.value)
    assert "Ganglion-0000: not found within 0.2 s" in message and "\n" not in message
    with pytest.raises(DeviceError, match=r"^00:11:22:33:44:55: not found"):
        mu.MuseBoard(address="00:11:22:33:44:55", scan_timeout=0.2, **EMULATED).open()


def test_wrong_device_is_refused():
    fw = ggfw.GanglionFirmware(np.zeros((4, 10)), name="Muse-fake")
    with EmulatedDevice(fw):
        with pytest.raises(DeviceError, match="not a Muse"):
            mu.MuseBoard(name="Muse-fake", scan_timeout=1.0, **EMULATED).open()


def test_no_adapter_with_the_real_bleak():
    """On a machine without Bluetooth the real bleak fails at once; map it to one line."""
    board = gg.GanglionBoard(scan_timeout=1.0)
    try:
        board.open()
    except DeviceError as err:
        if "not found" in str(err):
            pytest.skip("this machine has a Bluetooth adapter")
        assert "no Bluetooth adapter" in str(err) or "Bluetooth is turned off" in str(err)
        assert "\n" not in str(err)
    else:
        board.close()
        pytest.skip("a Ganglion is in range")


@pytest.mark.parametrize("error,expected", [
    (BleakBluetoothNotAvailableError("No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH),
     "no Bluetooth adapter found"),
    (BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF), "Bluetooth is turned off"),
    (FileNotFoundError(2, "No such file or directory"), "no Bluetooth adapter (the D-Bus system bus"),
    (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []), "BlueZ is not running"),
    (BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]), "not ready"),
    (BleakDBusError("org.bluez.Error.InProgress", []), "busy"),
    (BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", []), "permission"),
    (BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]), "connection refused"),
    (BleakError("failed to discover services, device disconnected"), "connection refused"),
    (BleakDeviceNotFoundError("00:55:DA:B0:13:24"), "gone while connecting"),
])
def test_bluetooth_errors_read_as_one_line(error, expected):
    message = str(_device_error(error, "Muse-1324", "connecting"))
    assert message.startswith("Muse-1324: ") and expected in message and "\n" not in message


def test_discover_lists_headbands_advertising_nearby():
    from ingest.ble import discover

    fw = mufw.MuseFirmware(np.zeros((4, 3000)), keepalive_timeout_s=None)
    with EmulatedDevice(fw, realtime=False) as device:
        found = discover(timeout=0.5, scanner_backend=EmulatedScanner)
    assert (device.name, device.address) in found and all(n.startswith(("Muse", "Ganglion")) for n, _ in found)
