"""dsp.spectral.multitaper_psd against MNE's multitaper estimate and against known spectra; its
tapers (dsp.spectral.dpss_windows) against scipy's."""

import numpy as np
import pytest

from dsp.spectral import band_powers, dpss_windows, multitaper_psd

FS = 100.0


def _test_signal(n_epochs=3, n=3000, seed=0):
    """White noise (SD 10 uV) plus a 10-Hz sine of 20 uV amplitude (variance 200 uV^2)."""
    t = np.arange(n) / FS
    noise = np.random.default_rng(seed).normal(0, 10, (n_epochs, n))
    return noise + 20.0 * np.sin(2 * np.pi * 10.0 * t)


@pytest.mark.filterwarnings("ignore:Could not properly use low_bias")  # 0.5 Hz over 2.56 s: one taper
@pytest.mark.parametrize("n", [3000, 2999, 256])
@pytest.mark.parametrize("bandwidth_hz", [0.5, 1.0, 4.0])
def test_matches_mne_psd_array_multitaper(n, bandwidth_hz):
    mne_tf = pytest.importorskip("mne.time_frequency")
    x = _test_signal(n=n)
    if bandwidth_hz < FS / n:
        pytest.skip("bandwidth below the resolution of this epoch length")
    freqs, psd = multitaper_psd(x, FS, bandwidth_hz)
    expected, expected_freqs = mne_tf.psd_array_multitaper(x, FS, bandwidth=bandwidth_hz, adaptive=False,
                                                           low_bias=True, normalization="full", verbose=False)
    np.testing.assert_allclose(freqs, expected_freqs)
    np.testing.assert_allclose(psd, expected, rtol=1e-9)


def test_one_epoch_as_a_1d_array():
    x = _test_signal(1)[0]
    freqs, psd = multitaper_psd(x, FS)
    assert psd.shape == freqs.shape == (1501,)
    np.testing.assert_allclose(psd, multitaper_psd(x[None, :], FS)[1][0])


def test_density_integrates_to_the_variance_and_the_sine_sits_in_its_band():
    x = _test_signal()
    freqs, psd = multitaper_psd(x, FS, bandwidth_hz=1.0)
    df = freqs[1] - freqs[0]
    np.testing.assert_allclose(psd.sum(axis=1) * df, x.var(axis=1), rtol=0.03)
    # the sine's 200 uV^2 spreads over +-bandwidth/2; the noise adds 100 uV^2 * (1 Hz / 50 Hz)
    power = band_powers(psd, freqs, np.array([[9.5, 10.5 + 1e-9], [20.0, 40.0]]))
    np.testing.assert_allclose(power[:, 0], 200.0 + 2.0, rtol=0.05)
    # white noise: flat at 2 sigma^2 / fs (one-sided)
    np.testing.assert_allclose(power[:, 1] / 20.0, 2 * 100.0 / FS, rtol=0.1)


def test_removes_each_epochs_mean():
    x = _test_signal()
    np.testing.assert_allclose(multitaper_psd(x + 300.0, FS)[1], multitaper_psd(x, FS)[1], rtol=1e-9, atol=1e-9)


def test_refuses_a_bandwidth_finer_than_the_epoch_resolves():
    with pytest.raises(ValueError):
        multitaper_psd(_test_signal(n=1000), FS, bandwidth_hz=0.05)


@pytest.mark.parametrize("n, nw, k", [(2, 0.6, 1), (3, 1.0, 2), (64, 2.0, 3), (257, 3.5, 6), (1000, 4.0, 7),
                                      (8192, 2.0, 3), (3000, 15.0, 29), (4096, 1.2, 2)])
def test_dpss_windows_are_scipys_periodic_dpss(n, nw, k):
    from scipy.signal.windows import dpss

    expected, ratios = dpss(n, nw, k, sym=False, return_ratios=True)
    tapers, concentration = dpss_windows(n, nw, k)
    assert tapers.shape == (k, n)
    np.testing.assert_allclose(tapers, np.atleast_2d(expected), rtol=0, atol=1e-12)
    np.testing.assert_allclose(concentration, np.atleast_1d(ratios), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, nw, k", [(100, 0.0, 1), (100, 50.5, 3), (100, 2.0, 0), (100, 2.0, 101)])
def test_dpss_windows_refuse_what_has_no_tapers(n, nw, k):
    with pytest.raises(ValueError):
        dpss_windows(n, nw, k)

