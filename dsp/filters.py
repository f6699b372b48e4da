"""IIR filtering: causal with state carried across blocks, and zero-phase; and a moving-average
high-pass.

Butterworth filters are designed here in second-order sections (the numerically safe form), by the
textbook route scipy takes too: the analog prototype's poles, pre-warped band edges, the bilinear
transform, and sections that pair each pole pair with its nearest zeros, the poles nearest the unit
circle last. The coefficients equal :func:`scipy.signal.butter`'s (``output="sos"``) to rounding,
which the tests check; designing them needs no scipy at run time, whose signal package takes most
of a second to import. The numba kernels only apply the sections, so a live stream and a whole
recording go through the same loop.

:func:`triangle_highpass` removes slow drift at a few operations per sample whatever the cut-off
(a centred boxcar run twice, by running sums): zero-phase and of finite reach, so a stretch of a
signal filtered with a little context on each side equals the whole signal filtered.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

#: Sections a kernel pass applies at once (the cascade is padded with pass-through sections).
_SECTIONS_PER_PASS = 4


def _analog_butterworth(order: int) -> np.ndarray:
    """Poles of the analog Butterworth low-pass prototype (cut-off 1 rad/s), shape (order,) complex."""
    m = np.arange(-order + 1, order, 2)
    return -np.exp(1j * np.pi * m / (2 * order))


def _digital_zpk(order: int, edges: np.ndarray, btype: str) -> tuple:
    """Zeros, poles and gain of the digital Butterworth filter; ``edges`` as fractions of Nyquist."""
    design_fs = 2.0  # the bilinear transform below runs on rates normalised to Nyquist = 1
    warped = 2.0 * design_fs * np.tan(np.pi * edges / design_fs)
    poles = _analog_butterworth(order)
    gain = 1.0
    if btype == "lowpass":
        zeros = np.zeros(0, dtype=complex)
        poles = poles * warped[0]
        gain = gain * warped[0] ** order
    elif btype == "highpass":
        zeros = np.zeros(order, dtype=complex)
        gain = gain * np.real(1.0 / np.prod(-poles))
        poles = warped[0] / poles
    else:  # bandpass: each prototype pole becomes a pair around the centre frequency
        centre, width = np.sqrt(warped[0] * warped[1]), warped[1] - warped[0]
        scaled = poles * width / 2.0
        root = np.sqrt(scaled ** 2 - centre ** 2)
        poles = np.concatenate([scaled + root, scaled - root])
        zeros = np.zeros(order, dtype=complex)
        gain = gain * width ** order
    fs2 = 2.0 * design_fs
    degree = len(poles) - len(zeros)
    gain = gain * np.real(np.prod(fs2 - zeros) / np.prod(fs2 - poles))
    zeros = np.concatenate([(fs2 + zeros) / (fs2 - zeros), -np.ones(degree)])
    poles = (fs2 + poles) / (fs2 - poles)
    return zeros, poles, gain


def _nearest(values: np.ndarray, target: complex, real: bool) -> int:
    """Index of the value nearest ``target`` among the real (or the complex) ``values``."""
    order = np.argsort(np.abs(values - target), kind="stable")
    keep = np.isreal(values[order]) if real else ~np.isreal(values[order])
    return int(order[keep][0])


def _one_of_each_pair(values: np.ndarray) -> np.ndarray:
    """Complex values once per conjugate pair (the mean of the pair, positive imaginary part), then
    the real ones; each group sorted by real part."""
    values = np.asarray(values, dtype=complex)
    values = values[np.lexsort((np.abs(values.imag), values.real))]
    is_real = np.abs(values.imag) <= 100 * np.finfo(float).eps * np.abs(values)
    pairs = values[~is_real]
    upper, lower = pairs[pairs.imag > 0], pairs[pairs.imag < 0]
    if len(upper) != len(lower):
        raise ValueError("complex poles or zeros without their conjugates")
    return np.concatenate([(upper + lower.conj()) / 2, values[is_real].real])


def _zpk_to_sos(zeros: np.ndarray, poles: np.ndarray, gain: float) -> np.ndarray:
    """Second-order sections: the pole nearest the unit circle with its nearest zeros goes last,
    the gain into the first section."""
    if len(poles) % 2:  # an odd order: a pole and a zero at the origin make the last section whole
        poles = np.append(poles, 0.0)
        zeros = np.append(zeros, 0.0)
    z, p = _one_of_each_pair(zeros), _one_of_each_pair(poles)
    sections = []
    while len(p):
        i1 = int(np.argmin(np.abs(1.0 - np.abs(p))))
        p1 = p[i1]
        p = np.delete(p, i1)
        if np.isreal(p1) and not np.isreal(p).any():  # the last real pole: with its nearest real zero
            j = _nearest(z, p1, real=True)
            sections.append(((z[j], 0.0), (p1, 0.0)))
            z = np.delete(z, j)
            continue
        if np.isreal(p1):  # another real pole: the next real one nearest the circle joins it
            reals = np.flatnonzero(np.isreal(p))
            i2 = int(reals[np.argmin(np.abs(np.abs(p[reals]) - 1.0))])
            p2 = p[i2]
            p = np.delete(p, i2)
        else:
            p2 = np.conj(p1)
        j = int(np.argsort(np.abs(z - p1), kind="stable")[0])
        z1 = z[j]
        z = np.delete(z, j)
        if not np.isreal(z1):
            z2 = np.conj(z1)
        else:
            j = _nearest(z, p1, real=True)
            z2 = z[j]
            z = np.delete(z, j)
        sections.append(((z1, z2), (p1, p2)))
    sos = np.zeros((len(sections), 6))
    for s, ((z1, z2), (q1, q2)) in enumerate(sections[::-1]):
        sos[s, :3] = np.real(np.poly([z1, z2]))
        sos[s, 3:] = np.real(np.poly([q1, q2]))
    sos[0, :3] *= gain
    return sos


def design_sos(fs: float, low_hz: float | None = None, high_hz: float | None = None, order: int = 4) -> np.ndarray:
    """Butterworth band-pass, high-pass or low-pass filter as second-order sections.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    low_hz : float, optional
        Lower cut-off in Hz (high-pass edge); omit for a low-pass.
    high_hz : float, optional
        Upper cut-off in Hz (low-pass edge); omit for a high-pass. Capped at 0.45 ``fs``.
    order : int, optional
        Filter order per edge, by default 4.

    Returns
    -------
    ndarray, shape (n_sections, 6)
        ``[b0, b1, b2, a0, a1, a2]`` per section, as :func:`scipy.signal.sosfilt` takes; equal to
        ``scipy.signal.butter(order, ..., fs=fs, output="sos")`` to rounding.
    """
    if high_hz is not None:
        high_hz = min(high_hz, 0.45 * fs)
    if low_hz is not None and high_hz is not None:
        edges, btype = np.array([low_hz, high_hz]), "bandpass"
    elif low_hz is not None:
        edges, btype = np.array([low_hz]), "highpass"
    elif high_hz is not None:
        edges, btype = np.array([high_hz]), "lowpass"
    else:
        raise ValueError("give low_hz, high_hz or both")
    edges = 2.0 * edges / fs
    if order < 1 or np.any(edges <= 0) or np.any(edges >= 1) or (btype == "bandpass" and edges[0] >= edges[1]):
        raise ValueError(f"cut-offs must lie between 0 and {fs / 2:g} Hz (Nyquist), low below high, order >= 1")
    return _zpk_to_sos(*_digital_zpk(order, edges, btype))


def _section_coefficients(sos: np.ndarray) -> np.ndarray:
    """``[b0, b1, b2, a1, a2] / a0`` per section, padded with pass-through sections to whole passes."""
    sos = np.asarray(sos, dtype=np.float64)
    n_pad = -(-sos.shape[0] // _SECTIONS_PER_PASS) * _SECTIONS_PER_PASS
    coef = np.zeros((n_pad, 5))
    coef[:, 0] = 1.0
    coef[: sos.shape[0]] = sos[:, [0, 1, 2, 4, 5]] / sos[:, 3:4]
    return coef


@njit(cache=True)
def _cascade(coef, x, y, state, reverse):
    """Run ``x`` through the cascade of sections into ``y``, from (and updating) ``state``.

    Four sections per pass over the samples, their states in registers: the sections' feedback
    loops then overlap in the processor instead of queueing behind each other. Transposed direct
    form II, as scipy's sosfilt.

    Parameters
    ----------
    coef : ndarray, shape (n_pad, 5)
        Normalised ``[b0, b1, b2, a1, a2]`` per section, ``n_pad`` a multiple of 4 (pass-through
        sections ``[1, 0, 0, 0, 0]`` at the end).
    x, y : ndarray, shape (n,)
        Input and output samples; may be the same array.
    state : ndarray, shape (n_pad, 2)
        Section states before the first sample (in processing order); updated in place.
    reverse : bool
        Process from the last sample to the first (the backward pass of a zero-phase filter).
    """
    n = x.shape[0]
    src = x
    for g in range(0, coef.shape[0], 4):
        b00, b01, b02, a01, a02 = coef[g, 0], coef[g, 1], coef[g, 2], coef[g, 3], coef[g, 4]
        b10, b11, b12, a11, a12 = coef[g + 1, 0], coef[g + 1, 1], coef[g + 1, 2], coef[g + 1, 3], coef[g + 1, 4]
        b20, b21, b22, a21, a22 = coef[g + 2, 0], coef[g + 2, 1], coef[g + 2, 2], coef[g + 2, 3], coef[g + 2, 4]
        b30, b31, b32, a31, a32 = coef[g + 3, 0], coef[g + 3, 1], coef[g + 3, 2], coef[g + 3, 3], coef[g + 3, 4]
        z00, z01 = state[g, 0], state[g, 1]
        z10, z11 = state[g + 1, 0], state[g + 1, 1]
        z20, z21 = state[g + 2, 0], state[g + 2, 1]
        z30, z31 = state[g + 3, 0], state[g + 3, 1]
        for step in range(n):
            i = n - 1 - step if reverse else step
            v = src[i]
            o = b00 * v + z00
            z00 = b01 * v - a01 * o + z01
            z01 = b02 * v - a02 * o
            v = o
            o = b10 * v + z10
            z10 = b11 * v - a11 * o + z11
            z11 = b12 * v - a12 * o
            v = o
            o = b20 * v + z20
            z20 = b21 * v - a21 * o + z21
            z21 = b22 * v - a22 * o
            v = o
            o = b30 * v + z30
            z30 = b31 * v - a31 * o + z31
            z31 = b32 * v - a32 * o
            y[i] = o
        state[g, 0], state[g, 1] = z00, z01
        state[g + 1, 0], state[g + 1, 1] = z10, z11
        state[g + 2, 0], state[g + 2, 1] = z20, z21
        state[g + 3, 0], state[g + 3, 1] = z30, z31
        src = y


@njit(cache=True)
def _sosfilt_rows(coef, n_sections, x, zi):
    n_rows, n = x.shape
    y = np.empty((n_rows, n))
    state = np.zeros((coef.shape[0], 2))
    for r in range(n_rows):
        state[:n_sections] = zi[r]
        y[r] = x[r]  # float64 from here on, whatever the input's type
        _cascade(coef, y[r], y[r], state, False)
        zi[r] = state[:n_sections]
    return y


def sosfilt(sos, x, zi):
    """Causal IIR filtering of each row, continuing from (and updating) a saved state.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
        Second-order sections (:func:`design_sos`).
    x : ndarray, shape (n_rows, n_samples)
        Signal, e.g. uV; rows are filtered independently.
    zi : ndarray, shape (n_rows, n_sections, 2)
        Filter state (transposed direct form II) before the first sample; zeros to start from rest.
        Updated in place to the state after the last sample, so the next block continues seamlessly.

    Returns
    -------
    ndarray, shape (n_rows, n_samples)
        Filtered signal, float64, in the unit of ``x``.
    """
    sos = np.asarray(sos, dtype=np.float64)
    return _sosfilt_rows(_section_coefficients(sos), sos.shape[0], x, zi)


def steady_state_unit(sos: np.ndarray) -> np.ndarray:
    """Section states after a constant input of 1 forever, shape (n_sections, 2): the initial state
    that makes a filter start without a transient (as :func:`scipy.signal.sosfilt_zi`)."""
    sos = np.asarray(sos, dtype=np.float64)
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0  # DC gain of the sections before this one
    for s, section in enumerate(sos):
        b, a = section[:3] / section[3], section[3:] / section[3]
        # steady state of one section for a unit step: z0 = y - b0, z1 = b2 - a2 y with y its DC gain
        rhs0, rhs1 = b[1] - a[1] * b[0], b[2] - a[2] * b[0]
        z0 = (rhs0 + rhs1) / (1.0 + a[1] + a[2])
        zi[s] = scale * z0, scale * (rhs1 - a[2] * z0)
        scale *= b.sum() / a.sum()
    return zi


def steady_state(sos: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Filter state as if each row had been at its first value forever (avoids a start-up transient).

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
    first : ndarray, shape (n_rows,)
        First sample of each row.

    Returns
    -------
    ndarray, shape (n_rows, n_sections, 2)
    """
    return steady_state_unit(sos)[None, :, :] * np.asarray(first, dtype=np.float64)[:, None, None]


def _pad_length(sos: np.ndarray) -> int:
    """scipy's default sosfiltfilt padding: 3 * (2 * n_sections + 1 - trailing zero b2/a2 terms)."""
    return 3 * (2 * sos.shape[0] + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))


@njit(cache=True)
def _scaled_state(unit_state, value, state):
    """``state[:] = unit_state * value``, element by element: an array expression would bring numba's
    shape-error code into the kernels, which makes them several times slower to load from the cache."""
    for s in range(state.shape[0]):
        state[s, 0] = unit_state[s, 0] * value
        state[s, 1] = unit_state[s, 1] * value


@njit(cache=True)
def _filtfilt_rows(coef, unit_state, pad, x):
    """Zero-phase filtering of each row with odd reflection (``pad`` samples each side)."""
    n_rows, n = x.shape
    y = np.empty((n_rows, n))
    ext = np.empty(n + 2 * pad)
    state = np.empty((coef.shape[0], 2))
    for r in range(n_rows):
        row = x[r]
        for i in range(pad):
            ext[i] = 2.0 * row[0] - row[pad - i]
            ext[pad + n + i] = 2.0 * row[n - 1] - row[n - 2 - i]
        for i in range(n):
            ext[pad + i] = row[i]
        _scaled_state(unit_state, ext[0], state)
        _cascade(coef, ext, ext, state, False)
        _scaled_state(unit_state, ext[ext.shape[0] - 1], state)
        _cascade(coef, ext, ext, state, True)
        for i in range(n):
            y[r, i] = ext[pad + i]
    return y


def sosfiltfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase IIR filtering (forward then backward), with odd reflection at both ends.

    Matches :func:`scipy.signal.sosfiltfilt` with its default padding.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
    x : ndarray, shape (n_rows, n_samples) or (n_samples,)
        Signal; rows are filtered independently.

    Returns
    -------
    ndarray, same shape as ``x``, float64
    """
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    x = np.asarray(x)
    rows = np.atleast_2d(x)
    if rows.shape[1] == 0:
        return np.zeros(x.shape)
    coef, unit, pad = _zero_phase_design(sos.tobytes(), sos.shape[0])
    return _filtfilt_rows(coef, unit, min(pad, rows.shape[1] - 1), rows).reshape(x.shape)


@lru_cache(maxsize=32)
def _zero_phase_design(sos_bytes: bytes, n_sections: int) -> tuple:
    """Kernel coefficients, unit steady state and pad length of a design (cached: filters repeat)."""
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6)
    coef = _section_coefficients(sos)
    unit = np.zeros((coef.shape[0], 2))
    unit[:n_sections] = steady_state_unit(sos)
    return coef, unit, _pad_length(sos)


class StreamFilter:
    """A causal filter for a live stream: call it on consecutive blocks, get seamless output.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
        Second-order sections (:func:`design_sos`).
    n_rows : int
        Number of channels in every block.
    """

    def __init__(self, sos: np.ndarray, n_rows: int):
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._coef = _section_coefficients(self.sos)
        self.state: np.ndarray | None = None
        self.n_rows = n_rows

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Filter the next block, shape (n_rows, n_samples), of finite samples; returns float64."""
        block = np.ascontiguousarray(block, dtype=np.float64).reshape(self.n_rows, -1)
        if self.state is None:
            if block.shape[1] == 0:
                return block
            self.state = steady_state(self.sos, block[:, 0])
        return _sosfilt_rows(self._coef, self.sos.shape[0], block, self.state)


def moving_average_width(fs: float, cutoff_hz: float) -> int:
    """Odd boxcar length (samples) whose :func:`triangle_highpass` passes half the amplitude at
    ``cutoff_hz``: a boxcar run twice keeps ``sinc^2``, which is 1/2 where ``pi f w / fs`` is 1.39."""
    return 2 * max(1, int(round((1.39 * fs / (np.pi * cutoff_hz) - 1.0) / 2.0))) + 1


@njit(cache=True, inline="always")
def _odd_extended(x, k, pad):
    """Sample ``k`` of ``x`` extended by ``pad`` samples of odd reflection at both ends (clamped
    for signals shorter than ``pad``): ``x[k - pad]`` inside."""
    n = x.shape[0]
    i = k - pad
    if i < 0:
        return 2.0 * x[0] - x[min(-i, n - 1)]
    if i >= n:
        return 2.0 * x[n - 1] - x[max(2 * (n - 1) - i, 0)]
    return x[i]


@njit(cache=True, nogil=True)
def triangle_highpass(x, width):
    """Zero-phase high-pass: each sample minus the mean of its neighbours under a triangular window.

    The triangle is a centred boxcar of ``width`` samples run twice, by running sums (a few
    operations per sample, whatever the width); the signal is extended by odd reflection at both
    ends (as :func:`sosfiltfilt`). Gain ``1 - sinc^2(f width / fs)`` (``sinc`` normalised): 0 at
    0 Hz, 1/2 at the frequency :func:`moving_average_width` was asked for, then within 5 % of 1.
    Being a finite filter, it equals the whole signal's output ``width`` samples from either end
    of any stretch of it.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Signal, e.g. uV.
    width : int
        Odd boxcar length in samples (:func:`moving_average_width`).

    Returns
    -------
    ndarray, shape (n_samples,), float64
    """
    n = x.shape[0]
    half = width // 2
    pad = 2 * half
    out = np.empty(n)
    if n == 0:
        return out
    # Both boxcars in one loop, each running sum one addition per sample (independent chains the
    # processor overlaps), no temporary as long as the signal: ``first`` sums extended samples
    # q - half .. q + half, ``recent`` keeps the last ``width`` of its means (a ring), ``second``
    # sums those, the means centred on q - half.
    inv = 1.0 / width
    recent = np.zeros(width)
    first = 0.0
    for k in range(width - 1):
        first += _odd_extended(x, k, pad)
    second = 0.0
    slot = 0
    for q in range(half, n + 2 * pad - half):
        first += _odd_extended(x, q + half, pad)
        mean = first * inv
        first -= _odd_extended(x, q - half, pad)
        second += mean - recent[slot]
        recent[slot] = mean
        slot = slot + 1 if slot + 1 < width else 0
        p = q - half - pad  # the output the second boxcar is now centred on
        if p >= 0:
            out[p] = x[p] - second * inv
    return out
