"""The shared board machinery: loss accounting, reconnects with the gap placed by the clock, captures."""

import struct

import numpy as np
import pytest

from ingest.board import Board, LinkLost
from ingest.capture import FROM_HOST, RESTART, CaptureReader
from ingest.decoder import DecodedRun, Decoder
from ingest.errors import DeviceError, RecordingError

FS = 100.0


class CounterDecoder(Decoder):
    """Toy protocol: 5-byte packets, u8 counter (wraps) + two int16 samples of one channel."""

    channels, kinds, fs = ("EEG C3",), ("EEG",), FS

    def __init__(self):
        super().__init__()
        self._buffer = b""
        self._last = None
        self._resync = False
        self.commands = []

    def on_command(self, payload):
        self.commands.append(payload)

    def restart(self):
        self._resync, self._last = True, None

    def feed(self, payload, source=0):
        self._buffer += payload
        runs = []
        while len(self._buffer) >= 5:
            counter, a, b = struct.unpack(">Bhh", self._buffer[:5])
            self._buffer = self._buffer[5:]
            lost = 0 if self._last is None else ((counter - self._last - 1) % 256) * 2
            self._last = counter
            runs.append(DecodedRun(np.array([[a, b]], dtype=np.float64), lost, self._resync))
            self._resync = False
            self.stats["packets"] += 1
        return runs


class ScriptedBoard(Board):
    board = "scripted"

    def __init__(self, script, connect_failures=0, **kw):
        super().__init__(**kw)
        self.device_id = "scripted:0"
        self._script = list(script)  # items: (host_time, bytes) or "drop"
        self._connect_failures = connect_failures
        self.written = []

    def _connect(self):
        if self._connect_failures:
            self._connect_failures -= 1
            raise DeviceError("not there yet")

    def _disconnect(self):
        pass

    def _write(self, payload):
        self.written.append(payload)

    def _receive(self, timeout):
        if not self._script:
            self.stop()
            return []
        item = self._script.pop(0)
        if item == "drop":
            raise LinkLost()
        return [(item[0], 0, item[1])]

    def _make_decoder(self):
        return CounterDecoder()

    def _begin_stream(self):
        self.send(b"b")

    def _end_stream(self):
        self.send(b"s")


def packets(first_counter, n, t0, value=0):
    """n packets as one chunk per packet, arriving on time (2 samples = 20 ms each)."""
    return [(t0 + (k + 1) * 2 / FS, struct.pack(">Bhh", (first_counter + k) % 256, value + 2 * k, value + 2 * k + 1))
            for k in range(n)]


def run(board):
    with board:
        board.start()
        return list(board.blocks())


def test_counter_gaps_are_counted_and_never_filled():
    script = packets(250, 10, 0.0)
    del script[3:5]  # two packets (four samples) lost, counter wraps 255 -> 0 on the way
    board = ScriptedBoard(script)
    blocks = run(board)
    assert [b.first_index for b in blocks][:5] == [0, 2, 4, 10, 12]
    assert sum(b.lost_before for b in blocks) == 4 == board.samples_lost_total == board.samples_lost
    assert board.samples_received == 16


def test_reconnect_with_backoff_and_gap_from_the_clock(monkeypatch):
    import ingest.board as board_module

    monkeypatch.setattr(board_module, "RECONNECT_DELAYS", (0.0, 0.01))
    before = packets(0, 50, 0.0)           # 1 s of signal, ends at t = 1.0
    after = packets(0, 50, 2.0)            # counter restarted; first packet at 2.02 s
    board = ScriptedBoard(before + ["drop"] + after, connect_failures=0)
    board._connect_failures = 0
    original = board._connect
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if 2 <= calls["n"] <= 3:  # the first two reconnect attempts fail
            raise DeviceError("not yet")
        original()

    board._connect = flaky
    blocks = run(board)
    assert board.disconnects == 1 and board.reconnects == 1 and calls["n"] == 4
    first_after = blocks[50]
    # 1 s of silence at 100 Hz: the 100 samples sent meanwhile are counted lost, to within one
    assert abs(first_after.lost_before - 100) <= 1 and first_after.first_index == 100 + first_after.lost_before
    assert board.written == [b"b", b"b", b"s"]


def test_giving_up_after_max_outage(monkeypatch):
    import ingest.board as board_module

    monkeypatch.setattr(board_module, "RECONNECT_DELAYS", (0.0,))
    board = ScriptedBoard(packets(0, 5, 0.0) + ["drop"], max_outage=0.05)
    board._connect_failures = 0
    with board:
        board.start()
        board._connect_failures = 10**9
        with pytest.raises(DeviceError, match="giving up"):
            list(board.blocks())


def test_capture_holds_every_chunk_and_command(tmp_path):
    script = packets(0, 20, 100.0, value=7)
    board = ScriptedBoard(script, capture=tmp_path / "night.dsraw")
    run(board)
    with CaptureReader(tmp_path / "night.dsraw") as reader:
        assert reader.header["board"] == "scripted" and reader.header["fs"] == FS
        records = list(reader)
    assert [r.payload for r in records if r.source == FROM_HOST] == [b"b", b"s"]
    assert [r.source for r in records[:2]] == [FROM_HOST, RESTART]
    data = [r for r in records if r.source not in (FROM_HOST, RESTART)]
    assert [r.payload for r in data] == [p for _, p in script] and [r.host_time for r in data] == [t for t, _ in script]


def test_a_capture_cut_mid_record_reads_up_to_the_cut(tmp_path):
    board = ScriptedBoard(packets(0, 30, 0.0), capture=tmp_path / "c.dsraw")
    run(board)
    raw = (tmp_path / "c.dsraw").read_bytes()
    (tmp_path / "cut.dsraw").write_bytes(raw[:-3])
    with CaptureReader(tmp_path / "cut.dsraw") as reader:
        records = list(reader)
        assert reader.truncated and len(records) == 30 + 3 - 1  # 30 chunks, b, restart mark, s; cut in s
    (tmp_path / "bad.dsraw").write_bytes(b"EDF or something else")
    with pytest.raises(RecordingError, match="not a dreamsync raw capture"):
        CaptureReader(tmp_path / "bad.dsraw")


def decoder_from_header(header):
    """How ingest.boards rebuilds this test board's decoder from a capture."""
    return CounterDecoder()


def test_a_capture_replays_to_exactly_the_live_blocks(tmp_path, monkeypatch, ):
    import ingest.board as board_module
    from ingest import boards
    from ingest.replay import open_recording

    monkeypatch.setattr(board_module, "RECONNECT_DELAYS", (0.0,))
    monkeypatch.setitem(boards.BOARD_MODULES, "scripted", __name__)
    script = packets(0, 40, 0.0)
    del script[10:13]
    script += ["drop"] + packets(0, 40, 3.0)
    live_board = ScriptedBoard(script, capture=tmp_path / "n.dsraw")
    live = run(live_board)
    with open_recording(tmp_path / "n.dsraw") as replay:
        replay.start()
        again = list(replay.blocks())
    assert [(b.first_index, b.lost_before) for b in again] == [(b.first_index, b.lost_before) for b in live]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(again, live))
    assert replay.samples_lost == live_board.samples_lost > 6
