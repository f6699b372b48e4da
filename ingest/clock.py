"""Host time of samples, from sample indices regressed against host arrival times.

Arrival times jitter (USB and BLE deliver in bursts) and a device's crystal runs a little off its
nominal rate, so the time of sample ``i`` is taken from the least-squares line ``t = a + b * i``
fitted to (index, arrival time) pairs, not from when its packet happened to arrive.
"""

from __future__ import annotations


class SampleClock:
    """Online least-squares fit of host time against sample index.

    Parameters
    ----------
    fs : float
        Nominal sample rate in Hz, used until two observations exist.
    """

    def __init__(self, fs: float):
        if not fs > 0:
            raise ValueError(f"sample rate must be positive, got {fs}")
        self.fs = float(fs)
        self._origin = None  # (index, time) of the first observation; sums are kept relative to it
        self._n = 0
        self._sx = self._sy = self._sxx = self._sxy = 0.0

    def observe(self, index: int, host_time: float) -> None:
        """Record that sample ``index`` had arrived by ``host_time`` (seconds since the Unix epoch)."""
        if self._origin is None:
            self._origin = (index, host_time)
        x = float(index - self._origin[0])
        y = host_time - self._origin[1]
        self._n += 1
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._sxy += x * y

    @property
    def seconds_per_sample(self) -> float:
        """Fitted host seconds per sample (``1 / fs`` until the fit is defined)."""
        n = self._n
        denom = n * self._sxx - self._sx * self._sx
        if n < 2 or denom <= 0:
            return 1.0 / self.fs
        return (n * self._sxy - self._sx * self._sy) / denom

    @property
    def effective_rate(self) -> float:
        """Fitted sample rate in samples per host second."""
        return 1.0 / self.seconds_per_sample

    def time_of(self, index: int) -> float:
        """Host time in seconds since the Unix epoch of sample ``index``.

        Raises
        ------
        RuntimeError
            Before the first observation.
        """
        if self._origin is None:
            raise RuntimeError("SampleClock.time_of() needs at least one observation")
        slope = self.seconds_per_sample
        if self._n < 2:
            intercept = 0.0
        else:
            intercept = (self._sy - slope * self._sx) / self._n
        return self._origin[1] + intercept + slope * (index - self._origin[0])
