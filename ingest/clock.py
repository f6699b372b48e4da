"""Host time of samples, from sample indices regressed against host arrival times.

Arrival times jitter (USB and BLE deliver in bursts, BLE connection events delay packets by tens of
ms) and a device's crystal runs a little off its nominal rate, so the time of sample ``i`` comes
from a line ``t = a + b * i`` fitted to (index, arrival time) pairs, not from when its packet
happened to arrive:

- only the most recent observations count (a window of minutes), so the fit follows slow drift;
- arrival = true time + a latency that is never negative, so after a least-squares fit the line is
  refitted to the points with the least latency (the lower envelope); bursts of late packets then
  move neither the rate nor the offset;
- the nominal rate is only a starting point: with a wrong nominal rate the fitted one is still right.
"""

from __future__ import annotations

import numpy as np

WINDOW_SECONDS = 600.0  # observations older than this (by index at the fitted rate) are forgotten
ENVELOPE_QUANTILE = 0.2  # refit on the points whose residual is in the lowest fifth
_REFIT_EVERY = 32


class SampleClock:
    """Online robust fit of host time against sample index.

    Parameters
    ----------
    fs : float
        Nominal sample rate in Hz, used until two observations exist.
    window_seconds : float, optional
        How much recent signal the fit uses, by default 600 s.
    """

    def __init__(self, fs: float, window_seconds: float = WINDOW_SECONDS):
        if not fs > 0:
            raise ValueError(f"sample rate must be positive, got {fs}")
        self.fs = float(fs)
        self._window = float(window_seconds)
        self._x = np.empty(1024)  # sample indices (relative to the first one)
        self._y = np.empty(1024)  # arrival times (relative to the first one)
        self._n = 0
        self._origin: tuple | None = None
        self._slope = 1.0 / self.fs
        self._intercept = 0.0
        self._since_fit = 0

    def observe(self, index: int, host_time: float) -> None:
        """Record that sample ``index`` had arrived by ``host_time`` (seconds since the Unix epoch)."""
        if self._origin is None:
            self._origin = (index, host_time)
        if self._n == self._x.size:
            self._drop_old(keep_room=True)
        self._x[self._n] = index - self._origin[0]
        self._y[self._n] = host_time - self._origin[1]
        self._n += 1
        self._since_fit += 1
        # refit often while learning, then every n/16 points: constant amortised cost per point
        if self._n <= 64 or self._since_fit >= max(_REFIT_EVERY, self._n // 16):
            self._fit()

    def _drop_old(self, keep_room: bool = False) -> None:
        horizon = self._x[self._n - 1] - self._window / self._slope if self._n else 0.0
        keep = self._x[: self._n] >= horizon
        n = int(keep.sum())
        self._x[:n], self._y[:n] = self._x[: self._n][keep], self._y[: self._n][keep]
        self._n = n
        if keep_room and n > self._x.size // 2:  # the window holds more points than fit: grow
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])

    def _fit(self) -> None:
        self._since_fit = 0
        self._drop_old()
        x, y = self._x[: self._n], self._y[: self._n]
        if self._n < 2 or np.ptp(x) == 0:
            self._intercept = float(y[0] - self._slope * x[0]) if self._n else 0.0
            return
        slope, intercept = np.polyfit(x, y, 1)
        for _ in range(2 if self._n >= 20 else 0):  # refit on the lower envelope: least-delayed arrivals
            residual = y - (intercept + slope * x)
            low = residual <= np.quantile(residual, ENVELOPE_QUANTILE)
            if low.sum() < 2 or np.ptp(x[low]) == 0:
                break
            slope, intercept = np.polyfit(x[low], y[low], 1)
        if not slope > 0:  # runs that arrived together carry one host time: no rate to learn yet
            return
        self._slope, self._intercept = float(slope), float(intercept)

    @property
    def seconds_per_sample(self) -> float:
        """Fitted host seconds per sample (``1 / fs`` until the fit is defined)."""
        return self._slope

    @property
    def effective_rate(self) -> float:
        """Fitted sample rate in samples per host second."""
        return 1.0 / self._slope

    def time_of(self, index: int) -> float:
        """Host time in seconds since the Unix epoch of sample ``index``.

        Raises
        ------
        RuntimeError
            Before the first observation.
        """
        if self._origin is None:
            raise RuntimeError("SampleClock.time_of() needs at least one observation")
        return self._origin[1] + self._intercept + self._slope * (index - self._origin[0])
