"""Sleep statistics on hand-worked hypnograms."""

import numpy as np
import pytest

from dsp.statistics import sleep_statistics

W, N1, N2, N3, R, U = 0, 1, 2, 3, 4, -1


def test_a_hand_worked_night():
    # 4 W (2 min) | N1 N2 N2 N3 N3 | W W | N2 R R | U | N2 | W W W
    hyp = [W] * 4 + [N1, N2, N2, N3, N3] + [W, W] + [N2, R, R] + [U] + [N2] + [W] * 3
    st = sleep_statistics(hyp)
    assert st["TIB"] == 9.5 and st["TST"] == 4.5 and st["SE"] == pytest.approx(4.5 / 9.5)  # 19 epochs
    assert st["SOL"] == 2.0 and st["SPT"] == 6.0  # epochs 4..15 inclusive
    assert st["WASO"] == 1.0 and st["awakenings"] == 1
    assert st["REM_latency"] == 4.0  # sleep onset at epoch 4, first REM at epoch 12
    assert st["minutes"] == {"W": 4.5, "N1": 0.5, "N2": 2.0, "N3": 1.0, "REM": 1.0}
    assert st["percent_of_TST"]["N2"] == pytest.approx(100 * 2.0 / 4.5)
    assert st["unscored_minutes"] == 0.5
    counts = np.array(st["transitions"]["counts"])
    assert counts[W, N1] == 1 and counts[N3, W] == 1 and counts[R, R] == 1 and counts.sum() == len(hyp) - 1 - 2


def test_persistent_sleep_needs_ten_uninterrupted_minutes():
    hyp = [W] * 10 + [N2] * 15 + [W] + [N2] * 20 + [U] + [N2] * 25
    st = sleep_statistics(hyp)
    assert st["SOL"] == 5.0 and st["persistent_sleep_latency"] == 13.0  # the run starting at epoch 26
    assert sleep_statistics(hyp, persistent_minutes=5)["persistent_sleep_latency"] == 5.0


def test_nights_without_sleep_or_rem():
    st = sleep_statistics([W] * 40)
    assert st["TST"] == 0 and st["SOL"] is None and st["SPT"] == 0 and st["persistent_sleep_latency"] is None
    assert sleep_statistics([W, N2, N2, W])["REM_latency"] is None
    with pytest.raises(ValueError):
        sleep_statistics([0, 5])
