"""What an adjustment detector reports: one flagged episode of outside interference with a recording.

Every detector (``dsp.lines`` for electrical and entrainment, ``dsp.evoked`` for auditory series,
``dsp.tampering`` for altered data) returns a list of :class:`AdjustmentEvent`, so callers merge,
filter and serialise them the same way whatever found them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The kinds of adjustment, as in the ``kind`` field of ``dreamsync detect`` output.
KINDS = ("auditory", "electrical", "entrainment", "tampering")


@dataclass(frozen=True)
class AdjustmentEvent:
    """One flagged episode.

    Attributes
    ----------
    onset : float
        Start in s from the first sample of the analysed signal.
    duration : float
        Length in s (> 0).
    kind : str
        One of :data:`KINDS`.
    score : float
        Strength of the evidence, 0..1 (a monotone map of the detector's test statistic; 0.5 is the
        alarm threshold's neighbourhood, 1 is overwhelming).
    evidence : str
        Why, for a person: what was measured and how far from a normal night it is
        (e.g. ``"line at 12.00 Hz, 4.1 uV, phase-locked for 280 s, F-test p < 1e-9, 2nd harmonic"``).
    channels : tuple of int
        Rows of the analysed array where the evidence was found (empty when it is not per channel).
    frequency_hz : float or None
        The adjustment's frequency where it has one (stimulation or drive frequency), else None.
    """

    onset: float
    duration: float
    kind: str
    score: float
    evidence: str
    channels: tuple = ()
    frequency_hz: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"adjustment kind must be one of {KINDS}, got {self.kind!r}")
        if not self.duration > 0:
            raise ValueError(f"event duration must be positive, got {self.duration}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"event score must lie in 0..1, got {self.score}")

    @property
    def end(self) -> float:
        """End of the episode in s."""
        return self.onset + self.duration

    def overlaps(self, start: float, stop: float) -> bool:
        """Whether the episode shares any time with ``[start, stop)`` (s)."""
        return self.onset < stop and start < self.end


def merge_events(events) -> list:
    """Merge overlapping or touching events of one kind; sorted by onset.

    A merged event spans the union of its parts and keeps the strongest part's score, evidence
    and frequency; channels are pooled.
    """
    out: list = []
    for kind in KINDS:
        group = sorted((e for e in events if e.kind == kind), key=lambda e: e.onset)
        current = None
        for e in group:
            if current is not None and e.onset <= current.end:
                best = e if e.score > current.score else current
                current = AdjustmentEvent(current.onset, max(current.end, e.end) - current.onset, kind, best.score,
                                          best.evidence, tuple(sorted(set(current.channels) | set(e.channels))),
                                          best.frequency_hz)
            else:
                if current is not None:
                    out.append(current)
                current = e
        if current is not None:
            out.append(current)
    return sorted(out, key=lambda e: (e.onset, e.kind))


@dataclass(frozen=True)
class EventScores:
    """Event-level agreement of detections with true episodes (see :func:`score_events`).

    Attributes
    ----------
    n_true, n_detected : int
        True episodes and detections compared.
    found : int
        True episodes overlapped by at least one detection of their kind.
    correct : int
        Detections that overlap a true episode of their kind.
    matched, kind_correct : int
        Detections that overlap any true episode, and those among them whose kind is one of the
        overlapped episodes' kinds (for :attr:`kind_accuracy`).
    """

    n_true: int
    n_detected: int
    found: int
    correct: int
    matched: int
    kind_correct: int

    @property
    def recall(self) -> float:
        """Share of true episodes found (NaN without episodes)."""
        return self.found / self.n_true if self.n_true else float("nan")

    @property
    def precision(self) -> float:
        """Share of detections that overlap a true episode of their kind (NaN without detections)."""
        return self.correct / self.n_detected if self.n_detected else float("nan")

    @property
    def f1(self) -> float:
        """Harmonic mean of recall and precision (0 when either is 0; NaN when either is undefined)."""
        r, p = self.recall, self.precision
        if r != r or p != p:
            return float("nan")
        return 2 * r * p / (r + p) if r + p else 0.0

    @property
    def kind_accuracy(self) -> float:
        """Share of detections overlapping a true episode that name its kind (NaN when none)."""
        return self.kind_correct / self.matched if self.matched else float("nan")

    @property
    def false_alarms(self) -> int:
        """Detections that overlap no true episode of their kind."""
        return self.n_detected - self.correct

    def __add__(self, other: "EventScores") -> "EventScores":
        return EventScores(*(a + b for a, b in zip(self._counts(), other._counts())))

    def _counts(self) -> tuple:
        return (self.n_true, self.n_detected, self.found, self.correct, self.matched, self.kind_correct)


def score_events(detected, truth, kind: str | None = None) -> EventScores:
    """Compare detections with true episodes by overlap in time.

    Parameters
    ----------
    detected : sequence of AdjustmentEvent
        What a detector reported.
    truth : sequence of dict or AdjustmentEvent
        True episodes: anything with ``onset`` (s), ``duration`` (s) and ``kind``, e.g. the truth
        log of ``firmware_sim.adjustments.inject``.
    kind : str, optional
        Score only this kind (true episodes and detections of other kinds are left out of recall
        and precision; kind accuracy still sees every detection that overlaps an episode of ``kind``).

    Returns
    -------
    EventScores
    """
    def span(t):
        if isinstance(t, dict):
            return float(t["onset"]), float(t["onset"]) + float(t["duration"]), t["kind"]
        return t.onset, t.end, t.kind

    spans = [span(t) for t in truth]
    if kind is not None:
        targets = [s for s in spans if s[2] == kind]
        scored = [e for e in detected if e.kind == kind]
        judged = [e for e in detected if any(e.overlaps(a, b) for a, b, _ in targets)]
    else:
        targets, scored, judged = spans, list(detected), list(detected)
    found = sum(any(e.kind == k and e.overlaps(a, b) for e in scored) for a, b, k in targets)
    correct = sum(any(e.kind == k and e.overlaps(a, b) for a, b, k in targets) for e in scored)
    matched = kind_correct = 0
    for e in judged:
        kinds = {k for a, b, k in targets if e.overlaps(a, b)}
        if kinds:
            matched += 1
            kind_correct += e.kind in kinds
    return EventScores(len(targets), len(scored), found, correct, matched, kind_correct)
