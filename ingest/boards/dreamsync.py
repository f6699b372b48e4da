"""DreamSync headband (open BLE protocol v1): decoder and board driver, with commands and the adjustment log.

The protocol is specified in ``docs/dreamsync-protocol.md``. In short: service ``d5ea0000-...``;
sample frames on DATA (notify), command frames written to CONTROL, one response frame per command on
RESPONSE (notify), adjustment-log entries on LOG (notify: live as they are appended, and in answer
to READ_LOG, closed by a LOG_END frame). Every frame ends with a CRC-32 (zlib's) of its bytes, and
every notification carries a per-characteristic sequence number (u16).

A SAMPLES frame holds 10 samples of 5 electrode channels (int24, 0.01 uV) and 3 accelerometer axes
(int16, 1 mg), with the device's sample counter (u32, 250 per s) of its first sample: losses are
counted exactly from it, across reconnections too (the counter only moves while the band streams).
A frame whose CRC fails is dropped and its samples counted lost; a frame whose counter is behind
the next expected sample is a duplicate or came too late and is dropped.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..ble import BleLink
from ..board import Board, LinkLost
from ..decoder import DecodedRun, Decoder
from ..errors import DeviceError

# -- GATT --------------------------------------------------------------------------------------------
_BASE = "-2c4b-4f6e-8d61-64726d73796e"
SERVICE_UUID = "d5ea0000" + _BASE
DATA_UUID = "d5ea0001" + _BASE
CONTROL_UUID = "d5ea0002" + _BASE
RESPONSE_UUID = "d5ea0003" + _BASE
LOG_UUID = "d5ea0004" + _BASE
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
SERIAL_NUMBER_UUID = "00002a25-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION_UUID = "00002a26-0000-1000-8000-00805f9b34fb"
#: Capture sources (the ``"sources"`` of a capture header).
SOURCES = (DATA_UUID, RESPONSE_UUID, LOG_UUID)

# -- signal ------------------------------------------------------------------------------------------
SAMPLE_RATE = 250.0
CHANNELS = ("EEG Fp1-M2", "EEG Fp2-M1", "EOG E1-M2", "EOG E2-M1", "EMG chin", "ACC X", "ACC Y", "ACC Z")
KINDS = ("EEG", "EEG", "EOG", "EOG", "EMG", "ACC", "ACC", "ACC")
N_EXG, N_ACC = 5, 3
UV_PER_COUNT = 0.01
G_PER_COUNT = 0.001
SAMPLES_PER_FRAME = 10
SAMPLE_BYTES = 3 * N_EXG + 2 * N_ACC
FRAME_BYTES = 8 + SAMPLES_PER_FRAME * SAMPLE_BYTES + 4

FRAME_SAMPLES, FRAME_RESPONSE, FRAME_LOG_ENTRY, FRAME_LOG_END = 0x01, 0x02, 0x03, 0x04
OPCODES = {"start": 1, "stop": 2, "battery": 3, "stimulate": 4, "optout_on": 5, "optout_off": 6,
           "read_log": 7, "status": 8}
STATUSES = {0: "ok", 1: "bad CRC", 2: "unknown command", 3: "bad arguments", 4: "refused (opt-out)",
            5: "cannot be done now"}
ACTUATOR_CODES = {"audio-closed-loop": 1, "audio-pink-noise": 2, "audio-rhythm": 3, "light-flicker": 4, "current": 5}
ORIGIN_CODES = {"sleeper": 0, "vendor": 1}
COMMAND_TIMEOUT_S = 5.0
BATTERY_READ_INTERVAL_S = 60.0
LOG_FORMAT = "dreamsync-adjustment-log/1"


def crc(data: bytes) -> bytes:
    """CRC-32 (IEEE, zlib) of ``data``, little-endian: the trailer of every frame."""
    import binascii

    return struct.pack("<I", binascii.crc32(data))


def checked(frame: bytes) -> bytes | None:
    """The frame without its CRC trailer when the CRC matches, else None."""
    if len(frame) < 5 or crc(frame[:-4]) != frame[-4:]:
        return None
    return frame[:-4]


def command_frame(opcode: int, command_id: int, args: bytes = b"") -> bytes:
    """A command: opcode u8, command id u8, arguments, CRC-32."""
    body = bytes([opcode, command_id & 0xFF]) + args
    return body + crc(body)


def decode_samples(body: bytes) -> tuple:
    """A SAMPLES frame (CRC already removed) -> (seq, tick, exg uV (5, n), acc g (3, n))."""
    _, seq, tick, n = struct.unpack_from("<BHIB", body)
    raw = np.frombuffer(body, dtype=np.uint8, offset=8, count=n * SAMPLE_BYTES).astype(np.int64).reshape(n, -1)
    exg = raw[:, :3 * N_EXG].reshape(n, N_EXG, 3)
    exg = exg[..., 0] | (exg[..., 1] << 8) | (exg[..., 2] << 16)
    exg = np.where(exg >= 1 << 23, exg - (1 << 24), exg)
    acc = raw[:, 3 * N_EXG:].reshape(n, N_ACC, 2)
    acc = acc[..., 0] | (acc[..., 1] << 8)
    acc = np.where(acc >= 1 << 15, acc - (1 << 16), acc)
    return seq, tick, exg.T * UV_PER_COUNT, acc.T * G_PER_COUNT


class DreamSyncDecoder(Decoder):
    """SAMPLES frames in, runs out; responses and log frames are the board's business.

    Attributes
    ----------
    first_tick : int or None
        Device sample counter of the first sample decoded (maps the device's log times to the
        recording: recording second = (tick - first_tick) / 250).
    """

    channels = CHANNELS
    kinds = KINDS
    fs = SAMPLE_RATE
    packet_rate = SAMPLE_RATE / SAMPLES_PER_FRAME
    counter_modulus = 0x10000  # the frames' sequence number, for the stream audit (ingest.integrity)
    counter_behind = 0x7FFF

    def __init__(self):
        super().__init__()
        self.stats.update(corrupt=0, duplicates=0)
        self.first_tick: int | None = None
        self._next_tick: int | None = None

    def restart(self) -> None:
        """A new stream: the counter runs on, so nothing to forget."""

    def feed(self, payload: bytes, source: int = 0) -> list:
        if source != 0:
            return []
        body = checked(payload)
        if body is None or len(body) != FRAME_BYTES - 4 or body[0] != FRAME_SAMPLES or body[7] != SAMPLES_PER_FRAME:
            self.stats["corrupt"] += 1
            return []
        seq, tick, exg, acc = decode_samples(body)
        if self.on_packets is not None:  # every well-formed frame, before duplicates are dropped
            self.on_packets(source, np.array([seq], dtype=np.int64), np.frombuffer(body, np.uint8, offset=3)[None, :])
        if self.first_tick is None:
            self.first_tick = self._next_tick = tick
        lost = (tick - self._next_tick) % (1 << 32)
        if lost >= 1 << 31:  # behind: a duplicate or a frame that came too late
            self.stats["duplicates"] += 1
            return []
        self._next_tick = (tick + exg.shape[1]) % (1 << 32)
        self.stats["packets"] += 1
        self.stats["samples_lost"] += lost
        return [DecodedRun(np.vstack([exg, acc]), lost)]


def decoder_from_header(header: dict) -> DreamSyncDecoder:
    """The decoder a DreamSync capture was recorded with."""
    return DreamSyncDecoder()


@dataclass(frozen=True)
class HostAction:
    """A command the sleeper's side sends when the stream reaches ``at_s`` seconds.

    Parameters
    ----------
    at_s : float
        Recording time in s.
    command : str
        ``"optout_on"``, ``"optout_off"`` or ``"stimulate"``.
    actuator, duration_s, frequency_hz, intensity_uv, origin
        For ``"stimulate"``: see :meth:`DreamSyncBoard.stimulate`.
    """

    at_s: float
    command: str
    actuator: str = "current"
    duration_s: float = 60.0
    frequency_hz: float = 0.0
    intensity_uv: float = 1.0
    origin: str = "sleeper"


class DreamSyncBoard(Board):
    """A DreamSync headband over BLE (bleak): stream, commands, opt-out and the adjustment log.

    Parameters
    ----------
    name : str, optional
        Advertised name; by default the first device whose name starts with ``"DreamSync"``.
    address : str, optional
        Bluetooth address; takes precedence over ``name``.
    plan : sequence of HostAction, optional
        Commands to send as the stream reaches given times (the sleeper's own adjustments, opt-out).
    read_log_at_stop : bool
        Read the adjustment log when streaming stops (default True): :attr:`log_document`.
    scan_timeout, connect_timeout : float
        Seconds to look for the device and to connect.
    backend, scanner_backend : type, optional
        bleak backends (None: the platform's adapter).
    capture, reconnect, max_outage
        See :class:`~ingest.board.Board`.

    Attributes
    ----------
    serial, firmware_revision : str
    live_entries : list of bytes
        Log entries the device notified as it appended them.
    journal : list of dict
        Commands this host sent that change what is done to the sleeper, with the device's answer:
        ``{"time_s", "command", "status", "tick", "index"}``.
    log_document : dict or None
        The log as read at the end of streaming (see :meth:`adjustment_log`).
    """

    board = "dreamsync"

    def __init__(self, name: str | None = None, address: str | None = None, *, plan=(), read_log_at_stop: bool = True,
                 scan_timeout: float = 10.0, connect_timeout: float = 20.0, backend=None, scanner_backend=None,
                 capture=None, reconnect: bool = True, max_outage: float | None = None):
        super().__init__(capture=capture, reconnect=reconnect, max_outage=max_outage)
        self.link = BleLink(address=address, name=name, name_prefix="DreamSync", kind="DreamSync",
                            scan_timeout=scan_timeout, connect_timeout=connect_timeout, backend=backend,
                            scanner_backend=scanner_backend)
        self.device_id = address or name or "dreamsync"
        self.serial = ""
        self.firmware_revision = ""
        self.plan = sorted(plan, key=lambda a: a.at_s)
        self.read_log_at_stop = read_log_at_stop
        self.live_entries: list = []
        self.journal: list = []
        self.log_document: dict | None = None
        self._lock = threading.Lock()
        self._replies: dict = {}
        self._reply_ready = threading.Condition(self._lock)
        self._read_entries: list = []
        self._log_end: tuple | None = None
        self._command_id = 0
        self._position_s = 0.0
        self._battery: float | None = None
        self._battery_read_at = -BATTERY_READ_INTERVAL_S

    @property
    def position_s(self) -> float:
        """Seconds of signal delivered so far (where the host's plan stands)."""
        return self._position_s

    # -- transport -------------------------------------------------------------------------------
    def _connect(self) -> None:
        try:
            self.link.connect(SERVICE_UUID)
            self.link.pin()
            self.device_id = self.link.address
            serial = self.link.read(SERIAL_NUMBER_UUID).decode("ascii", errors="replace").strip("\x00 ")
            if self.serial and serial != self.serial:
                self.link.disconnect()
                raise DeviceError(f"{self.device_id}: came back as serial {serial} instead of {self.serial}")
            self.serial = serial
            self.firmware_revision = self.link.read(FIRMWARE_REVISION_UUID).decode("ascii", errors="replace")
            self.link.tap(1, self._on_response)
            self.link.tap(2, self._on_log)
            self.link.subscribe(SOURCES)
        except LinkLost as err:
            self.link.disconnect()
            raise DeviceError(f"{self.link.target}: the link dropped while connecting ({err})") from None
        except KeyError:
            self.link.disconnect()
            raise DeviceError(f"{self.link.target}: not a DreamSync (no serial number characteristic)") from None

    def _disconnect(self) -> None:
        self.link.disconnect()

    def _write(self, payload: bytes) -> None:
        self.link.write(CONTROL_UUID, payload, response=True)

    def _receive(self, timeout: float) -> list:
        return self.link.receive(timeout)

    def _make_decoder(self) -> DreamSyncDecoder:
        return DreamSyncDecoder()

    def _begin_stream(self) -> None:
        self._require("start")

    def _end_stream(self) -> None:
        try:
            self.command("stop")
        except DeviceError:
            pass  # no answer: the band stops on its own when the link goes down

    def _stop(self) -> None:
        super()._stop()
        if self.read_log_at_stop and self.link.connected:
            try:
                self.log_document = self.adjustment_log()
            except (LinkLost, DeviceError):
                self.log_document = None

    def capture_header(self) -> dict:
        return {**super().capture_header(), "name": self.link.name, "serial": self.serial,
                "firmware_revision": self.firmware_revision, "sources": list(SOURCES)}

    def _read_block(self):
        block = super()._read_block()
        if block is not None:
            self._position_s = block.end_index / self.fs
            while self.plan and self.plan[0].at_s <= self._position_s:
                self._act(self.plan.pop(0))
        return block

    def _act(self, action: HostAction) -> None:
        try:
            if action.command == "stimulate":
                self.stimulate(action.actuator, action.duration_s, action.frequency_hz, action.intensity_uv,
                               origin=action.origin)
            else:
                self.optout(action.command == "optout_on")
        except (LinkLost, DeviceError):
            pass  # the journal shows what was not acknowledged; the stream goes on

    # -- notifications from the loop thread ------------------------------------------------------
    def _on_response(self, payload: bytes) -> None:
        body = checked(payload)
        if body is None or len(body) < 6 or body[0] != FRAME_RESPONSE:
            return
        with self._lock:
            self._replies[body[3]] = (body[4], body[5], body[6:])
            self._reply_ready.notify_all()

    def _on_log(self, payload: bytes) -> None:
        body = checked(payload)
        if body is None or len(body) < 3:
            return
        with self._lock:
            if body[0] == FRAME_LOG_ENTRY and len(body) >= 4:
                (self._read_entries if body[3] == 1 else self.live_entries).append(bytes(body[4:]))
            elif body[0] == FRAME_LOG_END and len(body) >= 7:
                self._log_end = (int.from_bytes(body[3:7], "little"), bytes(body[7:]))
                self._reply_ready.notify_all()

    # -- commands --------------------------------------------------------------------------------
    def command(self, name: str, args: bytes = b"", timeout: float = COMMAND_TIMEOUT_S) -> tuple:
        """Send a command and wait for its response.

        Returns
        -------
        status : int
            0 ok, 1 bad CRC, 2 unknown command, 3 bad arguments, 4 refused (opt-out), 5 cannot be
            done now (the band has no signal left to act on).
        payload : bytes

        Raises
        ------
        DeviceError
            No response within ``timeout`` s.
        """
        with self._lock:
            self._command_id = (self._command_id + 1) & 0xFF
            cid = self._command_id
            self._replies.pop(cid, None)
        self.send(command_frame(OPCODES[name], cid, args))
        deadline = time.monotonic() + timeout
        with self._lock:
            while cid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self.link.connected:
                    raise DeviceError(f"{self.device_id}: no response to {name}")
                self._reply_ready.wait(min(left, 0.1))
            opcode, status, payload = self._replies.pop(cid)
        return status, payload

    def _require(self, name: str, args: bytes = b"") -> bytes:
        status, payload = self.command(name, args)
        if status != 0:
            raise DeviceError(f"{self.device_id}: {name}: {STATUSES.get(status, status)}")
        return payload

    @property
    def battery_percent(self) -> float | None:
        """The band's battery level in % (the Battery Level characteristic, read at most once a minute);
        None before the first reading."""
        now = time.monotonic()
        if self.link.connected and now - self._battery_read_at >= BATTERY_READ_INTERVAL_S:
            self._battery_read_at = now
            try:
                self._battery = float(self.link.read(BATTERY_LEVEL_UUID)[0])
            except (LinkLost, DeviceError, KeyError, IndexError):
                pass  # keep the last reading
        return self._battery

    def battery(self) -> tuple:
        """(percent, millivolts) of the band's battery."""
        payload = self._require("battery")
        return payload[0], int.from_bytes(payload[1:3], "little")

    def stimulate(self, actuator: str, duration_s: float, frequency_hz: float = 0.0, intensity_uv: float = 1.0, *,
                  origin: str = "sleeper") -> dict:
        """Ask the band to perform an adjustment now.

        Parameters
        ----------
        actuator : str
            ``"audio-closed-loop"``, ``"audio-pink-noise"``, ``"audio-rhythm"``, ``"light-flicker"`` or
            ``"current"``.
        duration_s : float
            Length in s (whole seconds).
        frequency_hz : float
            Drive or stimulation frequency in Hz (rhythm, flicker, current).
        intensity_uv : float
            Effect size at a frontal lead in uV (see the protocol document).
        origin : {"sleeper", "vendor"}
            Who asks (the vendor's app relays its service's requests as "vendor").

        Returns
        -------
        dict
            The journal entry: status (``"ok"`` or why not), device tick and log index.
        """
        args = struct.pack("<BBHHH", ACTUATOR_CODES[actuator], ORIGIN_CODES[origin], int(round(duration_s)),
                           int(round(frequency_hz * 100)), int(round(intensity_uv * 10)))
        return self._journal(f"stimulate {actuator} ({origin})", *self.command("stimulate", args))

    def optout(self, on: bool = True) -> dict:
        """Opt out of (or back into) vendor adjustments; returns the journal entry."""
        name = "optout_on" if on else "optout_off"
        return self._journal(name, *self.command(name))

    def _journal(self, what: str, status: int, payload: bytes) -> dict:
        tick = int.from_bytes(payload[:4], "little") if len(payload) >= 4 else None
        index = int.from_bytes(payload[4:8], "little") if len(payload) >= 8 else None
        entry = {"time_s": round(self._position_s, 3), "command": what, "status": STATUSES.get(status, str(status)),
                 "tick": tick, "index": None if index == 0xFFFFFFFF else index}
        self.journal.append(entry)
        return entry

    def status(self) -> dict:
        """The band's state: opted out, log length, head hash, sample counter."""
        p = self._require("status")
        return {"opted_out": bool(p[0]), "entries": int.from_bytes(p[1:5], "little"), "head": p[5:37].hex(),
                "tick": int.from_bytes(p[37:41], "little")}

    def read_log(self, timeout: float = 30.0) -> tuple:
        """Read the whole adjustment log: (entries as bytes, head hash announced by LOG_END)."""
        with self._lock:
            self._read_entries, self._log_end = [], None
        self._require("read_log", (0).to_bytes(4, "little"))
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._log_end is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self.link.connected:
                    raise DeviceError(f"{self.device_id}: the adjustment log did not arrive")
                self._reply_ready.wait(min(left, 0.1))
            entries, (count, head) = list(self._read_entries), self._log_end
        if count != len(entries):
            raise DeviceError(f"{self.device_id}: adjustment log: {len(entries)} of {count} entries arrived")
        return entries, head

    def adjustment_log(self) -> dict:
        """The log as read now, with what the host saw during the night, as a JSON-able document.

        ``{"format", "device": {name, address, serial, firmware}, "tick_hz", "first_tick",
        "entries": [hex, ...], "head": hex, "live": [hex, ...], "journal": [...]}``: raw entries,
        so that the chain is verified again whenever the document is read
        (:func:`ingest.adjustment_log.verify_log`).
        """
        entries, head = self.read_log()
        with self._lock:
            live = list(self.live_entries)
        return {"format": LOG_FORMAT,
                "device": {"name": self.link.name, "address": self.link.address, "serial": self.serial,
                           "firmware": self.firmware_revision},
                "tick_hz": SAMPLE_RATE,
                "first_tick": self.decoder.first_tick if self.decoder is not None else None,
                "entries": [e.hex() for e in entries], "head": head.hex(), "live": [e.hex() for e in live],
                "journal": list(self.journal),
                "read_at": time.time(), "digest": hashlib.sha256(b"".join(entries)).hexdigest()}
