"""Sample times come from the index regressed against jittery host arrival times."""

import numpy as np
import pytest

from ingest.clock import SampleClock


def _arrivals(rng, n, fs_true, t0=1.7e9, packet=25, burst_every=200):
    """Last-sample index and arrival time of packets: exponential latency plus late bursts."""
    index = packet * np.arange(n) + packet - 1
    latency = 0.004 + rng.exponential(0.006, n)
    late = rng.random(n) < 1 / burst_every
    for k in np.flatnonzero(late):  # a BLE connection event holds several packets back
        latency[k:k + 8] += rng.uniform(0.05, 0.25)
    return index, t0 + index / fs_true + latency, t0


def test_fit_recovers_the_true_rate_and_the_least_latency_despite_bursts():
    rng = np.random.default_rng(1)
    fs_true = 250.0 * 1.004  # crystal 0.4 % fast
    clock = SampleClock(250.0)
    index, arrival, t0 = _arrivals(rng, 6000, fs_true)
    for i, t in zip(index, arrival):
        clock.observe(int(i), float(t))
    assert clock.effective_rate == pytest.approx(fs_true, rel=2e-5)
    # the line runs along the least-delayed arrivals: within a few ms of the 4-ms floor, bursts ignored
    err = clock.time_of(int(index[-1]) + 1000) - (t0 + (index[-1] + 1000) / fs_true)
    assert 0.0 < err < 0.008


def test_a_wrong_nominal_rate_is_corrected():
    rng = np.random.default_rng(2)
    clock = SampleClock(250.0)  # told 250 Hz, the device really runs at 256 Hz
    index, arrival, _ = _arrivals(rng, 3000, 256.0)
    for i, t in zip(index, arrival):
        clock.observe(int(i), float(t))
    assert clock.effective_rate == pytest.approx(256.0, rel=1e-4)


def test_the_fit_follows_drift_that_changes_during_the_night():
    rng = np.random.default_rng(3)
    clock = SampleClock(250.0, window_seconds=120.0)
    t, i = 1.7e9, 0
    for k in range(40_000):  # 250 Hz for ~33 min, then the crystal warms up: +0.2 %
        rate = 250.0 if k < 20_000 else 250.5
        i += 25
        t += 25 / rate
        clock.observe(i - 1, t + 0.004 + rng.exponential(0.003))
    assert clock.effective_rate == pytest.approx(250.5, rel=1e-4)


def test_nominal_rate_until_two_observations():
    clock = SampleClock(100.0)
    with pytest.raises(RuntimeError):
        clock.time_of(0)
    clock.observe(10, 5.0)
    assert clock.time_of(110) == pytest.approx(6.0)
    assert clock.seconds_per_sample == pytest.approx(0.01)


def test_runs_sharing_one_arrival_time_do_not_break_the_fit():
    clock = SampleClock(250.0)
    clock.observe(0, 10.0)
    clock.observe(6, 10.0)  # two runs from one chunk: same host time
    clock.observe(10, 10.1)
    assert clock.seconds_per_sample > 0 and np.isfinite(clock.time_of(20))
