"""Artefacts, mains, accelerometer, device profiles and the ground-truth log of the simulated headband."""

import numpy as np
import pytest
from scipy import signal

from firmware_sim.headband import SimulatedHeadband
from firmware_sim.hypnogram import N2, N3, W
from firmware_sim.profiles import PROFILES


def _night(profile="sim", stages=(W,) * 20 + (N2,) * 20 + (N3,) * 20, seed=5, **kw):
    band = SimulatedHeadband(profile, hypnogram=np.array(stages), seed=seed, **kw)
    return band, band.read_all().astype(np.float64)


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_mains_is_a_narrow_line_at_the_mains_frequency(mains_hz):
    band, data = _night(mains_hz=mains_hz, stages=(N2,) * 6)
    f, p = signal.welch(data[0], band.fs, nperseg=int(8 * band.fs))
    line = p[np.argmin(np.abs(f - mains_hz))]
    neighbours = np.median(p[(np.abs(f - mains_hz) > 3) & (np.abs(f - mains_hz) < 10)])
    assert line > 20 * neighbours


def test_movements_swing_the_eeg_burst_the_emg_and_turn_the_accelerometer():
    band, data = _night("ganglion", stages=(W,) * 60, seed=9)
    moves = [e for e in band.events if e.kind == "movement"]
    assert len(moves) >= 10  # ~0.6 per minute awake
    acc = data[[band.channels.index(c) for c in ("ACC X", "ACC Y", "ACC Z")]]
    assert np.allclose(np.linalg.norm(acc, axis=0).mean(), 1.0, atol=0.05)  # gravity, in g
    fs = band.fs
    emg = data[band.channels.index("EMG chin")]
    for e in moves[:5]:
        a, b = int(e.onset * fs), int((e.onset + e.duration) * fs)
        before = acc[:, max(0, a - int(fs)):a].mean(axis=1)
        after = acc[:, b:b + int(fs)].mean(axis=1)
        if b + fs < acc.shape[1] and a >= fs:
            assert np.linalg.norm(after - before) > 0.05          # a new posture
            assert emg[a:b].std() > 1.5 * emg[max(0, a - 3 * int(fs)):a].std()  # muscle burst


def test_slow_waves_are_logged_in_deep_sleep_only_with_aasm_amplitude():
    band, _ = _night()
    waves = [e for e in band.events if e.kind == "slow_wave"]
    per_stage = np.bincount([band.hypnogram[int(e.onset // 30)] for e in waves], minlength=5)
    assert per_stage[N3] > 10 * max(per_stage[W], 1) and per_stage[N3] > per_stage[N2]
    assert all(0.5 <= e.duration <= 2.2 for e in waves)


def test_electrode_pops_are_single_channel_steps_in_the_log():
    band = SimulatedHeadband("cyton-daisy", hours=6, seed=2)
    data = band.read_all()
    pops = [e for e in band.events if e.kind == "electrode_pop"]
    assert pops and all(e.channel in band.channels for e in pops)
    e = pops[0]
    row = band.channels.index(e.channel)
    i = int(round(e.onset * band.fs))
    step = abs(float(data[row, i + 1]) - float(data[row, i - 2]))
    assert step > 50  # uV: a jump no brain rhythm makes in three samples


def test_consumer_frontal_leads_see_less_brain_signal_than_psg_leads():
    muse, m = _night("muse-s", stages=(N3,) * 20, seed=4)
    cyton, c = _night("cyton", stages=(N3,) * 20, seed=4)
    def slow_uv(band, data, label):
        sos = signal.butter(2, [0.5, 2.0], "bandpass", fs=band.fs, output="sos")
        return signal.sosfiltfilt(sos, data[band.channels.index(label)]).std()
    assert slow_uv(muse, m, "EEG AF7") < 0.7 * slow_uv(cyton, c, "EEG F3-M2")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_streams_finite_signals_of_its_shape(name):
    band, data = _night(name, stages=(W, N2), seed=1)
    profile = PROFILES[name]
    assert data.shape == (len(profile.channels), int(round(60 * profile.fs)))
    assert np.isfinite(data).all()
    eeg = np.array([k == "EEG" for k in profile.kinds])
    assert 2.0 < data[eeg].std(axis=1).min() and data[eeg].std(axis=1).max() < 200.0


def test_profiles_match_the_devices():
    assert len([k for k in PROFILES["cyton"].kinds if k != "ACC"]) == 8 and PROFILES["cyton"].fs == 250
    assert len([k for k in PROFILES["cyton-daisy"].kinds if k != "ACC"]) == 16
    assert PROFILES["ganglion"].fs == 200 and len([k for k in PROFILES["ganglion"].kinds if k != "ACC"]) == 4
    for muse in ("muse-2", "muse-s"):
        assert PROFILES[muse].channels[:4] == ("EEG TP9", "EEG AF7", "EEG AF8", "EEG TP10")
        assert PROFILES[muse].fs == 256
