"""The emulated DreamSync band behind ``--device dreamsync``: its scenario options, and the real driver on it.

There is no DreamSync hardware: ``--device dreamsync`` serves the firmware of
:mod:`firmware_sim.dreamsync_band` through the emulated bleak backend and reads it with the real BLE
driver (:class:`ingest.boards.dreamsync.DreamSyncBoard`), so everything from the radio up is the code
a real band would meet. The scenario is set on the command line:

``--vendor-plan``  what the vendor service pushed to the band, ``ACTUATOR@START/DURATION[/HZ[/UV]]``
                   items separated by commas (``current@5m/3m/12/4,light-flicker@12m/2m/40/2``);
``--sleeper-plan`` the sleeper's own adjustments, sent by the host as the stream reaches START;
``--optout``       ``START[-END]``: the host opts out at START (and back in at END);
``--rogue``        rogue firmware behaviours, comma-separated (``covert``, ``ignore-optout``,
                   ``erase-log``, ``rewrite-log``).

Times are durations as elsewhere on the command line (``90``, ``90s``, ``5m``, ``1h30m``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACTUATORS = ("audio-closed-loop", "audio-pink-noise", "audio-rhythm", "light-flicker", "current")
ROGUE_MODES = ("covert", "ignore-optout", "erase-log", "rewrite-log")
#: Faster than real time, the emulated band runs at most this far (s) ahead of the driver, so that the
#: host's plan (opt-out, the sleeper's adjustments) lands within this much of its time.
HOLD_AHEAD_S = 10.0


def _seconds(text: str) -> float:
    from .cli import parse_duration  # the command line's duration syntax, one definition

    return parse_duration(text)


@dataclass(frozen=True)
class PlannedStimulus:
    """One planned adjustment: actuator, start and duration in s, frequency in Hz, intensity in uV."""

    actuator: str
    start_s: float
    duration_s: float
    frequency_hz: float = 0.0
    intensity_uv: float = 1.0


def parse_plan(text: str) -> list:
    """``ACTUATOR@START/DURATION[/HZ[/UV]],...`` -> list of PlannedStimulus; ValueError with one line."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"([a-z-]+)@([^/]+)/([^/]+)(?:/([^/]+))?(?:/([^/]+))?", item)
        if not match:
            raise ValueError(f"not a planned adjustment: {item!r} (ACTUATOR@START/DURATION[/HZ[/UV]], "
                             "e.g. current@5m/3m/12/4)")
        actuator, start, duration, hz, uv = match.groups()
        if actuator not in ACTUATORS:
            raise ValueError(f"unknown actuator {actuator!r}; known: {', '.join(ACTUATORS)}")
        try:
            frequency = float(hz) if hz else 0.0
            intensity = float(uv) if uv else 1.0
            start_s, duration_s = _seconds(start), _seconds(duration)
        except Exception as err:  # argparse's error type or a float error: one line either way
            raise ValueError(f"{item!r}: {err}") from None
        if actuator in ("audio-rhythm", "light-flicker", "current") and not 0 < frequency < 125:
            raise ValueError(f"{item!r}: {actuator} needs a frequency between 0 and 125 Hz")
        out.append(PlannedStimulus(actuator, start_s, duration_s, frequency, intensity))
    return out


def parse_optout(text: str) -> tuple:
    """``START[-END]`` -> (start_s, end_s or None)."""
    start, _, end = text.partition("-")
    try:
        return _seconds(start), (_seconds(end) if end else None)
    except Exception as err:
        raise ValueError(f"not an opt-out period: {text!r} ({err}); e.g. 8m or 8m-20m") from None


def parse_rogue(text: str) -> tuple:
    """``covert,ignore-optout`` -> tuple of rogue modes."""
    modes = tuple(filter(None, (m.strip() for m in text.split(","))))
    unknown = [m for m in modes if m not in ROGUE_MODES]
    if unknown:
        raise ValueError(f"unknown rogue mode {', '.join(unknown)}; known: {', '.join(ROGUE_MODES)}")
    return modes


@dataclass
class BandScenario:
    """What the emulated band is told to do tonight (see the module docstring)."""

    vendor_plan: list = field(default_factory=list)
    sleeper_plan: list = field(default_factory=list)
    optout: tuple | None = None
    rogue: tuple = ()


def emulated_dreamsync(scenario: BandScenario | None = None, *, speed: float = 1.0, hours: float = 8.0,
                       seed: int | None = 0, capture: str | None = None):
    """The real DreamSync driver on the emulated band, registered while the driver is open.

    Parameters
    ----------
    scenario : BandScenario, optional
        Vendor plan, sleeper's plan, opt-out, rogue modes; nothing by default.
    speed : float
        1: real-time pacing; anything else: as fast as the driver reads.
    hours, seed
        Length and seed of the simulated night.
    capture : str, optional
        Raw capture the driver writes.

    Returns
    -------
    ingest.boards.dreamsync.DreamSyncBoard
        Not yet opened; its ``emulator`` attribute is the :class:`firmware_sim.ble.EmulatedDevice`
        (``emulator.firmware.truth`` says what was really done). The stream ends with the night.
    """
    from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner, register, unregister
    from firmware_sim.dreamsync_band import DreamSyncFirmware, Stimulus
    from firmware_sim.headband import SimulatedHeadband
    from ingest.boards.dreamsync import DreamSyncBoard, HostAction

    scenario = scenario or BandScenario()
    band = SimulatedHeadband("dreamsync", hours=hours, seed=seed)
    vendor = [(p.start_s, Stimulus(p.actuator, p.duration_s, p.frequency_hz, p.intensity_uv))
              for p in scenario.vendor_plan]
    firmware = DreamSyncFirmware(band, vendor_plan=vendor, rogue=scenario.rogue, seed=seed)
    emulator = EmulatedDevice(firmware, realtime=speed == 1.0)
    actions = [HostAction(p.start_s, "stimulate", p.actuator, p.duration_s, p.frequency_hz, p.intensity_uv)
               for p in scenario.sleeper_plan]
    if scenario.optout is not None:
        start, end = scenario.optout
        actions.append(HostAction(start, "optout_on"))
        if end is not None:
            actions.append(HostAction(end, "optout_off"))

    class EmulatedDreamSync(DreamSyncBoard):
        """The driver on the emulated band: the band is switched on while the driver is open, and
        the stream ends when the simulated night does."""

        emulator = None

        def _open(self) -> None:
            register(emulator)
            try:
                super()._open()
            except Exception:
                unregister(emulator)
                raise

        def _receive(self, timeout: float) -> list:
            chunks = super()._receive(timeout)
            if not chunks and firmware.night_over:
                self._stop_requested.set()  # the night is over: blocks() ends, stop() still reads the log
            return chunks

        def _close(self) -> None:
            try:
                super()._close()
            finally:
                unregister(emulator)

    board = EmulatedDreamSync(address=emulator.address, plan=actions, capture=capture, backend=EmulatedBackend,
                              scanner_backend=EmulatedScanner, scan_timeout=5.0)
    board.emulator = emulator
    if speed != 1.0:  # faster than real time: the night waits while the driver is more than 10 s behind
        board.audit_options = {"check_timing": False}  # arrival times then say nothing of the band's clock
        firmware.hold = lambda: firmware.tick - board.position_s * firmware.band.fs > HOLD_AHEAD_S * firmware.band.fs
    return board
