"""Device profiles: what a simulated headband looks like to a driver (montage, kinds, rate)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceProfile:
    """Montage and rate of a (simulated) headband.

    Parameters
    ----------
    name : str
        Profile name used on the command line (``--device``/``--profile``).
    channels : tuple of str
        Channel labels, e.g. ``"EEG C4-M1"``.
    kinds : tuple of str
        Kind of each channel: ``"EEG"``, ``"EOG"``, ``"EMG"`` or ``"ACC"``.
    fs : float
        Default sample rate in Hz.
    description : str
        One line for ``--help`` and listings.
    """

    name: str
    channels: tuple
    kinds: tuple
    fs: float
    description: str

    def __post_init__(self):
        if len(self.channels) != len(self.kinds):
            raise ValueError(f"profile {self.name}: {len(self.channels)} labels but {len(self.kinds)} kinds")


PROFILES = {
    p.name: p
    for p in (
        DeviceProfile(
            name="sim",
            channels=("EEG C4-M1", "EEG Fpz-M2", "EOG E1-M2", "EMG chin"),
            kinds=("EEG", "EEG", "EOG", "EMG"),
            fs=256.0,
            description="generic sleep headband: central and frontal EEG, EOG, chin EMG",
        ),
    )
}


def get_profile(name: str) -> DeviceProfile:
    """Return the profile called ``name``.

    Raises
    ------
    KeyError
        With the list of known profiles, when ``name`` is unknown.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown device profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
