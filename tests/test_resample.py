"""dsp.resample against scipy.signal.resample_poly, and the streaming resampler against one pass."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from dsp.resample import Resampler, design_polyphase, polyphase_resample, rational_factors, resample

RATES = [(50, 100), (100, 100), (125, 100), (200, 100), (250, 100), (256, 100), (500, 100),
         (256, 128), (250, 128), (100, 128)]


@pytest.mark.parametrize("fs_in, fs_out, up, down", [(256, 100, 25, 64), (250, 100, 2, 5), (500, 100, 1, 5),
                                                     (50, 100, 2, 1), (250.0, 128.0, 64, 125), (100, 100, 1, 1)])
def test_rational_factors_are_the_reduced_ratio(fs_in, fs_out, up, down):
    assert rational_factors(fs_in, fs_out) == (up, down)


@pytest.mark.parametrize("fs_in, fs_out", [(256, 0), (-1, 100), (1000.3, 100), (100, 100 * np.pi)])
def test_rational_factors_refuses_rates_it_cannot_resample_between(fs_in, fs_out):
    with pytest.raises(ValueError):
        rational_factors(fs_in, fs_out)


@pytest.mark.parametrize("fs_in, fs_out", RATES)
@pytest.mark.parametrize("n", [1, 37, 1001])
def test_resample_matches_scipy_resample_poly(fs_in, fs_out, n):
    x = np.random.default_rng(n).normal(0, 40, (3, n))
    up, down = rational_factors(fs_in, fs_out)
    expected = signal.resample_poly(x, up, down, axis=-1)
    y = resample(x, fs_in, fs_out)
    assert y.shape == expected.shape == (3, -(-n * fs_out // fs_in))
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12 * np.abs(x).max())


def test_resample_takes_float32_and_1d_and_computes_in_float64():
    x = np.random.default_rng(0).normal(0, 40, 2000).astype(np.float32)
    y = resample(x, 256, 100)
    assert y.ndim == 1 and y.dtype == np.float64
    np.testing.assert_allclose(y, signal.resample_poly(x.astype(np.float64), 25, 64), atol=1e-10)


def test_resample_with_another_window_matches_scipy():
    x = np.random.default_rng(2).normal(0, 40, (2, 500))
    np.testing.assert_allclose(resample(x, 250, 100, window="hamming"),
                               signal.resample_poly(x, 2, 5, axis=-1, window="hamming"), atol=1e-10)


def test_polyphase_taps_are_the_filter_split_by_phase():
    taps, half_len = design_polyphase(2, 5)
    h = signal.firwin(101, 1 / 5, window=("kaiser", 5.0)) * 2
    assert half_len == 50 and taps.shape == (2, 51)
    np.testing.assert_array_equal(taps[0], h[0::2])
    np.testing.assert_array_equal(taps[1, :50], h[1::2])
    assert taps[1, 50] == 0


def test_kernel_computes_any_output_range_from_a_window_of_the_input():
    x = np.random.default_rng(3).normal(0, 40, (2, 3000))
    taps, half_len = design_polyphase(25, 64)
    whole = polyphase_resample(x, taps, 64, half_len, 0, 0, 1172)
    # outputs 500..599 reach input samples 1255..1559; give it 1200..1699 only
    part = polyphase_resample(np.ascontiguousarray(x[:, 1200:1700]), taps, 64, half_len, 1200, 500, 100)
    np.testing.assert_array_equal(part, whole[:, 500:600])


def test_resampling_keeps_a_pass_band_sine_and_removes_what_would_alias():
    fs_in = 256.0
    t = np.arange(int(30 * fs_in)) / fs_in
    slow = 30.0 * np.sin(2 * np.pi * 10.0 * t)
    fast = 30.0 * np.sin(2 * np.pi * 70.0 * t)   # above the new Nyquist (50 Hz): must not fold to 30 Hz
    y_slow = resample(slow, fs_in, 100.0)
    y_fast = resample(fast, fs_in, 100.0)
    mid = slice(200, -200)
    t_out = np.arange(y_slow.size) / 100.0
    np.testing.assert_allclose(y_slow[mid], 30.0 * np.sin(2 * np.pi * 10.0 * t_out[mid]), atol=0.05)
    assert np.abs(y_fast[mid]).max() < 0.01 * 30.0


@pytest.mark.parametrize("fs_in, fs_out", [(256, 100), (250, 100), (50, 100), (125, 100), (100, 100)])
@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=8))
def test_streaming_blocks_give_the_one_pass_output(fs_in, fs_out, sizes):
    x = np.random.default_rng(len(sizes)).normal(0, 40, (2, sum(sizes))).astype(np.float32)
    stream = Resampler(fs_in, fs_out, 2)
    edges = np.cumsum([0, *sizes])
    pieces = [stream(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
    pieces.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), resample(x, fs_in, fs_out), rtol=0, atol=1e-10)


def test_streaming_output_keeps_up_with_the_input_and_bounded_memory():
    stream = Resampler(256, 100, 1)
    rng = np.random.default_rng(4)
    n_in = n_out = 0
    for _ in range(200):
        n_in += 32
        n_out += stream(rng.normal(0, 40, (1, 32))).shape[1]
        lag_seconds = n_in / 256 - n_out / 100
        assert 0 <= lag_seconds <= stream.delay_seconds
        assert stream._buffer.shape[1] <= 2 * 640 // 25 + 2 + 32   # the filter's reach, plus a block
    rest = stream.flush()
    assert n_out + rest.shape[1] == -(-n_in * 100 // 256)


def test_flush_starts_the_stream_over():
    x = np.random.default_rng(5).normal(0, 40, (1, 700))
    stream = Resampler(250, 100, 1)
    first = np.concatenate([stream(x), stream.flush()], axis=1)
    second = np.concatenate([stream(x), stream.flush()], axis=1)
    np.testing.assert_array_equal(first, second)


def test_streaming_refuses_a_block_with_the_wrong_number_of_rows():
    stream = Resampler(250, 100, 2)
    with pytest.raises(ValueError):
        stream(np.zeros((1, 200)))
    one_row = Resampler(250, 100, 1)
    np.testing.assert_array_equal(one_row(np.ones(300)), Resampler(250, 100, 1)(np.ones((1, 300))))


@pytest.mark.parametrize("up, down", [(25, 128), (1, 2), (1, 5), (25, 64), (3, 7), (5, 1)])
def test_windowed_sinc_is_scipys_firwin(up, down):
    from dsp.resample import windowed_sinc

    n = 20 * max(up, down) + 1
    np.testing.assert_allclose(windowed_sinc(n, 1.0 / max(up, down)),
                               signal.firwin(n, 1.0 / max(up, down), window=("kaiser", 5.0)), rtol=0, atol=1e-15)


def test_resampling_a_float32_signal_equals_resampling_it_in_float64():
    x = np.random.default_rng(7).normal(0, 30, (2, 5000)).astype(np.float32)
    np.testing.assert_allclose(resample(x, 256.0, 50.0), resample(x.astype(np.float64), 256.0, 50.0),
                               rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("down", [1, 2, 4, 5, 20])
@pytest.mark.parametrize("n", [1, 9, 37, 1001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decimate_matches_scipy_resample_poly_with_the_same_filter(down, n, dtype):
    from dsp.resample import decimate, design_decimator

    x = np.random.default_rng(n + down).normal(0, 40, (2, n)).astype(dtype)
    taps = design_decimator(down)
    expected = x.astype(np.float64) if down == 1 else signal.resample_poly(x.astype(np.float64), 1, down,
                                                                          axis=-1, window=taps)
    y = decimate(x, down)
    assert y.shape == expected.shape == (2, -(-n // down)) and y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12 * np.abs(x).max())
    np.testing.assert_allclose(decimate(x[0], down), y[0], rtol=0, atol=1e-12 * np.abs(x).max())


@pytest.mark.parametrize("down", [2, 5, 8])
def test_decimator_is_scipys_firwin_of_half_resample_polys_length(down):
    from dsp.resample import design_decimator

    n = 10 * down + 1
    np.testing.assert_allclose(design_decimator(down), signal.firwin(n, 1.0 / down, window=("kaiser", 5.0)),
                               rtol=0, atol=1e-15)
    assert design_decimator(1).tolist() == [1.0]
    with pytest.raises(ValueError):
        design_decimator(0)


def test_decimating_kernel_computes_any_output_range_from_a_window_of_the_input():
    from dsp.resample import design_decimator, fir_decimate

    x = np.random.default_rng(8).normal(0, 40, 3000)
    taps = design_decimator(5)  # 51 taps: output n reaches inputs 5 n - 25 .. 5 n + 25
    whole = fir_decimate(x, taps, 5, 0, 0, 600)
    part = fir_decimate(np.ascontiguousarray(x[1475:2025]), taps, 5, 1475, 300, 100)  # outputs 300..399
    # (equal to rounding: near the ends of x outputs are summed one by one, elsewhere eight at a time)
    np.testing.assert_allclose(part, whole[300:400], rtol=0, atol=1e-12)
    edge = fir_decimate(np.ascontiguousarray(x[:200]), taps, 5, 0, 0, 30)  # zeros before the start
    np.testing.assert_allclose(edge, whole[:30], rtol=0, atol=1e-12)


@pytest.mark.parametrize("fs_in, down", [(256.0, 5), (200.0, 4), (100.0, 2)])
def test_decimation_keeps_the_eeg_band_and_stops_mains_that_would_alias(fs_in, down):
    from dsp.resample import decimate

    t = np.arange(int(30 * fs_in)) / fs_in
    fs_out = fs_in / down
    mid = slice(100, -100)
    t_out = np.arange(-(-t.size // down)) * down / fs_in
    for f_hz, gain in ((2.0, 1.0), (10.0, 1.0), (16.0, 1.0)):  # pass band: within 1.5 %
        y = decimate(30.0 * np.sin(2 * np.pi * f_hz * t), down)
        np.testing.assert_allclose(y[mid], gain * 30.0 * np.sin(2 * np.pi * f_hz * t_out[mid]), atol=0.45)
    for f_hz in (50.0, 60.0):  # mains above the new Nyquist: folded, it would land in the EEG band
        if f_hz < fs_in / 2 and f_hz > fs_out / 2:
            y = decimate(30.0 * np.sin(2 * np.pi * f_hz * t), down)
            assert np.abs(y[mid]).max() < 0.01 * 30.0
