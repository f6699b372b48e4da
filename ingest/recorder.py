"""Recording a stream to EDF+: samples spooled to disk as they arrive, the EDF+ written at the end.

The EDF+ cannot be appended to cheaply, so blocks go to a spool file (float32, sample-major, flushed
at least once a second) and the EDF+ is written when the recording closes: signals, with lost
samples stored as 0 under ``Gap: N samples lost`` annotations. Crash safety comes from the raw
capture a board writes beside it (``dreamsync convert`` rebuilds the EDF+ from it); the spool file of
a killed recording is kept too.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import numpy as np

from .edf import Annotation, gap_annotation, write_edf
from .stream import SampleBlock


class EdfRecorder:
    """Collects blocks of one stream and writes them as EDF+.

    Parameters
    ----------
    path : str or PathLike
        EDF+ file to write on :meth:`close`.
    channels, kinds : sequence of str
    fs : float
        Sample rate in Hz.
    start : datetime.datetime, optional
        Start of the recording (time of sample 0); now by default.
    """

    def __init__(self, path, channels, kinds, fs: float, start: dt.datetime | None = None):
        self.path = os.fspath(path)
        self.channels, self.kinds, self.fs = tuple(channels), tuple(kinds), float(fs)
        self.start = start
        self._spool_path = self.path + ".spool"
        self._spool = open(self._spool_path, "wb")
        self._next = 0
        self._gaps: list = []
        self._last_flush = time.monotonic()
        self.annotations: list = []

    @property
    def samples(self) -> int:
        """Samples per channel so far, lost ones included."""
        return self._next

    @property
    def samples_lost(self) -> int:
        """Samples marked lost so far."""
        return sum(n for _, n in self._gaps)

    def add(self, block: SampleBlock) -> None:
        """Append a block (its ``lost_before`` samples become a gap)."""
        if self.start is None:
            self.start = dt.datetime.fromtimestamp(block.host_time - block.first_index / self.fs)
        lost = block.first_index - self._next
        if lost < 0:
            raise ValueError(f"block at sample {block.first_index} overlaps what was recorded (up to {self._next})")
        if lost:
            self._gaps.append((self._next, lost))
            self._spool.write(np.zeros((lost, len(self.channels)), dtype=np.float32).tobytes())
        self._spool.write(np.ascontiguousarray(block.data.T, dtype=np.float32).tobytes())
        self._next = block.end_index
        if time.monotonic() - self._last_flush >= 1.0:
            self._spool.flush()
            self._last_flush = time.monotonic()

    def annotate(self, onset: float, duration: float, text: str) -> None:
        """Add an annotation (seconds from the start) to the EDF+."""
        self.annotations.append(Annotation(onset, duration, text))

    def close(self) -> str | None:
        """Write the EDF+ and remove the spool; returns the path, or None when nothing was recorded."""
        if self._spool.closed:
            return self.path
        self._spool.close()
        if self._next == 0:
            os.remove(self._spool_path)
            return None
        data = np.fromfile(self._spool_path, dtype=np.float32).reshape(-1, len(self.channels)).T
        annotations = list(self.annotations) + [gap_annotation(first, n, self.fs) for first, n in self._gaps]
        write_edf(self.path, data, self.fs, self.channels, self.kinds, start=self.start, annotations=annotations)
        os.remove(self._spool_path)
        return self.path
