"""Hypnograms from files: dreamsync's JSON, EDF+ annotations (Sleep-EDF, dreamsync), DREAMS text.

Stages come back as AASM names per 30-s epoch: ``"W"``, ``"N1"``, ``"N2"``, ``"N3"``, ``"REM"``,
``"?"`` (unscored, movement time). R&K scores map as S1 -> N1, S2 -> N2, S3 and S4 -> N3.
"""

from __future__ import annotations

import json
import os
import re

from .dreams import read_dreams_hypnogram
from .edf import read_edf
from .errors import RecordingError

_ANNOTATION = re.compile(r"^Sleep stage (W|1|2|3|4|R|N1|N2|N3|REM|\?)$", re.IGNORECASE)
_TO_AASM = {"W": "W", "1": "N1", "2": "N2", "3": "N3", "4": "N3", "R": "REM", "N1": "N1", "N2": "N2",
            "N3": "N3", "REM": "REM", "?": "?"}


def read_hypnogram(path, epoch_length: float = 30.0) -> list:
    """Stages per epoch from a hypnogram file, recognised by content.

    Parameters
    ----------
    path : str or PathLike
        A dreamsync ``stage`` JSON, an EDF+ with ``Sleep stage ...`` annotations (Sleep-EDF's
        ``*-Hypnogram.edf`` or a file from ``dreamsync simulate``), or a DREAMS ``Hypnogram_*.txt``.
    epoch_length : float, optional
        Epoch length in seconds, by default 30.

    Raises
    ------
    RecordingError
        If the file is missing or holds no hypnogram.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as err:
        raise RecordingError(f"{path}: {(err.strerror or str(err)).lower()}") from None
    if head.lstrip().startswith(b"{"):
        return _from_json(path)
    if head.startswith(b"0       "):
        return _from_edf(path, epoch_length)
    if head.lower().startswith(b"[hypnogram]"):
        return read_dreams_hypnogram(path, epoch_length)
    raise RecordingError(f"{path}: not a hypnogram (expected dreamsync JSON, EDF+ or a DREAMS text file)")


def _from_json(path: str) -> list:
    try:
        with open(path) as fh:
            doc = json.load(fh)
        stages = doc["stages"]
    except (ValueError, KeyError, TypeError):
        raise RecordingError(f"{path}: a JSON hypnogram needs a 'stages' list") from None
    bad = sorted({s for s in stages if s not in ("W", "N1", "N2", "N3", "REM", "?")})
    if bad:
        raise RecordingError(f"{path}: unknown stages {bad}")
    return list(stages)


def _from_edf(path: str, epoch_length: float) -> list:
    rec = read_edf(path)
    scored = [(a.onset, a.duration, _TO_AASM[m.group(1).upper()]) for a in rec.annotations
              if (m := _ANNOTATION.match(a.text.strip()))]
    if not scored:
        raise RecordingError(f"{path}: no 'Sleep stage ...' annotations")
    end = max(onset + duration for onset, duration, _ in scored)
    stages = ["?"] * int(round(end / epoch_length))
    for onset, duration, stage in scored:  # Sleep-EDF scores runs of epochs in one annotation
        first = int(round(onset / epoch_length))
        for k in range(first, first + max(1, int(round(duration / epoch_length)))):
            if k < len(stages):
                stages[k] = stage
    return stages
