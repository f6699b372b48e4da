"""`dreamsync report`: a self-contained HTML page of a simulated night with injected adjustments, its
PNG figures, bad input, the pure renderer, per-channel quality, and the page as Chromium draws it."""

import base64
import datetime as dt
import html
import io
import json
import pathlib
import re
import subprocess

import numpy as np
import pytest

from conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("Hypnogram and hypnodensity", "Multitaper spectrogram", "Sleep statistics", "Adjustment timeline",
            "Signal quality")
FIGURES = ("hypnogram", "spectrogram", "adjustments", "quality")
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A 1-h simulated night with replayed/spliced/warped segments and closed-loop sound, the chin EMG
    going flat after 30 min, and its report with PNG figures."""
    folder = tmp_path_factory.mktemp("report")
    edf = folder / "night.edf"
    res = run_cli("simulate", "--hours", "1", "--seed", "4", "--inject", "tampering,auditory",
                  "--faults", "loss=0.001,flat=EMG chin,fault_onset=1800", "--out", edf)
    assert res.returncode == 0, res.stderr
    page, figures = folder / "report.html", folder / "figures"
    res = run_cli("report", edf, "--out", page, "--png", figures)
    assert res.returncode == 0, res.stderr
    return edf, page, figures, res


@pytest.fixture(scope="module")
def staged(night):
    """The night staged through the Python API (to compare the page with)."""
    from dreamsync.pipeline import stage_file

    return stage_file(str(night[0]))


def _png_size(data: bytes) -> tuple:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_page_is_self_contained_with_every_section(night):
    edf, page, _, res = night
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), "reference to another site"
    assert not re.search(r"<(script|link|iframe|object|embed)\b|@import|url\(", text, re.I)
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in sources)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text, title
    assert html.escape(str(edf)) in text and "EEG C4-M1 (EEG, 256 Hz)" in text
    assert "Simulated recording" in text and "not a measure of its accuracy on people" in text
    assert re.search(r"start \(clock time\)</td><td>\d{4}-\d\d-\d\d 23:00:00", text)
    for step in ("reading", "staging", "detecting", "drawing"):
        assert f"dreamsync: {step}" in res.stderr
    assert res.stdout.startswith(f"wrote {page}: 120 epochs") and "4 PNG figures" in res.stdout


def test_every_flagged_event_is_listed_with_its_evidence(night, staged):
    from dreamsync.detection import detect_file
    from ingest.edf import read_edf

    edf, page, _, _ = night
    text = page.read_text(encoding="utf-8")
    report = detect_file(str(edf), staging=staged.result)
    assert report.stages is staged.result.stages  # the staging passed in is the one used
    start = read_edf(edf).start
    assert report.events, "the simulated tampering should be flagged"
    table = text.split("<h2>Adjustment timeline</h2>", 1)[1].split("</table>", 1)[0]
    assert table.count("ALARM") == len(report.alarms)
    for event, _ in report.events:
        clock = f"{start + dt.timedelta(seconds=event.onset):%H:%M:%S}"
        row = next(r for r in table.split("<tr>") if clock in r)
        assert event.kind in row and f"{event.score:.2f}" in row and html.escape(event.evidence) in row


def test_statistics_table_shows_the_hypnograms_statistics_with_units(night, staged):
    _, page, _, _ = night
    text = page.read_text(encoding="utf-8")
    stats = staged.to_json()["statistics"]

    def cell(name):
        match = re.search(re.escape(name) + r'</td><td class="num">([^<]*)</td><td>([^<]*)</td>', text)
        assert match, name
        return match.groups()

    assert cell("Total sleep time (TST)") == (f"{stats['TST']:.1f}", "min")
    assert cell("Time in bed (TIB)") == ("60.0", "min")
    assert cell("Sleep efficiency (SE)") == (f"{100 * stats['SE']:.1f}", "%")
    assert cell("Awakenings") == (str(stats["awakenings"]), "count")
    for name in ("W", "N1", "N2", "N3", "REM"):
        assert cell(f"<td>{name}")[0] == f"{stats['minutes'][name]:.1f}"


def test_quality_table_shows_the_flat_chin_emg(night):
    _, page, _, _ = night
    text = page.read_text(encoding="utf-8")
    row = re.search(r"<td>EMG chin</td><td>EMG</td>(.*?)</tr>", text).group(1)
    values = [float(v) for v in re.findall(r'<td class="num">([\d.]+)</td>', row)]
    rate, epochs, missing, gaps, flat, railed, artefact, usable = values
    assert (rate, epochs) == (256, 120) and 0 < missing < 1
    assert flat == pytest.approx(50.0, abs=1.0) and railed == 0 and usable <= 50.0
    eeg = re.search(r"<td>EEG C4-M1</td><td>EEG</td>(.*?)</tr>", text).group(1)
    assert re.findall(r'<td class="num">([\d.]+)</td>', eeg)[4] == "0.0"  # no flat EEG epoch


def test_png_figures_are_written_and_are_the_ones_on_the_page(night):
    _, page, figures, _ = night
    text = page.read_text(encoding="utf-8")
    embedded = [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]
    for name in FIGURES:
        data = (figures / f"{name}.png").read_bytes()
        width, height = _png_size(data)
        assert width >= 1200 and 250 <= height <= 1000 and len(data) > 20_000, (name, width, height)
        assert data in embedded


def test_consent_marks_events_authorized_and_quiet_prints_nothing(night, tmp_path):
    edf, _, _, _ = night
    consent = tmp_path / "consent.json"
    consent.write_text(json.dumps({"authorized": [{"kind": "tampering", "start": 0, "end": 3600}]}))
    page = tmp_path / "consented.html"
    res = run_cli("report", edf, "--out", page, "--authorized", consent, "--quiet")
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stderr
    text = page.read_text(encoding="utf-8")
    table = text.split("<h2>Adjustment timeline</h2>", 1)[1].split("</table>", 1)[0]
    tampering = [r for r in table.split("<tr>") if r.startswith("<td") and "tampering" in r]
    assert tampering and all('class="ok">authorized' in r for r in tampering)
    assert "consent windows: 1" in text


@pytest.mark.parametrize("case", ["missing", "not-edf", "channel", "consent", "calibration", "out-folder"])
def test_bad_input_is_one_line_and_exit_2(night, tmp_path, case):
    edf, _, _, _ = night
    out = tmp_path / "r.html"
    args = {"missing": [tmp_path / "nope.edf", "--out", out],
            "not-edf": [edf.with_suffix(".truth.json"), "--out", out],
            "channel": [edf, "--out", out, "--channel", "EEG Oz"],
            "consent": [edf, "--out", out, "--authorized", tmp_path / "consent.json"],
            "calibration": [edf, "--out", out, "--calibration", tmp_path / "consent.json"],
            "out-folder": [edf, "--out", tmp_path / "no" / "such" / "r.html"]}[case]
    (tmp_path / "consent.json").write_text('{"authorized": [{"kind": "hypnosis", "start": 0, "end": 9}]}')
    res = run_cli("report", *args, "--quiet")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dreamsync: error: ") and "Traceback" not in res.stderr
    assert not out.exists()


def test_a_calibration_file_stages_the_report_as_it_stages_the_file(night, staged, tmp_path):
    from dreamsync.calibration import read_calibration
    from dreamsync.pipeline import stage_file
    from dreamsync.report import collect_report

    edf = str(night[0])
    calibration = tmp_path / "staged.json"
    calibration.write_text(json.dumps(staged.to_json()))
    offsets = read_calibration(str(calibration))
    np.testing.assert_allclose(offsets, staged.result.feature_offsets, atol=1e-6)
    data = collect_report(edf, calibration=str(calibration))
    expected = stage_file(edf, calibration=offsets).result
    np.testing.assert_array_equal(data.staged.result.stages, expected.stages)
    np.testing.assert_allclose(data.staged.result.feature_offsets, expected.feature_offsets)


def _synthetic_data(start=dt.datetime(2026, 1, 2, 22, 15), authorized=True):
    """ReportData of a made-up 1-h hypnogram with two events, one authorized (no file involved)."""
    from dreamsync.authorization import AuthorizedWindow
    from dreamsync.detection import DetectionReport
    from dreamsync.pipeline import StagedRecording
    from dreamsync.report import ReportData, channel_quality
    from dsp.events import AdjustmentEvent
    from dsp.staging import StagingResult

    stages = np.array([0] * 10 + [1] * 5 + [2] * 40 + [3] * 20 + [4] * 15 + [-1] * 2 + [0] * 28, dtype=np.int8)
    probs = np.full((stages.size, 5), 0.05)
    probs[np.arange(stages.size), np.maximum(stages, 0)] = 0.8
    result = StagingResult(stages, probs, probs.max(axis=1))
    events = [(AdjustmentEvent(600.0, 300.0, "auditory", 0.9, "evoked responses <N550>", (0,)), False),
              (AdjustmentEvent(2000.0, 30.0, "tampering", 1.0, "copy of 100-130 s", (0, 1)), authorized)]
    detection = DetectionReport("x.edf", start, 3600.0, 100.0, ["EEG Cz", "EOG"], events, stages)
    rng = np.random.default_rng(0)
    quality = [channel_quality(rng.normal(0, 20, 360_000), 100.0, "EEG Cz", "EEG")]
    windows = [AuthorizedWindow("tampering", 1900.0, 2100.0)] if authorized else []
    return ReportData("x.edf", start, 3600.0, [("EEG Cz", "EEG", 100.0), ("EOG", "EOG", 100.0)],
                      StagedRecording(result, start, ["EEG Cz"], None), detection, None, "", quality,
                      authorized_windows=windows)


@pytest.mark.parametrize("start", [dt.datetime(2026, 1, 2, 22, 15), None])
def test_render_report_of_computed_results_with_an_extra_section(start):
    from dreamsync.report import render_report

    text = render_report(_synthetic_data(start), extra_sections=[("Audit <trail>", "<p id='audit'>ok</p>")])
    assert "<h2>Audit &lt;trail&gt;</h2><p id='audit'>ok</p>" in text
    assert text.index("<h2>Signal quality</h2>") < text.index("<h2>Audit &lt;trail&gt;</h2>")
    assert "evoked responses &lt;N550&gt;" in text  # evidence is escaped
    assert text.count('class="alarm">ALARM') == 1 and text.count('class="ok">authorized') == 1
    assert "Recorded data." in text and "Simulated recording" not in text
    assert ("22:25:00" in text) == (start is not None)  # onset as clock time when the start is known
    assert "spectrogram: not available" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 3


def test_channel_quality_counts_gaps_flat_railed_and_artefact_epochs():
    from dreamsync.report import channel_quality

    fs, per = 100.0, 3000
    x = np.random.default_rng(1).normal(0, 20, 40 * per)
    x[2 * per + 10:2 * per + 1000] = np.nan  # a third of epoch 2 lost
    x[5 * per:7 * per] = 0.02 * np.random.default_rng(2).normal(size=2 * per)  # disconnected
    x[10 * per:11 * per] = 187_500.0  # stuck at the rail
    x[20 * per + 500:20 * per + 700] += 2000.0  # a movement swing
    q = channel_quality(x, fs, "EEG Cz", "EEG")
    assert q.epochs == 40 and q.missing_samples == pytest.approx(990 / x.size)
    assert list(np.flatnonzero(q.classes == 1)) == [2]
    assert list(np.flatnonzero(q.classes == 2)) == [5, 6]
    assert list(np.flatnonzero(q.classes == 3)) == [10]
    assert list(np.flatnonzero(q.classes == 4)) == [20]
    assert (q.gaps, q.flat, q.railed, q.artefact) == (1 / 40, 2 / 40, 1 / 40, 1 / 40)
    assert q.usable == pytest.approx(35 / 40)


@pytest.mark.skipif(not pathlib.Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")
def test_chromium_renders_the_page_with_its_figures(night, tmp_path):
    from PIL import Image

    _, page, _, _ = night
    shot = tmp_path / "shot.png"
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                          "--window-size=1280,3000", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists(), res.stderr[-2000:]
    image = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"), dtype=np.int16)
    assert image.shape == (3000, 1280, 3)
    ink = (np.abs(image - 255).sum(axis=2) > 60)  # pixels clearly not white
    assert ink.mean() > 0.05, "the page looks blank"
    colourful = (image.max(axis=2) - image.min(axis=2)) > 80  # the figures' stage and spectrogram colours
    assert colourful.mean() > 0.02
    assert ink[:, :640].mean() > 0.02 and ink[:, 640:].mean() > 0.02  # figures span the width
