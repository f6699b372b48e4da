"""The signals at a board's electrodes, as every emulated firmware reads them."""

from __future__ import annotations

import numpy as np


class SampleSource:
    """Uniform ``read(n) -> (n_rows, m)`` over a reader object, a callable or a finite array.

    Parameters
    ----------
    source : object with ``read(n)``, callable ``f(n)`` or array_like of shape (n_rows, n_samples)
        ``read(n)`` returns (n_rows, m <= n) float, uV for ExG rows and g for ACC rows (m < n once the
        source has ended). An array is read from its start.
    fs : float
        The board's sample rate in Hz; a source with an ``fs`` attribute must match it.
    board : str
        Name of the board, for error messages.
    kinds : sequence of str, optional
        Kind of each row; ``source.kinds`` if present, else all ``"EEG"``.

    Attributes
    ----------
    kinds : tuple of str
    exg_rows, acc_rows : ndarray of int
        Rows that feed the electrode channels (all non-ACC rows, in order) and the accelerometer
        (at most 3: x, y, z).
    position : int
        Samples read so far.
    """

    def __init__(self, source, fs: float, board: str, kinds=None):
        self._array = None
        if hasattr(source, "read"):
            self._read = source.read
        elif callable(source):
            self._read = source
        else:
            self._array = np.asarray(source, dtype=np.float64)
            if self._array.ndim != 2:
                raise ValueError(f"an array source must be 2-D (rows, samples), got shape {self._array.shape}")
            self._read = self._read_array
        self.position = 0
        self._idle_due = 0.0  # fractional samples owed by skip()
        source_fs = getattr(source, "fs", None)
        if source_fs is not None and abs(float(source_fs) - fs) > 1e-9:
            raise ValueError(f"the {board} samples at {fs:g} Hz; build the source at that rate, not {float(source_fs):g} Hz")
        if kinds is None:
            kinds = getattr(source, "kinds", None)
        if kinds is None:
            kinds = ("EEG",) * self.read(0).shape[0]
        self.kinds = tuple(kinds)
        self.exg_rows = np.array([i for i, k in enumerate(self.kinds) if k != "ACC"], dtype=np.intp)
        self.acc_rows = np.array([i for i, k in enumerate(self.kinds) if k == "ACC"], dtype=np.intp)
        if len(self.acc_rows) > 3:
            raise ValueError(f"at most 3 ACC rows (x, y, z), got {len(self.acc_rows)}")

    def _read_array(self, n: int) -> np.ndarray:
        return self._array[:, self.position : self.position + n]

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (fewer at the end), float64, shape (n_rows, m)."""
        data = np.asarray(self._read(n), dtype=np.float64)
        if data.ndim != 2 or data.shape[1] > n:
            raise ValueError(f"source.read({n}) must return (n_rows, m <= {n}), got shape {data.shape}")
        self.position += data.shape[1]
        return data

    def skip(self, seconds: float, fs: float) -> None:
        """Let a free-running source run on unread for ``seconds`` at ``fs`` Hz (the board is idle)."""
        self._idle_due += seconds * fs
        n = int(self._idle_due)
        self._idle_due -= n
        if n:
            self.read(n)
