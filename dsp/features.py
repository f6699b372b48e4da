"""Per-epoch features that sleep stages differ in, from EEG and EMG.

EEG features are defined on 0.5-22 Hz, below the Nyquist frequency of every rate the stager
accepts (>= 50 Hz). EEG is first brought to a working rate of 50-64 Hz (:func:`working_rate`,
:func:`to_working_rate`): by keeping every ``fs // 50``-th sample after an anti-alias filter when
that lands in 50-64 Hz (256 Hz -> 51.2 Hz, 250 or 200 or 100 Hz -> 50 Hz), else by rational
resampling to 50 Hz. Bands are in Hz, so a 50-Hz and a 256-Hz recording give comparable numbers,
and a 256-Hz night costs little more to stage than a 50-Hz one.

- ``delta_log_power``: log10 power in 0.5-4 Hz (uV^2). The only EEG feature that depends on the
  amplifier's gain and the electrode distance; the stager estimates that offset per recording.
- ``theta_share``, ``alpha_share``, ``sigma_share``, ``beta_share``: log10 of the power in 4-8,
  8-12, 12-16 and 16-22 Hz as a share of the 0.5-22 Hz power. Shares do not depend on gain.
- ``spectral_slope``: slope of log10 power against log10 frequency over 2-20 Hz (steeper in deeper sleep).
- ``permutation_entropy``: of order 3 at the working rate's sample spacing (15.6-20 ms), 0..1 (lower
  in deeper sleep), on the working-rate signal minus its 0.9-s triangular moving average (half
  amplitude at 0.5 Hz, :func:`entropy_input`); the anti-alias filter bounds it above (at 50 Hz
  native, the recording's own filters do). A finite filter of a few operations per sample, where a
  zero-phase Butterworth band-pass cost more than all the rest of the features.

Spectra are Welch's, with Hann segments of about 4 s that tile the epoch (:func:`welch_seconds`).
:func:`working_rate_features` computes the features for a whole recording a chunk of epochs at a
time (decimation, high-pass and spectra of a chunk stay in the CPU caches, memory stays at a few
MB, and the recording may be read from a file as it goes), equal to one pass over the whole
recording.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from .filters import moving_average_width, triangle_highpass
from .quality import epoch_quality
from .resample import (_cached_decimator, decimate, design_polyphase, fir_decimate, polyphase_resample,
                       rational_factors, resample)
from .spectral import band_powers, epoch_psd
from .stages import EPOCH_SECONDS

EEG_FEATURES = ("delta_log_power", "theta_share", "alpha_share", "sigma_share", "beta_share",
                "spectral_slope", "permutation_entropy")
#: Which EEG features shift with the recording's gain (log10 power: +2 log10(a) for a signal scaled by a).
GAIN_DEPENDENT = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
_SLOPE_HZ = (2.0, 20.0)
#: Rate (Hz) the EEG features are computed at when no integer decimation factor lands in
#: :data:`WORKING_RATES_HZ` (:func:`working_rate`).
WORKING_RATE_HZ = 50.0
#: Working rates (Hz) an integer decimation factor may land in.
WORKING_RATES_HZ = (50.0, 64.0)
#: Welch segments of about this length (s) for the EEG spectra (0.25-Hz resolution).
WELCH_SECONDS = 4.0
_EEG_BANDS_HZ = np.array([[0.5, 4.0], [4.0, 8.0], [8.0, 12.0], [12.0, 16.0], [16.0, 22.0]])
#: Below this frequency (Hz, half amplitude) the signal is removed before the permutation entropy,
#: by a zero-phase triangular moving-average high-pass (:func:`dsp.filters.triangle_highpass`);
#: above, the working rate's anti-alias filter bounds the band.
_ENTROPY_HIGHPASS_HZ = 0.5
EMG_BAND_HZ = (10.0, 100.0)
#: Epochs whose features :func:`working_rate_features` computes at once: bounds its memory (a few
#: MB) whatever the recording's length, and keeps the working data in the CPU caches.
CHUNK_EPOCHS = 40
#: Context each side of a chunk (s) for the entropy's high-pass, which reaches 0.9 s each way: with
#: it, chunked features equal those of one pass over the whole recording to rounding.
CONTEXT_SECONDS = 1.0


def working_rate(fs: float) -> tuple:
    """The rate the EEG features of a ``fs``-Hz recording are computed at, and how it is reached.

    Parameters
    ----------
    fs : float
        Sample rate in Hz (>= 50).

    Returns
    -------
    rate : float
        Working rate in Hz: ``fs / (fs // 50)`` when that is at most 64 Hz and a 30-s epoch is a
        whole number of its samples (e.g. 256 -> 51.2, 250 -> 50, 100 -> 50), else 50.
    down : int
        The integer decimation factor (1: ``fs`` itself), or 0 when the recording is resampled
        (:func:`dsp.resample.resample`) to 50 Hz instead.
    """
    down = int(fs // WORKING_RATES_HZ[0])
    n_per = EPOCH_SECONDS * fs
    if down >= 1 and fs / down <= WORKING_RATES_HZ[1] and n_per == round(n_per) and round(n_per) % down == 0:
        return fs / down, down
    return WORKING_RATE_HZ, 0


@lru_cache(maxsize=16)
def welch_seconds(n_samples: int, fs: float) -> float:
    """Welch segment length (s) for epochs of ``n_samples`` at ``fs``: the length nearest
    :data:`WELCH_SECONDS` whose half-overlapping segments tile the epoch exactly (4 s at 50 Hz,
    3.75 s at 51.2 Hz), or :data:`WELCH_SECONDS` when none does."""
    best = None
    for n_segments in range(1, 64):  # n_segments half-overlapping segments span (n_segments + 1) halves
        length = 2 * n_samples / (n_segments + 1)
        if length == int(length) and length <= n_samples:
            seconds = length / fs
            if best is None or abs(seconds - WELCH_SECONDS) < abs(best - WELCH_SECONDS):
                best = seconds
    return best if best is not None and abs(best - WELCH_SECONDS) <= 0.5 else WELCH_SECONDS


def fill_missing(epochs: np.ndarray) -> np.ndarray:
    """Replace a few lost samples (NaN) by their epoch's mean so spectra stay defined.

    Only for feature extraction, never for output data. An all-missing epoch becomes zeros.

    Parameters
    ----------
    epochs : ndarray, shape (..., n_samples)

    Returns
    -------
    ndarray, same shape
    """
    bad = ~np.isfinite(epochs)
    if not bad.any():
        return epochs
    finite = np.where(bad, 0.0, epochs)
    counts = np.maximum((~bad).sum(axis=-1, keepdims=True), 1)
    return np.where(bad, finite.sum(axis=-1, keepdims=True) / counts, epochs)


@njit(cache=True, nogil=True)
def hold_missing(x, last):
    """Replace each non-finite sample by the last finite one before it, in place.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples)
        Signal; NaN marks lost samples.
    last : ndarray, shape (n_rows,)
        Last finite value of each row before ``x`` (0 at the start of a stream); updated in place.

    Returns
    -------
    ndarray
        ``x``, filled.
    """
    for r in range(x.shape[0]):
        held = last[r]
        for i in range(x.shape[1]):
            if np.isfinite(x[r, i]):
                held = x[r, i]
            else:
                x[r, i] = held
        last[r] = held
    return x


def to_working_rate(eeg: np.ndarray, fs: float) -> np.ndarray:
    """EEG at its working rate (:func:`working_rate`) for feature extraction, lost samples held.

    Lost samples (NaN) are replaced by the last value before them so the anti-alias filter does not
    spread them; epochs with more than a few lost samples are unscorable anyway.

    Parameters
    ----------
    eeg : ndarray, shape (n_channels, n_samples)
        EEG in uV at ``fs``.
    fs : float
        Sample rate in Hz (>= 50).

    Returns
    -------
    ndarray, shape (n_channels, ceil(n_samples * rate / fs)), float64
        ``rate`` the working rate.
    """
    rate, down = working_rate(fs)
    rows = []
    for row in eeg:  # one channel at a time: a whole night in float64 is large
        x = np.array(row, dtype=np.float64)[None, :]
        finite = np.isfinite(x[0])
        hold_missing(x, np.array([x[0, np.argmax(finite)] if finite.any() else 0.0]))
        if down == 1:
            rows.append(x[0])
        elif down:
            rows.append(decimate(x[0], down))
        else:
            rows.append(resample(x, fs, rate)[0])
    return np.array(rows)


@njit(cache=True, nogil=True)
def permutation_entropy3(epochs, delay):
    """Normalised permutation entropy of order 3 of every epoch.

    :func:`dsp.complexity.permutation_entropy` with ``order=3`` (same patterns, ties ranked in time
    order, same result), written out for the three-sample patterns the stager uses: each pattern is
    counted in its own register, so the loop has no memory round trip and vectorises.

    Parameters
    ----------
    epochs : ndarray, shape (n_epochs, n_samples)
        Signal, any unit, finite.
    delay : int
        Lag between a pattern's samples, in samples (>= 1).

    Returns
    -------
    ndarray, shape (n_epochs,)
        0..1; NaN when an epoch has fewer than ``2 * delay + 1`` samples.
    """
    n_epochs, n = epochs.shape
    out = np.full(n_epochs, np.nan)
    n_runs = n - 2 * delay
    if n_runs < 1:
        return out
    for e in range(n_epochs):
        row = epochs[e]
        # a pattern's three samples from three slices: plain indices, so the loop vectorises
        first, second, third = row[:n_runs], row[delay : delay + n_runs], row[2 * delay : 2 * delay + n_runs]
        c0 = c1 = c2 = c3 = c4 = c5 = np.int32(0)  # 32-bit counts: twice as many per vector register
        for i in range(n_runs):
            a, b, c = first[i], second[i], third[i]
            # Lehmer code: how many later samples rank below the first, then below the second
            code = 2 * (np.int32(b < a) + np.int32(c < a)) + np.int32(c < b)
            c0 += np.int32(code == 0)
            c1 += np.int32(code == 1)
            c2 += np.int32(code == 2)
            c3 += np.int32(code == 3)
            c4 += np.int32(code == 4)
            c5 += np.int32(code == 5)
        h = 0.0
        for count in (c0, c1, c2, c3, c4, c5):
            if count > 0:
                p = count / n_runs
                h -= p * np.log(p)
        out[e] = h / np.log(6)
    return out


@lru_cache(maxsize=8)
def _entropy_width(fs: float) -> int:
    return moving_average_width(fs, _ENTROPY_HIGHPASS_HZ)


@lru_cache(maxsize=8)
def _slope_design(n_freqs: int, df: float) -> tuple:
    """Bins of the slope fit (2-20 Hz) on a grid of ``n_freqs`` bins ``df`` Hz apart, and their
    log10 frequencies minus the mean of those."""
    freqs = np.arange(n_freqs) * df
    fit = np.flatnonzero((freqs >= _SLOPE_HZ[0]) & (freqs <= _SLOPE_HZ[1]))
    logf = np.log10(freqs[fit])
    centred = logf - logf.mean()
    for a in (fit, centred):
        a.setflags(write=False)
    return fit, centred


@njit(cache=True, nogil=True)
def spectral_features(psd, freqs, edges, fit, centred, out):
    """The spectral EEG features of every epoch, from its power spectrum, into ``out``.

    Parameters
    ----------
    psd : ndarray, shape (n_epochs, n_freqs)
        Power spectral density in uV^2/Hz on the uniform grid ``freqs``.
    freqs : ndarray, shape (n_freqs,)
        Frequencies in Hz, ascending, evenly spaced.
    edges : ndarray, shape (n_bands, 2)
        ``[low, high)`` of each band in Hz, the delta band first.
    fit : ndarray of int, shape (n_fit,)
        Bins of the slope fit.
    centred : ndarray, shape (n_fit,)
        Their log10 frequencies minus the mean of those.
    out : ndarray, shape (n_epochs, n_bands + 1)
        Filled with the log10 delta power (uV^2), the log10 share of each other band in the total
        of all bands (powers by the rectangle rule, 1e-12 added to each), and the least-squares
        slope of log10(psd + 1e-12) against log10 frequency over ``fit``.
    """
    n_epochs, n_freqs = psd.shape
    n_bands = edges.shape[0]
    df = freqs[1] - freqs[0] if n_freqs > 1 else 1.0
    power = np.empty(n_bands)
    spread = 0.0
    for i in range(fit.shape[0]):
        spread += centred[i] * centred[i]
    first = np.zeros(n_bands, dtype=np.int64)  # each band's bins, first .. last - 1 (ascending grid)
    last = np.zeros(n_bands, dtype=np.int64)
    for b in range(n_bands):
        first[b] = n_freqs
        for j in range(n_freqs):
            if freqs[j] >= edges[b, 0] and freqs[j] < edges[b, 1]:
                first[b] = min(first[b], j)
                last[b] = j + 1
    for e in range(n_epochs):
        total = 0.0
        for b in range(n_bands):
            p = 0.0
            for j in range(first[b], last[b]):
                p += psd[e, j]
            power[b] = p * df + 1e-12
            total += power[b]
        out[e, 0] = np.log10(power[0])
        for b in range(1, n_bands):
            out[e, b] = np.log10(power[b] / total)
        # sum(centred) is 0, so the mean of log10 psd drops out of the regression's numerator
        numerator = 0.0
        for i in range(fit.shape[0]):
            numerator += np.log10(psd[e, fit[i]] + 1e-12) * centred[i]
        out[e, n_bands] = numerator / spread


def _channel_epoch_features(epochs: np.ndarray, band: np.ndarray, fs: float) -> np.ndarray:
    """Features of one channel's epochs (n_epochs, n_samples), given the same epochs band-passed."""
    freqs, psd = epoch_psd(epochs, fs, welch_seconds(epochs.shape[1], fs))
    fit, centred = _slope_design(freqs.size, float(freqs[1] - freqs[0]))
    out = np.empty((epochs.shape[0], len(EEG_FEATURES)))
    spectral_features(psd, freqs, _EEG_BANDS_HZ, fit, centred, out)
    # consecutive samples at a working rate (16-20 ms apart); about 20 ms at any other rate
    out[:, -1] = permutation_entropy3(band, max(1, int(round(fs / WORKING_RATE_HZ))))
    return out


def entropy_input(x: np.ndarray, fs: float) -> np.ndarray:
    """The signal the permutation entropy is taken of: ``x`` without what lies below 0.5 Hz.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        EEG in uV at ``fs``, finite.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (n_samples,), float64
        :func:`dsp.filters.triangle_highpass` of ``x``: equal to that of a longer stretch holding
        ``x`` except within 0.9 s of either end.
    """
    return triangle_highpass(np.ascontiguousarray(x, dtype=np.float64), _entropy_width(fs))


def eeg_features(epochs: np.ndarray, fs: float, highpassed: np.ndarray | None = None) -> np.ndarray:
    """EEG features of every epoch, averaged over channels.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        EEG in uV; NaN marks lost samples (filled for the spectrum only).
    fs : float
        Sample rate in Hz (>= 50).
    highpassed : ndarray, shape (n_channels, n_epochs, n_samples), optional
        The same epochs through :func:`entropy_input` with context around them (a stream's
        previous samples, say); by default each channel's epochs are joined end to end and
        high-passed as they are.

    Returns
    -------
    ndarray, shape (n_epochs, len(EEG_FEATURES))
        Columns as :data:`EEG_FEATURES` (log10 units, except the entropy, 0..1).
    """
    n_ch, n_ep, n_s = epochs.shape
    filled = fill_missing(epochs)
    out = np.empty((n_ch, n_ep, len(EEG_FEATURES)))
    for c in range(n_ch):
        if highpassed is None:  # the high-pass runs over the channel's epochs joined end to end
            band = entropy_input(filled[c].reshape(n_ep * n_s), fs).reshape(n_ep, n_s)
        else:
            band = highpassed[c]
        out[c] = _channel_epoch_features(filled[c], band, fs)
    return out.mean(axis=0)


def _has_nonfinite(x: np.ndarray) -> bool:
    """Whether ``x`` holds a NaN or infinite sample: its sum is then not finite (one pass, no
    temporary array). A sum that overflows counts too, which is harmless: holding lost samples
    leaves finite ones as they are."""
    return not np.isfinite(np.add.reduce(x))


def _finite_index(x: np.ndarray, last: bool) -> int:
    """Index of the first (or with ``last``, the last) finite sample of ``x``; -1 if none. The end
    sample is looked at first: it is finite unless samples were lost just there."""
    if x.size == 0:
        return -1
    end = x.size - 1 if last else 0
    if np.isfinite(x[end]):
        return end
    finite = np.flatnonzero(np.isfinite(x))
    return -1 if finite.size == 0 else int(finite[-1] if last else finite[0])


def _first_finite_value(eeg, channel: int, n_samples: int) -> float:
    """The first finite sample of a channel (0 if none): what its leading lost samples are held at."""
    step = 1 << 20
    for a in range(0, n_samples, step):
        x = np.asarray(eeg[channel, a : min(n_samples, a + step)])
        i = _finite_index(x, False)
        if i >= 0:
            return float(x[i])
    return 0.0


def default_workers() -> int:
    """Threads the features use by default: ``NUMBA_NUM_THREADS`` when set (a cohort's worker
    processes set it to 1, so N processes do not each start threads on N cores), else the CPU
    cores this process may run on (its affinity set where the OS reports one)."""
    given = os.environ.get("NUMBA_NUM_THREADS", "")
    if given.strip().isdigit() and int(given) > 0:
        return int(given)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        return os.cpu_count() or 1


def working_rate_features(eeg, fs: float, n_epochs: int, workers: int = 1) -> tuple:
    """Features and native-rate quality of each channel's first ``n_epochs`` 30-s epochs.

    The same numbers as :func:`epoch_quality` of each channel's epochs and :func:`eeg_features` of
    :func:`to_working_rate` of its whole epochs (before averaging over channels), computed
    :data:`CHUNK_EPOCHS` epochs at a time with :data:`CONTEXT_SECONDS` of context each side, one
    channel at a time: memory stays at a few MB whatever the recording's length, and ``eeg`` may be
    a reader that loads samples only when sliced (each stretch is asked for channel after channel).

    Parameters
    ----------
    eeg : ndarray or array-like reader, shape (n_channels, n_samples)
        EEG in uV at ``fs`` (float32 or float64); NaN marks lost samples. Anything with ``shape``
        whose ``eeg[channel, start:stop]`` gives an ndarray will do (e.g. a memory map).
    fs : float
        Sample rate in Hz (>= 50).
    n_epochs : int
        Whole epochs to compute (at most ``n_samples // (30 * fs)``); later samples are ignored.
    workers : int, optional
        Threads that share the chunks, by default 1: each takes the next chunk not yet taken.
        The kernels release the GIL, so on as many free cores the time falls nearly as many
        times. The numbers do not depend on it. A reader that is not an ndarray is read by one
        thread.

    Returns
    -------
    features : ndarray, shape (n_channels, n_epochs, len(EEG_FEATURES))
    quality : ndarray, shape (n_channels, n_epochs, 3)
        :func:`dsp.quality.epoch_quality` of each channel's epochs at the native rate.
    """
    n_per = int(round(EPOCH_SECONDS * fs))
    rate, factor = working_rate(fs)
    n_work = int(round(EPOCH_SECONDS * rate))
    n_used = n_epochs * n_per  # the resampler sees whole epochs only; later samples count as zero
    if factor > 1:
        filt = _WorkingFilter(factor, taps=_cached_decimator(factor, ("kaiser", 5.0)))
    elif factor == 0:
        up, down = rational_factors(fs, rate)
        poly, half_len = design_polyphase(up, down)
        filt = _WorkingFilter(factor, poly=poly, up=up, down=down, half_len=half_len)
    else:
        filt = _WorkingFilter(factor)
    context = int(round(CONTEXT_SECONDS * rate))
    plan = []  # per chunk: its epochs, the working samples computed (with context), the input read
    for e0 in range(0, n_epochs, CHUNK_EPOCHS):
        e1 = min(n_epochs, e0 + CHUNK_EPOCHS)
        w0, w1 = max(0, e0 * n_work - context), min(n_epochs * n_work, e1 * n_work + context)
        k0, k1 = filt.input_span(w0, w1, n_used)
        plan.append((e0, e1, w0, w1, min(k0, e0 * n_per), max(k1, e1 * n_per)))
    n_channels = eeg.shape[0]
    features = np.empty((n_channels, n_epochs, len(EEG_FEATURES)))
    quality = np.empty((n_channels, n_epochs, 3))
    args = (eeg, plan, filt, n_per, n_work, n_used, rate, features, quality)
    workers = max(1, min(int(workers), len(plan))) if isinstance(eeg, np.ndarray) else 1
    if workers == 1:
        _chunk_features(*args, iter(range(len(plan))))
        return features, quality
    # Each thread takes the next chunk not yet taken (next() on one count is atomic): a thread on a
    # busier core takes fewer chunks, where an even split would wait for it.
    order = itertools.count()
    with ThreadPoolExecutor(workers - 1) as pool:
        others = [pool.submit(_chunk_features, *args, order) for _ in range(workers - 1)]
        _chunk_features(*args, order)
        for done in others:
            done.result()  # raises what the worker raised
    return features, quality


@dataclass(frozen=True)
class _WorkingFilter:
    """How :func:`working_rate_features` reaches the working rate: decimation by ``factor`` through
    ``taps``, or (``factor`` 0) polyphase resampling (``poly``, ``up``, ``down``, ``half_len``), or
    (``factor`` 1) none."""

    factor: int
    taps: np.ndarray | None = None
    poly: np.ndarray | None = None
    up: int = 0
    down: int = 0
    half_len: int = 0

    def input_span(self, w0: int, w1: int, n_used: int) -> tuple:
        """The input samples ``k0 .. k1 - 1`` under the filter of working-rate samples ``w0 .. w1 - 1``
        (of the first ``n_used`` input samples)."""
        if self.factor > 1:
            half = (self.taps.size - 1) // 2
            return max(0, w0 * self.factor - half), min(n_used, (w1 - 1) * self.factor + half + 1)
        if self.factor == 0:
            return (max(0, (w0 * self.down + self.half_len) // self.up - self.poly.shape[1] + 1),
                    min(n_used, ((w1 - 1) * self.down + self.half_len) // self.up + 1))
        return w0, w1

    def apply(self, x: np.ndarray, k0: int, w0: int, w1: int) -> np.ndarray:
        """Working-rate samples ``w0 .. w1 - 1`` from the input stretch ``x`` that starts at input
        sample ``k0``."""
        if self.factor > 1:
            return fir_decimate(x, self.taps, self.factor, k0, w0, w1 - w0)
        if self.factor == 0:
            return polyphase_resample(x[None, :], self.poly, self.down, self.half_len, k0, w0, w1 - w0)[0]
        return np.asarray(x[w0 - k0 : w1 - k0], dtype=np.float64)


def _held_before(eeg, channel: int, stop: int, n_used: int) -> float:
    """The value a lost sample at ``stop`` of a channel is held at: the last finite sample before
    it, else the channel's first finite sample (0 if none). Looks back over a few samples first,
    then over stretches four times longer each time."""
    size = 256
    while stop > 0:
        x = np.asarray(eeg[channel, max(0, stop - size) : stop])
        i = _finite_index(x, True)
        if i >= 0:
            return float(x[i])
        stop, size = max(0, stop - size), min(4 * size, 1 << 20)
    return _first_finite_value(eeg, channel, n_used)


def _chunk_features(eeg, plan, filt, n_per, n_work, n_used, rate, features, quality, order) -> None:
    """:func:`working_rate_features` of the chunks ``plan[i]`` for ``i`` from the iterator
    ``order`` (ascending, until past the last chunk), into ``features`` and ``quality``."""
    width = _entropy_width(rate)
    n_channels = eeg.shape[0]
    held = np.full(n_channels, np.nan)  # per channel, the value a lost sample before the chunk is held at
    previous = -1
    for index in order:
        if index >= len(plan):
            break
        e0, e1, w0, w1, k0, k1 = plan[index]
        for c in range(n_channels):  # chunk by chunk, then channel by channel: a reader reads each stretch once
            x = np.asarray(eeg[c, k0:k1])
            if x.dtype not in (np.float32, np.float64):
                x = x.astype(np.float64)
            if index == 0:  # leading lost samples are held at the channel's first finite value
                i = _finite_index(x, False)
                held[c] = x[i] if i >= 0 else _first_finite_value(eeg, c, n_used)
            elif index != previous + 1:  # not carried over from the chunk before: looked up
                held[c] = _held_before(eeg, c, k0, n_used)
            start = held[c : c + 1].copy()
            if index + 1 < len(plan):  # the value held just before the next chunk's first sample
                i = _finite_index(x[: plan[index + 1][4] - k0], True)
                if i >= 0:
                    held[c] = x[i]
            # The anti-alias filter reads the chunk first: its arithmetic hides the wait for the
            # samples to arrive from memory, and epoch_quality then finds them in the CPU caches.
            working = filt.apply(x, k0, w0, w1)
            body = slice(e0 * n_per - k0, e1 * n_per - k0)
            quality[c, e0:e1] = epoch_quality(x[body].reshape(e1 - e0, n_per))
            # lost samples are held so the filters do not spread them, and the chunk filtered
            # again: the chunk's own epochs have been looked at by epoch_quality, only the context
            # around them is left to look at
            if (quality[c, e0:e1, 0].any() or _has_nonfinite(x[: body.start])
                    or _has_nonfinite(x[body.stop :])):
                x = x.astype(np.float64)[None, :]
                hold_missing(x, start)
                working = filt.apply(x[0], k0, w0, w1)
            band = triangle_highpass(working, width)
            keep = slice(e0 * n_work - w0, e1 * n_work - w0)
            features[c, e0:e1] = _channel_epoch_features(working[keep].reshape(e1 - e0, n_work),
                                                         band[keep].reshape(e1 - e0, n_work), rate)
        previous = index


def emg_log_power(epochs: np.ndarray, fs: float) -> np.ndarray:
    """Log10 EMG power (uV^2) in 10-100 Hz (capped at 0.45 fs) per epoch, averaged over channels.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        EMG in uV.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (n_epochs,)
    """
    n_ch, n_ep, n_s = epochs.shape
    freqs, psd = epoch_psd(fill_missing(epochs).reshape(n_ch * n_ep, n_s), fs)
    band = np.array([[EMG_BAND_HZ[0], min(EMG_BAND_HZ[1], 0.45 * fs)]])
    return np.log10(band_powers(psd, freqs, band)[:, 0] + 1e-12).reshape(n_ch, n_ep).mean(axis=0)
