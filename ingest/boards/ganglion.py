"""OpenBCI Ganglion (4 channels, 200 Hz, BLE), firmware 2 and 3: decoder and board driver.

Facts from ``shared/docs/protocols.md`` (OpenBCI documentation, the Ganglion firmware, BrainFlow); the
field unpacking is checked against every vector of ``shared/vectors/openbci_ganglion``.

Every notification is 20 bytes, byte 0 the packet id::

    firmware 2   id 0          one raw sample: 4 x int24 big-endian (bytes 1..12)
                 ids 1..100    two samples as 18-bit deltas, 8 fields MSB-first; byte 19 one accelerometer axis
                 ids 101..200  two samples as 19-bit deltas; sample = previous - delta
    firmware 3   ids 0..99     two samples, the top 18 bits of each 24-bit sample; byte 19 one accelerometer axis
                 ids 100..199  two samples, the top 19 bits (absolute values)
    both         ids 201..205  impedance of channel 1..4 / reference: ASCII kOhm digits then ``Z``
                 ids 206, 207  part / last part of an ASCII message

18-bit packets come while the accelerometer is on (``n``), 19-bit ones while it is off (``N``).

Sign rule: a field's LSB is its sign (set: the value is ``field - 2**N``), the NodeJS driver's rule.
Why: it is where the firmware puts the sign (``compressData18/19`` shift the value, then overwrite bit 0
with the sign bit), so it stays right even for a firmware-2 delta too large for N bits, whose MSB is then
arbitrary; the published vectors follow it (every one reproduces exactly, BrainFlow's MSB rule does not
reproduce them); and for every value that fits in N bits MSB and LSB agree, so real boards read as with
BrainFlow to within the one LSB the firmware drops. Fields whose MSB and LSB disagree decode to
magnitudes beyond the N-bit range: in firmware 3 those samples lie beyond the ADC and the packet is
rejected as corrupt.

Scale: 1.2 V / (8388607 x 1.5 x 51) = 0.0018699499 uV per count (BrainFlow's formula, and the
emulator's). The vector file's ``uV_per_count`` 0.001869917138805 is 15686 / 8388607, the OpenBCI
documentation's form with 1.2e6 / 76.5 = 15686.27 rounded to 15686: 1.75e-5 smaller (0.27 uV at full
scale, 0.002 uV at 100 uV): the "==" the file states between the two holds to 5 significant digits.
Firmware 3 fields are the top N bits, so counts = field x 2**(24 - N) (error below 2**(25 - N) counts:
0.24 uV at 18 bits, 0.12 uV at 19); firmware 2 deltas lose their LSB, up to 200 counts (0.37 uV) by the
next raw packet. Accelerometer: signed byte x 0.016 g; firmware 2 sends X, Y, Z in packets whose level
(id) ends in 1, 2, 3, firmware 3 in ids ending in 1, 2, 0 (BrainFlow's reading). It is exposed, when
asked for, as three ACC rows at 200 Hz holding the last reading of each axis (NaN until the first one
of a stream): a reading every 10 packets, never interpolated.

Loss accounting (packet ids are the only counter)
    The data packets of a stream cycle through positions: firmware 2 ``0, 1..100`` (id 0 raw = 1
    sample, then 100 pairs: 201 samples), firmware 3 ``0..99`` (100 pairs: 200 samples); the 18/19-bit
    id ranges share positions. Packet position ``p`` carries the samples ending at ``2p`` (firmware 2)
    or ``2p + 1`` (firmware 3) of the cycle; between two accepted packets the samples lost are
    ``(first sample of the new - last sample of the old - 1) mod cycle``, so the wrap is counted like any
    other step. A gap of half a cycle or more (0.5 s) is ambiguous (the counter cannot tell how many
    cycles went by): the run is marked ``resync`` and :class:`~ingest.assembly.RunAssembler` counts the
    gap from the host clock instead. Firmware 2 deltas after a lost packet cannot be decoded until the
    next raw packet (id 0): their samples are counted lost (``stats["undecodable"]``), never guessed.

Duplicates, reordering, corruption
    A packet with the position just taken, or up to :data:`BEHIND` positions behind, is a duplicate or
    came too late: dropped (its place was already counted lost). A packet ahead of the next expected one
    waits in a reorder window of :data:`REORDER` packets for the missing one; when the window overflows
    the missing packet is given up and counted lost. Two different packets claiming one position both
    count as lost (one of them is corrupt and there is no telling which). A packet that waits past
    :data:`STALE` arrivals without its turn coming is a corrupt id and is dropped. Also detected: ids the
    protocol does not have, wrong lengths, samples beyond the 24-bit range (firmware 3: fields whose
    MSB and LSB disagree, which the firmware never sends; firmware 2: counted lost until the next raw
    packet). Not detectable: a corrupt sample bit (no checksum; in firmware 2 the error carries on until
    the next raw packet) and a loss of whole cycles that the clock cannot see.
"""

from __future__ import annotations

import collections

import numpy as np

from ..ble import BleLink
from ..board import Board, LinkLost
from ..channels import kind_from_label
from ..decoder import DecodedRun, Decoder
from ..errors import DeviceError

# -- GATT --------------------------------------------------------------------------------------------
SERVICE_UUID = "0000fe84-0000-1000-8000-00805f9b34fb"
NOTIFY_UUID = "2d30c082-f39f-4ce6-923f-3484ea480596"
WRITE_UUID = "2d30c083-f39f-4ce6-923f-3484ea480596"
DISCONNECT_UUID = "2d30c084-f39f-4ce6-923f-3484ea480596"
SOFTWARE_REVISION_UUID = "00002a28-0000-1000-8000-00805f9b34fb"
#: Capture sources (the ``"sources"`` of a capture header): one notifying characteristic.
SOURCES = (NOTIFY_UUID,)

# -- signal ------------------------------------------------------------------------------------------
FS = 200.0
N_CHANNELS = 4
UV_PER_COUNT = 1.2e6 / (8388607 * 1.5 * 51)
COUNT_MIN, COUNT_MAX = -(2**23), 2**23 - 1
#: Full scale in uV: no decoded EEG sample lies beyond it.
FULL_SCALE_UV = 2**23 * UV_PER_COUNT
ACCEL_G_PER_COUNT = 0.016
DEFAULT_CHANNELS = ("EEG 1", "EEG 2", "EEG 3", "EEG 4")
ACC_CHANNELS = ("ACC X", "ACC Y", "ACC Z")
PACKET_LENGTH = 20
ID_IMPEDANCE, ID_MESSAGE, ID_MESSAGE_END = 201, 206, 207

# -- loss accounting ---------------------------------------------------------------------------------
#: Packets ahead of the expected one held while waiting for it.
REORDER = 2
#: Positions behind the last taken packet still read as a duplicate or late packet (not a long gap).
BEHIND = 4
#: Arrivals after which a packet still waiting in the reorder window is dropped as a corrupt id.
STALE = REORDER + 4
_MAX_MESSAGE = 4096

_WEIGHTS = {bits: np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64) for bits in (18, 19)}
#: Accelerometer axis (0 X, 1 Y, 2 Z) by the last digit of an 18-bit packet's level, per firmware.
_AXIS = {2: {1: 0, 2: 1, 3: 2}, 3: {1: 0, 2: 1, 0: 2}}


# == field decoding ==================================================================================
def unpack_fields(payload, bits: int, n_fields: int = 8) -> np.ndarray:
    """Unsigned MSB-first fields of packed bytes.

    Parameters
    ----------
    payload : array_like of uint8, shape (..., n_bytes)
        At least ``ceil(n_fields * bits / 8)`` bytes (bytes 1.. of a notification).
    bits : {18, 19}
        Field width.
    n_fields : int
        Fields to read, by default 8 (2 samples x 4 channels).

    Returns
    -------
    numpy.ndarray of int64, shape (..., n_fields)
        Values in [0, 2**bits).
    """
    data = np.asarray(payload, dtype=np.uint8)
    flat = np.unpackbits(data, axis=-1)[..., : n_fields * bits]
    weights = _WEIGHTS.get(bits)
    if weights is None:
        weights = np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return flat.reshape(*data.shape[:-1], n_fields, bits) @ weights


def signed_fields(fields, bits: int) -> np.ndarray:
    """Signed values of N-bit fields by the LSB sign rule: LSB set -> ``field - 2**bits``.

    Parameters
    ----------
    fields : array_like of int, any shape
        Unsigned fields; bits above ``bits`` are ignored.
    bits : int

    Returns
    -------
    numpy.ndarray of int64, same shape
    """
    f = np.asarray(fields, dtype=np.int64) & ((1 << bits) - 1)
    return f - (f & 1) * (np.int64(1) << bits)


def raw_counts(payload: bytes) -> np.ndarray:
    """The four int24 big-endian counts of a firmware-2 raw packet (id 0), shape (4,) int64."""
    b = np.frombuffer(payload, dtype=np.uint8, count=12, offset=1).astype(np.int64).reshape(4, 3)
    counts = (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
    return counts - ((counts & 0x800000) << 1)


def counts_to_uv(counts) -> np.ndarray:
    """Microvolts of ADC counts (any shape) -> float64, same shape."""
    return np.asarray(counts, dtype=np.float64) * UV_PER_COUNT


# == decoder =========================================================================================
class GanglionDecoder(Decoder):
    """Ganglion notifications in, runs of 4 channels (+ 3 accelerometer rows) at 200 Hz out.

    Parameters
    ----------
    firmware : {2, 3}
        Firmware generation (from the Software Revision characteristic).
    accelerometer : bool
        Add the rows ``ACC X, ACC Y, ACC Z`` (g).
    channels : sequence of 4 str, optional
        Labels of the four inputs, by default ``"EEG 1" .. "EEG 4"``; kinds follow from the labels.

    Attributes
    ----------
    impedance_kohm : dict
        Latest impedance per input (1..4, 5 = reference), kOhm, from an impedance test (``z``).
    messages : collections.deque of str
        ASCII messages the board sent (replies to commands), oldest first.
    stats : dict
        ``packets``, ``bytes_skipped``, ``samples_lost`` (counted from packet ids), and
        ``duplicates``, ``late``, ``conflicts``, ``strays``, ``invalid``, ``corrupt`` (packets) and
        ``undecodable`` (firmware-2 samples lost after a gap until the next raw packet).
    """

    fs = FS

    def __init__(self, firmware: int = 3, accelerometer: bool = False, channels=None):
        super().__init__()
        if firmware not in (2, 3):
            raise ValueError(f"firmware must be 2 or 3, got {firmware!r}")
        labels = tuple(channels) if channels is not None else DEFAULT_CHANNELS
        if len(labels) != N_CHANNELS:
            raise ValueError(f"the Ganglion has {N_CHANNELS} inputs, got {len(labels)} labels")
        self.firmware = firmware
        self.accelerometer = bool(accelerometer)
        self.channels = labels + (ACC_CHANNELS if accelerometer else ())
        self.kinds = tuple(kind_from_label(c) for c in labels) + (("ACC",) * 3 if accelerometer else ())
        self.stats.update(duplicates=0, late=0, conflicts=0, strays=0, invalid=0, corrupt=0, undecodable=0)
        self.impedance_kohm: dict = {}
        self.messages: collections.deque = collections.deque(maxlen=256)
        self._message = bytearray()
        if firmware == 2:
            self.cycle_packets, self.cycle_samples, self._last_id = 101, 201, 200
        else:
            self.cycle_packets, self.cycle_samples, self._last_id = 100, 200, 199
        self.counter_modulus = self.cycle_packets  # the cycle position is the packet counter
        self.counter_behind = BEHIND
        self.packet_rate = FS * self.cycle_packets / self.cycle_samples
        self._axis = _AXIS[firmware]
        self.restart()

    def restart(self) -> None:
        self._last_pos: int | None = None  # cycle position of the last packet taken
        self._last_payload: bytes | None = None
        self._ahead: dict = {}  # position -> [payload or None (conflict), arrival number]
        self._arrivals = 0
        self._counts = None  # firmware 2: counts of the last decoded sample (None: wait for a raw packet)
        self._lost = 0  # samples lost since the last run
        self._resync = True
        self._acc = np.full(3, np.nan)

    # -- positions ---------------------------------------------------------------------------------
    def position(self, packet_id: int) -> int:
        """Cycle position of a data packet id (the 18- and 19-bit ranges share positions)."""
        if self.firmware == 2:
            return packet_id - 100 if packet_id > 100 else packet_id
        return packet_id - 100 if packet_id >= 100 else packet_id

    def _span(self, pos: int) -> tuple:
        """(first, last) sample of position ``pos`` within the cycle."""
        if self.firmware == 2:
            return (0, 0) if pos == 0 else (2 * pos - 1, 2 * pos)
        return 2 * pos, 2 * pos + 1

    # -- input -------------------------------------------------------------------------------------
    def feed(self, payload: bytes, source: int = 0) -> list:
        """Decode one notification; returns the runs it completes (usually one of 1-2 samples)."""
        if not payload:
            return []
        pid = payload[0]
        if pid > self._last_id:
            self._control(pid, payload)
            return []
        if len(payload) != PACKET_LENGTH:
            self.stats["invalid"] += 1
            self.stats["bytes_skipped"] += len(payload)
            return []
        pos = self.position(pid)
        if self.on_packets is not None:
            content = np.frombuffer(payload, np.uint8, offset=1)[None, :]
            self.on_packets(source, np.array([pos], dtype=np.int64), content)
        return self._arrive(pos, bytes(payload))

    def _control(self, pid: int, payload: bytes) -> None:
        if ID_IMPEDANCE <= pid < ID_IMPEDANCE + 5:
            text = bytes(payload[1:]).split(b"Z", 1)[0]
            if text.isdigit() or not text:
                self.impedance_kohm[pid - ID_IMPEDANCE + 1] = float(int(text)) if text else 0.0
                return
        elif pid in (ID_MESSAGE, ID_MESSAGE_END):
            self._message += payload[1:]
            if pid == ID_MESSAGE_END or len(self._message) > _MAX_MESSAGE:
                self.messages.append(self._message.decode("ascii", errors="replace"))
                self._message = bytearray()
            return
        self.stats["invalid"] += 1
        self.stats["bytes_skipped"] += len(payload)

    # -- ordering ----------------------------------------------------------------------------------
    def _arrive(self, pos: int, payload: bytes) -> list:
        self._arrivals += 1
        if self._last_pos is None:
            return self._take(pos, payload)
        cp = self.cycle_packets
        d = (pos - self._last_pos - 1) % cp  # 0: the expected packet
        if d >= cp - BEHIND:
            self.stats["duplicates" if d == cp - 1 and payload == self._last_payload else "late"] += 1
            return []
        runs: list = []
        if d == 0:
            runs += self._take(pos, payload)
        else:
            slot = self._ahead.get(pos)
            if slot is None:
                self._ahead[pos] = [payload, self._arrivals]
            elif slot[0] == payload:
                self.stats["duplicates"] += 1
                return []
            elif slot[0] is not None:
                slot[0] = None  # two packets for one place: one is corrupt, neither can be trusted
                self.stats["conflicts"] += 1
            if len(self._ahead) > REORDER:
                runs += self._give_up()
        if self._ahead:
            runs += self._drain()
            self._drop_stale()
        return runs

    def _drain(self) -> list:
        runs: list = []
        while self._ahead:
            slot = self._ahead.pop((self._last_pos + 1) % self.cycle_packets, None)
            if slot is None:
                break
            runs += self._take((self._last_pos + 1) % self.cycle_packets, slot[0])
        return runs

    def _give_up(self) -> list:
        """The expected packet is not coming: take the nearest waiting one, counting the gap."""
        cp = self.cycle_packets
        pos = min(self._ahead, key=lambda p: (p - self._last_pos - 1) % cp)
        return self._take(pos, self._ahead.pop(pos)[0])

    def _drop_stale(self) -> None:
        for pos in [p for p, slot in self._ahead.items() if self._arrivals - slot[1] > STALE]:
            del self._ahead[pos]
            self.stats["strays"] += 1

    # -- decoding ----------------------------------------------------------------------------------
    def _take(self, pos: int, payload: bytes | None) -> list:
        """Account for the samples between the last packet and this one, then decode it."""
        first, last = self._span(pos)
        if self._last_pos is not None:
            skipped = (pos - self._last_pos - 1) % self.cycle_packets
            gap = (first - self._span(self._last_pos)[1] - 1) % self.cycle_samples
            if skipped >= self.cycle_packets // 2:
                self._resync = True  # whole cycles may have gone by: let the clock count them
            if gap:
                self._lost += gap
                self._counts = None
        self._last_pos, self._last_payload = pos, payload
        n = last - first + 1
        if payload is None:  # a conflict: both claimants are lost
            self._lost += n
            self._counts = None
            return []
        pid = payload[0]
        bits = 19 if pid > (100 if self.firmware == 2 else 99) else 18
        if bits == 18:
            axis = self._axis.get(pos % 10)
            if axis is not None:
                self._acc[axis] = (payload[19] - 256 if payload[19] > 127 else payload[19]) * ACCEL_G_PER_COUNT
        if self.firmware == 2 and pos == 0:
            counts = raw_counts(payload)[:, None]
            self._counts = counts[:, 0]
        else:
            values = signed_fields(unpack_fields(np.frombuffer(payload, np.uint8, offset=1), bits), bits)
            if self.firmware == 3:
                counts = values.reshape(2, N_CHANNELS).T << (24 - bits)
            elif self._counts is None:
                self._lost += n
                self.stats["undecodable"] += n
                return []
            else:
                counts = np.empty((N_CHANNELS, 2), dtype=np.int64)
                counts[:, 0] = self._counts - values[:N_CHANNELS]
                counts[:, 1] = counts[:, 0] - values[N_CHANNELS:]
            # beyond the ADC: firmware 3, a field whose MSB and LSB disagree (never sent); firmware 2, a
            # corrupt delta (and everything until the next raw packet)
            if counts.min() < COUNT_MIN or counts.max() > COUNT_MAX:
                self.stats["corrupt"] += 1
                self._counts = None
                self._lost += n
                return []
            if self.firmware == 2:
                self._counts = counts[:, 1]
        data = counts_to_uv(counts)
        if self.accelerometer:
            data = np.vstack([data, np.repeat(self._acc[:, None], n, axis=1)])
        run = DecodedRun(data, 0 if self._resync else self._lost, self._resync)
        if not self._resync:
            self.stats["samples_lost"] += self._lost
        self._lost = 0
        self._resync = False
        self.stats["packets"] += 1
        return [run]


def decoder_from_header(header: dict) -> GanglionDecoder:
    """The decoder a Ganglion capture was recorded with (firmware, accelerometer, labels)."""
    channels = header.get("channels")
    labels = [c for c in channels if c not in ACC_CHANNELS][:N_CHANNELS] if channels else None
    return GanglionDecoder(int(header.get("firmware", 3)), bool(header.get("accelerometer", False)), labels)


# == board ===========================================================================================
class GanglionBoard(Board):
    """An OpenBCI Ganglion over BLE (bleak).

    Parameters
    ----------
    name : str, optional
        Advertised name (``"Ganglion-4f2a"``); by default the first device whose name starts with
        ``"Ganglion"``.
    address : str, optional
        Bluetooth address; takes precedence over ``name``.
    accelerometer : bool
        Turn the accelerometer on (``n``: 18-bit packets) and add three ACC rows; by default off
        (``N``: 19-bit packets, finer resolution).
    channels : sequence of 4 str, optional
        Labels of the four inputs (e.g. ``("EEG C3-M2", "EEG C4-M1", "EOG E1-M2", "EMG chin")``).
    scan_timeout, connect_timeout : float
        Seconds to look for the device and to connect.
    backend, scanner_backend : type, optional
        bleak backends (None: the platform's adapter).
    capture, reconnect, max_outage
        See :class:`~ingest.board.Board`.

    Attributes
    ----------
    firmware : int
        2 or 3, from the Software Revision characteristic (``"3..."`` is firmware 3, anything else 2).
    software_revision : str
    """

    board = "ganglion"

    def __init__(self, name: str | None = None, address: str | None = None, *, accelerometer: bool = False,
                 channels=None, scan_timeout: float = 10.0, connect_timeout: float = 20.0, backend=None,
                 scanner_backend=None, capture=None, reconnect: bool = True, max_outage: float | None = None):
        super().__init__(capture=capture, reconnect=reconnect, max_outage=max_outage)
        self.accelerometer = bool(accelerometer)
        self._labels = tuple(channels) if channels is not None else None
        if self._labels is not None and len(self._labels) != N_CHANNELS:
            raise ValueError(f"the Ganglion has {N_CHANNELS} inputs, got {len(self._labels)} labels")
        self.link = BleLink(address=address, name=name, name_prefix="Ganglion", kind="Ganglion",
                            scan_timeout=scan_timeout, connect_timeout=connect_timeout, backend=backend,
                            scanner_backend=scanner_backend)
        self.device_id = address or name or "ganglion"
        self.firmware: int | None = None
        self.software_revision = ""

    def _connect(self) -> None:
        try:
            self._handshake()
        except LinkLost as err:
            self.link.disconnect()
            raise DeviceError(f"{self.link.target}: the link dropped while connecting ({err})") from None

    def _handshake(self) -> None:
        self.link.connect(SERVICE_UUID)
        self.link.pin()  # reconnect to this very board
        self.device_id = self.link.address
        try:
            revision = self.link.read(SOFTWARE_REVISION_UUID).decode("ascii", errors="replace").strip("\x00 \r\n")
        except KeyError:
            revision = ""
        firmware = 3 if revision.startswith("3") else 2
        if self.firmware is not None and firmware != self.firmware:
            self.link.disconnect()
            raise DeviceError(f"{self.device_id}: came back with firmware {firmware} instead of {self.firmware}")
        self.firmware, self.software_revision = firmware, revision
        self.link.subscribe(SOURCES)

    def _disconnect(self) -> None:
        if self.link.connected:
            try:
                self.link.write(DISCONNECT_UUID, b" ")  # the Ganglion's own way to end a link cleanly
            except (LinkLost, DeviceError, KeyError):
                pass
        self.link.disconnect()

    def _write(self, payload: bytes) -> None:
        for byte in payload:  # the firmware reads one command per write
            self.link.write(WRITE_UUID, bytes([byte]))

    def _receive(self, timeout: float) -> list:
        return self.link.receive(timeout)

    def _make_decoder(self) -> GanglionDecoder:
        return GanglionDecoder(self.firmware, self.accelerometer, self._labels)

    def _begin_stream(self) -> None:
        self.send(b"n" if self.accelerometer else b"N")
        self.send(b"b")

    def _end_stream(self) -> None:
        self.send(b"s")

    def capture_header(self) -> dict:
        return {**super().capture_header(), "name": self.link.name, "firmware": self.firmware,
                "software_revision": self.software_revision, "accelerometer": self.accelerometer,
                "sources": list(SOURCES), "uv_per_count": UV_PER_COUNT}

    @property
    def impedance_kohm(self) -> dict:
        """Latest impedance test results (kOhm) per input, 5 = reference."""
        return dict(self.decoder.impedance_kohm) if self.decoder else {}
