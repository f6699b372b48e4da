"""dsp.spectrogram.multitaper_spectrogram against a direct DPSS computation, MNE, and known spectra."""

import numpy as np
import pytest
from scipy.signal.windows import dpss

from dsp.spectrogram import MAX_MISSING, multitaper_spectrogram

FS = 100.0


def _noise_and_sine(seconds, fs, freq=10.0, amplitude=20.0, sd=10.0, seed=0):
    t = np.arange(int(seconds * fs)) / fs
    return np.random.default_rng(seed).normal(0, sd, t.size) + amplitude * np.sin(2 * np.pi * freq * t)


def _reference(x, fs, window_s, step_s, bandwidth_hz):
    """Each window: mean removed, DPSS tapers with concentration > 0.9, ratio-weighted |FFT|^2, one-sided."""
    n = int(round(window_s * fs))
    hop = int(round(step_s * fs))
    half_nbw = bandwidth_hz * n / (2 * fs)
    tapers, ratios = dpss(n, half_nbw, int(2 * half_nbw), sym=False, return_ratios=True)
    tapers, ratios = tapers[ratios > 0.9], ratios[ratios > 0.9]
    columns = []
    for start in range(0, x.size - n + 1, hop):
        seg = x[start:start + n] - x[start:start + n].mean()
        power = sum(w * np.abs(np.fft.rfft(seg * taper)) ** 2 for taper, w in zip(tapers, ratios))
        power = power * 2 / (fs * ratios.sum())
        power[0] /= 2
        if n % 2 == 0:
            power[-1] /= 2
        columns.append(power)
    return np.fft.rfftfreq(n, 1 / fs), np.array(columns).T


@pytest.mark.parametrize("window_s, step_s, bandwidth_hz", [(30.0, 30.0, 1.0), (10.0, 5.0, 2.0), (4.0, 1.0, 1.0)])
def test_matches_a_direct_dpss_computation(window_s, step_s, bandwidth_hz):
    x = _noise_and_sine(125, FS)
    freqs, times, psd = multitaper_spectrogram(x, FS, window_seconds=window_s, step_seconds=step_s,
                                               bandwidth_hz=bandwidth_hz, fmax=FS / 2, working_fs=None)
    ref_freqs, ref = _reference(x, FS, window_s, step_s, bandwidth_hz)
    np.testing.assert_allclose(freqs, ref_freqs)
    np.testing.assert_allclose(psd, ref, rtol=1e-9)
    np.testing.assert_allclose(times, np.arange(ref.shape[1]) * step_s + window_s / 2)


def test_matches_mne_on_each_window():
    mne_tf = pytest.importorskip("mne.time_frequency")
    x = _noise_and_sine(90, FS, seed=3)
    freqs, _, psd = multitaper_spectrogram(x, FS, fmax=30.0, working_fs=None)
    windows = x.reshape(3, 3000)
    expected, expected_freqs = mne_tf.psd_array_multitaper(windows, FS, bandwidth=1.0, adaptive=False,
                                                           low_bias=True, normalization="full", verbose=False)
    keep = expected_freqs <= 30.0
    np.testing.assert_allclose(freqs, expected_freqs[keep])
    np.testing.assert_allclose(psd, expected[:, keep].T, rtol=1e-9)


def test_resampled_night_keeps_the_spectrum_below_fmax():
    fs = 256.0
    x = _noise_and_sine(300, fs, freq=12.0, amplitude=20.0, sd=10.0, seed=1)
    freqs, times, psd = multitaper_spectrogram(x, fs)  # resampled to 100 Hz first
    assert freqs[-1] == pytest.approx(30.0) and freqs[1] == pytest.approx(1 / 30)
    assert psd.shape == (freqs.size, 10) and times[0] == pytest.approx(15.0)
    assert np.all(np.abs(freqs[np.argmax(psd, axis=0)] - 12.0) < 0.5)  # within the 1-Hz bandwidth
    # white noise of SD 10 uV at 256 Hz: 100 / 128 uV^2/Hz, away from the sine
    floor = psd[(freqs > 2) & (freqs < 9)].mean()
    assert floor == pytest.approx(100 / 128, rel=0.05)
    # the sine's power (amplitude^2 / 2 = 200 uV^2) is all there, within the 1-Hz band around it
    near = (freqs > 11.2) & (freqs < 12.8)
    assert ((psd[near] - floor).sum(axis=0) * (freqs[1] - freqs[0])).mean() == pytest.approx(200, rel=0.05)


def test_missing_samples_are_compensated_or_the_window_left_out():
    x = _noise_and_sine(120, FS, seed=2)
    clean = multitaper_spectrogram(x, FS, working_fs=None)[2]
    holed = x.copy()
    holed[100:400] = np.nan  # 10 % of window 0
    holed[3000 + 200:3000 + 200 + int(MAX_MISSING * 3000) + 30] = np.nan  # over half of window 1
    freqs, _, psd = multitaper_spectrogram(holed, FS, working_fs=None)
    assert np.isnan(psd[:, 1]).all()
    assert np.isfinite(psd[:, [0, 2, 3]]).all()
    band = (freqs > 2) & (freqs < 8)
    assert psd[band, 0].mean() == pytest.approx(clean[band, 0].mean(), rel=0.15)
    np.testing.assert_allclose(psd[:, 2:], clean[:, 2:])


def test_bad_arguments_are_refused():
    x = np.zeros(1000)
    with pytest.raises(ValueError, match="shorter than one"):
        multitaper_spectrogram(x, FS)
    with pytest.raises(ValueError, match="must exceed"):
        multitaper_spectrogram(np.zeros(30000), 256.0, fmax=60.0)
    with pytest.raises(ValueError, match="one channel"):
        multitaper_spectrogram(np.zeros((2, 3000)), FS)
