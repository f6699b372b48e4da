"""OpenBCI Ganglion (4 channels, 200 Hz, BLE), firmware 2 and 3: notification encoders and firmware.

Two layers:

- vectorised encoders of the 20-byte notifications: the scale between microvolts and ADC counts
  (:func:`uv_to_counts`, :func:`counts_to_uv`), the firmware's compression of a value into an 18- or
  19-bit field (:func:`compress`), MSB-first packing of eight fields per packet (:func:`pack_fields`,
  with its inverse :func:`unpack_fields` and the reference sign rule :func:`signed_from_lsb`), the raw
  packet (:func:`raw_packet`), impedance and ASCII message packets (:func:`impedance_packet`,
  :func:`message_packets`);
- :class:`GanglionFirmware`, the board as a pure state machine: writes to the GATT characteristics in
  (:meth:`~GanglionFirmware.write`), reads out (:meth:`~GanglionFirmware.read`) and, as device time
  passes (:meth:`~GanglionFirmware.advance`), the notifications it sends. It does no I/O;
  :mod:`firmware_sim.ble` serves it through bleak.

Facts from the OpenBCI documentation (Ganglion data format, SDK), the Ganglion firmware
(OpenBCI_Ganglion_Library) and BrainFlow's ``ganglion_native``, summarised in
``../shared/docs/protocols.md``; bit fields checked against the OpenBCI_NodeJS_Utilities vectors.

Notification layout (byte 0 = packet id)::

    firmware 2   id 0          raw sample: 4 x int24 big-endian, then "ABCDEFG" padding
                 ids 1..100    two samples as 18-bit deltas (8 fields MSB-first), byte 19 accelerometer
                 ids 101..200  two samples as 19-bit deltas (8 fields MSB-first, bytes 1..19)
                 delta = previous sample - sample, so a decoder computes sample = previous - delta;
                 every 201 samples: one raw packet, then 100 compressed packets
    firmware 3   ids 0..99     two samples, top 18 bits of each 24-bit sample, byte 19 accelerometer
                 ids 100..199  two samples, top 19 bits (absolute values, not deltas)
    both         ids 201..205  impedance of channel 1..4 and reference: ASCII digits (kOhm) then "Z"
                 id 206 / 207  part / last part of an ASCII message (up to 19 characters each)

18-bit packets are sent while the accelerometer is on (``n``), 19-bit packets while it is off (``N``,
the default after a connection).

Sign rule (chosen deliberately)
    The encoder implements the *firmware's* compression: the value (a delta in firmware 2, the sample
    arithmetically shifted right by 24 - N bits in firmware 3) has its bit 0 overwritten with the sign
    bit (1 = negative) and its low N bits are sent. The two reference decoders disagree: the NodeJS
    driver reads the sign from the field's LSB (negative: field - 2^N), BrainFlow from its MSB. For every
    value the firmware can actually produce (one that fits in N bits) the field's MSB and LSB agree, so
    both decoders read our stream as they read a real board, within one LSB (which the firmware drops).
    The test vectors (NodeJS unit tests) contain synthetic fields whose MSB and LSB disagree; they follow
    the LSB rule, which :func:`signed_from_lsb` implements and the tests check against every vector. For
    those vectors the compression is the identity (positive values are even, negative ones odd), so
    :func:`compress` then :func:`pack_fields` reproduces their bytes exactly.

Resolution: firmware 2 loses up to one count per delta (the LSB), accumulating until the next raw
packet (at most 200 counts, 0.37 uV); firmware 3 keeps the top 17 bits plus sign, an error below
2^(24-N+1) counts (0.24 uV at 18 bits, 0.12 uV at 19). A delta that does not fit in N bits wraps, as on
the real board (a step above 245 uV between samples at 18 bits).

Deliberate choices where the facts are silent (emulator, not firmware): impedance results arrive every
0.2 s per channel while ``z`` runs; ASCII message packets leave 15 ms apart (the firmware's pacing);
firmware 3 places the accelerometer axes X, Y, Z in packets whose id ends in 1, 2, 0 (BrainFlow's
reading), firmware 2 in ids ending in 1, 2, 3 (the firmware 2 source); other 18-bit packets repeat the
previous byte 19 (the firmware does not clear its radio buffer).
"""

from __future__ import annotations

import numpy as np

from .source import SampleSource

# -- GATT --------------------------------------------------------------------------------------------
SERVICE_UUID = "0000fe84-0000-1000-8000-00805f9b34fb"
NOTIFY_UUID = "2d30c082-f39f-4ce6-923f-3484ea480596"
WRITE_UUID = "2d30c083-f39f-4ce6-923f-3484ea480596"
DISCONNECT_UUID = "2d30c084-f39f-4ce6-923f-3484ea480596"
GENERIC_ACCESS_UUID = "00001800-0000-1000-8000-00805f9b34fb"
DEVICE_NAME_UUID = "00002a00-0000-1000-8000-00805f9b34fb"
DEVICE_INFORMATION_UUID = "0000180a-0000-1000-8000-00805f9b34fb"
MODEL_NUMBER_UUID = "00002a24-0000-1000-8000-00805f9b34fb"
HARDWARE_REVISION_UUID = "00002a27-0000-1000-8000-00805f9b34fb"
SOFTWARE_REVISION_UUID = "00002a28-0000-1000-8000-00805f9b34fb"
MANUFACTURER_NAME_UUID = "00002a29-0000-1000-8000-00805f9b34fb"

# -- signal ------------------------------------------------------------------------------------------
N_CHANNELS = 4
SAMPLE_RATE = 200.0
#: MCP3912, gain 51 behind the 1.5 x front end, 1.2 V reference: uV per count (0.0018699).
UV_PER_COUNT = 1.2e6 / (8388607 * 1.5 * 51)
COUNT_MIN, COUNT_MAX = -(2**23), 2**23 - 1
#: LIS2DH high byte at +-2 g: 16 mg per count (the value BrainFlow and the NodeJS driver use).
ACCEL_G_PER_COUNT = 0.016
#: ``~0`` .. ``~7``: MCP3912 sample rates (only 200 Hz fits through BLE on a real board).
SAMPLE_RATES = {0: 25600.0, 1: 12800.0, 2: 6400.0, 3: 3200.0, 4: 1600.0, 5: 800.0, 6: 400.0, 7: 200.0}

# -- packet ids --------------------------------------------------------------------------------------
ID_RAW = 0
ID_IMPEDANCE = 201  # + channel - 1; channel 5 is the reference
ID_MESSAGE = 206
ID_MESSAGE_END = 207
PACKET_LENGTH = 20
RAW_PADDING = b"ABCDEFG"
MESSAGE_CHUNK = PACKET_LENGTH - 1

SOFTWARE_REVISIONS = {2: "2.0.1", 3: "3.0.0"}
HARDWARE_REVISION = "1.0.1"
MESSAGE_INTERVAL_S = 0.015
IMPEDANCE_INTERVAL_S = 0.2


# == encoders ========================================================================================
def uv_to_counts(uv) -> np.ndarray:
    """ADC counts of microvolt values, rounded and clipped to the 24-bit range.

    Parameters
    ----------
    uv : array_like of float
        Values in uV, any shape.

    Returns
    -------
    numpy.ndarray of int64, same shape
    """
    counts = np.rint(np.asarray(uv, dtype=np.float64) / UV_PER_COUNT)
    return np.clip(np.nan_to_num(counts), COUNT_MIN, COUNT_MAX).astype(np.int64)


def counts_to_uv(counts) -> np.ndarray:
    """Microvolts of ADC counts (array_like of int, any shape) -> float64 array, same shape."""
    return np.asarray(counts, dtype=np.float64) * UV_PER_COUNT


def g_to_accel_counts(g) -> np.ndarray:
    """Signed 8-bit accelerometer bytes of accelerations in g (any shape) -> int8 array, same shape."""
    counts = np.rint(np.asarray(g, dtype=np.float64) / ACCEL_G_PER_COUNT)
    return np.clip(np.nan_to_num(counts), -128, 127).astype(np.int8)


def compress(values, shift: int = 0) -> np.ndarray:
    """The firmware's compression: arithmetic shift right, then bit 0 replaced by the sign bit.

    Parameters
    ----------
    values : array_like of int
        Deltas (firmware 2, ``shift=0``) or 24-bit samples (firmware 3, ``shift = 24 - bits``).
    shift : int
        Bits dropped on the right.

    Returns
    -------
    numpy.ndarray of int64, same shape
        The value to send; :func:`pack_fields` keeps its low N bits.
    """
    v = np.asarray(values, dtype=np.int64)
    return ((v >> shift) & ~np.int64(1)) | (v < 0)


def pack_fields(fields, bits: int) -> np.ndarray:
    """Pack fields MSB-first into bytes, keeping the low ``bits`` bits of each.

    Parameters
    ----------
    fields : array_like of int, shape (..., n_fields)
        Eight fields per packet for the Ganglion (sample 1 ch 1..4, sample 2 ch 1..4).
    bits : int
        Field width (18 or 19 for the Ganglion).

    Returns
    -------
    numpy.ndarray of uint8, shape (..., ceil(n_fields * bits / 8))
        Zero bits pad the last byte.
    """
    f = np.asarray(fields, dtype=np.int64) & ((1 << bits) - 1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_array = ((f[..., None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bit_array.reshape(*f.shape[:-1], -1), axis=-1)


def unpack_fields(payload, bits: int, n_fields: int = 8) -> np.ndarray:
    """Inverse of :func:`pack_fields`: unsigned MSB-first fields of packed bytes.

    Parameters
    ----------
    payload : array_like of uint8, shape (..., n_bytes)
        At least ``ceil(n_fields * bits / 8)`` bytes (bytes 1.. of a notification).
    bits, n_fields : int
        Field width and number of fields.

    Returns
    -------
    numpy.ndarray of int64, shape (..., n_fields)
        Values in [0, 2**bits).
    """
    data = np.asarray(payload, dtype=np.uint8)
    bit_array = np.unpackbits(data, axis=-1)[..., : n_fields * bits]
    bit_array = bit_array.reshape(*data.shape[:-1], n_fields, bits).astype(np.int64)
    return bit_array @ (np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64))


def signed_from_lsb(fields, bits: int) -> np.ndarray:
    """Signed values of N-bit fields by the LSB rule (NodeJS driver): LSB set -> field - 2**bits.

    Parameters
    ----------
    fields : array_like of int, any shape
        Unsigned fields; bits above ``bits`` are ignored.
    bits : int
        Field width.

    Returns
    -------
    numpy.ndarray of int64, same shape
    """
    f = np.asarray(fields, dtype=np.int64) & ((1 << bits) - 1)
    return f - (f & 1) * (np.int64(1) << bits)


def int24_to_bytes(counts) -> np.ndarray:
    """Big-endian two's complement bytes of 24-bit values, shape (...,) -> uint8 (..., 3)."""
    c = np.asarray(counts, dtype=np.int64) & 0xFFFFFF
    return np.stack([(c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF], axis=-1).astype(np.uint8)


def raw_packet(counts) -> bytes:
    """Firmware-2 packet id 0: one sample of the four channels uncompressed.

    Parameters
    ----------
    counts : array_like of int, shape (4,)
        ADC counts of channels 1..4.

    Returns
    -------
    bytes, length 20
    """
    return bytes([ID_RAW]) + int24_to_bytes(counts).tobytes() + RAW_PADDING


def compressed_packets(fields, bits: int, packet_ids, byte19=None) -> np.ndarray:
    """Notifications of compressed sample pairs.

    Parameters
    ----------
    fields : array_like of int, shape (n_packets, 8)
        Compressed values (:func:`compress`): sample 1 channels 1..4, then sample 2 channels 1..4.
    bits : int
        18 or 19.
    packet_ids : array_like of int, shape (n_packets,)
        Byte 0 of each packet.
    byte19 : array_like of uint8, shape (n_packets,), optional
        Last byte of 18-bit packets (accelerometer); zero if omitted. Ignored for 19-bit packets.

    Returns
    -------
    numpy.ndarray of uint8, shape (n_packets, 20)
    """
    if bits not in (18, 19):
        raise ValueError(f"bits must be 18 or 19, got {bits}")
    fields = np.asarray(fields, dtype=np.int64).reshape(-1, 8)
    out = np.zeros((fields.shape[0], PACKET_LENGTH), dtype=np.uint8)
    out[:, 0] = np.asarray(packet_ids, dtype=np.int64)
    packed = pack_fields(fields, bits)
    out[:, 1 : 1 + packed.shape[1]] = packed
    if bits == 18 and byte19 is not None:
        out[:, 19] = np.asarray(byte19).astype(np.uint8)
    return out


def impedance_packet(channel: int, kohm: float) -> bytes:
    """Impedance result of ``channel`` (1..4, 5 = reference): id, ASCII digits in kOhm, then ``Z``.

    Like the firmware the packet is only as long as its text, and an impedance of 0 has no digits.
    """
    if not 1 <= channel <= 5:
        raise ValueError(f"channel must be 1..5, got {channel}")
    value = max(int(round(kohm)), 0)
    digits = str(value) if value > 0 else ""
    return bytes([ID_IMPEDANCE + channel - 1]) + digits.encode("ascii") + b"Z"


def message_packets(text: str) -> list:
    """An ASCII reply as notifications: id 206 for each 19-character part but the last, 207 for it.

    Returns
    -------
    list of bytes
        Each at most 20 bytes (id + up to 19 characters); empty for empty text.
    """
    raw = text.encode("ascii", errors="replace")
    parts = [raw[i : i + MESSAGE_CHUNK] for i in range(0, len(raw), MESSAGE_CHUNK)]
    return [bytes([ID_MESSAGE_END if i == len(parts) - 1 else ID_MESSAGE]) + p for i, p in enumerate(parts)]


# == firmware ========================================================================================
class GanglionFirmware:
    """The Ganglion board as seen over BLE, byte for byte, without I/O.

    Parameters
    ----------
    source : object with ``read(n) -> (n_rows, m)`` or array_like, shape (n_rows, n_samples)
        What the electrodes measure, in uV (and g for rows whose ``kinds`` entry is ``"ACC"``), at
        200 Hz, e.g. ``SimulatedHeadband(fs=200)``. The first four non-ACC rows feed channels 1..4
        (missing ones read 0); up to three ACC rows feed the accelerometer (default: 1 g on Z).
    firmware : {2, 3}
        Firmware generation: 2 sends deltas (ids 0..200), 3 truncated samples (ids 0..199).
    name : str
        Advertised local name (BrainFlow looks for the prefix ``"Ganglion"``).
    address : str
        Bluetooth address the emulated radio uses.
    software_revision : str, optional
        Value of the Software Revision characteristic (0x2A28); "2.0.1" or "3.0.0" by default.
    impedance_kohm : sequence of 5 float
        What the impedance test reports for channels 1..4 and the reference.
    accelerometer : bool
        Whether the accelerometer is on after a connection (the board turns it off on disconnect).
    free_running_source : bool
        If True, the source keeps running while the board is not streaming (or not connected), so an
        outage loses the samples of its duration as on a real night; if False (default) the source only
        advances while the board streams, and every stream continues where the previous one stopped.

    Attributes
    ----------
    clock : float
        Device time in seconds since the object was made.
    streaming : bool
        Whether sample packets are being sent.
    fs : float
        Current sample rate (``~`` changes it), Hz.
    stream_origin : int
        Source sample index of the first sample of the current (or last) stream.
    link_lost : str or None
        Set when the board drops the BLE link itself (a write to the disconnect characteristic).
    """

    def __init__(self, source, *, firmware: int = 3, name: str = "Ganglion-4f2a",
                 address: str = "F4:2A:9B:4F:2A:01", software_revision: str | None = None,
                 impedance_kohm=(8.0, 9.0, 7.0, 10.0, 5.0), accelerometer: bool = False,
                 free_running_source: bool = False):
        if firmware not in (2, 3):
            raise ValueError(f"firmware must be 2 or 3, got {firmware!r}")
        self.firmware = firmware
        self.name = name
        self.address = address
        self.software_revision = software_revision or SOFTWARE_REVISIONS[firmware]
        self.impedance_kohm = tuple(float(z) for z in impedance_kohm)
        if len(self.impedance_kohm) != 5:
            raise ValueError("impedance_kohm needs 5 values: channels 1..4 and the reference")
        self.free_running_source = free_running_source
        self._default_accelerometer = accelerometer
        self._source = SampleSource(source, SAMPLE_RATE, "Ganglion")
        self.clock = 0.0
        self.stream_origin = 0
        self.link_lost = None
        self.connected = False
        self._carry = np.zeros((N_CHANNELS + 3, 0))
        self.streaming = False
        self._reset()

    # -- GATT ------------------------------------------------------------------------------------
    advertised_services = (SERVICE_UUID,)

    def gatt_services(self) -> list:
        """GATT table: ``[(service_uuid, [(characteristic_uuid, properties), ...]), ...]``."""
        read = ("read",)
        write = ("write-without-response", "write")
        return [
            (GENERIC_ACCESS_UUID, [(DEVICE_NAME_UUID, read)]),
            (DEVICE_INFORMATION_UUID, [(MANUFACTURER_NAME_UUID, read), (MODEL_NUMBER_UUID, read),
                                       (HARDWARE_REVISION_UUID, read), (SOFTWARE_REVISION_UUID, read)]),
            (SERVICE_UUID, [(NOTIFY_UUID, ("notify",)), (WRITE_UUID, write), (DISCONNECT_UUID, write)]),
        ]

    def read(self, uuid: str) -> bytes:
        """Value of a readable characteristic; KeyError for others."""
        values = {
            DEVICE_NAME_UUID: self.name,
            MANUFACTURER_NAME_UUID: "openbci.com",
            MODEL_NUMBER_UUID: "Ganglion",
            HARDWARE_REVISION_UUID: HARDWARE_REVISION,
            SOFTWARE_REVISION_UUID: self.software_revision,
        }
        return values[uuid.lower()].encode("ascii")

    # -- link ------------------------------------------------------------------------------------
    def connect(self) -> None:
        """A central connected: the board resets (streaming off, all channels on, 200 Hz)."""
        self._reset()
        self.connected = True
        self.link_lost = None

    def disconnect(self) -> None:
        """The link went down: streaming, impedance test and accelerometer stop."""
        self._stop_stream()
        self._z_testing = False
        self.accelerometer = False
        self._outbox.clear()
        self.connected = False

    def _reset(self) -> None:
        self._stop_stream()
        self.fs = SAMPLE_RATE
        self.channel_on = np.ones(N_CHANNELS, dtype=bool)
        self.accelerometer = self._default_accelerometer
        self._z_testing = False
        self._z_was_streaming = False
        self._awaiting_rate = False
        self._outbox: list = []  # (time, payload) of queued ASCII/impedance packets
        self._byte19 = 0

    # -- commands --------------------------------------------------------------------------------
    def write(self, uuid: str, data: bytes) -> None:
        """A central wrote ``data`` to characteristic ``uuid``.

        Like the Simblee firmware, only the first byte of each write to the write characteristic is a
        command: send multi-character commands (``~7``) one byte per write. Writing the disconnect
        characteristic makes the board drop the link (:attr:`link_lost`).
        """
        uuid = uuid.lower()
        if uuid == DISCONNECT_UUID:
            self.link_lost = "disconnect characteristic written"
            return
        if uuid != WRITE_UUID:
            raise KeyError(f"characteristic {uuid} is not writable")
        if data:
            self._command(chr(data[0]))

    def _command(self, c: str) -> None:
        if self._awaiting_rate:
            self._awaiting_rate = False
            self._rate_command(c)
            return
        if c == "b":
            if self._z_testing:
                self._z_testing = False
            self._start_stream()
        elif c == "s":
            self._stop_stream()
            self._say("stop running\n")
        elif c == "v":
            self._stop_stream()
            self._z_testing = False
            self._say(self._banner())
        elif c in "1234" or c in "!@#$":
            ch = ("1234".index(c) if c in "1234" else "!@#$".index(c))
            on = c in "!@#$"
            self.channel_on[ch] = on
            if self.streaming:  # the firmware stops and restarts the ADC around the change
                self._stop_stream()
                self._start_stream()
            else:
                self._say(f"{'Activating' if on else 'Deactivating'} channel {ch + 1}\n")
        elif c in "nN":
            self.accelerometer = c == "n"
            if not self.streaming:
                self._say(f"accelerometer {'enabled' if self.accelerometer else 'disabled'}\n")
        elif c == "z":
            self._z_was_streaming = self.streaming
            self._stop_stream()
            self._z_testing = True
            self._z_next = self.clock + IMPEDANCE_INTERVAL_S
            self._z_channel = 1
        elif c == "Z":
            self._z_testing = False
            if self._z_was_streaming:
                self._start_stream()
            self._z_was_streaming = False
        elif c == "~":
            self._awaiting_rate = True
        # anything else ('?', SD and WiFi commands) is ignored over BLE

    def _rate_command(self, c: str) -> None:
        if c == "~":
            self._say(f"Success: Sample rate is {self.fs:g}Hz\n")
        elif c.isdigit():
            if int(c) in SAMPLE_RATES:
                if not self.streaming:
                    self.fs = SAMPLE_RATES[int(c)]
                    self._say(f"Success: Sample rate is {self.fs:g}Hz\n")
            elif not self.streaming:
                self._say(f"Failure: sample value out of bounds\nSample rate is {self.fs:g}Hz\n")
        elif not self.streaming:
            self._say(f"Failure: Invalid sample value.Sample rate is {self.fs:g}Hz\n")

    def _banner(self) -> str:
        return (f"OpenBCI Ganglion v{self.software_revision}\n{self.name}\nLIS2DH ID: 0x33\n"
                "MCP3912 CONFIG_1: 0x0F0000\n\nsend 'b' to start data stream\nsend 's' to stop data stream\n"
                "use 1,2,3,4 to turn OFF channels\nuse !,@,#,$ to turn ON channels\n"
                "send 'z' 'Z' to start/stop impedance test\nsend 'n','N' to enable/disable accelerometer\n")

    def _say(self, text: str) -> None:
        self._queue(message_packets(text))

    def _queue(self, packets: list) -> None:
        t = max(self.clock, self._outbox[-1][0] + MESSAGE_INTERVAL_S) if self._outbox else self.clock
        for i, p in enumerate(packets):
            self._outbox.append((t + i * MESSAGE_INTERVAL_S, p))

    # -- streaming -------------------------------------------------------------------------------
    def _start_stream(self) -> None:
        if self.streaming:
            return
        self.streaming = True
        self._t0 = self.clock
        # samples read but not yet sent when the last stream stopped open this one (none if free running)
        self._pending, self._carry = self._carry, np.zeros((N_CHANNELS + 3, 0))
        self._n_sampled = self._pending.shape[1]  # samples taken since the stream started
        self._last_counts = np.zeros(N_CHANNELS, dtype=np.int64)  # firmware 2 opens with a raw packet anyway
        self.stream_origin = self._source.position - self._n_sampled

    def _stop_stream(self) -> None:
        if self.streaming and not self.free_running_source:
            self._carry = self._pending
        self.streaming = False
        self._pending = np.zeros((N_CHANNELS + 3, 0))

    def advance(self, seconds: float) -> list:
        """Let ``seconds`` of device time pass and return what the board sent meanwhile.

        Returns
        -------
        list of tuple (time_s, characteristic_uuid, payload)
            In the order sent; ``time_s`` is device time.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        end = self.clock + seconds
        data = self._stream_until(end) if self.streaming else []
        if not self.streaming and self.free_running_source:
            self._source.skip(seconds, self.fs)
        if self._z_testing:
            while self._z_next <= end:
                ch = self._z_channel
                self._outbox.append((self._z_next, impedance_packet(ch, self.impedance_kohm[ch - 1])))
                self._z_channel = ch % 5 + 1
                self._z_next += IMPEDANCE_INTERVAL_S
            self._outbox.sort(key=lambda item: item[0])
        due = [(t, NOTIFY_UUID, p) for t, p in self._outbox if t <= end]
        self._outbox = [item for item in self._outbox if item[0] > end]
        self.clock = end
        if not due:
            return data
        return sorted(data + due, key=lambda item: item[0])

    def _stream_until(self, end: float) -> list:
        n_due = int(np.floor((end - self._t0) * self.fs + 1e-9)) + 1 - self._n_sampled
        if n_due > 0:
            block = self._source.read(n_due)
            m = block.shape[1]
            rows = np.zeros((N_CHANNELS + 3, m))
            exg = self._source.exg_rows[:N_CHANNELS]
            rows[: len(exg)] = block[exg]
            if len(self._source.acc_rows):
                rows[N_CHANNELS : N_CHANNELS + len(self._source.acc_rows)] = block[self._source.acc_rows]
            else:
                rows[N_CHANNELS + 2] = 1.0  # at rest: 1 g on Z
            self._pending = np.hstack([self._pending, rows])
            self._n_sampled += m
        return self._packetise()

    def _packetise(self) -> list:
        pending = self._pending
        m = pending.shape[1]
        if m == 0:
            return []
        first = self._n_sampled - m  # stream index of the first pending sample
        index = first + np.arange(m)
        if self.firmware == 2:
            pos = index % 201  # 0: raw packet; 1..200: pairs, sent on the even position
            ends = np.flatnonzero((pos == 0) | ((pos % 2 == 0) & (np.arange(m) >= 1)))
        else:
            pos = index % 200
            ends = np.flatnonzero((pos % 2 == 1) & (np.arange(m) >= 1))
        if len(ends) == 0:
            return []
        used = ends[-1] + 1
        counts = uv_to_counts(pending[:N_CHANNELS, :used]) * self.channel_on[:, None]
        accel = g_to_accel_counts(pending[N_CHANNELS:, :used]).view(np.uint8)
        bits = 18 if self.accelerometer else 19
        shift = 24 - bits
        is_raw = (pos[ends] == 0) if self.firmware == 2 else np.zeros(len(ends), dtype=bool)
        pair_ends = ends[~is_raw]
        packets = np.zeros((len(ends), PACKET_LENGTH), dtype=np.uint8)
        defined = np.ones(len(ends), dtype=bool)
        if is_raw.any():
            raw_rows = np.flatnonzero(is_raw)
            packets[raw_rows, 1:13] = int24_to_bytes(counts[:, ends[is_raw]].T).reshape(-1, 12)
            packets[raw_rows, 13:] = np.frombuffer(RAW_PADDING, dtype=np.uint8)
        if len(pair_ends):
            if self.firmware == 2:
                previous = np.hstack([self._last_counts[:, None], counts[:, :-1]])
                values = previous - counts  # delta: old minus new
                level = pos[pair_ends] // 2  # 1..100
                fields = compress(np.hstack([values[:, pair_ends - 1].T, values[:, pair_ends].T]), 0)
                axis_slot = {1: 0, 2: 1, 3: 2}
            else:
                level = pos[pair_ends] // 2  # 0..99
                fields = compress(np.hstack([counts[:, pair_ends - 1].T, counts[:, pair_ends].T]), shift)
                axis_slot = {1: 0, 2: 1, 0: 2}
            ids = level + (100 if bits == 19 else 0)
            byte19 = np.zeros(len(pair_ends), dtype=np.uint8)
            has_axis = np.zeros(len(pair_ends), dtype=bool)
            if bits == 18:
                for digit, axis in axis_slot.items():
                    hit = level % 10 == digit
                    byte19[hit] = accel[axis, pair_ends[hit]]
                    has_axis |= hit
            pair_rows = np.flatnonzero(~is_raw)
            packets[pair_rows] = compressed_packets(fields, bits, ids, byte19)
            if bits == 18:
                defined[pair_rows] = has_axis
        self._last_counts = counts[:, used - 1]
        # byte 19 of an 18-bit packet without an axis keeps whatever the radio buffer last held
        carry = np.where(defined, np.arange(len(ends)), -1)
        carry = np.maximum.accumulate(carry)
        last19 = np.where(carry >= 0, packets[np.maximum(carry, 0), 19], self._byte19)
        packets[:, 19] = np.where(defined, packets[:, 19], last19)
        self._byte19 = int(packets[-1, 19])
        times = self._t0 + (first + ends) / self.fs
        self._pending = pending[:, used:]
        flat = packets.tobytes()
        return [(float(t), NOTIFY_UUID, flat[i * PACKET_LENGTH : (i + 1) * PACKET_LENGTH])
                for i, t in enumerate(times)]
