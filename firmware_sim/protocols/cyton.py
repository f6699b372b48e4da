"""OpenBCI Cyton (8 ch) and Cyton+Daisy (16 ch) behind the USB radio dongle: packets and firmware.

Two layers:

- vectorised encoders of the 33-byte sample packet (:func:`pack_packets`, :func:`encode_packets`), the
  scale between microvolts and ADC counts (:func:`uv_to_counts`, :func:`counts_to_uv`), the accelerometer
  scale (:func:`g_to_accel_counts`, :func:`accel_counts_to_g`) and the 24/16-bit integer helpers;
- :class:`CytonFirmware`, the board and its dongle as a pure byte state machine: command bytes in
  (:meth:`~CytonFirmware.receive`), reply bytes out, and while streaming the packets of the next samples
  (:meth:`~CytonFirmware.stream_packets`). It does no I/O; :mod:`firmware_sim.serial_pty` serves it on a
  pseudo-terminal that pyserial opens like the FTDI dongle.

Facts from the OpenBCI documentation (Cyton data format, Cyton SDK) and the Cyton firmware
(OpenBCI_32bit_Library), summarised in ``../shared/docs/protocols.md`` and checked against the packet
vectors of OpenBCI_NodeJS_Utilities and OpenBCI_Python. Packet layout::

    0xA0 | sample number u8 (wraps 255 -> 0) | 8 x int24 big-endian two's complement | 6 aux bytes | stop

Stop bytes: 0xC0 accelerometer in aux (3 x int16 big-endian, 0.002/16 g per count); 0xC1 raw aux;
0xC2 user defined; 0xC3/0xC4 time-stamped with accelerometer (aux = int16 axis value + u32 board ms;
0xC3 on the first packet after ``<``); 0xC5/0xC6 the same with raw aux. Scale: uV = counts x 4.5 V /
gain / (2^23 - 1) x 1e6.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .source import SampleSource

START_BYTE = 0xA0
PACKET_LENGTH = 33
#: Sample rate of the ADS1299 and of the packets over the dongle, Hz (the only rate the radio carries).
SAMPLE_RATE = 250.0
VREF_VOLTS = 4.5
#: Positive full scale of the 24-bit ADC; the scale divides by it (not by 2^23).
COUNTS_FULL_SCALE = 2**23 - 1
COUNT_MIN, COUNT_MAX = -(2**23), 2**23 - 1
#: ADS1299 programmable gains, indexed by the gain digit of the channel-settings command.
GAINS = (1, 2, 4, 6, 8, 12, 24)
DEFAULT_GAIN = 24
#: LIS3DH at +-4 g, left-justified 12-bit: 0.002 g per step of 16 counts.
ACCEL_G_PER_COUNT = 0.002 / 16
#: The LIS3DH runs at 25 Hz: a fresh reading reaches one packet in ten (the ``ACCEL_PHASE``-th of each ten
#: counted from the start of the stream, its first reading arriving 40 ms after ``b``).
ACCEL_EVERY = 10
ACCEL_PHASE = 9
#: Sample numbers (mod 10) whose time-stamped packets carry the X, Y and Z axis.
TIME_STAMP_AXIS_SLOTS = (7, 8, 9)

STOP_ACCEL = 0xC0
STOP_RAW_AUX = 0xC1
STOP_USER_DEFINED = 0xC2
STOP_ACCEL_TIME_SET = 0xC3
STOP_ACCEL_TIME_SYNCED = 0xC4
STOP_RAW_AUX_TIME_SET = 0xC5
STOP_RAW_AUX_TIME_SYNCED = 0xC6
STOP_BYTES = range(STOP_ACCEL, STOP_RAW_AUX_TIME_SYNCED + 1)

FIRMWARE_VERSION = "v3.1.2"
END_OF_TRANSMISSION = "$$$"
#: What the dongle answers when its radio cannot reach the board (board off, out of range).
RADIO_FAILURE = "Failure: Communications timeout - Device failed to poll Host$$$"
#: Sample rate code of ``~N`` -> Hz.
SAMPLE_RATE_CODES = {0: 16000, 1: 8000, 2: 4000, 3: 2000, 4: 1000, 5: 500, 6: 250}
#: Board mode digit of ``/N`` -> name; the accelerometer is on only in the first two.
BOARD_MODES = ("default", "debug", "analog", "digital", "marker")


# -- integers --------------------------------------------------------------------------------------------------
def _as_byte_array(raw, width: int) -> np.ndarray:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(bytes(raw), dtype=np.uint8)
        if raw.size % width:
            raise ValueError(f"{raw.size} bytes is not a whole number of {width}-byte values")
        return raw.reshape(-1, width)
    raw = np.asarray(raw)
    if raw.shape[-1:] != (width,):
        raise ValueError(f"expected a last axis of {width} bytes, got shape {raw.shape}")
    return raw.astype(np.uint8, copy=False)


def int24_from_bytes(raw) -> np.ndarray:
    """Read 24-bit big-endian two's complement integers.

    Parameters
    ----------
    raw : bytes or array of uint8, shape (..., 3)
        Bytes holds a whole number of values.

    Returns
    -------
    numpy.ndarray of int32, shape (...,) (``(n,)`` for bytes)
    """
    b = _as_byte_array(raw, 3).astype(np.int32)
    value = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    return value - ((value & 0x800000) << 1)


def int24_to_bytes(values) -> np.ndarray:
    """Write integers as 24-bit big-endian two's complement.

    Parameters
    ----------
    values : array_like of int, any shape
        Within [-2^23, 2^23 - 1].

    Returns
    -------
    numpy.ndarray of uint8, shape values.shape + (3,)

    Raises
    ------
    ValueError
        When a value does not fit in 24 bits (the encoder never wraps silently).
    """
    v = np.asarray(values)
    if v.size and (v.min() < COUNT_MIN or v.max() > COUNT_MAX):
        raise ValueError(f"values outside the 24-bit range [{COUNT_MIN}, {COUNT_MAX}]")
    # the low three bytes of a big-endian int32 are the 24-bit two's complement
    return np.ascontiguousarray(v, dtype=">i4").view(np.uint8).reshape(v.shape + (4,))[..., 1:]


def int16_from_bytes(raw) -> np.ndarray:
    """Read 16-bit big-endian two's complement integers.

    Parameters
    ----------
    raw : bytes or array of uint8, shape (..., 2)

    Returns
    -------
    numpy.ndarray of int32, shape (...,) (``(n,)`` for bytes)
    """
    b = _as_byte_array(raw, 2).astype(np.int32)
    value = (b[..., 0] << 8) | b[..., 1]
    return value - ((value & 0x8000) << 1)


def int16_to_bytes(values) -> np.ndarray:
    """Write integers in [-32768, 32767] as 16-bit big-endian; returns uint8 of shape values.shape + (2,)."""
    v = np.asarray(values)
    if v.size and (v.min() < -(2**15) or v.max() > 2**15 - 1):
        raise ValueError("values outside the 16-bit range [-32768, 32767]")
    return np.ascontiguousarray(v, dtype=">i2").view(np.uint8).reshape(v.shape + (2,))


# -- scales ----------------------------------------------------------------------------------------------------
def uv_per_count(gain=DEFAULT_GAIN):
    """Microvolts per ADC count at ``gain`` (scalar or array): 4.5 / gain / (2^23 - 1) x 1e6."""
    return VREF_VOLTS / np.asarray(gain, dtype=np.float64) / COUNTS_FULL_SCALE * 1e6


def uv_to_counts(uv, gain=DEFAULT_GAIN) -> np.ndarray:
    """Quantise microvolts to ADC counts as the ADS1299 does, saturating at the rails.

    Parameters
    ----------
    uv : array_like of float
        Input voltage in uV, any shape. NaN reads as the positive rail (a lifted electrode rails).
    gain : float or array_like, optional
        Programmable gain, broadcast against ``uv`` (e.g. shape (n_channels, 1) for (n_channels, n)
        data), by default 24.

    Returns
    -------
    numpy.ndarray of int32, shape of the broadcast
        Rounded to the nearest count, clipped to [-2^23, 2^23 - 1].
    """
    x = np.asarray(uv, dtype=np.float64) / uv_per_count(gain)
    x = np.nan_to_num(x, nan=COUNT_MAX, posinf=COUNT_MAX, neginf=COUNT_MIN)
    return np.clip(np.rint(x), COUNT_MIN, COUNT_MAX).astype(np.int32)


def counts_to_uv(counts, gain=DEFAULT_GAIN) -> np.ndarray:
    """ADC counts to microvolts (float64), ``gain`` broadcast as in :func:`uv_to_counts`."""
    return np.asarray(counts, dtype=np.float64) * uv_per_count(gain)


def g_to_accel_counts(g) -> np.ndarray:
    """Acceleration in g to LIS3DH counts (int16, 0.002/16 g per count, saturating at the int16 range)."""
    x = np.nan_to_num(np.asarray(g, dtype=np.float64) / ACCEL_G_PER_COUNT)
    return np.clip(np.rint(x), -(2**15), 2**15 - 1).astype(np.int16)


def accel_counts_to_g(counts) -> np.ndarray:
    """LIS3DH counts to acceleration in g (float64)."""
    return np.asarray(counts, dtype=np.float64) * ACCEL_G_PER_COUNT


# -- packets ---------------------------------------------------------------------------------------------------
def accel_aux(accel_counts) -> np.ndarray:
    """Aux bytes of accelerometer packets (stop 0xC0).

    Parameters
    ----------
    accel_counts : array_like of int, shape (n, 3)
        X, Y, Z in LIS3DH counts (zeros on packets without a fresh reading).

    Returns
    -------
    numpy.ndarray of uint8, shape (n, 6)
    """
    a = np.asarray(accel_counts)
    return int16_to_bytes(a).reshape(a.shape[0], 6)


def time_stamped_aux(word, board_ms) -> np.ndarray:
    """Aux bytes of time-stamped packets (stop 0xC3..0xC6): an int16 then the u32 board time.

    Parameters
    ----------
    word : array_like of int, shape (n,)
        The accelerometer axis value (0xC3/0xC4) or the first raw aux word (0xC5/0xC6).
    board_ms : array_like of int, shape (n,)
        Board time in ms (the board's ``millis()``), taken modulo 2^32.

    Returns
    -------
    numpy.ndarray of uint8, shape (n, 6)
    """
    word = np.asarray(word)
    ms = (np.asarray(board_ms, dtype=np.int64) & 0xFFFFFFFF).astype(">u4").view(np.uint8).reshape(-1, 4)
    return np.concatenate([int16_to_bytes(word).reshape(-1, 2), ms], axis=1)


def pack_packets(counts, sample_numbers, aux=None, stop_byte=STOP_ACCEL) -> np.ndarray:
    """Build ``n`` sample packets as rows of a byte array.

    Parameters
    ----------
    counts : array_like of int, shape (n, 8)
        Channel values in ADC counts, within [-2^23, 2^23 - 1].
    sample_numbers : array_like of int, shape (n,)
        Packet counters; taken modulo 256 (the counter wraps 255 -> 0).
    aux : array_like of uint8, shape (n, 6), optional
        Aux bytes (see :func:`accel_aux`, :func:`time_stamped_aux`); zeros if omitted.
    stop_byte : int or array_like of int, shape () or (n,), optional
        0xC0..0xC6, by default 0xC0.

    Returns
    -------
    numpy.ndarray of uint8, shape (n, 33)

    Raises
    ------
    ValueError
        For counts outside 24 bits, a stop byte outside 0xC0..0xC6 or mismatched shapes.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != 8:
        raise ValueError(f"counts must have shape (n, 8), got {counts.shape}")
    n = counts.shape[0]
    stop = np.broadcast_to(np.asarray(stop_byte), (n,))
    if n and (stop.min() < STOP_BYTES.start or stop.max() >= STOP_BYTES.stop):
        raise ValueError("stop bytes of sample packets are 0xC0..0xC6")
    out = np.empty((n, PACKET_LENGTH), dtype=np.uint8)
    out[:, 0] = START_BYTE
    out[:, 1] = np.asarray(sample_numbers, dtype=np.int64) & 0xFF
    out[:, 2:26] = int24_to_bytes(counts).reshape(n, 24)
    out[:, 26:32] = 0 if aux is None else np.asarray(aux, dtype=np.uint8).reshape(n, 6)
    out[:, 32] = stop
    return out


def encode_packets(counts, sample_numbers, aux=None, stop_byte=STOP_ACCEL) -> bytes:
    """The bytes of ``n`` consecutive sample packets (``n x 33`` bytes); arguments as :func:`pack_packets`."""
    return pack_packets(counts, sample_numbers, aux, stop_byte).tobytes()


def split_packets(data: bytes) -> list:
    """Cut joined packets into a list of 33-byte ``bytes`` (the unit a packet filter works on)."""
    if len(data) % PACKET_LENGTH:
        raise ValueError(f"{len(data)} bytes is not a whole number of {PACKET_LENGTH}-byte packets")
    return [data[i : i + PACKET_LENGTH] for i in range(0, len(data), PACKET_LENGTH)]


# -- the board -------------------------------------------------------------------------------------------------
# Channel letters of the commands: off, on, and the channel field of ``x``/``z`` (1-8 then 9-16).
_OFF = "12345678qwertyui"
_ON = "!@#$%^&*QWERTYUI"
_CHANNEL_FIELD = "12345678QWERTYUI"
# Internal test-signal commands -> (input type, amplitude x1/x2, frequency code); 0 = shorted inputs.
_TEST_SIGNALS = {"0": (1, None, None), "-": (5, 0, 0), "=": (5, 0, 1), "p": (5, 1, 3), "[": (5, 1, 0), "]": (5, 1, 1)}
_INPUT_NORMAL, _INPUT_SHORTED, _INPUT_TEST = 0, 1, 5
# ADS1299 test signal: +-(VREF / 2.4 mV) x (1 or 2), square at fCLK / 2^21 or / 2^20 (fCLK 2.048 MHz), or DC.
_TEST_AMPLITUDE_UV = VREF_VOLTS / 2.4 * 1e3
_TEST_FREQ_HZ = {0: 2.048e6 / 2**21, 1: 2.048e6 / 2**20}
_ADS_REGISTERS = ("ADS_ID", "CONFIG1", "CONFIG2", "CONFIG3", "LOFF") + tuple(f"CH{i}SET" for i in range(1, 9)) + (
    "BIAS_SENSP", "BIAS_SENSN", "LOFF_SENSP", "LOFF_SENSN", "LOFF_FLIP", "LOFF_STATP", "LOFF_STATN", "GPIO",
    "MISC1", "MISC2", "CONFIG4")


class CytonFirmware:
    """The Cyton board (with an optional Daisy) and its USB dongle, byte for byte, without I/O.

    Feed it the bytes a driver writes with :meth:`receive` (it returns the reply bytes) and, while it
    streams, take the packets of the next samples with :meth:`stream_packets` (or :meth:`stream`).

    Parameters
    ----------
    source : object with ``read(n)``, callable ``f(n)`` or array_like
        The signals at the electrodes at 250 Hz: ``read(n)`` returns (n_rows, m <= n) float64, uV for
        ExG rows and g for ACC rows (m < n once the source has ended; ``read(0)`` returns (n_rows, 0)).
        An array of shape (n_rows, n_samples) is read from its start. A source with an ``fs`` attribute
        must be at 250 Hz, e.g. ``SimulatedHeadband(fs=250)``.
    daisy : bool, optional
        Whether a Daisy module is fitted (16 channels), by default False.
    seed : int or None, optional
        Seeds the board's power-on time (its ``millis()`` at the start), by default 0.
    kinds : sequence of str, optional
        Kind of each source row; ``source.kinds`` if present, else all ``"EEG"``. ``"ACC"`` rows
        (x, y, z, at most 3) feed the accelerometer, the others in order feed channels 1..16.
    rate_error : float, optional
        Relative error of the board's crystal, e.g. +0.003 for 0.3 % fast: the board then makes
        ``250 * (1 + rate_error)`` samples per host second (:attr:`packet_rate`), by default 0.
    packet_filter : callable, optional
        ``f(list of 33-byte bytes) -> list of bytes`` applied to every batch before it leaves the dongle,
        to inject faults (loss, corruption, duplication, reordering); settable later as an attribute.

    Attributes
    ----------
    reachable : bool
        False emulates a board the radio cannot reach (off, out of range): every write is answered
        with :data:`RADIO_FAILURE` and packets stop arriving (the samples are lost, the counter runs on).
    packets_dropped : int
        Packets generated but lost on the radio (after commands while streaming, or while unreachable).

    Notes
    -----
    Behaviour, following the OpenBCI SDK and firmware v3:

    - Replies: every reply ends in ``$$$``; ``v`` answers the banner, ``V`` the firmware version,
      ``d``/``D`` reset/report the channel defaults (``060110``), ``x C P G I B S2 S1 X`` answers
      ``Success: Channel set for N$$$``, ``z C P N Z`` ``Success: Lead off set for N$$$``, ``~~``/``~6``
      ``Success: Sample rate is 250Hz$$$`` (``~0..~5``: a Failure reply, those rates need WiFi or SD and
      the rate stays 250 Hz), ``/N`` the board mode, ``<``/``>`` time stamping, ``?`` the registers,
      ``c``/``C`` 8/16 channels (``C`` works only with the Daisy fitted). ``b``/``s`` and the channel on/off
      and test-signal commands answer nothing; nor do unknown bytes, which are ignored like on the board.
    - While streaming, no text is sent: setting commands (channel on/off, ``x``, ``z``, ``d``, test
      signals, ``<``/``>``) still apply, queries and ``b``/``c``/``C``/``~``/``/`` are ignored, ``v`` resets
      and stops; and the first packet after any write is lost on the radio (the counter skips it).
      Unlike the real board, the counter is not restarted by stream-safe settings commands.
    - Each ``b`` restarts the sample number at 0; it wraps 255 -> 0.
    - Daisy: packets stay at 250 Hz; odd sample numbers carry channels 1-8, even ones 9-16, each the
      integer mean (truncated like C) of that ADS's current and previous sample, so a 16-channel sample
      spans two packets (125 Hz). The first packet after ``b`` (even, daisy) averages the new sample
      with the stale last sample of the previous session (0 after power-on): it is invalid.
    - A powered-down channel, shorted inputs and the unmodelled input types (BIAS, MVDD, temperature)
      send 0; the test signal is the ADS1299 square wave (+-1.875 mV x1 or x2, ~1 or ~2 Hz) or DC; a
      channel without a source row (unconnected) sends 0. Counts saturate at the 24-bit rails.
    - Accelerometer (board modes default and debug): stop 0xC0 with a fresh reading every 10th packet
      (packets 9, 19, 29... since ``b``) and zeros on the others; without ACC rows the board lies flat,
      reading (0, 0, 1) g. With time stamping (``<``): stop 0xC3 on the first packet then 0xC4, aux =
      the latest reading's X, Y, Z on sample numbers ending in 7, 8, 9 (else 0) and the u32 board ms.
      Board modes analog, digital and marker turn the accelerometer off: stop 0xC1 (0xC5/0xC6 time
      stamped) with zero aux (nothing on the pins; markers are not modelled).
    - The source is read only while streaming, one sample per packet.
    """

    def __init__(self, source, *, daisy: bool = False, seed: int | None = 0, kinds=None,
                 rate_error: float = 0.0, packet_filter: Callable[[list], list] | None = None):
        self._source = SampleSource(source, SAMPLE_RATE, "Cyton", kinds)
        self.daisy_fitted = bool(daisy)
        n_exg = len(self._source.exg_rows)
        if n_exg > (16 if daisy else 8):
            raise ValueError(f"{n_exg} ExG rows but the board has {16 if daisy else 8} channels")
        if not rate_error > -1:
            raise ValueError(f"rate_error must be > -1, got {rate_error}")
        self.rate_error = float(rate_error)
        self.packet_filter = packet_filter
        self.reachable = True
        self.packets_dropped = 0
        self.board_mode = 0
        self.time_stamping = False
        self.streaming = False
        rng = np.random.default_rng(seed)
        self._board_ms = float(rng.integers(1_500, 8_000))  # switched on a few seconds before the host connects
        self._last_raw = np.zeros(16, dtype=np.int64)  # ADS data registers: partner of the next Daisy mean
        self._last_reading = np.zeros(3, dtype=np.int64)  # latest accelerometer reading, counts
        self._time_set_pending = False
        self._pending: list | None = None  # a multi-byte command being received: [command, chars...]
        self._k = 0  # packets (samples) since the last ``b``
        self._fraction = 0.0  # part of a sample period carried between ``stream(seconds=...)`` calls
        self._drop_next = False
        self._exhausted = False
        self._soft_reset()

    # -- public state ------------------------------------------------------------------------------------------
    @property
    def daisy_attached(self) -> bool:
        """True in 16-channel mode (Daisy fitted and not removed with ``c``)."""
        return self._daisy_attached

    @property
    def n_channels(self) -> int:
        """8, or 16 with the Daisy attached."""
        return 16 if self._daisy_attached else 8

    @property
    def gains(self) -> np.ndarray:
        """Programmable gain of each channel, shape (n_channels,)."""
        return np.asarray(GAINS)[self._gain_code[: self.n_channels]]

    @property
    def channel_on(self) -> np.ndarray:
        """Whether each channel is powered, shape (n_channels,) bool."""
        return ~self._power_down[: self.n_channels]

    @property
    def packet_rate(self) -> float:
        """Packets per host second: 250 Hz on the board's crystal, ``250 * (1 + rate_error)``."""
        return SAMPLE_RATE * (1.0 + self.rate_error)

    @property
    def source_exhausted(self) -> bool:
        """True once a read returned fewer samples than asked (the night is over)."""
        return self._exhausted

    # -- commands ----------------------------------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Process bytes written to the dongle and return its reply.

        Parameters
        ----------
        data : bytes
            Command bytes, possibly several commands or part of a multi-byte one (kept until complete).

        Returns
        -------
        bytes
            The reply text (ASCII), empty when there is none.
        """
        if not data:
            return b""
        if not self.reachable:
            return RADIO_FAILURE.encode()
        if self.streaming:
            self._drop_next = True  # the radio loses the packet that was on air when the host talked
        return "".join(self._command(chr(b)) for b in bytes(data)).encode("ascii")

    def _command(self, c: str) -> str:
        if self._pending is not None:
            return self._continue(c)
        quiet = self.streaming
        if c in _OFF or c in _ON:
            ch = (_OFF + _ON).index(c) % 16
            if ch < 8 or self._daisy_attached:
                self._power_down[ch] = c in _OFF
                self._srb2[ch] &= c in _ON  # switching a channel off also opens its SRB2 switch
            return ""
        if c in _TEST_SIGNALS:
            input_type, amp, freq = _TEST_SIGNALS[c]
            self._input_type[:] = input_type
            if amp is not None:
                self._test_amp, self._test_freq = amp, freq
                self._config2 = 0xD0 | amp << 2 | freq
            return ""
        if c in "xz~/":
            self._pending = [c]
            return ""
        if c == "b":
            if not self.streaming:
                self._start()
            return ""
        if c == "s":
            self.streaming = False
            return ""
        if c == "v":
            self._soft_reset()
            return self._banner()
        if c == "d":
            self._default_channels()
            return "" if quiet else "updating channel settings to default\n" + END_OF_TRANSMISSION
        if c == "<":
            self.time_stamping, self._time_set_pending = True, True
            return "" if quiet else "Time stamp ON" + END_OF_TRANSMISSION
        if c == ">":
            self.time_stamping, self._time_set_pending = False, False
            return "" if quiet else "Time stamp OFF" + END_OF_TRANSMISSION
        if quiet:
            return ""
        if c == "D":
            return "060110" + END_OF_TRANSMISSION
        if c == "V":
            return FIRMWARE_VERSION + END_OF_TRANSMISSION
        if c == "?":
            return self._register_dump()
        if c == "c":
            if not self._daisy_attached:
                return "no daisy to remove!\n" + END_OF_TRANSMISSION
            self._daisy_attached = False
            return "daisy removed\n" + END_OF_TRANSMISSION
        if c == "C":
            text = ""
            if not self._daisy_attached:
                self._daisy_attached = self.daisy_fitted
                text = "daisy attached\n" if self.daisy_fitted else "no daisy to attach!\n"
            return text + ("16" if self._daisy_attached else "8") + END_OF_TRANSMISSION
        return ""  # unknown: ignored, like the board

    def _continue(self, c: str) -> str:
        """Next byte of a multi-byte command (``x``, ``z``, ``~``, ``/``)."""
        pending = self._pending
        pending.append(c)
        command, args = pending[0], pending[1:]
        quiet = self.streaming
        if command in "xz":
            n_fields, latch = (7, "X") if command == "x" else (3, "Z")
            if len(args) <= n_fields:
                if c != latch:
                    return ""
                self._pending = None
                return "" if quiet else "Failure: too few chars" + END_OF_TRANSMISSION
            self._pending = None
            if c != latch:
                which = "9th char not X" if command == "x" else "5th char not Z"
                return "" if quiet else f"Failure: Err: {which}" + END_OF_TRANSMISSION
            ch = _CHANNEL_FIELD.index(args[0]) if args[0] in _CHANNEL_FIELD else 0
            if command == "x":
                self._set_channel(ch, *args[1:n_fields])
                return "" if quiet else f"Success: Channel set for {ch + 1}" + END_OF_TRANSMISSION
            self._lead_off[ch] = [a.isdigit() and a != "0" for a in args[1:n_fields]]
            return "" if quiet else f"Success: Lead off set for {ch + 1}" + END_OF_TRANSMISSION
        self._pending = None
        if quiet:
            return ""
        if command == "~":
            if c == "~" or c == "6":
                return "Success: Sample rate is 250Hz" + END_OF_TRANSMISSION
            if c.isdigit() and int(c) in SAMPLE_RATE_CODES:
                return (f"Failure: Sample rate {SAMPLE_RATE_CODES[int(c)]}Hz needs the WiFi Shield or the SD card; "
                        "the dongle streams at 250Hz" + END_OF_TRANSMISSION)
            return ("Failure: sample value out of bounds." if c.isdigit() else "Failure: invalid sample value.") \
                + END_OF_TRANSMISSION
        # board mode
        if c == "/":
            return f"Success: {BOARD_MODES[self.board_mode]}" + END_OF_TRANSMISSION
        if c.isdigit() and int(c) < len(BOARD_MODES):
            self.board_mode = int(c)
            return f"Success: {BOARD_MODES[self.board_mode]}" + END_OF_TRANSMISSION
        return ("Failure: board mode value out of bounds." if c.isdigit() else "Failure: invalid board mode value.") \
            + END_OF_TRANSMISSION

    def _set_channel(self, ch: int, power_down: str, gain: str, input_type: str, bias: str, srb2: str, srb1: str):
        def digit(a: str) -> int:  # like the board: anything but a digit reads as 0
            return int(a) if a.isdigit() else 0

        self._power_down[ch] = digit(power_down) != 0
        self._gain_code[ch] = int(gain) if gain in "0123456" else GAINS.index(DEFAULT_GAIN)  # invalid: x24
        self._input_type[ch] = digit(input_type)
        self._bias[ch] = digit(bias) != 0
        self._srb2[ch] = digit(srb2) != 0
        group = slice(0, 8) if ch < 8 else slice(8, 16)
        self._srb1[group] = digit(srb1) != 0  # SRB1 is one switch per ADS

    def _default_channels(self):
        self._power_down = np.zeros(16, dtype=bool)
        self._gain_code = np.full(16, GAINS.index(DEFAULT_GAIN))
        self._input_type = np.zeros(16, dtype=np.int64)
        self._bias = np.ones(16, dtype=bool)
        self._srb2 = np.ones(16, dtype=bool)
        self._srb1 = np.zeros(16, dtype=bool)
        self._lead_off = np.zeros((16, 2), dtype=bool)

    def _soft_reset(self):
        """``v``: re-initialise the ADS(s) and the accelerometer; board mode and time stamping persist."""
        self.streaming = False
        self._pending = None
        self._daisy_attached = self.daisy_fitted
        self._default_channels()
        self._test_amp, self._test_freq = 0, 0
        self._config2 = 0xC0  # ADS1299 reset value; the test-signal commands write 0xD0 | amp | freq

    def _start(self):
        self.streaming = True
        self._k = 0
        self._fraction = 0.0
        self._drop_next = False
        self._last_reading[:] = 0  # enabling the LIS3DH clears its axis data

    def _banner(self) -> str:
        lines = ["OpenBCI V3 8-16 channel", "On Board ADS1299 Device ID: 0x3E"]
        if self._daisy_attached:
            lines.append("On Daisy ADS1299 Device ID: 0x3E")
        lines += ["LIS3DH Device ID: 0x33", f"Firmware: {FIRMWARE_VERSION}"]
        return "\n".join(lines) + "\n" + END_OF_TRANSMISSION

    def _register_dump(self) -> str:
        text = "\nBoard ADS Registers\n" + self._ads_registers(0)
        if self._daisy_attached:
            text += "\nDaisy ADS Registers\n" + self._ads_registers(8)
        text += "\nLIS3DH Registers\n"
        lis3dh = {0x0F: 0x33, 0x20: 0x08, 0x23: 0x18}  # WHO_AM_I; powered down between streams; +-4 g, HR
        for block in (range(0x07, 0x10), range(0x1F, 0x34), range(0x38, 0x3E)):
            text += "".join(f"0x{a:02X}\t{lis3dh.get(a, 0):X}\n" for a in block) + "\n"
        return text + END_OF_TRANSMISSION

    def _ads_registers(self, first: int) -> str:
        chans = slice(first, first + 8)
        bits = 1 << np.arange(8)
        on = ~self._power_down[chans]
        chset = ((~on).astype(int) << 7) | (self._gain_code[chans] << 4) | ((self._srb2[chans] & on) << 3) \
            | self._input_type[chans]
        bias = int(((self._bias[chans] & on) * bits).sum())
        config1 = (0xB0 if (first == 0 and self._daisy_attached) else 0x90) | 6  # board drives the Daisy's clock
        values = [0x3E, config1, self._config2, 0xEC, 0x02, *map(int, chset), bias, bias,
                  int((self._lead_off[chans, 0] * bits).sum()), int((self._lead_off[chans, 1] * bits).sum()),
                  0x00, 0x00, 0x00, 0x0F, 0x20 if self._srb1[first] else 0x00, 0x00, 0x00]
        return "".join(f"{name}, 0x{addr:02X}, 0x{v:02X}, " + ", ".join(f"{v:08b}") + "\n"
                       for addr, (name, v) in enumerate(zip(_ADS_REGISTERS, values)))

    # -- streaming ---------------------------------------------------------------------------------------------
    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of host time pass without streaming (advances the board clock)."""
        self._board_ms += 1e3 * seconds * (1.0 + self.rate_error)

    def stream(self, n: int | None = None, *, seconds: float | None = None) -> bytes:
        """The bytes of the next packets while streaming (empty when not).

        Parameters
        ----------
        n : int, optional
            Number of sample periods (one packet each at 250 Hz on the board's clock).
        seconds : float, optional
            Host seconds instead: ``seconds * packet_rate`` periods, the fraction carried to the next call.

        Returns
        -------
        bytes
            Whole 33-byte packets, after the radio losses and the packet filter.
        """
        if (n is None) == (seconds is None):
            raise TypeError("give either n or seconds")
        if seconds is not None:
            if not self.streaming:
                return b""
            total = self._fraction + seconds * self.packet_rate
            n = int(total)
            self._fraction = total - n
        return b"".join(self.stream_packets(n))

    def stream_packets(self, n: int) -> list:
        """Make the next ``n`` samples into packets, as a list of 33-byte ``bytes``.

        Parameters
        ----------
        n : int
            Sample periods to run (fewer when the source ends; none when not streaming).

        Returns
        -------
        list of bytes
            The packets that reach the host: those lost on the radio are left out, and
            :attr:`packet_filter` has been applied.
        """
        if not self.streaming or n <= 0:
            return []
        data = self._source.read(int(n))
        m = data.shape[1]
        if m < n:
            self._exhausted = True
        if m == 0:
            return []
        k = self._k + np.arange(m, dtype=np.int64)
        counts = self._channel_counts(data, k)
        stop, aux = self._aux(data, k)
        blob = pack_packets(counts, k, aux, stop).tobytes()
        self._k += m
        self._board_ms += m * 1e3 / SAMPLE_RATE
        packets = split_packets(blob)
        if not self.reachable:
            self.packets_dropped += len(packets)
            packets = []
        elif self._drop_next:
            self._drop_next = False
            self.packets_dropped += 1
            packets = packets[1:]
        if self.packet_filter is not None:
            packets = list(self.packet_filter(packets))
        return packets

    def _channel_counts(self, data: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The 8 channel values of each packet, shape (m, 8) int64 counts."""
        m = data.shape[1]
        uv = np.zeros((16, m))
        rows = self._source.exg_rows
        uv[: len(rows)] = data[rows]
        normal = self._input_type == _INPUT_NORMAL
        if not normal.all():
            test = self._input_type == _INPUT_TEST
            uv[~normal] = 0.0
            if test.any():
                uv[test] = self._test_signal(k)
        raw = uv_to_counts(uv, np.asarray(GAINS)[self._gain_code][:, None]).astype(np.int64)
        raw[self._power_down] = 0
        if not self._daisy_attached:
            self._last_raw[:8] = raw[:8, -1]
            return raw[:8].T
        pair = np.concatenate([self._last_raw[:, None], raw], axis=1)
        total = pair[:, :-1] + pair[:, 1:]
        mean = np.sign(total) * (np.abs(total) // 2)  # C integer division truncates toward zero
        self._last_raw = raw[:, -1].copy()
        odd = (k & 1).astype(bool)
        return np.where(odd[None, :], mean[:8], mean[8:]).T

    def _test_signal(self, k: np.ndarray) -> np.ndarray:
        amp = _TEST_AMPLITUDE_UV * (2 if self._test_amp else 1)
        if self._test_freq not in _TEST_FREQ_HZ:  # DC
            return np.full(k.shape, amp)
        half_periods = np.floor(2.0 * _TEST_FREQ_HZ[self._test_freq] * k / SAMPLE_RATE).astype(np.int64)
        return np.where(half_periods % 2 == 0, amp, -amp)

    def _accel_counts(self, data: np.ndarray) -> np.ndarray:
        """Accelerometer of every sample, shape (3, m) counts; lying flat without ACC rows."""
        g = np.zeros((3, data.shape[1]))
        rows = self._source.acc_rows
        if len(rows):
            g[: len(rows)] = data[rows]
        else:
            g[2] = 1.0
        return g_to_accel_counts(g).astype(np.int64)

    def _aux(self, data: np.ndarray, k: np.ndarray):
        """Stop byte (m,) and aux bytes (m, 6) of each packet."""
        m = len(k)
        accel_on = self.board_mode < 2
        stop = np.full(m, STOP_ACCEL if accel_on else STOP_RAW_AUX)
        if not accel_on and not self.time_stamping:
            return stop, np.zeros((m, 6), dtype=np.uint8)
        word = np.zeros(m, dtype=np.int64)
        if accel_on:
            acc = self._accel_counts(data)
            fresh = k % ACCEL_EVERY == ACCEL_PHASE
            if not self.time_stamping:
                if fresh.any():
                    self._last_reading = acc[:, np.flatnonzero(fresh)[-1]].copy()
                return stop, accel_aux(np.where(fresh[None, :], acc, 0).T)
            # the latest reading is held and its X, Y, Z go out on sample numbers ending in 7, 8, 9
            latest = (k - ACCEL_PHASE) // ACCEL_EVERY * ACCEL_EVERY + ACCEL_PHASE  # index of that reading
            in_batch = latest >= k[0]
            held = np.where(in_batch[None, :], acc[:, np.clip(latest - k[0], 0, m - 1)],
                            self._last_reading[:, None])
            if fresh.any():
                self._last_reading = acc[:, np.flatnonzero(fresh)[-1]].copy()
            slot = (k & 0xFF) % 10 - TIME_STAMP_AXIS_SLOTS[0]
            has_axis = (slot >= 0) & (slot < 3)
            word = np.where(has_axis, held[np.clip(slot, 0, 2), np.arange(m)], 0)
        stop += 4 if accel_on else 5  # synced: 0xC0 -> 0xC4, 0xC1 -> 0xC6
        # 0xC3 / 0xC5 on the first packet after ``<`` that reaches the host (not the one lost to the command)
        first = 1 if self._drop_next else 0
        if self._time_set_pending and m > first:
            stop[first] -= 1
            self._time_set_pending = False
        board_ms = np.floor(self._board_ms + (k - k[0]) * 1e3 / SAMPLE_RATE).astype(np.int64)
        return stop, time_stamped_aux(word, board_ms)
