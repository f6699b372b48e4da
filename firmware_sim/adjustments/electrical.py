"""Transcranial electrical stimulation (tACS, oscillating or plain tDCS) as it appears in the EEG.

The current shows as a large artefact at the stimulation frequency and its harmonics (amplifier
non-linearity), with the current ramped in and out over seconds at each block's ends. Because the
artefact is current times impedance, heartbeat and respiration modulate its amplitude (Noury 2016),
which puts sidebands at f +/- the heart rate and f +/- the breathing rate. A DC component models
tDCS or the anodal offset of slow-oscillatory tDCS (Marshall 2006: 0.75 Hz, 5-min blocks separated
by 1-min pauses, starting after 4 min of stable sleep). Every electrode channel sees the artefact with
a spatial gain (largest near a frontal montage's electrodes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .placement import Placement, place
from .recording import Recording
from .shapes import ramp, slow_noise

# How strongly each channel region picks up a frontal stimulation montage (F3/F4 to the mastoids).
_GAINS = {"frontal": 1.0, "central": 0.7, "posterior": 0.4, "temporal": 0.6, "eog": 0.8, "emg": 0.2, "ecg": 0.1}
_HEART_TAU_S = 10.0  # correlation time of heart-rate wandering


@dataclass(kw_only=True)
class Electrical(Placement):
    """Transcranial alternating or direct current stimulation, in blocks.

    An episode is a session of ``n_blocks`` blocks of ``block_s`` separated by ``pause_s``.

    Parameters
    ----------
    frequency_hz : float
        Stimulation frequency in Hz, by default 0.75 (slow-oscillatory); e.g. 12 (spindle) or 40
        (gamma). Must lie below the Nyquist frequency ``fs / 2``.
    amplitude_uv : float
        Strength: amplitude (peak) of the fundamental in uV at a channel of gain 1, by default 50;
        from a few uV (well-rejected set-ups) to thousands (raw artefacts). 0 gives plain tDCS.
    harmonics : sequence of float
        Amplitudes of the 2nd, 3rd, ... harmonics relative to the fundamental, by default
        (0.1, 0.03). Harmonics at or above ``fs / 2`` are left out (the amplifier's anti-alias
        filter removes them); the truth log lists those kept.
    dc_uv : float
        DC shift in uV during stimulation (tDCS; set equal to ``amplitude_uv`` for Marshall's
        anodal slow-oscillatory tDCS, which never reverses), by default 0.
    ramp_s : float
        Raised-cosine ramp in and out at each block's ends in s (inside the block), by default 5.
    block_s, pause_s : float
        Length of each stimulation block and of the pauses between blocks in s, by default 300 and 60.
    n_blocks : int
        Blocks per session, by default 5 (1 for continuous stimulation).
    heartbeat_hz, heartbeat_depth, heart_rate_variability : float
        Heart rate in Hz (1.0), relative depth of its amplitude modulation (0.05) and relative SD of
        the heart rate's slow wandering (0.03).
    respiration_hz, respiration_depth : float
        Breathing rate in Hz (0.25) and relative depth of its amplitude modulation (0.05).
    gains : sequence of float or None
        Per-channel gains overriding the regional defaults (frontal 1, central 0.7, posterior 0.4,
        temporal/mastoid 0.6, EOG 0.8, EMG 0.2, ECG 0.1, other kinds 0).
    count, onsets, stages, settle_s
        Session placement, see :class:`Placement`; by default one session starting after 240 s of
        continuous N2/N3.
    """

    frequency_hz: float = 0.75
    amplitude_uv: float = 50.0
    harmonics: tuple = (0.1, 0.03)
    dc_uv: float = 0.0
    ramp_s: float = 5.0
    block_s: float = 300.0
    pause_s: float = 60.0
    n_blocks: int = 5
    heartbeat_hz: float = 1.0
    heartbeat_depth: float = 0.05
    heart_rate_variability: float = 0.03
    respiration_hz: float = 0.25
    respiration_depth: float = 0.05
    gains: tuple | None = None
    stages: tuple | None = (2, 3)
    settle_s: float = 240.0

    @property
    def session_s(self) -> float:
        """Length of one session (all blocks and the pauses between them) in s."""
        return self.n_blocks * self.block_s + max(self.n_blocks - 1, 0) * self.pause_s


def apply(data: np.ndarray, rec: Recording, adj: Electrical, rng: np.random.Generator) -> list:
    """Add the stimulation artefact to ``data`` (n_channels, n_samples, uV) in place; return one
    truth record per session, its blocks in ``params["blocks"]`` as ``[onset, offset]`` pairs (s)."""
    fs = rec.fs
    if not 0 < adj.frequency_hz < fs / 2:
        raise ValueError(f"electrical: {adj.frequency_hz} Hz is not between 0 and the Nyquist frequency {fs / 2} Hz")
    if adj.n_blocks < 1 or adj.block_s <= 0:
        raise ValueError("electrical: need at least one block of positive length")
    orders = [k for k in range(2, len(adj.harmonics) + 2) if k * adj.frequency_hz < fs / 2]
    gains = rec.gains(_GAINS, adj.gains)
    rows = np.flatnonzero(gains)
    records = []
    for onset in place(adj, adj.session_s, rec, rng, kind="electrical"):
        phase = rng.uniform(0.0, 2 * np.pi)
        heart_phase, breath_phase = rng.uniform(0.0, 2 * np.pi, 2)
        blocks = []
        for b in range(adj.n_blocks):
            start = onset + b * (adj.block_s + adj.pause_s)
            i0 = rec.index(start)
            i1 = min(i0 + int(round(adj.block_s * fs)), rec.n_samples)
            t = np.arange(i0, i1) / fs - onset  # time in the session: the carrier runs on through the pauses
            carrier = np.sin(2 * np.pi * adj.frequency_hz * t + phase)
            for k in orders:
                carrier += adj.harmonics[k - 2] * np.sin(k * (2 * np.pi * adj.frequency_hz * t + phase))
            rate = adj.heartbeat_hz * (1.0 + slow_noise(rng, t.size, fs, _HEART_TAU_S, adj.heart_rate_variability))
            heart = heart_phase + 2 * np.pi * np.cumsum(rate) / fs
            modulation = (1.0 + adj.heartbeat_depth * np.sin(heart)
                          + adj.respiration_depth * np.sin(2 * np.pi * adj.respiration_hz * t + breath_phase))
            artefact = ramp(t.size, round(adj.ramp_s * fs)) * modulation * (adj.amplitude_uv * carrier + adj.dc_uv)
            data[rows, i0:i1] += gains[rows, None] * artefact
            blocks.append([float(i0 / fs), float(i1 / fs)])
        records.append({
            "kind": "electrical", "onset": float(onset), "duration": blocks[-1][1] - float(onset),
            "params": {
                "frequency_hz": float(adj.frequency_hz), "amplitude_uv": float(adj.amplitude_uv),
                "harmonics": {str(k): float(adj.harmonics[k - 2]) for k in orders}, "dc_uv": float(adj.dc_uv),
                "ramp_s": float(adj.ramp_s), "blocks": blocks, "phase_rad": float(phase),
                "heartbeat_hz": float(adj.heartbeat_hz), "respiration_hz": float(adj.respiration_hz),
                "gains": {lab: float(g) for lab, g in zip(rec.labels, gains)},
            },
        })
    return records
