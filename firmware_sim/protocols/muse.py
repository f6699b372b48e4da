"""Muse 2 / Muse S (classic protocol, BLE): notification encoders, control channel and firmware.

Two layers:

- vectorised encoders of the 20-byte notifications: EEG (:func:`uv_to_raw12`, :func:`pack_uint12`,
  :func:`eeg_packets`), accelerometer and gyroscope (:func:`g_to_accel_counts`,
  :func:`dps_to_gyro_counts`, :func:`imu_packets`), telemetry (:func:`telemetry_packet`), PPG
  (:func:`pack_uint24`, :func:`ppg_packets`), the command framing (:func:`encode_command`,
  :func:`decode_command`) and the JSON replies on the control characteristic (:func:`reply_pieces`,
  :func:`control_notification`);
- :class:`MuseFirmware`, the headset as a pure state machine: writes in (:meth:`~MuseFirmware.write`),
  and as device time passes (:meth:`~MuseFirmware.advance`) the notifications it sends. It does no I/O;
  :mod:`firmware_sim.ble` serves it through bleak.

Facts from muse-js (``src/muse.ts``, ``src/lib/muse-parse.ts``), muse-lsl and BrainFlow, summarised in
``../shared/docs/protocols.md``; every vector of ``../shared/vectors/muse`` is reproduced exactly.
Characteristics ``273e00XX-4c4d-454d-96be-f03bac821358`` of service 0xFE8D::

    0001 control: commands [len(cmd) + 1] + ASCII(cmd) + "\\n" in; JSON replies out as notifications
         [n] + n characters + zero padding to 20 bytes, one JSON member per notification (split every
         19 characters when longer)
    0003 TP9, 0004 AF7, 0005 AF8, 0006 TP10, 0007 right AUX (preset p20/p50):
         u16 sequence + 12 samples x 12-bit unsigned big-endian; uV = (raw - 2048) x 0.48828125; 256 Hz
    0009 gyroscope, 000a accelerometer: u16 sequence + 3 x (x, y, z) int16 big-endian, 52 Hz
    000b telemetry: u16 sequence, battery u16 / 512 %, fuel gauge u16 x 2.2 mV, u16 (unknown), u16
         temperature, zero padding
    000f / 0010 / 0011 PPG ambient / infrared / red (preset p50): u16 sequence + 6 x uint24, 64 Hz

One sequence counter serves the four (five) electrodes, so the same number means the same 12 samples;
it wraps from 0xFFFF to 0. Accelerometer, gyroscope, telemetry and PPG count on their own.

Deliberate choices where the facts are silent (emulator, not firmware):

- Keep-alive: the headset stops streaming (as after ``h``; the link stays up) when no command has been
  written for :data:`KEEPALIVE_TIMEOUT_S` = 600 s of device time, the "stops after 10-15 min" that
  users of drivers without keep-alive report. Any command, ``k`` included, restarts the timer; ``k``
  has no reply. The timer runs in device time, so with the fast pacing of :mod:`firmware_sim.ble` a
  driver that sends ``k`` on a wall-clock timer should raise the timeout (or pass None).
- Replies: ``{"rc":0}`` to ``h``, ``d``, presets and ``*1``; ``{"rc":1}`` to commands it does not know
  (Muse S Athena commands included), never a crash. ``*1`` reboots: the link drops 50 ms after the reply.
- Presets: ``p21`` four EEG channels (the default), ``p20`` adds AUX, ``p50`` adds AUX and PPG (muse-js
  selects p50 for PPG; BrainFlow says p50 also enables AUX). ``"ps"`` in the status is the preset
  digits read as hexadecimal (p20 -> 32, as in the muse-js fixture).
- Telemetry every :data:`TELEMETRY_INTERVAL_S` = 10 s while streaming, the first at ``d``; control
  fragments leave 7.5 ms apart (one connection interval); sequence counters restart at each connection.
"""

from __future__ import annotations

import json

import numpy as np

from .source import SampleSource

# -- GATT --------------------------------------------------------------------------------------------
SERVICE_UUID = "0000fe8d-0000-1000-8000-00805f9b34fb"
GENERIC_ACCESS_UUID = "00001800-0000-1000-8000-00805f9b34fb"
DEVICE_NAME_UUID = "00002a00-0000-1000-8000-00805f9b34fb"


def characteristic_uuid(number: int) -> str:
    """Full UUID of Muse characteristic ``0x00XX`` (e.g. 3 -> TP9)."""
    return f"273e{number:04x}-4c4d-454d-96be-f03bac821358"


CONTROL_UUID = characteristic_uuid(0x01)
TP9_UUID, AF7_UUID, AF8_UUID, TP10_UUID, AUX_UUID = (characteristic_uuid(n) for n in range(0x03, 0x08))
GYRO_UUID = characteristic_uuid(0x09)
ACCEL_UUID = characteristic_uuid(0x0A)
TELEMETRY_UUID = characteristic_uuid(0x0B)
PPG_AMBIENT_UUID, PPG_INFRARED_UUID, PPG_RED_UUID = (characteristic_uuid(n) for n in (0x0F, 0x10, 0x11))
#: Electrode characteristics in the order of the source rows that feed them.
EEG_UUIDS = (TP9_UUID, AF7_UUID, AF8_UUID, TP10_UUID, AUX_UUID)
PPG_UUIDS = (PPG_AMBIENT_UUID, PPG_INFRARED_UUID, PPG_RED_UUID)

# -- signal ------------------------------------------------------------------------------------------
PACKET_LENGTH = 20
EEG_RATE = 256.0
EEG_SAMPLES_PER_PACKET = 12
EEG_UV_PER_COUNT = 0.48828125  # 125/256
EEG_OFFSET = 2048
IMU_RATE = 52.0
IMU_SAMPLES_PER_PACKET = 3
ACCEL_G_PER_LSB = 0.0000610352
GYRO_DPS_PER_LSB = 0.0074768
PPG_RATE = 64.0
PPG_SAMPLES_PER_PACKET = 6
TELEMETRY_INTERVAL_S = 10.0
KEEPALIVE_TIMEOUT_S = 600.0
CONTROL_INTERVAL_S = 0.0075
CONTROL_TEXT_MAX = PACKET_LENGTH - 1
RESET_DELAY_S = 0.05

#: Preset -> (AUX streamed, PPG streamed).
PRESETS = {"p20": (True, False), "p21": (False, False), "p50": (True, True)}
DEFAULT_PRESET = "p21"
#: Reply to ``v1`` of the muse-js fixture (a Muse 2); keys keep this order on the wire.
DEVICE_INFO = {"ap": "headset", "sp": "RevE", "tp": "consumer", "hw": "3.1", "bn": 27, "fw": "1.2.13",
               "bl": "1.2.3", "pv": 1, "rc": 0}
MODELS = ("muse2", "muses")


# == encoders ========================================================================================
def uv_to_raw12(uv) -> np.ndarray:
    """12-bit EEG codes of microvolt values (any shape), rounded and clipped -> uint16, same shape."""
    raw = np.rint(np.asarray(uv, dtype=np.float64) / EEG_UV_PER_COUNT) + EEG_OFFSET
    return np.clip(np.nan_to_num(raw, nan=EEG_OFFSET), 0, 4095).astype(np.uint16)


def raw12_to_uv(raw) -> np.ndarray:
    """Microvolts of 12-bit EEG codes (any shape) -> float64, same shape."""
    return (np.asarray(raw, dtype=np.float64) - EEG_OFFSET) * EEG_UV_PER_COUNT


def pack_uint12(values) -> np.ndarray:
    """Pack 12-bit values big-endian, two per three bytes.

    Parameters
    ----------
    values : array_like of int, shape (..., 2k)

    Returns
    -------
    numpy.ndarray of uint8, shape (..., 3k)
    """
    v = np.asarray(values, dtype=np.uint16) & 0xFFF
    a, b = v[..., 0::2], v[..., 1::2]
    out = np.stack([a >> 4, ((a & 0xF) << 4) | (b >> 8), b & 0xFF], axis=-1)
    return out.reshape(*v.shape[:-1], -1).astype(np.uint8)


def unpack_uint12(data) -> np.ndarray:
    """Inverse of :func:`pack_uint12`: uint8 (..., 3k) -> uint16 (..., 2k)."""
    d = np.asarray(data, dtype=np.uint16).reshape(*np.shape(data)[:-1], -1, 3)
    a = (d[..., 0] << 4) | (d[..., 1] >> 4)
    b = ((d[..., 1] & 0xF) << 8) | d[..., 2]
    return np.stack([a, b], axis=-1).reshape(*d.shape[:-2], -1)


def pack_uint24(values) -> np.ndarray:
    """Big-endian bytes of unsigned 24-bit values: (..., k) -> uint8 (..., 3k)."""
    v = np.asarray(values, dtype=np.int64) & 0xFFFFFF
    out = np.stack([(v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF], axis=-1)
    return out.reshape(*v.shape[:-1], -1).astype(np.uint8)


def unpack_uint24(data) -> np.ndarray:
    """Inverse of :func:`pack_uint24`: uint8 (..., 3k) -> int64 (..., k)."""
    d = np.asarray(data, dtype=np.int64).reshape(*np.shape(data)[:-1], -1, 3)
    return (d[..., 0] << 16) | (d[..., 1] << 8) | d[..., 2]


def _with_sequence(sequence, payload: np.ndarray) -> np.ndarray:
    seq = np.asarray(sequence, dtype=np.int64).reshape(-1) & 0xFFFF
    out = np.zeros((len(seq), PACKET_LENGTH), dtype=np.uint8)
    out[:, 0] = seq >> 8
    out[:, 1] = seq & 0xFF
    out[:, 2 : 2 + payload.shape[1]] = payload
    return out


def eeg_packets(sequence, raw12) -> np.ndarray:
    """EEG notifications of one electrode.

    Parameters
    ----------
    sequence : array_like of int, shape (n_packets,)
        Sequence numbers (taken modulo 2**16).
    raw12 : array_like of int, shape (n_packets, 12)
        12-bit codes (:func:`uv_to_raw12`).

    Returns
    -------
    numpy.ndarray of uint8, shape (n_packets, 20)
    """
    raw = np.asarray(raw12).reshape(-1, EEG_SAMPLES_PER_PACKET)
    return _with_sequence(sequence, pack_uint12(raw))


def g_to_accel_counts(g) -> np.ndarray:
    """Accelerometer codes of accelerations in g (any shape) -> int16, same shape."""
    return _to_int16(np.asarray(g, dtype=np.float64) / ACCEL_G_PER_LSB)


def dps_to_gyro_counts(dps) -> np.ndarray:
    """Gyroscope codes of angular rates in deg/s (any shape) -> int16, same shape."""
    return _to_int16(np.asarray(dps, dtype=np.float64) / GYRO_DPS_PER_LSB)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.rint(x)), -32768, 32767).astype(np.int16)


def imu_packets(sequence, counts) -> np.ndarray:
    """Accelerometer or gyroscope notifications.

    Parameters
    ----------
    sequence : array_like of int, shape (n_packets,)
    counts : array_like of int16, shape (n_packets, 3, 3)
        Three samples of (x, y, z) per packet (:func:`g_to_accel_counts`, :func:`dps_to_gyro_counts`).

    Returns
    -------
    numpy.ndarray of uint8, shape (n_packets, 20)
    """
    c = np.asarray(counts, dtype=np.int16).reshape(-1, 9)
    return _with_sequence(sequence, c.astype(">i2").view(np.uint8).reshape(-1, 18))


def telemetry_packet(sequence: int, battery_percent: float, fuel_gauge_mv: float, adc: int,
                     temperature: int) -> bytes:
    """Telemetry notification (20 bytes): battery in %, fuel gauge in mV, an unexplained ADC word, and
    the temperature word as the headset sends it."""
    words = [int(sequence) & 0xFFFF, int(round(battery_percent * 512)), int(round(fuel_gauge_mv / 2.2)),
             int(adc), int(temperature)]
    payload = np.array(words, dtype=">u2").tobytes()
    return payload + bytes(PACKET_LENGTH - len(payload))


def ppg_packets(sequence, values) -> np.ndarray:
    """PPG notifications of one optical channel.

    Parameters
    ----------
    sequence : array_like of int, shape (n_packets,)
    values : array_like of int, shape (n_packets, 6)
        Unsigned 24-bit readings.

    Returns
    -------
    numpy.ndarray of uint8, shape (n_packets, 20)
    """
    v = np.asarray(values).reshape(-1, PPG_SAMPLES_PER_PACKET)
    return _with_sequence(sequence, pack_uint24(v))


def encode_command(command: str) -> bytes:
    """Bytes a driver writes to the control characteristic: ``[len(cmd) + 1] + cmd + "\\n"``."""
    body = command.encode("ascii") + b"\n"
    return bytes([len(body)]) + body


def decode_command(data: bytes) -> str | None:
    """Inverse of :func:`encode_command`; None if ``data`` is not a well-framed command."""
    if len(data) < 2 or data[0] < 1 or len(data) < 1 + data[0] or data[data[0]] != 0x0A:
        return None
    try:
        return bytes(data[1 : data[0]]).decode("ascii")
    except UnicodeDecodeError:
        return None


def reply_pieces(reply: dict) -> list:
    """The texts of the control notifications that carry a JSON reply.

    One member per notification (``{"ap":"headset",`` then ``"sp":"RevE",`` ... ``"rc":0}``), each
    split every 19 characters when longer, as in the muse-js fixture.
    """
    members = [json.dumps(k) + ":" + json.dumps(v, separators=(",", ":")) for k, v in reply.items()]
    texts = [("{" if i == 0 else "") + m + ("}" if i == len(members) - 1 else ",") for i, m in enumerate(members)]
    if not members:
        texts = ["{}"]
    return [t[i : i + CONTROL_TEXT_MAX] for t in texts for i in range(0, len(t), CONTROL_TEXT_MAX)]


def control_notification(text: str) -> bytes:
    """One control notification: ``[len] + ASCII text`` zero-padded to 20 bytes (text <= 19 chars)."""
    raw = text.encode("ascii")
    if len(raw) > CONTROL_TEXT_MAX:
        raise ValueError(f"a control notification carries at most {CONTROL_TEXT_MAX} characters")
    return bytes([len(raw)]) + raw + bytes(CONTROL_TEXT_MAX - len(raw))


def _ppg_waveforms(t: np.ndarray) -> np.ndarray:
    """Ambient, infrared and red readings at times ``t`` (s): a 62-bpm pulse on steady baselines."""
    phase = (t * 62.0 / 60.0) % 1.0
    pulse = np.exp(-(((phase - 0.2) / 0.08) ** 2)) + 0.35 * np.exp(-(((phase - 0.5) / 0.12) ** 2))
    return np.rint(np.stack([2_000.0 + 0.0 * t, 210_000.0 + 6_000.0 * pulse, 150_000.0 + 3_500.0 * pulse]))


# == firmware ========================================================================================
class MuseFirmware:
    """A Muse 2 or Muse S (classic protocol) as seen over BLE, byte for byte, without I/O.

    Parameters
    ----------
    source : object with ``read(n) -> (n_rows, m)`` or array_like, shape (n_rows, n_samples)
        What the electrodes measure in uV (and g for rows whose ``kinds`` entry is ``"ACC"``) at
        256 Hz, e.g. ``SimulatedHeadband()``. The first five non-ACC rows feed TP9, AF7, AF8, TP10 and
        AUX (missing ones read 0 uV); up to three ACC rows feed the accelerometer (default 1 g on Z).
    model : {"muse2", "muses"}
        Sets the default advertised name (``Muse-XXXX`` / ``MuseS-XXXX``). The Muse S Athena speaks
        another protocol and is not emulated here.
    name, address, serial_number, device_id : str
        Identity reported by the advertisement and the ``s`` status (defaults from the muse-js fixture).
    device_info : dict, optional
        Members that replace those of :data:`DEVICE_INFO` in the ``v1`` reply.
    preset : str
        Preset after power-on and after each connection.
    battery_percent, battery_drain_per_hour : float
        Battery level and how fast it falls while connected; at 0 % the headset powers off (the link
        drops).
    temperature : int
        Temperature word of the telemetry.
    initial_sequence : int
        EEG sequence number of the first packet after a connection (set near 0xFFFF to test the wrap).
    keepalive_timeout_s : float or None
        Device seconds without any command after which streaming stops; None disables it.
    telemetry_interval_s : float
        Seconds between telemetry notifications while streaming.
    free_running_source : bool
        If True, the source keeps running while the headset is not streaming (or not connected), so an
        outage loses the samples of its duration; if False (default) the source only advances while
        streaming.

    Attributes
    ----------
    clock : float
        Device time in seconds since the object was made.
    streaming : bool
        Whether data notifications are being sent.
    preset : str
    stream_origin : int
        Source sample index of the first sample of the current (or last) stream.
    link_lost : str or None
        Set when the headset drops the link itself (``*1`` reboot, empty battery).
    """

    def __init__(self, source, *, model: str = "muse2", name: str | None = None,
                 address: str = "00:55:DA:B0:13:24", serial_number: str = "2031-TZRW-1324",
                 device_id: str = "07473435 32313630 004f003a", device_info: dict | None = None,
                 preset: str = DEFAULT_PRESET, battery_percent: float = 82.0, battery_drain_per_hour: float = 0.0,
                 temperature: int = 27, initial_sequence: int = 0,
                 keepalive_timeout_s: float | None = KEEPALIVE_TIMEOUT_S,
                 telemetry_interval_s: float = TELEMETRY_INTERVAL_S, free_running_source: bool = False):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS} (the Muse S Athena protocol is not emulated), "
                             f"got {model!r}")
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.model = model
        self.name = name or f"{'MuseS' if model == 'muses' else 'Muse'}-{serial_number[-4:]}"
        self.address = address
        self.serial_number = serial_number
        self.device_id = device_id
        info = dict(DEVICE_INFO)
        info.pop("rc")
        info.update(device_info or {})
        info["rc"] = 0
        self.device_info = info
        self.default_preset = preset
        self.battery_percent = float(battery_percent)
        self.battery_drain_per_hour = float(battery_drain_per_hour)
        self.temperature = int(temperature)
        self.initial_sequence = int(initial_sequence) & 0xFFFF
        self.keepalive_timeout_s = keepalive_timeout_s
        self.telemetry_interval_s = float(telemetry_interval_s)
        self.free_running_source = free_running_source
        self._source = SampleSource(source, EEG_RATE, "Muse")
        self.clock = 0.0
        self.stream_origin = 0
        self.link_lost = None
        self.connected = False
        self._carry = (np.zeros((len(EEG_UUIDS), 0)), np.zeros((3, 0)))
        self.streaming = False
        self._power_on()

    # -- GATT ------------------------------------------------------------------------------------
    advertised_services = (SERVICE_UUID,)

    def gatt_services(self) -> list:
        """GATT table: ``[(service_uuid, [(characteristic_uuid, properties), ...]), ...]``."""
        notify = ("notify",)
        chars = [(CONTROL_UUID, ("write-without-response", "write", "notify"))]
        chars += [(u, notify) for u in EEG_UUIDS]
        chars += [(u, notify) for u in (GYRO_UUID, ACCEL_UUID, TELEMETRY_UUID) + PPG_UUIDS]
        return [(GENERIC_ACCESS_UUID, [(DEVICE_NAME_UUID, ("read",))]), (SERVICE_UUID, chars)]

    def read(self, uuid: str) -> bytes:
        """Value of a readable characteristic (the device name); KeyError for others."""
        if uuid.lower() != DEVICE_NAME_UUID:
            raise KeyError(f"characteristic {uuid} is not readable")
        return self.name.encode("ascii")

    # -- link ------------------------------------------------------------------------------------
    def connect(self) -> None:
        """A central connected: halted, default preset, sequence counters restarted."""
        self._power_on()
        self.connected = True
        self.link_lost = None

    def disconnect(self) -> None:
        """The link went down: streaming stops, queued replies are lost."""
        self._stop_stream()
        self._outbox.clear()
        self._reset_at = None
        self.connected = False

    def _power_on(self) -> None:
        self._stop_stream()
        self.preset = self.default_preset
        self._eeg_seq = self.initial_sequence
        self._accel_seq = self._gyro_seq = self._telemetry_seq = self._ppg_seq = 0
        self._last_command = self.clock
        self._outbox: list = []  # (time, payload) of control notifications
        self._reset_at = None

    # -- commands --------------------------------------------------------------------------------
    def write(self, uuid: str, data: bytes) -> None:
        """A central wrote ``data`` to characteristic ``uuid`` (only the control one is writable)."""
        if uuid.lower() != CONTROL_UUID:
            raise KeyError(f"characteristic {uuid} is not writable")
        command = decode_command(bytes(data))
        if command is None:
            return  # not a framed command: ignored
        self._last_command = self.clock
        if command == "h":
            self._stop_stream()
            self._reply({"rc": 0})
        elif command == "d":
            self._start_stream()
            self._reply({"rc": 0})
        elif command == "s":
            self._reply(self.status())
        elif command == "v1":
            self._reply(self.device_info)
        elif command == "k":
            pass
        elif command == "*1":
            self._stop_stream()
            self._reply({"rc": 0})
            self._reset_at = self._outbox[-1][0] + RESET_DELAY_S
        elif command in PRESETS:
            self.preset = command
            self._reply({"rc": 0})
        else:
            self._reply({"rc": 1})

    def status(self) -> dict:
        """The ``s`` reply: name, serial, MAC, id, battery, preset."""
        return {"hn": self.name, "sn": self.serial_number, "ma": self.address.lower().replace(":", "-"),
                "id": self.device_id, "bp": int(round(self.battery_percent)), "ts": 0,
                "ps": int(self.preset[1:], 16), "rc": 0}

    def _reply(self, reply: dict) -> None:
        t = max(self.clock, self._outbox[-1][0] + CONTROL_INTERVAL_S) if self._outbox else self.clock
        for i, text in enumerate(reply_pieces(reply)):
            self._outbox.append((t + i * CONTROL_INTERVAL_S, control_notification(text)))

    # -- streaming -------------------------------------------------------------------------------
    def _start_stream(self) -> None:
        if self.streaming:
            return
        self.streaming = True
        self._t0 = self.clock
        # samples read but not yet sent when the last stream stopped open this one (none if free running)
        self._pending, self._acc = self._carry
        self._carry = (np.zeros((len(EEG_UUIDS), 0)), np.zeros((3, 0)))
        self._n_sampled = self._pending.shape[1]  # stream indices of the samples read so far
        self._acc_start = 0  # stream index of the first column of _acc (accelerometer rows)
        self._n_eeg_packets = self._n_imu = self._n_ppg = self._n_telemetry = 0
        self.stream_origin = self._source.position - self._n_sampled

    def _stop_stream(self) -> None:
        if self.streaming and not self.free_running_source:
            k = self._pending.shape[1]
            self._carry = (self._pending, self._acc[:, self._n_sampled - k - self._acc_start :])
        self.streaming = False

    def advance(self, seconds: float) -> list:
        """Let ``seconds`` of device time pass and return what the headset sent meanwhile.

        Returns
        -------
        list of tuple (time_s, characteristic_uuid, payload)
            In the order sent; ``time_s`` is device time.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        end = self.clock + seconds
        parts = []
        if self.streaming:
            stop = end
            if self.keepalive_timeout_s is not None:
                stop = min(end, max(self.clock, self._last_command + self.keepalive_timeout_s))
            parts = self._stream_until(stop)
            if stop < end:
                self._stop_stream()  # no keep-alive: the headset goes idle
        if not self.streaming and self.free_running_source:
            self._source.skip(seconds, EEG_RATE)
        if self.connected and self.battery_drain_per_hour > 0:
            self.battery_percent = max(0.0, self.battery_percent - self.battery_drain_per_hour * seconds / 3600)
            if self.battery_percent == 0.0:
                self._stop_stream()  # the headset powers off
                self.link_lost = "battery empty"
        due = [(t, -1, CONTROL_UUID, p) for t, p in self._outbox if t <= end]
        self._outbox = [item for item in self._outbox if item[0] > end]
        if self._reset_at is not None and self._reset_at <= end:
            self.link_lost = "reset (*1)"
            self._reset_at = None
        self.clock = end
        items = parts + due
        if not items:
            return []
        times = np.array([it[0] for it in items])
        order = np.lexsort((np.array([it[1] for it in items]), times))
        return [(items[i][0], items[i][2], items[i][3]) for i in order]

    def _stream_until(self, end: float) -> list:
        n_due = int(np.floor((end - self._t0) * EEG_RATE + 1e-9)) + 1 - self._n_sampled
        if n_due > 0:
            block = self._source.read(n_due)
            m = block.shape[1]
            eeg = np.zeros((len(EEG_UUIDS), m))
            rows = self._source.exg_rows[: len(EEG_UUIDS)]
            eeg[: len(rows)] = block[rows]
            acc = np.zeros((3, m))
            if len(self._source.acc_rows):
                acc[: len(self._source.acc_rows)] = block[self._source.acc_rows]
            else:
                acc[2] = 1.0  # at rest: 1 g on Z
            self._pending = np.hstack([self._pending, eeg])
            self._acc = np.hstack([self._acc, acc])
            self._n_sampled += m
        return self._eeg() + self._imu(end) + self._ppg(end) + self._telemetry(end)

    def _eeg(self) -> list:
        n_packets = self._pending.shape[1] // EEG_SAMPLES_PER_PACKET
        if n_packets == 0:
            return []
        used = n_packets * EEG_SAMPLES_PER_PACKET
        raw = uv_to_raw12(self._pending[:, :used]).reshape(len(EEG_UUIDS), n_packets, EEG_SAMPLES_PER_PACKET)
        self._pending = self._pending[:, used:]
        k = self._n_eeg_packets + np.arange(n_packets)
        times = self._t0 + ((k + 1) * EEG_SAMPLES_PER_PACKET - 1) / EEG_RATE
        seq = self._eeg_seq + np.arange(n_packets)
        self._eeg_seq = (self._eeg_seq + n_packets) & 0xFFFF
        self._n_eeg_packets += n_packets
        n_electrodes = 5 if PRESETS[self.preset][0] else 4
        packets = eeg_packets(np.tile(seq, n_electrodes), raw[:n_electrodes].reshape(-1, EEG_SAMPLES_PER_PACKET))
        packets = packets.reshape(n_electrodes, n_packets, PACKET_LENGTH)
        out = []
        for c in range(n_electrodes):
            out += _rows(times, c, EEG_UUIDS[c], packets[c])
        return out

    def _due(self, end: float, rate: float, per_packet: int, done: int) -> int:
        """Whole packets of a ``rate`` stream due by ``end`` and backed by source samples, minus ``done``."""
        by_time = int(np.floor((end - self._t0) * rate + 1e-9)) + 1
        by_data = int(np.ceil(self._n_sampled * rate / EEG_RATE))  # samples whose source index was read
        return max(0, min(by_time, by_data) // per_packet - done)

    def _imu(self, end: float) -> list:
        n = self._due(end, IMU_RATE, IMU_SAMPLES_PER_PACKET, self._n_imu)
        if n == 0:
            return []
        i = self._n_imu * IMU_SAMPLES_PER_PACKET + np.arange(n * IMU_SAMPLES_PER_PACKET)
        source_index = np.floor(i * EEG_RATE / IMU_RATE).astype(np.int64)
        g = self._acc[:, source_index - self._acc_start]  # (3, n * 3)
        # keep the columns the next IMU sample and the unsent EEG samples (carried on a stop) still need
        keep = min(int(np.floor((i[-1] + 1) * EEG_RATE / IMU_RATE)), self._n_sampled - self._pending.shape[1])
        if keep > self._acc_start:
            self._acc = self._acc[:, keep - self._acc_start :]
            self._acc_start = keep
        accel = g_to_accel_counts(g.T.reshape(n, IMU_SAMPLES_PER_PACKET, 3))
        gyro = np.zeros_like(accel)  # a still head
        times = self._t0 + i[IMU_SAMPLES_PER_PACKET - 1 :: IMU_SAMPLES_PER_PACKET] / IMU_RATE
        accel_seq = self._accel_seq + np.arange(n)
        gyro_seq = self._gyro_seq + np.arange(n)
        self._accel_seq = (self._accel_seq + n) & 0xFFFF
        self._gyro_seq = (self._gyro_seq + n) & 0xFFFF
        self._n_imu += n
        return _rows(times, 5, ACCEL_UUID, imu_packets(accel_seq, accel)) + \
            _rows(times, 6, GYRO_UUID, imu_packets(gyro_seq, gyro))

    def _ppg(self, end: float) -> list:
        if not PRESETS[self.preset][1]:
            return []
        n = self._due(end, PPG_RATE, PPG_SAMPLES_PER_PACKET, self._n_ppg)
        if n == 0:
            return []
        i = self._n_ppg * PPG_SAMPLES_PER_PACKET + np.arange(n * PPG_SAMPLES_PER_PACKET)
        values = _ppg_waveforms((self.stream_origin / EEG_RATE) + i / PPG_RATE)
        times = self._t0 + i[PPG_SAMPLES_PER_PACKET - 1 :: PPG_SAMPLES_PER_PACKET] / PPG_RATE
        seq = self._ppg_seq + np.arange(n)
        self._ppg_seq = (self._ppg_seq + n) & 0xFFFF
        self._n_ppg += n
        packets = ppg_packets(np.tile(seq, len(PPG_UUIDS)), values.reshape(-1, PPG_SAMPLES_PER_PACKET))
        packets = packets.reshape(len(PPG_UUIDS), n, PACKET_LENGTH)
        out = []
        for c, uuid in enumerate(PPG_UUIDS):
            out += _rows(times, 7 + c, uuid, packets[c])
        return out

    def _telemetry(self, end: float) -> list:
        out = []
        while self._t0 + self._n_telemetry * self.telemetry_interval_s <= end:
            t = self._t0 + self._n_telemetry * self.telemetry_interval_s
            fuel_mv = 3300.0 + 9.0 * self.battery_percent  # roughly linear over the usable range
            out.append((t, 10, TELEMETRY_UUID, telemetry_packet(self._telemetry_seq, self.battery_percent, fuel_mv,
                                                                 3967, self.temperature)))
            self._telemetry_seq = (self._telemetry_seq + 1) & 0xFFFF
            self._n_telemetry += 1
        return out


def _rows(times: np.ndarray, order: int, uuid: str, packets: np.ndarray) -> list:
    """``(time, order, uuid, payload)`` per packet row; ``order`` breaks ties between equal times."""
    flat = packets.tobytes()
    n = packets.shape[1]
    return [(float(t), order, uuid, flat[i * n : (i + 1) * n]) for i, t in enumerate(times)]
