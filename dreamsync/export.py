"""A night's results in other tools' formats: EDF+ with annotations, BIDS events, CSV, YASA, MNE.

Every writer takes the recording (an EDF/EDF+/BDF path, for its signals, start time and marked gaps)
and the results of :func:`~dreamsync.pipeline.stage_file` (a :class:`StagedRecording`) and of
:func:`~dreamsync.detection.detect_file` (a :class:`DetectionReport`); :func:`export_night` computes
whichever of the two is not given. Results saved as JSON by ``dreamsync stage`` / ``dreamsync detect``
are read back with :func:`staged_from_json` / :func:`detection_from_json`.

What each format holds
----------------------
``edf``
    The signals unchanged (the same digital values, ranges and header fields) plus EDF+ annotations:
    a ``Sleep stage W/N1/N2/N3/R/?`` per epoch (the Sleep-EDF convention), ``Adjustment KIND:
    EVIDENCE`` per flagged stretch (``Adjustment KIND (authorized): ...`` for consented ones), and
    the file's ``Gap: N samples lost`` / ``Missing: LABEL`` marks, which dreamsync and
    :func:`to_mne` read as missing samples.
``bids``
    A BIDS ``*_events.tsv`` (onset, duration, trial_type, value, score, authorized, channel,
    evidence; ``n/a`` where a column does not apply) and its ``*_events.json`` sidecar describing
    the columns.
``csv``
    One row per epoch: epoch, onset_s, clock_time, stage, confidence, the hypnodensity (p_W .. p_REM)
    and lost_s, the seconds of the epoch lost to gaps.
``yasa``
    YASA's integer hypnogram, one integer per line per 30-s epoch (``numpy.loadtxt`` reads it;
    ``yasa.hypno_int_to_str`` names it): 0 W, 1 N1, 2 N2, 3 N3, 4 REM; an epoch the stager could
    not score is -2 (YASA's "Uns", unscored) when at least half of it was lost to gaps, else -1
    ("Art": signal present but unscorable).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re

import numpy as np

from dsp.stages import EPOCH_SECONDS, STAGES, UNSCORED_LABEL, from_labels, to_labels

#: Formats :func:`export_night` writes.
FORMATS = ("edf", "bids", "csv", "yasa")
#: EDF+ annotation text of each stage label (Sleep-EDF's; R for REM, ? for unscored).
STAGE_TEXT = {"W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2", "N3": "Sleep stage N3",
              "REM": "Sleep stage R", UNSCORED_LABEL: "Sleep stage ?"}
#: YASA's integer codes for an unscorable epoch with data (artefact) and one lost to gaps (unscored).
YASA_ARTEFACT, YASA_UNSCORED = -1, -2

_GAP = re.compile(r"^Gap: (\d+) samples lost$")
_MISSING = re.compile(r"^Missing: (.+)$")
_STAGE = re.compile(r"^Sleep stage ", re.IGNORECASE)


# == inputs ==============================================================================================
def staged_from_json(doc: dict):
    """A :class:`~dreamsync.pipeline.StagedRecording` from the JSON ``dreamsync stage`` writes.

    Parameters
    ----------
    doc : dict
        ``{"epoch_length", "start", "stages", "confidence"?, "hypnodensity"?, "channels"?}``. Without a
        hypnodensity each epoch's is its stage's (1 for the stage, 0 elsewhere; all 0 when unscored);
        without confidences they are 0.

    Raises
    ------
    ValueError
        A document without stages, with unknown stages or with columns of different lengths.
    """
    from dsp.staging import StagingResult

    from .pipeline import StagedRecording

    try:
        stages = from_labels(doc["stages"])
        confidence = np.asarray(doc.get("confidence", [0.0] * len(stages)), dtype=float)
        density = doc.get("hypnodensity")
        if density:
            probabilities = np.column_stack([np.asarray(density[name], dtype=float) for name in STAGES])
        else:
            probabilities = np.zeros((len(stages), len(STAGES)))
            scored = np.flatnonzero(stages >= 0)
            probabilities[scored, stages[scored]] = 1.0
        epoch_length = float(doc.get("epoch_length", EPOCH_SECONDS))
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a dreamsync hypnogram (stage output): {err}") from None
    if not len(confidence) == len(probabilities) == len(stages):
        raise ValueError("hypnogram: stages, confidence and hypnodensity have different lengths")
    start = dt.datetime.fromisoformat(doc["start"]) if doc.get("start") else None
    channels = doc.get("channels") or {}
    result = StagingResult(stages, probabilities, confidence, epoch_length)
    return StagedRecording(result, start, list(channels.get("eeg") or []), channels.get("emg"),
                           list(channels.get("eog") or []), list(channels.get("acc") or []))


def detection_from_json(doc: dict):
    """A :class:`~dreamsync.detection.DetectionReport` from the JSON ``dreamsync detect`` writes.

    Raises
    ------
    ValueError
        A document without an ``events`` list or with events missing onset/duration/kind.
    """
    from dsp.events import AdjustmentEvent

    from .detection import DetectionReport

    try:
        labels = list(doc.get("channels") or [])
        events = []
        for e in doc["events"]:
            rows = tuple(labels.index(c) for c in e.get("channels", ()) if c in labels)
            events.append((AdjustmentEvent(float(e["onset"]), float(e["duration"]), str(e["kind"]),
                                           float(e.get("score", 0.0)), str(e.get("evidence", "")), rows,
                                           e.get("frequency_hz")), bool(e.get("authorized", False))))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a dreamsync event list (detect output): {err}") from None
    start = dt.datetime.fromisoformat(doc["start"]) if doc.get("start") else None
    return DetectionReport(doc.get("recording", ""), start, float(doc.get("duration", 0.0)),
                           float(doc.get("fs", 0.0)), labels, events, np.zeros(0, dtype=np.int8))


def _marks(recording) -> tuple:
    """``(gaps, missing)`` marked in a recording: ``[(onset_s, duration_s, samples)]`` and
    ``[(onset_s, duration_s, label)]``."""
    gaps, missing = [], []
    for a in recording.annotations:
        if m := _GAP.match(a.text):
            gaps.append((a.onset, a.duration, int(m.group(1))))
        elif m := _MISSING.match(a.text):
            missing.append((a.onset, a.duration, m.group(1)))
    return gaps, missing


def lost_per_epoch(gaps, n_epochs: int, epoch_length: float = EPOCH_SECONDS) -> np.ndarray:
    """Seconds of each epoch covered by gaps.

    Parameters
    ----------
    gaps : iterable of (onset_s, duration_s, ...)
        Lost stretches in s from the recording's start.
    n_epochs : int
    epoch_length : float, optional
        In s, by default 30.

    Returns
    -------
    numpy.ndarray of float, shape (n_epochs,)
    """
    lost = np.zeros(n_epochs)
    spans = sorted((float(onset), float(onset) + float(duration)) for onset, duration, *_ in gaps)
    merged: list = []
    for a, b in spans:  # overlapping marks (a dropout over lost packets) count once
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    for a, b in merged:
        for k in range(max(0, int(a // epoch_length)), min(n_epochs - 1, int(b // epoch_length)) + 1):
            lost[k] += max(0.0, min((k + 1) * epoch_length, b) - max(k * epoch_length, a))
    return lost


def _open(path):
    from ingest.edf import read_edf

    return read_edf(path)


def _adjustment_text(event, authorized: bool) -> str:
    tag = " (authorized)" if authorized else ""
    return f"Adjustment {event.kind}{tag}: {' '.join(event.evidence.split())}"


# == writers =============================================================================================
def write_edf_annotated(path, out, staged, detection=None, *, source_annotations: bool = False) -> str:
    """Copy a recording to EDF+ (BDF+ for a BDF) with stages, adjustments and gaps as annotations.

    Parameters
    ----------
    path : str or PathLike
        The EDF/EDF+/BDF recording; its signals are written unchanged (same digital values,
        physical ranges, labels and units).
    out : str or PathLike
        File to write.
    staged : StagedRecording
        Stages per epoch (``Sleep stage W/N1/N2/N3/R``, ``Sleep stage ?`` when unscorable, each
        30 s long from ``30 i`` s).
    detection : DetectionReport, optional
        Flagged stretches, as ``Adjustment KIND: EVIDENCE`` (``Adjustment KIND (authorized): ...``).
    source_annotations : bool, optional
        Also keep the file's own annotations other than its stages (default: only its gap and
        missing-sample marks, which stay so that lost samples are never taken for signal).

    Returns
    -------
    str
        ``out``.
    """
    import edfio

    rec = _open(path)
    anns = [edfio.EdfAnnotation(k * staged.result.epoch_length, staged.result.epoch_length, STAGE_TEXT[label])
            for k, label in enumerate(to_labels(staged.result.stages))]
    if detection is not None:
        anns += [edfio.EdfAnnotation(float(e.onset), float(e.duration) or None, _adjustment_text(e, ok))
                 for e, ok in detection.events]
    for a in rec.annotations:
        marks = _GAP.match(a.text) or _MISSING.match(a.text)
        if marks or (source_annotations and not _STAGE.match(a.text)):
            anns.append(edfio.EdfAnnotation(a.onset, a.duration or None, a.text))
    anns.sort(key=lambda a: a.onset)
    with open(path, "rb") as fh:  # read_edf has told EDF from BDF and checked the file
        bdf = fh.read(8) == b"\xffBIOSEMI"
    source = (edfio.read_bdf if bdf else edfio.read_edf)(os.fspath(path))
    header = {}
    for name in ("patient", "recording"):  # a plain EDF's free-text fields may not parse as EDF+
        try:
            header[name] = getattr(source, name)
        except Exception:
            pass
    copy = type(source)(list(source.signals), starttime=source.starttime,
                        data_record_duration=source.data_record_duration, annotations=anns, **header)
    copy.write(os.fspath(out))
    return os.fspath(out)


#: Columns of the BIDS events file and their sidecar descriptions.
EVENTS_COLUMNS = {
    "onset": {"LongName": "Onset", "Description": "Start of the event from the beginning of the recording.",
              "Units": "s"},
    "duration": {"LongName": "Duration", "Description": "Length of the event.", "Units": "s"},
    "trial_type": {"LongName": "Event type", "Description": "What the row is.",
                   "Levels": {"sleep_stage": "A 30-s epoch scored by dreamsync's stager (value: the stage).",
                              "adjustment": "A stretch flagged as an externally injected dream adjustment "
                                            "(value: its kind).",
                              "gap": "Samples lost in transmission (stored as 0, not signal).",
                              "missing": "Samples one channel lacks (stored as 0, not signal)."}},
    "value": {"LongName": "Value", "Description": "Stage of a sleep_stage row (W, N1, N2, N3, REM, or ? for an "
                                                  "unscorable epoch); kind of an adjustment row (auditory, "
                                                  "electrical, entrainment, tampering); n/a otherwise."},
    "score": {"LongName": "Score", "Description": "Stager's probability of the stage (sleep_stage rows) or "
                                                  "strength of the evidence for an adjustment, 0 to 1 (0.5 is "
                                                  "near the alarm threshold)."},
    "authorized": {"LongName": "Authorized", "Description": "Whether the sleeper consented to the adjustment "
                                                            "(true: no alarm was raised); n/a for other rows.",
                   "Levels": {"true": "Consented", "false": "Not consented: an alarm"}},
    "channel": {"LongName": "Channels", "Description": "Channels the evidence was found on (comma-separated) or "
                                                       "the channel missing samples; n/a when not per channel."},
    "evidence": {"LongName": "Evidence", "Description": "Why an adjustment was flagged (what was measured), or "
                                                        "how many samples a gap lost."},
}


def write_events_tsv(path, out, staged=None, detection=None) -> tuple:
    """Write a BIDS events file (tab-separated) and its JSON sidecar.

    Parameters
    ----------
    path : str or PathLike
        The recording, for its marked gaps.
    out : str or PathLike
        The ``.tsv`` to write (BIDS names it ``sub-<label>_task-<label>_events.tsv``); the sidecar
        is ``out`` with ``.json``.
    staged : StagedRecording, optional
        One ``sleep_stage`` row per epoch.
    detection : DetectionReport, optional
        One ``adjustment`` row per flagged stretch.

    Returns
    -------
    (str, str)
        Paths of the events file and of the sidecar.
    """
    gaps, missing = _marks(_open(path))
    rows = []  # (onset, order, [columns...])
    if staged is not None:
        r = staged.result
        for k, (label, conf) in enumerate(zip(to_labels(r.stages), r.confidence)):
            rows.append((k * r.epoch_length, 0, [r.epoch_length, "sleep_stage", label, _num(conf, 4), "n/a", "n/a",
                                                 "n/a"]))
    if detection is not None:
        for e, ok in detection.events:
            channels = ",".join(detection.channels[i] for i in e.channels) if e.channels else "n/a"
            rows.append((e.onset, 1, [e.duration, "adjustment", e.kind, _num(e.score, 4), "true" if ok else "false",
                                      channels, " ".join(e.evidence.split()) or "n/a"]))
    rows += [(onset, 2, [duration, "gap", "n/a", "n/a", "n/a", "n/a", f"{n} samples lost"])
             for onset, duration, n in gaps]
    rows += [(onset, 3, [duration, "missing", "n/a", "n/a", "n/a", label, "n/a"]) for onset, duration, label in missing]
    rows.sort(key=lambda row: row[:2])
    out = os.fspath(out)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(list(EVENTS_COLUMNS))
        for onset, _, rest in rows:
            writer.writerow([_num(onset), _num(rest[0])] + rest[1:])
    sidecar = os.path.splitext(out)[0] + ".json"
    with open(sidecar, "w") as fh:
        json.dump(EVENTS_COLUMNS, fh, indent=2)
    return out, sidecar


def _num(x: float, decimals: int = 6) -> str:
    """A number for a text table: times to 6 decimals (a microsecond), probabilities to 4 (as in the
    JSON of 'stage' and 'detect'); no trailing zeros."""
    text = f"{float(x):.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def write_hypnogram_csv(path, out, staged) -> str:
    """Write the hypnogram as CSV, one row per 30-s epoch.

    Columns: ``epoch`` (from 0), ``onset_s`` (from the recording's start), ``clock_time`` (ISO date
    and time of the epoch's start; empty when the file's date is anonymised), ``stage`` (W, N1, N2,
    N3, REM or ?), ``confidence`` (0..1), ``p_W`` .. ``p_REM`` (the hypnodensity) and ``lost_s``
    (seconds of the epoch lost to gaps).

    Parameters
    ----------
    path : str or PathLike
        The recording, for its marked gaps.
    out : str or PathLike
    staged : StagedRecording

    Returns
    -------
    str
        ``out``.
    """
    gaps, _ = _marks(_open(path))
    r = staged.result
    lost = lost_per_epoch(gaps, len(r.stages), r.epoch_length)
    out = os.fspath(out)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["epoch", "onset_s", "clock_time", "stage", "confidence"] + [f"p_{s}" for s in STAGES]
                        + ["lost_s"])
        for k, label in enumerate(to_labels(r.stages)):
            clock = (staged.start + dt.timedelta(seconds=k * r.epoch_length)).isoformat() if staged.start else ""
            writer.writerow([k, _num(k * r.epoch_length), clock, label, _num(r.confidence[k], 4)]
                            + [_num(p, 4) for p in r.probabilities[k]] + [_num(lost[k])])
    return out


def yasa_hypnogram(staged, gaps=()) -> np.ndarray:
    """Stages as YASA's integer hypnogram (see the module's notes for unscorable epochs).

    Parameters
    ----------
    staged : StagedRecording
    gaps : iterable of (onset_s, duration_s, ...), optional
        Lost stretches, to tell unscored epochs (mostly lost: -2) from artefacts (-1).

    Returns
    -------
    numpy.ndarray of int, shape (n_epochs,)
    """
    r = staged.result
    codes = np.asarray(r.stages, dtype=int).copy()
    lost = lost_per_epoch(gaps, len(codes), r.epoch_length)
    unscored = codes < 0
    codes[unscored] = np.where(lost[unscored] >= r.epoch_length / 2, YASA_UNSCORED, YASA_ARTEFACT)
    return codes


def write_yasa_hypnogram(path, out, staged) -> str:
    """Write YASA's integer hypnogram, one integer per line per 30-s epoch.

    ``numpy.loadtxt(out, dtype=int)`` reads it back; ``yasa.hypno_int_to_str`` maps it to
    W/N1/N2/N3/R/Art/Uns.

    Parameters
    ----------
    path : str or PathLike
        The recording, for its marked gaps.
    out : str or PathLike
    staged : StagedRecording

    Returns
    -------
    str
        ``out``.
    """
    gaps, _ = _marks(_open(path))
    out = os.fspath(out)
    with open(out, "w") as fh:
        fh.writelines(f"{c}\n" for c in yasa_hypnogram(staged, gaps))
    return out


def export_night(path, out, *, format: str, staged=None, detection=None, channel: str | None = None,
                 authorized=(), model=None) -> list:
    """Write a night's stages, adjustments and gaps in one of :data:`FORMATS`.

    Parameters
    ----------
    path : str or PathLike
        The EDF/EDF+/BDF recording.
    out : str or PathLike
        File to write.
    format : str
        ``"edf"``, ``"bids"``, ``"csv"`` or ``"yasa"`` (see the module's notes).
    staged : StagedRecording, optional
        Stages; computed with :func:`~dreamsync.pipeline.stage_file` when omitted.
    detection : DetectionReport, optional
        Adjustments (edf and bids only); computed with :func:`~dreamsync.detection.detect_file`
        when omitted.
    channel : str, optional
        EEG channel(s) to stage from when computing (see ``dreamsync stage --channel``).
    authorized : sequence of AuthorizedWindow, optional
        Consent windows when computing the detection.
    model : dsp.model.StagingModel, optional
        Staging model when computing.

    Returns
    -------
    list of str
        Files written (bids also writes the sidecar).

    Raises
    ------
    ValueError
        An unknown format.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    from .pipeline import stage_file

    if staged is None:
        staged = stage_file(path, channel=channel, model=model)
    if format in ("edf", "bids") and detection is None:
        from .detection import detect_file

        detection = detect_file(path, channel=channel, authorized=authorized, model=model)
    if format == "edf":
        return [write_edf_annotated(path, out, staged, detection)]
    if format == "bids":
        return list(write_events_tsv(path, out, staged, detection))
    if format == "csv":
        return [write_hypnogram_csv(path, out, staged)]
    return [write_yasa_hypnogram(path, out, staged)]


# == MNE =================================================================================================
_MNE_TYPES = {"EEG": "eeg", "EOG": "eog", "EMG": "emg", "ECG": "ecg", "ACC": "misc", "MISC": "misc"}


def to_mne(path, staged=None, detection=None, *, channel: str | None = None, authorized=(), preload: bool = False):
    """The recording as an MNE Raw with dreamsync's stages, adjustments and gaps as annotations.

    Annotations: ``Sleep stage W/N1/N2/N3/R/?`` per 30-s epoch, ``Adjustment KIND`` per flagged
    stretch (evidence, score and consent in the annotation's extras where MNE supports them), and
    ``BAD_gap`` for lost samples / ``BAD_missing`` on the channel that lacks them, so that MNE's
    epoching and plotting leave them out. The file's own annotations are replaced. Channel types
    follow dreamsync's reading of the labels (eeg, eog, emg, ecg, misc); names are kept as in the file.

    Parameters
    ----------
    path : str or PathLike
        EDF/EDF+/BDF recording.
    staged : StagedRecording, optional
        Computed with :func:`~dreamsync.pipeline.stage_file` when omitted.
    detection : DetectionReport, optional
        Computed with :func:`~dreamsync.detection.detect_file` when omitted.
    channel : str, optional
        EEG channel(s) to stage from when computing.
    authorized : sequence of AuthorizedWindow, optional
        Consent windows when computing the detection.
    preload : bool, optional
        Load the data into memory (MNE's ``preload``).

    Returns
    -------
    mne.io.Raw
        Signals in volts (MNE's unit).

    Raises
    ------
    ImportError
        When MNE is not installed.
    """
    try:
        import mne
    except ImportError:
        raise ImportError("to_mne needs MNE: install the mne extra: pip install 'dreamsync[mne]'") from None
    import inspect

    rec = _open(path)
    if staged is None:
        from .pipeline import stage_file

        staged = stage_file(path, channel=channel)
    if detection is None:
        from .detection import detect_file

        detection = detect_file(path, channel=channel, authorized=authorized)
    path = os.fspath(path)
    read = mne.io.read_raw_bdf if path.lower().endswith(".bdf") else mne.io.read_raw_edf
    raw = read(path, preload=preload, infer_types=False, verbose="error")
    raw.set_channel_types({s.label: _MNE_TYPES.get(s.kind, "misc") for s in rec.signals if s.label in raw.ch_names},
                          verbose="error")
    gaps, missing = _marks(rec)
    r = staged.result
    rows = [(k * r.epoch_length, r.epoch_length, STAGE_TEXT[label], (), {})
            for k, label in enumerate(to_labels(r.stages))]
    rows += [(e.onset, e.duration, f"Adjustment {e.kind}", (),
              {"score": float(e.score), "authorized": bool(ok), "evidence": e.evidence})
             for e, ok in detection.events]
    rows += [(onset, duration, "BAD_gap", (), {}) for onset, duration, _ in gaps]
    rows += [(onset, duration, "BAD_missing", (label,) if label in raw.ch_names else (), {})
             for onset, duration, label in missing]
    rows.sort(key=lambda row: row[0])
    kwargs = {}
    if "extras" in inspect.signature(mne.Annotations).parameters:
        kwargs["extras"] = [row[4] for row in rows]
    annotations = mne.Annotations([row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows],
                                  orig_time=raw.info["meas_date"], ch_names=[row[3] for row in rows], **kwargs)
    raw.set_annotations(annotations, verbose="error")
    return raw
