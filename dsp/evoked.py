"""Auditory stimulation during sleep: series of evoked responses to clicks or cues.

A click heard in NREM sleep evokes a stereotyped response (Bastien & Campbell 1992; Ngo et al. 2013):
a small P200 (0.2 s), an N350, a large K-complex-like N550 (0.55 s) and a P900 (0.9 s). One such
wave proves nothing, since spontaneous slow oscillations and K-complexes look alike and also come in
trains about 1 s apart; the evidence of stimulation is the *series*, tied to a clock or to a
trigger rule that sleep does not have. Two protocols are tested, each against a null taken from
the recording itself, with every alarm level Bonferroni-corrected so that clean recordings raise at
most :data:`FALSE_ALARMS_PER_HOUR` false alarms per hour (half the budget for each protocol).

Common front end (per channel): boxcar averages down to about :data:`ANALYSIS_HZ` (missing samples
left out of the averages, short gaps bridged, gaps longer than :data:`MAX_BRIDGE_S`, artefacts
beyond :data:`ARTEFACT_SD` robust SDs and dead stretches of a railed or flat electrode excluded
with a margin, so that a gap's edges never count as evidence), a zero-phase 0.5-5 Hz band-pass at
about :data:`FILTER_HZ`, and two matched filters for the response (the waveform above seen through
the same filters, and its whitened form, which brings out the sharp P200/N350 against the 1/f
background of deep sleep), each over its local RMS. With stages, wake epochs are left out (no
N550 there, most of the artefacts); the rest is kept, since stagers confuse stimulated N2 with REM.

Open loop (cues every few seconds whatever the EEG does, e.g. every 5 +- 0.5 s for targeted
memory reactivation). The larger of the two matched filters, maximised over the cue's jitter
(+-:data:`CUE_JITTER_S`) and averaged over channels, is turned into normal scores block by block
(:data:`OPEN_BLOCK_S`) and folded at every period of :data:`CUE_PERIOD_S` and every phase (epoch
folding, as for pulsars): a clock puts a response into the same 0.5-s phase bin cycle after cycle,
spontaneous waves are spread over all phases. Cycles are further apart than the memory of sleep
EEG, so a bin's mean over n cycles is N(0, 1/n) under the null; the best bin's p-value is
multiplied by the number of independent (period, phase) cells of the window.

Closed loop (Ngo 2013: a click at the predicted up-state 0.5 s after a slow-oscillation trough
below a threshold, a second click :data:`CLICK_INTERVAL_S` later, then a pause). The stimulator
is emulated: on the 0.5-2 Hz signal, the lowest point of each run below a threshold, then a dead
time of :data:`REFRACTORY_S` (clicks and pause), then the next run (:func:`emulate_triggers`),
at every threshold of :data:`DEPTHS_SD`, since the device's is unknown. At the right threshold
the emulation falls into step with the device and picks its triggers, and not the evoked N550s
that follow them (they come within the dead time). After each trigger the matched filters score
the *pair* of responses at the protocol's fixed lags (onset 0.5 s and 1.575 s after the trough).
The null comes from the recording itself: without stimulation, every trigger is a spontaneous slow
oscillation, and *where* it falls within a stretch of the same sleep does not change what follows
it, so the scores of the triggers inside a window are exchangeable with those of the other
triggers of the hour around it (:data:`LOCAL_REFERENCE_S`: sleep drifts over tens of minutes, and
what follows a spontaneous trough drifts with it). A one-sided rank-sum (Mann-Whitney) test
compares them, stratified by stage group when stages are given (NREM; N1 and REM; wake or unknown:
van Elteren's sum of per-stratum statistics), since what follows a spontaneous trough does depend
on the stage (slow-oscillation trains in N3, eye movements on an EOG lead in REM). Triggers are at
least the dead time apart, longer than the span a score reads, so their scores share no data. The
time-reversal null used before cannot work here: a trigger and its two evoked N550s, 1.05 and
1.075 s apart, make a nearly palindromic pattern. (Measured on the DREAMS central leads with
clicks injected at a -40 uV trigger, 10-min episodes in 30-min excerpts, N550 30-60 uV: found where
the 10 min hold about 90 click pairs, missed where they hold 4-23: with 20 min of reference, about
25 reference triggers limit the rank test to p ~ 1e-3-1e-5 there, against an alarm level of about
1e-4 per test.) Why the reference is local: on simulated clean nights the null held within a
stage (scores of consecutive triggers uncorrelated, |r| <= 0.06 at lags of 1-20 triggers; the
windows' normal statistics with SD 0.93-1.16), yet against every other trigger of the night two
5-min N3 windows reached p 5e-6 and 4e-6 (alarm levels 1e-5 and 6e-6; 384 h of nights), and N2
stretches outranked nights whose stages were unknown for hours (a stager that gave up after a
lead went flat put N1 to REM in one stratum). Against the hour around them, all those windows stay
above their alarm levels (by a factor 1.5-8). (Averaging the scores over correlated leads, which
dilutes a lead's own background, was tried and dropped: it also averages what the leads share,
the state of sleep, and made such N2 stretches pass.)

Live (:class:`AuditoryMonitor`) runs the same tests on a buffer of the last :data:`BUFFER_S` s,
with alarm levels corrected for testing every :data:`UPDATE_S` s; open-loop windows as short as
1 and 2 min (:data:`LIVE_OPEN_WINDOWS_S`) flag a dense series of strong responses in about 2 min,
weaker ones once enough of a 5- or 10-min window is filled (measured on DREAMS with injected cues:
about 2-5 min at N550 30-60 uV). Closed-loop windows of 2 and 5 min (:data:`LIVE_CLOSED_WINDOWS_S`)
are compared with the rest of the buffer and with the triggers (times and scores) of the last
:data:`REFERENCE_S` s before it (measured on DREAMS: found live in 1.5-5 min where the offline
test finds them, at N550 45-60 uV; a 60-s target is out of reach for either protocol there:
a minute holds 12 cues or a few click pairs, far too few against the multiple-testing level).

Cost: everything after the boxcar average runs at 14-18 Hz; an 8-h night of 4 channels at 256 Hz
takes about 0.2 s of CPU on a shared core (the boxcar average 0.025 s, the IIR band-passes 0.045 s,
the matched filters 0.02 s, the open-loop folds 0.04 s and their tests 0.01 s; the closed-loop
emulation and tests 0.03 s). The whitened matched filter comes from the plain one
(:func:`matched_filters`), the jitter maximum is taken only where the fold reads it
(:func:`jitter_max`), and the folds' windows slide over block sums (:func:`best_folds`).

References: Bastien C, Campbell K (1992) Electroencephalogr Clin Neurophysiol 83:1-10; Ngo H-VV et
al. (2013) Neuron 78:545-553; van Elteren PH (1960) On the combination of independent two-sample
tests of Wilcoxon, Bull Int Stat Inst 37:351-361; Lorimer DR, Kramer M (2005) Handbook of Pulsar
Astronomy (epoch folding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import special

from .errors import SignalError
from .events import AdjustmentEvent, merge_events
from .filters import design_sos, sosfiltfilt

#: Components of the evoked response to one click in NREM: (relative amplitude, latency s, width s)
#: of the P200, N350, N550 and P900 (Bastien & Campbell 1992; Ngo 2013).
RESPONSE = ((0.25, 0.20, 0.035), (-0.20, 0.35, 0.040), (-1.0, 0.55, 0.090), (0.5, 0.90, 0.150))
#: Length of the response template in s.
RESPONSE_S = 1.4
#: Band in Hz holding the response (matched filter) and the slow-oscillation band of the troughs.
BAND_HZ = (0.5, 5.0)
TROUGH_BAND_HZ = (0.5, 2.0)
#: Rate of the boxcar-averaged input in Hz (at least), and of the matched filter (about).
ANALYSIS_HZ = 32.0
FILTER_HZ = 16.0
#: Closed loop: delay in s from the trough to the first click (Ngo 2013: 0.5 s, plus the
#: stimulator's error) and the interval between the two clicks.
CLICK_DELAY_S = (0.4, 0.6)
CLICK_INTERVAL_S = 1.075
#: Closed loop: the stimulator's dead time from a trough to its next detection, s: click delay
#: (0.5 s), click interval, a 50-ms click and the 2.5-s pause after the last click (Ngo 2013).
REFRACTORY_S = 0.5 + CLICK_INTERVAL_S + 0.05 + 2.5
#: Closed loop: trigger thresholds tried, in robust SDs of the 0.5-2 Hz signal (the stimulator's
#: threshold is unknown: Ngo's -80 uV, or less on montages that see smaller slow waves); a
#: geometric grid, 22 % apart.
DEPTHS_SD = (3.0, 3.7, 4.5, 5.5, 6.7, 8.2, 10.0)
#: Closed loop: shallowest trigger threshold tried, uV. Closed-loop devices act on slow-oscillation
#: troughs of tens of uV (-40 to -80 uV); a few robust SDs of a lead with almost no signal (railed,
#: disconnected) is no slow oscillation, and its "troughs" are noise.
MIN_TRIGGER_UV = 10.0
#: Open loop: range of cue periods in s and the cue's jitter (half-width, s).
CUE_PERIOD_S = (3.0, 8.0)
CUE_JITTER_S = 0.5
#: Window lengths in s (closed loop, open loop); offline, closed-loop windows start every quarter
#: window, open-loop ones every OPEN_BLOCK_S.
CLOSED_WINDOWS_S = (300.0, 600.0)
OPEN_WINDOWS_S = (300.0, 600.0)
#: Open loop: folds are computed per block of this many s and summed into windows.
OPEN_BLOCK_S = 150.0
#: False alarms per hour of clean recording allowed by the alarm level (split between the protocols).
FALSE_ALARMS_PER_HOUR = 0.1
#: Gaps up to this long are bridged; longer ones, samples beyond ARTEFACT_SD robust SDs and dead
#: stretches are excluded with EXCLUDE_MARGIN_S on each side.
MAX_BRIDGE_S = 0.25
ARTEFACT_SD = 10.0
EXCLUDE_MARGIN_S = 3.0
#: A channel is dead (railed, flat) where its 1-s RMS is below this share of its usual (90th
#: percentile) RMS.
DEAD_FRACTION = 0.02
#: Half-length in s of the window of the local RMS that normalises the matched filter.
SCALE_HALF_S = 30.0
#: Live: data kept (s), how often windows are tested (s of data), and how long before the newest
#: sample they end (s; the zero-phase filters and the response pair need the data after it).
BUFFER_S = 660.0
UPDATE_S = 10.0
EDGE_S = 8.0
#: Live: open-loop window lengths in s; the short ones flag a dense cue series within about a
#: minute of its onset, the long ones a weak one later.
LIVE_OPEN_WINDOWS_S = (60.0, 120.0, 300.0, 600.0)
#: Live: closed-loop window lengths in s; their reference is the rest of the buffer and the
#: triggers of the last REFERENCE_S s before it (kept as times and scores).
LIVE_CLOSED_WINDOWS_S = (120.0, 300.0)
REFERENCE_S = 3600.0
#: Offline, closed loop: the reference of a window is the triggers of the hour around it (s). Sleep
#: drifts over tens of minutes (stage, depth), and so does what follows a spontaneous trough; the
#: live reference (the buffer and REFERENCE_S before it) is as local.
LOCAL_REFERENCE_S = 3600.0
#: Stage codes left out when stages are given: wake, where clicks evoke no N550 and most artefacts
#: are. (REM and N1 are kept: they evoke little too, but stagers often call stimulated N2 REM.)
SKIPPED_STAGES = (0,)
EPOCH_S = 30.0

_CLICK_S = 0.5 * (CLICK_DELAY_S[0] + CLICK_DELAY_S[1])  # s from a trigger to its first click, as scored
_MIN_TRIGGERS = 8        # fewest emulated triggers in a closed-loop window worth testing
_MIN_REFERENCE = 20      # and outside it, as the reference
_FOLD_HZ = 2.0           # rate of the folded series (phase bins of 0.5 s)
_FOLD_DRIFT_S = 1.5      # the period grid is fine enough that a cue drifts at most this much in a window


# --------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True)
def block_mean(x, valid, m):
    """Average consecutive blocks of ``m`` samples, using only the usable ones.

    A sample is usable where ``valid`` is True and every row is finite there.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_samples)
        Signal, e.g. uV (float32 or float64).
    valid : ndarray of bool, shape (n_samples,)
        False where a sample is missing (its value is ignored).
    m : int
        Block length in samples; a final partial block is dropped.

    Returns
    -------
    means : ndarray, shape (n_rows, n_samples // m)
        Mean of the usable samples of each block (0 where none is usable).
    counts : ndarray of int64, shape (n_samples // m,)
        Usable samples per block.
    """
    n_rows = x.shape[0]
    nb = x.shape[1] // m
    means = np.zeros((n_rows, nb))
    counts = np.zeros(nb, dtype=np.int64)
    for b in range(nb):
        c = 0
        for j in range(b * m, b * m + m):
            if valid[j]:
                c += 1
        counts[b] = c
    # fast pass over each row, block by block; blocks that come out non-finite are redone below
    inv = 1.0 / m
    for r in range(n_rows):
        row = x[r]
        out = means[r]
        for b in range(nb):
            base = b * m
            if counts[b] == m:
                s = 0.0
                for j in range(m):
                    s += row[base + j]
                out[b] = s * inv
            elif counts[b] > 0:
                s = 0.0
                for j in range(m):
                    if valid[base + j]:
                        s += row[base + j]
                out[b] = s / counts[b]
    for b in range(nb):
        finite = True
        for r in range(n_rows):
            if not np.isfinite(means[r, b]):
                finite = False
        if finite:
            continue
        c = 0
        for r in range(n_rows):
            means[r, b] = 0.0
        for j in range(b * m, b * m + m):
            if not valid[j]:
                continue
            usable = True
            for r in range(n_rows):
                if not np.isfinite(x[r, j]):
                    usable = False
            if usable:
                c += 1
                for r in range(n_rows):
                    means[r, b] += x[r, j]
        counts[b] = c
        for r in range(n_rows):
            means[r, b] = means[r, b] / c if c > 0 else 0.0
    return means, counts


@njit(cache=True)
def binomial_halve(x):
    """Low-pass each row with the binomial FIR [1 4 6 4 1] / 16 (zero phase) and keep every second sample.

    The gain is cos^4(pi f / fs): 0.78 at fs / 6.4, 1 % at 0.4 fs, so little folds back when the
    rate is halved. The ends are reflected (``x[-1] = x[1]``, ``x[-2] = x[2]``).

    Parameters
    ----------
    x : ndarray, shape (n_rows, n)

    Returns
    -------
    ndarray, shape (n_rows, ceil(n / 2))
        The filtered samples 0, 2, 4, ...
    """
    n_rows, n = x.shape
    n_out = (n + 1) // 2
    out = np.empty((n_rows, n_out))
    for r in range(n_rows):
        # interior without reflection (the hot loop), then the few samples near either end
        for k in range(1, (n - 1) // 2):
            i = 2 * k
            out[r, k] = (6.0 * x[r, i] + 4.0 * (x[r, i - 1] + x[r, i + 1]) + x[r, i - 2] + x[r, i + 2]) / 16.0
        for k in range(n_out):
            if 1 <= k < (n - 1) // 2:
                continue
            i = 2 * k
            s = 6.0 * x[r, i]
            for d in range(1, 3):
                w = 4.0 if d == 1 else 1.0
                lo = i - d if i - d >= 0 else d - i
                hi = i + d if i + d < n else 2 * (n - 1) - (i + d)
                s += w * (x[r, lo] + x[r, hi])
            out[r, k] = s / 16.0
    return out


@njit(cache=True)
def fill_gaps(x, ok):
    """Bridge missing samples by linear interpolation (held flat before the first and after the last).

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
    ok : ndarray of bool, shape (n_samples,)
        False where ``x`` is missing.

    Returns
    -------
    ndarray, shape (n_samples,)
        ``x`` where ok, interpolated elsewhere; zeros if nothing is ok.
    """
    n = x.size
    out = np.zeros(n)
    last = -1
    for i in range(n):
        if ok[i]:
            out[i] = x[i]
            if last < i - 1:  # bridge the run last+1 .. i-1
                for j in range(last + 1, i):
                    out[j] = x[i] if last < 0 else x[last] + (x[i] - x[last]) * (j - last) / (i - last)
            last = i
    if 0 <= last < n - 1:
        for j in range(last + 1, n):
            out[j] = x[last]
    return out


@njit(cache=True)
def emulate_triggers(slow, threshold, refractory):
    """The troughs a closed-loop stimulator acts on: the lowest sample of each run below
    ``threshold``, the next run searched from ``refractory`` samples after that trough.

    As in the stimulator, a run that is already under way when the dead time ends counts from there.

    Parameters
    ----------
    slow : ndarray, shape (n_samples,)
        Detection signal (slow-oscillation band), e.g. uV.
    threshold : float
        Trigger level (negative), same unit.
    refractory : int
        Dead time after each trough, samples (at least 1).

    Returns
    -------
    ndarray of int64
        Sample of each trough, increasing.
    """
    n = slow.size
    step = max(refractory, 1)
    out = np.empty(n // step + 1, dtype=np.int64)
    k = 0
    i = 0
    while i < n:
        while i < n and not slow[i] < threshold:
            i += 1
        if i >= n:
            break
        best = i
        j = i
        while j < n and slow[j] < threshold:
            if slow[j] < slow[best]:
                best = j
            j += 1
        out[k] = best
        k += 1
        i = best + step
    return out[:k]


@njit(cache=True)
def sliding_dot(x, h):
    """``out[i] = sum_j x[i + j] h[j]`` for ``i`` in ``0 .. n`` (``x`` zero past its end; ``out[n] = 0``).

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
    h : ndarray, shape (n_taps,)

    Returns
    -------
    ndarray, shape (n_samples + 1,)
    """
    n = x.size
    out = np.zeros(n + 1)
    for j in range(h.size):  # tap by tap: the inner loop is a plain vector update
        c = h[j]
        for i in range(n - j):
            out[i] += c * x[i + j]
    return out


@njit(cache=True)
def _over_scales(c, c_before, end_lo, end_hi, norm, ok, scale_plain, scale_white, step):
    """The two outputs of :func:`matched_filters` from the plain dot products ``c`` (see there)."""
    n = c.size - 1
    inv_plain = 1.0 / scale_plain
    inv_white = 1.0 / (norm * scale_white)
    plain = np.zeros(n)
    white = np.zeros(n)
    for b in range(inv_plain.size):  # block by block: no division per sample
        gp, gw = inv_plain[b], inv_white[b]
        for i in range(b * step, min(n, (b + 1) * step)):
            if ok[i]:
                prev = c[i - 1] if i > 0 else c_before
                plain[i] = c[i] * gp
                white[i] = (2.0 * c[i] - prev - c[i + 1] + end_lo[i] + end_hi[i]) * gw
    return plain, white


def matched_filters(x, h, ok, scale_plain, scale_white, step):
    """Two matched filters over their local RMS: the template itself and its whitened form.

    ``plain[i] = sum_j x[i + j] h[j] / scale_plain[i // step]`` and ``white[i] = sum_j x[i + j] w[j] /
    scale_white[i // step]`` with ``w[j] = (2 h[j] - h[j - 1] - h[j + 1]) / ||d||`` (``h`` zero
    outside its taps, ``d`` its first difference with a zero before and after it): the template as a
    first-differenced signal sees it, which brings a sharp response out of a 1/f^2 background.
    ``x`` is zero past its end. The whitened output comes from the plain one, since
    ``sum_j x[i + j] w[j] ||d|| = 2 c[i] - c[i - 1] - c[i + 1] + x[i - 1] h[0] + x[i + L] h[L - 1]``
    (``c`` the plain dot products, :func:`sliding_dot`), so the data are read once.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Signal, e.g. uV.
    h : ndarray, shape (L,)
        Template.
    ok : ndarray of bool, shape (n_samples,)
        Where the outputs are wanted (0 elsewhere).
    scale_plain, scale_white : ndarray, shape (ceil(n_samples / step),)
        Local RMS of the data as each filter sees them, per block of ``step`` samples (positive).
    step : int

    Returns
    -------
    plain, white : ndarray, shape (n_samples,)
        Dimensionless.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    h = np.ascontiguousarray(h, dtype=np.float64)
    n, L = x.size, h.size
    c = sliding_dot(x, h)
    c_before = float(h[1:n + 1] @ x[:L - 1]) if n else 0.0  # c[-1], with x[-1] = 0
    end_lo = np.zeros(n)
    end_lo[1:] = x[:-1] * h[0]
    end_hi = np.zeros(n)
    end_hi[:max(0, n - L)] = x[L:] * h[-1]
    norm = float(np.linalg.norm(np.diff(h, prepend=0.0, append=0.0)))
    return _over_scales(c, c_before, end_lo, end_hi, norm, ok, scale_plain, scale_white, step)


@njit(cache=True)
def block_power(x, bad, step):
    """Mean square of ``x`` and of its derivative per block of ``step`` samples, bad samples as 0.

    The derivative is :func:`numpy.gradient`'s (central differences, one-sided at the ends). Each
    block's sum is divided by ``step``, the last (partial) block's too.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Signal, e.g. uV.
    bad : ndarray of bool, shape (n_samples,)
        Samples left out.
    step : int

    Returns
    -------
    plain, derivative : ndarray, shape (ceil(n_samples / step),)
        In the unit of ``x`` squared (per sample squared).
    """
    n = x.size
    nb = (n + step - 1) // step
    plain = np.zeros(nb)
    deriv = np.zeros(nb)
    for i in range(n):
        if bad[i]:
            continue
        if n == 1:
            d = 0.0
        elif i == 0:
            d = x[1] - x[0]
        elif i == n - 1:
            d = x[n - 1] - x[n - 2]
        else:
            d = 0.5 * (x[i + 1] - x[i - 1])
        b = i // step
        plain[b] += x[i] * x[i]
        deriv[b] += d * d
    for b in range(nb):
        plain[b] /= step
        deriv[b] /= step
    return plain, deriv


@njit(cache=True)
def jitter_max(z0, z1, usable, half, step):
    """The larger of two matched filters at its best within ``half`` samples, every ``step`` samples.

    Parameters
    ----------
    z0, z1 : ndarray, shape (n_samples,)
        Matched-filter outputs.
    usable : ndarray of bool, shape (n_samples,)
        Where they may be read (-1e3 stands in elsewhere).
    half, step : int

    Returns
    -------
    best : ndarray, shape (ceil(n_samples / step),)
        ``max(z0[i], z1[i])`` maximised over ``i`` in ``[k step - half, k step + half]`` (clipped).
    clean : ndarray of bool, same shape
        Every sample of that span is usable.
    """
    n = z0.size
    n_out = (n + step - 1) // step
    best = np.empty(n_out)
    clean = np.empty(n_out, dtype=np.bool_)
    for k in range(n_out):
        c = k * step
        m = -np.inf
        all_ok = True
        for i in range(max(0, c - half), min(n, c + half + 1)):
            if usable[i]:
                v = max(z0[i], z1[i])
            else:
                v = -1e3
                all_ok = False
            if v > m:
                m = v
        best[k] = m
        clean[k] = all_ok
    return best, clean


@njit(cache=True)
def fold_blocks(y, ok, base, block_len, periods):
    """Epoch folding of consecutive blocks at every trial period.

    Sample ``i`` of block ``k`` goes to phase bin ``floor((base + i) mod P)`` of period ``P``
    (bins one sample wide; ``base`` is the absolute index of ``y[0]``, so folds of different
    blocks and calls line up).

    Parameters
    ----------
    y : ndarray, shape (n_samples,)
        Evidence series, e.g. normal scores.
    ok : ndarray of bool, shape (n_samples,)
        Usable samples.
    base : int
        Absolute sample index of ``y[0]``.
    block_len : int
        Samples per block; ``n_samples // block_len`` blocks are folded.
    periods : ndarray, shape (n_periods,)
        Trial periods in samples (may be fractional, at least 1).

    Returns
    -------
    sums : ndarray, shape (n_blocks, n_periods, n_bins)
        Sum of ``y`` per block, period and phase bin (``n_bins = ceil(max period)``).
    counts : ndarray, shape (n_blocks, n_periods, n_bins)
        Usable samples behind each sum.
    """
    n_blocks = y.size // block_len
    n_bins = int(np.ceil(periods.max()))
    sums = np.zeros((n_blocks, periods.size, n_bins))
    counts = np.zeros((n_blocks, periods.size, n_bins))
    acc = np.zeros(n_bins)
    cnt = np.zeros(n_bins + 1)
    w = np.zeros(y.size)
    v = np.zeros(y.size)
    for i in range(y.size):
        if ok[i]:
            w[i] = 1.0
            v[i] = y[i]
    for k in range(n_blocks):
        first = k * block_len
        used = w[first:first + block_len].sum()
        if used == 0.0:
            continue
        whole = used == block_len  # every sample usable: a cycle adds 1 to each bin it covers
        for p in range(periods.size):
            P = periods[p]
            acc[:] = 0.0
            cnt[:] = 0.0
            # cycle c covers absolute samples ceil(c P) .. ceil((c + 1) P) - 1, in bins 0, 1, ...
            a = base + first
            end = a + block_len
            c = np.floor(a / P)
            while a < end:
                start = int(np.ceil(c * P))
                stop = min(int(np.ceil((c + 1.0) * P)), end)
                for j in range(a, stop):
                    acc[j - start] += v[j - base]
                if whole:  # counted as a difference: +1 from the cycle's first bin, -1 after its last
                    cnt[a - start] += 1.0
                    cnt[stop - start] -= 1.0
                else:
                    for j in range(a, stop):
                        cnt[j - start] += w[j - base]
                a = stop
                c += 1.0
            if whole:
                for b in range(1, n_bins):
                    cnt[b] += cnt[b - 1]
            sums[k, p, :] = acc
            counts[k, p, :] = cnt[:n_bins]
    return sums, counts


@njit(cache=True)
def best_folds(sums, counts, m):
    """The strongest phase bin of every window of ``m`` consecutive blocks of :func:`fold_blocks`.

    Each bin's z-score is ``sum / sqrt(count)`` over the window's blocks: the series is standardised
    (zero mean, unit variance) beforehand, so this is its mean in SD units times ``sqrt(count)``.
    Bins with fewer than 2 samples are skipped.

    Parameters
    ----------
    sums, counts : ndarray, shape (n_blocks, n_periods, n_bins)
    m : int
        Blocks per window (at least 1).

    Returns
    -------
    z : ndarray, shape (max(0, n_blocks - m + 1),)
        Largest z-score of the window of blocks ``k .. k + m - 1`` (-inf when nothing is usable).
    period, phase_bin : ndarray of int64, same shape
        Index of its period and its phase bin.
    """
    n_blocks, n_periods, n_bins = sums.shape
    n_windows = max(0, n_blocks - m + 1)
    z = np.full(n_windows, -np.inf)
    period = np.zeros(n_windows, dtype=np.int64)
    phase_bin = np.zeros(n_windows, dtype=np.int64)
    s = np.zeros((n_periods, n_bins))
    c = np.zeros((n_periods, n_bins))
    for k in range(n_blocks):
        s += sums[k]  # the window slides on: add the block that enters, drop the one that leaves
        c += counts[k]
        if k >= m:
            s -= sums[k - m]
            c -= counts[k - m]
        w = k - m + 1
        if w < 0:
            continue
        # the largest sum / sqrt(count) is the largest sum |sum| / count (same order, no square root)
        best = -np.inf
        bp = 0
        bb = 0
        for p in range(n_periods):
            for b in range(n_bins):
                if c[p, b] >= 1.5:
                    v = s[p, b] * abs(s[p, b]) / c[p, b]
                    if v > best:
                        best = v
                        bp = p
                        bb = b
        if best > -np.inf:
            z[w] = np.sqrt(best) if best >= 0.0 else -np.sqrt(-best)
        period[w] = bp
        phase_bin[w] = bb
    return z, period, phase_bin


@njit(cache=True)
def window_sums(times, values, starts, width):
    """Sum and count of ``values`` whose ``times`` fall in ``[start, start + width)``, for each start.

    Parameters
    ----------
    times : ndarray, shape (n,), sorted
    values : ndarray, shape (n,)
    starts : ndarray, shape (n_windows,), sorted
    width : float

    Returns
    -------
    sums : ndarray, shape (n_windows,)
    counts : ndarray of int64, shape (n_windows,)
    """
    nw = starts.size
    sums = np.zeros(nw)
    counts = np.zeros(nw, dtype=np.int64)
    lo = 0
    hi = 0
    s = 0.0
    for w in range(nw):
        a = starts[w]
        b = a + width
        while hi < times.size and times[hi] < b:
            s += values[hi]
            hi += 1
        while lo < hi and times[lo] < a:
            s -= values[lo]
            lo += 1
        sums[w] = s
        counts[w] = hi - lo
    return sums, counts


@njit(cache=True)
def local_rank_sums(times, order, starts, width, half):
    """Rank sums of the values inside windows, ranked among the values near each window.

    Window ``w`` holds the values whose ``times`` fall in ``[starts[w], starts[w] + width)``; its
    neighbourhood, those in ``[c - half, c + half)`` around its centre ``c``. Each value inside is
    ranked (1 = smallest) among the neighbourhood's; ties are broken by ``order``. A Fenwick tree
    over the order holds the neighbourhood as it slides along, so the cost is
    ``O((n + n_inside) log n)``.

    Parameters
    ----------
    times : ndarray, shape (n,), sorted
    order : ndarray of int64, shape (n,)
        Place of each value among all of them (a permutation of ``0 .. n - 1``, smallest first).
    starts : ndarray, shape (n_windows,), sorted
    width, half : float
        ``width <= 2 half``, so that a window lies inside its neighbourhood.

    Returns
    -------
    sums : ndarray, shape (n_windows,)
        Sum of the ranks of the values inside.
    n_in, n_near : ndarray of int64, shape (n_windows,)
        Values inside, and in the neighbourhood.
    """
    n = times.size
    tree = np.zeros(n + 1, dtype=np.int64)
    nw = starts.size
    sums = np.zeros(nw)
    n_in = np.zeros(nw, dtype=np.int64)
    n_near = np.zeros(nw, dtype=np.int64)
    lo = 0
    hi = 0
    first = 0
    for w in range(nw):
        c = starts[w] + 0.5 * width
        while hi < n and times[hi] < c + half:  # the tree holds the values lo .. hi - 1
            i = order[hi] + 1
            while i <= n:
                tree[i] += 1
                i += i & -i
            hi += 1
        while lo < hi and times[lo] < c - half:
            i = order[lo] + 1
            while i <= n:
                tree[i] -= 1
                i += i & -i
            lo += 1
        while first < n and times[first] < starts[w]:
            first += 1
        total = 0.0
        k = 0
        j = first
        while j < n and times[j] < starts[w] + width:
            below = 0  # neighbours ranked below: the tree's prefix sum up to this value's order
            i = order[j]
            while i > 0:
                below += tree[i]
                i -= i & -i
            total += below + 1.0
            k += 1
            j += 1
        sums[w] = total
        n_in[w] = k
        n_near[w] = hi - lo
    return sums, n_in, n_near


# --------------------------------------------------------------------------------------------
# Preparation: boxcar average, gaps, band-pass, matched filter scale


def response_template(fs: float) -> np.ndarray:
    """The evoked response to one click, sampled at ``fs`` from the click on.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (round(RESPONSE_S * fs),)
        Relative amplitude (N550 about -1).
    """
    t = np.arange(int(round(RESPONSE_S * fs))) / fs
    return sum(a * np.exp(-0.5 * ((t - c) / w) ** 2) for a, c, w in RESPONSE)


def _decimation(fs: float) -> int:
    """Boxcar length bringing ``fs`` down to at least :data:`ANALYSIS_HZ`."""
    return max(1, int(fs // ANALYSIS_HZ))


def _runs(flags: np.ndarray) -> np.ndarray:
    """``[start, stop)`` of every run of True, shape (n_runs, 2)."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def _dilate(flags: np.ndarray, half: int) -> np.ndarray:
    """True within ``half`` samples of any True."""
    flags = np.ascontiguousarray(flags, dtype=bool)
    if half <= 0 or not flags.any():
        return flags.copy()
    before = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))  # True samples before each index
    index = np.arange(flags.size)
    return before[np.minimum(index + half + 1, flags.size)] > before[np.maximum(index - half, 0)]


def _robust_sd(x: np.ndarray) -> float:
    """1.4826 x the median absolute value (the data are zero-mean band-passed signals).

    Long series are read every few samples: neighbouring samples of a band-passed signal repeat
    each other, and the median of a quarter of them is as good and four times faster.
    """
    if x.size == 0:
        return 0.0
    step = max(1, x.size // 50000)
    return float(1.4826 * np.median(np.abs(x[::step])))


@dataclass
class _Prepared:
    """One channel at the matched-filter rate.

    Attributes
    ----------
    fs : float
        Rate of the arrays below, Hz.
    band : ndarray
        0.5-5 Hz signal, uV.
    slow : ndarray
        0.5-2 Hz signal, uV.
    usable : ndarray of bool
        Neither in a long gap, nor near an artefact or a dead stretch, nor (when stages are known) in wake.
    template_size : int
        Samples of the response template.
    z : tuple of ndarray
        Output of the two matched filters (the response template through the same filters, and
        its whitened form; response starting at each sample), each over its local RMS.
    scales : tuple of ndarray
        That local RMS (+-:data:`SCALE_HALF_S`) of each, per block of ``step`` samples.
    step : int
        Samples per block of ``scales`` (about 0.5 s).
    """

    fs: float
    band: np.ndarray
    slow: np.ndarray
    usable: np.ndarray
    template_size: int
    z: tuple
    scales: tuple
    step: int


def _band_pass(x: np.ndarray, fd: float) -> tuple:
    """The response band (:data:`BAND_HZ`) at about :data:`FILTER_HZ`.

    Halving the rate (the usual case, ``fd`` 32-36 Hz) goes through a binomial FIR [1 4 6 4 1]/16
    (gain cos^4: 1 % at 13 Hz, so spindles do not fold into the band); other ratios through a
    zero-phase Butterworth low-pass at ``fd``. Then zero-phase Butterworth low- and high-pass
    (order 2) at the lower rate, as one cascade in a single pass when the rate was halved.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n)
        Signal at ``fd`` Hz.
    fd : float

    Returns
    -------
    band : ndarray, shape (n_rows, ceil(n / q))
    fa : float
        Its rate, ``fd / q``.
    """
    q = max(1, int(round(fd / FILTER_HZ)))
    fa = fd / q
    high = design_sos(fa, low_hz=BAND_HZ[0], order=2)
    if q == 2:  # low- and high-pass in one pass over the data
        both = np.concatenate([design_sos(fa, high_hz=BAND_HZ[1], order=2), high])
        return np.ascontiguousarray(sosfiltfilt(both, binomial_halve(x))), fa
    low = sosfiltfilt(design_sos(fd, high_hz=BAND_HZ[1], order=2), x)[:, ::q]
    return np.ascontiguousarray(sosfiltfilt(high, low)), fa


def _template(fd: float) -> np.ndarray:
    """The response template as the data see it (same filters, same subsampling), zero mean and
    unit norm; :func:`matched_filters` also matches its whitened form."""
    pad = int(round(3.0 * fd))
    h = response_template(fd)
    band, fa = _band_pass(np.concatenate([np.zeros(pad), h, np.zeros(pad)])[None, :], fd)
    q = int(round(fd / fa))
    h = band[0, pad // q: pad // q + int(round(RESPONSE_S * fa))]
    h = h - h.mean()
    return np.ascontiguousarray(h / np.linalg.norm(h))


def _long_gaps(ok: np.ndarray, longest: float) -> np.ndarray:
    """True over every run of missing values longer than ``longest`` samples."""
    out = np.zeros(ok.size, dtype=bool)
    if ok.all():
        return out
    runs = _runs(~ok)
    for a, b in runs[runs[:, 1] - runs[:, 0] > longest]:
        out[a:b] = True
    return out


def _prepare(xd: np.ndarray, counts: np.ndarray, fd: float, staged: np.ndarray | None) -> list:
    """Band-pass boxcar-averaged channels, run the matched filters and mark what may be analysed.

    Parameters
    ----------
    xd : ndarray, shape (n_channels, n)
        Block means at ``fd`` Hz, uV.
    counts : ndarray of int, shape (n,)
        Valid input samples behind each block (0: missing).
    fd : float
        Rate of ``xd`` in Hz.
    staged : ndarray of bool, shape (n,), or None
        Per block, whether its stage is analysed (see :func:`_staged_blocks`); None without stages.

    Returns
    -------
    list of _Prepared
        One per channel.
    """
    from .spindles import moving_rms

    ok = counts > 0
    if ok.all():
        x = xd - xd.mean(axis=1, keepdims=True)
    else:
        x = np.empty(xd.shape)
        for r in range(xd.shape[0]):
            x[r] = fill_gaps(xd[r], ok)
            x[r] -= x[r].mean()
    band_all, fa = _band_pass(x, fd)
    del x
    q = int(round(fd / fa))
    slow_all = sosfiltfilt(design_sos(fa, high_hz=TROUGH_BAND_HZ[1], order=2), band_all)
    template = _template(fd)
    margin = int(round(EXCLUDE_MARGIN_S * fa))
    step = max(1, int(round(fa / 2)))  # summaries every 0.5 s are plenty
    half = max(1, int(round(SCALE_HALF_S * fa)) // step)
    gap = _long_gaps(ok, MAX_BRIDGE_S * fd)[::q][: band_all.shape[1]]
    stage_ok = None if staged is None else staged[::q][: band_all.shape[1]]
    out = []
    for r in range(xd.shape[0]):
        band = band_all[r]
        sd = _robust_sd(band[::step][~gap[::step]])
        bad = gap | (np.abs(band) > ARTEFACT_SD * sd) if sd > 0 else gap.copy()
        # a railed or disconnected electrode: (almost) nothing left in the band (1-s RMS every 0.5 s)
        local = moving_rms(band[::step], 1)
        dead = local <= DEAD_FRACTION * np.percentile(local, 90)
        if dead.any():
            bad |= np.repeat(dead, step)[: band.size]
        bad = _dilate(bad, margin)
        usable = ~bad if stage_ok is None else ~bad & stage_ok
        # each matched filter over the local RMS (+-30 s, every 0.5 s) of the data as it sees them:
        # the band itself, and its derivative for the whitened template (central differences, so
        # that the scale is the same played backwards)
        scales = []
        for power in block_power(band, bad, step):
            rms = moving_rms(np.sqrt(power), half)
            scales.append(np.maximum(rms, max(float(np.sqrt(power.mean())), 1e-6) * 1e-3))
        z = matched_filters(band, template, usable, scales[0], scales[1], step)
        out.append(_Prepared(fa, band, slow_all[r], usable, template.size, z, tuple(scales), step))
    return out


def _staged_blocks(stages, n_blocks: int, fd: float) -> np.ndarray | None:
    """Per block at ``fd``: its epoch is not one of :data:`SKIPPED_STAGES` (past the hypnogram:
    analysed); None without stages."""
    if stages is None:
        return None
    codes = np.asarray(stages, dtype=np.int64).ravel()
    allowed = np.append(~np.isin(codes, SKIPPED_STAGES), True)
    epoch = (np.arange(n_blocks) / (EPOCH_S * fd)).astype(np.int64)
    return allowed[np.minimum(epoch, codes.size)]


def _stage_at(stages, times: np.ndarray) -> np.ndarray:
    """Stratum at each time (s): 0 NREM (N2, N3), 1 light sleep and REM (N1, REM), 2 wake or
    unknown (past the hypnogram, or without stages).

    N2 and N3 are one stratum: the closed loop stimulates both, and stagers move stimulated
    epochs between them."""
    if stages is None:
        return np.full(times.size, 2, dtype=np.int64)
    codes = np.append(np.asarray(stages, dtype=np.int64).ravel(), -1)
    codes = np.where(np.isin(codes, (2, 3)), 0, np.where(np.isin(codes, (1, 4)), 1, 2))
    epoch = np.clip((times // EPOCH_S).astype(np.int64), 0, codes.size - 1)
    return codes[epoch]


# --------------------------------------------------------------------------------------------
# Closed loop: click pairs after the emulated stimulator's triggers, against its other triggers


@dataclass
class _Triggers:
    """Troughs that an emulated closed-loop stimulator acts on, one channel, one threshold (times in s)."""

    times: np.ndarray      # (n,)
    score: np.ndarray      # (n,) response-pair score after the trough, local RMS units
    stratum: np.ndarray    # (n,) stage group (see _stage_at): triggers are compared within it
    n550: np.ndarray       # (n,) band signal at the first N550 after the trough, uV
    level: float           # threshold, robust SDs of the 0.5-2 Hz signal
    threshold_uv: float    # the same in uV
    channel: int

    def subset(self, keep) -> "_Triggers":
        return _Triggers(self.times[keep], self.score[keep], self.stratum[keep], self.n550[keep], self.level,
                         self.threshold_uv, self.channel)


def _closed_loop_triggers(p: _Prepared, channel: int) -> list:
    """For every threshold of :data:`DEPTHS_SD`: the troughs the stimulator would act on, with scores.

    The stimulator is emulated on the 0.5-2 Hz signal (:func:`emulate_triggers`); each trigger's
    score is the matched-filter output for a pair of responses after it (first onset at the middle
    of :data:`CLICK_DELAY_S`, second :data:`CLICK_INTERVAL_S` later), summed over the two templates,
    each over its local RMS at the trigger. (Searching the delay over the stimulator's whole error
    range only adds the best of several noise values: measured on DREAMS with injected clicks, the
    fixed delay separates stimulated from spontaneous troughs better.) Only triggers whose scored
    span is usable are kept.
    """
    fa = p.fs
    out = []
    sd = _robust_sd(p.slow[p.usable]) if p.usable.any() else 0.0
    if sd <= 0:
        return out
    delay = int(round(_CLICK_S * fa))
    gap = int(round(CLICK_INTERVAL_S * fa))
    span = delay + gap + p.template_size
    refractory = int(round(REFRACTORY_S * fa))
    n550 = int(round(RESPONSE[2][1] * fa))
    bad = np.concatenate([[0], np.cumsum(~p.usable, dtype=np.int64)])
    for level in DEPTHS_SD:
        if level * sd < MIN_TRIGGER_UV:
            continue
        idx = emulate_triggers(p.slow, -level * sd, refractory)
        idx = idx[idx + span < p.usable.size]
        idx = idx[bad[idx + span + 1] - bad[idx] == 0]
        score = np.zeros(idx.size)
        for z, scale in zip(p.z, p.scales):  # undo the scale at each response, apply the trigger's
            score += (z[idx + delay] * scale[(idx + delay) // p.step]
                      + z[idx + delay + gap] * scale[(idx + delay + gap) // p.step]) / scale[idx // p.step]
        out.append(_Triggers(idx / fa, score, np.full(idx.size, 2, dtype=np.int64), p.band[idx + delay + n550],
                             level, level * sd, channel))
    return out


def _window_starts(t0: float, t1: float, width: float) -> np.ndarray:
    """Starts of windows of ``width`` s every quarter window covering [t0, t1) (one if shorter)."""
    hop = width / 4.0
    if t1 - t0 <= width:
        return np.array([t0])
    starts = np.arange(t0, t1 - width + 1e-9, hop)
    if starts[-1] < t1 - width - 1e-9:  # the last window ends at the end
        starts = np.append(starts, t1 - width)
    return starts


@dataclass
class _Window:
    """One significant window: where (s), how sure (log p-value), what was found."""

    start: float
    width: float
    log_p: float
    protocol: str          # "closed_loop" or "open_loop"
    channels: tuple | None  # rows with evidence (None: all)
    count: int             # triggers (closed loop) or cue periods (open loop)
    detail: dict


def _rank_sum_moments(ranks_in, n_in, n_total) -> tuple:
    """Mann-Whitney U minus its null mean, and its null variance (no ties)."""
    n_in = np.asarray(n_in, dtype=float)
    n_out = n_total - n_in
    u = ranks_in - n_in * (n_in + 1.0) / 2.0
    return u - 0.5 * n_in * n_out, n_in * n_out * (n_total + 1.0) / 12.0


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` (1-D), ties given the mean of the ranks they span: what
    ``scipy.stats.rankdata`` gives, without importing ``scipy.stats`` (~0.5 s) in every process
    that detects."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    first = np.concatenate(([True], ordered[1:] != ordered[:-1]))  # the first of each run of ties
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], x.size)  # exclusive
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(0.5 * (starts + 1 + ends), ends - starts)
    return ranks


def _strata_ranks(tr: "_Triggers") -> list:
    """(times, ranks within the stratum, order within the stratum) of the triggers of each stratum of ``tr``."""
    out = []
    for s in np.unique(tr.stratum):
        k = tr.stratum == s
        order = np.empty(int(k.sum()), dtype=np.int64)
        order[np.argsort(tr.score[k], kind="stable")] = np.arange(order.size)
        out.append((tr.times[k], _average_ranks(tr.score[k]), order))
    return out


def _stratified_rank_sums(strata: list, starts: np.ndarray, width: float, half: float | None = None) -> tuple:
    """Per window: log p of a stage-stratified rank-sum test, the triggers inside, and their reference
    (the triggers outside the window in the strata found inside it); ``strata`` from :func:`_strata_ranks`.

    Each stage is ranked on its own and the Mann-Whitney statistics of the strata are summed
    (van Elteren's test with equal weights): a window of N3 is compared with N3 elsewhere, so a
    stage whose spontaneous troughs are followed by more slow waves (or, on an EOG lead, REM's eye
    movements, followed by fewer) does not pass for stimulation. With ``half`` (s), the reference
    is the triggers within ``half`` of the window's centre (:func:`local_rank_sums`), else all.
    """
    excess = np.zeros(starts.size)
    var = np.zeros(starts.size)
    n_in = np.zeros(starts.size, dtype=np.int64)
    reference = np.zeros(starts.size, dtype=np.int64)
    for times, ranks, order in strata:
        if half is None:
            sums, counts = window_sums(times, ranks, starts, width)
            near = np.full(starts.size, times.size)
        else:
            sums, counts, near = local_rank_sums(times, order, starts, width, half)
        e, v = _rank_sum_moments(sums, counts, near)
        excess += e
        var += v
        n_in += counts
        reference += np.where(counts > 0, near - counts, 0)
    return special.log_ndtr(-(excess - 0.5) / np.sqrt(np.maximum(var, 1e-12))), n_in, reference


def _closed_loop_tests(triggers: list, t0: float, t1: float, log_alpha: float, last_only: bool = False,
                       windows=CLOSED_WINDOWS_S) -> list:
    """Windows where the responses after the emulated stimulator's triggers outrank those elsewhere.

    For each channel and threshold, the scores of the triggers inside a window are compared with
    those of the other triggers of the hour around it (:data:`LOCAL_REFERENCE_S`; live, with all
    the others, which are as recent) in a rank-sum test: without stimulation every trigger is a
    spontaneous slow oscillation, and where it falls within a stretch of the same sleep does not
    change what follows it.
    Consecutive triggers are at least :data:`REFRACTORY_S` apart, longer than the span a score
    reads, so their scores do not share data.
    """
    out = []
    for tr in triggers:
        n_total = tr.times.size
        if n_total < _MIN_TRIGGERS + _MIN_REFERENCE:
            continue
        strata = _strata_ranks(tr)
        for width in windows:
            starts = _window_starts(t0, t1, width)
            if last_only:
                starts = starts[-1:]
            # live, the buffer and the history before it are the window's neighbourhood already
            log_p, counts, reference = _stratified_rank_sums(strata, starts, width,
                                                             None if last_only else 0.5 * LOCAL_REFERENCE_S)
            testable = (counts >= _MIN_TRIGGERS) & (reference >= _MIN_REFERENCE)
            for w in np.flatnonzero(testable & (log_p < log_alpha)):
                a, b = starts[w], starts[w] + width
                inside = (tr.times >= a) & (tr.times < b)
                others = ~inside if last_only else ~inside & (np.abs(tr.times - (a + 0.5 * width))
                                                              <= 0.5 * LOCAL_REFERENCE_S)
                out.append(_Window(float(a), width, float(log_p[w]), "closed_loop", (tr.channel,), int(counts[w]),
                                   {"depth": tr.level, "threshold": tr.threshold_uv, "reference": int(reference[w]),
                                    "n550": float(np.median(tr.n550[inside])),
                                    "n550_ref": float(np.median(tr.n550[others])),
                                    "first": float(tr.times[inside].min()), "last": float(tr.times[inside].max())}))
    return out


# --------------------------------------------------------------------------------------------
# Open loop: responses on a clock


def _fold_series(preps: list) -> tuple:
    """Channel mean of the matched filters maximised over the cue jitter, at :data:`_FOLD_HZ`.

    At each time the mean is over the channels usable there (a railed electrode drops out).

    Returns
    -------
    y : ndarray
        Matched-filter z units.
    ok : ndarray of bool
        Some channel was usable.
    rate : float
        Rate of ``y`` in Hz.
    """
    fa = preps[0].fs
    step = max(1, int(round(fa / _FOLD_HZ)))
    half = int(round(CUE_JITTER_S * fa))
    total = 0.0
    n = 0.0
    for p in preps:
        y, u = jitter_max(p.z[0], p.z[1], p.usable, half, step)
        total = total + np.where(u, y, 0.0)
        n = n + u
    ok = n > 0
    return np.where(ok, total / np.maximum(n, 1), 0.0), ok, fa / step


def _normal_scores(y: np.ndarray) -> np.ndarray:
    """Rank-based normal scores (exactly N(0, 1) marginals whatever the distribution of ``y``)."""
    ranks = np.empty(y.size)
    ranks[np.argsort(y, kind="stable")] = np.arange(1, y.size + 1)
    return special.ndtri(ranks / (y.size + 1))


def _fold_periods(rate: float) -> np.ndarray:
    """Trial periods in samples at ``rate``: a geometric grid over :data:`CUE_PERIOD_S`, fine
    enough that a clock between two grid periods drifts at most :data:`_FOLD_DRIFT_S` from either
    over the longest window."""
    width = max(OPEN_WINDOWS_S)
    ratio = 1.0 + _FOLD_DRIFT_S / width
    n = int(np.ceil(np.log(CUE_PERIOD_S[1] / CUE_PERIOD_S[0]) / np.log(ratio))) + 1
    return CUE_PERIOD_S[0] * ratio ** np.arange(n) * rate


def _fold_cells(width: float) -> float:
    """Independent (period, phase) cells of a fold over ``width`` s: resolvable frequencies x phases."""
    periods = np.linspace(CUE_PERIOD_S[0], CUE_PERIOD_S[1], 64)
    phases = np.mean(periods / (2.0 * CUE_JITTER_S))
    return max(1.0, width * (1.0 / CUE_PERIOD_S[0] - 1.0 / CUE_PERIOD_S[1])) * phases


@dataclass
class _Folds:
    """Fold tables of consecutive :data:`OPEN_BLOCK_S` blocks (see :func:`fold_blocks`)."""

    start: float            # s, start of the first block
    sums: np.ndarray
    counts: np.ndarray
    usable: np.ndarray      # usable share of each block


def _fold(y: np.ndarray, ok: np.ndarray, rate: float, base: int, block_s: float = OPEN_BLOCK_S) -> _Folds:
    """Standardise ``y`` block by block (normal scores) and fold every block of ``block_s`` s at every period."""
    block = int(round(block_s * rate))
    n_blocks = y.size // block
    scores = np.zeros(n_blocks * block)
    usable = np.zeros(n_blocks)
    for k in range(n_blocks):
        sl = slice(k * block, (k + 1) * block)
        good = ok[sl]
        usable[k] = good.mean()
        if good.sum() > 2:
            scores[sl][good] = _normal_scores(y[sl][good])
    sums, counts = fold_blocks(scores, ok[: n_blocks * block], base, block, _fold_periods(rate))
    return _Folds(base / rate, sums, counts, usable)


def _open_loop_tests(folds: _Folds, rate: float, log_alpha: float, windows=OPEN_WINDOWS_S,
                     block_s: float = OPEN_BLOCK_S) -> list:
    """Windows of whole blocks (``block_s`` s each) where one (period, phase) bin stands out."""
    out = []
    periods = _fold_periods(rate) / rate
    n_blocks = folds.sums.shape[0]
    for width in windows:
        m = int(round(width / block_s))
        if n_blocks < m:
            continue
        log_cells = float(np.log(_fold_cells(width)))
        zs, ps, bs = best_folds(folds.sums, folds.counts, m)
        usable = np.convolve(folds.usable, np.ones(m), "valid") / m
        log_ps = special.log_ndtr(-zs) + log_cells
        for k0 in np.flatnonzero((usable >= 0.5) & (log_ps < log_alpha)):
            k1, z, p, b, log_p = k0 + m, zs[k0], ps[k0], bs[k0], float(log_ps[k0])
            # the episode: the blocks that carry the winning phase bin, trimmed at both ends
            block_z = folds.sums[k0:k1, p, b] / np.sqrt(np.maximum(folds.counts[k0:k1, p, b], 1.0))
            carried = np.flatnonzero(block_z >= 1.0)
            first, last = (k0 + carried[0], k0 + carried[-1]) if carried.size else (k0, k1 - 1)
            out.append(_Window(folds.start + first * block_s, (last + 1 - first) * block_s, log_p,
                               "open_loop", None, int(width / periods[p]),
                               {"period": float(periods[p]), "z": float(z), "window": width}))
    return out


# --------------------------------------------------------------------------------------------
# Alarm levels, events


def _log_alphas(n_channels: int, live: bool = False) -> tuple:
    """Per-test log alarm levels (closed loop, open loop), half the false-alarm budget each.

    Offline, closed-loop windows are tested every quarter window at every threshold on every
    channel, open-loop windows every :data:`OPEN_BLOCK_S`; live, every window length is tested
    every :data:`UPDATE_S` s. Bonferroni over the tests of one hour.
    """
    budget = 0.5 * FALSE_ALARMS_PER_HOUR
    per_window = len(DEPTHS_SD) * max(1, n_channels)
    if live:
        closed = len(LIVE_CLOSED_WINDOWS_S) * per_window * 3600.0 / UPDATE_S
        open_ = len(LIVE_OPEN_WINDOWS_S) * 3600.0 / UPDATE_S
    else:
        closed = sum(4.0 * 3600.0 / w for w in CLOSED_WINDOWS_S) * per_window
        open_ = len(OPEN_WINDOWS_S) * 3600.0 / OPEN_BLOCK_S
    return float(np.log(budget / closed)), float(np.log(budget / open_))


def _p_text(log_p: float) -> str:
    """``p < 1e-N`` with the smallest power of ten above p."""
    exponent = int(np.ceil(log_p / np.log(10.0)))
    return f"p < 1e{exponent}" if exponent < 0 else "p < 1"


def _to_event(w: _Window, log_alpha: float, n_channels: int) -> AdjustmentEvent:
    score = float(np.clip(1.0 - 0.5 * log_alpha / w.log_p, 0.0, 1.0))
    minutes = f"{w.detail.get('window', w.width) / 60.0:g} min"
    if w.protocol == "closed_loop":
        d = w.detail
        onset = max(w.start, d["first"] - 1.0)
        end = min(w.start + w.width, d["last"]) + CLICK_DELAY_S[1] + CLICK_INTERVAL_S + RESPONSE_S
        evidence = (f"closed loop: {w.count} slow-oscillation triggers (troughs below {-d['threshold']:.0f} uV, "
                    f"{d['depth']:g} SD, {REFRACTORY_S:.1f} s dead time) in {minutes}, followed by evoked responses "
                    f"to clicks {_CLICK_S:g} and {_CLICK_S + CLICK_INTERVAL_S:g} s later, stronger than after the "
                    f"{d['reference']} triggers elsewhere (N550 {d['n550']:+.0f} uV vs {d['n550_ref']:+.0f} uV; "
                    f"rank-sum test, {_p_text(w.log_p)})")
        return AdjustmentEvent(float(onset), float(end - onset), "auditory", score, evidence, w.channels)
    d = w.detail
    evidence = (f"open loop: evoked responses on a {d['period']:.2f}-s clock, {w.count} cycles in {minutes} "
                f"(fold z {d['z']:.1f} over periods {CUE_PERIOD_S[0]:g}-{CUE_PERIOD_S[1]:g} s and phases, "
                f"{_p_text(w.log_p)})")
    return AdjustmentEvent(float(w.start), float(w.width), "auditory", score, evidence, tuple(range(n_channels)),
                           float(1.0 / d["period"]))


def _check_rate(fs: float) -> None:
    if not fs >= 16.0:
        raise SignalError(f"auditory detection needs at least 16 Hz (a 5-Hz band), got {fs} Hz")


def _as_rows(data, valid):
    """(channels, samples) float32/float64 array and a bool mask of the given valid samples."""
    x = np.asarray(data)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise SignalError(f"data must be (n_channels, n_samples), got shape {np.shape(data)}")
    if valid is None:
        ok = np.ones(x.shape[1], dtype=bool)
    else:
        ok = np.asarray(valid, dtype=bool)
        if ok.shape != (x.shape[1],):
            raise SignalError(f"valid must have shape ({x.shape[1]},), got {ok.shape}")
    return np.ascontiguousarray(x), ok


def _open_loop_last(y: np.ndarray, ok: np.ndarray, rate: float, t0: float, t_eval: float, log_alpha: float) -> list:
    """Live: the windows of :data:`LIVE_OPEN_WINDOWS_S` that end at ``t_eval`` (s; ``t0`` at ``y[0]``).

    A window shorter than :data:`OPEN_BLOCK_S` is folded as one block.
    """
    out = []
    for width in LIVE_OPEN_WINDOWS_S:
        b = int(round((t_eval - t0) * rate))
        a = b - int(round(width * rate))
        if a < 0 or b > y.size:
            continue
        block_s = min(OPEN_BLOCK_S, width)
        folds = _fold(y[a:b], ok[a:b], rate, int(round(t0 * rate)) + a, block_s)
        out += _open_loop_tests(folds, rate, log_alpha, windows=(width,), block_s=block_s)
    return out


def _analyse(xd: np.ndarray, counts: np.ndarray, fd: float, t0: float, stages=None,
             t_eval: float | None = None, history: dict | None = None, n_leads: int | None = None) -> tuple:
    """Significant windows of boxcar-averaged channels (times in s, ``t0`` at the first block).

    Offline (``t_eval`` None) every window is tested; live, only the windows ending at ``t_eval``,
    with the closed-loop triggers of ``history`` ((channel, threshold) -> _Triggers, times before
    ``t0``) added to the reference. Returns (window, log alarm level) pairs and the closed-loop
    triggers found in the data. The alarm levels are corrected for ``n_leads`` leads (at least the
    rows of ``xd``).
    """
    preps = _prepare(xd, counts, fd, _staged_blocks(stages, xd.shape[1], fd))
    fa = preps[0].fs
    t1 = t0 + preps[0].band.size / fa if t_eval is None else t_eval
    la_closed, la_open = _log_alphas(max(len(preps), n_leads or 0), live=t_eval is not None)
    triggers = []
    for r, p in enumerate(preps):
        for tr in _closed_loop_triggers(p, r):
            tr.times = tr.times + t0
            tr.stratum = _stage_at(stages, tr.times)
            triggers.append(tr.subset(tr.times <= t1 - (CLICK_DELAY_S[1] + CLICK_INTERVAL_S + RESPONSE_S)))
    live = t_eval is not None
    tested = triggers
    if history:
        tested = [_concat_triggers(history[(tr.channel, tr.level)].subset(history[(tr.channel, tr.level)].times < t0), tr)
                  if (tr.channel, tr.level) in history else tr for tr in triggers]
    windows = _closed_loop_tests(tested, t0, t1, la_closed, last_only=live,
                                 windows=LIVE_CLOSED_WINDOWS_S if live else CLOSED_WINDOWS_S)
    y, ok, rate = _fold_series(preps)
    if t_eval is None:
        windows += _open_loop_tests(_fold(y, ok, rate, int(round(t0 * rate))), rate, la_open)
    else:
        windows += _open_loop_last(y, ok, rate, t0, t_eval, la_open)
    return [(w, la_closed if w.protocol == "closed_loop" else la_open) for w in windows], triggers


def _concat_triggers(first: "_Triggers", second: "_Triggers") -> "_Triggers":
    """The triggers of ``first`` then those of ``second`` (same channel and threshold)."""
    return _Triggers(np.concatenate([first.times, second.times]), np.concatenate([first.score, second.score]),
                     np.concatenate([first.stratum, second.stratum]), np.concatenate([first.n550, second.n550]),
                     second.level, second.threshold_uv, second.channel)


def detect_auditory(data, fs: float, *, valid=None, stages=None, n_leads: int | None = None) -> list:
    """Flag series of auditory stimulation (closed-loop click pairs or open-loop cues) in a recording.

    Parameters
    ----------
    data : array_like, shape (n_channels, n_samples) or (n_samples,)
        Electrode signals (EEG, EOG, EMG) in uV at one rate; NaN marks missing samples.
    fs : float
        Sample rate in Hz (at least 16; the work is done at 16-50 Hz whatever the input rate).
    valid : array_like of bool, shape (n_samples,), optional
        False where samples are missing (e.g. packet loss written as 0).
    stages : array_like of int, shape (n_epochs,), optional
        Stage code per 30-s epoch (0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unknown); when given, wake
        epochs (:data:`SKIPPED_STAGES`) are not analysed.
    n_leads : int, optional
        Leads of the whole recording when a caller analyses them in groups (e.g. a failing
        electrode on its own): the closed-loop test is run on every lead, and its alarm level is
        Bonferroni-corrected over all of them. Default (and at least): the rows of ``data``.

    Returns
    -------
    list of AdjustmentEvent
        Kind ``"auditory"``, sorted by onset (s from the first sample), overlapping detections
        merged; ``channels`` are the rows where the evidence was found. Recordings shorter than
        the shortest window (:data:`OPEN_WINDOWS_S`) give none.

    Raises
    ------
    SignalError
        For a rate below 16 Hz, or data or ``valid`` of the wrong shape.
    """
    _check_rate(fs)
    x, ok = _as_rows(data, valid)
    m = _decimation(fs)
    xd, counts = block_mean(x, ok, m)
    fd = fs / m
    if xd.shape[1] < min(CLOSED_WINDOWS_S[0], OPEN_WINDOWS_S[0]) * fd:
        return []
    found, _ = _analyse(xd, counts, fd, 0.0, stages, n_leads=n_leads)
    return merge_events([_to_event(w, la, x.shape[0]) for w, la in found])


class AuditoryMonitor:
    """Live detection of auditory stimulation series, block by block.

    Keeps the last :data:`BUFFER_S` s as boxcar averages (a few hundred values per channel and
    minute) and every :data:`UPDATE_S` s of data tests the windows that end :data:`EDGE_S` s
    before the newest sample (the zero-phase filters need that much data after a response), with
    the statistics of :func:`detect_auditory`; the alarm levels are Bonferroni-corrected for
    testing every :data:`UPDATE_S` s. The closed-loop reference also holds the emulated
    stimulator's triggers (time and score) of the last :data:`REFERENCE_S` s before the buffer,
    at most one per :data:`REFRACTORY_S` per channel and threshold. Memory and the cost of a push
    are bounded by the buffer and that reference, whatever the stream's length. Stages are not known live, so every stage is analysed. An
    alarm is raised once per series: windows overlapping the last alarm only extend it silently.

    Parameters
    ----------
    fs : float
        Sample rate in Hz.
    n_channels : int
        Electrode channels in every block.
    n_leads : int, optional
        Leads of the whole recording when the caller monitors them in groups (see
        :func:`detect_auditory`); default: ``n_channels``.

    Attributes
    ----------
    events : list of AdjustmentEvent
        Every alarm raised so far, in the order raised (onsets in s from the first pushed sample).
    """

    def __init__(self, fs: float, n_channels: int, *, n_leads: int | None = None):
        _check_rate(fs)
        self.fs = float(fs)
        self.n_channels = int(n_channels)
        self.n_leads = n_leads
        self._m = _decimation(self.fs)
        self._fd = self.fs / self._m
        self._pending = np.zeros((self.n_channels, 0))
        self._pending_ok = np.zeros(0, dtype=bool)
        self._means = np.zeros((self.n_channels, 0))
        self._counts = np.zeros(0, dtype=np.int64)
        self._first = 0          # block index (at fd) of self._means[:, 0]
        self._next_update = int(round(UPDATE_S * self._fd))
        self._alarm_end = -np.inf
        self._history: dict = {}  # (channel, threshold) -> _Triggers before the buffer
        self._archived = 0.0      # s: triggers before this time are in the history
        self.events: list = []

    def push(self, block, valid=None) -> list:
        """Analyse the next block of samples.

        Parameters
        ----------
        block : array_like, shape (n_channels, n)
            The next samples in uV; NaN marks missing ones.
        valid : array_like of bool, shape (n,), optional
            False where samples are missing.

        Returns
        -------
        list of AdjustmentEvent
            Alarms raised by this block.
        """
        x, ok = _as_rows(block, valid)
        if x.shape[0] != self.n_channels:
            raise SignalError(f"expected {self.n_channels} channels, got {x.shape[0]}")
        x = np.concatenate([self._pending, x], axis=1)
        ok = np.concatenate([self._pending_ok, ok])
        n_full = (x.shape[1] // self._m) * self._m
        means, counts = block_mean(np.ascontiguousarray(x[:, :n_full]), ok[:n_full], self._m)
        self._pending, self._pending_ok = x[:, n_full:].copy(), ok[n_full:].copy()
        self._means = np.concatenate([self._means, means], axis=1)
        self._counts = np.concatenate([self._counts, counts])
        # keep what the next update needs (the updates do not depend on how the stream is cut)
        new: list = []
        while self._first + self._counts.size >= self._next_update:
            new += self._update(self._next_update)
            self._next_update += int(round(UPDATE_S * self._fd))
            drop = self._next_update - int(round(BUFFER_S * self._fd)) - self._first
            if drop > 0:
                self._means, self._counts = self._means[:, drop:], self._counts[drop:]
                self._first += drop
        self.events += new
        return new

    def _update(self, end_block: int) -> list:
        """Test the windows ending EDGE_S before block ``end_block`` (absolute)."""
        n = end_block - self._first
        a = max(0, n - int(round(BUFFER_S * self._fd)))
        t0 = (self._first + a) / self._fd
        t_eval = end_block / self._fd - EDGE_S
        if n <= a or t_eval - t0 < min(LIVE_OPEN_WINDOWS_S):
            return []
        found, triggers = _analyse(self._means[:, a:n], self._counts[a:n], self._fd, t0, None, t_eval=t_eval,
                                   n_leads=self.n_leads,
                                   history=self._history)
        self._archive(triggers, t_eval - max(LIVE_CLOSED_WINDOWS_S) - UPDATE_S)
        raised = []
        for w, log_alpha in sorted(found, key=lambda f: f[0].log_p):
            event = _to_event(w, log_alpha, self.n_channels)
            if event.onset < self._alarm_end:  # the series already flagged: follow it silently
                self._alarm_end = max(self._alarm_end, event.end)
                continue
            self._alarm_end = event.end
            raised.append(event)
        return raised

    def _archive(self, triggers: list, until: float) -> None:
        """Move the triggers between the last archived time and ``until`` (s) into the history
        (by then no live window holds them), and forget those older than :data:`REFERENCE_S`."""
        if until <= self._archived:
            return
        for tr in triggers:
            key = (tr.channel, tr.level)
            new = tr.subset((tr.times >= self._archived) & (tr.times < until))
            old = self._history.get(key)
            merged = new if old is None else _concat_triggers(old, new)
            self._history[key] = merged.subset(merged.times >= until - REFERENCE_S)
        self._archived = until
