"""A DreamSync device's adjustment log: entries parsed, the hash chain checked, live copies compared.

The device appends one 50-byte entry per adjustment performed, opt-out change or refusal (layout in
``docs/dreamsync-protocol.md``)::

    body  = index u32 | tick u32 | event u8 | actuator u8 | origin u8 | flags u8 |
            duration_s u16 | frequency_cHz u16 | intensity_0.1uV u16          (18 bytes, little-endian)
    hash  = SHA-256(previous hash || body)                                  (32 bytes)
    genesis (the "previous hash" of entry 0) = SHA-256(b"dreamsync-log-v1:" || serial number)

:func:`verify_log` recomputes the chain over the entries as read and names every entry whose
index, order or hash does not hold (an entry removed, inserted, altered or reordered breaks the
chain from there). Entries the host received live, as the device appended them, are anchors: a log
whose chain was recomputed after an edit verifies on its own but no longer matches them.

Only the reading side lives here (``ingest`` never imports the emulator); what a chain cannot show
is an adjustment that was never logged at all: that is for the signal to tell (``dreamsync audit``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

ENTRY_BODY = struct.Struct("<IIBBBBHHH")
HASH_BYTES = 32
ENTRY_BYTES = ENTRY_BODY.size + HASH_BYTES
GENESIS_PREFIX = b"dreamsync-log-v1:"
EVENTS = {1: "stimulation", 2: "optout-on", 3: "optout-off", 4: "refused", 5: "stopped"}
ACTUATORS = {0: "", 1: "audio-closed-loop", 2: "audio-pink-noise", 3: "audio-rhythm", 4: "light-flicker",
             5: "current"}
#: What the signal shows of each actuator (the adjustment kinds of ``dsp.events``).
ACTUATOR_KIND = {1: "auditory", 2: "auditory", 3: "entrainment", 4: "entrainment", 5: "electrical"}
ORIGINS = {0: "sleeper", 1: "vendor"}


def genesis(serial: str) -> bytes:
    """The hash before the first entry of the device with this serial number."""
    return hashlib.sha256(GENESIS_PREFIX + serial.encode("ascii")).digest()


@dataclass(frozen=True)
class LogEntry:
    """One parsed entry.

    Attributes
    ----------
    index, tick : int
        Position in the log; device sample counter (250 per s) when it was appended.
    event : str
        ``"stimulation"``, ``"optout-on"``, ``"optout-off"``, ``"refused"`` or ``"stopped"``.
    actuator, origin : str
        Actuator name (empty for opt-out entries) and who asked: ``"sleeper"`` or ``"vendor"``.
    duration_s, frequency_hz, intensity_uv : float
    kind : str or None
        Adjustment kind the signal would show (``"auditory"``, ``"entrainment"``, ``"electrical"``).
    raw : bytes
        The 50 bytes as read.
    """

    index: int
    tick: int
    event: str
    actuator: str
    origin: str
    flags: int
    duration_s: float
    frequency_hz: float
    intensity_uv: float
    kind: str | None
    raw: bytes = field(repr=False)

    @property
    def body(self) -> bytes:
        return self.raw[:ENTRY_BODY.size]

    @property
    def hash(self) -> bytes:
        return self.raw[ENTRY_BODY.size:]

    def to_json(self) -> dict:
        return {"index": self.index, "tick": self.tick, "event": self.event, "actuator": self.actuator,
                "origin": self.origin, "duration_s": self.duration_s, "frequency_hz": self.frequency_hz,
                "intensity_uv": self.intensity_uv, "kind": self.kind, "hash": self.hash.hex()}


def parse_entry(raw: bytes) -> LogEntry:
    """Parse a 50-byte entry; ValueError when it is not one."""
    raw = bytes(raw)
    if len(raw) != ENTRY_BYTES:
        raise ValueError(f"a log entry has {ENTRY_BYTES} bytes, not {len(raw)}")
    index, tick, event, actuator, origin, flags, duration, chz, duv = ENTRY_BODY.unpack(raw[:ENTRY_BODY.size])
    return LogEntry(index, tick, EVENTS.get(event, f"unknown-{event}"), ACTUATORS.get(actuator, f"unknown-{actuator}"),
                    ORIGINS.get(origin, f"unknown-{origin}"), flags, float(duration), chz / 100.0, duv / 10.0,
                    ACTUATOR_KIND.get(actuator), raw)


@dataclass
class LogVerification:
    """What :func:`verify_log` found.

    Attributes
    ----------
    entries : list of LogEntry
        The entries as read, parsed (unparseable ones left out, and named in ``problems``).
    problems : list of str
        One line per break: ``"entry 3: hash does not chain from entry 2 (removed or altered)"``.
    head : str
        Hex of the last entry's hash (the genesis hash for an empty log).
    """

    entries: list
    problems: list
    head: str

    @property
    def intact(self) -> bool:
        """True when the chain holds from the genesis to the head and matches every live anchor."""
        return not self.problems

    def to_json(self) -> dict:
        return {"intact": self.intact, "problems": list(self.problems), "entries": len(self.entries),
                "head": self.head}


def verify_log(raw_entries, serial: str, *, live=(), head: bytes | None = None) -> LogVerification:
    """Check a log's hash chain, its numbering and the live anchors.

    Parameters
    ----------
    raw_entries : sequence of bytes
        The entries as read from the device, in order.
    serial : str
        The device's serial number (its genesis hash).
    live : sequence of bytes, optional
        Entries notified as they were appended during the night.
    head : bytes, optional
        The head hash the device announced at the end of the read (LOG_END).

    Returns
    -------
    LogVerification
    """
    problems, entries = [], []
    previous = genesis(serial)
    for position, raw in enumerate(raw_entries):
        try:
            entry = parse_entry(raw)
        except ValueError as err:
            problems.append(f"entry {position}: {err}")
            continue
        if entry.index != position:
            problems.append(f"entry {position}: numbered {entry.index} (entries removed or inserted before it)")
        if hashlib.sha256(previous + entry.body).digest() != entry.hash:
            problems.append(f"entry {position}: hash does not chain from the entry before it "
                            f"(an entry removed, altered or reordered)")
        entries.append(entry)
        previous = entry.hash
    if head is not None and bytes(head) != previous:
        problems.append("the head hash the device announced is not the last entry's")
    for raw in live:
        try:
            anchor = parse_entry(raw)
        except ValueError:
            continue
        if anchor.index >= len(entries):
            problems.append(f"entry {anchor.index} was notified live but is missing from the log as read")
        elif entries[anchor.index].raw != anchor.raw:
            problems.append(f"entry {anchor.index} differs from the copy notified live (rewritten)")
    return LogVerification(entries, problems, previous.hex())
