"""Reading hypnograms in every supported format, and evaluating one against another."""

import json
from collections import Counter

import pytest

from conftest import SHARED, run_cli
from ingest.errors import RecordingError
from ingest.hypnograms import read_hypnogram

SLEEP_EDF = SHARED / "data" / "sleep-edf-sc-hypnograms" / "SC4001EC-Hypnogram.edf"


def test_sleep_edf_hypnogram_matches_its_published_counts():
    if not SLEEP_EDF.is_file():
        pytest.skip("../shared/data/sleep-edf-sc-hypnograms is not present")
    stages = read_hypnogram(SLEEP_EDF)
    # SOURCE.md: W 1997, S1 58, S2 250, S3 101 + S4 119, REM 125, ? 230 (24 h of 30-s epochs)
    assert len(stages) == 2880
    assert Counter(stages) == {"W": 1997, "N1": 58, "N2": 250, "N3": 220, "REM": 125, "?": 230}


def test_dreams_json_and_simulated_edf(tmp_path, dreams_dir):
    assert len(read_hypnogram(dreams_dir / "Hypnogram_excerpt2.txt")) == 60
    (tmp_path / "h.json").write_text(json.dumps({"stages": ["W", "N1", "?", "REM"]}))
    assert read_hypnogram(tmp_path / "h.json") == ["W", "N1", "?", "REM"]
    edf = tmp_path / "sim.edf"
    assert run_cli("simulate", "--hours", "0.25", "--seed", "2", "--out", edf).returncode == 0
    truth = json.loads((tmp_path / "sim.truth.json").read_text())["stages"]
    assert read_hypnogram(edf) == truth


@pytest.mark.parametrize("content", [b"", b"stages: W N1", b'{"stage": []}', b'{"stages": ["W", "S5"]}'])
def test_other_files_are_refused(tmp_path, content):
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(RecordingError):
        read_hypnogram(path)


def test_evaluate_reports_agreement(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"stages": ["W", "N2", "N2", "N3", "REM", "?"]}))
    (tmp_path / "t.json").write_text(json.dumps({"stages": ["W", "N2", "N3", "N3", "REM", "W"]}))
    res = run_cli("evaluate", tmp_path / "p.json", tmp_path / "t.json", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["epochs"] == 5 and doc["accuracy"] == pytest.approx(0.8) and doc["confusion"]["counts"][3][2] == 1
    text = run_cli("evaluate", tmp_path / "p.json", tmp_path / "t.json").stdout
    assert "accuracy 0.800" in text and "kappa" in text
    bad = run_cli("evaluate", tmp_path / "p.json", tmp_path / "missing.json")
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
