"""The stream contract: one block of samples as every source delivers it.

A block holds *contiguous* samples only. Samples lost before a block are never filled in; they are
counted in ``lost_before`` and skipped in ``first_index``, so that for consecutive blocks ``a, b``::

    b.first_index == a.first_index + a.n_samples + b.lost_before

Sample indices count from the first sample the device produced in this stream (lost samples included),
so ``index / fs`` is the nominal time since the stream began.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Channel kinds a block can carry, and the physical unit of each.
CHANNEL_UNITS = {
    "EEG": "uV",
    "EOG": "uV",
    "EMG": "uV",
    "ECG": "uV",
    "ACC": "g",
    "MISC": "uV",
}
CHANNEL_KINDS = tuple(CHANNEL_UNITS)


@dataclass(frozen=True, eq=False)  # blocks hold arrays: compare them by identity
class SampleBlock:
    """A block of contiguous samples from one device.

    Parameters
    ----------
    device_id : str
        Stable identifier of the source (e.g. ``"sim:42"``, a serial port, a BLE address).
    channels : tuple of str
        Channel labels, one per row of ``data`` (e.g. ``"EEG C4-M1"``).
    kinds : tuple of str
        Channel kinds, one of :data:`CHANNEL_KINDS` per channel.
    fs : float
        Nominal sample rate in Hz.
    first_index : int
        Stream index of the first sample in this block (lost samples are counted in the index).
    data : numpy.ndarray, shape (n_channels, n_samples)
        Samples as float32 or float64; microvolts for EEG/EOG/EMG/ECG, g for ACC
        (see :data:`CHANNEL_UNITS`).
    host_time : float
        Host time of the first sample in seconds since the Unix epoch, derived from the sample index
        regressed against host arrival times (see :mod:`ingest.clock`), not the raw arrival time.
    lost_before : int, optional
        Samples lost between the previous block and this one (0 when none), by default 0.
    """

    device_id: str
    channels: tuple
    kinds: tuple
    fs: float
    first_index: int
    data: np.ndarray
    host_time: float
    lost_before: int = 0
    units: tuple = field(init=False, repr=False)

    def __post_init__(self):
        channels, kinds = tuple(self.channels), tuple(self.kinds)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "kinds", kinds)
        data = self.data
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            raise ValueError("SampleBlock.data must be a 2-D array (channels x samples)")
        if data.dtype not in (np.float32, np.float64):
            raise ValueError(f"SampleBlock.data must be float32 or float64, not {data.dtype}")
        if data.shape[0] != len(channels) or len(kinds) != len(channels):
            raise ValueError(
                f"SampleBlock has {data.shape[0]} data rows, {len(channels)} labels and {len(kinds)} kinds"
            )
        unknown = sorted(set(kinds) - set(CHANNEL_KINDS))
        if unknown:
            raise ValueError(f"unknown channel kind(s) {unknown}; expected one of {CHANNEL_KINDS}")
        if not self.fs > 0:
            raise ValueError(f"sample rate must be positive, got {self.fs}")
        if self.first_index < 0 or self.lost_before < 0:
            raise ValueError("first_index and lost_before must be >= 0")
        object.__setattr__(self, "units", tuple(CHANNEL_UNITS[k] for k in kinds))

    @property
    def n_samples(self) -> int:
        """Number of samples per channel in this block."""
        return self.data.shape[1]

    @property
    def end_index(self) -> int:
        """Stream index one past the last sample of this block."""
        return self.first_index + self.n_samples

    def times(self) -> np.ndarray:
        """Host time of every sample in seconds since the Unix epoch, shape (n_samples,)."""
        return self.host_time + np.arange(self.n_samples) / self.fs
