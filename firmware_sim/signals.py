"""Stage-dependent sleep signals built from physiology, one 30-s epoch at a time.

Each EEG-like channel (EEG, EOG) is a 1/f background plus band-limited rhythms (slow waves, theta,
alpha, beta) whose amplitudes follow the stage and the electrode's region, plus transients placed at
random (spindles, K-complexes, vertex waves, sawtooth waves, blinks, slow and rapid eye movements).
EMG is band-limited noise whose tone falls from wake to REM. Every filter keeps its state across
epochs and amplitudes ramp between stages, so consecutive epochs join without a seam.

Amplitudes are typical scalp values (AASM manual; Niedermeyer's EEG) for a central lead referred to
the mastoid, scaled per region and per simulated person. Deliberately simple: later work adds
artefacts, mains, drift and device-specific amplitudes.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .hypnogram import EPOCH_SECONDS

# SD in uV of each rhythm at a central lead, by stage (W, N1, N2, N3, REM).
RHYTHM_UV = {
    "background": (9.0, 9.0, 10.0, 11.0, 8.0),
    "slow": (3.0, 6.0, 14.0, 40.0, 5.0),
    "theta": (3.0, 7.0, 5.0, 4.0, 7.0),
    "alpha": (11.0, 4.0, 2.0, 1.5, 3.0),
    "beta": (4.5, 2.5, 1.5, 1.0, 3.0),
}
# Transients per minute, by stage (W, N1, N2, N3, REM).
EVENT_RATE_PER_MIN = {
    "spindle": (0.0, 0.0, 5.0, 2.0, 0.0),
    "k_complex": (0.0, 0.0, 1.5, 0.5, 0.0),
    "vertex_wave": (0.0, 1.5, 0.2, 0.0, 0.0),
    "sawtooth": (0.0, 0.0, 0.0, 0.0, 3.0),
    "blink": (12.0, 1.0, 0.0, 0.0, 0.0),
    "slow_eye_movement": (0.5, 2.5, 0.2, 0.0, 0.0),
    "rapid_eye_movement": (0.0, 0.0, 0.0, 0.0, 8.0),
}
# Chin EMG tone (SD in uV) by stage: lowest in REM (atonia).
EMG_UV = (20.0, 10.0, 7.0, 6.0, 2.5)

# How strongly each region sees each component (1 = the central values above).
_COMPONENTS = tuple(RHYTHM_UV) + tuple(EVENT_RATE_PER_MIN)
_REGION_WEIGHTS = {
    #            bg   slow theta alpha beta spin  KC  vertex saw  blink SEM  REM
    "frontal":  (1.0, 1.2, 0.9, 0.5, 1.0, 0.7, 1.2, 0.8, 0.8, 0.4, 0.3, 0.3),
    "central":  (1.0, 1.0, 1.0, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 0.03, 0.03, 0.03),
    "posterior": (1.0, 0.8, 0.8, 1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.0, 0.0, 0.0),
    "temporal": (0.7, 0.6, 0.6, 0.5, 0.8, 0.5, 0.6, 0.5, 0.5, 0.2, 0.3, 0.3),
    "eog":      (0.6, 0.7, 0.5, 0.2, 0.6, 0.2, 0.6, 0.3, 0.2, 1.0, 1.0, 1.0),
}
_RAMP_SECONDS = 3.0  # rhythms change amplitude over this long after a stage change


def region_of(label: str, kind: str) -> str:
    """Scalp region of a channel from its label: ``"frontal"``, ``"central"``, ``"posterior"``,
    ``"temporal"`` or ``"eog"``."""
    if kind == "EOG":
        return "eog"
    site = label.split()[-1].split("-")[0].upper()
    if site.startswith(("FP", "AF", "F")):
        return "frontal"
    if site.startswith(("P", "O")):
        return "posterior"
    if site.startswith(("T", "M", "A")):
        return "temporal"
    return "central"


def _unit_variance(sos: np.ndarray) -> np.ndarray:
    """Scale a filter so that white noise of unit variance comes out with unit variance."""
    _, h = signal.sosfreqz(sos, worN=1 << 14)
    sos = sos.copy()
    sos[0, :3] /= np.sqrt(np.mean(np.abs(h) ** 2))
    return sos


def _bandpass(lo: float, hi: float, fs: float) -> np.ndarray:
    return _unit_variance(signal.butter(2, [lo, min(hi, 0.45 * fs)], "bandpass", fs=fs, output="sos"))


class SleepSignalModel:
    """Generates consecutive 30-s epochs of multichannel sleep signals.

    Parameters
    ----------
    channels, kinds : sequence of str
        Channel labels and kinds (``"EEG"``, ``"EOG"``, ``"EMG"``, ``"ACC"``).
    fs : float
        Sample rate in Hz (>= 50).
    seed : int or None
        Seeds the person (amplitude, alpha and spindle frequency) and all noise.
    """

    def __init__(self, channels, kinds, fs: float, seed: int | None = 0):
        if fs < 50:
            raise ValueError(f"sample rate must be at least 50 Hz, got {fs}")
        self.fs = float(fs)
        self.kinds = tuple(kinds)
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        # the simulated person
        self.gain = rng.uniform(0.8, 1.25)
        self.alpha_hz = rng.uniform(9.0, 11.0)
        self.spindle_hz = rng.uniform(12.0, 14.0)

        self._eeg = np.array([k in ("EEG", "EOG") for k in kinds])
        self._emg = np.array([k == "EMG" for k in kinds])
        self._acc = np.array([k == "ACC" for k in kinds])
        regions = [region_of(lab, k) for lab, k in zip(channels, kinds) if k in ("EEG", "EOG")]
        weights = np.array([_REGION_WEIGHTS[r] for r in regions]).reshape(len(regions), len(_COMPONENTS))
        self._weights = {c: weights[:, i] for i, c in enumerate(_COMPONENTS)}

        pink = signal.tf2sos([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                             [1.0, -2.494956002, 2.017265875, -0.522189400])
        highpass = signal.butter(1, 0.3, "highpass", fs=fs, output="sos")
        self._filters = {
            "background": _unit_variance(np.vstack([pink, highpass])),
            "slow": _bandpass(0.5, 2.0, fs),
            "theta": _bandpass(4.0, 7.5, fs),
            "alpha": _bandpass(self.alpha_hz - 1.5, self.alpha_hz + 1.5, fs),
            "beta": _bandpass(16.0, 28.0, fs),
            "emg": _unit_variance(signal.butter(4, [10.0, min(100.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")),
        }
        n_rows = {name: int(self._emg.sum()) if name == "emg" else len(regions) for name in self._filters}
        self._state = {name: np.zeros((sos.shape[0], n_rows[name], 2)) for name, sos in self._filters.items()}
        self._prev_stage: int | None = None
        # run the filters for 20 s so the first epoch starts in steady state
        for name in self._filters:
            self._noise(name, int(20 * fs))

    def _noise(self, name: str, n: int) -> np.ndarray:
        rows = self._state[name].shape[1]
        out, self._state[name] = signal.sosfilt(
            self._filters[name], self._rng.standard_normal((rows, n)), axis=1, zi=self._state[name]
        )
        return out

    def _envelope(self, values: tuple, stage: int, n: int) -> np.ndarray:
        """Amplitude over the epoch, ramping from the previous stage's value, shape (n,)."""
        now = values[stage]
        if self._prev_stage is None or values[self._prev_stage] == now:
            return np.full(n, now)
        before = values[self._prev_stage]
        ramp = np.clip(np.arange(n) / (_RAMP_SECONDS * self.fs), 0.0, 1.0)
        return before + (now - before) * ramp

    def epoch(self, stage: int, n: int | None = None) -> tuple[np.ndarray, list]:
        """Generate the next epoch.

        Parameters
        ----------
        stage : int
            Stage code (0 W, 1 N1, 2 N2, 3 N3, 4 REM).
        n : int, optional
            Samples in this epoch; by default ``round(30 * fs)``.

        Returns
        -------
        data : numpy.ndarray, shape (n_channels, n)
            Signals in uV (ACC in g).
        events : list of tuple
            ``(kind, onset_s, duration_s)`` of each transient, onset from the epoch start.
        """
        n = int(round(EPOCH_SECONDS * self.fs)) if n is None else int(n)
        data = np.zeros((len(self.kinds), n))
        events: list = []
        if self._eeg.any():
            eeg = np.zeros((int(self._eeg.sum()), n))
            for name, values in RHYTHM_UV.items():
                env = self._envelope(values, stage, n) * self.gain
                eeg += self._weights[name][:, None] * env[None, :] * self._noise(name, n)
            for name, rates in EVENT_RATE_PER_MIN.items():
                for onset, wave in self._transients(name, rates[stage] * n / self.fs / 60.0, n):
                    eeg[:, onset : onset + wave.size] += self.gain * self._weights[name][:, None] * wave
                    events.append((name, onset / self.fs, wave.size / self.fs))
            data[self._eeg] = eeg
        if self._emg.any():
            tone = self._envelope(EMG_UV, stage, n) * self._noise("emg", n)
            if stage == 4:  # phasic twitches during REM atonia
                for onset, wave in self._transients("twitch", 2.0 * n / self.fs / 60.0, n):
                    tone[..., onset : onset + wave.size] *= 1.0 + wave
            data[self._emg] = tone
        if self._acc.any():  # lying still: gravity on the last axis, small tremor
            acc = 0.003 * self._rng.standard_normal((int(self._acc.sum()), n))
            acc[-1] += 1.0
            data[self._acc] = acc
        self._prev_stage = stage
        return data, events

    def _transients(self, name: str, expected: float, n: int):
        """Yield ``(onset_sample, waveform)`` for a Poisson number of transients of one kind."""
        rng, fs = self._rng, self.fs
        for _ in range(rng.poisson(expected) if expected > 0 else 0):
            wave = _waveform(name, rng, fs, self.spindle_hz)
            if wave.size >= n - 1:
                continue
            yield int(rng.integers(0, n - wave.size)), wave


def _gauss(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre) / width) ** 2)


def _waveform(name: str, rng: np.random.Generator, fs: float, spindle_hz: float) -> np.ndarray:
    """One transient in uV (a relative gain for ``twitch``), sampled at ``fs``."""
    def time(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * fs)) / fs

    if name == "spindle":  # 11-16 Hz, 0.5-2 s, waxing and waning
        dur = rng.uniform(0.5, 2.0)
        t = time(dur)
        f = spindle_hz + rng.uniform(-1.0, 1.0)
        return rng.uniform(20.0, 40.0) * np.sin(np.pi * t / dur) ** 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    if name == "k_complex":  # sharp negative then slower positive wave, >= 0.5 s
        t, a = time(1.3), rng.uniform(70.0, 140.0)
        return -a * _gauss(t, 0.35, 0.1) + 0.5 * a * _gauss(t, 0.8, 0.18)
    if name == "vertex_wave":
        t, a = time(0.5), rng.uniform(25.0, 50.0)
        return -a * _gauss(t, 0.15, 0.04) + 0.35 * a * _gauss(t, 0.3, 0.06)
    if name == "sawtooth":  # 2-5 Hz trains in REM
        dur = rng.uniform(1.0, 3.0)
        t = time(dur)
        env = signal.windows.tukey(t.size, 0.3)
        return rng.uniform(15.0, 30.0) * env * signal.sawtooth(2 * np.pi * rng.uniform(2.0, 4.0) * t, width=0.2)
    if name == "blink":
        return rng.uniform(100.0, 200.0) * _gauss(time(0.5), 0.2, 0.06)
    if name == "slow_eye_movement":  # slow rolling, 0.25-0.5 Hz
        dur = rng.uniform(4.0, 8.0)
        t = time(dur)
        return rng.uniform(40.0, 80.0) * np.sin(np.pi * t / dur) * np.sin(2 * np.pi * rng.uniform(0.25, 0.5) * t)
    if name == "rapid_eye_movement":  # fast rise (< 50 ms), slow AC-coupled decay
        t = time(1.0)
        return rng.choice((-1.0, 1.0)) * rng.uniform(100.0, 250.0) * (1 - np.exp(-t / 0.02)) * np.exp(-t / 0.5)
    if name == "twitch":
        t = time(rng.uniform(0.1, 0.25))
        return 4.0 * np.sin(np.pi * t / t[-1]) if t.size > 1 else np.zeros(1)
    raise ValueError(f"unknown transient {name!r}")
