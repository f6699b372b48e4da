"""The simulated headband: plausible nights, physiological signatures per stage, seamless streaming."""

import numpy as np
import pytest
from scipy import signal

from firmware_sim.headband import SimulatedHeadband
from firmware_sim.hypnogram import N1, N2, N3, REM, STAGES, W, generate_hypnogram, stage_minutes
from firmware_sim.profiles import get_profile


def test_nights_have_the_architecture_of_adult_sleep():
    # Stage shares of sleep within what healthy adults show: the 20 real nights the generator is
    # fitted to span N2 32-64 %, N3 5-43 %, REM 15-29 %; a single simulated night may stray a little
    # further. N3 early and REM late hold over the nights together (in 18 of 20 real nights singly).
    nights = [generate_hypnogram(8, seed) for seed in range(16)]
    for hyp in nights:
        assert hyp.shape == (960,) and set(np.unique(hyp)) <= set(range(5))
        assert hyp[0] == W and hyp[-1] == W
        minutes = stage_minutes(hyp)
        asleep = sum(minutes.values()) - minutes["W"]
        share = {k: minutes[k] / asleep for k in STAGES[1:]}
        assert 0.30 <= share["N2"] <= 0.75 and 0.03 <= share["N3"] <= 0.45 and 0.08 <= share["REM"] <= 0.35
    first, second = np.hstack([h[:480] for h in nights]), np.hstack([h[480:] for h in nights])
    assert (first == N3).sum() > 1.5 * (second == N3).sum()      # slow-wave sleep early
    assert (second == REM).sum() > 1.5 * (first == REM).sum()    # REM late


def test_same_seed_same_night_and_other_seed_other_night():
    assert np.array_equal(generate_hypnogram(2, 5), generate_hypnogram(2, 5))
    assert not np.array_equal(generate_hypnogram(2, 5), generate_hypnogram(2, 6))


def test_reading_in_any_chunk_size_gives_the_same_stream():
    whole = SimulatedHeadband(hours=0.1, seed=2).read_all()
    band = SimulatedHeadband(hours=0.1, seed=2)
    sizes = [1, 7, 1000, 7679, 3]
    parts = []
    i = 0
    while True:
        chunk = band.read(sizes[i % len(sizes)])
        if chunk.shape[1] == 0:
            break
        parts.append(chunk)
        i += 1
    assert np.array_equal(np.hstack(parts), whole)
    assert whole.shape == (4, band.n_samples) and band.n_samples == int(0.1 * 3600 * band.fs)


@pytest.fixture(scope="module")
def night():
    band = SimulatedHeadband(hours=8, seed=11)
    data = band.read_all()
    n = int(30 * band.fs)
    epochs = data.reshape(data.shape[0], -1, n)
    return band, epochs


def _relative_power(epochs, fs, lo, hi):
    f, p = signal.welch(epochs, fs, nperseg=int(4 * fs), axis=-1)
    total = p[..., (f >= 0.5) & (f < 30)].sum(-1)
    return p[..., (f >= lo) & (f < hi)].sum(-1) / total


def test_each_stage_has_its_spectral_signature(night):
    band, epochs = night
    hyp, fs = band.hypnogram, band.fs
    c4 = epochs[band.channels.index("EEG C4-M1")]
    alpha = _relative_power(c4, fs, 8, 12)
    theta = _relative_power(c4, fs, 4, 8)
    sigma = _relative_power(c4, fs, 12, 16)
    delta = _relative_power(c4, fs, 0.5, 4)
    mean = lambda v, s: v[hyp == s].mean()  # noqa: E731
    assert mean(alpha, W) > 2 * max(mean(alpha, s) for s in (N1, N2, N3, REM))
    assert mean(theta, N1) > mean(theta, N2) and mean(theta, REM) > mean(theta, N2)
    # 1.3x: the sensor-noise floor and muscle pick-up lift the sigma share of low-power N1 and REM
    assert mean(sigma, N2) > 1.3 * max(mean(sigma, N1), mean(sigma, REM))
    assert mean(delta, N3) > mean(delta, N2) > mean(delta, N1)


def test_n3_has_large_slow_waves_over_a_fifth_of_each_epoch(night):
    band, epochs = night
    fs = band.fs
    fpz = epochs[band.channels.index("EEG Fpz-M2")][band.hypnogram == N3]
    slow = signal.sosfiltfilt(signal.butter(2, [0.5, 2.0], "bandpass", fs=fs, output="sos"), fpz, axis=-1)
    # peak-to-peak within each 1-s window >= 75 uV
    win = slow[:, : int(30 * fs)].reshape(slow.shape[0], 30, int(fs))
    share = ((win.max(-1) - win.min(-1)) >= 75).mean(-1)
    assert np.median(share) >= 0.2


def test_chin_emg_is_lowest_in_rem_and_eye_movements_mark_rem(night):
    band, epochs = night
    hyp = band.hypnogram
    emg = epochs[band.channels.index("EMG chin")].std(-1)
    eog = epochs[band.channels.index("EOG E1-M2")]
    lag = int(0.1 * band.fs)
    fast_eog = np.abs(eog[..., lag:] - eog[..., :-lag]).max(-1)  # saccades swing > 100 uV within 100 ms
    assert emg[hyp == REM].mean() < 0.5 * min(emg[hyp == s].mean() for s in (W, N1, N2, N3))
    assert np.median(fast_eog[hyp == REM]) > 2 * np.median(fast_eog[hyp == N2])


def test_spindles_and_k_complexes_come_only_in_nrem(night):
    band, _ = night
    hyp = band.hypnogram
    spindles = [(e.onset, e.duration) for e in band.events if e.kind == "spindle"]
    assert spindles and all(hyp[int(on // 30)] in (N2, N3) for on, _ in spindles)
    assert all(0.5 <= dur <= 2.0 for _, dur in spindles)
    n2_minutes = (hyp == N2).sum() / 2
    density = sum(hyp[int(on // 30)] == N2 for on, _ in spindles) / n2_minutes
    assert 2 <= density <= 7  # per minute of N2 (AASM: about 2-7)
    kcs = [e.onset for e in band.events if e.kind == "k_complex"]
    assert kcs and all(hyp[int(on // 30)] in (N2, N3) for on in kcs)


def test_any_rate_from_100_to_1000_hz():
    for fs in (100.0, 250.0, 333.3, 1000.0):
        band = SimulatedHeadband(hours=0.05, seed=1, fs=fs)
        data = band.read_all()
        assert data.shape == (4, int(round(0.05 * 3600 * fs))) and np.isfinite(data).all()


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(KeyError, match="known: .*muse-s.*sim"):
        get_profile("cyton-xl")
