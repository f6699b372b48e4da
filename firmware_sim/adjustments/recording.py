"""What an adjustment needs to know about the signal it is applied to: rate, stages and montage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..signals import region_of

#: Channel regions, as used by the per-kind gain tables: scalp regions of EEG leads, then the other kinds.
REGIONS = ("frontal", "central", "posterior", "temporal", "eog", "emg", "ecg", "other")


def infer_kind(label: str) -> str:
    """Channel kind from a label: ``"EOG E1-M2"`` and ``"EOG1-A1"`` are EOG, ``"EMG chin"`` EMG,
    ``"ECG"``/``"EKG"`` ECG, anything else (``"C3-A1"``) EEG."""
    name = label.strip().upper()
    for kind in ("EOG", "EMG", "ECG", "EKG", "ACC"):
        if name.startswith(kind):
            return "ECG" if kind == "EKG" else kind
    return "EEG"


def channel_region(label: str, kind: str) -> str:
    """Region of a channel, one of :data:`REGIONS` (scalp site for EEG, the kind otherwise)."""
    kind = kind.upper()
    if kind in ("EEG", "EOG"):
        return region_of(label, kind)
    if kind == "EMG":
        return "emg"
    if kind in ("ECG", "EKG"):
        return "ecg"
    return "other"


@dataclass(frozen=True)
class Recording:
    """The signal's context: sample rate, length, stages and the region of every channel.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    n_samples : int
        Samples per channel.
    hypnogram : numpy.ndarray of int, shape (n_epochs,)
        Stage code per epoch (0 W, 1 N1, 2 N2, 3 N3, 4 REM; anything else is "unknown").
    epoch_s : float
        Epoch length in s (30 for AASM, 5 or 20 for some R&K scorings).
    labels, kinds, regions : tuple of str, one per channel
    """

    fs: float
    n_samples: int
    hypnogram: np.ndarray
    epoch_s: float
    labels: tuple
    kinds: tuple
    regions: tuple

    @classmethod
    def describe(cls, data: np.ndarray, fs: float, hypnogram, labels=None, kinds=None,
                 epoch_s: float = 30.0) -> "Recording":
        """Build the context of a (n_channels, n_samples) array; labels default to ``"EEG 1"``, ...,
        kinds are inferred from the labels when not given."""
        n_channels, n_samples = data.shape
        labels = tuple(f"EEG {i + 1}" for i in range(n_channels)) if labels is None else tuple(labels)
        kinds = tuple(infer_kind(lab) for lab in labels) if kinds is None else tuple(k.upper() for k in kinds)
        if not len(labels) == len(kinds) == n_channels:
            raise ValueError(f"{n_channels} channels but {len(labels)} labels and {len(kinds)} kinds")
        if not fs > 0 or not epoch_s > 0:
            raise ValueError(f"sample rate and epoch length must be positive, got {fs} Hz and {epoch_s} s")
        regions = tuple(channel_region(lab, kind) for lab, kind in zip(labels, kinds))
        hyp = np.asarray(hypnogram, dtype=np.int64).ravel()
        return cls(float(fs), int(n_samples), hyp, float(epoch_s), labels, kinds, regions)

    @property
    def duration_s(self) -> float:
        """Length of the data in s."""
        return self.n_samples / self.fs

    def stage_at(self, t) -> np.ndarray:
        """Stage code at times ``t`` (s, array-like); -1 outside the hypnogram."""
        epoch = np.floor(np.asarray(t, dtype=np.float64) / self.epoch_s).astype(np.int64)
        padded = np.append(self.hypnogram, -1)  # index -1 (and every epoch past the end) reads "unknown"
        return padded[np.where((epoch >= 0) & (epoch < self.hypnogram.size), epoch, -1)]

    def epoch_allowed(self, stages) -> np.ndarray:
        """Boolean per epoch: the stage is one of ``stages`` (None allows every scored epoch)."""
        if stages is None:
            return np.ones(self.hypnogram.size, dtype=bool)
        return np.isin(self.hypnogram, np.asarray(tuple(stages), dtype=np.int64))

    def snap(self, t: float) -> float:
        """``t`` (s) moved to the nearest sample time."""
        return round(t * self.fs) / self.fs

    def index(self, t: float) -> int:
        """Index of the sample nearest to time ``t`` (s)."""
        return int(round(t * self.fs))

    def gains(self, table: dict, override=None) -> np.ndarray:
        """Per-channel gains, shape (n_channels,): ``override`` if given, else ``table[region]`` (0 if absent)."""
        if override is not None:
            gains = np.asarray(override, dtype=np.float64).ravel()
            if gains.size != len(self.labels):
                raise ValueError(f"{gains.size} gains for {len(self.labels)} channels")
            return gains
        return np.array([table.get(region, 0.0) for region in self.regions])

    def channel(self, which, preference=("frontal", "central", "posterior", "temporal")) -> int:
        """Index of a channel given by index or label; None picks the first EEG lead of the first
        region in ``preference`` that is present, else channel 0."""
        if which is None:
            for region in preference:
                for i, (kind, reg) in enumerate(zip(self.kinds, self.regions)):
                    if kind == "EEG" and reg == region:
                        return i
            return 0
        if isinstance(which, str):
            if which not in self.labels:
                raise ValueError(f"no channel {which!r}; channels: {', '.join(self.labels)}")
            return self.labels.index(which)
        if not -len(self.labels) <= int(which) < len(self.labels):
            raise ValueError(f"channel index {which} out of range for {len(self.labels)} channels")
        return int(which) % len(self.labels)
