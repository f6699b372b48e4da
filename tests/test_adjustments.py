"""Injected adjustments: each kind leaves the physiological/technical signature it should, where the
truth log says, at the requested strength, on simulated nights and on one-channel real-rate arrays."""

import json

import numpy as np
import pytest
from scipy import signal

from firmware_sim.adjustments import Auditory, Electrical, Entrainment, Tampering, click_times, inject
from firmware_sim.adjustments.auditory import P200_RATIO
from firmware_sim.headband import SimulatedHeadband

W, N1, N2, N3, REM = range(5)
C4, FPZ, EOG, EMG = range(4)  # rows of the simulated headband


def simulated(hypnogram, seed=5, fs=None):
    band = SimulatedHeadband(hypnogram=np.array(hypnogram), seed=seed, fs=fs)
    return band.read_all(), band


@pytest.fixture(scope="module")
def night():
    """30 min: W, N1, N2, a long N3, N2 again and REM."""
    hyp = [W] * 4 + [N1] * 2 + [N2] * 10 + [N3] * 30 + [N2] * 4 + [REM] * 10
    data, band = simulated(hyp)
    return data, band


def run(data, band, adjustments, seed=0, **kwargs):
    before = data.copy()
    new, truth = inject(data, band.fs, band.hypnogram, adjustments, np.random.default_rng(seed),
                        labels=band.channels, kinds=band.kinds, **kwargs)
    assert np.array_equal(data, before), "the input was modified"
    return new, truth


def locked(x, times, fs, seconds):
    """Rows of ``x`` (one channel) from each time (first sample at or after it), shape (n_times, n)."""
    n = int(round(seconds * fs))
    starts = np.ceil(np.asarray(times) * fs).astype(int)
    starts = starts[starts + n <= x.size]
    return x[starts[:, None] + np.arange(n)]


def amplitude_at(x, f, fs, t=None):
    """Amplitude (uV) of the sinusoid at ``f`` Hz in ``x`` sampled at times ``t`` (s; by default
    ``arange(x.size) / fs``), from a least-squares fit of sin and cos."""
    t = np.arange(x.size) / fs if t is None else t
    basis = np.column_stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t), np.ones_like(t)])
    coef = np.linalg.lstsq(basis, x, rcond=None)[0]
    return float(np.hypot(coef[0], coef[1]))


# --- auditory ---------------------------------------------------------------------------------------

def test_closed_loop_clicks_come_in_pairs_after_detected_troughs_in_nrem_only(night):
    data, band = night
    new, truth = run(data, band, [Auditory(montage_gain=0.7)])
    (record,) = truth
    clicks = record["params"]["clicks"]
    assert len(clicks) >= 60
    times = np.array([c["time"] for c in clicks])
    stages = np.array([c["stage"] for c in clicks])
    assert set(stages) <= {N2, N3}
    assert np.array_equal(stages, band.hypnogram[(times // 30).astype(int)])  # logged stage is the true one
    order = np.array([c["order"] for c in clicks])
    assert np.array_equal(order, np.tile([1, 2], len(clicks) // 2))
    first, second = times[order == 1], times[order == 2]
    assert np.allclose(second - first, 1.075)
    troughs = np.array([c["trough"] for c in clicks])[order == 1]
    assert np.all((first - troughs > 0.3) & (first - troughs < 0.7))
    assert np.all(np.array([c["trough_uv"] for c in clicks]) < -80 * 0.7)
    assert np.all(troughs[1:] > second[:-1] + 2.5)  # detection paused after each pair
    assert np.allclose(click_times(truth), times)


def test_every_unrefractory_down_state_in_nrem_triggers_and_troughs_are_real_minima(night):
    # without evoked trains the detector sees the original slow waves (plus the last tails, < 2 uV,
    # of the responses before), so it can be checked against them
    data, band = night
    fs, threshold = band.fs, -80 * 0.7
    _, truth = run(data, band, [Auditory(montage_gain=0.7, so_train_probability=0.0)])
    clicks = truth[0]["params"]["clicks"]
    detect = signal.sosfiltfilt(signal.butter(2, [0.5, 2.0], "bandpass", fs=fs, output="sos"), data[FPZ])
    troughs = np.array([c["trough"] for c in clicks if c["order"] == 1])
    ready = np.array([c["time"] for c in clicks if c["order"] == 2]) + 0.05 + 2.5
    idx = np.round(troughs * fs).astype(int)
    assert np.allclose(detect[idx], [c["trough_uv"] for c in clicks if c["order"] == 1], atol=2.0)
    below = np.r_[False, detect < threshold, False].astype(int)
    starts = np.flatnonzero(np.diff(below) == 1)
    ends = np.flatnonzero(np.diff(below) == -1)
    # each trough is the lowest point of its down-state (of the part after the previous pause)
    resumed = np.r_[0, np.ceil(ready[:-1] * fs)].astype(int)
    for i, since in zip(idx, resumed):
        run_ = np.searchsorted(starts, i, side="right") - 1
        if run_ >= 0 and starts[run_] <= i < ends[run_]:
            assert detect[i] <= detect[max(starts[run_], since):ends[run_]].min() + 2.0
        else:  # a dip that only the response tails pushed past the threshold
            assert detect[i] < threshold + 2.0
    checked = 0
    for s, e in zip(starts, ends):
        t = s / fs
        if band.hypnogram[int(t // 30)] not in (N2, N3) or t > detect.size / fs - 5:
            continue
        if band.hypnogram[int((t + 1.7) // 30)] not in (N2, N3):
            continue  # the pair would reach into another stage and is held back
        if detect[s:e].min() > threshold - 2.0:
            continue  # too close to the threshold for the response tails to leave it alone
        triggered = np.any((troughs >= s / fs) & (troughs < e / fs))
        refractory = np.any((troughs <= t) & (ready > t))
        assert triggered or refractory, f"down-state at {t:.2f} s was missed"
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("n550_uv", [30.0, 60.0])
def test_evoked_response_has_the_requested_n550_and_a_p200(night, n550_uv):
    data, band = night
    fs = band.fs
    new, truth = run(data, band, [Auditory(montage_gain=0.7, n550_uv=n550_uv)], seed=1)
    clicks = truth[0]["params"]["clicks"]
    first = [c["time"] for c in clicks if c["order"] == 1]
    added = new - data
    t = np.arange(int(1.2 * fs)) / fs
    for row, gain in ((FPZ, 1.0), (C4, 0.9)):
        mean = locked(added[row], first, fs, 1.2).mean(axis=0)
        n550 = (t >= 0.5) & (t <= 0.65)
        assert -mean[n550].min() == pytest.approx(n550_uv * gain, rel=0.15)
        assert 0.5 <= t[np.argmin(mean)] <= 0.62
        p200 = (t >= 0.15) & (t <= 0.25)
        assert mean[p200].max() == pytest.approx(P200_RATIO * n550_uv * gain, rel=0.25)
    emg = locked(added[EMG], first, fs, 1.2).mean(axis=0)
    assert np.abs(emg).max() < 0.05 * n550_uv
    # the logged per-click sizes average to the request
    assert np.mean([c["n550_uv"] for c in clicks]) == pytest.approx(n550_uv, rel=0.15)
    # the response is there in the recorded signal too, not only in the difference
    evoked = locked(new[FPZ], first, fs, 1.2).mean(0) - locked(data[FPZ], first, fs, 1.2).mean(0)
    assert evoked[(t >= 0.5) & (t <= 0.65)].min() < -0.8 * n550_uv


def test_open_loop_cues_play_in_rem_too_but_evoke_no_n550_there(night):
    data, band = night
    fs = band.fs
    new, truth = run(data, band, [Auditory(mode="open_loop", stim_stages=(W, N1, N2, N3, REM))], seed=2)
    clicks = truth[0]["params"]["clicks"]
    times = np.array([c["time"] for c in clicks])
    assert np.all((np.diff(times) > 4.0) & (np.diff(times) < 6.0))  # a cue every 5 +/- 0.5 s
    stages = np.array([c["stage"] for c in clicks])
    added = new - data
    t = np.arange(int(1.2 * fs)) / fs
    n550 = (t >= 0.5) & (t <= 0.65)
    rem = locked(added[FPZ], times[stages == REM], fs, 1.2)
    n3 = locked(added[FPZ], times[stages == N3], fs, 1.2)
    assert len(rem) >= 40 and len(n3) >= 100
    assert -n3.mean(0)[n550].min() == pytest.approx(45.0, rel=0.15)
    assert np.abs(rem.mean(0)[n550]).max() < 0.05 * 45.0
    assert np.abs(rem).max() < 0.3 * 45.0  # only a small early response
    assert not any(c["evoked"] for c in clicks if c["stage"] == REM)
    # the default open-loop schedule is a TMR one: cues only in N3
    _, default = run(data, band, [Auditory(mode="open_loop")], seed=2)
    assert {c["stage"] for c in default[0]["params"]["clicks"]} == {N3}


def test_click_sound_reaches_the_electrodes_only_when_asked(night):
    data, band = night
    fs = band.fs
    silent, truth = run(data, band, [Auditory(montage_gain=0.7)], seed=3)
    loud, truth_loud = run(data, band, [Auditory(montage_gain=0.7, click_artefact_uv=20.0)], seed=3)
    assert truth_loud[0]["params"]["clicks"] == truth[0]["params"]["clicks"]
    artefact = loud - silent  # exactly the click bursts, so the default run has none
    times = click_times(truth)
    in_click = np.zeros(data.shape[1], dtype=bool)
    for t in times:
        in_click[int(np.ceil(t * fs)):int(np.ceil(t * fs)) + int(round(0.05 * fs))] = True
    assert np.all(artefact[:, ~in_click] == 0)
    for row in (C4, FPZ, EOG, EMG):
        burst = locked(artefact[row], times, fs, 0.05)
        assert np.sqrt(np.mean(burst ** 2)) == pytest.approx(20.0, rel=0.01)


def test_clicks_stay_inside_the_armed_episodes_and_kinds_follow_from_labels(night):
    data, band = night
    windows = Auditory(montage_gain=0.7, duration_s=240.0, onsets=(700.0, 1100.0))
    new, truth = inject(data, band.fs, band.hypnogram, [windows], np.random.default_rng(0), labels=band.channels)
    assert [(r["onset"], r["duration"]) for r in truth] == [(700.0, 240.0), (1100.0, 240.0)]
    for r in truth:
        times = [c["time"] for c in r["params"]["clicks"]]
        assert len(times) >= 10 and all(r["onset"] < t < r["onset"] + r["duration"] for t in times)
    assert np.abs(new - data)[EMG].max() < 0.05 * np.abs(new - data)[FPZ].max()  # "EMG chin" is an EMG
    with pytest.raises(ValueError, match="single episode"):
        run(data, band, [Auditory(onsets=(0.0, 600.0))])


# --- electrical -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_sleep():
    """42 min: 2 min awake, then N2 and a long N3."""
    return simulated([W] * 4 + [N2] * 20 + [N3] * 60, seed=8)


def test_slow_oscillatory_tacs_runs_in_5_min_blocks_with_1_min_pauses_after_stable_sleep(long_sleep):
    data, band = long_sleep
    fs = band.fs
    new, truth = run(data, band, [Electrical(amplitude_uv=100.0)], seed=4)
    (record,) = truth
    blocks = np.array(record["params"]["blocks"])
    assert blocks.shape == (5, 2)
    assert np.allclose(blocks[:, 1] - blocks[:, 0], 300.0)
    assert np.allclose(blocks[1:, 0] - blocks[:-1, 1], 60.0)
    assert record["onset"] >= 4 * 30 + 240  # after 4 min of continuous N2/N3
    assert band.hypnogram[int(record["onset"] // 30)] in (N2, N3)
    added = new - data
    on = np.zeros(added.shape[1], dtype=bool)
    for a, b in blocks:
        on[int(round(a * fs)):int(round(b * fs))] = True
    assert np.all(added[:, ~on] == 0)  # nothing during pauses or outside the session
    plateaus = np.concatenate([np.arange(int(round(a * fs)) + int(10 * fs), int(round(b * fs)) - int(10 * fs))
                               for a, b in blocks])
    # the spectral line in the recorded signal has the requested amplitude (frontal gain 1); the
    # carrier runs on through the pauses, so all blocks are fitted together
    assert amplitude_at(new[FPZ, plateaus], 0.75, fs, plateaus / fs) == pytest.approx(100.0, rel=0.1)
    a, b = (int(round(x * fs)) for x in blocks[2])
    plateau = slice(a + int(10 * fs), b - int(10 * fs))
    assert amplitude_at(added[FPZ, plateau], 1.5, fs) == pytest.approx(10.0, rel=0.05)
    assert amplitude_at(added[FPZ, plateau], 2.25, fs) == pytest.approx(3.0, rel=0.05)
    assert amplitude_at(added[C4, plateau], 0.75, fs) == pytest.approx(70.0, rel=0.05)
    # ramped in and out over 5 s
    for edge in (added[FPZ, a:a + int(0.2 * fs)], added[FPZ, b - int(0.2 * fs):b]):
        assert np.abs(edge).max() < 0.01 * 100.0
    rms = [np.sqrt(np.mean(added[FPZ, a + int(k * fs):a + int((k + 1) * fs)] ** 2)) for k in range(8)]
    assert rms[0] < rms[2] < rms[4] and rms[6] == pytest.approx(rms[7], rel=0.3)


def test_tacs_artefact_is_amplitude_modulated_by_heartbeat_and_respiration(long_sleep):
    data, band = long_sleep
    fs = band.fs
    tacs = Electrical(frequency_hz=12.0, amplitude_uv=40.0, dc_uv=20.0, n_blocks=1, block_s=200.0,
                      onsets=(300.0,), heartbeat_hz=1.1)
    new, truth = run(data, band, [tacs], seed=5)
    assert truth[0]["params"]["harmonics"] == {"2": 0.1, "3": 0.03}
    added = (new - data)[FPZ, int(310 * fs):int(490 * fs)]
    assert added.mean() == pytest.approx(20.0, rel=0.05)  # the DC shift of tDCS
    line = signal.sosfiltfilt(signal.butter(4, [10.0, 14.0], "bandpass", fs=fs, output="sos"), added)
    envelope = np.abs(signal.hilbert(line))[int(5 * fs):-int(5 * fs)]
    assert envelope.mean() == pytest.approx(40.0, rel=0.05)
    f, p = signal.welch(envelope - envelope.mean(), fs, nperseg=int(40 * fs))
    heart = (f > 0.7) & (f < 1.6)
    assert f[heart][np.argmax(p[heart])] == pytest.approx(1.1, abs=0.08)
    breath = (f > 0.15) & (f < 0.4)
    assert f[breath][np.argmax(p[breath])] == pytest.approx(0.25, abs=0.03)
    background = np.median(p[(f > 2) & (f < 5)])
    assert p[heart].max() > 20 * background and p[breath].max() > 20 * background


# --- entrainment ------------------------------------------------------------------------------------

def test_entrainment_adds_a_narrow_line_of_the_requested_amplitude(long_sleep):
    data, band = long_sleep
    fs = band.fs
    new, truth = run(data, band, [Entrainment(frequency_hz=40.0, amplitude_uv=2.0, onsets=(600.0,))], seed=6)
    assert (truth[0]["onset"], truth[0]["duration"]) == (600.0, 600.0)
    added = new - data
    on = slice(int(600 * fs), int(1200 * fs))
    assert np.all(added[:, :on.start] == 0) and np.all(added[:, on.stop:] == 0)
    assert np.all(added[EMG] == 0)
    f, p = signal.welch(added[C4, on], fs, nperseg=int(8 * fs))
    df = f[1] - f[0]
    near = np.abs(f - 40.0) <= 0.5
    assert p[near].sum() / p.sum() > 0.9  # narrow band
    assert np.sqrt(2 * p.sum() * df) == pytest.approx(2.0, rel=0.1)
    # it stands out of the recorded spectrum as a line
    f, p = signal.welch(new[C4, on], fs, nperseg=int(8 * fs))
    around = (np.abs(f - 40.0) > 1.0) & (np.abs(f - 40.0) < 5.0)
    assert p[np.argmin(np.abs(f - 40.0))] > 10 * np.median(p[around])
    f, p = signal.welch(data[C4, on], fs, nperseg=int(8 * fs))
    assert p[np.argmin(np.abs(f - 40.0))] < 3 * np.median(p[around])


def test_random_placement_follows_the_stage_policy_without_overlap(long_sleep):
    data, band = long_sleep
    new, truth = run(data, band, [Entrainment(frequency_hz=6.0, count=3, duration_s=120.0, stages=(N3,))], seed=7)
    onsets = sorted(r["onset"] for r in truth)
    assert len(onsets) == 3
    assert all(band.hypnogram[int(t // 30)] == N3 for t in onsets)
    assert all(b - a >= 120.0 for a, b in zip(onsets, onsets[1:]))
    _, again = run(data, band, [Entrainment(frequency_hz=6.0, count=3, duration_s=120.0, stages=(N3,))], seed=7)
    assert again == truth


def test_a_policy_that_cannot_be_met_places_nothing_and_warns():
    data, band = simulated([W] * 20)
    with pytest.warns(RuntimeWarning, match="placed 0 of 1"):
        new, truth = run(data, band, [Electrical()])
    assert truth == [] and np.array_equal(new, data)


# --- tampering --------------------------------------------------------------------------------------

def test_replayed_segments_equal_their_earlier_sources(long_sleep):
    data, band = long_sleep
    fs = band.fs
    new, truth = run(data, band, [Tampering(mode="replay", count=3)], seed=8)
    assert len(truth) == 3
    changed = np.zeros(data.shape[1], dtype=bool)
    for r in truth:
        p = r["params"]
        assert r["duration"] == 30.0 and p["source"] == "self" and p["source_duration"] == 30.0
        assert p["source_onset"] + 30.0 <= r["onset"]
        t, s, n = int(round(r["onset"] * fs)), int(round(p["source_onset"] * fs)), int(30 * fs)
        assert np.array_equal(new[:, t:t + n], new[:, s:s + n])
        assert np.array_equal(new[:, t:t + n], data[:, s:s + n])
        changed[t:t + n] = True
    assert np.array_equal(new[:, ~changed], data[:, ~changed])


def test_spliced_segment_equals_the_donor_and_crossfades_hide_the_seams(long_sleep):
    data, band = long_sleep
    fs = band.fs
    donor, _ = simulated([N2] * 10, seed=99)  # another person
    new, truth = run(data, band, [Tampering(mode="splice", donor=donor, donor_label="night 99", duration_s=60.0)])
    (r,) = truth
    assert r["params"]["source"] == "night 99"
    t, s, n = int(round(r["onset"] * fs)), int(round(r["params"]["source_onset"] * fs)), int(60 * fs)
    assert np.array_equal(new[:, t:t + n], donor[:, s:s + n])
    faded, truth = run(data, band, [Tampering(mode="splice", donor=donor, crossfade_s=2.0, onsets=(900.0,),
                                              source_onsets=(100.0,))])
    t, s, k, n = int(900 * fs), int(100 * fs), int(2 * fs), int(30 * fs)
    assert np.array_equal(faded[:, t + k:t + n - k], donor[:, s + k:s + n - k])
    weight = (np.arange(k) + 1) / (k + 1)  # linear fade, 0 and 1 excluded
    assert np.allclose(faded[:, t:t + k], weight * donor[:, s:s + k] + (1 - weight) * data[:, t:t + k], atol=1e-6)
    assert np.allclose(faded[:, t + n - k:t + n], weight[::-1] * donor[:, s + n - k:s + n]
                       + (1 - weight[::-1]) * data[:, t + n - k:t + n], atol=1e-6)


@pytest.mark.parametrize("factor", [0.9, 1.08])
def test_time_warped_segment_is_the_resampled_source(long_sleep, factor):
    data, band = long_sleep
    fs = band.fs
    new, truth = run(data, band, [Tampering(mode="warp", warp_factor=factor, onsets=(1000.0,))])
    (r,) = truth
    p = r["params"]
    assert p["warp_factor"] == pytest.approx(factor) and p["source_onset"] == 1000.0
    assert p["source_duration"] == pytest.approx(30.0 * factor, abs=1 / fs)
    n = int(30 * fs)
    t = np.arange(n) / fs
    for row in (C4, FPZ, EOG):
        expected = np.interp(1000.0 + factor * t, np.arange(data.shape[1]) / fs, data[row])
        warped = new[row, int(1000 * fs):int(1000 * fs) + n]
        assert np.corrcoef(warped, expected)[0, 1] > 0.97
        assert np.corrcoef(warped, data[row, int(1000 * fs):int(1000 * fs) + n])[0, 1] < 0.5


# --- whole API --------------------------------------------------------------------------------------

def test_all_kinds_together_are_reproducible_logged_in_time_order_and_leave_the_input_alone(long_sleep):
    data, band = long_sleep
    kinds = [Tampering(mode="replay"), Auditory(montage_gain=0.7), Electrical(frequency_hz=12.0, n_blocks=2),
             Entrainment()]
    new, truth = run(data, band, kinds, seed=11)
    again, truth_again = run(data, band, kinds, seed=11)
    other, _ = run(data, band, kinds, seed=12)
    assert np.array_equal(new, again) and truth == truth_again and not np.array_equal(new, other)
    assert {r["kind"] for r in truth} == {"auditory", "electrical", "entrainment", "tampering"}
    assert [r["onset"] for r in truth] == sorted(r["onset"] for r in truth)
    index = {r["kind"]: r["params"]["adjustment"] for r in truth}
    assert index == {"tampering": 0, "auditory": 1, "electrical": 2, "entrainment": 3}
    json.dumps(truth)  # plain Python values only
    # tampering is applied last: the replayed copy carries the stimulation that was in its source
    (tamper,) = [r for r in truth if r["kind"] == "tampering"]
    fs = band.fs
    t, s = int(round(tamper["onset"] * fs)), int(round(tamper["params"]["source_onset"] * fs))
    assert np.array_equal(new[:, t:t + int(30 * fs)], new[:, s:s + int(30 * fs)])
    # appending an adjustment does not change what the earlier ones do
    _, alone = run(data, band, kinds[:2], seed=11)
    assert [r for r in truth if r["kind"] in ("tampering", "auditory")] == alone


@pytest.mark.parametrize("fs", [50.0, 100.0])
def test_works_on_one_channel_at_real_excerpt_rates(fs):
    hyp = [N2] * 10 + [N3] * 30
    data, band = simulated(hyp, seed=21, fs=fs)
    eeg = data[C4]
    kinds = [Auditory(montage_gain=0.7), Electrical(frequency_hz=12.0, n_blocks=1, block_s=120.0, onsets=(60.0,)),
             Entrainment(frequency_hz=6.0 if fs == 50 else 40.0, onsets=(400.0,), duration_s=200.0),
             Tampering(mode="replay", onsets=(1000.0,))]
    before = eeg.copy()
    new, truth = inject(eeg, fs, hyp, kinds, np.random.default_rng(0), labels=["C3-A1"])
    assert np.array_equal(eeg, before) and new.shape == eeg.shape and new.dtype == np.float64
    electrical = next(r for r in truth if r["kind"] == "electrical")
    assert list(electrical["params"]["harmonics"]) == (["2"] if fs == 50 else ["2", "3"])  # only below Nyquist
    clicks = next(r for r in truth if r["kind"] == "auditory")["params"]["clicks"]
    assert len(clicks) >= 20 and {c["stage"] for c in clicks} <= {N2, N3}
    first = [c["time"] for c in clicks if c["order"] == 1 and not 60 <= c["time"] <= 182]
    mean = locked(new - eeg, first, fs, 1.0).mean(axis=0)
    t = np.arange(mean.size) / fs
    assert -mean[(t >= 0.45) & (t <= 0.7)].min() == pytest.approx(45.0 * 0.9, rel=0.2)  # central lead
    added = (new - eeg)[int(450 * fs):int(550 * fs)]
    assert amplitude_at(added, 6.0 if fs == 50 else 40.0, fs) == pytest.approx(2.0, rel=0.1)


def test_stimulation_is_digitised_on_the_recording_grid_and_tampering_is_not():
    hyp = [N2] * 10 + [N3] * 30
    data, band = simulated(hyp, seed=22, fs=100.0)
    step, offset = 0.0125, 0.003
    eeg = offset + np.round((data[C4] - offset) / step) * step  # a recording stored on an ADC grid
    kinds = [Electrical(frequency_hz=12.0, n_blocks=1, block_s=120.0, onsets=(60.0,)),
             Tampering(mode="warp", duration_s=30.0, onsets=(600.0,))]
    new, truth = inject(eeg, 100.0, hyp, kinds, np.random.default_rng(0), labels=["C3-A1"], adc_grid=(step, offset))
    residue = np.abs((new - offset) / step - np.round((new - offset) / step))
    stimulated = slice(int(70 * 100), int(170 * 100))
    warped = slice(int(605 * 100), int(625 * 100))
    assert np.abs(new[stimulated] - eeg[stimulated]).max() > 1.0  # the current is there ...
    assert residue[stimulated].max() < 1e-6  # ... on the grid, as the ADC would deliver it
    assert np.median(residue[warped]) > 0.1  # resampled by the tamperer after the ADC: off the grid
    untouched = slice(int(300 * 100), int(500 * 100))
    assert np.array_equal(new[untouched], eeg[untouched])


def test_real_excerpt_clicks_only_in_its_nrem(dreams_dir):
    rk_to_code = {5: W, 4: REM, 3: N1, 2: N2, 1: N3, 0: N3}
    eeg = np.loadtxt(dreams_dir / "excerpt3.txt", skiprows=1)  # C3-A1, 50 Hz, 5-s R&K scores
    scores = np.loadtxt(dreams_dir / "Hypnogram_excerpt3.txt", skiprows=1).astype(int)
    hyp = np.array([rk_to_code.get(s, -1) for s in scores])
    before = eeg.copy()
    new, truth = inject(eeg, 50.0, hyp, [Auditory()], np.random.default_rng(0), labels=["C3-A1"], epoch_s=5.0)
    assert np.array_equal(eeg, before)
    times = click_times(truth)
    assert times.size >= 10
    assert set(hyp[(times // 5).astype(int)]) <= {N2, N3}


def test_invalid_requests_are_refused(night):
    data, band = night
    with pytest.raises(ValueError, match="Nyquist"):
        run(data, band, [Electrical(frequency_hz=128.0, onsets=(0.0,))])
    with pytest.raises(ValueError, match="Nyquist"):
        inject(data[0], 50.0, [N2], [Entrainment(frequency_hz=40.0)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="mode"):
        Auditory(mode="sometimes")
    with pytest.raises(ValueError, match="donor"):
        Tampering(mode="splice")
    with pytest.raises(ValueError, match="donor"):
        run(data, band, [Tampering(mode="splice", donor=np.zeros((2, 100000)))])
    with pytest.raises(ValueError, match="does not fit"):
        run(data, band, [Entrainment(onsets=(1700.0,))])
    with pytest.raises(ValueError, match="unknown adjustment"):
        run(data, band, ["auditory"])


def test_detection_does_not_import_scipy_signal_or_stats():
    """Each takes about half a second to import: no process that detects should pay for them."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom dsp.adjustments import detect_adjustments\n"
            "x = np.random.default_rng(0).normal(0, 20, (2, 128 * 900))\n"
            "detect_adjustments(x, 128.0)\n"
            "print(sorted(m for m in ('scipy.signal', 'scipy.stats', 'scipy.ndimage') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
