"""Rapid eye movements from LOC/ROC: known saccades found, non-conjugate and slow movements rejected."""

import numpy as np
import pytest

from dsp.errors import SignalError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp.eye_movements import (
    detect_rapid_eye_movements,
    eye_movement_density,
    rise_starts,
    slow_eye_movement_index,
)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_rise_starts_match_a_plain_walk_back(data):
    x = data.draw(hnp.arrays(np.float64, st.integers(1, 60), elements=st.integers(-20, 20).map(float)))
    peaks = np.array(data.draw(st.lists(st.integers(0, x.size - 1), max_size=10)), dtype=np.int64)
    expected = []
    for p in peaks:
        rising = x[p] >= 0
        steps = np.diff(x[:p + 1])
        ok = steps > 0 if rising else steps < 0
        bad = np.flatnonzero(~ok)
        expected.append(bad[-1] + 1 if bad.size else 0)
    np.testing.assert_array_equal(rise_starts(x, peaks), np.array(expected, dtype=np.int64))


def saccade_track(n, fs, times, amplitude=150.0, hold_s=1.0, rise_s=0.05):
    """Eye position in uV at LOC: a fast move to +-amplitude at each time, back after ``hold_s``.

    Returns the track and the times of every saccade (there and back).
    """
    track = np.zeros(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(int(rise_s * fs)) / int(rise_s * fs))
    moves = []
    for k, t in enumerate(times):
        sign = 1.0 if k % 2 == 0 else -1.0
        for start, level in ((t, sign * amplitude), (t + hold_s, 0.0)):
            i = int(start * fs)
            before = track[i - 1]
            track[i:i + ramp.size] = before + (level - before) * ramp
            track[i + ramp.size:] = level
            moves.append(start)
    return track, np.array(moves)


def eog_pair(fs, seconds=120.0, seed=0, times=None, **kwargs):
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    times = np.arange(10.0, seconds - 10.0, 7.0) if times is None else np.asarray(times)
    track, moves = saccade_track(n, fs, times, **kwargs)
    common = np.convolve(rng.normal(0, 10, n), np.ones(int(fs / 10)) / np.sqrt(fs / 10), mode="same")
    loc = track + common + rng.normal(0, 3, n)
    roc = -track + common + rng.normal(0, 3, n)
    return np.stack([loc, roc]), moves


def matched(events, moves, tol=0.2):
    hits = [np.any(np.abs(events.onset - m) < tol) for m in moves]
    extra = [not np.any(np.abs(moves - o) < tol) for o in events.onset]
    return int(np.sum(hits)), int(np.sum(extra))


@pytest.mark.parametrize("fs", [64.0, 128.0, 256.0])
def test_conjugate_saccades_are_found(fs):
    eog, moves = eog_pair(fs, seed=int(fs))
    ev = detect_rapid_eye_movements(eog, fs)
    hits, extra = matched(ev, moves)
    assert hits >= 0.9 * len(moves) and extra <= 0.1 * len(moves), (hits, extra, len(moves))
    assert np.all(ev.rise_s < 0.5)
    assert np.all((ev.amplitude_uv >= 50) & (ev.amplitude_uv <= 325))
    # Direction follows LOC - ROC: up-moves first (+), their returns (-), then the opposite.
    first = ev.direction[np.argmin(np.abs(ev.onset - moves[0]))]
    assert first == 1


def test_single_channel_works_too():
    fs = 128.0
    eog, moves = eog_pair(fs, seed=3)
    ev = detect_rapid_eye_movements(eog[0], fs)
    hits, extra = matched(ev, moves)
    assert hits >= 0.9 * len(moves) and extra <= 0.1 * len(moves)


def test_same_sign_deflections_are_not_eye_movements():
    fs = 128.0
    eog, moves = eog_pair(fs, seed=4)
    # The same deflection on both channels (EEG or a shared artefact), not opposite.
    same = np.stack([eog[0], eog[0] + np.random.default_rng(1).normal(0, 3, eog.shape[1])])
    assert len(detect_rapid_eye_movements(same, fs)) == 0


def test_small_and_slow_movements_are_not_rapid():
    fs = 128.0
    small, _ = eog_pair(fs, seed=5, amplitude=40.0)
    assert len(detect_rapid_eye_movements(small, fs)) == 0
    n = int(120 * fs)
    t = np.arange(n) / fs
    sem = 150.0 * np.sin(2 * np.pi * 0.25 * t)
    rng = np.random.default_rng(6)
    slow = np.stack([sem + rng.normal(0, 3, n), -sem + rng.normal(0, 3, n)])
    assert len(detect_rapid_eye_movements(slow, fs)) == 0


def test_slow_eye_movement_index_marks_slow_rolling_epochs():
    fs = 128.0
    n = int(90 * fs)
    t = np.arange(n) / fs
    rng = np.random.default_rng(7)
    sem = np.where((t >= 30) & (t < 60), 100.0 * np.sin(2 * np.pi * 0.25 * t), 0.0)
    eog = np.stack([sem + rng.normal(0, 3, n), -sem + rng.normal(0, 3, n)])
    index = slow_eye_movement_index(eog, fs, 3)
    assert index.shape == (3,)
    assert index[1] > 0.5
    assert index[0] < 0.05
    assert index[2] < 0.2  # the causal filter's tail runs a few seconds past the end of the rolling
    in_phase = slow_eye_movement_index(np.stack([eog[0], eog[0]]), fs, 3)
    assert in_phase.max() == 0.0


def test_density_and_stages():
    fs = 128.0
    eog, moves = eog_pair(fs, seconds=120.0, seed=8)
    ev = detect_rapid_eye_movements(eog, fs)
    density = eye_movement_density(ev, 4)
    assert density.shape == (4,)
    assert density.sum() / 2 == len(ev)
    only_rem = detect_rapid_eye_movements(eog, fs, stages=[4, 2, 2, 4])
    assert len(only_rem) > 0
    assert np.all((only_rem.peak_s < 30) | (only_rem.peak_s >= 90))


def test_bad_input_is_refused():
    with pytest.raises(SignalError):
        detect_rapid_eye_movements(np.zeros((3, 1000)), 128.0)
    with pytest.raises(SignalError):
        detect_rapid_eye_movements(np.zeros(1000), 10.0)
    with pytest.raises(SignalError):
        detect_rapid_eye_movements(np.array([0.0, np.nan] * 500), 128.0)
