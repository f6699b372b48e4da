"""Ganglion and Muse BLE firmware: every published vector byte for byte, the compression within its
resolution, the command state machines, and the whole thing through bleak's real BleakClient."""

import asyncio
import json

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED, load_vectors as load
from firmware_sim import ble
from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.protocols import ganglion as gg
from firmware_sim.protocols import muse as mu

GANGLION_VECTORS = SHARED / "vectors" / "openbci_ganglion" / "ganglion_compression_vectors.json"
MUSE_VECTORS = SHARED / "vectors" / "muse" / "muse_js_test_vectors.json"


@pytest.fixture(autouse=True)
def empty_registry():
    yield
    ble.clear_registry()


def random_walk(n_rows, n, sd, seed=0):
    """EEG-like test signal in uV: a random walk, far inside every device's range."""
    walk = np.cumsum(np.random.default_rng(seed).normal(0.0, sd, (n_rows, n)), axis=1)
    return walk - walk.mean(axis=1, keepdims=True)


# == reference decoders (the driver side, kept here so the emulator never grades itself) =============
def decode_ganglion(packets, firmware):
    """Counts (4, n) of the sample packets in ``packets`` (firmware 2: deltas from the last raw packet),
    with, per sample, how many deltas were accumulated since the last raw sample."""
    samples, since_raw, last, k = [], [], None, 0
    for p in packets:
        pid = p[0]
        if pid > 200:
            continue
        if firmware == 2 and pid == 0:
            last = np.array([int.from_bytes(p[1 + 3 * i: 4 + 3 * i], "big", signed=True) for i in range(4)])
            samples.append(last)
            since_raw.append(0)
            k = 0
            continue
        bits = (18 if pid <= 100 else 19) if firmware == 2 else (18 if pid < 100 else 19)
        values = gg.signed_from_lsb(gg.unpack_fields(np.frombuffer(p[1:], np.uint8), bits), bits)
        if firmware == 2:
            first = last - values[:4]
            last = first - values[4:]
            samples += [first, last]
            since_raw += [k + 1, k + 2]
            k += 2
        else:
            samples += [values[:4] << (24 - bits), values[4:] << (24 - bits)]
    return np.array(samples).T, np.array(since_raw)


def reassemble(texts):
    """JSON objects from control-notification texts (muse-js parseControl, re-implemented)."""
    objects, buffer = [], ""
    decoder = json.JSONDecoder()
    for text in texts:
        buffer += text
        while "{" in buffer:
            buffer = buffer[buffer.index("{"):]
            try:
                obj, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break
            objects.append(obj)
            buffer = buffer[end:]
    return objects


def control_text(notification):
    return bytes(notification[1: 1 + notification[0]]).decode("ascii")


def sequence_of(payload):
    return int.from_bytes(payload[:2], "big")


# == Ganglion vectors ================================================================================
@pytest.mark.parametrize("kind,bits", [("decompress_18bit", 18), ("decompress_19bit", 19)])
def test_ganglion_vectors_fields_unpack_and_repack_exactly(kind, bits):
    for case in load(GANGLION_VECTORS)[kind]:
        payload = np.array(case["payload_bytes"], dtype=np.uint8)
        expected = np.array(case["expected"]).reshape(-1)
        assert np.array_equal(gg.signed_from_lsb(gg.unpack_fields(payload, bits), bits), expected), case["name"]
        # the firmware's compression leaves these (LSB-consistent) values unchanged: same bytes on air
        assert gg.pack_fields(gg.compress(expected), bits).tobytes() == payload.tobytes(), case["name"]
        packet = gg.compressed_packets(gg.compress(expected)[None], bits, [bits * 5])[0]
        assert packet[1: 1 + len(payload)].tobytes() == payload.tobytes()


@pytest.mark.parametrize("bits", [18, 19])
def test_ganglion_vectors_three_byte_conversions(bits):
    for case in load(GANGLION_VECTORS)["convert_18bit_and_19bit_to_int32"]:
        raw = int(case["bytes_hex"], 16)
        assert gg.signed_from_lsb(raw, bits) == case["expected"]
        assert int(gg.compress(case["expected"])) & ((1 << bits) - 1) == raw & ((1 << bits) - 1)


def test_ganglion_scale_matches_the_vector_file():
    scale = load(GANGLION_VECTORS)["scale"]["uV_per_count"]
    assert gg.UV_PER_COUNT == 1.2e6 / (8388607 * 1.5 * 51)  # BrainFlow's derivation, as protocols.md gives it
    assert gg.UV_PER_COUNT == pytest.approx(scale, rel=2e-5)  # the OpenBCI docs round 1.2 V / 76.5 to 15686 uV


# == bit packing round trips =========================================================================
@settings(max_examples=200, deadline=None)
@given(st.sampled_from([18, 19]), st.lists(st.integers(-(2**17), 2**17 - 1), min_size=8, max_size=8))
def test_ganglion_fields_round_trip_within_one_lsb(bits, values):
    values = np.array(values)
    sent = gg.compress(values)
    back = gg.signed_from_lsb(gg.unpack_fields(gg.pack_fields(sent, bits), bits), bits)
    assert np.array_equal(back, sent)  # the packing is exact
    assert np.all(np.abs(back - values) <= 1)  # the compression costs the LSB, nothing more
    assert np.all((back < 0) == (values < 0))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.data())
def test_field_packing_is_lossless_for_any_width(bits, data):
    n = data.draw(st.integers(1, 12))
    fields = np.array(data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=n, max_size=n)))
    assert np.array_equal(gg.unpack_fields(gg.pack_fields(fields, bits), bits, n), fields)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([18, 19]), st.lists(st.integers(-(2**23), 2**23 - 1), min_size=8, max_size=8))
def test_ganglion_firmware3_truncation_within_resolution(bits, samples):
    samples = np.array(samples)
    shift = 24 - bits
    fields = gg.unpack_fields(gg.pack_fields(gg.compress(samples, shift), bits), bits)
    decoded = gg.signed_from_lsb(fields, bits) << shift
    assert np.all(np.abs(decoded - samples) < 2 ** (shift + 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4095), min_size=12, max_size=12),
       st.lists(st.integers(0, 2**24 - 1), min_size=6, max_size=6))
def test_muse_12_and_24_bit_packing_round_trip(raw12, raw24):
    packed = mu.pack_uint12(raw12)
    assert packed.shape == (18,) and np.array_equal(mu.unpack_uint12(packed), raw12)
    assert np.array_equal(mu.unpack_uint24(mu.pack_uint24(raw24)), raw24)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-999.0, 999.0), min_size=12, max_size=12), st.integers(0, 0xFFFF))
def test_muse_eeg_notification_round_trip_within_half_an_lsb(uv, seq):
    packet = mu.eeg_packets([seq], mu.uv_to_raw12(uv))[0]
    assert packet.shape == (20,) and sequence_of(packet.tobytes()) == seq
    back = mu.raw12_to_uv(mu.unpack_uint12(packet[2:]))
    assert np.all(np.abs(back - np.array(uv)) <= mu.EEG_UV_PER_COUNT / 2 + 1e-9)


# == Muse vectors ====================================================================================
def test_muse_eeg_vectors():
    v = load(MUSE_VECTORS)
    unpack = v["eeg_12bit_unpack"]
    assert mu.pack_uint12(unpack["expected_raw_12bit"]).tolist() == unpack["payload_bytes_after_16bit_sequence"]
    assert mu.unpack_uint12(unpack["payload_bytes_after_16bit_sequence"]).tolist() == unpack["expected_raw_12bit"]
    full = v["eeg_full_notification"]
    raw = mu.uv_to_raw12(full["expected_samples_uV"])
    assert mu.eeg_packets([full["expected_sequence_index"]], raw)[0].tobytes() == bytes(full["notification_bytes"])
    assert mu.raw12_to_uv(raw).tolist() == full["expected_samples_uV"]
    assert mu.EEG_UUIDS[full["muse_js_electrode_index"]] == full["characteristic"]


def test_muse_telemetry_and_imu_vectors():
    v = load(MUSE_VECTORS)
    tel = v["telemetry"]
    e = tel["expected"]
    adc = int.from_bytes(bytes(tel["bytes"][6:8]), "big")  # the word nobody decodes, carried as is
    packet = mu.telemetry_packet(e["sequenceId"], e["batteryLevel"], e["fuelGaugeVoltage"], adc, e["temperature"])
    assert packet == bytes(tel["bytes"]) and tel["characteristic"] == mu.TELEMETRY_UUID
    for name, to_counts, uuid in (("accelerometer", mu.g_to_accel_counts, mu.ACCEL_UUID),
                                  ("gyroscope", mu.dps_to_gyro_counts, mu.GYRO_UUID)):
        case = v[name]
        xyz = np.array([[s["x"], s["y"], s["z"]] for s in case["expected"]["samples"]])
        packet = mu.imu_packets([case["expected"]["sequenceId"]], to_counts(xyz)[None])[0]
        assert packet.tobytes() == bytes(case["bytes"]) and case["characteristic"] == uuid
    assert v["accelerometer"]["scale_g_per_lsb"] == mu.ACCEL_G_PER_LSB
    assert v["gyroscope"]["scale_dps_per_lsb"] == mu.GYRO_DPS_PER_LSB


def test_muse_ppg_and_command_vectors():
    v = load(MUSE_VECTORS)
    ppg = v["ppg_24bit_unpack"]
    assert mu.pack_uint24(ppg["expected_uint24"]).tolist() == ppg["payload_bytes"]
    assert mu.ppg_packets([7], [ppg["expected_uint24"]])[0, 2:].tolist() == ppg["payload_bytes"]
    cases = v["command_encoding"]
    assert cases["write_characteristic"] == mu.CONTROL_UUID
    for case in cases["cases"]:
        assert mu.encode_command(case["command"]) == bytes(case["bytes"])
        assert mu.decode_command(bytes(case["bytes"])) == case["command"]
    assert mu.decode_command(b"\x03v1") is None and mu.decode_command(b"\x02h\x00") is None


def test_muse_control_replies_reproduce_the_fixture_fragments():
    v = load(MUSE_VECTORS)["control_json_reassembly"]
    fw = mu.MuseFirmware(np.zeros((4, 10)))
    fw.connect()
    for command in ("v1", "h", "p20", "s", "d"):
        fw.write(mu.CONTROL_UUID, mu.encode_command(command))
    notes = fw.advance(1.0)
    assert {uuid for _, uuid, _ in notes if uuid == mu.CONTROL_UUID} == {mu.CONTROL_UUID}
    ours = [p for _, uuid, p in notes if uuid == mu.CONTROL_UUID]
    assert all(len(p) == 20 and p[1 + p[0]:] == bytes(19 - p[0]) for p in ours)  # [len][text][zero padding]
    texts = [control_text(p) for p in ours]
    fixture = v["fragments"]
    # one JSON member per notification, 19 characters at most: the fixture's first 21 fragments exactly
    assert texts[:21] == fixture[:21]
    # the fixture then re-cuts '"rc":0}' + '{"rc":0}' (two objects in one fragment): same characters
    assert "".join(texts[21:]) == "".join(fixture[21:]) == '"rc":0}{"rc":0}'
    assert reassemble(texts) == reassemble(fixture) == v["expected_objects"]
    # and a fragment holding the end of one object and the start of the next frames and reassembles too
    framed = [mu.control_notification(t) for t in fixture]
    assert reassemble(control_text(p) for p in framed) == v["expected_objects"]


def test_muse_sequence_steps_and_wraps_like_muse_js_expects():
    cases = load(MUSE_VECTORS)["timestamp_from_sequence"]["cases"]
    fw = mu.MuseFirmware(random_walk(4, 2000, 2.0), initial_sequence=0xFFFD)
    fw.connect()
    fw.write(mu.CONTROL_UUID, mu.encode_command("d"))
    eeg = [(t, uuid, sequence_of(p)) for t, uuid, p in fw.advance(0.5) if uuid in mu.EEG_UUIDS]
    tp9 = [(t, s) for t, uuid, s in eeg if uuid == mu.TP9_UUID]
    assert [s for _, s in tp9[:6]] == [0xFFFD, 0xFFFE, 0xFFFF, 0, 1, 2]
    step_ms = np.diff([t for t, _ in tp9]) * 1000
    assert np.allclose(step_ms, cases[0]["expected_delta_ms"])  # 46.875 ms per step, across the wrap too
    assert cases[2]["sequence_bytes"] == [[255, 255], [0, 0]] and cases[2]["expected_delta_ms"] == 46.875
    by_seq = {}
    for t, uuid, s in eeg:  # the same number on every electrode: the same samples, the same time
        by_seq.setdefault(s, set()).add(t)
    assert all(len(times) == 1 for times in by_seq.values())
    assert {uuid for _, uuid, _ in eeg} == set(mu.EEG_UUIDS[:4])


# == Ganglion firmware ===============================================================================
@pytest.mark.parametrize("firmware", [2, 3])
@pytest.mark.parametrize("accelerometer", [False, True])
def test_ganglion_stream_reconstructs_the_source(firmware, accelerometer):
    src = random_walk(4, 3000, 4.0)
    fw = gg.GanglionFirmware(src, firmware=firmware, accelerometer=accelerometer)
    fw.connect()
    fw.write(gg.WRITE_UUID, b"b")
    notes = fw.advance(2.5) + fw.advance(4.0)  # two calls: packets continue across them
    packets = [p for _, _, p in notes]
    assert all(len(p) == 20 for p in packets)
    ids = np.array([p[0] for p in packets])
    bits = 18 if accelerometer else 19
    if firmware == 2:
        cycle = [0] + list(range(1, 101) if bits == 18 else range(101, 201))
        assert ids[:203].tolist() == (cycle * 3)[:203]
        assert packets[0][13:] == b"ABCDEFG"
    else:
        cycle = list(range(0, 100) if bits == 18 else range(100, 200))
        assert ids[:250].tolist() == (cycle * 3)[:250]
    decoded, since_raw = decode_ganglion(packets, firmware)
    truth = gg.uv_to_counts(src[:, : decoded.shape[1]])
    assert decoded.shape[1] == int(6.5 * 200) + (1 if firmware == 2 else 0)  # samples at t <= 6.5 s, in packets
    if firmware == 2:
        # each delta loses at most its LSB; the error resets at every raw packet
        assert np.all(np.abs(decoded - truth) <= since_raw)
        assert np.array_equal(decoded[:, since_raw == 0], truth[:, since_raw == 0])
    else:
        assert np.all(np.abs(decoded - truth) < 2 ** (25 - bits))
    times = np.array([t for t, _, _ in notes])
    assert np.all(np.diff(times) > 0) and times[-1] <= 6.5


@pytest.mark.parametrize("firmware,slots", [(2, {1: 0, 2: 1, 3: 2}), (3, {1: 0, 2: 1, 0: 2})])
def test_ganglion_accelerometer_byte(firmware, slots):
    n = 1000
    kinds = ("EEG",) * 4 + ("ACC",) * 3
    src = np.vstack([random_walk(4, n, 2.0), np.tile([[0.5], [-0.25], [1.0]], n)])

    class Source:  # a headband-like reader with an accelerometer
        def __init__(self):
            self.kinds, self.pos = kinds, 0

        def read(self, k):
            out = src[:, self.pos: self.pos + k]
            self.pos += out.shape[1]
            return out

    fw = gg.GanglionFirmware(Source(), firmware=firmware, accelerometer=True)
    fw.connect()
    fw.write(gg.WRITE_UUID, b"b")
    packets = [p for _, _, p in fw.advance(4.0) if 1 <= p[0] <= 100 or (firmware == 3 and p[0] < 100)]
    axis_bytes = np.array([31, 0xF0, 62], dtype=np.uint8)  # 0.5 g, -0.25 g, 1 g at 16 mg per count
    for p in packets:
        slot = slots.get(p[0] % 10)
        if slot is not None:
            assert p[19] == axis_bytes[slot]
        else:
            assert p[19] in axis_bytes  # stale: the radio buffer keeps the last byte sent
    assert gg.g_to_accel_counts([0.5, -0.25, 1.0]).view(np.uint8).tolist() == axis_bytes.tolist()


def test_ganglion_commands():
    src = random_walk(4, 4000, 3.0)
    fw = gg.GanglionFirmware(src, firmware=3)
    fw.connect()
    for c in b"v~7":
        fw.write(gg.WRITE_UUID, bytes([c]))  # one command byte per write
    notes = fw.advance(0.5)
    messages = [p for _, _, p in notes]
    assert [p[0] for p in messages][-1] == gg.ID_MESSAGE_END
    text = b"".join(p[1:] for p in messages).decode()
    assert text.startswith("OpenBCI Ganglion v3.0.0\n") and text.endswith("Success: Sample rate is 200Hz\n")
    assert all(p[0] in (gg.ID_MESSAGE, gg.ID_MESSAGE_END) and len(p) <= 20 for p in messages)
    # only the first byte of a write is a command (Simblee): "~7" in one write leaves the board waiting
    fw.write(gg.WRITE_UUID, b"~7")
    fw.write(gg.WRITE_UUID, b"~")
    text = b"".join(p[1:] for _, _, p in fw.advance(0.2)).decode()
    assert text == "Success: Sample rate is 200Hz\n"
    # channel 2 off: zeros on air; impedance test: 201..205 with digits then 'Z'; 'Z' resumes streaming
    fw.write(gg.WRITE_UUID, b"2")
    fw.write(gg.WRITE_UUID, b"b")
    decoded, _ = decode_ganglion([p for _, _, p in fw.advance(0.5)], 3)
    assert np.all(decoded[1] == 0) and np.any(decoded[0] != 0)
    fw.write(gg.WRITE_UUID, b"z")
    impedance = [p for _, _, p in fw.advance(1.05)]
    assert [p[0] for p in impedance] == [201, 202, 203, 204, 205]
    assert [p[1:].decode() for p in impedance] == ["8Z", "9Z", "7Z", "10Z", "5Z"]
    assert not fw.streaming
    fw.write(gg.WRITE_UUID, b"Z")
    assert fw.streaming and all(p[0] < 200 for _, _, p in fw.advance(0.2))
    fw.write(gg.WRITE_UUID, b"s")
    assert b"".join(p[1:] for _, _, p in fw.advance(0.1)) == b"stop running\n"
    fw.write(gg.DISCONNECT_UUID, b"\x00")
    assert fw.link_lost


def test_ganglion_accelerometer_switch_mid_stream_keeps_the_counter():
    fw = gg.GanglionFirmware(random_walk(4, 2000, 1.0), firmware=2)
    fw.connect()
    fw.write(gg.WRITE_UUID, b"b")
    before = [p[0] for _, _, p in fw.advance(0.1)]
    fw.write(gg.WRITE_UUID, b"n")
    after = [p[0] for _, _, p in fw.advance(0.1)]
    assert before == [0] + list(range(101, 111))
    assert after == list(range(11, 21))  # the firmware's counter continues in the 18-bit range


def test_ganglion_source_rate_and_free_running_source():
    with pytest.raises(ValueError, match="200"):
        gg.GanglionFirmware(SimulatedHeadband(hours=0.01, seed=1))
    band = SimulatedHeadband(hours=0.01, seed=1, fs=200)
    fw = gg.GanglionFirmware(band, firmware=3, free_running_source=True)
    fw.connect()
    fw.advance(1.0)  # connected, not streaming: the night goes on
    fw.write(gg.WRITE_UUID, b"b")
    assert fw.stream_origin == 200
    truth = SimulatedHeadband(hours=0.01, seed=1, fs=200).read_all()
    decoded, _ = decode_ganglion([p for _, _, p in fw.advance(1.0)], 3)
    assert np.all(np.abs(decoded - gg.uv_to_counts(truth[:, 200: 200 + decoded.shape[1]])) < 64)


# == Muse firmware ===================================================================================
def test_muse_presets_choose_the_characteristics():
    src = random_walk(5, 3000, 2.0)
    sent = {}
    for preset in ("p21", "p20", "p50"):
        fw = mu.MuseFirmware(src)
        fw.connect()
        for c in ("h", preset, "d"):
            fw.write(mu.CONTROL_UUID, mu.encode_command(c))
        sent[preset] = {uuid for _, uuid, _ in fw.advance(1.0)}
    base = {mu.CONTROL_UUID, mu.ACCEL_UUID, mu.GYRO_UUID, mu.TELEMETRY_UUID} | set(mu.EEG_UUIDS[:4])
    assert sent["p21"] == base
    assert sent["p20"] == base | {mu.AUX_UUID}
    assert sent["p50"] == base | {mu.AUX_UUID} | set(mu.PPG_UUIDS)


def test_muse_imu_telemetry_and_unknown_commands():
    fw = mu.MuseFirmware(random_walk(4, 5000, 2.0), battery_percent=90.859375, telemetry_interval_s=1.0)
    fw.connect()
    fw.write(mu.CONTROL_UUID, mu.encode_command("d"))
    notes = fw.advance(2.0)
    accel = [p for _, u, p in notes if u == mu.ACCEL_UUID]
    assert [sequence_of(p) for p in accel] == list(range(len(accel))) and len(accel) == int(2.0 * 52 + 1) // 3
    z = np.frombuffer(accel[0][2:], ">i2").reshape(3, 3)[:, 2] * mu.ACCEL_G_PER_LSB
    assert np.allclose(z, 1.0, atol=1e-4)
    telemetry = [p for _, u, p in notes if u == mu.TELEMETRY_UUID]
    assert len(telemetry) == 3 and int.from_bytes(telemetry[0][2:4], "big") / 512 == 90.859375
    for command in ("dc001", "v6", "p1041", "L1"):  # Muse S Athena and others: an error reply, no crash
        fw.write(mu.CONTROL_UUID, mu.encode_command(command))
    fw.write(mu.CONTROL_UUID, b"garbage")  # not a framed command: ignored
    replies = [control_text(p) for _, u, p in fw.advance(0.1) if u == mu.CONTROL_UUID]
    assert reassemble(replies) == [{"rc": 1}] * 4
    with pytest.raises(ValueError, match="Athena"):
        mu.MuseFirmware(np.zeros((4, 1)), model="muse_s_athena")


def test_muse_keepalive_timeout_and_reset():
    fw = mu.MuseFirmware(random_walk(4, 20000, 2.0), keepalive_timeout_s=1.0)
    fw.connect()
    fw.write(mu.CONTROL_UUID, mu.encode_command("d"))
    fw.advance(0.8)
    fw.write(mu.CONTROL_UUID, mu.encode_command("k"))  # any command restarts the timer
    fw.advance(0.8)
    assert fw.streaming
    late = [t for t, u, _ in fw.advance(5.0) if u == mu.TP9_UUID]
    assert not fw.streaming and max(late) <= 0.8 + 1.0 < max(late) + 12 / 256
    fw.write(mu.CONTROL_UUID, mu.encode_command("*1"))
    fw.advance(0.01)
    assert fw.link_lost is None
    fw.advance(0.1)
    assert fw.link_lost == "reset (*1)"


# == through bleak ===================================================================================
async def collect_until(predicate, timeout=10.0):
    async def wait():
        while not predicate():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(wait(), timeout)


def test_muse_s_end_to_end_through_bleak_client():
    src = random_walk(4, 256 * 120, 3.0)
    fw = mu.MuseFirmware(src, model="muses", keepalive_timeout_s=2.0)

    async def main():
        with EmulatedDevice(fw, realtime=False) as device:
            found = await BleakScanner.find_device_by_name("MuseS-1324", backend=EmulatedScanner, timeout=2.0)
            assert found is not None and found.address == device.address
            dropped = asyncio.Event()
            received = {u: [] for u in mu.EEG_UUIDS[:4]}
            control = []
            client = BleakClient(found, disconnected_callback=lambda c: dropped.set(), backend=EmulatedBackend)
            await client.connect()
            assert client.is_connected and client.mtu_size == 23
            service = client.services.get_service("fe8d")
            assert service is not None and {c.uuid for c in service.characteristics} >= set(mu.EEG_UUIDS)
            assert "notify" in client.services.get_characteristic(mu.CONTROL_UUID).properties
            await client.start_notify(mu.CONTROL_UUID, lambda c, d: control.append(control_text(d)))
            for uuid in received:
                await client.start_notify(uuid, lambda c, d, u=uuid: received[u].append(bytes(d)))
            for command in ("h", "p21", "s", "d"):
                await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command(command), response=False)
            # no keep-alive: the headset halts after 2 s of device time (42 packets of 12 samples)
            await collect_until(lambda: not fw.streaming and len(control) >= 13)
            counts = {u: len(v) for u, v in received.items()}
            assert set(counts.values()) == {42}
            objects = reassemble(control)
            assert objects[:2] == [{"rc": 0}, {"rc": 0}] and objects[2]["hn"] == "MuseS-1324"
            assert objects[2]["ps"] == 0x21 and objects[3] == {"rc": 0}
            # start again, keeping it alive: sequence numbers continue, samples are the source's
            await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("d"), response=True)
            await collect_until(lambda: min(len(v) for v in received.values()) >= 60)
            await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("k"), response=False)
            await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("h"), response=False)
            for row, uuid in enumerate(received):
                packets = received[uuid]
                seqs = [sequence_of(p) for p in packets]
                assert seqs == list(range(len(packets)))
                uv = mu.raw12_to_uv(mu.unpack_uint12(np.frombuffer(b"".join(p[2:] for p in packets), np.uint8)))
                assert np.all(np.abs(uv - src[row, : uv.size]) <= mu.EEG_UV_PER_COUNT / 2 + 1e-9)
            # the link drops mid-stream: the driver hears about it
            await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("d"), response=False)
            device.drop_link("out of range", after=0.5)
            await asyncio.wait_for(dropped.wait(), 5.0)
            assert not client.is_connected and device.disconnect_reason == "out of range"
            with pytest.raises(BleakError):
                await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("k"), response=False)
            # reconnecting works and the headset starts over (halted, sequence from 0)
            await client.connect()
            assert client.is_connected and not fw.streaming and fw.preset == "p21"
            await client.disconnect()
            assert not client.is_connected

    asyncio.run(main())


def test_muse_keepalive_through_bleak_with_manual_pacing():
    fw = mu.MuseFirmware(random_walk(4, 256 * 20, 3.0), keepalive_timeout_s=0.5)

    async def main():
        with EmulatedDevice(fw, manual=True) as device:
            tp9 = []
            async with BleakClient(device.address, backend=EmulatedBackend) as client:
                await client.start_notify(mu.TP9_UUID, lambda c, d: tp9.append(bytes(d)))
                await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("d"), response=False)
                for _ in range(10):  # a keep-alive every 0.3 s keeps it streaming for 3 s
                    device.step(0.3)
                    await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("k"), response=False)
                assert fw.streaming
                device.step(1.0)
                assert not fw.streaming  # 0.5 s without a command: halted
                n = len(tp9)
                device.step(1.0)
                assert len(tp9) == n and n == int((3.0 + 0.5) * 256) // 12

    asyncio.run(main())


@pytest.mark.parametrize("firmware", [3, 2])
def test_ganglion_end_to_end_through_bleak_client(firmware):
    src = random_walk(4, 200 * 30, 4.0)
    fw = gg.GanglionFirmware(src, firmware=firmware, name=f"Ganglion-fw{firmware}")

    async def main():
        with EmulatedDevice(fw, realtime=False) as device:
            devices = await ble.discover(0.0)
            assert [d.name for d in devices] == [f"Ganglion-fw{firmware}"]
            dropped = asyncio.Event()
            packets = []
            async with BleakClient(devices[0], disconnected_callback=lambda c: dropped.set(),
                                   backend=EmulatedBackend) as client:
                assert not await BleakScanner.discover(0.0, backend=EmulatedScanner)  # connected: silent
                revision = (await client.read_gatt_char("2a28")).decode()
                assert revision.startswith(str(firmware))
                assert client.services.get_service("fe84") is not None
                write = client.services.get_characteristic(gg.WRITE_UUID)
                assert "write-without-response" in write.properties
                await client.start_notify(gg.NOTIFY_UUID, lambda c, d: packets.append(bytes(d)))
                await client.write_gatt_char(gg.WRITE_UUID, b"b", response=False)
                await collect_until(lambda: len(packets) >= 400)
                await client.write_gatt_char(gg.WRITE_UUID, b"s", response=False)
                await collect_until(lambda: packets[-1][0] == gg.ID_MESSAGE_END)
                decoded, since_raw = decode_ganglion(packets, firmware)
                truth = gg.uv_to_counts(src[:, : decoded.shape[1]])
                bound = since_raw if firmware == 2 else 2 ** 6 - 1
                assert decoded.shape[1] >= 800 and np.all(np.abs(decoded - truth) <= bound)
                await client.write_gatt_char(gg.DISCONNECT_UUID, b"\x00", response=True)  # the board hangs up
                await asyncio.wait_for(dropped.wait(), 2.0)
                assert not client.is_connected and "disconnect" in device.disconnect_reason

    asyncio.run(main())


def test_packet_filter_and_stats():
    fw = mu.MuseFirmware(random_walk(4, 256 * 30, 2.0))

    def drop_odd(payloads):
        return [p for p in payloads if sequence_of(p) % 2 == 0]

    def duplicate(payloads):
        return [p for p in payloads for _ in range(2)]

    async def main():
        with EmulatedDevice(fw, manual=True, packet_filter={mu.TP9_UUID: drop_odd, mu.AF7_UUID: duplicate}) as dev:
            got = {mu.TP9_UUID: [], mu.AF7_UUID: [], mu.AF8_UUID: []}
            async with BleakClient(dev.address, backend=EmulatedBackend) as client:
                for uuid in got:
                    await client.start_notify(uuid, lambda c, d, u=uuid: got[u].append(sequence_of(d)))
                await client.write_gatt_char(mu.CONTROL_UUID, mu.encode_command("d"), response=False)
                for _ in range(20):
                    dev.step(0.1)
            n = len(got[mu.AF8_UUID])
            assert got[mu.AF8_UUID] == list(range(n)) and n == int(2.0 * 256) // 12
            assert got[mu.TP9_UUID] == list(range(0, n, 2))
            assert got[mu.AF7_UUID] == [s for s in range(n) for _ in range(2)]
            assert dev.stats[mu.TP9_UUID] == {"sent": n, "delivered": len(got[mu.TP9_UUID])}
            assert dev.stats[mu.TP10_UUID] == {"sent": n, "delivered": 0}  # not subscribed

    asyncio.run(main())


def test_rate_error_scales_device_time():
    fw = gg.GanglionFirmware(random_walk(4, 200 * 30, 1.0))

    async def main():
        with EmulatedDevice(fw, realtime=True, rate_error=0.5) as dev:
            marks = []
            async with BleakClient(dev.address, backend=EmulatedBackend) as client:
                await client.start_notify(gg.NOTIFY_UUID, lambda c, d: marks.append((dev.host_time, dev.clock)))
                await client.write_gatt_char(gg.WRITE_UUID, b"b", response=False)
                await collect_until(lambda: len(marks) >= 20)
            (w0, d0), (w1, d1) = marks[0], marks[-1]
            assert w1 > w0  # device time runs 1.5 x the loop's clock
            assert (d1 - d0) == pytest.approx(1.5 * (w1 - w0), rel=1e-9)

    asyncio.run(main())


def test_registry_errors():
    fw = mu.MuseFirmware(np.zeros((4, 100)))

    async def main():
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient("11:22:33:44:55:66", backend=EmulatedBackend).connect()
        with EmulatedDevice(fw, manual=True) as device:
            with pytest.raises(ValueError):
                ble.register(EmulatedDevice(mu.MuseFirmware(np.zeros((4, 1))), manual=True))
            async with BleakClient(device.address, backend=EmulatedBackend):
                with pytest.raises(BleakError, match="already connected"):
                    await BleakClient(device.address, backend=EmulatedBackend).connect()
        assert ble.registered_devices() == [] and not device.connected

    asyncio.run(main())
