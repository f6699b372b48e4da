"""The stage vocabulary shared by every stager and report.

Codes follow YASA's integer hypnogram: 0 W, 1 N1, 2 N2, 3 N3, 4 REM, and -1 for an epoch that
could not be scored (shown as ``"?"``).
"""

from __future__ import annotations

import numpy as np

STAGES = ("W", "N1", "N2", "N3", "REM")
UNSCORED = -1
UNSCORED_LABEL = "?"
EPOCH_SECONDS = 30.0


def to_labels(codes) -> list:
    """Stage names for an array of codes; -1 becomes ``"?"``."""
    return [STAGES[c] if 0 <= c < len(STAGES) else UNSCORED_LABEL for c in np.asarray(codes).tolist()]


def from_labels(labels) -> np.ndarray:
    """Stage codes (int8) for a sequence of names; ``"?"`` becomes -1.

    Raises
    ------
    ValueError
        For a name that is not a stage.
    """
    lookup = {name: k for k, name in enumerate(STAGES)}
    lookup[UNSCORED_LABEL] = UNSCORED
    try:
        return np.array([lookup[s] for s in labels], dtype=np.int8)
    except KeyError as err:
        raise ValueError(f"unknown stage {err.args[0]!r}; expected one of {STAGES + (UNSCORED_LABEL,)}") from None
