"""IIR filtering: causal with state carried across blocks, and zero-phase.

Coefficients are designed by scipy (second-order sections, the numerically safe form); the
numba kernels only apply them, so a live stream and a whole recording go through the same loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import signal


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
        ``[b0, b1, b2, a0, a1, a2]`` per section, as :func:`scipy.signal.sosfilt` takes.
    """
    if high_hz is not None:
        high_hz = min(high_hz, 0.45 * fs)
    if low_hz is not None and high_hz is not None:
        return signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=fs, output="sos")
    if low_hz is not None:
        return signal.butter(order, low_hz, btype="highpass", fs=fs, output="sos")
    if high_hz is not None:
        return signal.butter(order, high_hz, btype="lowpass", fs=fs, output="sos")
    raise ValueError("give low_hz, high_hz or both")


@njit(cache=True)
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
    n_rows, n = x.shape
    n_sec = sos.shape[0]
    y = np.empty((n_rows, n))
    for r in range(n_rows):
        for i in range(n):
            v = x[r, i]
            for s in range(n_sec):
                b0 = sos[s, 0] / sos[s, 3]
                out = b0 * v + zi[r, s, 0]
                zi[r, s, 0] = (sos[s, 1] * v - sos[s, 4] * out) / sos[s, 3] + zi[r, s, 1]
                zi[r, s, 1] = (sos[s, 2] * v - sos[s, 5] * out) / sos[s, 3]
                v = out
            y[r, i] = v
    return y


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
    return signal.sosfilt_zi(sos)[None, :, :] * np.asarray(first, dtype=np.float64)[:, None, None]


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
    x = np.asarray(x, dtype=np.float64)
    rows = np.atleast_2d(x)
    n_sec = sos.shape[0]
    # scipy's default pad length: 3 * (2 * n_sections + 1 - number of trailing zero b2/a2 terms).
    pad = 3 * (2 * n_sec + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    pad = min(pad, rows.shape[1] - 1)
    if pad > 0:
        left = 2 * rows[:, :1] - rows[:, pad:0:-1]
        right = 2 * rows[:, -1:] - rows[:, -2 : -pad - 2 : -1]
        ext = np.concatenate([left, rows, right], axis=1)
    else:
        ext = rows
    fwd = sosfilt(sos, ext, steady_state(sos, ext[:, 0]))
    back = sosfilt(sos, np.ascontiguousarray(fwd[:, ::-1]), steady_state(sos, fwd[:, -1]))[:, ::-1]
    out = back[:, pad : pad + rows.shape[1]] if pad > 0 else back
    return np.ascontiguousarray(out).reshape(x.shape)


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
        self.state: np.ndarray | None = None
        self.n_rows = n_rows

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Filter the next block, shape (n_rows, n_samples), of finite samples; returns float64."""
        block = np.ascontiguousarray(block, dtype=np.float64).reshape(self.n_rows, -1)
        if self.state is None:
            if block.shape[1] == 0:
                return block
            self.state = steady_state(self.sos, block[:, 0])
        return sosfilt(self.sos, block, self.state)
