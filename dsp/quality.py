"""Signal quality per epoch: missing samples, flat or railed electrodes, clipping."""

from __future__ import annotations

import numpy as np
from numba import njit

#: Below this SD (uV) an EEG epoch is flat: disconnected, or stuck at an amplifier rail.
FLAT_UV = 0.25
#: Above this share of samples sitting at the epoch's own extreme values the signal is clipped.
CLIPPED_FRACTION = 0.05
#: Above this share of missing (lost or non-finite) samples an epoch cannot be scored.
MISSING_FRACTION = 0.05


@njit(cache=True)
def epoch_quality(epochs):
    """Quality measures of every epoch.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal in uV; NaN marks a lost sample.

    Returns
    -------
    ndarray, shape (n_epochs, 3)
        Per epoch: share of non-finite samples (0..1), SD of the finite samples in uV (0 when
        none), share of finite samples equal to the epoch's minimum or maximum (0..1).
    """
    n_epochs, n = epochs.shape
    out = np.zeros((n_epochs, 3))
    for e in range(n_epochs):
        count = 0
        total = 0.0
        lo = np.inf
        hi = -np.inf
        for i in range(n):
            v = epochs[e, i]
            if np.isfinite(v):
                count += 1
                total += v
                lo = min(lo, v)
                hi = max(hi, v)
        out[e, 0] = (n - count) / n if n > 0 else 1.0
        if count == 0:
            continue
        mean = total / count
        ss = 0.0
        at_extremes = 0
        for i in range(n):
            v = epochs[e, i]
            if np.isfinite(v):
                ss += (v - mean) * (v - mean)
                if v == lo or v == hi:
                    at_extremes += 1
        out[e, 1] = np.sqrt(ss / count)
        out[e, 2] = at_extremes / count
    return out


def scorable(quality: np.ndarray) -> np.ndarray:
    """Which epochs can be scored, from :func:`epoch_quality` output; shape (n_epochs,) bool."""
    return (
        (quality[:, 0] <= MISSING_FRACTION)
        & (quality[:, 1] >= FLAT_UV)
        & (quality[:, 2] <= CLIPPED_FRACTION)
    )


def unscorable_reason(quality: np.ndarray) -> str:
    """Why most epochs fail :func:`scorable`, in a few words (for error messages)."""
    reasons = {
        "too many samples are missing or not finite": quality[:, 0] > MISSING_FRACTION,
        f"the signal is flat (SD below {FLAT_UV} uV: a disconnected or railed electrode)": quality[:, 1] < FLAT_UV,
        "the signal is clipped at the amplifier's range": quality[:, 2] > CLIPPED_FRACTION,
    }
    return max(reasons, key=lambda r: int(reasons[r].sum()))
