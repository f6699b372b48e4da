"""The non-EEG channels' evidence for the stager: eye movements, body movement, EMG tone."""

import numpy as np
import pytest

from dsp.evidence import (EYE_MOVEMENT_SCALES, MIN_REFERENCE_EPOCHS, auxiliary_loglik, eye_movement_stretch,
                          eye_movements, movement_seconds)
from dsp.model import default_model

FS = 128.0
EPOCH = int(30 * FS)


def _eog(n_epochs: int, seed: int = 0) -> np.ndarray:
    """Two EOG leads (left, right) of background: EEG common to both plus what each sees alone
    (slow activity under each electrode, a few uV in the 0.5-5 Hz band, as in NREM sleep), uV."""
    rng = np.random.default_rng(seed)
    n = n_epochs * EPOCH
    common = np.convolve(rng.normal(0, 20, n), np.ones(16) / 16, mode="same")
    return np.vstack([common + np.convolve(rng.normal(0, 25, n), np.ones(16) / 16, mode="same") for _ in range(2)])


def _saccade(n: int, at: int, size: float) -> np.ndarray:
    """A step that builds in ~30 ms and decays as an AC-coupled amplifier lets it, uV."""
    t = np.arange(n - at) / FS
    out = np.zeros(n)
    out[at:] = size * (1 - np.exp(-t / 0.01)) * np.exp(-t / 0.5)
    return out


def _count(sizes, scale, reference):
    threshold = EYE_MOVEMENT_SCALES * np.median(scale[reference])
    with np.errstate(invalid="ignore"):
        return (sizes > threshold).sum(axis=1)


def test_conjugate_saccades_count_in_their_epochs_and_blinks_and_slow_rolls_do_not():
    n_epochs = 12
    eog = _eog(n_epochs)
    n = eog.shape[1]
    for k in range(5):  # epoch 3: five saccades, the eyes turning left then right
        move = _saccade(n, 3 * EPOCH + int((3 + 5 * k) * FS), 120.0 * (-1) ** k)
        eog += np.vstack([move, -move])  # opposite at the two outer canthi
    for k in range(5):  # epoch 6: five blinks, the same on both leads
        blink = _saccade(n, 6 * EPOCH + int((3 + 5 * k) * FS), 120.0)
        eog += np.vstack([blink, blink])
    t = np.arange(EPOCH) / FS  # epoch 9: slow rolling eye movements, conjugate, as large
    roll = 120.0 * np.sin(2 * np.pi * 0.3 * t)  # from 0: no step where it starts
    eog[:, 9 * EPOCH : 10 * EPOCH] += np.vstack([roll, -roll])
    sizes, scale = eye_movement_stretch(eog, FS, 0, n_epochs)
    assert sizes.shape == (n_epochs, 8) and scale.shape == (n_epochs,)
    count = _count(sizes, scale, np.isin(np.arange(n_epochs), [0, 1, 2, 4, 5, 7, 8, 10, 11]))
    assert count[3] == 5
    assert count[6] == 0 and count[9] == 0
    assert count.sum() == 5


def test_the_count_is_amplitude_invariant_because_its_threshold_is_the_recordings_own():
    eog = _eog(6, seed=2)
    move = _saccade(eog.shape[1], 2 * EPOCH + int(10 * FS), 90.0)
    eog += np.vstack([move, -move])
    reference = np.array([True, True, False, True, True, True])
    counts = [_count(*eye_movement_stretch(eog * gain, FS, 0, 6), reference) for gain in (0.5, 1.0, 2.0)]
    assert counts[1][2] == 1 and counts[1].sum() == 1
    assert all(np.array_equal(c, counts[1]) for c in counts)


def test_a_recording_is_measured_a_chunk_at_a_time_as_it_is_whole():
    n_epochs = 90  # more than one chunk of epochs
    eog = _eog(n_epochs, seed=3)
    for e in range(0, n_epochs, 7):
        move = _saccade(eog.shape[1], e * EPOCH + int(12 * FS), 100.0)
        eog += np.vstack([move, -move])
    whole = eye_movement_stretch(eog, FS, 0, n_epochs)
    chunked = eye_movements(eog, FS, n_epochs)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-3)
    np.testing.assert_allclose(np.nan_to_num(chunked[0]), np.nan_to_num(whole[0]), atol=0.5)
    assert eye_movements(eog[:, :-1], FS, n_epochs) is None


def test_lost_samples_make_an_epoch_unusable_not_an_eye_movement():
    eog = _eog(4, seed=4)
    eog[:, EPOCH + 100 : 2 * EPOCH - 100] = np.nan
    eog[:, 3 * EPOCH + 500 : 3 * EPOCH + 510] = np.nan  # a short gap is held over
    sizes, scale = eye_movement_stretch(eog, FS, 0, 4)
    assert np.isnan(scale[1]) and np.isnan(sizes[1]).all()
    assert np.isfinite(scale[[0, 2, 3]]).all()


def test_movement_seconds_counts_the_seconds_a_head_moves():
    fs = 50.0
    n_per = int(30 * fs)
    rng = np.random.default_rng(5)
    acc = np.array([[0.1], [0.2], [0.97]]) + 0.001 * rng.standard_normal((3, 4 * n_per))  # still, lying
    acc[:, n_per + 500 : n_per + 650] += 0.05 * rng.standard_normal((3, 150))  # 3 s of a head moving
    acc[:, 3 * n_per : 3 * n_per + 1000] = np.nan  # most of the last epoch lost
    seconds = movement_seconds(acc, fs, 4)
    assert seconds[0] == 0 and seconds[2] == 0
    assert 3 <= seconds[1] <= 4
    assert np.isnan(seconds[3])
    assert movement_seconds(acc[:, :-1], fs, 4) is None


def test_the_shifts_follow_the_models_weights_and_need_a_reference():
    model = default_model()
    n = 40
    nrem = np.zeros(n, dtype=bool)
    nrem[:20] = True
    sizes = np.full((n, 8), np.nan)
    sizes[30, :6] = 200.0  # six large eye movements in epoch 30
    scale = np.full(n, 4.0)
    movement = np.zeros(n)
    movement[35] = 12.0  # a restless epoch
    shift = auxiliary_loglik(model, nrem, eye_sizes=sizes, eye_scale=scale, movement=movement)
    np.testing.assert_allclose(shift[30], model.eog_weight)  # saturated: full weight
    np.testing.assert_allclose(shift[35], model.movement_weight)
    assert np.all(shift[np.setdiff1d(np.arange(n), [30, 35])] == 0)
    assert shift[30].argmax() == 4 and shift[35].argmax() == 0  # REM, wake
    few = np.zeros(n, dtype=bool)
    few[: MIN_REFERENCE_EPOCHS - 1] = True
    assert auxiliary_loglik(model, few, eye_sizes=sizes, eye_scale=scale) is None
    assert auxiliary_loglik(model, nrem) is None


def test_emg_tone_is_a_clipped_robust_z_against_the_reference():
    model = default_model()
    rng = np.random.default_rng(6)
    power = rng.normal(1.0, 0.1, 50)
    power[45] = 10.0  # a burst far above NREM tone
    power[46] = np.nan  # unusable
    nrem = np.arange(50) < 30
    shift = auxiliary_loglik(model, nrem, emg_power=power)
    np.testing.assert_allclose(shift[45], 3.0 * model.emg_weight)
    assert np.all(shift[46] == 0)
    med = np.median(power[:30])
    mad = 1.4826 * np.median(np.abs(power[:30] - med))
    np.testing.assert_allclose(shift[10], (power[10] - med) / mad * model.emg_weight)


@pytest.mark.parametrize("rows", [0, 3])
def test_the_stager_takes_one_or_two_eog_rows_only(rows):
    from dsp.errors import SignalError
    from dsp.staging import LiveStager, stage

    with pytest.raises(SignalError, match="eog|n_eog"):
        if rows:
            stage(np.random.default_rng(7).normal(0, 20, (1, 4 * EPOCH)), FS, eog=np.zeros((rows, 4 * EPOCH)))
        else:
            LiveStager(FS, n_eog=3)
