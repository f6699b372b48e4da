"""The emulated OpenBCI Cyton: byte-exact packets (upstream vectors), the firmware's replies and
behaviour, and the whole board served on a pseudo-terminal read through real pyserial."""

import time

import numpy as np
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conftest import SHARED, load_vectors
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.protocols import cyton
from firmware_sim.protocols.cyton import (
    COUNT_MAX,
    COUNT_MIN,
    GAINS,
    RADIO_FAILURE,
    CytonFirmware,
    accel_aux,
    accel_counts_to_g,
    counts_to_uv,
    encode_packets,
    g_to_accel_counts,
    int16_from_bytes,
    int16_to_bytes,
    int24_from_bytes,
    int24_to_bytes,
    time_stamped_aux,
    uv_per_count,
    uv_to_counts,
)
from firmware_sim.serial_pty import PtySerialServer

VECTORS = SHARED / "vectors" / "openbci_cyton" / "cyton_packet_vectors.json"
RAILS = st.sampled_from([COUNT_MIN, COUNT_MAX, -1, 0, 1])
COUNTS = st.one_of(RAILS, st.integers(COUNT_MIN, COUNT_MAX))


# -- a minimal decoder, written here independently of the encoder (the real driver lives in ingest) ------------
def decode(data: bytes) -> dict:
    """Split a byte stream of whole packets into fields; asserts the framing."""
    assert len(data) % 33 == 0, len(data)
    p = np.frombuffer(data, dtype=np.uint8).reshape(-1, 33)
    assert (p[:, 0] == 0xA0).all() and ((p[:, 32] >= 0xC0) & (p[:, 32] <= 0xC6)).all()
    b = p[:, 2:26].reshape(-1, 8, 3).astype(np.int64)
    counts = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    counts -= (counts >= 2**23) * 2**24
    a = p[:, 26:32].reshape(-1, 3, 2).astype(np.int64)
    words = (a[..., 0] << 8) | a[..., 1]
    words -= (words >= 2**15) * 2**16
    ms = (a[:, 1, 0] << 24) | (a[:, 1, 1] << 16) | (a[:, 2, 0] << 8) | a[:, 2, 1]
    return {"sample": p[:, 1].astype(int), "counts": counts, "aux16": words, "ms": ms, "stop": p[:, 32].astype(int)}


@pytest.fixture(scope="module")
def vectors():
    return load_vectors(VECTORS)


def packet_vector(vectors, prefix):
    return next(p for p in vectors["packets"] if p["name"].startswith(prefix))


# -- vectors -------------------------------------------------------------------------------------------------------
def test_scales_are_the_documented_constants(vectors):
    c = vectors["constants"]
    assert uv_per_count(24) == pytest.approx(c["eeg_uV_per_count_gain24"], rel=1e-15)
    assert cyton.ACCEL_G_PER_COUNT == pytest.approx(c["accel_g_per_count"], rel=1e-15)
    assert (cyton.PACKET_LENGTH, cyton.START_BYTE) == (c["packet_len"], c["start_byte"])
    assert (cyton.STOP_BYTES.start, cyton.STOP_BYTES.stop - 1) == tuple(c["stop_byte_range"])


def test_24_and_16_bit_integer_vectors(vectors):
    for v in vectors["interpret_24bit_as_int32"]:
        assert int24_from_bytes(bytes.fromhex(v["bytes_hex"])).tolist() == [v["expected"]]
        assert int24_to_bytes(v["expected"]).tobytes().hex() == v["bytes_hex"]
    for v in vectors["interpret_16bit_as_int32"]:
        assert int16_from_bytes(bytes.fromhex(v["bytes_hex"])).tolist() == [v["expected"]]
        assert int16_to_bytes(v["expected"]).tobytes().hex() == v["bytes_hex"]


def test_standard_accel_packet_and_its_patched_variants(vectors):
    v = packet_vector(vectors, "samplePacket (standard")
    e = v["expected"]
    accel = np.array([e["accel_counts"]])
    assert encode_packets([e["channel_counts"]], [e["sample_number"]], accel_aux(accel), e["stop_byte"]).hex() \
        == v["bytes_hex"]
    # upstream asserts the decoded scale: channel (i+1) * 4.5/24/(2^23-1) V, accel i * 0.002/16 g
    assert counts_to_uv(e["channel_counts"]) == pytest.approx(np.arange(1, 9) * 4.5 / 24 / (2**23 - 1) * 1e6)
    assert accel_counts_to_g(e["accel_counts"]) == pytest.approx(np.arange(3) * 0.002 / 16)
    for variant in v["variants_asserted_upstream"]:
        patched = bytearray.fromhex(v["bytes_hex"])
        counts, acc = list(e["channel_counts"]), accel.copy()
        if "expected_channel1_counts" in variant:
            patched[2] = 0x81
            counts[0] = variant["expected_channel1_counts"]
        else:
            patched[26] = 0x81
            acc[0, 0] = variant["expected_accel_x_counts"]
        assert encode_packets([counts], [e["sample_number"]], accel_aux(acc), e["stop_byte"]) == bytes(patched)


def test_zero_raw_aux_and_time_synced_packets(vectors):
    zero = packet_vector(vectors, "samplePacketZero")
    e = zero["expected"]
    assert encode_packets([e["channel_counts"]], [e["sample_number"]]).hex() == zero["bytes_hex"]

    raw = packet_vector(vectors, "samplePacketStandardRawAux")
    e = raw["expected"]
    aux = np.frombuffer(bytes.fromhex(e["aux_raw_bytes_hex"]), np.uint8)[None, :]
    assert encode_packets([e["channel_counts"]], [e["sample_number"]], aux, e["stop_byte"]).hex() == raw["bytes_hex"]

    synced = packet_vector(vectors, "samplePacketAccelTimeSynced")
    e = synced["expected"]
    word = int16_from_bytes(bytes.fromhex(e["aux_bytes_26_27_hex"]))
    aux = time_stamped_aux(word, [e["board_time_ms_u32be"]])
    sample = int(synced["bytes_hex"][2:4], 16)  # the vector states no sample number: it is the fixture's 0x45
    assert encode_packets([e["channel_counts"]], [sample], aux, e["stop_byte"]).hex() == synced["bytes_hex"]


def test_real_packet_with_railed_channels_from_its_physical_values(vectors):
    v = packet_vector(vectors, "samplePacketReal")
    d = v["derived_not_upstream"]
    counts = uv_to_counts(d["channel_uV_gain24"])  # from uV, so the rails (187500 uV) must land on 0x7FFFFF
    accel = g_to_accel_counts(d["accel_g"])
    assert counts.tolist() == d["channel_counts"] and accel.tolist() == d["accel_counts"]
    assert encode_packets(counts[None], [d["sample_number"]], accel_aux(accel[None])).hex() == v["bytes_hex"]
    assert counts_to_uv(d["channel_counts"]) == pytest.approx(d["channel_uV_gain24"], abs=1e-4)


def test_the_wifi_impedance_packet_is_not_a_cyton_serial_packet(vectors):
    v = packet_vector(vectors, "samplePacketImpedance")
    assert bytes.fromhex(v["bytes_hex"])[-1] == 0xC7
    with pytest.raises(ValueError, match="0xC0..0xC6"):
        encode_packets(np.zeros((1, 8), int), [1], stop_byte=0xC7)


# -- encoder and scale properties ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(counts=hnp.arrays(np.int64, st.tuples(st.integers(1, 40), st.just(8)), elements=COUNTS),
       first=st.integers(0, 10_000), stop=st.integers(0xC0, 0xC6))
def test_packets_round_trip_any_counts_including_the_rails(counts, first, stop):
    n = len(counts)
    samples = first + np.arange(n)
    aux = np.random.default_rng(first).integers(0, 256, (n, 6), dtype=np.uint8)
    out = decode(encode_packets(counts, samples, aux, stop))
    assert np.array_equal(out["counts"], counts)
    assert np.array_equal(out["sample"], samples % 256)
    assert (out["stop"] == stop).all()


@settings(max_examples=60, deadline=None)
@given(counts=hnp.arrays(np.int64, st.integers(1, 50), elements=COUNTS), gain=st.sampled_from(GAINS))
def test_counts_to_uv_and_back_is_exact_at_every_gain(counts, gain):
    assert np.array_equal(uv_to_counts(counts_to_uv(counts, gain), gain), counts)


def test_microvolts_quantise_to_the_nearest_count_and_saturate():
    uv = np.array([0.0, 0.011, -0.012, 1e9, -1e9, np.inf, -np.inf, np.nan])
    assert uv_to_counts(uv).tolist() == [0, 0, -1, COUNT_MAX, COUNT_MIN, COUNT_MAX, COUNT_MIN, COUNT_MAX]
    assert uv_to_counts(187_500.0).item() == COUNT_MAX  # +VREF/gain is exactly full scale
    with pytest.raises(ValueError):
        int24_to_bytes(COUNT_MAX + 1)
    with pytest.raises(ValueError):
        encode_packets(np.full((1, 8), COUNT_MIN - 1), [0])
    assert g_to_accel_counts([1.0, -1.0, 10.0]).tolist() == [8000, -8000, 32767]


# -- the firmware ------------------------------------------------------------------------------------------------
def constant_source(uv, n_rows=8, n=5000):
    """Every channel i at uv * (i + 1) microvolts."""
    return np.outer(np.arange(1, n_rows + 1), np.full(n, float(uv)))


def counts_per_channel(uv, gain=24, n_rows=8):
    return uv_to_counts(uv * np.arange(1, n_rows + 1), gain)


@pytest.mark.parametrize("daisy", [False, True])
def test_soft_reset_answers_the_banner(daisy):
    fw = CytonFirmware(constant_source(1, 16 if daisy else 8), daisy=daisy)
    banner = fw.receive(b"v").decode()
    assert banner.startswith("OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n")
    assert banner.endswith("LIS3DH Device ID: 0x33\nFirmware: v3.1.2\n$$$")
    assert ("On Daisy ADS1299 Device ID: 0x3E\n" in banner) == daisy


def test_queries_and_settings_replies_end_in_eot():
    fw = CytonFirmware(constant_source(1))
    replies = {
        b"D": b"060110$$$",
        b"V": b"v3.1.2$$$",
        b"~~": b"Success: Sample rate is 250Hz$$$",
        b"~6": b"Success: Sample rate is 250Hz$$$",
        b"x3060110X": b"Success: Channel set for 3$$$",
        b"z410Z": b"Success: Lead off set for 4$$$",
        b"<": b"Time stamp ON$$$",
        b">": b"Time stamp OFF$$$",
        b"//": b"Success: default$$$",
        b"/2": b"Success: analog$$$",
        b"/0": b"Success: default$$$",
        b"d": b"updating channel settings to default\n$$$",
        b"c": b"no daisy to remove!\n$$$",
        b"C": b"no daisy to attach!\n8$$$",
        b"x10X": b"Failure: too few chars$$$",
        b"x1060110Y": b"Failure: Err: 9th char not X$$$",
        b"/9": b"Failure: board mode value out of bounds.$$$",
    }
    for command, reply in replies.items():
        assert fw.receive(command) == reply, command
    higher = fw.receive(b"~5").decode()
    assert higher.startswith("Failure: Sample rate 500Hz") and higher.endswith("250Hz$$$")
    dump = fw.receive(b"?").decode()
    assert dump.endswith("$$$") and "CH1SET, 0x05, 0x68" in dump and "Daisy" not in dump
    assert fw.receive(b"\x00kA9") == b""  # unknown bytes are ignored silently
    assert fw.receive(b"b") == b"" and fw.streaming
    assert fw.receive(b"s") == b"" and not fw.streaming


def test_a_command_can_arrive_split_across_writes():
    fw = CytonFirmware(constant_source(1))
    assert fw.receive(b"x2") == b"" and fw.receive(b"0301") == b""
    assert fw.receive(b"10X") == b"Success: Channel set for 2$$$"
    assert fw.gains[1] == 6


def test_channel_settings_change_the_gain_and_so_the_counts():
    fw = CytonFirmware(constant_source(100.0))
    fw.receive(b"b")
    at24 = decode(fw.stream(3))["counts"]
    assert np.array_equal(at24, np.tile(counts_per_channel(100.0, 24), (3, 1)))
    fw.receive(b"s")
    assert fw.receive(b"x1000110X") == b"Success: Channel set for 1$$$"  # gain digit 0: x1
    assert fw.gains.tolist() == [1] + [24] * 7
    fw.receive(b"b")
    at1 = decode(fw.stream(3))["counts"]
    assert (at1[0, 0], at24[0, 0]) == (186, 4474)  # the same 100 uV: 100 / 0.536 and 100 / 0.0224 counts
    assert counts_to_uv(at1[0, 0], 1) == pytest.approx(100.0, abs=uv_per_count(1) / 2)
    assert np.array_equal(at1[:, 1:], at24[:, 1:])
    fw.receive(b"s")
    fw.receive(b"d")  # defaults restore x24
    fw.receive(b"b")
    assert np.array_equal(decode(fw.stream(3))["counts"], at24)


def test_a_channel_switched_off_sends_zeros_until_switched_on():
    fw = CytonFirmware(constant_source(50.0))
    fw.receive(b"3")
    fw.receive(b"b")
    counts = decode(fw.stream(4))["counts"]
    assert (counts[:, 2] == 0).all() and (counts[:, [0, 1, 3]] != 0).all()
    assert fw.channel_on.tolist() == [True, True, False] + [True] * 5
    fw.receive(b"s")
    fw.receive(b"#")
    fw.receive(b"b")
    assert np.array_equal(decode(fw.stream(4))["counts"][:, 2], np.full(4, counts_per_channel(50.0)[2]))


def test_shorted_inputs_and_the_internal_test_signal():
    fw = CytonFirmware(constant_source(50.0))
    fw.receive(b"0")  # all inputs shorted
    fw.receive(b"b")
    assert (decode(fw.stream(5))["counts"] == 0).all()
    fw.receive(b"s")
    fw.receive(b"[")  # test signal x2, slow (~1 Hz square)
    fw.receive(b"b")
    uv = counts_to_uv(decode(fw.stream(250))["counts"][:, 0])
    assert set(np.round(uv, 1)) == {3750.0, -3750.0}


def test_sample_numbers_start_at_zero_and_wrap_after_255():
    fw = CytonFirmware(constant_source(1.0))
    fw.receive(b"b")
    out = decode(fw.stream(600))
    assert np.array_equal(out["sample"], np.arange(600) % 256)
    fw.receive(b"s")
    fw.receive(b"b")
    assert decode(fw.stream(2))["sample"].tolist() == [0, 1]
    assert fw.receive(b"s") == b"" and fw.stream(5) == b""


def test_the_first_packet_after_a_command_while_streaming_is_lost():
    fw = CytonFirmware(constant_source(20.0))
    fw.receive(b"b")
    assert decode(fw.stream(5))["sample"].tolist() == [0, 1, 2, 3, 4]
    assert fw.receive(b"x1000110X") == b""  # applied, but no text while streaming
    assert fw.receive(b"?V") == b""  # queries are ignored while streaming
    out = decode(fw.stream(5))
    assert out["sample"].tolist() == [6, 7, 8, 9]
    assert fw.packets_dropped == 1
    assert (out["counts"][:, 0] == uv_to_counts(20.0, 1)).all()  # the new gain is in force


def test_daisy_interleaves_averaged_halves_and_its_first_sample_is_invalid():
    rng = np.random.default_rng(3)
    counts16 = rng.integers(-(2**22), 2**22, (16, 40))
    source = counts_to_uv(counts16)  # exact counts at gain 24, so the averages can be checked to the count
    fw = CytonFirmware(source, daisy=True)
    assert fw.n_channels == 16
    fw.receive(b"b")
    out = decode(fw.stream(40))
    assert np.array_equal(out["sample"], np.arange(40))
    prev = np.hstack([np.zeros((16, 1), int), counts16[:, :-1]])  # power-on: the ADS registers held 0
    total = prev + counts16
    mean = np.sign(total) * (np.abs(total) // 2)  # the board's C integer mean truncates toward zero
    for k in range(40):
        half = slice(0, 8) if k % 2 else slice(8, 16)  # odd: channels 1-8, even: 9-16
        assert np.array_equal(out["counts"][k], mean[half, k]), k
    # the first packet (daisy half) averages the new sample with a stale one: it is not the signal
    assert not np.array_equal(out["counts"][0], mean[8:, 1])
    assert np.array_equal(out["counts"][0], np.sign(counts16[8:, 0]) * (np.abs(counts16[8:, 0]) // 2))


def test_daisy_can_be_removed_and_attached_again():
    fw = CytonFirmware(constant_source(1.0, 16), daisy=True)
    assert fw.receive(b"c") == b"daisy removed\n$$$" and fw.n_channels == 8
    fw.receive(b"b")
    assert np.array_equal(decode(fw.stream(2))["counts"], np.tile(counts_per_channel(1.0), (2, 1)))
    fw.receive(b"s")
    assert fw.receive(b"C") == b"daisy attached\n16$$$" and fw.receive(b"C") == b"16$$$"
    dump = fw.receive(b"?").decode()
    assert "Daisy ADS Registers" in dump and "CONFIG1, 0x01, 0xB6" in dump


def test_accelerometer_on_every_tenth_packet_and_zeros_otherwise():
    n = 60
    acc = np.vstack([np.full(n, 0.25), np.full(n, -0.5), np.full(n, 0.875)])
    fw = CytonFirmware(np.vstack([constant_source(1.0, 4, n), acc]), kinds=("EEG",) * 4 + ("ACC",) * 3)
    fw.receive(b"b")
    out = decode(fw.stream(n))
    fresh = np.arange(n) % 10 == 9
    assert (out["stop"] == 0xC0).all()
    assert np.allclose(accel_counts_to_g(out["aux16"][fresh]), [0.25, -0.5, 0.875])
    assert (out["aux16"][~fresh] == 0).all()
    assert (out["counts"][:, 4:] == 0).all()  # channels without a source row are unconnected


def test_time_stamped_packets_carry_board_milliseconds():
    acc = np.outer([0.5, 0.0, 1.0], np.ones(100))
    fw = CytonFirmware(np.vstack([constant_source(1.0, 2, 100), acc]), kinds=("EEG", "EEG", "ACC", "ACC", "ACC"),
                       seed=4)
    assert fw.receive(b"<") == b"Time stamp ON$$$"
    fw.receive(b"b")
    out = decode(fw.stream(30))
    assert out["stop"][0] == 0xC3 and (out["stop"][1:] == 0xC4).all()
    assert (np.diff(out["ms"]) == 4).all() and out["ms"][0] > 0
    axis = out["aux16"][:, 0]  # X, Y, Z of the latest reading on sample numbers ending in 7, 8, 9
    assert axis[[7, 17, 27]].tolist() == [0, 4000, 4000]  # the first reading comes with packet 9
    assert axis[[9, 19, 29]].tolist() == [8000] * 3 and (axis[[8, 18, 28]] == 0).all()
    assert (axis[out["sample"] % 10 < 7] == 0).all()
    fw.receive(b"<")  # a new sync while streaming: 0xC3 goes on the first packet that reaches the host
    out = decode(fw.stream(3))
    assert out["sample"].tolist() == [31, 32] and out["stop"].tolist() == [0xC3, 0xC4]
    fw.receive(b"s")
    fw.receive(b"/3")  # digital mode: accelerometer off, raw aux
    fw.receive(b"b")
    assert (decode(fw.stream(3))["stop"] == 0xC6).all()
    fw.receive(b"s")
    fw.receive(b">")
    fw.receive(b"b")
    assert (decode(fw.stream(3))["stop"] == 0xC1).all()


def test_board_clock_drift_sets_the_packet_rate():
    fw = CytonFirmware(constant_source(1.0, n=10_000), rate_error=0.003)
    assert fw.stream(seconds=1.0) == b""  # not streaming
    fw.receive(b"b")
    n = sum(len(fw.stream(seconds=0.03)) // 33 for _ in range(1000))  # 30 host seconds
    assert n == int(30 * 250 * 1.003)


def test_packet_filter_sees_lists_of_packets_and_shapes_the_output():
    seen = []

    def every_other(packets):
        seen.append(packets)
        return packets[::2]

    fw = CytonFirmware(constant_source(1.0), packet_filter=every_other)
    fw.receive(b"b")
    out = decode(fw.stream(10))
    assert out["sample"].tolist() == [0, 2, 4, 6, 8]
    assert len(seen[0]) == 10 and all(isinstance(p, bytes) and len(p) == 33 for p in seen[0])


def test_railed_electrodes_read_full_scale():
    source = constant_source(1.0, n=5)
    source[0], source[1], source[2] = 1e6, -1e6, np.nan
    fw = CytonFirmware(source)
    fw.receive(b"b")
    counts = decode(fw.stream(5))["counts"]
    assert (counts[:, 0] == COUNT_MAX).all() and (counts[:, 1] == COUNT_MIN).all() and (counts[:, 2] == COUNT_MAX).all()
    assert fw.stream(5) == b"" and fw.source_exhausted  # the night is over


def test_an_unreachable_board_answers_failure_and_sends_nothing():
    fw = CytonFirmware(constant_source(1.0))
    fw.receive(b"b")
    fw.reachable = False
    assert fw.receive(b"v") == RADIO_FAILURE.encode()
    assert fw.stream(10) == b""
    fw.reachable = True
    assert decode(fw.stream(2))["sample"].tolist() == [10, 11]  # the board kept counting


def test_sources_are_checked_and_a_simulated_headband_streams():
    with pytest.raises(ValueError, match="250"):
        CytonFirmware(SimulatedHeadband(hours=0.05, seed=1))  # the profile's 256 Hz
    with pytest.raises(ValueError, match="channels"):
        CytonFirmware(np.zeros((9, 10)))
    fw = CytonFirmware(SimulatedHeadband(hours=0.05, seed=1, fs=250))
    fw.receive(b"b")
    out = decode(fw.stream(500))
    truth = SimulatedHeadband(hours=0.05, seed=1, fs=250).read(500)
    assert np.abs(counts_to_uv(out["counts"][:, :4]).T - truth).max() <= uv_per_count(24) / 2 + 1e-9
    calls = []
    fw = CytonFirmware(lambda n: calls.append(n) or np.ones((2, n)))
    fw.receive(b"b")
    assert len(fw.stream(7)) == 7 * 33 and calls == [0, 7]  # a callable is probed once with read(0)


# -- served on a pseudo-terminal, read with pyserial ---------------------------------------------------------------
def read_exactly(port, n, deadline=5.0):
    data, end = bytearray(), time.monotonic() + deadline
    while len(data) < n and time.monotonic() < end:
        data += port.read(n - len(data))
    return bytes(data)


def drain(port):
    """Read until nothing more arrives for one read timeout; returns the number of bytes read."""
    total = 0
    while chunk := port.read(4096):
        total += len(chunk)
    return total


def test_end_to_end_through_a_pty_with_pyserial():
    rng = np.random.default_rng(7)
    source = rng.normal(0, 40, (8, 3000)) + 30 * np.sin(np.arange(3000) / 10)
    with PtySerialServer(CytonFirmware(source), realtime=False) as server:
        assert server.port.startswith("/dev/")
        with serial.Serial(server.port, 115200, timeout=0.3) as port:
            port.write(b"v")
            banner = port.read_until(b"$$$")
            assert banner.startswith(b"OpenBCI V3 8-16 channel") and banner.endswith(b"$$$")
            port.write(b"b")
            out = decode(read_exactly(port, 33 * 1000))
            assert np.array_equal(out["sample"], np.arange(1000) % 256)  # consecutive, wrapping
            uv = counts_to_uv(out["counts"]).T
            assert np.abs(uv - source[:, :1000]).max() <= uv_per_count(24)  # within one count
            port.write(b"s")
            drain(port)
            port.write(b"?")
            assert port.read_until(b"$$$").endswith(b"$$$")  # only text now: streaming has stopped
            assert port.read(33) == b""
    assert server.error is None and not server.serving


def test_realtime_serving_of_a_daisy_board_keeps_the_counter_consecutive():
    source = np.zeros((16, 2000))
    with PtySerialServer(CytonFirmware(source, daisy=True), realtime=True, batch_seconds=0.02) as server:
        with serial.Serial(server.port, 115200, timeout=0.2) as port:
            port.write(b"b")
            out = decode(read_exactly(port, 33 * 25))  # 0.1 s of packets
            assert np.array_equal(out["sample"], np.arange(25))
            port.write(b"s")
            drain(port)
        assert server.bytes_sent >= 33 * 25


def test_unplugging_the_dongle_breaks_the_open_port():
    server = PtySerialServer(CytonFirmware(constant_source(1.0)), realtime=False)
    port_name = server.start()
    port = serial.Serial(port_name, 115200, timeout=0.5)
    try:
        port.write(b"b")
        assert len(read_exactly(port, 330)) == 330
        server.disconnect()
        with pytest.raises(serial.SerialException):
            for _ in range(100):  # what was buffered may still arrive; then the port fails
                port.read(4096)
    finally:
        port.close()
        server.stop()
    assert not server.serving
