"""The stager's parameters: stage prototypes in feature space and the hidden Markov model's transitions.

The default model is set from the AASM descriptions (prototypes, by hand) and 20 real expert
hypnograms (transitions, counted). ``fit_model`` estimates the same parameters from a user's own
labelled recordings (``dreamsync train``); models are saved as JSON, never pickled, so a model file
from anyone can be read safely.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from .features import EEG_FEATURES, GAIN_DEPENDENT
from .stages import STAGES

MODEL_FORMAT = "dreamsync-staging-model"
MODEL_VERSION = 1
TRANSITIONS_FILE = pathlib.Path(__file__).with_name("sleep_edf_transitions.json")

# Prototype features per stage (rows W, N1, N2, N3, REM; columns as dsp.features.EEG_FEATURES, log10
# except the entropy): the delta power relative to the recording's N2 level, the band shares of the
# 0.5-22 Hz power, the spectral slope over 2-20 Hz and the permutation entropy.
_PROTOTYPES = np.array([
    [-0.60, -0.90, -1.05, -1.45, -1.25, -1.3, 0.955],  # W: low delta; alpha (eyes closed), beta (muscle, arousal)
    [-0.45, -0.75, -1.05, -1.35, -1.60, -1.8, 0.935],  # N1: theta rises, alpha still present, some beta
    [0.00, -0.90, -1.30, -1.55, -2.05, -2.2, 0.918],   # N2: delta and spindles (sigma)
    [0.45, -1.15, -1.55, -1.90, -2.45, -2.6, 0.895],   # N3: slow waves dominate every share, steepest slope
    [-0.45, -0.75, -1.20, -1.60, -1.70, -1.9, 0.935],  # REM: theta, little alpha or sigma
])
# Spread (SD) of each feature around its prototype. Wake is the loosest: movement and blinks make
# its delta power and slope vary most.
_SPREAD = np.array([
    [0.60, 0.25, 0.30, 0.30, 0.35, 0.40, 0.015],
    [0.30, 0.20, 0.25, 0.25, 0.30, 0.30, 0.015],
    [0.25, 0.18, 0.20, 0.22, 0.25, 0.30, 0.015],
    [0.25, 0.18, 0.20, 0.25, 0.30, 0.30, 0.015],
    [0.30, 0.20, 0.25, 0.25, 0.30, 0.30, 0.015],
])
# How chin-EMG tone (robust z against this night's NREM tone, clipped to +/-3) shifts each stage's
# log likelihood: tone is highest in W, lowest in REM.
_EMG_WEIGHT = np.array([1.0, 0.3, 0.0, 0.0, -1.0])
# How a full epoch's worth of rapid eye movements (dsp.evidence) shifts each stage's log likelihood:
# they mark REM, and in wake blinks and scanning; NREM eyes are still.
_EOG_WEIGHT = np.array([0.5, 0.0, -1.0, -1.0, 1.5])
# How a full epoch's worth of body movement (accelerometer) does: movement means wake (as in
# actigraphy), some in N1, hardly any in deep sleep or under REM atonia.
_MOVEMENT_WEIGHT = np.array([2.0, 0.5, -0.5, -1.0, -0.5])
# A recording may start in any stage (a nap, an excerpt, a restart), most often in wake, rarely in REM.
_INITIAL = np.array([0.5, 0.2, 0.2, 0.07, 0.03])
#: Pseudo-epochs of the default prototype mixed into each fitted one, so thin stages stay sane.
PRIOR_EPOCHS = 50.0
#: Smallest spread a fitted model may have (a stage seen in few, similar epochs is not that certain).
MIN_SPREAD = 0.01


@dataclass(frozen=True)
class StagingModel:
    """Parameters of the stager.

    Attributes
    ----------
    prototypes : ndarray, shape (5, n_features)
        Mean features per stage (rows W, N1, N2, N3, REM; columns :data:`dsp.features.EEG_FEATURES`);
        gain-dependent features relative to the recording's N2 level.
    spread : ndarray, shape (5, n_features)
        Standard deviation of each feature per stage, same units.
    emg_weight : ndarray, shape (5,)
        Log-likelihood shift per unit of EMG tone z-score.
    eog_weight : ndarray, shape (5,)
        Log-likelihood shift at full eye-movement evidence (:func:`dsp.evidence.auxiliary_loglik`).
    movement_weight : ndarray, shape (5,)
        Log-likelihood shift at full body-movement evidence (accelerometer).
    transitions : ndarray, shape (5, 5)
        Epoch-to-epoch transition probabilities (rows from, columns to), rows sum to 1.
    initial : ndarray, shape (5,)
        Probability of the first epoch's stage.
    source : str
        What the parameters were set or fitted from.
    """

    prototypes: np.ndarray
    spread: np.ndarray
    emg_weight: np.ndarray
    transitions: np.ndarray
    initial: np.ndarray
    source: str
    eog_weight: np.ndarray = field(default_factory=_EOG_WEIGHT.copy)
    movement_weight: np.ndarray = field(default_factory=_MOVEMENT_WEIGHT.copy)

    @property
    def log_transitions(self) -> np.ndarray:
        """Log of :attr:`transitions`, shape (5, 5)."""
        return np.log(self.transitions)

    @property
    def log_initial(self) -> np.ndarray:
        """Log of :attr:`initial`, shape (5,)."""
        return np.log(self.initial)

    def to_json(self) -> dict:
        """Plain-value form, as saved by :func:`save_model`."""
        return {
            "format": MODEL_FORMAT, "version": MODEL_VERSION, "stages": list(STAGES),
            "features": list(EEG_FEATURES), "source": self.source,
            "prototypes": self.prototypes.tolist(), "spread": self.spread.tolist(),
            "emg_weight": self.emg_weight.tolist(), "transitions": self.transitions.tolist(),
            "initial": self.initial.tolist(), "eog_weight": self.eog_weight.tolist(),
            "movement_weight": self.movement_weight.tolist(),
        }


def transitions_from_counts(counts) -> np.ndarray:
    """Row-normalised transition probabilities from counts, shape (5, 5); one is added to every cell
    so that no transition is impossible."""
    counts = np.asarray(counts, dtype=np.float64) + 1.0
    return counts / counts.sum(axis=1, keepdims=True)


def default_model() -> StagingModel:
    """The model used when none is given: hand-set prototypes, Sleep-EDF transitions."""
    counts = json.loads(TRANSITIONS_FILE.read_text())["counts"]
    return StagingModel(_PROTOTYPES, _SPREAD, _EMG_WEIGHT, transitions_from_counts(counts), _INITIAL,
                        "default: prototypes from the AASM rules; transitions from 20 Sleep-EDF expert hypnograms")


def transition_counts(stage_sequences) -> np.ndarray:
    """Counts of stage ``i`` followed by stage ``j``, over sequences of stage codes (-1 breaks a run).

    Parameters
    ----------
    stage_sequences : iterable of array_like of int
        Stage codes per 30-s epoch (0 W .. 4 REM, -1 unscored).

    Returns
    -------
    ndarray of int64, shape (5, 5)
    """
    counts = np.zeros((len(STAGES), len(STAGES)), dtype=np.int64)
    for seq in stage_sequences:
        seq = np.asarray(seq)
        ok = (seq[:-1] >= 0) & (seq[1:] >= 0)
        np.add.at(counts, (seq[:-1][ok], seq[1:][ok]), 1)
    return counts


def fit_model(features: list, stages: list, source: str) -> StagingModel:
    """Fit a model to labelled recordings.

    Parameters
    ----------
    features : list of ndarray, each shape (n_epochs_i, n_features)
        :func:`dsp.features.eeg_features` of each recording, one row per 30-s epoch (rows with
        NaN, e.g. unscorable epochs, are skipped).
    stages : list of ndarray of int, each shape (n_epochs_i,)
        Expert stage codes of the same epochs (-1 = unscored, skipped).
    source : str
        Description kept in the model (e.g. which recordings).

    Returns
    -------
    StagingModel
        Prototypes and spreads are the per-stage means and SDs, each shrunk towards the default by
        :data:`PRIOR_EPOCHS` pseudo-epochs; gain-dependent features are taken relative to each
        recording's median over its N2 epochs (or over all its sleep epochs when it has no N2).
        Transitions are counted in the stage sequences.

    Raises
    ------
    ValueError
        If no recording has a scored epoch.
    """
    base = default_model()
    rows, labels = [], []
    for x, y in zip(features, stages):
        x = np.array(x, dtype=np.float64)
        y = np.asarray(y)
        keep = (y >= 0) & np.all(np.isfinite(x), axis=1)
        if not keep.any():
            continue
        reference = keep & (y == 2) if (keep & (y == 2)).any() else keep & (y > 0)
        if not reference.any():
            reference = keep
        x -= np.median(x[reference], axis=0) * GAIN_DEPENDENT
        rows.append(x[keep])
        labels.append(y[keep])
    if not rows:
        raise ValueError("no scored epoch to learn from")
    x, y = np.concatenate(rows), np.concatenate(labels)
    prototypes, spread = base.prototypes.copy(), base.spread.copy()
    for k in range(len(STAGES)):
        xs = x[y == k]
        n = len(xs)
        if n == 0:
            continue
        w = n / (n + PRIOR_EPOCHS)
        mean = xs.mean(axis=0)
        prototypes[k] = w * mean + (1 - w) * base.prototypes[k]
        var = ((xs - mean) ** 2).mean(axis=0)
        spread[k] = np.maximum(np.sqrt(w * var + (1 - w) * base.spread[k] ** 2), MIN_SPREAD)
    counts = transition_counts(stages)
    return StagingModel(prototypes, spread, base.emg_weight.copy(), transitions_from_counts(counts),
                        base.initial.copy(), source, base.eog_weight.copy(), base.movement_weight.copy())


def save_model(model: StagingModel, path) -> None:
    """Write ``model`` as JSON to ``path``."""
    pathlib.Path(path).write_text(json.dumps(model.to_json(), indent=1) + "\n")


def load_model(path) -> StagingModel:
    """Read a model written by :func:`save_model`.

    Raises
    ------
    ValueError
        If the file is not a dreamsync staging model of a version and feature set this code reads.
    OSError
        If the file cannot be read.
    """
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a dreamsync model (not JSON: {err.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a dreamsync model (not text)") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a dreamsync staging model")
    if data.get("version") != MODEL_VERSION or data.get("features") != list(EEG_FEATURES):
        raise ValueError(f"{path}: model version {data.get('version')} with features {data.get('features')} "
                         f"cannot be read by this dreamsync (expects version {MODEL_VERSION}); retrain it")
    n_stages, n_features = len(STAGES), len(EEG_FEATURES)
    try:
        model = StagingModel(
            prototypes=np.array(data["prototypes"], dtype=np.float64).reshape(n_stages, n_features),
            spread=np.array(data["spread"], dtype=np.float64).reshape(n_stages, n_features),
            emg_weight=np.array(data["emg_weight"], dtype=np.float64).reshape(n_stages),
            transitions=np.array(data["transitions"], dtype=np.float64).reshape(n_stages, n_stages),
            initial=np.array(data["initial"], dtype=np.float64).reshape(n_stages),
            source=str(data.get("source", "")),
            # absent from models saved before the stager read EOG and accelerometers: the defaults
            eog_weight=np.array(data.get("eog_weight", _EOG_WEIGHT), dtype=np.float64).reshape(n_stages),
            movement_weight=np.array(data.get("movement_weight", _MOVEMENT_WEIGHT), dtype=np.float64).reshape(n_stages),
        )
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: damaged model file ({err})") from None
    if (np.any(model.spread <= 0) or np.any(model.transitions <= 0) or np.any(model.initial <= 0)
            or not np.allclose(model.transitions.sum(axis=1), 1.0) or not np.isclose(model.initial.sum(), 1.0)):
        raise ValueError(f"{path}: damaged model file (spreads and probabilities must be positive and sum to 1)")
    return model
