"""dsp.filters against scipy.signal: causal filtering with carried state, zero-phase, streaming."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp.filters import StreamFilter, design_sos, sosfilt, sosfiltfilt, steady_state

FS = 250.0
BANDPASS = design_sos(FS, 0.5, 35.0)


@pytest.mark.parametrize("n_rows", [1, 3, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sosfilt_matches_scipy_from_rest_and_from_a_state(n_rows, dtype):
    rng = np.random.default_rng(n_rows)
    x = rng.normal(0, 50, (n_rows, 777)).astype(dtype)
    zi = np.zeros((n_rows, BANDPASS.shape[0], 2))
    np.testing.assert_allclose(sosfilt(BANDPASS, x, zi), signal.sosfilt(BANDPASS, x.astype(np.float64)),
                               rtol=1e-10, atol=1e-9)
    # scipy's state is (n_sections, n_rows, 2); ours (n_rows, n_sections, 2)
    start = rng.normal(0, 10, (n_rows, BANDPASS.shape[0], 2))
    state = start.copy()
    y = sosfilt(BANDPASS, x, state)
    expected, zf = signal.sosfilt(BANDPASS, x.astype(np.float64), zi=start.transpose(1, 0, 2))
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(state, zf.transpose(1, 0, 2), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("sos", [design_sos(FS, 1.0), design_sos(FS, high_hz=30.0, order=3),
                                 design_sos(FS, 0.3, 35.0, order=2)])
def test_designs_are_the_butterworth_filters_asked_for(sos):
    w, h = signal.sosfreqz(sos, worN=4096, fs=FS)
    assert np.abs(h).max() == pytest.approx(1.0, abs=1e-3)   # Butterworth: maximally flat, no ripple
    poles = np.concatenate([np.roots(section[3:]) for section in sos])
    assert np.all(np.abs(poles) < 1)  # stable


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(0, 600), max_size=6), n_rows=st.integers(1, 3))
def test_state_carried_across_any_block_split_equals_one_pass(cuts, n_rows):
    x = np.random.default_rng(len(cuts)).normal(0, 30, (n_rows, 600))
    whole = sosfilt(BANDPASS, x, np.zeros((n_rows, BANDPASS.shape[0], 2)))
    state = np.zeros((n_rows, BANDPASS.shape[0], 2))
    edges = [0, *sorted(cuts), 600]
    pieces = [sosfilt(BANDPASS, np.ascontiguousarray(x[:, a:b]), state) for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("shape", [(1000,), (3, 1000), (2, 40)])
@pytest.mark.parametrize("sos", [BANDPASS, design_sos(FS, high_hz=20.0, order=3)])
def test_sosfiltfilt_matches_scipy(shape, sos):
    x = np.random.default_rng(1).normal(0, 20, shape)
    np.testing.assert_allclose(sosfiltfilt(sos, x), signal.sosfiltfilt(sos, x, axis=-1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 5, 26, 27, 28])
def test_sosfiltfilt_of_a_signal_shorter_than_the_pad_reflects_what_there_is(n):
    # scipy's default pad here is 3 * (2 * 4 + 1) = 27 samples and it refuses shorter signals;
    # ours pads by n - 1 instead, which is scipy's result with padlen = n - 1
    assert BANDPASS.shape[0] == 4
    x = np.random.default_rng(n).normal(0, 20, (2, n)).astype(np.float32)
    y = sosfiltfilt(BANDPASS, x)
    assert y.shape == x.shape and y.dtype == np.float64
    expected = signal.sosfiltfilt(BANDPASS, x.astype(np.float64), axis=-1, padlen=min(27, n - 1))
    np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)


def _sine_gain(sos, f_hz, zero_phase):
    t = np.arange(int(40 * FS)) / FS
    x = np.sin(2 * np.pi * f_hz * t)[None, :]
    y = sosfiltfilt(sos, x) if zero_phase else sosfilt(sos, x, np.zeros((1, sos.shape[0], 2)))
    steady = y[0, int(15 * FS) : int(25 * FS)]  # far from both ends: no start-up transient
    return np.sqrt(2 * np.mean(steady**2))


@pytest.mark.parametrize("f_hz, low, high", [(2.0, 0.99, 1.01), (10.0, 0.99, 1.01), (20.0, 0.98, 1.01),
                                             (0.05, 0, 0.01), (70.0, 0, 0.03), (100.0, 0, 0.005)])
@pytest.mark.parametrize("zero_phase", [False, True])
def test_bandpass_passes_the_band_and_stops_the_rest(f_hz, low, high, zero_phase):
    gain = _sine_gain(BANDPASS, f_hz, zero_phase)
    assert low <= gain <= high
    # and it is the gain scipy's design promises (squared for forward-backward)
    _, h = signal.sosfreqz(BANDPASS, worN=[f_hz], fs=FS)
    assert gain == pytest.approx(abs(h[0]) ** (2 if zero_phase else 1), rel=0.01, abs=1e-4)


def test_zero_phase_filter_does_not_shift_a_sine():
    t = np.arange(int(20 * FS)) / FS
    x = np.sin(2 * np.pi * 10.0 * t)
    y = sosfiltfilt(BANDPASS, x)
    mid = slice(int(5 * FS), int(15 * FS))
    np.testing.assert_allclose(y[mid], x[mid], atol=0.02)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 200), min_size=1, max_size=8))
def test_stream_filter_across_blocks_equals_one_call(sizes):
    x = (np.random.default_rng(len(sizes)).normal(0, 30, (2, sum(sizes))) + 500.0).astype(np.float32)
    whole = StreamFilter(BANDPASS, 2)(x)
    stream = StreamFilter(BANDPASS, 2)
    edges = np.cumsum([0, *sizes])
    out = np.concatenate([stream(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, whole, rtol=1e-12, atol=1e-9)


def test_stream_filter_starts_in_steady_state_so_a_dc_offset_gives_no_transient():
    x = np.full((2, 500), 800.0)        # electrode offset only
    x[1] = -300.0
    np.testing.assert_allclose(StreamFilter(BANDPASS, 2)(x), 0.0, atol=1e-6)
    lowpass = design_sos(FS, high_hz=30.0)
    np.testing.assert_allclose(StreamFilter(lowpass, 2)(x), x, rtol=1e-9)
    # i.e. the state scipy's sosfilt_zi gives, scaled by the first sample
    zi = steady_state(lowpass, x[:, 0])
    np.testing.assert_allclose(zi, signal.sosfilt_zi(lowpass)[None] * x[:, :1, None])


@pytest.mark.parametrize("fs", [50.0, 100.0, 128.0, 256.0, 500.0])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("low, high", [(0.5, 22.0), (11.0, 16.0), (0.3, None), (None, 20.0), (0.5, 1000.0)])
def test_own_butterworth_design_is_scipys(fs, order, low, high):
    """Designed without scipy at run time, the sections equal scipy.signal.butter's (same pairing and order)."""
    sos = design_sos(fs, low, high, order)
    if high is not None:
        high = min(high, 0.45 * fs)
    if low is not None and high is not None:
        expected = signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    elif low is not None:
        expected = signal.butter(order, low, btype="highpass", fs=fs, output="sos")
    else:
        expected = signal.butter(order, high, btype="lowpass", fs=fs, output="sos")
    np.testing.assert_allclose(sos, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("low, high", [(0.0, 10.0), (10.0, 5.0), (None, None), (30.0, None)])
def test_impossible_designs_are_refused(low, high):
    with pytest.raises(ValueError):
        design_sos(50.0, low, high)


@pytest.mark.parametrize("sos", [BANDPASS, design_sos(FS, high_hz=20.0, order=3), design_sos(FS, 1.0, order=1)])
def test_steady_state_is_scipys_sosfilt_zi(sos):
    first = np.array([1.0, -3.5])
    np.testing.assert_allclose(steady_state(sos, first), signal.sosfilt_zi(sos)[None] * first[:, None, None],
                               rtol=1e-10, atol=1e-12)


def test_filtering_does_not_import_scipy_signal():
    """Importing scipy.signal takes most of a second: the staging path must not need it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom dsp.filters import design_sos, sosfiltfilt\n"
            "sosfiltfilt(design_sos(50.0, 0.5, 22.0), np.ones(100))\nprint('scipy.signal' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_scaled_state_is_the_unit_state_times_the_value():
    from dsp.filters import _scaled_state

    unit = np.random.default_rng(4).normal(size=(4, 2))
    state = np.empty((4, 2))
    _scaled_state(unit, -2.5, state)
    np.testing.assert_array_equal(state, unit * -2.5)


def _triangle_reference(x, width):
    """x minus its convolution with a (boxcar * boxcar) triangle, after odd reflection by 2 * (width // 2)."""
    n, pad = x.size, 2 * (width // 2)
    left = np.minimum(np.arange(1, pad + 1), n - 1)[::-1]
    right = np.maximum(n - 2 - np.arange(pad), 0)
    ext = np.concatenate([2 * x[0] - x[left], x, 2 * x[-1] - x[right]])
    triangle = np.convolve(np.ones(width) / width, np.ones(width) / width)
    return x - np.convolve(ext, triangle, mode="valid")


@pytest.mark.parametrize("n", [1, 2, 5, 44, 45, 46, 1000, 1001, 1003, 61441])
@pytest.mark.parametrize("width", [1, 3, 45])
def test_triangle_highpass_is_the_signal_minus_its_triangular_moving_average(n, width):
    from dsp.filters import triangle_highpass

    x = np.random.default_rng(n).normal(0, 30, n)
    np.testing.assert_allclose(triangle_highpass(x, width), _triangle_reference(x, width), rtol=0, atol=1e-11)


@pytest.mark.parametrize("fs", [50.0, 51.2, 62.5])
def test_triangle_highpass_halves_the_cutoff_and_passes_the_eeg_band(fs):
    from dsp.filters import moving_average_width, triangle_highpass

    width = moving_average_width(fs, 0.5)
    assert width % 2 == 1
    t = np.arange(int(120 * fs)) / fs
    mid = slice(int(10 * fs), -int(10 * fs))
    for f_hz, low, high in ((0.05, 0.0, 0.03), (0.5, 0.4, 0.6), (2.0, 0.95, 1.06), (10.0, 0.95, 1.06)):
        y = triangle_highpass(np.sin(2 * np.pi * f_hz * t), width)
        gain = np.sqrt(2 * np.mean(y[mid] ** 2))
        assert low <= gain <= high, (f_hz, gain)
    # zero phase: a sine in the pass band comes out where it went in
    y = triangle_highpass(np.sin(2 * np.pi * 5.0 * t), width)
    assert np.corrcoef(y[mid], np.sin(2 * np.pi * 5.0 * t[mid]))[0, 1] > 0.999


def test_triangle_highpass_of_a_stretch_equals_the_whole_signals_away_from_its_ends():
    from dsp.filters import triangle_highpass

    x = np.random.default_rng(9).normal(0, 30, 3000)
    whole = triangle_highpass(x, 45)
    part = triangle_highpass(x[1000:2000], 45)
    np.testing.assert_allclose(part[44:-44], whole[1044:1956], rtol=0, atol=1e-10)
