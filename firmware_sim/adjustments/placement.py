"""When adjustment episodes happen: explicit onsets, or a random policy bound to sleep stages."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .recording import Recording


@dataclass(kw_only=True)
class Placement:
    """When an adjustment's episodes happen; every kind of adjustment has these parameters.

    Parameters
    ----------
    count : int
        Number of episodes drawn at random when ``onsets`` is not given, by default 1. Episodes of
        one adjustment never overlap; when the policy leaves too little room, fewer are placed (with
        a ``RuntimeWarning``) and the truth log says what was done.
    onsets : sequence of float or None
        Explicit episode onsets in s from the start of the data; overrides ``count`` and the policy.
    stages : sequence of int or None
        Policy: an episode only starts in an epoch whose stage code (0 W, 1 N1, 2 N2, 3 N3, 4 REM) is
        one of these; None allows any time.
    settle_s : float
        Policy: and only once the stage has stayed in ``stages`` for this long, in s (e.g. 240 s of
        stable sleep before slow-oscillatory stimulation, Marshall 2006); by default 0.
    """

    count: int = 1
    onsets: tuple | None = None
    stages: tuple | None = None
    settle_s: float = 0.0


def place(placement: Placement, span_s: float, rec: Recording, rng: np.random.Generator, *,
          earliest_s: float = 0.0, kind: str = "adjustment") -> list:
    """Choose episode onsets.

    Parameters
    ----------
    placement : Placement
        The adjustment (its placement parameters).
    span_s : float
        Length of each episode in s (the part of the data it needs).
    rec : Recording
    rng : numpy.random.Generator
    earliest_s : float, optional
        No random episode starts before this time (s), e.g. to leave room for an earlier source.
    kind : str, optional
        Name used in messages.

    Returns
    -------
    list of float
        Onsets in s, on the sample grid, in time order.

    Raises
    ------
    ValueError
        When an explicit onset leaves the episode outside the data.
    """
    total = rec.duration_s
    if placement.onsets is not None:
        onsets = sorted(rec.snap(float(t)) for t in placement.onsets)
        for t in onsets:
            if t < 0 or t + span_s > total + 0.5 / rec.fs:
                raise ValueError(f"{kind}: an episode of {span_s:g} s at {t:g} s does not fit in {total:g} s of data")
        return onsets
    if placement.count < 0:
        raise ValueError(f"{kind}: count must be >= 0, got {placement.count}")
    # candidates on a 1-s grid (stage boundaries fall on whole seconds); each onset then moves up to 1 s later
    grid = np.arange(np.ceil(earliest_s), np.floor(total - span_s) + 1.0)
    ok = grid + span_s <= total
    if placement.stages is not None:
        ok &= _settled(rec, placement.stages, placement.settle_s, grid)
    onsets: list = []
    for _ in range(placement.count):
        free = ok.copy()
        for start in onsets:
            free &= (grid + 1.0 + span_s <= start) | (grid >= start + span_s)
        if not free.any():
            warnings.warn(f"{kind}: placed {len(onsets)} of {placement.count} episodes of {span_s:g} s; "
                          f"no room left under the placement policy", RuntimeWarning, stacklevel=3)
            break
        g = grid[rng.choice(np.flatnonzero(free))]
        room = min(1.0, total - span_s - g)
        onsets.append(rec.snap(g + rng.uniform(0.0, room) if room > 0 else g))
    return sorted(onsets)


def _settled(rec: Recording, stages, settle_s: float, grid: np.ndarray) -> np.ndarray:
    """For each grid time (s): the stage is in ``stages`` and has been for at least ``settle_s``."""
    if grid.size == 0:
        return np.zeros(0, dtype=bool)
    seconds = np.arange(0.0, grid[-1] + 1.0)
    inside = np.isin(rec.stage_at(seconds), np.asarray(tuple(stages), dtype=np.int64))
    # index of the most recent second outside the stages, -1 if none
    last_out = np.maximum.accumulate(np.where(inside, -1, np.arange(seconds.size)))
    settled = inside & (seconds - last_out - 1 >= settle_s)
    return settled[grid.astype(np.int64)]
