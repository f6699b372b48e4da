"""Adjustment events: validation, merging and event-level scoring against true episodes."""

import math

import pytest

from dsp.events import AdjustmentEvent, merge_events, score_events


def ev(onset, duration, kind="electrical", score=0.9, evidence="x", channels=()):
    return AdjustmentEvent(onset, duration, kind, score, evidence, channels)


def test_event_rejects_unknown_kind_and_bad_values():
    with pytest.raises(ValueError, match="kind"):
        ev(0, 1, kind="magnetic")
    with pytest.raises(ValueError, match="duration"):
        ev(0, 0)
    with pytest.raises(ValueError, match="score"):
        ev(0, 1, score=1.5)


def test_merge_joins_overlapping_events_of_one_kind_only():
    merged = merge_events([ev(0, 10, score=0.6, evidence="weak", channels=(0,)),
                           ev(5, 10, score=0.95, evidence="strong", channels=(1,)),
                           ev(8, 4, kind="tampering"), ev(30, 5)])
    assert [(e.kind, e.onset, e.end) for e in merged] == [("electrical", 0, 15), ("tampering", 8, 12),
                                                           ("electrical", 30, 35)]
    assert merged[0].evidence == "strong" and merged[0].score == 0.95 and merged[0].channels == (0, 1)


def test_scores_count_found_episodes_false_alarms_and_kinds():
    truth = [{"kind": "electrical", "onset": 100, "duration": 300},
             {"kind": "tampering", "onset": 1000, "duration": 30},
             {"kind": "auditory", "onset": 2000, "duration": 600}]
    detected = [ev(110, 50), ev(200, 50),                  # two hits on the electrical episode
                ev(1005, 20, kind="entrainment"),          # right time, wrong kind
                ev(5000, 10, kind="tampering")]            # false alarm
    s = score_events(detected, truth)
    assert (s.n_true, s.n_detected, s.found, s.correct) == (3, 4, 1, 2)
    assert s.recall == pytest.approx(1 / 3) and s.precision == pytest.approx(0.5)
    assert s.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert s.kind_accuracy == pytest.approx(2 / 3) and s.false_alarms == 2
    t = score_events(detected, truth, kind="tampering")
    assert (t.n_true, t.n_detected, t.found, t.correct) == (1, 1, 0, 0)
    assert t.kind_accuracy == 0.0  # the entrainment call on the tampered stretch
    both = s + t
    assert both.n_true == 4 and both.found == 1


def test_scores_without_episodes_or_detections_are_undefined_not_perfect():
    s = score_events([], [])
    assert math.isnan(s.recall) and math.isnan(s.precision) and math.isnan(s.f1)
    assert score_events([ev(0, 1)], []).precision == 0.0
