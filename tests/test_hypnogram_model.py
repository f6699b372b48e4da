"""The night generator against the 20 real expert hypnograms it is fitted to (Sleep-EDF, sleep cassette).

The real nights are read in place from ../shared when it is present. Their ranges are also stored in
the shipped parameters file (``real_nights``), so the comparison still means something without
../shared: the simulated nights are held to the statistics of real nights either way, and when the
data are present the stored ranges are checked against the ones recomputed here.

Sleep statistics are defined as in shared/docs/sleep-science.md and computed by the small helpers
below, independently of the fitting script.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED
from firmware_sim import hypnogram_fit
from firmware_sim.hypnogram import EPOCH_SECONDS, N1, N2, N3, REM, STAGES, W, generate_hypnogram, load_parameters

SLEEP_EDF = SHARED / "data" / "sleep-edf-sc-hypnograms"
MIN = EPOCH_SECONDS / 60.0  # minutes per epoch
N_SIMULATED = 60
STATISTICS = ("tst_min", "se", "waso_min", "sol_min", "rem_latency_min", "n1_pct", "n2_pct", "n3_pct", "rem_pct")


# --------------------------------------------------------------------------------------------------
# Test-local sleep statistics


def night_statistics(hyp) -> dict:
    """TST, SE, WASO, SOL, REM latency from sleep onset (minutes or fraction) and stage % of TST."""
    hyp = np.asarray(hyp)
    asleep = np.flatnonzero(hyp != W)
    onset, final = asleep[0], asleep[-1]
    period = hyp[onset:final + 1]  # sleep period: sleep onset to final awakening
    tst = np.count_nonzero(period != W)
    stats = {"tst_min": tst * MIN, "se": tst / len(hyp), "waso_min": np.count_nonzero(period == W) * MIN,
             "sol_min": onset * MIN, "rem_latency_min": (np.flatnonzero(hyp == REM)[0] - onset) * MIN}
    for stage in (N1, N2, N3, REM):
        stats[f"{STAGES[stage].lower()}_pct"] = 100.0 * np.count_nonzero(period == stage) / tst
    return stats


def rem_period_onsets(hyp) -> np.ndarray:
    """Epoch of each REM period's first REM epoch; 15 min or more without REM separates two periods."""
    rem = np.flatnonzero(np.asarray(hyp) == REM)
    return rem[np.r_[True, np.diff(rem) > 30]] if rem.size else rem


def thirds(hyp):
    n = len(hyp)
    return hyp[: n // 3], hyp[2 * n // 3:]


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def simulated():
    """Sixty seeded nights of 8 to 9 h in bed."""
    return [generate_hypnogram(8.0 + i / N_SIMULATED, seed=i) for i in range(N_SIMULATED)]


@pytest.fixture(scope="module")
def real_nights():
    if not SLEEP_EDF.is_dir():
        pytest.skip("../shared/data/sleep-edf-sc-hypnograms is not present")
    return hypnogram_fit.load_nights(SLEEP_EDF)


def assert_like_real_nights(simulated, real_range):
    """Each statistic: simulated median within the real interquartile range, and at least 75 % of the
    simulated nights within the real min-max.

    A new night from the real population lands outside the range of 20 real nights with probability
    2/21 (about 10 %); the model draws its periods independently, which spreads some statistics (REM
    share most) a little wider than these 20 nights, so up to a quarter may fall outside.
    """
    for key in STATISTICS:
        values = np.array([night_statistics(h)[key] for h in simulated])
        lo, hi = real_range[key]["min"], real_range[key]["max"]
        inside = np.mean((values >= lo - 1e-9) & (values <= hi + 1e-9))
        assert inside >= 0.75, f"{key}: only {inside:.0%} of simulated nights within the real [{lo}, {hi}]"
        median = np.median(values)
        assert real_range[key]["p25"] - 1e-9 <= median <= real_range[key]["p75"] + 1e-9, \
            f"{key}: simulated median {median} outside the real quartiles {real_range[key]}"


# --------------------------------------------------------------------------------------------------
# Simulated nights look like the real ones


def test_simulated_nights_fall_in_the_stored_ranges_of_the_real_nights(simulated):
    params = load_parameters()
    assert params["n_nights"] == 20
    assert_like_real_nights(simulated, params["real_nights"])


def test_simulated_nights_fall_in_the_ranges_recomputed_from_the_real_nights(simulated, real_nights):
    assert len(real_nights) == 20
    stats = [night_statistics(n) for n in real_nights]
    recomputed = {}
    for key in STATISTICS:
        values = [s[key] for s in stats]
        recomputed[key] = dict(zip(("min", "p25", "median", "p75", "max"),
                                   np.percentile(values, [0, 25, 50, 75, 100])))
        for q, value in recomputed[key].items():  # the stored ranges are the data's, not a copy-edit
            assert load_parameters()["real_nights"][key][q] == pytest.approx(value, rel=1e-5)
    assert_like_real_nights(simulated, recomputed)
    # the usual-practice cut keeps 30 min of wake before sleep onset and after the final awakening
    assert all(s["sol_min"] == 30.0 for s in stats)
    assert all(np.all(n[-60:] == W) and n[-61] != W for n in real_nights)


def test_slow_wave_sleep_comes_early_and_rem_late(simulated):
    first = np.hstack([thirds(h)[0] for h in simulated])
    last = np.hstack([thirds(h)[1] for h in simulated])
    assert np.mean(first == N3) > 3 * np.mean(last == N3)
    assert np.mean(last == REM) > 1.5 * np.mean(first == REM)
    # night by night too, as in 18 and 20 of the 20 real nights
    assert np.mean([np.sum(a == N3) > np.sum(b == N3) for a, b in map(thirds, simulated)]) >= 0.8
    assert np.mean([np.sum(b == REM) > np.sum(a == REM) for a, b in map(thirds, simulated)]) >= 0.8


def test_sleep_cycles_last_about_ninety_minutes(simulated):
    onsets = [rem_period_onsets(h) for h in simulated]
    cycle_minutes = np.concatenate([np.diff(o) for o in onsets]) * MIN
    assert 70 <= np.median(cycle_minutes) <= 120
    assert 3 <= np.median([len(o) for o in onsets]) <= 6  # REM periods in 7-8 h of sleep


def test_brief_awakenings_interrupt_the_night(simulated):
    counts, lengths = [], []
    for h in simulated:
        asleep = np.flatnonzero(h != W)
        period = h[asleep[0]:asleep[-1] + 1]
        edges = np.diff(np.r_[0, (period == W).astype(int), 0])
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        counts.append(len(starts))
        lengths += list((ends - starts) * MIN)
    assert 4 <= np.median(counts) <= 25  # real nights: 3 to 28, median 10
    assert np.median(lengths) <= 2.0  # most awakenings last a minute or two


def test_stages_come_in_bouts_not_epoch_noise(simulated):
    # real nights change stage ~100-170 times in 8 h: about one bout every 4 minutes
    changes = np.median([np.count_nonzero(np.diff(h)) for h in simulated])
    assert 70 <= changes <= 170


# --------------------------------------------------------------------------------------------------
# The generator's contract


def test_same_seed_same_night_other_seed_other_night():
    assert np.array_equal(generate_hypnogram(8, seed=3), generate_hypnogram(8, seed=3))
    assert not np.array_equal(generate_hypnogram(8, seed=3), generate_hypnogram(8, seed=4))
    assert np.array_equal(generate_hypnogram(None, seed=3), generate_hypnogram(None, seed=3))


@pytest.mark.parametrize("hours", [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 7.3, 8.0, 9.99, 12.0])
def test_time_in_bed_is_honoured_exactly(hours):
    hyp = generate_hypnogram(hours, seed=1)
    assert hyp.dtype == np.int8 and hyp.shape == (max(1, round(hours * 120)),)
    assert hyp.min() >= 0 and hyp.max() < len(STAGES) and hyp[0] == W
    if hours >= 2:  # 30 min of wake at each end, as in the real nights
        assert np.all(hyp[:60] == W) and hyp[60] != W and np.all(hyp[-60:] == W)


@pytest.mark.parametrize("hours", [0, -1.0, float("nan")])
def test_time_in_bed_must_be_positive(hours):
    with pytest.raises(ValueError, match="positive"):
        generate_hypnogram(hours)


def test_without_hours_the_time_in_bed_is_drawn_like_the_real_ones():
    law = load_parameters()["sleep_period_epochs"]
    lengths = np.array([len(generate_hypnogram(None, seed=s)) for s in range(40)])
    assert np.all((lengths >= law["min"] + 120) & (lengths <= law["max"] + 120))
    assert len(np.unique(lengths)) > 30


def test_the_generator_loads_neither_the_fit_nor_an_edf_reader():
    code = ("import sys\nfrom firmware_sim.hypnogram import generate_hypnogram\ngenerate_hypnogram(1)\n"
            "print(sorted(m for m in ('firmware_sim.hypnogram_fit', 'edfio', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------------
# The parameters and the fit


def test_parameters_are_a_model_not_the_data():
    params = load_parameters()

    def lists(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from lists(v)
        elif isinstance(value, list):
            yield value
            for v in value:
                yield from lists(v)

    # no list longer than the five stages: nothing in the file is a per-night or per-epoch sequence
    assert max(len(x) for x in lists(params)) <= len(STAGES)
    transitions = np.array(params["transitions"])  # [period type, previous, stage, cycle index, next]
    rows = transitions.sum(-1)
    assert np.allclose(rows, 1.0, atol=1e-5)
    assert np.all(transitions[0, :, :, :, REM] == 0)  # REM only starts a REM period
    stages = np.arange(len(STAGES))
    assert np.all(transitions[:, :, stages, :, stages] == 0)  # a bout never hands over to itself
    assert params["sleep_onset_stage"][W] == 0 and params["sleep_onset_stage"][REM] == 0


def test_movement_time_follows_the_aasm_neighbour_rule():
    mt, unscored = hypnogram_fit.MOVEMENT, hypnogram_fit.UNSCORED
    score = hypnogram_fit.score_movement_time
    assert score([N2, mt, N2]).tolist() == [N2, N2, N2]
    assert score([N2, mt, mt, REM]).tolist() == [N2, REM, REM, REM]  # the stage that follows
    assert score([N2, mt, W]).tolist() == [N2, W, W] and score([W, mt, N3]).tolist() == [W, W, N3]
    assert score([N2, mt]).tolist() == [N2, N2] and score([unscored, mt, unscored]).tolist() == [unscored] * 3


def test_unscored_epochs_are_never_imputed():
    unscored = hypnogram_fit.UNSCORED
    night = [W] * 5 + [unscored] + [W] * 70 + [N1, N2, N2, REM] + [W] * 3 + [unscored] * 100
    cut = hypnogram_fit.sleep_period_window(night)
    assert cut.tolist() == [W] * 60 + [N1, N2, N2, REM] + [W] * 3  # margin stops at "?" after sleep
    assert hypnogram_fit.sleep_period_window([W, unscored, W]) is None


def _write_hypnogram(path, stages):
    """An EDF+ file whose annotations are ``stages``: [(onset s, duration s, text), ...]."""
    edfio = pytest.importorskip("edfio")
    annotations = [edfio.EdfAnnotation(onset, duration, text) for onset, duration, text in stages]
    edf = edfio.Edf([edfio.EdfSignal(np.zeros(240), sampling_frequency=1)], annotations=annotations)
    edf.write(path)


def test_reading_an_edf_plus_hypnogram(tmp_path):
    path = tmp_path / "night-Hypnogram.edf"
    _write_hypnogram(path, [(0, 60, "Sleep stage W"), (60, 30, "Movement time"), (90, 60, "Sleep stage 4"),
                            (150, 30, "Sleep stage 3"), (180, 30, "Sleep stage R"), (210, 30, "Sleep stage ?")])
    codes = hypnogram_fit.read_sleep_edf_hypnogram(path)
    assert codes.tolist() == [W, W, hypnogram_fit.MOVEMENT, N3, N3, N3, REM, hypnogram_fit.UNSCORED]
    assert hypnogram_fit.score_movement_time(codes)[2] == W  # next to W: wake


def test_a_night_unscored_inside_its_sleep_period_is_left_out(tmp_path):
    _write_hypnogram(tmp_path / "night-Hypnogram.edf",
                     [(0, 90, "Sleep stage W"), (90, 60, "Sleep stage 2"), (150, 30, "Sleep stage ?"),
                      (180, 60, "Sleep stage R")])
    with pytest.warns(UserWarning, match="unscored epochs inside the sleep period"):
        assert hypnogram_fit.load_nights(tmp_path) == []


def test_real_nights_are_read_as_the_source_counts_them(real_nights):
    # SOURCE.md, over the 20 files: W kept in the cut nights, S1, S2, S3 + S4, REM; 32 movement epochs
    counts = np.bincount(np.concatenate(real_nights), minlength=len(STAGES))
    table = np.array([3656, 1689, 8927, 1700 + 1374, 3693])
    assert np.all(counts >= table) and counts.sum() == table.sum() + 32


def test_the_fit_reproduces_the_shipped_parameters(tmp_path, real_nights):
    out = tmp_path / "params.json"
    assert hypnogram_fit.main([str(SLEEP_EDF), "--out", str(out)]) == 0
    fitted, shipped = json.loads(out.read_text()), load_parameters()

    def compare(a, b, where="params"):
        if isinstance(a, dict):
            assert a.keys() == b.keys(), where
            for key in a:
                compare(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                compare(x, y, f"{where}[{i}]")
        elif isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-3, abs=1e-6), where
        else:
            assert a == b, where

    compare(fitted, shipped)
