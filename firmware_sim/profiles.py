"""Device profiles: what a simulated headband looks like to a driver (montage, kinds, rate, amplitudes).

Amplitude figures are relative to a central PSG lead referred to the contralateral mastoid (gain 1).
Short inter-electrode distances and dry electrodes record less brain signal and more noise: the Muse's
frontal AF7/AF8 against Fpz see roughly half the amplitude of a PSG lead, its temporal TP9/TP10 more
(longer dipole) but with more muscle and mains pick-up (Krigolson 2017; the YASA users' x1.4 gain
workaround for Muse S). Sensor noise is the electrode/amplifier floor in uV RMS.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceProfile:
    """Montage, rate and recording quality of a (simulated) headband.

    Parameters
    ----------
    name : str
        Profile name used on the command line (``--device``).
    channels : tuple of str
        Channel labels, e.g. ``"EEG C4-M1"``; accelerometer axes last.
    kinds : tuple of str
        Kind of each channel: ``"EEG"``, ``"EOG"``, ``"EMG"`` or ``"ACC"``.
    fs : float
        Sample rate in Hz of every channel as the device delivers them.
    description : str
        One line for ``--help`` and listings.
    gains : tuple of float, optional
        Brain-signal amplitude of each channel relative to a central PSG lead (1.0 when omitted).
    sensor_noise_uv : float, optional
        Electrode and amplifier noise floor in uV RMS, by default 0.5 (wet gel).
    mains_uv : float, optional
        Amplitude in uV of the mains line picked up, by default 2.
    samples_per_packet : float, optional
        Samples of every channel one wire packet carries (Cyton 1, Daisy 0.5: a 16-channel sample
        spans two packets, Ganglion 2, Muse 12): a lost packet loses this much. By default 1.
    """

    name: str
    channels: tuple
    kinds: tuple
    fs: float
    description: str
    gains: tuple = field(default=())
    sensor_noise_uv: float = 0.5
    mains_uv: float = 2.0
    samples_per_packet: float = 1.0

    def __post_init__(self):
        if len(self.channels) != len(self.kinds):
            raise ValueError(f"profile {self.name}: {len(self.channels)} labels but {len(self.kinds)} kinds")
        if not self.gains:
            object.__setattr__(self, "gains", (1.0,) * len(self.channels))
        if len(self.gains) != len(self.channels):
            raise ValueError(f"profile {self.name}: {len(self.gains)} gains for {len(self.channels)} channels")


_ACC = (("ACC X", "ACC"), ("ACC Y", "ACC"), ("ACC Z", "ACC"))


def _profile(name, fs, description, montage, **kwargs) -> DeviceProfile:
    labels, kinds = zip(*montage)
    return DeviceProfile(name, tuple(labels), tuple(kinds), fs, description, **kwargs)


PROFILES = {
    p.name: p
    for p in (
        _profile("sim", 256.0, "generic sleep headband: central and frontal EEG, EOG, chin EMG",
                 (("EEG C4-M1", "EEG"), ("EEG Fpz-M2", "EEG"), ("EOG E1-M2", "EOG"), ("EMG chin", "EMG"))),
        _profile("cyton", 250.0, "OpenBCI Cyton, 8 channels (gel cup electrodes, mastoid reference on SRB2)",
                 (("EEG F3-M2", "EEG"), ("EEG F4-M1", "EEG"), ("EEG C3-M2", "EEG"), ("EEG C4-M1", "EEG"),
                  ("EEG O1-M2", "EEG"), ("EEG O2-M1", "EEG"), ("EOG E1-M2", "EOG"), ("EMG chin", "EMG")) + _ACC,
                 sensor_noise_uv=1.0, mains_uv=4.0, samples_per_packet=1.0),
        _profile("cyton-daisy", 125.0, "OpenBCI Cyton + Daisy, 16 channels at 125 Hz per 16-channel sample",
                 (("EEG Fp1-M2", "EEG"), ("EEG Fp2-M1", "EEG"), ("EEG F3-M2", "EEG"), ("EEG F4-M1", "EEG"),
                  ("EEG F7-M2", "EEG"), ("EEG F8-M1", "EEG"), ("EEG C3-M2", "EEG"), ("EEG C4-M1", "EEG"),
                  ("EEG Cz-M1", "EEG"), ("EEG P3-M2", "EEG"), ("EEG P4-M1", "EEG"), ("EEG O1-M2", "EEG"),
                  ("EEG O2-M1", "EEG"), ("EOG E1-M2", "EOG"), ("EOG E2-M1", "EOG"), ("EMG chin", "EMG")) + _ACC,
                 sensor_noise_uv=1.0, mains_uv=4.0, samples_per_packet=0.5),
        _profile("ganglion", 200.0, "OpenBCI Ganglion, 4 channels: central EEG pair, EOG, chin EMG",
                 (("EEG C3-M2", "EEG"), ("EEG C4-M1", "EEG"), ("EOG E1-M2", "EOG"), ("EMG chin", "EMG")) + _ACC,
                 sensor_noise_uv=1.5, mains_uv=5.0, samples_per_packet=2.0),
        _profile("muse-2", 256.0, "Muse 2: dry electrodes TP9, AF7, AF8, TP10 referred to Fpz",
                 (("EEG TP9", "EEG"), ("EEG AF7", "EEG"), ("EEG AF8", "EEG"), ("EEG TP10", "EEG")) + _ACC,
                 gains=(0.75, 0.5, 0.5, 0.75, 1.0, 1.0, 1.0), sensor_noise_uv=3.0, mains_uv=10.0,
                 samples_per_packet=12.0),
        _profile("muse-s", 256.0, "Muse S: fabric electrodes TP9, AF7, AF8, TP10 referred to Fpz",
                 (("EEG TP9", "EEG"), ("EEG AF7", "EEG"), ("EEG AF8", "EEG"), ("EEG TP10", "EEG")) + _ACC,
                 gains=(0.7, 0.45, 0.45, 0.7, 1.0, 1.0, 1.0), sensor_noise_uv=2.5, mains_uv=8.0,
                 samples_per_packet=12.0),
        _profile("dreamsync", 250.0, "DreamSync band: forehead Fp1/Fp2 to the mastoids, EOG, chin EMG; "
                 "audio, light and current actuators",
                 (("EEG Fp1-M2", "EEG"), ("EEG Fp2-M1", "EEG"), ("EOG E1-M2", "EOG"), ("EOG E2-M1", "EOG"),
                  ("EMG chin", "EMG")) + _ACC,
                 sensor_noise_uv=1.0, mains_uv=3.0, samples_per_packet=10.0),
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
