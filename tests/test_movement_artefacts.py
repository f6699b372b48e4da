"""Movement / high-amplitude artefact epochs: the amplitude kernel against numpy, flags on known artefacts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsp.quality import epoch_amplitudes, movement_artefacts

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 50)),
                    elements=st.one_of(finite, st.just(np.nan))))
def test_epoch_amplitudes_match_numpy(x):
    out = epoch_amplitudes(x)
    for e, row in enumerate(x):
        ok = row[np.isfinite(row)]
        if ok.size < 2:
            assert np.isnan(out[e]).all()
            continue
        scale = 1 + np.abs(ok).max()
        assert out[e, 0] == pytest.approx(np.sqrt(np.mean(np.diff(ok) ** 2)), abs=1e-9 * scale)
        assert out[e, 1] == pytest.approx(np.abs(ok - np.median(ok)).max(), abs=1e-9 * scale)


def night(n_epochs=120, fs=100.0, seed=0):
    """EEG-like epochs whose amplitude varies by stage (x1 to x3, like N2 against N3)."""
    rng = np.random.default_rng(seed)
    n = int(30 * fs)
    gain = np.repeat([1.0, 3.0, 1.0, 2.0], n_epochs // 4)
    slow = np.cumsum(rng.normal(0, 1, (n_epochs, n)), axis=1)
    slow -= np.linspace(slow[:, :1], slow[:, -1:], n, axis=1)[..., 0]  # tie the random walk down
    x = 20 * slow / slow.std(axis=1, keepdims=True) + rng.normal(0, 3, (n_epochs, n))
    return gain[:, None] * x, fs


def test_movement_and_muscle_epochs_are_flagged_stage_changes_are_not():
    epochs, fs = night()
    clean = movement_artefacts(epochs)
    assert not clean.any()  # three-fold amplitude changes between stages are not artefacts
    rng = np.random.default_rng(1)
    dirty = epochs.copy()
    dirty[10, 500:800] += 800 * np.sin(np.linspace(0, 3 * np.pi, 300))   # a 3-s movement swing
    dirty[70, :1500] += rng.normal(0, 60, 1500)                           # a 15-s muscle burst (broadband)
    dirty[90, 1500:] += 600                                               # an electrode pop (step)
    dirty[91, :100] = np.nan                                              # lost samples: not an artefact
    flagged = movement_artefacts(dirty)
    assert np.flatnonzero(flagged).tolist() == [10, 70, 90]


def test_flags_are_relative_to_the_recording():
    epochs, _ = night(seed=2)
    epochs[20, :300] += 1000.0 * np.hanning(300)
    np.testing.assert_array_equal(movement_artefacts(epochs), movement_artefacts(0.01 * epochs))
    assert movement_artefacts(epochs)[20]


def test_accelerometer_marks_head_movements():
    epochs, _ = night(n_epochs=8, seed=3)
    rng = np.random.default_rng(4)
    acc = np.zeros((8, 3, 30 * 25))
    acc[:, 2] = 1.0                                     # lying still: gravity on z
    acc += rng.normal(0, 0.001, acc.shape)              # sensor noise
    acc[5, :, 300:] = [[0.0], [1.0], [0.0]]             # turned onto the side: gravity moves to y
    acc[5, 2, 300:] += rng.normal(0, 0.001, 450)
    flagged = movement_artefacts(epochs, acc=acc)
    assert np.flatnonzero(flagged).tolist() == [5]
    with pytest.raises(ValueError):
        movement_artefacts(epochs, acc=acc[:4])


def test_degenerate_inputs():
    assert movement_artefacts(np.zeros((4, 100))).tolist() == [False] * 4      # flat: quality's job
    assert movement_artefacts(np.full((3, 50), np.nan)).tolist() == [False] * 3
