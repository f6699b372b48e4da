"""The input every adjustment detector takes: (channels, samples) in uV plus a mask of present samples.

Missing samples (NaN, or ``valid`` False) are set to 0 and masked, so no kernel ever sees a NaN and a
gap's edges never count as evidence.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def as_detector_input(data, valid):
    """(channels, samples) float64 with missing samples (NaN or ``valid`` False) set to 0, and the mask.

    The data are copied only when some missing sample is not already 0 (packet loss is usually
    written as 0), so a night is not duplicated in memory for nothing.

    Parameters
    ----------
    data : array_like, shape (n_channels, n_samples) or (n_samples,)
        Signal in uV; NaN marks missing samples.
    valid : array_like of bool, shape (n_samples,), optional
        False where samples are missing.

    Returns
    -------
    x : ndarray of float64, shape (n_channels, n_samples)
        The signal, 0 where missing.
    ok : ndarray of bool, shape (n_samples,)
        Samples present in every channel.

    Raises
    ------
    ValueError
        Wrong shapes.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"data must be (n_channels, n_samples), got shape {np.shape(data)}")
    if valid is None:
        valid = np.ones(0, dtype=bool)
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (x.shape[1],):
            raise ValueError(f"valid must have shape ({x.shape[1]},), got {valid.shape}")
    ok, dirty = usable_columns(x, valid)
    if dirty:
        x = np.where(ok, x, 0.0)
    return x, ok


@njit(cache=True)
def usable_columns(x, valid):
    """Samples where every row is finite and ``valid`` holds, and whether any other sample is not 0.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples)
    valid : ndarray of bool, shape (n_samples,) or (0,)
        False where a sample is missing; empty when every sample is.

    Returns
    -------
    ok : ndarray of bool, shape (n_samples,)
    dirty : bool
        Some row holds a value other than 0 at a sample that is not ok (NaN counts as such).
    """
    n_rows, n = x.shape
    ok = np.ones(n, dtype=np.bool_)
    all_valid = valid.size == 0
    dirty = False
    for i in range(n):
        good = all_valid or valid[i]
        if good:
            for r in range(n_rows):
                if not np.isfinite(x[r, i]):
                    good = False
                    break
        if not good:
            ok[i] = False
            for r in range(n_rows):
                if x[r, i] != 0.0:  # NaN != 0 too
                    dirty = True
    return ok, dirty
