"""Nights of 30-s sleep stages from a model fitted to real expert hypnograms.

The model is a two-level semi-Markov process, fitted by :mod:`firmware_sim.hypnogram_fit` to the 20
sleep-cassette nights of Sleep-EDF Expanded (healthy adults aged 25-34, R&K with S3+S4 = N3):

1. **Ultradian cycles.** The sleep period alternates NREM periods and REM periods (REM periods as
   Feinberg & Floyd define them: REM epochs less than 15 min apart belong to one period). Period
   durations follow laws whose location depends on the cycle index (1st, 2nd, 3rd, 4th-or-later)
   with a spread shared by all indices. The first NREM period is the REM latency; later NREM periods
   shorten and REM periods lengthen, which gives ~90-min cycles and REM growing towards morning.
2. **Stage bouts.** Inside each period, stages follow in bouts (runs of one stage). The next stage
   and the bout's length depend on the period type and its cycle index, on the current and on the
   previous stage (an N2 bout between two N3 bouts is short, an N2 bout after N1 long). N3 fills the
   first two NREM periods and fades after them, as slow-wave pressure dissipates; REM appears only
   as REM periods, whose short W, N1 and N2 interruptions, like the brief awakenings of NREM
   periods, come from the bout transitions. A period's end cuts the bout it falls in.

Why two levels: a one-level semi-Markov chain of stages, even with time-of-night dependence, has no
memory of the last REM period, so REM can recur minutes after it ended and cycle lengths spread over
30-180 min (10th-90th percentile; real nights 68-121 min). Drawing the periods first gives the real
cycle lengths (median ~92 min, real 93.5) and REM latencies, while the bouts give the real
fragmentation (~115 stage changes per night).

Durations are in epochs, ``ceil(exp(mu + sigma * Z))`` with Z standard normal ("lognormal") or the
log of a standard exponential ("weibull", shape ``1 / sigma``): lognormal for W, N1 and NREM
periods, Weibull for N2, N3, REM and REM periods, whichever had the larger likelihood. Transition
probabilities are counts smoothed towards coarser estimates. A night is wake until sleep onset, the
sleep period, then wake until lights-on. The real nights are cut to 30 min of wake before sleep
onset and after the final awakening (lights-off is not in the files), so sleep-onset latency and
final wake are 30 min here too: a point mass, as in the data, not a fitted spread. Without a time
in bed, the sleep period's length is drawn from a lognormal fitted to the real ones.

Limits: periods are drawn independently of one another, so single nights spread a little wider
than the real ones (REM share most: about one simulated night in six falls outside the real
14.6-28.6 %); the model is of young healthy adults only.

All parameters live in ``hypnogram_params.json`` (distributions and probabilities, no night of the
data); regenerate it with ``python -m firmware_sim.hypnogram_fit FOLDER``.
"""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

#: Stage names in code order: code ``k`` is ``STAGES[k]`` (the same order as ``dsp.stages``).
STAGES = ("W", "N1", "N2", "N3", "REM")
W, N1, N2, N3, REM = range(5)
EPOCH_SECONDS = 30.0
#: Duration laws, as log-location-scale families of the epoch count (see the module docstring).
FAMILIES = ("lognormal", "weibull")
#: The fitted parameters, shipped with the package.
PARAMS_FILE = pathlib.Path(__file__).with_name("hypnogram_params.json")

_NREM_PHASE, _REM_PHASE = 0, 1


class _Model:
    """The parameters file as arrays, with cumulative tables for drawing."""

    def __init__(self, params: dict):
        self.sol = int(params["sleep_onset_latency_epochs"])
        self.final_wake = int(params["final_wake_epochs"])
        self.spt = params["sleep_period_epochs"]
        self.onset_cdf = np.cumsum(params["sleep_onset_stage"])
        self.entry_cdf = np.cumsum(params["nrem_entry_stage"])
        self.transition_cdf = np.cumsum(np.asarray(params["transitions"]), axis=-1)
        self.bout_mu = np.asarray(params["bouts"]["mu"])
        self.bout_sigma = np.asarray(params["bouts"]["sigma"])
        self.bout_weibull = np.array([f == "weibull" for f in params["bouts"]["family"]])
        periods = params["periods"]
        self.period_mu = np.array([periods["nrem"]["mu"], periods["rem"]["mu"]])
        self.period_sigma = np.array([periods["nrem"]["sigma"], periods["rem"]["sigma"]])
        self.period_weibull = np.array([periods[p]["family"] == "weibull" for p in ("nrem", "rem")])


@functools.lru_cache(maxsize=1)
def _model() -> _Model:
    return _Model(load_parameters())


def load_parameters() -> dict:
    """The fitted parameters (see ``hypnogram_params.json`` and :mod:`firmware_sim.hypnogram_fit`).

    Returns
    -------
    dict
        A fresh copy of the parameters, including ``real_nights``: min, quartiles and max of the
        real nights' statistics (TIB, SPT, TST, WASO, SOL and REM latency in minutes, SE as a
        fraction, stage shares in % of TST).
    """
    return json.loads(PARAMS_FILE.read_text())


def generate_hypnogram(hours: float | None = None, seed: int | None = 0) -> np.ndarray:
    """Generate a night of 30-s stages, from lights-off to lights-on.

    Parameters
    ----------
    hours : float or None, optional
        Time in bed in hours (> 0). The result has ``round(hours * 120)`` epochs (at least 1): the
        sleep period is cut to fit, and the 30-min wake before sleep onset and after the final
        awakening shrink to a quarter of the night each when it is shorter than 2 h. None, the
        default, draws the sleep period from the fitted distribution of real nights.
    seed : int or None, optional
        Seed of the random generator, by default 0; the same seed gives the same night.

    Returns
    -------
    numpy.ndarray of int8, shape (n_epochs,)
        Stage codes, indices into :data:`STAGES`.
    """
    model = _model()
    rng = np.random.default_rng(seed)
    if hours is None:
        law = model.spt
        spt = int(np.clip(round(np.exp(law["mu"] + law["sigma"] * rng.standard_normal())), law["min"], law["max"]))
        before, after = model.sol, model.final_wake
    else:
        if not hours > 0:
            raise ValueError(f"hours must be positive, got {hours}")
        n_epochs = max(1, int(round(hours * (3600.0 / EPOCH_SECONDS))))
        before = min(model.sol, (n_epochs + 3) // 4)  # at least one epoch of wake at lights-off
        after = min(model.final_wake, n_epochs // 4)
        spt = n_epochs - before - after
    hyp = np.full(before + spt + after, W, dtype=np.int8)
    hyp[before:before + spt] = _sleep_period(spt, rng, model)
    return hyp


def _draw(cdf: np.ndarray, rng: np.random.Generator) -> int:
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))


def _duration(mu: float, sigma: float, weibull: bool, rng: np.random.Generator) -> int:
    z = np.log(rng.standard_exponential()) if weibull else rng.standard_normal()
    return max(1, int(np.ceil(np.exp(mu + sigma * z))))


def _sleep_period(n_epochs: int, rng: np.random.Generator, model: _Model) -> np.ndarray:
    """Stages of a sleep period of ``n_epochs``: alternating NREM and REM periods made of bouts."""
    stages, lengths = [], []
    t, phase, count = 0, _NREM_PHASE, [0, 0]
    prev, stage = W, _draw(model.onset_cdf, rng)
    last_index = model.period_mu.shape[1] - 1
    while t < n_epochs:
        k = min(count[phase], last_index)  # cycle index: 1st, 2nd, 3rd, 4th-or-later period of its kind
        count[phase] += 1
        end = min(n_epochs, t + _duration(model.period_mu[phase, k], model.period_sigma[phase],
                                          model.period_weibull[phase], rng))
        while True:
            cell = (phase, prev, stage, k)
            length = min(_duration(model.bout_mu[cell], model.bout_sigma[cell], model.bout_weibull[stage], rng),
                         end - t)  # the period's end cuts the bout
            stages.append(stage)
            lengths.append(length)
            t += length
            if t >= end:
                break
            prev, stage = stage, _draw(model.transition_cdf[cell], rng)
        if phase == _NREM_PHASE:  # a REM period starts with REM
            phase, prev, stage = _REM_PHASE, stage, REM
        else:
            phase, prev, stage = _NREM_PHASE, REM, _draw(model.entry_cdf, rng)
    return np.repeat(np.array(stages, dtype=np.int8), np.array(lengths, dtype=np.int64))


def stage_minutes(hypnogram: np.ndarray) -> dict:
    """Minutes spent in each stage, ``{name: minutes}``, for an int stage-code array."""
    counts = np.bincount(np.asarray(hypnogram, dtype=np.int64), minlength=len(STAGES))
    return {name: counts[k] * EPOCH_SECONDS / 60.0 for k, name in enumerate(STAGES)}
