"""Slow waves: the half-wave kernel against numpy, known waves found with their amplitude, N3 share, K-complexes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp.errors import SignalError
from dsp.slowwaves import detect_slow_waves, half_waves, k_complex_candidates, slow_wave_share


def half_waves_reference(x):
    positive = x >= 0
    cross = np.flatnonzero(positive[1:] != positive[:-1]) + 1
    rows = []
    for a, b in zip(cross[:-1], cross[1:]):
        seg = x[a:b]
        rows.append((a, b, a + (np.argmax(seg) if positive[a] else np.argmin(seg))))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


@settings(max_examples=80, deadline=None)
@given(x=hnp.arrays(np.float64, st.integers(0, 80),
                    elements=st.one_of(st.floats(-100, 100, allow_nan=False), st.just(0.0))))
def test_half_waves_match_numpy(x):
    np.testing.assert_array_equal(half_waves(x), half_waves_reference(x))


def test_half_waves_of_a_sine():
    fs = 100.0
    x = np.sin(2 * np.pi * 1.0 * np.arange(int(5 * fs)) / fs + 0.3)
    hw = half_waves(x)
    assert np.all(hw[:, 1] - hw[:, 0] == 50)  # 0.5-s halves of a 1-Hz sine
    signs = np.sign(x[hw[:, 2]])
    assert np.all(signs[1:] == -signs[:-1])
    np.testing.assert_allclose(np.abs(x[hw[:, 2]]), 1.0, atol=1e-3)


def wave(fs, ptp, period_s=1.25):
    """One slow wave: a negative then a positive half-sine, each half the period, ptp uV peak to peak."""
    half = int(period_s / 2 * fs)
    t = np.arange(half) / half
    return ptp / 2 * np.concatenate([-np.sin(np.pi * t), np.sin(np.pi * t)])


def quiet(n, fs, rng, sd=5.0):
    """Low-amplitude EEG-like noise (mostly above the slow-wave band)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spectrum *= np.where(f > 0.5, 1 / np.sqrt(np.maximum(f, 0.5)), 0.0)
    x = np.fft.irfft(spectrum, n)
    return sd * x / x.std()


@pytest.mark.parametrize("fs", [50.0, 128.0, 256.0])
def test_inserted_slow_waves_are_found_with_their_amplitude(fs):
    rng = np.random.default_rng(int(fs))
    x = quiet(int(120 * fs), fs, rng)
    truth = []
    for k, ptp in enumerate([60.0, 90.0, 120.0, 160.0, 200.0, 100.0]):
        start = 10.0 + 18.0 * k
        w = wave(fs, ptp)
        i = int(start * fs)
        x[i:i + w.size] += w
        truth.append((start, ptp))
    waves = detect_slow_waves(x, fs, min_ptp_uv=0.0, min_trough_uv=20.0)
    for start, ptp in truth:
        hit = np.flatnonzero(np.abs(waves.onset - start) < 0.25)
        assert hit.size == 1, (start, waves.onset)
        # The 0.3-2 Hz filter keeps most of a 0.8-Hz wave; noise adds a little.
        assert waves.ptp_uv[hit[0]] == pytest.approx(ptp, rel=0.2)
        assert waves.trough_uv[hit[0]] < 0 < waves.peak_uv[hit[0]]
        assert waves.trough_s[hit[0]] == pytest.approx(start + 0.3125, abs=0.1)
    aasm = detect_slow_waves(x, fs)  # 75 uV peak to peak, 40 uV trough
    detected = sorted(round(o) for o in aasm.onset)
    assert detected == [round(s) for s, p in truth if p >= 90.0]


def test_threshold_is_a_parameter_and_waves_scale_with_the_signal():
    fs = 100.0
    rng = np.random.default_rng(2)
    x = quiet(int(60 * fs), fs, rng)
    for k in range(4):
        w = wave(fs, 100.0)
        x[int((5 + 12 * k) * fs):int((5 + 12 * k) * fs) + w.size] += w
    assert len(detect_slow_waves(x, fs)) == 4
    assert len(detect_slow_waves(0.5 * x, fs)) == 0  # 50 uV: below the AASM's 75 uV
    half = detect_slow_waves(0.5 * x, fs, min_ptp_uv=37.5, min_trough_uv=20.0)
    full = detect_slow_waves(x, fs)
    np.testing.assert_allclose(half.onset, full.onset)
    np.testing.assert_allclose(half.ptp_uv, 0.5 * full.ptp_uv, rtol=1e-9)
    assert len(detect_slow_waves(x, fs, max_ptp_uv=80.0)) == 0


def test_durations_outside_the_limits_are_rejected():
    fs = 100.0
    x = quiet(int(30 * fs), fs, np.random.default_rng(3))
    w = wave(fs, 150.0)  # half-waves of 0.625 s
    x[int(10 * fs):int(10 * fs) + w.size] += w
    assert [round(o) for o in detect_slow_waves(x, fs).onset] == [10]
    assert len(detect_slow_waves(x, fs, neg_duration_s=(0.7, 1.5))) == 0
    assert len(detect_slow_waves(x, fs, pos_duration_s=(0.1, 0.5))) == 0
    # A 0.25-Hz swing has a 2-s negative half-wave: longer than 1.5 s, its trough is no slow wave
    # (the filter's ringing around it may be).
    long = wave(fs, 300.0, period_s=4.0)
    y = quiet(int(30 * fs), fs, np.random.default_rng(3))
    y[int(10 * fs):int(10 * fs) + long.size] += long
    troughs = detect_slow_waves(y, fs, min_ptp_uv=0.0, min_trough_uv=20.0).trough_s
    assert not np.any((troughs > 10.0) & (troughs < 12.0))


def test_stages_and_channels():
    fs = 100.0
    rng = np.random.default_rng(4)
    x = quiet(int(90 * fs), fs, rng)
    for start in (10.0, 40.0, 70.0):
        w = wave(fs, 120.0)
        x[int(start * fs):int(start * fs) + w.size] += w
    waves = detect_slow_waves(x, fs, stages=[3, 0, 2], include=(2, 3))
    assert sorted(round(o) for o in waves.onset) == [10, 70]
    two = detect_slow_waves(np.stack([x, -x]), fs)
    assert set(two.channel.tolist()) == {0}  # the inverted copy has positive-first waves
    with pytest.raises(SignalError):
        detect_slow_waves(np.array([0.0, np.nan, 1.0] * 100), fs)


def test_slow_wave_share_per_epoch():
    fs = 100.0
    rng = np.random.default_rng(6)
    x = quiet(int(90 * fs), fs, rng)
    # Epoch 1 (30-60 s): a train of 100-uV, 1.25-s waves covering 12.5 s = 42 % of the epoch.
    train = np.concatenate([wave(fs, 100.0)] * 10)
    x[int(32 * fs):int(32 * fs) + train.size] += train
    waves = detect_slow_waves(x, fs)
    share = slow_wave_share(waves, 3)
    assert share[0] == pytest.approx(0.0, abs=0.01) and share[2] == pytest.approx(0.0, abs=0.01)
    assert share[1] == pytest.approx(12.5 / 30, abs=0.06)
    assert slow_wave_share(waves, 3, min_ptp_uv=150.0).sum() == 0.0
    # Overlapping waves on two channels count once.
    both = detect_slow_waves(np.stack([x, x]), fs)
    np.testing.assert_allclose(slow_wave_share(both, 3), share)


def test_k_complex_is_a_candidate_and_slow_wave_trains_are_not():
    fs = 100.0
    rng = np.random.default_rng(8)
    x = quiet(int(120 * fs), fs, rng, sd=8.0)
    kc = wave(fs, 150.0, period_s=1.0)
    x[int(20 * fs):int(20 * fs) + kc.size] += kc                     # isolated, in a quiet background
    train = np.concatenate([wave(fs, 130.0)] * 12)
    x[int(60 * fs):int(60 * fs) + train.size] += train             # N3-like run of slow waves
    waves = detect_slow_waves(x, fs)
    candidates = k_complex_candidates(waves)
    assert candidates.shape == (len(waves),)
    assert [round(o) for o in waves.onset[candidates]] == [20]
    assert k_complex_candidates(detect_slow_waves(np.zeros(1000), fs)).shape == (0,)
