"""dsp.features: the stager's features, computed a chunk at a time, equal the whole-recording ones."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp import features
from dsp.complexity import permutation_entropy
from dsp.features import (EEG_FEATURES, eeg_features, permutation_entropy3, to_working_rate, welch_seconds,
                          working_rate, working_rate_features)
from dsp.quality import epoch_quality


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(3, 60)),
                    elements=st.integers(-3, 3).map(float)),  # small integers: many ties
       delay=st.integers(1, 3))
def test_order_3_permutation_entropy_is_the_general_one(x, delay):
    np.testing.assert_allclose(permutation_entropy3(x, delay), permutation_entropy(x, 3, delay), rtol=1e-12)


def _whole_recording(eeg, fs, n_epochs):
    """The reference: resample each whole channel, then features of all its epochs in one pass."""
    rate, _ = working_rate(fs)
    n_per, n_work = int(round(30 * fs)), int(round(30 * rate))
    used = eeg[:, : n_epochs * n_per]
    working = to_working_rate(used, fs)[:, : n_epochs * n_work]
    feats = np.stack([eeg_features(row.reshape(1, n_epochs, n_work), rate) for row in working])
    quality = np.stack([epoch_quality(row.reshape(n_epochs, n_per)) for row in used])
    return feats, quality


def _night(fs, n_epochs, seed=0):
    rng = np.random.default_rng(seed)
    n = int(round(30 * fs)) * n_epochs + int(fs * 7)  # and a partial epoch, which is ignored
    t = np.arange(n) / fs
    slow = 40 * np.sin(2 * np.pi * 0.8 * t) * (1 + np.sin(2 * np.pi * t / 900))  # depth that changes
    return np.stack([slow + rng.normal(0, 10, n), 0.5 * slow + rng.normal(0, 15, n)])


@pytest.mark.parametrize("fs", [256.0, 100.0, 50.0, 125.0, 80.0])
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


@pytest.mark.parametrize("fs", [256.0, 125.0])
@pytest.mark.parametrize("workers", [2, 3, 50])
def test_threads_share_the_chunks_with_the_same_numbers(monkeypatch, fs, workers):
    monkeypatch.setattr(features, "CHUNK_EPOCHS", 5)
    eeg = _night(fs, 30, seed=2)
    n = int(round(30 * fs))
    eeg[0, :40] = np.nan                       # held at the first finite sample
    eeg[1, 15 * n - 500 : 15 * n + 50] = np.nan  # lost just before the chunk a second thread starts with
    eeg[0, 9 * n : 11 * n] = np.nan            # whole epochs lost, and held into the next chunk
    eeg[1, 20 * n - 9000 : 25 * n] = np.nan      # lost for more than a chunk
    one = working_rate_features(eeg, fs, 30, workers=1)
    shared = working_rate_features(eeg, fs, 30, workers=workers)
    np.testing.assert_array_equal(shared[0], one[0])
    np.testing.assert_array_equal(shared[1], one[1])


@pytest.mark.parametrize("lost", [0, 1, 255, 256, 257, 1300, 6000])
def test_a_chunk_taken_out_of_order_holds_the_last_finite_sample_before_it(lost):
    from dsp.features import _held_before

    x = np.arange(10_000, dtype=np.float64)[None, :]
    x[0, 8_000 - lost : 8_000] = np.nan
    assert _held_before(x, 0, 8_000, 10_000) == 8_000 - lost - 1
    x[0, :5] = np.nan  # nothing finite before: the channel's first finite sample
    assert _held_before(x, 0, 5, 10_000) == 5.0
    assert _held_before(np.full((1, 100), np.nan), 0, 50, 100) == 0.0


def test_default_workers_follow_a_cohort_worker_s_thread_setting(monkeypatch):
    import os

    from dsp.features import default_workers

    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == cores
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")  # what dreamsync.cohort sets in its workers
    assert default_workers() == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "junk")
    assert default_workers() == cores


def test_a_thread_that_fails_raises_in_the_caller(monkeypatch):
    eeg = _night(100.0, 20)
    calls = []

    def failing(epochs):
        calls.append(epochs.shape)
        if len(calls) > 2:
            raise RuntimeError("kernel failed")
        return np.zeros((epochs.shape[0], 3))

    monkeypatch.setattr(features, "CHUNK_EPOCHS", 5)
    monkeypatch.setattr(features, "epoch_quality", failing)
    with pytest.raises(RuntimeError, match="kernel failed"):
        working_rate_features(eeg, 100.0, 20, workers=2)


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


@pytest.mark.parametrize("fs, rate, down", [(256.0, 51.2, 5), (512.0, 51.2, 10), (250.0, 50.0, 5), (200.0, 50.0, 4),
                                            (100.0, 50.0, 2), (50.0, 50.0, 1), (128.0, 64.0, 2), (125.0, 62.5, 2),
                                            (1000.0, 50.0, 20), (80.0, 50.0, 0), (99.0, 50.0, 0)])
def test_working_rate_is_an_integer_decimation_into_50_to_64_hz_or_resampling_to_50(fs, rate, down):
    assert working_rate(fs) == (rate, down)
    if down:
        assert 50.0 <= fs / down <= 64.0 and round(30 * fs) % down == 0


@pytest.mark.parametrize("n, fs, seconds", [(1500, 50.0, 4.0), (1536, 51.2, 3.75), (1875, 62.5, 4.0),
                                            (1920, 64.0, 4.0)])
def test_welch_segments_tile_the_epoch_and_last_about_four_seconds(n, fs, seconds):
    got = welch_seconds(n, fs)
    assert got == seconds
    length = round(got * fs)
    assert (2 * n) % length == 0  # half-overlapping segments end exactly at the epoch's end


def test_features_of_the_same_eeg_agree_across_recording_rates():
    """Bands are in Hz: a night recorded at 256 Hz (worked at 51.2 Hz) and at 200 Hz (50 Hz) gives
    the same features within their estimation noise."""
    seconds, out = 30 * 20, []
    rng = np.random.default_rng(11)
    fine = 1024.0  # a common "analog" signal: 1/f noise plus a 10-Hz rhythm
    n = int(seconds * fine)
    spectrum = (rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)) / np.maximum(
        np.fft.rfftfreq(n, 1 / fine), 0.3)
    analog = np.fft.irfft(spectrum, n)
    analog = 40 * analog / analog.std() + 10 * np.sin(2 * np.pi * 10.0 * np.arange(n) / fine)
    for fs in (256.0, 200.0):
        step = int(fine // fs) if fine % fs == 0 else None
        x = analog[::step] if step else np.interp(np.arange(int(seconds * fs)) / fs, np.arange(n) / fine, analog)
        feats, _ = working_rate_features(x[None, :], fs, 20)
        out.append(feats[0].mean(axis=0))
    np.testing.assert_allclose(out[0][:5], out[1][:5], atol=0.05)  # log10 band powers and shares
    np.testing.assert_allclose(out[0][5:], out[1][5:], atol=0.1)  # slope, entropy


@pytest.mark.parametrize("n_per, fs", [(200, 50.0), (192, 51.2), (250, 62.5)])
def test_spectral_features_are_log_band_powers_shares_and_the_spectral_slope(n_per, fs):
    from dsp.features import _EEG_BANDS_HZ, _SLOPE_HZ, _slope_design, spectral_features

    rng = np.random.default_rng(n_per)
    freqs = np.fft.rfftfreq(n_per, 1 / fs)
    psd = rng.gamma(2.0, 1.0, (6, freqs.size)) * 100 / np.maximum(freqs, 0.5) ** 2
    psd[0, :] = 0.0  # a flat-zero spectrum stays finite
    fit, centred = _slope_design(freqs.size, freqs[1])
    out = np.empty((6, len(_EEG_BANDS_HZ) + 1))
    spectral_features(psd, freqs, _EEG_BANDS_HZ, fit, centred, out)
    df = freqs[1]
    power = np.stack([psd[:, (freqs >= lo) & (freqs < hi)].sum(1) * df for lo, hi in _EEG_BANDS_HZ], axis=1) + 1e-12
    in_fit = (freqs >= _SLOPE_HZ[0]) & (freqs <= _SLOPE_HZ[1])
    slope = [np.polyfit(np.log10(freqs[in_fit]), np.log10(row[in_fit] + 1e-12), 1)[0] for row in psd]
    np.testing.assert_allclose(out[:, 0], np.log10(power[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(out[:, 1:5], np.log10(power[:, 1:] / power.sum(1, keepdims=True)), rtol=1e-12)
    np.testing.assert_allclose(out[:, 5], slope, rtol=1e-9, atol=1e-12)
