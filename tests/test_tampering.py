"""Tampering detector: kernels against numpy, replays, splices and warps found offline and live, clean signals left alone."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import signal

from dsp.tampering import (
    TamperingMonitor,
    anchor_fingerprints,
    detect_tampering,
    duplicate_pairs,
    exact_copy_extent,
    gap_parts,
    masked_quantiles,
    off_grid_counts,
    quantisation_grid,
    sample_hashes,
    spectral_summaries,
    tapered_frames,
)
from firmware_sim.adjustments import Tampering, inject

FS = 200.0


# ----------------------------------------------------------------------------- numpy references

def splitmix_reference(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def levels_reference(x):
    return np.rint(np.asarray(x).astype(np.float32).astype(np.float64) * 64.0).astype(np.int64)


def sample_hashes_reference(x):
    levels = levels_reference(x)
    changed = np.ones(levels.size, dtype=bool)
    changed[1:] = levels[1:] != levels[:-1]
    return splitmix_reference(levels.view(np.uint64)), changed


def anchor_fingerprints_reference(hashes, ok, changed, spacing, block, min_changed):
    positions, fingerprints = [], []
    for i in range(hashes.size - block + 1):
        if int(hashes[i]) % spacing or not ok[i:i + block].all() or changed[i:i + block].sum() < min_changed:
            continue
        weights = splitmix_reference(np.arange(block, dtype=np.uint64)) | np.uint64(1)
        with np.errstate(over="ignore"):
            total = np.sum(hashes[i:i + block] * weights, dtype=np.uint64)  # mod 2^64
        positions.append(i)
        fingerprints.append(splitmix_reference(total))
    return np.array(positions, dtype=np.int64), np.array(fingerprints, dtype=np.uint64)


floats = st.floats(-500, 500, allow_nan=False, width=32)


@settings(max_examples=30, deadline=None)
@given(x=hnp.arrays(np.float64, st.integers(0, 200), elements=st.one_of(floats, st.sampled_from([0.0, 1.0 / 64]))))
def test_sample_hashes_match_numpy(x):
    hashes, changed = sample_hashes(x)
    ref_hashes, ref_changed = sample_hashes_reference(x)
    np.testing.assert_array_equal(hashes, ref_hashes)
    np.testing.assert_array_equal(changed, ref_changed)


def test_sample_hashes_survive_a_float32_round_trip():
    x = np.random.default_rng(0).normal(0, 30, 1000)
    assert np.array_equal(sample_hashes(x)[0], sample_hashes(x.astype(np.float32))[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 400), spacing=st.sampled_from([4, 8, 16]),
       block=st.integers(2, 24))
def test_anchor_fingerprints_match_python(seed, n, spacing, block):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0, 5, n), 1)
    x[rng.random(n) < 0.3] = 0.0  # repeated values: some blocks are uninformative
    hashes, changed = sample_hashes(x)
    ok = rng.random(n) > 0.05
    got = anchor_fingerprints(hashes, ok, changed, spacing, block, block // 2)
    want = anchor_fingerprints_reference(hashes, ok, changed, spacing, block, block // 2)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("chunk", [7, 50, 1000])
def test_anchors_hashed_by_chunks_are_those_of_the_whole_channel(chunk):
    from dsp.tampering import _anchors

    rng = np.random.default_rng(chunk)
    x = np.round(rng.normal(0, 5, 900), 1)
    x[rng.random(900) < 0.3] = 0.0
    ok = rng.random(900) > 0.02
    hashes, changed = sample_hashes(x)
    want = anchor_fingerprints(hashes, ok, changed, 4, 12, 6)
    got = _anchors(x, ok, 4, 12, chunk)
    assert want[0].size > 50
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_anchor_fingerprints_depend_on_the_order_of_the_samples():
    hashes = np.arange(1, 65, dtype=np.uint64) * np.uint64(4)  # every sample an anchor (spacing 4)
    ok, changed = np.ones(64, dtype=bool), np.ones(64, dtype=bool)
    swapped = hashes.copy()
    swapped[[1, 2]] = swapped[[2, 1]]
    _, fp = anchor_fingerprints(hashes, ok, changed, 4, 8, 4)
    _, fp_swapped = anchor_fingerprints(swapped, ok, changed, 4, 8, 4)
    assert fp[0] != fp_swapped[0] and fp[1] != fp_swapped[1] and np.array_equal(fp[3:], fp_swapped[3:])
    assert np.unique(fp).size == fp.size


@settings(max_examples=30, deadline=None)
@given(fps=hnp.arrays(np.uint64, st.integers(0, 40), elements=st.integers(0, 6)), max_group=st.integers(2, 5))
def test_duplicate_pairs_match_python(fps, max_group):
    positions = np.random.default_rng(len(fps)).permutation(1000)[:fps.size].astype(np.int64)
    order = np.argsort(fps, kind="stable")
    got = duplicate_pairs(fps[order], positions[order], max_group)
    want = []
    for value in np.unique(fps):
        members = positions[fps == value]
        if 2 <= members.size <= max_group:
            want += [(min(a, b), max(a, b)) for i, a in enumerate(members) for b in members[i + 1:]]
    assert sorted(map(tuple, got.tolist())) == sorted(want)


def exact_copy_extent_reference(x, ok, start, stop, lag):
    levels = levels_reference(x)

    def same(i):
        return not (ok[i] and ok[i - lag]) or np.array_equal(levels[:, i], levels[:, i - lag])

    first, end = start, stop
    while first - 1 - lag >= 0 and same(first - 1):
        first -= 1
    while end < x.shape[1] and same(end):
        end += 1
    return first, end


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lag=st.integers(1, 30), length=st.integers(1, 40))
def test_exact_copy_extent_matches_python(seed, lag, length):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 10, (2, 150))
    start = int(rng.integers(lag, 150 - length + 1)) if 150 - length + 1 > lag else lag
    stop = min(150, start + length)
    x[:, start:stop] = x[:, start - lag:stop - lag]
    ok = rng.random(150) > 0.1
    assert exact_copy_extent(x, ok, start, stop, lag) == exact_copy_extent_reference(x, ok, start, stop, lag)


def bridged_reference(x, ok):
    t = np.arange(x.size)
    return np.interp(t, t[ok], x[ok]) if ok.any() else np.zeros(x.size)


@settings(max_examples=30, deadline=None)
@given(x=hnp.arrays(np.float64, 60, elements=st.floats(-100, 100)), ok=hnp.arrays(np.bool_, 60))
def test_tapered_frames_bridge_gaps_like_interp(x, ok):
    taper = np.hanning(20).astype(np.float32)
    got = tapered_frames(x, ok, taper)
    for r in range(3):
        frame, present = x[20 * r:20 * r + 20], ok[20 * r:20 * r + 20]
        mean = frame[present].mean() if present.any() else 0.0
        want = (bridged_reference(frame, present) - mean) * taper
        np.testing.assert_allclose(got[r], want, rtol=1e-5, atol=1e-4)


def test_a_railed_electrode_is_dead_not_a_signal():
    """An input stuck at the ADC limit (187500 uV) is flat: no float32 round-off of the offset may pass
    for a signal (its frames are dead, so its lost mains line is no evidence)."""
    from dsp.tampering import _Frames

    rng = np.random.default_rng(3)
    n = int(FS * 60)
    x = np.vstack([np.full(n, 187500.0), 3000.0 + rng.normal(0, 5, n)])
    frames = _Frames(x, np.ones(x.shape[1], bool), FS)
    assert not frames.alive[0].any() and frames.alive[1].all()
    offset_free = _Frames(x[1:] - 3000.0, np.ones(x.shape[1], bool), FS)
    np.testing.assert_allclose(frames.bands[1], offset_free.bands[0], atol=1e-3)


def test_spectral_summaries_match_numpy():
    rng = np.random.default_rng(4)
    spectrum = (rng.normal(size=(6, 41)) + 1j * rng.normal(size=(6, 41))).astype(np.complex64)
    power = np.abs(spectrum.astype(np.complex128)) ** 2
    band_of_bin = np.full(41, -1)
    band_of_bin[3:10], band_of_bin[12:30] = 0, 1
    band_of_bin[20] = -1
    lines, offsets = np.array([15, 25]), np.array([-5, -4, -3, 3, 4, 5])
    levels, total, phasors, noise, near = spectral_summaries(spectrum, band_of_bin, 2, lines, offsets, 6)
    for b in range(2):
        np.testing.assert_allclose(levels[:, b], power[:, band_of_bin == b].mean(axis=1) + 1e-20, rtol=1e-6)
    np.testing.assert_allclose(total, power[:, 2:].sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(phasors, spectrum[:, lines], rtol=1e-6)
    for i, k0 in enumerate(lines):
        np.testing.assert_allclose(noise[:, i], np.median(power[:, k0 + offsets], axis=1), rtol=1e-6)
        np.testing.assert_allclose(near[:, i], power[:, k0 - 6:k0 + 7], rtol=1e-5)
    odd = np.array([-4, -3, 3, 4, 5])  # an odd count: the middle value itself
    noise = spectral_summaries(spectrum, band_of_bin, 2, lines, odd, 6)[3]
    for i, k0 in enumerate(lines):
        np.testing.assert_allclose(noise[:, i], np.median(power[:, k0 + odd], axis=1), rtol=1e-6)


def deficits_reference(y, use, f):
    """The deficits as whole-array numpy expressions."""
    deficit = (f["floor"] - y) / f["spread"]
    cliff = np.concatenate(((f["cfloor"] - np.diff(y, axis=2)) / f["cspread"],
                            (f["c2floor"] - (y[..., 2:] - y[..., :-2])) / f["c2spread"]), axis=2)
    good = use & (deficit[..., 0] <= 3.0) & np.isfinite(deficit).all(axis=2) & np.isfinite(cliff).all(axis=2)
    keep = good[..., None]
    depth_db = np.where(keep, np.nan_to_num(f["floor"] - y)[..., 1:], 0.0) * (10.0 / np.log(10.0))
    return (np.where(keep, np.nan_to_num(deficit[..., 1:]), 0.0), np.where(keep, np.nan_to_num(cliff), 0.0),
            good, depth_db)


@pytest.mark.parametrize("per_frame", [False, True])
def test_deficits_match_numpy(per_frame):
    from dsp.tampering import _deficits

    rng = np.random.default_rng(7)
    n_ch, n, nb = 2, 50, 6
    y = rng.normal(0, 2, (n_ch, n, nb))
    y[0, 3, 2], y[1, 7, 4] = np.nan, -np.inf  # not analysable
    use = rng.random((n_ch, n)) > 0.1

    def spread(k):
        return rng.uniform(0.5, 2.0, (n_ch, 1, k))

    f = {"floor": rng.normal(0, 1, (n_ch, n if per_frame else 1, nb)), "spread": spread(nb),
         "cfloor": rng.normal(0, 1, (n_ch, 1, nb - 1)), "cspread": spread(nb - 1),
         "c2floor": rng.normal(0, 1, (n_ch, 1, nb - 2)), "c2spread": spread(nb - 2)}
    got, want = _deficits(y, use, f), deficits_reference(y, use, f)
    assert want[2].sum() > 50 and not want[2][0, 3] and not want[2][1, 7]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_gap_parts_match_numpy():
    rng = np.random.default_rng(2)
    frames = rng.normal(size=(5, 64)).astype(np.float32)
    ok = rng.random((5, 64)) > 0.2
    bins = np.array([3, 25])
    want = (frames * ~ok) @ np.exp(-2j * np.pi * np.outer(np.arange(64), bins) / 64)
    np.testing.assert_allclose(gap_parts(frames, ok, bins), want, rtol=1e-5, atol=1e-5)


def test_band_levels_ignore_the_mains_line():
    from dsp.tampering import _band_bins, _Frames

    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1.0, (1, 60 * 200))
    line = 30.0 * np.sin(2 * np.pi * 50.0 * np.arange(noise.shape[1]) / FS)
    ok = np.ones(noise.shape[1], dtype=bool)
    plain, lined = _Frames(noise, ok, FS), _Frames(noise + line, ok, FS)
    np.testing.assert_allclose(plain.bands, lined.bands, atol=0.02)  # a 30-uV line moves no band (< 0.1 dB)
    band_of_bin, sizes = _band_bins(FS, 400)
    frame = noise[0, :400] * np.hanning(400)
    power = np.abs(np.fft.rfft(frame)) ** 2
    want = [np.log(power[band_of_bin == b].mean()) for b in range(sizes.size)]
    np.testing.assert_allclose(plain.bands[0, 0], want, rtol=1e-4)
    assert band_of_bin[100] == -1 and (sizes >= 4).all()  # bin 100 is 50 Hz


@settings(max_examples=30, deadline=None)
@given(values=hnp.arrays(np.float64, (3, 17), elements=st.floats(-1e3, 1e3)),
       use=hnp.arrays(np.bool_, (3, 17)), q=st.floats(0, 1))
def test_masked_quantiles_match_numpy(values, use, q):
    got = masked_quantiles(values, use, np.array([q, 0.5]))
    for r in range(3):
        if use[r].any():
            np.testing.assert_allclose(got[r], np.quantile(values[r, use[r]], [q, 0.5]), rtol=1e-9, atol=1e-9)
        else:
            assert np.isnan(got[r]).all()


@pytest.mark.parametrize("n", [1, 5, 17, 30, 40, 300])  # order statistics near an end are selected in one pass
def test_masked_quantiles_near_the_ends_and_in_the_middle(n):
    rng = np.random.default_rng(n)
    values = rng.normal(size=(4, n))
    values[:, ::7] = 1.0  # ties
    values[1, 0] = np.nan  # left out, like an unused entry
    use = rng.random((4, n)) > 0.2
    use[0] = True
    qs = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
    got = masked_quantiles(values, use, qs)
    for r in range(4):
        keep = use[r] & np.isfinite(values[r])
        if keep.any():
            np.testing.assert_allclose(got[r], np.quantile(values[r, keep], qs), rtol=1e-12, atol=1e-15)
        else:
            assert np.isnan(got[r]).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 120), n_frame=st.integers(1, 25),
       step=st.sampled_from([0.01, 0.0223, 1.0]), offset=st.floats(-1.0, 1.0))
def test_off_grid_counts_match_numpy(seed, n, n_frame, step, offset):
    rng = np.random.default_rng(seed)
    x = offset + step * rng.integers(-5000, 5000, n).astype(np.float64)
    stray = rng.random(n) < 0.3
    x[stray] += step * rng.uniform(0.05, 0.95, stray.sum())  # off the grid by more than the tolerance
    repeat = np.flatnonzero(rng.random(n) < 0.2)
    x[repeat[repeat > 0]] = x[repeat[repeat > 0] - 1]  # flat runs count once
    ok = rng.random(n) > 0.2
    off, present = off_grid_counts(x, ok, step, offset, step / 32, n_frame)
    m = n // n_frame
    counted = ok & np.concatenate(([True], x[1:] != x[:-1]))
    r = (x - offset) / step
    outside = (np.abs(r - np.rint(r)) * step > step / 32) & counted
    np.testing.assert_array_equal(off, outside[:m * n_frame].reshape(m, n_frame).sum(axis=1))
    np.testing.assert_array_equal(present, counted[:m * n_frame].reshape(m, n_frame).sum(axis=1))


def quantised(x, step=0.0223, offset=0.37):
    """``x`` on an ADC's grid: levels at ``offset + k * step`` uV."""
    return offset + step * np.rint((x - offset) / step)


def test_quantisation_grid_is_recovered_and_refused_for_continuous_signal():
    rng = np.random.default_rng(4)
    x = eeg(600, rng, channels=1)[0]
    grid = quantisation_grid(quantised(x))
    assert grid is not None
    step, offset = grid
    assert abs(step - 0.0223) < 1e-8 and abs(np.remainder(offset - 0.37 + step / 2, step) - step / 2) < 1e-5
    mixed = quantised(x)
    mixed[20_000:40_000] = x[20_000:40_000]  # a sixth of the recording resampled: the grid stays known
    assert quantisation_grid(mixed) == pytest.approx(grid, abs=1e-6)
    assert quantisation_grid(x) is None  # continuous
    assert quantisation_grid(x.astype(np.float32)) is None  # float32 round-off is no ADC grid
    assert quantisation_grid(np.round(x, 2)[:100]) is None  # too few samples to tell


# ----------------------------------------------------------------------------- synthetic recordings

def eeg(seconds, rng, channels=2, mains_uv=4.0, mains_phase=0.0, fs=FS):
    """EEG-like noise (1/f background over a white floor) with a mains line, uV."""
    n = int(seconds * fs)
    white = rng.standard_normal((channels, n))
    b, a = signal.butter(1, 1.0, fs=fs)  # 1/f^2 above 1 Hz
    background = 40.0 * signal.lfilter(b, a, white, axis=1) + 1.0 * rng.standard_normal((channels, n))
    t = np.arange(n) / fs
    gains = np.linspace(1.0, 1.5, channels)[:, None]
    return background + mains_uv * gains * np.sin(2 * np.pi * 50.0 * t + mains_phase + np.arange(channels)[:, None])


def hypnogram(seconds):
    return np.full(int(np.ceil(seconds / 30.0)), 2)


def tamper(x, adjustment, seed=0, fs=FS):
    new, truth = inject(x, fs, hypnogram(x.shape[1] / fs), [adjustment], seed)
    return new, truth[0]


def found(events, truth):
    return [e for e in events if e.overlaps(truth["onset"], truth["onset"] + truth["duration"])]


def live(x, valid=None, block_s=1.0, fs=FS):
    """Push a recording block by block; returns the monitor and (event, seconds pushed when raised)."""
    monitor = TamperingMonitor(fs, x.shape[0])
    n = int(block_s * fs)
    raised = []
    for a in range(0, x.shape[1], n):
        new = monitor.push(x[:, a:a + n], None if valid is None else valid[a:a + n])
        raised += [(e, min(a + n, x.shape[1]) / fs) for e in new]
    return monitor, raised


@pytest.fixture(scope="module")
def night():
    return eeg(900, np.random.default_rng(7))


@pytest.fixture(scope="module")
def donor():
    return eeg(400, np.random.default_rng(8), mains_uv=2.5, mains_phase=2.0)


# ----------------------------------------------------------------------------- offline

def test_clean_recording_with_gaps_and_a_dead_channel_raises_nothing(night):
    x = night.copy()
    x[1, 300 * 200:] = 187_500.0  # an electrode railed for the rest of the night
    rng = np.random.default_rng(3)
    valid = np.repeat(rng.random(x.shape[1] // 4) > 0.02, 4)  # 2 % of 4-sample packets lost
    x[:, ~valid] = 0.0
    assert detect_tampering(x, FS, valid=valid) == []


@pytest.mark.parametrize("crossfade", [0.0, 1.0])
def test_replay_is_traced_to_its_source_sample_by_sample(night, crossfade):
    new, truth = tamper(night, Tampering(mode="replay", duration_s=30, crossfade_s=crossfade, onsets=(500.0,),
                                         source_onsets=(120.0,)))
    events = detect_tampering(new.astype(np.float32), FS)  # survives a float32 round trip
    (event,) = found(events, truth)
    copy = next(part for part in event.evidence.split("; ") if "copy" in part)
    assert copy.startswith(f"{30 - 2 * crossfade:.1f} s at {500 + crossfade:.1f} s is a sample-exact copy of "
                           f"{120 + crossfade:.1f}-{150 - crossfade:.1f} s")
    assert event.onset <= 500.0 + crossfade and event.end >= 530.0 - crossfade
    assert event.score > 0.9 and len(events) == 1


def test_short_replays_are_found_and_repeats_shorter_than_two_seconds_are_not(night):
    x = night.copy()
    x[:, 400 * 200:405 * 200] = x[:, 100 * 200:105 * 200]  # 5 s
    x[:, 600 * 200:600 * 200 + 300] = x[:, 200 * 200:200 * 200 + 300]  # 1.5 s: a glitch, not a replay
    events = detect_tampering(x, FS)
    assert [(e.onset, e.duration) for e in events] == [(400.0, 5.0)]


def test_splice_from_a_recording_with_another_mains_phasor(night, donor):
    new, truth = tamper(night, Tampering(mode="splice", donor=donor, duration_s=30, crossfade_s=1.0, onsets=(450.0,)))
    events = detect_tampering(new, FS)
    (event,) = found(events, truth)
    assert "mains phasor (50 Hz) changed" in event.evidence
    assert abs(event.onset - 450.0) <= 3.0 and abs(event.end - 480.0) <= 3.0
    assert len(events) == 1


def test_warp_moves_the_mains_line(night):
    new, truth = tamper(night, Tampering(mode="warp", warp_factor=1.06, duration_s=30, onsets=(450.0,)))
    events = detect_tampering(new, FS)
    (event,) = found(events, truth)
    assert "mains line at 53.0 Hz instead of 50 Hz" in event.evidence
    assert len(events) == 1


def test_stretch_resampled_from_a_lower_rate_leaves_a_hole_under_the_floor():
    rng = np.random.default_rng(11)
    x = eeg(900, rng, mains_uv=0.0)
    slow = signal.resample_poly(eeg(200, rng, mains_uv=0.0, fs=100.0), 2, 1, axis=1)  # recorded at 100 Hz
    new, truth = tamper(x, Tampering(mode="splice", donor=slow, duration_s=30, crossfade_s=1.0, onsets=(600.0,)))
    events = detect_tampering(new, FS)
    (event,) = found(events, truth)
    assert "no signal above 50 Hz" in event.evidence
    assert abs(event.onset - 600.0) <= 3.0 and abs(event.end - 630.0) <= 3.0


def test_warp_of_a_quantised_recording_leaves_its_grid_and_stray_values_do_not_count():
    rng = np.random.default_rng(12)
    x = quantised(eeg(900, rng, mains_uv=0.0))  # no mains line; played faster, so no hole either
    new, truth = tamper(x, Tampering(mode="warp", warp_factor=1.04, duration_s=30, onsets=(500.0,)))
    stray = rng.choice(np.arange(100 * 200, 400 * 200), 60, replace=False)
    new[:, stray] += 0.01  # isolated off-grid samples (a glitch or two a second) are not a stretch
    valid = np.ones(new.shape[1], dtype=bool)
    valid[200 * 200:203 * 200] = False  # a gap written as 0.0 (off the grid) is never evidence
    new[:, ~valid] = 0.0
    new[:, 700 * 200:706 * 200] = 0.0  # nor is a dropout filled with zeros but not marked: one value
    events = detect_tampering(new, FS, valid=valid)
    (event,) = events
    assert "quantisation grid" in event.evidence and found(events, truth)
    assert abs(event.onset - 500.0) <= 2.0 and abs(event.end - 530.0) <= 2.0
    monitor, raised = live(new, valid)
    ((alarm, when),) = raised
    assert "quantisation grid" in alarm.evidence and found([alarm], truth) and when <= 510.0


def test_a_line_beating_with_an_aliased_harmonic_is_not_a_change():
    # a 200-Hz device whose clock runs 0.16 % slow: mains 50 Hz and its 3rd harmonic, aliased 0.3 Hz
    # away into the line's bin, beat; the line's phasor swings more than its bin's noise in every frame
    rng = np.random.default_rng(13)
    x = eeg(1200, rng, channels=1, mains_uv=0.0)
    t = np.arange(x.shape[1]) / (FS * (1 - 0.0016))
    x += 6.0 * np.sin(2 * np.pi * 50.0 * t) + 0.6 * np.sin(2 * np.pi * 150.0 * t + 1.0)
    assert detect_tampering(x, FS) == []
    monitor, raised = live(x, block_s=4.0)
    assert raised == []


def test_short_and_one_dimensional_input():
    assert detect_tampering(np.zeros(10), FS) == []
    assert detect_tampering(np.random.default_rng(0).normal(0, 10, 1000), FS) == []
    assert TamperingMonitor(FS, 1).push(np.zeros((1, 0))) == []


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 50 Hz"):
        detect_tampering(np.zeros((1, 1000)), 40.0)
    with pytest.raises(ValueError, match="valid must have shape"):
        detect_tampering(np.zeros((1, 1000)), FS, valid=np.ones(10, bool))
    with pytest.raises(ValueError, match="expected 2 channels"):
        TamperingMonitor(FS, 2).push(np.zeros((3, 100)))


# ----------------------------------------------------------------------------- live

def test_live_alarms_within_ten_seconds_and_cover_the_stretch(night, donor):
    x = night.copy()
    x[:, 400 * 200:430 * 200] = x[:, 100 * 200:130 * 200]  # replay at 400 s
    x[:, 700 * 200:730 * 200] = donor[:, 50 * 200:80 * 200]  # splice at 700 s
    monitor, raised = live(x, block_s=0.77)  # blocks need not line up with anything
    assert len(raised) == 2
    (replay, t_replay), (splice, t_splice) = raised
    # live onsets come from the first matching anchor, within a fingerprint block of the truth
    assert 400.0 <= replay.onset <= 400.3 and "sample-exact copy of 100." in replay.evidence and t_replay <= 410.0
    assert "mains phasor" in splice.evidence and t_splice <= 710.0
    final = sorted(monitor.events, key=lambda e: e.onset)
    assert final[0].end >= 429.5
    assert abs(final[1].onset - 700.0) <= 2.0 and final[1].end >= 728.0


def test_live_stays_quiet_on_a_clean_stream_with_gaps(night):
    x = night[:, :600 * 200]
    valid = np.ones(x.shape[1], dtype=bool)
    valid[200 * 200:203 * 200] = False  # a 3-s dropout, pushed as zeros
    x = np.where(valid, x, 0.0)
    monitor, raised = live(x, valid, block_s=2.0)
    assert raised == [] and monitor.events == []


def test_dreams_excerpt_splice_replay_and_warp(dreams_dir):
    from ingest.dreams import read_dreams_hypnogram, read_dreams_signal
    from dsp.stages import from_labels

    _, x = read_dreams_signal(dreams_dir / "excerpt1.txt")  # 100 Hz
    _, other = read_dreams_signal(dreams_dir / "excerpt3.txt")  # 50 Hz, another person
    hyp = from_labels(read_dreams_hypnogram(dreams_dir / "Hypnogram_excerpt1.txt"))
    assert detect_tampering(x, 100.0) == []
    donor = signal.resample_poly(other, 2, 1)
    new, truth = inject(x, 100.0, hyp, [Tampering(mode="splice", donor=donor, duration_s=30, onsets=(900.0,)),
                                        Tampering(mode="replay", duration_s=30, onsets=(1500.0,)),
                                        Tampering(mode="warp", warp_factor=1.05, duration_s=30, onsets=(300.0,))], 5)
    events = detect_tampering(new, 100.0)
    assert len(events) == 3 and all(found(events, t) for t in truth)
    # the excerpt is stored on a 16-bit grid (0.01 uV): the faster warp leaves no hole, but leaves the grid
    assert "quantisation grid" in found(events, truth[0])[0].evidence
