"""dsp.features: the stager's features, computed a chunk at a time, equal the whole-recording ones."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp import features
from dsp.complexity import permutation_entropy
from dsp.features import (EEG_FEATURES, WORKING_RATE_HZ, eeg_features, permutation_entropy3, to_working_rate,
                          working_rate_features)
from dsp.quality import epoch_quality


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(3, 60)),
                    elements=st.integers(-3, 3).map(float)),  # small integers: many ties
       delay=st.integers(1, 3))
def test_order_3_permutation_entropy_is_the_general_one(x, delay):
    np.testing.assert_allclose(permutation_entropy3(x, delay), permutation_entropy(x, 3, delay), rtol=1e-12)


def _whole_recording(eeg, fs, n_epochs):
    """The reference: resample each whole channel, then features of all its epochs in one pass."""
    n_per, n_work = int(round(30 * fs)), int(round(30 * WORKING_RATE_HZ))
    used = eeg[:, : n_epochs * n_per]
    working = to_working_rate(used, fs)[:, : n_epochs * n_work]
    feats = np.stack([eeg_features(row.reshape(1, n_epochs, n_work), WORKING_RATE_HZ) for row in working])
    quality = np.stack([epoch_quality(row.reshape(n_epochs, n_per)) for row in used])
    return feats, quality


def _night(fs, n_epochs, seed=0):
    rng = np.random.default_rng(seed)
    n = int(round(30 * fs)) * n_epochs + int(fs * 7)  # and a partial epoch, which is ignored
    t = np.arange(n) / fs
    slow = 40 * np.sin(2 * np.pi * 0.8 * t) * (1 + np.sin(2 * np.pi * t / 900))  # depth that changes
    return np.stack([slow + rng.normal(0, 10, n), 0.5 * slow + rng.normal(0, 15, n)])


@pytest.mark.parametrize("fs", [256.0, 100.0, 50.0])
def test_chunked_features_equal_one_pass_over_the_whole_recording(monkeypatch, fs):
    monkeypatch.setattr(features, "CHUNK_EPOCHS", 7)  # many chunk boundaries in a short recording
    eeg = _night(fs, 30)
    n = int(round(30 * fs))
    eeg[0, :40] = np.nan                    # lost at the very start: held at the first sample
    eeg[1, 7 * n - 30 : 7 * n + 20] = np.nan  # lost across a chunk boundary
    eeg[0, 12 * n : 14 * n] = np.nan        # two epochs lost
    got, quality = working_rate_features(eeg, fs, 30)
    expected, expected_quality = _whole_recording(eeg, fs, 30)
    assert got.shape == (2, 30, len(EEG_FEATURES))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(quality, expected_quality, rtol=1e-12, atol=1e-12)


class CountingReader:
    """A reader as a file-backed one behaves: samples on slicing only, and it counts what is read."""

    def __init__(self, data):
        self.data, self.shape, self.read_samples = data, data.shape, 0

    def __getitem__(self, key):
        row, columns = key
        out = self.data[row, columns].astype(np.float32)
        self.read_samples += out.size
        return out


def test_a_reader_is_read_a_chunk_at_a_time_with_the_same_result(monkeypatch):
    monkeypatch.setattr(features, "CHUNK_EPOCHS", 10)
    eeg = _night(200.0, 40, seed=3)
    reader = CountingReader(eeg)
    got, quality = working_rate_features(reader, 200.0, 40)
    expected, expected_quality = working_rate_features(eeg.astype(np.float32), 200.0, 40)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(quality, expected_quality)
    # each chunk is read once per channel, with a little context: not much more than the recording
    assert reader.read_samples < 1.3 * eeg.size


@pytest.mark.parametrize("lost", [[], [0], [9], [0, 1, 2], [7, 8, 9], list(range(10)), [4, 5]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_sample_helpers_match_a_mask(lost, dtype):
    from dsp.features import _finite_index, _has_nonfinite

    x = np.arange(1.0, 11.0, dtype=dtype)
    x[lost] = np.nan
    if lost:
        x[lost[-1]] = np.inf if len(lost) > 1 else np.nan
    finite = np.flatnonzero(np.isfinite(x))
    assert _finite_index(x, False) == (finite[0] if finite.size else -1)
    assert _finite_index(x, True) == (finite[-1] if finite.size else -1)
    assert _has_nonfinite(x) == bool(lost)
    assert _finite_index(x[:0], True) == -1 and not _has_nonfinite(x[:0])
