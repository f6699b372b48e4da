"""The base of every hardware board driver: transport hooks in, blocks out, and staying up all night.

One class per board (as in BrainFlow) implements a handful of transport hooks; this base class does
the rest the same way for every board:

- every chunk the device sends, and every command the host writes, goes to the raw capture (if one
  is attached) before anything else, so what was received is on disk even if decoding fails;
- the board's :class:`~ingest.decoder.Decoder` turns chunks into runs, a
  :class:`~ingest.assembly.RunAssembler` numbers them, marks gaps and time-stamps them;
- when the link drops, the board reconnects on its own with back-off (0.5 s doubling to 30 s), the
  outage is marked as a gap of the samples the clock says were missed, and nothing is interpolated;
- a board whose packets are numbered (Cyton, Ganglion, Muse) has every packet audited as it arrives
  (:class:`~ingest.integrity.DecoderAudit`): runs of replayed or re-sequenced packets, forged payloads
  and arrivals the sample clock cannot explain come out of :meth:`Board.stream_alarms` as they are
  raised, and all of them from :attr:`Board.stream_anomalies`.
"""

from __future__ import annotations

import abc
import collections
import time

from .assembly import RunAssembler
from .capture import FROM_HOST, RESTART, CaptureWriter
from .decoder import Decoder
from .device import Device
from .errors import DeviceError
from .integrity import DecoderAudit
from .stream import SampleBlock

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # seconds; the last repeats


class LinkLost(Exception):
    """The transport lost the device (unplugged dongle, BLE disconnect, radio silence)."""


class Board(Device):
    """A headband reached over a serial port or BLE.

    Parameters
    ----------
    capture : str or PathLike, optional
        Raw capture file to write while the board is open.
    reconnect : bool, optional
        Reconnect on its own when the link drops, by default True.
    max_outage : float, optional
        Give up (raise :class:`~ingest.errors.DeviceError`) after this many seconds without the
        device; None (default) keeps trying all night.

    Attributes
    ----------
    board : str
        Board name, written in captures (``"cyton"``, ``"ganglion"``, ``"muse"``, ...).
    disconnects, reconnects : int
        Link drops seen and recovered so far.
    audit : ingest.integrity.DecoderAudit or None
        The audit of the packet stream while open (None before, or for a board without packet counters).
    audit_options : dict
        Options for every :class:`~ingest.integrity.StreamAudit` of the audit, set before ``open()``:
        ``{"check_timing": False}`` for a device served faster than real time (an emulator), whose
        arrival times say nothing of its clock.
    """

    board: str = ""

    def __init__(self, *, capture=None, reconnect: bool = True, max_outage: float | None = None):
        super().__init__()
        self._capture_path = capture
        self.capture: CaptureWriter | None = None
        self.reconnect = reconnect
        self.max_outage = max_outage
        self.disconnects = 0
        self.reconnects = 0
        self.decoder: Decoder | None = None
        self._assembler: RunAssembler | None = None
        self._queue: collections.deque = collections.deque()
        self.audit: DecoderAudit | None = None
        self.audit_options: dict = {}

    # -- hooks for each board ------------------------------------------------------------------
    @abc.abstractmethod
    def _connect(self) -> None:
        """Open the transport and identify the device; raise DeviceError with a clear message."""

    @abc.abstractmethod
    def _disconnect(self) -> None:
        """Release the transport; must not raise."""

    @abc.abstractmethod
    def _write(self, payload: bytes) -> None:
        """Write raw bytes to the device; raise LinkLost if the link is gone."""

    @abc.abstractmethod
    def _receive(self, timeout: float) -> list:
        """Chunks received within ``timeout`` s: ``[(host_time, source, payload), ...]``; raise LinkLost."""

    @abc.abstractmethod
    def _make_decoder(self) -> Decoder:
        """A decoder for the device as identified by ``_connect``."""

    @abc.abstractmethod
    def _begin_stream(self) -> None:
        """Send what starts streaming (with :meth:`send`)."""

    @abc.abstractmethod
    def _end_stream(self) -> None:
        """Send what stops streaming (with :meth:`send`)."""

    def capture_header(self) -> dict:
        """What a capture needs to rebuild this board's decoder; boards add their settings."""
        return {"board": self.board, "device_id": self.device_id, "channels": list(self.channels),
                "kinds": list(self.kinds), "fs": self.fs, "start": time.time()}

    # -- shared machinery ----------------------------------------------------------------------
    def send(self, payload: bytes) -> None:
        """Write a command to the device, logging it to the capture and telling the decoder."""
        if self.capture is not None:
            self.capture.write(payload, FROM_HOST)
        if self.decoder is not None:
            self.decoder.on_command(payload)
        self._write(payload)

    def _open(self) -> None:
        self._connect()
        self.decoder = self._make_decoder()
        self.channels, self.kinds, self.fs = self.decoder.channels, self.decoder.kinds, self.decoder.fs
        self._assembler = RunAssembler(self.device_id, self.channels, self.kinds, self.fs)
        self.audit = DecoderAudit(self.decoder, **self.audit_options) if self.decoder.counter_modulus else None
        if self._capture_path is not None:
            self.capture = CaptureWriter(self._capture_path, self.capture_header())

    def _start(self) -> None:
        try:
            self._begin_stream()
        except LinkLost:  # dropped while starting: recover like any other drop
            self._recover()
            return
        self._restart_decoder()

    def _restart_decoder(self) -> None:
        if self.capture is not None:
            self.capture.write(b"", RESTART)
        self.decoder.restart()
        if self.audit is not None:
            self.audit.restart()  # the device's counters start afresh

    def _read_block(self) -> SampleBlock | None:
        while not self._queue:
            if self._stop_requested.is_set():
                return None
            try:
                chunks = self._receive(0.2)
            except LinkLost:
                self._recover()
                continue
            for host_time, source, payload in chunks:
                if self.capture is not None:
                    self.capture.write(payload, source, host_time)
                if self.audit is not None:
                    self.audit.at(host_time)  # the decoder reports the chunk's packets to the audit
                for run in self.decoder.feed(payload, source):
                    block = self._assembler.add(run, host_time)
                    if block is not None:
                        self._queue.append(block)
        return self._queue.popleft()

    def _recover(self) -> None:
        """Reconnect with back-off until the device is back, ``stop()`` is called or ``max_outage`` passes."""
        self.disconnects += 1
        self._disconnect()
        if not self.reconnect:
            raise DeviceError(f"{self.device_id}: the device disconnected")
        began = time.monotonic()
        for attempt in range(1_000_000):
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            if self._stop_requested.wait(delay):
                return
            try:
                self._connect()
                self._begin_stream()
            except (DeviceError, LinkLost, OSError):
                self._disconnect()
                if self.max_outage is not None and time.monotonic() - began > self.max_outage:
                    raise DeviceError(f"{self.device_id}: no device for {self.max_outage:g} s; giving up") from None
                continue
            self._restart_decoder()
            self.reconnects += 1
            return

    def _stop(self) -> None:
        try:
            self._end_stream()
        except (LinkLost, OSError):
            pass  # stopping a device that is gone: nothing to tell it

    def _close(self) -> None:
        self._disconnect()
        if self.audit is not None:
            self.audit.finish()
        if self.capture is not None:
            self.capture.close()

    def stream_alarms(self) -> list:
        """Stream anomalies raised since the last call (one per forged episode), in the order raised.

        Returns
        -------
        list of ingest.integrity.StreamAnomaly
            Onsets in s of stream time from the first sample; empty for a board without packet counters.
        """
        return self.audit.raised() if self.audit is not None else []

    @property
    def stream_anomalies(self) -> list:
        """Every stream anomaly so far (open ones with their extent so far), sorted by onset."""
        return self.audit.anomalies if self.audit is not None else []

    @property
    def samples_lost_total(self) -> int:
        """Samples lost so far, by the protocol's counters and across outages."""
        return self._assembler.samples_lost if self._assembler else 0
