"""Auditing a DreamSync night: the device's log, the sleeper's consent and the signal, reconciled.

Three sources, none trusted alone:

- the device's adjustment log, read over BLE at the end of the night and saved beside the EDF
  (``night.adjustments.json``, raw entries, so the hash chain is verified again here, with the
  entries the device notified live as anchors, see :mod:`ingest.adjustment_log`);
- the sleeper's consent file (:mod:`dreamsync.authorization`);
- the adjustments the detectors find in the recorded signal (:func:`dreamsync.detection.detect_file`).

Every logged stimulation and every detected adjustment becomes one row with its time, kind, who
asked (sleeper, vendor, or unknown when nobody logged it) and a status:

``consented``          logged, and the sleeper asked for it or a consent window covers it;
``unconsented``        logged (by the vendor's request) without a consent window;
``covert``             detected in the signal, never logged;
``no-trace``           logged, of a kind the detectors see, but nothing was detected;
``optout-violation``   a vendor adjustment performed while the sleeper had opted out;
``refused``            a vendor request the device refused because of the opt-out (for the record).

A detected event matches a logged stimulation of the same family (evoked responses; spectral lines,
electrical or entrainment, which a detector can only guess apart) and a compatible frequency when
their times overlap, with
:data:`TOLERANCE_S` of slack before the logged start and :data:`END_SLACK_S` after its end; the part
of a detected event that no logged stimulation accounts for (at least :data:`MIN_UNACCOUNTED_S`) is
covert, so one logged minute cannot cover a detected hour.
Opt-out periods come from the log's opt-out entries and from the host's own journal of the opt-out
commands it sent and the device acknowledged (a firmware that drops those entries is not believed).

The audit is clean when the chain is intact and no row is unconsented, covert or an opt-out
violation; ``dreamsync audit`` then exits 0, and :data:`EXIT_VIOLATIONS` (4) otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from dataclasses import dataclass, field

#: Slack in s before a logged adjustment's start (detectors find onsets within seconds, evoked
#: series within a minute), and after its end (a detector's analysis window).
TOLERANCE_S = 60.0
END_SLACK_S = 20.0
#: A detected stretch this long (s) or longer that no log entry accounts for is covert.
MIN_UNACCOUNTED_S = 20.0
STATUSES = ("consented", "unconsented", "covert", "no-trace", "optout-violation", "refused")
VIOLATIONS = ("unconsented", "covert", "optout-violation")
DETECTABLE_KINDS = ("auditory", "entrainment", "electrical")
#: What the detectors can tell apart: evoked responses, and spectral lines (electrical or entrainment).
FAMILIES = {"auditory": "evoked", "electrical": "line", "entrainment": "line"}
EXIT_VIOLATIONS = 4
LOG_SUFFIX = ".adjustments.json"


def log_path_for(recording: str) -> str:
    """Where the adjustment log of ``night.edf`` is kept: ``night.adjustments.json``."""
    path = pathlib.Path(recording)
    return str(path.with_name(path.stem + LOG_SUFFIX))


def save_adjustment_log(document: dict, recording: str) -> str:
    """Write a log document (:meth:`ingest.boards.dreamsync.DreamSyncBoard.adjustment_log`) beside a recording."""
    out = log_path_for(recording)
    with open(out, "w") as fh:
        json.dump(document, fh, indent=1)
    return out


def load_adjustment_log(path: str) -> dict:
    """Read a saved log document; ValueError with one line when it is not one."""
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(doc, dict) or not {"entries", "device", "first_tick"} <= doc.keys():
        raise ValueError(f"{path}: not a DreamSync adjustment log (needs entries, device, first_tick)")
    return doc


@dataclass(frozen=True)
class AuditRow:
    """One line of the audit: an adjustment logged, detected, or both.

    Attributes
    ----------
    onset, duration : float
        s from the recording's start (the log's time when logged, else the detector's).
    kind : str
        ``"auditory"``, ``"entrainment"`` or ``"electrical"``.
    source : str
        ``"sleeper"``, ``"vendor"``, or ``"unknown"`` (never logged).
    status : str
        One of :data:`STATUSES`.
    logged, detected, consented, during_optout : bool
    actuator : str
        From the log entry (empty when never logged).
    log_index : int or None
    evidence : str
        The detector's evidence, when detected.
    """

    onset: float
    duration: float
    kind: str
    source: str
    status: str
    logged: bool
    detected: bool
    consented: bool
    during_optout: bool
    actuator: str = ""
    log_index: int | None = None
    evidence: str = ""

    def to_json(self, start: dt.datetime | None = None) -> dict:
        doc = {"onset": round(self.onset, 3), "duration": round(self.duration, 3), "kind": self.kind,
               "source": self.source, "status": self.status, "logged": self.logged, "detected": self.detected,
               "consented": self.consented, "during_optout": self.during_optout, "actuator": self.actuator,
               "log_index": self.log_index, "evidence": self.evidence}
        if start is not None:
            doc["clock"] = (start + dt.timedelta(seconds=self.onset)).isoformat(timespec="seconds")
        return doc


@dataclass
class AuditResult:
    """What :func:`reconcile` found; :meth:`to_json` is the ``audit --json`` output and the report section."""

    rows: list
    log: object  # ingest.adjustment_log.LogVerification
    optout: list  # [(start_s, end_s), ...]
    device: dict = field(default_factory=dict)
    recording: str | None = None
    log_file: str | None = None
    start: dt.datetime | None = None
    duration: float | None = None
    signal_tampering: list = field(default_factory=list)  # [(onset, duration, evidence)]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def optout_violations(self) -> list:
        """Vendor adjustments logged during an opt-out, and covert ones detected during it."""
        return [r for r in self.rows if r.status == "optout-violation" or (r.status == "covert" and r.during_optout)]

    @property
    def clean(self) -> bool:
        """Chain intact and nothing unconsented, covert or against an opt-out."""
        return self.log.intact and not any(r.status in VIOLATIONS for r in self.rows)

    def to_json(self) -> dict:
        return {
            "recording": self.recording, "log_file": self.log_file,
            "start": self.start.isoformat() if self.start else None,
            "duration": round(self.duration, 3) if self.duration is not None else None,
            "device": dict(self.device),
            "log": {**self.log.to_json(), "tampered": not self.log.intact},
            "optout": [{"start": round(a, 3), "end": round(b, 3) if b is not None else None} for a, b in self.optout],
            "counts": {**{s: self.count(s) for s in STATUSES}, "optout_violations": len(self.optout_violations)},
            "clean": self.clean,
            "rows": [r.to_json(self.start) for r in self.rows],
            "signal_tampering": [{"onset": round(o, 3), "duration": round(d, 3), "evidence": e}
                                 for o, d, e in self.signal_tampering],
        }

    def table(self) -> str:
        """The audit as text: the log's state, opt-out periods, one line per row, a summary."""
        lines = [f"DreamSync audit of {self.recording or 'the stream'}"
                 + (f" (log: {self.log_file})" if self.log_file else "")]
        serial = self.device.get("serial", "?")
        if self.log.intact:
            lines.append(f"log: {len(self.log.entries)} entries from {serial}, hash chain intact "
                         f"(head {self.log.head[:16]})")
        else:
            lines.append(f"log: TAMPERED ({len(self.log.entries)} entries from {serial}):")
            lines += [f"  {p}" for p in self.log.problems]
        for a, b in self.optout:
            until = self._when(b).strip() if b is not None else "the end"
            lines.append(f"opt-out: from {self._when(a).strip()} to {until}")
        lines.append(f"{'time':>9}  {'start s':>8}  {'dur s':>7}  {'kind':<11}  {'source':<7}  {'logged':<6}  "
                     f"{'detected':<8}  {'consent':<7}  {'opt-out':<7}  status")
        yes = lambda flag: "yes" if flag else "no"  # noqa: E731
        for r in self.rows:
            lines.append(f"{self._when(r.onset)}  {r.onset:8.1f}  {r.duration:7.1f}  {r.kind:<11}  {r.source:<7}  "
                         f"{yes(r.logged):<6}  {yes(r.detected):<8}  {yes(r.consented):<7}  {yes(r.during_optout):<7}  "
                         f"{r.status.upper() if r.status in VIOLATIONS else r.status}")
        for onset, duration, evidence in self.signal_tampering:
            lines.append(f"note: the record itself looks tampered at {self._when(onset).strip()} for "
                         f"{duration:.0f} s ({evidence})")
        lines.append(f"summary: {self.count('consented')} consented and done, {self.count('unconsented')} done without "
                     f"consent, {self.count('covert')} covert (detected, never logged), {self.count('no-trace')} "
                     f"logged without a trace, {len(self.optout_violations)} opt-out violation(s); log "
                     f"{'intact' if self.log.intact else 'TAMPERED'}: {'clean' if self.clean else 'VIOLATIONS'}")
        return "\n".join(lines)

    def _when(self, seconds: float) -> str:
        if self.start is None:
            return f"{seconds:8.1f}s"
        return f"{self.start + dt.timedelta(seconds=seconds):%H:%M:%S}".rjust(9)


def audit_section(result: AuditResult) -> dict:
    """The audit as a section of the night's report (plain JSON values)."""
    return result.to_json()


def audit_html(result: AuditResult) -> str:
    """The audit as an HTML fragment for the night's report (``extra_sections`` of
    :func:`dreamsync.report.write_report`): the log's state, the opt-out, the table, the summary."""
    from html import escape

    doc = result.to_json()
    state = ("hash chain intact" if result.log.intact
             else "<strong>TAMPERED</strong>: " + "; ".join(escape(p) for p in result.log.problems))
    parts = [f"<p>Device log: {len(result.log.entries)} entries from {escape(str(result.device.get('serial', '?')))}, "
             f"{state}.</p>"]
    for period in doc["optout"]:
        parts.append(f"<p>Opt-out from {period['start']:.0f} s to "
                     f"{'the end' if period['end'] is None else format(period['end'], '.0f') + ' s'}.</p>")
    head = ("time", "start (s)", "duration (s)", "kind", "source", "logged", "detected", "consent", "opt-out", "status")
    rows = []
    for r in doc["rows"]:
        cells = (r.get("clock", "")[11:], f"{r['onset']:.1f}", f"{r['duration']:.1f}", r["kind"], r["source"],
                 *("yes" if r[k] else "no" for k in ("logged", "detected", "consented", "during_optout")), r["status"])
        style = ' style="color:#b00020;font-weight:bold"' if r["status"] in VIOLATIONS else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    parts.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>")
    parts.append(f"<p>{escape(result.table().splitlines()[-1])}</p>")
    return "".join(parts)


# == reconciliation ==================================================================================
def verify_document(document: dict):
    """A saved log document's chain checked, with its live entries as anchors and its announced head.

    Returns
    -------
    ingest.adjustment_log.LogVerification
    """
    from ingest.adjustment_log import verify_log

    return verify_log([bytes.fromhex(e) for e in document.get("entries", [])],
                      (document.get("device") or {}).get("serial", ""),
                      live=[bytes.fromhex(e) for e in document.get("live", [])],
                      head=bytes.fromhex(document["head"]) if document.get("head") else None)


@dataclass
class _Logged:
    entry: object
    onset: float
    end: float


def _seconds(tick: int, first_tick: int, tick_hz: float) -> float:
    """Recording time in s of a device tick (negative before the recording's first sample)."""
    return (tick - first_tick) / tick_hz


def optout_periods(entries, journal, first_tick: int, tick_hz: float) -> list:
    """Opt-out periods ``[(start_s, end_s or None), ...]`` from the log's entries and the host's journal."""
    changes = [(_seconds(e.tick, first_tick, tick_hz), e.event == "optout-on") for e in entries
               if e.event in ("optout-on", "optout-off")]
    for j in journal or ():
        if j.get("command") in ("optout_on", "optout_off") and j.get("status") == "ok" and j.get("tick") is not None:
            changes.append((_seconds(int(j["tick"]), first_tick, tick_hz), j["command"] == "optout_on"))
    periods, start = [], None
    for t, on in sorted(changes):
        if on and start is None:
            start = t
        elif not on and start is not None:
            periods.append((start, t))
            start = None
    if start is not None:
        periods.append((start, None))
    return periods


def _in_periods(t: float, periods) -> bool:
    return any(a <= t and (b is None or t < b) for a, b in periods)


def _overlaps_periods(a: float, b: float, periods) -> bool:
    return any(a < (pe if pe is not None else float("inf")) and ps < b for ps, pe in periods)


def _consented(kind: str, onset: float, end: float, windows, tolerance_s: float) -> bool:
    return any(w.covers(kind) and w.start - tolerance_s <= onset and end <= w.end + tolerance_s for w in windows)


def _same_adjustment(event, entry) -> bool:
    """Whether a detected event can be the logged entry's doing: same family, compatible frequency.

    Families: what the detectors tell apart. Electrical stimulation and sensory entrainment both
    show as a spectral line, and which one a line is stays a guess (a 40-Hz line may be tACS or a
    steady-state response), so they form one family; evoked responses (auditory) another. When both
    sides name a frequency, the detected one must be the logged one or a harmonic (within 0.5 Hz).
    """
    if FAMILIES.get(event.kind) != FAMILIES.get(entry.kind):
        return False
    f_det, f_log = event.frequency_hz, entry.frequency_hz
    if not f_det or not f_log:
        return True
    return any(abs(f_det - k * f_log) <= 0.5 or abs(f_log - k * f_det) <= 0.5 for k in (1, 2, 3))


def _unaccounted(onset: float, end: float, spans) -> list:
    """Parts of ``[onset, end)`` outside every span, those of at least :data:`MIN_UNACCOUNTED_S`."""
    parts, t = [], onset
    for a, b in sorted(spans):
        if b <= t or a >= end:
            continue
        if a > t:
            parts.append((t, a))
        t = max(t, b)
    if end > t:
        parts.append((t, end))
    return [(a, b) for a, b in parts if b - a >= MIN_UNACCOUNTED_S]


def reconcile(document: dict, detected, windows=(), *, tolerance_s: float = TOLERANCE_S) -> AuditResult:
    """Reconcile a log document, detected adjustments and consent windows.

    Parameters
    ----------
    document : dict
        A saved log document (entries, live, head, journal, first_tick, tick_hz, device).
    detected : sequence of dsp.events.AdjustmentEvent
        What the detectors found, onsets in s from the recording's start.
    windows : sequence of dreamsync.authorization.AuthorizedWindow
        The sleeper's consent, in s from the recording's start.
    tolerance_s : float
        Slack in s when matching times and consent windows.

    Returns
    -------
    AuditResult
    """
    device = dict(document.get("device") or {})
    verification = verify_document(document)
    first_tick = int(document.get("first_tick") or 0)
    tick_hz = float(document.get("tick_hz", 250.0))
    periods = optout_periods(verification.entries, document.get("journal"), first_tick, tick_hz)

    logged, refused = [], []
    for entry in verification.entries:
        onset = _seconds(entry.tick, first_tick, tick_hz)
        if entry.event == "stimulation":
            logged.append(_Logged(entry, onset, onset + entry.duration_s))
        elif entry.event == "stopped":  # cut short at an opt-out: the last such stimulation ended earlier
            for item in reversed(logged):
                if item.entry.actuator == entry.actuator and item.entry.origin == entry.origin and item.onset <= onset:
                    item.end = min(item.end, item.onset + entry.duration_s)
                    break
        elif entry.event == "refused":
            refused.append((entry, onset))

    events = [e for e in detected if e.kind in DETECTABLE_KINDS]
    rows = []
    for item in logged:
        e = item.entry
        hits = [i for i, ev in enumerate(events)
                if _same_adjustment(ev, e) and ev.overlaps(item.onset - tolerance_s, item.end + END_SLACK_S)]
        consented = e.origin == "sleeper" or _consented(e.kind, item.onset, item.end, windows, tolerance_s)
        during = e.origin != "sleeper" and _in_periods(item.onset, periods)
        if during:
            status = "optout-violation"
        elif not consented:
            status = "unconsented"
        elif not hits:
            status = "no-trace"
        else:
            status = "consented"
        rows.append(AuditRow(item.onset, item.end - item.onset, e.kind or "", e.origin, status, True, bool(hits),
                             consented, during, e.actuator, e.index,
                             "; ".join(events[i].evidence for i in hits)))
    for entry, onset in refused:
        rows.append(AuditRow(onset, entry.duration_s, entry.kind or "", entry.origin, "refused", True, False,
                             False, True, entry.actuator, entry.index, "refused by the device: opt-out"))
    for ev in events:
        spans = [(item.onset - tolerance_s, item.end + END_SLACK_S) for item in logged
                 if _same_adjustment(ev, item.entry)]
        for onset, end in _unaccounted(ev.onset, ev.end, spans):
            rows.append(AuditRow(onset, end - onset, ev.kind, "unknown", "covert", False, True,
                                 _consented(ev.kind, onset, end, windows, tolerance_s),
                                 _overlaps_periods(onset, end, periods), evidence=ev.evidence))
    rows.sort(key=lambda r: (r.onset, r.kind))
    tampering = [(e.onset, e.duration, e.evidence) for e in detected if e.kind == "tampering"]
    return AuditResult(rows, verification, periods, device, signal_tampering=tampering)


def audit_file(path: str, *, authorized: str | None = None, log: str | None = None, channel: str | None = None,
               tolerance_s: float = TOLERANCE_S) -> AuditResult:
    """Audit a recorded DreamSync night.

    Parameters
    ----------
    path : str
        The night's EDF+ (``dreamsync record --device dreamsync``).
    authorized : str, optional
        The sleeper's consent file; none means nothing vendor-initiated was consented to.
    log : str, optional
        The adjustment log document; ``NIGHT.adjustments.json`` beside the recording by default.
    channel : str, optional
        EEG channel(s) to stage from (see :func:`dreamsync.detection.detect_file`).

    Raises
    ------
    ValueError
        A missing or malformed log or consent file (one line).
    """
    from ingest.edf import read_edf

    from .authorization import load_authorized
    from .detection import detect_file

    log = log or log_path_for(path)
    try:
        document = load_adjustment_log(log)
    except FileNotFoundError:
        raise ValueError(f"{log}: no adjustment log beside the recording (record with --device dreamsync, "
                         "or name it with --log)") from None
    start = read_edf(path).start
    windows = load_authorized(authorized, start) if authorized else []
    report = detect_file(path, channel=channel)
    result = reconcile(document, [e for e, _ in report.events], windows, tolerance_s=tolerance_s)
    result.recording, result.log_file, result.start, result.duration = path, log, report.start, report.duration
    return result


# == live ============================================================================================
class LiveAudit:
    """The audit's alarms as a stream goes: log entries notified live, detections as they are raised.

    Alarms (each a :class:`AuditRow` with a violation status, raised once):

    - a vendor stimulation logged while the sleeper has opted out (``optout-violation``), or without a
      consent window (``unconsented``), as soon as its entry arrives;
    - a detected adjustment that no log entry accounts for within ``tolerance_s`` after it was
      raised (``covert``; during an opt-out too when it overlaps one).

    Parameters
    ----------
    windows : sequence of AuthorizedWindow
        Consent, in s from the stream's first sample.
    board : ingest.boards.dreamsync.DreamSyncBoard, optional
        The band's driver, for :meth:`poll` (its live entries, sample counter and journal).
    tolerance_s : float
        Matching slack in s.
    tick_hz : float
        The device's sample counter rate.
    """

    def __init__(self, windows=(), *, board=None, tolerance_s: float = TOLERANCE_S, tick_hz: float = 250.0):
        self.board = board
        self.windows = list(windows)
        self.tolerance_s = tolerance_s
        self.tick_hz = tick_hz
        self.entries: list = []
        self.journal: list = []
        self._seen = 0
        self._pending: list = []  # detections not yet accounted for
        self.alarms: list = []

    def update(self, live_entries, first_tick: int | None, now_s: float, journal=()) -> list:
        """Take the entries notified so far and the time reached; returns the new alarms."""
        from ingest.adjustment_log import parse_entry

        if first_tick is None:
            return []
        self.journal = list(journal)
        new = []
        for raw in list(live_entries)[self._seen:]:
            self._seen += 1
            try:
                entry = parse_entry(raw)
            except ValueError:
                continue
            self.entries.append(entry)
            if entry.event != "stimulation" or entry.origin == "sleeper":
                continue
            onset = _seconds(entry.tick, first_tick, self.tick_hz)
            end = onset + entry.duration_s
            periods = optout_periods(self.entries, self.journal, first_tick, self.tick_hz)
            during = _in_periods(onset, periods)
            ok = _consented(entry.kind, onset, end, self.windows, self.tolerance_s)
            if during or not ok:
                new.append(AuditRow(onset, entry.duration_s, entry.kind or "", entry.origin,
                                    "optout-violation" if during else "unconsented", True, False, ok, during,
                                    entry.actuator, entry.index))
        still = []
        for event in self._pending:
            if self._accounted(event, first_tick):
                continue
            if now_s - event.end < self.tolerance_s:
                still.append(event)
                continue
            periods = optout_periods(self.entries, self.journal, first_tick, self.tick_hz)
            new.append(AuditRow(event.onset, event.duration, event.kind, "unknown", "covert", False, True,
                                _consented(event.kind, event.onset, event.end, self.windows, self.tolerance_s),
                                _overlaps_periods(event.onset, event.end, periods), evidence=event.evidence))
        self._pending = still
        self.alarms += new
        return new

    def poll(self, now_s: float) -> list:
        """:meth:`update` from the board's live entries, first sample counter and journal."""
        board = self.board
        first_tick = board.decoder.first_tick if board is not None and board.decoder is not None else None
        return self.update(list(board.live_entries) if board is not None else [], first_tick, now_s,
                           list(board.journal) if board is not None else [])

    def detection(self, event) -> None:
        """A detector raised ``event`` (onset in s from the stream's first sample)."""
        if event.kind in DETECTABLE_KINDS:
            self._pending.append(event)

    def _accounted(self, event, first_tick: int) -> bool:
        spans = [(_seconds(e.tick, first_tick, self.tick_hz) - self.tolerance_s,
                  _seconds(e.tick, first_tick, self.tick_hz) + e.duration_s + END_SLACK_S)
                 for e in self.entries if e.event == "stimulation" and _same_adjustment(event, e)]
        # live events are short (raised at their onset): one that touches a logged span is accounted for
        return any(event.overlaps(a, b) for a, b in spans)
