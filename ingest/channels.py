"""Channel labels: what kind of signal a label names, and which EEG lead to stage from.

Labels come from many tools: ``"EEG C3"``, ``"EEG Fpz-Cz"``, ``"C4-M1"``, ``"C3-A2"``, ``"EOG E1-M2"``,
``"EMG chin"``, ``"TP9"`` (Muse), ``"FP1-A1"`` (DREAMS).
"""

from __future__ import annotations

import re

# 10-20 / 10-10 electrode names (upper case), plus reference sites.
_EEG_SITE = re.compile(r"^(FP[12Z]|AF[3478Z]|F[1-8Z]|FC[1-6Z]|FT[78]|C[1-6Z]|CP[1-6Z]|T[3-8]|TP[789]|TP10"
                       r"|P[1-8Z]|PO[3478Z]|O[12Z]|OZ|IZ|M[12]|A[12])$")
_REFERENCE_SITES = ("M1", "M2", "A1", "A2")
# Staging preference by scalp region: central leads are what the AASM rules were written for.
_REGION_RANK = (("C", 0), ("FP", 1), ("AF", 1), ("F", 1), ("P", 2), ("O", 2), ("T", 3))


def _sites(label: str) -> list:
    body = re.sub(r"^(EEG|EOG|EMG)\s*", "", label.strip(), flags=re.IGNORECASE)
    return [s for s in re.split(r"[\s\-/:]+", body.upper()) if s]


def kind_from_label(label: str) -> str:
    """Channel kind named by a label: ``"EEG"``, ``"EOG"``, ``"EMG"``, ``"ECG"``, ``"ACC"`` or ``"MISC"``."""
    up = label.upper()
    if "EOG" in up or re.search(r"\b(LOC|ROC|E1|E2)\b", up):
        return "EOG"
    if "EMG" in up or "CHIN" in up:
        return "EMG"
    if "ECG" in up or "EKG" in up:
        return "ECG"
    if re.search(r"\b(ACC|ACCEL)", up):
        return "ACC"
    if up.startswith("EEG"):
        return "EEG"
    sites = _sites(label)
    if sites and all(_EEG_SITE.match(s) for s in sites) and not all(s in _REFERENCE_SITES for s in sites):
        return "EEG"
    return "MISC"


def _staging_rank(label: str) -> int:
    site = next((s for s in _sites(label) if s not in _REFERENCE_SITES), "")
    for prefix, rank in _REGION_RANK:
        if site.startswith(prefix):
            return rank
    return len(_REGION_RANK)


def pick_staging_channel(labels, kinds) -> int | None:
    """Index of the EEG channel best suited to staging, or None when there is no EEG channel.

    Prefers central leads (C3, C4, Cz), then frontal, parietal/occipital, temporal; the first such
    label in file order wins a tie.
    """
    eeg = [i for i, k in enumerate(kinds) if k == "EEG"]
    if not eeg:
        return None
    return min(eeg, key=lambda i: (_staging_rank(labels[i]), i))


def pick_eye_channels(labels, kinds) -> list:
    """EOG channels that show horizontal eye movements apart from the EEG, as staging reads them.

    One bipolar horizontal derivation (``E1-E2``, ``LOC-ROC``, ``"EOG horizontal"``, ``HEOG``) if
    there is one, else a left and a right electrode each to a reference (E1/LOC, E2/ROC), else none:
    a lone eye-to-mastoid lead also carries the frontal EEG (see :mod:`dsp.evidence`).

    Returns
    -------
    list of int
        ``[bipolar]``, ``[left, right]`` or ``[]``.
    """
    left, right = [], []
    for i, (label, kind) in enumerate(zip(labels, kinds)):
        if kind != "EOG":
            continue
        sites = set(_sites(label))
        up = label.upper()
        if ({"E1", "LOC"} & sites and {"E2", "ROC"} & sites) or "HORIZ" in up or "HEOG" in up:
            return [i]
        if {"E1", "LOC"} & sites:
            left.append(i)
        elif {"E2", "ROC"} & sites:
            right.append(i)
    return [left[0], right[0]] if left and right else []


def find_channel(labels, name: str) -> int:
    """Index of the channel called ``name``: exact, then case-insensitive, then without an
    ``"EEG "``-style prefix.

    Raises
    ------
    KeyError
        With the available labels, when nothing matches.
    """
    def plain(s: str) -> str:
        return re.sub(r"^(EEG|EOG|EMG)\s+", "", s.strip(), flags=re.IGNORECASE).upper()

    for match in (lambda s: s == name, lambda s: s.upper() == name.upper(), lambda s: plain(s) == plain(name)):
        hits = [i for i, s in enumerate(labels) if match(s)]
        if hits:
            return hits[0]
    raise KeyError(f"no channel {name!r}; available: {', '.join(labels)}")
