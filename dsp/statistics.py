"""Sleep statistics of a hypnogram, with the definitions sleep researchers expect (AASM; YASA).

All durations are in minutes; the hypnogram starts at lights-off and ends at lights-on.

- TIB: time in bed, the whole hypnogram.
- SPT: sleep period time, from the first to the last sleep epoch (inclusive).
- TST: total sleep time, epochs of N1, N2, N3 or REM.
- SE: sleep efficiency, TST / TIB (0..1).
- WASO: wake after sleep onset, W within the SPT.
- SOL: sleep-onset latency, lights-off to the first sleep epoch.
- Persistent-sleep latency: lights-off to the first 10 minutes of uninterrupted sleep (YASA uses 5).
- REM latency: from sleep onset to the first REM epoch (AASM), None without REM.
- Stage minutes and percent of TST; awakenings: W bouts inside the SPT; the transition matrix counts
  stage changes between consecutive scored epochs (rows from, columns to).
Unscorable epochs (-1) count in TIB and SPT but as neither sleep nor wake; they interrupt a run of
continuous sleep (persistent-sleep latency) since nothing says the sleeper slept through them.
"""

from __future__ import annotations

import numpy as np

from .stages import EPOCH_SECONDS, STAGES

PERSISTENT_SLEEP_MINUTES = 10.0


def sleep_statistics(stages, epoch_length: float = EPOCH_SECONDS,
                     persistent_minutes: float = PERSISTENT_SLEEP_MINUTES) -> dict:
    """Statistics of a hypnogram.

    Parameters
    ----------
    stages : array_like of int, shape (n_epochs,)
        Stage codes: 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscorable.
    epoch_length : float, optional
        Epoch length in seconds, by default 30.
    persistent_minutes : float, optional
        Uninterrupted sleep that defines persistent sleep, in minutes, by default 10.

    Returns
    -------
    dict
        ``TIB``, ``SPT``, ``TST``, ``WASO``, ``SOL``, ``persistent_sleep_latency``, ``REM_latency``
        (minutes, latencies None when the event never happens), ``SE`` (0..1), ``awakenings`` (count),
        ``minutes`` and ``percent_of_TST`` per stage name, ``unscored_minutes``, and
        ``transitions`` ({"order": stage names, "counts": 5 x 5 list}).
    """
    s = np.asarray(stages, dtype=np.int64).ravel()
    if s.size and (s.min() < -1 or s.max() > 4):
        raise ValueError("stage codes must be -1 (unscorable) or 0..4 (W, N1, N2, N3, REM)")
    per_min = epoch_length / 60.0
    asleep = s >= 1
    sleep_at = np.flatnonzero(asleep)
    counts = np.bincount(s[s >= 0], minlength=len(STAGES))
    tst = counts[1:].sum() * per_min
    out = {"TIB": s.size * per_min, "TST": tst, "SE": tst / (s.size * per_min) if s.size else 0.0}
    if sleep_at.size:
        onset, end = int(sleep_at[0]), int(sleep_at[-1])
        period = s[onset:end + 1]
        wake = period == 0
        out.update(SPT=period.size * per_min, WASO=wake.sum() * per_min, SOL=onset * per_min,
                   awakenings=int(np.sum(wake[1:] & ~wake[:-1]) + wake[0]))
        rem = np.flatnonzero(period == 4)
        out["REM_latency"] = rem[0] * per_min if rem.size else None
    else:
        out.update(SPT=0.0, WASO=0.0, SOL=None, awakenings=0, REM_latency=None)
    out["persistent_sleep_latency"] = _first_run_start(asleep, int(round(persistent_minutes / per_min)), per_min)
    out["minutes"] = {name: counts[k] * per_min for k, name in enumerate(STAGES)}
    out["percent_of_TST"] = {name: (100.0 * counts[k] * per_min / tst if tst else 0.0)
                             for k, name in enumerate(STAGES) if k >= 1}
    out["unscored_minutes"] = int(np.sum(s == -1)) * per_min
    scored = (s[:-1] >= 0) & (s[1:] >= 0)
    matrix = np.zeros((len(STAGES), len(STAGES)), dtype=np.int64)
    np.add.at(matrix, (s[:-1][scored], s[1:][scored]), 1)
    out["transitions"] = {"order": list(STAGES), "counts": matrix.tolist()}
    return out


def _first_run_start(mask: np.ndarray, length: int, per_min: float) -> float | None:
    """Minutes to the start of the first run of ``length`` True values, None if there is none."""
    if length < 1 or mask.size < length:
        return None
    run = np.convolve(mask.astype(np.int64), np.ones(length, dtype=np.int64), mode="valid")
    hit = np.flatnonzero(run == length)
    return hit[0] * per_min if hit.size else None
