"""Auditory stimulation series (dsp.evoked): kernels against numpy/scipy, the rank-sum (global,
local, stratified) and folding nulls, gaps, the live monitor, and one real excerpt with injected cues."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

from dsp import evoked
from dsp.errors import SignalError
from dsp.events import AdjustmentEvent

FS = 100.0


# --------------------------------------------------------------------------------------------
# Kernels against references


def test_block_mean_matches_masked_reshape_mean():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1003)).astype(np.float32)
    valid = rng.random(1003) > 0.3
    x[1, 17] = np.nan  # a non-finite sample in any row drops that sample from every row
    valid[40:50] = False  # one block without a valid sample
    means, counts = evoked.block_mean(x, valid, 10)
    usable = valid & np.isfinite(x).all(axis=0)
    u = usable[:1000].reshape(100, 10)
    xs = np.where(usable, x, 0.0)[:, :1000].reshape(3, 100, 10)
    expected = xs.sum(axis=2) / np.maximum(u.sum(axis=1), 1)
    np.testing.assert_array_equal(counts, u.sum(axis=1))
    np.testing.assert_allclose(means, expected, rtol=1e-6, atol=1e-6)
    assert counts[4] == 0 and np.all(means[:, 4] == 0)


def test_binomial_halve_matches_reflected_convolution():
    x = np.random.default_rng(8).standard_normal((2, 101))
    padded = np.pad(x, ((0, 0), (2, 2)), mode="reflect")
    kernel = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    expected = np.stack([np.convolve(row, kernel, "valid") for row in padded])[:, ::2]
    np.testing.assert_allclose(evoked.binomial_halve(x), expected, atol=1e-12)


def test_fill_gaps_matches_np_interp():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(500)
    ok = rng.random(500) > 0.4
    ok[:5] = False
    ok[-7:] = False
    idx = np.arange(500)
    expected = np.interp(idx, idx[ok], x[ok])
    np.testing.assert_allclose(evoked.fill_gaps(x, ok), expected, atol=1e-12)


def _emulated_stimulator(slow, threshold, refractory):
    """The stimulator's loop written plainly (firmware_sim's closed loop without the clicks)."""
    out, i = [], 0
    while True:
        below = np.flatnonzero(slow[i:] < threshold)
        if below.size == 0:
            return np.array(out, dtype=np.int64)
        start = i + below[0]
        above = np.flatnonzero(slow[start:] >= threshold)
        stop = slow.size if above.size == 0 else start + above[0]
        out.append(start + int(np.argmin(slow[start:stop])))
        i = out[-1] + refractory


def test_emulate_triggers_matches_the_stimulator_loop():
    rng = np.random.default_rng(9)
    slow = signal.sosfiltfilt(signal.butter(2, 0.04, output="sos"), rng.standard_normal(20000))
    for threshold, refractory in ((-0.1, 1), (-0.2, 60), (-0.3, 400), (-10.0, 5)):
        expected = _emulated_stimulator(slow, threshold, refractory)
        np.testing.assert_array_equal(evoked.emulate_triggers(slow, threshold, refractory), expected)
    assert np.all(np.diff(evoked.emulate_triggers(slow, -0.1, 400)) >= 400)


def _stratum(times, values):
    """(times, ranks, order) of one stratum, as evoked._strata_ranks gives them."""
    from scipy import stats

    order = np.empty(values.size, dtype=np.int64)
    order[np.argsort(values)] = np.arange(values.size)
    return times, stats.rankdata(values), order


def test_average_ranks_are_scipys_rankdata_with_ties():
    from scipy import stats

    rng = np.random.default_rng(12)
    for x in (np.array([]), np.array([3.0]), rng.standard_normal(50), rng.integers(0, 4, 200).astype(float),
              np.zeros(7)):
        np.testing.assert_array_equal(evoked._average_ranks(x), stats.rankdata(x))


def test_dilate_is_a_maximum_filter_of_the_flags():
    rng = np.random.default_rng(13)
    for n, half in ((1, 1), (10, 2), (300, 5), (300, 400)):
        flags = rng.random(n) < 0.05
        flags[0] = n > 1 and rng.random() < 0.5  # edges held both ways
        expected = ndimage.maximum_filter1d(flags.view(np.uint8), 2 * half + 1).view(bool)
        np.testing.assert_array_equal(evoked._dilate(flags, half), expected)
    np.testing.assert_array_equal(evoked._dilate(np.zeros(5, dtype=bool), 3), np.zeros(5, dtype=bool))


def test_rank_sums_match_scipy_mannwhitneyu_and_add_up_over_strata():
    from scipy import stats

    rng = np.random.default_rng(10)
    times = np.arange(120.0)
    values = rng.standard_normal(120) + np.r_[np.zeros(90), 0.8 * np.ones(30)]
    starts, width = np.array([0.0, 40.0, 90.0]), 30.0  # sorted, as window_sums needs
    one = [_stratum(times, values)]
    log_p, n_in, reference = evoked._stratified_rank_sums(one, starts, width)
    for w, a in enumerate(starts):
        mask = (times >= a) & (times < a + width)
        ref = stats.mannwhitneyu(values[mask], values[~mask], alternative="greater", method="asymptotic").pvalue
        assert log_p[w] == pytest.approx(np.log(ref), rel=1e-6)
        assert n_in[w] == 30 and reference[w] == 90
    # a neighbourhood holding everything is the whole record; a smaller one, the triggers near the window
    np.testing.assert_allclose(evoked._stratified_rank_sums(one, starts, width, half=500.0)[0], log_p)
    log_p, n_in, reference = evoked._stratified_rank_sums(one, starts, width, half=40.0)
    for w, a in enumerate(starts):
        near = np.abs(times - (a + 15.0)) < 40.0
        near |= times == a + 15.0 - 40.0
        mask = (times >= a) & (times < a + width)
        ref = stats.mannwhitneyu(values[mask], values[near & ~mask], alternative="greater", method="asymptotic")
        assert log_p[w] == pytest.approx(np.log(ref.pvalue), rel=1e-6)
        assert n_in[w] == 30 and reference[w] == (near & ~mask).sum()
    # two strata: the Mann-Whitney statistics (minus their null means) and variances add up
    group = (np.arange(120) % 2).astype(bool)
    two = [_stratum(times[group], values[group]), _stratum(times[~group], values[~group])]
    log_p, n_in, reference = evoked._stratified_rank_sums(two, starts, width)
    for w, a in enumerate(starts):
        mask = (times >= a) & (times < a + width)
        excess = var = 0.0
        for g in (group, ~group):
            x, y = values[g & mask], values[g & ~mask]
            excess += stats.mannwhitneyu(x, y).statistic - 0.5 * x.size * y.size
            var += x.size * y.size * (g.sum() + 1) / 12.0
        assert log_p[w] == pytest.approx(stats.norm.logsf((excess - 0.5) / np.sqrt(var)), rel=1e-6)
        assert n_in[w] == 30 and reference[w] == 90


def test_matched_filters_match_np_correlate_over_block_scales():
    rng = np.random.default_rng(3)
    x, h = rng.standard_normal(300), rng.standard_normal(23)
    ok = rng.random(300) > 0.3
    ok[0] = ok[-1] = True  # the end terms of the whitened template
    scale_plain, scale_white = rng.uniform(0.5, 2.0, 60), rng.uniform(0.5, 2.0, 60)
    plain, white = evoked.matched_filters(x, h, ok, scale_plain, scale_white, 5)
    np.testing.assert_allclose(evoked.sliding_dot(x, h), np.r_[np.correlate(x, h, "full")[h.size - 1:], 0.0],
                               atol=1e-12)
    d = np.diff(h, prepend=0.0, append=0.0)
    w = (2 * h - np.concatenate([[0.0], h[:-1]]) - np.concatenate([h[1:], [0.0]])) / np.linalg.norm(d)
    for template, scale, out in ((h, scale_plain, plain), (w, scale_white, white)):
        expected = np.correlate(x, template, "full")[template.size - 1:][:300] / np.repeat(scale, 5)
        np.testing.assert_allclose(out, np.where(ok, expected, 0.0), atol=1e-12)


def test_block_power_matches_gradient_and_reduceat():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(103)
    bad = rng.random(103) > 0.8
    plain, deriv = evoked.block_power(x, bad, 8)
    for seen, out in ((x, plain), (np.gradient(x), deriv)):
        expected = np.add.reduceat(np.where(bad, 0.0, seen) ** 2, np.arange(0, 103, 8)) / 8
        np.testing.assert_allclose(out, expected, atol=1e-12)


def test_jitter_max_matches_maximum_filter_every_step():
    rng = np.random.default_rng(4)
    z0, z1 = rng.standard_normal((2, 777))
    usable = np.ones(777, dtype=bool)
    usable[300:320] = False
    best, clean = evoked.jitter_max(z0, z1, usable, 6, 4)
    expected = ndimage.maximum_filter1d(np.where(usable, np.maximum(z0, z1), -1e3), 13, mode="nearest")[::4]
    np.testing.assert_array_equal(best, expected)
    np.testing.assert_array_equal(clean, ~ndimage.maximum_filter1d(~usable, 13, mode="nearest")[::4])


def test_fold_blocks_match_add_at_and_best_fold():
    rng = np.random.default_rng(6)
    y = rng.standard_normal(610)
    ok = rng.random(610) > 0.2
    periods = np.array([6.0, 7.3, 9.99, 13.5])
    sums, counts = evoked.fold_blocks(y, ok, 1234, 150, periods)
    assert sums.shape == (4, 4, 14)
    for k in range(4):
        for p, period in enumerate(periods):
            i = np.arange(k * 150, (k + 1) * 150)
            bins = np.floor(np.mod(1234 + i, period)).astype(int)
            s, c = np.zeros(14), np.zeros(14)
            np.add.at(s, bins[ok[i]], y[i][ok[i]])
            np.add.at(c, bins[ok[i]], 1.0)
            np.testing.assert_allclose(sums[k, p], s, atol=1e-12)
            np.testing.assert_array_equal(counts[k, p], c)
    whole = evoked.fold_blocks(y, np.ones(610, dtype=bool), 1234, 150, periods)[1]  # counted without the mask
    for k in range(4):
        for p, period in enumerate(periods):
            bins = np.floor(np.mod(1234 + np.arange(k * 150, (k + 1) * 150), period)).astype(int)
            np.testing.assert_array_equal(whole[k, p], np.bincount(bins, minlength=14))
    z, p, b = evoked.best_folds(sums, counts, 2)
    assert z.shape == (3,)
    for k in range(3):  # windows of blocks k, k + 1
        s, c = sums[k:k + 2].sum(axis=0), counts[k:k + 2].sum(axis=0)
        ref = np.where(c >= 2, s / np.sqrt(np.maximum(c, 1)), -np.inf)
        assert z[k] == pytest.approx(ref.max()) and ref[p[k], b[k]] == pytest.approx(z[k])


def test_local_rank_sums_match_ranks_within_each_neighbourhood():
    rng = np.random.default_rng(17)
    times = np.sort(rng.uniform(0, 1000, 300))
    values = rng.standard_normal(300)
    order = np.empty(300, dtype=np.int64)
    order[np.argsort(values)] = np.arange(300)
    starts = np.arange(-20.0, 950.0, 12.5)
    sums, n_in, n_near = evoked.local_rank_sums(times, order, starts, 40.0, 150.0)
    for w, a in enumerate(starts):
        near = np.abs(times - (a + 20.0)) < 150.0
        near |= times == a + 20.0 - 150.0  # the neighbourhood is [c - half, c + half)
        inside = (times >= a) & (times < a + 40.0)
        ranks = np.argsort(np.argsort(values[near])) + 1.0
        assert n_near[w] == near.sum() and n_in[w] == inside.sum()
        assert sums[w] == pytest.approx(ranks[inside[near]].sum())


def test_window_sums_match_masks():
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 100, 60))
    values = rng.standard_normal(60)
    starts = np.arange(-5.0, 95.0, 7.5)
    sums, counts = evoked.window_sums(times, values, starts, 20.0)
    for w, a in enumerate(starts):
        inside = (times >= a) & (times < a + 20.0)
        assert counts[w] == inside.sum() and sums[w] == pytest.approx(values[inside].sum(), abs=1e-9)


# --------------------------------------------------------------------------------------------
# Detection on synthetic sleep-like EEG


def _background(seconds: float, seed: int) -> np.ndarray:
    """Slow-wave-rich 1/f-like EEG, about 25 uV RMS, one channel at FS."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * FS))
    pink = signal.sosfilt(signal.butter(1, 1.0, fs=FS, output="sos"), white) * 6 + white
    return signal.sosfiltfilt(signal.butter(2, [0.3, 30.0], "bandpass", fs=FS, output="sos"), pink) * 12


def _add_cues(x: np.ndarray, start: float, stop: float, n550_uv: float, seed: int) -> np.ndarray:
    """Open-loop cues every 5 +- 0.5 s between start and stop (s), each evoking the response."""
    rng = np.random.default_rng(seed)
    shape = evoked.response_template(FS)
    shape = shape / -shape.min()
    x = x.copy()
    t = start + rng.uniform(0, 5)
    while t + 2 < stop:
        i = int((t + rng.uniform(-0.5, 0.5)) * FS)
        x[i:i + shape.size] += n550_uv * rng.lognormal(0, 0.3) * shape
        t += 5.0
    return x


@pytest.fixture(scope="module")
def night():
    clean = _background(1800, seed=11)
    return clean, _add_cues(clean, 600, 1200, 35.0, seed=12)


def test_open_loop_series_found_and_clean_signal_quiet(night):
    clean, stimulated = night
    found = evoked.detect_auditory(stimulated, FS)
    assert len(found) == 1
    e = found[0]
    assert isinstance(e, AdjustmentEvent) and e.kind == "auditory" and e.overlaps(600, 1200)
    assert 450 <= e.onset <= 750 and e.end <= 1350
    assert 0.5 < e.score <= 1.0 and e.frequency_hz == pytest.approx(0.2, abs=0.01)
    assert "open loop" in e.evidence and "5.0" in e.evidence and "p < 1e-" in e.evidence
    assert evoked.detect_auditory(clean, FS) == []


def test_wake_epochs_are_not_analysed(night):
    _, stimulated = night
    awake = np.zeros(60, dtype=int)  # every epoch scored W: nothing is analysed
    assert evoked.detect_auditory(stimulated, FS, stages=awake) == []
    asleep = np.tile([2, 3, 4, 1], 15)  # any sleep stage is
    assert len(evoked.detect_auditory(stimulated, FS, stages=asleep)) == 1
    awake_then = np.where(np.arange(60) < 20, 0, 2)  # cues from epoch 20 on are still seen
    assert len(evoked.detect_auditory(stimulated, FS, stages=awake_then)) == 1


def test_gaps_written_as_zero_raise_nothing(night):
    clean, _ = night
    x = clean.copy()
    valid = np.ones(x.size, dtype=bool)
    for k in range(25):  # 2-s dropouts every 70 s: their edges are steps of tens of uV
        a = int((30 + 70 * k) * FS)
        x[a:a + int(2 * FS)] = 0.0
        valid[a:a + int(2 * FS)] = False
    assert evoked.detect_auditory(x, FS, valid=valid) == []
    assert evoked.detect_auditory(np.where(valid, x, np.nan), FS) == []


def _add_closed_loop(x: np.ndarray, start: float, stop: float, threshold: float, n550_uv: float, seed: int):
    """Ngo-style closed loop on ``x`` (one channel at FS): after each 0.5-2 Hz trough below
    ``threshold`` (uV) two clicks, 0.5 and 1.575 s later, then the stimulator's dead time."""
    rng = np.random.default_rng(seed)
    shape = evoked.response_template(FS)
    shape = shape / -shape.min()
    slow = signal.sosfiltfilt(signal.butter(2, [0.5, 2.0], "bandpass", fs=FS, output="sos"), x)
    a, b = int(start * FS), int(stop * FS)
    troughs = a + evoked.emulate_triggers(slow[a:b], threshold, int(evoked.REFRACTORY_S * FS))
    y = x.copy()
    for t in troughs[troughs + 5 * FS < b]:
        for click in (0.5, 0.5 + evoked.CLICK_INTERVAL_S):
            i = int(t + (click + rng.normal(0, 0.02)) * FS)
            y[i:i + shape.size] += n550_uv * rng.lognormal(0, 0.3) * shape
    return y, troughs.size


def _with_slow_oscillations(x: np.ndarray, seed: int) -> np.ndarray:
    """``x`` plus spontaneous slow oscillations (one 0.8-1.2 Hz cycle, down-state first, 40-120 uV)
    at random times, about one every 5 s, sometimes in trains of two or three."""
    rng = np.random.default_rng(seed)
    y = x.copy()
    t = 0.0
    while True:
        t += rng.exponential(5.0)
        f = rng.uniform(0.8, 1.2)
        cycles = int(rng.integers(1, 4))
        n = int(cycles * FS / f)
        i = int(t * FS)
        if i + n >= y.size:
            return y
        phase = 2 * np.pi * f * np.arange(n) / FS
        y[i:i + n] -= rng.uniform(40, 120) * np.sin(phase) * np.hanning(n) ** 0.3
        t += cycles / f


def test_closed_loop_series_found_against_the_other_triggers(night):
    clean, _ = night
    clean = _with_slow_oscillations(clean, seed=14)
    sd = 1.4826 * np.median(np.abs(signal.sosfiltfilt(signal.butter(2, [0.5, 2.0], "bandpass", fs=FS,
                                                                     output="sos"), clean)))
    stimulated, n = _add_closed_loop(clean, 600, 1200, -3.0 * sd, 40.0, seed=13)
    assert n >= 40
    found = evoked.detect_auditory(stimulated, FS)
    assert len(found) == 1 and found[0].overlaps(600, 1200) and 300 <= found[0].onset < 1000
    assert "closed loop" in found[0].evidence and "rank-sum" in found[0].evidence
    # a caller analysing the leads of a recording in groups corrects the alarm level for all of them
    assert evoked.detect_auditory(stimulated, FS, n_leads=1) == found
    stricter = evoked.detect_auditory(stimulated, FS, n_leads=16)
    assert len(stricter) == 1 and stricter[0].score < found[0].score
    assert evoked._log_alphas(16)[0] == pytest.approx(evoked._log_alphas(1)[0] - np.log(16))
    # the statistic compares the triggers inside a window with those outside: on clean data, where
    # nothing is stimulated, the p-values of all windows are no smaller than chance allows
    preps = evoked._prepare(*evoked.block_mean(clean[None, :], np.ones(clean.size, dtype=bool), 3), FS / 3, None)
    triggers = evoked._closed_loop_triggers(preps[0], 0)
    assert len(triggers) == len(evoked.DEPTHS_SD) and triggers[0].times.size > 100
    assert all(np.all(np.diff(tr.times) >= evoked.REFRACTORY_S - 0.1) for tr in triggers)
    assert evoked._closed_loop_tests(triggers, 0.0, clean.size / FS, np.log(1e-3)) == []


def test_monitor_flags_a_closed_loop_series_against_its_history(night):
    clean, _ = night
    clean = _with_slow_oscillations(clean, seed=14)
    sd = 1.4826 * np.median(np.abs(signal.sosfiltfilt(signal.butter(2, [0.5, 2.0], "bandpass", fs=FS,
                                                                     output="sos"), clean)))
    stream, _ = _add_closed_loop(clean, 1200, 1800, -3.0 * sd, 40.0, seed=13)
    monitor = evoked.AuditoryMonitor(FS, 1)
    step = int(FS)
    raised = [(e, (a + step) / FS) for a in range(0, stream.size, step) for e in monitor.push(stream[None, a:a + step])]
    assert len(raised) == 1
    event, when = raised[0]
    assert "closed loop" in event.evidence and event.overlaps(1200, 1800) and 1200 < when < 1800
    # the reference reaches back before the buffer, bounded by REFERENCE_S
    kept = [tr.times for tr in monitor._history.values()]
    assert kept and min(t.min() for t in kept) < 1800 - evoked.BUFFER_S
    assert max(t.max() - t.min() for t in kept) <= evoked.REFERENCE_S


def test_closed_loop_test_compares_triggers_within_a_stage_group():
    # an EOG lead: troughs in REM are eye movements, followed by less than slow oscillations in NREM;
    # a NREM stretch then outranks the night as a whole, but not the NREM elsewhere
    rng = np.random.default_rng(15)
    times = np.arange(0.0, 7200.0, 6.0)
    rem = (times >= 1800) & (times < 3600)
    score = rng.standard_normal(times.size) - 3.0 * rem
    stages = np.where((np.arange(240) >= 60) & (np.arange(240) < 120), 4, 2)
    stratum = evoked._stage_at(stages, times)
    np.testing.assert_array_equal(stratum, np.where(rem, 1, 0))
    assert np.all(evoked._stage_at(None, times) == 2)
    assert np.all(evoked._stage_at(stages, np.array([7300.0])) == 2)  # past the hypnogram: unknown
    pooled = evoked._Triggers(times, score, np.full(times.size, 2), np.zeros(times.size), 4.5, -40.0, 0)
    stratified = evoked._Triggers(times, score, stratum, np.zeros(times.size), 4.5, -40.0, 0)
    assert evoked._closed_loop_tests([pooled], 0.0, 7200.0, np.log(1e-4)) != []
    assert evoked._closed_loop_tests([stratified], 0.0, 7200.0, np.log(1e-4)) == []
    # and a real effect inside one window of NREM is still found
    lifted = score + 1.5 * ((times >= 5400) & (times < 6000))
    found = evoked._closed_loop_tests([evoked._Triggers(times, lifted, stratum, np.zeros(times.size), 4.5, -40.0, 0)],
                                      0.0, 7200.0, np.log(1e-4))
    assert found and all(w.start < 6000 and w.start + w.width > 5400 for w in found)


def test_closed_loop_reference_is_the_hour_around_the_window():
    # what follows a spontaneous trough drifts with sleep over the night (deeper, lighter): the
    # windows of a stretch at one end outrank the night as a whole, not the triggers around them
    rng = np.random.default_rng(16)
    times = np.arange(0.0, 8 * 3600.0, 6.0)
    drift = rng.standard_normal(times.size) + 2.0 * (times / times[-1]) ** 2
    tr = evoked._Triggers(times, drift, np.zeros(times.size, dtype=np.int64), np.zeros(times.size), 4.5, -40.0, 0)
    strata = evoked._strata_ranks(tr)
    starts = evoked._window_starts(0.0, times[-1] + 6.0, 600.0)
    assert evoked._stratified_rank_sums(strata, starts, 600.0)[0].min() < np.log(1e-6)
    assert evoked._closed_loop_tests([tr], 0.0, times[-1] + 6.0, np.log(1e-4)) == []
    # a lift inside one window still stands out against its hour
    lifted = drift + 1.5 * ((times >= 14400) & (times < 15000))
    found = evoked._closed_loop_tests([evoked._Triggers(times, lifted, tr.stratum, tr.n550, 4.5, -40.0, 0)],
                                      0.0, times[-1] + 6.0, np.log(1e-4))
    assert found and all(w.start < 15000 and w.start + w.width > 14400 for w in found)


def test_monitor_raises_once_in_any_block_size(night):
    _, stimulated = night
    stream = stimulated[int(300 * FS):int(1150 * FS)]  # cues from 300 s to 900 s of the stream
    first = evoked.AuditoryMonitor(FS, 1)
    raised = [(e, (a + 100) / FS) for a in range(0, stream.size, 100) for e in first.push(stream[None, a:a + 100])]
    assert len(raised) == 1 and first.events == [raised[0][0]]
    event, when = raised[0]
    assert event.overlaps(300, 900) and 300 < when < 900
    other = evoked.AuditoryMonitor(FS, 1)
    rng = np.random.default_rng(3)
    a = 0
    while a < stream.size:  # ragged blocks, some empty, give the same alarms
        n = int(rng.integers(0, 400))
        other.push(stream[None, a:a + n])
        a += n
    assert [(e.onset, e.duration, e.evidence) for e in other.events] == [(event.onset, event.duration, event.evidence)]


def test_monitor_flags_a_dense_series_within_two_minutes(night):
    clean, _ = night
    stream = _add_cues(clean[: int(900 * FS)], 300, 900, 50.0, seed=12)
    monitor = evoked.AuditoryMonitor(FS, 1)
    step = int(FS)
    raised = [(e, (a + step) / FS) for a in range(0, stream.size, step) for e in monitor.push(stream[None, a:a + step])]
    assert len(raised) == 1
    event, when = raised[0]
    # a short live window (LIVE_OPEN_WINDOWS_S) holds enough cues long before a 5-min one fills
    assert event.overlaps(300, 900) and 300 < when <= 300 + 2 * min(evoked.LIVE_OPEN_WINDOWS_S) + evoked.UPDATE_S
    assert event.duration < min(evoked.OPEN_WINDOWS_S)


def test_bad_input_is_refused():
    with pytest.raises(SignalError):
        evoked.detect_auditory(np.zeros((2, 3, 4)), FS)
    with pytest.raises(SignalError):
        evoked.detect_auditory(np.zeros((1, 1000)), FS, valid=np.ones(10, dtype=bool))
    with pytest.raises(SignalError):
        evoked.AuditoryMonitor(FS, 2).push(np.zeros((3, 10)))
    with pytest.raises(SignalError):
        evoked.detect_auditory(np.zeros(100000), 10.0)
    assert evoked.detect_auditory(np.zeros(500), FS) == []  # too short to hold a series


# --------------------------------------------------------------------------------------------
# Real EEG (DREAMS excerpt 1, read in place) with injected open-loop cues


def test_dreams_excerpt_with_injected_cues(dreams_dir):
    from dsp.stages import from_labels
    from firmware_sim.adjustments import Auditory, inject
    from ingest.dreams import read_dreams_hypnogram, read_dreams_signal

    label, x = read_dreams_signal(dreams_dir / "excerpt1.txt")
    hyp = from_labels(read_dreams_hypnogram(dreams_dir / "Hypnogram_excerpt1.txt"))
    fs = 100.0
    assert evoked.detect_auditory(x, fs, stages=hyp) == []
    stimulated, truth = inject(x, fs, hyp, [Auditory(mode="open_loop", n550_uv=45, duration_s=600, stages=(2, 3),
                                                     stim_stages=(2, 3))], 1, labels=[label])
    found = evoked.detect_auditory(stimulated, fs, stages=hyp)
    onset, duration = truth[0]["onset"], truth[0]["duration"]
    assert len(found) == 1 and found[0].overlaps(onset, onset + duration)
