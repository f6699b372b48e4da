"""Raw captures: exactly the bytes a device sent (and the commands it was sent), with host times.

A capture lets a night be decoded again later by the same decoders, and survives a crash: records
are appended as they arrive and flushed to disk at least once a second, so a killed process loses at
most the last second; a truncated final record is ignored when reading.

File layout::

    b"DREAMSYNC-CAPTURE 1\\n"
    one line of JSON: the header (board, decoder settings, start time, ...)
    records, each: host_time f64 | source u16 | length u32 (little-endian) | payload bytes

``source`` says where the bytes came from: :data:`FROM_HOST` for commands written to the device,
:data:`RESTART` for the mark of a new stream (empty payload), otherwise a device-side stream (0 for a
serial port; for BLE, the index of the characteristic in the header's ``"sources"`` list).
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass
from typing import Iterator

from .errors import RecordingError

MAGIC = b"DREAMSYNC-CAPTURE 1\n"
FROM_HOST = 0xFFFF
#: A record of this source marks a new stream (after start or a reconnect): the decoder restarts.
RESTART = 0xFFFE
_RECORD = struct.Struct("<dHI")
FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class CaptureRecord:
    """One chunk of bytes: host time (s since the Unix epoch), source, payload."""

    host_time: float
    source: int
    payload: bytes


class CaptureWriter:
    """Appends records to a capture file, flushing to disk at least once a second.

    Parameters
    ----------
    path : str or PathLike
        File to create (an existing file is replaced).
    header : dict
        JSON-serialisable description: at least ``"board"``; whatever its decoder needs to be rebuilt.
    """

    def __init__(self, path, header: dict):
        if "board" not in header:
            raise ValueError("a capture header names its board")
        self.path = os.fspath(path)
        try:
            self._fh = open(self.path, "wb")
        except OSError as err:
            raise RecordingError(f"{self.path}: cannot create the capture ({err.strerror})") from None
        self._fh.write(MAGIC + json.dumps(header).encode() + b"\n")
        self._last_flush = 0.0
        self.records = 0
        self.flush()

    def write(self, payload: bytes, source: int, host_time: float | None = None) -> None:
        """Append one record (``host_time`` defaults to now)."""
        t = time.time() if host_time is None else host_time
        self._fh.write(_RECORD.pack(t, source, len(payload)))
        self._fh.write(payload)
        self.records += 1
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Push everything written so far to the disk."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if not self._fh.closed:
            self.flush()
            self._fh.close()

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CaptureReader:
    """Reads a capture file.

    Attributes
    ----------
    header : dict
    truncated : bool
        True once iteration met an incomplete final record (the writer was killed mid-record).

    Raises
    ------
    RecordingError
        If the file is missing or is not a dreamsync capture.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as err:
            raise RecordingError(f"{self.path}: {err.strerror.lower() if err.strerror else err}") from None
        if self._fh.read(len(MAGIC)) != MAGIC:
            self._fh.close()
            raise RecordingError(f"{self.path}: not a dreamsync raw capture")
        try:
            self.header = json.loads(self._fh.readline())
        except ValueError:
            self._fh.close()
            raise RecordingError(f"{self.path}: the capture header is damaged") from None
        self._data_start = self._fh.tell()
        self.truncated = False

    def __iter__(self) -> Iterator[CaptureRecord]:
        self._fh.seek(self._data_start)
        while True:
            head = self._fh.read(_RECORD.size)
            if not head:
                return
            if len(head) < _RECORD.size:
                self.truncated = True
                return
            host_time, source, length = _RECORD.unpack(head)
            payload = self._fh.read(length)
            if len(payload) < length:
                self.truncated = True
                return
            yield CaptureRecord(host_time, source, payload)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
