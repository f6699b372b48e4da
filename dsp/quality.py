"""Signal quality per epoch: missing samples, flat or railed electrodes, clipping, movement artefacts."""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, types
from numba.extending import overload

#: Below this SD (uV) an EEG epoch is flat: disconnected, or stuck at an amplifier rail.
FLAT_UV = 0.25
#: Above this share of samples sitting at the epoch's own extreme values the signal is clipped.
CLIPPED_FRACTION = 0.05
#: Above this share of missing (lost or non-finite) samples an epoch cannot be scored.
MISSING_FRACTION = 0.05
#: An epoch whose amplitude exceeds this many times that of its neighbours holds an artefact.
ARTEFACT_RATIO = 5.0
#: Neighbouring epochs on each side that set an epoch's expected amplitude.
CONTEXT_EPOCHS = 5
#: Above this accelerometer spread (g, SD of the three axes combined) within an epoch the head moved.
MOVEMENT_G = 0.02


def _sum_and_range(row, scratch):
    """Sum, minimum and maximum of ``row`` (1-D, float32 or float64), in one pass.

    Meaningful only if the sum comes out finite: a NaN or infinite sample makes it NaN or
    infinite, and then the caller takes the careful path. ``scratch`` is an int64 array of 2 or
    more, reused by the caller (no allocation per epoch). Compiled code gets a kernel for the kind
    of row (:func:`_sum_and_range_overload`); called from Python, this is numpy's sum, min and max.
    """
    return float(np.sum(row, dtype=np.float64)), float(np.min(row)), float(np.max(row))


def _ordered_range_kernel(int_type, magnitude_bits):
    """The one-pass sum and range for contiguous floats whose bit patterns are ``int_type``.

    A float's bit pattern, its magnitude bits flipped when negative, read as a signed integer,
    orders as the float does (-0 just below +0); the same flip undoes itself. Integer min/max
    reductions vectorise, float ones (which must mind NaN) do not, and cost three times as much.
    """
    magnitude = int_type(magnitude_bits)
    shift = int_type(8 * np.dtype(int_type).itemsize - 1)

    def kernel(row, scratch):
        bits = row.view(int_type)
        total = 0.0
        lo = magnitude
        hi = -magnitude - int_type(1)
        for i in range(row.shape[0]):
            total += row[i]
            b = bits[i]
            key = b ^ ((b >> shift) & magnitude)
            lo = min(lo, key)
            hi = max(hi, key)
        keys = scratch[:2].view(int_type)  # a float32 row's two keys fit in one int64
        keys[0] = lo ^ ((lo >> shift) & magnitude)
        keys[1] = hi ^ ((hi >> shift) & magnitude)
        extremes = keys.view(row.dtype)
        return total, float(extremes[0]), float(extremes[1])

    return kernel


def _float_range(row, scratch):
    """The sum and range of a row of any layout, four samples at a time (independent running
    values keep the processor busy)."""
    n = row.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    l0 = l1 = l2 = l3 = h0 = h1 = h2 = h3 = row[0]
    whole = n - n % 4
    for i in range(0, whole, 4):
        a, b, c, d = row[i], row[i + 1], row[i + 2], row[i + 3]
        s0 += a
        s1 += b
        s2 += c
        s3 += d
        l0 = a if a < l0 else l0
        l1 = b if b < l1 else l1
        l2 = c if c < l2 else l2
        l3 = d if d < l3 else l3
        h0 = a if a > h0 else h0
        h1 = b if b > h1 else h1
        h2 = c if c > h2 else h2
        h3 = d if d > h3 else h3
    for i in range(whole, n):
        a = row[i]
        s0 += a
        l0 = a if a < l0 else l0
        h0 = a if a > h0 else h0
    return (s0 + s1) + (s2 + s3), float(min(min(l0, l1), min(l2, l3))), float(max(max(h0, h1), max(h2, h3)))


_RANGE_KERNELS = {
    np.float64: _ordered_range_kernel(np.int64, 0x7FFFFFFFFFFFFFFF),
    np.float32: _ordered_range_kernel(np.int32, 0x7FFFFFFF),
}


@overload(_sum_and_range, jit_options={"fastmath": True})
def _sum_and_range_overload(row, scratch):
    """The compiled :func:`_sum_and_range`: over bit patterns for a contiguous float32 or float64
    row, else over the floats."""
    if isinstance(row, types.Array) and row.layout == "C":
        for dtype, kernel in _RANGE_KERNELS.items():
            if row.dtype == numba.from_dtype(np.dtype(dtype)):
                return kernel
    return _float_range


@njit(cache=True, fastmath=True)
def _spread_and_extremes(row, mean, lo, hi):
    """Sum of squared deviations from ``mean``, and how many samples equal ``lo`` or ``hi`` (all finite)."""
    ss = 0.0
    at_extremes = 0
    for i in range(row.shape[0]):
        v = row[i]
        ss += (v - mean) * (v - mean)
        at_extremes += (v == lo) | (v == hi)
    return ss, at_extremes


@njit(cache=True)
def _careful_quality(row, out):
    """:func:`epoch_quality` of one epoch that may hold non-finite samples (skipped)."""
    n = row.shape[0]
    count = 0
    total = 0.0
    lo = np.inf
    hi = -np.inf
    for i in range(n):
        v = row[i]
        if np.isfinite(v):
            count += 1
            total += v
            lo = min(lo, v)
            hi = max(hi, v)
    out[0] = (n - count) / n if n > 0 else 1.0
    out[1] = 0.0
    out[2] = 0.0
    if count == 0:
        return
    mean = total / count
    ss = 0.0
    at_extremes = 0
    for i in range(n):
        v = row[i]
        if np.isfinite(v):
            ss += (v - mean) * (v - mean)
            if v == lo or v == hi:
                at_extremes += 1
    out[1] = np.sqrt(ss / count)
    out[2] = at_extremes / count


@njit(cache=True, nogil=True)
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
    scratch = np.empty(2, dtype=np.int64)
    for e in range(n_epochs):
        row = epochs[e]
        if n == 0:
            out[e, 0] = 1.0
            continue
        total, lo, hi = _sum_and_range(row, scratch)
        if not np.isfinite(total):  # lost or non-finite samples: count and skip them
            _careful_quality(row, out[e])
            continue
        mean = total / n
        ss, at_extremes = _spread_and_extremes(row, mean, lo, hi)
        out[e, 1] = np.sqrt(ss / n)
        out[e, 2] = at_extremes / n
    return out


def scorable(quality: np.ndarray) -> np.ndarray:
    """Which epochs can be scored, from :func:`epoch_quality` output; shape (n_epochs,) bool."""
    return (
        (quality[:, 0] <= MISSING_FRACTION)
        & (quality[:, 1] >= FLAT_UV)
        & (quality[:, 2] <= CLIPPED_FRACTION)
    )


def scorable_epochs(epochs: np.ndarray) -> np.ndarray:
    """Which epochs can be scored on every channel.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        Signal in uV; NaN marks lost samples.

    Returns
    -------
    ndarray of bool, shape (n_epochs,)
    """
    return np.all([scorable(epoch_quality(ch)) for ch in epochs], axis=0)


def unscorable_reason(quality: np.ndarray) -> str:
    """Why most epochs fail :func:`scorable`, in a few words (for error messages)."""
    reasons = {
        "too many samples are missing or not finite": quality[:, 0] > MISSING_FRACTION,
        f"the signal is flat (SD below {FLAT_UV} uV: a disconnected or railed electrode)": quality[:, 1] < FLAT_UV,
        "the signal is clipped at the amplifier's range": quality[:, 2] > CLIPPED_FRACTION,
    }
    return max(reasons, key=lambda r: int(reasons[r].sum()))


@njit(cache=True)
def epoch_amplitudes(epochs):
    """Amplitude measures of every epoch that movement and muscle artefacts inflate.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal in uV; NaN marks a lost sample (skipped).

    Returns
    -------
    ndarray, shape (n_epochs, 2)
        Per epoch: RMS in uV of the differences between consecutive finite samples (it weights
        power by frequency squared: muscle bursts and fast swings count, slow waves hardly), and the
        largest absolute deviation in uV from the median of the finite samples (swings, electrode
        pops). NaN when fewer than 2 samples are finite.
    """
    n_epochs, n = epochs.shape
    out = np.full((n_epochs, 2), np.nan)
    for e in range(n_epochs):
        values = np.empty(n)
        count = 0
        diffs = 0
        ss = 0.0
        previous = np.nan
        for i in range(n):
            v = epochs[e, i]
            if np.isfinite(v):
                values[count] = v
                count += 1
                if np.isfinite(previous):
                    ss += (v - previous) * (v - previous)
                    diffs += 1
                previous = v
        if count < 2:
            continue
        middle = np.median(values[:count])
        peak = 0.0
        for i in range(count):
            peak = max(peak, abs(values[i] - middle))
        out[e, 0] = np.sqrt(ss / diffs)
        out[e, 1] = peak
    return out


def _local_median(values: np.ndarray, half: int) -> np.ndarray:
    """Median of the finite ``values`` within ``half`` epochs on each side, the epoch itself excluded."""
    out = np.full(values.shape, np.nan)
    for i in range(values.size):
        around = np.concatenate([values[max(0, i - half):i], values[i + 1:i + 1 + half]])
        around = around[np.isfinite(around)]
        if around.size:
            out[i] = np.median(around)
    return out


def movement_artefacts(epochs: np.ndarray, *, ratio: float = ARTEFACT_RATIO, context_epochs: int = CONTEXT_EPOCHS,
                       acc=None, acc_threshold_g: float = MOVEMENT_G) -> np.ndarray:
    """Which epochs hold a movement or other high-amplitude artefact.

    An epoch is flagged when its difference RMS (muscle bursts, fast swings) or its peak deviation
    from its median (large swings, electrode pops) exceeds ``ratio`` times the median of the same
    measure over the ``context_epochs`` epochs on each side; or, when an accelerometer is given,
    when the accelerometer moved more than ``acc_threshold_g`` in the epoch. The comparison is local
    because amplitude changes with the stage (N3 is 2-3 times N2) over minutes, while a movement
    lasts seconds; and relative, so it holds for any amplifier gain. Artefacts lasting as long as
    the context are not found by the EEG rule.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        EEG (or EOG) in uV, one epoch per row; NaN marks a lost sample. For several channels, call
        once per channel and combine with ``|``.
    ratio : float, optional
        Factor over the neighbours' median above which an epoch is flagged, by default 5.
    context_epochs : int, optional
        Neighbours on each side, by default 5 (2.5 min of 30-s epochs).
    acc : ndarray, shape (n_epochs, 3, n_acc_samples), optional
        Accelerometer axes in g over the same epochs.
    acc_threshold_g : float, optional
        Largest spread of the accelerometer within a still epoch, g: the square root of the sum of
        the three axes' variances (a posture change or head movement exceeds it; breathing and
        sensor noise, about 0.001-0.005 g, do not).

    Returns
    -------
    ndarray of bool, shape (n_epochs,)
        True for an artefact epoch.
    """
    measures = epoch_amplitudes(np.asarray(epochs, dtype=np.float64))
    flagged = np.zeros(len(measures), dtype=bool)
    for column in measures.T:
        context = _local_median(column, context_epochs)
        with np.errstate(invalid="ignore"):
            flagged |= np.nan_to_num(column > ratio * context, nan=False) & (context > 0)
    if acc is not None:
        acc = np.asarray(acc, dtype=np.float64)
        if acc.ndim != 3 or acc.shape[0] != len(measures):
            raise ValueError(f"acc must be shaped (n_epochs={len(measures)}, 3, n_samples), got {acc.shape}")
        spread = np.sqrt(np.nansum(np.nanvar(acc, axis=2), axis=1))
        flagged |= spread > acc_threshold_g
    return flagged
