"""Each numba kernel against an independent numpy reference."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp.hmm import (bank_evidence, bank_mixture_posterior, bank_posterior, forward_backward, forward_filter,
                     forward_step, sequence_log_evidence)
from dsp.quality import epoch_quality, scorable
from dsp.spectral import band_powers, epoch_psd

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(psd=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 60)), elements=st.floats(0, 1e3)),
       df=st.floats(0.1, 2.0), lo=st.floats(0, 40), width=st.floats(0.1, 40))
def test_band_powers_matches_masked_sum(psd, df, lo, width):
    freqs = np.arange(psd.shape[1]) * df
    edges = np.array([[lo, lo + width], [0.0, freqs[-1] + df]])
    mask = (freqs >= lo) & (freqs < lo + width)
    expected = np.stack([(psd * mask).sum(1) * df, psd.sum(1) * df], axis=1)
    np.testing.assert_allclose(band_powers(psd, freqs, edges), expected, rtol=1e-9, atol=1e-9)


def test_band_power_of_a_sine_is_its_variance():
    fs = 200.0
    t = np.arange(int(30 * fs)) / fs
    x = 20.0 * np.sin(2 * np.pi * 10.0 * t)  # variance 200 uV^2
    freqs, psd = epoch_psd(x[None, :], fs)
    power = band_powers(psd, freqs, np.array([[8.0, 12.0], [0.5, 8.0]]))
    assert power[0, 0] == pytest.approx(200.0, rel=0.02)
    assert power[0, 1] < 0.01 * power[0, 0]


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 50)),
                    elements=st.one_of(finite, st.just(np.nan))))
def test_epoch_quality_matches_numpy(x):
    q = epoch_quality(x)
    for e, row in enumerate(x):
        ok = row[np.isfinite(row)]
        assert q[e, 0] == pytest.approx(1 - ok.size / row.size)
        if ok.size:
            assert q[e, 1] == pytest.approx(ok.std(), abs=1e-9 * (1 + np.abs(ok).max()))
            extreme = (ok == ok.min()) | (ok == ok.max())
            assert q[e, 2] == pytest.approx(extreme.mean())
        else:
            assert q[e, 1] == 0 and q[e, 2] == 0


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 60)),
                    elements=st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, 1.5, -1.5]))),
       dtype=st.sampled_from([np.float64, np.float32]), strided=st.booleans())
def test_epoch_quality_finds_the_extremes_of_any_float_rows(x, dtype, strided):
    """The extremes are found over bit patterns for contiguous rows, over floats for strided ones:
    both give numpy's minimum and maximum (signed zeros, ties and negative values included)."""
    x = x.astype(dtype)
    if strided:
        x = np.repeat(x, 2, axis=1)[:, ::2]  # the same values, every other element of a wider array
    q = epoch_quality(x)
    for e, row in enumerate(x.astype(np.float64)):
        extreme = (row == row.min()) | (row == row.max())
        assert q[e, 2] == pytest.approx(extreme.mean())
        assert q[e, 1] == pytest.approx(row.std(), abs=1e-6 * (1 + np.abs(row).max()))
        assert q[e, 0] == 0.0


def test_quality_flags_flat_clipped_and_missing_epochs():
    rng = np.random.default_rng(0)
    good = rng.normal(0, 20, 3000)
    flat = np.full(3000, 187.5)                      # railed: stuck at one value
    clipped = np.clip(good * 5, -100, 100)           # amplifier range exceeded
    missing = good.copy()
    missing[:400] = np.nan
    q = epoch_quality(np.stack([good, flat, clipped, missing]))
    assert scorable(q).tolist() == [True, False, False, False]


def _brute_force_posterior(emit, trans, init):
    t_len, k = emit.shape
    post = np.zeros((t_len, k))
    for path in itertools.product(range(k), repeat=t_len):
        p = init[path[0]] * emit[0, path[0]]
        for t in range(1, t_len):
            p *= trans[path[t - 1], path[t]] * emit[t, path[t]]
        for t, s in enumerate(path):
            post[t, s] += p
    return post / post.sum(axis=1, keepdims=True), post[0].sum()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t_len=st.integers(1, 5), k=st.integers(2, 4))
def test_forward_backward_matches_enumeration_of_all_paths(seed, t_len, k):
    rng = np.random.default_rng(seed)
    emit = rng.uniform(0.01, 1, (t_len, k))
    trans = rng.uniform(0.01, 1, (k, k))
    trans /= trans.sum(1, keepdims=True)
    init = rng.dirichlet(np.ones(k))
    post, log_evidence = forward_backward(np.log(emit), np.log(trans), np.log(init))
    expected_post, evidence = _brute_force_posterior(emit, trans, init)
    np.testing.assert_allclose(post, expected_post, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_evidence, np.log(evidence), rtol=1e-9)
    log_alpha, filtered_evidence = forward_filter(np.log(emit), np.log(trans), np.log(init))
    np.testing.assert_allclose(filtered_evidence, np.log(evidence), rtol=1e-9)
    np.testing.assert_allclose(np.exp(log_alpha[-1]), expected_post[-1], rtol=1e-9, atol=1e-12)
    # the linear-scale pass, with emissions hundreds of nats below 0 (far under float64's range)
    np.testing.assert_allclose(sequence_log_evidence(np.log(emit) - 800.0, trans, init),
                               np.log(evidence) - 800.0 * t_len, rtol=1e-9)


def test_forward_step_is_bayes_filtering():
    rng = np.random.default_rng(3)
    prev = rng.dirichlet(np.ones(5))
    trans = rng.dirichlet(np.ones(5), size=5)
    emit = rng.uniform(0.1, 1, 5)
    expected = (prev @ trans) * emit
    expected /= expected.sum()
    np.testing.assert_allclose(np.exp(forward_step(np.log(prev), np.log(emit), np.log(trans))), expected)


@settings(max_examples=30, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(2, 50)),
                    elements=st.one_of(st.floats(-1e3, 1e3, width=32), st.just(np.inf), st.just(-np.inf))))
def test_epoch_quality_skips_infinite_samples_and_takes_float32(x):
    q = epoch_quality(x)
    for e, row in enumerate(x.astype(np.float64)):
        ok = row[np.isfinite(row)]
        assert q[e, 0] == pytest.approx(1 - ok.size / row.size)
        if ok.size:
            assert q[e, 1] == pytest.approx(ok.std(), abs=1e-6 * (1 + np.abs(ok).max()))


@pytest.mark.parametrize("shape, fs", [((7, 1500), 50.0), ((3, 3000), 100.0), ((2, 7680), 256.0),
                                       ((4, 101), 100.0), ((70, 399), 100.0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_welch_matches_scipy(shape, fs, dtype):
    from scipy import signal

    x = (np.random.default_rng(shape[1]).normal(3, 25, shape)).astype(dtype)
    freqs, psd = epoch_psd(x, fs)
    expected_f, expected = signal.welch(x.astype(np.float64), fs, window="hann", nperseg=min(shape[1], round(4 * fs)))
    np.testing.assert_allclose(freqs, expected_f)
    np.testing.assert_allclose(psd, expected, rtol=1e-9, atol=1e-12 * expected.max())


def _bank(seed, t_len, k, j):
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.05, 1, (t_len, k))
    table = rng.uniform(0.0, 1, (t_len, k, j)) ** 3
    trans = rng.uniform(0.05, 1, (k, k))
    trans /= trans.sum(1, keepdims=True)
    return factor, table, trans, rng.dirichlet(np.ones(k))


@pytest.mark.parametrize("k, j", [(5, 61), (5, 3), (3, 9), (2, 1)])
def test_bank_of_models_matches_one_forward_backward_per_model(k, j):
    factor, table, trans, init = _bank(k * j, 200, k, j)
    evidence = bank_evidence(factor, table, trans, init)
    expected = []
    for m in range(j):
        post, log_evidence = forward_backward(np.log(factor * table[:, :, m]), np.log(trans), np.log(init))
        expected.append(log_evidence)
        np.testing.assert_allclose(bank_posterior(factor, table, trans, init, m), post, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(evidence, np.array(expected) - max(expected), rtol=1e-9, atol=1e-8)
    assert evidence.max() == 0.0


@pytest.mark.parametrize("k, j", [(5, 8), (3, 4)])
def test_bank_mixture_posterior_is_the_weighted_mean_of_the_models_posteriors(k, j):
    factor, table, trans, init = _bank(10 * k + j, 150, k, j)
    models = np.array([0, 2, j - 1])
    weights = np.array([0.2, 1.5, 0.3])
    expected = sum(w * bank_posterior(factor, table, trans, init, m) for m, w in zip(models, weights))
    got = bank_mixture_posterior(factor, table, trans, init, models, weights)
    np.testing.assert_allclose(got, expected / weights.sum(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


def test_a_model_that_explains_nothing_gets_no_weight_not_nan():
    factor, table, trans, init = _bank(5, 50, 5, 4)
    table[10, :, 2] = 0.0  # model 2 gives epoch 10 zero likelihood in every state
    evidence = bank_evidence(factor, table, trans, init)
    assert np.exp(evidence[2]) < 1e-200 and np.all(np.isfinite(np.delete(evidence, 2)))


@pytest.mark.parametrize("offset", [0.0, 5000.0, -2.0e5])
@pytest.mark.parametrize("shape, fs, seconds", [((5, 1536), 51.2, 3.75), ((3, 7), 2.0, 1.0), ((2, 9), 1.0, 2.0)])
def test_welch_removes_each_segments_mean_whatever_the_offset(offset, shape, fs, seconds):
    """The mean is taken off in the frequency domain (the Hann window's spectrum has two one-sided
    bins): the same as scipy's detrending of the samples, offset or not."""
    from scipy import signal

    x = np.random.default_rng(int(abs(offset)) + shape[1]).normal(offset, 25, shape)
    freqs, psd = epoch_psd(x, fs, seconds)
    n_per = round(seconds * fs)
    expected_f, expected = signal.welch(x, fs, window="hann", nperseg=n_per)
    np.testing.assert_allclose(freqs, expected_f)
    np.testing.assert_allclose(psd, expected, rtol=1e-6, atol=1e-9 * expected.max())
