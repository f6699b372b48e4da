"""Line detection (electrical stimulation, entrainment): kernels against numpy/scipy, injected lines
found and told apart, physiology, mains and device lines left alone, live alarms within seconds."""

import warnings

import numpy as np
import pytest
from scipy.signal.windows import dpss

from dsp.errors import SignalError
from dsp.lines import (
    FAST_DC_BASE_S,
    FAST_DC_GUARD_S,
    FAST_DC_HOLD_S,
    LineMonitor,
    block_demodulate,
    block_means,
    coherent_sums,
    dc_step_test,
    detect_lines,
    detrend_tiles,
    dpss_tapers,
    harmonic_f_test,
    neighbour_mean,
    on_off_path,
    onset_ramp,
    ramp_fit,
    rolling_median,
    spectrum_power,
    tapered_tiles,
    window_screen,
    zoom_power,
)
from firmware_sim.adjustments import Electrical, Entrainment, inject

FS = 128.0


def background(rng, seconds, fs=FS, uv=15.0):
    """Pink (1/f) EEG-like noise plus a white floor, in uV."""
    n = int(seconds * fs)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spec[1:] /= np.sqrt(np.maximum(f[1:], 0.3))
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return uv * x / x.std() + 0.5 * rng.standard_normal(n)


def injected(adjustment, seconds=1500, seed=0, uv=15.0):
    rng = np.random.default_rng(seed)
    x = background(rng, seconds, uv=uv)
    hyp = np.full(int(seconds // 30) + 1, 2)
    new, truth = inject(x[None, :], FS, hyp, [adjustment], seed, labels=["EEG Fpz-M2"])
    return new, truth[0]


# ---------------------------------------------------------------- design and kernels against numpy


def test_dpss_tapers_are_scipys_and_cached():
    tapers, dc = dpss_tapers(256, 2.0, 3)
    ref = dpss(256, 2.0, 3, sym=False)
    np.testing.assert_allclose(tapers, ref, atol=1e-6)
    np.testing.assert_allclose(dc, ref.sum(axis=1), rtol=1e-12)
    assert dpss_tapers(256, 2.0, 3)[0] is tapers  # computed once per (n, NW, K)
    assert not tapers.flags.writeable


def test_harmonic_f_test_matches_numpy():
    rng = np.random.default_rng(1)
    eig = (rng.standard_normal((4, 5, 30)) + 1j * rng.standard_normal((4, 5, 30))).astype(np.complex64)
    dc = rng.uniform(-2, 3, 5)
    mu, f_stat, residual, power = harmonic_f_test(eig, dc)
    e = eig.astype(np.complex128)
    mu_ref = np.einsum("k,skj->sj", dc, e) / np.sum(dc ** 2)
    res = np.sum(np.abs(e - mu_ref[:, None, :] * dc[None, :, None]) ** 2, axis=1)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-5)
    np.testing.assert_allclose(residual, res / 4, rtol=1e-5)
    np.testing.assert_allclose(f_stat, 4 * np.abs(mu_ref) ** 2 * np.sum(dc ** 2) / res, rtol=1e-5)
    np.testing.assert_allclose(power, np.mean(np.abs(e) ** 2, axis=1), rtol=1e-5)


def test_harmonic_f_test_recovers_a_sinusoid():
    n, fs, f0 = 1024, 256.0, 40.0  # on a bin
    tapers, dc = dpss_tapers(n, 4.0, 7)
    t = np.arange(n) / fs
    rng = np.random.default_rng(2)
    x = 3.0 * np.cos(2 * np.pi * f0 * t + 0.7) + rng.standard_normal(n)
    eig = np.fft.rfft(x * tapers, axis=1)[None].astype(np.complex64)
    mu, f_stat, _, _ = harmonic_f_test(eig, dc)
    j = int(f0 * n / fs)
    assert abs(2 * abs(mu[0, j]) - 3.0) < 0.15 and abs(np.angle(mu[0, j]) - 0.7) < 0.1
    assert f_stat[0, j] > 100 and np.median(f_stat[0]) < 2  # F(2, 12) has median ~0.74


@pytest.mark.parametrize("n_bins", [5, 30, 200])
def test_neighbour_mean_matches_numpy(n_bins):
    rng = np.random.default_rng(n_bins)
    p = rng.exponential(1.0, (3, n_bins)) * np.logspace(4, -2, n_bins)  # a steep spectrum
    out = neighbour_mean(p, 3, 10)
    for j in range(n_bins):
        idx = [i for d in range(3, 11) for i in (j - d, j + d) if 0 <= i < n_bins]
        expected = p[:, idx].mean(axis=1) if idx else np.zeros(3)
        np.testing.assert_allclose(out[:, j], expected, rtol=1e-6)  # running sums over a 1e6 range


def test_window_screen_matches_numpy():
    rng = np.random.default_rng(3)
    power = rng.exponential(1.0, (30, 90)).astype(np.float32)
    power[:, 40] *= 30.0  # a line, so some pairs pass
    ok = rng.random(30) > 0.2
    starts = np.array([0, 2, 5, 6, 12, 22])
    ratio = rng.uniform(0.8, 1.6, starts.size)
    excluded = np.zeros(70, dtype=bool)
    excluded[[3, 50]] = True
    windows, cols, den, n_valid = window_screen(power, ok, starts, 8, 10, 70, 3, 10, ratio, excluded)
    expected = []
    for w, s0 in enumerate(starts):
        rows = [k for k in range(s0, s0 + 8) if ok[k]]
        acc = power[rows].astype(np.float64).sum(axis=0)
        assert n_valid[w] == len(rows)
        for j in range(70):
            c = 10 + j
            idx = [i for d in range(3, 11) for i in (c - d, c + d) if 0 <= i < 90]
            noise = acc[idx].mean()
            if noise > 0 and acc[c] >= ratio[w] * noise and not excluded[j]:
                expected.append((w, j, noise))
    assert len(expected) > 10 and (40 - 10) in cols  # the line passes, plenty of noise too
    assert [(int(w), int(j)) for w, j in zip(windows, cols)] == [(w, j) for w, j, _ in expected]
    np.testing.assert_allclose(den, [d for _, _, d in expected], rtol=1e-9)


def test_tapered_tiles_and_spectrum_power_match_numpy():
    rng = np.random.default_rng(12)
    x = rng.standard_normal(900) * 10 + 3000.0  # an electrode offset
    weight = (rng.random(900) > 0.3).astype(np.float32)
    taper = rng.uniform(0, 1, 100).astype(np.float32)
    rows = np.array([0, 3, 8])
    for w in (weight, np.ones(0, dtype=np.float32)):
        seg, frac = tapered_tiles(x, w, rows, 100, taper)
        for r, k in enumerate(rows):
            xs = x[k * 100:(k + 1) * 100]
            valid = w[k * 100:(k + 1) * 100] > 0 if w.size else np.ones(100, dtype=bool)
            np.testing.assert_allclose(seg[r], np.where(valid, xs - xs[valid].mean(), 0) * taper, atol=1e-4)
            assert frac[r] == pytest.approx(valid.mean())
    spec = np.fft.rfft(seg, axis=1).astype(np.complex64)
    np.testing.assert_allclose(spectrum_power(spec), np.abs(spec.astype(np.complex128)) ** 2, rtol=1e-5)


@pytest.mark.parametrize("width", [1, 4, 10, 11])
def test_rolling_median_is_numpys_nanmedian(width):
    rng = np.random.default_rng(width)
    m = rng.normal(size=300)
    m[rng.random(300) < 0.2] = np.nan
    m[50:70] = np.nan  # windows with nothing in them
    m[100:110] = 1.5  # ties
    windows = np.lib.stride_tricks.sliding_window_view(m, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        expected = np.nanmedian(windows, axis=1)
    np.testing.assert_array_equal(rolling_median(m, width), expected)
    assert rolling_median(m[:3], 5).size == 0


def test_coherent_sums_match_a_rotation_search():
    rng = np.random.default_rng(4)
    seq = rng.standard_normal((5, 8)) + 1j * rng.standard_normal((5, 8))
    power, theta = coherent_sums(seq, 16)
    grid = 2 * np.pi * np.arange(16) / 16
    sums = np.abs(seq @ np.exp(-1j * np.outer(np.arange(8), grid))) ** 2
    np.testing.assert_allclose(power, sums.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(np.exp(1j * theta), np.exp(1j * grid[sums.argmax(axis=1)]), atol=1e-12)
    assert np.all((theta >= -np.pi) & (theta < np.pi))
    # a turning phasor is summed coherently at its own rotation
    line = np.exp(1j * (0.3 + 0.75 * np.arange(8)))
    power, theta = coherent_sums(line[None], 64)
    assert power[0] > 63.0 and abs(theta[0] - 0.75) < np.pi / 64 + 1e-9


def test_detrend_tiles_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(700) * 10 + 50
    weight = (rng.random(700) > 0.3).astype(np.float32)
    rows = np.array([0, 3, 5])
    seg, frac = detrend_tiles(x, weight, rows, 100)
    for r, k in enumerate(rows):
        xs, w = x[k * 100:(k + 1) * 100], weight[k * 100:(k + 1) * 100] > 0
        np.testing.assert_allclose(seg[r], np.where(w, xs - xs[w].mean(), 0), atol=1e-3)
        assert frac[r] == pytest.approx(w.mean())
    seg, frac = detrend_tiles(x, np.ones(0, dtype=np.float32), rows, 100)
    np.testing.assert_allclose(seg[1], x[300:400] - x[300:400].mean(), atol=1e-3)
    assert np.all(frac == 1)


@pytest.mark.parametrize("all_valid", [False, True])
def test_block_demodulate_matches_numpy(all_valid):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(1000)
    valid = rng.random(1000) > 0.2
    valid[300:400] = False
    window = np.hanning(102)[1:-1]
    omega = 2 * np.pi * 0.0731
    z, w = block_demodulate(x, np.ones(0, bool) if all_valid else valid, 50, 100, 10, omega, window)
    v = np.ones(1000, bool) if all_valid else valid
    for b in range(10):
        i = np.arange(50 + 100 * b, 150 + 100 * b)
        inside = i < 1000
        i, ww = i[inside], window[inside]
        keep = v[i]
        expected = (np.sum(ww[keep] * x[i][keep] * np.exp(-1j * omega * i[keep])) / ww[keep].sum()
                    if keep.any() else 0)
        assert z[b] == pytest.approx(expected, abs=1e-10)
        assert w[b] == pytest.approx(ww[keep].sum() / window.sum())


def test_block_demodulate_gives_a_lines_amplitude_and_phase():
    fs = 200.0
    i = np.arange(20000)
    x = 4.0 * np.cos(2 * np.pi * 12.3 * i / fs + 1.1)
    z, _ = block_demodulate(x, np.ones(0, bool), 0, 200, 100, 2 * np.pi * 12.3 / fs, np.hanning(202)[1:-1])
    np.testing.assert_allclose(z, 2.0 * np.exp(1.1j), atol=0.01)  # A/2 exp(i phi) in every block


def test_zoom_power_matches_numpy():
    rng = np.random.default_rng(7)
    z = rng.standard_normal(40) + 1j * rng.standard_normal(40)
    ok = rng.random(40) > 0.1
    t = np.arange(40) + 0.5
    dfs = np.linspace(-0.05, 0.05, 11)
    expected = [abs(np.sum(z[ok] * np.exp(-2j * np.pi * d * t[ok]))) ** 2 for d in dfs]
    np.testing.assert_allclose(zoom_power(z, ok, t, dfs), expected, rtol=1e-10)


@pytest.mark.parametrize("rising", [True, False])
def test_ramp_fit_matches_numpy(rising):
    rng = np.random.default_rng(8)
    t = np.arange(60) * 0.5
    a = rng.standard_normal(60)
    ok = rng.random(60) > 0.1
    onsets, ramps = np.array([3.0, 10.0, 12.5]), np.array([0.5, 2.0, 5.0])
    out = ramp_fit(a, ok, t, 2.0, onsets, ramps, rising)
    for r, ramp in enumerate(ramps):
        for o, t0 in enumerate(onsets):
            u = np.clip((t - t0) / ramp, 0, 1)
            level = 0.5 - 0.5 * np.cos(np.pi * u)
            level = level if rising else 1 - level
            assert out[r, o] == pytest.approx(np.sum((a - 2.0 * level)[ok] ** 2), rel=1e-12)


def _viterbi_reference(llr, cost):
    """Exhaustive search over every on/off sequence (small n)."""
    n = llr.size
    best, best_path = -np.inf, None
    for code in range(2 ** n):
        path = np.array([(code >> i) & 1 for i in range(n)], dtype=bool)
        score = llr[path].sum() - cost * np.count_nonzero(np.diff(path.astype(int)))
        if score > best + 1e-12:
            best, best_path = score, path
    return best, best_path


@pytest.mark.parametrize("seed", range(6))
def test_on_off_path_is_the_best_path(seed):
    rng = np.random.default_rng(seed)
    llr = rng.normal(0, 3, 11)
    path = on_off_path(llr, 2.5)
    score = llr[path].sum() - 2.5 * np.count_nonzero(np.diff(path.astype(int)))
    assert score == pytest.approx(_viterbi_reference(llr, 2.5)[0])


def test_block_means_match_numpy():
    rng = np.random.default_rng(9)
    x = rng.standard_normal(1005)
    valid = rng.random(1005) > 0.4
    out = block_means(x, valid, 100, 0.6)
    for b in range(10):
        v = valid[b * 100:(b + 1) * 100]
        expected = x[b * 100:(b + 1) * 100][v].mean() if v.mean() >= 0.6 else np.nan
        np.testing.assert_allclose(out[b], expected, rtol=1e-12)
    assert out.size == 10


# ---------------------------------------------------------------- offline detection


def test_electrical_stimulation_is_found_and_called_electrical():
    adj = Electrical(frequency_hz=12.0, amplitude_uv=10.0, n_blocks=2, block_s=300, pause_s=60, onsets=(300.0,))
    x, truth = injected(adj)
    events = detect_lines(x, FS)
    assert len(events) == 1
    ev = events[0]
    assert ev.kind == "electrical" and ev.channels == (0,)
    assert ev.frequency_hz == pytest.approx(12.0, abs=0.01)
    assert abs(ev.onset - truth["onset"]) < 10 and abs(ev.end - (truth["onset"] + truth["duration"])) < 10
    assert "harmonic 2" in ev.evidence and "2 blocks" in ev.evidence and 0.5 < ev.score <= 1


def test_entrainment_is_found_and_called_entrainment():
    x, truth = injected(Entrainment(frequency_hz=40.0, amplitude_uv=3.0, duration_s=300, onsets=(500.0,)))
    events = detect_lines(x, FS)
    assert [e.kind for e in events] == ["entrainment"]
    assert events[0].frequency_hz == pytest.approx(40.0, abs=0.01)
    assert events[0].overlaps(truth["onset"], truth["onset"] + truth["duration"])
    assert "phase wander" in events[0].evidence


def test_clean_eeg_mains_and_bursts_raise_nothing():
    rng = np.random.default_rng(11)
    n = int(1500 * FS)
    t = np.arange(n) / FS
    x = background(rng, 1500)
    # mains switched on mid-record, with a 0.3 % device-clock error
    x += 5.0 * (t > 700) * np.sin(2 * np.pi * 50.0 * 1.003 * t)
    # alpha-like bursts: 10-Hz noise 1 Hz wide, a few seconds each
    alpha = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * (np.abs(np.fft.rfftfreq(n, 1 / FS) - 10) < 0.5), n)
    x += 20 * alpha / alpha.std() * (np.sin(2 * np.pi * t / 40) > 0.5)
    assert detect_lines(x, FS) == []


def test_a_device_line_from_the_first_sample_is_not_an_adjustment_until_it_ramps_up():
    rng = np.random.default_rng(12)
    t = np.arange(int(1500 * FS)) / FS
    x = background(rng, 1500) + 2.0 * np.sin(2 * np.pi * 17.3 * t)
    assert detect_lines(x, FS) == []
    x += 8.0 * (t > 800) * np.sin(2 * np.pi * 17.3 * t)  # five times stronger from 800 s on
    events = detect_lines(x, FS)
    assert len(events) == 1 and abs(events[0].onset - 800) < 10


def test_gaps_are_not_evidence_and_do_not_hide_a_line():
    rng = np.random.default_rng(13)
    x = background(rng, 1500) + 80.0  # an offset that every gap's edges turn into steps
    valid = rng.random(x.size) > 0.05
    for start in rng.integers(0, x.size - 2000, 30):
        valid[start:start + int(rng.integers(50, 1500))] = False
    assert detect_lines(np.where(valid, x, 0.0), FS, valid=valid) == []
    y, truth = injected(Entrainment(frequency_hz=40.0, amplitude_uv=3.0, duration_s=300, onsets=(500.0,)))
    events = detect_lines(np.where(valid, y, 0.0), FS, valid=valid)
    assert len(events) == 1 and events[0].overlaps(truth["onset"], truth["onset"] + truth["duration"])


def test_tdcs_dc_shift_is_electrical():
    adj = Electrical(frequency_hz=1.0, amplitude_uv=0.0, dc_uv=30.0, n_blocks=2, block_s=300, pause_s=60,
                     onsets=(300.0,))
    x, truth = injected(adj)
    events = detect_lines(x, FS)
    assert len(events) == 1 and events[0].kind == "electrical" and events[0].frequency_hz is None
    assert "DC shift" in events[0].evidence
    assert abs(events[0].onset - 300) < 10 and abs(events[0].end - (300 + truth["duration"])) < 10


def test_an_electrode_railed_for_minutes_is_not_a_dc_shift():
    # a failed electrode stuck at the ADC limit between two stretches of EEG: a sharp "plateau"
    # with no signal on it, offline and live
    # (with packet loss: lost samples written as 0 and marked)
    rng = np.random.default_rng(5)
    x = background(rng, 1500)
    x[int(400 * FS): int(700 * FS)] = 187500.0
    valid = np.ones(x.size, dtype=bool)
    for start in rng.integers(0, x.size - 20, 600):
        valid[start: start + 20] = False
    x[~valid] = 0.0
    assert not [e for e in detect_lines(x[None, :], FS, valid=valid) if "DC shift" in e.evidence]
    mon = LineMonitor(FS, 1)
    step = int(FS)
    for a in range(0, x.size, step):
        mon.push(x[None, a: a + step], valid[a: a + step])
    assert not [e for e in mon.events if "DC shift" in e.evidence]


def test_input_is_checked():
    with pytest.raises(SignalError):
        detect_lines(np.zeros((1, 5000)), 40.0)
    with pytest.raises(SignalError):
        detect_lines(np.zeros((1, 5000)), FS, valid=np.ones(10, bool))
    assert detect_lines(np.zeros(1000), FS) == []  # shorter than one window: nothing to say


# ---------------------------------------------------------------- live


def test_monitor_alarms_within_ten_seconds_and_keeps_events():
    x, truth = injected(Entrainment(frequency_hz=40.0, amplitude_uv=3.0, duration_s=300, onsets=(400.0,)),
                        seconds=760)
    x = np.vstack([x, 0.5 * x])
    mon = LineMonitor(FS, 2)
    step = int(FS)
    first = None
    for k in range(0, x.shape[1], step):
        alarms = mon.push(x[:, k:k + step], np.ones(min(step, x.shape[1] - k), dtype=bool))
        if alarms and first is None:
            first = (k + step) / FS, alarms
    end, alarms = first
    assert truth["onset"] < end <= truth["onset"] + 10
    assert alarms[0].overlaps(truth["onset"], truth["onset"] + truth["duration"])
    assert alarms[0].frequency_hz == pytest.approx(40.0, abs=0.2)
    events = mon.events
    assert len(events) == 1 and events[0].kind == "entrainment"
    assert events[0].overlaps(truth["onset"], truth["onset"] + truth["duration"])


def test_monitor_long_fast_window_flags_a_weak_line_within_a_minute():
    # 1.3 uV at 40 Hz is below what an 8-s window can call (about 2 uV here); 32 s hold 4x its energy
    x, truth = injected(Entrainment(frequency_hz=40.0, amplitude_uv=1.3, duration_s=300, onsets=(400.0,)),
                        seconds=760)
    mon = LineMonitor(FS, 1)
    step = int(FS)
    raised = [((k + step) / FS, e) for k in range(0, x.shape[1], step) for e in mon.push(x[:, k:k + step])]
    assert raised
    when, first = raised[0]
    assert truth["onset"] + 8 < when <= truth["onset"] + 60 and "32-s window" in first.evidence
    assert first.overlaps(truth["onset"], truth["onset"] + truth["duration"])
    assert all(e.overlaps(truth["onset"], truth["onset"] + truth["duration"]) for _, e in raised)


def test_dc_step_test_finds_a_ramped_step_but_not_a_pop_a_drift_or_a_rail():
    rng = np.random.default_rng(21)
    n_blocks = FAST_DC_BASE_S + FAST_DC_GUARD_S + FAST_DC_HOLD_S
    block_n, z_min = int(FS), 4.8
    x = background(rng, n_blocks)
    t = np.arange(x.size) / FS
    ok = np.ones(x.size, dtype=bool)
    onset = n_blocks - FAST_DC_HOLD_S - FAST_DC_GUARD_S + 0.5
    step = 100.0 * np.clip((t - onset) / 3.0, 0.0, 1.0)
    assert dc_step_test(x, ok, block_n, z_min) is None
    level, z, first = dc_step_test(x + step, ok, block_n, z_min)
    assert level == pytest.approx(100.0, abs=15.0) and z > z_min and onset - 1 <= first <= onset + 3
    assert dc_step_test(x - step, ok, block_n, z_min)[0] == pytest.approx(-100.0, abs=15.0)
    # an electrode pop (300 uV decaying in 0.5 s), a drift of the same size over the minute, a rail
    pop = np.where(t >= onset, 300.0 * np.exp(-np.clip(t - onset, 0.0, None) / 0.5), 0.0)
    assert dc_step_test(x + pop, ok, block_n, z_min) is None
    assert dc_step_test(x + 100.0 * t / t[-1], ok, block_n, z_min) is None
    railed = np.where(t >= onset + 3.0, 187500.0, x + step)
    assert dc_step_test(railed, ok, block_n, z_min) is None
    # the new level's samples missing (written as 0): no evidence
    lost = ok.copy()
    lost[-int(2 * FS):] = False
    assert dc_step_test(np.where(lost, x + step, 0.0), lost, block_n, z_min) is None


@pytest.mark.parametrize("ramp_s", [5.0, 1.0])
def test_onset_ramp_tells_a_stimulators_slow_rise_from_a_responses(ramp_s):
    rng = np.random.default_rng(22)
    x = background(rng, 40)
    t = np.arange(x.size) / FS
    onset = 25.0
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / ramp_s, 0.0, 1.0))
    x = x + 12.0 * rise * np.sin(2 * np.pi * 40.03 * t + 1.0)  # off the 8-s window's bin by 0.03 Hz
    best, llr = onset_ramp(x, np.ones(x.size, dtype=bool), FS, 40.0, onset + ramp_s / 2, 1 / 16)
    if ramp_s >= 3:
        assert best >= 3 and llr > 1
    else:
        assert best <= 2 and llr < -1


@pytest.mark.parametrize("adj", [
    Electrical(amplitude_uv=0.0, dc_uv=100.0, harmonics=(), n_blocks=1, block_s=200.0, onsets=(400.0,)),
    Electrical(frequency_hz=40.0, amplitude_uv=4.0, n_blocks=1, block_s=200.0, onsets=(400.0,)),
], ids=["tDCS", "40-Hz tACS"])
def test_monitor_calls_tdcs_and_a_ramped_stimulator_electrical_within_ten_seconds(adj):
    # a quieter background (5 uV) so that a 4-uV line's 5-s ramp is measurable within seconds
    x, truth = injected(adj, seconds=700, uv=5.0)
    episode = (truth["onset"], truth["onset"] + truth["duration"])
    mon = LineMonitor(FS, 1)
    step = int(FS)
    when = None
    for k in range(0, x.shape[1], step):
        mon.push(x[:, k:k + step])
        if when is None and any(e.kind == "electrical" and e.overlaps(*episode) for e in mon.events):
            when = (k + step) / FS
    assert when is not None and when <= truth["onset"] + 10
    assert mon.events and all(e.overlaps(*episode) for e in mon.events)


def test_monitor_is_quiet_on_clean_eeg_and_checks_blocks():
    rng = np.random.default_rng(14)
    x = background(rng, 400)
    mon = LineMonitor(FS, 1)
    for k in range(0, x.size, 64):  # half-second blocks
        assert mon.push(x[None, k:k + 64]) == []
    assert mon.events == []
    with pytest.raises(SignalError):
        mon.push(np.zeros((2, 10)))
    with pytest.raises(SignalError):
        LineMonitor(20.0, 1)


# ---------------------------------------------------------------- real EEG


def test_dreams_excerpt_clean_and_with_entrainment(dreams_dir):
    from ingest.dreams import read_dreams_hypnogram, read_dreams_signal
    from dsp.stages import from_labels

    _, x = read_dreams_signal(dreams_dir / "excerpt1.txt")
    hyp = from_labels(read_dreams_hypnogram(dreams_dir / "Hypnogram_excerpt1.txt"))
    assert detect_lines(x, 100.0) == []
    new, truth = inject(x, 100.0, hyp, [Entrainment(frequency_hz=40.0, amplitude_uv=2.0, duration_s=300)], 3,
                        labels=["C3-A1"])
    events = detect_lines(new, 100.0)
    tr = truth[0]
    assert [e.kind for e in events] == ["entrainment"]
    assert events[0].overlaps(tr["onset"], tr["onset"] + tr["duration"])
