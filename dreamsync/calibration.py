"""A headband's calibration: the feature offsets one night's staging learnt, for staging the next.

A consumer headband (dry electrodes at the forehead and behind the ears) shifts the stager's
noise-sensitive features (beta share, spectral slope, permutation entropy) far from a scalp
montage's. Offline staging of a whole night estimates those shifts; a short recording, or the first
hours of a live night, cannot (the offsets' prior holds them near 0). ``dreamsync stage`` writes the
offsets it settled on into its JSON (``"calibration"``); ``--calibration`` on ``stage``, ``live``,
``replay`` and ``report`` makes them the prior's centre for the same headband's next recording.
"""

from __future__ import annotations

import json

#: Key of the calibration in the ``stage`` JSON.
CALIBRATION_KEY = "calibration"


def calibration_json(feature_offsets) -> dict:
    """The ``"calibration"`` entry of the ``stage`` JSON: ``{"feature_offsets": {feature: offset}}``
    (feature names as :data:`dsp.features.EEG_FEATURES`; offsets in each feature's unit, log10 or
    entropy 0..1)."""
    from dsp.features import EEG_FEATURES

    return {"feature_offsets": {name: round(float(v), 6) for name, v in zip(EEG_FEATURES, feature_offsets)}}


def read_calibration(path: str):
    """The feature offsets, shape (n_features,), of a ``dreamsync stage`` JSON (or a file holding
    just its ``"calibration"`` entry).

    Raises
    ------
    ValueError
        Unreadable file, or no finite offset for every feature (one line, naming the file).
    """
    import numpy as np

    from dsp.features import EEG_FEATURES

    try:
        with open(path) as fh:
            doc = json.load(fh)
    except OSError as err:
        raise ValueError(f"{path}: {(err.strerror or str(err)).lower()}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a JSON file (binary content)") from None
    entry = doc.get(CALIBRATION_KEY, doc) if isinstance(doc, dict) else None
    offsets = entry.get("feature_offsets") if isinstance(entry, dict) else None
    if not isinstance(offsets, dict):
        raise ValueError(f"{path}: no calibration in it (write one with 'dreamsync stage NIGHT.edf --out FILE')")
    missing = [name for name in EEG_FEATURES if name not in offsets]
    if missing:
        raise ValueError(f"{path}: calibration lacks the offsets of {', '.join(missing)}")
    try:
        values = np.array([float(offsets[name]) for name in EEG_FEATURES])
    except (TypeError, ValueError):
        raise ValueError(f"{path}: calibration offsets must be numbers") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path}: calibration offsets must be finite")
    return values
