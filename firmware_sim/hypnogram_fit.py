"""Fit the night generator of :mod:`firmware_sim.hypnogram` to expert hypnograms.

Usage::

    python -m firmware_sim.hypnogram_fit /path/to/sleep-edf-sc-hypnograms [--out PATH]

reads every ``*Hypnogram.edf`` of the Sleep-EDF Expanded sleep-cassette set (EDF+ annotation-only
files, 30-s R&K stages), fits the model described in :mod:`firmware_sim.hypnogram` and writes its
parameters as JSON (by default over the packaged ``hypnogram_params.json``). Only parameters and
summary ranges are written, never a night's sequence of stages.

Preparation of each recording (the choices the fit depends on):

- R&K to AASM: S1 -> N1, S2 -> N2, S3 and S4 -> N3, R -> REM, W -> W.
- "Movement time" (a body movement hides the EEG) follows the AASM rule for major body movements,
  without the alpha test we cannot make from labels: W when the epoch before or after is W, otherwise
  the stage of the next scored epoch (of the previous one at the end of a record).
- The recordings last ~24 h, so the night is cut, as usual for this set, to 30 min (60 epochs) of
  wake before the first and after the last sleep epoch. Lights-off is not in these files, so this
  convention also fixes the sleep-onset latency and the final wake at 30 min.
- "Sleep stage ?" (not scored) is treated as missing, never imputed: the 30-min margins stop at it,
  and a night with unscored epochs inside its sleep period is left out with a warning (its cycle
  structure is unknown there). In the 20 sleep-cassette nights every "?" lies at the end of the
  recording, outside the kept window, so all 20 nights are used.

The fit is maximum likelihood on counts, with light smoothing where cells are thin:

- Transitions between bouts are counted per period type and stage, then per cycle index, then per
  previous stage, each level smoothed towards the one before by a Dirichlet prior worth
  ``KAPPA_TRANSITIONS`` transitions; the first level adds one to every allowed transition, so rare
  ones stay possible. Transitions at a period boundary are not counted: the period's end decides
  them.
- Bout durations, along the same levels, are discretised lognormal or Weibull laws (for each stage
  the family of larger likelihood over all its bouts), fitted with right-censoring for the bouts a
  period boundary or the end of the sleep period cut short, each level shrunk towards the one before
  by ``KAPPA_DURATIONS`` pseudo-bouts drawn from it.
- Period durations share one spread per period type and have one location per cycle index; the
  last period of a night is censored. The first sleep stage and the first stage after a REM period
  are counted, add-one smoothed.

The script needs ``edfio`` and ``scipy`` (imported lazily); the generator needs neither.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings

import numpy as np

from .hypnogram import EPOCH_SECONDS, FAMILIES, N1, N2, N3, PARAMS_FILE, REM, STAGES, W

#: Code of an unscored epoch ("Sleep stage ?"), and the transient code of "Movement time".
UNSCORED = -1
MOVEMENT = 5
#: Wake kept before the first and after the last sleep epoch (30 min), in epochs.
MARGIN_EPOCHS = 60
#: REM epochs separated by less than 15 min of other stages belong to one REM period (Feinberg & Floyd).
REM_GAP_EPOCHS = 30
#: Cycle indices fitted separately: 1st, 2nd, 3rd and 4th-or-later NREM and REM periods.
N_CYCLE_INDICES = 4
#: Weight of the coarser estimate, in transitions and in bouts.
KAPPA_TRANSITIONS = 5.0
KAPPA_DURATIONS = 10.0
#: Longest duration represented in the likelihoods: 12 h of epochs.
MAX_EPOCHS = 1440

_ANNOTATION_CODES = {
    "Sleep stage W": W, "Sleep stage 1": N1, "Sleep stage 2": N2, "Sleep stage 3": N3,
    "Sleep stage 4": N3, "Sleep stage R": REM, "Sleep stage ?": UNSCORED, "Movement time": MOVEMENT,
}
_NREM_PHASE, _REM_PHASE = 0, 1
_SUPPORT = np.arange(1, MAX_EPOCHS + 1, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Reading and preparing the recordings


def read_sleep_edf_hypnogram(path) -> np.ndarray:
    """Read a Sleep-EDF ``*Hypnogram.edf`` (EDF+ annotations) as one code per 30-s epoch.

    Parameters
    ----------
    path : str or os.PathLike
        An annotation-only EDF+ file whose annotations are "Sleep stage W|1|2|3|4|R|?" or
        "Movement time", with onsets and durations in multiples of 30 s.

    Returns
    -------
    numpy.ndarray of int8, shape (n_epochs,)
        Stage codes 0 (W) .. 4 (REM) with S3 and S4 as N3, :data:`MOVEMENT` for movement time and
        :data:`UNSCORED` for "?" and for any epoch no annotation covers.
    """
    import edfio  # lazily: only the fit reads EDF

    annotations = [a for a in edfio.read_edf(path).annotations if a.duration]
    end = max((a.onset + a.duration for a in annotations), default=0.0)
    codes = np.full(int(round(end / EPOCH_SECONDS)), UNSCORED, dtype=np.int8)
    for a in annotations:
        if a.text not in _ANNOTATION_CODES:
            raise ValueError(f"{path}: unknown annotation {a.text!r}")
        start = int(round(a.onset / EPOCH_SECONDS))
        codes[start:start + int(round(a.duration / EPOCH_SECONDS))] = _ANNOTATION_CODES[a.text]
    return codes


def score_movement_time(codes: np.ndarray) -> np.ndarray:
    """Replace movement-time epochs by a stage, after the AASM rule for major body movements.

    A run of movement epochs becomes W when the epoch before or after it is W, otherwise the stage
    of the next scored epoch (of the previous one when nothing scored follows). Without the EEG the
    rule's alpha test cannot be made; the neighbour test is what remains of it.

    Parameters
    ----------
    codes : array of int, shape (n_epochs,)
        Codes as returned by :func:`read_sleep_edf_hypnogram`.

    Returns
    -------
    numpy.ndarray of int8, shape (n_epochs,)
        A copy without :data:`MOVEMENT` codes.
    """
    out = np.array(codes, dtype=np.int8)
    moving = np.r_[False, out == MOVEMENT, False].astype(np.int8)
    starts = np.flatnonzero(np.diff(moving) == 1)
    ends = np.flatnonzero(np.diff(moving) == -1)
    for s, e in zip(starts, ends):
        before = out[s - 1] if s > 0 else UNSCORED
        after = out[e] if e < len(out) else UNSCORED
        if W in (before, after):
            out[s:e] = W
        elif after != UNSCORED:
            out[s:e] = after
        elif before != UNSCORED:
            out[s:e] = before
        else:
            out[s:e] = UNSCORED
    return out


def sleep_period_window(codes: np.ndarray, margin: int = MARGIN_EPOCHS) -> np.ndarray | None:
    """Cut a recording to ``margin`` epochs before its first and after its last sleep epoch.

    The margins stop at the ends of the recording and at unscored epochs.

    Parameters
    ----------
    codes : array of int, shape (n_epochs,)
        Codes without movement time (see :func:`score_movement_time`).
    margin : int, optional
        Epochs kept on each side, by default :data:`MARGIN_EPOCHS` (30 min).

    Returns
    -------
    numpy.ndarray of int8 or None
        The night, or None when the recording holds no sleep epoch.
    """
    codes = np.asarray(codes, dtype=np.int8)
    asleep = np.flatnonzero((codes >= N1) & (codes <= REM))
    if asleep.size == 0:
        return None
    first, last = asleep[0], asleep[-1]
    unscored = np.flatnonzero(codes == UNSCORED)
    before, after = unscored[unscored < first], unscored[unscored > last]
    start = max(first - margin, 0, before[-1] + 1 if before.size else 0)
    stop = min(last + 1 + margin, len(codes), after[0] if after.size else len(codes))
    return codes[start:stop].copy()


def load_nights(folder) -> list:
    """Read, score and cut every ``*Hypnogram.edf`` in ``folder`` (sorted by name).

    Parameters
    ----------
    folder : str or os.PathLike
        Folder of Sleep-EDF hypnogram files.

    Returns
    -------
    list of numpy.ndarray of int8, each shape (n_epochs,)
        Nights with codes 0 (W) .. 4 (REM) only, from 30 min before sleep onset to 30 min after
        the final awakening. Recordings without sleep or with unscored epochs inside the sleep
        period are left out with a warning.
    """
    paths = sorted(pathlib.Path(folder).glob("*Hypnogram.edf"))
    if not paths:
        raise FileNotFoundError(f"no *Hypnogram.edf in {folder}")
    nights = []
    for path in paths:
        night = sleep_period_window(score_movement_time(read_sleep_edf_hypnogram(path)))
        if night is None:
            warnings.warn(f"{path.name}: no sleep epoch, left out", stacklevel=2)
        elif (night == UNSCORED).any():
            warnings.warn(f"{path.name}: unscored epochs inside the sleep period, left out", stacklevel=2)
        else:
            nights.append(night)
    return nights


# --------------------------------------------------------------------------------------------------
# Structure of a night: sleep period, REM periods, bouts


def _sleep_period(night: np.ndarray) -> np.ndarray:
    asleep = np.flatnonzero(night != W)
    return night[asleep[0]:asleep[-1] + 1]


def _phases(period: np.ndarray) -> np.ndarray:
    """1 for epochs inside a REM period (first to last REM epoch of a cluster), 0 for NREM periods."""
    phase = np.zeros(len(period), dtype=np.int8)
    rem = np.flatnonzero(period == REM)
    if rem.size:
        breaks = np.flatnonzero(np.diff(rem) > REM_GAP_EPOCHS)
        for s, e in zip(rem[np.r_[0, breaks + 1]], rem[np.r_[breaks, rem.size - 1]]):
            phase[s:e + 1] = _REM_PHASE
    return phase


def _runs(*labels):
    """Start and length of the runs over which all label arrays stay constant."""
    change = np.zeros(len(labels[0]) - 1, dtype=bool)
    for x in labels:
        change |= np.diff(x) != 0
    starts = np.r_[0, np.flatnonzero(change) + 1]
    return starts, np.diff(np.r_[starts, len(labels[0])])


def _night_structure(night: np.ndarray):
    """Bouts and periods of one night as integer tables.

    Returns ``bouts`` with columns (phase, previous stage, stage, cycle index, length, next stage or
    -1, cut) and ``periods`` with columns (phase, cycle index, length, cut); a bout is cut when a
    period boundary or the end of the sleep period ends it, a period when the end of the sleep period
    does. The cycle index counts NREM periods and REM periods separately, from 0, the last one
    standing for all later ones.
    """
    period = _sleep_period(night)
    phase = _phases(period)
    p_starts, p_lengths = _runs(phase)
    p_phase = phase[p_starts]
    index = np.zeros(len(p_phase), dtype=np.int64)
    for k in (_NREM_PHASE, _REM_PHASE):
        index[p_phase == k] = np.minimum(np.arange((p_phase == k).sum()), N_CYCLE_INDICES - 1)
    cycle = np.repeat(index, p_lengths)  # cycle index of every epoch's period
    starts, lengths = _runs(period, phase)
    stage, ph = period[starts], phase[starts]
    last = np.r_[ph[1:] != ph[:-1], True]
    bouts = np.column_stack([
        ph, np.r_[W, stage[:-1]], stage, cycle[starts], lengths,
        np.where(last, -1, np.r_[stage[1:], -1]), last,
    ]).astype(np.int64)
    cut = np.arange(len(p_phase)) == len(p_phase) - 1
    periods = np.column_stack([p_phase, index, p_lengths, cut]).astype(np.int64)
    return bouts, periods


# --------------------------------------------------------------------------------------------------
# Duration laws: D = ceil(exp(mu + sigma * Z)), Z standard normal (lognormal) or log of a standard
# exponential (Weibull of scale exp(mu) and shape 1/sigma): P(D <= k) = F(k) of the continuous law.


def _cdf(family: str, mu: float, sigma: float) -> np.ndarray:
    from scipy.special import ndtr

    z = (np.log(_SUPPORT) - mu) / sigma
    if family == "lognormal":
        return ndtr(z)
    return -np.expm1(-np.exp(np.minimum(z, 700.0)))


def _pmf(family: str, mu: float, sigma: float) -> np.ndarray:
    return np.diff(_cdf(family, mu, sigma), prepend=0.0)


def _histogram(lengths) -> np.ndarray:
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), MAX_EPOCHS)
    return np.bincount(lengths, minlength=MAX_EPOCHS + 1)[1:].astype(np.float64)


def _log_likelihood(family, mu, sigma, complete, cut) -> float:
    cdf = _cdf(family, mu, sigma)
    pmf = np.diff(cdf, prepend=0.0)
    survival = 1.0 - np.r_[0.0, cdf[:-1]]  # P(D >= k): a cut bout lasted at least its length
    return float(complete @ np.log(np.maximum(pmf, 1e-300)) + cut @ np.log(np.maximum(survival, 1e-300)))


def _start(weights) -> list:
    logs = np.log(_SUPPORT)
    mean = weights @ logs / weights.sum()
    sd = np.sqrt(weights @ (logs - mean) ** 2 / weights.sum())
    return [mean, np.log(max(sd, 0.2))]


def _fit_law(family, complete, cut, prior=None, kappa=0.0):
    """Maximum-likelihood (mu, sigma) of complete and cut durations, plus ``kappa`` prior bouts."""
    from scipy.optimize import minimize

    if prior is not None:
        complete = complete + kappa * prior
    result = minimize(lambda th: -_log_likelihood(family, th[0], np.exp(th[1]), complete, cut),
                      _start(complete + cut), method="Nelder-Mead",
                      options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    return float(result.x[0]), float(np.exp(result.x[1]))


def _fit_shared_sigma(family, groups):
    """Maximum likelihood of one mu per group and a shared sigma; groups: [(complete, cut), ...]."""
    from scipy.optimize import minimize

    def cost(th):
        sigma = np.exp(th[-1])
        return -sum(_log_likelihood(family, mu, sigma, c, k) for mu, (c, k) in zip(th[:-1], groups))

    start = [_start(c + k)[0] for c, k in groups] + [np.log(0.4)]
    result = minimize(cost, start, method="Nelder-Mead",
                      options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 20000, "maxfev": 20000})
    return [float(m) for m in result.x[:-1]], float(np.exp(result.x[-1])), -float(result.fun)


def _best_family(complete, cut) -> str:
    return max(FAMILIES, key=lambda f: _log_likelihood(f, *_fit_law(f, complete, cut), complete, cut))


# --------------------------------------------------------------------------------------------------
# The fit


def _smoothed(counts, prior, kappa):
    return (counts + kappa * prior) / (counts.sum() + kappa)


def _allowed_next(phase: int, stage: int) -> np.ndarray:
    """Stages a bout may hand over to: never itself, and never REM inside a NREM period."""
    allowed = np.ones(len(STAGES), dtype=bool)
    allowed[stage] = False
    if phase == _NREM_PHASE:
        allowed[REM] = False
    return allowed


def _first_stage_distribution(stages, allowed) -> list:
    counts = np.bincount(stages, minlength=len(STAGES)).astype(np.float64) + 1.0  # add-one smoothing
    counts[~allowed] = 0.0
    return (counts / counts.sum()).tolist()


def _next_counts(bouts: np.ndarray) -> np.ndarray:
    """How often each stage follows, over the bouts not ended by a period boundary."""
    return np.bincount(bouts[bouts[:, 5] >= 0, 5], minlength=len(STAGES)).astype(np.float64)


def _shrunk_law(family: str, bouts: np.ndarray, parent):
    """Duration law of ``bouts`` shrunk towards the ``parent`` law; the parent itself when empty."""
    if len(bouts) == 0:
        return parent
    complete, cut = _histogram(bouts[bouts[:, 6] == 0, 4]), _histogram(bouts[bouts[:, 6] == 1, 4])
    return _fit_law(family, complete, cut, _pmf(family, *parent), KAPPA_DURATIONS)


def _fit_bouts(bouts: np.ndarray):
    """Duration families by stage; transition and duration tables [phase, previous, stage, cycle index]."""
    n = len(STAGES)
    transitions = np.zeros((2, n, n, N_CYCLE_INDICES, n))
    mu = np.zeros((2, n, n, N_CYCLE_INDICES))
    sigma = np.ones((2, n, n, N_CYCLE_INDICES))
    families = []
    for stage in range(n):
        of_stage = bouts[bouts[:, 2] == stage]
        complete, cut = _histogram(of_stage[of_stage[:, 6] == 0, 4]), _histogram(of_stage[of_stage[:, 6] == 1, 4])
        families.append(family := _best_family(complete, cut))
        law_stage = _fit_law(family, complete, cut)
        for phase in (_NREM_PHASE, _REM_PHASE):
            of_phase = of_stage[of_stage[:, 0] == phase]
            p_phase = (_next_counts(of_phase) + 1.0) * _allowed_next(phase, stage)
            p_phase /= p_phase.sum()
            law_phase = _shrunk_law(family, of_phase, law_stage)
            for index in range(N_CYCLE_INDICES):
                of_index = of_phase[of_phase[:, 3] == index]
                p_index = _smoothed(_next_counts(of_index), p_phase, KAPPA_TRANSITIONS)
                law_index = _shrunk_law(family, of_index, law_phase)
                for prev in range(n):
                    of_prev = of_index[of_index[:, 1] == prev]
                    transitions[phase, prev, stage, index] = _smoothed(_next_counts(of_prev), p_index,
                                                                       KAPPA_TRANSITIONS)
                    mu[phase, prev, stage, index], sigma[phase, prev, stage, index] = _shrunk_law(
                        family, of_prev, law_index)
    return families, transitions, mu, sigma


def _fit_periods(periods: np.ndarray) -> dict:
    out = {}
    for phase, name in ((_NREM_PHASE, "nrem"), (_REM_PHASE, "rem")):
        of_phase = periods[periods[:, 0] == phase]
        groups = []
        for index in range(N_CYCLE_INDICES):
            p = of_phase[of_phase[:, 1] == index]
            groups.append((_histogram(p[p[:, 3] == 0, 2]), _histogram(p[p[:, 3] == 1, 2])))
        fits = {family: _fit_shared_sigma(family, groups) for family in FAMILIES}
        family = max(fits, key=lambda f: fits[f][2])
        out[name] = {"family": family, "mu": fits[family][0], "sigma": fits[family][1]}
    return out


def night_statistics(night: np.ndarray) -> dict:
    """Summary statistics of one night (minutes, fractions, % of TST), as stored in the parameters."""
    minutes = EPOCH_SECONDS / 60.0
    asleep = np.flatnonzero(night != W)
    period = night[asleep[0]:asleep[-1] + 1]
    tst = int((period != W).sum())
    rem = np.flatnonzero(night == REM)
    stats = {
        "tib_min": len(night) * minutes, "spt_min": len(period) * minutes, "tst_min": tst * minutes,
        "se": tst / len(night), "waso_min": int((period == W).sum()) * minutes,
        "sol_min": int(asleep[0]) * minutes,
        "rem_latency_min": float((rem[0] - asleep[0]) * minutes) if rem.size else float("nan"),
    }
    for k in (N1, N2, N3, REM):
        stats[f"{STAGES[k].lower()}_pct"] = 100.0 * int((period == k).sum()) / tst
    return stats


def _ranges(nights) -> dict:
    """Min, quartiles and max of each statistic over the nights (the real nights' ranges)."""
    stats = [night_statistics(n) for n in nights]
    out = {}
    for key in stats[0]:
        values = np.array([s[key] for s in stats], dtype=np.float64)
        q = np.nanpercentile(values, [0, 25, 50, 75, 100])
        out[key] = dict(zip(("min", "p25", "median", "p75", "max"), map(float, q)))
    return out


def fit(nights) -> dict:
    """Fit the generator's parameters to prepared nights.

    Parameters
    ----------
    nights : list of array of int, each shape (n_epochs,)
        Nights as returned by :func:`load_nights`: codes 0 (W) .. 4 (REM), wake margins included.

    Returns
    -------
    dict
        The parameters, in the layout :mod:`firmware_sim.hypnogram` reads (JSON-serialisable).
    """
    nights = [np.asarray(n, dtype=np.int64) for n in nights]
    periods_epochs = np.array([len(_sleep_period(n)) for n in nights], dtype=np.float64)
    structure = [_night_structure(n) for n in nights]
    bouts = np.concatenate([b for b, _ in structure])
    periods = np.concatenate([p for _, p in structure])
    families, transitions, mu, sigma = _fit_bouts(bouts)
    onset = np.array([_sleep_period(n)[0] for n in nights])
    after_rem = bouts[(bouts[:, 0] == _NREM_PHASE) & (bouts[:, 1] == REM), 2]
    log_spt = np.log(periods_epochs)
    first_sleep = np.array([np.flatnonzero(n != W)[0] for n in nights])
    final_wake = np.array([len(n) - 1 - np.flatnonzero(n != W)[-1] for n in nights])
    return {
        "description": "Parameters of firmware_sim.hypnogram, fitted by firmware_sim.hypnogram_fit. "
                       "Table axes: period type (0 NREM, 1 REM), previous stage, stage, cycle index "
                       "(0-3: 1st, 2nd, 3rd, 4th-or-later period of its type), next stage; stages in the "
                       "order of 'stages'. Durations in 30-s epochs: D = ceil(exp(mu + sigma * Z)), Z "
                       "standard normal (lognormal) or log of a standard exponential (weibull).",
        "source": "Sleep-EDF Database Expanded v1.0.0 (PhysioNet), sleep-cassette hypnograms SC4001-SC4092; "
                  "Kemp et al., IEEE-BME 47(9):1185-1194 (2000); ODC-By 1.0. R&K with S3+S4 = N3.",
        "n_nights": len(nights),
        "epoch_seconds": EPOCH_SECONDS,
        "stages": list(STAGES),
        "sleep_onset_latency_epochs": int(np.median(first_sleep)),
        "final_wake_epochs": int(np.median(final_wake)),
        "sleep_period_epochs": {"family": "lognormal", "mu": float(log_spt.mean()),
                                "sigma": float(log_spt.std(ddof=1)),
                                "min": int(periods_epochs.min()), "max": int(periods_epochs.max())},
        "rem_gap_epochs": REM_GAP_EPOCHS,
        "sleep_onset_stage": _first_stage_distribution(onset, np.isin(np.arange(5), (N1, N2, N3))),
        "nrem_entry_stage": _first_stage_distribution(after_rem, np.arange(5) != REM),
        "periods": _fit_periods(periods),
        "bouts": {"family": families, "mu": mu.tolist(), "sigma": sigma.tolist()},
        "transitions": transitions.tolist(),
        "smoothing": {"transitions": KAPPA_TRANSITIONS, "durations": KAPPA_DURATIONS},
        "real_nights": _ranges(nights),
    }


def _rounded(value, digits=6):
    """Floats to ``digits`` significant digits, recursively (keeps the file small and diffable)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _json(value, indent: str = "") -> str:
    """JSON with one line per innermost list: readable, and small diffs when a refit moves a number."""
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value)


def main(argv=None) -> int:
    """Command line: fit the hypnograms of a folder and write the parameters file; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.hypnogram_fit",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="folder of Sleep-EDF *Hypnogram.edf files")
    parser.add_argument("--out", default=str(PARAMS_FILE),
                        help="parameters file to write (default: the packaged one)")
    args = parser.parse_args(argv)
    nights = load_nights(args.folder)
    params = _rounded(fit(nights))
    pathlib.Path(args.out).write_text(_json(params) + "\n")
    print(f"fitted {len(nights)} nights -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
