"""Sample times come from the index regressed against jittery host arrival times."""

import numpy as np
import pytest

from ingest.clock import SampleClock


def test_fit_recovers_true_rate_and_times_despite_jitter():
    rng = np.random.default_rng(1)
    fs_nominal, fs_true, t0 = 250.0, 250.0 * 1.004, 1.7e9  # crystal 0.4 % fast
    clock = SampleClock(fs_nominal)
    latency = rng.exponential(0.008, 3000)  # USB/BLE arrive late, in bursts
    for k in range(3000):
        index = 25 * k + 24  # last sample of a 25-sample packet
        clock.observe(index, t0 + index / fs_true + latency[k])
    assert clock.effective_rate == pytest.approx(fs_true, rel=1e-4)
    # the time of a sample is off by about the mean latency, never by the jitter
    assert clock.time_of(50_000) - (t0 + 50_000 / fs_true) == pytest.approx(latency.mean(), abs=1e-3)


def test_nominal_rate_until_two_observations():
    clock = SampleClock(100.0)
    with pytest.raises(RuntimeError):
        clock.time_of(0)
    clock.observe(10, 5.0)
    assert clock.time_of(110) == pytest.approx(6.0)
    assert clock.seconds_per_sample == pytest.approx(0.01)
