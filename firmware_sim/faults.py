"""Faults on demand: what goes wrong between the electrode and the host.

- Wire faults act on batches of packets as they leave the emulated device (``PacketFaults`` is the
  ``packet_filter`` the serial and BLE servers accept): random and burst loss, byte corruption,
  duplication, reordering. Every fault is logged, so a test can check that a driver delivers exactly
  the samples sent minus the ones it reports lost.
- Link faults: disconnects at random times (``disconnect_schedule``), served by the transports.
- Clock drift: the device's crystal off its nominal rate (``FaultSpec.drift``), served as the
  transports' ``rate_error``.
- Signal faults act on samples (``apply_signal_faults``): an electrode railed at the ADC limit or
  flat (disconnected), from a given time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

#: The largest input a 24-bit ADS1299 at gain 24 reports, in uV (4.5 V / 24): where railed channels sit.
RAIL_UV = 187_500.0


@dataclass
class FaultSpec:
    """Which faults to inject, and how often.

    Parameters
    ----------
    loss : float
        Probability that a packet is lost, independently of the others (0..1).
    burst : float
        Probability per packet that a burst of consecutive losses starts (0..1).
    burst_packets : int
        Mean burst length in packets (geometric).
    corrupt : float
        Probability that a packet arrives with one byte changed (0..1).
    duplicate : float
        Probability that a packet arrives twice (0..1).
    reorder : float
        Probability that a packet arrives after the next one (0..1).
    forge : float
        Probability that a packet's content is forged (tampering): its payload is replaced by an
        earlier packet's while its framing and sequence bytes are kept, so the stream stays
        consistent and only the content lies (0..1).
    disconnect_every : float
        Mean time between link drops in seconds (0 = never).
    disconnect_seconds : float
        How long the link stays down, in seconds.
    drift : float
        Relative error of the device's sample clock, e.g. 0.003 = 0.3 % fast (|drift| <= 0.005).
    railed, flat : str
        Label of a channel that is railed at the ADC limit / flat, from ``fault_onset`` on ("" = none).
    fault_onset : float
        Seconds from the start when the railed/flat electrode fails.
    """

    loss: float = 0.0
    burst: float = 0.0
    burst_packets: int = 20
    corrupt: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    forge: float = 0.0
    disconnect_every: float = 0.0
    disconnect_seconds: float = 5.0
    drift: float = 0.0
    railed: str = ""
    flat: str = ""
    fault_onset: float = 0.0

    def __post_init__(self):
        for name in ("loss", "burst", "corrupt", "duplicate", "reorder", "forge"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"fault {name}={getattr(self, name)} must be a probability between 0 and 1")
        if abs(self.drift) > 0.005:
            raise ValueError(f"drift={self.drift} is outside +/-0.5 %")
        if self.burst_packets < 1 or self.disconnect_every < 0 or self.disconnect_seconds < 0 or self.fault_onset < 0:
            raise ValueError("burst_packets must be >= 1; times must be >= 0")

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        """From ``"loss=0.01,burst=0.001,drift=0.003,railed=EEG C3"`` (the CLI's ``--faults``).

        Raises
        ------
        ValueError
            For an unknown name or a value of the wrong type or range.
        """
        known = {f.name: type(f.default) for f in fields(cls)}
        values: dict = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise ValueError(f"unknown fault {part!r}; known: {', '.join(known)} (as name=value)")
            kind = known[name]
            try:
                values[name] = kind(value.strip())
            except ValueError:
                raise ValueError(f"fault {name} needs a {kind.__name__}, got {value!r}") from None
        return cls(**values)

    @property
    def wire_faults(self) -> bool:
        """True when any fault acts on packets or the link (needs a transport to show)."""
        return any((self.corrupt, self.duplicate, self.reorder, self.forge, self.disconnect_every))

    def to_dict(self) -> dict:
        """The spec as plain values, for truth files."""
        return asdict(self)


@dataclass
class PacketFaults:
    """A ``packet_filter`` applying a :class:`FaultSpec` to batches of packets, with a log.

    Parameters
    ----------
    spec : FaultSpec
    seed : int or None
        Seeds the faults (independently of the signals).

    Attributes
    ----------
    sent : int
        Packets offered so far (the index of the next packet in the device's own order).
    lost : list of (int, int)
        Runs of lost packets: (first packet index, count).
    keep_head, keep_tail : int
        Bytes a forged packet keeps from the real one at its start and end (framing, sequence number):
        Cyton 2 and 1, Ganglion 1 and 0, Muse 2 and 0.
    corrupted, duplicated, reordered, forged : list of int
        Indices of packets so treated.
    """

    spec: FaultSpec
    seed: int | None = 0
    keep_head: int = 2  # bytes of framing/sequence a forger keeps at the start (Cyton: start + counter)
    keep_tail: int = 1  # ... and at the end (Cyton: the stop byte)
    sent: int = 0
    lost: list = field(default_factory=list)
    corrupted: list = field(default_factory=list)
    duplicated: list = field(default_factory=list)
    reordered: list = field(default_factory=list)
    forged: list = field(default_factory=list)

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)
        self._burst_left = 0  # packets of a burst still to lose in the next call
        self._history: list = []  # recent genuine packets a forger can pass off again

    @property
    def packets_lost(self) -> int:
        """Total packets lost so far."""
        return sum(n for _, n in self.lost)

    def __call__(self, packets: list) -> list:
        """Apply the faults to a batch of packets (bytes), returning what reaches the host."""
        spec, rng = self.spec, self._rng
        first = self.sent
        keep = ~self.lost_mask(len(packets))
        out: list = []
        order: list = []  # each delivered packet's index in the device's order
        for i in np.flatnonzero(keep):
            packet = packets[i]
            index = first + int(i)
            if spec.corrupt and rng.random() < spec.corrupt and len(packet):
                data = bytearray(packet)
                at = int(rng.integers(0, len(data)))
                data[at] ^= int(rng.integers(1, 256))  # never a no-op
                packet = bytes(data)
                self.corrupted.append(index)
            if spec.forge and self._history and rng.random() < spec.forge:
                packet = self._forge(packet)
                self.forged.append(index)
            else:
                self._history = (self._history + [packet])[-256:]
            out.append(packet)
            order.append(index)
            if spec.duplicate and rng.random() < spec.duplicate:
                out.append(packet)
                order.append(index)
                self.duplicated.append(index)
        if spec.reorder:  # a packet arrives one place late; swaps never chain
            j = 0
            while j < len(out) - 1:
                if order[j] != order[j + 1] and rng.random() < spec.reorder:
                    out[j], out[j + 1] = out[j + 1], out[j]
                    order[j], order[j + 1] = order[j + 1], order[j]
                    self.reordered.append(order[j + 1])
                    j += 1
                j += 1
        return out

    def _forge(self, packet: bytes) -> bytes:
        """The real packet's framing and sequence bytes around an older packet's content."""
        old = self._history[int(self._rng.integers(0, len(self._history)))]
        head, tail = self.keep_head, len(packet) - self.keep_tail
        if len(old) != len(packet) or tail <= head:
            return packet
        return packet[:head] + old[head:tail] + packet[tail:]

    def _log_runs(self, indices: np.ndarray) -> None:
        if indices.size == 0:
            return
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        for run in np.split(indices, breaks):
            first = int(run[0])
            if self.lost and self.lost[-1][0] + self.lost[-1][1] == first:
                self.lost[-1] = (self.lost[-1][0], self.lost[-1][1] + run.size)
            else:
                self.lost.append((first, int(run.size)))

    def lost_mask(self, n_packets: int) -> np.ndarray:
        """Decide loss for the next ``n_packets`` packets, shape (n_packets,) bool, and log it.

        The one loss model: random losses plus bursts, which run on into the next call. Used by
        :meth:`__call__` and directly by writers that never encode packets (``simulate`` to EDF).
        """
        spec, rng = self.spec, self._rng
        lost = rng.random(n_packets) < spec.loss
        carried = min(self._burst_left, n_packets)
        lost[:carried] = True
        self._burst_left -= carried
        if spec.burst:
            for s in np.flatnonzero(rng.random(n_packets) < spec.burst):
                length = int(rng.geometric(1.0 / spec.burst_packets))
                lost[s : s + length] = True
                self._burst_left = max(self._burst_left, s + length - n_packets)
        self._log_runs(np.flatnonzero(lost) + self.sent)
        self.sent += n_packets
        return lost

    def to_dict(self) -> dict:
        """The log as plain values, for truth files."""
        return {"packets_sent": self.sent, "packets_lost": self.packets_lost, "lost_runs": self.lost,
                "corrupted": self.corrupted, "duplicated": self.duplicated, "reordered": self.reordered,
                "forged": self.forged}


def lost_samples(faults: PacketFaults, n_samples: int, samples_per_packet: float) -> np.ndarray:
    """Which samples a packet-loss model loses, for a device carrying ``samples_per_packet`` per packet.

    Parameters
    ----------
    faults : PacketFaults
        The loss model (its log records the lost packets).
    n_samples : int
        Samples per channel in the recording.
    samples_per_packet : float
        Samples per packet (>= 1), or a fraction when one sample spans several packets (Daisy: 0.5),
        in which case a sample is lost when any of its packets is.

    Returns
    -------
    ndarray of bool, shape (n_samples,)
    """
    if samples_per_packet >= 1:
        per = int(round(samples_per_packet))
        lost = faults.lost_mask(-(-n_samples // per))
        return np.repeat(lost, per)[:n_samples]
    packets_per_sample = int(round(1 / samples_per_packet))
    return faults.lost_mask(n_samples * packets_per_sample).reshape(n_samples, packets_per_sample).any(axis=1)


def disconnect_schedule(spec: FaultSpec, seconds: float, seed: int | None = 0) -> list:
    """Times when the link drops: ``[(start_s, duration_s), ...]`` over ``seconds`` of streaming."""
    if not spec.disconnect_every:
        return []
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    while True:
        t += rng.exponential(spec.disconnect_every)
        if t >= seconds:
            return out
        out.append((t, spec.disconnect_seconds))
        t += spec.disconnect_seconds


def apply_signal_faults(data: np.ndarray, fs: float, labels, spec: FaultSpec, seed: int | None = 0) -> list:
    """Rail or flatten electrodes in place from ``spec.fault_onset`` on.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_samples)
        Signals in uV, modified in place.
    fs : float
        Sample rate in Hz.
    labels : sequence of str
        Channel labels.
    spec : FaultSpec
    seed : int or None
        Seeds the small noise on a flat channel.

    Returns
    -------
    list of dict
        Truth records ``{"kind", "onset", "duration", "channel"}``.

    Raises
    ------
    ValueError
        If a named channel is not among ``labels``.
    """
    labels = list(labels)
    start = int(round(spec.fault_onset * fs))
    records = []
    rng = np.random.default_rng(seed)
    for kind, label in (("railed_electrode", spec.railed), ("flat_electrode", spec.flat)):
        if not label:
            continue
        if label not in labels:
            raise ValueError(f"no channel {label!r} to fail; channels: {', '.join(labels)}")
        row = labels.index(label)
        if start >= data.shape[1]:
            continue
        if kind == "railed_electrode":
            data[row, start:] = RAIL_UV
        else:  # a disconnected input: the amplifier's offset and a little noise
            data[row, start:] = 0.05 * rng.standard_normal(data.shape[1] - start)
        records.append({"kind": kind, "onset": start / fs, "duration": (data.shape[1] - start) / fs, "channel": label})
    return records


class SignalFaultSource:
    """Wraps a sample source so that its electrodes rail or go flat as ``spec`` says, while streaming.

    Parameters
    ----------
    source : object with ``channels``, ``kinds``, ``fs`` and ``read(n) -> (n_channels, m)``
        For example a :class:`~firmware_sim.headband.SimulatedHeadband`.
    spec : FaultSpec
        Its ``railed``, ``flat`` and ``fault_onset`` fields are used.
    seed : int or None
        Seeds the noise on a flat channel.

    Attributes
    ----------
    records : list of dict
        Truth records of the faults that have begun.
    """

    def __init__(self, source, spec: FaultSpec, seed: int | None = 0):
        self._source = source
        self.channels, self.kinds, self.fs = source.channels, source.kinds, source.fs
        self._spec = spec
        self._seed = seed
        self._position = 0
        self.records: list = []
        for label in (spec.railed, spec.flat):
            if label and label not in self.channels:
                raise ValueError(f"no channel {label!r} to fail; channels: {', '.join(self.channels)}")

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (fewer at the end), with the faults applied."""
        data = np.array(self._source.read(n), copy=True)
        onset = self._spec.fault_onset - self._position / self.fs  # seconds into this chunk
        if onset * self.fs < data.shape[1]:
            shifted = FaultSpec(railed=self._spec.railed, flat=self._spec.flat, fault_onset=max(0.0, onset))
            for record in apply_signal_faults(data, self.fs, self.channels, shifted, self._seed):
                if not any(r["kind"] == record["kind"] for r in self.records):
                    record.update(onset=self._position / self.fs + record["onset"], duration=None)
                    self.records.append(record)
        self._position += data.shape[1]
        return data
