"""Spectral lines that do not belong in sleep EEG: electrical stimulation and sensory entrainment.

Transcranial alternating current (tACS) leaves its waveform in the EEG, and rhythmic sensory drive
(40-Hz clicks, flicker) leaves a steady-state response: both are *lines*, components at one
frequency whose phase runs on like a clock's for minutes. Sleep rhythms are not: alpha, spindles
and slow waves come in bursts about 1 Hz wide whose phase is lost within a second or two. The
detector therefore asks, per frequency and per few minutes: does a sinusoid keep its phase across
many half-minute tiles? Mains (50/60 Hz and harmonics, +-0.6 % + 0.3 Hz for device clocks and the
grid) is left out. Transcranial direct current (tDCS) shows as a DC shift and is found apart.

Method (per channel)
--------------------
1. **Tiles** of :data:`TILE_S` = 32 s, back to back, each detrended (missing samples set to 0,
   tiles under 80 % valid left out). Thomson's harmonic F-test (Thomson 1982; the line tests of
   CleanLine and MNE's ``_mt_spectrum_remove``) with DPSS tapers NW = 2, K = 3 (resolution
   +-1/16 Hz) gives each bin's complex line amplitude ``mu`` (the eigencoefficients' regression on
   the tapers' DC gains), F (2, 2K-2 dof) and the residual; the noise level of a bin is the mean of
   its residual and of the eigenspectrum of the bins 3-10 away.
2. **Coherence across tiles.** A line at ``f_bin + df`` turns the tile amplitude by
   ``2 pi df T`` per tile; over a window of M tiles the amplitudes are summed after undoing each
   rotation of a grid of 2M (a zoom FFT) and the best sum's power over the window's noise is ``C``.
   Under Gaussian noise ``C`` follows F(2, 2M(K-1)) per rotation (the residual's degrees of
   freedom: the neighbour bins only make the reference more precise, so the tail is conservative,
   as checked on the clean DREAMS excerpts and over 300 h of simulated nights). Windows of 8 tiles
   (4.3 min, every 2 tiles) and 24 tiles (12.8 min, every 4) are tested against a level
   Bonferroni-corrected over rotations, bins (0.5-100 Hz), windows, scales and channels for
   :data:`FALSE_ALARMS_PER_HOUR` (0.1) false alarms per hour of clean recording. To keep this
   cheap, every tile is first analysed with the first taper only (one FFT), and only windows that
   reach :data:`SCREEN_FRACTION` of the level on that view (incoherent power, then coherent sum)
   get the full three-taper test.
3. **Each line found** is followed at its refined frequency (zero-padded FFT of the phasors, then
   a fine zoom) by complex demodulation in 1-s Hann blocks (longer below 4 Hz). A two-state
   Viterbi path (line on at the mean phasor / off, each block weighed by its local noise, a switch
   costing e^-8) gives the runs; runs closer than 3 min are one session (one event), and pauses
   between them are the stimulation blocks. A session is an adjustment only if it has an onset:
   the blocks of the preceding 10 minutes must favour "absent" over "present at the session's
   amplitude" by a likelihood ratio of e^10 (the phase left free in every 150 s, so that a small
   frequency error cannot make a steady line look absent); a line significant in the record's
   first 10 minutes at more than a third of the session's amplitude is a device line, and so is
   any other session of a line that had no onset unless it is :data:`DEVICE_RAMP_UP` (3) times
   stronger. So a stationary device line, there from the first sample, never fires unless it
   ramps up several-fold (the monitor remembers the device lines it has seen). A session also
   needs a significant window of its own (at least 75 % inside it). Lines within 1.5 Hz of a
   multiple (1-5) of a stronger overlapping line (harmonics, heartbeat and respiration sidebands)
   are folded into it, and a line whose f/2 or f/3 is twice as strong is that line's harmonic. A
   line seen on several channels gets the kind of its clearest channel.
4. **DC shifts**: 2-s block means; candidate steps (medians of 10 blocks after against before,
   beyond 4 robust standard errors); a step and a later opposite step of similar size 1 min to 1 h
   apart, with flat blocks between them, flat flanks at the record's median level and a level over
   8 standard errors and 5 uV, make a plateau (an electrical event without frequency).

Electrical or entrainment
-------------------------
A sum of log-likelihood ratios (positive: electrical) over every measurable difference, each
reported in the evidence string:

- *harmonics*: tACS artefacts carry the amplifier's harmonics (2nd about 10 %, 3rd about 3 % of
  the fundamental): the coherent amplitudes at 2f and 3f against those fractions and against none
  (Rice against Rayleigh likelihood, each capped to -3..+8);
- *phase jitter*: a steady-state response's phase wanders around the drive's (about 0.2 rad with
  a 2-s memory); the lag-1 and lag-2 products of the phasors' component perpendicular to the mean
  measure it without the noise's bias (noise in separate blocks is uncorrelated), against 0 for a
  stimulator (capped to +-6);
- *ramps*: tACS blocks ramp in and out over seconds (5 s), a sensory drive's response builds up
  within about a second: raised-cosine fits of each edge of the envelope, best ramp >= 3 s against
  best <= 2 s (Gaussian likelihoods; capped to +-4 in all);
- *blocks*: several runs separated by pauses with the carrier's phase continuing across them (a
  stimulator's clock runs on): +4 (+1 without phase continuity);
- *DC shift* on the same channel at the same time (anodal slow-oscillatory tDCS): +5;
- *amplitude* over 10 uV (steady-state responses are a few uV): +3;
- *frequency*, a prior: below 2 Hz (slow-oscillatory stimulation; sensory drive at such rates is
  the ``auditory`` kind) +3; at the usual sensory-drive rates (theta 4-8 Hz, gamma 30-50 Hz) -1;
  elsewhere +1.

An event is ``electrical`` when the sum is positive, else ``entrainment``: without measurable
differences (weak lines) the frequency prior decides.

Live
----
:class:`LineMonitor` runs the tile analysis as tiles complete (on a bounded buffer of the last
:data:`HISTORY_S` s), plus a fast path that catches a strong line within seconds: every second,
an 8-s multitaper window (NW = 4, 7 tapers) is tested at every bin from 3 Hz; an alarm needs the
harmonic F-test (p < 1e-3; 1e-5 in the alpha band, 7-13 Hz, where wake alpha can stay narrow
for seconds) and a line power far above both the bin's own level over the previous minute
(delayed by 10 s, so that a new line is compared with the time before it and an old line is its
own reference) and the louder side of its neighbourhood, at a level Bonferroni-corrected for 0.05
false alarms per hour, in two consecutive windows. Its kind is a first guess (frequency,
amplitude, 2nd harmonic, and the shape of the line's rise: a raised-cosine ramp fitted to the
in-phase envelope around the change point, long >= 3 s for a stimulator against short <= 2 s for a
response's build-up, see :func:`onset_ramp`), guessed again every second while the line is young,
that the tile analysis replaces once the line has lasted a few tiles.

A fast DC path catches tDCS within seconds: every second, the 1-s block means of the last 3 s must
all lie beyond the whole range of the 60 s before a 6-s guard (the ramp), be steady, stand
significantly from that level (two-sided Gaussian level Bonferroni-corrected over seconds and
channels for 0.02 false alarms per hour; the level's noise is the larger of the blocks' spread and
of their changes over 9 s, so slow drift does not count as a step), and vary as much as the blocks
before did (a railed electrode is flat, a movement swings), in two consecutive seconds (see
:func:`dc_step_test`). The tile path's plateau analysis then follows and extends the shift.

Limits (numbers from the DREAMS excerpts, where the background's density is about 150-900
uV^2/Hz at 0.75 Hz, 9-16 at 5 Hz, 2-5 at 12 Hz and 0.01-0.07 at 40 Hz): a line of amplitude A
needs about ``40 S(f) / A^2`` s of coherent data to pass the alarm level, so a 1.4-uV line (2 uV
at a lead of gain 0.7) needs 1-5 h at 0.75 Hz (not findable in a 10-min session), 3-6 min at
5 Hz, 1-2 min at 12 Hz and under a second at 40 Hz; within 10 s of onset (about 5 s of full
amplitude after a 5-s ramp) the smallest callable line is about 35-90 uV at 0.75 Hz, 10 uV at
5 Hz, 5 uV at 12 Hz and 0.6 uV at 40 Hz. Below a few uV in the theta band neither ramps,
harmonics nor pauses are measurable before the session ends, and the kind rests on the frequency
prior.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from numba import njit
from scipy import special as _special

from .detector_input import second_sd
from .errors import SignalError
from .events import AdjustmentEvent
from .quality import FLAT_UV
from .spectral import dpss_windows

#: Tile length in s: the unit of the multitaper analysis.
TILE_S = 32.0
#: Time-half-bandwidth product NW of the tiles' DPSS tapers, and the number of tapers (2 NW - 1).
HALF_BANDWIDTH = 2.0
N_TAPERS = 3
#: Coherence windows: (tiles per window, hop in tiles).
SCALES = ((8, 2), (24, 4))
#: Share of the alarm level a window's single-taper screen must reach to get the full test.
SCREEN_FRACTION = 0.75
#: Neighbour bins (inclusive range of distances) averaged into the noise reference.
NOISE_BINS = (3, 10)
#: Frequencies searched in Hz (capped below the Nyquist frequency).
BAND_HZ = (0.5, 100.0)
#: Alarm budget on clean recordings, for the Bonferroni correction.
FALSE_ALARMS_PER_HOUR = 0.1
#: A tile is analysed only when this share of its samples is valid.
MIN_VALID = 0.8
#: DC shifts: block length in s, blocks on each side of a step and the standard errors that make
#: one a candidate, standard errors a plateau needs against its flanks, smallest level in uV, and
#: the edges left out of plateaus and flanks (ramps) in s.
DC_BLOCK_S = 2.0
DC_STEP_BLOCKS = 10
DC_STEP_Z = 4.0
DC_Z = 8.0
DC_MIN_UV = 5.0
DC_RAMP_GUARD_S = 6.0
#: How many times stronger than a device line (one without an onset) at the same frequency a
#: line must become to count as an adjustment.
DEVICE_RAMP_UP = 3.0
#: Mains harmonics left out, and the tolerance: relative (device clock) and absolute (grid), in Hz.
MAINS_HARMONICS = 4
MAINS_TOLERANCE = (0.006, 0.3)

_ENTRAINMENT_BANDS_HZ = ((4.0, 8.0), (30.0, 50.0))
_BLOCK_GAP_S = 20.0      # a dropout longer than this splits a run into stimulation blocks
_SESSION_GAP_S = 180.0   # blocks closer than this belong to one session (one event)
_MARGIN_S = 600.0        # data analysed around a candidate to find its edges and its onset
_PRE_MIN_S = 30.0        # valid data needed before an onset to see the line was absent
_ABSENT_LLR = 10.0       # log-likelihood ratio for "absent before the onset" (a steady line fakes it < 0.1 %)
_START_S = 600.0         # start of the record checked for device lines
_SUB_S = 150.0           # spans over which a line's phase is taken as known when testing its absence
_SWITCH_COST = 8.0       # log-penalty of an on/off switch in the segmentation
_RESYNC = 64             # running sums are recomputed from scratch this often
_ALL_VALID = np.ones(0, dtype=bool)  # "every sample valid" for the kernels
_NO_WEIGHT = np.ones(0, dtype=np.float32)
_JITTER_EXPECTED = 0.035  # (lag-1 + lag-2 phase covariance) of a 0.2-rad, 2-s OU phase, in rad^2
_HARMONIC_FRACTIONS = (0.10, 0.03)


# --------------------------------------------------------------------------------------------
# Design: DPSS tapers, cached per (n, NW, K)


@functools.lru_cache(maxsize=16)
def dpss_tapers(n: int, half_bandwidth: float, n_tapers: int):
    """DPSS tapers and their DC gains, computed once per (n, NW, K).

    Parameters
    ----------
    n : int
        Taper length in samples.
    half_bandwidth : float
        Time-half-bandwidth product NW.
    n_tapers : int
        Number of tapers K (at most 2 NW - 1 are well concentrated).

    Returns
    -------
    tapers : ndarray of float32, shape (n_tapers, n)
        Unit-energy tapers.
    dc : ndarray of float64, shape (n_tapers,)
        Sum of each taper (its gain at 0 Hz); zero in theory for the odd ones, kept as computed.
    """
    tapers = dpss_windows(n, half_bandwidth, n_tapers)[0]
    dc = tapers.sum(axis=1)
    tapers = tapers.astype(np.float32)
    # shared through the cache: read-only
    tapers.setflags(write=False)
    dc.setflags(write=False)
    return tapers, dc


# --------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True)
def harmonic_f_test(eig, dc):
    """Thomson's harmonic F-test at every bin of every segment.

    Parameters
    ----------
    eig : ndarray of complex, shape (n_segments, n_tapers, n_bins)
        Eigencoefficients: FFT of each segment times each unit-energy taper.
    dc : ndarray of float64, shape (n_tapers,)
        DC gain (sum) of each taper.

    Returns
    -------
    mu : ndarray of complex128, shape (n_segments, n_bins)
        Complex line amplitude: a line ``A cos(2 pi f t + phi)`` at the bin gives ``A/2 exp(i phi)``
        (phase at the segment's first sample), in the unit of the signal.
    f_stat : ndarray of float64, shape (n_segments, n_bins)
        F statistic, F(2, 2K-2) distributed under noise without a line; 0 where the residual is 0.
    residual : ndarray of float64, shape (n_segments, n_bins)
        Residual power per complex degree of freedom, ``sum_k |eig_k - mu dc_k|^2 / (K - 1)``.
    power : ndarray of float64, shape (n_segments, n_bins)
        Mean eigenspectrum ``sum_k |eig_k|^2 / K``.
    """
    n_seg, k_tap, n_bins = eig.shape
    mu = np.empty((n_seg, n_bins), dtype=np.complex128)
    f_stat = np.empty((n_seg, n_bins))
    residual = np.empty((n_seg, n_bins))
    power = np.empty((n_seg, n_bins))
    dc2 = 0.0
    for k in range(k_tap):
        dc2 += dc[k] * dc[k]
    for s in range(n_seg):
        for j in range(n_bins):
            acc = 0.0 + 0.0j
            pw = 0.0
            for k in range(k_tap):
                y = eig[s, k, j]
                acc += dc[k] * y
                pw += y.real * y.real + y.imag * y.imag
            m = acc / dc2
            res = 0.0
            for k in range(k_tap):
                d = eig[s, k, j] - m * dc[k]
                res += d.real * d.real + d.imag * d.imag
            mu[s, j] = m
            residual[s, j] = res / (k_tap - 1)
            power[s, j] = pw / k_tap
            line = (m.real * m.real + m.imag * m.imag) * dc2
            f_stat[s, j] = (k_tap - 1) * line / res if res > 0.0 else 0.0
    return mu, f_stat, residual, power


@njit(cache=True)
def neighbour_mean(power, lo, hi):
    """Mean of ``power`` over the bins ``lo..hi`` away on either side of every bin.

    Parameters
    ----------
    power : ndarray, shape (n_segments, n_bins)
    lo, hi : int
        Nearest and farthest distance in bins (``1 <= lo <= hi``); bins beyond the array's edges
        are skipped.

    Returns
    -------
    ndarray of float64, shape (n_segments, n_bins)
        The mean over the available neighbours (0 when there are none).
    """
    n_seg, n_bins = power.shape
    out = np.zeros((n_seg, n_bins))
    for s in range(n_seg):
        # running sums of power over [j - hi, j + hi] and [j - lo + 1, j + lo - 1], recomputed
        # every _RESYNC bins so rounding cannot build up across the spectrum's dynamic range
        for j in range(n_bins):
            if j % _RESYNC == 0:
                outer = 0.0
                for i in range(max(0, j - hi), min(n_bins, j + hi + 1)):
                    outer += power[s, i]
                inner = 0.0
                for i in range(max(0, j - lo + 1), min(n_bins, j + lo)):
                    inner += power[s, i]
            else:
                if j + hi < n_bins:
                    outer += power[s, j + hi]
                if j - hi - 1 >= 0:
                    outer -= power[s, j - hi - 1]
                if j + lo - 1 < n_bins:
                    inner += power[s, j + lo - 1]
                if j - lo >= 0:
                    inner -= power[s, j - lo]
            outer_n = min(n_bins - 1, j + hi) - max(0, j - hi) + 1
            cnt = outer_n - (min(n_bins - 1, j + lo - 1) - max(0, j - lo + 1) + 1)
            if cnt > 0:
                out[s, j] = max(outer - inner, 0.0) / cnt
    return out


@njit(cache=True)
def window_screen(power, ok, starts, m, pad, n_bins, lo, hi, ratio, excluded):
    """Incoherent screen of windows of ``m`` tiles: summed power against its neighbour bins.

    For window ``w`` and searched bin ``j`` (column ``pad + j`` of ``power``): ``P = sum_k
    power[k, pad + j]`` over the window's valid tiles, ``N`` = the mean of those sums over the
    bins ``lo..hi`` away on either side (within ``power``'s columns); the pair passes when
    ``N > 0``, ``P >= ratio[w] * N`` and the bin is not excluded.

    Parameters
    ----------
    power : ndarray of float32, shape (n_tiles, width)
        Per-tile power, ``pad`` columns before the first searched bin.
    ok : ndarray of bool, shape (n_tiles,)
    starts : ndarray of int, shape (n_windows,)
        First tile of each window, increasing; ``starts + m <= n_tiles``.
    m, pad, n_bins, lo, hi : int
    ratio : ndarray of float64, shape (n_windows,)
    excluded : ndarray of bool, shape (n_bins,)
        Bins never passed (mains).

    Returns
    -------
    windows, cols : ndarray of int64, shape (n_passed,)
        Window and searched bin of every passing pair, by window then bin.
    den : ndarray of float64, shape (n_passed,)
        ``N`` of every passing pair (the window's noise power).
    n_valid : ndarray of int64, shape (n_windows,)
    """
    n_tiles, width = power.shape
    n_w = starts.size
    n_valid = np.zeros(n_w, dtype=np.int64)
    # window sums, zero-padded by hi + 1 bins on both sides so the sliding sums need no bounds checks
    acc = np.zeros(width + 2 * hi + 2)
    off = hi + 1
    body = acc[off:off + width]  # (row views: the tile loops then vectorise)
    # neighbours of each searched bin that exist
    inv = np.zeros(n_bins)
    for j in range(n_bins):
        c = pad + j
        cnt = (min(width - 1, c + hi) - max(0, c - hi) + 1) - (min(width - 1, c + lo - 1) - max(0, c - lo + 1) + 1)
        inv[j] = 1.0 / cnt if cnt > 0 else 0.0
    near = np.zeros(n_bins)
    flag = np.zeros(n_bins, dtype=np.bool_)
    cap = 1024
    windows = np.empty(cap, dtype=np.int64)
    cols = np.empty(cap, dtype=np.int64)
    den = np.empty(cap)
    n_out = 0
    cur0 = 0
    cur1 = 0  # acc holds the sum over tiles [cur0, cur1)
    nv = 0
    for w in range(n_w):
        s0 = starts[w]
        s1 = s0 + m
        # sliding sums over tiles, recomputed from scratch every _RESYNC windows so rounding
        # cannot build up
        if s0 >= cur1 or s0 < cur0 or w % _RESYNC == 0:
            acc[:] = 0.0
            nv = 0
            cur0 = s0
            cur1 = s0
        while cur0 < s0:
            if ok[cur0]:
                nv -= 1
                row = power[cur0]
                for j in range(width):
                    body[j] -= row[j]
            cur0 += 1
        while cur1 < s1:
            if ok[cur1]:
                nv += 1
                row = power[cur1]
                for j in range(width):
                    body[j] += row[j]
            cur1 += 1
        n_valid[w] = nv
        # neighbour sums by sliding over the bins: outer [c - hi, c + hi] minus inner [c - lo + 1, c + lo - 1],
        # recomputed every _RESYNC bins so rounding cannot build up across the spectrum's range
        r = ratio[w]
        hits = 0
        outer = 0.0
        inner = 0.0
        for j in range(n_bins):
            c = off + pad + j
            if j % _RESYNC == 0:
                outer = 0.0
                for i in range(c - hi, c + hi + 1):
                    outer += acc[i]
                inner = 0.0
                for i in range(c - lo + 1, c + lo):
                    inner += acc[i]
            else:
                outer += acc[c + hi] - acc[c - hi - 1]
                inner += acc[c + lo - 1] - acc[c - lo]
            nb = max(outer - inner, 0.0) * inv[j]
            near[j] = nb
            f = (nb > 0.0) & (acc[c] >= r * nb) & ~excluded[j]
            flag[j] = f
            hits += f
        if hits == 0:
            continue
        if n_out + hits > cap:
            cap = max(2 * cap, n_out + hits)
            windows = _grown(windows, cap)
            cols = _grown(cols, cap)
            den = _grown(den, cap)
        for j in range(n_bins):
            if flag[j]:
                windows[n_out] = w
                cols[n_out] = j
                den[n_out] = near[j]
                n_out += 1
    return windows[:n_out].copy(), cols[:n_out].copy(), den[:n_out].copy(), n_valid


@njit(cache=True)
def _grown(a, size):
    out = np.empty(size, dtype=a.dtype)
    out[:a.size] = a
    return out


@njit(cache=True)
def tapered_tiles(x, weight, rows, tile_n, taper):
    """Tiles of a signal with their mean removed, missing samples set to 0, times a taper.

    Parameters
    ----------
    x : ndarray of float, shape (n_samples,)
    weight : ndarray of float32, shape (n_samples,) or (0,)
        1 for a valid sample, 0 for a missing one; empty when every sample is valid.
    rows : ndarray of int, shape (n_rows,)
        Tile indices: tile ``r`` is ``x[r * tile_n:(r + 1) * tile_n]``.
    tile_n : int
        Samples per tile.
    taper : ndarray of float32, shape (tile_n,)

    Returns
    -------
    seg : ndarray of float32, shape (n_rows, tile_n)
        ``(tile - mean of its valid samples) * taper``, 0 at missing samples.
    frac : ndarray of float64, shape (n_rows,)
        Share of valid samples in each tile.
    """
    seg = np.zeros((rows.size, tile_n), dtype=np.float32)
    frac = np.zeros(rows.size)
    all_valid = weight.size == 0
    whole = tile_n // 4 * 4
    for r in range(rows.size):
        i0 = rows[r] * tile_n
        xs = x[i0:i0 + tile_n]
        out = seg[r]
        # the mean in float64 (an electrode offset of thousands of uV must not leave float32
        # round-off in the tile), in four running sums so the adds need not wait for each other
        a0 = a1 = a2 = a3 = 0.0
        c0 = c1 = c2 = c3 = 0.0
        if all_valid:
            for n in range(0, whole, 4):
                a0 += xs[n]
                a1 += xs[n + 1]
                a2 += xs[n + 2]
                a3 += xs[n + 3]
            for n in range(whole, tile_n):
                a0 += xs[n]
            cnt = float(tile_n)
        else:
            ws = weight[i0:i0 + tile_n]
            for n in range(0, whole, 4):
                a0 += xs[n] * ws[n]
                a1 += xs[n + 1] * ws[n + 1]
                a2 += xs[n + 2] * ws[n + 2]
                a3 += xs[n + 3] * ws[n + 3]
                c0 += ws[n]
                c1 += ws[n + 1]
                c2 += ws[n + 2]
                c3 += ws[n + 3]
            for n in range(whole, tile_n):
                a0 += xs[n] * ws[n]
                c0 += ws[n]
            cnt = (c0 + c1) + (c2 + c3)
        if cnt == 0:
            continue
        mean = ((a0 + a1) + (a2 + a3)) / cnt
        if all_valid:
            for n in range(tile_n):
                out[n] = np.float32(xs[n] - mean) * taper[n]
        else:
            ws = weight[i0:i0 + tile_n]
            for n in range(tile_n):
                out[n] = np.float32((xs[n] - mean) * ws[n]) * taper[n]
        frac[r] = cnt / tile_n
    return seg, frac


@njit(cache=True)
def spectrum_power(spec):
    """``|spec|^2`` of complex64 spectra, as float32.

    Parameters
    ----------
    spec : ndarray of complex64, shape (n_rows, n_bins)

    Returns
    -------
    ndarray of float32, shape (n_rows, n_bins)
    """
    n_rows, n_bins = spec.shape
    out = np.empty((n_rows, n_bins), dtype=np.float32)
    for r in range(n_rows):
        row, o = spec[r], out[r]  # row views: the loop then vectorises
        for j in range(n_bins):
            v = row[j]
            o[j] = v.real * v.real + v.imag * v.imag
    return out


@njit(cache=True)
def detrend_tiles(x, weight, rows, tile_n):
    """Tiles of a signal with their mean removed and missing samples set to 0.

    Parameters
    ----------
    x : ndarray of float, shape (n_samples,)
    weight : ndarray of float32, shape (n_samples,) or (0,)
        1 for a valid sample, 0 for a missing one; empty when every sample is valid.
    rows : ndarray of int, shape (n_rows,)
        Tile indices: tile ``r`` is ``x[r * tile_n:(r + 1) * tile_n]``.
    tile_n : int
        Samples per tile.

    Returns
    -------
    seg : ndarray of float32, shape (n_rows, tile_n)
        Each tile minus the mean of its valid samples; 0 at missing samples.
    frac : ndarray of float64, shape (n_rows,)
        Share of valid samples in each tile.
    """
    seg = np.zeros((rows.size, tile_n), dtype=np.float32)
    frac = np.zeros(rows.size)
    all_valid = weight.size == 0
    for r in range(rows.size):
        i0 = rows[r] * tile_n
        acc = np.float32(0.0)
        cnt = np.float32(0.0)
        if all_valid:
            for n in range(tile_n):
                acc += x[i0 + n]
            cnt = np.float32(tile_n)
        else:
            for n in range(tile_n):
                acc += x[i0 + n] * weight[i0 + n]
                cnt += weight[i0 + n]
        if cnt == 0:
            continue
        mean = np.float32(acc / cnt)
        if all_valid:
            for n in range(tile_n):
                seg[r, n] = x[i0 + n] - mean
        else:
            for n in range(tile_n):
                seg[r, n] = (x[i0 + n] - mean) * weight[i0 + n]
        frac[r] = cnt / tile_n
    return seg, frac


@njit(cache=True)
def block_demodulate(x, valid, first, block_n, n_blocks, omega, window):
    """Complex amplitude at one frequency in consecutive blocks (complex demodulation).

    ``z_b = sum_n w[n] x[i] exp(-i omega i) / sum_n w[n]`` over the valid samples ``i = first +
    b block_n + n`` of block ``b``: a line ``A cos(omega i + phi)`` gives ``A/2 exp(i phi)`` in
    every block (the phase refers to sample 0, so a steady line gives the same value throughout).

    Parameters
    ----------
    x : ndarray of float, shape (n_samples,)
        Signal.
    valid : ndarray of bool, shape (n_samples,) or (0,)
        False where a sample is missing; empty when every sample is valid.
    first : int
        Index of the first block's first sample.
    block_n : int
        Samples per block (= the window's length).
    n_blocks : int
        Blocks wanted; blocks past the signal's end get weight 0.
    omega : float
        Frequency in rad per sample.
    window : ndarray of float64, shape (block_n,)
        Taper applied in every block.

    Returns
    -------
    z : ndarray of complex128, shape (n_blocks,)
        Complex amplitude per block (0 where the weight is 0).
    weight : ndarray of float64, shape (n_blocks,)
        Share of the window's weight on valid samples (0..1).
    """
    z = np.zeros(n_blocks, dtype=np.complex128)
    weight = np.zeros(n_blocks)
    total = 0.0
    for n in range(block_n):
        total += window[n]
    n_samples = x.size
    all_valid = valid.size == 0
    step_c = np.cos(omega)
    step_s = -np.sin(omega)
    for b in range(n_blocks):
        i0 = first + b * block_n
        # the carrier exp(-i omega i) by recurrence from the block's first sample (exact there)
        cr = np.cos(omega * i0)
        ci = -np.sin(omega * i0)
        re = 0.0
        im = 0.0
        wsum = 0.0
        for n in range(block_n):
            i = i0 + n
            if 0 <= i < n_samples and (all_valid or valid[i]):
                w = window[n] * x[i]
                re += w * cr
                im += w * ci
                wsum += window[n]
            cr, ci = cr * step_c - ci * step_s, cr * step_s + ci * step_c
        if wsum > 0.0:
            z[b] = (re + 1j * im) / wsum
            weight[b] = wsum / total
    return z, weight


@njit(cache=True)
def zoom_power(z, ok, t, dfs):
    """Power of the coherent sum of phasors turned back at trial frequency offsets.

    Parameters
    ----------
    z : ndarray of complex, shape (n,)
        Phasors (e.g. demodulated blocks).
    ok : ndarray of bool, shape (n,)
        Phasors to use.
    t : ndarray of float64, shape (n,)
        Their times in s.
    dfs : ndarray of float64, shape (n_offsets,)
        Frequency offsets in Hz.

    Returns
    -------
    ndarray of float64, shape (n_offsets,)
        ``|sum_b z_b exp(-2 pi i df t_b)|^2`` per offset.
    """
    out = np.zeros(dfs.size)
    for g in range(dfs.size):
        re = 0.0
        im = 0.0
        for b in range(z.size):
            if ok[b]:
                ph = -2.0 * np.pi * dfs[g] * t[b]
                c = np.cos(ph)
                s = np.sin(ph)
                re += z[b].real * c - z[b].imag * s
                im += z[b].real * s + z[b].imag * c
        out[g] = re * re + im * im
    return out


@njit(cache=True)
def ramp_fit(a, ok, t, amplitude, onsets, ramps, rising):
    """Sum of squared errors of raised-cosine ramps fitted to an amplitude envelope.

    The model is ``amplitude * r((t - t0) / R)`` with ``r`` rising from 0 (before 0) to 1 (after 1)
    as a raised cosine (``rising``) or its mirror image falling from 1 to 0.

    Parameters
    ----------
    a : ndarray of float64, shape (n,)
        Envelope samples.
    ok : ndarray of bool, shape (n,)
        Samples to use.
    t : ndarray of float64, shape (n,)
        Their times in s.
    amplitude : float
        Plateau level.
    onsets : ndarray of float64, shape (n_onsets,)
        Trial ramp starts ``t0`` in s.
    ramps : ndarray of float64, shape (n_ramps,)
        Trial ramp durations ``R`` in s (> 0).
    rising : bool
        Ramp in (True) or out (False).

    Returns
    -------
    ndarray of float64, shape (n_ramps, n_onsets)
        Sum of squared errors of each fit.
    """
    out = np.zeros((ramps.size, onsets.size))
    for r in range(ramps.size):
        for o in range(onsets.size):
            sse = 0.0
            for i in range(a.size):
                if not ok[i]:
                    continue
                u = (t[i] - onsets[o]) / ramps[r]
                if u <= 0.0:
                    level = 0.0
                elif u >= 1.0:
                    level = 1.0
                else:
                    level = 0.5 - 0.5 * np.cos(np.pi * u)
                if not rising:
                    level = 1.0 - level
                d = a[i] - amplitude * level
                sse += d * d
            out[r, o] = sse
    return out


@njit(cache=True)
def on_off_path(llr, cost):
    """Most likely on/off sequence of a two-state chain (Viterbi).

    Parameters
    ----------
    llr : ndarray of float64, shape (n,)
        Log-likelihood of "on" minus that of "off" for each step (0 where nothing is known).
    cost : float
        Log-probability penalty of one switch between the states (> 0).

    Returns
    -------
    ndarray of bool, shape (n,)
        True where the best path is "on"; either state may start the sequence at no cost.
    """
    n = llr.size
    on = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return on
    # from_on[i] / from_off[i]: whether the best path into state on / off at i came from "on"
    from_on = np.zeros(n, dtype=np.bool_)
    from_off = np.zeros(n, dtype=np.bool_)
    s_on = llr[0]
    s_off = 0.0
    for i in range(1, n):
        stay_on = s_on
        jump_on = s_off - cost
        stay_off = s_off
        jump_off = s_on - cost
        from_on[i] = stay_on >= jump_on
        new_on = (stay_on if from_on[i] else jump_on) + llr[i]
        from_off[i] = jump_off > stay_off
        new_off = jump_off if from_off[i] else stay_off
        s_on, s_off = new_on, new_off
    state = s_on >= s_off
    for i in range(n - 1, -1, -1):
        on[i] = state
        state = from_on[i] if state else from_off[i]
    return on


def coherent_sums(seq, n_theta):
    """Best rotation-compensated sum of a sequence of tile amplitudes (a zoom FFT).

    For each row: ``max_theta |sum_k seq[k] exp(-i theta k)|^2`` over ``theta = 2 pi g / n_theta``,
    ``g = 0 .. n_theta - 1`` (a line off its bin by ``df`` turns by ``2 pi df T`` per tile of ``T`` s).

    Parameters
    ----------
    seq : ndarray of complex, shape (n_rows, m)
        Tile amplitudes (0 for a tile left out).
    n_theta : int
        Rotations tried (>= m; 2 m loses at most 19 % of a line's power between grid points).

    Returns
    -------
    power : ndarray of float64, shape (n_rows,)
        The best sum's squared magnitude.
    theta : ndarray of float64, shape (n_rows,)
        The rotation per tile giving it, in [-pi, pi).
    """
    seq = np.asarray(seq)
    if seq.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    spec = np.fft.fft(seq, n=n_theta, axis=1)
    pw = spec.real ** 2 + spec.imag ** 2
    g = np.argmax(pw, axis=1)
    theta = 2.0 * np.pi * g / n_theta
    theta = np.where(theta >= np.pi, theta - 2.0 * np.pi, theta)
    return pw[np.arange(g.size), g], theta


# --------------------------------------------------------------------------------------------
# Stage 1: tiles


@dataclass(frozen=True)
class _Geometry:
    """Tiles of one sample rate: length, tapers, and the FFT bins searched (plus neighbour padding)."""

    fs: float
    tile_n: int
    tapers: np.ndarray
    dc: np.ndarray
    first: int   # first searched FFT bin
    last: int    # last searched FFT bin
    pad: int     # neighbour bins kept below ``first`` (<= NOISE_BINS[1])

    @property
    def n_bins(self) -> int:
        return self.last - self.first + 1

    @property
    def freqs(self) -> np.ndarray:
        return (self.first + np.arange(self.n_bins)) * self.fs / self.tile_n

    @property
    def gain(self) -> float:
        return float(np.sqrt(np.sum(self.dc * self.dc)))


@functools.lru_cache(maxsize=8)
def _geometry(fs: float) -> _Geometry:
    tile_n = int(round(TILE_S * fs))
    tapers, dc = dpss_tapers(tile_n, HALF_BANDWIDTH, N_TAPERS)
    f_hi = min(BAND_HZ[1], fs / 2.0 - 2.0 * HALF_BANDWIDTH * fs / tile_n)
    first = max(1, int(math.ceil(BAND_HZ[0] * tile_n / fs)))
    last = int(math.floor(f_hi * tile_n / fs))
    return _Geometry(fs, tile_n, tapers, dc, first, last, min(NOISE_BINS[1], first))


def _tile_rows(x, weight, tile_n, rows):
    """Tiles ``rows`` of a channel as float32 rows, mean removed, missing samples 0; and valid shares.

    ``weight`` is None (every sample valid) or float32 weights (1 valid, 0 missing), as in every
    tile stage.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if weight is None and rows.size and rows[-1] - rows[0] == rows.size - 1:
        seg = np.asarray(x[rows[0] * tile_n: (rows[-1] + 1) * tile_n], dtype=np.float32).reshape(rows.size, tile_n)
        return seg - seg.mean(axis=1, keepdims=True), np.ones(rows.size)
    return detrend_tiles(x, _NO_WEIGHT if weight is None else weight, rows, tile_n)


def _bins_slice(geo: _Geometry, spec_len: int):
    lo = geo.first - geo.pad
    hi = min(spec_len, geo.last + NOISE_BINS[1] + 1)
    return lo, hi


@dataclass
class _Screen:
    """Single-taper view of every tile of one channel: the cheap screen over the whole record."""

    y: np.ndarray       # complex64 (n_tiles, n_bins): first-taper eigencoefficient at the searched bins
    power: np.ndarray   # float32 (n_tiles, pad + n_bins + up to NOISE_BINS[1]): |eigencoefficient|^2
    ok: np.ndarray      # bool (n_tiles,)
    pad: int            # columns of ``power`` before the first searched bin


def _screen_spectra(x, weight, geo: _Geometry, rows):
    """The screen's view of tiles ``rows`` of a channel: (y, power, ok), zero where not ok."""
    rows = np.asarray(rows, dtype=np.int64)
    seg, frac = tapered_tiles(x, _NO_WEIGHT if weight is None else weight, rows, geo.tile_n, geo.tapers[0])
    lo, hi = _bins_slice(geo, geo.tile_n // 2 + 1)
    spec = scipy.fft.rfft(seg, axis=1, overwrite_x=True)[:, lo:hi]
    power = spectrum_power(spec)
    y = spec[:, geo.pad: geo.pad + geo.n_bins]
    ok = frac >= MIN_VALID
    y[~ok] = 0.0
    power[~ok] = 0.0
    return y, power, ok


def _screen_tiles(x, weight, geo: _Geometry, n_tiles, chunk=64, reuse=None) -> _Screen:
    """The screen of every tile of a channel; ``reuse`` is an earlier channel's screen (of the same
    record) whose arrays are overwritten, so a night is not allocated again for every channel."""
    nb = geo.n_bins
    lo, hi = _bins_slice(geo, geo.tile_n // 2 + 1)
    if reuse is not None and reuse.y.shape == (n_tiles, nb):
        y, power, ok = reuse.y, reuse.power, reuse.ok
    else:
        y = np.empty((n_tiles, nb), dtype=np.complex64)
        power = np.empty((n_tiles, hi - lo), dtype=np.float32)
        ok = np.empty(n_tiles, dtype=bool)
    for c0 in range(0, n_tiles, chunk):
        c1 = min(n_tiles, c0 + chunk)
        y[c0:c1], power[c0:c1], ok[c0:c1] = _screen_spectra(x, weight, geo, np.arange(c0, c1))
    return _Screen(y, power, ok, geo.pad)


def _multitaper_tiles(x, weight, geo: _Geometry, rows):
    """Full multitaper analysis of tiles ``rows``: line amplitudes and noise per searched bin.

    Returns ``v`` (complex128, mu * sqrt(sum dc^2): noise alone has E|v|^2 = noise), ``noise``
    (float64: mean of the F-test residual and of the neighbouring bins' eigenspectrum), ``ok``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    nb = geo.n_bins
    seg, frac = _tile_rows(x, weight, geo.tile_n, rows)
    lo, hi = None, None
    eig = None
    for k in range(N_TAPERS):
        spec = scipy.fft.rfft(seg * geo.tapers[k], axis=1)
        if eig is None:
            lo, hi = _bins_slice(geo, spec.shape[1])
            eig = np.empty((rows.size, N_TAPERS, hi - lo), dtype=np.complex64)
        eig[:, k] = spec[:, lo:hi]
    mu, _, residual, power = harmonic_f_test(eig, geo.dc)
    near = neighbour_mean(power, NOISE_BINS[0], NOISE_BINS[1])
    sl = slice(geo.pad, geo.pad + nb)
    ok = frac >= MIN_VALID
    v = np.where(ok[:, None], mu[:, sl] * geo.gain, 0.0)
    noise = np.where(ok[:, None], 0.5 * (residual[:, sl] + near[:, sl]), 0.0)
    return v, noise, ok


def _mains_mask(freqs, mains_hz, fs):
    """True at frequencies within the tolerance of a mains harmonic (below Nyquist)."""
    bad = np.zeros(freqs.size, dtype=bool)
    for m in mains_hz:
        for k in range(1, MAINS_HARMONICS + 1):
            f = k * m
            if f >= fs / 2.0 + 1.0:
                break
            bad |= np.abs(freqs - f) <= MAINS_TOLERANCE[0] * f + MAINS_TOLERANCE[1]
    return bad


def _near_mains(f, mains_hz, fs):
    return bool(_mains_mask(np.array([f]), mains_hz, fs)[0])


# --------------------------------------------------------------------------------------------
# Stage 2: coherence across tiles


def _alpha(n_bins, n_channels):
    """Per-test level: the alarm budget spread over every window, bin, scale and channel."""
    tests_per_hour = sum(3600.0 / (TILE_S * hop) for _, hop in SCALES) * n_bins * max(n_channels, 1)
    return FALSE_ALARMS_PER_HOUR / tests_per_hour


def _log10_p(stat, n_valid):
    """log10 of the window p-value: F(2, 2 n (K-1)) tail, Bonferroni over ~n independent rotations."""
    dof = 2.0 * n_valid * (N_TAPERS - 1)
    return np.log10(np.maximum(n_valid, 1)) - (dof / 2.0) * np.log10(1.0 + 2.0 * stat / np.maximum(dof, 1.0))


def _needed(alpha, n_valid):
    """The coherent statistic a window of ``n_valid`` tiles needs to reach ``alpha``."""
    dof = 2.0 * n_valid * (N_TAPERS - 1)
    return (dof / 2.0) * (np.power(alpha / np.maximum(n_valid, 1), -2.0 / dof) - 1.0)


@dataclass
class _Hit:
    """A significant window: tiles [start, start + m), column ``col``, rotation ``theta``."""

    start: int
    m: int
    col: int
    theta: float
    stat: float
    log10_p: float


def _screen_windows(screen: _Screen, starts_by_scale, excluded, alpha, pairs_per_batch=20000):
    """Stage 2a: windows whose single-taper coherent sum comes near the alarm level.

    A line that can pass the full test over ``n`` tiles lifts the window's incoherent power ratio
    to at least ``1 + need / n`` and its coherent statistic to ``need``; windows reaching
    :data:`SCREEN_FRACTION` of both (on the cheap single-taper view) get the full test.

    Returns a list of (start, m, col, stat, theta) to confirm with the full multitaper analysis.
    """
    y, ok = screen.y, screen.ok
    n_tiles, n_bins = y.shape
    out = []
    cnt = np.concatenate(([0], np.cumsum(ok)))
    for (m, _hop), starts in zip(SCALES, starts_by_scale):
        starts = np.asarray(starts, dtype=np.int64)
        starts = starts[(starts >= 0) & (starts + m <= n_tiles)]
        n_valid = cnt[starts + m] - cnt[starts]
        starts, n_valid = starts[n_valid >= max(2, m // 2)], n_valid[n_valid >= max(2, m // 2)]
        if starts.size == 0:
            continue
        need = _needed(alpha, n_valid)
        rows, cols, den, _ = window_screen(screen.power, ok, starts, m, screen.pad, n_bins, NOISE_BINS[0],
                                           NOISE_BINS[1], 1.0 + SCREEN_FRACTION * need / n_valid, excluded)
        for b0 in range(0, rows.size, pairs_per_batch):
            r, c = rows[b0: b0 + pairs_per_batch], cols[b0: b0 + pairs_per_batch]
            seq = y[starts[r][:, None] + np.arange(m), c[:, None]]
            best, theta = coherent_sums(seq, 2 * m)
            stat = best / np.maximum(den[b0: b0 + pairs_per_batch], 1e-30)
            near = stat >= SCREEN_FRACTION * need[r]
            out += [(int(starts[i]), m, int(j), float(st), float(th))
                    for i, j, st, th in zip(r[near], c[near], stat[near], theta[near])]
    return out


def _confirm(x, weight, geo: _Geometry, candidates, alpha, cache):
    """Stage 2b: the multitaper coherent test of screened windows; returns the significant ones.

    ``cache`` maps tile index -> (v row, noise row, ok) and is filled as tiles are analysed.
    """
    candidates = [w[:3] for w in candidates]
    need = sorted({k for start, m, _ in candidates for k in range(start, start + m)} - set(cache))
    for b0 in range(0, len(need), 64):
        rows = need[b0: b0 + 64]
        v, noise, ok = _multitaper_tiles(x, weight, geo, rows)
        for i, k in enumerate(rows):
            cache[k] = (v[i], noise[i], bool(ok[i]))
    hits = []
    for m in sorted({m for _, m, _ in candidates}):
        group = [(s, c) for s, mm, c in candidates if mm == m]
        if not group:
            continue
        seq = np.array([[cache[s + k][0][c] for k in range(m)] for s, c in group])
        den = np.array([sum(cache[s + k][1][c] for k in range(m)) for s, c in group])
        n_valid = np.array([sum(cache[s + k][2] for k in range(m)) for s, c in group])
        best, theta = coherent_sums(seq, 2 * m)
        stat = best / np.maximum(den, 1e-30)
        lp = _log10_p(stat, n_valid)
        for (s, c), th, st, p in zip(group, theta, stat, lp):
            if p < math.log10(alpha):
                hits.append(_Hit(s, m, c, float(th), float(st), float(p)))
    return hits


@dataclass
class _Group:
    """Screened windows of one channel at one frequency (within 2 bins), strongest first."""

    channel: int
    frequency: float
    windows: list       # [(start, m, col, stat, theta), ...]

    def span(self, tile_s):
        return (min(w[0] for w in self.windows) * tile_s, max(w[0] + w[1] for w in self.windows) * tile_s)


def _frequency(geo: _Geometry, col, theta):
    return (geo.first + col + theta / (2.0 * np.pi)) * geo.fs / geo.tile_n


def _group(screened, geo: _Geometry, channel):
    """Group screened windows by frequency (a line's windows share it within 2 bins)."""
    tile_s = geo.tile_n / geo.fs
    order = sorted(screened, key=lambda w: -w[3])
    freq = [_frequency(geo, w[2], w[4]) for w in order]
    taken = [False] * len(order)
    groups = []
    for i, w in enumerate(order):
        if taken[i]:
            continue
        members = [j for j in range(i, len(order)) if not taken[j] and abs(freq[j] - freq[i]) <= 2.0 / tile_s]
        for j in members:
            taken[j] = True
        groups.append(_Group(channel, freq[i], [order[j] for j in members]))
    return groups


def _significant(x, weight, geo, windows, alpha, cache, tries=3):
    """The best confirmed window among the ``tries`` strongest screened ones, or None."""
    for w in sorted(windows, key=lambda w: -w[3])[:tries]:
        hits = _confirm(x, weight, geo, [w], alpha, cache)
        if hits:
            return hits[0]
    return None


# --------------------------------------------------------------------------------------------
# Stage 3: follow a line in time, measure it, decide what it is


@dataclass
class _Line:
    """A line followed in time on one channel, with its measurements."""

    channel: int
    frequency: float
    onset: float
    offset: float
    amplitude: float                 # uV, peak, plateau of the fundamental
    log10_p: float
    runs: list                       # [(start_s, stop_s), ...] stimulation blocks
    phase_continuous: bool = False
    harmonics: dict = field(default_factory=dict)   # order -> (fraction, log10 p, llr)
    jitter: tuple = (0.0, 0.0)       # (estimate rad^2, standard error)
    ramps: list = field(default_factory=list)       # per edge: (best ramp in s, LLR long vs short)
    llr: dict = field(default_factory=dict)
    dc: bool = False                 # a DC shift on the same channel at the same time
    kind: str = "entrainment"
    reason: str = ""                 # why it is not an adjustment ("" when it is)
    device: bool = False             # not an adjustment because it is a device's line


def _block_geometry(fs, f):
    block_s = max(1.0, 4.0 / f)
    block_n = max(8, int(round(block_s * fs)))
    window = np.hanning(block_n + 2)[1:-1].astype(np.float64)
    return block_n, window


def _demodulate(x, valid, fs, f, t0, t1, block_n, window):
    """Block phasors over [t0, t1) s (block grid anchored at sample 0)."""
    b0 = max(0, int(math.floor(t0 * fs / block_n)))
    b1 = min(int(math.ceil(t1 * fs / block_n)), x.size // block_n)
    n_blocks = max(0, b1 - b0)
    if valid is None:
        valid = _ALL_VALID
    z, w = block_demodulate(x, valid, b0 * block_n, block_n, n_blocks, 2.0 * np.pi * f / fs, window)
    t = (b0 + np.arange(n_blocks) + 0.5) * block_n / fs
    return z, w >= 0.7, t


def _runs(mask, t, block_s, min_gap_s):
    """[(start, stop), ...] in s of the True runs of ``mask``, bridging gaps up to ``min_gap_s``."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(t[idx[1:]] - t[idx[:-1]] - block_s > min_gap_s)
    firsts = np.concatenate(([idx[0]], idx[breaks + 1]))
    lasts = np.concatenate((idx[breaks], [idx[-1]]))
    return [(float(t[a] - block_s / 2), float(t[b] + block_s / 2)) for a, b in zip(firsts, lasts)]


def _follow(x, valid, fs, channel, f, core, span, mains_hz, start=None, t_offset=0.0):
    """Stage 3: refine the frequency on ``core``, find the sessions of the line within ``span``.

    Times are in s from ``x[0]``, which is ``t_offset`` s after the record's start; ``start`` holds
    the record's first samples ``(x, valid)`` for the device-line check (``x`` itself by default).
    Returns one _Line per session, its ``reason`` set when it is not an adjustment.
    """
    block_n, window = _block_geometry(fs, f)
    block_s = block_n / fs
    dur = x.size / fs
    lo = max(0.0, span[0] - _MARGIN_S)
    hi = min(dur, span[1] + _MARGIN_S)
    z, ok, t = _demodulate(x, valid, fs, f, lo, hi, block_n, window)
    core = ok & (t >= core[0]) & (t < core[1])
    pair = ok[1:] & ok[:-1]
    if core.sum() < 8 or pair.sum() < 8:
        return []
    # refine the frequency on the core span: zero-padded FFT of the block phasors, then a fine zoom
    first, last = np.flatnonzero(core)[[0, -1]]
    zc = np.where(core, z, 0)[first: last + 1]
    n_fft = 1 << int(math.ceil(math.log2(8 * zc.size)))
    spec = np.abs(np.fft.fft(zc, n_fft)) ** 2
    grid = np.fft.fftfreq(n_fft, block_s)
    near = np.abs(grid) <= 1.0 / TILE_S
    k = np.flatnonzero(near)[np.argmax(spec[near])]
    step = 1.0 / (n_fft * block_s)
    dfs = grid[k] + np.linspace(-step, step, 21)
    df = float(dfs[int(np.argmax(zoom_power(z, core, t, dfs)))])
    f += df
    z = z * np.exp(-2j * np.pi * df * t)
    # noise of each block's phasor, from successive differences (a steady line cancels): their
    # power over the neighbouring half-minute, as the EEG's level at f changes with the stage
    d2 = np.zeros(z.size)
    d2[1:] = np.where(pair, np.abs(np.diff(z)) ** 2 / 2.0, 0.0)
    has = np.zeros(z.size)
    has[1:] = pair
    kern = np.ones(31)
    sigma2 = np.convolve(d2, kern, mode="same") / np.maximum(np.convolve(has, kern, mode="same"), 1.0)
    floor = 0.25 * float(np.median(d2[1:][pair]))
    sigma2 = np.maximum(sigma2, max(floor, 1e-30))
    c = z[core].mean()
    if abs(c) <= 0:
        return []
    # on/off segmentation: Viterbi over the blocks, "on" = the steady phasor c, "off" = nothing
    on = np.zeros(z.size, dtype=bool)
    llr = np.zeros(z.size)
    for _ in range(3):
        llr = np.where(ok, (2.0 * np.real(z * np.conj(c)) - abs(c) ** 2) / sigma2, 0.0)
        on = on_off_path(llr, _SWITCH_COST)
        if (on & ok).sum() < 8:
            return []
        c = z[on & ok].mean()
    runs = _runs(on, t, block_s, _BLOCK_GAP_S)
    # sessions: runs linked by gaps under _SESSION_GAP_S
    sessions = []
    for run in runs:
        if sessions and run[0] - sessions[-1][-1][1] < _SESSION_GAP_S:
            sessions[-1].append(run)
        else:
            sessions.append([run])
    out = []
    for runs in sessions:
        onset, offset = runs[0][0], runs[-1][1]
        if offset - onset < 30.0:
            continue
        in_runs = np.zeros(z.size, dtype=bool)
        for a, b in runs:
            in_runs |= (t >= a) & (t < b)
        plateau = ok & in_runs
        if plateau.sum() < 8:
            continue
        c_all = z[plateau].mean()
        line = _Line(channel, f, onset, offset, 2 * abs(c_all), 0.0, runs)
        # the line must be absent before its onset: the blocks before it must favour "off" by a
        # likelihood ratio of e^_ABSENT_LLR; else a device line (present before) or no onset seen
        pre = ok & (t < onset - 2.0) & (t >= onset - _MARGIN_S)
        evidence_off = _absence(z, pre, t, sigma2, c_all)
        xs, vs = (x, valid) if start is None else start
        start_amp, start_p = _start_level(xs, vs, fs, f, onset + t_offset)
        if evidence_off < _ABSENT_LLR:
            line.reason = "present before its onset" if pre.sum() * block_s >= _PRE_MIN_S else "no onset seen"
            line.device = True
        elif start_p < 1e-3 and DEVICE_RAMP_UP * start_amp > abs(c_all):
            # a device line, there from the start of the record, that has not ramped up
            line.reason, line.device = "device line present from the start", True
        else:
            # phase continuity across pauses: each run's mean phasor against the session's
            if len(runs) > 1:
                phases = []
                for a, b in runs:
                    sel = plateau & (t >= a) & (t < b)
                    if sel.sum() >= 5:
                        phases.append(np.angle(z[sel].mean() * np.conj(c_all)))
                line.phase_continuous = len(phases) > 1 and max(abs(p) for p in phases) < 0.5
            k = _fundamental_of(x, valid, fs, f, plateau, t, block_s, abs(c_all))
            if k > 1:
                # a harmonic of a stronger line at f / k, which is found (and measured) on its own
                line.reason = f"harmonic {k} of a stronger line at {f / k:.3f} Hz"
            else:
                _measure(line, x, valid, fs, z, ok, t, plateau, block_s, mains_hz)
        out.append(line)
    return out


def _fundamental_of(x, valid, fs, f, plateau, t, block_s, amp):
    """2 or 3 when the line at ``f`` is that harmonic of a line at least twice as strong at f/2 or
    f/3 over the same blocks (a stimulator's harmonics are weaker than its fundamental), else 1."""
    for k in (2, 3):
        if f / k < BAND_HZ[0]:
            break
        block_n = max(8, int(round(max(block_s, 4.0 * k / f) * fs)))
        window = np.hanning(block_n + 2)[1:-1].astype(np.float64)
        sel_t = t[plateau]
        z, ok, tk = _demodulate(x, valid, fs, f / k, sel_t[0], sel_t[-1], block_n, window)
        if ok.sum() < 5:
            continue
        pair = ok[1:] & ok[:-1]
        if pair.sum() < 3:
            continue
        sigma2 = float(np.median(np.abs(np.diff(z))[pair] ** 2)) / (2.0 * np.log(2.0))
        mean = z[ok].mean()
        if abs(mean) > 2.0 * amp and abs(mean) ** 2 * ok.sum() / max(sigma2, 1e-30) > 25.0:
            return k
    return 1


def _absence(z, sel, t, sigma2, c):
    """Log-likelihood ratio of "no line" against "the line at amplitude |c|" over the blocks ``sel``.

    The line's phase is left free in every :data:`_SUB_S` span, so that a small error of the
    frequency (the phase drifting over minutes) cannot make a steady line look absent.
    """
    total = 0.0
    idx = np.flatnonzero(sel)
    if idx.size == 0:
        return 0.0
    amp = abs(c)
    for a in np.arange(t[idx[0]], t[idx[-1]] + 1e-9, _SUB_S):
        part = idx[(t[idx] >= a) & (t[idx] < a + _SUB_S)]
        if part.size == 0:
            continue
        w = 1.0 / sigma2[part]
        total -= 2.0 * amp * abs(np.sum(z[part] * w)) - amp * amp * np.sum(w)
    return float(total)


def _start_level(x, valid, fs, f, onset):
    """A line at ``f`` over the record's first 10 minutes before ``onset``: its coherent amplitude
    (z units, A/2; best of small frequency offsets) and the p-value of its presence; (0, 1) when
    there is too little data.

    The noise of the mean is taken from the scatter of the means of :data:`_SUB_S`-long parts
    (an F(2, 2(J - 1)) test over J parts), so that slow, correlated EEG at low frequencies cannot
    pass for a line.
    """
    block_n, window = _block_geometry(fs, f)
    z, ok, t = _demodulate(x, valid, fs, f, 0.0, min(_START_S, onset - 10.0), block_n, window)
    if ok.sum() * block_n / fs < 2 * _SUB_S / 3:
        return 0.0, 1.0
    span = t[ok][-1] - t[ok][0] + block_n / fs
    dfs = np.linspace(-1.0 / span, 1.0 / span, 9)
    df = float(dfs[int(np.argmax(zoom_power(z, ok, t, dfs)))])
    z = z * np.exp(-2j * np.pi * df * t)
    sub = max(_SUB_S / 3, span / 8)  # 8 parts, or fewer when the start is short
    means = []
    for a in np.arange(t[0], t[-1] + 1e-9, sub):
        sel = ok & (t >= a) & (t < a + sub)
        if sel.sum() >= 3:
            means.append(z[sel].mean())
    means = np.array(means)
    if means.size < 3:
        return 0.0, 1.0
    mean = means.mean()
    scatter = float(np.mean(np.abs(means - mean) ** 2)) * means.size / (means.size - 1)
    if scatter <= 0:
        return float(abs(mean)), 0.0
    stat = abs(mean) ** 2 / (scatter / means.size)
    dof2 = 2.0 * (means.size - 1)
    return float(abs(mean)), min(1.0, 9.0 * float(_f_sf(stat, dof2)))


def _f_sf(x, dof2):
    """Survival function of F(2, dof2) at ``x``."""
    return (1.0 + 2.0 * x / dof2) ** (-dof2 / 2.0)


def _measure(line: _Line, x, valid, fs, z, ok, t, plateau, block_s, mains_hz):
    """Harmonics, phase jitter and ramps of a followed line; fills ``line.harmonics/jitter/ramps``."""
    c = z[plateau].mean()
    amp = abs(c)
    # harmonics: coherent amplitude at k f over the plateau, same blocks
    for order, expected in zip((2, 3), _HARMONIC_FRACTIONS):
        fk = order * line.frequency
        if fk >= 0.45 * fs or _near_mains(fk, mains_hz, fs):  # past the anti-alias filter, or mains
            continue
        block_n = int(round(block_s * fs))
        window = np.hanning(block_n + 2)[1:-1].astype(np.float64)
        zk, okk, tk = _demodulate(x, valid, fs, fk, line.onset, line.offset, block_n, window)
        sel = okk.copy()
        for i, ti in enumerate(tk):
            sel[i] &= any(a + 6 <= ti < b - 6 for a, b in line.runs)
        n = int(sel.sum())
        if n < 10:
            continue
        h = zk[sel].mean()
        # noise of the mean: from the blocks' own scatter (the harmonic is tiny next to the noise)
        var = float(np.mean(np.abs(zk[sel] - h) ** 2)) / n
        if var <= 0:
            continue
        nu = expected * amp
        x_obs = abs(h)
        llr = -nu * nu / var + float(np.log(_special.i0e(2 * nu * x_obs / var))) + 2 * nu * x_obs / var
        log10_p = -(x_obs * x_obs / var) / np.log(10.0)
        line.harmonics[order] = (x_obs / amp, log10_p, float(np.clip(llr, -3.0, 8.0)))
    # phase jitter: lagged products of the perpendicular component, each run detrended
    prods = {1: [], 2: []}
    unit = c / amp
    for a, b in line.runs:
        sel = plateau & (t >= a + 6.0) & (t < b - 6.0)
        idx = np.flatnonzero(sel)
        if idx.size < 10:
            continue
        r = np.imag(z[idx] * np.conj(unit))
        ti = t[idx]
        coef = np.polyfit(ti - ti.mean(), r, 1)
        r = r - np.polyval(coef, ti - ti.mean())
        pos = np.rint((ti - ti[0]) / block_s).astype(np.int64)
        lookup = -np.ones(pos[-1] + 3, dtype=np.int64)
        lookup[pos] = np.arange(pos.size)
        for lag in (1, 2):
            j = lookup[pos + lag]
            has = j >= 0
            prods[lag].append(r[has] * r[j[has]])
    if prods[1] and prods[2]:
        p1 = np.concatenate(prods[1])
        p2 = np.concatenate(prods[2])
        if p1.size >= 10 and p2.size >= 10:
            g = (p1.mean() + p2.mean()) / (amp * amp)
            se = math.sqrt(p1.var() / p1.size + p2.var() / p2.size) / (amp * amp)
            line.jitter = (float(g), float(se))
    # ramps: raised-cosine fits of each edge of the in-phase envelope (0.5-s blocks)
    line.ramps = _fit_ramps(line, x, valid, fs, c)


def _fit_ramps(line: _Line, x, valid, fs, c):
    """Best ramp durations (s) at each run edge, and the LLR of long (>= 3 s) against short (<= 2 s)."""
    # blocks of >= 5 cycles: shorter ones let the strong slow EEG leak into the envelope
    block_n = max(8, int(round(max(0.5, 5.0 / line.frequency) * fs)))
    if line.frequency < 4.0:
        return []
    window = np.hanning(block_n + 2)[1:-1].astype(np.float64)
    unit = c / abs(c)
    amp = abs(c)
    ramps = np.array([0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    out = []
    for a, b in line.runs:
        for edge, rising in ((a, True), (b, False)):
            z, ok, t = _demodulate(x, valid, fs, line.frequency, edge - 15.0, edge + 15.0, block_n, window)
            if ok.sum() < 20:
                continue
            env = np.real(z * np.conj(unit))
            # t0 is where the ramp starts; the run's edge (half level) is near t0 + R / 2
            onsets = np.arange(edge - 14.0, edge + 6.0, 0.25)
            sse = ramp_fit(env, ok, t, amp, onsets, ramps, rising)
            best_per_r = sse.min(axis=1)
            r_best = float(ramps[int(np.argmin(best_per_r))])
            short = best_per_r[ramps <= 2.0].min()
            long = best_per_r[ramps >= 3.0].min()
            # Gaussian likelihoods, the envelope's noise variance from the best fit's residual
            var = best_per_r.min() / max(int(ok.sum()) - 2, 1)
            llr = float(np.clip((short - long) / (2.0 * var), -4.0, 4.0))
            out.append((r_best, llr))
    return out


def _classify(line: _Line):
    """Fill ``line.llr`` and ``line.kind`` (see the module's docstring)."""
    f = line.frequency
    llr = {}
    if f < 2.0:
        llr["frequency"] = 3.0
    elif any(a <= f <= b for a, b in _ENTRAINMENT_BANDS_HZ):
        llr["frequency"] = -1.0
    else:
        llr["frequency"] = 1.0
    if line.amplitude > 10.0:
        llr["amplitude"] = 3.0
    h = sum(v[2] for v in line.harmonics.values())
    if line.harmonics:
        llr["harmonics"] = h
    g, se = line.jitter
    if se > 0:
        ge = _JITTER_EXPECTED
        llr["jitter"] = float(np.clip(-(ge * (2 * g - ge)) / (2 * se * se), -6.0, 6.0))
    if line.ramps:
        llr["ramps"] = float(np.clip(sum(r[1] for r in line.ramps), -4.0, 4.0))
    if len(line.runs) > 1:
        llr["blocks"] = 4.0 if line.phase_continuous else 1.0
    if line.dc:
        llr["DC shift"] = 5.0
    line.llr = llr
    line.kind = "electrical" if sum(llr.values()) > 0 else "entrainment"


def _evidence(line: _Line) -> str:
    parts = [f"line at {line.frequency:.3f} Hz, {line.amplitude:.2g} uV, phase-coherent for "
             f"{line.offset - line.onset:.0f} s, p < 1e{math.floor(line.log10_p):d}"]
    if len(line.runs) > 1:
        pauses = [b[0] - a[1] for a, b in zip(line.runs[:-1], line.runs[1:])]
        parts.append(f"{len(line.runs)} blocks (pauses {', '.join(f'{p:.0f}' for p in pauses)} s"
                     + (", phase continuous)" if line.phase_continuous else ")"))
    for order, (frac, lp, _) in sorted(line.harmonics.items()):
        parts.append(f"harmonic {order}: {100 * frac:.1f} % (p {10 ** max(lp, -300):.0e})")
    g, se = line.jitter
    if se > 0:
        parts.append(f"phase wander {g:+.3f} +- {se:.3f} rad^2 (response ~{_JITTER_EXPECTED}, stimulator 0)")
    if line.ramps:
        parts.append("ramps " + "/".join(f"{r[0]:g}" for r in line.ramps) + " s")
    total = sum(line.llr.values())
    terms = ", ".join(f"{k} {v:+.1f}" for k, v in line.llr.items())
    parts.append(f"electrical vs entrainment LLR {total:+.1f} ({terms})")
    return "; ".join(parts)


def _score(log10_p, alpha):
    margin = max(0.0, math.log10(alpha) - log10_p)
    return float(min(1.0, 1.0 - 0.5 * math.exp(-margin / 3.0)))


def _related(f, g):
    """Whether ``f`` lies within 1.5 Hz of the 1st-5th multiple of ``g`` (harmonic or sideband of it)."""
    k = max(1, round(f / g))
    return k <= 5 and abs(f - k * g) <= 1.5


def _absorb(lines):
    """Drop lines that are harmonics or sidebands of a stronger, overlapping line on the same channel."""
    lines = sorted(lines, key=lambda ln: -ln.amplitude)
    kept = []
    for ln in lines:
        if not any(big.channel == ln.channel and ln.onset < big.offset and big.onset < ln.offset
                   and _related(ln.frequency, big.frequency) for big in kept):
            kept.append(ln)
    return kept


def _merge(events):
    """Merge overlapping events of one kind (union of time and channels, strongest evidence)."""
    events = sorted(events, key=lambda e: e.onset)
    out = []
    for ev in events:
        for i, prev in enumerate(out):
            if prev.kind == ev.kind and ev.onset <= prev.end and prev.onset <= ev.end:
                best = prev if prev.score >= ev.score else ev
                onset = min(prev.onset, ev.onset)
                end = max(prev.end, ev.end)
                out[i] = AdjustmentEvent(onset, end - onset, ev.kind, max(prev.score, ev.score), best.evidence,
                                         tuple(sorted(set(prev.channels) | set(ev.channels))), best.frequency_hz)
                break
        else:
            out.append(ev)
    return sorted(out, key=lambda e: e.onset)


def _to_event(line: _Line, alpha) -> AdjustmentEvent:
    return AdjustmentEvent(float(line.onset), float(line.offset - line.onset), line.kind,
                           _score(line.log10_p, alpha), _evidence(line), (line.channel,), float(line.frequency))


def _lines_of_group(x, valid, weight, geo: _Geometry, group: _Group, alpha, cache, mains_hz, start=None,
                    t_offset=0.0):
    """Stages 2b and 3 for one frequency group: confirmed, followed and measured lines.

    ``x`` starts on a tile boundary ``t_offset`` s into the record (see :func:`_follow`); the
    lines' times are returned from the record's start. Sessions that are not adjustments come
    back too, with their ``reason`` (device lines: ``device`` set).
    """
    tile_s = geo.tile_n / geo.fs
    hit = _significant(x, weight, geo, group.windows, alpha, cache)
    if hit is None:
        return []
    f = _frequency(geo, hit.col, hit.theta)
    core = (hit.start * tile_s, (hit.start + hit.m) * tile_s)
    lines = _follow(x, valid, geo.fs, group.channel, f, core, group.span(tile_s), mains_hz, start, t_offset)
    if not lines:
        return []
    # a device line (no onset, or there before it) at this frequency: other sessions of the line
    # are the same device unless they ramp well above it
    device = max((ln.amplitude for ln in lines if ln.device), default=0.0)
    for ln in lines:
        if not ln.reason and ln.amplitude < DEVICE_RAMP_UP * device:
            ln.reason, ln.device = f"no stronger than a device line at this frequency ({device:.2g} uV)", True
    overlap = [max(0.0, min(core[1], ln.offset) - max(core[0], ln.onset)) for ln in lines]
    home = int(np.argmax(overlap))
    out = []
    for i, line in enumerate(lines):
        if line.reason:
            best = None
        elif i == home and overlap[i] > 0:
            best = hit
        else:
            # any other session needs a significant window of its own, mostly inside it
            inside = [w for w in group.windows
                      if min(line.offset, (w[0] + w[1]) * tile_s) - max(line.onset, w[0] * tile_s)
                      >= 0.75 * w[1] * tile_s]
            best = _significant(x, weight, geo, inside, alpha, cache) if inside else None
        if best is None and not line.reason:
            continue
        if best is not None:
            line.log10_p = best.log10_p
        line.onset += t_offset
        line.offset += t_offset
        line.runs = [(a + t_offset, b + t_offset) for a, b in line.runs]
        out.append(line)
    return out


# --------------------------------------------------------------------------------------------
# DC shifts (tDCS)


@njit(cache=True)
def block_means(x, valid, block_n, min_share):
    """Mean of the valid samples in consecutive blocks.

    Parameters
    ----------
    x : ndarray of float, shape (n_samples,)
    valid : ndarray of bool, shape (n_samples,) or (0,)
        False where a sample is missing; empty when every sample is valid.
    block_n : int
        Samples per block.
    min_share : float
        Share of valid samples a block needs (0..1).

    Returns
    -------
    ndarray of float64, shape (n_samples // block_n,)
        Block means; NaN for blocks with too few valid samples.
    """
    n_blocks = x.size // block_n
    out = np.full(n_blocks, np.nan)
    if valid.size == 0:
        # every sample valid: a plain sum per block, four running sums so the adds need not wait
        # for each other
        for b in range(n_blocks):
            a0 = a1 = a2 = a3 = 0.0
            i0 = b * block_n
            quad = block_n // 4 * 4
            for i in range(i0, i0 + quad, 4):
                a0 += x[i]
                a1 += x[i + 1]
                a2 += x[i + 2]
                a3 += x[i + 3]
            for i in range(i0 + quad, i0 + block_n):
                a0 += x[i]
            out[b] = ((a0 + a1) + (a2 + a3)) / block_n
        return out
    for b in range(n_blocks):
        acc = 0.0
        cnt = 0
        for i in range(b * block_n, (b + 1) * block_n):
            if valid[i]:
                acc += x[i]
                cnt += 1
        if cnt >= min_share * block_n and cnt > 0:
            out[b] = acc / cnt
    return out


@njit(cache=True)
def rolling_median(m, width):
    """Median of the finite values of ``m[b:b + width]`` for every b (``np.nanmedian`` of each window).

    Parameters
    ----------
    m : ndarray of float64, shape (n,)
        Values; NaN marks missing ones.
    width : int
        Window length (>= 1).

    Returns
    -------
    ndarray of float64, shape (max(n - width + 1, 0),)
        The median (the mean of the two middle values for an even count); NaN where a window has
        no finite value.
    """
    n_out = max(m.size - width + 1, 0)
    out = np.full(n_out, np.nan)
    buf = np.empty(width)
    for b in range(n_out):
        k = 0
        for i in range(b, b + width):
            v = m[i]
            if np.isfinite(v):
                # insertion into the sorted buffer: a window holds a few values
                j = k - 1
                while j >= 0 and buf[j] > v:
                    buf[j + 1] = buf[j]
                    j -= 1
                buf[j + 1] = v
                k += 1
        if k:
            out[b] = buf[k // 2] if k % 2 else 0.5 * (buf[k // 2 - 1] + buf[k // 2])
    return out


def _dc_plateaus(x, valid, fs, baseline=None):
    """Sustained offsets with sharp edges: [(onset_s, offset_s, level_uv, z, rise_s), ...].

    Block means over :data:`DC_BLOCK_S`; a step is the difference of the medians of the
    :data:`DC_STEP_BLOCKS` blocks after and before a point, its noise the blocks' robust scatter
    (from successive differences, so slow trends and steps do not inflate it); steps beyond
    :data:`DC_STEP_Z` standard errors are candidates. A step and a later opposite step of similar
    size (0.5-2x), 60 s to 1 h apart, make a plateau when the blocks between them are flat, the
    flanks around them (60 s each) are flat and at the record's median level, and the plateau's
    level stands :data:`DC_Z` standard errors (and :data:`DC_MIN_UV`) from the flanks'. A step
    with no opposite step before the end of the data, followed by at least 60 s of such a
    plateau up to the end, is an open plateau (its offset is the end of the data). ``baseline``
    (uV) is the level without stimulation: the median of all block means by default.
    """
    block_n = max(1, int(round(DC_BLOCK_S * fs)))
    m = block_means(x, _ALL_VALID if valid is None else valid, block_n, 0.7)
    w = DC_STEP_BLOCKS
    if m.size < 4 * w + 30:
        return []
    d = np.diff(m)
    d = d[np.isfinite(d)]
    if d.size < 20:
        return []
    sigma = max(1.4826 * float(np.median(np.abs(d))) / math.sqrt(2.0), 0.05)
    med = rolling_median(m, w)
    # step[b]: median of blocks b..b+w-1 minus median of blocks b-w..b-1 (index b of m)
    step = np.full(m.size, np.nan)
    step[w: m.size - w + 1] = med[w:] - med[: med.size - w]
    se_step = 1.25 * sigma * math.sqrt(2.0 / w)
    # slow drift (EOG, sweat) moves the level over the 40 s a step spans far more than successive
    # blocks differ: the step statistic's own robust spread over the data is its noise then
    finite = step[np.isfinite(step)]
    if finite.size >= 30:
        se_step = max(se_step, 1.4826 * float(np.median(np.abs(finite - np.median(finite)))))
    zs = np.abs(np.nan_to_num(step)) / se_step
    # candidate steps: local maxima of the step statistic (the first of equal values); only the
    # few points past DC_STEP_Z are looked at
    cand = [b for b in np.flatnonzero(zs[: m.size - w + 1] > DC_STEP_Z).tolist()
            if b >= w and zs[b] >= zs[max(0, b - w): b + w + 1].max()
            and not (zs[max(0, b - w): b] == zs[b]).any()]
    flank = int(round(60.0 / DC_BLOCK_S))
    guard = int(round(2 * DC_RAMP_GUARD_S / DC_BLOCK_S))
    # the record's own level: a plateau's flanks must be at it (else the "plateau" is a pause
    # between two blocks of a session, or a drifting baseline)
    if baseline is None:
        baseline = float(np.nanmedian(m))
    spread = []  # the blocks' SDs over their valid samples and their counts, computed once when needed

    def plateau_of(b1, b2):
        """(level, z) of the plateau between steps b1 and b2 (b2 = m.size: open), or None."""
        plateau = m[b1 + guard: b2 - guard if b2 < m.size else m.size]
        flanks = m[max(0, b1 - flank): max(0, b1 - guard)]
        if b2 < m.size:
            flanks = np.concatenate((flanks, m[b2 + guard: b2 + flank]))
        plateau, flanks = plateau[np.isfinite(plateau)], flanks[np.isfinite(flanks)]
        if plateau.size < 10 or flanks.size < 10:
            return None
        level = float(np.median(plateau) - np.median(flanks))
        # a current shifts a living signal; an electrode that failed (railed at the ADC limit,
        # or disconnected) is a "plateau" with no signal on it
        # (the median of the blocks' SDs over their valid samples: lost samples and a few blocks of
        # signal at a still open end do not count)
        if not spread:
            ok = valid if valid is not None and valid.size else np.ones(x.size, dtype=bool)
            sd_all, n_all = second_sd(x[None, :], ok, block_n)
            spread.extend((sd_all[0], n_all))
        a, b = b1 + guard, max(b1 + guard, b2 - guard if b2 < m.size else m.size)
        sd, n = spread[0][a:b], spread[1][a:b]
        full = n >= block_n // 2
        if not full.any():
            return None
        if float(np.median(sd[full])) < FLAT_UV:
            return None
        tol = max(abs(level) / 2.0, 3.0 * sigma)
        flat = (np.mean(np.abs(plateau - np.median(plateau)) <= tol) >= 0.9
                and np.mean(np.abs(flanks - np.median(flanks)) <= tol) >= 0.9
                and abs(np.median(flanks) - baseline) <= tol)
        z = abs(level) / (1.25 * sigma * math.sqrt(1.0 / plateau.size + 1.0 / flanks.size))
        if flat and z > DC_Z and abs(level) >= DC_MIN_UV and np.sign(level) == np.sign(step[b1]):
            return level, float(z)
        return None

    used = set()
    out = []
    for i, b1 in enumerate(cand):
        if b1 in used:
            continue
        s1 = step[b1]
        closed = False
        for b2 in cand[i + 1:]:
            if b2 in used or np.sign(step[b2]) == np.sign(s1):
                continue
            dur = (b2 - b1) * DC_BLOCK_S
            if dur < 60.0:
                continue
            if dur > 3600.0:
                break
            if not 0.5 <= abs(step[b2] / s1) <= 2.0:
                continue  # a small wobble inside the plateau, or a bigger, unrelated step
            closed = True
            found = plateau_of(b1, b2)
            if found is not None:
                out.append((b1 * DC_BLOCK_S, b2 * DC_BLOCK_S, found[0], found[1],
                            _rise_time(x, valid, fs, b1 * block_n, found[0])))
                used.update((b1, b2))
            break
        if not closed and (m.size - b1) * DC_BLOCK_S >= 60.0:
            found = plateau_of(b1, m.size)
            if found is not None:
                out.append((b1 * DC_BLOCK_S, m.size * DC_BLOCK_S, found[0], found[1],
                            _rise_time(x, valid, fs, b1 * block_n, found[0])))
                used.add(b1)
    return out


def _rise_time(x, valid, fs, centre, level):
    """Duration in s of the raised-cosine ramp best fitting a step of ``level`` uV near sample
    ``centre`` (1-s means over +-30 s)."""
    block_n = max(1, int(round(fs)))
    lo = max(0, centre - int(30 * fs))
    seg = np.ascontiguousarray(x[lo: centre + int(30 * fs)], dtype=np.float64)
    vs = _ALL_VALID if valid is None else valid[lo: lo + seg.size]
    m = block_means(seg, vs, block_n, 0.7)
    ok = np.isfinite(m)
    if ok.sum() < 20:
        return math.nan
    base = float(np.nanmedian(m[:15]))
    t = (np.arange(m.size) + 0.5) * block_n / fs
    ramps = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0])
    sse = ramp_fit(np.where(ok, m - base, 0.0), ok, t, level, np.arange(5.0, 50.0, 0.5), ramps, True)
    return float(ramps[int(np.argmin(sse.min(axis=1)))])


def _dc_events(x, valid, fs, channel, alpha_log10, baseline=None):
    """Electrical events from DC plateaus of one channel, plateaus < _SESSION_GAP_S apart merged."""
    plateaus = _dc_plateaus(x, valid, fs, baseline)
    events = []
    i = 0
    while i < len(plateaus):
        j = i
        while j + 1 < len(plateaus) and plateaus[j + 1][0] - plateaus[j][1] < _SESSION_GAP_S:
            j += 1
        group = plateaus[i: j + 1]
        onset, offset = group[0][0], group[-1][1]
        z = max(p[3] for p in group)
        log10_p = -(z * z / 2.0 + math.log(z * math.sqrt(2 * math.pi))) / math.log(10.0)
        levels = ", ".join(f"{p[2]:+.0f}" for p in group)
        rises = [p[4] for p in group if np.isfinite(p[4])]
        parts = [f"DC shift {levels} uV for {offset - onset:.0f} s ({z:.0f} standard errors)"]
        if len(group) > 1:
            pauses = [b[0] - a[1] for a, b in zip(group[:-1], group[1:])]
            parts.append(f"{len(group)} blocks (pauses {', '.join(f'{p:.0f}' for p in pauses)} s)")
        if rises:
            parts.append("ramps " + "/".join(f"{r:g}" for r in rises) + " s")
        events.append(AdjustmentEvent(onset, offset - onset, "electrical", _score(log10_p, 10 ** alpha_log10),
                                      "; ".join(parts) + " (tDCS)", (channel,), None))
        i = j + 1
    return events


# --------------------------------------------------------------------------------------------
# Public API


def _check(data, fs, valid):
    x = np.asarray(data)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise SignalError(f"data must be (n_channels, n_samples), got shape {np.shape(data)}")
    if not fs >= 50.0:
        raise SignalError(f"line detection needs fs >= 50 Hz, got {fs}")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool).ravel()
        if valid.size != x.shape[1]:
            raise SignalError(f"valid has {valid.size} samples, data {x.shape[1]}")
    return x, valid


def detect_lines(data, fs, *, valid=None, mains_hz=(50.0, 60.0)) -> list:
    """Find electrical-stimulation artefacts and sensory steady-state responses (offline).

    Parameters
    ----------
    data : array_like, shape (n_channels, n_samples) or (n_samples,)
        Electrode signals in uV.
    fs : float
        Sample rate in Hz (>= 50).
    valid : array_like of bool, shape (n_samples,), optional
        False where samples are missing (written as 0); such tiles and blocks are left out.
    mains_hz : sequence of float, optional
        Mains frequencies whose harmonics are not adjustments, by default (50, 60).

    Returns
    -------
    list of AdjustmentEvent
        Kinds ``"electrical"`` and ``"entrainment"``, sorted by onset, overlapping events of one kind
        merged; ``frequency_hz`` is the line's, ``channels`` where it was found.
    """
    x, valid = _check(data, fs, valid)
    fs = float(fs)
    n_channels, n_samples = x.shape
    geo = _geometry(fs)
    n_tiles = n_samples // geo.tile_n
    if n_tiles < SCALES[0][0] or geo.last < geo.first:
        return []
    excluded = _mains_mask(geo.freqs, mains_hz, fs)
    alpha = _alpha(int((~excluded).sum()), n_channels)
    starts = []
    for m, hop in SCALES:
        # plus the window flush with the end, so that the record's tail is tested too
        starts.append(np.unique(np.append(np.arange(0, n_tiles - m + 1, hop), max(n_tiles - m, 0))))
    lines = []
    weight = None
    if valid is not None and not valid.all():
        weight = valid.astype(np.float32)
    else:
        valid = None
    screen = None
    for ch in range(n_channels):
        xc = np.ascontiguousarray(x[ch])
        if xc.dtype not in (np.float32, np.float64):
            xc = xc.astype(np.float64)
        screen = _screen_tiles(xc, weight, geo, n_tiles, reuse=screen)
        cache = {}
        for group in _group(_screen_windows(screen, starts, excluded, alpha), geo, ch):
            lines += _lines_of_group(xc, valid, weight, geo, group, alpha, cache, mains_hz)
    events = []
    dc = []
    for ch in range(n_channels):
        dc += _dc_events(np.ascontiguousarray(x[ch]), valid, fs, ch, math.log10(alpha))
    accepted = _absorb([ln for ln in lines if not ln.reason])
    for line in accepted:
        if any(line.channel in e.channels and e.overlaps(line.onset, line.offset) for e in dc):
            line.dc = True
        _classify(line)
    # one line seen on several channels gets one kind: that of its clearest channel
    for line in accepted:
        same = [ln for ln in accepted if abs(ln.frequency - line.frequency) <= 2.0 / TILE_S
                and ln.onset < line.offset and line.onset < ln.offset]
        line.kind = min(same, key=lambda ln: ln.log10_p).kind
        events.append(_to_event(line, alpha))
    return _merge(events + dc)


# --------------------------------------------------------------------------------------------
# Live

#: Fast path: window length in s, its DPSS NW and tapers, the F level, the reference's memory in s
#: and its delay (the window's own seconds stay out of the level it is compared with).
FAST_WINDOW_S = 8.0
FAST_HALF_BANDWIDTH = 4.0
FAST_TAPERS = 7
FAST_F_P = 1e-3
#: Alpha (7-13 Hz) can stay narrow for several seconds in wake: the fast path asks for a stricter
#: F-test there (p below this) and for the band's limits in Hz.
FAST_F_P_ALPHA = 1e-5
FAST_ALPHA_HZ = (7.0, 13.0)
FAST_REFERENCE_S = 60.0
FAST_DELAY_S = 10.0
FAST_FALSE_ALARMS_PER_HOUR = 0.05
#: Window lengths in s of the fast paths (the budget above is shared): the 8-s window catches strong
#: lines within seconds, the 32-s one (same NW, 4x the line energy against the same noise density)
#: lines about half as large within about half a minute. Each longer path compares a window with
#: the level before it (delay: window + 2 s, as the 8-s path's 10 s) over a longer memory
#: (4 windows at least).
FAST_WINDOWS_S = (8.0, 32.0)
#: Lowest frequency of the fast path in Hz: below, trains of slow waves look like lines for 8 s.
FAST_MIN_HZ = 3.0
#: Consecutive windows (1 s apart) a bin must pass before the fast path raises an alarm.
FAST_STREAK = 2
#: Raw data in s a monitor keeps to analyse a new line (its windows, margins and the time before it).
HISTORY_S = 1600.0
#: Fast DC path (tDCS within seconds): 1-s block means; the last FAST_DC_HOLD_S s (the new level)
#: against the FAST_DC_BASE_S s before a guard of FAST_DC_GUARD_S s (the current's ramp), at a level
#: Bonferroni-corrected for FAST_DC_FALSE_ALARMS_PER_HOUR over every second and channel.
FAST_DC_HOLD_S = 3
FAST_DC_GUARD_S = 6
FAST_DC_BASE_S = 60
FAST_DC_FALSE_ALARMS_PER_HOUR = 0.02
#: Data in s around a new line's onset in which the fast path measures its rise (see :func:`onset_ramp`).
FAST_RAMP_SPAN_S = 40.0
_REANALYSE_TILES = 4  # a known line is measured again every so many tiles while windows see it
_MAX_DEVICE_LINES = 64  # device lines remembered per channel (bounded memory)


@dataclass
class _Track:
    """A line that raised an alarm, kept up to date while it lasts."""

    channels: set
    frequency: float
    onset: float
    end: float
    kind: str
    score: float
    evidence: str
    analysed: bool      # measured by the full (tile) analysis, not only by the fast path
    log10_p: float = 0.0     # significance of the view shown
    next_analysis: int = 0   # tile from which the tile analysis looks at it again
    fast: tuple = ()         # the fast path's view (amplitude, harmonic, dB, F, window s) until analysed

    def event(self) -> AdjustmentEvent:
        freq = None if math.isnan(self.frequency) else float(self.frequency)
        return AdjustmentEvent(float(self.onset), float(max(self.end - self.onset, 1.0)), self.kind, self.score,
                               self.evidence, tuple(sorted(self.channels)), freq)


class LineMonitor:
    """Live detection of electrical-stimulation and entrainment lines, block by block.

    Two paths share the work. The tile analysis of :func:`detect_lines` runs on every completed
    32-s tile over the windows ending there, with the same alarm levels, and analyses a new line
    on the last :data:`HISTORY_S` s of raw data (bounded memory). A fast path catches strong
    lines within seconds: every second of data, an 8-s multitaper window (NW = 4, 7 tapers) is
    tested at every bin; an alarm needs the harmonic F-test (p < :data:`FAST_F_P`) and a line
    power far above the bin's own level over the previous minute (delayed by 10 s, so that a
    new line is compared with the time before it; an old line is its own reference and stays
    quiet), at a level Bonferroni-corrected for :data:`FAST_FALSE_ALARMS_PER_HOUR`. A 32-s window
    does the same every second (:data:`FAST_WINDOWS_S`; the budget is shared) and catches lines
    about half as large within about half a minute. The fast path's
    kind is a first guess (frequency, amplitude, 2nd harmonic, the shape of its rise), updated
    every second while the line is young; the tile analysis refines it when the line has lasted
    a few tiles (the ``events`` list shows the latest view). A fast DC path flags a step to a new,
    steady level (tDCS) within about 10 s of its onset (:func:`dc_step_test`).

    Parameters
    ----------
    fs : float
        Sample rate in Hz (>= 50).
    n_channels : int
        Channels per block.
    mains_hz : sequence of float, optional
        Mains frequencies whose harmonics are ignored, by default (50, 60).

    Attributes
    ----------
    events : list of AdjustmentEvent
        Everything raised so far (latest view of each line), sorted by onset.
    """

    def __init__(self, fs: float, n_channels: int, *, mains_hz=(50.0, 60.0)):
        if not fs >= 50.0:
            raise SignalError(f"line detection needs fs >= 50 Hz, got {fs}")
        self.fs = float(fs)
        self.n_channels = int(n_channels)
        self.mains_hz = tuple(mains_hz)
        geo = _geometry(self.fs)
        self._geo = geo
        self._excluded = _mains_mask(geo.freqs, self.mains_hz, self.fs)
        # every window ending at every tile is tested live (hop 1 for both scales)
        per_hour = sum(3600.0 / TILE_S for _ in SCALES) * int((~self._excluded).sum()) * max(self.n_channels, 1)
        self._alpha = FALSE_ALARMS_PER_HOUR / per_hour
        self._max_m = max(m for m, _ in SCALES)
        tile_n = geo.tile_n
        self._keep = int(math.ceil(HISTORY_S / TILE_S))
        self._x = np.zeros((self.n_channels, (self._keep + 8) * tile_n), dtype=np.float32)
        self._v = np.ones(self._x.shape[1], dtype=bool)
        self._buf_tile = 0      # record tile at buffer position 0
        self._len = 0           # samples in the buffer
        self._n = 0             # samples pushed so far
        n_start = int(round(_START_S * self.fs))
        self._start_x = np.zeros((self.n_channels, n_start), dtype=np.float32)
        self._start_v = np.zeros(n_start, dtype=bool)
        lo, hi = _bins_slice(geo, tile_n // 2 + 1)
        self._y = np.zeros((self.n_channels, self._max_m, geo.n_bins), dtype=np.complex64)
        self._power = np.zeros((self.n_channels, self._max_m, hi - lo), dtype=np.float32)
        self._ok = np.zeros((self.n_channels, self._max_m), dtype=bool)
        self._tiles = 0         # tiles analysed so far
        self._cache = [dict() for _ in range(self.n_channels)]
        self._devices = [[] for _ in range(self.n_channels)]  # (frequency, amplitude) of device lines
        self._tracks: list = []
        self._fasts = [_FastPath(self.fs, self.n_channels, self.mains_hz, w, len(FAST_WINDOWS_S))
                       for w in FAST_WINDOWS_S]
        self._next_fast = int(round(min(FAST_WINDOWS_S) * self.fs))
        # fast DC path: a two-sided Gaussian level for its share of the budget, per channel and second
        self._dc_alpha = FAST_DC_FALSE_ALARMS_PER_HOUR / (3600.0 * max(self.n_channels, 1))
        self._dc_z = float(_special.ndtri(1.0 - self._dc_alpha / 2.0))
        self._dc_streak = np.zeros(self.n_channels, dtype=np.int64)

    @property
    def events(self) -> list:
        """Every alarm raised so far, in its latest view (onset, extent, kind), sorted by onset;
        overlapping events of one kind merged."""
        return _merge([tr.event() for tr in self._tracks])

    def push(self, block, valid=None) -> list:
        """Analyse the next block; return the alarms it raised.

        Parameters
        ----------
        block : array_like, shape (n_channels, n_samples)
            Consecutive samples in uV.
        valid : array_like of bool, shape (n_samples,), optional
            False where samples are missing (written as 0).

        Returns
        -------
        list of AdjustmentEvent
            Alarms newly raised (onset in s from the first pushed sample).
        """
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[None, :]
        if block.shape[0] != self.n_channels:
            raise SignalError(f"expected {self.n_channels} channels, got {block.shape[0]}")
        n = block.shape[1]
        valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).ravel()
        if valid.size != n:
            raise SignalError(f"valid has {valid.size} samples, block {n}")
        new: list = []
        done = 0
        # feed in pieces that end on tile boundaries, so each tile is analysed as soon as it is complete
        while done < n:
            room = (self._tiles + 1) * self._geo.tile_n - self._n
            take = min(n - done, room)
            self._append(block[:, done: done + take], valid[done: done + take])
            done += take
            if self._n >= self._next_fast:
                new += self._fast_step()
                self._next_fast = self._n + int(round(self.fs))
            if self._n == (self._tiles + 1) * self._geo.tile_n:
                new += self._tile_step()
        return new

    # -- buffers ---------------------------------------------------------------------------

    def _append(self, x, v):
        n = x.shape[1]
        if n == 0:
            return
        n_start = self._start_v.size
        if self._n < n_start:
            k = min(n, n_start - self._n)
            self._start_x[:, self._n: self._n + k] = x[:, :k]
            self._start_v[self._n: self._n + k] = v[:k]
        if self._len + n > self._x.shape[1]:
            # drop the oldest tiles, keeping _keep of them
            drop = (self._len // self._geo.tile_n - self._keep) * self._geo.tile_n
            drop = max(drop, self._geo.tile_n)
            self._x[:, : self._len - drop] = self._x[:, drop: self._len]
            self._v[: self._len - drop] = self._v[drop: self._len]
            self._len -= drop
            self._buf_tile += drop // self._geo.tile_n
            for cache in self._cache:
                cache.clear()
        self._x[:, self._len: self._len + n] = x
        self._v[self._len: self._len + n] = v
        self._len += n
        self._n += n

    def _latest(self, n):
        """The last ``n`` samples of every channel and their validity."""
        n = min(n, self._len)
        return self._x[:, self._len - n: self._len], self._v[self._len - n: self._len]

    # -- tile path ---------------------------------------------------------------------------

    def _tile_step(self) -> list:
        geo = self._geo
        k = self._tiles
        self._tiles += 1
        now = self._n / self.fs
        pos = k - self._buf_tile  # the tile's index in the buffer
        slot = k % self._max_m
        valid = self._v[: self._len]
        weight = None if valid.all() else valid.astype(np.float32)
        new = []
        for ch in range(self.n_channels):
            x = self._x[ch, : self._len]
            y, power, ok = _screen_spectra(x, weight, geo, [pos])
            self._ok[ch, slot] = ok[0]
            self._y[ch, slot], self._power[ch, slot] = y[0], power[0]
            # the last tiles in time order, as a screen over windows ending at tile k
            first = max(0, k - self._max_m + 1)
            order = [t % self._max_m for t in range(first, k + 1)]
            screen = _Screen(self._y[ch, order], self._power[ch, order], self._ok[ch, order], geo.pad)
            starts = [np.array([k - m + 1 - first]) if k + 1 >= m else np.zeros(0, dtype=np.int64)
                      for m, _ in SCALES]
            screened = _screen_windows(screen, starts, self._excluded, self._alpha)
            for group in _group(screened, geo, ch):
                track = self._track_of(ch, group.frequency, now)
                if track is None and self._track_of(ch, group.frequency, now, related=True) is not None:
                    continue  # a harmonic or sideband of a known line
                if track is not None and track.analysed and k < track.next_analysis:
                    continue
                # re-index the windows from the screen's tiles to the buffer's
                shift = first - self._buf_tile
                group.windows = [(w[0] + shift, w[1], w[2], w[3], w[4]) for w in group.windows
                                 if w[0] + shift >= 0]
                if not group.windows:
                    continue
                lines = _lines_of_group(x, valid, weight, geo, group, self._alpha, self._cache[ch], self.mains_hz,
                                        (self._start_x[ch], self._start_v), self._buf_tile * TILE_S)
                # device lines are remembered: later sessions at their frequency need to ramp up
                devices = self._devices[ch]
                for ln in lines:
                    if ln.device and not math.isnan(ln.amplitude):
                        devices.append((ln.frequency, ln.amplitude))
                        del devices[:-_MAX_DEVICE_LINES]
                for ln in lines:
                    if not ln.reason and any(abs(ln.frequency - fd) <= 2.0 / TILE_S
                                             and ln.amplitude < DEVICE_RAMP_UP * ad for fd, ad in devices):
                        ln.reason, ln.device = "no stronger than a device line seen before", True
                for line in _absorb([ln for ln in lines if not ln.reason]):
                    if track is None and line.offset < now - 2 * TILE_S:
                        continue  # an episode already over when first seen: not an alarm any more
                    line.dc = any(math.isnan(tr.frequency) and ch in tr.channels and tr.onset < line.offset
                                  and line.onset < tr.end for tr in self._tracks)
                    _classify(line)
                    ev = _to_event(line, self._alpha)
                    if track is None:
                        track = _Track({ch}, line.frequency, line.onset, line.offset, line.kind, ev.score,
                                       ev.evidence, True, log10_p=line.log10_p)
                        self._tracks.append(track)
                        new.append(track.event())
                    else:
                        # a fuller view of a known line, or an as full and clearer one (another channel),
                        # replaces the earlier view; a partial one (the line leaving the buffer) only extends it
                        dur, old = line.offset - line.onset, track.end - track.onset
                        if (not track.analysed or dur > 1.1 * old
                                or (dur >= 0.9 * old and line.log10_p <= track.log10_p)):
                            track.onset, track.log10_p = line.onset, line.log10_p
                            track.kind, track.score, track.evidence = line.kind, ev.score, ev.evidence
                        track.end = max(track.end, line.offset)
                        track.analysed = True
                        track.channels.add(ch)
                    track.next_analysis = k + _REANALYSE_TILES
                    break
            new += self._dc_step(ch, x, valid, now)
        return new

    def _dc_step(self, ch, x, valid, now) -> list:
        """DC plateaus in the buffer of one channel: new ones raise alarms, known ones are extended."""
        t0 = self._buf_tile * TILE_S
        # the level without stimulation: the buffer's median outside the known plateaus
        block_n = max(1, int(round(DC_BLOCK_S * self.fs)))
        m = block_means(x, _ALL_VALID if valid is None else valid, block_n, 0.7)
        tb = t0 + (np.arange(m.size) + 0.5) * DC_BLOCK_S
        free = np.isfinite(m)
        for tr in self._tracks:
            if math.isnan(tr.frequency):
                free &= (tb < tr.onset - DC_RAMP_GUARD_S) | (tb > tr.end + DC_RAMP_GUARD_S)
        baseline = float(np.median(m[free])) if free.sum() >= 30 else None
        new = []
        for ev in _dc_events(x, valid, self.fs, ch, math.log10(self._alpha), baseline):
            onset, end = ev.onset + t0, ev.end + t0
            # one track per DC shift, whichever channels show it
            known = [tr for tr in self._tracks if math.isnan(tr.frequency)
                     and tr.onset - _SESSION_GAP_S < end and onset < tr.end + _SESSION_GAP_S]
            if known:
                tr = known[0]
                tr.onset, tr.end = min(tr.onset, onset), max(tr.end, end)
                if ev.score > tr.score:
                    tr.score, tr.evidence = ev.score, ev.evidence
                tr.channels.add(ch)
                continue
            if end < now - 2 * TILE_S:
                continue  # over before it was seen: not an alarm any more
            self._tracks.append(_Track({ch}, math.nan, onset, end, "electrical", ev.score, ev.evidence, True))
            new.append(self._tracks[-1].event())
        return new

    def _track_of(self, channel, frequency, now, related=False):
        """A track at this frequency (any channel) still within reach of the windows, or None; with
        ``related``, also one whose harmonics or sidebands (within 1.5 Hz of a multiple) reach it."""
        reach = self._max_m * TILE_S + _SESSION_GAP_S
        for tr in self._tracks:
            if tr.end < now - reach or math.isnan(tr.frequency):
                continue
            if abs(tr.frequency - frequency) <= 2.0 / TILE_S or (related and _related(frequency, tr.frequency)):
                return tr
        return None

    # -- fast path -----------------------------------------------------------------------------

    def _fast_step(self) -> list:
        now = self._n / self.fs
        new = []
        for fast in self._fasts:
            x, v = self._latest(fast.n)
            if x.shape[1] < fast.n:
                continue
            for ch, f, amp, z_db, f_stat, harmonic in fast.step(x, v, now):
                track = self._track_of(ch, f, now, related=True)
                if track is not None:
                    track.end = now
                    track.channels.add(ch)
                    if track.fast and not track.analysed and now - track.onset <= FAST_RAMP_SPAN_S - 5.0:
                        # the line's rise is better known with every second: guess the kind again
                        self._fast_view(track, ch, now)
                    continue
                onset = self._fast_onset(ch, f, amp, now, fast.window_s)
                # score: decades of the exponential tail beyond the alarm level
                margin = (10.0 ** (z_db / 10.0) - fast.z_min) / math.log(10.0)
                score = float(min(1.0, 1.0 - 0.5 * math.exp(-max(margin, 0.0) / 3.0)))
                track = _Track({ch}, f, onset, now, "", score, "", False,
                               fast=(amp, harmonic, z_db, f_stat, fast.window_s))
                self._fast_view(track, ch, now)
                self._tracks.append(track)
                new.append(track.event())
        return new + self._fast_dc_step(now)

    def _fast_dc_step(self, now) -> list:
        """The fast DC path: a step to a new, steady level within the last few seconds (tDCS)."""
        block_n = max(1, int(round(self.fs)))
        n_blocks = FAST_DC_BASE_S + FAST_DC_GUARD_S + FAST_DC_HOLD_S
        x, v = self._latest(n_blocks * block_n)
        if x.shape[1] < n_blocks * block_n:
            return []
        new = []
        for ch in range(self.n_channels):
            found = dc_step_test(x[ch], v, block_n, self._dc_z)
            self._dc_streak[ch] = self._dc_streak[ch] + 1 if found is not None else 0
            if found is None or self._dc_streak[ch] < FAST_STREAK:
                continue
            level, z, first = found
            onset = now - (n_blocks - first) * block_n / self.fs
            # one track per DC shift, whichever channels show it (the tile path extends it later)
            known = [tr for tr in self._tracks if math.isnan(tr.frequency) and tr.end >= onset - _SESSION_GAP_S]
            if known:
                known[0].end = max(known[0].end, now)
                known[0].channels.add(ch)
                continue
            log10_p = _log10_normal_tail(z)
            evidence = (f"DC step {level:+.0f} uV held for {FAST_DC_HOLD_S + FAST_STREAK - 1} s ({z:.1f} standard "
                        f"errors from the {FAST_DC_BASE_S}-s level before it, beyond its range) (tDCS)")
            self._tracks.append(_Track({ch}, math.nan, onset, now, "electrical", _score(log10_p, self._dc_alpha),
                                       evidence, False))
            new.append(self._tracks[-1].event())
        return new

    def _fast_view(self, track, ch, now):
        """The fast path's kind and evidence of a track: frequency, amplitude, 2nd harmonic and the
        shape of the line's rise so far."""
        amp, harmonic, z_db, f_stat, window_s = track.fast
        f = track.frequency
        x, v = self._latest(int(round(FAST_RAMP_SPAN_S * self.fs)))
        start = now - x.shape[1] / self.fs
        ramp = onset_ramp(np.ascontiguousarray(x[ch], dtype=np.float64), v, self.fs, f, track.onset - start,
                          0.5 / window_s)
        kind, why = _fast_kind(f, amp, harmonic, ramp)
        track.kind = kind
        track.evidence = (f"new line at {f:.2f} Hz, {amp:.2g} uV, {z_db:.0f} dB above the level before it "
                          f"({window_s:g}-s window), F = {f_stat:.0f}{'; 2nd harmonic' if harmonic else ''}; "
                          f"first guess {kind} ({why})")

    def _fast_onset(self, ch, f, amp, now, window_s=FAST_WINDOW_S):
        """Most likely change point of the line over the last 30 s or two windows (1-s blocks,
        steady line after it)."""
        n = int(round(max(30.0, 2.0 * window_s) * self.fs))
        x, v = self._latest(n)
        block_n = max(8, int(round(self.fs)))
        window = np.hanning(block_n + 2)[1:-1].astype(np.float64)
        z, w = block_demodulate(np.ascontiguousarray(x[ch], dtype=np.float64), v, x.shape[1] % block_n, block_n,
                                x.shape[1] // block_n, 2.0 * np.pi * f / self.fs, window)
        ok = w >= 0.7
        pair = ok[1:] & ok[:-1]
        if z.size < 6 or pair.sum() < 4 or not ok[-3:].any():
            return max(0.0, now - window_s)
        c = z[-3:][ok[-3:]].mean()
        sigma2 = max(float(np.median(np.abs(np.diff(z))[pair] ** 2)) / (2.0 * np.log(2.0)), 1e-30)
        llr = np.where(ok, (2.0 * np.real(z * np.conj(c)) - abs(c) ** 2) / sigma2, 0.0)
        gain = np.cumsum(llr[::-1])[::-1]  # evidence for "on from block m to the end"
        first = int(np.argmax(gain))
        return max(0.0, now - (z.size - first) * block_n / self.fs)


def _log10_normal_tail(z):
    """log10 of the two-sided Gaussian tail beyond ``z`` standard errors."""
    return float((_special.log_ndtr(-abs(z)) + math.log(2.0)) / math.log(10.0))


def dc_step_test(x, valid, block_n, z_min):
    """Whether the last seconds of one channel stand at a new, steady DC level (a current switched on).

    The signal is cut into blocks of ``block_n`` samples (aligned to its end): the last
    :data:`FAST_DC_HOLD_S` blocks are the new level, the :data:`FAST_DC_GUARD_S` before them hold
    the ramp, and the :data:`FAST_DC_BASE_S` before those the level before. A step needs every
    new-level block beyond the whole range of the blocks before (a slow wave, a pop or a swing
    does not stay out there), the new level steady (spread within half the step), the step
    ``z_min`` standard errors from the level before (its spread, robust: slow drift widens it),
    at least :data:`DC_MIN_UV`, and the signal around the new level varying as before (a railed or
    disconnected electrode is flat, a movement swings far more).

    Parameters
    ----------
    x : ndarray of float, shape (n_samples,)
        The last samples of one channel in uV, ``n_samples`` = blocks x ``block_n``.
    valid : ndarray of bool, shape (n_samples,)
        False where samples are missing.
    block_n : int
        Samples per block.
    z_min : float
        Standard errors the step needs.

    Returns
    -------
    tuple or None
        ``(level_uv, z, first)`` with ``first`` the first block past a quarter of the step (its
        onset), or None.
    """
    hold, guard, base = FAST_DC_HOLD_S, FAST_DC_GUARD_S, FAST_DC_BASE_S
    m = block_means(np.ascontiguousarray(x, dtype=np.float64), valid, block_n, 0.7)
    if m.size < hold + guard + base:
        return None
    m = m[-(hold + guard + base):]
    before, after = m[:base], m[-hold:]
    before = before[np.isfinite(before)]
    if before.size < 0.8 * base or not np.isfinite(after).all():
        return None
    centre = float(np.median(before))
    level = float(np.median(after)) - centre
    sign = 1.0 if level > 0 else -1.0
    if abs(level) < DC_MIN_UV or sign * (after.min() if sign > 0 else after.max()) <= sign * (
            before.max() if sign > 0 else before.min()):
        return None
    if after.max() - after.min() > abs(level) / 2.0:
        return None
    # the level's noise: the spread of the blocks before, or of their changes over the span of a
    # step (guard + hold) when slow drift moves the level more than the blocks scatter
    lag = guard + hold
    drift = before[lag:] - before[:-lag]
    spread = max(1.4826 * float(np.median(np.abs(before - centre))),
                 1.4826 * float(np.median(np.abs(drift))) / math.sqrt(2.0) if drift.size >= 10 else 0.0, 0.05)
    z = abs(level) / (1.2533 * spread * math.sqrt(1.0 / hold + 1.0 / before.size))
    if z < z_min:
        return None
    # a current moves the level, not the signal's spread: the new level's blocks must vary as the
    # blocks before did (a railed electrode is flat, a movement swings far more)
    n = (hold + guard + base) * block_n
    seg = np.asarray(x[-n:], dtype=np.float64).reshape(-1, block_n)
    ok = np.asarray(valid[-n:], dtype=bool).reshape(-1, block_n)
    cnt = ok.sum(axis=1)
    mean = (seg * ok).sum(axis=1) / np.maximum(cnt, 1)
    sd = np.sqrt((((seg - mean[:, None]) ** 2) * ok).sum(axis=1) / np.maximum(cnt, 1))
    sd_before = sd[:base][cnt[:base] >= 0.7 * block_n]
    sd_after = float(np.median(sd[-hold:]))
    if sd_before.size == 0 or not FLAT_UV <= sd_after <= 2.0 * float(np.median(sd_before)):
        return None
    past = np.flatnonzero(np.nan_to_num(sign * (m[base:] - centre)) > abs(level) / 4.0)
    return level, float(z), int(base + (past[0] if past.size else guard))


def onset_ramp(x, valid, fs, f, onset, df_max):
    """How a new line rose: the raised-cosine ramp best fitting its in-phase envelope, and the
    log-likelihood ratio of a long ramp (>= 3 s, a stimulator's) against a short one (<= 2 s, a
    steady-state response's build-up).

    The envelope is taken in blocks of at least 0.5 s and 5 cycles after refining the frequency
    (within ``df_max``) on the blocks after ``onset``; its noise variance comes from the blocks
    more than 3 s before the onset (no line there), and the line's plateau from the last 3 s.

    Parameters
    ----------
    x : ndarray of float64, shape (n_samples,)
        The channel's last samples in uV, ending now.
    valid : ndarray of bool, shape (n_samples,)
        False where samples are missing.
    fs : float
        Sample rate in Hz.
    f : float
        The line's frequency in Hz.
    onset : float
        Its change point in s from ``x[0]``.
    df_max : float
        Largest frequency error searched in Hz.

    Returns
    -------
    tuple or None
        ``(best ramp s, LLR)``, the LLR capped to +-4; None when too little data is on either side.
    """
    block_n = max(8, int(round(max(0.5, 5.0 / f) * fs)))
    block_s = block_n / fs
    n_blocks = x.size // block_n
    first = x.size - n_blocks * block_n
    window = np.hanning(block_n + 2)[1:-1].astype(np.float64)
    z, w = block_demodulate(x, valid, first, block_n, n_blocks, 2.0 * np.pi * f / fs, window)
    ok = w >= 0.7
    t = (first + (np.arange(n_blocks) + 0.5) * block_n) / fs
    after = ok & (t >= onset)
    before = ok & (t < onset - 3.0)
    if after.sum() < 4 or before.sum() < 8:
        return None
    span = t[after][-1] - t[after][0] + block_s
    dfs = np.linspace(-df_max, df_max, 2 * int(math.ceil(4.0 * df_max * span)) + 1)
    df = float(dfs[int(np.argmax(zoom_power(z, after, t, dfs)))])
    z = z * np.exp(-2j * np.pi * df * t)
    c = z[after].mean()
    if abs(c) <= 0:
        return None
    env = np.real(z * np.conj(c / abs(c)))
    var = float(np.mean(np.abs(z[before]) ** 2)) / 2.0
    last = after & (t >= t[-1] - 3.0)
    amp = float(env[last].mean()) if last.any() else 0.0
    if amp <= 0 or var <= 0:
        return None
    ramps = np.array([0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    sel = ok & (t >= onset - 12.0)
    sse = ramp_fit(env, sel, t, amp, np.arange(onset - 8.0, onset + 2.0, 0.25), ramps, True)
    best = sse.min(axis=1)
    llr = float(np.clip((best[ramps <= 2.0].min() - best[ramps >= 3.0].min()) / (2.0 * var), -4.0, 4.0))
    return float(ramps[int(np.argmin(best))]), llr


def _fast_kind(f, amp, harmonic, ramp=None):
    """First guess of the kind from what the fast path shows (see the module's docstring):
    frequency, amplitude, 2nd harmonic and, when known, the line's rise ``(ramp s, LLR)``."""
    score = 0.0
    reasons = []
    if ramp is not None:
        score += ramp[1]
        reasons.append(f"rise {ramp[0]:g} s, LLR {ramp[1]:+.1f}")
    if f < 2.0:
        score += 3.0
        reasons.append("below 2 Hz")
    elif any(a <= f <= b for a, b in _ENTRAINMENT_BANDS_HZ):
        score -= 1.0
        reasons.append("usual sensory-drive rate")
    else:
        score += 1.0
        reasons.append("not a usual sensory-drive rate")
    if amp > 10.0:
        score += 3.0
        reasons.append("over 10 uV")
    if harmonic:
        score += 4.0
        reasons.append("harmonic")
    return ("electrical" if score > 0 else "entrainment"), ", ".join(reasons)


class _FastPath:
    """The fast path's state: 8-s multitaper windows against each bin's recent level."""

    def __init__(self, fs, n_channels, mains_hz, window_s=FAST_WINDOW_S, n_paths=1):
        self.fs = fs
        self.window_s = float(window_s)
        self.n = int(round(window_s * fs))
        self.tapers, self.dc = dpss_tapers(self.n, FAST_HALF_BANDWIDTH, FAST_TAPERS)
        self.gain2 = float(np.sum(self.dc * self.dc))
        width = FAST_HALF_BANDWIDTH / window_s
        self.lo_d = int(math.ceil(1.5 * FAST_HALF_BANDWIDTH))       # neighbours beyond 1.5 W
        self.hi_d = self.lo_d + int(round(1.0 * window_s))          # ... over 1 Hz
        self.first = max(1, int(math.ceil(max(FAST_MIN_HZ, 2 * width) * window_s)))
        self.last = int(math.floor(min(BAND_HZ[1], fs / 2.0 - 2 * width) * window_s))
        self.freqs = np.arange(self.first, self.last + 1) / window_s
        self.excluded = _mains_mask(self.freqs, mains_hz, fs)
        nb = self.freqs.size
        self.ref = np.zeros((n_channels, nb))
        self.ref_n = 0.0
        # the window's own seconds stay out of its reference; the reference spans several windows
        self.delay = [None] * int(round(FAST_DELAY_S - FAST_WINDOW_S + window_s))
        self.reference_s = max(FAST_REFERENCE_S, 4.0 * window_s)
        self.streak = np.zeros((n_channels, nb), dtype=np.int64)  # consecutive windows passing, per bin
        tests = 3600.0 * nb * n_channels * n_paths
        self.z_min = math.log(tests / FAST_FALSE_ALARMS_PER_HOUR)
        dof2 = 2.0 * (FAST_TAPERS - 1)
        self.f_min = np.full(nb, (dof2 / 2.0) * (FAST_F_P ** (-2.0 / dof2) - 1.0))
        alpha = (self.freqs >= FAST_ALPHA_HZ[0]) & (self.freqs <= FAST_ALPHA_HZ[1])
        self.f_min[alpha] = (dof2 / 2.0) * (FAST_F_P_ALPHA ** (-2.0 / dof2) - 1.0)

    def step(self, x, v, now):
        """Test the window ``x`` (n_channels, n); return [(channel, f, amp, dB, F, harmonic), ...]."""
        frac = v.mean()
        pad = self.hi_d
        lo = max(0, self.first - pad)
        hi = min(self.n // 2 + 1, self.last + pad + 1)
        if frac < 0.9:
            self.delay.append(None)
            self.delay.pop(0)
            return []
        seg = np.where(v, x - (x * v).sum(axis=1, keepdims=True) / max(v.sum(), 1), 0.0).astype(np.float32)
        eig = np.empty((seg.shape[0], FAST_TAPERS, hi - lo), dtype=np.complex64)
        for k in range(FAST_TAPERS):
            eig[:, k] = scipy.fft.rfft(seg * self.tapers[k], axis=1)[:, lo:hi]
        mu, f_stat, _, power = harmonic_f_test(eig, self.dc)
        # the louder side of the neighbourhood: on a steep spectral edge (e.g. a filter's) the
        # mean of both sides would understate the level at the bin
        cum = np.concatenate((np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)), axis=1)
        j, nb = np.arange(power.shape[1]), power.shape[1]
        left_a, left_b = np.clip(j - self.hi_d, 0, None), np.clip(j - self.lo_d + 1, 0, None)
        right_a, right_b = np.clip(j + self.lo_d, None, nb), np.clip(j + self.hi_d + 1, None, nb)
        left = (cum[:, left_b] - cum[:, left_a]) / np.maximum(left_b - left_a, 1)
        right = (cum[:, right_b] - cum[:, right_a]) / np.maximum(right_b - right_a, 1)
        near = np.maximum(left, right)
        sl = slice(self.first - lo, self.first - lo + self.freqs.size)
        mu, f_stat, power, near = mu[:, sl], f_stat[:, sl], power[:, sl], near[:, sl]
        line = (mu.real ** 2 + mu.imag ** 2) * self.gain2
        out = []
        if self.ref_n >= self.reference_s / 2:
            z = line / np.maximum(np.maximum(self.ref, near), 1e-30)
            hit = (z > self.z_min) & (f_stat > self.f_min[None, :]) & ~self.excluded[None, :]
            # one alarm per line: the strongest bin of each run of neighbouring bins
            for ch in range(hit.shape[0]):
                cols = np.flatnonzero(hit[ch] & (self.streak[ch] >= FAST_STREAK - 1))
                found = []
                for j in cols[np.argsort(-line[ch, cols])]:
                    if any(_related(self.freqs[j], self.freqs[i]) for i in found):
                        continue  # the strongest line's harmonics and sidebands
                    found.append(j)
                    f = float(self.freqs[j])
                    j2 = int(round(2 * f * self.window_s)) - self.first
                    harmonic = (0 <= j2 < self.freqs.size and f_stat[ch, j2] > self.f_min[j2]
                                and not self.excluded[j2])
                    out.append((ch, f, 2.0 * float(abs(mu[ch, j])), 10.0 * math.log10(z[ch, j]),
                                float(f_stat[ch, j]), bool(harmonic)))
            # a line holds its bin (+-1) window after window; an 8-s alpha burst does not for long
            near_hit = hit.copy()
            near_hit[:, 1:] |= hit[:, :-1]
            near_hit[:, :-1] |= hit[:, 1:]
            self.streak = np.where(near_hit, self.streak + 1, 0)
        # the reference: exponential mean of each bin's eigenspectrum, FAST_DELAY_S behind
        self.delay.append(power)
        old = self.delay.pop(0)
        if old is not None:
            rate = 1.0 / min(self.ref_n + 1.0, self.reference_s)
            self.ref += rate * (old - self.ref)
            self.ref_n += 1.0
        return out
