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
