"""EDF I/O through edfio, and choosing channels from labels."""

import datetime as dt

import numpy as np
import pytest

from ingest.channels import find_channel, kind_from_label, pick_eye_channels, pick_staging_channel
from ingest.edf import read_edf, write_edf
from ingest.errors import RecordingError


@pytest.fixture
def edf_path(tmp_path):
    rng = np.random.default_rng(0)
    data = np.vstack([rng.normal(0, 25, 256 * 90), rng.normal(0, 5, 256 * 90), np.full(256 * 90, 1.0)])
    path = tmp_path / "rec.edf"
    write_edf(path, data, 256.0, ["EEG C4-M1", "EMG chin", "ACC Z"], ["EEG", "EMG", "ACC"],
              start=dt.datetime(2026, 3, 1, 22, 45, 10), annotations=[(0.0, 30.0, "Sleep stage W"), (61.5, 0, "gap")])
    return path, data


def test_round_trip_keeps_signals_start_and_annotations(edf_path):
    path, data = edf_path
    rec = read_edf(path)
    assert rec.start == dt.datetime(2026, 3, 1, 22, 45, 10) and rec.duration == 90.0
    assert [(s.label, s.kind, s.fs, s.n_samples) for s in rec.signals] == [
        ("EEG C4-M1", "EEG", 256.0, 23040), ("EMG chin", "EMG", 256.0, 23040), ("ACC Z", "ACC", 256.0, 23040)]
    for k in range(3):
        span = np.ptp(data[k]) or 2.0
        np.testing.assert_allclose(rec.read(k), data[k], atol=span / 65535 + 1e-9)
    assert [(a.onset, a.duration, a.text) for a in rec.annotations] == [(0.0, 30.0, "Sleep stage W"), (61.5, 0.0, "gap")]


def test_millivolt_channels_are_converted_to_microvolts(tmp_path):
    import edfio

    x = np.sin(np.arange(2000) / 10) * 0.05  # 50 uV written in mV
    edfio.Edf([edfio.EdfSignal(x, 100, label="EEG C3", physical_dimension="mV", physical_range=(-0.1, 0.1))]).write(
        tmp_path / "mv.edf")
    np.testing.assert_allclose(read_edf(tmp_path / "mv.edf").read(0), x * 1000, atol=0.01)


def test_truncated_file_is_reported_as_truncated(edf_path, tmp_path):
    path, _ = edf_path
    raw = path.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(RecordingError, match="truncated"):
        read_edf(cut)


@pytest.mark.parametrize("content", [b"", b"hello world\n" * 50, b"0       " + b"\x00" * 100])
def test_non_edf_files_are_reported(tmp_path, content):
    path = tmp_path / "x.edf"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match="EDF"):
        read_edf(path)


def test_missing_file(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        read_edf(tmp_path / "nope.edf")


@pytest.mark.parametrize("label, kind", [
    ("EEG C3", "EEG"), ("EEG Fpz-Cz", "EEG"), ("C4-M1", "EEG"), ("C3-A2", "EEG"), ("TP9", "EEG"),
    ("FP1-A1", "EEG"), ("CZ-A1", "EEG"), ("EOG E1-M2", "EOG"), ("EOG horizontal", "EOG"), ("LOC", "EOG"),
    ("EMG chin", "EMG"), ("EMG1", "EMG"), ("ECG", "ECG"), ("Accel X", "ACC"), ("Resp oro-nasal", "MISC"),
    ("SaO2", "MISC"), ("Event marker", "MISC"), ("M1", "MISC"),
])
def test_kind_from_label(label, kind):
    assert kind_from_label(label) == kind


@pytest.mark.parametrize("labels, expected", [
    (["O1-A1", "EMG1", "ECG", "FP1-A1", "C3-A1", "EOG1-A1"], "C3-A1"),   # DREAMS: central first
    (["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"], "EEG Fpz-Cz"),       # Sleep-EDF
    (["TP9", "AF7", "AF8", "TP10"], "AF7"),                               # Muse: frontal over temporal
    (["EOG E1-M2", "EMG chin"], None),
])
def test_staging_channel_choice(labels, expected):
    index = pick_staging_channel(labels, [kind_from_label(s) for s in labels])
    assert (labels[index] if index is not None else None) == expected


@pytest.mark.parametrize("labels, expected", [
    (["EEG Fpz-Cz", "EOG horizontal", "EMG submental"], ["EOG horizontal"]),  # Sleep-EDF: bipolar
    (["EEG C4-M1", "EOG E1-M2", "EOG E2-M1", "EMG chin"], ["EOG E1-M2", "EOG E2-M1"]),
    (["ROC-A1", "LOC-A2"], ["LOC-A2", "ROC-A1"]),  # left first, whatever the file's order
    (["EOG E1-E2"], ["EOG E1-E2"]),
    (["EEG C4-M1", "EOG E1-M2"], []),  # one eye to a mastoid: frontal EEG would pass for eye movements
    (["EEG C4-M1"], []),
])
def test_eye_channel_choice(labels, expected):
    found = pick_eye_channels(labels, [kind_from_label(s) for s in labels])
    assert [labels[i] for i in found] == expected


def test_find_channel_is_lenient_but_says_what_exists():
    labels = ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert find_channel(labels, "EEG Fpz-Cz") == 0
    assert find_channel(labels, "pz-oz") == 1
    with pytest.raises(KeyError, match="available: EEG Fpz-Cz, EEG Pz-Oz"):
        find_channel(labels, "C3")


def test_reads_the_dreams_edf_that_strict_readers_refuse(dreams_dir):
    rec = read_edf(dreams_dir / "excerpt3.edf")
    c3 = rec.labels.index("C3-A1")
    reference = np.loadtxt(dreams_dir / "excerpt3.txt", skiprows=1)
    assert rec.signals[c3].fs == 50.0
    assert np.corrcoef(rec.read(c3), reference)[0, 1] > 0.9999


def test_annotated_gaps_read_back_as_missing_samples(tmp_path):
    from ingest.edf import gap_annotation

    data = np.random.default_rng(1).normal(0, 20, (1, 1000))
    data[0, 300:325] = 0.0  # what a writer stores for lost samples
    write_edf(tmp_path / "g.edf", data, 100.0, ["EEG C3"], ["EEG"], annotations=[gap_annotation(300, 25, 100.0)])
    rec = read_edf(tmp_path / "g.edf")
    assert rec.gaps == [(3.0, 0.25)]
    x = rec.read(0)
    assert np.isnan(x[300:325]).all() and np.isfinite(x[:300]).all() and np.isfinite(x[325:]).all()
    assert np.isfinite(rec.read(0, mark_gaps=False)).all()


@pytest.mark.parametrize("n", [988, 997, 25_600, 1])
def test_any_length_is_written_and_read_back(tmp_path, n):
    x = np.random.default_rng(n).normal(0, 10, (1, n))
    write_edf(tmp_path / "n.edf", x, 256.0, ["EEG C3"], ["EEG"])
    y = read_edf(tmp_path / "n.edf").read(0)
    assert np.allclose(y[:n], x[0], atol=np.ptp(x) / 60000 + 1e-6)
    assert np.isnan(y[n:]).all()  # padding of the last record, if any, reads as missing


def test_missing_samples_of_one_channel_read_back_as_missing(tmp_path):
    data = np.random.default_rng(2).normal(0, 1, (2, 1000))
    data[1, :37] = np.nan  # an accelerometer before its first reading
    write_edf(tmp_path / "m.edf", data, 100.0, ["EEG C3", "ACC X"], ["EEG", "ACC"])
    rec = read_edf(tmp_path / "m.edf")
    assert np.isfinite(rec.read(0)).all()
    acc = rec.read(1)
    assert np.isnan(acc[:37]).all() and np.isfinite(acc[37:]).all()


def test_a_stretch_reads_as_the_same_samples_of_the_whole_signal(tmp_path):
    from ingest.edf import gap_annotation

    data = np.random.default_rng(4).normal(0, 30, (2, 6000))
    write_edf(tmp_path / "s.edf", data, 100.0, ["EEG C3", "EEG C4"], ["EEG", "EEG"],
              annotations=[gap_annotation(2500, 40, 100.0)])
    rec = read_edf(tmp_path / "s.edf")
    whole = rec.read(1)
    for start, stop in [(0, 6000), (2490, 2600), (2510, 2520), (1, 2), (5990, 6000), (100, 100)]:
        np.testing.assert_array_equal(rec.read(1, start=start, stop=stop), whole[start:stop])
    np.testing.assert_array_equal(rec.read(1, start=2000, stop=3000, dtype=np.float32),
                                  whole[2000:3000].astype(np.float32))


def test_a_reader_reads_stretches_on_demand_and_lets_the_file_go(tmp_path):
    data = np.random.default_rng(5).normal(0, 30, (3, 3000))
    write_edf(tmp_path / "r.edf", data, 100.0, ["EEG C3", "EMG chin", "EEG C4"], ["EEG", "EMG", "EEG"])
    rec = read_edf(tmp_path / "r.edf")
    reader = rec.reader([0, 2])
    assert reader.shape == (2, 3000) and reader.fs == 100.0 and reader.dtype == np.float32
    np.testing.assert_array_equal(reader[1, 100:200], rec.read(2, start=100, stop=200, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(reader), np.stack([rec.read(0), rec.read(2)]).astype(np.float32))
    reader[0, 0:10]
    reader[0, 10:20]  # another stretch: the file was let go and opened again
    rec.close()
    assert np.isfinite(rec.read(0)).all()  # a closed recording opens again when read
    with pytest.raises(TypeError):
        reader[0, ::2]


@pytest.mark.parametrize("annotations", [[], [(0.0, 0, "lights off")], [(577.25, 2.5, "late one")]])
def test_annotation_shortcut_agrees_with_edfio(tmp_path, annotations):
    # read_edf skips edfio's TAL-by-TAL parse when every data record holds only its time-keeping TAL
    import edfio

    from ingest.edf import _holds_annotations, _layout

    data = np.random.default_rng(2).normal(0, 20, (2, 100 * 600))
    path = tmp_path / "a.edf"
    write_edf(path, data, 100.0, ["EEG C3", "EEG C4"], ["EEG", "EEG"], annotations=annotations)
    expected = [(a.onset, a.duration or 0.0, a.text) for a in edfio.read_edf(path).annotations]
    assert _holds_annotations(str(path), _layout(str(path), 2)) == bool(annotations)
    assert [(a.onset, a.duration, a.text) for a in read_edf(path).annotations] == expected
    assert len(expected) == len(annotations)


def test_annotation_shortcut_on_plain_edf_and_bad_header(tmp_path):
    from ingest.edf import _holds_annotations, _layout

    path = tmp_path / "p.edf"
    write_edf(path, np.zeros((1, 1000)), 100.0, ["EEG C3"], ["EEG"])
    raw = bytearray(path.read_bytes())
    assert _holds_annotations(str(path), _layout(str(path), 2)) is False  # only time-keeping TALs
    raw[236:244] = b"-1      "  # number of data records unknown: parse to be safe
    path.write_bytes(bytes(raw))
    assert _holds_annotations(str(path), _layout(str(path), 2)) is True
    assert _holds_annotations(str(path), None) is True  # header unreadable: parse to be safe


@pytest.fixture
def multi_rate_edf(tmp_path):
    """An EDF+ with signals of three rates (so different widths in each data record) and a gap."""
    import edfio

    rng = np.random.default_rng(3)
    signals = [edfio.EdfSignal(rng.normal(0, 30, 256 * 120), 256, label="EEG C3-M2", physical_dimension="uV",
                               physical_range=(-200, 200)),
               edfio.EdfSignal(rng.normal(0, 2, 100 * 120), 100, label="EMG chin", physical_dimension="mV",
                               physical_range=(-10, 10)),
               edfio.EdfSignal(rng.normal(0, 30, 128 * 120), 128, label="EEG O1-M2", physical_dimension="uV",
                               physical_range=(-200, 200))]
    path = tmp_path / "multi.edf"
    edfio.Edf(signals, annotations=[edfio.EdfAnnotation(10.0, 0.5, "Gap: 128 samples lost")]).write(path)
    return path


def test_records_read_from_the_file_equal_edfios_map(multi_rate_edf, monkeypatch):
    import ingest.edf as edf_module

    fast, mapped = read_edf(multi_rate_edf), read_edf(multi_rate_edf)
    mapped._layout = None  # every read through edfio's memory map
    assert fast._layout is not None
    for i, info in enumerate(fast.signals):
        n = info.n_samples
        for start, stop in [(0, n), (0, 1), (n // 3, n // 3 + 1234), (n - 77, n), (500, 500), (n - 5, n + 50)]:
            for dtype in (np.float32, np.float64):
                np.testing.assert_array_equal(fast.read(i, start=start, stop=stop, dtype=dtype),
                                              mapped.read(i, start=start, stop=stop, dtype=dtype))
    assert np.isnan(fast.read(0)[2560:2688]).all()  # the gap, marked as in every read
    monkeypatch.setattr(edf_module, "_READ_BYTES", 1000)  # long stretches: through the map
    np.testing.assert_array_equal(fast.read(1, start=7, stop=9000), mapped.read(1, start=7, stop=9000))


def test_a_stretch_is_read_once_for_all_its_signals(multi_rate_edf):
    rec = read_edf(multi_rate_edf)
    reader = rec.reader([0])
    first = reader[0, 2560:5120]
    block = rec._block
    assert block is not None and block[0] <= 10 and block[1] >= 20
    rec.read(2, start=1280, stop=2560)  # the same records, another signal: no new read
    assert rec._block is block
    np.testing.assert_array_equal(first, rec.read(0, start=2560, stop=5120, dtype=np.float32))
