"""Stream-level tampering: packets replayed, re-sequenced or forged, and arrivals the sample clock cannot explain.

The signal-level detectors judge what the samples say; this module judges how they arrived. Every
board numbers its packets (Cyton: an 8-bit sample number, Ganglion: a packet id cycling through 100
positions, or 101 on firmware 2, Muse: a 16-bit sequence per characteristic) and the host stamps every
chunk with its arrival time. A :class:`StreamAudit` is fed both, packet by packet in arrival order,
*before* the decoder drops duplicates or puts late packets back (the decoders report them through
their ``on_packets`` hook), and flags what an ordinary link cannot produce:

``replay``
    A run of packets whose sequence numbers repeat numbers already delivered (an earlier run sent
    again, counters and all). A link duplicates or reorders single packets; it never sends back a
    run of them (at least ``min_run_s``, 0.05 s, and 4 packets).
``resequence``
    The same, where the numbers had been skipped rather than delivered: a block held back and sent
    after later ones.
``payload-replay``
    Packets whose content, sequence numbers aside, repeats an earlier run byte for byte at one fixed
    offset (replayed data renumbered to keep the counter continuous). ADC noise makes an exact repeat
    of a varying packet impossible by chance; packets equal to one of the 32 before them (railed or
    flat inputs, held readings) are never compared.
``payload-forgery``
    Scattered packets (three or more within 5 min) whose content repeats an older packet under a new
    number (``FaultSpec.forge``).
``time-warp`` / ``clock-jump``
    Sample numbers and arrival times that disagree beyond what latency and the crystal explain: a
    segment delivered slower or faster than the device's sample clock (a ramp), or a step (samples
    cut or inserted with the counter renumbered, the sample clock jumping). Arrival = sample time +
    a latency that is never negative, so the *least* delayed packets trace the clock (the lower
    envelope, as in :mod:`ingest.clock`): per second of arrivals the least-delayed packet's lag is
    compared with a line fitted to the past ones (slope: the crystal's error, at most ``max_drift``),
    and two bins of one sign off it by more than the tolerance within four open an anomaly; it ends
    when the lag is back on the line or steady at a new level (which becomes the line's). Host stalls
    delay packets but the backlog is read with the current ones, so the envelope does not move; drift
    is the slope; a reconnection (:meth:`StreamAudit.restart`) re-anchors the level.

Counters that wrap within about a second (Cyton, Ganglion) are unwrapped as the decoders read them (a
step back within the ``behind`` window is a late packet, a jump forward a loss, confirmed by the next
packet) unless the arrival time rules that reading out (the packet would have arrived before it was
sampled). Where the time allows several readings (a packet a cycle or more late: a host stall, or
whole cycles lost; also after half a cycle of silence), the run after the jump is held until it
arrives at the device's pace again (a backlog drains within moments) and placed where its delay
continues the stream's. A step of exactly whole cycles right after a silence is such a misreading
and is corrected, not reported (once in 2 min: more often is a pattern, reported).

Usage with a decoder (live or from a raw capture)::

    audit = DecoderAudit(decoder)            # sets decoder.on_packets
    for host_time, source, payload in chunks:
        audit.at(host_time)                  # before feeding the chunk
        runs = decoder.feed(payload, source)
    ...
    audit.restart()                          # wherever decoder.restart() is called
    anomalies = audit.finish()

or ``audit_capture(path)`` for a raw capture. Onsets are in seconds of stream time from the first
sample (the packet position over the packet rate, which is the sample index over the sample rate).
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass

import numpy as np

#: What an anomaly is, by its ``what`` field.
WHATS = {
    "replay": "a run of packets repeating sequence numbers already delivered",
    "resequence": "a block of packets delivered after later ones",
    "payload-replay": "packet contents repeating an earlier run under new sequence numbers",
    "payload-forgery": "scattered packets whose content repeats older packets under new numbers",
    "time-warp": "a segment delivered faster or slower than the device's sample clock",
    "clock-jump": "a step between sample numbers and arrival times",
}

_WARMUP_BINS = 3  # bins that set the level after a start or restart
_GUARD_BINS = 15  # recent normal bins kept out of the baseline, so a slow ramp does not drag the line along
_SETTLE_BINS = 5  # bins of a steady lag that end an anomaly (a new level)
_OPEN_WITHIN = 4  # two bins off the clock line within this many open an anomaly
_REALIGN_EVERY_S = 120.0  # whole-cycle realignments closer than this are not taken for chance
_RECENT_REPEATS = 32  # a packet equal to one of this many before it is never compared (held values)
_DEFER_S = 0.25  # host seconds of steady arrivals after an ambiguous jump that decide its reading
_RUN_STEP = 4  # counter steps (losses) a run may take and still count as one
_MIN_MATCHES = 3  # sampled packets at one offset that make a payload replay
_SCATTER_WINDOW_S = 300.0
_SCATTER_MIN = 3
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_WORD_KEYS = (np.random.default_rng(20240611).integers(0, 2**63, 64, dtype=np.uint64) * np.uint64(2)
              + np.uint64(1))  # fixed: fingerprints must not change between runs


@dataclass(frozen=True)
class StreamAnomaly:
    """One stretch of a packet stream that an ordinary link cannot explain.

    Attributes
    ----------
    onset_s : float
        Start in s of stream time from the first sample.
    duration_s : float
        Length in s (> 0).
    what : str
        One of :data:`WHATS`.
    evidence : str
        Why, for a person, with numbers and units.
    score : float
        Strength of the evidence, 0..1 (0.5 near the alarm threshold).
    """

    onset_s: float
    duration_s: float
    what: str
    evidence: str
    score: float

    @property
    def end_s(self) -> float:
        """End in s of stream time."""
        return self.onset_s + self.duration_s


def fingerprints(content) -> np.ndarray:
    """64-bit hashes of packet contents.

    Parameters
    ----------
    content : array_like of uint8, shape (n_packets, n_bytes)

    Returns
    -------
    ndarray of uint64, shape (n_packets,)
    """
    raw = np.asarray(content, dtype=np.uint8)
    if raw.ndim == 1:
        raw = raw[None, :]
    m, n = raw.shape
    width = -(-n // 8) * 8
    padded = np.zeros((m, width), np.uint8)
    padded[:, :n] = raw
    words = padded.view("<u8")
    # a different odd multiplier per word (mod 2**64), then an avalanche so that every bit counts
    h = (words * _WORD_KEYS[: words.shape[1]]).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(31)
    h *= _MIX2
    h ^= h >> np.uint64(29)
    return h


_WORD_KEYS_INT = [int(k) for k in _WORD_KEYS]
_MASK64 = (1 << 64) - 1


def fingerprint(content) -> int:
    """:func:`fingerprints` of one packet, without numpy (the same value).

    Parameters
    ----------
    content : bytes or array_like of uint8, shape (n_bytes,) or (1, n_bytes)

    Returns
    -------
    int
        In 0 .. 2**64 - 1.
    """
    raw = content.tobytes() if isinstance(content, np.ndarray) else bytes(content)
    h = 0
    for j in range(0, len(raw), 8):
        h += int.from_bytes(raw[j:j + 8], "little") * _WORD_KEYS_INT[j // 8]  # short words: zero-padded
    h &= _MASK64
    h ^= h >> 31
    h = (h * int(_MIX2)) & _MASK64
    return h ^ (h >> 29)


class _Open:
    """An anomaly being followed (mutable until closed)."""

    __slots__ = ("what", "start", "end", "score", "evidence", "index", "data")

    def __init__(self, what, start, end, index, **data):
        self.what, self.start, self.end, self.index = what, start, end, index
        self.score, self.evidence = 0.5, ""
        self.data = data


class StreamAudit:
    """Audit of one numbered packet stream: sequence numbers and arrival times in, anomalies out.

    Parameters
    ----------
    packet_rate : float
        Packets per second the device sends on its nominal clock (Cyton 250, Ganglion 100 (firmware 2:
        100.5), Muse 256 / 12 per characteristic).
    modulus : int
        Where the counter wraps (Cyton 256, Ganglion 100 (101), Muse 65536).
    behind : int, optional
        How far back a counter reads as a late packet rather than a forward jump, as the decoder
        reads it (Cyton 64, Ganglion 4, Muse 32767); by default a quarter of the cycle (half for
        counters of more than 1024).
    name : str, optional
        The stream, for evidence strings (``"TP9"``).
    check_timing : bool, optional
        Judge arrival times (True by default). False for streams served faster than real time.
    check_payloads : bool, optional
        Compare packet contents when they are given (True by default).
    min_run_s : float, optional
        Shortest run of repeated or held-back packets that is flagged, in s (at least 4 packets), by
        default 0.05.
    tolerance_s : float, optional
        Smallest lag deviation flagged, in s, by default 0.2 (raised to 8 robust SD of the envelope's
        scatter when that is larger).
    bin_s : float, optional
        Host seconds per envelope point, by default 1.
    max_drift : float, optional
        Largest relative error of the device's crystal, by default 0.005.
    window_s : float, optional
        Seconds of past envelope the clock line is fitted to, by default 300.
    index_rate : float, optional
        Packets per second kept in the content index (a deterministic sample by hash), by default 2.
    horizon_s : float, optional
        Seconds of positions (and contents) remembered exactly, by default 600.

    Attributes
    ----------
    stats : dict
        ``packets``, ``fresh`` (advanced the stream), ``stale`` (behind it: duplicates, late,
        replayed), ``jumps`` (counter discontinuities confirmed), ``strays`` (single odd counters),
        ``by_time`` (discontinuities read otherwise than the decoders, by the arrival time),
        ``realigned`` (whole-cycle misreadings corrected after a silence).
    """

    def __init__(self, packet_rate: float, modulus: int, *, behind: int | None = None, name: str = "",
                 check_timing: bool = True,
                 check_payloads: bool = True, min_run_s: float = 0.05, tolerance_s: float = 0.2,
                 bin_s: float = 1.0, max_drift: float = 0.005, window_s: float = 300.0,
                 index_rate: float = 2.0, horizon_s: float = 600.0):
        if not packet_rate > 0 or int(modulus) < 8:
            raise ValueError(f"need a positive packet rate and a counter modulus >= 8, got {packet_rate}, {modulus}")
        self.packet_rate = float(packet_rate)
        self.modulus = int(modulus)
        self.name = name
        self.check_timing = bool(check_timing)
        self.check_payloads = bool(check_payloads)
        self.tolerance_s = float(tolerance_s)
        self.bin_s = float(bin_s)
        self.max_drift = float(max_drift)
        self.min_run = max(4, int(round(min_run_s * self.packet_rate)))
        if behind is None:
            behind = self.modulus // 2 - 1 if self.modulus > 1024 else self.modulus // 4
        self._behind_limit = int(behind)
        size = 1 << max(10, int(math.ceil(math.log2(max(2.0, horizon_s * self.packet_rate)))))
        self._mask = size - 1
        self._ring_pos = np.full(size, -1, dtype=np.int64)
        self._ring_fp = np.zeros(size, dtype=np.uint64)
        self._stride = np.uint64(max(1, int(round(self.packet_rate / index_rate))))
        self._index: dict = {}
        self._matches: collections.deque = collections.deque()  # (position, offset) not in a replay
        self._replay: _Open | None = None  # payload replay being followed
        self._done: list = []  # StreamAnomaly, closed
        self._live: list = []  # _Open being followed (shown provisionally)
        self._new: list = []  # raised since the last observe()
        self._n_raised = 0
        self.stats = dict(packets=0, fresh=0, stale=0, jumps=0, strays=0, by_time=0, realigned=0)
        self._silences: collections.deque = collections.deque(maxlen=16)  # stream time (s) of recent gaps
        self._realigned_at = -math.inf
        self._t0: float | None = None
        self._head: int | None = None  # position of the latest packet that advanced the stream
        self._head_c = 0
        self._top = -1  # highest position ever (placement after a restart)
        self._head_dev = 0.0  # the head's deviation from the clock line when it arrived
        self._head_t = 0.0  # when the head arrived
        self._bin_dev = 0.0  # deviation of the last closed bin
        self._last_t = 0.0
        self._pending = None  # (position, counter, time, fingerprint): a jump waiting for its successor
        self._defer = None  # the run after an ambiguous jump, waiting to catch up with the clock
        self._run: _Open | None = None  # consecutive stale packets
        # timing: the lower envelope per bin, a line fitted to the accepted bins
        self._bin = None  # [bin number, lag, x at min, x first]
        self._base: collections.deque = collections.deque(maxlen=max(8, int(window_s / self.bin_s)))
        self._recent: collections.deque = collections.deque()
        self._history: collections.deque = collections.deque(maxlen=120)  # (x, dev) of normal bins
        self._devrun: list = []  # recent bins off the clock line: (x first, x, dev, allowed, bin number)
        self._tested = 0
        self._warm: list = []
        self._warming = _WARMUP_BINS
        self._offset = 0.0
        self._fit = None  # (xbar, ybar, slope, tol, slope_sd)
        self._since_fit = 0
        self._timing: _Open | None = None

    # -- input ---------------------------------------------------------------------------------
    def observe(self, counters, host_time: float, content=None) -> list:
        """Packets that arrived together, in arrival order.

        Parameters
        ----------
        counters : array_like of int, shape (n_packets,)
            The protocol's sequence numbers as received (any int; taken modulo ``modulus``).
        host_time : float
            When they had arrived, in s (e.g. since the Unix epoch).
        content : array_like of uint8, shape (n_packets, n_bytes), optional
            Each packet's bytes other than its sequence number (payload checks need them).

        Returns
        -------
        list of StreamAnomaly
            Anomalies raised by these packets (provisional extent: :attr:`anomalies` has the final one).
        """
        t = float(host_time)
        if self._t0 is None:
            self._t0 = t
        payloads = content is not None and self.check_payloads
        if np.ndim(counters) == 1 and len(counters) == 1:  # one notification: scalar all the way
            self.stats["packets"] += 1
            self._packet(int(counters[0]) % self.modulus, t, fingerprint(content) if payloads else None)
            self._last_t = max(self._last_t, t)
            return self._raised() if self._new else []
        c = np.asarray(counters, dtype=np.int64).reshape(-1) % self.modulus
        m = c.size
        if m == 0:
            return []
        h = fingerprints(content) if payloads else None
        self.stats["packets"] += m
        start = 0
        if self._head is not None and self._pending is None and self._defer is None and not self._after_silence(t):
            # the common case: the whole chunk continues the stream
            expected = (self._head_c + 1 + np.arange(m)) % self.modulus
            ok = c == expected
            start = m if ok.all() else int(np.argmin(ok))
            if start:
                self._fresh_run(self._head + 1, c[start - 1], t, None if h is None else h[:start], start)
        for i in range(start, m):
            self._packet(int(c[i]), t, None if h is None else h[i])
        self._last_t = max(self._last_t, t)
        return self._raised()

    def restart(self) -> None:
        """The device began a new stream (reconnection, restart): its counter starts afresh."""
        if self._defer is not None:
            self._resolve(caught_up=False)
        self._end_run()
        self._pending = None
        self._head = None
        self._close_bin()
        self._devrun = []
        self._warm = []
        self._warming = _WARMUP_BINS
        if self._timing is not None:
            self._close_timing(self._last_x(), settled=None)

    def finish(self) -> list:
        """Close what is open at the end of the stream; returns :attr:`anomalies`."""
        if self._defer is not None:
            self._resolve(caught_up=False)
        self._end_run()
        self._close_bin()
        if self._timing is not None:
            self._close_timing(self._last_x(), settled=None)
        if self._replay is not None:
            self._close_replay()
        self._raised()
        return self.anomalies

    @property
    def anomalies(self) -> list:
        """Every anomaly so far (open ones with their extent so far), merged, sorted by onset."""
        return merge_anomalies(self._done + [self._snapshot(o) for o in self._live])

    # -- sequence --------------------------------------------------------------------------------
    def _packet(self, c: int, t: float, h) -> None:
        M = self.modulus
        if self._head is None:
            self._fresh(self._first_position(t), c, t, h)
            return
        if self._defer is not None:
            d = self._defer
            step = (c - d["c"]) % M
            reach = max(_RUN_STEP, M // 8)
            if 1 <= step <= reach:  # the run after an ambiguous jump goes on (losses allowed)
                d["at"] += step
                d["items"].append((d["at"], c, t, h))
                d["c"] = c
                d["times"].append(t)
                d["m0"] = min(d["m0"], self._dev(d["forward"] + d["at"], t))
                if self._steady(d) or len(d["items"]) >= max(64, 4 * self.packet_rate):
                    self._resolve(caught_up=True)  # (or 4 s of packets held: decide anyway)
                return
            if step == 0 or step >= M - min(reach, self._behind_limit):  # a duplicate or late packet in the run
                d["items"].append((d["at"] - (M - step) % M, c, t, h))
                d["times"].append(t)
                return
            self._resolve(caught_up=False)
        if self._pending is not None:
            pp, pc, pt, ph = self._pending
            self._pending = None
            if (c - pc) % M == 1:  # the jump is confirmed by its successor
                self.stats["jumps"] += 1
                self._fresh(pp, pc, pt, ph)
                self._fresh(pp + 1, c, t, h)
                return
            self.stats["strays"] += 1  # a lone counter: corrupt (or the jump's successor was lost)
        f = (c - self._head_c) % M
        if f == 1 and not self._after_silence(t):
            self._fresh(self._head + 1, c, t, h)
        elif f == 0:
            self._stale(self._head, c, t)
        else:
            self._jump(f, c, t, h)

    def _after_silence(self, t: float) -> bool:
        """Whether nothing came for half a counter cycle or more: whole cycles may have been lost, so
        even the next number in sequence is read with the clock."""
        half_cycle = 0.5 * self.modulus / self.packet_rate
        if not (self.check_timing and self._fit is not None and t - self._head_t >= half_cycle):
            return False
        if not self._silences or self._silences[-1] != self._head / self.packet_rate:
            self._silences.append(self._head / self.packet_rate)
        return True

    def _readings(self, f: int) -> tuple:
        """The decoders' reading of a packet ``f`` counts ahead of the head (mod the counter): a late
        packet within the ``behind`` window, else a loss of ``f - 1``; and the forward reading."""
        forward = self._head + f
        late = self.modulus - f <= self._behind_limit
        return (self._head - (self.modulus - f) if late else forward), forward, late

    def _jump(self, f: int, c: int, t: float, h) -> None:
        """A counter discontinuity: read it as the decoders do unless the arrival time rules that out;
        where the time allows several readings (a packet late by about a cycle or more: a host stall, or
        a loss of whole cycles), wait for the run after it to catch up with the clock."""
        usual, forward, late = self._readings(f)
        p = usual
        if self._fit is not None and self.check_timing:
            floor, step = self._floor()
            m = self._dev(forward, t)
            j_max = math.floor((m - floor) / step)  # forward + j * M is feasible for j <= j_max
            if j_max < 0:  # every forward reading arrived before it was sampled: it lies behind
                p = usual if late else forward - self.modulus
                self.stats["by_time"] += p != usual
            elif j_max > 0 or late:  # several readings fit: decide on the run that follows
                self._defer = {"forward": forward, "usual": usual, "late": late, "c": c, "t": t, "m0": m,
                               "at": 0, "items": [(0, c, t, h)], "times": [t]}
                return
        if p <= self._head:
            self._stale(p, c, t)
        else:
            self._pending = (p, c, t, h)

    def _steady(self, d: dict) -> bool:
        """Whether the run's latest ``_DEFER_S`` of arrivals came at about the device's rate (not a
        backlog draining, nor a stall): then its least delay is the current one."""
        items, times = d["items"], d["times"]
        t = times[-1]
        if t - d["t"] <= _DEFER_S:
            return False
        first = bisect.bisect_left(times, t - _DEFER_S)
        packets = (d["at"] - items[first][0]) / self.packet_rate  # stream seconds they span
        return 0.5 * _DEFER_S <= packets <= 1.5 * _DEFER_S + 1.0 / self.packet_rate

    def _level(self) -> float:
        """The stream's recent deviation from the clock line: the least of the last closed bin's and
        the current bin's (so a stall's backlog, all delayed, does not set it)."""
        level = self._bin_dev
        cur = self._bin
        if cur is not None and self._fit is not None:
            level = min(level, cur[1] - self._predict(cur[2])[0])
        return level

    def _floor(self) -> tuple:
        """Least deviation a packet may have (no earlier than the stream has lately been running, so a
        stream already flagged early stays readable) and the deviation one counter cycle makes."""
        floor = min(0.0, self._head_dev) - max(self.tolerance_s, self._fit[3])
        return floor, self.modulus / self.packet_rate * (1.0 + self._fit[2])

    def _resolve(self, caught_up: bool) -> None:
        """Place the run held after an ambiguous jump: among the readings the clock allows, the one
        under which the run's least delay (a stall's backlog drains within moments, so after
        ``_DEFER_S`` the run holds current packets) continues the delay the stream had before."""
        d, self._defer = self._defer, None
        floor, step = self._floor()
        M = self.modulus
        j_max = math.floor((d["m0"] - floor) / step)
        if len(d["items"]) == 1 and not caught_up and not d["late"]:
            self.stats["strays"] += 1  # a lone counter that nothing followed
            return
        behind = d["usual"] if d["late"] else d["forward"] - M
        if j_max < 0:
            p0 = behind
        elif not caught_up:  # cut short (maybe inside a stall's backlog): as the decoders read it
            p0 = d["usual"]
        else:  # the reading under which the run's least delay continues the delay the stream had
            options = [d["forward"] + j * M for j in range(j_max + 1)] + ([behind] if d["late"] else [])
            # the delay before: the head's own (follows a steep ramp) or the recent envelope's (not
            # set by a stall's backlog, all delayed); either will do
            refs = (self._level(), self._head_dev)
            p0 = min(options, key=lambda p: min(abs(d["m0"] - (p - d["forward"]) * step / M - r) for r in refs))
        self.stats["by_time"] += p0 != d["usual"]
        self.stats["jumps"] += p0 > self._head
        for at, c, t, h in d["items"]:
            if p0 + at <= self._head:
                self._stale(p0 + at, c, t)
            else:
                self._fresh(p0 + at, c, t, h)

    def _first_position(self, t: float) -> int:
        if self._top < 0:
            return 0
        if self._fit is not None and self.check_timing:
            p = int(round(self._x_at(t) * self.packet_rate))
        else:
            p = self._top + int(round((t - self._last_t) * self.packet_rate))
        return max(p, self._top + 1)

    def _fresh(self, p: int, c: int, t: float, h) -> None:
        """One packet at position ``p`` that advances the stream (scalar: the BLE boards' usual case)."""
        if self._run is not None:
            self._end_run()
        slot = p & self._mask
        self._ring_pos[slot] = p
        self._head, self._head_c, self._head_t = p, c % self.modulus, t
        if p > self._top:
            self._top = p
        self.stats["fresh"] += 1
        if h is not None:
            self._ring_fp[slot] = h
            if int(h) % int(self._stride) == 0:
                self._sampled(p, h)
        if self.check_timing:
            self._point(p, p, t)
            if self._fit is not None:
                self._head_dev = self._dev(p, t)

    def _fresh_run(self, p0: int, c_last: int, t: float, h, n: int) -> None:
        """``n`` packets at positions ``p0 ..`` that advance the stream, all arrived by ``t``."""
        if self._run is not None:
            self._end_run()
        s0 = p0 & self._mask
        if s0 + n <= self._mask + 1:  # contiguous in the ring
            self._ring_pos[s0:s0 + n] = np.arange(p0, p0 + n)
            if h is not None:
                self._ring_fp[s0:s0 + n] = h
        else:
            slots = np.arange(p0, p0 + n) & self._mask
            self._ring_pos[slots] = np.arange(p0, p0 + n)
            if h is not None:
                self._ring_fp[slots] = h
        self._head, self._head_c, self._head_t = p0 + n - 1, int(c_last) % self.modulus, t
        self._top = max(self._top, self._head)
        self.stats["fresh"] += n
        if h is not None:
            sampled = h % self._stride == 0
            if sampled.any():
                for j in np.flatnonzero(sampled):
                    self._sampled(p0 + int(j), h[j])
        if self.check_timing:
            self._point(p0, self._head, t)
            if self._fit is not None:
                self._head_dev = self._dev(self._head, t)

    def _stale(self, p: int, c: int, t: float) -> None:
        """A packet at or behind the head: a duplicate, late, held back or replayed."""
        self.stats["stale"] += 1
        slot = p & self._mask
        seen = p < self._head - self._mask or self._ring_pos[slot] == p
        if not seen:
            self._ring_pos[slot] = p
        run = self._run
        if run is None:
            run = self._run = _Open("replay", self._head + 1, self._head + 1, None, n=0, seen=0, lo=p, hi=p,
                                    c_lo=c, c_hi=c, head=self._head)
        d = run.data
        d["n"] += 1
        d["seen"] += int(seen)
        if p < d["lo"]:
            d["lo"], d["c_lo"] = p, c
        if p > d["hi"]:
            d["hi"], d["c_hi"] = p, c
        self._describe_run(run)
        if d["n"] == self.min_run:
            self._raise(run)

    def _describe_run(self, run: _Open) -> None:
        d, rate = run.data, self.packet_rate
        n, replay = d["n"], d["seen"] * 2 >= d["n"]
        run.what = "replay" if replay else "resequence"
        if replay:  # the live stream was at the head when the old packets came in
            run.start, run.end = d["head"] + 1, d["head"] + 1 + n
        else:  # held-back packets belong where their numbers say, up to where the stream had got
            run.start, run.end = d["lo"], max(d["head"] + 1, d["lo"] + n)
        run.score = n / (n + self.min_run)
        back = (d["head"] + 1 - d["lo"]) / rate
        run.evidence = (f"{self._label()}{n} packets in a row with sequence numbers {d['c_lo']}..{d['c_hi']} "
                        + (f"already delivered {back:.2f} s of stream earlier" if replay else
                           f"skipped {back:.2f} s of stream earlier, arriving after later ones")
                        + f" (an ordinary link repeats or reorders single packets; run >= {self.min_run} flagged)")

    def _end_run(self) -> None:
        run, self._run = self._run, None
        if run is not None and run.data["n"] >= self.min_run:
            self._close(run)

    # -- payloads --------------------------------------------------------------------------------
    def _sampled(self, p: int, h) -> None:
        """A fresh packet whose fingerprint falls in the index sample."""
        back = np.arange(p - _RECENT_REPEATS, p, dtype=np.int64)
        slots = back & self._mask
        if np.any((self._ring_pos[slots] == back) & (self._ring_fp[slots] == h)):
            return  # held values (a railed input): content that repeats by itself
        key = int(h)
        q = self._index.get(key)
        replay = self._replay
        if q is None or q >= p:
            self._index[key] = p
            if replay is not None and self._ends_replay(p, replay):
                self._close_replay(p)
            return
        offset = p - q
        if replay is not None:
            if offset == replay.data["offset"]:
                replay.data["matches"] += 1
                replay.data["misses"] = 0
                replay.end = p + 1
                self._describe_replay(replay)
                return
            self._close_replay(p)
        self._matches.append((p, offset))
        horizon = p - _SCATTER_WINDOW_S * self.packet_rate
        while self._matches and self._matches[0][0] < horizon:
            self._matches.popleft()
        same = [m for m in self._matches if m[1] == offset]
        if len(same) >= _MIN_MATCHES:
            self._matches = collections.deque(m for m in self._matches if m[1] != offset)
            first = self._extend(same[0][0], offset, -1)
            replay = self._replay = _Open("payload-replay", first, p + 1, None, offset=offset, matches=len(same),
                                          misses=0)
            self._describe_replay(replay)
            self._raise(replay)
        elif len(self._matches) >= _SCATTER_MIN and len({m[1] for m in self._matches}) >= _SCATTER_MIN:
            first = self._matches[0][0]
            n = len(self._matches)
            forged = _Open("payload-forgery", first, p + 1, None)
            forged.score = n / (n + _SCATTER_MIN)
            forged.evidence = (f"{self._label()}{n} sampled packets within {(p - first) / self.packet_rate:.0f} s "
                               f"repeat the content of earlier packets byte for byte under new sequence numbers "
                               f"(offsets {', '.join(str(m[1]) for m in list(self._matches)[:5])} packets)")
            self._matches.clear()
            self._raise(forged)
            self._close(forged)

    def _ends_replay(self, p: int, replay: _Open) -> bool:
        """Whether new content at ``p`` ends the replay: its source was delivered and differs (a source
        packet lost on the way in proves nothing), or, beyond the horizon, the second miss in a row."""
        b = p - replay.data["offset"]
        if b >= 0 and self._ring_pos[b & self._mask] == b:
            return True
        replay.data["misses"] += 1
        return b >= 0 and p - b > self._mask and replay.data["misses"] >= 2

    def _extend(self, p: int, offset: int, step: int) -> int:
        """Walk from ``p`` while packets equal those ``offset`` before them (exact ends of a replay);
        positions missing on either side (lost) are stepped over."""
        limit = 8 * int(self._stride) + _RECENT_REPEATS
        last = p
        for _ in range(limit):
            p += step
            b = p - offset
            if b < 0 or (step > 0 and p > self._head):
                break
            sa, sb = p & self._mask, b & self._mask
            if self._ring_pos[sa] != p or self._ring_pos[sb] != b:
                continue
            if self._ring_fp[sa] != self._ring_fp[sb]:
                break
            last = p
        return last

    def _describe_replay(self, replay: _Open) -> None:
        d = replay.data
        replay.score = d["matches"] / (d["matches"] + _MIN_MATCHES)
        replay.evidence = (f"{self._label()}packet contents repeat, byte for byte, those "
                           f"{d['offset'] / self.packet_rate:.2f} s of stream earlier ({d['matches']} sampled "
                           f"packets at one offset; the sequence numbers run on, so the data were renumbered)")

    def _close_replay(self, p_next: int | None = None) -> None:
        replay, self._replay = self._replay, None
        last = replay.end - 1
        replay.end = self._extend(last, replay.data["offset"], +1) + 1
        if p_next is not None:
            replay.end = min(replay.end, p_next)
        self._describe_replay(replay)
        self._close(replay)

    # -- timing ----------------------------------------------------------------------------------
    def _lag(self, p, t: float):
        return (t - self._t0) - p / self.packet_rate

    def _predict(self, x: float) -> tuple:
        """Expected raw lag at stream time ``x`` (s) and the deviation allowed there."""
        xbar, ybar, slope, tol, slope_sd = self._fit
        reach = abs(x - xbar) * min(6.0 * slope_sd, 2.0 * self.max_drift)
        return self._offset + ybar + slope * (x - xbar), tol + reach

    def _dev(self, p: int, t: float) -> float:
        pred, _ = self._predict(p / self.packet_rate)
        return self._lag(p, t) - pred

    def _x_at(self, t: float) -> float:
        """Stream time (s) of a packet arriving at ``t`` with the baseline's lag."""
        xbar, ybar, slope, _, _ = self._fit
        a = self._offset + ybar - slope * xbar
        return ((t - self._t0) - a) / (1.0 + slope)

    def _last_x(self) -> float:
        return (self._top + 1) / self.packet_rate

    def _point(self, p_first: int, p_last: int, t: float) -> None:
        """Fresh packets ``p_first..p_last`` arrived by ``t``: the last of them has the least lag."""
        b = int((t - self._t0) // self.bin_s)
        lag = self._lag(p_last, t)
        cur = self._bin
        if cur is not None and cur[0] != b:
            self._close_bin()
            cur = None
        if cur is None:
            self._bin = [b, lag, p_last / self.packet_rate, p_first / self.packet_rate]
        elif lag < cur[1]:
            cur[1], cur[2] = lag, p_last / self.packet_rate

    def _close_bin(self) -> None:
        cur, self._bin = self._bin, None
        if cur is None or not self.check_timing:
            return
        _, lag, x, x_first = cur
        if self._warming:
            self._warm.append((x, lag))
            self._warming -= 1
            if not self._warming:
                if self._fit is not None:  # after a restart: the same clock, a new level
                    self._offset += min(lag - self._predict(x)[0] for x, lag in self._warm)
                for x, lag in self._warm:
                    self._base.append((x, lag - self._offset))
                self._warm = []
                self._refit(force=True)
            return
        pred, allow = self._predict(x)
        dev = lag - pred
        self._bin_dev = dev
        if self._timing is not None:
            self._follow_timing(x_first, x, dev, allow)
            return
        self._tested += 1
        self._devrun = [b for b in self._devrun if self._tested - b[4] < _OPEN_WITHIN]
        if abs(dev) <= allow:
            self._history.append((x, dev))
            self._recent.append((x, lag - self._offset))
            while len(self._recent) > _GUARD_BINS:
                self._base.append(self._recent.popleft())
                self._refit()
            return
        if self._devrun and (self._devrun[-1][2] > 0) != (dev > 0):
            self._devrun = []
        self._devrun.append((x_first, x, dev, allow, self._tested))
        if len(self._devrun) >= 2:  # two bins off the line, of the same sign, within a few
            self._open_timing()

    def _refit(self, force: bool = False) -> None:
        self._since_fit += 1
        n = len(self._base)
        if not force and n > 60 and self._since_fit < 10:
            return
        self._since_fit = 0
        xy = np.asarray(self._base, dtype=np.float64)
        x, y = xy[:, 0], xy[:, 1]
        xbar = float(x.mean())
        sxx = float(np.sum((x - xbar) ** 2))
        slope = 0.0
        if n >= 4 and sxx > 0:
            slope = float(np.polyfit(x - xbar, y, 1)[0])
            for _ in range(2 if n >= 8 else 0):  # refit on the least-delayed half: the lower envelope
                r = y - slope * (x - xbar)
                low = (r <= np.median(r)) & (r >= np.quantile(r, 0.1))  # (not the earliest: impossible)
                if low.sum() < 4 or np.ptp(x[low]) == 0:
                    break
                slope = float(np.polyfit(x[low] - xbar, y[low], 1)[0])
            slope = min(max(slope, -self.max_drift), self.max_drift)
        r = y - slope * (x - xbar)
        low = r <= np.median(r)
        ybar = float(np.median(r[low])) if n >= 8 else float(r.min())
        spread = 1.4826 * float(np.median(np.abs(r - np.median(r)))) if n >= 4 else 0.0
        slope_sd = spread / math.sqrt(sxx) if sxx > 0 else math.inf
        self._fit = (xbar, ybar, slope, max(self.tolerance_s, 8.0 * spread), slope_sd)

    def _open_timing(self) -> None:
        bins = [b[:4] for b in self._devrun]
        self._devrun = []
        # the deviation began after the last bin on the other side of the clock line
        late = bins[0][2] > 0
        lower = bins[0][0] - 30.0
        for x, dev in reversed(self._history):
            if (dev <= 0) if late else (dev >= 0):
                lower = x
                break
        if self._realign(bins, lower):
            return
        self._recent.clear()
        x0 = self._timing_onset(bins, lower)
        tw = self._timing = _Open("clock-jump", x0 * self.packet_rate, bins[-1][1] * self.packet_rate, None,
                                  bins=list(bins), lower=lower)
        self._describe_timing(tw, bins)
        self._raise(tw)

    def _realign(self, bins: list, lower: float) -> bool:
        """A step of whole counter cycles right after a silence of half a cycle or more: cycles were lost
        (or a stall's backlog misread) without the counter showing it. Move the positions on by those
        cycles instead of raising (a forger's cut or insertion needs no silence); True if done."""
        cycle = self.modulus / self.packet_rate * (1.0 + self._fit[2])
        devs = np.array([b[2] for b in bins])
        k = int(round(float(np.median(devs)) / cycle))
        if k == 0 or np.any(np.abs(devs - k * cycle) > np.array([b[3] for b in bins])):
            return False
        # the step began at the silence: no bin on the clock line came between them
        last_normal = self._history[-1][0] if self._history else -math.inf
        if not any(last_normal - 1.0 / self.packet_rate <= x <= bins[0][1] for x in self._silences):
            return False
        if bins[0][1] - self._realigned_at < _REALIGN_EVERY_S:
            return False  # whole cycles again so soon: not chance, a pattern (blocks of about a cycle)
        self._realigned_at = bins[-1][1]
        self._head += k * self.modulus
        self._top += k * self.modulus
        self._pending = None
        self._head_dev -= k * cycle
        self.stats["realigned"] += 1
        return True

    def _follow_timing(self, x_first: float, x: float, dev: float, allow: float) -> None:
        tw = self._timing
        bins = tw.data["bins"]
        if abs(dev) <= allow:  # back on the clock line (e.g. the forger caught up)
            self._close_timing(x_first, settled=None)
            return
        bins.append((x_first, x, dev, allow))
        tw.end = x * self.packet_rate
        last = bins[-_SETTLE_BINS:]
        devs = [b[2] for b in last]
        if len(bins) > _SETTLE_BINS and max(devs) - min(devs) <= allow / 4:
            self._close_timing(last[0][0], settled=float(np.mean(devs)))
        else:
            self._describe_timing(tw, bins)

    @staticmethod
    def _growth(bins: list) -> int:
        """Bins it took the deviation to reach 80 % of its largest (0: a step)."""
        ds = np.abs([b[2] for b in bins])
        return int(np.argmax(ds >= 0.8 * ds.max()))

    def _timing_onset(self, bins: list, lower: float) -> float:
        """Stream time where the deviation began: a ramp's zero crossing, or a step's first bin."""
        first = bins[0][0]
        k = self._growth(bins)
        if k >= 2:
            xs = np.array([b[1] for b in bins[: k + 1]])
            ds = np.array([b[2] for b in bins[: k + 1]])
            s, a = np.polyfit(xs, ds, 1)
            if s != 0 and np.sign(s) == np.sign(ds[-1]):
                return float(min(max(-a / s, lower), first))
        return first

    def _describe_timing(self, tw: _Open, bins: list) -> None:
        ds = np.array([b[2] for b in bins])
        big = int(np.argmax(np.abs(ds)))
        z = abs(ds[big]) / bins[big][3]
        tw.score = z / (1.0 + z)
        k = self._growth(bins)
        warped = k >= 2
        tw.what = "time-warp" if warped else "clock-jump"
        if warped:
            slope = float(np.polyfit([b[1] for b in bins[: k + 1]], ds[: k + 1], 1)[0])
            how = f"delivered at about {1.0 / (1.0 + slope):.3f} x the device's sample rate"
        elif ds[big] > 0:
            how = "samples missing without a counter gap, or the sample clock jumped"
        else:
            how = "more samples than time allows: inserted, or the sample clock jumped"
        tw.evidence = (f"{self._label()}packets arrived up to {ds[big]:+.2f} s off the device's sample clock "
                       f"(allowed {bins[big][3]:.2f} s, from latency jitter and a crystal within "
                       f"{self.max_drift:.1%}): {how}")

    def _close_timing(self, x_end: float, settled: float | None) -> None:
        tw, self._timing = self._timing, None
        bins = tw.data["bins"]
        if settled is not None:
            self._offset += settled  # the stream goes on at the new level
            ramp = bins[: max(1, len(bins) - _SETTLE_BINS)]
            k = self._growth(bins)
            if k >= 2:  # a ramp ends where it meets the new level
                s, a = np.polyfit([b[1] for b in bins[: k + 1]], [b[2] for b in bins[: k + 1]], 1)
                if s != 0:
                    x_end = min(max((settled - a) / s, bins[k][1]), x_end)
        else:
            ramp = bins
        tw.start = self._timing_onset(ramp, tw.data["lower"]) * self.packet_rate
        tw.end = max(x_end * self.packet_rate, tw.start + 1)
        self._describe_timing(tw, bins)
        self._close(tw)
        self._recent.clear()
        self._devrun = []

    # -- bookkeeping -----------------------------------------------------------------------------
    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

    def _snapshot(self, o: _Open) -> StreamAnomaly:
        start = o.start / self.packet_rate
        return StreamAnomaly(start, max((o.end - o.start) / self.packet_rate, 1.0 / self.packet_rate), o.what,
                             o.evidence, float(min(max(o.score, 0.0), 1.0)))

    def _raise(self, o: _Open) -> None:
        if o.index is None:
            o.index = self._n_raised
            self._n_raised += 1
            self._live.append(o)
            self._new.append(o)

    def _close(self, o: _Open) -> None:
        self._raise(o)
        self._live = [x for x in self._live if x is not o]
        self._done.append(self._snapshot(o))

    def _raised(self) -> list:
        new, self._new = self._new, []
        return [self._snapshot(o) for o in new]


def merge_anomalies(anomalies, gap_s: float = 5.0) -> list:
    """Merge anomalies that overlap or lie within ``gap_s`` of each other: one forged episode.

    The merged anomaly spans the union; it keeps the strongest part's ``what``, score and evidence,
    and the evidence names the other kinds found over it.

    Parameters
    ----------
    anomalies : iterable of StreamAnomaly
        Of one stream, or of streams carrying the same samples (Muse electrodes).
    gap_s : float, optional
        Largest gap in s between two anomalies merged, by default 5.

    Returns
    -------
    list of StreamAnomaly
        Sorted by onset.
    """
    out: list = []
    for a in sorted(anomalies, key=lambda a: (a.onset_s, -a.score)):
        if out and a.onset_s <= max(b.end_s for b in out[-1]) + gap_s:
            out[-1].append(a)
        else:
            out.append([a])
    merged = []
    for group in out:
        best = max(group, key=lambda a: a.score)
        end = max(a.end_s for a in group)
        onset = min(a.onset_s for a in group)
        others = sorted({a.what for a in group} - {best.what})
        evidence = best.evidence + (f"; also {', '.join(others)}" if others else "")
        merged.append(StreamAnomaly(onset, end - onset, best.what, evidence, best.score))
    return merged


class DecoderAudit:
    """Audits every numbered stream of a decoder, fed through its ``on_packets`` hook.

    Parameters
    ----------
    decoder : ingest.decoder.Decoder
        A decoder with ``packet_rate`` and ``counter_modulus`` (Cyton, Ganglion, Muse); its
        ``on_packets`` is set to this audit.
    names : dict, optional
        Name of each source index, for evidence strings.
    **options
        Passed to every :class:`StreamAudit` (e.g. ``check_timing=False``).

    Attributes
    ----------
    audits : dict of int -> StreamAudit
        One per source that has sent numbered packets.
    """

    def __init__(self, decoder, names: dict | None = None, **options):
        if not getattr(decoder, "counter_modulus", 0):
            raise ValueError(f"{type(decoder).__name__} reports no packet counter to audit")
        self.decoder = decoder
        self.names = dict(names or {})
        self.options = options
        self.audits: dict = {}
        self.host_time = 0.0
        self._new: list = []
        self._alarmed: list = []  # recent live alarms
        decoder.on_packets = self._on_packets

    def at(self, host_time: float) -> None:
        """The host time (s) of the chunk about to be fed to the decoder."""
        self.host_time = float(host_time)

    def feed(self, payload: bytes, source: int, host_time: float) -> list:
        """Feed a chunk to the decoder at ``host_time``; returns the decoder's runs."""
        self.at(host_time)
        return self.decoder.feed(payload, source)

    def _on_packets(self, source: int, counters, content) -> None:
        audit = self.audits.get(source)
        if audit is None:
            behind = getattr(self.decoder, "counter_behind", 0) or None
            audit = self.audits[source] = StreamAudit(self.decoder.packet_rate, self.decoder.counter_modulus,
                                                      behind=behind, name=self.names.get(source, ""),
                                                      **self.options)
        self._new += audit.observe(counters, self.host_time, content)

    def raised(self) -> list:
        """Anomalies raised since the last call (live alarms), in the order raised; one alarm per
        episode (streams carrying the same samples, the Muse electrodes, raise it once)."""
        new, self._new = self._new, []
        out = []
        for a in new:
            if not any(a.onset_s <= b.end_s + 5.0 and b.onset_s <= a.end_s + 5.0 for b in self._alarmed):
                out.append(a)
                self._alarmed = (self._alarmed + [a])[-16:]
        return out

    def restart(self) -> None:
        """The device began a new stream: call wherever the decoder is restarted."""
        for audit in self.audits.values():
            audit.restart()

    def finish(self) -> list:
        """Close every stream; returns :attr:`anomalies`."""
        for audit in self.audits.values():
            audit.finish()
        return self.anomalies

    @property
    def anomalies(self) -> list:
        """Anomalies of all streams, merged where they overlap, sorted by onset."""
        return merge_anomalies(a for audit in self.audits.values() for a in audit.anomalies)


def audit_capture(path, **options) -> list:
    """Audit a raw capture (:mod:`ingest.capture`) through the decoder it was recorded with.

    Parameters
    ----------
    path : str or PathLike
    **options
        Passed to every :class:`StreamAudit`.

    Returns
    -------
    list of StreamAnomaly
        Sorted by onset; onsets in s of stream time from the first sample.
    """
    from .boards import decoder_for
    from .capture import FROM_HOST, RESTART, CaptureReader

    with CaptureReader(path) as reader:
        decoder = decoder_for(reader.header)
        audit = DecoderAudit(decoder, **options)
        for record in reader:
            if record.source == FROM_HOST:
                decoder.on_command(record.payload)
            elif record.source == RESTART:
                decoder.restart()
                audit.restart()
            else:
                audit.feed(record.payload, record.source, record.host_time)
    return audit.finish()
