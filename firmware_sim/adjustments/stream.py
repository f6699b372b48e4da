"""Stream-level forgery: a man in the middle replays, re-sequences or time-warps a device's packets.

Where :mod:`.tampering` edits the recorded signal, these forgers act on the packets between the
device and the host, as a ``packet_filter`` of the emulated transports (like
:class:`~firmware_sim.faults.PacketFaults`): the Cyton firmware's ``packet_filter`` (served by
:class:`~firmware_sim.serial_pty.PtySerialServer`) and :class:`~firmware_sim.ble.EmulatedDevice`'s
(one instance per characteristic, see :func:`per_characteristic`). Each sees the device's packets in
order, in batches, and returns what goes on to the host:

- ``replay``: from ``onset_s`` for ``duration_s``, the live packets are swallowed and packets sent
  ``source_back_s`` earlier go out instead, byte for byte (their old sequence numbers), or with the
  live sequence numbers written in (``renumber=True``: the counter runs on, only the content lies).
- ``resequence``: over the episode, every two consecutive blocks of ``block_s`` are swapped: the first
  is held back and sent (in one burst) after the second, with their own sequence numbers.
- ``warp``: a segment of ``duration_s`` reaches the host at ``factor`` times the device's rate.
  Slower (``factor < 1``): it is held in a buffer and released at that rate; the stream then stays
  behind by what accumulated. Faster (``factor > 1``): extra packets (copies of the one before,
  renumbered) are slipped in and every later packet renumbered, so the counter stays continuous but
  more samples arrive than the device's clock made.

Every episode is logged (:attr:`StreamForgery.truth`) like the signal-level adjustments:
``{"kind": "tampering", "onset": s, "duration": s, "params": {...}}``, with onset and duration in s of
stream time (positions of the packets the host numbers them by, over the packet rate) from the first
packet the filter saw.

Example: a Cyton whose stream is replayed for 30 s from 2 min in::

    forger = StreamForgery("replay", onset_s=120, duration_s=30, **CYTON)
    firmware = CytonFirmware(source, packet_filter=chain(forger, PacketFaults(FaultSpec(loss=0.01))))
"""

from __future__ import annotations

from dataclasses import dataclass, field

_MODES = ("replay", "resequence", "warp")


@dataclass(frozen=True)
class SequenceField:
    """Where a protocol keeps its packet counter.

    Parameters
    ----------
    offset : int
        First byte of the counter in a packet.
    width : int
        Bytes of the counter (big-endian).
    modulus : int
        Where the counter wraps; higher raw values keep their multiple of ``modulus`` (Ganglion ids
        100..199 are positions 0..99 of the 19-bit range).
    limit : int or None
        Largest raw value of a data packet; packets above it (Ganglion impedance, messages) are
        passed through untouched.
    """

    offset: int
    width: int
    modulus: int
    limit: int | None = None

    def number(self, packet: bytes) -> int | None:
        """The packet's counter, or None when it is not a data packet."""
        if len(packet) < self.offset + self.width:
            return None
        raw = int.from_bytes(packet[self.offset:self.offset + self.width], "big")
        if self.limit is not None and raw > self.limit:
            return None
        return raw % self.modulus

    def renumber(self, packet: bytes, number: int) -> bytes:
        """The packet with its counter set to ``number`` (mod ``modulus``)."""
        raw = int.from_bytes(packet[self.offset:self.offset + self.width], "big")
        value = raw - raw % self.modulus + number % self.modulus
        return packet[:self.offset] + value.to_bytes(self.width, "big") + packet[self.offset + self.width:]


#: Counter and packet rate of each protocol, to pass as ``**CYTON`` etc.
CYTON = {"counter": SequenceField(1, 1, 256), "packet_rate": 250.0}
GANGLION = {"counter": SequenceField(0, 1, 100, limit=199), "packet_rate": 100.0}  # firmware 3
MUSE = {"counter": SequenceField(0, 2, 0x10000), "packet_rate": 256.0 / 12}  # per EEG characteristic


@dataclass
class StreamForgery:
    """A ``packet_filter`` that forges one episode of a packet stream, with a ground-truth log.

    Parameters
    ----------
    mode : {"replay", "resequence", "warp"}
        See the module notes.
    counter : SequenceField
        The protocol's counter (:data:`CYTON`, :data:`GANGLION`, :data:`MUSE`).
    packet_rate : float
        Packets per second the device sends (converts the times below to packets).
    onset_s : float
        Stream time of the first forged packet, in s from the first packet the filter sees, by
        default 120.
    duration_s : float
        Length of the episode in s of device time, by default 30 (tampered segments of interest
        last 30 s or more).
    source_back_s : float
        Replay: how far back the replayed packets were sent, in s, by default 60 (rounded to an even
        number of packets, so a Daisy's packet pairs stay paired).
    renumber : bool
        Replay: write the live sequence numbers into the replayed packets, by default False.
    block_s : float
        Resequence: length of each swapped block in s, by default 0.25 (blocks of about a counter
        cycle, 1 s on a Cyton or Ganglion, are told from losses by the arrival times only).
    factor : float
        Warp: delivered rate over the device's rate, by default 0.9 (> 0, not 1).

    Attributes
    ----------
    truth : list of dict
        One record per episode begun: ``{"kind": "tampering", "onset", "duration", "params"}``
        (params: ``layer`` "stream", ``mode``, ``first_packet``, ``packets`` and the mode's settings).
    offered : int
        Data packets seen so far (the device's order).
    """

    mode: str
    counter: SequenceField
    packet_rate: float
    onset_s: float = 120.0
    duration_s: float = 30.0
    source_back_s: float = 60.0
    renumber: bool = False
    block_s: float = 0.25
    factor: float = 0.9
    truth: list = field(default_factory=list)
    offered: int = 0

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"stream forgery mode must be one of {_MODES}, got {self.mode!r}")
        if not (self.packet_rate > 0 and self.duration_s > 0 and self.onset_s >= 0):
            raise ValueError("packet_rate and duration_s must be positive, onset_s >= 0")
        if self.mode == "warp" and not (self.factor > 0 and self.factor != 1):
            raise ValueError(f"warp factor must be positive and not 1, got {self.factor}")
        self._first = int(round(self.onset_s * self.packet_rate))
        self._n = max(1, int(round(self.duration_s * self.packet_rate)))
        back = 2 * int(round(self.source_back_s * self.packet_rate / 2))
        if self.mode == "replay" and not 0 < back <= self._first:
            raise ValueError("replay: the source must lie after the start of the stream and before the onset")
        self._back = back
        self._block = max(1, int(round(self.block_s * self.packet_rate)))
        self._kept: dict = {}  # replay: source packets by device index
        self._held: list = []  # resequence: the block held back; warp: the delivery queue
        self._released = 0  # warp (slower): episode packets released so far
        self._shift = 0  # warp (faster): packets inserted so far (later counters move on by this)

    def __call__(self, packets: list) -> list:
        """Forge a batch of packets (bytes, in the device's order); returns what reaches the host."""
        out: list = []
        for packet in packets:
            number = self.counter.number(packet)
            if number is None:  # not a data packet: left alone
                out.append(packet)
                continue
            i = self.offered
            self.offered += 1
            if i == self._first:
                self._log()
            getattr(self, f"_{self.mode}")(i, bytes(packet), number, out)
        return out

    # -- modes -----------------------------------------------------------------------------------
    def _replay(self, i: int, packet: bytes, number: int, out: list) -> None:
        source = self._first - self._back
        if source <= i < source + self._n:
            self._kept[i] = packet
        if self._first <= i < self._first + self._n:
            old = self._kept.pop(i - self._back)
            out.append(self.counter.renumber(old, number) if self.renumber else old)
        else:
            out.append(packet)

    def _resequence(self, i: int, packet: bytes, number: int, out: list) -> None:
        k = i - self._first
        if not 0 <= k < self._n:
            out.append(packet)
            return
        if (k // self._block) % 2 == 0:  # first of a pair: held back
            self._held.append(packet)
        else:
            out.append(packet)
        if k % (2 * self._block) == 2 * self._block - 1 or k == self._n - 1:
            out.extend(self._held)  # the held block follows the one after it
            self._held = []

    def _warp(self, i: int, packet: bytes, number: int, out: list) -> None:
        if self.factor > 1:
            self._insert(i, packet, number, out)
            return
        if i < self._first:
            out.append(packet)
            return
        self._held.append(packet)
        if self._released < self._n:  # the segment leaves at factor x the device's rate
            due = min(self._n, int((i - self._first + 1) * self.factor + 1e-9))
            while self._released < due and self._held:
                out.append(self._held.pop(0))
                self._released += 1
        else:  # then the stream goes on, behind by what the segment accumulated
            out.append(self._held.pop(0))

    def _insert(self, i: int, packet: bytes, number: int, out: list) -> None:
        out.append(self.counter.renumber(packet, number + self._shift) if self._shift else packet)
        if self._first <= i < self._first + self._n:
            due = int((i - self._first + 1) * (self.factor - 1.0) + 1e-9)
            while self._shift < due:
                self._shift += 1
                out.append(self.counter.renumber(packet, number + self._shift))  # a copy, numbered on

    # -- truth -----------------------------------------------------------------------------------
    def _log(self) -> None:
        rate, n = self.packet_rate, self._n
        params = {"layer": "stream", "mode": self.mode, "first_packet": self._first, "packets": n}
        duration = n / rate
        if self.mode == "replay":
            params.update(source_onset=(self._first - self._back) / rate, source_duration=n / rate,
                          renumbered=bool(self.renumber))
        elif self.mode == "resequence":
            params.update(block_packets=self._block, block_s=self._block / rate)
        else:
            params.update(warp_factor=float(self.factor), delivered_s=n / rate / self.factor)
            if self.factor > 1:  # inserted packets take stream positions too
                duration = (n + int(n * (self.factor - 1.0) + 1e-9)) / rate
        self.truth.append({"kind": "tampering", "onset": self._first / rate, "duration": duration,
                           "params": params})


def per_characteristic(uuids, **settings) -> dict:
    """One :class:`StreamForgery` per characteristic, all alike (the ``packet_filter`` dict of
    :class:`~firmware_sim.ble.EmulatedDevice`: each characteristic numbers its packets itself)."""
    return {uuid: StreamForgery(**settings) for uuid in uuids}


def chain(*filters):
    """A ``packet_filter`` applying ``filters`` in turn (e.g. a forger, then the link's faults)."""

    def apply(packets: list) -> list:
        for f in filters:
            packets = list(f(list(packets)))
        return packets

    return apply
