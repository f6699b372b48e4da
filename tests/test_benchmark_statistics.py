"""The statistics the benchmarks report: the paired bootstrap of a kappa difference."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import ROOT

from dsp.agreement import agreement


@pytest.fixture(scope="module")
def staging_dreams():
    spec = importlib.util.spec_from_file_location("staging_dreams", ROOT / "benchmarks" / "staging_dreams.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hypnograms(seed: int, n: int = 60) -> np.ndarray:
    """A stage sequence in runs of a few epochs, as a night has."""
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(0, 5, size=n // 5), 5)


def test_the_difference_is_the_pooled_kappas_difference(staging_dreams):
    rng = np.random.default_rng(1)
    refs = [_hypnograms(s) for s in range(3)]
    ours = [np.where(rng.random(r.size) < 0.8, r, rng.integers(0, 5, r.size)) for r in refs]
    theirs = [np.where(rng.random(r.size) < 0.6, r, rng.integers(0, 5, r.size)) for r in refs]
    diff, low, high = staging_dreams.paired_difference(refs, ours, theirs)
    pooled = [agreement(np.concatenate(refs), np.concatenate(p)).kappa for p in (ours, theirs)]
    assert diff == pytest.approx(pooled[0] - pooled[1])
    assert low < diff < high


def test_the_macro_f1_difference_is_the_pooled_macro_f1s_difference(staging_dreams):
    rng = np.random.default_rng(3)
    refs = [_hypnograms(s) for s in range(3)]
    ours = [np.where(rng.random(r.size) < 0.8, r, rng.integers(0, 5, r.size)) for r in refs]
    theirs = [np.where(rng.random(r.size) < 0.6, r, 4) for r in refs]
    diff, low, high = staging_dreams.paired_difference(refs, ours, theirs, staging_dreams._macro_f1_of_counts)
    pooled = [agreement(np.concatenate(refs), np.concatenate(p)).macro_f1 for p in (ours, theirs)]
    assert diff == pytest.approx(pooled[0] - pooled[1])
    assert low < diff < high


def test_one_tool_against_itself_differs_by_nothing(staging_dreams):
    refs = [_hypnograms(s) for s in range(2)]
    preds = [np.roll(r, 3) for r in refs]
    assert staging_dreams.paired_difference(refs, preds, preds) == (0.0, 0.0, 0.0)


def test_a_clear_difference_has_an_interval_clear_of_zero_and_a_small_one_does_not(staging_dreams):
    rng = np.random.default_rng(2)
    refs = [_hypnograms(s, 120) for s in range(3)]
    perfect = [r.copy() for r in refs]
    noisy = [np.where(rng.random(r.size) < 0.5, r, rng.integers(0, 5, r.size)) for r in refs]
    _, low, _ = staging_dreams.paired_difference(refs, perfect, noisy)
    assert low > 0.2
    # one epoch in 120 apart: the interval straddles zero
    close = [n.copy() for n in noisy]
    close[0][np.flatnonzero(close[0] != refs[0])[0]] = refs[0][np.flatnonzero(close[0] != refs[0])[0]]
    _, low, high = staging_dreams.paired_difference(refs, close, noisy)
    assert low <= 0.0 <= high


def test_epochs_a_tool_did_not_stage_count_as_wrong(staging_dreams):
    rng = np.random.default_rng(4)
    refs = [_hypnograms(s) for s in range(3)]
    ours = [np.where(rng.random(r.size) < 0.7, r, rng.integers(0, 5, r.size)) for r in refs]
    theirs = [r.copy() for r in refs]
    theirs[1][:] = -1  # a recording the other tool refused: perfect elsewhere, wrong there
    diff, low, high = staging_dreams.paired_difference(refs, ours, theirs)
    pooled = [staging_dreams.kappa_counting_unstaged(np.concatenate(refs), np.concatenate(p))[1]
              for p in (ours, theirs)]
    assert diff == pytest.approx(pooled[0] - pooled[1])
    assert pooled[1] < 1.0
    assert low < diff < high
