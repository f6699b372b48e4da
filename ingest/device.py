"""The one interface every source implements: simulator, serial and BLE boards, file replay.

Modelled on BrainFlow's ``BoardShim`` (prepare, start, get data, stop, release): a subclass supplies
five small hooks (``_open``, ``_start``, ``_read_block``, ``_stop``, ``_close``); this base class owns
the life cycle, the context-manager protocol and the loss accounting, and checks every block a driver
emits against the stream contract in :mod:`ingest.stream`.

Typical use::

    with SomeBoard(...) as dev:          # opens; closes (and stops) on exit
        dev.start()
        for block in dev.blocks():       # ends when the source ends or dev.stop() is called
            consume(block.data)
"""

from __future__ import annotations

import abc
import threading
from typing import Iterator

from .stream import SampleBlock

_CLOSED, _OPEN, _STREAMING = "closed", "open", "streaming"


class Device(abc.ABC):
    """A source of :class:`~ingest.stream.SampleBlock` objects.

    Subclasses set ``device_id``, ``channels``, ``kinds`` and ``fs`` (Hz) by the time ``_open``
    returns and implement the hooks. ``stop()`` may be called from another thread (or a signal
    handler) to end a running ``blocks()`` loop.
    """

    device_id: str = ""
    channels: tuple = ()
    kinds: tuple = ()
    fs: float = 0.0

    def __init__(self):
        self._state = _CLOSED
        self._stop_requested = threading.Event()
        self._next_index = 0
        self.samples_received = 0
        self.samples_lost = 0

    # -- hooks ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self) -> None:
        """Acquire the transport (port, BLE connection, file) and learn the channel layout."""

    @abc.abstractmethod
    def _start(self) -> None:
        """Ask the source to stream."""

    @abc.abstractmethod
    def _read_block(self) -> SampleBlock | None:
        """Return the next block, or None when the source has ended. May block briefly."""

    @abc.abstractmethod
    def _stop(self) -> None:
        """Ask the source to stop streaming."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the transport."""

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True between ``open()`` and ``close()``."""
        return self._state != _CLOSED

    @property
    def is_streaming(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._state == _STREAMING

    def open(self) -> "Device":
        """Open the device; a no-op when it is already open. Returns the device."""
        if self._state == _CLOSED:
            self._open()
            self._state = _OPEN
        return self

    def start(self) -> None:
        """Start streaming. The device must be open."""
        if self._state == _CLOSED:
            raise RuntimeError(f"{type(self).__name__}: open() the device before start()")
        if self._state == _OPEN:
            self._stop_requested.clear()
            self._start()
            self._state = _STREAMING

    def blocks(self) -> Iterator[SampleBlock]:
        """Yield blocks until the source ends or ``stop()`` is called.

        Raises
        ------
        RuntimeError
            If the device is not streaming, or a driver breaks the stream contract.
        """
        if self._state != _STREAMING:
            raise RuntimeError(f"{type(self).__name__}: start() the device before reading blocks")
        while not self._stop_requested.is_set():
            block = self._read_block()
            if block is None:
                return
            self._account(block)
            yield block

    def stop(self) -> None:
        """Stop streaming; safe to call twice, or from another thread while ``blocks()`` runs."""
        self._stop_requested.set()
        if self._state == _STREAMING:
            self._stop()
            self._state = _OPEN

    def close(self) -> None:
        """Stop if streaming, then release the device; safe to call twice."""
        self.stop()
        if self._state == _OPEN:
            self._close()
            self._state = _CLOSED

    def __enter__(self) -> "Device":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- contract ------------------------------------------------------------------------------
    def _account(self, block: SampleBlock) -> None:
        expected = self._next_index + block.lost_before
        if block.first_index != expected:
            raise RuntimeError(
                f"{type(self).__name__} broke the stream contract: block starts at sample "
                f"{block.first_index}, expected {expected} ({block.lost_before} reported lost)"
            )
        if block.channels != tuple(self.channels):
            raise RuntimeError(f"{type(self).__name__} changed its channel layout mid-stream")
        self._next_index = block.end_index
        self.samples_received += block.n_samples
        self.samples_lost += block.lost_before
