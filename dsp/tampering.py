"""Tampering with the record itself: replayed, spliced and time-warped stretches of signal.

A forger replaces a stretch of a recording by something that was not recorded then: an earlier
stretch of the same recording (replay), a stretch of another recording (splice), or the same stretch
played faster or slower (warp). Sleep stages, arousals, movements, electrode pops and gaps change a
recording too, so the detector only uses evidence that a sleeper and an amplifier cannot produce,
each with its own null hypothesis:

1. Exact duplicates (replay). The samples of one channel (the liveliest) are hashed after rounding
   their float32 value to 1/64 uV, so float32 round trips (EDF writing) change nothing.
   Content-defined anchors (samples whose hash is 0 modulo a spacing, about 8 per second) carry a
   fingerprint of the 0.125 s that follows them; equal fingerprints at one lag are traced sample by
   sample, on every channel, into the exact copy. Seconds of a live signal never repeat to the
   last bit by chance, so a copy of at least :data:`MIN_COPY_S` is reported without a tuned
   threshold. Sorting the fingerprints keeps a night's search O(n log n); the live monitor keeps
   them in a hash table. A cross-fade at the seams is not part of the exact copy and is not
   reported.
2. The mains line (splice, warp). Where channels carry a 50/60-Hz line (at least 14 dB over its
   bin's noise, :data:`_LINE_SNR`: the residue of a notch filter carries no evidence), its complex amplitude
   (phasor) in each 2-s frame is set by the wiring and the amplifier's clock: it may drift, never
   jump. A donor recording brings its own amplitude and phase; a warp moves the line to ``factor``
   times its frequency. Each frame's phasor is compared with a local reference (the median of
   1-min block medians over +-5 min); its sampling noise is measured in the neighbouring bins of
   the same frame, plus the line's own wander over the night (a beat with an aliased harmonic, a
   drifting residue), so the departure over a stretch of frames is at most F-distributed under the
   null (channels are averaged and a frame counts once: they share muscle and movement noise).
3. Holes under the amplifier's noise floor (splice, warp). Physiology only adds power; the lowest
   decile of each band's power over the night is the amplifier's floor. A resampled stretch (a
   donor recorded at a lower rate, a segment played slower) has nothing above its old Nyquist
   frequency: its top bands fall far below the floor while the bottom of the spectrum stays normal,
   and the spectrum's shape drops off a cliff (so a quieter muscle tone does not count). Deficits
   are in units of the band power's spread, and the stretch's summed deficit is tested against a
   standard normal.
4. The quantisation grid (splice, warp). A recording made by an ADC and stored as samples
   (EDF's digital-to-physical map, a text export) sits on levels ``offset + k * step``; a
   resampled, warped, cross-faded or mixed stretch does not (only about 1/16 of its values fall
   within 1/32 of a step of a level). The grid is learnt from the values that repeat in the
   recording (:func:`quantisation_grid`); a stretch's count of off-grid samples is tested against a
   binomial with the recording's background rate of stray values. Signals without a grid
   (simulated, filtered or float-processed on the way) leave this test silent.

Tests 2 to 4 run over stretches of frames whose own evidence is well above its null mean and keep
those significant at a family-wise :data:`ALPHA` per recording (Bonferroni over frames, window
lengths, bands and channels). What survives none of them: a donor with the same rate, amplifier,
grid (or none) and mains (or no mains) as the recording, a forgery put back on the recording's grid,
and a warp close to 1 that leaves no hole (played faster, or slower by less than a few percent) in
a recording without a grid; those pass unseen. Gaps (``valid`` False) never count as
evidence: they are bridged by straight lines before spectra are taken, frames more than 10 %
missing are not analysed, the line's phasor is scaled back to the whole frame and what the bridges
put into its bin is counted as noise.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import fft as sp_fft
from scipy import special

from .detector_input import as_detector_input
from .events import AdjustmentEvent

#: Shortest exact copy reported as a replay, in s.
MIN_COPY_S = 2.0
#: Length of the analysis frames in s (spectra and mains phasors, 0.5-Hz bins).
FRAME_S = 2.0
#: Family-wise false-alarm probability per recording (per 8-h night live) of each statistical test.
ALPHA = 1e-3

_QUANT = 64.0  # samples are compared at 1/64 uV
_ANCHORS_PER_S = 8.0  # mean density of content-defined anchors
_BLOCK_S = 0.125  # length of the block each anchor fingerprints
_MIN_ANCHORS = 3  # matching anchors at one lag before the copy is traced sample by sample
_MAX_GROUP = 16  # a fingerprint seen more often than this is repetitive content, not a copy
_MIN_VALID = 0.9  # frames with less valid data than this are not analysed
_MIN_FRAMES = 2  # spectral evidence must hold for at least 4 s
_LINES_HZ = (50.0, 60.0)
_LINE_SNR = 25.0  # a channel carries the mains line when its steady part has 25x the bin's noise power
_NOISE_HZ = (1.5, 6.0)  # the line's noise is measured this far from it on both sides
_NEAR_HZ = 6.0  # spectrum kept around the line, to tell a moved line from a changed one
_TOP_BANDS = (0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.88, 0.94, 0.985)  # fractions of Nyquist
_MIN_BINS = 8  # narrower bands are too noisy; they join the band below
_BLOCK_FRAMES = 30  # 1-min blocks for the local references
_LOCAL_BLOCKS = 5  # local references pool +-5 blocks
_QUANTILE_FRAMES = 1200  # night-wide quantiles are taken over at most this many frames (evenly spread)
_CLIFF_Z = 2.0  # a hole must also cut the spectrum's shape, not only its level
_DEEP_DB = 20.0  # ... unless it lies this far under the floor
_DEAD_UV = 0.2  # frames with less RMS than this are a flat or railed electrode, not signal
_LOG_LEVEL_VAR = 4.16  # variance of the log of a band's level over m bins is at most this / m
_N_WINDOWS = 5  # window lengths a stretch could have been tested at (1-16 frames), for Bonferroni
_GRID_TOL = 1.0 / 32.0  # a sample is on the grid when it lies within 1/32 of a step of a grid level
_GRID_ON = 0.95  # share of the levels' spacings, and of the repeated values, that must fit one grid
_GRID_FLOAT_ULPS = 64.0  # the step must span this many float32 ulps of the largest values (else it is round-off)
_GRID_SAMPLES = 1 << 16  # the grid is estimated from about this many samples per channel
_GRID_MIN_SAMPLES = 2000  # ... and at least this many
_GRID_BACKGROUND = 1e-3  # least per-sample probability of an off-grid sample in an untouched recording
_SMALL_SELECT = 16  # quantiles this close to either end of the sorted values are found without a sort

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT30, _SHIFT27, _SHIFT31 = np.uint64(30), np.uint64(27), np.uint64(31)


# ----------------------------------------------------------------------------------------- kernels

@njit(cache=True)
def _mix(z):
    """splitmix64 finaliser: a bijective scramble of a 64-bit word."""
    z = z + _GOLDEN
    z = (z ^ (z >> _SHIFT30)) * _MIX1
    z = (z ^ (z >> _SHIFT27)) * _MIX2
    return z ^ (z >> _SHIFT31)


@njit(cache=True)
def _level(v):
    """A sample as an integer: its float32 value in units of 1/64 uV."""
    return np.int64(np.rint(np.float64(np.float32(v)) * _QUANT))


@njit(cache=True)
def sample_hashes(x):
    """Hash of every sample of a channel, and whether it differs from the sample before.

    Parameters
    ----------
    x : ndarray, shape (n_samples,)
        Signal in uV.

    Returns
    -------
    hashes : ndarray of uint64, shape (n_samples,)
        splitmix64 of the sample's level (its float32 value in 1/64 uV, rounded to an integer).
    changed : ndarray of bool, shape (n_samples,)
        The level differs from the previous sample's (True for the first sample).
    """
    n = x.size
    hashes = np.empty(n, dtype=np.uint64)
    changed = np.empty(n, dtype=np.bool_)
    for i in range(n):
        level = _level(x[i])
        hashes[i] = _mix(np.uint64(level))
        # the previous level is recomputed rather than carried over, so iterations are independent
        changed[i] = True if i == 0 else level != _level(x[i - 1])
    return hashes, changed


@njit(cache=True)
def anchor_fingerprints(hashes, ok, changed, spacing, block, min_changed):
    """Content-defined anchors and the fingerprint of the block each one starts.

    Sample ``i`` is an anchor when ``hashes[i] % spacing == 0`` (``spacing`` a power of 2), so identical stretches get
    anchors at the same places wherever they lie in the recording. Its fingerprint is the splitmix64
    of ``sum_j hashes[i + j] * w_j`` (mod 2^64) over the block ``j = 0 .. block - 1``, with one odd
    weight per position ``w_j = splitmix64(j) | 1`` (so the order of the samples counts; the
    products are independent of each other, unlike a chain of hashes, so they are cheap);
    anchors whose block has a missing sample, or fewer than ``min_changed`` samples that differ
    from their predecessor (flat or railed signal, which repeats by itself), are skipped.

    Parameters
    ----------
    hashes : ndarray of uint64, shape (n,)
        Sample hashes (:func:`sample_hashes`).
    ok : ndarray of bool, shape (n,)
        False for missing samples.
    changed : ndarray of bool, shape (n,)
        Sample differs from its predecessor.
    spacing : int
        Mean distance between anchors in samples, a power of 2.
    block : int
        Samples per fingerprinted block.
    min_changed : int
        Least number of changing samples in an informative block.

    Returns
    -------
    positions : ndarray of int64, shape (n_anchors,)
        Sample index of each anchor, increasing.
    fingerprints : ndarray of uint64, shape (n_anchors,)
    """
    n = hashes.size
    m = np.uint64(spacing - 1)
    count = 0
    for i in range(n - block + 1):
        count += (hashes[i] & m) == 0
    positions = np.empty(count, dtype=np.int64)
    fingerprints = np.empty(count, dtype=np.uint64)
    weights = np.empty(max(block, 0), dtype=np.uint64)
    for j in range(block):
        weights[j] = _mix(np.uint64(j)) | np.uint64(1)
    k = 0
    for i in range(n - block + 1):
        if hashes[i] & m != 0:
            continue
        good = True
        moving = 0
        acc = np.uint64(0)
        for j in range(block):
            good &= ok[i + j]
            moving += changed[i + j]
            acc += hashes[i + j] * weights[j]
        if good and moving >= min_changed:
            positions[k] = i
            fingerprints[k] = _mix(acc)
            k += 1
    return positions[:k], fingerprints[:k]


@njit(cache=True)
def duplicate_pairs(fingerprints, positions, max_group):
    """Pairs of anchors with the same fingerprint, earlier first.

    Parameters
    ----------
    fingerprints : ndarray of uint64, shape (m,)
        Sorted fingerprints.
    positions : ndarray of int64, shape (m,)
        The anchors' sample indices, in the same order.
    max_group : int
        Fingerprints shared by more anchors than this are ignored (repetitive content).

    Returns
    -------
    ndarray of int64, shape (n_pairs, 2)
        ``(earlier, later)`` sample indices of each pair of equal fingerprints.
    """
    m = fingerprints.size
    total = 0
    i = 0
    while i < m:
        j = i + 1
        while j < m and fingerprints[j] == fingerprints[i]:
            j += 1
        if 2 <= j - i <= max_group:
            total += (j - i) * (j - i - 1) // 2
        i = j
    out = np.empty((total, 2), dtype=np.int64)
    k = 0
    i = 0
    while i < m:
        j = i + 1
        while j < m and fingerprints[j] == fingerprints[i]:
            j += 1
        if 2 <= j - i <= max_group:
            for a in range(i, j):
                for b in range(a + 1, j):
                    out[k, 0] = min(positions[a], positions[b])
                    out[k, 1] = max(positions[a], positions[b])
                    k += 1
        i = j
    return out


@njit(cache=True)
def exact_copy_extent(x, ok, start, stop, lag):
    """Grow ``[start, stop)`` while every channel equals the signal ``lag`` samples earlier.

    Samples are equal when their levels (float32 value in 1/64 uV) are. Missing samples (on either
    side) neither break nor prove the copy; the first present sample that differs on any channel
    ends it. ``[start, stop)`` itself is taken as copied.

    Parameters
    ----------
    x : ndarray, shape (n_channels, n)
        Signal in uV.
    ok : ndarray of bool, shape (n,)
        False for missing samples.
    start, stop : int
        A stretch known to be copied (``lag <= start < stop <= n``).
    lag : int
        Distance from the source to the copy in samples (> 0).

    Returns
    -------
    first, end : int
        The maximal copied stretch ``[first, end)`` containing ``[start, stop)``.
    """
    n_channels, n = x.shape
    first = start
    while first - 1 - lag >= 0:
        i = first - 1
        if ok[i] and ok[i - lag]:
            same = True
            for c in range(n_channels):
                if _level(x[c, i]) != _level(x[c, i - lag]):
                    same = False
                    break
            if not same:
                break
        first = i
    end = stop
    while end < n:
        if ok[end] and ok[end - lag]:
            same = True
            for c in range(n_channels):
                if _level(x[c, end]) != _level(x[c, end - lag]):
                    same = False
                    break
            if not same:
                break
        end += 1
    return first, end


@njit(cache=True)
def gap_parts(frames, ok, bins):
    """What the missing samples of each (tapered, bridged) frame put into some DFT bins.

    Parameters
    ----------
    frames : ndarray, shape (n_rows, n)
        Tapered frames whose missing samples were bridged.
    ok : ndarray of bool, shape (n_rows, n)
        False for missing samples.
    bins : ndarray of int64, shape (n_bins,)
        DFT bins (cycles per frame).

    Returns
    -------
    ndarray of complex128, shape (n_rows, n_bins)
        ``sum over missing samples m of frames[r, m] * exp(-2j pi bins[k] m / n)``.
    """
    n_rows, n = frames.shape
    twiddle = np.empty((n, bins.size), dtype=np.complex128)
    for m in range(n):
        for k in range(bins.size):
            twiddle[m, k] = np.exp(-2j * np.pi * bins[k] * m / n)
    out = np.zeros((n_rows, bins.size), dtype=np.complex128)
    for r in range(n_rows):
        frame, present, o = frames[r], ok[r], out[r]  # row views
        for m in range(n):
            if not present[m]:
                for k in range(bins.size):
                    o[k] += frame[m] * twiddle[m, k]
    return out


@njit(cache=True, fastmath={"reassoc"})
def tapered_frames(x, ok, taper):
    """Cut a signal into consecutive frames, bridge missing samples within each frame, remove the
    frame's mean, taper.

    Parameters
    ----------
    x : ndarray of float64, shape (n_frames * n_frame,)
        Signal in uV.
    ok : ndarray of bool, same shape
        False for missing samples, which are bridged by straight lines between the present samples
        around them in the same frame (held constant at a frame's ends, zero without any).
    taper : ndarray of float32, shape (n_frame,)

    Returns
    -------
    ndarray of float32, shape (n_frames, n_frame)
        Bridged frames less the mean of their present samples (in float64: an electrode offset of
        thousands of uV, or a railed input, would otherwise leave float32 round-off in every bin
        of the spectrum), times the taper.
    """
    n_frame = taper.size
    n_frames = x.size // n_frame
    out = np.empty((n_frames, n_frame), dtype=np.float32)
    for r in range(n_frames):
        base = r * n_frame
        # row views: the loops then vectorise
        xs = x[base:base + n_frame]
        oks = ok[base:base + n_frame]
        o = out[r]
        total = 0.0
        count = 0
        # branch-free and reassociated, so it vectorises (a missing sample may be anything finite)
        for i in range(n_frame):
            present = oks[i]
            total += xs[i] if present else 0.0
            count += present
        mean = total / count if count > 0 else 0.0
        if count == n_frame:  # no gap: a loop without branches, which the compiler vectorises
            for i in range(n_frame):
                o[i] = (xs[i] - mean) * taper[i]
            continue
        i = 0
        while i < n_frame:
            if oks[i]:
                o[i] = (xs[i] - mean) * taper[i]
                i += 1
                continue
            j = i
            while j < n_frame and not oks[j]:
                j += 1
            left = xs[i - 1] if i > 0 else (xs[j] if j < n_frame else mean)
            right = xs[j] if j < n_frame else left
            for k in range(i, j):
                o[k] = (left + (right - left) * (k - i + 1) / (j - i + 1) - mean) * taper[k]
            i = j
    return out


@njit(cache=True, fastmath={"reassoc"})
def spectral_summaries(spectrum, band_of_bin, n_bands, line_bins, noise_offsets, reach):
    """What the detector keeps of each frame's spectrum, in one pass.

    Parameters
    ----------
    spectrum : ndarray of complex, shape (n_rows, n_bins)
        DFT of each tapered frame.
    band_of_bin : ndarray of int64, shape (n_bins,)
        Band of each bin (-1: in none).
    n_bands : int
    line_bins : ndarray of int64, shape (n_lines,)
        Bins of the mains frequencies.
    noise_offsets : ndarray of int64, shape (n_noise,)
        Offsets from a line's bin of the bins its noise is measured in.
    reach : int
        The periodogram is kept over a line's bin +- ``reach``.

    Returns
    -------
    levels : ndarray of float64, shape (n_rows, n_bands)
        Mean periodogram over each band's bins, plus 1e-20 (the caller takes the log, vectorised).
    power : ndarray of float64, shape (n_rows,)
        Periodogram summed over bins 2 and up (clear of a Hann taper's leakage from DC).
    phasors : ndarray of complex128, shape (n_rows, n_lines)
        The DFT at each line's bin.
    noise : ndarray of float64, shape (n_rows, n_lines)
        Median periodogram over each line's noise bins (the mean of the two middle values for an
        even count): a line that moved into them barely changes it.
    near : ndarray of float32, shape (n_rows, n_lines, 2 * reach + 1)
        Periodogram around each line.
    """
    # (reassociated sums: the bins' adds need not wait for each other, so they vectorise; the
    # results change only by rounding)
    n_rows, n_bins = spectrum.shape
    n_lines = line_bins.size
    # each band's span of bins and a 0/1 weight per bin: the band sums become plain reductions over
    # contiguous bins
    first = np.full(n_bands, n_bins)
    stop = np.zeros(n_bands, dtype=np.int64)
    counts = np.zeros(n_bands)
    weight = np.zeros((n_bands, n_bins))
    for k in range(n_bins):
        b = band_of_bin[k]
        if b >= 0:
            first[b] = min(first[b], k)
            stop[b] = max(stop[b], k + 1)
            counts[b] += 1.0
            weight[b, k] = 1.0
    levels = np.empty((n_rows, n_bands))
    total = np.zeros(n_rows)
    phasors = np.empty((n_rows, n_lines), dtype=np.complex128)
    noise = np.zeros((n_rows, n_lines))
    near = np.empty((n_rows, n_lines, 2 * reach + 1), dtype=np.float32)
    p = np.empty(n_bins)
    m = noise_offsets.size
    buf = np.empty(m)
    low_rank, high_rank = (m - 1) // 2, m // 2  # the median's ranks (one for an odd count)
    for r in range(n_rows):
        row = spectrum[r]
        for k in range(n_bins):
            re = np.float64(row[k].real)
            im = np.float64(row[k].imag)
            p[k] = re * re + im * im
        t = 0.0
        for k in range(2, n_bins):
            t += p[k]
        total[r] = t
        for b in range(n_bands):
            acc = 0.0
            wb = weight[b]
            for k in range(first[b], stop[b]):
                acc += p[k] * wb[k]
            levels[r, b] = acc / max(counts[b], 1.0) + 1e-20
        for i in range(n_lines):
            k0 = line_bins[i]
            phasors[r, i] = row[k0]
            for j in range(m):
                buf[j] = p[k0 + noise_offsets[j]]
            # the median by ranks: a value with ``less`` smaller ones and ``leq`` not larger ones
            # holds the ranks less .. leq - 1 of the sorted values; branch-free, so cheaper than
            # sorting a few dozen values
            low = 0.0
            high = 0.0
            for j in range(m):
                v = buf[j]
                less = 0
                leq = 0
                for h in range(m):
                    w = buf[h]
                    less += w < v
                    leq += w <= v
                low = v if (less <= low_rank) & (low_rank < leq) else low
                high = v if (less <= high_rank) & (high_rank < leq) else high
            noise[r, i] = 0.5 * (low + high)
            for j in range(2 * reach + 1):
                near[r, i, j] = p[k0 - reach + j]
    return levels, total, phasors, noise, near


@njit(cache=True)
def masked_quantiles(values, use, qs):
    """Quantiles of each row over its used entries (linear interpolation, numpy's default).

    Parameters
    ----------
    values : ndarray of float64, shape (n_rows, n)
    use : ndarray of bool, shape (n_rows, n)
        Entries to include (non-finite values are left out too).
    qs : ndarray of float64, shape (n_q,)
        Quantiles in 0..1.

    Returns
    -------
    ndarray of float64, shape (n_rows, n_q)
        NaN for a row without used entries.
    """
    n_rows, n = values.shape
    out = np.full((n_rows, qs.size), np.nan)
    buf = np.empty(n)
    ends = np.empty(_SMALL_SELECT)
    for r in range(n_rows):
        m = 0
        row, used = values[r], use[r]
        for j in range(n):
            if used[j] and np.isfinite(row[j]):
                buf[m] = row[j]
                m += 1
        if m == 0:
            continue
        for k in range(qs.size):
            pos = qs[k] * (m - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, m - 1)
            if lo + 2 <= _SMALL_SELECT or m - lo <= _SMALL_SELECT:
                # an order statistic near either end (a low decile of 1-min blocks, the median of a
                # few): only the few smallest (or largest) values are kept, sorted, in one pass
                low_end = lo + 2 <= _SMALL_SELECT
                size = min(lo + 2, m) if low_end else m - lo
                filled = 0
                for j in range(m):
                    v = buf[j] if low_end else -buf[j]
                    if filled == size and v >= ends[size - 1]:
                        continue
                    i = filled - 1 if filled < size else size - 2
                    while i >= 0 and ends[i] > v:
                        ends[i + 1] = ends[i]
                        i -= 1
                    ends[i + 1] = v
                    filled = min(filled + 1, size)
                if low_end:
                    a, b = ends[lo], ends[hi]
                else:  # ends holds the largest values, negated, largest first
                    a, b = -ends[m - 1 - lo], -ends[m - 1 - hi]
                out[r, k] = a + (b - a) * (pos - lo)
                continue
            # selection instead of a full sort: linear time for the two order statistics needed
            # (buf is reordered in place: the used values stay, in another order)
            at = _select(buf, m, lo)
            above = at
            if lo + 1 < m:
                above = buf[lo + 1]
                for j in range(lo + 2, m):
                    above = min(above, buf[j])
            out[r, k] = at + (above - at) * (pos - lo)
    return out


@njit(cache=True)
def _select(a, m, k):
    """The ``k``-th smallest of ``a[:m]`` (0-based), by quickselect in place: afterwards ``a[k]``
    holds it, ``a[:k]`` values not above it and ``a[k + 1:m]`` values not below it."""
    lo, hi = 0, m - 1
    while hi > lo:
        # median of three as the pivot, moved to a[hi]
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[mid] < a[hi]:
            a[mid], a[hi] = a[hi], a[mid]
        pivot = a[hi]
        # Lomuto partition: [lo, store) below the pivot
        store = lo
        for i in range(lo, hi):
            if a[i] < pivot:
                a[i], a[store] = a[store], a[i]
                store += 1
        a[store], a[hi] = a[hi], a[store]
        if store == k:
            return a[k]
        if store < k:
            lo = store + 1
        else:
            hi = store - 1
    return a[k]


@njit(cache=True)
def off_grid_counts(x, ok, step, offset, tol, n_frame):
    """Per frame, how many present samples lie off a quantisation grid, and how many are present.

    A sample equal to the one before it is not counted at all: a flat run (a railed input, a
    dropout filled with zeros but not marked) is one value, not a stretch of resampled signal.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Signal in uV.
    ok : ndarray of bool, shape (n,)
        False for missing samples (never counted).
    step, offset : float
        The grid: levels at ``offset + k * step`` uV.
    tol : float
        Largest distance from a level of a sample on the grid, in uV.
    n_frame : int
        Samples per frame; a last partial frame is left out.

    Returns
    -------
    off, present : ndarray of int64, shape (n // n_frame,)
        Counted samples off the grid, and counted samples (present and not a repeat).
    """
    n_frames = x.size // n_frame
    off = np.zeros(n_frames, dtype=np.int64)
    present = np.zeros(n_frames, dtype=np.int64)
    for r in range(n_frames):
        for i in range(r * n_frame, (r + 1) * n_frame):
            if ok[i] and (i == 0 or x[i] != x[i - 1]):
                present[r] += 1
                v = (x[i] - offset) / step
                if abs(v - np.rint(v)) * step > tol:
                    off[r] += 1
    return off, present


@njit(cache=True)
def _finite_or_clipped(v):
    """``np.nan_to_num`` of one value: 0 for NaN, the largest finite float for +-inf."""
    if np.isnan(v):
        return 0.0
    if np.isinf(v):
        return 1.7976931348623157e308 if v > 0 else -1.7976931348623157e308
    return v


@njit(cache=True)
def band_deficits(y, use, floor, spread, cfloor, cspread, c2floor, c2spread, deficit, cliff, good, depth_db):
    """Each frame's band deficits under their floors, in spreads, in one pass (see ``_deficits``).

    Parameters
    ----------
    y : ndarray of float64, shape (n_channels, n_frames, n_bands)
        Log band power (band 0 the reference band, then the top bands).
    use : ndarray of bool, shape (n_channels, n_frames)
    floor : ndarray of float64, shape (n_channels, n_floor, n_bands)
        Floor of each band: per frame (``n_floor = n_frames``) or one for all (``n_floor = 1``).
    spread : ndarray of float64, shape (n_channels, 1, n_bands)
    cfloor, cspread : ndarray of float64, shape (n_channels, 1, n_bands - 1)
        Floor and spread of each band's contrast with the band below.
    c2floor, c2spread : ndarray of float64, shape (n_channels, 1, n_bands - 2)
        Floor and spread of each band's contrast with the band two below.
    deficit : ndarray of float64, shape (n_channels, n_frames, n_bands - 1)
        Output: ``(floor - y) / spread`` of the top bands; 0 where the frame is not analysable.
    cliff : ndarray of float64, shape (n_channels, n_frames, 2 n_bands - 3)
        Output: ``(cfloor - contrast) / cspread`` of the contrasts with the band below (bands 1..),
        then with the band two below (bands 2..); 0 where the frame is not analysable.
    good : ndarray of bool, shape (n_channels, n_frames)
        Output: analysable (used, the bottom band's deficit at most 3 and every deficit and
        contrast finite).
    depth_db : ndarray of float64, shape (n_channels, n_frames, n_bands - 1)
        Output: ``floor - y`` of the top bands in dB (NaN as 0, infinities clipped); 0 where not
        analysable.

    Notes
    -----
    The outputs are allocated by the caller: numpy gives a night's arrays huge pages, and faulting
    them in 4-kB pages inside the kernel would cost more than the arithmetic.
    """
    n_ch, n, nb = y.shape
    n1 = max(nb - 1, 0)
    n2 = max(nb - 2, 0)
    deficit[:] = 0.0
    cliff[:] = 0.0
    good[:] = False
    depth_db[:] = 0.0
    d = np.empty(nb)
    cl = np.empty(n1 + n2)
    db = 10.0 / np.log(10.0)
    per_frame = floor.shape[1] > 1
    for c in range(n_ch):
        for i in range(n):
            fi = i if per_frame else 0
            finite = True
            for b in range(nb):
                d[b] = (floor[c, fi, b] - y[c, i, b]) / spread[c, 0, b]
                finite &= np.isfinite(d[b])
            for b in range(n1):
                cl[b] = (cfloor[c, 0, b] - (y[c, i, b + 1] - y[c, i, b])) / cspread[c, 0, b]
                finite &= np.isfinite(cl[b])
            for b in range(n2):
                cl[n1 + b] = (c2floor[c, 0, b] - (y[c, i, b + 2] - y[c, i, b])) / c2spread[c, 0, b]
                finite &= np.isfinite(cl[n1 + b])
            # a collapsed bottom band is a flat or disconnected electrode, not a resampled stretch
            ok = use[c, i] and d[0] <= 3.0 and finite
            good[c, i] = ok
            if not ok:
                continue
            for b in range(n1):
                deficit[c, i, b] = d[b + 1]
                depth_db[c, i, b] = _finite_or_clipped(floor[c, fi, b + 1] - y[c, i, b + 1]) * db
            for b in range(n1 + n2):
                cliff[c, i, b] = cl[b]


# ------------------------------------------------------------------------------------- helpers

def _check_rate(fs: float) -> float:
    if not fs >= 50:
        raise ValueError(f"sample rate must be at least 50 Hz, got {fs}")
    return float(fs)


def _quantiles(values: np.ndarray, use: np.ndarray, qs) -> np.ndarray:
    """Quantiles over the last axis of ``values`` (any leading shape) where ``use``; NaN-safe."""
    lead = values.shape[:-1]
    flat = np.ascontiguousarray(values.reshape(-1, values.shape[-1]), dtype=np.float64)
    mask = np.ascontiguousarray(np.broadcast_to(use, values.shape).reshape(flat.shape))
    out = masked_quantiles(flat, mask, np.asarray(qs, dtype=np.float64))
    return out.reshape(lead + (len(qs),))


def _score(log_p: float, log_p_alarm: float) -> float:
    """Map -log10(p) to 0..1: 0.5 at the alarm threshold, approaching 1 as p falls further."""
    return float(np.clip(1.0 - 0.5 * np.exp(-max(0.0, log_p - log_p_alarm) / 3.0), 0.0, 1.0))


def _log_p_normal(z: float) -> float:
    return float(-special.log_ndtr(-z) / np.log(10.0))


def _runs(mask: np.ndarray, bridge: int = 0) -> list:
    """``[(first, stop), ...]`` of the True runs in a boolean array; runs at most ``bridge`` apart joined."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out: list = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        if out and a - out[-1][1] <= bridge:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _candidate_runs(contributes: np.ndarray) -> list:
    """Stretches of frames whose own evidence is well above its null mean (gaps of up to 2 frames
    bridged), at least :data:`_MIN_FRAMES` long; each is then tested as a whole."""
    return [(a, b) for a, b in _runs(contributes, bridge=2) if b - a >= _MIN_FRAMES]


def _trim(a: int, b: int, clear: np.ndarray) -> tuple:
    """Shrink a significant stretch ``[a, b)`` to its first and last frame whose own evidence is
    clear (p < 0.01 alone), so frames that joined it by chance at its ends are left out."""
    inside = np.flatnonzero(clear[a:b])
    if inside.size == 0:
        return a, b
    first, stop = a + int(inside[0]), a + int(inside[-1]) + 1
    return (first, stop) if stop - first >= _MIN_FRAMES else (first, min(b, first + _MIN_FRAMES))


def _merge(events: list) -> list:
    """Sort by onset and join overlapping events: union of time and channels, best score, all evidence."""
    out: list = []
    for e in sorted(events, key=lambda e: (e.onset, -e.duration)):
        if out and e.onset < out[-1].end:
            last = out[-1]
            end = max(last.end, e.end)
            evidence = last.evidence if e.evidence in last.evidence else f"{last.evidence}; {e.evidence}"
            out[-1] = AdjustmentEvent(last.onset, end - last.onset, "tampering", max(last.score, e.score), evidence,
                                      tuple(sorted(set(last.channels) | set(e.channels))))
        else:
            out.append(e)
    return out


# ------------------------------------------------------------------------------------- replays

def _replay_settings(fs: float) -> tuple:
    """Anchor spacing (a power of 2, for a cheap modulo) and fingerprinted block length in samples."""
    spacing = 2 ** max(2, int(round(np.log2(fs / _ANCHORS_PER_S))))
    return spacing, max(16, int(round(_BLOCK_S * fs)))


def _liveliest(x: np.ndarray, ok: np.ndarray) -> int:
    """The channel whose level changes most often (a flat or railed channel would hide copies)."""
    step = max(1, x.shape[1] // 100_000)
    sub = np.round(x[:, ::step].astype(np.float32).astype(np.float64) * _QUANT)
    moving = (np.diff(sub, axis=1) != 0) & ok[::step][1:][None, :]
    return int(np.argmax(moving.sum(axis=1)))


def _find_copies(x: np.ndarray, ok: np.ndarray, fs: float) -> list:
    """Exact copies ``[(first, end, lag), ...]`` in samples: ``[first, end)`` equals ``[first - lag, end - lag)``."""
    spacing, block = _replay_settings(fs)
    positions, fingerprints = _anchors(x[_liveliest(x, ok)], ok, spacing, block)
    order = np.argsort(fingerprints)
    pairs = duplicate_pairs(fingerprints[order], positions[order], _MAX_GROUP)
    lags = pairs[:, 1] - pairs[:, 0]
    keep = lags >= block  # a copy lies at least one block after its source
    pairs, lags = pairs[keep], lags[keep]
    if lags.size == 0:
        return []
    order = np.lexsort((pairs[:, 1], lags))
    later, lags = pairs[order, 1], lags[order]
    breaks = np.flatnonzero((np.diff(lags) != 0) | (np.diff(later) > MIN_COPY_S * fs)) + 1
    copies = []
    for run in np.split(np.arange(lags.size), breaks):
        if run.size < _MIN_ANCHORS:
            continue
        lag = int(lags[run[0]])
        first, end = exact_copy_extent(x, ok, int(later[run[0]]), int(later[run[-1]]) + block, lag)
        if end - first >= MIN_COPY_S * fs:
            copies.append((first, end, lag))
    return _merge_copies(copies)


def _anchors(signal: np.ndarray, ok: np.ndarray, spacing: int, block: int, chunk: int = 1 << 16) -> tuple:
    """:func:`anchor_fingerprints` of a whole channel, hashed a chunk at a time.

    The same anchors and fingerprints as hashing the channel at once, without its night-long
    arrays of hashes (60 MB, whose fresh pages cost more than the hashing): each chunk is hashed
    from the sample before it (so ``changed`` is right at its start) to ``block - 1`` samples past
    its end (so its last anchors have their whole block).
    """
    n = signal.size
    positions, fingerprints = [], []
    for a in range(0, n, chunk):
        first = max(a - 1, 0)
        stop = min(n, a + chunk + block - 1)
        hashes, changed = sample_hashes(signal[first:stop])
        if first < a:
            hashes, changed = hashes[1:], changed[1:]
        pos, fp = anchor_fingerprints(hashes, ok[a:stop], changed, spacing, block, block // 2)
        positions.append(pos + a)
        fingerprints.append(fp)
    if not positions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(positions), np.concatenate(fingerprints)


def _merge_copies(copies: list) -> list:
    """One entry per copied stretch: overlapping finds (split by a damaged sample, or a copy of a
    copy) joined, keeping the lag of the longest."""
    out: list = []
    for first, end, lag in sorted(copies):
        if out and first <= out[-1][1]:
            a, b, best = out[-1]
            if end - first > b - a:
                best = lag
            out[-1] = (a, max(b, end), best)
        else:
            out.append((first, end, lag))
    return out


def _copy_event(first: int, end: int, lag: int, fs: float, n_channels: int) -> AdjustmentEvent:
    onset, duration = first / fs, (end - first) / fs
    source = (first - lag) / fs
    which = "the channel" if n_channels == 1 else f"all {n_channels} channels"
    evidence = (f"{duration:.1f} s at {onset:.1f} s is a sample-exact copy of {source:.1f}-{source + duration:.1f} s "
                f"({which})")
    score = float(1.0 - 0.5 * np.exp(-max(0.0, duration - MIN_COPY_S) / MIN_COPY_S))
    return AdjustmentEvent(float(onset), float(duration), "tampering", score, evidence, tuple(range(n_channels)))


# ------------------------------------------------------------------------------------- frames

def _frame_len(fs: float) -> int:
    return int(round(FRAME_S * fs))


def _band_edges(fs: float, n_frame: int) -> tuple:
    """First and one-past-last bin of the reference band (1 Hz to a quarter of Nyquist) and of
    each top band; from the top down, bands narrower than :data:`_MIN_BINS` join the band below
    (the lowest one the band above), so the finest bands stay at the top where holes begin."""
    df = fs / n_frame
    nyq_bin = n_frame // 2
    ref = (int(np.ceil(1.0 / df)), max(int(np.ceil(1.0 / df)) + _MIN_BINS, int(np.ceil(0.25 * nyq_bin))))
    edges = sorted({max(int(np.ceil(f * nyq_bin)), ref[1]) for f in _TOP_BANDS})
    bands = [[a, b] for a, b in zip(edges[:-1], edges[1:])]
    merged: list = []
    for band in reversed(bands):
        if merged and merged[-1][1] - merged[-1][0] < _MIN_BINS:
            merged[-1][0] = band[0]
        else:
            merged.append(band)
    if len(merged) > 1 and merged[-1][1] - merged[-1][0] < _MIN_BINS:
        merged[-2][0] = merged[-1][0]
        merged.pop()
    top = merged[::-1]
    starts = np.array([ref[0]] + [a for a, _ in top], dtype=np.int64)
    stops = np.array([ref[1]] + [b for _, b in top], dtype=np.int64)
    return starts, stops


def _band_bins(fs: float, n_frame: int) -> tuple:
    """Band of each periodogram bin (-1: in none) and each band's number of bins.

    Band 0 is the reference band, the next ones the top bands. Bins within 1.5 Hz of a mains
    frequency, of its harmonics or of their aliases are left out: a line that comes and goes is
    not a change of the floor.
    """
    starts, stops = _band_edges(fs, n_frame)
    n_bins = n_frame // 2 + 1
    freqs = np.arange(n_bins) * fs / n_frame
    lines = np.array([f * h for f in _LINES_HZ for h in range(1, 7)])
    aliases = np.abs((lines + fs / 2) % fs - fs / 2)
    clean = np.abs(freqs[:, None] - aliases[None, :]).min(axis=1) > 1.5
    band_of_bin = np.full(n_bins, -1, dtype=np.int64)
    sizes = np.zeros(starts.size, dtype=np.int64)
    for b, (lo, hi) in enumerate(zip(starts, stops)):
        keep = np.arange(lo, hi)
        keep = keep[clean[keep]] if clean[keep].sum() >= _MIN_BINS // 2 else keep
        band_of_bin[keep] = b
        sizes[b] = keep.size
    return band_of_bin, sizes


def _line_bins(fs: float, n_frame: int) -> tuple:
    """Bins of the mains frequencies with room below Nyquist, the offsets of their noise bins
    (1.5-6 Hz away on both sides) and how many bins around them are kept."""
    df = fs / n_frame
    lo, hi = int(round(_NOISE_HZ[0] / df)), int(round(_NOISE_HZ[1] / df))
    reach = max(hi, int(round(_NEAR_HZ / df)))
    lines = {f0: int(round(f0 / df)) for f0 in _LINES_HZ if int(round(f0 / df)) + reach < n_frame // 2}
    offsets = np.concatenate((np.arange(-hi, -lo + 1), np.arange(lo, hi + 1))).astype(np.int64)
    return lines, offsets, reach


class _Frames:
    """Spectral summaries of consecutive 2-s Hann frames of a signal.

    Attributes
    ----------
    usable : (n_frames,) bool
        At least 90 % of the frame's samples are present.
    alive : (n_channels, n_frames) bool
        The channel's RMS in the frame is at least 0.2 uV (not flat or railed).
    bands : (n_channels, n_frames, n_bands) float64
        Log of the mean periodogram bin of the reference band and of each top band (mains bins
        left out).
    phasor, noise, near : dict by mains frequency
        (n_channels, n_frames) complex phasor of the line bin in uV (amplitude and phase);
        (n_channels, n_frames) mean power of the noise in that bin in uV^2; (n_channels,
        n_frames, n_near) periodogram around the line.
    """

    def __init__(self, x: np.ndarray, ok: np.ndarray, fs: float):
        n_frame = _frame_len(fs)
        n_channels, n = x.shape
        n_frames = n // n_frame
        used = n_frames * n_frame
        present = ok[:used].reshape(n_frames, n_frame)
        count = np.count_nonzero(present, axis=1)
        self.usable = count >= _MIN_VALID * n_frame
        partial = count < n_frame
        taper = np.hanning(n_frame).astype(np.float32)
        gain = 2.0 / float(taper.sum())  # periodogram bin -> amplitude of a sinusoid in that bin
        # bridged gaps carry neither line nor noise: scale both back to the whole frame
        coverage = np.ones(n_frames)
        coverage[partial] = float(taper.sum()) / np.maximum(present[partial] @ taper.astype(np.float64), 1e-9)
        band_of_bin, sizes = _band_bins(fs, n_frame)
        lines, offsets, reach = _line_bins(fs, n_frame)
        line_bins = np.array(list(lines.values()), dtype=np.int64)
        # expected median of K unit exponentials (order statistics), to turn the median into a mean
        k = offsets.size
        unbias = 0.5 * sum(1.0 / j for h in ((k - 1) // 2, k // 2) for j in range(k - h, k + 1))
        # Parseval: a frame of RMS r has a one-sided periodogram summing to about r^2 * 3 N^2 / 16
        dead_power = _DEAD_UV ** 2 * 3.0 * n_frame ** 2 / 16.0
        self.bands = np.zeros((n_channels, n_frames, sizes.size))
        n_lines = line_bins.size
        power = np.zeros((n_channels, n_frames))
        phasor = np.zeros((n_channels, n_frames, n_lines), dtype=np.complex128)
        noise = np.zeros((n_channels, n_frames, n_lines))
        near = np.zeros((n_channels, n_frames, n_lines, 2 * reach + 1), dtype=np.float32)
        chunk = 256  # frames per batch: small enough for the caches
        for c in range(n_channels):
            for a in range(0, n_frames, chunk):
                b = min(n_frames, a + chunk)
                span = slice(a * n_frame, b * n_frame)
                frames = tapered_frames(x[c, span], ok[span], taper)
                spec = sp_fft.rfft(frames, axis=1)
                (self.bands[c, a:b], power[c, a:b], phasor[c, a:b], noise[c, a:b],
                 near[c, a:b]) = spectral_summaries(spec, band_of_bin, sizes.size, line_bins, offsets, reach)
                noise[c, a:b] /= unbias
                holes = np.flatnonzero(partial[a:b])
                if holes.size:
                    # what the bridged samples put into a line's bin is not the line: an error of
                    # that size is added to the frame's noise
                    noise[c, a + holes] += np.abs(gap_parts(frames[holes], present[a + holes], line_bins)) ** 2
        np.log(self.bands, out=self.bands)
        self.alive = power >= dead_power
        scale = gain * coverage[None, :, None]
        phasor *= scale
        noise *= scale ** 2
        self.phasor = {f0: phasor[:, :, i] for i, f0 in enumerate(lines)}
        self.noise = {f0: noise[:, :, i] for i, f0 in enumerate(lines)}
        self.near = {f0: near[:, :, i] for i, f0 in enumerate(lines)}
        self.band_sizes = sizes
        self.band_hz = _band_edges(fs, n_frame)[0] * fs / n_frame
        self.line_hz = {f0: np.arange(k0 - reach, k0 + reach + 1) * fs / n_frame for f0, k0 in lines.items()}
        # the median of K Hann-windowed bins (neighbours correlate by 2/3 in amplitude) is taken
        # as a noise estimate with K/2 degrees of freedom (a mean of them would carry about K)
        self.noise_dof = float(offsets.size) / 2.0
        self.fs = fs
        self.n_frame = n_frame

    @property
    def n_frames(self) -> int:
        return self.usable.size

    @property
    def seconds(self) -> float:
        """Length of a frame in s."""
        return self.n_frame / self.fs


def _local_reference(values: np.ndarray, use: np.ndarray, q: float) -> np.ndarray:
    """Per frame, the median over the +-5 neighbouring 1-min blocks of each block's ``q``-quantile.

    ``values`` (n_rows, n_frames), ``use`` (n_rows, n_frames); returns (n_rows, n_frames), NaN
    where no block nearby has a used frame.
    """
    n_rows, n_frames = values.shape
    n_blocks = -(-n_frames // _BLOCK_FRAMES)
    pad = n_blocks * _BLOCK_FRAMES - n_frames
    v = np.concatenate((values, np.zeros((n_rows, pad))), axis=1).reshape(n_rows, n_blocks, _BLOCK_FRAMES)
    u = np.concatenate((use, np.zeros((n_rows, pad), dtype=bool)), axis=1).reshape(v.shape)
    block = _quantiles(v, u, (q,))[..., 0]  # (n_rows, n_blocks)
    k = _LOCAL_BLOCKS
    padded = np.concatenate((np.full((n_rows, k), np.nan), block, np.full((n_rows, k), np.nan)), axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1, axis=1)
    pooled = _quantiles(windows, np.isfinite(windows), (0.5,))[..., 0]
    return np.repeat(pooled, _BLOCK_FRAMES, axis=1)[:, :n_frames]


def _spread_frames(n_frames: int) -> np.ndarray:
    """Evenly spread frame indices for night-wide quantiles."""
    return np.linspace(0, n_frames - 1, min(n_frames, _QUANTILE_FRAMES)).astype(np.int64)


# ------------------------------------------------------------------------------------- mains line

def _line_channels(z: np.ndarray, v: np.ndarray, use: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Channels (rows) carrying a steady line: the power of its 1-min block means (after removing a
    steady phase advance), a median over blocks, is at least :data:`_LINE_SNR` times the median
    noise power in the line bin. Noise alone gives about 1/30 of it, and a line whose phase
    wanders (a mains residue under a notch filter) averages out. The bar is high on purpose: only
    a line 14 dB over its bin's noise has a phase known to about 0.14 rad in every frame; a
    weaker one (a residue of a few hundredths of a uV on a notch-filtered record) wanders with
    the background around it and carries no evidence."""
    zd = z * np.exp(-1j * _derotate(z, use, frame)[:, None] * frame[None, :])
    n_rows, n = z.shape
    n_blocks = max(1, n // _BLOCK_FRAMES)
    cut = n_blocks * _BLOCK_FRAMES if n >= _BLOCK_FRAMES else n
    w = use[:, :cut].reshape(n_rows, n_blocks, -1)
    zb = np.where(w, zd[:, :cut].reshape(w.shape), 0.0).sum(axis=2) / np.maximum(w.sum(axis=2), 1)
    steady = _quantiles(np.abs(zb) ** 2, w.sum(axis=2) >= w.shape[2] // 2, (0.5,))[:, 0]
    noise = _quantiles(v, use, (0.5,))[:, 0]
    return np.flatnonzero(np.nan_to_num(steady / np.maximum(noise, 1e-30)) >= _LINE_SNR)


def _pick_line(phasor: dict, noise: dict, use: np.ndarray, frame: np.ndarray):
    """The mains frequency carried by the most channels, and those channels (None if no line)."""
    best = None
    for f0, z in phasor.items():
        lines = _line_channels(z, noise[f0], use, frame)
        if lines.size and (best is None or lines.size > best[1].size):
            best = (f0, lines)
    return best


def _derotate(z: np.ndarray, use: np.ndarray, frame: np.ndarray, lags=(1, 30, 300)) -> np.ndarray:
    """Per-row phase advance per frame of a line whose frequency is a little off its bin (mains or
    sampling clock off nominal). The median phase step between frames ``lag`` apart (a median, so
    the jumps at a tampered stretch's ends do not bias it) is refined over longer and longer lags,
    so its error does not pile up over a night. ``z`` and ``use`` are (n_rows, n_frames)."""
    advance = np.zeros(z.shape[0])
    for lag in lags:
        if lag >= z.shape[1]:
            break
        zd = z * np.exp(-1j * advance[:, None] * frame[None, :])
        both = use[:, lag:] & use[:, :-lag]
        step = np.angle(zd[:, lag:] * np.conj(zd[:, :-lag]))
        advance += np.nan_to_num(_quantiles(step, both, (0.5,))[:, 0]) / lag
    return advance


def _wander(deviation: np.ndarray, noise: np.ndarray, use: np.ndarray, noise_dof: float) -> np.ndarray:
    """How much a real line wanders on its own, per row, in the units of ``noise`` (>= 0).

    A frame's squared departure is its bin noise plus the line's own wander, independent of it (a
    beat with an aliased harmonic a fraction of a Hz away, a drifting mains residue), so under the
    null ``deviation / (noise + wander)`` should be no larger than F(2, dof). ``wander`` is the
    least value for which neither the median nor the 90th percentile of that ratio over the frames
    exceeds the distribution's: the larger of the p-quantiles of ``deviation / F_p - noise`` for p
    = 0.5 and 0.9. The median matters for a beat (a departure of the same size in every frame), the
    90th percentile for a random wander. Adding it (rather than scaling the noise) keeps frames
    whose bin happens to be quiet from passing a wander of the usual size as a change."""
    wander = np.zeros(deviation.shape[0])
    for p in (0.5, 0.9):
        excess = _quantiles(deviation / special.fdtri(2.0, max(noise_dof, 1.0), p) - noise, use, (p,))[:, 0]
        wander = np.maximum(wander, np.nan_to_num(excess, nan=0.0))
    return wander


def _mains(frames: _Frames) -> dict | None:
    """The mains phasor of each channel with a line against its local reference.

    Returns None without a line; else ``f0``, ``channels`` and, per line channel and frame,
    ``phasor`` (derotated), ``reference``, ``use``, and ``deviation`` (squared distance from the
    reference) and ``noise`` (its expected value under the null: the bin's noise plus the line's
    own wander, :func:`_wander`), both in units of the channel's typical noise.
    """
    use = frames.usable[None, :] & frames.alive
    frame = np.arange(frames.n_frames)
    picked = _pick_line(frames.phasor, frames.noise, use, frame)
    if picked is None:
        return None
    f0, lines = picked
    z, v, u = frames.phasor[f0][lines], frames.noise[f0][lines], use[lines]
    z = z * np.exp(-1j * _derotate(z, u, frame)[:, None] * frame[None, :])
    reference = _local_reference(z.real, u, 0.5) + 1j * _local_reference(z.imag, u, 0.5)
    deviation = np.abs(z - reference) ** 2
    ok = u & np.isfinite(deviation) & (v > 0)
    scale = np.maximum(np.nan_to_num(_quantiles(v, ok, (0.5,))[:, 0], nan=1.0), 1e-30)[:, None]
    expected = v + _wander(deviation, v, ok, frames.noise_dof)[:, None]
    return {"f0": f0, "channels": lines, "phasor": z, "reference": reference, "use": ok,
            "deviation": np.where(ok, deviation / scale, 0.0), "noise": np.where(ok, expected / scale, 0.0)}


def _channel_means(deviation: np.ndarray, noise: np.ndarray, use: np.ndarray) -> tuple:
    """Per frame, the mean over usable line channels of the deviation and of the noise, and
    whether any channel was usable. Channels share noise (muscle, movement), so a frame counts as
    one observation however many channels carry the line: conservative when they are independent."""
    n = use.sum(axis=0)
    k = np.maximum(n, 1)
    return deviation.sum(axis=0) / k, noise.sum(axis=0) / k, (n > 0).astype(np.float64)


def _f_log_p(deviation, noise, count, noise_dof: float):
    """-log10 p of the F test of a phasor's departure: 2 degrees of freedom per frame in the
    numerator, ``noise_dof`` in the noise estimate (scalars or arrays; 0 where ``count`` is 0)."""
    count = np.asarray(count, dtype=np.float64)
    ratio = np.asarray(deviation, dtype=np.float64) / np.maximum(noise, 1e-30)
    k = np.maximum(count, 1.0)
    with np.errstate(divide="ignore"):  # a tail probability that underflows to 0 gives -log10 p = inf
        log_p = np.where(count > 0, -np.log(special.fdtrc(2.0 * k, noise_dof * k, ratio)) / np.log(10.0), 0.0)
    return float(log_p) if log_p.ndim == 0 else log_p


def _describe_mains(f0, spectrum, freqs, df, inside, before, seconds, log_p) -> str:
    """A moved line (warp: where it went) or a new phasor (splice: amplitude and phase), in words."""
    bound = f"p < 1e-{int(min(log_p, 300))}"
    if np.isfinite(spectrum).any():
        peak = float(freqs[int(np.nanargmax(spectrum))])
        if abs(peak - f0) > 1.5 * df:
            return (f"mains line at {peak:.1f} Hz instead of {f0:.0f} Hz for {seconds:.0f} s "
                    f"(signal played x{peak / f0:.3f}), {bound}")
    change = np.abs(inside - before)
    if not np.isfinite(change).any():
        return f"mains phasor ({f0:.0f} Hz) departs from its reference for {seconds:.0f} s, {bound}"
    c = int(np.nanargmax(change))
    turn = np.degrees(np.angle(inside[c] / before[c]))
    return (f"mains phasor ({f0:.0f} Hz) changed from {abs(before[c]):.2f} to {abs(inside[c]):.2f} uV, "
            f"phase {turn:+.0f} deg, for {seconds:.0f} s, {bound}")


def _mains_events(frames: _Frames) -> list:
    m = _mains(frames)
    if m is None:
        return []
    n, dof, f0, lines = frames.n_frames, frames.noise_dof, m["f0"], m["channels"]
    alarm = -np.log10(ALPHA / (n * _N_WINDOWS))
    deviation, noise, count = _channel_means(m["deviation"], m["noise"], m["use"])
    events = []
    clear = _f_log_p(deviation, noise, count, dof) > 2.0
    for a, b in _candidate_runs(deviation > 2.0 * noise):
        log_p = _f_log_p(deviation[a:b].sum(), noise[a:b].sum(), count[a:b].sum(), dof)
        if log_p <= alarm:
            continue
        a, b = _trim(a, b, clear)
        use = m["use"][:, a:b]
        with np.errstate(all="ignore"):
            spectrum = np.nanmean(np.where(use[..., None], frames.near[f0][lines, a:b], np.nan), axis=(0, 1))
            inside = np.nanmean(np.where(use, m["phasor"][:, a:b], np.nan), axis=1)
            before = np.nanmean(np.where(use, m["reference"][:, a:b], np.nan), axis=1)
        text = _describe_mains(f0, spectrum, frames.line_hz[f0], 1.0 / FRAME_S, inside, before,
                               (b - a) * frames.seconds, log_p)
        events.append(AdjustmentEvent(a * frames.seconds, (b - a) * frames.seconds, "tampering",
                                      _score(log_p, alarm), text, tuple(int(c) for c in lines)))
    return events


# ------------------------------------------------------------------------------------- floor holes

def _floors(y: np.ndarray, use: np.ndarray, sampling: np.ndarray, local: np.ndarray | None) -> dict:
    """The floor (lowest decile) and spread of each band and of each band-to-band contrast (with the
    band below, ``c``, and with the one below that, ``c2``).

    ``y`` is (n_channels, n_frames, n_bands) log band power, ``use`` (n_channels, n_frames),
    ``sampling`` the log-median's sampling SD per band; ``local`` an optional (n_channels, n_frames,
    n_bands) local floor (the floor is the lower of the two). The spread is that of the lowest
    decile to the 30th percentile, as a normal SD (never below the sampling SD).
    """
    pick = _spread_frames(y.shape[1])
    ys, us = y[:, pick].transpose(0, 2, 1), use[:, pick][:, None, :]
    q = _quantiles(ys, us, (0.1, 0.3))  # (channels, bands, 2)
    floor = q[None, ..., 0].transpose(1, 0, 2) if local is None else np.fmin(q[:, None, :, 0], local)
    out = {"floor": floor, "spread": np.maximum(sampling, (q[..., 1] - q[..., 0]) / 0.757)[:, None, :]}
    for name, step in (("c", 1), ("c2", 2)):  # contrasts with the band below and the one below that
        contrast = ys[:, step:] - ys[:, :-step]
        cq = _quantiles(contrast, us, (0.1, 0.3))
        c_sampling = np.sqrt(sampling[step:] ** 2 + sampling[:-step] ** 2)
        out[f"{name}floor"] = cq[:, None, :, 0]
        out[f"{name}spread"] = np.maximum(c_sampling, (cq[..., 1] - cq[..., 0]) / 0.757)[:, None, :]
    return out


def _deficits(y: np.ndarray, use: np.ndarray, f: dict) -> tuple:
    """Per frame: each top band's deficit below its floor and each contrast's below its floor, in
    spreads (0 where the frame is not analysable; the contrasts with the band below, then those
    with the band two below), whether the frame is analysable, and the depth in dB of each top
    band under its floor (see :func:`band_deficits`)."""
    n_ch, _, nb = y.shape

    def arr(a, frames):
        return np.ascontiguousarray(np.broadcast_to(a, (n_ch, frames, a.shape[-1])), dtype=np.float64)

    floor = f["floor"]
    n1, n2 = max(nb - 1, 0), max(nb - 2, 0)
    out = (np.empty((n_ch, y.shape[1], n1)), np.empty((n_ch, y.shape[1], n1 + n2)),
           np.empty((n_ch, y.shape[1]), dtype=bool), np.empty((n_ch, y.shape[1], n1)))
    band_deficits(np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(use),
                  arr(floor, floor.shape[1]), arr(f["spread"], 1), arr(f["cfloor"], 1),
                  arr(f["cspread"], 1), arr(f["c2floor"], 1), arr(f["c2spread"], 1), *out)
    return out


def _hole_z(deficit: np.ndarray, cliff: np.ndarray, depth_db: np.ndarray, good: np.ndarray) -> tuple:
    """z of the summed deficit of the most deficient top band over a stretch (frames on axis 0);
    returns (z, band).

    A band counts only where the spectrum also drops off a cliff at or below it: a significant
    deficit of a contrast between neighbouring top bands or between a top band and the one two
    below (a resampler's edge inside a band spreads the drop over two contrasts; a quieter muscle
    tone lowers them all together), or, for a hole over the whole top range, a mean depth of
    more than :data:`_DEEP_DB` under the floor (the bottom band, which is EEG, cannot serve as
    the cliff's top: stimulation and sleep move it). ``cliff`` holds the contrasts as
    :func:`_deficits` returns them.
    """
    n = good.sum()
    if n == 0:
        return 0.0, 0
    root = np.sqrt(n)
    level = deficit.sum(axis=0) / root
    n_top = deficit.shape[1]
    one = cliff[:, 1:n_top].sum(axis=0) / root  # band i+1 against band i, i >= 1
    two = np.full(one.size, -np.inf)
    two[1:] = cliff[:, n_top + 1:].sum(axis=0) / root  # band i+1 against band i-1, i >= 2
    drop = np.full(level.size, -np.inf)
    drop[1:] = np.maximum.accumulate(np.maximum(one, two))
    deep = depth_db[good].mean(axis=0) > _DEEP_DB
    z = np.where((drop > _CLIFF_Z) | deep, level, 0.0)
    band = int(np.argmax(z))
    return float(z[band]), band


def _describe_hole(depth_db: np.ndarray, band_hz: np.ndarray, band: int, seconds: float, z: float) -> str:
    """``depth_db`` mean depth (dB) of each top band under its floor over the stretch."""
    deep = np.flatnonzero(depth_db > 6.0)
    cut = band_hz[1:][deep[0]] if deep.size else band_hz[1:][band]
    return (f"no signal above {cut:.0f} Hz for {seconds:.0f} s: {depth_db.max():.0f} dB below the amplifier's "
            f"noise floor there (resampled signal), z = {z:.1f}")


def _hole_events(frames: _Frames) -> list:
    use = frames.usable[None, :] & frames.alive
    y = frames.bands
    n_channels, n, n_bands = y.shape
    sampling = np.sqrt(_LOG_LEVEL_VAR / frames.band_sizes)
    rows = y.transpose(0, 2, 1).reshape(n_channels * n_bands, n)  # every band of every channel at once
    local = _local_reference(rows, np.repeat(use, n_bands, axis=0), 0.1)
    local = local.reshape(n_channels, n_bands, n).transpose(0, 2, 1)
    deficit, cliff, good, depth = _deficits(y, use, _floors(y, use, sampling, local))
    z_alarm = -special.ndtri(ALPHA / (n * _N_WINDOWS * (n_bands - 1) * n_channels))
    alarm = _log_p_normal(z_alarm)
    events = []
    for c in range(n_channels):
        for a, b in _candidate_runs(deficit[c].max(axis=1) > 2.0):
            z, band = _hole_z(deficit[c, a:b], cliff[c, a:b], depth[c, a:b], good[c, a:b])
            if z <= z_alarm:
                continue
            a, b = _trim(a, b, deficit[c, :, band] > 2.33)
            log_p = _log_p_normal(z)
            text = _describe_hole(depth[c, a:b][good[c, a:b]].mean(axis=0), frames.band_hz, band,
                                  (b - a) * frames.seconds, z)
            events.append(AdjustmentEvent(a * frames.seconds, (b - a) * frames.seconds, "tampering",
                                          _score(log_p, alarm), text, (c,)))
    return events


# ------------------------------------------------------------------------------------- grid

def quantisation_grid(values) -> tuple | None:
    """The quantisation grid a channel's samples sit on, if they sit on one.

    An ADC delivers integers; a recording stores ``offset + k * step`` uV (EDF's digital-to-physical
    map), printed or converted with far less error than a step, so in the central 80 % of the
    signal every level is taken again and again. Values taken more than once are the levels
    (a resampled or mixed stretch adds values that never repeat, so it cannot hide the grid); the
    step is their smallest common spacing, refined over the central range and then by least
    squares over every repeated value; the offset is the median residue.

    Parameters
    ----------
    values : array_like, shape (n,)
        Present samples of one channel in uV (at least a few thousand, spread over the recording).

    Returns
    -------
    (step, offset) in uV, or None: fewer than half of the central samples repeat a value
    (continuous, filtered or float-processed signal), the levels' spacings are not multiples of
    one step, or the step is within :data:`_GRID_FLOAT_ULPS` float32 ulps of the largest values
    (float round-off, not an ADC).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < _GRID_MIN_SAMPLES:
        return None
    lo, hi = np.percentile(v, (10.0, 90.0))
    central, counts = np.unique(v[(v >= lo) & (v <= hi)], return_counts=True)
    repeated = counts >= 2
    if repeated.sum() < 50 or counts[repeated].sum() < 0.5 * counts.sum():
        return None
    levels = central[repeated]
    spacing = np.diff(levels)
    step = float(np.percentile(spacing, 5.0))
    top = float(np.percentile(np.abs(v), 99.9))
    if not step > _GRID_FLOAT_ULPS * top * 2.0 ** -23:
        return None
    multiple = np.rint(spacing / step)
    near = np.abs(spacing / step - multiple) <= 0.1
    if near.mean() < _GRID_ON:
        return None
    step = float(spacing[near].sum() / multiple[near].sum())  # over the central range: about 1e-6 relative
    every, counts = np.unique(v, return_counts=True)
    on = every[counts >= 2]
    base = float(levels[levels.size // 2])
    k = np.rint((on - base) / step)
    if np.any(k != 0):
        step = float(np.sum((on - base) * k) / np.sum(k * k))  # over the whole range
    offset = base + float(np.median(on - base - step * np.rint((on - base) / step)))
    r = (on - offset) / step
    if (np.abs(r - np.rint(r)) <= _GRID_TOL).mean() < _GRID_ON:
        return None
    return step, offset


def _grid_sample(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """About :data:`_GRID_SAMPLES` present samples of a channel, in 64 stretches spread over it."""
    if x.size <= _GRID_SAMPLES:
        return x[ok]
    piece = _GRID_SAMPLES // 64
    starts = np.linspace(0, x.size - piece, 64).astype(np.int64)
    index = (starts[:, None] + np.arange(piece)[None, :]).ravel()
    return x[index[ok[index]]]


def _binomial_log_p(off, present, p0: float):
    """-log10 P(at least ``off`` of ``present`` samples off the grid | each is with probability
    ``p0``); scalars or arrays (0 where ``off`` is 0)."""
    off = np.asarray(off, dtype=np.float64)
    with np.errstate(divide="ignore"):  # a tail probability that underflows to 0 gives -log10 p = inf
        log_p = np.where(off > 0, -np.log(special.bdtrc(off - 1, present, p0)) / np.log(10.0), 0.0)
    return float(log_p) if log_p.ndim == 0 else log_p


def _describe_grid(off: int, present: int, step: float, seconds: float, log_p: float) -> str:
    return (f"{off} of {present} samples ({off / max(present, 1):.0%}) off the recording's {step:.4g}-uV "
            f"quantisation grid for {seconds:.0f} s (resampled, mixed or synthesised signal), "
            f"p < 1e-{int(min(log_p, 300))}")


def _grid_events(x: np.ndarray, ok: np.ndarray, fs: float) -> list:
    """Stretches whose samples left the grid the rest of the channel sits on.

    Under the null every sample of an untouched recording is on its grid, up to a background rate
    of stray values (the share off it outside candidate stretches, at least
    :data:`_GRID_BACKGROUND`); a stretch's count of off-grid samples is tested against that
    binomial at a family-wise :data:`ALPHA` (Bonferroni over frames, window lengths and channels).
    Frames with fewer than half their samples present and changing (flat, railed, gaps) are not
    analysed.
    """
    n_frame = _frame_len(fs)
    grids = [quantisation_grid(_grid_sample(x[c], ok)) for c in range(x.shape[0])]
    gridded = [c for c, g in enumerate(grids) if g is not None]
    if not gridded:
        return []
    n_frames = x.shape[1] // n_frame
    alarm = -np.log10(ALPHA / (max(n_frames, 1) * _N_WINDOWS * len(gridded)))
    seconds = n_frame / fs
    events = []
    for c in gridded:
        step, offset = grids[c]
        off, present = off_grid_counts(x[c], ok, step, offset, _GRID_TOL * step, n_frame)
        analysable = present >= 0.5 * n_frame  # mostly present and changing (not flat or railed)
        off, present = np.where(analysable, off, 0), np.where(analysable, present, 0)
        share = off / np.maximum(present, 1)
        contributes = analysable & (share > 0.5)
        quiet = analysable & ~contributes
        p0 = max(_GRID_BACKGROUND, float(off[quiet].sum()) / max(float(present[quiet].sum()), 1.0))
        clear = _binomial_log_p(off, present, p0) > 2.0
        for a, b in _candidate_runs(contributes):
            k, n = int(off[a:b].sum()), int(present[a:b].sum())
            log_p = _binomial_log_p(k, n, p0)
            if log_p <= alarm:
                continue
            a, b = _trim(a, b, clear & contributes)
            k, n = int(off[a:b].sum()), int(present[a:b].sum())
            events.append(AdjustmentEvent(a * seconds, (b - a) * seconds, "tampering", _score(log_p, alarm),
                                          _describe_grid(k, n, step, (b - a) * seconds, log_p), (c,)))
    return events


# ------------------------------------------------------------------------------------- offline

def detect_tampering(data, fs: float, *, valid=None) -> list:
    """Find replayed, spliced and time-warped stretches of a recording (see the module docstring).

    Parameters
    ----------
    data : array_like, shape (n_channels, n_samples) or (n_samples,)
        Electrode signals (EEG, EOG, EMG) in uV at one rate; NaN marks missing samples.
    fs : float
        Sample rate in Hz (>= 50).
    valid : array_like of bool, shape (n_samples,), optional
        False where samples are missing (packet loss written as 0).

    Returns
    -------
    list of AdjustmentEvent
        Kind ``"tampering"``, sorted by onset (s from the first sample), overlapping findings
        merged; ``evidence`` says what was found (where a copy comes from, how the mains line
        changed, where the spectrum has a hole).
    """
    fs = _check_rate(fs)
    x, ok = as_detector_input(data, valid)
    events = [_copy_event(a, b, lag, fs, x.shape[0]) for a, b, lag in _find_copies(x, ok, fs)]
    events += _grid_events(x, ok, fs)
    frames = _Frames(x, ok, fs)
    if frames.n_frames >= _MIN_FRAMES:
        events += _mains_events(frames) + _hole_events(frames)
    return _merge(events)


# ------------------------------------------------------------------------------------- live

_LIVE_WINDOWS = (2, 3, 4, 5)  # trailing windows in frames (4-10 s)
_HISTORY_FRAMES = 1800  # 1 h of band levels for the noise floors
_RECENT_FRAMES = 300  # 10 min: the line's phase advance and the local floors
_REFERENCE_FRAMES = 60  # 2 min: the mains phasor's reference
_GUARD_FRAMES = 16  # the newest frames never enter a reference (they are what is tested)
_REFRESH_FRAMES = 30  # references are recomputed every minute, frozen while an alarm is open
_WARMUP_FRAMES = 30  # 1 min of history before floor holes are judged
_NIGHT_FRAMES = 8 * 3600 / FRAME_S  # frames of an 8-h night, for the live multiple-comparison count
_CLOSE_FRAMES = 3  # an alarm's stretch ends after this many frames without evidence
_GRID_WARMUP_FRAMES = 60  # 2 min of samples to learn the quantisation grid (again after each failure)


class _Ring:
    """The last ``size`` items of a per-frame quantity, read back oldest first."""

    def __init__(self, size: int, shape: tuple, dtype):
        self.data = np.zeros((size,) + tuple(shape), dtype=dtype)
        self.count = 0

    def add(self, item) -> None:
        self.data[self.count % len(self.data)] = item
        self.count += 1

    def last(self, n: int, skip: int = 0) -> np.ndarray:
        """Up to ``n`` items, leaving out the newest ``skip``, oldest first."""
        stop = self.count - skip
        n = max(0, min(n, stop, len(self.data) - skip))
        return self.data[np.arange(stop - n, stop) % len(self.data)]


class _Alarm:
    """An open live alarm: first frame, last frame with evidence, clean frames since, its index in ``events``."""

    def __init__(self, first: int, index: int):
        self.first, self.last, self.index, self.clean = first, first, index, 0


class TamperingMonitor:
    """Causal tampering detection on a stream, block by block (see the module docstring).

    Each new anchor's fingerprint is looked up in a hash table of all earlier ones (about 8
    entries per second of signal: the only state that grows with the recording); a copy raises an
    alarm once 2 s of it match. The mains phasor and the band levels of each 2-s frame are tested
    against references from the past (the last 2 min for the line's phasor, 10 min for its phase
    advance and the local floor, 1 h for the night's floor; never the newest 32 s) over trailing
    windows of 4 to 10 s, at a family-wise :data:`ALPHA` per 8-h night. References are recomputed
    every minute, frozen while an alarm is open, and never include frames under an alarm. The
    mains line is judged after 2 min of signal, floor holes after 1 min. The quantisation grid is
    learnt from the first 2 min (from the next 2 min again while none is found), with the share
    of stray values in them as the background rate; each frame's off-grid samples are then tested
    over the same trailing windows. Replays are looked for on the channel that changes most in
    the first block.

    Parameters
    ----------
    fs : float
        Sample rate in Hz (>= 50).
    n_channels : int
        Electrode channels in each block.

    Attributes
    ----------
    events : list of AdjustmentEvent
        Every alarm raised so far, in the order raised. While an alarm's evidence continues its
        entry is replaced by a longer one with the same onset, so it ends up covering the stretch.
    """

    def __init__(self, fs: float, n_channels: int):
        self.fs = _check_rate(fs)
        self.n_channels = int(n_channels)
        self.events: list = []
        self._n = 0
        # replays
        self._spacing, self._block = _replay_settings(self.fs)
        self._index: dict = {}
        self._tail = (np.zeros(0, np.uint64), np.zeros(0, bool), np.zeros(0, bool))
        self._previous = None
        self._copies: dict = {}
        # frames
        self._n_frame = _frame_len(self.fs)
        self._pending = np.zeros((self.n_channels, 0))
        self._pending_ok = np.zeros(0, dtype=bool)
        self._frame = 0
        probe = _Frames(np.zeros((self.n_channels, self._n_frame)), np.ones(self._n_frame, bool), self.fs)
        self._probe = probe
        c, nb, w = self.n_channels, probe.bands.shape[2], _LIVE_WINDOWS[-1]
        self._use = _Ring(_HISTORY_FRAMES, (c,), bool)
        self._bands = _Ring(_HISTORY_FRAMES, (c, nb), np.float64)
        self._phasor = {f0: _Ring(_RECENT_FRAMES, (c,), np.complex128) for f0 in probe.phasor}
        self._noise = {f0: _Ring(_RECENT_FRAMES, (c,), np.float64) for f0 in probe.phasor}
        self._near = {f0: _Ring(w, (c, v.shape[2]), np.float32) for f0, v in probe.near.items()}
        self._mains_ref = None
        self._mains_recent = _Ring(w, (3,), np.float64)  # channel-mean deviation and noise, frame usable
        self._mains_z = _Ring(w, (c,), np.complex128)
        self._holes_ref = None
        self._holes_good = _Ring(w, (c,), bool)
        self._holes_deficit = _Ring(w, (c, nb - 1), np.float64)
        self._holes_cliff = _Ring(w, (c, 2 * nb - 3), np.float64)
        self._holes_depth = _Ring(w, (c, nb - 1), np.float64)
        self._open = {"mains": None, "holes": None, "grid": None}
        self._settled = {"mains": 0, "holes": 0, "grid": 0}  # first frame a new alarm's window may include
        # quantisation grid: learnt from the first 2 min (retried on the next 2 min while none is found)
        self._grid = None
        self._grid_values: list = []
        self._grid_counts = _Ring(w, (c, 2), np.int64)  # off-grid and present samples per channel
        self._grid_alarm = -np.log10(ALPHA / (_NIGHT_FRAMES * len(_LIVE_WINDOWS) * c))
        self._mains_alarm = -np.log10(ALPHA / (_NIGHT_FRAMES * len(_LIVE_WINDOWS)))
        self._hole_z = float(-special.ndtri(ALPHA / (_NIGHT_FRAMES * len(_LIVE_WINDOWS) * (nb - 1) * c)))

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
            Alarms raised by this block (onsets in s from the first pushed sample), by onset.
        """
        x, ok = as_detector_input(block, valid)
        if x.shape[0] != self.n_channels:
            raise ValueError(f"expected {self.n_channels} channels, got {x.shape[0]}")
        if x.shape[1] == 0:
            return []
        raised = self._push_replay(x, ok)
        self._n += x.shape[1]
        self._pending = np.concatenate((self._pending, x), axis=1)
        self._pending_ok = np.concatenate((self._pending_ok, ok))
        whole = (self._pending.shape[1] // self._n_frame) * self._n_frame
        if whole:
            raised += self._push_frames(self._pending[:, :whole], self._pending_ok[:whole])
            self._pending, self._pending_ok = self._pending[:, whole:], self._pending_ok[whole:]
        return sorted(raised, key=lambda e: e.onset)

    # -- replays

    def _push_replay(self, x: np.ndarray, ok: np.ndarray) -> list:
        if self._previous is None:
            self._channel = _liveliest(x, ok)
        signal = x[self._channel]
        hashes, changed = sample_hashes(signal)
        if self._previous is not None:
            changed[0] = _level(signal[0]) != self._previous
        self._previous = _level(signal[-1])
        tail_h, tail_ok, tail_changed = self._tail
        h = np.concatenate((tail_h, hashes))
        good = np.concatenate((tail_ok, ok))
        moved = np.concatenate((tail_changed, changed))
        base = self._n - tail_h.size
        positions, fingerprints = anchor_fingerprints(h, good, moved, self._spacing, self._block, self._block // 2)
        keep = max(0, h.size - self._block + 1)  # anchors from here on have no complete block yet
        self._tail = (h[keep:], good[keep:], moved[keep:])
        raised = []
        for position, fingerprint in zip((positions + base).tolist(), fingerprints.tolist()):
            source = self._index.setdefault(fingerprint, position)
            if position - source >= self._block:
                raised += self._note_copy(position - source, position)
        now = self._n + x.shape[1]
        for lag in [lag for lag, run in self._copies.items() if now - run["last"] > 10 * MIN_COPY_S * self.fs]:
            del self._copies[lag]  # runs that ended long ago
        return raised

    def _note_copy(self, lag: int, position: int) -> list:
        run = self._copies.get(lag)
        if run is None or position - run["last"] > MIN_COPY_S * self.fs:
            run = {"count": 0, "first": position, "last": position, "event": None}
            self._copies[lag] = run
        run["count"] += 1
        run["last"] = position
        event = _copy_event(run["first"], position + self._block, lag, self.fs, self.n_channels)
        if run["event"] is not None:
            self.events[run["event"]] = event
            return []
        if run["count"] >= _MIN_ANCHORS and event.duration >= MIN_COPY_S:
            run["event"] = len(self.events)
            self.events.append(event)
            return [event]
        return []

    # -- frames

    def _push_frames(self, x: np.ndarray, ok: np.ndarray) -> list:
        fr = _Frames(x, ok, self.fs)
        counts = self._learn_grid(x, ok)
        raised = []
        for j in range(fr.n_frames):
            use = fr.usable[j] & fr.alive[:, j]
            self._use.add(use)
            self._bands.add(fr.bands[:, j])
            for f0 in fr.phasor:
                self._phasor[f0].add(fr.phasor[f0][:, j])
                self._noise[f0].add(fr.noise[f0][:, j])
                self._near[f0].add(fr.near[f0][:, j])
            if self._frame % _REFRESH_FRAMES == 0:
                if self._open["mains"] is None:
                    self._mains_ref = self._mains_reference()
                if self._open["holes"] is None:
                    self._holes_ref = self._holes_reference()
            raised += self._mains_frame(fr, j, use)
            raised += self._holes_frame(fr, j, use)
            raised += self._grid_frame(counts[:, j])
            if any(alarm is not None for alarm in self._open.values()):
                # a frame under an open alarm never enters a reference
                self._use.data[(self._use.count - 1) % len(self._use.data)] = False
            self._frame += 1
        return raised

    def _raise(self, kind: str, first: int, text: str, log_p: float, alarm: float, channels) -> list:
        seconds = self._n_frame / self.fs
        event = AdjustmentEvent(first * seconds, (self._frame - first + 1) * seconds, "tampering",
                                _score(log_p, alarm), text, tuple(int(c) for c in channels))
        self._open[kind] = _Alarm(first, len(self.events))
        self._open[kind].last = self._frame
        self.events.append(event)
        return [event]

    def _follow(self, kind: str, contributes: bool) -> None:
        """Extend an open alarm while its evidence lasts; close it after a few frames without."""
        alarm = self._open[kind]
        if not contributes:
            alarm.clean += 1
            if alarm.clean >= _CLOSE_FRAMES:
                self._open[kind] = None
                self._settled[kind] = self._frame + 1  # later windows start after this alarm
            return
        alarm.last, alarm.clean = self._frame, 0
        old = self.events[alarm.index]
        seconds = self._n_frame / self.fs
        self.events[alarm.index] = AdjustmentEvent(old.onset, (alarm.last - alarm.first + 1) * seconds, old.kind,
                                                   old.score, old.evidence, old.channels)

    # -- mains line

    def _mains_reference(self) -> dict | None:
        n = _RECENT_FRAMES - _GUARD_FRAMES
        use = self._use.last(n, _GUARD_FRAMES).T
        if use.shape[1] < _REFRESH_FRAMES:
            return None
        z = {f0: ring.last(n, _GUARD_FRAMES).T for f0, ring in self._phasor.items()}
        v = {f0: ring.last(n, _GUARD_FRAMES).T for f0, ring in self._noise.items()}
        frame = self._use.count - _GUARD_FRAMES - use.shape[1] + np.arange(use.shape[1])
        picked = _pick_line(z, v, use, frame)
        if picked is None:
            return None
        f0, lines = picked
        zl, vl, ul = z[f0][lines], v[f0][lines], use[lines]
        advance = _derotate(zl, ul, frame, lags=(1, 30))
        # the reference is the last 2 min before the guard, so an error in the advance has little
        # time to turn the phasor before the frames it is compared with
        zd = (zl * np.exp(-1j * advance[:, None] * frame[None, :]))[:, -_REFERENCE_FRAMES:]
        ul, vl = ul[:, -_REFERENCE_FRAMES:], vl[:, -_REFERENCE_FRAMES:]
        reference = _quantiles(zd.real, ul, (0.5,))[:, 0] + 1j * _quantiles(zd.imag, ul, (0.5,))[:, 0]
        typical = np.nan_to_num(_quantiles(vl, ul, (0.5,))[:, 0], nan=1.0)
        wander = _wander(np.abs(zd - reference[:, None]) ** 2, vl, ul, self._probe.noise_dof)
        return {"f0": f0, "channels": lines, "advance": advance, "reference": reference,
                "scale": np.maximum(typical, 1e-30), "wander": wander}

    def _mains_frame(self, fr: _Frames, j: int, use: np.ndarray) -> list:
        ref = self._mains_ref
        if ref is None:
            self._mains_recent.add((0.0, 0.0, 0.0))
            self._mains_z.add(np.full(self.n_channels, np.nan, dtype=np.complex128))
            return []
        f0, lines = ref["f0"], ref["channels"]
        u = use[lines] & np.isfinite(ref["reference"])
        z = fr.phasor[f0][lines, j] * np.exp(-1j * ref["advance"] * self._frame)
        k = max(int(u.sum()), 1)
        deviation = float(np.where(u, np.abs(z - np.nan_to_num(ref["reference"])) ** 2 / ref["scale"], 0.0).sum()) / k
        noise = float(np.where(u, (fr.noise[f0][lines, j] + ref["wander"]) / ref["scale"], 0.0).sum()) / k
        self._mains_recent.add((deviation, noise, float(u.any())))
        row = np.full(self.n_channels, np.nan, dtype=np.complex128)
        row[lines] = np.where(u, z, np.nan)
        self._mains_z.add(row)
        if self._open["mains"] is not None:
            self._follow("mains", bool(u.any()) and deviation > 2.0 * noise)
            return []
        recent = self._mains_recent.last(_LIVE_WINDOWS[-1])
        for length in _LIVE_WINDOWS:
            if length > min(len(recent), self._frame + 1 - self._settled["mains"]):
                break
            d, v, k = recent[-length:].sum(axis=0)
            log_p = _f_log_p(d, v, k, self._probe.noise_dof)
            if log_p <= self._mains_alarm:
                continue
            window = recent[-length:]
            first = self._frame - length + 1 + int(np.argmax(window[:, 0] > 2.0 * window[:, 1]))
            with np.errstate(all="ignore"):
                spectrum = np.nanmean(self._near[f0].last(length)[:, lines], axis=(0, 1))
                inside = np.nanmean(self._mains_z.last(length)[:, lines], axis=0)
            text = _describe_mains(f0, spectrum, self._probe.line_hz[f0], 1.0 / FRAME_S, inside, ref["reference"],
                                   length * FRAME_S, log_p)
            return self._raise("mains", first, text, log_p, self._mains_alarm, lines)
        return []

    # -- floor holes

    def _holes_reference(self) -> dict | None:
        n = _HISTORY_FRAMES - _GUARD_FRAMES
        use = self._use.last(n, _GUARD_FRAMES).T
        if use.any(axis=0).sum() < _WARMUP_FRAMES:
            return None
        y = self._bands.last(n, _GUARD_FRAMES).transpose(1, 0, 2)
        recent = slice(max(0, y.shape[1] - _RECENT_FRAMES), None)
        local = _quantiles(y[:, recent].transpose(0, 2, 1), use[:, None, recent], (0.1,))[..., 0]
        sampling = np.sqrt(_LOG_LEVEL_VAR / self._probe.band_sizes)
        return _floors(y, use, sampling, local[:, None, :])

    def _holes_frame(self, fr: _Frames, j: int, use: np.ndarray) -> list:
        ref = self._holes_ref
        nb = fr.bands.shape[2]
        if ref is None:
            deficit = depth = np.zeros((self.n_channels, nb - 1))
            cliff = np.zeros((self.n_channels, 2 * nb - 3))
            good = np.zeros(self.n_channels, dtype=bool)
        else:
            deficit, cliff, good, depth = (a[:, 0] for a in _deficits(fr.bands[:, j:j + 1], use[:, None], ref))
        self._holes_good.add(good)
        self._holes_deficit.add(deficit)
        self._holes_cliff.add(cliff)
        self._holes_depth.add(depth)
        if ref is None:
            return []
        if self._open["holes"] is not None:
            self._follow("holes", bool((deficit > 2.0).any()))
            return []
        goods = self._holes_good.last(_LIVE_WINDOWS[-1])
        deficits = self._holes_deficit.last(_LIVE_WINDOWS[-1])
        cliffs = self._holes_cliff.last(_LIVE_WINDOWS[-1])
        for length in _LIVE_WINDOWS:
            if length > min(len(goods), self._frame + 1 - self._settled["holes"]):
                break
            for c in range(self.n_channels):
                g = goods[-length:, c]
                if g.sum() < 0.5 * length:
                    continue
                depths = self._holes_depth.last(length)[:, c]
                z, band = _hole_z(deficits[-length:, c], cliffs[-length:, c], depths, g)
                if z <= self._hole_z:
                    continue
                lead = int(np.argmax((deficits[-length:, c] > 2.0).any(axis=1)))
                first = self._frame - length + 1 + lead
                text = _describe_hole(depths[g].mean(axis=0), self._probe.band_hz, band, length * FRAME_S, z)
                return self._raise("holes", first, text, _log_p_normal(z), _log_p_normal(self._hole_z), (c,))
        return []

    # -- quantisation grid

    def _learn_grid(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Off-grid and present samples of each channel in each frame of ``x`` (n_channels,
        n_frames, 2); zeros until a grid is known. Learns the grid from the first 2 min."""
        n_frames = x.shape[1] // self._n_frame
        counts = np.zeros((self.n_channels, n_frames, 2), dtype=np.int64)
        if self._grid is None:
            self._grid_values.append((x[:, ok], ok.sum()))
            if sum(n for _, n in self._grid_values) >= _GRID_WARMUP_FRAMES * self._n_frame:
                values = np.concatenate([v for v, _ in self._grid_values], axis=1)
                self._grid_values = []
                grids = [quantisation_grid(values[c]) for c in range(self.n_channels)]
                if any(g is not None for g in grids):
                    # the background rate of stray values, from the learning stretch itself
                    background = []
                    for c, g in enumerate(grids):
                        if g is None:
                            background.append(0.0)
                            continue
                        r = (values[c] - g[1]) / g[0]
                        background.append(float(np.mean(np.abs(r - np.rint(r)) > _GRID_TOL)))
                    self._grid = (grids, [max(_GRID_BACKGROUND, b) for b in background])
            return counts
        grids, _ = self._grid
        for c, g in enumerate(grids):
            if g is not None:
                off, present = off_grid_counts(x[c], ok, g[0], g[1], _GRID_TOL * g[0], self._n_frame)
                analysable = present >= 0.5 * self._n_frame  # mostly present and changing
                counts[c, :, 0], counts[c, :, 1] = np.where(analysable, off, 0), np.where(analysable, present, 0)
        return counts

    def _grid_frame(self, counts: np.ndarray) -> list:
        self._grid_counts.add(counts)
        if self._grid is None:
            return []
        share = counts[:, 0] / np.maximum(counts[:, 1], 1)
        if self._open["grid"] is not None:
            self._follow("grid", bool((share > 0.5).any()))
            return []
        grids, background = self._grid
        recent = self._grid_counts.last(_LIVE_WINDOWS[-1])
        for length in _LIVE_WINDOWS:
            if length > min(len(recent), self._frame + 1 - self._settled["grid"]):
                break
            for c, g in enumerate(grids):
                window = recent[-length:, c]
                off, present = int(window[:, 0].sum()), int(window[:, 1].sum())
                if g is None or off <= 0.5 * present:
                    continue
                log_p = _binomial_log_p(off, present, background[c])
                if log_p <= self._grid_alarm:
                    continue
                lead = int(np.argmax(window[:, 0] > 0.5 * window[:, 1]))
                text = _describe_grid(off, present, g[0], length * FRAME_S, log_p)
                return self._raise("grid", self._frame - length + 1 + lead, text, log_p, self._grid_alarm, (c,))
        return []
