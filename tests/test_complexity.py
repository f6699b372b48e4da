"""dsp.complexity kernels against plain-numpy definitions and known values."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from dsp.complexity import hjorth, higuchi_fd, permutation_entropy, spectral_entropy, zero_crossing_rate
from dsp.spectral import epoch_psd

FS = 100.0
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
epochs_of = lambda elements, min_n=2: hnp.arrays(  # noqa: E731
    np.float64, st.tuples(st.integers(1, 3), st.integers(min_n, 80)), elements=elements)
# small integers make ties and constant stretches common, where definitions differ most
ties = st.integers(-3, 3).map(float)


def _sine(f_hz, seconds=30.0, fs=FS, amplitude=20.0):
    t = np.arange(int(seconds * fs)) / fs
    return amplitude * np.sin(2 * np.pi * f_hz * t)


def _noise(n_epochs=4, n=3000, seed=0):
    return np.random.default_rng(seed).normal(0, 20, (n_epochs, n))


# --- independent numpy references -------------------------------------------------------------

def hjorth_ref(x):
    # variances about the first value (same variance, but exactly 0 for a constant)
    var = lambda v: (v - v[:, :1]).var(axis=1)  # noqa: E731
    dx, ddx = np.diff(x, axis=1), np.diff(x, n=2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mobility = np.sqrt(var(dx) / var(x))
        complexity = np.sqrt(var(ddx) / var(dx)) / mobility
    return var(x), mobility, complexity


def perm_entropy_ref(x, order, delay):
    runs = sliding_window_view(x, (order - 1) * delay + 1, axis=1)[..., ::delay]
    patterns = np.argsort(runs, axis=-1, kind="stable")  # ties in time order
    out = []
    for row in patterns:
        _, counts = np.unique(row, axis=0, return_counts=True)
        p = counts / counts.sum()
        out.append(-(p * np.log2(p)).sum() / np.log2(math.factorial(order)))
    return np.array(out)


def zcr_ref(x, fs):
    below = (x - x.mean(axis=1, keepdims=True)) < 0
    return np.diff(below, axis=1).sum(axis=1) * fs / (x.shape[1] - 1)


def higuchi_ref(x, kmax):
    n = x.shape[1]
    k = np.arange(1, kmax + 1)
    out = []
    for row in x:
        lengths = [np.mean([np.abs(np.diff(row[m::kk])).sum() * (n - 1) / ((n - 1 - m) // kk * kk) / kk
                            for m in range(kk)]) for kk in k]
        out.append(np.polyfit(np.log(1.0 / k), np.log(lengths), 1)[0])
    return np.array(out)


# --- against the references -------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(x=st.one_of(epochs_of(finite, 3), epochs_of(ties, 3)))
def test_hjorth_matches_numpy(x):
    activity, mobility, complexity = hjorth(x)
    activity_ref, mobility_ref, complexity_ref = hjorth_ref(x)
    np.testing.assert_allclose(activity, activity_ref, rtol=1e-9, atol=1e-12 * (1 + np.abs(x).max() ** 2))
    np.testing.assert_allclose(mobility, mobility_ref, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(complexity, complexity_ref, rtol=1e-7, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(x=st.one_of(epochs_of(finite, 9), epochs_of(ties, 9)), order=st.integers(2, 5), delay=st.integers(1, 2))
def test_permutation_entropy_matches_numpy_with_ties_in_time_order(x, order, delay):
    np.testing.assert_allclose(permutation_entropy(x, order, delay), perm_entropy_ref(x, order, delay),
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(psd=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 60)),
                      elements=st.one_of(st.floats(1e-6, 1e3), st.just(0.0))))
def test_spectral_entropy_matches_scipy_entropy(psd):
    psd[:, 0] += 1.0  # some power in every row
    expected = stats.entropy(psd, axis=1) / np.log(psd.shape[1])
    np.testing.assert_allclose(spectral_entropy(psd), expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(x=st.one_of(epochs_of(finite), epochs_of(ties)), fs=st.sampled_from([100.0, 256.0]))
def test_zero_crossing_rate_matches_numpy(x, fs):
    np.testing.assert_allclose(zero_crossing_rate(x, fs), zcr_ref(x, fs), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 400), kmax=st.integers(2, 10))
def test_higuchi_fd_matches_numpy(seed, n, kmax):
    x = np.cumsum(np.random.default_rng(seed).normal(0, 1, (2, n)), axis=1)
    np.testing.assert_allclose(higuchi_fd(x, kmax), higuchi_ref(x, kmax), rtol=1e-9)


def test_float32_epochs_give_the_float64_results():
    # comparisons (permutation entropy, zero crossings) need no check; sums of squares and lengths do
    x = _noise(n=500).astype(np.float32)
    x64 = x.astype(np.float64)
    for g, ref in zip(hjorth(x), hjorth(x64)):
        np.testing.assert_allclose(g, ref, rtol=1e-6)
    np.testing.assert_allclose(higuchi_fd(x, 10), higuchi_fd(x64, 10), rtol=1e-6)


# --- known values -----------------------------------------------------------------------------

@pytest.mark.parametrize("f_hz", [1.0, 2.0, 5.0])
def test_hjorth_of_a_sine(f_hz):
    activity, mobility, complexity = hjorth(_sine(f_hz)[None, :])
    omega = 2 * np.pi * f_hz
    assert activity[0] == pytest.approx(20.0**2 / 2, rel=1e-9)
    assert mobility[0] == pytest.approx(omega / FS, rel=0.005)                   # small-angle value
    assert mobility[0] == pytest.approx(2 * np.sin(omega / (2 * FS)), rel=5e-4)  # exact for differences
    assert complexity[0] == pytest.approx(1.0, abs=1e-3)


def test_hjorth_of_white_noise():
    # differences of white noise have 2x, second differences 6x its variance
    _, mobility, complexity = hjorth(_noise(n=20000))
    np.testing.assert_allclose(mobility, np.sqrt(2), rtol=0.02)
    np.testing.assert_allclose(complexity, np.sqrt(6 / 2) / np.sqrt(2), rtol=0.02)


def test_permutation_entropy_known_values():
    noise = permutation_entropy(_noise(), 3, 1)
    assert np.all(noise > 0.99)
    sine = permutation_entropy(_sine(1.0)[None, :], 3, 1)[0]
    assert sine < 0.45                   # almost only the rising and the falling pattern: log 2 / log 6
    assert sine > np.log(2) / np.log(6) - 1e-9
    assert permutation_entropy(np.arange(50.0)[None, :], 3, 1)[0] == 0.0
    assert permutation_entropy(np.zeros((1, 50)), 3, 1)[0] == 0.0  # all ties: one pattern


def test_spectral_entropy_known_values():
    assert spectral_entropy(np.ones((1, 64)))[0] == pytest.approx(1.0)
    spike = np.zeros((1, 64))
    spike[0, 10] = 5.0
    assert spectral_entropy(spike)[0] == 0.0
    freqs, psd = epoch_psd(np.vstack([_noise(1), _sine(10.0)]), FS)
    noise_se, sine_se = spectral_entropy(psd)
    assert noise_se > 0.95
    assert sine_se < 0.3


def test_zero_crossing_rate_known_values():
    for f_hz in (0.5, 3.0, 12.0):
        offset_sine = _sine(f_hz)[None, :] + 500.0  # a DC offset changes nothing
        assert zero_crossing_rate(offset_sine, FS)[0] == pytest.approx(2 * f_hz, abs=1.01 / 30)  # +-1 crossing
    np.testing.assert_allclose(zero_crossing_rate(_noise(), FS), FS / 2, rtol=0.05)  # coin flips


def test_higuchi_fd_known_values():
    np.testing.assert_allclose(higuchi_fd(_noise(), 10), 2.0, atol=0.05)
    assert higuchi_fd(_sine(0.5)[None, :], 10)[0] == pytest.approx(1.0, abs=0.02)
    brownian = np.cumsum(_noise(seed=1), axis=1)
    np.testing.assert_allclose(higuchi_fd(brownian, 10), 1.5, atol=0.1)


# --- the NaN contract -------------------------------------------------------------------------

def test_an_epoch_with_a_non_finite_sample_gets_nan_and_spares_the_others():
    x = _noise(n=300)
    x[1, 17] = np.nan
    x[2, 0] = np.inf
    clean = x[[0, 3]]
    results = [*hjorth(x), permutation_entropy(x, 3, 1), zero_crossing_rate(x, FS), higuchi_fd(x, 10)]
    references = [*hjorth(clean), permutation_entropy(clean, 3, 1), zero_crossing_rate(clean, FS),
                  higuchi_fd(clean, 10)]
    for got, ref in zip(results, references):
        assert np.isnan(got[[1, 2]]).all()
        np.testing.assert_array_equal(got[[0, 3]], ref)
    psd = np.abs(x)
    se = spectral_entropy(psd)
    assert np.isnan(se[[1, 2]]).all() and np.isfinite(se[[0, 3]]).all()


def test_undefined_features_are_nan():
    constant = np.full((1, 100), 7.0)
    activity, mobility, complexity = hjorth(constant)
    assert activity[0] == 0 and np.isnan(mobility[0]) and np.isnan(complexity[0])
    assert np.isnan(higuchi_fd(constant, 10)[0])
    assert np.isnan(higuchi_fd(np.ones((1, 19)), 10)[0])          # shorter than 2 * kmax
    assert np.isnan(permutation_entropy(np.ones((1, 2)), 3, 1)[0])   # shorter than one pattern
    assert np.isnan(spectral_entropy(np.zeros((1, 10)))[0])       # no power
    assert np.isnan(spectral_entropy(-np.ones((1, 10)))[0])       # not a spectrum
    assert np.isnan(zero_crossing_rate(np.ones((2, 1)), FS)).all()
    assert np.isnan(hjorth(np.ones((1, 2)))[0][0])


def test_invalid_parameters_raise():
    x = _noise(1, 100)
    with pytest.raises(ValueError):
        permutation_entropy(x, 9, 1)
    with pytest.raises(ValueError):
        permutation_entropy(x, 3, 0)
    with pytest.raises(ValueError):
        higuchi_fd(x, 1)
