"""Staging models: fitting, saving, loading, and `dreamsync train` / `stage --model` end to end.

The recordings here are simulated: they check that training learns from labelled files and that a
trained model is used, not accuracy on people.
"""

import datetime as dt
import json

import numpy as np
import pytest

from conftest import run_cli
from dsp.features import EEG_FEATURES, GAIN_DEPENDENT
from dsp.model import MODEL_FORMAT, PRIOR_EPOCHS, default_model, fit_model, load_model, save_model, transition_counts


def test_fit_model_learns_means_spreads_and_transitions():
    rng = np.random.default_rng(0)
    base = default_model()
    n_features = len(EEG_FEATURES)
    stages = np.repeat([0, 2, 3, 2, 0], 400)
    truth = base.prototypes + 0.1  # every stage sits 0.1 above the default prototype
    x = truth[stages] + rng.normal(0, 0.005, (len(stages), n_features))
    x[:, GAIN_DEPENDENT > 0] += 2.7  # this recording's gain: removed via its N2 median
    model = fit_model([x], [stages], "synthetic")
    for k in (0, 2, 3):
        n = (stages == k).sum()
        w = n / (n + PRIOR_EPOCHS)
        expected = w * truth[k] + (1 - w) * base.prototypes[k]
        expected[GAIN_DEPENDENT > 0] = w * (truth[k] - truth[2])[GAIN_DEPENDENT > 0] \
            + (1 - w) * base.prototypes[k][GAIN_DEPENDENT > 0]
        np.testing.assert_allclose(model.prototypes[k], expected, atol=0.01)
        assert np.all(model.spread[k] < base.spread[k])  # tighter than the default's spread
    np.testing.assert_array_equal(model.prototypes[[1, 4]], base.prototypes[[1, 4]])  # unseen: default
    counts = transition_counts([stages])
    assert counts[0, 2] == 1 and counts[2, 3] == 1 and counts[2, 2] == 798
    np.testing.assert_allclose(model.transitions.sum(axis=1), 1.0)


def test_model_files_round_trip_and_bad_files_are_refused(tmp_path):
    model = default_model()
    path = tmp_path / "m.json"
    save_model(model, path)
    back = load_model(path)
    np.testing.assert_allclose(back.prototypes, model.prototypes)
    np.testing.assert_allclose(back.transitions, model.transitions)
    assert json.loads(path.read_text())["format"] == MODEL_FORMAT
    edited = json.loads(path.read_text())
    edited["eog_weight"] = [0.0, 0.0, -2.0, -2.0, 3.0]  # a user's own weights are kept
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    np.testing.assert_allclose(load_model(tmp_path / "edited.json").eog_weight, edited["eog_weight"])
    for key in ("eog_weight", "movement_weight"):  # files saved before the stager read EOG and accelerometers
        del edited[key]
    (tmp_path / "earlier.json").write_text(json.dumps(edited))
    earlier = load_model(tmp_path / "earlier.json")
    np.testing.assert_allclose(earlier.eog_weight, model.eog_weight)
    np.testing.assert_allclose(earlier.movement_weight, model.movement_weight)
    (tmp_path / "notjson").write_text("hello")
    with pytest.raises(ValueError, match="not JSON"):
        load_model(tmp_path / "notjson")
    doc = json.loads(path.read_text())
    doc["transitions"][0] = [1, 1, 1, 1, 1]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="damaged"):
        load_model(tmp_path / "bad.json")
    doc = json.loads(path.read_text())
    doc["features"] = ["something", "else"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="retrain"):
        load_model(tmp_path / "old.json")


def _sleep_edf_folder(folder, seeds):
    """Simulated nights laid out like Sleep-EDF: *-PSG.edf plus an annotation-only *-Hypnogram.edf."""
    import edfio

    from firmware_sim.headband import SimulatedHeadband
    from ingest.edf import write_edf

    folder.mkdir()
    for k, seed in enumerate(seeds):
        band = SimulatedHeadband("muse-s", hours=1.0, seed=seed)
        start = dt.datetime(2026, 1, 1, 23, 0)
        write_edf(folder / f"SC40{k}1E0-PSG.edf", band.read_all(), band.fs, list(band.channels), list(band.kinds), start=start)
        labels = {0: "W", 1: "1", 2: "2", 3: "3", 4: "R"}
        notes = [edfio.EdfAnnotation(30.0 * i, 30.0, f"Sleep stage {labels[int(s)]}")
                 for i, s in enumerate(band.hypnogram)]
        hyp = edfio.Edf([], annotations=notes, starttime=start.time(),
                        recording=edfio.Recording(startdate=start.date()))
        hyp.write(folder / f"SC40{k}1EC-Hypnogram.edf")


def test_train_then_stage_with_the_model_end_to_end(tmp_path):
    folder = tmp_path / "scored"
    _sleep_edf_folder(folder, seeds=[11, 12])
    model_path = tmp_path / "muse.model.json"
    res = run_cli("train", folder, "--out", model_path)
    assert res.returncode == 0, res.stderr
    assert "trained on 2 recordings" in res.stdout and "[2/2]" in res.stderr
    model = load_model(model_path)
    assert "trained on 2 recordings" in model.source
    assert not np.allclose(model.prototypes, default_model().prototypes)

    from firmware_sim.headband import SimulatedHeadband
    from ingest.edf import write_edf

    band = SimulatedHeadband("muse-s", hours=1.0, seed=13)
    night = tmp_path / "night.edf"
    write_edf(night, band.read_all(), band.fs, list(band.channels), list(band.kinds))
    res = run_cli("stage", night, "--model", model_path, "--out", tmp_path / "h.json")
    assert res.returncode == 0, res.stderr
    stages = json.loads((tmp_path / "h.json").read_text())["stages"]
    assert len(stages) == len(band.hypnogram)
    res = run_cli("evaluate", tmp_path / "h.json", folder / "SC4001EC-Hypnogram.edf")
    assert res.returncode == 0 and "kappa" in res.stdout


@pytest.mark.parametrize("args, fragment", [
    (("train", "{empty}", "--out", "{tmp}/m.json"), "no *-PSG.edf"),
    (("train", "{tmp}/missing", "--out", "{tmp}/m.json"), "no such directory"),
    (("stage", "{night}", "--model", "{tmp}/nomodel.json"), "no such file"),
    (("stage", "{night}", "--model", "{night}"), "not a dreamsync model"),
])
def test_training_and_model_errors_are_one_line(tmp_path, args, fragment):
    from firmware_sim.headband import SimulatedHeadband
    from ingest.edf import write_edf

    (tmp_path / "empty").mkdir()
    band = SimulatedHeadband(hours=0.1, seed=1)
    write_edf(tmp_path / "night.edf", band.read_all(), band.fs, list(band.channels), list(band.kinds))
    values = {"empty": tmp_path / "empty", "tmp": tmp_path, "night": tmp_path / "night.edf"}
    res = run_cli(*[a.format(**values) for a in args])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in res.stderr
