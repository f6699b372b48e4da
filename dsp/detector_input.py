"""The input every adjustment detector takes: (channels, samples) in uV plus a mask of present samples.

Missing samples (NaN, or ``valid`` False) are set to 0 and masked, so no kernel ever sees a NaN and a
gap's edges never count as evidence. :func:`second_sd` measures how much such an input moves, block by
block (flat, railed or disconnected electrodes; plateaus with no signal on them).
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
    # the mask is allocated by numpy, which asks for huge pages (a night's mask is several MB)
    ok = np.empty(x.shape[1], dtype=bool)
    return ok, bool(mark_usable(x, valid, ok))


@njit(cache=True)
def mark_usable(x, valid, ok):
    """Fill ``ok`` (shape (n_samples,)) as :func:`usable_columns` returns it; return ``dirty``."""
    n_rows, n = x.shape
    all_valid = valid.size == 0
    dirty = False
    for i in range(n):
        good = all_valid or valid[i]
        if good:
            for r in range(n_rows):
                if not np.isfinite(x[r, i]):
                    good = False
                    break
        ok[i] = good
        if not good:
            for r in range(n_rows):
                if x[r, i] != 0.0:  # NaN != 0 too
                    dirty = True
    return dirty


@njit(cache=True, fastmath={"reassoc"})
def second_sd(x, ok, step):
    """Standard deviation of each row over consecutive blocks of ``step`` samples, usable samples only.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples)
        Signal, uV.
    ok : ndarray of bool, shape (n_samples,)
        Usable samples.
    step : int
        Block length in samples; a final partial block is dropped.

    Returns
    -------
    sd : ndarray, shape (n_rows, n_samples // step)
        Population SD of the usable samples of each block, uV (0 where fewer than one).
    counts : ndarray of int64, shape (n_samples // step,)
        Usable samples per block.
    """
    # (reassociated sums: the adds of a block need not wait for each other, so they vectorise;
    # the result changes only by rounding)
    n_rows = x.shape[0]
    nb = x.shape[1] // step
    sd = np.zeros((n_rows, nb))
    counts = np.zeros(nb, dtype=np.int64)
    for b in range(nb):
        okb = ok[b * step:(b + 1) * step]
        c = 0
        for j in range(step):
            c += okb[j]
        counts[b] = c
        if c == 0:
            continue
        for r in range(n_rows):
            seg = x[r, b * step:(b + 1) * step]
            # two passes (mean, then spread): exact for railed values of ~1e5 uV
            s = 0.0
            if c == step:
                for j in range(step):
                    s += seg[j]
            else:
                for j in range(step):
                    s += seg[j] if okb[j] else 0.0
            mean = s / c
            q = 0.0
            if c == step:
                for j in range(step):
                    d = seg[j] - mean
                    q += d * d
            else:
                for j in range(step):
                    d = seg[j] - mean
                    q += d * d if okb[j] else 0.0
            sd[r, b] = np.sqrt(q / c)
    return sd, counts
