"""DreamSync headband, open BLE protocol v1: GATT table, frame encoders and the adjustment-log entry.

The protocol is our own and documented in ``docs/dreamsync-protocol.md`` (byte layouts, commands,
the log's chain rule, a worked example); this module is its device side, pure functions and
constants. The host side lives in :mod:`ingest.boards.dreamsync` (it may not import this module).

Every frame, in either direction, ends with the CRC-32 of all the bytes before it (IEEE 802.3, as
``binascii.crc32``/zlib compute it), little-endian. Every notification starts with its type (u8) and
a sequence number (u16 little-endian) that each notifying characteristic counts on its own, so a
host sees lost, duplicated or reordered notifications. Multi-byte fields are little-endian.

Notifications are up to 222 bytes: the device asks for an ATT MTU of 247 (BLE 4.2 data length
extension, accepted by every current phone and BlueZ).
"""

from __future__ import annotations

import binascii
import hashlib
import struct

import numpy as np

# -- GATT --------------------------------------------------------------------------------------------
_BASE = "-2c4b-4f6e-8d61-64726d73796e"  # the tail spells "drmsyn"
SERVICE_UUID = "d5ea0000" + _BASE
DATA_UUID = "d5ea0001" + _BASE      # notify: sample frames
CONTROL_UUID = "d5ea0002" + _BASE   # write with response: command frames
RESPONSE_UUID = "d5ea0003" + _BASE  # notify: one response frame per command
LOG_UUID = "d5ea0004" + _BASE       # notify: adjustment-log entries (live and on request), end marker
BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
DEVICE_INFORMATION_UUID = "0000180a-0000-1000-8000-00805f9b34fb"
MODEL_NUMBER_UUID = "00002a24-0000-1000-8000-00805f9b34fb"
SERIAL_NUMBER_UUID = "00002a25-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION_UUID = "00002a26-0000-1000-8000-00805f9b34fb"
MANUFACTURER_NAME_UUID = "00002a29-0000-1000-8000-00805f9b34fb"

# -- signal ------------------------------------------------------------------------------------------
SAMPLE_RATE = 250.0
CHANNELS = ("EEG Fp1-M2", "EEG Fp2-M1", "EOG E1-M2", "EOG E2-M1", "EMG chin", "ACC X", "ACC Y", "ACC Z")
N_EXG = 5
N_ACC = 3
#: Electrode channels: signed 24-bit counts of 0.01 uV (+-83.9 mV).
UV_PER_COUNT = 0.01
#: Accelerometer: signed 16-bit counts of 1 mg.
G_PER_COUNT = 0.001
SAMPLES_PER_FRAME = 10
SAMPLE_BYTES = 3 * N_EXG + 2 * N_ACC  # 21

# -- frame types, opcodes, statuses ------------------------------------------------------------------
FRAME_SAMPLES, FRAME_RESPONSE, FRAME_LOG_ENTRY, FRAME_LOG_END = 0x01, 0x02, 0x03, 0x04
OP_START, OP_STOP, OP_BATTERY, OP_STIMULATE, OP_OPTOUT_ON, OP_OPTOUT_OFF, OP_READ_LOG, OP_STATUS = range(1, 9)
OPCODES = {"start": OP_START, "stop": OP_STOP, "battery": OP_BATTERY, "stimulate": OP_STIMULATE,
           "optout_on": OP_OPTOUT_ON, "optout_off": OP_OPTOUT_OFF, "read_log": OP_READ_LOG, "status": OP_STATUS}
STATUS_OK, STATUS_BAD_CRC, STATUS_UNKNOWN, STATUS_BAD_ARGS, STATUS_REFUSED, STATUS_UNAVAILABLE = range(6)
#: Log entries sent as they are appended, or in answer to READ_LOG.
LOG_LIVE, LOG_READ = 0, 1

# -- actuators and log ------------------------------------------------------------------------------
ACTUATORS = {1: "audio-closed-loop", 2: "audio-pink-noise", 3: "audio-rhythm", 4: "light-flicker", 5: "current"}
ACTUATOR_CODES = {name: code for code, name in ACTUATORS.items()}
#: What the signal shows of each actuator: the adjustment kinds of ``firmware_sim.adjustments``.
ACTUATOR_KIND = {1: "auditory", 2: "auditory", 3: "entrainment", 4: "entrainment", 5: "electrical"}
ORIGINS = {0: "sleeper", 1: "vendor"}
ORIGIN_SLEEPER, ORIGIN_VENDOR = 0, 1
EVENTS = {1: "stimulation", 2: "optout-on", 3: "optout-off", 4: "refused", 5: "stopped"}
EVENT_CODES = {name: code for code, name in EVENTS.items()}
#: index u32, tick u32, event u8, actuator u8, origin u8, flags u8, duration s u16, frequency cHz u16,
#: intensity 0.1 uV u16.
ENTRY_BODY = struct.Struct("<IIBBBBHHH")
HASH_BYTES = 32
ENTRY_BYTES = ENTRY_BODY.size + HASH_BYTES  # 50
GENESIS_PREFIX = b"dreamsync-log-v1:"


def crc(data: bytes) -> bytes:
    """The 4-byte trailer of a frame: CRC-32 (IEEE, zlib) of ``data``, little-endian."""
    return struct.pack("<I", binascii.crc32(data))


def seal(body: bytes) -> bytes:
    """``body`` followed by its CRC trailer."""
    return body + crc(body)


def check(frame: bytes) -> bytes | None:
    """The frame without its trailer when the CRC matches, else None."""
    if len(frame) < 5 or crc(frame[:-4]) != frame[-4:]:
        return None
    return frame[:-4]


# == samples =========================================================================================
def uv_to_counts(uv) -> np.ndarray:
    """Signed 24-bit counts of microvolts (any shape) -> int64 array, rounded and clipped."""
    counts = np.rint(np.nan_to_num(np.asarray(uv, dtype=np.float64)) / UV_PER_COUNT)
    return np.clip(counts, -(2**23), 2**23 - 1).astype(np.int64)


def g_to_counts(g) -> np.ndarray:
    """Signed 16-bit counts of accelerations in g (any shape) -> int64 array, rounded and clipped."""
    counts = np.rint(np.nan_to_num(np.asarray(g, dtype=np.float64)) / G_PER_COUNT)
    return np.clip(counts, -(2**15), 2**15 - 1).astype(np.int64)


def sample_frames(exg_uv, acc_g, first_seq: int, first_tick: int) -> list:
    """Encode samples as SAMPLES frames of :data:`SAMPLES_PER_FRAME` samples each.

    Parameters
    ----------
    exg_uv : array_like, shape (5, n)
        Electrode samples in uV; ``n`` a multiple of :data:`SAMPLES_PER_FRAME`.
    acc_g : array_like, shape (3, n)
        Accelerometer samples in g.
    first_seq : int
        Sequence number of the first frame (taken mod 2**16).
    first_tick : int
        Device sample counter of the first sample (taken mod 2**32).

    Returns
    -------
    list of bytes
        One frame per 10 samples: type, seq u16, tick u32 of its first sample, count u8, then per
        sample 5 x int24 and 3 x int16 (little-endian), CRC-32.
    """
    exg, acc = uv_to_counts(exg_uv), g_to_counts(acc_g)
    n = exg.shape[1]
    if n % SAMPLES_PER_FRAME:
        raise ValueError(f"{n} samples do not fill whole frames of {SAMPLES_PER_FRAME}")
    exg_bytes = (exg.T[:, :, None] >> np.array([0, 8, 16])) & 0xFF  # (n, 5, 3) little-endian int24
    acc_bytes = (acc.T[:, :, None] >> np.array([0, 8])) & 0xFF      # (n, 3, 2) little-endian int16
    per_sample = np.concatenate([exg_bytes.reshape(n, -1), acc_bytes.reshape(n, -1)], axis=1).astype(np.uint8)
    body = per_sample.reshape(n // SAMPLES_PER_FRAME, -1)
    frames = []
    for k, samples in enumerate(body):
        header = struct.pack("<BHIB", FRAME_SAMPLES, (first_seq + k) & 0xFFFF,
                             (first_tick + k * SAMPLES_PER_FRAME) & 0xFFFFFFFF, SAMPLES_PER_FRAME)
        frames.append(seal(header + samples.tobytes()))
    return frames


# == commands and responses ==========================================================================
def command(opcode: int, command_id: int, args: bytes = b"") -> bytes:
    """A command frame: opcode u8, command id u8 (echoed in the response), arguments, CRC-32."""
    return seal(bytes([opcode, command_id & 0xFF]) + args)


def stimulate_args(actuator: int, origin: int, duration_s: float, frequency_hz: float, intensity_uv: float) -> bytes:
    """Arguments of STIMULATE: actuator u8, origin u8, duration s u16, frequency cHz u16, intensity 0.1 uV u16."""
    return struct.pack("<BBHHH", actuator, origin, int(round(duration_s)), int(round(frequency_hz * 100)),
                       int(round(intensity_uv * 10)))


def response(seq: int, command_id: int, opcode: int, status: int, payload: bytes = b"") -> bytes:
    """A response frame: type, seq u16, command id u8, opcode u8, status u8, payload, CRC-32."""
    return seal(struct.pack("<BHBBB", FRAME_RESPONSE, seq & 0xFFFF, command_id, opcode, status) + payload)


# == log =============================================================================================
def genesis(serial: str) -> bytes:
    """The hash before the first entry: SHA-256 of ``b"dreamsync-log-v1:" + serial`` (binds a log to its device)."""
    return hashlib.sha256(GENESIS_PREFIX + serial.encode("ascii")).digest()


def entry_body(index: int, tick: int, event: int, actuator: int = 0, origin: int = 0, flags: int = 0,
               duration_s: int = 0, frequency_chz: int = 0, intensity_duv: int = 0) -> bytes:
    """The 18 bytes of a log entry the hash covers (see :data:`ENTRY_BODY`)."""
    return ENTRY_BODY.pack(index, tick & 0xFFFFFFFF, event, actuator, origin, flags, duration_s, frequency_chz,
                           intensity_duv)


def chain(previous_hash: bytes, body: bytes) -> bytes:
    """The chain rule: an entry's hash is SHA-256(previous entry's hash || its body)."""
    return hashlib.sha256(previous_hash + body).digest()


def log_entry_frame(seq: int, mode: int, entry: bytes) -> bytes:
    """A LOG_ENTRY frame: type, seq u16, mode u8 (0 live, 1 read), the 50-byte entry, CRC-32."""
    return seal(struct.pack("<BHB", FRAME_LOG_ENTRY, seq & 0xFFFF, mode) + entry)


def log_end_frame(seq: int, count: int, head: bytes) -> bytes:
    """A LOG_END frame: type, seq u16, entries sent u32, head hash (32 bytes), CRC-32."""
    return seal(struct.pack("<BHI", FRAME_LOG_END, seq & 0xFFFF, count) + head)
