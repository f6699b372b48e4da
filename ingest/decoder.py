"""Decoders: a device's bytes in, runs of samples out, with the losses they can see.

A decoder is pure with respect to I/O: the board driver (or a capture replay) feeds it the bytes the
device sent and the commands the host wrote, in order; it keeps only the state the protocol needs
(partial packets, last sample number, gains, delta-compression state) and turns complete packets
into samples in uV with vectorised numpy/numba code. It never interpolates: where its packet
counters show missing packets it reports them, and a run never spans a gap.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodedRun:
    """Contiguous samples decoded from one or more packets.

    Attributes
    ----------
    data : ndarray, shape (n_channels, n_samples)
        Samples: uV for electrode channels, g for accelerometer channels.
    lost_before : int
        Samples missing between the previous run and this one, as counted from the protocol's
        sample or sequence numbers (0 when none).
    resync : bool
        True when the device's counter restarted (a new stream after a reconnect or a restart), so the
        gap before this run cannot be counted by the protocol; the board estimates it from the clock.
    """

    data: np.ndarray
    lost_before: int = 0
    resync: bool = False


class Decoder(abc.ABC):
    """Turns a device's byte stream into :class:`DecodedRun` objects.

    Attributes
    ----------
    channels, kinds : tuple of str
        Labels and kinds of the rows of every run.
    fs : float
        Nominal sample rate in Hz.
    stats : dict
        Counters, at least ``"packets"`` (decoded), ``"bytes_skipped"`` (garbage passed over while
        resynchronising) and ``"samples_lost"`` (counted from the protocol).
    packet_rate : float
        Numbered packets per second per source on the device's nominal clock (0: not numbered).
    counter_modulus : int
        Where the protocol's packet counter wraps (0: no counter).
    counter_behind : int
        How far back a counter still reads as a late packet rather than a forward jump.
    on_packets : callable or None
        Hook for stream audits (:mod:`ingest.integrity`): called as ``on_packets(source, counters,
        content)`` with every numbered data packet framed from a chunk, in arrival order and before
        duplicates, late or out-of-line packets are dropped (each packet once, when it is decided):
        ``counters`` int64 (n,), ``content`` uint8 (n, n_bytes), the packet's bytes after its counter.
    """

    channels: tuple = ()
    kinds: tuple = ()
    fs: float = 0.0
    packet_rate: float = 0.0
    counter_modulus: int = 0
    counter_behind: int = 0

    def __init__(self):
        self.stats = {"packets": 0, "bytes_skipped": 0, "samples_lost": 0}
        self.on_packets = None

    @abc.abstractmethod
    def feed(self, payload: bytes, source: int = 0) -> list:
        """Decode a chunk the device sent (``source``: which stream/characteristic); returns runs."""

    def on_command(self, payload: bytes) -> None:
        """Take note of bytes the host wrote to the device (e.g. a gain change). By default ignored."""

    def restart(self) -> None:
        """The device starts a new stream (after ``b``/``d`` or a reconnect): the next run has resync=True."""
