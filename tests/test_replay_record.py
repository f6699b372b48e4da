"""Replay of EDF files and raw captures, and recording to EDF+ with gaps marked."""

import numpy as np
import pytest

from ingest.edf import gap_annotation, read_edf, write_edf
from ingest.errors import RecordingError
from ingest.recorder import EdfRecorder
from ingest.replay import CaptureReplay, EdfReplay, open_recording
from ingest.stream import SampleBlock


def _edf(tmp_path, gaps=()):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 20, (2, 100 * 120))
    for first, n in gaps:
        data[:, first:first + n] = 0.0
    path = tmp_path / "r.edf"
    write_edf(path, data, 100.0, ["EEG C3", "EMG chin"], ["EEG", "EMG"],
              annotations=[gap_annotation(first, n, 100.0) for first, n in gaps])
    return path, data


def test_edf_replay_delivers_every_sample_and_the_gaps_as_losses(tmp_path):
    path, data = _edf(tmp_path, gaps=[(250, 40), (5000, 7)])
    with open_recording(path) as dev:
        dev.start()
        blocks = list(dev.blocks())
    assert isinstance(dev, EdfReplay) and dev.fs == 100.0 and dev.channels == ("EEG C3", "EMG chin")
    assert dev.samples_lost == 47 and dev.samples_received == data.shape[1] - 47
    got = np.concatenate([b.data for b in blocks], axis=1)
    keep = np.ones(data.shape[1], bool)
    keep[250:290] = keep[5000:5007] = False
    np.testing.assert_allclose(got, data[:, keep], atol=0.01)


def test_recorder_writes_edf_with_gaps_marked(tmp_path):
    out = tmp_path / "rec.edf"
    rec = EdfRecorder(out, ("EEG C3",), ("EEG",), 100.0)
    x = np.arange(1000, dtype=np.float32)[None, :]
    rec.add(SampleBlock("d", ("EEG C3",), ("EEG",), 100.0, 0, x[:, :400], 1.7e9))
    rec.add(SampleBlock("d", ("EEG C3",), ("EEG",), 100.0, 410, x[:, 410:], 1.7e9 + 4.1, lost_before=10))
    assert rec.close() == str(out) and not (tmp_path / "rec.edf.spool").exists()
    back = read_edf(out)
    assert back.gaps == [(4.0, 0.1)]
    y = back.read(0)
    assert np.isnan(y[400:410]).all() and np.allclose(y[:400], x[0, :400], atol=0.05)
    assert np.allclose(y[410:], x[0, 410:], atol=0.05)


def test_open_recording_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        open_recording(tmp_path / "none.edf")
    bad = tmp_path / "x.dsraw"
    bad.write_bytes(b"DREAMSYNC-CAPTURE 1\n" + b'{"board": "telepathy"}\n')
    with pytest.raises(RecordingError, match="no decoder for board 'telepathy'"):
        with CaptureReplay(bad):
            pass


def test_bdf_files_replay_too(tmp_path):
    import edfio

    x = np.random.default_rng(3).normal(0, 30, 256 * 40)
    edfio.Bdf([edfio.BdfSignal(x, 256, label="EEG Cz", physical_dimension="uV", physical_range=(-500, 500))]).write(
        tmp_path / "r.bdf")
    with open_recording(tmp_path / "r.bdf") as dev:
        dev.start()
        got = np.concatenate([b.data for b in dev.blocks()], axis=1)
    assert dev.channels == ("EEG Cz",) and got.shape == (1, x.size)
    np.testing.assert_allclose(got[0], x, atol=1000 / 2**24 * 2)  # 24-bit resolution
