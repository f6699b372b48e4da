"""The DREAMS databases' text formats: one-column signals, 5-s R&K hypnograms, event marks.

Signal files: first line the channel label in brackets (``[C3-A1]``), then one sample per line in uV.
Hypnogram files: ``[Hypnogram]`` then one R&K score per 5 s: 5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4,
negative = movement or unscored.
Event files (``Visual_scoring1_excerptN.txt``, ``Visual_scoring2_...``, ``Automatic_detection_...``):
a bracketed label (``[vis1_Spindles/C3-A1]``), then one event per line: onset in s, duration in s.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from .errors import RecordingError

# R&K score -> AASM stage name (S3 and S4 are both N3).
_RK_TO_AASM = {5: "W", 4: "REM", 3: "N1", 2: "N2", 1: "N3", 0: "N3"}
SCORE_SECONDS = 5.0


def read_dreams_signal(path: str | os.PathLike) -> tuple:
    """Read a DREAMS one-column signal file.

    Returns
    -------
    label : str
        Channel label from the header line.
    data : numpy.ndarray of float64, shape (n_samples,)
        Samples in uV. The rate is not in the file (see the database's documentation).
    """
    path = os.fspath(path)
    try:
        with open(path) as fh:
            header = fh.readline().strip()
            data = np.loadtxt(fh, dtype=np.float64, ndmin=1)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise RecordingError(f"{path}: not a DREAMS signal file ({err})") from None
    if not (header.startswith("[") and header.endswith("]")):
        raise RecordingError(f"{path}: not a DREAMS signal file (no [label] header line)")
    return header[1:-1], data


def read_dreams_hypnogram(path: str | os.PathLike, epoch_seconds: float = 30.0) -> list:
    """Read a DREAMS 5-s R&K hypnogram as AASM stages per epoch.

    Each epoch takes the most common of its 5-s scores (S3 and S4 count as N3; movement and
    unscored as ``"?"``); on a tie the first of the tied stages to appear wins. A final partial
    epoch is dropped.

    Parameters
    ----------
    path : str or PathLike
    epoch_seconds : float, optional
        Epoch length in seconds, a multiple of 5; by default 30.

    Returns
    -------
    list of str
        ``"W"``, ``"N1"``, ``"N2"``, ``"N3"``, ``"REM"`` or ``"?"`` per epoch.
    """
    path = os.fspath(path)
    per = int(round(epoch_seconds / SCORE_SECONDS))
    try:
        with open(path) as fh:
            header = fh.readline().strip()
            scores = np.loadtxt(fh, dtype=np.float64, ndmin=1).astype(int)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise RecordingError(f"{path}: not a DREAMS hypnogram ({err})") from None
    if header.lower() != "[hypnogram]":
        raise RecordingError(f"{path}: not a DREAMS hypnogram (header {header[:30]!r})")
    names = [_RK_TO_AASM.get(s, "?") for s in scores]
    return [Counter(names[i:i + per]).most_common(1)[0][0] for i in range(0, len(names) - per + 1, per)]


def read_dreams_events(path: str | os.PathLike) -> tuple:
    """Read a DREAMS event file: expert or automatic spindle marks (onset, duration per line).

    Parameters
    ----------
    path : str or PathLike
        E.g. ``Visual_scoring1_excerpt1.txt``.

    Returns
    -------
    label : str
        The header without brackets, e.g. ``"vis1_Spindles/C3-A1"``.
    events : numpy.ndarray of float64, shape (n_events, 2)
        Onset in s from the start of the excerpt, and duration in s, one row per event, in file
        order; shape (0, 2) for a file with no event.
    """
    path = os.fspath(path)
    try:
        with open(path) as fh:
            header = fh.readline().strip()
            rows = [line.split() for line in fh if line.strip()]
        events = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 2))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise RecordingError(f"{path}: not a DREAMS event file ({err})") from None
    if not (header.startswith("[") and header.endswith("]")):
        raise RecordingError(f"{path}: not a DREAMS event file (no [label] header line)")
    if events.ndim != 2 or events.shape[1] != 2:
        raise RecordingError(f"{path}: not a DREAMS event file (expected two numbers per line)")
    if (events[:, 1] < 0).any():
        raise RecordingError(f"{path}: not a DREAMS event file (negative duration)")
    return header[1:-1], events
