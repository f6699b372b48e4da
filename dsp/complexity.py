"""Per-epoch complexity features: Hjorth parameters, entropies, zero crossings, fractal dimension.

Every kernel takes epochs shaped (n_epochs, n_samples) (or a spectrum shaped (n_epochs, n_freqs))
and returns one value per epoch, shape (n_epochs,), float64. Definitions follow antropy where it has
one, with the differences noted per function.

Non-finite input: callers pass finite samples (mask or interpolate lost samples first, see
``dsp.quality``). An epoch that contains any NaN or +-inf nevertheless gets NaN for every feature,
never a silently wrong number; the other epochs are unaffected. Features that are undefined for an
epoch (a constant signal's mobility, an epoch too short for the embedding) are NaN too.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _all_finite(row):
    for v in row:
        if not np.isfinite(v):
            return False
    return True


@njit(cache=True)
def _variance(v):
    """Population variance (ddof 0): two passes, about the first value so a constant gives exactly 0."""
    shifted = v - v[0]
    mean = shifted.mean()
    ss = 0.0
    for a in shifted:
        ss += (a - mean) * (a - mean)
    return ss / v.size


@njit(cache=True)
def hjorth(epochs):
    """Hjorth activity, mobility and complexity of every epoch.

    With ``dx``, ``ddx`` the first and second differences and ``var`` the population variance:
    activity ``var(x)``; mobility ``sqrt(var(dx) / var(x))``; complexity
    ``sqrt(var(ddx) / var(dx)) / mobility``, as antropy's ``hjorth_params``.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal in uV, finite, ``n_samples >= 3``.

    Returns
    -------
    activity : ndarray, shape (n_epochs,)
        Variance in uV^2.
    mobility : ndarray, shape (n_epochs,)
        In radians per sample (times ``fs`` for rad/s): a sine of angular frequency ``w`` rad/s gives
        ``2 sin(w / (2 fs))``, about ``w / fs``. NaN for a constant epoch.
    complexity : ndarray, shape (n_epochs,)
        Dimensionless; 1 for a pure sine, larger for broader spectra. NaN when undefined.
    """
    n_epochs, n = epochs.shape
    activity = np.full(n_epochs, np.nan)
    mobility = np.full(n_epochs, np.nan)
    complexity = np.full(n_epochs, np.nan)
    if n < 3:
        return activity, mobility, complexity
    for e in range(n_epochs):
        x = epochs[e].astype(np.float64)
        if not _all_finite(x):
            continue
        dx = x[1:] - x[:-1]
        ddx = dx[1:] - dx[:-1]
        v0, v1, v2 = _variance(x), _variance(dx), _variance(ddx)
        activity[e] = v0
        if v0 > 0:
            mobility[e] = np.sqrt(v1 / v0)
            if v1 > 0:
                complexity[e] = np.sqrt(v2 / v1) / mobility[e]
    return activity, mobility, complexity


@njit(cache=True)
def permutation_entropy(epochs, order=3, delay=1):
    """Normalised permutation entropy (Bandt & Pompe 2002) of every epoch.

    Each run ``x[i], x[i + delay], ..., x[i + (order - 1) delay]`` is reduced to its ordinal pattern
    (which of its values is smallest, next, ...); the entropy of the patterns' frequencies is divided
    by ``log(order!)``. Equal values rank in time order (a stable sort), as antropy's
    ``perm_entropy(normalize=True)`` does on its small sorts.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal, any unit, finite.
    order : int, optional
        Pattern length, 2..8, by default 3.
    delay : int, optional
        Lag between a pattern's samples, in samples, by default 1.

    Returns
    -------
    ndarray, shape (n_epochs,)
        0 (one pattern only, e.g. a monotonic signal) .. 1 (all ``order!`` patterns equally often,
        e.g. white noise). NaN when an epoch has fewer than ``(order - 1) * delay + 1`` samples.
    """
    if order < 2 or order > 8 or delay < 1:
        raise ValueError("permutation_entropy needs 2 <= order <= 8 and delay >= 1")
    n_epochs, n = epochs.shape
    n_patterns = 1
    for i in range(2, order + 1):
        n_patterns *= i
    out = np.full(n_epochs, np.nan)
    n_runs = n - (order - 1) * delay
    if n_runs < 1:
        return out
    counts = np.zeros(n_patterns, dtype=np.int64)
    for e in range(n_epochs):
        x = epochs[e]
        if not _all_finite(x):
            continue
        counts[:] = 0
        for i in range(n_runs):
            # Lehmer code of the pattern: for each position, how many later values rank below it
            code = 0
            for a in range(order):
                va = x[i + a * delay]
                below = 0
                for b in range(a + 1, order):
                    if x[i + b * delay] < va:
                        below += 1
                code = code * (order - a) + below
            counts[code] += 1
        h = 0.0
        for c in counts:
            if c > 0:
                p = c / n_runs
                h -= p * np.log(p)
        out[e] = h / np.log(n_patterns)
    return out


@njit(cache=True)
def spectral_entropy(psd):
    """Normalised Shannon entropy of each power spectrum.

    The spectrum is treated as a distribution over its bins, ``p = psd / psd.sum()``; the entropy is
    divided by ``log(n_freqs)``. Pass the bins to consider (e.g. slice 0.5-30 Hz out of
    :func:`dsp.spectral.epoch_psd`); antropy's ``spectral_entropy(normalize=True)`` uses every bin
    from 0 Hz to Nyquist.

    Parameters
    ----------
    psd : ndarray, shape (n_epochs, n_freqs)
        Power spectral density (any unit, e.g. uV^2/Hz) on a uniform frequency grid.

    Returns
    -------
    ndarray, shape (n_epochs,)
        0 (all power in one bin) .. 1 (flat spectrum). NaN for a row with a negative or non-finite
        value, with no power at all, or when ``n_freqs < 2``.
    """
    n_epochs, n_freqs = psd.shape
    out = np.full(n_epochs, np.nan)
    if n_freqs < 2:
        return out
    for e in range(n_epochs):
        row = psd[e]
        if not _all_finite(row) or row.min() < 0:
            continue
        total = row.sum()
        if total <= 0:
            continue
        h = 0.0
        for v in row:
            if v > 0:
                p = v / total
                h -= p * np.log(p)
        out[e] = h / np.log(n_freqs)
    return out


@njit(cache=True)
def zero_crossing_rate(epochs, fs):
    """How often each epoch crosses its own mean, in crossings per second.

    Samples are split into below the epoch mean (negative after removing it) and the rest; a
    crossing is a change between consecutive samples. Removing the mean keeps an amplifier's DC
    offset from hiding every crossing.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal, any unit, finite, ``n_samples >= 2``.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (n_epochs,)
        Crossings per second over the ``(n_samples - 1) / fs`` s the epoch spans: about ``2 f`` for
        a sine of ``f`` Hz. NaN when ``n_samples < 2``.
    """
    n_epochs, n = epochs.shape
    out = np.full(n_epochs, np.nan)
    if n < 2:
        return out
    for e in range(n_epochs):
        x = epochs[e]
        if not _all_finite(x):
            continue
        mean = x.astype(np.float64).mean()
        crossings = 0
        below = x[0] - mean < 0
        for i in range(1, n):
            now = x[i] - mean < 0
            if now != below:
                crossings += 1
            below = now
        out[e] = crossings * fs / (n - 1)
    return out


@njit(cache=True)
def higuchi_fd(epochs, kmax=10):
    """Higuchi fractal dimension of every epoch (Higuchi 1988).

    For each scale ``k = 1..kmax`` and offset ``m = 0..k-1`` the curve length of the subsampled series
    ``x[m], x[m + k], ...`` is ``L_m(k) = sum |x[m + j k] - x[m + (j - 1) k]| (N - 1) / (n_m k) / k``
    over its ``n_m = floor((N - 1 - m) / k)`` steps; the dimension is the least-squares slope of
    ``log(mean_m L_m(k))`` against ``log(1 / k)``. Higuchi rather than Petrosian because it uses the
    amplitudes, not only the signs of the differences. Differs from antropy's ``higuchi_fd``, which
    sums one step fewer per offset.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal, any unit, finite.
    kmax : int, optional
        Largest scale in samples, by default 10; needs ``n_samples >= 2 * kmax``.

    Returns
    -------
    ndarray, shape (n_epochs,)
        About 1 for a smooth curve (a slow sine), about 2 for white noise. NaN for a constant epoch
        or one shorter than ``2 * kmax`` samples.
    """
    if kmax < 2:
        raise ValueError("higuchi_fd needs kmax >= 2")
    n_epochs, n = epochs.shape
    out = np.full(n_epochs, np.nan)
    if n < 2 * kmax:
        return out
    log_inv_k = np.empty(kmax)
    log_len = np.empty(kmax)
    for e in range(n_epochs):
        x = epochs[e]
        if not _all_finite(x):
            continue
        ok = True
        for k in range(1, kmax + 1):
            total = 0.0
            for m in range(k):
                n_m = (n - 1 - m) // k
                s = 0.0
                for j in range(1, n_m + 1):
                    s += abs(x[m + j * k] - x[m + (j - 1) * k])
                total += s * (n - 1) / (n_m * k) / k
            mean_len = total / k
            if mean_len <= 0:
                ok = False
                break
            log_inv_k[k - 1] = np.log(1.0 / k)
            log_len[k - 1] = np.log(mean_len)
        if not ok:
            continue
        mx, my = log_inv_k.mean(), log_len.mean()
        sxy = 0.0
        sxx = 0.0
        for i in range(kmax):
            sxy += (log_inv_k[i] - mx) * (log_len[i] - my)
            sxx += (log_inv_k[i] - mx) * (log_inv_k[i] - mx)
        out[e] = sxy / sxx
    return out
