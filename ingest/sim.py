"""The simulator driver: any signal source behind the :class:`~ingest.device.Device` interface.

The source is handed in by the caller (``dreamsync`` wires in ``firmware_sim``'s headband), so this
driver knows nothing of how the signals are made. It paces delivery (``speed`` x real time), cuts
blocks, and numbers and time-stamps them through the same :class:`~ingest.assembly.RunAssembler`
as the hardware drivers.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from .assembly import RunAssembler
from .decoder import DecodedRun
from .device import Device
from .stream import SampleBlock


class SignalSource(Protocol):
    """What the simulator driver needs of a source (``firmware_sim.SimulatedHeadband`` is one)."""

    channels: tuple
    kinds: tuple
    fs: float

    def read(self, n: int) -> np.ndarray:
        """Next ``n`` samples, shape (n_channels, m) with m <= n; m == 0 once the source has ended."""


class SimulatedDevice(Device):
    """Streams a :class:`SignalSource` as if it were a headband.

    Parameters
    ----------
    source : SignalSource
        Where samples come from.
    speed : float, optional
        Pace relative to real time: 1 is real time, 60 a minute of signal per second; 0 or ``inf``
        delivers as fast as the consumer reads. By default 1.
    block_seconds : float, optional
        Signal duration per block in seconds, by default 0.1.
    device_id : str, optional
        Identifier put in every block, by default ``"sim"``.
    """

    def __init__(self, source: SignalSource, speed: float = 1.0, block_seconds: float = 0.1, device_id: str = "sim"):
        super().__init__()
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        if not block_seconds > 0:
            raise ValueError(f"block_seconds must be positive, got {block_seconds}")
        self._source = source
        self.speed = float(speed)
        self.device_id = device_id
        self.channels = tuple(source.channels)
        self.kinds = tuple(source.kinds)
        self.fs = float(source.fs)
        self._block = max(1, int(round(block_seconds * self.fs)))
        self._assembler = RunAssembler(device_id, self.channels, self.kinds, self.fs)
        self._t0 = 0.0

    def _open(self) -> None:
        pass  # nothing to acquire: the source is in memory

    def _start(self) -> None:
        self._t0 = time.time()

    def _read_block(self) -> SampleBlock | None:
        data = self._source.read(self._block)
        if data.shape[1] == 0:
            return None
        if self.speed > 0 and np.isfinite(self.speed):
            due = self._t0 + (self._assembler.next_index + data.shape[1]) / (self.fs * self.speed)
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        return self._assembler.add(DecodedRun(data), time.time())

    def _stop(self) -> None:
        pass

    def _close(self) -> None:
        pass
