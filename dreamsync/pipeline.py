"""Wiring: devices into the live stager, simulated nights into EDF, EDF files into hypnograms.

Everything the command line does is a function or class here, for use from Python.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dsp.stages import EPOCH_SECONDS, STAGES, UNSCORED_LABEL, to_labels
from ingest.channels import find_channel, pick_eye_channels, pick_staging_channel
from ingest.errors import RecordingError

# EDF+ annotation text for each stage (the Sleep-EDF convention, with AASM stage names).
STAGE_ANNOTATION = {"W": "Sleep stage W", "N1": "Sleep stage N1", "N2": "Sleep stage N2",
                    "N3": "Sleep stage N3", "REM": "Sleep stage R"}
DEVICES = ("auto", "sim", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s", "dreamsync")


def open_device(name: str, *, speed: float = 1.0, hours: float = 8.0, seed: int | None = 0,
                block_seconds: float | None = None, port: str | None = None, address: str | None = None,
                capture: str | None = None, notice: Callable[[str], None] | None = None, scenario=None):
    """Make the device called ``name`` (not yet opened).

    Parameters
    ----------
    name : str
        ``"sim"``: the simulated headband of ``firmware_sim`` at signal level (any speed);
        ``"cyton"``, ``"cyton-daisy"`` (serial), ``"ganglion"``, ``"muse-2"``, ``"muse-s"`` (BLE): a real
        headband; ``"dreamsync"``: the emulated DreamSync band read by its BLE driver (see
        ``scenario``); ``"auto"``: the first real headband found (serial dongles, then BLE), else the
        emulated Cyton served on a pseudo-terminal and read by the real Cyton driver.
    speed : float, optional
        Pace relative to real time for the simulator; 0 = as fast as possible.
    hours, seed : optional
        Length and seed of a simulated night.
    block_seconds : float, optional
        Seconds of signal per block of the signal-level simulator (default: 0.1 at real-time pace,
        2 when faster).
    port : str, optional
        Serial port of a Cyton (found from the dongle's USB ids when omitted).
    address : str, optional
        Bluetooth address or advertised name of a BLE headband (the first found when omitted).
    capture : str, optional
        Raw capture file a hardware board writes while open.
    notice : callable, optional
        Receives one line when ``auto`` falls back to the emulator.
    scenario : dreamsync.band.BandScenario, optional
        ``"dreamsync"`` only: what the emulated DreamSync band does tonight (vendor plan, the
        sleeper's plan, opt-out, rogue modes); it is read by the real BLE driver through the
        emulated bleak backend (see :mod:`dreamsync.band`).

    Returns
    -------
    ingest.device.Device
    """
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; available: {', '.join(DEVICES)}")
    if name == "sim":
        from firmware_sim.headband import SimulatedHeadband
        from ingest.sim import SimulatedDevice

        if block_seconds is None:
            block_seconds = 0.1 if 0 < speed <= 10 else 2.0
        source = SimulatedHeadband("sim", hours=hours, seed=seed)
        return SimulatedDevice(source, speed=speed, block_seconds=block_seconds, device_id=f"sim:{seed}")
    if name in ("cyton", "cyton-daisy"):
        from ingest.boards.cyton import CytonBoard

        return CytonBoard(port, daisy=(name == "cyton-daisy"), capture=capture)
    if name == "ganglion":
        from ingest.boards.ganglion import GanglionBoard

        return GanglionBoard(**_ble_target(address), capture=capture)
    if name in ("muse-2", "muse-s"):
        from ingest.boards.muse import MuseBoard

        return MuseBoard(**_ble_target(address), capture=capture)
    if name == "dreamsync":
        from .band import emulated_dreamsync

        return emulated_dreamsync(scenario, speed=speed, hours=hours, seed=seed, capture=capture)
    return _auto_device(speed=speed, hours=hours, seed=seed, capture=capture, notice=notice)


def _ble_target(address: str | None) -> dict:
    """An address ("00:55:DA:B0:13:24") or an advertised name ("Muse-1324")."""
    if address and address.count(":") == 5:
        return {"address": address}
    return {"name": address} if address else {}


def _auto_device(*, speed, hours, seed, capture, notice):
    """The first real headband found, else the emulated Cyton on a pseudo-terminal."""
    from ingest.ble import discover
    from ingest.boards.cyton import CytonBoard, find_ports
    from ingest.errors import DeviceError

    ports = find_ports()
    if ports:
        return CytonBoard(ports[0], capture=capture)
    try:
        nearby = discover(timeout=3.0)
        ble = "no Muse, Ganglion or DreamSync advertising"
    except DeviceError as err:
        nearby, ble = [], str(err).split(": ", 1)[-1]
    for name, address in nearby:
        if name.startswith("DreamSync"):
            from ingest.boards.dreamsync import DreamSyncBoard

            return DreamSyncBoard(address=address, capture=capture)
        if name.startswith("Muse"):
            from ingest.boards.muse import MuseBoard

            return MuseBoard(address=address, capture=capture)
        from ingest.boards.ganglion import GanglionBoard

        return GanglionBoard(address=address, capture=capture)
    sim = SerialSimulation("cyton", hours=hours, seed=seed, realtime=speed == 1.0)
    port = sim.start()
    if notice:
        notice(f"no headband found (no OpenBCI dongle on a serial port; {ble}); "
               f"using the emulated Cyton on {port}")

    class EmulatedCyton(CytonBoard):
        """The real Cyton driver reading the emulated board; the emulator stops when the board closes."""

        def _close(self) -> None:
            super()._close()
            sim.stop()

    board = EmulatedCyton(port, capture=capture)
    if speed != 1.0:  # served faster than real time: arrival times say nothing of the board's clock
        board.audit_options = {"check_timing": False}
    return board


@dataclass
class RecordingSummary:
    """What :func:`record` wrote."""

    path: str | None
    capture: str | None
    samples: int = 0
    samples_lost: int = 0
    fs: float = 0.0
    channels: tuple = ()
    truncated_capture: bool = False

    @property
    def seconds(self) -> float:
        """Length of the recording in seconds, lost samples included."""
        return self.samples / self.fs if self.fs else 0.0


def record(device, out: str, *, duration: float | None = None, capture: str | None = None,
           on_block: Callable | None = None) -> RecordingSummary:
    """Record a device (opened or not) to EDF+ until it ends, ``duration`` s or ``device.stop()``.

    Lost samples are marked as gaps (``Gap: N samples lost``), never filled. A board that writes a
    raw capture keeps writing it as bytes arrive; the EDF+ is written when recording stops, also
    after Ctrl-C or an error, from everything received until then.
    """
    from ingest.recorder import EdfRecorder

    summary = RecordingSummary(path=None, capture=capture)
    recorder = None
    with device:
        device.start()
        limit = None if duration is None else int(round(duration * device.fs))
        recorder = EdfRecorder(out, device.channels, device.kinds, device.fs)
        summary.fs, summary.channels = device.fs, tuple(device.channels)
        try:
            for block in device.blocks():
                if limit is not None and block.first_index >= limit:
                    break
                if limit is not None and block.end_index > limit:
                    block = _cut(block, limit - block.first_index)
                recorder.add(block)
                if on_block is not None:
                    on_block(block)
                if limit is not None and block.end_index >= limit:
                    break
        finally:
            device.stop()
            summary.samples, summary.samples_lost = recorder.samples, recorder.samples_lost
            summary.path = recorder.close()
            summary.truncated_capture = bool(getattr(device, "truncated", False))
    return summary


def _cut(block, n: int):
    from ingest.stream import SampleBlock

    return SampleBlock(block.device_id, block.channels, block.kinds, block.fs, block.first_index,
                       block.data[:, :n], block.host_time, block.lost_before)


def convert(source: str, out: str, on_block: Callable | None = None) -> RecordingSummary:
    """Rewrite a raw capture (decoded again) or an EDF/EDF+/BDF file as EDF+, gaps marked.

    A capture cut short by a crash is converted up to its last complete record. ``on_block`` is
    called with each block converted (e.g. to show progress).
    """
    from ingest.replay import open_recording

    return record(open_recording(source, speed=0.0), out, on_block=on_block)


@dataclass(frozen=True)
class LiveEpoch:
    """One staged epoch of a live stream: number, clock time of its start, stage name, confidence."""

    index: int
    start: dt.datetime
    stage: str
    confidence: float


@dataclass
class LiveSummary:
    """What a live session has seen so far."""

    epochs: list = field(default_factory=list)
    samples: int = 0
    samples_lost: int = 0
    eeg_channel: str = ""  # the EEG channels staged from, comma-separated
    emg_channel: str | None = None
    others: list = field(default_factory=list)  # the EOG and accelerometer channels staged from
    adjustments: list = field(default_factory=list)  # (AdjustmentEvent, authorized) as raised

    @property
    def staged_from(self) -> str:
        """The channels staged from, for people (as :attr:`StagedRecording.staged_from`)."""
        return staged_from([self.eeg_channel], [self.emg_channel] if self.emg_channel else [], self.others)

    def minutes_per_stage(self) -> dict:
        """Minutes in each stage (and ``"?"``), in stage order."""
        counts = {name: 0 for name in STAGES + (UNSCORED_LABEL,)}
        for e in self.epochs:
            counts[e.stage] += 1
        return {name: n * EPOCH_SECONDS / 60.0 for name, n in counts.items()}


class LiveSession:
    """Stages a device's stream epoch by epoch, causally.

    Parameters
    ----------
    device : ingest.device.Device
        An opened device.
    on_epoch : callable, optional
        Called with each :class:`LiveEpoch` as soon as it is staged.
    duration : float, optional
        Stop after this many seconds of signal (None: until the device ends or ``stop()``).
    on_adjustment : callable, optional
        Called with ``(event, authorized)`` as soon as an adjustment detector raises an alarm
        (:class:`dsp.events.AdjustmentEvent`, onset in s from the session's first sample).
    authorized : sequence of dreamsync.authorization.AuthorizedWindow, optional
        What the sleeper consented to, in s from the session's first sample.
    detect : bool
        Run the adjustment detectors on every electrode channel (default True), and raise the
        stream audit's anomalies of a board or capture as tampering alarms.
    on_block : callable, optional
        Called with each :class:`ingest.stream.SampleBlock` (cut at ``duration``) before it is
        staged: to record it, show its quality or forward it.
    calibration : ndarray, shape (n_features,), optional
        Feature offsets from an earlier night of the same headband
        (:func:`dreamsync.calibration.read_calibration`): the stager starts adapted to it.
    """

    def __init__(self, device, on_epoch: Callable[[LiveEpoch], None] | None = None, duration: float | None = None,
                 on_adjustment: Callable | None = None, authorized=(), detect: bool = True,
                 on_block: Callable | None = None, calibration=None):
        from dsp.staging import LiveStager

        self.device = device
        self.on_epoch = on_epoch or (lambda epoch: None)
        # every EEG channel, as `dreamsync stage` uses the recording's: a lead that fails during the
        # night costs only its own epochs
        self._eeg = [i for i, k in enumerate(device.kinds) if k == "EEG"]
        if not self._eeg:
            raise ValueError(f"device {device.device_id} has no EEG channel to stage from")
        self._emg = [i for i, k in enumerate(device.kinds) if k == "EMG"][:1]
        self._eog = pick_eye_channels(device.channels, device.kinds)
        self._acc = [i for i, k in enumerate(device.kinds) if k == "ACC"]
        self.summary = LiveSummary(eeg_channel=", ".join(device.channels[i] for i in self._eeg),
                                   emg_channel=device.channels[self._emg[0]] if self._emg else None,
                                   others=[device.channels[i] for i in self._eog + self._acc])
        self._stager = LiveStager(device.fs, n_eeg=len(self._eeg), n_emg=len(self._emg), calibration=calibration,
                                  n_eog=len(self._eog), n_acc=len(self._acc))
        self._limit = None if duration is None else int(round(duration * device.fs))
        self._start: dt.datetime | None = None
        self._electrodes = [i for i, k in enumerate(device.kinds) if k in ("EEG", "EOG", "EMG")]
        self._monitor = None
        if detect:
            from dsp.adjustments import AdjustmentMonitor

            self._monitor = AdjustmentMonitor(device.fs, len(self._electrodes))
        self.on_adjustment = on_adjustment or (lambda event, authorized: None)
        self.authorized = list(authorized)
        self.on_block = on_block

    def run(self) -> LiveSummary:
        """Start the device and stage until it ends, ``duration`` is reached or ``stop()`` is called."""
        self.device.start()
        for block in self.device.blocks():
            if self._start is None:
                self._start = dt.datetime.fromtimestamp(block.host_time)
            data = block.data
            if self._limit is not None:
                data = data[:, : max(0, self._limit - block.first_index)]
            if self.on_block is not None and data.shape[1]:
                self.on_block(block if data.shape[1] == block.n_samples else _cut(block, data.shape[1]))
            if block.lost_before:
                self._report(self._stager.push_gap(block.lost_before))
                self.summary.samples_lost += block.lost_before
                if self._monitor is not None:
                    self._alarm(self._monitor.push_gap(block.lost_before))
            self._report(self._stager.push(data[self._eeg], *(data[rows] if rows else None
                                                              for rows in (self._emg, self._eog, self._acc))))
            if self._monitor is not None:
                self._alarm(self._monitor.push(data[self._electrodes]))
                if hasattr(self.device, "stream_alarms"):  # packets replayed, re-sequenced, forged
                    from .detection import stream_events

                    self._alarm(stream_events(self.device.stream_alarms()))
            self.summary.samples += data.shape[1]
            if self._limit is not None and block.end_index >= self._limit:
                break
        self.device.stop()
        return self.summary

    def stop(self) -> None:
        """End :meth:`run` after the block in hand (safe from a signal handler)."""
        self.device.stop()

    def _alarm(self, events) -> None:
        from .authorization import authorize

        for event in events:
            ok = all(flag for _, flag in authorize([event], self.authorized))
            self.summary.adjustments.append((event, ok))
            self.on_adjustment(event, ok)

    def _report(self, staged) -> None:
        for e in staged:
            epoch = LiveEpoch(e.index, self._start + dt.timedelta(seconds=e.index * EPOCH_SECONDS),
                              to_labels([e.stage])[0], e.confidence)
            self.summary.epochs.append(epoch)
            self.on_epoch(epoch)


@dataclass(frozen=True)
class SimulatedNight:
    """What :func:`simulate_night` wrote."""

    path: str
    truth_path: str
    hours: float
    channels: tuple
    fs: float
    hypnogram: np.ndarray
    samples_lost: int


ADJUSTMENT_KINDS = ("auditory", "electrical", "entrainment", "tampering")


def default_adjustments(names, band, seed: int | None = 0) -> list:
    """The adjustments ``--inject NAME,...`` stands for, with physiological defaults.

    auditory: closed-loop stimulation as in Ngo 2013 (N550 of 45 uV; the -80 uV trough threshold
    scaled to the montage's amplitude); electrical: slow-oscillatory tACS at 0.75 Hz, five 5-min
    blocks with 1-min pauses after 4 min of stable N2/N3 (Marshall 2006), 50 uV at the scalp;
    entrainment: a 40-Hz steady-state response of 2 uV for 10 min in NREM; tampering: one 30-s
    segment each replayed, spliced from another (simulated) sleeper, and time-warped.
    """
    from firmware_sim import adjustments as adj
    from firmware_sim.headband import SimulatedHeadband

    unknown = sorted(set(names) - set(ADJUSTMENT_KINDS))
    if unknown:
        raise ValueError(f"unknown adjustment {', '.join(unknown)}; known: {', '.join(ADJUSTMENT_KINDS)}")
    eeg_gain = float(np.mean([g for g, k in zip(band.profile.gains, band.kinds) if k == "EEG"] or [1.0]))
    out = []
    for name in names:
        if name == "auditory":
            out.append(adj.Auditory(mode="closed_loop", montage_gain=0.7 * eeg_gain))
        elif name == "electrical":
            out.append(adj.Electrical())
        elif name == "entrainment":
            out.append(adj.Entrainment(frequency_hz=40.0, amplitude_uv=2.0, duration_s=600.0, stages=(2, 3)))
        elif name == "tampering":
            donor = SimulatedHeadband(band.profile, hours=min(1.0, len(band.hypnogram) / 120), fs=band.fs,
                                      seed=None if seed is None else seed + 1_000_003).read_all()
            out += [adj.Tampering(mode="replay"), adj.Tampering(mode="splice", donor=donor, donor_label="another sleeper"),
                    adj.Tampering(mode="warp")]
    return out


def _adjustment_annotations(truth: list) -> list:
    """EDF+ annotations of injected adjustments: episodes, and the clicks and blocks inside them."""
    from ingest.edf import Annotation

    out = []
    for record in truth:
        kind, params = record["kind"], record["params"]
        detail = f" {params['mode']}" if kind == "tampering" else ""
        out.append(Annotation(record["onset"], record["duration"], f"Adjustment {kind}{detail}"))
        for click in params.get("clicks", ()):
            out.append(Annotation(click["time"], 0.05, "Adjustment auditory click"))
        for on, off in params.get("blocks", ()):
            out.append(Annotation(on, off - on, "Adjustment electrical block"))
    return out


def simulate_night(out: str, *, hours: float = 8.0, seed: int | None = 0, profile: str = "sim",
                   fs: float | None = None, start: dt.datetime | None = None, faults=None,
                   inject=(), truth_path: str | None = None) -> SimulatedNight:
    """Simulate a night and write it as EDF+ plus a JSON ground-truth file.

    The EDF+ holds the signals and, as annotations, the true stages (``Sleep stage W/N1/N2/N3/R``),
    every simulated event (``Event spindle``, ``Event electrode_pop EEG C3``, ...), faults and lost
    samples (``Gap: N samples lost``; the samples themselves are written as 0). The truth file holds
    the same in JSON with the settings that produced them.

    Parameters
    ----------
    out : str
        Path of the EDF+ file to write.
    hours : float
        Length of the night in hours.
    seed : int or None
        Seed of the night (hypnogram, person, noise, faults): the same seed gives the same night.
    profile : str
        Device profile of ``firmware_sim`` (montage, rate, amplitudes, packet size).
    fs : float, optional
        Sample rate in Hz; the profile's by default.
    start : datetime, optional
        Lights-off time written in the header; 23:00 today by default.
    inject : sequence of str or of firmware_sim.adjustments objects, optional
        Dream adjustments to inject: names from :data:`ADJUSTMENT_KINDS` (defaults of
        :func:`default_adjustments`) or configured ``Auditory``/``Electrical``/``Entrainment``/
        ``Tampering`` objects for control over strength and timing.
    faults : firmware_sim.faults.FaultSpec, optional
        Packet loss (random, bursts) and railed/flat electrodes. Faults that act on the wire
        (corruption, duplication, reordering, disconnects) need a driver in the loop: use a
        transport (``sim-serve``) for those.
    truth_path : str, optional
        Where to write the truth JSON; ``OUT`` with ``.truth.json`` for ``.edf`` by default.
    """
    import json
    import pathlib

    from firmware_sim.faults import FaultSpec, PacketFaults, apply_signal_faults, lost_samples
    from firmware_sim.headband import SimulatedHeadband
    from ingest.edf import Annotation, gap_annotation, write_edf

    faults = faults or FaultSpec()
    if faults.wire_faults:
        raise ValueError("corruption, duplication, reordering and disconnects act on the wire: "
                         "serve the device (sim-serve) and record it through a driver to see them")
    band = SimulatedHeadband(profile, hours=hours, seed=seed, fs=fs)
    data = band.read_all()
    if start is None:
        start = dt.datetime.combine(dt.date.today(), dt.time(23, 0))
    adjustment_truth: list = []
    if inject:
        from firmware_sim.adjustments import inject as apply_adjustments

        names = [a for a in inject if isinstance(a, str)]
        chosen = default_adjustments(names, band, seed) + [a for a in inject if not isinstance(a, str)]
        adjusted, adjustment_truth = apply_adjustments(data, band.fs, band.hypnogram, chosen, seed,
                                                       labels=band.channels, kinds=band.kinds)
        data = adjusted.astype(np.float32)
    fault_records = apply_signal_faults(data, band.fs, band.channels, faults, seed=seed)
    loss = PacketFaults(faults, seed=seed)
    lost = lost_samples(loss, data.shape[1], band.profile.samples_per_packet)
    data[:, lost] = 0.0  # written as 0, marked as a gap below: never passed off as signal
    gaps = _runs(lost)

    labels = to_labels(band.hypnogram)
    annotations = [Annotation(i * EPOCH_SECONDS, EPOCH_SECONDS, STAGE_ANNOTATION[s]) for i, s in enumerate(labels)]
    annotations += [Annotation(e.onset, e.duration, f"Event {e.kind}" + (f" {e.channel}" if e.channel else ""))
                    for e in band.events]
    annotations += [Annotation(r["onset"], r["duration"], f"Fault {r['kind']} {r['channel']}") for r in fault_records]
    annotations += _adjustment_annotations(adjustment_truth)
    annotations += [gap_annotation(first, n, band.fs) for first, n in gaps]
    write_edf(out, data, band.fs, band.channels, band.kinds, start=start, annotations=annotations)

    truth_path = truth_path or str(pathlib.Path(out).with_suffix(".truth.json"))
    truth = {
        "device": band.profile.name, "seed": seed, "fs": band.fs, "start": start.isoformat(),
        "channels": list(band.channels), "kinds": list(band.kinds), "epoch_length": EPOCH_SECONDS,
        "stages": labels,
        "events": _events_json(band.events),
        "adjustments": adjustment_truth,
        "faults": {"spec": faults.to_dict(), "signal": fault_records, "packets": loss.to_dict(),
                   "gaps": [{"onset": first / band.fs, "samples": n} for first, n in gaps]},
    }
    with open(truth_path, "w") as fh:
        json.dump(truth, fh)
    return SimulatedNight(out, truth_path, len(band.hypnogram) * EPOCH_SECONDS / 3600, band.channels, band.fs,
                          band.hypnogram, int(lost.sum()))


def _events_json(events) -> list:
    """Ground-truth events as plain values for truth files (times in s, 0.1 ms)."""
    return [{"kind": e.kind, "onset": round(e.onset, 4), "duration": round(e.duration, 4), "channel": e.channel}
            for e in events]


def _runs(mask: np.ndarray) -> list:
    """``[(first_index, length), ...]`` of the True runs in a boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, ends)]


SERIAL_DEVICES = {"cyton": False, "cyton-daisy": True}  # profile -> Daisy fitted


class SerialSimulation:
    """A simulated OpenBCI board served on a pseudo-terminal, with faults, until stopped.

    Parameters
    ----------
    device : str
        ``"cyton"`` or ``"cyton-daisy"``.
    hours, seed : optional
        Length and seed of the simulated night.
    faults : firmware_sim.faults.FaultSpec, optional
        Packet faults (loss, bursts, corruption, duplication, reordering), radio dropouts
        (``disconnect_every``/``disconnect_seconds``), clock drift and railed/flat electrodes.
    realtime : bool, optional
        Pace packets at the board's rate (True) or as fast as the reader drains them.
    mains_hz : float, optional
        Mains frequency picked up by the electrodes.
    """

    def __init__(self, device: str = "cyton", *, hours: float = 8.0, seed: int | None = 0, faults=None,
                 realtime: bool = True, mains_hz: float = 50.0):
        from firmware_sim.faults import FaultSpec, PacketFaults, SignalFaultSource, disconnect_schedule
        from firmware_sim.headband import SimulatedHeadband
        from firmware_sim.protocols.cyton import SAMPLE_RATE, CytonFirmware
        from firmware_sim.serial_pty import PtySerialServer

        if device not in SERIAL_DEVICES:
            raise ValueError(f"sim-serve serves serial boards: {', '.join(SERIAL_DEVICES)}; not {device!r}")
        self.faults = faults or FaultSpec()
        # the board samples at 250 Hz; with the Daisy a 16-channel sample spans two packets
        self.headband = SimulatedHeadband(device, hours=hours, seed=seed, fs=SAMPLE_RATE, mains_hz=mains_hz)
        self.source = SignalFaultSource(self.headband, self.faults, seed=seed)
        self.packet_faults = PacketFaults(self.faults, seed=seed)
        self.firmware = CytonFirmware(self.source, daisy=SERIAL_DEVICES[device], seed=seed,
                                      rate_error=self.faults.drift, packet_filter=self.packet_faults)
        self.server = PtySerialServer(self.firmware, realtime=realtime)
        self.dropouts = disconnect_schedule(self.faults, hours * 3600, seed=seed)
        self.port: str | None = None

    def start(self) -> str:
        """Start serving; returns the pseudo-terminal path a driver opens (115200 baud)."""
        self.port = self.server.start()
        return self.port

    def run(self, stop) -> None:
        """Serve until ``stop`` (a threading.Event) is set or the night has been streamed.

        Radio dropouts from the fault spec are applied on the host clock while streaming.
        """
        import time

        t0 = time.monotonic()
        pending = list(self.dropouts)
        while not stop.wait(0.1):
            if self.firmware.source_exhausted or not self.server.serving:
                return
            now = time.monotonic() - t0
            down = bool(pending) and pending[0][0] <= now < pending[0][0] + pending[0][1]
            self.firmware.reachable = not down
            if pending and now >= pending[0][0] + pending[0][1]:
                pending.pop(0)

    def stop(self) -> None:
        """Stop serving and release the pseudo-terminal."""
        self.server.stop()

    def truth(self) -> dict:
        """What was served: stages, events, faults and the packet log, as plain values."""
        return {
            "device": self.headband.profile.name, "fs": self.headband.fs,
            "channels": list(self.headband.channels), "stages": to_labels(self.headband.hypnogram),
            "events": _events_json(self.headband.events),
            "faults": {"spec": self.faults.to_dict(), "signal": self.source.records,
                       "packets": self.packet_faults.to_dict(), "dropouts": self.dropouts,
                       "packets_dropped_by_radio": self.firmware.packets_dropped},
        }


@dataclass(frozen=True)
class StagedRecording:
    """The result of :func:`stage_file`: stages plus where they came from."""

    result: object  # dsp.staging.StagingResult
    start: dt.datetime | None
    eeg_channels: list
    emg_channel: str | None
    eog_channels: list = field(default_factory=list)
    acc_channels: list = field(default_factory=list)

    @property
    def staged_from(self) -> str:
        """The channels staged from, for people: ``"C4-M1, Fpz-M2 + EMG chin + EOG E1-M2, EOG E2-M1"``."""
        return staged_from(self.eeg_channels, [self.emg_channel] if self.emg_channel else [],
                           self.eog_channels, self.acc_channels)

    def to_json(self) -> dict:
        """The ``stage`` output contract: epoch_length, start, stages, confidence (+ provenance,
        statistics and the calibration for the headband's next recording)."""
        from dsp.statistics import sleep_statistics

        from .calibration import CALIBRATION_KEY, calibration_json

        r = self.result
        extra = {} if r.feature_offsets is None else {CALIBRATION_KEY: calibration_json(r.feature_offsets)}
        return {
            "epoch_length": float(r.epoch_length),
            "start": self.start.isoformat() if self.start else None,
            "stages": to_labels(r.stages),
            "confidence": [round(float(c), 4) for c in r.confidence],
            "channels": {"eeg": list(self.eeg_channels), "emg": self.emg_channel, "eog": list(self.eog_channels),
                         "acc": list(self.acc_channels)},
            "hypnodensity": {name: [round(float(p), 4) for p in r.probabilities[:, k]] for k, name in enumerate(STAGES)},
            "statistics": sleep_statistics(r.stages, r.epoch_length),
            **extra,
        }


def staged_from(*groups) -> str:
    """Channel label groups (EEG, EMG, EOG, accelerometer) joined for people; empty groups left out."""
    return " + ".join(", ".join(g) for g in groups if len(g))


def staging_channels(rec, path: str, channel: str | None = None) -> tuple:
    """The channels of a recording to stage from.

    Parameters
    ----------
    rec : ingest.edf.EdfRecording
        The open recording.
    path : str
        Its path, for error messages.
    channel : str, optional
        EEG channel label(s), comma-separated, matched leniently. Without it: every EEG channel at
        the rate of the best-placed one (central, then frontal, parietal/occipital, temporal).

    Returns
    -------
    eeg : list of int
        EEG channel indices, all at one rate.
    emg : int or None
        A chin EMG channel sampled at >= 50 Hz, if the file has one.
    eog : list of int
        EOG channels that show eye movements apart from EEG (:func:`ingest.channels.pick_eye_channels`:
        a left and right pair at one rate, or one bipolar derivation), at >= 12 Hz; else empty.
    acc : list of int
        Accelerometer axes at one rate of >= 2 Hz (the first axis' rate), if the file has them.

    Raises
    ------
    ingest.errors.RecordingError
        No EEG channel, no such channel, or named channels at different rates.
    """
    labels, kinds = rec.labels, [s.kind for s in rec.signals]
    if channel is not None:
        try:
            eeg = [find_channel(labels, name.strip()) for name in channel.split(",") if name.strip()]
        except KeyError as err:
            raise RecordingError(f"{path}: {err.args[0]}") from None
        if len({rec.signals[i].fs for i in eeg}) > 1:
            raise RecordingError(f"{path}: channels {channel} have different sample rates; stage them separately")
    else:
        best = pick_staging_channel(labels, kinds)
        if best is None:
            shown = ", ".join(labels) if labels else "none"
            raise RecordingError(f"{path}: no EEG channel found (channels: {shown}); name one with --channel")
        eeg = [i for i, k in enumerate(kinds) if k == "EEG" and rec.signals[i].fs == rec.signals[best].fs]
    emg = next((i for i, k in enumerate(kinds) if k == "EMG" and rec.signals[i].fs >= 50), None)
    eog = pick_eye_channels(labels, kinds)
    if eog and (len({rec.signals[i].fs for i in eog}) > 1 or rec.signals[eog[0]].fs < 12):
        eog = []
    acc = [i for i, k in enumerate(kinds) if k == "ACC"]
    acc = [i for i in acc if rec.signals[i].fs == rec.signals[acc[0]].fs >= 2]
    return eeg, emg, eog, acc


def other_channels(rec, emg, eog, acc) -> dict:
    """:func:`dsp.staging.stage`'s keyword arguments for the non-EEG channels of
    :func:`staging_channels`: readers (a chunk read at a time) and their rates."""
    out = {}
    for name, rows in (("emg", [] if emg is None else [emg]), ("eog", eog), ("acc", acc)):
        if rows:
            out[name], out[f"{name}_fs"] = rec.reader(rows), rec.signals[rows[0]].fs
    return out


def read_channels(rec, indices) -> np.ndarray:
    """Signals of one rate as (channels, samples) float32 uV, NaN in gaps (float32 halves the memory).

    Read one channel at a time straight into float32, then the file is let go (its pages would
    otherwise count as this process's memory). For a pass over a long recording in chunks, use
    ``rec.reader(indices)`` instead: it never holds the whole signals.
    """
    out = np.empty((len(indices), rec.signals[indices[0]].n_samples), dtype=np.float32)
    for row, i in enumerate(indices):
        out[row] = rec.read(i, dtype=np.float32)
    rec.close()
    return out


class _ProgressReader:
    """A signal reader (``ingest.edf.SignalReader``) that reports how far reads have got: the share
    of the samples up to the furthest ``[row, start:stop]`` read so far, to ``progress``."""

    def __init__(self, reader, progress: Callable[[float], None]):
        self._reader, self._progress = reader, progress
        self.shape, self.ndim = reader.shape, 2
        self._furthest = 0

    def __getitem__(self, key):
        out = self._reader[key]
        stop = key[1].stop if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], slice) else None
        if stop is not None and stop > self._furthest and self.shape[1]:
            self._furthest = min(int(stop), self.shape[1])
            self._progress(self._furthest / self.shape[1])
        return out

    def __getattr__(self, name):  # fs, dtype, __array__ (reading everything) and the rest: the reader's
        return getattr(self._reader, name)

    def __array__(self, *args, **kwargs):
        return self._reader.__array__(*args, **kwargs)


def stage_file(path: str, *, channel: str | None = None, model=None, calibration=None,
               progress: Callable[[float], None] | None = None) -> StagedRecording:
    """Stage an EDF/EDF+/BDF recording offline.

    Parameters
    ----------
    path : str
        The recording.
    channel : str, optional
        EEG channel label(s) to stage from, comma-separated (see :func:`staging_channels`); by
        default every EEG channel at the best-placed one's rate. A chin EMG channel, a left and
        right EOG pair (or a bipolar one) and an accelerometer are used too when the file has them.
    model : dsp.model.StagingModel, optional
        Staging parameters, e.g. from ``dreamsync train``; the default model if omitted.
    calibration : ndarray, shape (n_features,), optional
        Feature offsets from an earlier night of the same headband
        (:func:`dreamsync.calibration.read_calibration`; see :func:`dsp.staging.stage`).
    progress : callable, optional
        Called with the share (0..1) of the EEG read and analysed so far, as the stager goes.

    Raises
    ------
    ingest.errors.RecordingError
        Unreadable file, or no EEG channel / no such channel.
    dsp.errors.SignalError
        Recording too short or sampled too slowly to stage.

    Notes
    -----
    The first call in a process loads the stager (numba and its compiled kernels) with the garbage
    collector paused, then freezes the objects alive at that point (:func:`gc.freeze`): the
    collector no longer walks them, so reference cycles among them are never collected.
    """
    import gc
    import sys

    from dsp.errors import SignalError
    from ingest.edf import read_edf

    # Header and annotations first, and the file let go (its pages count as this process's memory)
    # before the stager's numerical libraries load: the two never take memory at the same time.
    rec = read_edf(path)
    eeg, emg, eog, acc = staging_channels(rec, path, channel)
    rec.close()
    labels = rec.labels
    # The first call imports numba and loads its cached kernels: tens of thousands of objects that
    # live as long as the process, which the cyclic garbage collector would walk again and again (a
    # tenth of a second). It pauses meanwhile, and what was made is then frozen out of its way.
    pause = gc.isenabled() and "dsp.staging" not in sys.modules
    if pause:
        gc.disable()
    try:  # the stager reads the signals a chunk at a time: memory stays small for any length
        from dsp.staging import stage

        reader = rec.reader(eeg) if progress is None else _ProgressReader(rec.reader(eeg), progress)
        result = stage(reader, rec.signals[eeg[0]].fs, **other_channels(rec, emg, eog, acc), model=model,
                       calibration=calibration)
    except SignalError as err:
        raise SignalError(f"{path}: channels {', '.join(labels[i] for i in eeg)}: {err}") from None
    finally:
        if pause:
            gc.freeze()
            gc.enable()
        rec.close()
    return StagedRecording(result, rec.start, [labels[i] for i in eeg], labels[emg] if emg is not None else None,
                           [labels[i] for i in eog], [labels[i] for i in acc])
