"""Stage-dependent sleep signals built from physiology, one 30-s epoch at a time.

EEG-like channels (EEG, EOG) are the sum of
    - a 1/f background of their own (independent per electrode) over a white sensor-noise floor;
    - band-limited rhythms (slow waves, theta, alpha, beta) from a few latent sources mixed into the
      channels by region, so neighbouring electrodes correlate as volume conduction makes them do;
      amplitudes follow the stage and the region (alpha posterior, slow waves frontal);
    - transients at random times: spindles, K-complexes, vertex waves, sawtooth waves, blinks, slow
      and rapid eye movements;
    - artefacts: movements (slow swings with a muscle burst on every channel and a posture change on
      the accelerometer), electrode pops (a step with a slow decay on one channel), mains at 50/60 Hz.
EMG is band-limited noise whose tone falls from wake to REM, with twitches in REM; temporal leads
pick up some of it. The accelerometer shows gravity in the current posture, breathing and tremor.

Every filter keeps its state across epochs and amplitudes ramp between stages, so consecutive epochs
join without a seam. Amplitudes are typical scalp values (AASM manual; Niedermeyer's EEG) for a
central lead referred to the mastoid, scaled per region, per device (see :mod:`firmware_sim.profiles`)
and per simulated person.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import signal

from .hypnogram import EPOCH_SECONDS

# SD in uV of each rhythm at a central lead, by stage (W, N1, N2, N3, REM).
RHYTHM_UV = {
    "slow": (3.0, 6.0, 14.0, 40.0, 5.0),
    "theta": (3.0, 7.0, 5.0, 4.0, 7.0),
    "alpha": (11.0, 4.0, 2.0, 1.5, 3.0),
    "beta": (4.5, 2.5, 1.5, 1.0, 3.0),
}
BACKGROUND_UV = (9.0, 9.0, 10.0, 11.0, 8.0)  # 1/f background
# Transients per minute, by stage (W, N1, N2, N3, REM).
EVENT_RATE_PER_MIN = {
    "spindle": (0.0, 0.0, 5.0, 2.0, 0.0),
    "k_complex": (0.0, 0.0, 1.5, 0.5, 0.0),
    "vertex_wave": (0.0, 1.5, 0.2, 0.0, 0.0),
    "sawtooth": (0.0, 0.0, 0.0, 0.0, 3.0),
    "blink": (12.0, 1.0, 0.0, 0.0, 0.0),
    "slow_eye_movement": (0.5, 2.5, 0.2, 0.0, 0.0),
    "rapid_eye_movement": (0.0, 0.0, 0.0, 0.0, 8.0),
    "movement": (0.6, 0.2, 0.04, 0.01, 0.03),
}
ELECTRODE_POPS_PER_HOUR = 0.3  # per electrode
# Chin EMG tone (SD in uV) by stage: lowest in REM (atonia).
EMG_UV = (20.0, 10.0, 7.0, 6.0, 2.5)
SLOW_WAVE_PP_UV = 75.0  # AASM: a slow wave is >= 75 uV peak to peak, 0.5-2 Hz

# How strongly each region sees each component (1 = the central values above).
_RHYTHMS = tuple(RHYTHM_UV)
_TRANSIENTS = ("spindle", "k_complex", "vertex_wave", "sawtooth", "blink", "slow_eye_movement",
               "rapid_eye_movement", "movement")
_REGION_WEIGHTS = {
    #            slow theta alpha beta | spin  KC  vertex saw  blink SEM  REM  move | bg   muscle
    "frontal":  (1.2, 0.9, 0.5, 1.0,    0.7, 1.2, 0.8, 0.8, 0.4, 0.3, 0.3, 1.0,    1.0, 0.1),
    "central":  (1.0, 1.0, 0.7, 1.0,    1.0, 1.0, 1.0, 1.0, 0.03, 0.03, 0.03, 0.8, 1.0, 0.05),
    "posterior": (0.8, 0.8, 1.0, 0.9,   0.8, 0.7, 0.7, 0.7, 0.0, 0.0, 0.0, 0.8,    1.0, 0.1),
    "temporal": (0.7, 0.6, 0.5, 0.8,    0.5, 0.6, 0.5, 0.5, 0.2, 0.3, 0.3, 1.2,    0.8, 0.5),
    "eog":      (0.7, 0.5, 0.2, 0.6,    0.2, 0.6, 0.3, 0.2, 1.0, 1.0, 1.0, 1.2,    0.6, 0.1),
}
_COLUMNS = _RHYTHMS + _TRANSIENTS + ("background", "muscle")
_LATENT_REGIONS = ("frontal", "central", "posterior", "temporal", "eog")
_RAMP_SECONDS = 3.0  # rhythms change amplitude over this long after a stage change


class Event(NamedTuple):
    """A ground-truth event: kind, onset and duration in seconds, and the channel (None = all)."""

    kind: str
    onset: float
    duration: float
    channel: str | None = None


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


def _horizontal_eog_sign(label: str) -> float:
    """-1 for an electrode at the right outer canthus (E2, ROC), whose deflection for a horizontal
    eye movement is opposite to the left one's (E1, LOC); 1 for every other channel."""
    site = label.split()[-1].split("-")[0].upper()
    return -1.0 if site in ("E2", "ROC") else 1.0


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
        Seeds the person (amplitudes, alpha and spindle frequency, densities) and all noise.
    gains : sequence of float, optional
        Brain-signal amplitude of each channel relative to a central PSG lead (device montage).
    sensor_noise_uv : float, optional
        White electrode/amplifier noise floor in uV RMS, by default 0.5.
    mains_uv : float, optional
        Mains amplitude in uV (varies per electrode), by default 2.
    mains_hz : float, optional
        Mains frequency in Hz (50 or 60), by default 50.
    """

    def __init__(self, channels, kinds, fs: float, seed: int | None = 0, *, gains=None,
                 sensor_noise_uv: float = 0.5, mains_uv: float = 2.0, mains_hz: float = 50.0):
        if fs < 50:
            raise ValueError(f"sample rate must be at least 50 Hz, got {fs}")
        self.fs = float(fs)
        self.channels = tuple(channels)
        self.kinds = tuple(kinds)
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        # the simulated person
        self.gain = rng.uniform(0.8, 1.25)
        self.alpha_hz = rng.uniform(9.0, 11.0)
        self.spindle_hz = rng.uniform(12.0, 14.0)
        self.spindle_density = rng.uniform(0.7, 1.3)
        self.slow_wave_gain = rng.uniform(0.9, 1.2)
        self.emg_gain = rng.uniform(0.7, 1.4)

        self._eeg = np.array([k in ("EEG", "EOG") for k in kinds])
        self._emg = np.array([k == "EMG" for k in kinds])
        self._acc = np.array([k == "ACC" for k in kinds])
        eeg_index = np.flatnonzero(self._eeg)
        self._eeg_labels = [self.channels[i] for i in eeg_index]
        regions = [region_of(self.channels[i], self.kinds[i]) for i in eeg_index]
        device_gain = np.ones(len(kinds)) if gains is None else np.asarray(gains, dtype=float)
        weights = np.array([_REGION_WEIGHTS[r] for r in regions]).reshape(len(regions), len(_COLUMNS))
        weights *= device_gain[eeg_index, None]
        # Horizontal eye movements are conjugate: the eyes turn together, so the corneal dipole
        # nears one outer canthus as it leaves the other and E1 and E2 deflect in opposite
        # directions (blinks, vertical, deflect both alike).
        for column in ("slow_eye_movement", "rapid_eye_movement"):
            weights[:, _COLUMNS.index(column)] *= [_horizontal_eog_sign(self.channels[i]) for i in eeg_index]
        self._weights = {c: weights[:, i] for i, c in enumerate(_COLUMNS)}
        # latent rhythm sources: one per region present; each channel mostly its own region's
        present = sorted({_LATENT_REGIONS.index(r) for r in regions})
        self._mix = np.zeros((len(regions), len(present)))
        for row, r in enumerate(regions):
            own = present.index(_LATENT_REGIONS.index(r))
            self._mix[row] = rng.uniform(0.0, 0.35, len(present))
            self._mix[row, own] = 1.0
        if self._mix.size:
            self._mix /= np.linalg.norm(self._mix, axis=1, keepdims=True)
        self._frontal_row = next((i for i, r in enumerate(regions) if r == "frontal"), 0)

        self._sensor_uv = float(sensor_noise_uv)
        self._mains_uv = float(mains_uv) * rng.uniform(0.5, 1.5, len(regions))
        self._mains_hz = float(mains_hz)
        self._mains_phase = rng.uniform(0, 2 * np.pi, len(regions))
        self._sample = 0  # samples produced so far, for mains phase
        self._posture = self._new_posture()

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
        rows = {name: len(present) for name in _RHYTHMS}
        rows.update(background=len(regions), emg=1)
        self._state = {name: np.zeros((sos.shape[0], rows[name], 2)) for name, sos in self._filters.items()}
        self._prev_stage: int | None = None
        self._last_white: np.ndarray | None = None
        # run the filters for 20 s so the first epoch starts in steady state
        for name in self._filters:
            self._noise(name, int(20 * fs))

    def _new_posture(self) -> np.ndarray:
        """A lying posture: gravity mostly on one axis, tilted a little."""
        v = self._rng.normal(0.0, 0.35, 3)
        v[self._rng.integers(0, 3)] += self._rng.choice((-1.0, 1.0))
        return v / np.linalg.norm(v)

    def _noise(self, name: str, n: int) -> np.ndarray:
        rows = self._state[name].shape[1]
        # drawn in float32 (faster) but filtered in float64: these IIR filters have poles close to
        # the unit circle and turn float32 rounding into broadband noise
        white = self._rng.standard_normal((rows, n), dtype=np.float32).astype(np.float64)
        out, self._state[name] = signal.sosfilt(self._filters[name], white, axis=1, zi=self._state[name])
        if name == "background":
            self._last_white = white  # reused as the sensor-noise floor: white, independent per channel
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
        data : numpy.ndarray of float32, shape (n_channels, n)
            Signals in uV (ACC in g).
        events : list of Event
            Ground truth of this epoch, onsets in seconds from the epoch start.
        """
        n = int(round(EPOCH_SECONDS * self.fs)) if n is None else int(n)
        data = np.zeros((len(self.kinds), n), dtype=np.float32)
        events: list = []
        fs = self.fs
        emg_tone = self._envelope(EMG_UV, stage, n) * self.emg_gain * self._noise("emg", n)[0]
        movements = list(self._transients("movement", EVENT_RATE_PER_MIN["movement"][stage] * n / fs / 60.0, n))
        if self._eeg.any():
            w = self._weights
            eeg = (w["background"][:, None] * (self._envelope(BACKGROUND_UV, stage, n) * self.gain)[None, :]
                   * self._noise("background", n))
            eeg += self._sensor_uv * self._last_white
            slow = None
            for name, values in RHYTHM_UV.items():
                env = self._envelope(values, stage, n) * self.gain
                if name == "slow":
                    env = env * self.slow_wave_gain
                latent = self._noise(name, n) * env[None, :]
                mixed = self._mix @ latent
                if name == "slow":
                    slow = w[name][self._frontal_row] * mixed[self._frontal_row]
                eeg += w[name][:, None] * mixed
            for name in _TRANSIENTS[:-1]:
                rate = EVENT_RATE_PER_MIN[name][stage] * (self.spindle_density if name == "spindle" else 1.0)
                for onset, wave in self._transients(name, rate * n / fs / 60.0, n):
                    eeg[:, onset : onset + wave.size] += self.gain * w[name][:, None] * wave
                    events.append(Event(name, onset / fs, wave.size / fs))
            eeg += w["muscle"][:, None] * emg_tone[None, :]
            for onset, wave in movements:
                swing = wave * self._rng.uniform(-1.0, 1.0, (eeg.shape[0], 1))
                eeg[:, onset : onset + wave.size] += w["movement"][:, None] * swing
            events += self._electrode_pops(eeg, n)
            if slow is not None:
                events += _slow_waves(slow, fs)
            eeg += self._mains(n)
            data[self._eeg] = eeg
        if self._emg.any():
            tone = emg_tone.copy()
            if stage == 4:  # phasic twitches during REM atonia
                for onset, wave in self._transients("twitch", 2.0 * n / fs / 60.0, n):
                    tone[onset : onset + wave.size] *= 1.0 + wave
            for onset, wave in movements:  # a movement is a muscle burst
                tone[onset : onset + wave.size] *= 1.0 + 4.0 * np.abs(wave) / max(np.abs(wave).max(), 1e-9)
            data[self._emg] = tone
        if self._acc.any():
            data[self._acc] = self._accelerometer(n, movements)[: int(self._acc.sum())]
        events += [Event("movement", onset / fs, wave.size / fs) for onset, wave in movements]
        self._prev_stage = stage
        self._sample += n
        return data, events

    def _mains(self, n: int) -> np.ndarray:
        """Mains and its 3rd harmonic on every EEG-like channel, (channels, n) in uV.

        sin(wt + p) = sin(wt) cos(p) + cos(wt) sin(p): two transcendental rows serve every channel.
        """
        wt = 2 * np.pi * self._mains_hz * (self._sample + np.arange(n)) / self.fs
        phase = self._mains_phase[:, None]
        out = np.cos(phase) * np.sin(wt) + np.sin(phase) * np.cos(wt)
        out += 0.1 * (np.cos(3 * phase) * np.sin(3 * wt) + np.sin(3 * phase) * np.cos(3 * wt))
        return self._mains_uv[:, None] * out

    def _accelerometer(self, n: int, movements: list) -> np.ndarray:
        """Gravity in the current posture (g), breathing (~0.25 Hz) and tremor; posture changes with movements."""
        t = (self._sample + np.arange(n)) / self.fs
        gravity = np.repeat(self._posture[:, None], n, axis=1)
        for onset, wave in movements:
            new = self._new_posture()
            end = onset + wave.size
            blend = np.linspace(0.0, 1.0, wave.size)[None, :]
            gravity[:, onset:end] = (1 - blend) * self._posture[:, None] + blend * new[:, None]
            gravity[:, end:] = new[:, None]
            gravity[:, onset:end] += 0.05 * self._rng.standard_normal((3, wave.size))
            self._posture = new
        breathing = 0.002 * np.sin(2 * np.pi * 0.25 * t)
        return gravity + breathing[None, :] + 0.001 * self._rng.standard_normal((3, n))

    def _electrode_pops(self, eeg: np.ndarray, n: int) -> list:
        """Add pops: a sudden step on one electrode decaying over a second or so."""
        events = []
        expected = ELECTRODE_POPS_PER_HOUR * n / self.fs / 3600.0
        for row in np.flatnonzero(self._rng.poisson(expected, eeg.shape[0])):
            onset = int(self._rng.integers(0, n - 1))
            tau = self._rng.uniform(0.3, 1.0) * self.fs
            step = self._rng.choice((-1.0, 1.0)) * self._rng.uniform(100.0, 400.0)
            eeg[row, onset:] += step * np.exp(-np.arange(n - onset) / tau)
            events.append(Event("electrode_pop", onset / self.fs, 5 * tau / self.fs, self._eeg_labels[row]))
        return events

    def _transients(self, name: str, expected: float, n: int):
        """Yield ``(onset_sample, waveform)`` for a Poisson number of transients of one kind."""
        rng, fs = self._rng, self.fs
        for _ in range(rng.poisson(expected) if expected > 0 else 0):
            wave = _waveform(name, rng, fs, self.spindle_hz)
            if wave.size >= n - 1:
                continue
            yield int(rng.integers(0, n - wave.size)), wave


def _slow_waves(x: np.ndarray, fs: float) -> list:
    """Slow waves in a 0.5-2 Hz signal: negative half-waves whose trough-to-next-peak swing is >= 75 uV."""
    sign = np.signbit(x)
    down = np.flatnonzero(~sign[:-1] & sign[1:])  # + to - zero crossings
    up = np.flatnonzero(sign[:-1] & ~sign[1:])
    events = []
    for start in down:
        after = up[up > start]
        if after.size < 2:
            break
        rise, next_down = after[0], after[1]
        if not (0.5 * fs <= next_down - start <= 2.0 * fs):  # one cycle of a 0.5-2 Hz wave
            continue
        swing = x[rise:next_down].max() - x[start:rise].min()
        if swing >= SLOW_WAVE_PP_UV:
            events.append(Event("slow_wave", start / fs, (next_down - start) / fs))
    return events


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
    if name == "movement":  # 1-8 s of slow swings (electrode cables, skin stretch)
        dur = rng.uniform(1.0, 8.0)
        t = time(dur)
        f = rng.uniform(0.3, 1.5)
        return rng.uniform(80.0, 300.0) * signal.windows.tukey(t.size, 0.4) * np.sin(2 * np.pi * f * t)
    if name == "twitch":
        t = time(rng.uniform(0.1, 0.25))
        return 4.0 * np.sin(np.pi * t / t[-1]) if t.size > 1 else np.zeros(1)
    raise ValueError(f"unknown transient {name!r}")
