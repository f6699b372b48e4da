"""Rational-factor resampling (e.g. 250 or 256 Hz to a 100-Hz working rate), offline and streaming,
and integer-factor decimation (e.g. 256 Hz to 51.2 Hz: every fifth sample, after an anti-alias filter).

The anti-alias low-pass is the one :func:`scipy.signal.resample_poly` designs (a Kaiser-windowed
sinc, :func:`scipy.signal.firwin`; designed here with numpy alone, so resampling does not import
scipy's signal package, which takes most of a second), applied in polyphase form: each output
sample is one dot product of the input with the filter phase that lands on it, so the signal is
never upsampled and nothing is computed that is then thrown away. Output sample ``n`` sits at
time ``n / fs_out`` s, the first input sample at 0 s; samples before the start (and after the end,
for a finished signal) count as zero, as in scipy's default ``padtype="constant"``.

:func:`decimate` keeps every ``down``-th sample after a shorter windowed sinc (half as long as
resample_poly's, so a wider transition band) and computes only the kept outputs, eight at a time:
about four times less work per output than resampling 256 Hz to 50 Hz, for a feature extractor
that needs the band well below the new Nyquist frequency.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from numba import njit

#: Largest up or down factor accepted; the filter has 20 * max(up, down) + 1 taps.
MAX_FACTOR = 1000


def rational_factors(fs_in: float, fs_out: float) -> tuple[int, int]:
    """Smallest integers ``up``, ``down`` with ``fs_out / fs_in == up / down``.

    Parameters
    ----------
    fs_in, fs_out : float
        Input and output sample rates in Hz.

    Returns
    -------
    up, down : int
        Coprime factors, each at most :data:`MAX_FACTOR`.

    Raises
    ------
    ValueError
        If a rate is not positive, or the ratio is not a fraction with factors up to MAX_FACTOR.
    """
    if not (fs_in > 0 and fs_out > 0):
        raise ValueError(f"sample rates must be positive, got {fs_in} and {fs_out}")
    ratio = Fraction(fs_out / fs_in).limit_denominator(MAX_FACTOR)
    if ratio.numerator > MAX_FACTOR or abs(float(ratio) - fs_out / fs_in) > 1e-9 * fs_out / fs_in:
        raise ValueError(f"{fs_in} Hz -> {fs_out} Hz is not a ratio of integers up to {MAX_FACTOR}")
    return ratio.numerator, ratio.denominator


def windowed_sinc(n_taps: int, cutoff: float, window=("kaiser", 5.0)) -> np.ndarray:
    """Linear-phase FIR low-pass by the window method, unit gain at 0 Hz.

    The same filter as :func:`scipy.signal.firwin` (``numtaps=n_taps, cutoff=cutoff``, default
    ``pass_zero`` and ``scale``); a Kaiser window is computed with numpy, any other window spec is
    handed to :func:`scipy.signal.get_window`.

    Parameters
    ----------
    n_taps : int
        Filter length (odd for a symmetric filter centred on a tap).
    cutoff : float
        Cut-off as a fraction of the Nyquist frequency, 0..1.
    window : str or tuple, optional
        ``("kaiser", beta)`` or a :func:`scipy.signal.get_window` spec, by default ``("kaiser", 5.0)``.

    Returns
    -------
    ndarray, shape (n_taps,)
    """
    m = np.arange(n_taps) - 0.5 * (n_taps - 1)
    h = cutoff * np.sinc(cutoff * m)
    if isinstance(window, tuple) and len(window) == 2 and window[0] == "kaiser":
        h *= np.kaiser(n_taps, float(window[1]))
    else:
        from scipy.signal import get_window  # other windows only: not on the staging path

        h *= get_window(window, n_taps, fftbins=False)
    return h / np.sum(h)


def design_polyphase(up: int, down: int, window=("kaiser", 5.0)) -> tuple[np.ndarray, int]:
    """Anti-alias FIR low-pass split into its ``up`` phases.

    The filter is :func:`scipy.signal.resample_poly`'s: ``firwin(20 * max(up, down) + 1,
    1 / max(up, down), window=window) * up``.

    Parameters
    ----------
    up, down : int
        Coprime resampling factors (:func:`rational_factors`).
    window : str or tuple, optional
        Window for :func:`scipy.signal.firwin`, by default ``("kaiser", 5.0)`` as resample_poly.

    Returns
    -------
    taps : ndarray, shape (up, n_taps_per_phase)
        ``taps[p, m] = h[p + m * up]`` (zero past the end of ``h``).
    half_len : int
        Index of the filter's centre tap in ``h``.
    """
    if up == down == 1:
        return np.ones((1, 1)), 0
    max_rate = max(up, down)
    half_len = 10 * max_rate  # resample_poly's length: the sinc's tails beyond are negligible
    h = windowed_sinc(2 * half_len + 1, 1.0 / max_rate, window) * up
    n_per_phase = -(-h.size // up)
    padded = np.zeros(n_per_phase * up)
    padded[: h.size] = h
    return np.ascontiguousarray(padded.reshape(n_per_phase, up).T), half_len


@njit(cache=True, nogil=True, fastmath=True)  # fastmath: lets the dot product vectorise (sums reassociated)
def polyphase_resample(x, taps, down, half_len, x_start, first_out, n_out):
    """Output samples ``first_out .. first_out + n_out - 1`` of the resampled rows.

    Output ``n`` is ``sum_k h[t - k * up] * x[k]`` with ``t = n * down + half_len``: the filter
    centred on the output's position on the upsampled grid. Only the phase ``t % up`` of the filter
    meets non-zero (original) samples, so that is all that is summed.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples)
        Input samples with absolute indices ``x_start .. x_start + n_samples - 1``; samples outside
        count as zero, so ``x`` must hold every non-zero sample the requested outputs reach.
    taps : ndarray, shape (up, n_taps_per_phase)
        Filter phases (:func:`design_polyphase`).
    down : int
        Decimation factor.
    half_len : int
        Centre tap of the filter (:func:`design_polyphase`).
    x_start : int
        Absolute index of ``x[:, 0]``.
    first_out, n_out : int
        Absolute index of the first output sample, and how many to compute.

    Returns
    -------
    ndarray, shape (n_rows, n_out)
        Resampled signal, float64, in the unit of ``x``.
    """
    up, n_per_phase = taps.shape
    n_rows, n_in = x.shape
    y = np.zeros((n_rows, n_out))
    # phases reversed, so that taps and samples are both read in ascending order (vectorises);
    # the fast path's copy is padded with zeros in front to a whole number of vector registers
    # (element by element: array expressions would bring numba's shape-error code into the
    # compiled kernel, which makes it slower to load from the cache)
    width = -(-n_per_phase // 8) * 8
    rtaps = np.empty((up, n_per_phase))
    wide = np.zeros((up, width))
    for p in range(up):
        for m in range(n_per_phase):
            rtaps[p, m] = taps[p, n_per_phase - 1 - m]
            wide[p, width - n_per_phase + m] = taps[p, n_per_phase - 1 - m]
    step_k, step_phase = down // up, down % up
    for r in range(n_rows):
        row = x[r]
        t = first_out * down + half_len
        k_hi = t // up  # the newest input sample under the filter, tracked without dividing
        phase = t - k_hi * up
        for i in range(n_out):
            first = k_hi - (width - 1) - x_start
            acc = 0.0
            if first >= 0 and first + width <= n_in:
                # the whole (padded) filter lies inside x: a fixed-length dot product, the fast path
                tp = wide[phase]
                seg = row[first : first + width]
                for j in range(width):
                    acc += tp[j] * seg[j]
            else:
                # taps[phase, m] meets sample k_hi - m; keep only samples that are in x
                tp = rtaps[phase]
                m_lo = max(0, k_hi - (x_start + n_in - 1))
                m_hi = min(n_per_phase, k_hi - x_start + 1)
                first = k_hi - (m_hi - 1) - x_start
                offset = n_per_phase - m_hi
                for j in range(m_hi - m_lo):
                    acc += tp[offset + j] * row[first + j]
            y[r, i] = acc
            k_hi += step_k
            phase += step_phase
            if phase >= up:
                phase -= up
                k_hi += 1
    return y


def design_decimator(down: int, window=("kaiser", 5.0), half_width: int = 5) -> np.ndarray:
    """Anti-alias FIR low-pass for keeping every ``down``-th sample.

    ``scipy.signal.firwin(2 * half_width * down + 1, 1 / down, window=window)``: cut-off (-6 dB) at
    the new Nyquist frequency. The default, half the length :func:`scipy.signal.resample_poly` uses,
    gives a transition band about 0.6 times the new Nyquist frequency wide (Kaiser 5: 50 dB stop
    band), centred on the new Nyquist frequency.

    Parameters
    ----------
    down : int
        Decimation factor (>= 1); 1 gives the single tap 1 (no filtering).
    window : str or tuple, optional
        Window for the sinc, by default ``("kaiser", 5.0)``.
    half_width : int, optional
        Filter half-length in output samples, by default 5.

    Returns
    -------
    ndarray, shape (2 * half_width * down + 1,)
        Symmetric taps, unit gain at 0 Hz.
    """
    if down < 1:
        raise ValueError(f"decimation factor must be at least 1, got {down}")
    if down == 1:
        return np.ones(1)
    return windowed_sinc(2 * half_width * down + 1, 1.0 / down, window)


#: Outputs :func:`fir_decimate` computes per pass over the taps (independent sums for the processor).
_DECIMATE_BLOCK = 8


@njit(cache=True, nogil=True, fastmath=True)  # fastmath: lets the dot products vectorise (sums reassociated)
def fir_decimate(x, taps, down, x_start, first_out, n_out):
    """Output samples ``first_out .. first_out + n_out - 1`` of the filtered, decimated signal.

    Output ``n`` is ``sum_j taps[j] * x[n * down - half + j]`` with ``half = (len(taps) - 1) // 2``:
    the (symmetric) filter centred on input sample ``n * down``, so output ``n`` sits at time
    ``n * down / fs``. Eight outputs are summed side by side while the whole filter lies inside
    ``x``; near the ends, samples outside ``x`` count as zero. Inside, the taps are padded with up
    to 3 zeros, so a NaN or infinite sample up to 3 samples after an output's last tap makes that
    output NaN too.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Input samples (float32 or float64) with absolute indices ``x_start .. x_start + n_samples - 1``.
    taps : ndarray, shape (n_taps,)
        Symmetric FIR (:func:`design_decimator`), odd length.
    down : int
        Decimation factor.
    x_start : int
        Absolute index of ``x[0]``.
    first_out, n_out : int
        Absolute index of the first output sample, and how many to compute.

    Returns
    -------
    ndarray, shape (n_out,)
        float64, in the unit of ``x``.
    """
    n_taps = taps.shape[0]
    half = (n_taps - 1) // 2
    n_in = x.shape[0]
    y = np.empty(n_out)
    # The taps zero-padded to a multiple of 4 (whole SIMD vectors): the dot products then have no
    # scalar tail, which costs more than the extra multiply-adds by 0.
    n_padded = -(-n_taps // 4) * 4
    padded = np.zeros(n_padded)
    padded[:n_taps] = taps
    span = (_DECIMATE_BLOCK - 1) * down + n_padded  # input samples the eight outputs reach
    i = 0
    while i < n_out:
        start = (first_out + i) * down - half - x_start  # x index of the first tap's sample
        if i + _DECIMATE_BLOCK <= n_out and start >= 0 and start + span <= n_in:
            s0 = x[start : start + n_padded]
            s1 = x[start + down : start + down + n_padded]
            s2 = x[start + 2 * down : start + 2 * down + n_padded]
            s3 = x[start + 3 * down : start + 3 * down + n_padded]
            s4 = x[start + 4 * down : start + 4 * down + n_padded]
            s5 = x[start + 5 * down : start + 5 * down + n_padded]
            s6 = x[start + 6 * down : start + 6 * down + n_padded]
            s7 = x[start + 7 * down : start + 7 * down + n_padded]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            for j in range(n_padded):
                h = padded[j]
                a0 += h * s0[j]
                a1 += h * s1[j]
                a2 += h * s2[j]
                a3 += h * s3[j]
                a4 += h * s4[j]
                a5 += h * s5[j]
                a6 += h * s6[j]
                a7 += h * s7[j]
            y[i], y[i + 1], y[i + 2], y[i + 3] = a0, a1, a2, a3
            y[i + 4], y[i + 5], y[i + 6], y[i + 7] = a4, a5, a6, a7
            i += _DECIMATE_BLOCK
        else:  # near an end of x: only the taps that meet samples in x
            lo, hi = max(0, -start), min(n_taps, n_in - start)
            acc = 0.0
            for j in range(lo, hi):
                acc += taps[j] * x[start + j]
            y[i] = acc
            i += 1
    return y


def decimate(x: np.ndarray, down: int, window=("kaiser", 5.0)) -> np.ndarray:
    """Low-pass filter (:func:`design_decimator`) and keep every ``down``-th sample of each row.

    Equals ``scipy.signal.resample_poly(x, 1, down, window=design_decimator(down, window))`` (zero
    padding at both ends) to rounding.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples) or (n_samples,)
        Signal, e.g. uV, float32 or float64, finite.
    down : int
        Decimation factor (>= 1).
    window : str or tuple, optional
        Window of the anti-alias filter, by default ``("kaiser", 5.0)``.

    Returns
    -------
    ndarray, shape (n_rows, ceil(n_samples / down)) or 1-D likewise
        float64, in the unit of ``x``; output ``n`` sits at input sample ``n * down``.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    rows = np.atleast_2d(x)
    taps = _cached_decimator(int(down), window)
    n_out = -(-rows.shape[1] // int(down))
    y = np.stack([fir_decimate(np.ascontiguousarray(row), taps, int(down), 0, 0, n_out) for row in rows]) \
        if rows.shape[0] else np.zeros((0, n_out))
    return y if x.ndim == 2 else y.reshape(-1)


@lru_cache(maxsize=16)
def _cached_decimator(down: int, window) -> np.ndarray:
    """:func:`design_decimator`, once per factor and window."""
    taps = design_decimator(down, window)
    taps.setflags(write=False)
    return taps


@lru_cache(maxsize=16)
def _cached_polyphase(up: int, down: int, window) -> tuple:
    """:func:`design_polyphase`, once per factors and window (a live stager resamples every epoch)."""
    taps, half_len = design_polyphase(up, down, window)
    taps.setflags(write=False)
    return taps, half_len


def resample(x: np.ndarray, fs_in: float, fs_out: float, window=("kaiser", 5.0)) -> np.ndarray:
    """Resample a whole recording from ``fs_in`` to ``fs_out``.

    Equals :func:`scipy.signal.resample_poly` (``up/down = fs_out/fs_in``, same window, zero
    padding) on float64 data, to rounding.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples) or (n_samples,)
        Signal, e.g. uV, float32 or float64; finite (a non-finite sample spoils every output
        sample whose filter reaches it, about ``10 * max(up, down) / up`` input samples each way).
    fs_in, fs_out : float
        Input and output sample rates in Hz; their ratio must be rational (:func:`rational_factors`).
    window : str or tuple, optional
        Anti-alias window for :func:`scipy.signal.firwin`, by default ``("kaiser", 5.0)``.

    Returns
    -------
    ndarray, shape (n_rows, ceil(n_samples * fs_out / fs_in)) or 1-D likewise
        Resampled signal, float64, in the unit of ``x``.
    """
    up, down = rational_factors(fs_in, fs_out)
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    rows = np.ascontiguousarray(np.atleast_2d(x))
    taps, half_len = _cached_polyphase(up, down, window)
    n_out = -(-rows.shape[1] * up // down)
    y = polyphase_resample(rows, taps, down, half_len, 0, 0, n_out)
    return y if x.ndim == 2 else y.reshape(-1)


class Resampler:
    """Streaming :func:`resample`: consecutive blocks give the same samples as one pass.

    Each call returns the output samples whose filter window the input has fully covered so far; the
    output therefore trails the input by :attr:`delay_seconds` (half the filter). :meth:`flush` ends
    the stream (zeros after the last sample, as :func:`resample` does) and returns the rest; then the
    resampler starts over.

    Parameters
    ----------
    fs_in, fs_out : float
        Input and output sample rates in Hz (:func:`rational_factors`).
    n_rows : int
        Number of channels in every block.
    window : str or tuple, optional
        Anti-alias window, by default ``("kaiser", 5.0)``.
    """

    def __init__(self, fs_in: float, fs_out: float, n_rows: int, window=("kaiser", 5.0)):
        self.fs_in, self.fs_out, self.n_rows = float(fs_in), float(fs_out), n_rows
        self.up, self.down = rational_factors(fs_in, fs_out)
        self.taps, self.half_len = design_polyphase(self.up, self.down, window)
        self._reset()

    @property
    def delay_seconds(self) -> float:
        """How far the newest output sample lags the newest input sample, at most, in seconds."""
        return (self.half_len + self.down) / (self.up * self.fs_in)

    def _reset(self) -> None:
        self._buffer = np.zeros((self.n_rows, 0))  # input samples still needed, from _buffer_start
        self._buffer_start = 0
        self._n_in = 0
        self._n_out = 0

    def _emit(self, n_end: int) -> np.ndarray:
        """Outputs ``_n_out .. n_end - 1``, then drop input that no later output reaches."""
        y = polyphase_resample(self._buffer, self.taps, self.down, self.half_len, self._buffer_start,
                               self._n_out, max(n_end - self._n_out, 0))
        self._n_out = max(n_end, self._n_out)
        # the next output's lowest reachable input sample: t - k * up <= 2 * half_len
        t_next = self._n_out * self.down + self.half_len
        k_lo = max(-(-(t_next - 2 * self.half_len) // self.up), self._buffer_start)
        self._buffer = self._buffer[:, k_lo - self._buffer_start :]
        self._buffer_start = k_lo
        return y

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Feed the next block, shape (n_rows, n_samples) (or (n_samples,) for one row), of finite samples.

        Returns
        -------
        ndarray, shape (n_rows, n_new)
            The output samples that became complete, float64; ``n_new`` may be 0.
        """
        block = np.asarray(block, dtype=np.float64)
        if block.ndim == 1 and self.n_rows == 1:
            block = block[None, :]
        if block.ndim != 2 or block.shape[0] != self.n_rows:
            raise ValueError(f"expected a block of shape ({self.n_rows}, n_samples), got {block.shape}")
        self._buffer = np.ascontiguousarray(np.concatenate([self._buffer, block], axis=1))
        self._n_in += block.shape[1]
        # output n is complete once its newest input sample, (n * down + half_len) // up, has arrived
        ready = (self._n_in * self.up - self.half_len - 1) // self.down + 1
        return self._emit(ready)

    def flush(self) -> np.ndarray:
        """End the stream: the remaining output samples, shape (n_rows, n_rest); then start over."""
        y = self._emit(-(-self._n_in * self.up // self.down))
        self._reset()
        return y
