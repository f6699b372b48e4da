"""Agreement between two hypnograms: accuracy, Cohen's kappa, macro and per-stage F1, confusion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stages import STAGES


@dataclass(frozen=True)
class Agreement:
    """Epoch-by-epoch agreement of a predicted hypnogram with a reference.

    Attributes
    ----------
    n_epochs : int
        Epochs compared (both scored).
    accuracy, kappa, macro_f1 : float
        Macro-F1 averages the stages present in either hypnogram.
    f1 : dict
        Per-stage F1 (NaN for a stage absent from both).
    confusion : ndarray, shape (5, 5)
        Rows reference, columns prediction, in stage order W, N1, N2, N3, REM.
    """

    n_epochs: int
    accuracy: float
    kappa: float
    macro_f1: float
    f1: dict
    confusion: np.ndarray


def agreement(reference, predicted) -> Agreement:
    """Compare two stage-code arrays (0 W .. 4 REM); epochs unscored (-1) in either are left out.

    Raises
    ------
    ValueError
        If the lengths differ or no epoch is scored in both.
    """
    ref, pred = np.asarray(reference), np.asarray(predicted)
    if ref.shape != pred.shape:
        raise ValueError(f"hypnograms differ in length: {ref.size} vs {pred.size} epochs")
    keep = (ref >= 0) & (pred >= 0)
    if not keep.any():
        raise ValueError("no epoch is scored in both hypnograms")
    k = len(STAGES)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (ref[keep], pred[keep]), 1)
    n = cm.sum()
    observed = np.trace(cm) / n
    expected = (cm.sum(0) * cm.sum(1)).sum() / n**2
    kappa = (observed - expected) / (1 - expected) if expected < 1 else 1.0
    tp, ref_n, pred_n = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(ref_n + pred_n > 0, 2 * tp / (ref_n + pred_n), np.nan)
    return Agreement(int(n), float(observed), float(kappa), float(np.nanmean(f1)),
                     {name: float(f1[i]) for i, name in enumerate(STAGES)}, cm)
