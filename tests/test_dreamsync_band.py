"""The DreamSync band: its open protocol on both sides, the firmware's actuators, opt-out and hash-chained
log, and the driver reading it through bleak's real client against the emulated band."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim import ble
from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
from firmware_sim.dreamsync_band import DreamSyncFirmware, Stimulus
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.protocols import dreamsync as ds
from ingest.adjustment_log import parse_entry, verify_log
from ingest.boards import dreamsync as drv
from ingest.errors import DeviceError

EMULATED = {"backend": EmulatedBackend, "scanner_backend": EmulatedScanner}


@pytest.fixture(autouse=True)
def empty_registry():
    yield
    ble.clear_registry()


def band(minutes=3.0, seed=1):
    return SimulatedHeadband("dreamsync", hours=minutes / 60, seed=seed)


def stream(board, seconds):
    """Blocks until ``seconds`` of signal have arrived: (data (8, n) with NaN where lost, blocks)."""
    blocks = []
    for block in board.blocks():
        blocks.append(block)
        if block.end_index >= seconds * drv.SAMPLE_RATE:
            break
    n = blocks[-1].end_index
    data = np.full((len(drv.CHANNELS), n), np.nan)
    for b in blocks:
        data[:, b.first_index:b.end_index] = b.data
    return data, blocks


# == protocol: both sides agree =====================================================================
def test_sample_frames_round_trip_within_one_count():
    rng = np.random.default_rng(0)
    exg = rng.normal(0, 200, (5, 40))
    exg[0, 0] = 80_000.0  # near full scale
    acc = rng.normal(0, 1, (3, 40))
    frames = ds.sample_frames(exg, acc, first_seq=65534, first_tick=2**32 - 20)
    assert len(frames) == 4 and all(len(f) == drv.FRAME_BYTES == 222 for f in frames)
    ticks, seqs, got_exg, got_acc = [], [], [], []
    for f in frames:
        seq, tick, e, a = drv.decode_samples(drv.checked(f))
        seqs.append(seq), ticks.append(tick), got_exg.append(e), got_acc.append(a)
    assert seqs == [65534, 65535, 0, 1]  # the sequence number wraps
    assert ticks == [2**32 - 20, 2**32 - 10, 0, 10]  # and so does the sample counter
    assert np.abs(np.hstack(got_exg) - exg).max() <= drv.UV_PER_COUNT / 2 + 1e-9
    assert np.abs(np.hstack(got_acc) - acc).max() <= drv.G_PER_COUNT / 2 + 1e-9


def test_crc_rejects_any_flipped_bit_and_matches_zlib():
    import zlib

    frame = ds.sample_frames(np.ones((5, 10)), np.zeros((3, 10)), 0, 0)[0]
    assert frame[-4:] == struct.pack("<I", zlib.crc32(frame[:-4]))
    for byte in (0, 3, 100, len(frame) - 1):
        for bit in (0, 7):
            bad = bytearray(frame)
            bad[byte] ^= 1 << bit
            assert drv.checked(bytes(bad)) is None


def test_both_sides_frame_commands_alike():
    args = struct.pack("<BBHHH", 5, 1, 120, 1200, 40)
    assert drv.command_frame(4, 7, args) == ds.command(ds.OP_STIMULATE, 7, ds.stimulate_args(5, 1, 120, 12.0, 4.0))
    assert drv.OPCODES == ds.OPCODES and drv.SERVICE_UUID == ds.SERVICE_UUID and drv.LOG_UUID == ds.LOG_UUID
    assert drv.CHANNELS == ds.CHANNELS and drv.UV_PER_COUNT == ds.UV_PER_COUNT


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=240), st.sampled_from(["frame", "sealed"])), max_size=30))
def test_the_decoder_survives_any_bytes(items):
    """Garbage, truncated frames and well-sealed frames of the wrong shape: dropped, never an exception."""
    decoder = drv.DreamSyncDecoder()
    good = ds.sample_frames(np.zeros((5, 10)), np.zeros((3, 10)), 0, 0)[0]
    for item in items:
        payload = good if item == "frame" else ds.seal(good[:7] + bytes([200]) + good[8:-4]) if item == "sealed" else item
        for run in decoder.feed(payload, 0) + decoder.feed(payload, 2):
            assert run.data.shape == (8, 10) and run.lost_before >= 0
    assert decoder.stats["packets"] <= sum(item == "frame" for item in items)


# == the log ========================================================================================
def logged_firmware(rogue=()):
    """A band that performed three adjustments (two vendor, one sleeper) and an opt-out, no radio involved."""
    fw = DreamSyncFirmware(band(), rogue=rogue)
    fw.write(ds.CONTROL_UUID, ds.command(ds.OP_START, 1))
    fw.advance(5.0)
    for origin, actuator in ((1, 5), (0, 4), (1, 3)):
        fw.write(ds.CONTROL_UUID, ds.command(ds.OP_STIMULATE, 2, ds.stimulate_args(actuator, origin, 20, 40.0, 2.0)))
        fw.advance(2.0)
    fw.write(ds.CONTROL_UUID, ds.command(ds.OP_OPTOUT_ON, 3))
    return fw


def test_chain_verifies_and_every_edit_is_named():
    fw = logged_firmware()
    log = list(fw.log)
    result = verify_log(log, fw.serial, live=log)
    assert result.intact
    assert [e.event for e in result.entries] == ["stimulation"] * 3 + ["optout-on", "stopped", "stopped"]
    assert [e.origin for e in result.entries[:3]] == ["vendor", "sleeper", "vendor"]
    # altered: one parameter byte of entry 1
    altered = list(log)
    altered[1] = altered[1][:16] + bytes([altered[1][16] ^ 1]) + altered[1][17:]
    assert any(p.startswith("entry 1: hash") for p in verify_log(altered, fw.serial).problems)
    # removed: entry 2 is gone
    removed = log[:2] + log[3:]
    problems = verify_log(removed, fw.serial).problems
    assert any(p.startswith("entry 2: numbered 3") for p in problems) and any("entry 2: hash" in p for p in problems)
    # reordered
    assert not verify_log([log[1], log[0]] + log[2:], fw.serial).intact
    # another device's log: the genesis binds it to the serial number
    assert not verify_log(log, "DS1-999999").intact
    assert verify_log([], fw.serial).intact


def test_a_rewritten_chain_verifies_alone_but_not_against_the_live_copies():
    fw = logged_firmware(rogue=("rewrite-log",))
    served = fw._served_log()
    assert len(served) == 2 and verify_log(served, fw.serial).intact  # vendor entries gone, chain recomputed
    result = verify_log(served, fw.serial, live=fw.log)
    assert not result.intact and any("notified live" in p or "differs" in p for p in result.problems)


def test_optout_stops_vendor_adjustments_and_refuses_new_ones_but_not_the_sleepers():
    fw = logged_firmware()
    assert fw.opted_out and not [e for e in fw.source.episodes if e.origin == ds.ORIGIN_VENDOR and e.end > fw.tick]
    fw.write(ds.CONTROL_UUID, ds.command(ds.OP_STIMULATE, 9, ds.stimulate_args(5, 1, 30, 12.0, 4.0)))
    fw.write(ds.CONTROL_UUID, ds.command(ds.OP_STIMULATE, 10, ds.stimulate_args(5, 0, 30, 12.0, 4.0)))
    replies = [n for n in fw.advance(0.1) if n[1] == ds.RESPONSE_UUID]
    statuses = {r[2][3]: r[2][5] for r in replies}
    assert statuses[9] == ds.STATUS_REFUSED and statuses[10] == ds.STATUS_OK
    events = [parse_entry(e) for e in fw.log[-2:]]
    assert [(e.event, e.origin) for e in events] == [("refused", "vendor"), ("stimulation", "sleeper")]
    assert [t["origin"] for t in fw.truth] == ["vendor", "sleeper", "vendor", "sleeper"]


def test_rogue_firmware_covert_and_ignoring_the_optout():
    fw = logged_firmware(rogue=("covert", "ignore-optout"))
    entries = [parse_entry(e) for e in fw.log]
    assert all(e.origin == "sleeper" for e in entries)  # the vendor's adjustments are nowhere in the log
    assert [t["logged"] for t in fw.truth] == [False, True, False]
    fw.write(ds.CONTROL_UUID, ds.command(ds.OP_STIMULATE, 9, ds.stimulate_args(5, 1, 30, 12.0, 4.0)))
    assert fw.truth[-1]["origin"] == "vendor" and fw.truth[-1]["during_optout"]


def test_actuators_put_their_physiological_effect_into_the_stream():
    """Current at 12 Hz adds a 12-Hz line at the frontal leads; a honest stream has none."""
    def frontal_12hz(stimulus):
        fw = DreamSyncFirmware(band(2.0, seed=4), vendor_plan=[(10.0, stimulus)] if stimulus else [])
        fw.write(ds.CONTROL_UUID, ds.command(ds.OP_START, 1))
        frames = [n[2] for n in fw.advance(70.0) if n[1] == ds.DATA_UUID]
        exg = np.hstack([drv.decode_samples(drv.checked(f))[2] for f in frames])[0, 2500 + 1250:2500 + 1250 + 10000]
        spectrum = np.abs(np.fft.rfft(exg)) / len(exg) * 2
        return spectrum[np.argmin(np.abs(np.fft.rfftfreq(len(exg), 1 / 250) - 12.0))]

    assert frontal_12hz(Stimulus("current", 50, 12.0, 4.0)) > 3.0 > 0.5 > frontal_12hz(None)


# == through bleak and the emulated radio ===========================================================
def test_the_driver_streams_exactly_what_the_band_sends_and_answers_commands():
    fw = DreamSyncFirmware(band())
    reference = SimulatedHeadband("dreamsync", hours=3 / 60, seed=1).read_all()
    with EmulatedDevice(fw, realtime=False) as device:
        board = drv.DreamSyncBoard(name=device.name, **EMULATED)
        board.audit_options = {"check_timing": False}  # served faster than real time
        with board:
            board.start()
            percent, millivolts = board.battery()
            assert board.battery_percent == percent  # the Battery Level characteristic agrees
            data, blocks = stream(board, 30)
            status = board.status()
            board.stop()
    assert board.serial == "DS1-000127" and board.channels == drv.CHANNELS and board.fs == 250.0
    assert 0 < percent <= 100 and 3300 <= millivolts <= 4200
    assert status["entries"] == 0 and not status["opted_out"]
    assert sum(b.lost_before for b in blocks) == 0 and not np.isnan(data).any()
    assert np.abs(data[:5] - reference[:5, :data.shape[1]]).max() <= 0.005 + 1e-6
    assert board.log_document["entries"] == [] and board.log_document["first_tick"] == 0
    assert board.audit is not None and board.stream_anomalies == []  # the packet audit saw a clean stream


def test_lost_and_corrupt_frames_are_counted_exactly():
    sent = {"n": 0}

    def wire(payloads):  # drop every 7th frame, corrupt every 11th, duplicate every 13th
        out = []
        for p in payloads:
            sent["n"] += 1
            k = sent["n"]
            if k % 7 == 0:
                continue
            if k % 11 == 0:
                p = p[:50] + bytes([p[50] ^ 0xFF]) + p[51:]
            out += [p, p] if k % 13 == 0 else [p]
        return out

    fw = DreamSyncFirmware(band())
    reference = SimulatedHeadband("dreamsync", hours=3 / 60, seed=1).read_all()
    with EmulatedDevice(fw, realtime=False, packet_filter={ds.DATA_UUID: wire}) as device:
        board = drv.DreamSyncBoard(address=device.address, read_log_at_stop=False, **EMULATED)
        with board:
            board.start()
            data, blocks = stream(board, 40)
    n_frames = data.shape[1] // 10
    bad = {k for k in range(1, n_frames + 1) if k % 7 == 0 or k % 11 == 0}
    missing = np.isnan(data[0]).reshape(-1, 10).all(axis=1)
    assert set((np.flatnonzero(missing) + 1).tolist()) == bad
    assert board.samples_lost == 10 * len(bad) and board.decoder.stats["duplicates"] > 0
    ok = ~np.isnan(data[0])
    assert np.abs(data[:5, ok] - reference[:5, :data.shape[1]][:, ok]).max() <= 0.005 + 1e-6


def test_optout_and_stimulate_over_ble_with_the_log_read_at_the_end():
    fw = DreamSyncFirmware(band(), vendor_plan=[(20.0, Stimulus("current", 120, 12.0, 4.0))])
    with EmulatedDevice(fw, realtime=False) as device:
        board = drv.DreamSyncBoard(name=device.name, **EMULATED)
        fw.hold = lambda: fw.tick > (board.position_s + 2.0) * drv.SAMPLE_RATE  # at most 2 s ahead of the host
        with board:
            board.start()
            stream(board, 25)
            optout = board.optout(True)
            vendor = board.stimulate("light-flicker", 20, 40.0, 2.0, origin="vendor")
            mine = board.stimulate("audio-rhythm", 20, 40.0, 2.0)
            stream(board, 10)
            board.stop()
            with pytest.raises(DeviceError, match="bad arguments"):
                board._require("stimulate", b"\x09\x00")
    assert optout["status"] == "ok" and vendor["status"] == "refused (opt-out)" and mine["status"] == "ok"
    doc = board.log_document
    entries = [bytes.fromhex(e) for e in doc["entries"]]
    result = verify_log(entries, doc["device"]["serial"], live=[bytes.fromhex(e) for e in doc["live"]],
                        head=bytes.fromhex(doc["head"]))
    assert result.intact and len(doc["live"]) == len(entries) == 5
    assert [(e.event, e.origin) for e in result.entries] == [
        ("stimulation", "vendor"), ("optout-on", "sleeper"), ("stopped", "vendor"), ("refused", "vendor"),
        ("stimulation", "sleeper")]
    assert result.entries[0].tick == 5000 and result.entries[0].kind == "electrical"
    assert [j["command"] for j in doc["journal"]] == ["optout_on", "stimulate light-flicker (vendor)",
                                                      "stimulate audio-rhythm (sleeper)"]


def test_a_log_edited_after_the_read_is_caught_against_the_live_copies():
    fw = DreamSyncFirmware(band(), vendor_plan=[(5.0, Stimulus("current", 10, 12.0, 4.0))], rogue=("erase-log",))
    with EmulatedDevice(fw, realtime=False) as device:
        board = drv.DreamSyncBoard(name=device.name, **EMULATED)
        with board:
            board.start()
            stream(board, 20)
            board.stop()
    doc = board.log_document
    assert doc["entries"] == [] and len(doc["live"]) == 1  # served without the vendor's entry
    result = verify_log([], doc["device"]["serial"], live=[bytes.fromhex(e) for e in doc["live"]])
    assert result.problems == ["entry 0 was notified live but is missing from the log as read"]


def test_a_dropped_link_reconnects_and_the_counter_places_every_sample(monkeypatch):
    from ingest import board as board_module

    monkeypatch.setattr(board_module, "RECONNECT_DELAYS", (0.05,))
    fw = DreamSyncFirmware(band())
    reference = SimulatedHeadband("dreamsync", hours=3 / 60, seed=1).read_all()
    with EmulatedDevice(fw, realtime=False) as device:
        board = drv.DreamSyncBoard(name=device.name, read_log_at_stop=False, **EMULATED)
        with board:
            board.start()
            blocks, resumed = [], None
            for block in board.blocks():
                blocks.append(block)
                if len(blocks) == 1:  # in the radio's own time, on its own thread
                    device.drop_link("out of range", after=10.0)
                # the radio may run ahead of a loaded reader: read on until the link is back, then 5 s more
                if board.reconnects and resumed is None:
                    resumed = block.first_index
                if resumed is not None and block.end_index >= resumed + 5 * drv.SAMPLE_RATE \
                        or block.end_index >= 170 * drv.SAMPLE_RATE:
                    break
    assert board.disconnects == 1 and board.reconnects == 1
    index = np.concatenate([np.arange(b.first_index, b.end_index) for b in blocks])
    data = np.hstack([b.data for b in blocks])
    assert np.array_equal(np.unique(index), index)  # in order, never twice
    assert np.abs(data[:5] - reference[:5, index]).max() <= 0.005 + 1e-6  # every sample where it belongs
    assert sum(b.lost_before for b in blocks) == board.samples_lost == index[-1] + 1 - len(index)


def test_the_worked_example_of_the_protocol_document_is_what_the_code_does():
    from conftest import ROOT

    text = (ROOT / "docs" / "dreamsync-protocol.md").read_text()
    compact = " ".join(text.split())
    genesis = ds.genesis("DS1-000127")
    body0 = ds.entry_body(0, 30000, 1, 5, 1, 0, 180, 1200, 40)
    hash0 = ds.chain(genesis, body0)
    body1 = ds.entry_body(1, 105000, 2)
    hash1 = ds.chain(hash0, body1)
    command = ds.command(ds.OP_STIMULATE, 7, ds.stimulate_args(5, 1, 180, 12.0, 4.0))
    reply = ds.response(3, 7, ds.OP_STIMULATE, ds.STATUS_OK, (30000).to_bytes(4, "little") + bytes(4))
    for value in (genesis.hex(), hash0.hex(), body1.hex(" "), reply.hex(" "), command[:2].hex(" "),
                  command[2:-4].hex(" "), command[-4:].hex(" "), ds.log_entry_frame(0, 0, body0 + hash0)[-4:].hex(" ")):
        assert value in compact, value
    assert hash1.hex() in compact.replace(" ", "")
    entries = verify_log([body0 + hash0, body1 + hash1], "DS1-000127").entries
    assert [(e.event, e.actuator, e.origin, e.frequency_hz, e.intensity_uv) for e in entries] == [
        ("stimulation", "current", "vendor", 12.0, 4.0), ("optout-on", "", "sleeper", 0.0, 0.0)]
