"""All detectors together (dsp.adjustments): electrode faults are not adjustments, one adjustment is not two."""

import numpy as np

from dsp.adjustments import _channel_groups, _unexplained, detect_adjustments
from dsp.events import AdjustmentEvent


def pinkish(rng, n, fs, sd=20.0):
    """Smoothed white noise in uV: a stand-in for EEG without lines or evoked series."""
    white = rng.standard_normal(n)
    k = int(fs // 8)
    x = np.convolve(white, np.ones(k) / k, mode="same") + 0.1 * white
    return sd * x / x.std()


def test_a_railed_electrode_is_not_a_dc_shift():
    rng = np.random.default_rng(3)
    fs, n = 128.0, int(128 * 900)
    x = np.vstack([pinkish(rng, n, fs), pinkish(rng, n, fs)])
    x[1, n // 2:] = 187_500.0  # railed at the ADC limit from mid-recording on
    valid = np.ones(n, dtype=bool)
    valid[1000:1100] = False
    x[:, 1000:1100] = 0.0  # a packet-loss gap written as zeros
    groups = _channel_groups(x, fs, valid)
    assert [rows for rows, _ in groups] == [[0], [1]]
    usable = groups[1][1]
    assert not usable[n // 2 + 128:].any()
    assert np.array_equal(usable[: n // 2 - 128], valid[: n // 2 - 128])  # only the gap is missing before
    assert detect_adjustments(x, fs, valid=valid) == []


def test_slow_tacs_explains_an_auditory_call_it_overlaps_but_not_others():
    tacs = AdjustmentEvent(100.0, 300.0, "electrical", 0.9, "line at 0.75 Hz", frequency_hz=0.75)
    fast = AdjustmentEvent(1000.0, 300.0, "electrical", 0.9, "line at 40 Hz", frequency_hz=40.0)
    during = AdjustmentEvent(150.0, 600.0, "auditory", 0.8, "series")
    later = AdjustmentEvent(2000.0, 600.0, "auditory", 0.8, "series")
    with_fast = AdjustmentEvent(1100.0, 100.0, "auditory", 0.8, "series")
    kept = _unexplained([during, later, with_fast, tacs, fast], [tacs, fast])
    assert kept == [later, with_fast, tacs, fast]


def test_second_sd_matches_numpy():
    from dsp.adjustments import second_sd

    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 5.0, (3, 1003))
    x[1, 200:400] = 187_500.0
    ok = rng.random(1003) > 0.3
    ok[500:600] = False
    sd, counts = second_sd(x, ok, 100)
    assert sd.shape == (3, 10) and counts.tolist() == [int(ok[b * 100:(b + 1) * 100].sum()) for b in range(10)]
    for r in range(3):
        for b in range(10):
            seg = x[r, b * 100:(b + 1) * 100][ok[b * 100:(b + 1) * 100]]
            assert np.isclose(sd[r, b], seg.std() if seg.size else 0.0, atol=1e-9)


def test_monitor_views_show_each_alarm_in_its_latest_view():
    from dsp.adjustments import AdjustmentMonitor
    from firmware_sim.adjustments import Entrainment, inject

    rng = np.random.default_rng(5)
    fs, seconds = 128.0, 300
    x = pinkish(rng, int(fs * seconds), fs, sd=15.0) + 0.5 * rng.standard_normal(int(fs * seconds))
    hyp = np.full(seconds // 30 + 1, 2)
    x, truth = inject(x[None, :], fs, hyp, [Entrainment(frequency_hz=40.0, amplitude_uv=3.0, duration_s=80,
                                                         onsets=(200.0,))], 5, labels=["EEG Fpz-M2"])
    onset, end = truth[0]["onset"], truth[0]["onset"] + truth[0]["duration"]
    monitor = AdjustmentMonitor(fs, 1)
    step = int(fs)
    raised = [e for a in range(0, x.shape[1], step) for e in monitor.push(x[:, a:a + step])]
    assert raised and monitor.events == raised
    assert all(e.overlaps(onset, end) for e in raised)
    views = monitor.views
    assert len(views) == 1 and views[0].kind == "entrainment" and views[0].overlaps(onset, end)
    # the view has followed the line since it was raised
    assert views[0].end >= raised[0].end and views[0].end > end - 30


def test_usable_columns_and_as_input_match_numpy():
    from dsp.detector_input import as_detector_input as _as_input, usable_columns

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 500))
    valid = rng.random(500) > 0.2
    x[:, ~valid] = 0.0
    ok, dirty = usable_columns(x, valid)
    assert np.array_equal(ok, valid) and not dirty
    out, mask = _as_input(x, valid)
    assert out is x and np.array_equal(mask, valid)  # missing samples already 0: no copy
    x[1, 7] = np.nan
    x[2, np.flatnonzero(~valid)[0]] = 5.0
    expected = valid & np.isfinite(x).all(axis=0)
    ok, dirty = usable_columns(x, valid)
    assert np.array_equal(ok, expected) and dirty
    assert np.array_equal(usable_columns(x, np.ones(0, dtype=bool))[0], np.isfinite(x).all(axis=0))
    out, mask = _as_input(x, valid)
    assert np.array_equal(mask, expected)
    assert np.array_equal(out, np.where(expected, x, 0.0)) and np.isnan(x[1, 7])  # the caller's data untouched
