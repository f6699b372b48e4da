"""OpenBCI Cyton (8 channels) and Cyton+Daisy (16 channels) over the USB radio dongle: decoder and board.

Facts from ``shared/docs/protocols.md`` (OpenBCI documentation, BrainFlow); decoding is checked against
every packet of ``shared/vectors/openbci_cyton``. The dongle is an FTDI serial port (VID 0x0403, PID
0x6015) at 115200 baud 8-N-1; the board streams 33-byte packets at 250 Hz::

    0xA0 | sample number u8 (wraps 255 -> 0) | 8 x int24 big-endian two's complement | 6 aux | stop 0xC0..0xC6

Scale: uV = counts x 4.5 V / gain / (2^23 - 1) x 1e6, per channel, at the gain the host last set.
Decoding is vectorised numpy: every complete packet of a chunk at once; a clean chunk (whole packets
continuing the counter) takes a short cut through a handful of array operations.

Framing (finding packets in a byte stream)
    A *candidate* is a 0xA0 with a stop byte 32 bytes later. A run of back-to-back candidates is taken
    whole: that is every packet of a clean stream. Where the run breaks (garbage, a truncated packet, a
    corrupted start or stop byte), the next candidate and those overlapping it are weighed and the best
    kept: followed back to back by its successor in sequence (+4), followed later by its successor
    (+2), continuing the sequence of the last packet (+2, or +1 after a short loss), followed by a 0xA0
    (+1), but -2 when a packet start inside it carries its successor's number (it was cut short and the
    next packet began inside it); ties go to the earliest. So garbage holding 0xA0 bytes, which can
    frame a candidate overlapping a good packet, loses to the good packet, and a valid packet between
    garbage is found. When a rival is still incomplete at the end of the bytes and the candidate does
    not continue the sequence, the decision waits for the next bytes.

Sequence (the 8-bit counter)
    - A packet with the counter just taken is a duplicate: dropped, never delivered twice.
    - A packet that arrived early is put back in order among what has arrived (it is followed by its
      predecessors, at most :data:`REORDER_WINDOW` behind it, or across a loss by the next one
      continuing from the last and a later one continuing from it).
    - A packet behind the last one delivered (up to :data:`BEHIND` behind) came too late: dropped, its
      place having been counted lost.
    - A counter that jumps ahead while the packets after it fall in between (a corrupted counter byte:
      its neighbours agree with each other) is dropped and counted lost.
    - A new stream begins at a packet whose successor follows it (next, or one on), so garbage that
      happens to frame as a packet cannot set the counter.
    - A jump of ``k`` is ``k - 1`` packets lost, across the wrap. The last packet of a chunk after a
      jump waits for its successor (a late predecessor or a bad counter may show), so after a loss a
      packet can wait for the next chunk.

    The counter cannot see 256 or more lost packets (1.024 s). When the board has listened to
    :data:`AMBIGUOUS_SILENCE` s or more of radio silence it restarts the decoder (a ``RESTART`` mark in
    the capture, so a replay does the same) and the gap is placed by the host clock (``resync``); a host
    that merely stalled (no read in between) finds the packets buffered, and the counter stays exact.
    After :attr:`CytonBoard.silence` seconds the board reconnects (``v``, ``b``); that gap, too, is
    placed by the clock.

Corruption (the protocol has no checksum)
    Detected: a corrupted start or stop byte (the packet fails framing; the counter counts it lost) and
    a corrupted counter whose neighbours agree (dropped, counted lost). Not detectable: a corrupted
    channel or aux byte (every 24-bit value is a possible sample), a stop byte turned into another valid
    one, a counter corrupted to within :data:`REORDER_WINDOW` of its neighbours; such a packet is
    delivered as received.

Daisy (16 channels)
    Packets still come at 250 Hz; odd sample numbers carry channels 1-8, even ones 9-16. A 16-channel
    sample is the even packet ``2j`` (channels 9-16) with the odd packet ``2j + 1`` (channels 1-8), at
    125 Hz; a sample with either packet lost is lost. The first sample after each start (packets 0 and 1)
    is invalid (the Daisy averages with a stale reading): it is dropped, neither delivered nor counted
    lost, and the stream's samples start after it.

Accelerometer (optional ACC X/Y/Z rows, g)
    The LIS3DH runs at 25 Hz. Stop 0xC0: aux = X, Y, Z int16 big-endian (0.002/16 g per count) on the
    packets with a fresh reading, zeros on the others ("no reading"). Stop 0xC3/0xC4 (time stamped): aux
    = one axis (X, Y, Z on sample numbers ending in 7, 8, 9) then the board's u32 milliseconds. The ACC
    rows hold the most recent reading of each axis, a zero-order hold at the sensor's own rate: every
    value is one the board sent, none is computed, and the hold never reaches back across a restart.
    They are NaN until the first reading of a stream, and throughout in board modes that send no
    accelerometer data (0xC1, 0xC2, 0xC5, 0xC6).

Gains
    Tracked from the commands the host writes (:meth:`CytonDecoder.on_command`): ``x C P G I B S2 S1 X``
    sets channel C's gain (G: 0..6 = x1, 2, 4, 6, 8, 12, 24), ``d`` and ``v`` restore x24. Sent while
    not streaming, a change applies at once; while streaming, from the first gap in the counter after
    it (the board loses the packet on air when it gets a command, and the packets already buffered
    were sampled at the old gain), or after :data:`GAIN_SWITCH_PACKETS` packets without one.
"""

from __future__ import annotations

import errno
import re
import time

import numpy as np
import serial
import serial.tools.list_ports

from ..board import Board, LinkLost
from ..channels import kind_from_label
from ..decoder import DecodedRun, Decoder
from ..errors import DeviceError

# -- protocol ----------------------------------------------------------------------------------------
PACKET_LENGTH = 33
START_BYTE = 0xA0
STOP_MIN, STOP_MAX = 0xC0, 0xC6
STOP_ACCEL, STOP_RAW_AUX, STOP_USER = 0xC0, 0xC1, 0xC2
STOP_ACCEL_TIME_SET, STOP_ACCEL_TIME_SYNCED = 0xC3, 0xC4
STOP_RAW_AUX_TIME_SET, STOP_RAW_AUX_TIME_SYNCED = 0xC5, 0xC6
#: Packets per second over the dongle (with or without the Daisy).
PACKET_RATE = 250.0
VREF_VOLTS = 4.5
COUNTS_FULL_SCALE = 2**23 - 1
#: ADS1299 gains, indexed by the gain digit of the channel-settings command.
GAINS = (1, 2, 4, 6, 8, 12, 24)
DEFAULT_GAIN = 24
ACCEL_G_PER_COUNT = 0.002 / 16
#: Sample numbers (mod 10) whose time-stamped packets carry the X, Y and Z axis.
TIME_STAMP_AXIS_SLOTS = (7, 8, 9)
#: A counter up to this far behind the one before is a late packet, not a loss of 192 or more packets:
#: such a loss comes with radio silence, after which the board restarts the decoder
#: (:data:`AMBIGUOUS_SILENCE`, 0.75 s = 187 packets) and the clock places the gap.
BEHIND = 64
#: A packet followed by one at most this far behind it arrived early (it is put back in order).
REORDER_WINDOW = 3
#: Later candidates looked at for a candidate's successor when resynchronising.
LOOK_AHEAD = 4
#: Packets after a gain change sent while streaming before it applies even without a counter gap.
GAIN_SWITCH_PACKETS = 250
#: Radio silence (s) after which the counter may have turned over (256 packets take 1.024 s): the gap
#: is then placed by the host clock instead.
AMBIGUOUS_SILENCE = 0.75

# -- serial link -------------------------------------------------------------------------------------
BAUD_RATE = 115200
FTDI_VID, DONGLE_PID = 0x0403, 0x6015
END_OF_TRANSMISSION = b"$$$"
#: Channel field of ``x``/``z`` commands: channels 1-8, then 9-16.
CHANNEL_LETTERS = "12345678QWERTYUI"
ACC_CHANNELS = ("ACC X", "ACC Y", "ACC Z")


def default_channels(daisy: bool) -> tuple:
    """Labels of the electrode channels when the caller gives none: ``"EEG 1" .. "EEG 8"`` (or 16)."""
    return tuple(f"EEG {i}" for i in range(1, (16 if daisy else 8) + 1))


def uv_per_count(gain) -> np.ndarray:
    """Microvolts per ADC count at ``gain`` (scalar or array): 4.5 / gain / (2^23 - 1) x 1e6."""
    return VREF_VOLTS / np.asarray(gain, dtype=np.float64) / COUNTS_FULL_SCALE * 1e6


# -- vectorised field decoding -------------------------------------------------------------------------
def int24_be(raw: np.ndarray) -> np.ndarray:
    """24-bit big-endian two's complement integers.

    Parameters
    ----------
    raw : ndarray of uint8, shape (..., 3)

    Returns
    -------
    ndarray of int32, shape (...,)
    """
    b = raw.astype(np.int32)
    value = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    return (value ^ 0x800000) - 0x800000  # sign-extend bit 23


def int16_be(raw: np.ndarray) -> np.ndarray:
    """16-bit big-endian two's complement integers: uint8 (..., 2) -> int32 (...,)."""
    b = raw.astype(np.int32)
    return (((b[..., 0] << 8) | b[..., 1]) ^ 0x8000) - 0x8000


def packet_fields(packets: np.ndarray) -> dict:
    """Split sample packets into their fields.

    Parameters
    ----------
    packets : ndarray of uint8, shape (n, 33)

    Returns
    -------
    dict
        ``"number"`` (n,) int, ``"counts"`` (n, 8) int32, ``"aux16"`` (n, 3) int32 (the aux bytes as three
        int16), ``"board_ms"`` (n,) int64 (aux bytes 2..5 as u32, meaningful on 0xC3..0xC6) and
        ``"stop"`` (n,) int.
    """
    n = packets.shape[0]
    aux = packets[:, 26:32]
    ms = aux[:, 2:6].astype(np.int64)
    return {"number": packets[:, 1].astype(np.int64),
            "counts": int24_be(packets[:, 2:26].reshape(n, 8, 3)),
            "aux16": int16_be(aux.reshape(n, 3, 2)),
            "board_ms": (ms[:, 0] << 24) | (ms[:, 1] << 16) | (ms[:, 2] << 8) | ms[:, 3],
            "stop": packets[:, 32].astype(np.int64)}


def accel_readings(numbers: np.ndarray, stops: np.ndarray, aux16: np.ndarray) -> np.ndarray:
    """The accelerometer readings packets carry, NaN where a packet has none.

    Parameters
    ----------
    numbers, stops : ndarray of int, shape (n,)
        Sample numbers and stop bytes.
    aux16 : ndarray of int, shape (n, 3)
        Aux bytes as three int16.

    Returns
    -------
    ndarray of float64, shape (n, 3)
        g per axis: all three on 0xC0 packets whose aux is not all zero (zeros mean "no reading"); one
        axis on 0xC3/0xC4 packets with sample number ending in 7 (X), 8 (Y) or 9 (Z).
    """
    out = np.full((numbers.size, 3), np.nan)
    fresh = (stops == STOP_ACCEL) & (aux16 != 0).any(axis=1)
    out[fresh] = aux16[fresh] * ACCEL_G_PER_COUNT
    axis = numbers % 10 - TIME_STAMP_AXIS_SLOTS[0]
    timed = ((stops == STOP_ACCEL_TIME_SET) | (stops == STOP_ACCEL_TIME_SYNCED)) & (axis >= 0) & (axis < 3)
    rows = np.flatnonzero(timed)
    out[rows, axis[rows]] = aux16[rows, 0] * ACCEL_G_PER_COUNT
    return out


def hold_last(values: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Carry each column's last non-NaN value forward (zero-order hold), starting from ``initial``.

    Parameters
    ----------
    values : ndarray, shape (n, k)
        NaN where a column has no new value.
    initial : ndarray, shape (k,)
        Held values before the first row (NaN: none yet).

    Returns
    -------
    ndarray, shape (n, k)
    """
    stacked = np.vstack([initial[None, :], values])
    have = ~np.isnan(stacked)
    have[0] = True  # the initial row always "has" its value (possibly NaN)
    index = np.where(have, np.arange(stacked.shape[0])[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    return np.take_along_axis(stacked, index, axis=0)[1:]


# -- framing -----------------------------------------------------------------------------------------------
def find_packets(buf: np.ndarray, last_number: int | None = None):
    """Find the sample packets in a byte buffer (see the module notes on framing).

    Parameters
    ----------
    buf : ndarray of uint8, shape (n,)
        Bytes as received, starting where the previous call resumed.
    last_number : int or None
        Sample number of the last packet taken before ``buf`` (None after a restart).

    Returns
    -------
    starts : ndarray of int64, shape (m,)
        Offsets of the packets found, increasing.
    resume : int
        Offset of the first byte to keep for the next call (a packet not yet complete or decided).
    skipped : ndarray of int64, shape (g, 2)
        Garbage passed over: (offset, length) of each stretch, all before ``resume``.
    """
    n = buf.size
    limit = n - (PACKET_LENGTH - 1)  # a complete packet starts before this
    if limit <= 0:
        keep = _first_start_byte(buf, 0)
        return np.zeros(0, np.int64), keep, np.array([[0, keep]] if keep else np.zeros((0, 2)), np.int64)
    stop = buf[PACKET_LENGTH - 1:]
    cand = (buf[:limit] == START_BYTE) & (stop >= STOP_MIN) & (stop <= STOP_MAX)
    cpos = np.flatnonzero(cand)
    accepted, skipped = [], []
    pos, prev = 0, last_number
    while True:
        if pos < limit and cand[pos]:
            chain = cand[pos::PACKET_LENGTH]
            length = chain.size if chain.all() else int(np.argmin(chain))
            if length >= 2:  # all but the last are each followed by a packet; the last is weighed below
                end = pos + PACKET_LENGTH * (length - 1)
                accepted.append(np.arange(pos, end, PACKET_LENGTH, dtype=np.int64))
                prev = int(buf[end - PACKET_LENGTH + 1])
                pos = end
        k = int(np.searchsorted(cpos, pos))
        if k == cpos.size:  # nothing complete left: keep what could still start a packet
            resume = _first_start_byte(buf, max(pos, limit))
            if resume > pos:
                skipped.append((pos, resume - pos))
            break
        c = int(cpos[k])
        choice = _resolve(buf, cand, cpos, k, prev)
        if choice is None:  # a rival is not complete yet: wait for more bytes
            if c > pos:
                skipped.append((pos, c - pos))
            resume = c
            break
        if choice > pos:
            skipped.append((pos, choice - pos))
        accepted.append(np.array([choice], dtype=np.int64))
        prev = int(buf[choice + 1])
        pos = choice + PACKET_LENGTH
    starts = np.concatenate(accepted) if accepted else np.zeros(0, np.int64)
    return starts, resume, np.array(skipped, dtype=np.int64).reshape(-1, 2)


def _first_start_byte(buf: np.ndarray, at: int) -> int:
    """Offset of the first 0xA0 at or after ``at`` (``buf.size`` if none)."""
    hits = np.flatnonzero(buf[at:] == START_BYTE)
    return at + int(hits[0]) if hits.size else buf.size


def _resolve(buf, cand, cpos, k, prev):
    """The candidate to take among ``cpos[k]`` and those overlapping it; None to wait for more bytes."""
    n = buf.size
    c = int(cpos[k])
    rivals = cpos[k: int(np.searchsorted(cpos, c + PACKET_LENGTH))]
    span = buf[c + 1: min(n, c + PACKET_LENGTH)]
    incomplete = c + 1 + np.flatnonzero(span == START_BYTE)
    incomplete = incomplete[incomplete >= cand.size]  # 0xA0s whose packet has not fully arrived
    if rivals.size == 1 and incomplete.size == 0:
        return c
    scores = [_score(buf, cand, cpos, int(x), prev) for x in rivals]
    best = int(rivals[int(np.argmax(scores))])
    if incomplete.size:
        in_sequence = prev is not None and int(buf[c + 1]) == (prev + 1) & 0xFF
        if best == c and in_sequence and not _cut_short(buf, cand, c):
            return c
        return None
    return best


def _score(buf, cand, cpos, x, prev) -> int:
    """How much the bytes around candidate ``x`` say it is a real packet (module notes, framing)."""
    n = buf.size
    successor = (int(buf[x + 1]) + 1) & 0xFF
    score = 0
    nxt = x + PACKET_LENGTH
    if nxt < cand.size and cand[nxt] and buf[nxt + 1] == successor:
        score += 4
    later = int(np.searchsorted(cpos, nxt))
    if (buf[cpos[later: later + LOOK_AHEAD] + 1] == successor).any():
        score += 2
    if prev is not None:
        step = (int(buf[x + 1]) - prev) & 0xFF
        score += 2 if step == 1 else (1 if 2 <= step <= 4 else 0)
    if nxt < n and buf[nxt] == START_BYTE:
        score += 1
    if _cut_short(buf, cand, x):
        score -= 2
    return score


def _cut_short(buf, cand, x) -> bool:
    """Whether a packet start inside candidate ``x`` carries x's successor number (x was truncated).

    A packet start here is a candidate, or a 0xA0 whose packet has not fully arrived.
    """
    inner = x + 1 + np.flatnonzero(buf[x + 1: min(buf.size - 1, x + PACKET_LENGTH)] == START_BYTE)
    inner = inner[(inner >= cand.size) | cand[np.minimum(inner, cand.size - 1)]]
    return bool((buf[inner + 1] == ((int(buf[x + 1]) + 1) & 0xFF)).any())


# -- sequence ----------------------------------------------------------------------------------------------
def _steps(numbers: np.ndarray, base: int) -> np.ndarray:
    return (numbers - np.concatenate(([base], numbers[:-1]))) & 0xFF


def order_packets(numbers: np.ndarray, last_number: int | None):
    """Which packets to take, in which order, by their sample numbers (module notes, sequence).

    Parameters
    ----------
    numbers : ndarray of int, shape (m,)
        Sample numbers of the packets framed, in arrival order.
    last_number : int or None
        Sample number of the last packet taken before them (None after a restart).

    Returns
    -------
    take : ndarray of int64, shape (t,)
        Indices into ``numbers`` of the packets to deliver, in delivery order.
    steps : ndarray of int64, shape (t,)
        Counter advance of each from the one before (the first from ``last_number``): ``steps - 1``
        packets were lost before it; always >= 1.
    wait : int
        Arrival index from which packets are not decided yet (``m`` when all are): the last arrival
        after a jump, whose successor may show a late predecessor or a corrupted counter, or one whose
        counter cannot yet be told from a corrupted one. They are to be offered again with the next bytes.
    counts : dict
        Among the packets before ``wait``: ``duplicates`` (the counter just seen, again), ``reordered``
        (packets that arrived after a later one and were put back in place) and ``dropped`` (late, out of
        line, or before the start of a stream).
    """
    x = np.asarray(numbers, dtype=np.int64)
    m = x.size
    arrival = np.arange(m, dtype=np.int64)
    if m == 0:
        return arrival, arrival.copy(), 0, {"duplicates": 0, "reordered": 0, "dropped": 0}
    base = int(x[0] - 1) & 0xFF if last_number is None else int(last_number)
    duplicate = _steps(x, base) == 0  # the same counter twice in a row
    take = arrival[~duplicate]
    wait = m
    if last_number is None:  # a new stream begins at a packet whose successor follows (next or one on)
        y = x[take]
        confirmed = np.zeros(y.size, dtype=bool)
        confirmed[:-1] = ((y[1:] - y[:-1]) & 0xFF) == 1
        confirmed[:-2] |= ((y[2:] - y[:-2]) & 0xFF) == 1
        if not confirmed.any():  # nothing confirmed yet: the last two arrivals wait for their successors
            take, wait = take[:0], max(0, m - 2)
        else:
            take = take[int(np.argmax(confirmed)):]
            base = int(x[take[0]] - 1) & 0xFF
    # A counter that jumps ahead while the packets after it fall between the last one and it: a corrupted
    # counter byte (dropped). A packet that arrived early is told apart by what follows: its predecessors
    # just behind it, or (across a loss) the next one continuing from the last and a later one from it;
    # the sort below puts it in place. Without that later one yet, the decision waits.
    y = x[take]
    s = _steps(y, base)
    if s.size > 1:
        prev = np.concatenate(([base], y[:-1]))
        ahead = (s[:-1] >= 2) & (s[:-1] <= 0xFF - BEHIND)

        def between(z):  # z comes after ``prev`` and before ``y`` (counting forward from ``prev``)
            skip = (z - prev[: z.size]) & 0xFF
            return (skip >= 1) & (skip < s[: z.size]), skip

        next_between, skip = between(y[1:])
        later_between = np.append(between(y[2:])[0], False)
        just_behind = ((y[:-1] - y[1:]) & 0xFF) <= REORDER_WINDOW  # its predecessor(s) came right after it
        suspect = ahead & next_between & ~just_behind
        out_of_line = suspect & ((skip >= 2) | later_between)
        if suspect[-1] and skip[-1] == 1 and take[-1] == m - 1 and take[-2] == m - 2:  # no later one to tell: wait
            wait = min(wait, m - 2)
        take = take[~np.append(out_of_line, False)]
    # unwrap (steps back are late packets), put back in order, keep each counter once, newer only
    s = _steps(x[take], base)
    position = np.cumsum(np.where(s > 0xFF - BEHIND, s - 0x100, s))
    order = np.argsort(position, kind="stable")
    position = position[order]
    first = np.ones(position.size, dtype=bool)
    first[1:] = position[1:] > position[:-1]
    keep = first & (position > 0)
    take, position = take[order][keep], position[keep]
    if take.size and take[-1] == m - 1 and (position[-1] - (position[-2] if take.size > 1 else 0)) != 1:
        wait = min(wait, m - 1)  # the last arrival, after a jump: wait for its successor
    decided = take < wait
    take, position = take[decided], position[decided]
    counts = {"duplicates": int(duplicate[:wait].sum()),
              "reordered": int(np.sum(take[1:] < np.maximum.accumulate(take)[:-1])) if take.size else 0}
    counts["dropped"] = wait - counts["duplicates"] - take.size
    return take, np.diff(np.concatenate(([0], position))), wait, counts


# -- commands ----------------------------------------------------------------------------------------------
class ChannelSettings:
    """Follows the gains the host sets, from the command bytes it writes.

    Mirrors the firmware's parser: ``x`` takes 7 fields then ``X`` (else the command is void), ``z``
    3 fields then ``Z``, ``~`` and ``/`` one; ``d`` and ``v`` restore the default gain; ``b`` starts and
    ``s``/``v`` stop streaming.

    Attributes
    ----------
    gains : ndarray of int, shape (16,)
        Gain of each channel once every command so far has taken effect.
    streaming : bool
    """

    def __init__(self, gains=None):
        self.gains = np.full(16, DEFAULT_GAIN, dtype=np.int64)
        if gains is not None:
            g = np.asarray(gains, dtype=np.int64)
            self.gains[: g.size] = g
        self.streaming = False
        self._pending: list | None = None

    def feed(self, payload: bytes) -> bool:
        """Take command bytes; returns True when a gain changed."""
        before = self.gains.copy()
        for byte in bytes(payload):
            self._byte(chr(byte))
        return not np.array_equal(before, self.gains)

    def _byte(self, c: str) -> None:
        if self._pending is not None:
            self._pending.append(c)
            command, args = self._pending[0], self._pending[1:]
            fields, latch = {"x": (7, "X"), "z": (3, "Z"), "~": (0, ""), "/": (0, "")}[command]
            if not latch:
                self._pending = None
            elif len(args) <= fields:
                if c == latch:  # latched too early: the firmware rejects it
                    self._pending = None
            else:
                self._pending = None
                if c == latch and command == "x":
                    channel = CHANNEL_LETTERS.index(args[0]) if args[0] in CHANNEL_LETTERS else 0
                    self.gains[channel] = GAINS[int(args[2])] if args[2] in "0123456" else DEFAULT_GAIN
            return
        if c in "xz~/":
            self._pending = [c]
        elif c == "b":
            self.streaming = True
        elif c == "s":
            self.streaming = False
        elif c in "dv":
            self.gains[:] = DEFAULT_GAIN
            if c == "v":
                self.streaming = False


# -- decoder -----------------------------------------------------------------------------------------------
class CytonDecoder(Decoder):
    """Cyton (or Cyton+Daisy) bytes in, runs of 8 (16) channels in uV (+ ACC rows in g) out.

    Parameters
    ----------
    daisy : bool
        16 channels at 125 Hz (Daisy attached) instead of 8 at 250 Hz.
    gains : int or sequence of int, optional
        Gain of every channel (or of each, 8 or 16 values) when decoding starts; 24 by default.
    accelerometer : bool
        Add the rows ``ACC X, ACC Y, ACC Z`` (g).
    channels : sequence of str, optional
        Labels of the 8 (16) electrode channels, by default ``"EEG 1"`` ...; kinds follow from them.

    Attributes
    ----------
    stats : dict
        ``packets`` (delivered), ``bytes_skipped``, ``samples_lost`` (counted from the counter), and
        ``duplicates``, ``reordered``, ``dropped`` (late, or a counter out of line: counted lost),
        ``invalid_daisy`` (first Daisy samples dropped), ``time_syncs`` (0xC3/0xC5 packets).
    board_ms : int or None
        Board time (ms) of the last time-stamped packet.
    gains : ndarray of int, shape (n_electrodes,)
        Gains in force for the packets being decoded.
    full_scale : ndarray of float, shape (n_channels,)
        Largest magnitude a row can hold: uV at the row's gain at full scale; 4.096 g for ACC.
    """

    packet_rate = PACKET_RATE
    counter_modulus = 256
    counter_behind = BEHIND

    def __init__(self, daisy: bool = False, gains=None, accelerometer: bool = False, channels=None):
        super().__init__()
        self.daisy = bool(daisy)
        self.n_electrodes = 16 if self.daisy else 8
        labels = tuple(channels) if channels is not None else default_channels(self.daisy)
        if len(labels) != self.n_electrodes:
            raise ValueError(f"the Cyton{'+Daisy' if daisy else ''} has {self.n_electrodes} channels, "
                             f"got {len(labels)} labels")
        self.accelerometer = bool(accelerometer)
        self.channels = labels + (ACC_CHANNELS if self.accelerometer else ())
        self.kinds = tuple(kind_from_label(c) for c in labels) + (("ACC",) * 3 if self.accelerometer else ())
        self.fs = PACKET_RATE / 2 if self.daisy else PACKET_RATE
        if gains is not None:
            gains = np.broadcast_to(np.asarray(gains, dtype=np.int64), (self.n_electrodes,))
            if not np.isin(gains, GAINS).all():
                raise ValueError(f"gains must be among {GAINS}, got {gains.tolist()}")
        self.settings = ChannelSettings(gains)
        self._set_gains(self.settings.gains)  # in force for the packets being decoded
        self._pending_gains: np.ndarray | None = None
        self._ramp = np.zeros(0, dtype=np.uint8)
        self._pending_age = 0
        self.stats.update(duplicates=0, reordered=0, dropped=0, invalid_daisy=0, time_syncs=0)
        self.board_ms: int | None = None
        self.restart()

    @property
    def gains(self) -> np.ndarray:
        return self._gains[: self.n_electrodes].copy()

    @property
    def full_scale(self) -> np.ndarray:
        uv = (COUNTS_FULL_SCALE + 1) * uv_per_count(self._gains[: self.n_electrodes])
        return np.concatenate([uv, np.full(3 if self.accelerometer else 0, 2**15 * ACCEL_G_PER_COUNT)])

    # -- interface -------------------------------------------------------------------------------------
    def restart(self) -> None:
        self._buffer = b""
        self._last_number: int | None = None  # counter of the last packet delivered
        self._last_k = -1  # packets since the stream began, of that packet
        self._resync = True
        if self._pending_gains is not None:  # a new stream: every packet is at the new gains
            self._set_gains(self._pending_gains)
            self._pending_gains = None
        self._pending_half = None  # Daisy: (k, counts (8,), uV (8,), acc (3,)) of an even packet
        self._last_j: int | None = None  # Daisy: index of the last 16-channel sample delivered
        self._acc = np.full(3, np.nan)

    def on_command(self, payload: bytes) -> None:
        streaming = self.settings.streaming
        changed = self.settings.feed(payload)
        if changed and streaming and self.settings.streaming:
            self._pending_gains, self._pending_age = self.settings.gains.copy(), 0  # from the next counter gap
        elif changed or (self._pending_gains is not None and not self.settings.streaming):
            self._set_gains(self.settings.gains)
            self._pending_gains = None

    def feed(self, payload: bytes, source: int = 0) -> list:
        data = self._buffer + bytes(payload) if self._buffer else bytes(payload)
        buf = np.frombuffer(data, dtype=np.uint8)
        packets = self._whole_packets_in_sequence(buf)
        if packets is not None:
            self._buffer = data[packets.size:]
            self._last_number = int(packets[-1, 1])
            if self.on_packets is not None:
                self.on_packets(source, packets[:, 1].astype(np.int64), packets[:, 2:])
            return self._runs(packets, np.ones(packets.shape[0], dtype=np.int64))
        starts, resume, skipped = find_packets(buf, self._last_number)
        numbers = buf[starts + 1].astype(np.int64)
        take, steps, wait, counts = order_packets(numbers, self._last_number)
        if wait < starts.size:  # undecided packets are offered again with the next bytes
            resume = int(starts[wait])
        if self.on_packets is not None and wait:
            decided = buf[starts[:wait, None] + np.arange(PACKET_LENGTH)]
            self.on_packets(source, numbers[:wait], decided[:, 2:])
        for name, n in counts.items():
            self.stats[name] += n
        self.stats["bytes_skipped"] += int(skipped[skipped[:, 0] < resume, 1].sum())
        self._buffer = data[resume:]
        if not take.size:
            return []
        packets = self._gather(buf, starts[take])
        self._last_number = int(numbers[take[-1]])
        return self._runs(packets, steps)

    # -- decoding ----------------------------------------------------------------------------------------
    def _whole_packets_in_sequence(self, buf: np.ndarray):
        """The common case, cheaply: packets back to back continuing the counter, then at most the start
        of the next one. Returns those packets as rows, or None to take the general way."""
        m = buf.size // PACKET_LENGTH
        end = m * PACKET_LENGTH
        if self._last_number is None or m == 0 or (end < buf.size and buf[end] != START_BYTE):
            return None
        packets = buf[:end].reshape(m, PACKET_LENGTH)
        if m > self._ramp.size:
            self._ramp = (np.arange(1, 2 * m + 1) & 0xFF).astype(np.uint8)  # wraps like the counter
        expected = self._ramp[:m] + np.uint8(self._last_number)
        stop_ok = (packets[:, -1] - np.uint8(STOP_MIN)) <= STOP_MAX - STOP_MIN  # uint8: below 0xC0 wraps high
        if not ((packets[:, 0] == START_BYTE).all() and stop_ok.all() and (packets[:, 1] == expected).all()):
            return None
        return packets

    @staticmethod
    def _gather(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The packets at ``starts`` as rows (a view when they lie back to back)."""
        m = starts.size
        first = int(starts[0])
        if int(starts[-1]) - first == PACKET_LENGTH * (m - 1) and (m < 3 or (np.diff(starts) == PACKET_LENGTH).all()):
            return buf[first: first + PACKET_LENGTH * m].reshape(m, PACKET_LENGTH)
        return buf[starts[:, None] + np.arange(PACKET_LENGTH)]

    def _set_gains(self, gains: np.ndarray) -> None:
        self._gains = gains.copy()
        uv = uv_per_count(self._gains)
        # per packet parity (k & 1): Daisy packets with even k carry channels 9-16, odd ones 1-8
        self._scale_by_parity = np.stack([uv[8:], uv[:8]]) if self.daisy else np.stack([uv[:8], uv[:8]])

    def _scales(self, steps: np.ndarray, k: np.ndarray) -> np.ndarray:
        """uV per count of each packet's 8 values, shape (m, 8) (or (8,) for all alike)."""
        if self._pending_gains is None:
            return self._scale_by_parity[k & 1] if self.daisy else self._scale_by_parity[0]
        m = steps.size
        jumps = np.flatnonzero(steps != 1)
        if jumps.size:
            switch = int(jumps[0])
        elif self._pending_age + m >= GAIN_SWITCH_PACKETS:
            switch = GAIN_SWITCH_PACKETS - self._pending_age
        else:
            self._pending_age += m
            return self._scale_by_parity[k & 1]
        before = self._scale_by_parity[k[:switch] & 1]
        self._set_gains(self._pending_gains)
        self._pending_gains = None
        return np.vstack([before, self._scale_by_parity[k[switch:] & 1]])

    def _accelerations(self, packets: np.ndarray, numbers: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """ACC rows of each packet, shape (m, 3): the last reading held (NaN before the first)."""
        m = packets.shape[0]
        readings = accel_readings(numbers, stops, int16_be(packets[:, 26:32].reshape(m, 3, 2)))
        if np.isnan(readings).all():
            return np.broadcast_to(self._acc, (m, 3))
        acc = hold_last(readings, self._acc)
        self._acc = acc[-1].copy()
        return acc

    def _runs(self, packets: np.ndarray, steps: np.ndarray) -> list:
        m = steps.size
        numbers = packets[:, 1].astype(np.int64)
        stops = packets[:, -1]
        if stops.max() >= STOP_ACCEL_TIME_SET:
            timed = np.flatnonzero(stops >= STOP_ACCEL_TIME_SET)
            self.board_ms = int(packet_fields(packets[timed[-1:]])["board_ms"][0])
            self.stats["time_syncs"] += int(np.sum((stops == STOP_ACCEL_TIME_SET) | (stops == STOP_RAW_AUX_TIME_SET)))
        k = self._k_of(numbers, steps)
        uv = int24_be(packets[:, 2:26].reshape(m, 8, 3)) * self._scales(steps, k)
        acc = self._accelerations(packets, numbers, stops) if self.accelerometer else None
        self.stats["packets"] += m
        if self.daisy:
            return self._daisy_runs(k, uv, acc)
        return self._split(uv, acc, steps - 1)

    def _k_of(self, numbers: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Packets since the stream began (the unwrapped counter) of each packet delivered."""
        if self._last_k < 0:  # first packet of a stream: the counter started at 0 with ``b``
            k = int(numbers[0]) - int(steps[0]) + np.cumsum(steps)
        else:
            k = self._last_k + np.cumsum(steps)
        self._last_k = int(k[-1])
        return k

    def _split(self, exg: np.ndarray, acc, lost: np.ndarray) -> list:
        """Runs of samples cut where some were lost before.

        Parameters
        ----------
        exg : ndarray, shape (n, n_electrodes)
            uV.
        acc : ndarray, shape (n, 3), or None
        lost : ndarray of int, shape (n,)
            Samples lost just before each sample.
        """
        n, ne = exg.shape
        data = np.empty((len(self.channels), n))
        data[:ne] = exg.T
        if acc is not None:
            data[ne:] = acc.T
        self.stats["samples_lost"] += int(lost[1:].sum()) + (0 if self._resync else int(lost[0]))
        cuts = np.flatnonzero(lost[1:]) + 1
        runs = []
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), n]):
            runs.append(DecodedRun(data[:, a:b], 0 if self._resync else int(lost[a]), self._resync))
            self._resync = False
        return runs

    def _daisy_runs(self, k: np.ndarray, uv: np.ndarray, acc) -> list:
        """16-channel samples from pairs (even 2j: channels 9-16, odd 2j + 1: channels 1-8)."""
        if self._pending_half is not None:
            pk, puv, pacc = self._pending_half
            k = np.concatenate(([pk], k))
            uv = np.vstack([puv[None, :], uv])
            if acc is not None:
                acc = np.vstack([pacc[None, :], acc])
        pair = np.flatnonzero(((k[:-1] & 1) == 0) & (k[1:] == k[:-1] + 1))
        last = k.size - 1
        self._pending_half = (int(k[last]), uv[last], None if acc is None else acc[last]) if k[last] % 2 == 0 else None
        j = k[pair] // 2
        if self._last_j is None and j.size and j[0] == 0:  # the first sample after a start is invalid
            pair, j = pair[1:], j[1:]
            self.stats["invalid_daisy"] += 1
        if j.size == 0:
            return []
        lost = np.diff(j, prepend=j[0] - 1 if self._last_j is None else self._last_j) - 1
        self._last_j = int(j[-1])
        exg = np.hstack([uv[pair + 1], uv[pair]])
        return self._split(exg, None if acc is None else acc[pair + 1], lost)


def decoder_from_header(header: dict) -> CytonDecoder:
    """The decoder a Cyton capture was recorded with (Daisy, gains, accelerometer, labels)."""
    daisy = bool(header.get("daisy", header.get("board") == "cyton-daisy"))
    channels = header.get("channels")
    labels = [c for c in channels if c not in ACC_CHANNELS] if channels else None
    return CytonDecoder(daisy, header.get("gains"), bool(header.get("accelerometer", False)), labels)


# == board =================================================================================================
def find_ports() -> list:
    """Serial ports that look like an OpenBCI dongle (FTDI VID 0x0403, PID 0x6015), sorted by path.

    Returns
    -------
    list of str
        Device paths (e.g. ``["/dev/ttyUSB0"]``); empty when none is plugged in.
    """
    return sorted(p.device for p in serial.tools.list_ports.comports()
                  if p.vid == FTDI_VID and p.pid == DONGLE_PID)


def _open_error(port: str, err: Exception) -> DeviceError:
    """One clear line for a port that cannot be opened (pyserial's messages are long and technical)."""
    code = getattr(err, "errno", None)
    text = str(err)
    if code == errno.ENOENT or "No such file" in text or "FileNotFoundError" in text:
        return DeviceError(f"{port}: no such serial port (is the dongle plugged in?)")
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return DeviceError(f"{port}: permission denied (add yourself to the dialout group, then log in again)")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text or "busy" in text \
            or "Access is denied" in text:  # Windows says so of a port another program holds
        return DeviceError(f"{port}: the port is busy (another program has it open)")
    if code in (errno.ENXIO, errno.ENODEV):
        return DeviceError(f"{port}: the device is gone (unplugged?)")
    if code in (errno.ENOTTY, errno.EINVAL) or "Inappropriate ioctl" in text:
        return DeviceError(f"{port}: not a serial port")
    reason = re.sub(r".*\[Errno -?\d+\]\s*", "", text).split(":")[0].strip() or type(err).__name__
    return DeviceError(f"{port}: cannot open the serial port ({reason})")


class CytonBoard(Board):
    """An OpenBCI Cyton (or Cyton+Daisy) behind its USB dongle, over pyserial.

    Parameters
    ----------
    port : str, optional
        Serial port (``"/dev/ttyUSB0"``, ``"COM3"``); by default the dongles :func:`find_ports` lists are
        tried in turn (and again on each reconnect, in case the dongle came back under another name).
    daisy : bool, optional
        None (default): as the board's banner says. False with a Daisy fitted: detach it (``c``, 8
        channels at 250 Hz). True without one: :class:`~ingest.errors.DeviceError`.
    gains : int or sequence of int, optional
        Gain of every channel, or of each (8 or 16 values), among 1, 2, 4, 6, 8, 12, 24; set with the
        channel-settings command after every reset. By default the board's 24.
    accelerometer : bool
        Add the rows ``ACC X, ACC Y, ACC Z`` (g).
    channels : sequence of str, optional
        Labels of the 8 (16) electrode channels (e.g. ``"EEG C3-M2"``); ``"EEG 1"`` ... by default.
    timeout : float
        Seconds to wait for a reply to a command (the banner), by default 3.
    silence : float
        Seconds without a byte while streaming after which the link is taken as lost (the board
        reconnects), by default 5.
    capture, reconnect, max_outage
        See :class:`~ingest.board.Board`.

    Attributes
    ----------
    port : str or None
        The port in use.
    banner : str
        The board's reply to ``v``.
    firmware : str
        Firmware version from the banner (``"v3.1.2"``), ``""`` if it names none.
    daisy : bool
    """

    board = "cyton"

    def __init__(self, port: str | None = None, *, daisy: bool | None = None, gains=None,
                 accelerometer: bool = False, channels=None, timeout: float = 3.0, silence: float = 5.0,
                 capture=None, reconnect: bool = True, max_outage: float | None = None):
        super().__init__(capture=capture, reconnect=reconnect, max_outage=max_outage)
        if gains is not None:
            g = np.atleast_1d(np.asarray(gains))
            if g.size not in (1, 8, 16) or not np.isin(g, GAINS).all():
                raise ValueError(f"gains: one value or 8/16 values among {GAINS}, got {np.asarray(gains).tolist()}")
        self._requested_port = port
        self._want_daisy = daisy
        self._gains_requested = gains
        self.accelerometer = bool(accelerometer)
        self._labels = tuple(channels) if channels is not None else None
        self.timeout = float(timeout)
        self.silence = float(silence)
        self.port: str | None = port
        self.device_id = port or "cyton"
        self.banner = ""
        self.firmware = ""
        self.daisy: bool | None = None
        self._serial: serial.Serial | None = None
        self._last_data = time.monotonic()  # when bytes last came (or streaming began)
        self._heard_silence = False  # a read found nothing since then (we were listening, not stalled)
        self.silences = 0

    # -- hooks -------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._requested_port is not None:
            self._handshake(self._requested_port)
            return
        ports = find_ports()
        if not ports:
            raise DeviceError("no OpenBCI dongle found (no FTDI 0403:6015 serial port); plug it in or give the port")
        errors = []
        for port in ports:
            try:
                self._handshake(port)
                return
            except DeviceError as err:
                errors.append(str(err))
        raise DeviceError(errors[0] if len(errors) == 1 else "no Cyton answered on " + "; ".join(errors))

    def _handshake(self, port: str) -> None:
        """Open ``port``, reset the board (``v``), read its banner, set Daisy and gains."""
        self._open_port(port)
        try:
            banner = self._command(b"v")
            if b"Failure" in banner:
                raise DeviceError(f"{port}: the dongle cannot reach the Cyton (is the board on, its battery "
                                  "charged and within range?)")
            if b"OpenBCI" not in banner:
                what = f"unexpected reply to the reset command ({_preview(banner)})" if banner else \
                    "no reply to the reset command"
                raise DeviceError(f"{port}: not an OpenBCI Cyton: {what}")
            text = banner[banner.rfind(b"OpenBCI"):].decode("ascii", errors="replace").replace("$$$", "").strip()
            daisy = "Daisy" in text
            if self._want_daisy is False and daisy:
                self._command(b"c")
                daisy = False
            elif self._want_daisy and not daisy:
                raise DeviceError(f"{port}: no Daisy module on this Cyton (it reports 8 channels)")
            if self.daisy is not None and daisy != self.daisy:
                raise DeviceError(f"{port}: the board came back with {16 if daisy else 8} channels instead of "
                                  f"{16 if self.daisy else 8}")
            self.daisy, self.banner = daisy, text
            match = re.search(r"Firmware:\s*(v?[\w.\-]+)", text)
            self.firmware = match.group(1) if match else ""
            for command in self._gain_commands():
                reply = self._command(command)
                if b"Success" not in reply:
                    raise DeviceError(f"{port}: the board refused the channel setting {command.decode()} "
                                      f"({_preview(reply)})")
        except (DeviceError, LinkLost):
            self._disconnect()
            raise
        if self.daisy:
            self.board = "cyton-daisy"

    def _open_port(self, port: str) -> None:
        try:
            self._serial = serial.Serial(port, BAUD_RATE, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
                                         stopbits=serial.STOPBITS_ONE, timeout=0.2, write_timeout=2.0,
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            raise _open_error(port, err) from None
        self.port = self.device_id = port
        self._serial.reset_input_buffer()

    def _requested_gains(self) -> np.ndarray | None:
        """The gains asked for, one per channel of the board as identified (None: the board's own)."""
        if self._gains_requested is None:
            return None
        n = 16 if self.daisy else 8
        g = np.atleast_1d(np.asarray(self._gains_requested, dtype=np.int64))
        if g.size == 1:
            return np.full(n, int(g[0]))
        if g.size < n:
            raise DeviceError(f"{self.port}: {g.size} gains given for the {n} channels of this board")
        return g[:n]

    def _gain_commands(self) -> list:
        gains = self._requested_gains()
        if gains is None:
            return []
        # x, channel, power on, gain, normal input, in bias, SRB2 on, SRB1 off, latch (the board's defaults)
        return [f"x{CHANNEL_LETTERS[i]}0{GAINS.index(int(gain))}0110X".encode()
                for i, gain in enumerate(gains) if int(gain) != DEFAULT_GAIN]

    def _command(self, payload: bytes) -> bytes:
        """Send a command while not streaming and return its reply up to ``$$$`` (b"" if none came)."""
        self.send(payload)
        deadline = time.monotonic() + self.timeout
        reply = bytearray()
        while time.monotonic() < deadline and len(reply) < 65536:
            try:
                chunk = self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError):
                raise DeviceError(f"{self.port}: the port failed while waiting for the board's reply") from None
            reply += chunk
            # a board still streaming may send packets first: wait for text ending in $$$
            end = reply.rfind(END_OF_TRANSMISSION)
            if end >= 0 and (payload != b"v" or b"OpenBCI" in reply or b"Failure" in reply):
                return bytes(reply[: end + len(END_OF_TRANSMISSION)])
        return bytes(reply)

    def _disconnect(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None

    def _write(self, payload: bytes) -> None:
        if self._serial is None:
            raise LinkLost()
        try:
            self._serial.write(payload)
        except (serial.SerialException, OSError) as err:
            raise LinkLost(str(err)) from None

    def _receive(self, timeout: float) -> list:
        port = self._serial
        if port is None:
            raise LinkLost()
        try:
            if port.timeout != timeout:
                port.timeout = timeout
            waiting = port.in_waiting
            data = port.read(waiting or 1)
            if not waiting and data and port.in_waiting:
                data += port.read(port.in_waiting)
        except (serial.SerialException, OSError, TypeError) as err:  # unplugged: the port fails
            raise LinkLost(str(err)) from None
        now = time.monotonic()
        quiet = now - self._last_data
        if not data:
            self._heard_silence = True
            if quiet > self.silence:
                raise LinkLost(f"{self.port}: no data for {self.silence:g} s")
            return []
        if self._heard_silence and quiet >= AMBIGUOUS_SILENCE:
            # the radio was silent (we were listening): the 8-bit counter may have turned over, so the
            # gap is placed by the host clock; the mark goes to the capture so a replay does the same
            self._restart_decoder()
            self.silences += 1
        self._heard_silence = False
        self._last_data = now
        return [(time.time(), 0, data)]

    def _make_decoder(self) -> CytonDecoder:
        return CytonDecoder(bool(self.daisy), self._requested_gains(), self.accelerometer, self._labels)

    def _begin_stream(self) -> None:
        self.send(b"b")
        self._last_data, self._heard_silence = time.monotonic(), False

    def _end_stream(self) -> None:
        self.send(b"s")

    def capture_header(self) -> dict:
        return {**super().capture_header(), "daisy": bool(self.daisy), "gains": self.decoder.gains.tolist(),
                "accelerometer": self.accelerometer, "firmware": self.firmware, "banner": self.banner,
                "port": self.port, "packet_rate": PACKET_RATE}


def _preview(reply: bytes) -> str:
    """The start of a reply, printable, for an error message."""
    text = reply[:60].decode("ascii", errors="replace")
    return repr(text if len(reply) <= 60 else text + "...")
