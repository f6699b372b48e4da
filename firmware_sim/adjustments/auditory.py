"""Auditory stimulation during sleep: closed-loop clicks on slow-oscillation up-states (Ngo 2013) and
open-loop cue series (targeted memory reactivation), with the responses they evoke in the EEG.

Closed loop: the detection lead is band-passed to 0.5-2 Hz (zero-phase, so the trough is found
without the phase lag of a real device; the stimulator's timing error is modelled instead by
``timing_jitter_s``); when it falls below the threshold in an allowed stage, its trough is taken as
the down-state, a 50-ms pink-noise click is played at the predicted up-state ``up_state_delay_s``
later, a second click ``click_interval_s`` after the first, and detection pauses for ``pause_s``
after the last click. Clicks that would fall in an epoch outside the allowed stages are held back.
Detection runs on the signal as stimulated so far, so slow oscillations evoked by earlier clicks
can trigger later ones, as in a real closed loop.

Each click played in N2 or N3 evokes, on top of the ongoing EEG, a P200, an N350, a large
K-complex-like N550 and a P900 (Bastien & Campbell 1992; Ngo 2013), often followed by a train of
slow oscillations and a spindle (sigma) burst in the next up-state. In W, N1 and REM a click evokes
only a small early response (P200/N350 scaled by ``wake_rem_gain``): no N550, slow oscillation or
spindle. The sound itself does not reach the electrodes unless ``click_artefact_uv`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from .placement import Placement, place
from .recording import Recording
from .shapes import gauss, pink_noise

#: Evoked components of one click in NREM: (relative amplitude, latency s, width s). P200, N350,
#: N550, P900; scaled below so that the N550 peak is exactly -1.
_COMPONENTS = ((0.25, 0.20, 0.035), (-0.20, 0.35, 0.04), (-1.0, 0.55, 0.09), (0.5, 0.90, 0.15))
_EARLY = 2                   # the first two components (P200, N350) are the part that survives in W/N1/REM
_N550_WINDOW = (0.45, 0.70)  # s after the click
_TRAIN_DECAY = 0.5           # each further evoked slow oscillation is this much smaller
_RESPONSE_S = 4.5            # long enough for the N550/P900, two more slow oscillations and a spindle
_NREM = (2, 3)

# Relative size of the evoked slow waves and of the evoked spindle, by channel region (frontal and
# central maxima; mastoid/temporal leads referred to the other mastoid see little; EMG almost nothing).
_SLOW_GAINS = {"frontal": 1.0, "central": 0.9, "posterior": 0.5, "temporal": 0.25, "eog": 0.3, "emg": 0.02}
_SPINDLE_GAINS = {"frontal": 0.7, "central": 1.0, "posterior": 0.8, "temporal": 0.4, "eog": 0.2, "emg": 0.02}
_ARTEFACT_GAINS = {r: 1.0 for r in ("frontal", "central", "posterior", "temporal", "eog", "emg", "ecg")}


def _unit_shape(t: np.ndarray, components) -> np.ndarray:
    return sum(a * gauss(t, c, w) for a, c, w in components)


_fine = np.arange(0.0, 1.5, 1e-4)
_NORM = -_unit_shape(_fine, _COMPONENTS)[(_fine >= _N550_WINDOW[0]) & (_fine <= _N550_WINDOW[1])].min()
#: Height of the P200 relative to the N550 (for documentation and tests).
P200_RATIO = float(_unit_shape(_fine, _COMPONENTS)[(_fine > 0.15) & (_fine < 0.25)].max() / _NORM)


@dataclass(kw_only=True)
class Auditory(Placement):
    """Closed-loop or open-loop auditory stimulation and the responses it evokes.

    An episode is a period during which the stimulator is armed; inside it clicks follow the mode's
    rule and are played only in ``stim_stages``.

    Parameters
    ----------
    mode : {"closed_loop", "open_loop"}
        ``"closed_loop"``: two clicks locked to each detected slow-oscillation down-state (Ngo 2013).
        ``"open_loop"``: one cue every ``cue_interval_s`` regardless of the ongoing EEG.
    n550_uv : float
        Strength: mean N550 amplitude in uV (positive number, drawn negative) at a channel of gain 1
        (a frontal lead), by default 45 (typically 30-60). The other slow components scale with it
        (P200 ``P200_RATIO``, about a quarter, of it); the spindle does not (``spindle_uv``). These
        are single-trial sizes: latency jitter makes a click-locked average a few % smaller at the
        N550 and about 10 % smaller at the P200.
    duration_s : float or None
        Length of each episode in s; None arms the stimulator for a single episode from 0 (or from
        the one onset in ``onsets``) to the end of the data, ignoring the placement policy.
    stim_stages : sequence of int or None
        Stage codes in which clicks are played (the hypnogram stands in for the device's online
        staging); None uses the mode's default: N2/N3 closed loop, N3 open loop. Passing all
        stages makes an open-loop timer that keeps playing in REM and W, where clicks evoke little.
    threshold_uv : float
        Down-state detection threshold of the 0.5-2 Hz signal in uV, by default -80 (Ngo 2013).
    montage_gain : float
        The threshold is ``threshold_uv * montage_gain``: below 1 for montages that see smaller slow
        waves than a frontal lead referred to the mastoid (short-distance or dry headband leads).
    detect_band_hz : (float, float)
        Band of the detection filter in Hz, by default (0.5, 2.0).
    detect_channel : int, str or None
        Detection lead by index or label; None takes the first frontal, else central, EEG lead.
    up_state_delay_s : float
        Time from the detected trough to the first click in s, by default 0.5.
    timing_jitter_s : float
        SD of the stimulator's error around that time in s (clipped to 3 SD), by default 0.05.
    clicks : int
        Clicks per detection, by default 2.
    click_interval_s : float
        Time between the clicks of a detection in s, by default 1.075.
    pause_s : float
        Detection pause after the last click in s, by default 2.5.
    click_s : float
        Length of a click in s (50-ms pink noise), by default 0.05.
    cue_interval_s, cue_jitter_s : float
        Open loop: mean time between cues and the half-width of a uniform jitter, in s (5 and 0.5).
    amplitude_cv : float
        Trial-to-trial variability of the response amplitude (lognormal, mean kept), by default 0.3.
    latency_jitter_s : float
        SD of the response latency in s, by default 0.02.
    so_train_probability : float
        Probability that a NREM click is followed by a train of evoked slow oscillations, by default 0.5.
    so_train_cycles : int
        Slow oscillations in such a train after the first (each half the previous), by default 2.
    spindle_uv, spindle_hz : float
        Amplitude (uV, at a central lead) and frequency (Hz) of the evoked spindle, by default 12 and 13.
    spindle_probability : float
        Probability that a NREM click is followed by a spindle, by default 0.6.
    wake_rem_gain : float
        Size of the early response (P200/N350) in W, N1 and REM relative to NREM, by default 0.3.
    click_artefact_uv : float
        RMS in uV of the click's electrical pick-up on every electrode; by default 0 (sound does not
        reach the EEG).
    gains : sequence of float or None
        Per-channel gain of the whole response, overriding the regional defaults (frontal 1, central
        0.9, temporal/mastoid 0.25, EOG 0.3, EMG 0.02, others 0; spindles central 1, frontal 0.7).
    count, onsets, stages, settle_s
        Episode placement, see :class:`Placement`; by default one episode covering all the data.
    """

    mode: str = "closed_loop"
    n550_uv: float = 45.0
    duration_s: float | None = None
    stim_stages: tuple | None = None
    threshold_uv: float = -80.0
    montage_gain: float = 1.0
    detect_band_hz: tuple = (0.5, 2.0)
    detect_channel: int | str | None = None
    up_state_delay_s: float = 0.5
    timing_jitter_s: float = 0.05
    clicks: int = 2
    click_interval_s: float = 1.075
    pause_s: float = 2.5
    click_s: float = 0.05
    cue_interval_s: float = 5.0
    cue_jitter_s: float = 0.5
    amplitude_cv: float = 0.3
    latency_jitter_s: float = 0.02
    so_train_probability: float = 0.5
    so_train_cycles: int = 2
    spindle_uv: float = 12.0
    spindle_hz: float = 13.0
    spindle_probability: float = 0.6
    wake_rem_gain: float = 0.3
    click_artefact_uv: float = 0.0
    gains: tuple | None = None

    def __post_init__(self):
        if self.mode not in ("closed_loop", "open_loop"):
            raise ValueError(f"auditory mode must be 'closed_loop' or 'open_loop', got {self.mode!r}")

    def played_stages(self) -> tuple:
        """Stage codes in which clicks are played."""
        if self.stim_stages is not None:
            return tuple(int(s) for s in self.stim_stages)
        return _NREM if self.mode == "closed_loop" else (3,)


def apply(data: np.ndarray, rec: Recording, adj: Auditory, rng: np.random.Generator) -> list:
    """Stimulate ``data`` (n_channels, n_samples, uV) in place; return one truth record per episode.

    Each record's ``params["clicks"]`` lists every click of the episode as a dict: ``time`` (s),
    ``order`` (1, 2, ... within a detection; 1 in open loop), ``stage``, ``trough`` and
    ``trough_uv`` (detected down-state, None in open loop), ``evoked`` (an N550 was evoked),
    ``n550_uv`` (its amplitude at a gain-1 channel, 0 if none), ``so_train`` (further evoked slow
    oscillations) and ``spindle`` (a spindle was evoked).
    """
    if adj.duration_s is None:
        if (adj.count if adj.onsets is None else len(adj.onsets)) != 1:
            raise ValueError("auditory: duration_s=None (armed to the end of the data) allows a single episode")
        starts = [0.0] if adj.onsets is None else place(adj, 0.0, rec, rng, kind="auditory")
        episodes = [(t, rec.duration_s) for t in starts]
    else:
        episodes = [(t, t + adj.duration_s) for t in place(adj, adj.duration_s, rec, rng, kind="auditory")]
    renderer = _Renderer(data, rec, adj, rng)
    records = []
    for start, stop in episodes:
        if adj.mode == "closed_loop":
            clicks = _closed_loop(data, rec, adj, rng, renderer, start, stop)
        else:
            clicks = _open_loop(rec, adj, rng, renderer, start, stop)
        params = {
            "mode": adj.mode, "n550_uv": float(adj.n550_uv), "stim_stages": list(adj.played_stages()),
            "n_clicks": len(clicks), "clicks": clicks,
        }
        if adj.mode == "closed_loop":
            params["threshold_uv"] = float(adj.threshold_uv * adj.montage_gain)
            params["detect_channel"] = rec.labels[rec.channel(adj.detect_channel)]
        records.append({"kind": "auditory", "onset": float(start), "duration": float(stop - start), "params": params})
    return records


class _Renderer:
    """Adds click responses to the data and reports what it added."""

    def __init__(self, data: np.ndarray, rec: Recording, adj: Auditory, rng: np.random.Generator):
        self.data, self.rec, self.adj = data, rec, adj
        # the click sounds have their own stream: switching the artefact on changes nothing else
        self.sound_rng = np.random.default_rng(rng.integers(0, 2**63))
        slow = rec.gains(_SLOW_GAINS, adj.gains)
        spindle = rec.gains(_SPINDLE_GAINS, adj.gains)
        self.rows = np.flatnonzero((slow != 0) | (spindle != 0))
        self.slow, self.spindle = slow[self.rows, None], spindle[self.rows, None]
        self.artefact = rec.gains(_ARTEFACT_GAINS)
        self.length = int(np.ceil(_RESPONSE_S * rec.fs))

    def click(self, t_click: float, rng: np.random.Generator) -> tuple:
        """Add the response to a click at ``t_click`` (s).

        Returns
        -------
        record : dict
            What was evoked (see :func:`apply`).
        span : (int, int)
            Sample range that changed.
        slow_wave : numpy.ndarray
            The slow part added at a gain-1 channel over that range (for closed-loop detection).
        """
        adj, fs = self.adj, self.rec.fs
        stage = int(self.rec.stage_at(t_click))
        i0 = int(np.ceil(t_click * fs))
        i1 = min(i0 + self.length, self.rec.n_samples)
        record = {"time": float(t_click), "stage": stage, "evoked": False, "n550_uv": 0.0,
                  "so_train": 0, "spindle": False}
        if i1 <= i0:
            return record, (i0, i0), np.zeros(0)
        t = np.arange(i0, i1) / fs - t_click - rng.normal(0.0, adj.latency_jitter_s)
        size = adj.n550_uv * _lognormal(rng, adj.amplitude_cv)
        sp = np.zeros(t.size)
        if stage in _NREM:
            cycles = adj.so_train_cycles if rng.random() < adj.so_train_probability else 0
            period = 1.0 / rng.uniform(0.8, 1.0)
            components = list(_COMPONENTS)
            for k in range(1, cycles + 1):
                components += [(a * _TRAIN_DECAY ** k, c + k * period, w) for a, c, w in _COMPONENTS[_EARLY:]]
            slow = size * _unit_shape(t, components) / _NORM
            if rng.random() < adj.spindle_probability and adj.spindle_hz < 0.45 * fs:
                centre, f = rng.uniform(0.9, 1.2), adj.spindle_hz + rng.uniform(-0.5, 0.5)
                phase = rng.uniform(0, 2 * np.pi)
                inside = np.abs(t - centre) < 0.5
                sp[inside] = (adj.spindle_uv * _lognormal(rng, adj.amplitude_cv)
                              * np.cos(np.pi * (t[inside] - centre)) ** 2 * np.sin(2 * np.pi * f * t[inside] + phase))
                record["spindle"] = True
            record.update(evoked=True, n550_uv=float(size), so_train=int(cycles))
        else:
            slow = adj.wake_rem_gain * size * _unit_shape(t, _COMPONENTS[:_EARLY]) / _NORM
        self.data[self.rows, i0:i1] += self.slow * slow + self.spindle * sp
        if adj.click_artefact_uv > 0:
            n = min(max(1, int(round(adj.click_s * fs))), self.rec.n_samples - i0)
            self.data[:, i0:i0 + n] += self.artefact[:, None] * adj.click_artefact_uv * pink_noise(self.sound_rng, n)
        return record, (i0, i1), slow


def _lognormal(rng: np.random.Generator, cv: float) -> float:
    """A positive factor of mean 1 and (about) coefficient of variation ``cv``."""
    if cv <= 0:
        return 1.0
    sigma = np.sqrt(np.log1p(cv * cv))
    return float(np.exp(rng.normal(-0.5 * sigma * sigma, sigma)))


def _open_loop(rec: Recording, adj: Auditory, rng, renderer: _Renderer, start: float, stop: float) -> list:
    n = int(np.floor((stop - start) / adj.cue_interval_s))
    times = start + rng.uniform(0.0, adj.cue_interval_s) + adj.cue_interval_s * np.arange(max(n, 0))
    times = times + rng.uniform(-adj.cue_jitter_s, adj.cue_jitter_s, times.size)
    times = times[(times >= start) & (times + adj.click_s <= stop)]
    times = times[np.isin(rec.stage_at(times), adj.played_stages())]
    clicks = []
    for t in times:
        record, _, _ = renderer.click(float(t), rng)
        clicks.append({"time": record.pop("time"), "order": 1, "trough": None, "trough_uv": None, **record})
    return clicks


def _closed_loop(data, rec: Recording, adj: Auditory, rng, renderer: _Renderer, start: float, stop: float) -> list:
    fs = rec.fs
    lo, hi = adj.detect_band_hz
    sos = signal.butter(2, [lo, min(hi, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    channel = rec.channel(adj.detect_channel)
    gain = renderer.slow[np.flatnonzero(renderer.rows == channel)].ravel()
    gain = float(gain[0]) if gain.size else 0.0
    i_start, i_stop = rec.index(start), rec.index(stop)
    if i_stop - i_start < 2 * fs:  # too short to hold a detection and its clicks
        return []
    detect = signal.sosfiltfilt(sos, data[channel, i_start:i_stop])
    threshold = adj.threshold_uv * adj.montage_gain
    allowed = rec.epoch_allowed(adj.played_stages())
    pad = int(3 * fs)
    clicks: list = []
    ready = 0  # detection restarts here (index into ``detect``)
    while True:
        below = _first(detect, ready, lambda seg: seg < threshold)
        if below < 0:
            break
        epoch = int((i_start + below) / fs // rec.epoch_s)
        if not (epoch < allowed.size and allowed[epoch]):  # skip to the next epoch where clicks are played
            later = np.flatnonzero(allowed[epoch + 1:])
            if later.size == 0:
                break
            ready = max(below + 1, int(np.ceil((epoch + 1 + later[0]) * rec.epoch_s * fs)) - i_start)
            continue
        above = _first(detect, below, lambda seg: seg >= threshold)
        end = detect.size if above < 0 else above
        trough = below + int(np.argmin(detect[below:end]))
        delay = adj.up_state_delay_s + float(np.clip(rng.normal(0.0, adj.timing_jitter_s),
                                                     -3 * adj.timing_jitter_s, 3 * adj.timing_jitter_s))
        t_trough, trough_uv = (i_start + trough) / fs, float(detect[trough])
        times = t_trough + delay + adj.click_interval_s * np.arange(adj.clicks)
        if times[-1] + adj.click_s > stop:
            break
        if not np.isin(rec.stage_at(times), adj.played_stages()).all():  # staging left NREM: hold the clicks
            ready = end
            continue
        for order, t in enumerate(times, start=1):
            record, (a, b), slow = renderer.click(float(t), rng)
            clicks.append({"time": record.pop("time"), "order": order, "trough": float(t_trough),
                           "trough_uv": trough_uv, **record})
            if gain and b > a:  # the evoked wave is now part of what the detector sees
                a, b = a - i_start, b - i_start
                lo_i, hi_i = max(a - pad, 0), min(b + pad, detect.size)
                added = np.zeros(hi_i - lo_i)
                added[a - lo_i:min(b, detect.size) - lo_i] = gain * slow[:min(b, detect.size) - a]
                detect[lo_i:hi_i] += signal.sosfiltfilt(sos, added)
        ready = int(np.ceil((times[-1] + adj.click_s + adj.pause_s) * fs)) - i_start
        if ready >= detect.size:
            break
    return clicks


def _first(x: np.ndarray, start: int, condition) -> int:
    """Index of the first sample at or after ``start`` where ``condition(x[...])`` holds, or -1."""
    step = 1024
    while start < x.size:
        hit = condition(x[start:start + step])
        k = int(np.argmax(hit))
        if hit[k]:
            return start + k
        start += step
        step = min(step * 2, 1 << 20)
    return -1
