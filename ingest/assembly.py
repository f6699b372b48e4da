"""From decoded runs to :class:`~ingest.stream.SampleBlock` objects: stream indices, gaps and host time.

Shared by live boards and capture replay, so a night decodes to the same blocks either way.
"""

from __future__ import annotations

from .clock import SampleClock
from .decoder import DecodedRun
from .stream import SampleBlock


class RunAssembler:
    """Numbers decoded runs, marks their gaps and time-stamps them.

    Parameters
    ----------
    device_id : str
    channels, kinds : tuple of str
    fs : float
        Nominal sample rate in Hz.
    """

    def __init__(self, device_id: str, channels, kinds, fs: float):
        self.device_id, self.channels, self.kinds, self.fs = device_id, tuple(channels), tuple(kinds), float(fs)
        self.clock = SampleClock(fs)
        self.next_index = 0  # stream index of the next sample
        self.samples_lost = 0

    def add(self, run: DecodedRun, host_time: float) -> SampleBlock | None:
        """The block for ``run``, which had fully arrived by ``host_time`` (s since the Unix epoch).

        A run that follows a counter restart (``run.resync``) is placed by the clock: the samples the
        clock says elapsed since the last delivered one, minus the run's own, are counted lost.
        Returns None for an empty run.
        """
        n = run.data.shape[1]
        if n == 0:
            return None
        lost = run.lost_before
        if run.resync:
            lost = self._gap_by_clock(host_time, n) if self.next_index else 0
        first = self.next_index + lost
        self.clock.observe(first + n - 1, host_time)
        self.next_index = first + n
        self.samples_lost += lost
        return SampleBlock(self.device_id, self.channels, self.kinds, self.fs, first, run.data,
                           self.clock.time_of(first), lost)

    def _gap_by_clock(self, host_time: float, n: int) -> int:
        last = self.next_index - 1
        elapsed = (host_time - self.clock.time_of(last)) / self.clock.seconds_per_sample
        return max(0, int(round(elapsed)) - n)
