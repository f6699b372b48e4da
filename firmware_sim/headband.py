"""A simulated headband: a profile, a night's hypnogram and a signal model, read like a device."""

from __future__ import annotations

import numpy as np

from .hypnogram import EPOCH_SECONDS, generate_hypnogram
from .profiles import DeviceProfile, get_profile
from .signals import SleepSignalModel


class SimulatedHeadband:
    """Produces a night of samples on request and remembers the ground truth.

    Parameters
    ----------
    profile : str or DeviceProfile, optional
        Device profile (montage, kinds, default rate), by default ``"sim"``.
    hours : float, optional
        Length of the night when no hypnogram is given, by default 8.
    seed : int or None, optional
        Seeds the hypnogram, the simulated person and the noise, by default 0.
    hypnogram : array of int, optional
        Stage codes (0 W .. 4 REM) per 30-s epoch; generated from ``hours`` and ``seed`` if omitted.
    fs : float, optional
        Sample rate in Hz; the profile's rate if omitted.
    mains_hz : float, optional
        Mains frequency in Hz (50 in Europe, 60 in the Americas), by default 50.

    Attributes
    ----------
    hypnogram : numpy.ndarray of int8, shape (n_epochs,)
        The true stage of every epoch.
    events : list of firmware_sim.signals.Event
        Ground truth of every event produced so far (spindles, K-complexes, slow waves, eye
        movements, artefacts, ...): kind, onset and duration in seconds from the start, channel.
    """

    def __init__(self, profile="sim", hours: float = 8.0, seed: int | None = 0, hypnogram=None, fs=None,
                 mains_hz: float = 50.0):
        self.profile: DeviceProfile = get_profile(profile) if isinstance(profile, str) else profile
        self.channels = self.profile.channels
        self.kinds = self.profile.kinds
        self.fs = float(fs if fs is not None else self.profile.fs)
        self.seed = seed
        self.hypnogram = (
            generate_hypnogram(hours, seed) if hypnogram is None else np.asarray(hypnogram, dtype=np.int8)
        )
        self.n_samples = self._epoch_start(len(self.hypnogram))
        self.events: list = []
        self._model = SleepSignalModel(self.channels, self.kinds, self.fs, seed, gains=self.profile.gains,
                                       sensor_noise_uv=self.profile.sensor_noise_uv,
                                       mains_uv=self.profile.mains_uv, mains_hz=mains_hz)
        self._next_epoch = 0
        self._pending = np.zeros((len(self.channels), 0), dtype=np.float32)
        self._position = 0

    def _epoch_start(self, k: int) -> int:
        # epochs start at rounded multiples of 30 s, so rates like 333.3 Hz stay exact over a night
        return int(round(k * EPOCH_SECONDS * self.fs))

    @property
    def position(self) -> int:
        """Index of the next sample :meth:`read` returns."""
        return self._position

    def read(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples, fewer at the end of the night, none after it.

        Parameters
        ----------
        n : int
            Number of samples wanted (>= 0).

        Returns
        -------
        numpy.ndarray of float32, shape (n_channels, m), m <= n
            uV for EEG/EOG/EMG, g for ACC.
        """
        out = np.empty((len(self.channels), max(0, min(n, self.n_samples - self._position))), dtype=np.float32)
        have = 0
        while have < out.shape[1]:
            if self._pending.shape[1] == 0 and not self._generate_epoch():
                break
            take = min(out.shape[1] - have, self._pending.shape[1])
            out[:, have : have + take] = self._pending[:, :take]
            self._pending = self._pending[:, take:]
            have += take
        self._position += have
        return out[:, :have]

    def read_all(self) -> np.ndarray:
        """Return the rest of the night, shape (n_channels, n_samples - position)."""
        return self.read(self.n_samples - self._position)

    def _generate_epoch(self) -> bool:
        k = self._next_epoch
        if k >= len(self.hypnogram):
            return False
        start = self._epoch_start(k)
        data, events = self._model.epoch(int(self.hypnogram[k]), self._epoch_start(k + 1) - start)
        self.events.extend(e._replace(onset=start / self.fs + e.onset) for e in events)
        self._pending = data
        self._next_epoch += 1
        return True
