"""Muse 2 / Muse S (classic protocol, BLE): decoder and board driver.

Facts from ``shared/docs/protocols.md`` (muse-js, muse-lsl, BrainFlow); every vector of
``shared/vectors/muse`` decodes exactly. Characteristics ``273e00XX-4c4d-454d-96be-f03bac821358`` of
service 0xFE8D::

    0001 control     commands in: [len(cmd) + 1] + ASCII(cmd) + "\\n"; JSON replies out in fragments
                     [n] + n characters (an object may span fragments, a fragment may end one and begin
                     the next)
    0003..0006       TP9, AF7, AF8, TP10; 0007 right AUX (presets p20, p50): u16 sequence + 12 samples
                     x 12-bit unsigned, big-endian; uV = (raw - 2048) x 0.48828125; 256 Hz
    0009, 000a       gyroscope, accelerometer: u16 sequence + 3 x (x, y, z) int16 big-endian, 52 Hz
    000b             telemetry: sequence, battery / 512 %, fuel gauge x 2.2 mV, ?, temperature
    000f..0011       PPG ambient, infrared, red (p50): u16 sequence + 6 x uint24, 64 Hz

Assembly and loss accounting
    The electrodes share one sequence counter and notify separately: a sequence is delivered when all
    its electrodes are in, in sequence order. The next sequence due is given up (its 12 samples counted
    lost on *every* channel; nothing is filled) once a sequence :data:`WINDOW` or more ahead is complete,
    or when more than :data:`MAX_PENDING` sequences wait. The wrap at 0xFFFF is one step like any other;
    a sequence up to 0x7FFF behind the next due is a duplicate or late notification and is dropped (its
    place was given up already). A loss of 0x8000 sequences or more (25 minutes) is not
    distinguishable, but a link does not stay up that long without data.

Duplicates, reordering, corruption
    Identical repeats are dropped; notifications reordered within the window are put back in order.
    Two different payloads for one electrode and sequence poison that sequence (lost: one of them is
    corrupt and there is no telling which). Each electrode's notifications come in order, so when one
    steps back after a notification more than :data:`STRAY_AHEAD` sequences ahead of the one due, that
    notification carried a corrupt number: it is taken out again (``strays``). A corrupt number so
    spoils at most the sequences waiting at the time and the few after them. Wrong lengths and unknown
    sources are skipped. A corrupt sample value cannot be detected (no checksum, and every 12-bit code
    is a valid reading). After a loss, the sequences behind it wait up to :data:`WINDOW` sequences
    (94 ms); without loss a sequence is delivered as its last electrode arrives.

Rates: one stream, one rate
    The block stream (:meth:`MuseBoard.blocks`) carries the EEG (and AUX) at 256 Hz. Accelerometer and
    gyroscope (52 Hz) and PPG (64 Hz) run on their own clocks and counters, so they are not rows of the
    EEG blocks: the decoder turns them into :class:`SensorRun` objects (units g, deg/s, raw counts) with
    their own loss accounting, read with :meth:`MuseBoard.read_sensors`; the raw capture holds them all,
    so a replay rebuilds them too. They have no reorder window (a late packet is dropped, its place
    counted lost); a jump of more than :data:`STRAY_AHEAD` packets is held until the next packet says
    whether it was real or a corrupt number. Telemetry ends up in :attr:`MuseDecoder.battery_percent`.

Keep-alive
    A Muse stops streaming after some minutes without a command; the board writes ``k`` every
    ``keepalive_s`` seconds from the BLE thread while streaming (not through the capture: it changes
    nothing in the data).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..ble import BleLink
from ..board import Board, LinkLost
from ..decoder import DecodedRun, Decoder
from ..errors import DeviceError


def characteristic_uuid(number: int) -> str:
    """Full UUID of Muse characteristic ``0x00XX`` (3 -> TP9)."""
    return f"273e{number:04x}-4c4d-454d-96be-f03bac821358"


# -- GATT --------------------------------------------------------------------------------------------
SERVICE_UUID = "0000fe8d-0000-1000-8000-00805f9b34fb"
CONTROL_UUID = characteristic_uuid(0x01)
EEG_UUIDS = tuple(characteristic_uuid(n) for n in range(0x03, 0x08))  # TP9, AF7, AF8, TP10, AUX
GYRO_UUID, ACCEL_UUID, TELEMETRY_UUID = (characteristic_uuid(n) for n in (0x09, 0x0A, 0x0B))
PPG_UUIDS = tuple(characteristic_uuid(n) for n in (0x0F, 0x10, 0x11))  # ambient, infrared, red
#: Capture sources (a capture header's ``"sources"``), in this order.
SOURCES = (CONTROL_UUID,) + EEG_UUIDS + (GYRO_UUID, ACCEL_UUID, TELEMETRY_UUID) + PPG_UUIDS

# -- signal ------------------------------------------------------------------------------------------
FS = 256.0
PACKET_LENGTH = 20
SAMPLES_PER_PACKET = 12
EEG_UV_PER_COUNT = 0.48828125
EEG_OFFSET = 2048
#: Every decoded EEG sample lies within [-FULL_SCALE_UV, FULL_SCALE_UV).
FULL_SCALE_UV = EEG_OFFSET * EEG_UV_PER_COUNT
ACCEL_G_PER_LSB = 0.0000610352
GYRO_DPS_PER_LSB = 0.0074768
IMU_RATE, PPG_RATE = 52.0, 64.0
EEG_CHANNELS = ("EEG TP9", "EEG AF7", "EEG AF8", "EEG TP10")
AUX_CHANNEL = "AUX right"
#: Preset -> (AUX streamed, PPG streamed).
PRESETS = {"p21": (False, False), "p20": (True, False), "p50": (True, True)}
DEFAULT_PRESET = "p21"
#: Sensor name, rate (Hz), rows, scale of each side stream, by source UUID.
SENSORS = {ACCEL_UUID: ("accelerometer", IMU_RATE, 3, ACCEL_G_PER_LSB),
           GYRO_UUID: ("gyroscope", IMU_RATE, 3, GYRO_DPS_PER_LSB),
           PPG_UUIDS[0]: ("ppg_ambient", PPG_RATE, 1, 1.0),
           PPG_UUIDS[1]: ("ppg_infrared", PPG_RATE, 1, 1.0),
           PPG_UUIDS[2]: ("ppg_red", PPG_RATE, 1, 1.0)}

# -- assembly ----------------------------------------------------------------------------------------
#: A sequence is given up once one this many sequences ahead of it is complete.
WINDOW = 2
#: Sequences waiting for electrodes, at most (more: the oldest is given up).
MAX_PENDING = 32
#: Sequences ahead of the one due beyond which an electrode's notification that is followed by an
#: earlier one of the same electrode is taken for a corrupt number (nearer, it is a reordering).
STRAY_AHEAD = 8
_HALF = 0x8000
_POISON = -1000  # fill count of a sequence with conflicting payloads: it never completes


# == encoding helpers ================================================================================
def encode_command(command: str) -> bytes:
    """Bytes to write to the control characteristic: ``[len(cmd) + 1] + cmd + "\\n"``."""
    body = command.encode("ascii") + b"\n"
    return bytes([len(body)]) + body


def decode_command(data: bytes) -> str | None:
    """The command in bytes written to the control characteristic; None if not framed as one."""
    if len(data) < 2 or data[0] < 1 or len(data) < 1 + data[0] or data[data[0]] != 0x0A:
        return None
    try:
        return bytes(data[1 : data[0]]).decode("ascii")
    except UnicodeDecodeError:
        return None


# == sample decoding =================================================================================
@njit(cache=True)
def eeg_uv(packets):
    """Microvolts of EEG notifications, grouped by sequence.

    Parameters
    ----------
    packets : ndarray of uint8, shape (n_sequences, n_electrodes, 20)
        Whole notifications (sequence number first), electrodes in channel order.

    Returns
    -------
    ndarray of float64, shape (n_electrodes, 12 * n_sequences)
    """
    n_seq, n_el = packets.shape[0], packets.shape[1]
    out = np.empty((n_el, SAMPLES_PER_PACKET * n_seq))
    for s in range(n_seq):
        for e in range(n_el):
            for k in range(6):
                b0 = np.int32(packets[s, e, 2 + 3 * k])
                b1 = np.int32(packets[s, e, 3 + 3 * k])
                b2 = np.int32(packets[s, e, 4 + 3 * k])
                out[e, 12 * s + 2 * k] = (((b0 << 4) | (b1 >> 4)) - EEG_OFFSET) * EEG_UV_PER_COUNT
                out[e, 12 * s + 2 * k + 1] = ((((b1 & 15) << 8) | b2) - EEG_OFFSET) * EEG_UV_PER_COUNT
    return out


def unpack_uint12(data) -> np.ndarray:
    """12-bit big-endian values, two per three bytes: uint8 (..., 3k) -> int64 (..., 2k)."""
    d = np.asarray(data, dtype=np.int64)
    d = d.reshape(*d.shape[:-1], -1, 3)
    a = (d[..., 0] << 4) | (d[..., 1] >> 4)
    b = ((d[..., 1] & 0xF) << 8) | d[..., 2]
    return np.stack([a, b], axis=-1).reshape(*d.shape[:-2], -1)


def eeg_uv_numpy(packets) -> np.ndarray:
    """Reference of :func:`eeg_uv` in plain numpy (same parameters and result)."""
    p = np.asarray(packets, dtype=np.uint8)
    raw = unpack_uint12(p[:, :, 2:20])  # (n_seq, n_el, 12)
    return ((raw.transpose(1, 0, 2).reshape(p.shape[1], -1) - EEG_OFFSET) * EEG_UV_PER_COUNT).astype(np.float64)


def unpack_uint24(data) -> np.ndarray:
    """Unsigned 24-bit big-endian values: uint8 (..., 3k) -> int64 (..., k)."""
    d = np.asarray(data, dtype=np.int64)
    d = d.reshape(*d.shape[:-1], -1, 3)
    return (d[..., 0] << 16) | (d[..., 1] << 8) | d[..., 2]


def imu_values(payload: bytes, scale: float) -> np.ndarray:
    """The three (x, y, z) samples of an accelerometer/gyroscope notification, shape (3 axes, 3 samples)."""
    return np.frombuffer(payload, dtype=">i2", count=9, offset=2).reshape(3, 3).T * scale


@dataclass(frozen=True)
class Telemetry:
    """A decoded telemetry notification: battery %, fuel gauge mV, temperature word."""

    sequence: int
    battery_percent: float
    fuel_gauge_mv: float
    temperature: int


def parse_telemetry(payload: bytes) -> Telemetry | None:
    """Telemetry of a notification of characteristic 000b; None if too short or impossible (> 100 %)."""
    if len(payload) < 10:
        return None
    seq, battery, fuel, _, temperature = np.frombuffer(payload, dtype=">u2", count=5).tolist()
    if battery > 100 * 512:
        return None
    return Telemetry(seq, battery / 512.0, fuel * 2.2, temperature)


@dataclass(frozen=True)
class SensorRun:
    """Contiguous samples of a side stream (accelerometer, gyroscope, PPG) at its own rate.

    Attributes
    ----------
    sensor : str
        ``"accelerometer"`` (g), ``"gyroscope"`` (deg/s) or ``"ppg_ambient"``, ``"ppg_infrared"``,
        ``"ppg_red"`` (raw counts).
    fs : float
        Sample rate, Hz.
    data : ndarray, shape (n_rows, n_samples)
        x, y, z rows for the IMU, one row for a PPG channel.
    lost_before : int
        Samples missing before this run, from the sensor's own sequence counter.
    resync : bool
        First run of the sensor after a (re)start: the gap before it is unknown.
    sequence : int
        Sequence number of the run's notification.
    """

    sensor: str
    fs: float
    data: np.ndarray
    lost_before: int
    resync: bool
    sequence: int


class ControlReassembler:
    """JSON replies from the control characteristic's fragments.

    A fragment is ``[n] + n characters`` (zero-padded); an object may span fragments and one fragment
    may close one object and open the next (``"rc":0}{"r``). Text outside objects is skipped; a
    malformed object is dropped (``errors``), and an object longer than 4 kB resets the buffer.
    """

    MAX_LENGTH = 4096

    def __init__(self):
        self._text: list = []
        self._depth = 0
        self._in_string = False
        self._escape = False
        self.errors = 0

    def feed(self, payload: bytes) -> list:
        """Objects completed by this fragment (dicts, in order)."""
        if not payload:
            return []
        text = bytes(payload[1 : 1 + payload[0]]).decode("latin-1")
        out = []
        for ch in text:  # a few characters a second: a character loop is fine here
            if self._depth == 0:
                if ch == "{":
                    self._text, self._depth = ["{"], 1
                continue
            self._text.append(ch)
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch == "{":
                self._depth += 1
            elif ch == "}":
                self._depth -= 1
                if self._depth == 0:
                    self._finish(out)
            if len(self._text) > self.MAX_LENGTH:
                self._reset()
                self.errors += 1
        return out

    def _finish(self, out: list) -> None:
        try:
            obj = json.loads("".join(self._text))
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            out.append(obj)
        else:
            self.errors += 1
        self._reset()

    def _reset(self) -> None:
        self._text, self._depth, self._in_string, self._escape = [], 0, False, False


# == decoder =========================================================================================
class MuseDecoder(Decoder):
    """Muse notifications in, 4-channel (5 with AUX) runs at 256 Hz out; side streams and telemetry kept.

    Parameters
    ----------
    preset : {"p21", "p20", "p50"}
        p20 and p50 add the AUX channel.
    sources : sequence of str, optional
        Characteristic UUID of each ``source`` index passed to :meth:`feed` (a capture header's
        ``"sources"``); :data:`SOURCES` by default.
    window : int
        Sequences a missing notification is waited for (:data:`WINDOW`).

    Attributes
    ----------
    sensor_runs : collections.deque of SensorRun
        Accelerometer, gyroscope and PPG runs not yet read (the oldest drop after some 15 minutes).
    replies : collections.deque of dict
        JSON replies of the control characteristic, oldest first.
    battery_percent, fuel_gauge_mv : float or None
    temperature : int or None
        Latest telemetry (battery also from a status reply's ``"bp"``).
    stats : dict
        ``packets`` (EEG notifications used), ``bytes_skipped``, ``samples_lost`` (per channel, from
        sequence numbers), ``sequences_lost``, ``duplicates``, ``late``, ``conflicts``, ``strays``.
    """

    fs = FS
    packet_rate = FS / SAMPLES_PER_PACKET  # per electrode characteristic
    counter_modulus = 0x10000
    counter_behind = _HALF - 1

    def __init__(self, preset: str = DEFAULT_PRESET, sources=None, window: int = WINDOW):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.preset = preset
        aux = PRESETS[preset][0]
        self.n_electrodes = 5 if aux else 4
        self.channels = EEG_CHANNELS + ((AUX_CHANNEL,) if aux else ())
        self.kinds = ("EEG",) * 4 + (("MISC",) if aux else ())
        self.window = int(window)
        self.sources = tuple(s.lower() for s in (sources if sources is not None else SOURCES))
        eeg = {u: i for i, u in enumerate(EEG_UUIDS[: self.n_electrodes])}
        self._electrode = [eeg.get(u, -1) for u in self.sources]
        self._eeg_source = {e: i for i, e in enumerate(self._electrode) if e >= 0}  # for on_packets
        self.stats.update(sequences_lost=0, duplicates=0, late=0, conflicts=0, strays=0)
        self.sensor_runs: collections.deque = collections.deque(maxlen=int(600 * IMU_RATE))
        self.replies: collections.deque = collections.deque(maxlen=64)
        self.battery_percent: float | None = None
        self.fuel_gauge_mv: float | None = None
        self.temperature: int | None = None
        self._control = ControlReassembler()
        eeg_uv(np.zeros((1, self.n_electrodes, PACKET_LENGTH), dtype=np.uint8))  # load the kernel now, not mid-stream
        self.restart()

    def restart(self) -> None:
        self._next: int | None = None  # sequence due next
        self._pending: dict = {}  # sequence -> [payload per electrode..., fill count (negative: poisoned)]
        self._complete: set = set()  # complete sequences waiting behind an incomplete one
        self._last_seq = [None] * self.n_electrodes  # sequence of each electrode's last notification
        self._lost = 0
        self._resync = True
        self._sensor_state: dict = {}  # uuid -> [last sequence, held (sequence, payload) or None]

    # -- input -------------------------------------------------------------------------------------
    def feed(self, payload: bytes, source: int = 0) -> list:
        """Decode one notification of source ``source``; returns the EEG runs it completes."""
        if not 0 <= source < len(self._electrode):
            self.stats["bytes_skipped"] += len(payload)
            return []
        e = self._electrode[source]
        if e >= 0:
            return self._eeg(e, payload)
        self._other(self.sources[source], payload)
        return []

    def _eeg(self, e: int, payload: bytes) -> list:
        if len(payload) != PACKET_LENGTH:
            self.stats["bytes_skipped"] += len(payload)
            return []
        seq = (payload[0] << 8) | payload[1]
        if self.on_packets is not None:
            content = np.frombuffer(payload, np.uint8, offset=2)[None, :]
            self.on_packets(self._eeg_source[e], np.array([seq], dtype=np.int64), content)
        nxt = self._next
        if nxt is None:
            nxt = self._next = seq
        d = (seq - nxt) & 0xFFFF
        if d >= _HALF:
            self.stats["late"] += 1
            return []
        n_el = self.n_electrodes
        previous = self._last_seq[e]
        self._last_seq[e] = seq
        if previous is not None and 2 <= (previous - seq) & 0xFFFF < _HALF and (previous - nxt) & 0xFFFF > STRAY_AHEAD:
            self._drop_stray(e, previous)
        entry = self._pending.get(seq)
        if entry is None:
            entry = self._pending[seq] = [None] * n_el + [0]
        slot = entry[e]
        if slot is not None:
            if slot == payload:
                self.stats["duplicates"] += 1
                return []
            if entry[n_el] >= 0:
                self.stats["conflicts"] += 1
            entry[n_el] = _POISON
            self._complete.discard(seq)
            return self._advance()
        entry[e] = bytes(payload)
        entry[n_el] += 1
        if entry[n_el] == n_el:
            if d == 0:
                return self._advance()
            self._complete.add(seq)
        if self._complete or len(self._pending) > MAX_PENDING:
            return self._advance()
        return []

    def _drop_stray(self, e: int, seq: int) -> None:
        """Electrode ``e`` stepped back from ``seq``: its notification there had a corrupt number."""
        entry = self._pending.get(seq)
        if entry is None or entry[e] is None or entry[self.n_electrodes] < 0:
            return
        entry[e] = None
        entry[self.n_electrodes] -= 1
        self._complete.discard(seq)
        if entry[self.n_electrodes] == 0:
            del self._pending[seq]
        self.stats["strays"] += 1

    def _advance(self) -> list:
        """Deliver the sequences that are due, giving up the ones the window says are not coming."""
        n_el, pending = self.n_electrodes, self._pending
        nxt = self._next
        ready: list = []  # (samples lost before, payloads of one sequence)
        lost = self._lost
        while pending:
            entry = pending.get(nxt)
            if entry is not None and entry[n_el] == n_el:
                del pending[nxt]
                self._complete.discard(nxt)
                ready.append((lost, entry[:n_el]))
                lost = 0
                nxt = (nxt + 1) & 0xFFFF
                continue
            overflow = len(pending) > MAX_PENDING
            if not overflow and (not self._complete or max((s - nxt) & 0xFFFF for s in self._complete) < self.window):
                break
            # give up the sequence due, and every sequence nothing arrived for up to the next one that did
            if entry is not None:
                del pending[nxt]
            step = min((s - nxt) & 0xFFFF for s in pending) if pending else 1
            lost += SAMPLES_PER_PACKET * step
            self.stats["sequences_lost"] += step
            nxt = (nxt + step) & 0xFFFF
        self._next = nxt
        self._lost = lost
        return self._runs(ready) if ready else []

    def _runs(self, ready: list) -> list:
        runs = []
        start = 0
        for i in range(1, len(ready) + 1):  # one run per stretch without a gap
            if i < len(ready) and ready[i][0] == 0:
                continue
            chunk = ready[start:i]
            raw = b"".join(b"".join(payloads) for _, payloads in chunk)
            packets = np.frombuffer(raw, dtype=np.uint8).reshape(len(chunk), self.n_electrodes, PACKET_LENGTH)
            lost = chunk[0][0]
            runs.append(DecodedRun(eeg_uv(packets), 0 if self._resync else lost, self._resync))
            if not self._resync:
                self.stats["samples_lost"] += lost
            self._resync = False
            self.stats["packets"] += len(chunk) * self.n_electrodes
            start = i
        return runs

    def _other(self, uuid: str, payload: bytes) -> None:
        if uuid == CONTROL_UUID:
            for reply in self._control.feed(payload):
                self.replies.append(reply)
                if isinstance(reply.get("bp"), (int, float)) and 0 <= reply["bp"] <= 100:
                    self.battery_percent = float(reply["bp"])
        elif uuid == TELEMETRY_UUID:
            telemetry = parse_telemetry(payload)
            if telemetry is not None:
                self.battery_percent = telemetry.battery_percent
                self.fuel_gauge_mv = telemetry.fuel_gauge_mv
                self.temperature = telemetry.temperature
            else:
                self.stats["bytes_skipped"] += len(payload)
        elif uuid in SENSORS and len(payload) == PACKET_LENGTH:
            self._sensor(uuid, payload)
        else:
            self.stats["bytes_skipped"] += len(payload)

    def _sensor(self, uuid: str, payload: bytes) -> None:
        """Side streams: in order or dropped (no reorder window); a jump of more than
        :data:`STRAY_AHEAD` packets is held until the next packet says whether it was real or a
        corrupt sequence number (then the old count goes on)."""
        seq = (payload[0] << 8) | payload[1]
        state = self._sensor_state.get(uuid)
        if state is None:
            self._sensor_state[uuid] = [seq, None]
            self._emit_sensor(uuid, payload, 0, True)
            return
        last, held = state
        if held is not None:
            if seq == held[0]:
                self.stats["duplicates"] += 1
                return
            state[1] = None
            if (seq - held[0]) & 0xFFFF == 1:  # the jump was real: count it, deliver what was held
                self._emit_sensor(uuid, held[1], ((held[0] - last - 1) & 0xFFFF) * self._per_packet(uuid), False)
                last = state[0] = held[0]
            elif 0 < (seq - last) & 0xFFFF <= STRAY_AHEAD:
                self.stats["strays"] += 1  # the old count goes on: the held packet had a corrupt number
        d = (seq - last) & 0xFFFF
        if d == 0 or d >= _HALF:
            self.stats["duplicates" if d == 0 else "late"] += 1
            return
        if d > STRAY_AHEAD:
            state[1] = (seq, bytes(payload))
            return
        state[0] = seq
        self._emit_sensor(uuid, payload, (d - 1) * self._per_packet(uuid), False)

    @staticmethod
    def _per_packet(uuid: str) -> int:
        return 3 if SENSORS[uuid][2] == 3 else 6

    def _emit_sensor(self, uuid: str, payload: bytes, lost: int, resync: bool) -> None:
        name, fs, rows, scale = SENSORS[uuid]
        if rows == 3:
            data = imu_values(payload, scale)
        else:
            data = unpack_uint24(np.frombuffer(payload, np.uint8, count=18, offset=2))[None, :].astype(np.float64)
        self.sensor_runs.append(SensorRun(name, fs, data, lost, resync, (payload[0] << 8) | payload[1]))


def decoder_from_header(header: dict) -> MuseDecoder:
    """The decoder a Muse capture was recorded with (preset, sources)."""
    return MuseDecoder(header.get("preset", DEFAULT_PRESET), header.get("sources"))


# == board ===========================================================================================
class _Replies:
    """Control replies as they arrive on the BLE thread, for a handshake to wait on."""

    def __init__(self):
        self._assembler = ControlReassembler()
        self._replies: list = []
        self._cond = threading.Condition()

    def feed(self, payload: bytes) -> None:
        objects = self._assembler.feed(payload)
        if objects:
            with self._cond:
                self._replies += objects
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self._replies)

    def wait(self, since: int, wanted, timeout: float, link: BleLink) -> dict | None:
        """The first reply after mark ``since`` for which ``wanted(reply)``; None after ``timeout`` s."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for reply in self._replies[since:]:
                    if wanted(reply):
                        return reply
                since = len(self._replies)
                left = end - time.monotonic()
                if left <= 0:
                    return None
                if not link.connected:
                    raise LinkLost(link.disconnect_reason or "the link dropped")
                self._cond.wait(min(left, 0.05))


class MuseBoard(Board):
    """A Muse 2 or Muse S (classic protocol) over BLE (bleak).

    Parameters
    ----------
    name : str, optional
        Advertised name (``"Muse-1324"``, ``"MuseS-1324"``); by default the first device whose name
        starts with ``"Muse"``.
    address : str, optional
        Bluetooth address; takes precedence over ``name``.
    preset : {"p21", "p20", "p50"}
        p21 (default): TP9, AF7, AF8, TP10; p20 adds the right AUX input; p50 adds AUX and PPG.
    keepalive_s : float or None
        Seconds between keep-alive commands while streaming, by default 5; None sends none.
    scan_timeout, connect_timeout : float
        Seconds to look for the headset and to connect.
    reply_timeout : float
        Seconds to wait for the device information reply (``v1``) on connecting.
    backend, scanner_backend : type, optional
        bleak backends (None: the platform's adapter).
    capture, reconnect, max_outage
        See :class:`~ingest.board.Board`.

    Attributes
    ----------
    model : str
        ``"muse-2"`` or ``"muse-s"``, from the advertised name.
    device_info : dict
        Reply to ``v1`` (firmware ``"fw"``, hardware ``"hw"``, ...).
    status : dict
        Reply to ``s`` at the last start (serial ``"sn"``, battery ``"bp"``, preset ``"ps"``, ...).
    """

    board = "muse"

    def __init__(self, name: str | None = None, address: str | None = None, *, preset: str = DEFAULT_PRESET,
                 keepalive_s: float | None = 5.0, scan_timeout: float = 10.0, connect_timeout: float = 20.0,
                 reply_timeout: float = 3.0, backend=None, scanner_backend=None, capture=None,
                 reconnect: bool = True, max_outage: float | None = None):
        super().__init__(capture=capture, reconnect=reconnect, max_outage=max_outage)
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.preset = preset
        self.keepalive_s = keepalive_s
        self.reply_timeout = float(reply_timeout)
        self.link = BleLink(address=address, name=name, name_prefix="Muse", kind="Muse", scan_timeout=scan_timeout,
                            connect_timeout=connect_timeout, backend=backend, scanner_backend=scanner_backend)
        self.device_id = address or name or "muse"
        self.model = ""
        self.device_info: dict = {}
        self.status: dict = {}
        self._replies = _Replies()

    def _connect(self) -> None:
        try:
            self._handshake()
        except LinkLost as err:
            self.link.disconnect()
            raise DeviceError(f"{self.link.target}: the link dropped while connecting ({err})") from None

    def _handshake(self) -> None:
        link = self.link
        link.connect(SERVICE_UUID)
        link.pin()
        self.device_id = link.address
        self.model = "muse-s" if link.name.lower().startswith("muses") else "muse-2"
        self.board = self.model
        self._replies = _Replies()
        control = SOURCES.index(CONTROL_UUID)
        link.tap(control, self._replies.feed)
        aux, ppg = PRESETS[self.preset]
        wanted = [CONTROL_UUID, *EEG_UUIDS[: 5 if aux else 4], ACCEL_UUID, GYRO_UUID, TELEMETRY_UUID]
        wanted += list(PPG_UUIDS) if ppg else []
        link.subscribe([u for u in wanted if link.has_characteristic(u)], SOURCES)
        self._command("h")
        since = self._replies.mark()
        self._command("v1")
        info = self._replies.wait(since, lambda r: "fw" in r or "hw" in r, self.reply_timeout, link)
        if info is None:
            link.disconnect()
            raise DeviceError(f"{self.device_id}: no reply to the device information request (v1) within "
                              f"{self.reply_timeout:g} s: not a Muse 2 / Muse S speaking the classic protocol?")
        self.device_info = info

    def _command(self, command: str) -> None:
        self.send(encode_command(command))

    def _disconnect(self) -> None:
        self.link.stop_periodic_write()
        self.link.disconnect()

    def _write(self, payload: bytes) -> None:
        self.link.write(CONTROL_UUID, payload)

    def _receive(self, timeout: float) -> list:
        return self.link.receive(timeout)

    def _make_decoder(self) -> MuseDecoder:
        return MuseDecoder(self.preset, SOURCES)

    def _begin_stream(self) -> None:
        self._command("h")
        self._command(self.preset)
        since = self._replies.mark()
        self._command("s")
        status = self._replies.wait(since, lambda r: "sn" in r or "hn" in r, self.reply_timeout, self.link)
        if status is not None:
            self.status = status
        self._command("d")
        if self.keepalive_s:
            self.link.start_periodic_write(CONTROL_UUID, encode_command("k"), self.keepalive_s)

    def _end_stream(self) -> None:
        self.link.stop_periodic_write()
        self._command("h")

    def capture_header(self) -> dict:
        return {**super().capture_header(), "name": self.link.name, "model": self.model, "preset": self.preset,
                "sources": list(SOURCES), "device_info": self.device_info, "status": self.status,
                "keepalive_s": self.keepalive_s}

    @property
    def battery_percent(self) -> float | None:
        """Battery level in %: the latest telemetry, else the status reply; None before either."""
        if self.decoder is not None and self.decoder.battery_percent is not None:
            return self.decoder.battery_percent
        bp = self.status.get("bp")
        return float(bp) if isinstance(bp, (int, float)) else None

    def read_sensors(self) -> list:
        """Accelerometer, gyroscope and PPG runs decoded since the last call (oldest first)."""
        if self.decoder is None:
            return []
        runs = list(self.decoder.sensor_runs)
        self.decoder.sensor_runs.clear()
        return runs
