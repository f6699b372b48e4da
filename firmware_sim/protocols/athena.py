"""Muse S Athena (Gen 3) multiplexed BLE packets: the encoders for its documented fields.

Facts from muse-lsl and OpenMuse as summarised in ``../shared/vectors/muse_s_athena/SOURCE.md``:
every data notification on characteristic 273e0013 carries one or more packets. A packet starts
with a 14-byte header: byte 0 the total length (header + payload), bytes 1-2 the packet index
(u16 little-endian), byte 9 the primary sensor tag (0x11 = EEG, 4 channels), byte 10 zero; the
payload starts at byte 14. Fields inside payloads are read LSB-first: bit i of the payload is bit
``i % 8`` of byte ``i // 8``. EEG samples are 14-bit, uV = (raw - 8192) x 1450 / 16383. Battery is
u16 little-endian / 512 (%). Commands are framed as on the classic Muse.

Only the encoders exist here (enough to reproduce the public vectors); the emulated device speaks
the classic protocol (:mod:`firmware_sim.protocols.muse`).
"""

from __future__ import annotations

import numpy as np

from .muse import encode_command  # the same framing: [len(cmd)+1] + ASCII(cmd) + "\n"

__all__ = ["EEG_TAG", "HEADER_LENGTH", "pack_lsb_first", "uv_to_raw14", "eeg_payload", "battery_bytes",
           "packet", "encode_command"]

EEG_TAG = 0x11
HEADER_LENGTH = 14
EEG_BITS = 14
EEG_UV_PER_COUNT = 1450.0 / 16383.0
EEG_OFFSET = 8192


def pack_lsb_first(values, width: int, n_bytes: int | None = None, bit_start: int = 0) -> bytes:
    """Pack unsigned fields LSB-first, field k at bit ``bit_start + k * width``.

    Parameters
    ----------
    values : array_like of int, shape (n,)
        Field values, each in ``[0, 2**width)``.
    width : int
        Bits per field.
    n_bytes : int, optional
        Length of the result; just long enough by default.
    bit_start : int, optional
        Bit index of the first field, by default 0.

    Raises
    ------
    ValueError
        If a value does not fit in ``width`` bits.
    """
    values = np.asarray(values, dtype=np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() >= 1 << width):
        raise ValueError(f"values must be in [0, {1 << width}) for {width}-bit fields")
    total = bit_start + values.size * width
    n_bytes = -(-total // 8) if n_bytes is None else n_bytes
    bits = np.zeros(n_bytes * 8, dtype=np.uint8)
    positions = bit_start + np.arange(values.size)[:, None] * width + np.arange(width)[None, :]
    bits[positions.ravel()] = ((values[:, None] >> np.arange(width)[None, :]) & 1).ravel()
    return np.packbits(bits, bitorder="little").tobytes()


def uv_to_raw14(uv) -> np.ndarray:
    """14-bit EEG codes for samples in uV (rounded, clipped to the code range)."""
    raw = np.rint(np.asarray(uv, dtype=np.float64) / EEG_UV_PER_COUNT + EEG_OFFSET)
    return np.clip(raw, 0, (1 << EEG_BITS) - 1).astype(np.int64)


def eeg_payload(uv) -> bytes:
    """Payload of an EEG (tag 0x11) block: samples in uV, shape (4 samples, 4 channels), sample-major."""
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape != (4, 4):
        raise ValueError(f"an EEG block holds 4 samples x 4 channels, got shape {uv.shape}")
    return pack_lsb_first(uv_to_raw14(uv).ravel(), EEG_BITS)


def battery_bytes(percent: float) -> bytes:
    """Battery level as u16 little-endian in 1/512 %."""
    return int(round(percent * 512)).to_bytes(2, "little")


def packet(index: int, tag: int, payload: bytes) -> bytes:
    """One packet: the 14-byte header (length, index u16 LE, tag at byte 9) and the payload."""
    length = HEADER_LENGTH + len(payload)
    if length > 255:
        raise ValueError(f"packet of {length} bytes does not fit the one-byte length")
    header = bytearray(HEADER_LENGTH)
    header[0] = length
    header[1:3] = (index & 0xFFFF).to_bytes(2, "little")
    header[9] = tag
    return bytes(header) + payload
