"""``dreamsync train``: fit the stager to a folder of expert-scored recordings.

The folder holds recordings in the Sleep-EDF layout: ``*-PSG.edf`` signals with a
``*-Hypnogram.edf`` of EDF+ ``Sleep stage ...`` annotations (as ``dreamsync datasets fetch
sleep-edf`` downloads them). Each night is cut to 30 min of wake around its sleep period, as usual
for these long recordings, so hours of daytime wake do not swamp the wake prototype.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dsp.stages import EPOCH_SECONDS, STAGES, from_labels
from ingest.errors import RecordingError

#: Wake kept before the first and after the last sleep epoch, in epochs (30 min).
MARGIN_EPOCHS = 60


@dataclass(frozen=True)
class TrainingSummary:
    """What :func:`train_model` learnt from.

    Attributes
    ----------
    recordings : int
        Recordings used.
    epochs : dict
        Scored, scorable 30-s epochs per stage name.
    skipped : list of str
        One line per recording left out, with the reason.
    """

    recordings: int
    epochs: dict
    skipped: list


def sleep_window(stages: np.ndarray, margin: int = MARGIN_EPOCHS) -> slice:
    """Epochs from ``margin`` before the first to ``margin`` after the last sleep epoch (all if no sleep)."""
    asleep = np.flatnonzero(stages > 0)
    if len(asleep) == 0:
        return slice(0, len(stages))
    return slice(max(0, asleep[0] - margin), min(len(stages), asleep[-1] + 1 + margin))


def recording_features(psg, hypnogram, *, channel: str | None = None) -> tuple:
    """Features and expert stages of one recording's scored night.

    Parameters
    ----------
    psg : str or PathLike
        EDF/EDF+ signals.
    hypnogram : str or PathLike
        Its hypnogram (EDF+ annotations, dreamsync JSON or DREAMS text), starting with the PSG.
    channel : str, optional
        EEG channel label(s), comma-separated; chosen as by ``dreamsync stage`` otherwise.

    Returns
    -------
    features : ndarray, shape (n_epochs, n_features)
        The stager's features per epoch (:func:`dsp.staging.epoch_features`, at its working
        rate); NaN rows for unscorable epochs.
    stages : ndarray of int8, shape (n_epochs,)
        Expert stage codes (-1 unscored).

    Raises
    ------
    ingest.errors.RecordingError
        Unreadable files, no EEG channel, a rate below 50 Hz or no scorable epoch.
    """
    from dsp.errors import SignalError
    from dsp.staging import MIN_RATE_HZ, epoch_features
    from ingest.edf import read_edf
    from ingest.hypnograms import read_hypnogram

    from .pipeline import read_channels, staging_channels

    rec = read_edf(psg)
    eeg = staging_channels(rec, str(psg), channel)[0]
    fs = rec.signals[eeg[0]].fs
    if fs < MIN_RATE_HZ:
        raise RecordingError(f"{psg}: EEG at {fs:g} Hz; staging needs at least {MIN_RATE_HZ:g} Hz")
    stages = from_labels(read_hypnogram(hypnogram))
    per = int(round(EPOCH_SECONDS * fs))
    signal = read_channels(rec, eeg)
    n = min(len(stages), signal.shape[1] // per)
    window = sleep_window(stages[:n])
    stages = stages[window]
    try:  # the same features, at the same working rate, as staging computes
        features, ok = epoch_features(signal[:, window.start * per : window.stop * per], fs)
    except SignalError as err:
        raise RecordingError(f"{psg}: {err}") from None
    features[~ok] = np.nan
    return features, stages


def train_model(folder, out, *, channel: str | None = None,
                progress: Callable[[str], None] | None = None) -> TrainingSummary:
    """Fit a staging model to the scored recordings in ``folder`` and save it to ``out``.

    Parameters
    ----------
    folder : str or PathLike
        Searched with its subfolders for ``*-PSG.edf`` + ``*-Hypnogram.edf`` pairs.
    out : str or PathLike
        Model file to write (JSON).
    channel : str, optional
        EEG channel label(s) to learn from, comma-separated (e.g. ``"EEG Fpz-Cz"``).
    progress : callable, optional
        Receives one line per recording.

    Returns
    -------
    TrainingSummary

    Raises
    ------
    ingest.errors.RecordingError
        No pair in the folder, or no recording could be used.
    """
    from dsp.model import fit_model, save_model
    from ingest.datasets import sleep_edf_pairs

    pairs = sleep_edf_pairs(folder)
    if not pairs:
        raise RecordingError(f"{folder}: no *-PSG.edf with a matching *-Hypnogram.edf")
    features, stages, skipped = [], [], []
    for k, (psg, hypnogram) in enumerate(pairs, 1):
        try:
            x, y = recording_features(psg, hypnogram, channel=channel)
        except RecordingError as err:
            skipped.append(str(err))
            if progress:
                progress(f"[{k}/{len(pairs)}] skipped {pathlib.Path(psg).name}: {err}")
            continue
        features.append(x)
        stages.append(y)
        if progress:
            progress(f"[{k}/{len(pairs)}] {pathlib.Path(psg).name}: {int((y >= 0).sum())} scored epochs")
    if not features:
        raise RecordingError(f"{folder}: no recording could be used ({skipped[0]})")
    used = np.concatenate([y[(y >= 0) & np.all(np.isfinite(x), axis=1)] for x, y in zip(features, stages)])
    counts = np.bincount(used, minlength=len(STAGES))
    model = fit_model(features, stages, f"trained on {len(features)} recordings in {pathlib.Path(folder).resolve().name}: "
                      + ", ".join(f"{name} {int(c)}" for name, c in zip(STAGES, counts)) + " epochs")
    save_model(model, out)
    return TrainingSummary(len(features), {name: int(c) for name, c in zip(STAGES, counts)}, skipped)
