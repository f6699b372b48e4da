"""Rhythmic sensory drive (clicks, tones or flicker at a fixed rate) and the steady-state response it leaves.

The response is a small, narrow-band, phase-stable sinusoid at the drive frequency (e.g. the 40-Hz
auditory steady-state response, a few uV), whose phase wanders only slightly around the drive's
and which builds up and fades over about a second at the drive's onset and offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .placement import Placement, place
from .recording import Recording
from .shapes import ramp, slow_noise

# Regional distribution of the steady-state response (auditory: fronto-central; visual: occipital).
_GAINS = {
    "auditory": {"frontal": 0.9, "central": 1.0, "posterior": 0.6, "temporal": 0.5, "eog": 0.2},
    "visual": {"frontal": 0.2, "central": 0.4, "posterior": 1.0, "temporal": 0.5, "eog": 0.1},
}


@dataclass(kw_only=True)
class Entrainment(Placement):
    """A steady-state response to rhythmic sensory stimulation.

    Parameters
    ----------
    frequency_hz : float
        Drive frequency in Hz, by default 40; e.g. 6 for theta. Must lie below ``fs / 2``.
    amplitude_uv : float
        Strength: amplitude (peak) of the response in uV at a channel of gain 1, by default 2.
    modality : {"auditory", "visual"}
        Sets the regional distribution: fronto-central (auditory) or occipital (visual).
    duration_s : float
        Length of each episode in s, by default 600.
    ramp_s : float
        Build-up and fade at the episode's ends in s, by default 1.
    phase_jitter_rad, phase_tau_s : float
        SD (rad) and correlation time (s) of the response phase's wandering around the drive, by
        default 0.2 and 2; the line keeps about ``exp(-phase_jitter_rad**2)`` of its power.
    gains : sequence of float or None
        Per-channel gains overriding the regional defaults (EMG and non-electrode channels 0).
    count, onsets, stages, settle_s
        Episode placement, see :class:`Placement`; by default one episode anywhere in the data.
    """

    frequency_hz: float = 40.0
    amplitude_uv: float = 2.0
    modality: str = "auditory"
    duration_s: float = 600.0
    ramp_s: float = 1.0
    phase_jitter_rad: float = 0.2
    phase_tau_s: float = 2.0
    gains: tuple | None = None

    def __post_init__(self):
        if self.modality not in _GAINS:
            raise ValueError(f"entrainment modality must be one of {sorted(_GAINS)}, got {self.modality!r}")


def apply(data: np.ndarray, rec: Recording, adj: Entrainment, rng: np.random.Generator) -> list:
    """Add steady-state responses to ``data`` (n_channels, n_samples, uV) in place; return one truth
    record per episode."""
    fs = rec.fs
    if not 0 < adj.frequency_hz < fs / 2:
        raise ValueError(f"entrainment: {adj.frequency_hz} Hz is not between 0 and the Nyquist frequency {fs / 2} Hz")
    gains = rec.gains(_GAINS[adj.modality], adj.gains)
    rows = np.flatnonzero(gains)
    records = []
    for onset in place(adj, adj.duration_s, rec, rng, kind="entrainment"):
        i0 = rec.index(onset)
        i1 = min(i0 + int(round(adj.duration_s * fs)), rec.n_samples)
        t = np.arange(i1 - i0) / fs
        phase = rng.uniform(0.0, 2 * np.pi) + slow_noise(rng, t.size, fs, adj.phase_tau_s, adj.phase_jitter_rad)
        envelope = adj.amplitude_uv * ramp(t.size, round(adj.ramp_s * fs))
        wave = envelope * np.sin(2 * np.pi * adj.frequency_hz * t + phase)
        data[rows, i0:i1] += gains[rows, None] * wave
        records.append({
            "kind": "entrainment", "onset": float(onset), "duration": float((i1 - i0) / fs),
            "params": {
                "frequency_hz": float(adj.frequency_hz), "amplitude_uv": float(adj.amplitude_uv),
                "modality": adj.modality, "ramp_s": float(adj.ramp_s), "phase_jitter_rad": float(adj.phase_jitter_rad),
                "gains": {lab: float(g) for lab, g in zip(rec.labels, gains)},
            },
        })
    return records
