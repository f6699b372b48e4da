"""Exports of a night (EDF+, BIDS events, CSV, YASA, MNE), each read back with another library: a short
simulated night with an injected electrical stimulation, packet loss and a 90-s dropout."""

import csv
import datetime as dt
import json

import numpy as np
import pytest

from conftest import run_cli
from dreamsync import export
from dreamsync.authorization import AuthorizedWindow
from dreamsync.detection import detect_file
from dreamsync.pipeline import simulate_night, stage_file
from dsp.stages import to_labels
from firmware_sim.adjustments import Electrical
from firmware_sim.faults import FaultSpec
from ingest.edf import gap_annotation, read_edf, write_edf
from ingest.hypnograms import read_hypnogram

STIM_ONSET, STIM_SECONDS = 420.0, 240.0
DROPOUT = (1200.0, 1290.0)  # epochs 40..42 lost entirely


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A 30-min night: 12-Hz stimulation at 420-660 s, 0.2 % packets lost and a dropout at 1200-1290 s."""
    folder = tmp_path_factory.mktemp("export")
    sim = folder / "sim.edf"
    simulate_night(sim, hours=0.5, seed=9, faults=FaultSpec(loss=0.002),
                   inject=[Electrical(onsets=(STIM_ONSET,), n_blocks=1, block_s=STIM_SECONDS, frequency_hz=12.0)])
    rec = read_edf(sim)
    fs = rec.signals[0].fs
    data = np.nan_to_num(np.vstack([rec.read(i) for i in range(len(rec.signals))]))
    a, b = int(DROPOUT[0] * fs), int(DROPOUT[1] * fs)
    data[:, a:b] = 0.0
    path = folder / "night.edf"
    write_edf(path, data, fs, rec.labels, [s.kind for s in rec.signals], start=rec.start,
              annotations=list(rec.annotations) + [gap_annotation(a, b - a, fs)])
    return path, stage_file(str(path)), detect_file(str(path))


def labels_of(staged):
    return to_labels(staged.result.stages)


def test_the_night_has_what_the_exports_must_carry(night):
    path, staged, detection = night
    labels = labels_of(staged)
    assert len(labels) == 60 and labels[40:43] == ["?", "?", "?"] and len(set(labels) - {"?"}) >= 2
    kinds = [(e.kind, ok) for e, ok in detection.events]
    assert ("electrical", False) in kinds
    assert len(read_edf(path).gaps) > 100


def test_edf_export_keeps_the_signals_and_annotates_stages_adjustments_and_gaps(night, tmp_path):
    import edfio
    import pyedflib

    path, staged, detection = night
    out = tmp_path / "scored.edf"
    assert export.export_night(path, out, format="edf", staged=staged, detection=detection) == [str(out)]
    source, copy = edfio.read_edf(path), edfio.read_edf(out)
    assert copy.labels == source.labels and copy.startdatetime == source.startdatetime
    for a, b in zip(source.signals, copy.signals):  # the same digital values and calibration
        assert np.array_equal(a.digital, b.digital) and a.physical_range == b.physical_range
        assert a.physical_dimension == b.physical_dimension and a.sampling_frequency == b.sampling_frequency

    rec = read_edf(out)
    assert read_hypnogram(out) == labels_of(staged)  # our stages, not the simulator's truth
    assert sum(a.text.startswith("Sleep stage") for a in rec.annotations) == 60
    assert rec.gaps == read_edf(path).gaps and (DROPOUT[0], DROPOUT[1] - DROPOUT[0]) in rec.gaps
    assert np.isnan(rec.read(0)[int(DROPOUT[0] * 256) : int(DROPOUT[1] * 256)]).all()  # read back as missing
    adjustments = [a for a in rec.annotations if a.text.startswith("Adjustment")]
    assert len(adjustments) == len(detection.events)
    stim = next(a for a in adjustments if a.text.startswith("Adjustment electrical: "))
    assert "12.0" in stim.text and abs(stim.onset - STIM_ONSET) < 10 and abs(stim.duration - STIM_SECONDS) < 20
    assert not any(a.text.startswith(("Event", "Fault")) for a in rec.annotations)  # the truth stays behind

    # another library reads the same annotations
    with pyedflib.EdfReader(str(out)) as reader:
        onsets, durations, texts = reader.readAnnotations()
        assert reader.getSignalLabels() == list(source.labels)
    stage_rows = [(round(o), t) for o, t in zip(onsets, texts) if t.startswith("Sleep stage")]
    assert stage_rows == [(30 * k, export.STAGE_TEXT[s]) for k, s in enumerate(labels_of(staged))]
    assert sum(t.startswith("Gap: ") for t in texts) == len(rec.gaps)


def test_edf_export_can_keep_the_files_own_annotations(night, tmp_path):
    path, staged, _ = night
    out = export.write_edf_annotated(path, tmp_path / "all.edf", staged, source_annotations=True)
    texts = [a.text for a in read_edf(out).annotations]
    assert any(t.startswith("Event ") for t in texts) and "Adjustment electrical" in texts  # the simulator's
    assert sum(t.startswith("Sleep stage") for t in texts) == 60  # its stages replaced by ours


def test_bids_events_rows_and_sidecar(night, tmp_path):
    path, staged, detection = night
    tsv, sidecar = export.write_events_tsv(path, tmp_path / "sub-01_task-sleep_events.tsv", staged, detection)
    assert sidecar.endswith("sub-01_task-sleep_events.json")
    with open(tsv, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    with open(tsv) as fh:
        header = fh.readline().rstrip("\n").split("\t")
    assert header[:2] == ["onset", "duration"] and set(header) == set(json.load(open(sidecar)))
    assert all(len(row) == len(header) and "" not in row.values() for row in rows)  # n/a, never empty
    onsets = [float(r["onset"]) for r in rows]
    assert onsets == sorted(onsets)

    stages = [r for r in rows if r["trial_type"] == "sleep_stage"]
    assert [r["value"] for r in stages] == labels_of(staged)
    assert [float(r["onset"]) for r in stages] == [30.0 * k for k in range(60)]
    assert all(float(r["duration"]) == 30 for r in stages)
    assert np.allclose([float(r["score"]) for r in stages], staged.result.confidence, atol=1e-4)

    (stim,) = [r for r in rows if r["trial_type"] == "adjustment" and r["value"] == "electrical"]
    assert stim["authorized"] == "false" and "12.0" in stim["evidence"] and 0 < float(stim["score"]) <= 1
    assert abs(float(stim["onset"]) - STIM_ONSET) < 10

    gaps = [r for r in rows if r["trial_type"] == "gap"]
    assert len(gaps) == len(read_edf(path).gaps)
    dropout = [r for r in gaps if float(r["onset"]) == DROPOUT[0]]
    assert dropout and float(dropout[0]["duration"]) == DROPOUT[1] - DROPOUT[0]
    assert dropout[0]["evidence"] == f"{int(90 * 256)} samples lost"


def test_bids_events_mark_consented_adjustments(night, tmp_path):
    path, staged, _ = night
    consent = [AuthorizedWindow("electrical", 0.0, 1800.0)]
    detection = detect_file(path, authorized=consent)
    tsv, _ = export.write_events_tsv(path, tmp_path / "events.tsv", detection=detection)
    with open(tsv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["trial_type"] == "adjustment"]
    assert rows and all(r["authorized"] == "true" for r in rows if r["value"] == "electrical")


def test_csv_hypnogram_per_epoch(night, tmp_path):
    path, staged, _ = night
    out = export.write_hypnogram_csv(path, tmp_path / "hypnogram.csv", staged)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stage"] for r in rows] == labels_of(staged)
    assert [int(r["epoch"]) for r in rows] == list(range(60))
    start = staged.start
    assert [dt.datetime.fromisoformat(r["clock_time"]) for r in rows[:2]] == [start, start + dt.timedelta(seconds=30)]
    density = np.array([[float(r[f"p_{s}"]) for s in ("W", "N1", "N2", "N3", "REM")] for r in rows])
    assert np.allclose(density, staged.result.probabilities, atol=1e-4)
    lost = np.array([float(r["lost_s"]) for r in rows])
    assert np.allclose(lost[40:43], 30.0) and 0 < lost.sum() - 90 < 30  # the dropout and the lost packets


def test_yasa_integer_hypnogram(night, tmp_path):
    path, staged, _ = night
    out = export.write_yasa_hypnogram(path, tmp_path / "hypno.txt", staged)
    codes = np.loadtxt(out, dtype=int)
    expected = np.asarray(staged.result.stages, dtype=int)
    scored = expected >= 0
    assert codes.shape == (60,) and np.array_equal(codes[scored], expected[scored])
    assert codes[40:43].tolist() == [export.YASA_UNSCORED] * 3  # lost to the dropout: YASA's "Uns"
    # YASA's documented mapping (yasa.hypno_int_to_str's default) names every code
    yasa_names = {-2: "Uns", -1: "Art", 0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "R"}
    named = [yasa_names[c] for c in codes]
    assert [n.replace("R", "REM") for n, s in zip(named, scored) if s] == [
        lab for lab in labels_of(staged) if lab != "?"]


def test_yasa_codes_tell_artefacts_from_lost_epochs(night):
    _, staged, _ = night
    codes = export.yasa_hypnogram(staged, gaps=[(1200.0, 40.0, 10240)])  # epoch 40 mostly lost, 41-42 not
    assert codes[40:43].tolist() == [export.YASA_UNSCORED, export.YASA_ARTEFACT, export.YASA_ARTEFACT]


def test_lost_per_epoch_splits_a_gap_across_epochs():
    lost = export.lost_per_epoch([(25.0, 40.0)], 4)
    assert lost.tolist() == [5.0, 30.0, 5.0, 0.0]
    overlapping = export.lost_per_epoch([(25.0, 40.0), (30.0, 1.0), (64.0, 2.0), (100.0, 50.0)], 4)
    assert overlapping.tolist() == [5.0, 30.0, 6.0, 20.0]


def test_to_mne_carries_stages_adjustments_and_gaps(night):
    pytest.importorskip("mne")
    path, staged, detection = night
    raw = export.to_mne(path, staged, detection)
    rec = read_edf(path)
    assert raw.ch_names == rec.labels and raw.get_channel_types() == ["eeg", "eeg", "eog", "emg"]
    assert np.allclose(raw.get_data(picks=[0], start=0, stop=2560)[0] * 1e6, rec.read(0, mark_gaps=False)[:2560],
                       atol=0.05)
    ann = raw.annotations
    stages = [(o, d) for o, d in zip(ann.onset, ann.description) if d.startswith("Sleep stage")]
    assert [d for _, d in stages] == [export.STAGE_TEXT[s] for s in labels_of(staged)]
    assert np.allclose([o for o, _ in stages], 30.0 * np.arange(60))
    bad = [(o, d) for o, d, desc in zip(ann.onset, ann.duration, ann.description) if desc == "BAD_gap"]
    assert len(bad) == len(rec.gaps) and any(abs(o - DROPOUT[0]) < 1e-3 and abs(d - 90) < 1e-3 for o, d in bad)
    stim = [o for o, d in zip(ann.onset, ann.description) if d == "Adjustment electrical"]
    assert len(stim) == 1 and abs(stim[0] - STIM_ONSET) < 10
    # MNE leaves the BAD_ stretches out of what it analyses
    good = raw.get_data(picks=[0], reject_by_annotation="NaN")[0]
    assert np.isnan(good[int(DROPOUT[0] * 256) : int(DROPOUT[1] * 256)]).all()


def test_results_saved_as_json_export_the_same(night, tmp_path):
    path, staged, detection = night
    again = export.staged_from_json(json.loads(json.dumps(staged.to_json())))
    assert np.array_equal(again.result.stages, staged.result.stages) and again.start == staged.start
    events = export.detection_from_json(json.loads(json.dumps(detection.to_json())))
    a = export.write_events_tsv(path, tmp_path / "a.tsv", staged, detection)[0]
    b = export.write_events_tsv(path, tmp_path / "b.tsv", again, events)[0]
    assert open(a).read() == open(b).read()


def test_a_hypnogram_without_hypnodensity_gets_its_stages_as_probabilities():
    staged = export.staged_from_json({"stages": ["W", "?", "N2"], "start": "2026-01-02T23:00:00"})
    assert staged.result.probabilities.tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]]
    assert staged.result.confidence.tolist() == [0, 0, 0] and staged.start == dt.datetime(2026, 1, 2, 23)


def test_bad_json_results_are_refused():
    with pytest.raises(ValueError, match="hypnogram"):
        export.staged_from_json({"events": []})
    with pytest.raises(ValueError, match="event list"):
        export.detection_from_json({"stages": ["W"]})
    with pytest.raises(ValueError, match="unknown export format"):
        export.export_night("x.edf", "y", format="xml")


def test_cli_export_from_saved_results_and_bad_input(night, tmp_path):
    path, staged, detection = night
    hyp, events = tmp_path / "hyp.json", tmp_path / "events.json"
    hyp.write_text(json.dumps(staged.to_json()))
    events.write_text(json.dumps(detection.to_json()))
    out = tmp_path / "scored.edf"
    res = run_cli("export", path, "--format", "edf", "--stages", hyp, "--events", events, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "60 epochs (3 unscorable)" in res.stdout and "1 alarm(s)" in res.stdout
    assert read_hypnogram(out) == labels_of(staged)

    consent = tmp_path / "consent.json"
    consent.write_text(json.dumps({"authorized": [{"kind": "electrical", "start": 0, "end": 1800}]}))
    res = run_cli("export", path, "--format", "bids", "--stages", hyp, "--events", events, "--authorized", consent,
                  "--out", tmp_path / "ev.tsv")
    assert res.returncode == 0 and "0 alarm(s)" in res.stdout, res.stderr
    assert (tmp_path / "ev.json").is_file()

    for args, message in [(("--stages", events), "hypnogram"), (("--stages", tmp_path / "none.json"), "no such file"),
                          (("--stages", consent), "hypnogram")]:
        res = run_cli("export", path, "--format", "yasa", *args, "--out", tmp_path / "h.txt")
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    short = tmp_path / "short.json"
    short.write_text(json.dumps({**staged.to_json(), "stages": ["W"] * 80, "confidence": [1.0] * 80,
                                 "hypnodensity": None}))
    res = run_cli("export", path, "--format", "csv", "--stages", short, "--out", tmp_path / "h.csv")
    assert res.returncode == 2 and "do not fit" in res.stderr
    res = run_cli("export", tmp_path / "missing.edf", "--format", "csv", "--out", tmp_path / "h.csv")
    assert res.returncode == 2 and "no such file" in res.stderr


def test_cli_export_stages_the_night_itself(night, tmp_path):
    path, staged, _ = night
    res = run_cli("export", path, "--format", "csv", "--out", tmp_path / "h.csv", "--quiet")
    assert res.returncode == 0 and res.stdout == "", res.stderr
    with open(tmp_path / "h.csv", newline="") as fh:
        assert [r["stage"] for r in csv.DictReader(fh)] == labels_of(staged)
