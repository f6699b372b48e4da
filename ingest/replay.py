"""Recordings replayed as devices: EDF/EDF+/BDF files and raw captures, paced or as fast as possible.

A raw capture replays through the same decoder the board used live, so a night decodes to the same
blocks again, and its packet stream is audited again as it was live (:mod:`ingest.integrity`); an EDF's
annotated gaps come back as lost samples, never as data.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .assembly import RunAssembler
from .capture import FROM_HOST, MAGIC, RESTART, CaptureReader
from .device import Device
from .edf import read_edf
from .errors import RecordingError
from .integrity import DecoderAudit
from .stream import SampleBlock


class _Pacer:
    """Sleeps so that stream time advances ``speed`` times faster than wall time (0 = no pacing)."""

    def __init__(self, speed: float):
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.speed = speed
        self._t0: float | None = None

    def wait(self, stream_seconds: float, stop) -> None:
        if not self.speed or not np.isfinite(self.speed):
            return
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + stream_seconds / self.speed - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class EdfReplay(Device):
    """Replays the channels of an EDF/EDF+/BDF file that share the most common sample rate.

    Parameters
    ----------
    path : str
    speed : float, optional
        1 = real time, 0 = as fast as possible (default).
    block_seconds : float, optional
        Signal per block, by default 1 s.

    Host times are the recording's own clock (header start + index / fs), or seconds from 0 when the
    file's date is anonymised.
    """

    def __init__(self, path, speed: float = 0.0, block_seconds: float = 1.0):
        super().__init__()
        self.path = os.fspath(path)
        self.device_id = f"file:{self.path}"
        self._pacer = _Pacer(speed)
        self._block_seconds = block_seconds

    def _open(self) -> None:
        rec = read_edf(self.path)
        rates = [s.fs for s in rec.signals]
        if not rates:
            raise RecordingError(f"{self.path}: no signal to replay")
        fs = max(set(rates), key=rates.count)
        rows = [i for i, s in enumerate(rec.signals) if s.fs == fs]
        self.channels = tuple(rec.signals[i].label for i in rows)
        self.kinds = tuple(rec.signals[i].kind for i in rows)
        self.fs = fs
        self._data = np.vstack([rec.read(i) for i in rows])
        self._t0 = rec.start.timestamp() if rec.start else 0.0
        self._missing = np.isnan(self._data).all(axis=0)  # annotated gaps (all channels lost)
        self._pos = 0

    def _start(self) -> None:
        pass

    def _read_block(self) -> SampleBlock | None:
        n_total = self._data.shape[1]
        lost = 0
        while self._pos < n_total and self._missing[self._pos]:
            self._pos += 1
            lost += 1
        if self._pos >= n_total:
            return None
        end = min(n_total, self._pos + max(1, int(round(self._block_seconds * self.fs))))
        gap = np.flatnonzero(self._missing[self._pos:end])
        if gap.size:
            end = self._pos + int(gap[0])
        first, self._pos = self._pos, end
        self._pacer.wait(end / self.fs, self._stop_requested)
        return SampleBlock(self.device_id, self.channels, self.kinds, self.fs, first,
                           self._data[:, first:end], self._t0 + first / self.fs, lost)

    def _stop(self) -> None:
        pass

    def _close(self) -> None:
        self._data = np.zeros((len(self.channels), 0))


class CaptureReplay(Device):
    """Replays a raw capture through the decoder of the board that recorded it.

    Parameters
    ----------
    path : str
    speed : float, optional
        1 = real time (as recorded), 0 = as fast as possible (default).

    Attributes
    ----------
    truncated : bool
        The capture ended mid-record (the recording process was killed); what came before is replayed.
    audit : ingest.integrity.DecoderAudit or None
        The audit of the recorded packet stream (at the recorded arrival times), None for a board
        without packet counters.
    audit_options : dict
        Options for every :class:`~ingest.integrity.StreamAudit`, set before ``open()`` (e.g.
        ``{"check_timing": False}`` for a capture of a device served faster than real time).
    """

    def __init__(self, path, speed: float = 0.0):
        super().__init__()
        self.path = os.fspath(path)
        self._pacer = _Pacer(speed)
        self.truncated = False
        self.audit: DecoderAudit | None = None
        self.audit_options: dict = {}

    def _open(self) -> None:
        from .boards import decoder_for

        self._reader = CaptureReader(self.path)
        header = self._reader.header
        try:
            self.decoder = decoder_for(header)
        except KeyError as err:
            self._reader.close()
            raise RecordingError(f"{self.path}: {err.args[0]}") from None
        self.device_id = header.get("device_id") or f"capture:{self.path}"
        self.channels, self.kinds, self.fs = self.decoder.channels, self.decoder.kinds, self.decoder.fs
        self._assembler = RunAssembler(self.device_id, self.channels, self.kinds, self.fs)
        self.audit = DecoderAudit(self.decoder, **self.audit_options) if self.decoder.counter_modulus else None
        self._records = iter(self._reader)
        self._queue: list = []
        self._first_time: float | None = None
        self._audited = False

    def _start(self) -> None:
        pass

    def _read_block(self) -> SampleBlock | None:
        while not self._queue:
            record = next(self._records, None)
            if record is None:
                self.truncated = self._reader.truncated
                if self.audit is not None and not self._audited:
                    self.audit.finish()
                    self._audited = True
                return None
            if record.source == FROM_HOST:
                self.decoder.on_command(record.payload)
                continue
            if record.source == RESTART:
                self.decoder.restart()
                if self.audit is not None:
                    self.audit.restart()
                continue
            if self._first_time is None:
                self._first_time = record.host_time
            self._pacer.wait(record.host_time - self._first_time, self._stop_requested)
            if self.audit is not None:
                self.audit.at(record.host_time)
            for run in self.decoder.feed(record.payload, record.source):
                block = self._assembler.add(run, record.host_time)
                if block is not None:
                    self._queue.append(block)
        return self._queue.pop(0)

    def _stop(self) -> None:
        pass

    def _close(self) -> None:
        self._reader.close()

    def stream_alarms(self) -> list:
        """Stream anomalies raised since the last call, in the order raised (see
        :meth:`ingest.board.Board.stream_alarms`)."""
        return self.audit.raised() if self.audit is not None else []

    @property
    def stream_anomalies(self) -> list:
        """Every stream anomaly so far, sorted by onset (all of them once the capture has been read)."""
        return self.audit.anomalies if self.audit is not None else []


def open_recording(path, speed: float = 0.0) -> Device:
    """A replay device for ``path``: a raw capture or an EDF/EDF+/BDF file, told apart by content."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(MAGIC))
    except OSError as err:
        raise RecordingError(f"{path}: {(err.strerror or str(err)).lower()}") from None
    return CaptureReplay(path, speed) if magic == MAGIC else EdfReplay(path, speed)
