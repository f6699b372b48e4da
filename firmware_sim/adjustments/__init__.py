"""Externally applied "dream adjustments" injected into sleep signals, with a ground-truth log.

Works on any (n_channels, n_samples) array of uV at any rate (>= 50 Hz) given its hypnogram: the
simulated headband's output or real EEG excerpts. One dataclass per kind holds its parameters
(physiological defaults, a strength parameter, and where/when its episodes happen); :func:`inject`
applies a list of them and returns a copy with the truth.

- :class:`Auditory`: closed-loop clicks on slow-oscillation up-states (Ngo 2013) or open-loop cue
  series, with the P200/N550/P900, slow-oscillation trains and spindles they evoke in NREM.
- :class:`Electrical`: tACS/tDCS artefact in blocks, with harmonics, ramps and cardiac/respiratory
  amplitude modulation.
- :class:`Entrainment`: a narrow steady-state response to rhythmic sensory drive.
- :class:`Tampering`: replayed, spliced and time-warped segments of the record.
- :class:`StreamForgery` (``firmware_sim.adjustments.stream``): the same at the packet level, a man in
  the middle replaying, re-sequencing or time-warping a device's packets; a ``packet_filter`` of the
  emulated transports (Cyton pseudo-terminal, BLE radio), with its own ground-truth log.

Example: closed-loop clicks and slow-oscillatory tACS on a simulated night ``data`` (4, n) uV at
256 Hz with stage codes ``hyp`` per 30-s epoch::

    new, truth = inject(data, 256.0, hyp, [Auditory(n550_uv=40), Electrical(frequency_hz=0.75)],
                        np.random.default_rng(1), labels=["EEG C4-M1", "EEG Fpz-M2", "EOG E1-M2", "EMG chin"])
"""

from .auditory import Auditory
from .electrical import Electrical
from .entrainment import Entrainment
from .injection import click_times, inject
from .placement import Placement
from .stream import StreamForgery
from .tampering import Tampering

__all__ = ["Auditory", "Electrical", "Entrainment", "Placement", "StreamForgery", "Tampering", "click_times",
           "inject"]
