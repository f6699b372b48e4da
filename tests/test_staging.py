"""The stager, offline and live.

Agreement with the simulator's truth checks the wiring and the stager's logic, not accuracy on
people. The real DREAMS excerpts (read in place from ../shared) check the properties the stager
promises on real EEG: a stage for every excerpt, amplitude invariance, live close to offline.
Agreement with the experts is measured by benchmarks/staging_dreams.py, not asserted here.
"""

import numpy as np
import pytest

from dsp.errors import SignalError
from dsp.stages import STAGES, from_labels, to_labels
from dsp.features import EEG_FEATURES, GAIN_DEPENDENT
from dsp.staging import NOISE_SENSITIVE, LiveStager, stage
from firmware_sim.headband import SimulatedHeadband
from firmware_sim.hypnogram import STAGES as SIM_STAGES


@pytest.fixture(scope="module")
def night():
    band = SimulatedHeadband(hours=4, seed=21)
    return band, band.read_all()


def test_simulator_and_dsp_share_the_stage_vocabulary():
    assert SIM_STAGES == STAGES
    assert to_labels(from_labels(["W", "N3", "?", "REM"])) == ["W", "N3", "?", "REM"]


def test_offline_staging_follows_the_simulated_truth(night):
    band, data = night
    result = stage(data[0], band.fs, emg=data[3])
    assert result.stages.shape == (len(band.hypnogram),)
    assert (result.stages == band.hypnogram).mean() >= 0.8
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0)
    assert np.all((result.confidence > 0) & (result.confidence <= 1))


def test_a_nap_whose_features_sit_far_from_the_prototypes_is_not_called_sleep_onset_rem():
    """Half an hour of a simulated Cyton, 15 min of N2 between wake. EM started from the prototypes
    alone settles in a mode where that N2 is REM; started from "the median epoch is N2" too, the
    stager keeps the mode the data support better."""
    band = SimulatedHeadband("cyton", hours=0.5, seed=4)
    data = band.read_all()
    result = stage(data[:2], band.fs)
    truth = np.asarray(band.hypnogram)[: len(result.stages)]
    assert (truth == 2).sum() >= 20 and not (truth == 4).any()
    assert not (result.stages == 4).any()
    assert (result.stages == truth).mean() >= 0.9


def _eeg(band, data):
    return data[[i for i, kind in enumerate(band.kinds) if kind == "EEG"]]


def test_a_consumer_headbands_nap_is_staged_with_the_calibration_of_an_earlier_night():
    """A 2-h Muse S nap: its dry frontal and temporal leads shift the noise-sensitive features
    many prior SDs from a scalp montage's, more than 2 h of data can move the offsets. The offsets
    a 3-h night of the same headband settled on, as the prior's centre, stage it offline and live."""
    earlier = SimulatedHeadband("muse-s", hours=3, seed=21)
    calibration = stage(_eeg(earlier, earlier.read_all()), earlier.fs).feature_offsets
    assert calibration.shape == (len(EEG_FEATURES),)
    assert np.all(calibration[GAIN_DEPENDENT != 0] == 0) and calibration[NOISE_SENSITIVE].max() > 0.2
    band = SimulatedHeadband("muse-s", hours=2, seed=6)
    eeg = _eeg(band, band.read_all())
    truth = np.asarray(band.hypnogram)
    offline = stage(eeg, band.fs, calibration=calibration).stages
    assert (offline == truth[: len(offline)]).mean() >= 0.9
    assert (offline[truth[: len(offline)] == 2] == 2).mean() >= 0.9
    stager = LiveStager(band.fs, n_eeg=eeg.shape[0], calibration=calibration)
    np.testing.assert_array_equal(stager.feature_offsets[NOISE_SENSITIVE], calibration[NOISE_SENSITIVE])
    step = int(band.fs)
    live = np.array([e.stage for i in range(0, eeg.shape[1], step) for e in stager.push(eeg[:, i:i + step])])
    assert (live == truth[: len(live)]).mean() >= 0.9


def test_no_calibration_is_a_calibration_of_zero_offsets(night):
    band, data = night
    plain = stage(data[:2], band.fs)
    zero = stage(data[:2], band.fs, calibration=np.zeros(len(EEG_FEATURES)))
    np.testing.assert_array_equal(plain.probabilities, zero.probabilities)
    assert np.all(plain.feature_offsets[GAIN_DEPENDENT != 0] == 0)
    for bad in (np.zeros(3), np.full(len(EEG_FEATURES), np.nan)):
        with pytest.raises(ValueError, match="calibration"):
            stage(data[:2], band.fs, calibration=bad)


def test_amplitude_scaling_changes_at_most_five_percent_of_epochs(night):
    band, data = night
    base = stage(data[:2], band.fs, emg=data[3]).stages
    for factor in (0.5, 2.0):
        scaled = stage(data[:2] * factor, band.fs, emg=data[3] * factor).stages
        assert (scaled != base).mean() <= 0.05


def test_live_agrees_with_offline_and_ignores_block_sizes(night):
    band, data = night
    offline = stage(data[0], band.fs, emg=data[3]).stages

    def live(block):
        stager = LiveStager(band.fs, n_eeg=1, n_emg=1)
        out = []
        for i in range(0, data.shape[1], block):
            out += stager.push(data[:1, i:i + block], data[3:4, i:i + block])
        return np.array([e.stage for e in out])

    small, large = live(25), live(10_000)
    assert np.array_equal(small, large)
    assert small.shape == offline.shape and (small == offline).mean() >= 0.85


def _live_stages(band, eeg, emg=None, block=256):
    """First-given live stages of one EEG row (and one EMG row), fed ``block`` samples at a time."""
    stager = LiveStager(band.fs, n_eeg=1, n_emg=0 if emg is None else 1)
    out = []
    for i in range(0, eeg.shape[-1], block):
        out += stager.push(eeg[None, i:i + block], None if emg is None else emg[None, i:i + block])
    return np.array([e.stage for e in out]), stager


def test_live_staging_uses_the_chin_emg(night):
    # the simulator's REM has the lowest chin tone (atonia): with the EMG, live finds more of it
    band, data = night
    with_emg = _live_stages(band, data[0], data[3])[0]
    without = _live_stages(band, data[0])[0]
    rem = band.hypnogram == STAGES.index("REM")
    assert rem.any() and (with_emg != without).any()
    assert (with_emg[rem] == STAGES.index("REM")).mean() > (without[rem] == STAGES.index("REM")).mean()


def test_live_chin_tone_separates_rem_from_wake(night):
    # same EEG, but wake-level tone (x8: 2.5 -> 20 uV in the simulator) in the REM epochs after the first
    # hour: the tone alone must turn them away from REM, towards wake, and leave the other epochs alone
    band, data = night
    n = int(round(30 * band.fs))
    rem = np.flatnonzero(band.hypnogram == STAGES.index("REM"))
    rem = rem[rem >= 120]
    tense = data[3].copy()
    for k in rem:
        tense[k * n:(k + 1) * n] *= 8
    base = _live_stages(band, data[0], data[3])[0]
    raised = _live_stages(band, data[0], tense)[0]
    assert len(rem) >= 10

    def called_rem(stages):
        return int((stages[rem] == STAGES.index("REM")).sum())

    assert called_rem(raised) < called_rem(base) / 2
    assert (raised[rem] == STAGES.index("W")).sum() > (base[rem] == STAGES.index("W")).sum()
    others = np.setdiff1d(np.arange(len(base)), rem)
    assert (raised[others] != base[others]).mean() <= 0.05


def test_live_emg_reference_is_chosen_by_the_eeg_alone(night):
    # not circular: the pass that picks the NREM epochs of the tone's reference, and the offsets, are
    # those of a stager without EMG, whatever the EMG does (here: its own, and the night's played backwards)
    band, data = night
    without = _live_stages(band, data[0])[1]
    for emg in (data[3], data[3, ::-1].copy()):
        with_emg = _live_stages(band, data[0], emg)[1]
        np.testing.assert_array_equal(with_emg._window_post, without._window_post)
        np.testing.assert_array_equal(with_emg._offset, without._offset)


def test_live_emg_amplitude_does_not_matter(night):
    # the tone is a robust z against the night's own NREM tone, so the EMG's gain cancels
    band, data = night
    base = _live_stages(band, data[0], data[3])[0]
    for factor in (0.5, 3.0):
        np.testing.assert_array_equal(_live_stages(band, data[0], data[3] * factor)[0], base)


def test_live_state_stays_bounded_however_long_the_night(night, monkeypatch):
    # a small window so that 4 h wraps it; state measured after 2 h and after 4 h
    import dsp.staging

    monkeypatch.setattr(dsp.staging, "OFFSET_WINDOW_EPOCHS", 60)
    band, data = night

    def held(value):  # array bytes and container lengths, through the stager's attributes
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, (list, tuple, dict)):
            return len(value) + sum(held(v) for v in (value.values() if isinstance(value, dict) else value))
        return held(vars(value)) if isinstance(value, LiveStager) else 0

    half = data.shape[1] // 2
    first = _live_stages(band, data[0, :half], data[3, :half])[1]
    whole_stages, whole = _live_stages(band, data[0], data[3])
    assert whole.epochs_done == 2 * first.epochs_done and held(whole) == held(first)
    np.testing.assert_array_equal(_live_stages(band, data[0], data[3], block=7_680)[0], whole_stages)
    offline = stage(data[0], band.fs, emg=data[3]).stages
    assert (whole_stages == offline).mean() >= 0.85  # still tracking offline with a 30-min window


def test_bad_epochs_are_unscorable_not_guessed(night):
    band, data = night
    eeg = data[0, : int(10 * 30 * band.fs)].copy()
    n = int(30 * band.fs)
    eeg[2 * n:3 * n] = np.nan                       # lost
    eeg[5 * n:6 * n] = 187.5                        # railed
    eeg[7 * n:8 * n] = np.clip(eeg[7 * n:8 * n] * 20, -200, 200)  # clipped
    result = stage(eeg, band.fs)
    assert [k for k, s in enumerate(result.stages) if s == -1] == [2, 5, 7]
    assert np.all(result.confidence[[2, 5, 7]] == 0)


def test_a_lead_that_fails_mid_night_costs_only_its_own_epochs(night):
    # the second EEG lead rails after the first hour: the first one stages the rest of the night
    band, data = night
    eeg = data[:2].copy()
    eeg[1, int(3600 * band.fs):] = 187.5
    alone = stage(data[:1], band.fs).stages
    offline = stage(eeg, band.fs).stages
    assert np.all(offline >= 0) and (offline[120:] == alone[120:]).mean() >= 0.9
    stager = LiveStager(band.fs, n_eeg=2)
    live = np.array([e.stage for i in range(0, eeg.shape[1], 7_680) for e in stager.push(eeg[:, i:i + 7_680])])
    assert np.all(live >= 0) and (live == offline).mean() >= 0.85


def test_a_few_lost_samples_do_not_cost_the_epoch(night):
    band, data = night
    stager = LiveStager(band.fs)
    n = int(30 * band.fs)
    stager.push(data[:1, :1000])
    stager.push_gap(50)  # 50 samples lost: under 5 % of the epoch
    out = stager.push(data[:1, 1050:n])
    assert len(out) == 1 and out[0].stage != -1


@pytest.mark.parametrize("eeg, fs, match", [
    (np.zeros(0), 100.0, "too short"),
    (np.random.default_rng(0).normal(0, 20, 2900), 100.0, "too short"),
    (np.random.default_rng(0).normal(0, 20, 30_000), 40.0, "at least 50 Hz"),
    (np.full(30_000, 3.0), 100.0, "flat"),
    (np.full(30_000, np.nan), 100.0, "missing"),
])
def test_unusable_signals_raise_one_clear_error(eeg, fs, match):
    with pytest.raises(SignalError, match=match):
        stage(eeg, fs)


DREAMS_RATES = ((1, 100.0), (2, 200.0), (3, 50.0), (4, 200.0))


@pytest.fixture(scope="module")
def excerpts():
    from conftest import DREAMS

    if not (DREAMS / "excerpt1.txt").is_file():
        pytest.skip("../shared/data/dreams-spindles is not present")
    return [(np.loadtxt(DREAMS / f"excerpt{n}.txt", skiprows=1), fs) for n, fs in DREAMS_RATES]


def test_real_development_excerpts_each_get_a_stage_per_epoch(excerpts):
    """Every excerpt, including the 50-Hz one, is staged; agreement is measured by benchmarks/."""
    for eeg, fs in excerpts:
        result = stage(eeg, fs)
        assert result.stages.shape == (60,) and np.all(result.stages >= 0)


def test_real_eeg_scaled_by_half_or_double_changes_at_most_five_percent(excerpts):
    changed = total = 0
    for eeg, fs in excerpts:
        base = stage(eeg, fs).stages
        for factor in (0.5, 2.0):
            changed += int((stage(eeg * factor, fs).stages != base).sum())
            total += len(base)
    assert changed / total <= 0.05


def test_live_agrees_with_offline_on_real_eeg(excerpts):
    same = total = 0
    for eeg, fs in excerpts:
        offline = stage(eeg, fs).stages
        stager = LiveStager(fs)
        live = []
        step = int(fs)  # one-second blocks, as a headband delivers them
        for i in range(0, len(eeg), step):
            live += [e.stage for e in stager.push(eeg[None, i:i + step])]
        same += int((np.array(live) == offline).sum())
        total += len(offline)
    assert same / total >= 0.85


class SlicedOnly:
    """A lazily read recording (as ingest.edf.SignalReader): shape, and samples only when sliced."""

    def __init__(self, data):
        self.data, self.shape = data, data.shape

    def __getitem__(self, key):
        return self.data[key].astype(np.float32)


def test_a_reader_is_staged_as_the_array_it_reads(night):
    band, data = night
    eeg, emg = data[:2].astype(np.float32), data[3:4].astype(np.float32)
    expected = stage(eeg, band.fs, emg=emg)
    got = stage(SlicedOnly(data[:2]), band.fs, emg=SlicedOnly(data[3:4]))
    np.testing.assert_array_equal(got.stages, expected.stages)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=1e-12, atol=1e-12)


def test_staging_a_file_in_a_fresh_process_pauses_the_collector_only_while_loading(night, tmp_path):
    # the first stage_file of a process imports numba with the garbage collector paused, then freezes
    # what the imports made: the result is the in-process one and the collector runs again after
    import json
    import subprocess
    import sys

    from dreamsync.pipeline import stage_file
    from ingest.edf import write_edf

    band, data = night
    path = tmp_path / "hour.edf"
    n = int(3600 * band.fs)
    write_edf(path, data[:2, :n], band.fs, list(band.channels[:2]), list(band.kinds[:2]))
    code = ("import gc, json, sys\nfrom dreamsync.pipeline import stage_file\n"
            "doc = stage_file(sys.argv[1]).to_json()\n"
            "print(json.dumps({'doc': doc, 'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    fresh = json.loads(done.stdout)
    assert fresh["enabled"] and fresh["frozen"] > 0
    assert fresh["doc"] == json.loads(json.dumps(stage_file(str(path)).to_json()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gain_table_is_the_gaussian_likelihood_of_each_gain_relative_to_the_best(seed):
    from dsp.staging import GAIN_OFFSETS, _gain_table

    rng = np.random.default_rng(seed)
    t_len, k_len = 40, 5
    values = rng.normal(2.5, 0.6, (t_len, 1))
    ok = rng.uniform(size=t_len) > 0.1
    gains = 2.4 + GAIN_OFFSETS
    centre = rng.normal(0.0, 0.5, (k_len, 1))
    spread = rng.uniform(0.05, 0.5, (k_len, 1))  # narrow: factors far from the best underflow to 0
    table, peak = _gain_table(values, ok, gains, np.ones(1), centre, spread)
    loglik = -0.5 * ((values[:, None, None, 0] - gains[None, None, :] - centre[None, :, :]) / spread[None, :, :]) ** 2
    expected_peak = loglik.max(axis=2)
    expected = np.exp(loglik - expected_peak[:, :, None])
    np.testing.assert_allclose(table[ok], expected[ok], rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(peak[ok], expected_peak[ok], rtol=1e-12)
    assert np.all(table[~ok] == 1) and np.all(peak[~ok] == 0)


def test_dropping_hopeless_gain_hypotheses_after_the_first_pass_changes_nothing(night, monkeypatch):
    import dsp.staging

    band, data = night
    narrowed = stage(data[:2], band.fs, emg=data[3])
    monkeypatch.setattr(dsp.staging, "NEGLIGIBLE_EVIDENCE_NATS", np.inf)  # keep the whole bank
    whole = stage(data[:2], band.fs, emg=data[3])
    np.testing.assert_array_equal(narrowed.stages, whole.stages)
    np.testing.assert_allclose(narrowed.probabilities, whole.probabilities, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def eyes_night():
    """A Cyton+Daisy night without its chin EMG: EEG, a left and right EOG pair, an accelerometer."""
    band = SimulatedHeadband("cyton-daisy", hours=3, seed=7)
    rows = {kind: [i for i, k in enumerate(band.kinds) if k == kind] for kind in ("EEG", "EOG", "ACC")}
    rows["EEG"] = rows["EEG"][:2]
    return band, band.read_all(), rows


def test_eye_movements_make_rem_surer_and_leave_nrem_alone(eyes_night):
    band, data, rows = eyes_night
    eeg, eog = data[rows["EEG"]], data[rows["EOG"]]
    without, with_eog = stage(eeg, band.fs), stage(eeg, band.fs, eog=eog)
    rem, n2 = band.hypnogram == STAGES.index("REM"), band.hypnogram == STAGES.index("N2")
    assert rem.sum() >= 20
    assert with_eog.probabilities[rem, 4].mean() > without.probabilities[rem, 4].mean() + 0.05
    assert with_eog.probabilities[n2, 4].mean() <= without.probabilities[n2, 4].mean() + 0.01
    # the EOG's threshold is the recording's own: its gain, and the EEG's, do not matter
    for gain in (0.5, 2.0):
        scaled = stage(eeg * gain, band.fs, eog=eog * gain).stages
        assert (scaled != with_eog.stages).mean() <= 0.05


def test_body_movement_makes_wake_likelier_where_the_head_moves(eyes_night):
    from dsp.evidence import movement_seconds

    band, data, rows = eyes_night
    eeg, acc = data[rows["EEG"]], data[rows["ACC"]]
    without, with_acc = stage(eeg, band.fs), stage(eeg, band.fs, acc=acc, acc_fs=band.fs)
    moving = movement_seconds(acc, band.fs, len(band.hypnogram)) > 0
    assert 10 <= moving.sum() <= 0.5 * moving.size
    assert with_acc.probabilities[moving, 0].mean() > without.probabilities[moving, 0].mean()
    assert abs(with_acc.probabilities[~moving, 0].mean() - without.probabilities[~moving, 0].mean()) < 0.01


def test_live_staging_reads_the_eog_and_accelerometer_too(eyes_night):
    band, data, rows = eyes_night

    def live(eog: bool) -> np.ndarray:
        stager = LiveStager(band.fs, n_eeg=2, n_eog=2 if eog else 0, n_acc=3 if eog else 0)
        out = []
        for i in range(0, data.shape[1], 250):
            block = data[:, i:i + 250]
            out += stager.push(block[rows["EEG"]], None, *((block[rows["EOG"]], block[rows["ACC"]]) if eog else ()))
        return np.array([e.stage for e in out])

    rem = band.hypnogram == STAGES.index("REM")
    with_eyes, without = live(True), live(False)
    assert (with_eyes[rem] == 4).mean() > (without[rem] == 4).mean()
    with pytest.raises(SignalError, match="EOG"):
        LiveStager(band.fs, n_eog=2).push(data[:1, :100])
