"""A simple generator of nights: sleep cycles whose content depends on the time of night.

Follows the textbook architecture (AASM manual; Carskadon & Dement): wake before sleep onset, a brief
N1, then ~90-min cycles of N2, N3 and REM in which N3 dominates the first cycles and REM grows
towards morning, with brief awakenings after REM. The numbers are typical values for healthy adults,
not a fit; a generator fitted to real expert hypnograms replaces this one later.
"""

from __future__ import annotations

import numpy as np

#: Stage names in code order: code ``k`` is ``STAGES[k]`` (the same order as ``dsp.stages``).
STAGES = ("W", "N1", "N2", "N3", "REM")
W, N1, N2, N3, REM = range(5)
EPOCH_SECONDS = 30.0


def generate_hypnogram(hours: float, seed: int | None = 0) -> np.ndarray:
    """Generate a night of 30-s stages.

    Parameters
    ----------
    hours : float
        Time in bed in hours (> 0). The result has ``round(hours * 120)`` epochs (at least 1).
    seed : int or None, optional
        Seed of the random generator, by default 0.

    Returns
    -------
    numpy.ndarray of int8, shape (n_epochs,)
        Stage codes, indices into :data:`STAGES`.
    """
    if not hours > 0:
        raise ValueError(f"hours must be positive, got {hours}")
    rng = np.random.default_rng(seed)
    n_epochs = max(1, int(round(hours * 3600 / EPOCH_SECONDS)))
    minutes = 60.0 * hours
    out: list[int] = []

    def add(stage: int, mins: float) -> None:
        out.extend([stage] * max(1, int(round(mins * 2))))

    add(W, rng.lognormal(np.log(12.0), 0.5))  # sleep-onset latency
    add(N1, rng.uniform(1.5, 6.0))
    while len(out) < n_epochs:
        progress = len(out) / (2 * minutes)  # 0 at lights-off, 1 at lights-on
        add(N2, rng.uniform(15.0, 30.0))
        n3 = 40.0 * max(0.0, 1.0 - 1.7 * progress) * rng.uniform(0.6, 1.2)
        if n3 >= 2.0:
            _add_n3_with_lightening(out, n3, rng)
            add(N2, rng.uniform(4.0, 12.0))
        add(REM, (4.0 + 17.0 * progress) * rng.uniform(0.7, 1.3))
        if rng.random() < 0.6:  # brief awakening after REM
            add(W, rng.uniform(0.5, 3.0))
            add(N1, rng.uniform(1.0, 4.0))
    hyp = np.array(out[:n_epochs], dtype=np.int8)
    # lights-on: a short wake at the end, when the night is long enough to have slept
    tail = min(int(rng.integers(2, 10)), n_epochs // 10)
    if tail:
        hyp[-tail:] = W
    return hyp


def _add_n3_with_lightening(out: list, minutes: float, rng: np.random.Generator) -> None:
    """Append an N3 period with the brief returns to N2 seen in real nights."""
    epochs = max(1, int(round(minutes * 2)))
    block = np.full(epochs, N3, dtype=np.int8)
    for _ in range(rng.poisson(epochs / 40)):
        at = int(rng.integers(0, epochs))
        block[at : at + int(rng.integers(1, 4))] = N2
    out.extend(block.tolist())


def stage_minutes(hypnogram: np.ndarray) -> dict:
    """Minutes spent in each stage, ``{name: minutes}``, for an int stage-code array."""
    counts = np.bincount(np.asarray(hypnogram, dtype=np.int64), minlength=len(STAGES))
    return {name: counts[k] * EPOCH_SECONDS / 60.0 for k, name in enumerate(STAGES)}
