"""The DreamSync headband's firmware: sleep EEG out, adjustments in, and a hash-chained log of them.

:class:`DreamSyncFirmware` is a pure state machine with the duck-typed interface of
:class:`firmware_sim.ble.Firmware`, so :class:`~firmware_sim.ble.EmulatedDevice` serves it through
bleak like the Ganglion and the Muse. It speaks the open protocol of
:mod:`firmware_sim.protocols.dreamsync` (``docs/dreamsync-protocol.md``).

What it does to the sleeper is real in the emulation: every adjustment its actuators perform (audio
clicks or pink-noise cues, rhythmic sound, light flicker, current) is rendered into the signal it
streams by the injection library (:func:`firmware_sim.adjustments.inject`: :class:`Auditory`,
:class:`Entrainment`, :class:`Electrical`), from the moment it starts, on the signal the electrodes
would have recorded. Adjustments come from the sleeper (a STIMULATE command with origin "sleeper")
or from the vendor service (STIMULATE with origin "vendor", or the ``vendor_plan`` pushed to the
device beforehand). While the sleeper has opted out, an honest device refuses and stops vendor
adjustments; the sleeper's own go on.

Every adjustment performed, every opt-out change and every refusal is appended to the log: an entry
of 18 bytes (time as the device's sample counter, event, actuator, origin, duration, frequency,
intensity) and its hash, SHA-256 of the previous entry's hash and its body, so that removing or
altering an entry breaks the chain. Each entry is also notified as it is appended.

Rogue firmware on demand (``rogue``, any combination): ``"covert"`` performs vendor adjustments
without logging them; ``"ignore-optout"`` keeps performing vendor adjustments while the sleeper has
opted out (and logs them as if nothing were wrong); ``"erase-log"`` leaves vendor entries out when
the log is read (the chain then breaks); ``"rewrite-log"`` leaves them out and recomputes the chain,
so it verifies, but no longer matches the entries notified live.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .adjustments import Auditory, Electrical, Entrainment, inject
from .hypnogram import EPOCH_SECONDS
from .protocols import dreamsync as ds

ROGUE_MODES = ("covert", "ignore-optout", "erase-log", "rewrite-log")
#: Battery: full at power-on, 1 % per 6 minutes of use (a 16-hour night-and-a-half of streaming).
BATTERY_DRAIN_PER_S = 1.0 / 360.0


@dataclass(frozen=True)
class Stimulus:
    """One adjustment an actuator performs.

    Parameters
    ----------
    actuator : str
        ``"audio-closed-loop"`` (clicks on slow-oscillation up-states), ``"audio-pink-noise"``
        (open-loop pink-noise cues), ``"audio-rhythm"`` (clicks at ``frequency_hz``),
        ``"light-flicker"`` (at ``frequency_hz``) or ``"current"`` (tACS at ``frequency_hz``).
    duration_s : float
        Length in s (whole seconds on the wire, at most 65535).
    frequency_hz : float
        Drive or stimulation frequency in Hz (ignored by the two audio-cue actuators).
    intensity_uv : float
        Size of the effect at a frontal lead in uV: the N550 of a click (audio cues), the
        steady-state response (rhythm, flicker) or the current's artefact (current).
    """

    actuator: str
    duration_s: float
    frequency_hz: float = 0.0
    intensity_uv: float = 1.0

    def __post_init__(self):
        if self.actuator not in ds.ACTUATOR_CODES:
            raise ValueError(f"unknown actuator {self.actuator!r}; known: {', '.join(ds.ACTUATOR_CODES)}")
        if not 1 <= round(self.duration_s) <= 65535:
            raise ValueError(f"duration must be 1..65535 s, got {self.duration_s}")

    @property
    def code(self) -> int:
        return ds.ACTUATOR_CODES[self.actuator]

    @property
    def kind(self) -> str:
        """The adjustment kind the signal shows: ``"auditory"``, ``"entrainment"`` or ``"electrical"``."""
        return ds.ACTUATOR_KIND[self.code]

    def adjustment(self, montage_gain: float = 0.7):
        """The :mod:`firmware_sim.adjustments` object that renders this stimulus from time 0."""
        d = float(round(self.duration_s))
        if self.actuator == "audio-closed-loop":
            return Auditory(mode="closed_loop", n550_uv=self.intensity_uv, duration_s=d, onsets=(0.0,),
                            montage_gain=montage_gain)
        if self.actuator == "audio-pink-noise":
            return Auditory(mode="open_loop", n550_uv=self.intensity_uv, duration_s=d, onsets=(0.0,),
                            stim_stages=(0, 1, 2, 3, 4))
        if self.actuator in ("audio-rhythm", "light-flicker"):
            return Entrainment(frequency_hz=self.frequency_hz, amplitude_uv=self.intensity_uv, duration_s=d,
                               onsets=(0.0,), modality="auditory" if self.actuator == "audio-rhythm" else "visual")
        return Electrical(frequency_hz=self.frequency_hz, amplitude_uv=self.intensity_uv, block_s=d, n_blocks=1,
                          ramp_s=min(5.0, d / 4), onsets=(0.0,), stages=None, settle_s=0.0)

    @classmethod
    def from_wire(cls, actuator: int, duration_s: int, frequency_chz: int, intensity_duv: int) -> "Stimulus":
        return cls(ds.ACTUATORS[actuator], float(duration_s), frequency_chz / 100.0, intensity_duv / 10.0)


class _Episode:
    """An adjustment in progress: its additive effect on the signal from ``start`` (device tick)."""

    def __init__(self, start: int, effect: np.ndarray, origin: int, stimulus: Stimulus):
        self.start, self.effect, self.origin, self.stimulus = start, effect, origin, stimulus

    @property
    def end(self) -> int:
        return self.start + self.effect.shape[1]


class AdjustedSource:
    """A simulated headband's samples with the effects of the adjustments being performed.

    The raw night is read ahead as far as an adjustment needs (a closed loop reacts to the slow
    waves to come), and each adjustment's effect is what :func:`~firmware_sim.adjustments.inject`
    adds to that stretch, summed on top of the others. An effect is rendered whole when its
    adjustment starts, with the raw signal it needs read ahead: 2 x 8 channels x 8 bytes per
    sample, about 115 MB per hour of adjustment (minutes-long blocks and sessions need a few MB).

    Parameters
    ----------
    band : firmware_sim.headband.SimulatedHeadband
        The night (its rate, labels, kinds and hypnogram are used).
    seed : int or None
        Seeds the adjustments' randomness (one child stream per adjustment).

    Attributes
    ----------
    position : int
        Device tick (sample index of the night) of the next sample :meth:`read` returns.
    episodes : list
        Adjustments still in progress.
    """

    def __init__(self, band, seed: int | None = 0):
        self.band = band
        self.fs = band.fs
        self.kinds = band.kinds
        self.position = 0
        self.episodes: list = []
        self._raw = np.zeros((len(band.channels), 0))
        self._seeds = np.random.SeedSequence(seed)
        self._eeg_gain = float(np.mean([g for g, k in zip(band.profile.gains, band.kinds) if k == "EEG"] or [1.0]))

    def _ahead(self, n: int) -> None:
        if self._raw.shape[1] < n:
            more = self.band.read(n - self._raw.shape[1]).astype(np.float64)
            self._raw = np.hstack([self._raw, more])

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (fewer at the end of the night), float64 (n_rows, m)."""
        self._ahead(n)
        m = min(n, self._raw.shape[1])
        out = self._raw[:, :m].copy()
        lo, hi = self.position, self.position + m
        for ep in self.episodes:
            a, b = max(lo, ep.start), min(hi, ep.end)
            if a < b:
                out[:, a - lo:b - lo] += ep.effect[:, a - ep.start:b - ep.start]
        self.episodes = [ep for ep in self.episodes if ep.end > hi]
        self._raw = self._raw[:, m:]
        self.position = hi
        return out

    def start(self, stimulus: Stimulus, origin: int) -> _Episode | None:
        """Begin ``stimulus`` at :attr:`position`; None when the night ends before it could start."""
        n = int(round(round(stimulus.duration_s) * self.fs))
        self._ahead(n)
        n = min(n, self._raw.shape[1])
        if n < int(self.fs):
            return None
        segment = self._raw[:, :n]
        seconds = (self.position + np.arange(0, n, self.fs)) / self.fs
        epochs = np.minimum((seconds // EPOCH_SECONDS).astype(int), len(self.band.hypnogram) - 1)
        stages = np.asarray(self.band.hypnogram)[epochs]  # one stage per second of the segment
        adjustment = stimulus.adjustment(montage_gain=0.7 * self._eeg_gain)
        if isinstance(adjustment, Electrical):  # the whole stretch is one block
            adjustment.block_s = n / self.fs
        elif isinstance(adjustment, (Auditory, Entrainment)):
            adjustment.duration_s = n / self.fs
        rng = np.random.default_rng(self._seeds.spawn(1)[0])
        new, _ = inject(segment, self.fs, stages, [adjustment], rng, labels=self.band.channels,
                        kinds=self.band.kinds, epoch_s=1.0)
        episode = _Episode(self.position, new - segment, origin, stimulus)
        self.episodes.append(episode)
        return episode

    def stop(self, episode: _Episode) -> int:
        """End ``episode`` now; returns the samples it lasted."""
        done = max(0, self.position - episode.start)
        episode.effect = episode.effect[:, :done]
        return done


class DreamSyncFirmware:
    """The DreamSync headband as a state machine: GATT writes in, notifications out as time passes.

    Parameters
    ----------
    band : firmware_sim.headband.SimulatedHeadband
        The night at the electrodes; its profile must be ``"dreamsync"`` (or have the same 5 electrode
        channels and 3 accelerometer axes at 250 Hz).
    vendor_plan : sequence of (float, Stimulus)
        Adjustments the vendor service pushed to the device: start time in s of the night (device
        ticks / 250) and what to do.
    rogue : sequence of str
        Rogue behaviours, from :data:`ROGUE_MODES`; empty (default) for honest firmware.
    name, address, serial : str
        Advertised name, Bluetooth address and serial number (which the log's genesis hash binds).
    seed : int or None
        Seeds the adjustments' randomness.

    Attributes
    ----------
    clock : float
        Device time in s since power-on.
    streaming, opted_out : bool
    log : list of bytes
        The 50-byte entries appended so far, in order (what an honest device serves).
    truth : list of dict
        Every adjustment actually performed, logged or not: ``{"tick", "onset", "duration",
        "kind", "actuator", "origin", "logged", "during_optout"}`` (times in s of the night).
    """

    advertised_services = (ds.SERVICE_UUID,)

    def __init__(self, band, *, vendor_plan=(), rogue=(), name: str = "DreamSync-7f3a",
                 address: str = "D5:EA:00:7F:3A:01", serial: str = "DS1-000127", seed: int | None = 0):
        if band.channels != ds.CHANNELS or band.fs != ds.SAMPLE_RATE:
            raise ValueError(f"the DreamSync streams {', '.join(ds.CHANNELS)} at {ds.SAMPLE_RATE:g} Hz; "
                             f"use SimulatedHeadband('dreamsync')")
        unknown = set(rogue) - set(ROGUE_MODES)
        if unknown:
            raise ValueError(f"unknown rogue mode {', '.join(sorted(unknown))}; known: {', '.join(ROGUE_MODES)}")
        self.band = band
        self.rogue = frozenset(rogue)
        self.name, self.address, self.serial = name, address, serial
        self.source = AdjustedSource(band, seed)
        self.vendor_plan = sorted(((int(round(t * ds.SAMPLE_RATE)), s) for t, s in vendor_plan), key=lambda p: p[0])
        self.clock = 0.0
        self.streaming = False
        self.connected = False
        self.link_lost = None
        self.opted_out = False
        self.log: list = []
        self._head = ds.genesis(serial)
        self.truth: list = []
        self._outbox: list = []  # (time, uuid, frame builder) of queued notifications
        self._seq = {ds.DATA_UUID: 0, ds.RESPONSE_UUID: 0, ds.LOG_UUID: 0}
        self._pending = np.zeros((len(ds.CHANNELS), 0))
        #: Emulator pacing, not firmware: a callable that returns True while the host lags too far
        #: behind; the stream then holds (the night waits), as when running faster than real time.
        self.hold = None

    # -- GATT ------------------------------------------------------------------------------------
    def gatt_services(self) -> list:
        """GATT table: ``[(service_uuid, [(characteristic_uuid, properties), ...]), ...]``."""
        read = ("read",)
        return [
            (ds.DEVICE_INFORMATION_UUID, [(ds.MANUFACTURER_NAME_UUID, read), (ds.MODEL_NUMBER_UUID, read),
                                          (ds.SERIAL_NUMBER_UUID, read), (ds.FIRMWARE_REVISION_UUID, read)]),
            (ds.BATTERY_SERVICE_UUID, [(ds.BATTERY_LEVEL_UUID, read)]),
            (ds.SERVICE_UUID, [(ds.DATA_UUID, ("notify",)), (ds.CONTROL_UUID, ("write",)),
                               (ds.RESPONSE_UUID, ("notify",)), (ds.LOG_UUID, ("notify",))]),
        ]

    def read(self, uuid: str) -> bytes:
        """Value of a readable characteristic; KeyError for others."""
        values = {
            ds.MANUFACTURER_NAME_UUID: b"DreamSync", ds.MODEL_NUMBER_UUID: b"DreamSync Band 1",
            ds.SERIAL_NUMBER_UUID: self.serial.encode("ascii"), ds.FIRMWARE_REVISION_UUID: b"1.0.0",
            ds.BATTERY_LEVEL_UUID: bytes([self.battery_percent]),
        }
        return values[uuid.lower()]

    @property
    def battery_percent(self) -> int:
        return int(max(0.0, 100.0 - self.clock * BATTERY_DRAIN_PER_S))

    # -- link ------------------------------------------------------------------------------------
    def connect(self) -> None:
        self.connected = True
        self.link_lost = None

    def disconnect(self) -> None:
        """The link went down: streaming stops; adjustments in progress and the plan go on."""
        self.streaming = False
        self.connected = False
        self._outbox.clear()

    # -- commands --------------------------------------------------------------------------------
    def write(self, uuid: str, data: bytes) -> None:
        """A command frame written to the control characteristic (see the protocol document)."""
        if uuid.lower() != ds.CONTROL_UUID:
            raise KeyError(f"characteristic {uuid} is not writable")
        body = ds.check(bytes(data))
        if body is None or len(body) < 2:
            self._respond(data[1] if len(data) > 1 else 0, data[0] if data else 0, ds.STATUS_BAD_CRC)
            return
        opcode, cid, args = body[0], body[1], body[2:]
        handler = {ds.OP_START: self._start, ds.OP_STOP: self._stop, ds.OP_BATTERY: self._battery,
                   ds.OP_STIMULATE: self._stimulate, ds.OP_OPTOUT_ON: self._optout_on,
                   ds.OP_OPTOUT_OFF: self._optout_off, ds.OP_READ_LOG: self._read_log,
                   ds.OP_STATUS: self._status}.get(opcode)
        if handler is None:
            self._respond(cid, opcode, ds.STATUS_UNKNOWN)
            return
        status, payload = handler(args)
        self._respond(cid, opcode, status, payload)

    def _respond(self, cid: int, opcode: int, status: int, payload: bytes = b"") -> None:
        seq = self._next_seq(ds.RESPONSE_UUID)
        self._outbox.append((self.clock, ds.RESPONSE_UUID, ds.response(seq, cid, opcode, status, payload)))

    def _next_seq(self, uuid: str) -> int:
        seq = self._seq[uuid]
        self._seq[uuid] = (seq + 1) & 0xFFFF
        return seq

    @property
    def tick(self) -> int:
        """The device's sample counter: index of the next sample of the night."""
        return self.source.position

    def _start(self, args: bytes) -> tuple:
        if not self.streaming:
            self.streaming = True
            self._t0, self._n_sampled = self.clock, 0
            self._pending = np.zeros((len(ds.CHANNELS), 0))
        return ds.STATUS_OK, self.tick.to_bytes(4, "little")

    def _stop(self, args: bytes) -> tuple:
        self.streaming = False
        return ds.STATUS_OK, b""

    def _battery(self, args: bytes) -> tuple:
        millivolts = int(3300 + 9 * self.battery_percent)
        return ds.STATUS_OK, bytes([self.battery_percent]) + millivolts.to_bytes(2, "little")

    def _stimulate(self, args: bytes) -> tuple:
        if len(args) != 8:
            return ds.STATUS_BAD_ARGS, b""
        actuator, origin, duration, chz, duv = struct.unpack("<BBHHH", args)
        if actuator not in ds.ACTUATORS or origin not in ds.ORIGINS or duration == 0:
            return ds.STATUS_BAD_ARGS, b""
        stimulus = Stimulus.from_wire(actuator, duration, chz, duv)
        if stimulus.kind != "auditory" and not 0 < stimulus.frequency_hz < ds.SAMPLE_RATE / 2:
            return ds.STATUS_BAD_ARGS, b""
        done, index = self._perform(stimulus, origin)
        status = ds.STATUS_OK if done else ds.STATUS_UNAVAILABLE if done is None else ds.STATUS_REFUSED
        return status, self.tick.to_bytes(4, "little") + index.to_bytes(4, "little")

    def _optout_on(self, args: bytes) -> tuple:
        self.opted_out = True
        index = self._append("optout-on")
        if "ignore-optout" not in self.rogue:
            for ep in [e for e in self.source.episodes if e.origin == ds.ORIGIN_VENDOR]:
                done = self.source.stop(ep)
                self._append("stopped", ep.stimulus, ds.ORIGIN_VENDOR, duration_s=int(round(done / ds.SAMPLE_RATE)),
                             logged=not self._hides(ds.ORIGIN_VENDOR))
                for record in self.truth:
                    if record["tick"] == ep.start and record["origin"] == "vendor":
                        record["duration"] = done / ds.SAMPLE_RATE
        return ds.STATUS_OK, self.tick.to_bytes(4, "little") + index.to_bytes(4, "little")

    def _optout_off(self, args: bytes) -> tuple:
        self.opted_out = False
        index = self._append("optout-off")
        return ds.STATUS_OK, self.tick.to_bytes(4, "little") + index.to_bytes(4, "little")

    def _read_log(self, args: bytes) -> tuple:
        first = int.from_bytes(args[:4], "little") if len(args) >= 4 else 0
        entries = self._served_log()
        for entry in entries[first:]:
            seq = self._next_seq(ds.LOG_UUID)
            self._outbox.append((self.clock, ds.LOG_UUID, ds.log_entry_frame(seq, ds.LOG_READ, entry)))
        head = entries[-1][ds.ENTRY_BODY.size:] if entries else ds.genesis(self.serial)
        seq = self._next_seq(ds.LOG_UUID)
        self._outbox.append((self.clock, ds.LOG_UUID, ds.log_end_frame(seq, len(entries) - min(first, len(entries)),
                                                                       head)))
        return ds.STATUS_OK, len(entries).to_bytes(4, "little")

    def _status(self, args: bytes) -> tuple:
        return ds.STATUS_OK, (bytes([int(self.opted_out)]) + len(self.log).to_bytes(4, "little") + self._head
                              + self.tick.to_bytes(4, "little"))

    # -- adjustments and the log -----------------------------------------------------------------
    def _hides(self, origin: int) -> bool:
        return origin == ds.ORIGIN_VENDOR and "covert" in self.rogue

    def _perform(self, stimulus: Stimulus, origin: int) -> tuple:
        """Carry out (or refuse) a stimulus now; returns (performed, log index or 0xFFFFFFFF), performed
        None when the night ends too soon to start it."""
        if origin == ds.ORIGIN_VENDOR and self.opted_out and "ignore-optout" not in self.rogue:
            return False, self._append("refused", stimulus, origin)
        episode = self.source.start(stimulus, origin)
        if episode is None:
            return None, 0xFFFFFFFF
        logged = not self._hides(origin)
        self.truth.append({"tick": episode.start, "onset": episode.start / ds.SAMPLE_RATE,
                           "duration": episode.effect.shape[1] / ds.SAMPLE_RATE, "kind": stimulus.kind,
                           "actuator": stimulus.actuator, "origin": ds.ORIGINS[origin], "logged": logged,
                           "during_optout": self.opted_out, "frequency_hz": stimulus.frequency_hz,
                           "intensity_uv": stimulus.intensity_uv})
        index = self._append("stimulation", stimulus, origin, logged=logged)
        return True, index

    def _append(self, event: str, stimulus: Stimulus | None = None, origin: int = ds.ORIGIN_SLEEPER, *,
                duration_s: int | None = None, logged: bool = True) -> int:
        """Append an entry (unless ``logged`` is False: the rogue's silence); returns its index."""
        if not logged:
            return 0xFFFFFFFF
        index = len(self.log)
        fields = {}
        if stimulus is not None:
            fields = dict(actuator=stimulus.code, origin=origin,
                          duration_s=int(round(stimulus.duration_s)) if duration_s is None else duration_s,
                          frequency_chz=int(round(stimulus.frequency_hz * 100)),
                          intensity_duv=int(round(stimulus.intensity_uv * 10)))
        body = ds.entry_body(index, self.tick, ds.EVENT_CODES[event], **fields)
        self._head = ds.chain(self._head, body)
        entry = body + self._head
        self.log.append(entry)
        if self.connected:
            seq = self._next_seq(ds.LOG_UUID)
            self._outbox.append((self.clock, ds.LOG_UUID, ds.log_entry_frame(seq, ds.LOG_LIVE, entry)))
        return index

    def _served_log(self) -> list:
        """The log as this firmware serves it (honest: as written)."""
        if not self.rogue & {"erase-log", "rewrite-log"}:
            return list(self.log)
        def vendors(entry: bytes) -> bool:  # a vendor stimulation, or its stop
            _, _, event, _, origin, *_ = ds.ENTRY_BODY.unpack(entry[:ds.ENTRY_BODY.size])
            return origin == ds.ORIGIN_VENDOR and ds.EVENTS[event] in ("stimulation", "stopped")

        kept = [e for e in self.log if not vendors(e)]
        if "rewrite-log" not in self.rogue:
            return kept
        head, out = ds.genesis(self.serial), []
        for i, e in enumerate(kept):  # renumbered and chained again: verifies on its own
            fields = list(ds.ENTRY_BODY.unpack(e[:ds.ENTRY_BODY.size]))
            fields[0] = i
            body = ds.ENTRY_BODY.pack(*fields)
            head = ds.chain(head, body)
            out.append(body + head)
        return out

    def _run_plan(self, upto_tick: int) -> None:
        """Start the vendor's planned adjustments due before ``upto_tick`` (called as samples are made)."""
        while self.vendor_plan and self.vendor_plan[0][0] < upto_tick:
            tick, stimulus = self.vendor_plan.pop(0)
            self._read_into_pending(tick - self.tick)
            self._perform(stimulus, ds.ORIGIN_VENDOR)

    # -- streaming -------------------------------------------------------------------------------
    def _read_into_pending(self, n: int) -> None:
        if n > 0:
            block = self.source.read(n)
            self._pending = np.hstack([self._pending, block])
            self._n_sampled += block.shape[1]

    def advance(self, seconds: float) -> list:
        """Let ``seconds`` of device time pass; returns ``[(time_s, characteristic_uuid, payload), ...]``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        end = self.clock + seconds
        sent = []
        if self.streaming and not (self.hold is not None and self.hold()):  # held: the samples wait
            target = int(np.floor((end - self._t0) * ds.SAMPLE_RATE + 1e-9))
            if target > self._n_sampled:
                self._run_plan(self.tick + target - self._n_sampled)  # reads up to each planned start first
                self._read_into_pending(target - self._n_sampled)
            sent = self._packetise()
        self.clock = end
        due = [item for item in self._outbox if item[0] <= end]
        self._outbox = [item for item in self._outbox if item[0] > end]
        return sorted(sent + due, key=lambda item: item[0])

    def _packetise(self) -> list:
        m = self._pending.shape[1] - self._pending.shape[1] % ds.SAMPLES_PER_FRAME
        if m == 0:
            return []
        block, self._pending = self._pending[:, :m], self._pending[:, m:]
        first_tick = self.tick - self._pending.shape[1] - m
        seq = self._seq[ds.DATA_UUID]
        frames = ds.sample_frames(block[:ds.N_EXG], block[ds.N_EXG:], seq, first_tick)
        self._seq[ds.DATA_UUID] = (seq + len(frames)) & 0xFFFF
        first_index = self._n_sampled - self._pending.shape[1] - m
        times = self._t0 + (first_index + np.arange(1, len(frames) + 1) * ds.SAMPLES_PER_FRAME) / ds.SAMPLE_RATE
        return [(float(t), ds.DATA_UUID, f) for t, f in zip(times, frames)]

    @property
    def night_over(self) -> bool:
        """True once the whole night has been streamed."""
        return self.tick >= self.band.n_samples and self._pending.shape[1] < ds.SAMPLES_PER_FRAME
