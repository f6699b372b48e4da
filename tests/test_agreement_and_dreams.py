"""Agreement metrics on hand-worked examples, and the DREAMS text readers."""

import numpy as np
import pytest

from dsp.agreement import agreement
from ingest.dreams import read_dreams_hypnogram, read_dreams_signal
from ingest.errors import RecordingError


def test_agreement_on_a_hand_worked_example():
    ref = np.array([0, 0, 2, 2, 2, 3, 4, 4, -1])
    pred = np.array([0, 1, 2, 2, 3, 3, 4, 0, 2])
    a = agreement(ref, pred)
    assert a.n_epochs == 8 and a.accuracy == pytest.approx(5 / 8)
    # p_o = 5/8; marginals ref (2,0,3,1,2) pred (2,1,2,2,1): p_e = (4+0+6+2+2)/64
    assert a.kappa == pytest.approx((5 / 8 - 14 / 64) / (1 - 14 / 64))
    assert a.f1["N2"] == pytest.approx(2 * 2 / (3 + 2)) and a.f1["N1"] == 0.0
    assert a.confusion.sum() == 8 and a.confusion[2, 3] == 1


def test_perfect_and_mismatched_lengths():
    assert agreement([0, 2, 4], [0, 2, 4]).kappa == 1.0
    with pytest.raises(ValueError, match="length"):
        agreement([0, 1], [0])


def test_dreams_hypnogram_majority_per_30_s(tmp_path):
    path = tmp_path / "Hypnogram_x.txt"
    scores = [5] * 6 + [2, 2, 2, 1, 0, 0] + [0, 1, 2, 3, 3, 4] + [2] * 3
    path.write_text("[Hypnogram]\n" + "\n".join(map(str, scores)) + "\n")
    # third epoch: N3 x2, N2, N1 x2, REM -> tie N3/N1, first to appear wins; last 15 s dropped
    assert read_dreams_hypnogram(path) == ["W", "N2", "N3"]


def test_dreams_readers_reject_other_files(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("1\n2\n")
    with pytest.raises(RecordingError):
        read_dreams_signal(path)
    with pytest.raises(RecordingError):
        read_dreams_hypnogram(path)


def test_real_dreams_files_line_up(dreams_dir):
    label, data = read_dreams_signal(dreams_dir / "excerpt1.txt")
    assert label == "C3-A1" and data.shape == (180_000,)
    assert len(read_dreams_hypnogram(dreams_dir / "Hypnogram_excerpt1.txt")) == 60
