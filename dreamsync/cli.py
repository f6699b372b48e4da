"""The ``dreamsync`` command line.

Only the standard library is imported at module level, so ``dreamsync --help`` answers at once and
compiles nothing; each command imports what it needs when it runs.

Exit codes: 0 success; 1 internal error (a bug: rerun with ``--debug`` for the traceback);
2 bad input or usage (unreadable or truncated file, unknown channel, bad option); 3 device or
connection problem; 4 some recordings of a cohort failed (the others were done; see the summary
table); 130 interrupted before any result.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import warnings

from . import __version__

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_DEVICE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PARTIAL = 4  # a cohort run where some recordings failed and the others were done


class InputProblem(Exception):
    """A bad option value found after parsing; reported like any bad input."""


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"10m"``, ``"8h"`` or ``"1h30m"``."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 90, 90s, 10m, 8h, 1h30m)")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return seconds


def parse_speed(text: str) -> float:
    """Pace relative to real time: a positive number, or ``max`` (as fast as possible)."""
    if text.strip().lower() in ("max", "inf", "0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', not {text!r}")
    return value


def _positive_hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"hours must be a positive number, not {text!r}")
    return value


DEVICE_CHOICES = ("auto", "sim", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s", "dreamsync")


def _device_options(p, default: str) -> None:
    p.add_argument("--device", default=default, choices=DEVICE_CHOICES,
                   help="auto: the first headband found, else the emulated Cyton; sim: the simulated "
                        f"headband at any speed; or a board (default: {default})")
    p.add_argument("--port", default=None, help="serial port of a Cyton (default: found from the dongle's USB ids)")
    p.add_argument("--address", default=None, help="Bluetooth address or name of a Ganglion, Muse or DreamSync band")
    band = p.add_argument_group("emulated DreamSync band (--device dreamsync; see 'dreamsync audit --help')")
    band.add_argument("--vendor-plan", default="", metavar="PLAN",
                      help="adjustments the vendor service pushed: ACTUATOR@START/DURATION[/HZ[/UV]],... "
                           "(actuators: audio-closed-loop, audio-pink-noise, audio-rhythm, light-flicker, current)")
    band.add_argument("--sleeper-plan", default="", metavar="PLAN",
                      help="the sleeper's own adjustments, same syntax, sent by this host as the stream gets there")
    band.add_argument("--optout", default=None, metavar="START[-END]",
                      help="opt out of vendor adjustments at START (and back in at END), e.g. 8m or 8m-20m")
    band.add_argument("--rogue", default="", metavar="MODES",
                      help="rogue firmware: covert, ignore-optout, erase-log, rewrite-log (comma-separated)")


def _calibration_option(p) -> None:
    p.add_argument("--calibration", default=None, metavar="STAGED.json",
                   help="a 'dreamsync stage' JSON of an earlier night of the same headband: staging starts adapted to "
                        "its electrodes (consumer headbands: a nap or the first hours of a night need it)")


def _band_scenario(args):
    """The emulated DreamSync band's scenario from the command line; bad values are bad input."""
    from .band import BandScenario, parse_optout, parse_plan, parse_rogue

    try:
        return BandScenario(vendor_plan=parse_plan(args.vendor_plan), sleeper_plan=parse_plan(args.sleeper_plan),
                            optout=parse_optout(args.optout) if args.optout else None, rogue=parse_rogue(args.rogue))
    except ValueError as err:
        raise InputProblem(str(err)) from None


def _open_device(args, capture=None):
    from .pipeline import open_device

    scenario = _band_scenario(args) if getattr(args, "device", None) == "dreamsync" else None
    return open_device(args.device, speed=getattr(args, "speed", 1.0), hours=getattr(args, "hours", 8.0),
                       seed=args.seed, port=args.port, address=args.address, capture=capture,
                       notice=lambda line: print(f"dreamsync: {line}", file=sys.stderr, flush=True),
                       scenario=scenario)


_COHORT_TEXT = ("Given a folder (its EDF/BDF files, subfolders too), a glob pattern or several files, "
                "it runs over the whole cohort with --out-dir: in parallel processes (--workers) or on a "
                "Dask cluster (--scheduler), one result file per recording plus a summary table "
                "(summary-COMMAND.csv, and .parquet with pyarrow) of every recording, done, skipped or "
                "failed with its error. A rerun skips recordings already done (by content, so a renamed "
                "copy too); a recording whose worker dies is retried.")
_COHORT_EXIT = "exit codes: 0 ok, 1 internal error, 2 bad input, 3 Dask scheduler unreachable, 4 some recordings failed"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _cohort_options(p) -> None:
    import os

    p.add_argument("--out-dir", default=None,
                   help="folder of the results of a cohort: one file per recording, summary table, cache")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                   help="worker processes on this machine (default: one per CPU, here %(default)s)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs pip install 'dreamsync[cluster]' "
                        "here and on every worker; the recordings at the same paths on every worker)")
    p.add_argument("--retries", type=int, default=2,
                   help="times a recording is run again after its worker died (default: 2)")
    p.add_argument("--json", action="store_true", help="cohort: print the summary rows as JSON at the end")


def _build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dreamsync",
        description="Sleep-EEG headbands to sleep stages and checks for dream adjustments, live and offline.",
        formatter_class=fmt,
        epilog="examples:\n"
               "  dreamsync live --device sim --speed 60 --duration 30m\n"
               "  dreamsync simulate --hours 8 --seed 7 --out night.edf\n"
               "  dreamsync stage night.edf --out hypnogram.json\n"
               "  dreamsync detect night.edf --out events.json\n"
               "  dreamsync evaluate hypnogram.json night.edf\n\n"
               "exit codes: 0 ok, 1 internal error, 2 bad input or usage, 3 device problem,\n"
               "4 some recordings of a cohort failed, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"dreamsync {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "live", formatter_class=fmt, help="stage a headband's stream as it arrives",
        description="Connect to a headband (or the simulator) and stage each 30-s epoch as it ends. In a "
                    "terminal a full-screen view shows the current stage and its confidence, the hypnogram "
                    "so far, each electrode's signal quality, lost samples, reconnects, battery and the "
                    "dream-adjustment alarms (see 'detect'); otherwise (or with --plain) a line per epoch "
                    "(clock time, stage, confidence) and an ALARM line as soon as an adjustment is flagged. "
                    "The night is recorded to EDF+ (alarms as annotations; a board's raw capture beside it "
                    "as .dsraw) unless --no-record. Ctrl-C ends cleanly: the recording is written, then a "
                    "summary of time in each stage and of the alarms (exit code 0).",
        epilog="examples:\n"
               "  dreamsync live --device sim --speed 60            # a simulated night, 60x real time\n"
               "  dreamsync live --device sim --speed max --duration 8h --no-record\n"
               "  dreamsync live --device muse-s --out night.edf --lsl   # and an LSL stream for LabRecorder\n"
               "  dreamsync live --device muse-s --calibration last-night.json   # adapted from the start\n"
               "  dreamsync live --device cyton --plain --json > epochs.jsonl\n\n"
               "exit codes: 0 ok (also after Ctrl-C), 1 internal error, 2 bad input, 3 device problem",
    )
    _device_options(p, default="auto")
    p.add_argument("--speed", type=parse_speed, default=1.0,
                   help="simulator pace relative to real time, or 'max' (default: 1)")
    p.add_argument("--duration", type=parse_duration, default=None,
                   help="stop after this much signal, e.g. 90s, 30m, 8h (default: until the night ends)")
    p.add_argument("--hours", type=_positive_hours, default=8.0, help="length of the simulated night (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated night (default: 0)")
    p.add_argument("--authorized", default=None,
                   help="JSON file of the adjustments the sleeper consented to (see 'dreamsync detect --help')")
    _calibration_option(p)
    p.add_argument("--out", default=None,
                   help="EDF+ file to record to (default: recordings/live-DATE-TIME.edf)")
    p.add_argument("--no-record", action="store_true", help="do not record the night")
    p.add_argument("--lsl", nargs="?", const="", default=None, metavar="NAME",
                   help="also stream the samples to a Lab Streaming Layer outlet named NAME (default: "
                        "'dreamsync DEVICE'), type EEG, in microvolts (needs pylsl: pip install 'dreamsync[lsl]')")
    p.add_argument("--plain", action="store_true",
                   help="a line per epoch instead of the full-screen view (the default when not in a terminal)")
    p.add_argument("--json", action="store_true",
                   help="print JSON lines instead: one object per epoch, alarm and the summary (implies --plain)")
    p.add_argument("--quiet", action="store_true", help="print only alarms and the summary (implies --plain)")

    p = sub.add_parser(
        "record", formatter_class=fmt, help="record a headband to EDF+ (and its raw capture)",
        description="Record a headband until --duration or Ctrl-C. The raw bytes go to a capture file "
                    "beside the EDF+ as they arrive (flushed every second), and the EDF+ is written when "
                    "the recording stops; lost samples are marked as gaps, never filled. If the process "
                    "is killed, 'dreamsync convert CAPTURE --out night.edf' recovers all but the last second. "
                    "A DreamSync band's adjustment log is read over BLE when the recording stops and saved "
                    "beside the EDF+ as NIGHT.adjustments.json (for 'dreamsync audit').",
        epilog="examples:\n"
               "  dreamsync record --device cyton --port /dev/ttyUSB0 --duration 8h --out night.edf\n"
               "  dreamsync record --device sim --duration 10m --out test.edf\n"
               "  dreamsync record --device dreamsync --hours 0.25 --speed max --vendor-plan current@4m/3m/12/4 "
               "--out night.edf\n\n"
               "exit codes: 0 ok (also after Ctrl-C: what was recorded is written), 1 internal error, 2 bad input, "
               "3 device problem",
    )
    _device_options(p, default="auto")
    p.add_argument("--duration", type=parse_duration, default=None, help="stop after this much signal (e.g. 8h)")
    p.add_argument("--out", required=True, help="EDF+ file to write (the capture goes beside it as .dsraw)")
    p.add_argument("--no-capture", action="store_true", help="do not keep the raw capture")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated night (sim only)")
    p.add_argument("--hours", type=_positive_hours, default=8.0,
                   help="length of the simulated night (sim and dreamsync only; default: 8)")
    p.add_argument("--speed", type=parse_speed, default=1.0,
                   help="pace of the simulated night relative to real time, or 'max' (sim; dreamsync runs in real "
                        "time at 1, else as fast as the driver reads; default: 1)")
    p.add_argument("--quiet", action="store_true", help="print only the final line")

    p = sub.add_parser(
        "replay", formatter_class=fmt, help="stage a recording as if it were live",
        description="Replay an EDF/EDF+/BDF file or a raw capture (through the same decoder as live) and "
                    "stage it epoch by epoch, like 'live'.",
        epilog="examples:\n  dreamsync replay night.dsraw --speed max\n  dreamsync replay night.edf --speed 60\n"
               "  dreamsync replay night.edf --authorized consent.json --json > epochs.jsonl\n"
               "  dreamsync replay night.edf --speed 1 --lsl     # an LSL stream LabRecorder can record\n\n"
               "exit codes: 0 ok (also after Ctrl-C), 1 internal error, 2 bad input (unreadable or truncated file)",
    )
    p.add_argument("input", help="EDF/EDF+/BDF file or raw capture (.dsraw)")
    p.add_argument("--speed", type=parse_speed, default=0.0, help="pace relative to real time, or 'max' (default)")
    p.add_argument("--authorized", default=None,
                   help="JSON file of the adjustments the sleeper consented to (see 'dreamsync detect --help')")
    _calibration_option(p)
    p.add_argument("--json", action="store_true",
                   help="print JSON lines: one object per epoch, alarm and the summary")
    p.add_argument("--lsl", nargs="?", const="", default=None, metavar="NAME",
                   help="also stream the samples to a Lab Streaming Layer outlet named NAME (default: "
                        "'dreamsync FILE'), type EEG, in microvolts, at the replay's pace (needs pylsl: "
                        "pip install 'dreamsync[lsl]')")
    p.add_argument("--quiet", action="store_true", help="print only alarms and the summary")

    p = sub.add_parser(
        "convert", formatter_class=fmt, help="turn a raw capture (or EDF/BDF) into EDF+",
        description="Decode a raw capture again and write it as EDF+ with gaps marked; a capture cut short "
                    "by a crash is converted up to its last complete record. EDF and BDF files are "
                    "rewritten as EDF+.",
        epilog="example:\n  dreamsync convert night.dsraw --out night.edf",
    )
    p.add_argument("input", help="raw capture (.dsraw), EDF or BDF file")
    p.add_argument("--out", required=True, help="EDF+ file to write")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")

    p = sub.add_parser(
        "evaluate", formatter_class=fmt, help="agreement of a hypnogram with the truth",
        description="Compare a predicted hypnogram with a reference one, epoch by epoch: accuracy, "
                    "Cohen's kappa, macro-F1, per-stage F1 and the confusion matrix. Epochs unscored in "
                    "either are left out. Hypnograms: dreamsync JSON, EDF+ with 'Sleep stage' "
                    "annotations (Sleep-EDF hypnograms, simulate's output) or DREAMS text files.",
        epilog="examples:\n  dreamsync evaluate hypnogram.json night.edf\n"
               "  dreamsync evaluate SC4001.json SC4001EC-Hypnogram.edf --json",
    )
    p.add_argument("predicted", help="predicted hypnogram")
    p.add_argument("truth", help="reference hypnogram")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    p = sub.add_parser(
        "simulate", formatter_class=fmt, help="write a simulated night to EDF+",
        description="Simulate a night of sleep on a headband and write it as EDF+ with the truth as "
                    "annotations (stages 'Sleep stage W/N1/N2/N3/R', events, faults, gaps), plus a JSON "
                    "truth file. Lost samples are written as 0 and marked 'Gap: N samples lost'.",
        epilog="examples:\n  dreamsync simulate --hours 8 --seed 7 --out night.edf\n"
               "  dreamsync simulate --device muse-s --hours 8 --seed 7 --inject auditory,electrical "
               "--faults loss=0.01 --out night.edf",
    )
    p.add_argument("--hours", type=_positive_hours, default=8.0, help="length of the night (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed: the same seed gives the same night (default: 0)")
    p.add_argument("--device", default="sim",
                   help="device profile: sim, cyton, cyton-daisy, ganglion, muse-2, muse-s (default: sim)")
    p.add_argument("--fs", type=float, default=None, help="sample rate in Hz (default: the profile's)")
    p.add_argument("--faults", default="",
                   help="faults as name=value list, e.g. loss=0.01,burst=0.001,railed='EEG C3',fault_onset=3600")
    p.add_argument("--inject", default="",
                   help="dream adjustments to inject: any of auditory,electrical,entrainment,tampering")
    p.add_argument("--out", required=True, help="EDF+ file to write")
    p.add_argument("--truth", default=None, help="ground-truth JSON to write (default: OUT with .truth.json)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")

    p = sub.add_parser(
        "sim-serve", formatter_class=fmt, help="serve a simulated OpenBCI board on a serial device",
        description="Emulate an OpenBCI Cyton (or Cyton+Daisy) behind its USB dongle on a pseudo-terminal: "
                    "print the port path, then answer commands and stream packets in real time, byte for "
                    "byte as the board does, until Ctrl-C or the end of the night. Any serial client "
                    "(dreamsync's driver, BrainFlow, the OpenBCI GUI) can open the port at 115200 baud.",
        epilog="examples:\n"
               "  dreamsync sim-serve --device cyton\n"
               "  dreamsync sim-serve --device cyton-daisy --faults loss=0.01,drift=0.003 --truth served.json",
    )
    p.add_argument("--device", default="cyton", choices=["cyton", "cyton-daisy"], help="board (default: cyton)")
    p.add_argument("--hours", type=_positive_hours, default=8.0, help="length of the night (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the night (default: 0)")
    p.add_argument("--faults", default="", help="faults as name=value list, e.g. loss=0.01,corrupt=0.001,"
                                                "forge=0.001,disconnect_every=600,drift=0.003")
    p.add_argument("--mains", type=float, default=50.0, choices=[50.0, 60.0], help="mains frequency in Hz")
    p.add_argument("--truth", default=None, help="write what was served (stages, events, fault log) as JSON on exit")

    p = sub.add_parser(
        "stage", formatter_class=fmt, help="stage an EDF/EDF+/BDF recording",
        description="Stage a recording in 30-s epochs (offline: context in both directions) and write "
                    "a JSON hypnogram: epoch_length, start, stages (W, N1, N2, N3, REM or ? for an "
                    "unscorable epoch), confidence, channels used and the hypnodensity. Epoch i "
                    "covers [30 i, 30 i + 30) s; a final partial epoch is dropped. " + _COHORT_TEXT,
        epilog="examples:\n"
               "  dreamsync stage night.edf --out hypnogram.json\n"
               "  dreamsync stage SC4001E0-PSG.edf --channel 'EEG Fpz-Cz' --out SC4001.json\n"
               "  dreamsync stage night.edf --model my-lab.model.json --out hypnogram.json\n"
               "  dreamsync stage nap.edf --calibration last-night.json --out nap.json   # same headband\n"
               "  dreamsync stage data/cohort --out-dir staged --workers 8\n"
               "  dreamsync stage 'data/**/*-PSG.edf' --out-dir staged --scheduler tcp://10.0.0.5:8786\n\n"
               + _COHORT_EXIT,
    )
    p.add_argument("input", nargs="+", help="EDF, EDF+ or BDF file; for a cohort: folders, glob patterns "
                                            "(quoted) or several files")
    p.add_argument("--out", default=None, help="JSON file to write (default: print the JSON)")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to stage from, comma-separated (default: every EEG channel at the "
                        "rate of the best-placed one, central leads first)")
    p.add_argument("--model", default=None,
                   help="staging model from 'dreamsync train' (default: the built-in model, which needs no "
                        "training data)")
    _calibration_option(p)
    _cohort_options(p)
    p.add_argument("--quiet", action="store_true", help="print nothing on success when --out is given")

    p = sub.add_parser(
        "detect", formatter_class=fmt, help="check a recording for dream adjustments",
        description="Look for externally injected 'dream adjustments' in a recording: auditory "
                    "stimulation (series of evoked responses), electrical stimulation (tACS/tDCS lines and "
                    "DC shifts), sensory entrainment (steady-state responses) and tampering with the data "
                    "(replayed, spliced or time-warped segments). Writes {\"events\": [{onset, duration, "
                    "kind, score, evidence, authorized}]} with onset and duration in seconds from the "
                    "recording's start, and prints one line per event. Events inside windows of "
                    "--authorized are marked authorized and raise no alarm. Gaps marked in the file are "
                    "treated as missing samples. " + _COHORT_TEXT,
        epilog="examples:\n"
               "  dreamsync detect night.edf --out events.json\n"
               "  dreamsync detect night.edf --authorized consent.json --out events.json\n"
               "  dreamsync detect data/cohort --out-dir checked --workers 8\n\n"
               "consent.json: {\"authorized\": [{\"kind\": \"auditory\", \"start\": \"23:30\", \"end\": \"02:00\"}]}\n"
               "(start/end: seconds from the recording's start, HH:MM[:SS] clock times or ISO date-times;\n"
               "kind: auditory, electrical, entrainment, tampering or any)\n\n" + _COHORT_EXIT,
    )
    p.add_argument("input", nargs="+",
                   help="EDF, EDF+ or BDF file, or a board's raw capture (.dsraw; its packet stream is audited "
                        "too: replayed, re-sequenced or forged packets are tampering); for a cohort: folders, "
                        "glob patterns (quoted) or several files")
    p.add_argument("--out", default=None, help="JSON file to write (default: print the JSON)")
    p.add_argument("--authorized", default=None, help="JSON file of the adjustments the sleeper consented to")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to stage from, comma-separated (default: as 'dreamsync stage' picks); "
                        "every electrode channel at their rate is checked")
    _cohort_options(p)
    p.add_argument("--quiet", action="store_true", help="print nothing on success when --out is given")

    p = sub.add_parser(
        "report", formatter_class=fmt, help="write a night's report as one HTML page",
        description="Stage a recording, check it for dream adjustments and write one self-contained HTML "
                    "page (figures embedded, nothing fetched from elsewhere): header, hypnogram with "
                    "hypnodensity, multitaper spectrogram with the hypnogram under it, sleep statistics, "
                    "the adjustment timeline with each flagged stretch's evidence, and signal quality per "
                    "channel. Progress goes to stderr. " + _COHORT_TEXT,
        epilog="examples:\n"
               "  dreamsync report night.edf --out report.html\n"
               "  dreamsync report night.edf --out report.html --png figures/ --authorized consent.json\n"
               "  dreamsync report data/cohort --out-dir reports --workers 8\n\n" + _COHORT_EXIT,
    )
    p.add_argument("input", nargs="+", help="EDF, EDF+ or BDF file; for a cohort: folders, glob patterns (quoted) "
                                            "or several files")
    p.add_argument("--out", default=None, help="HTML file to write (one recording; required then)")
    p.add_argument("--png", default=None, metavar="DIR", help="also write each figure as a PNG file into DIR")
    p.add_argument("--authorized", default=None, help="JSON file of the adjustments the sleeper consented to")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to stage from, comma-separated (default: as 'dreamsync stage' picks); "
                        "the first is the spectrogram's")
    _calibration_option(p)
    _cohort_options(p)
    p.add_argument("--quiet", action="store_true", help="print nothing on success")

    p = sub.add_parser(
        "audit", formatter_class=fmt, help="reconcile a DreamSync night: device log, consent, signal",
        description="Audit a night recorded from a DreamSync band (record --device dreamsync): verify the "
                    "hash chain of the band's adjustment log (NIGHT.adjustments.json beside the recording, "
                    "with the entries the band notified live as anchors), detect adjustments in the signal "
                    "(as 'detect') and reconcile both with the sleeper's consent file. One row per "
                    "adjustment: time, kind, who asked (sleeper, vendor, unknown) and a status: consented "
                    "(done with consent), unconsented (done without), COVERT (detected, never logged), "
                    "no-trace (logged, nothing detected), OPTOUT-VIOLATION (a vendor adjustment during an "
                    "opt-out), refused (a vendor request the band refused). A removed, altered or rewritten "
                    "log entry is reported as TAMPERED. The protocol and the log format: "
                    "docs/dreamsync-protocol.md.",
        epilog="examples:\n"
               "  dreamsync record --device dreamsync --hours 0.25 --speed max --vendor-plan current@4m/3m/12/4 "
               "--rogue covert --out night.edf\n"
               "  dreamsync audit night.edf --authorized consent.json\n"
               "  dreamsync audit night.edf --json --out audit.json\n\n"
               "exit codes: 0 clean, 4 violations found (covert, unconsented, opt-out violation or a tampered "
               "log),\n1 internal error, 2 bad input (no log, unreadable recording or consent file)",
    )
    p.add_argument("input", help="the night's EDF+ file")
    p.add_argument("--authorized", default=None, help="JSON file of the adjustments the sleeper consented to")
    p.add_argument("--log", default=None, help="adjustment log (default: INPUT with .adjustments.json)")
    p.add_argument("--channel", default=None, help="EEG channel(s) to stage from, comma-separated")
    p.add_argument("--json", action="store_true", help="print the audit as JSON instead of the table")
    p.add_argument("--out", default=None, help="also write the audit as JSON to this file")

    p = sub.add_parser(
        "train", formatter_class=fmt, help="fit a staging model to your own scored recordings",
        description="Fit the stager's parameters (stage prototypes, transition probabilities) to "
                    "recordings scored by experts, in the Sleep-EDF layout: *-PSG.edf signals, each with a "
                    "*-Hypnogram.edf of 'Sleep stage' annotations (searched in subfolders too). Each night "
                    "is cut to 30 min of wake around its sleep period. Stages without enough epochs keep "
                    "the built-in prototypes. The model is a JSON file for 'dreamsync stage --model'.",
        epilog="examples:\n"
               "  dreamsync datasets fetch sleep-edf --subjects 0-9 --dir data/sleep-edf\n"
               "  dreamsync train data/sleep-edf --channel 'EEG Fpz-Cz' --out sleep-edf.model.json\n"
               "  dreamsync stage night.edf --model sleep-edf.model.json --out hypnogram.json",
    )
    p.add_argument("folder", help="folder of *-PSG.edf and *-Hypnogram.edf files")
    p.add_argument("--out", required=True, help="model file to write (JSON)")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to learn from, comma-separated (default: as 'dreamsync stage' picks)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")

    p = sub.add_parser(
        "devices", formatter_class=fmt, help="list OpenBCI dongles and Bluetooth headbands in range",
        description="List the serial ports, marking OpenBCI dongles (FTDI USB ids 0403:6015) with the "
                    "options that open them, and scan Bluetooth for Muse, Ganglion and DreamSync headbands for "
                    "--timeout seconds. Without a usable Bluetooth adapter one line says why, and the "
                    "serial ports are still listed (exit code 0).",
        epilog="examples:\n  dreamsync devices\n  dreamsync devices --timeout 10 --json\n\n"
               "exit codes: 0 ok (also without a Bluetooth adapter), 1 internal error, 2 bad usage",
    )
    p.add_argument("--timeout", type=parse_duration, default=5.0,
                   help="seconds to scan Bluetooth for, e.g. 5 or 10s (default: 5)")
    p.add_argument("--json", action="store_true",
                   help="print {\"serial\": [...], \"bluetooth\": {\"available\", \"error\", \"devices\"}} as JSON")

    p = sub.add_parser(
        "export", formatter_class=fmt, help="write a night's stages, adjustments and gaps for other tools",
        description="Stage a recording and check it for dream adjustments (or take the JSON that 'stage' "
                    "and 'detect' wrote, with --stages and --events), then write: edf: the signals "
                    "unchanged plus EDF+ annotations 'Sleep stage W/N1/N2/N3/R/?' per epoch, 'Adjustment "
                    "KIND: EVIDENCE' per flagged stretch and the file's 'Gap: N samples lost' marks; bids: "
                    "a BIDS events.tsv (onset, duration, trial_type, value, score, authorized, channel, "
                    "evidence) and its events.json sidecar; csv: a row per epoch (epoch, onset_s, "
                    "clock_time, stage, confidence, hypnodensity p_W..p_REM, lost_s); yasa: YASA's integer "
                    "hypnogram, one per line (0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscorable, -2 mostly lost "
                    "to gaps). For the recording in MNE, use dreamsync.export.to_mne() from Python.",
        epilog="examples:\n"
               "  dreamsync export night.edf --format edf --out night-scored.edf\n"
               "  dreamsync export night.edf --format bids --authorized consent.json "
               "--out sub-01_task-sleep_events.tsv\n"
               "  dreamsync stage night.edf --out hypnogram.json\n"
               "  dreamsync export night.edf --format yasa --stages hypnogram.json --out hypno.txt\n\n"
               "exit codes: 0 ok, 1 internal error, 2 bad input or usage",
    )
    p.add_argument("input", help="the recording: EDF, EDF+ or BDF file")
    p.add_argument("--format", required=True, choices=("edf", "bids", "csv", "yasa"), help="what to write")
    p.add_argument("--out", required=True, help="file to write (bids: the events .tsv; the sidecar goes beside it)")
    p.add_argument("--stages", default=None,
                   help="hypnogram JSON from 'dreamsync stage' for this recording (default: stage it now)")
    p.add_argument("--events", default=None,
                   help="events JSON from 'dreamsync detect' for this recording (edf, bids; default: detect now)")
    p.add_argument("--authorized", default=None,
                   help="JSON file of the adjustments the sleeper consented to (see 'dreamsync detect --help')")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to stage from, comma-separated (default: as 'dreamsync stage' picks)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")

    p = sub.add_parser(
        "datasets", formatter_class=fmt, help="download public sleep recordings (needs the internet)",
        description="Download public sleep recordings with their hypnograms, each verified against the "
                    "publisher's SHA-256 checksum. Files already present and intact are not downloaded "
                    "again: rerun the same command to resume an interrupted download.",
        epilog="example:\n  dreamsync datasets fetch sleep-edf --subjects 0-9 --dir data/sleep-edf\n\n"
               "exit codes: 0 ok, 2 bad input, 3 network or server problem",
    )
    actions = p.add_subparsers(dest="datasets_action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "fetch", formatter_class=fmt, help="download some subjects of a dataset",
        description="Download the recordings and hypnograms of some subjects into --dir (in the "
                    "server's layout, e.g. DIR/sleep-cassette/SC4001E0-PSG.edf) and verify each file's "
                    "SHA-256 against the dataset's index. sleep-edf: the sleep-cassette part of the "
                    "Sleep-EDF Database Expanded 1.0.0 on PhysioNet (licence and citation: "
                    "https://physionet.org/content/sleep-edfx/1.0.0/), about 50 MB per night.",
        epilog="examples:\n"
               "  dreamsync datasets fetch sleep-edf --subjects 0-9 --dir data/sleep-edf\n"
               "  dreamsync datasets fetch sleep-edf --subjects 0,3,5-7 --nights 1 --dir data/sleep-edf",
    )
    p.add_argument("dataset", choices=("sleep-edf",), help="dataset to download")
    p.add_argument("--subjects", required=True,
                   help="subject numbers, e.g. 0-9 or 0,3,5-7 (sleep-edf: 0 to 82, of which 39, 68, 69, 78 "
                        "and 79 were never published)")
    p.add_argument("--nights", default=None, help="nights, e.g. 1 or 1,2 (default: every night)")
    p.add_argument("--dir", required=True, help="directory to download into (created if missing)")
    p.add_argument("--base-url", default=None,
                   help="root URL of a mirror (default: $DREAMSYNC_SLEEP_EDF_URL, else PhysioNet's)")
    p.add_argument("--quiet", action="store_true", help="print only notes and the summary")
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("dreamsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:  # one clear line per problem; tracebacks only with --debug
        if args.debug:
            raise
        code, kind = _classify(err)
        print(f"dreamsync: {kind}{_one_line(err)}", file=sys.stderr)
        if code == EXIT_INTERNAL:
            print("dreamsync: this is a bug; rerun with --debug for the traceback", file=sys.stderr)
        return code


def _classify(err: Exception) -> tuple:
    from dsp.errors import SignalError  # light modules: no numba behind them
    from ingest.errors import DeviceError, IngestError

    if isinstance(err, DeviceError):
        return EXIT_DEVICE, "device error: "
    if isinstance(err, (IngestError, SignalError, InputProblem)):
        return EXIT_INPUT, "error: "
    if isinstance(err, OSError):  # cannot write the output, disk full, permission denied
        return EXIT_INPUT, "error: "
    return EXIT_INTERNAL, f"internal error: {type(err).__name__}: "


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    return text or type(err).__name__


def _cmd_live(args) -> int:
    import datetime as dt
    import pathlib

    windows = _read_authorized(args.authorized, dt.datetime.now()) if args.authorized else []
    calibration = _read_calibration(args.calibration)
    out = None
    if not args.no_record:
        out = pathlib.Path(args.out or f"recordings/live-{dt.datetime.now():%Y%m%d-%H%M%S}.edf")
        if args.out is None:
            out.parent.mkdir(exist_ok=True)
        elif not out.parent.is_dir():
            raise InputProblem(f"{out.parent}: no such directory to record into")
        if out.is_dir():
            raise InputProblem(f"{out}: is a directory; --out names the EDF+ file to write")
    # the signal-level simulator has no bytes to keep; a board's raw capture goes beside the EDF+
    capture = str(out.with_suffix(".dsraw")) if out is not None and args.device != "sim" else None
    with _open_device(args, capture=capture) as device:
        tui = not (args.plain or args.quiet or args.json) and sys.stdout.isatty()
        audit = None
        if args.device == "dreamsync":  # the band's log and the detectors, reconciled as the night goes
            from .audit import LiveAudit

            audit = LiveAudit(windows, board=device)
        outlet = None
        if args.lsl is not None:
            from .lsl import LslOutlet, LslUnavailable

            try:
                outlet = LslOutlet.for_device(device, name=args.lsl or None)
            except LslUnavailable as err:
                raise InputProblem(str(err)) from None
        recorder = None
        if out is not None:  # last, so that nothing fails between making its spool file and closing it
            from ingest.recorder import EdfRecorder

            recorder = EdfRecorder(out, device.channels, device.kinds, device.fs)
        try:
            _stage_stream(device, args.quiet, duration=args.duration, authorized=windows, recorder=recorder,
                          view=tui, speed=args.speed, as_json=args.json, capture=capture, audit=audit, lsl=outlet,
                          calibration=calibration)
        finally:
            if outlet is not None:
                outlet.close()
            if recorder is not None:  # written already unless the session could not begin: then now
                recorder.close()
    if audit is not None and device.log_document is not None:
        from .audit import verify_document

        for problem in verify_document(device.log_document).problems:  # read at the end, against the live copies
            print(json.dumps({"type": "audit", "status": "tampered", "problem": problem}) if args.json
                  else f"{'AUDIT':<10} the band's log is TAMPERED: {problem}", flush=True)
    if out is not None:
        _save_adjustment_log(device, out, args.quiet or args.json)
    return EXIT_OK


def _stage_stream(device, quiet: bool, duration=None, authorized=(), recorder=None, view: bool = False,
                  speed: float = 1.0, as_json: bool = False, capture=None, audit=None, lsl=None,
                  calibration=None) -> None:
    """Stage an opened device epoch by epoch until it ends or Ctrl-C, then print the summary.

    Each epoch is a line (or JSON object), and an alarm line as soon as an adjustment is flagged; with
    ``view`` the full-screen terminal view instead, and the alarm lines after it. ``recorder`` (an
    ``ingest.recorder.EdfRecorder``) receives every block and the alarms as annotations, and is
    written when the stream ends, also after Ctrl-C or an error. ``audit`` (a
    :class:`dreamsync.audit.LiveAudit`) raises the DreamSync audit's alarms after every epoch. ``lsl`` (a
    :class:`dreamsync.lsl.LslOutlet`) receives every block too. ``calibration``: feature offsets
    of an earlier night of the headband (:func:`dreamsync.calibration.read_calibration`).
    """
    import datetime as dt

    from .pipeline import LiveSession

    screen = None
    if view:
        from .live_view import LiveView

        screen = LiveView(device, recording=recorder.path if recorder is not None else None, speed=speed,
                          lsl=lsl.name if lsl is not None else None)
    elif lsl is not None and not (quiet or as_json):
        print(f"dreamsync: streaming to LSL as {lsl.name!r} (type EEG, {len(lsl.channels)} channels at "
              f"{lsl.fs:g} Hz, source_id {lsl.source_id!r})", file=sys.stderr, flush=True)
    audited = []  # audit rows raised while the view had the screen, printed after it

    def show(epoch):
        if audit is not None:
            for row in audit.poll((epoch.index + 1) * 30.0):
                if screen is not None:  # printing would tear the full-screen view
                    screen.on_note(row.onset, row.duration, row.kind, f"AUDIT {row.status.upper()}: {row.source}")
                    audited.append(row)
                else:
                    _print_audit_alarm(row, session._start, as_json)
        if screen is not None:
            screen.on_epoch(epoch)
        elif as_json:
            print(json.dumps({"type": "epoch", "index": epoch.index, "start": epoch.start.isoformat(),
                              "stage": epoch.stage, "confidence": round(float(epoch.confidence), 4)}), flush=True)
        elif not quiet:
            print(f"{epoch.start:%H:%M:%S}  {epoch.stage:<3}  {epoch.confidence:.2f}", flush=True)

    def alarm(event, ok):
        if audit is not None:
            audit.detection(event)
        if recorder is not None:
            recorder.annotate(event.onset, event.duration,
                              f"{'Authorized' if ok else 'Alarm'} adjustment {event.kind} (score {event.score:.2f})")
        if screen is not None:
            screen.on_alarm(event, ok)
        else:
            _print_alarm(event, ok, session._start or dt.datetime.now(), as_json)

    def block(b):
        if recorder is not None:
            recorder.add(b)
        if lsl is not None:
            lsl.push_block(b)
        if screen is not None:
            screen.on_block(b)

    session = LiveSession(device, on_epoch=show, duration=duration, on_adjustment=alarm, authorized=authorized,
                          on_block=block if recorder is not None or screen is not None or lsl is not None else None,
                          calibration=calibration)
    previous = signal.signal(signal.SIGINT, lambda *_: session.stop())
    recorded = None
    try:
        if screen is not None:
            from .live_view import LiveScreen

            with LiveScreen(screen):
                summary = session.run()
        else:
            summary = session.run()
    finally:
        signal.signal(signal.SIGINT, previous)
        if recorder is not None:
            recorded = recorder.close()
    if screen is not None:  # the view is gone with the alternate screen: the alarms stay in the scrollback
        for event, ok in summary.adjustments:
            _print_alarm(event, ok, session._start, False)
        for row in audited:
            _print_audit_alarm(row, session._start, False)
    if audit is not None:  # what the stream's end settles: detections no entry accounted for
        for row in audit.poll(float("inf")):
            _print_audit_alarm(row, session._start, as_json)
    _print_summary(summary, device, recorded, capture, as_json)


def _print_audit_alarm(row, start, as_json: bool) -> None:
    """One DreamSync audit alarm (a :class:`dreamsync.audit.AuditRow`): a line, or a JSON object."""
    import datetime as dt

    if as_json:
        print(json.dumps({"type": "audit", **row.to_json(start)}), flush=True)
        return
    at = f"{start + dt.timedelta(seconds=row.onset):%H:%M:%S}" if start is not None else f"{row.onset:9.1f} s"
    print(f"{'AUDIT':<10} {at}  {row.kind:<11} {row.duration:7.1f} s  {row.status.upper()}: "
          f"{row.source}{' ' + row.actuator if row.actuator else ''}"
          f"{', during the opt-out' if row.during_optout and row.status != 'optout-violation' else ''}", flush=True)


def _print_alarm(event, ok: bool, start, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"type": "adjustment", "onset": round(event.onset, 3), "duration": round(event.duration, 3),
                          "kind": event.kind, "score": round(float(event.score), 4), "evidence": event.evidence,
                          "authorized": bool(ok)}), flush=True)
    else:
        print(_event_line(event, ok, start), flush=True)


def _print_summary(summary, device=None, recorded=None, capture=None, as_json: bool = False) -> None:
    minutes = summary.minutes_per_stage()
    total = sum(minutes.values())
    alarms = sum(not ok for _, ok in summary.adjustments)
    reconnects = getattr(device, "reconnects", None)
    if as_json:
        print(json.dumps({"type": "summary", "epochs": len(summary.epochs), "hours": round(total / 60, 4),
                          "eeg_channel": summary.eeg_channel, "emg_channel": summary.emg_channel,
                          "other_channels": summary.others,
                          "samples": summary.samples, "samples_lost": summary.samples_lost, "reconnects": reconnects,
                          "minutes": minutes, "alarms": alarms, "authorized": len(summary.adjustments) - alarms,
                          "recording": None if recorded is None else str(recorded),
                          "capture": capture if recorded is not None else None}), flush=True)
        return
    print(f"summary: {len(summary.epochs)} epochs ({total / 60:.2f} h) staged from {summary.staged_from}"
          + f"; samples lost: {summary.samples_lost}"
          + (f"; reconnects: {reconnects}" if reconnects is not None else ""))
    print(f"adjustments: {alarms} alarm(s), {len(summary.adjustments) - alarms} authorized")
    for name, mins in minutes.items():
        if mins or name != "?":
            share = 100 * mins / total if total else 0.0
            print(f"  {name:<3} {mins:7.1f} min  {share:5.1f} %")
    if recorded is not None:
        raw = f" (raw capture: {capture})" if capture else ""
        print(f"recorded {recorded}: {(summary.samples + summary.samples_lost) / device.fs:.1f} s, "
              f"{summary.samples_lost} samples lost (marked as gaps){raw}")


def _cmd_record(args) -> int:
    import pathlib

    from .pipeline import record

    capture = None
    if args.device != "sim" and not args.no_capture:  # the signal-level simulator has no bytes to keep
        capture = str(pathlib.Path(args.out).with_suffix(".dsraw"))
    device = _open_device(args, capture=capture)
    stop = lambda *_: device.stop()  # noqa: E731 - Ctrl-C ends the recording, which is then written
    previous = signal.signal(signal.SIGINT, stop)
    try:
        summary = record(device, args.out, duration=args.duration, capture=capture)
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_recording(summary, "recorded", args.quiet)
    _save_adjustment_log(device, summary.path, args.quiet)
    return EXIT_OK


def _save_adjustment_log(device, recording, quiet: bool) -> None:
    """A DreamSync band's adjustment log (read when streaming stopped) beside the recording."""
    if getattr(device, "board", "") != "dreamsync" or recording is None:
        return
    document = getattr(device, "log_document", None)
    if document is None:
        print("dreamsync: note: the band's adjustment log could not be read; 'dreamsync audit' will have no "
              "log for this night", file=sys.stderr)
        return
    from .audit import save_adjustment_log

    path = save_adjustment_log(document, str(recording))
    if not quiet:
        print(f"adjustment log: {len(document['entries'])} entries read from {document['device'].get('serial')} "
              f"-> {path}")


def _print_recording(summary, verb: str, quiet: bool) -> None:
    if summary.path is None:
        raise InputProblem("nothing was recorded: the source delivered no samples")
    if not quiet:
        capture = f" (raw capture: {summary.capture})" if summary.capture else ""
        print(f"{verb} {summary.path}: {summary.seconds:.1f} s of {len(summary.channels)} channels at "
              f"{summary.fs:g} Hz, {summary.samples_lost} samples lost (marked as gaps){capture}")
    if summary.truncated_capture:
        print("dreamsync: note: the capture ended mid-record (the recording was cut short); "
              "everything before that was converted", file=sys.stderr)


def _cmd_replay(args) -> int:
    from ingest.replay import open_recording

    windows = []
    if args.authorized:
        start = None
        if args.input.lower().endswith((".edf", ".bdf")):
            from ingest.edf import read_edf

            start = read_edf(args.input).start
        windows = _read_authorized(args.authorized, start)
    calibration = _read_calibration(args.calibration)
    with open_recording(args.input, speed=args.speed) as device:
        if args.lsl is None:
            _stage_stream(device, args.quiet, authorized=windows, as_json=args.json, calibration=calibration)
            return EXIT_OK
        from .lsl import LslOutlet, LslUnavailable

        try:
            outlet = LslOutlet.for_device(device, name=args.lsl or f"dreamsync {args.input}")
        except LslUnavailable as err:
            raise InputProblem(str(err)) from None
        with outlet:
            if not args.quiet and not args.json:
                print(f"dreamsync: streaming to LSL as {outlet.name!r} (type EEG, {len(outlet.channels)} channels "
                      f"at {outlet.fs:g} Hz, source_id {outlet.source_id!r})", file=sys.stderr, flush=True)
            _stage_stream(outlet.tee(device), args.quiet, authorized=windows, as_json=args.json,
                          calibration=calibration)
    return EXIT_OK


def _cmd_convert(args) -> int:
    from .pipeline import convert

    progress = None if args.quiet else _block_progress(f"converting {args.input}")
    _print_recording(convert(args.input, args.out, on_block=progress), "wrote", args.quiet)
    return EXIT_OK


def _share_progress(doing: str, every: float = 2.0):
    """A ``progress(share)`` callback that tells stderr the percentage done, every ``every`` s of wall
    time (so that short work prints nothing)."""
    import time

    last = [time.monotonic()]

    def show(share: float) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            print(f"dreamsync: {doing}: {100 * share:.0f} %", file=sys.stderr, flush=True)

    return show


def _block_progress(doing: str, every: float = 2.0):
    """An ``on_block`` callback that tells stderr how much signal is done, every ``every`` s of wall time."""
    import time

    last = [None]

    def show(block) -> None:
        now = time.monotonic()
        if last[0] is None:  # the clock starts with the first block, once the input is open
            last[0] = now
        elif now - last[0] >= every:
            last[0] = now
            print(f"dreamsync: {doing}: {block.end_index / block.fs / 3600:.2f} h done", file=sys.stderr, flush=True)

    return show


def _cmd_evaluate(args) -> int:
    from dsp.agreement import agreement
    from dsp.stages import STAGES, from_labels
    from ingest.hypnograms import read_hypnogram

    predicted, truth = read_hypnogram(args.predicted), read_hypnogram(args.truth)
    n = min(len(predicted), len(truth))
    try:
        a = agreement(from_labels(truth[:n]), from_labels(predicted[:n]))
    except ValueError as err:
        raise InputProblem(str(err)) from None
    if args.json:
        json.dump({"epochs": a.n_epochs, "accuracy": a.accuracy, "kappa": a.kappa, "macro_f1": a.macro_f1,
                   "f1": {k: (None if v != v else v) for k, v in a.f1.items()},
                   "confusion": {"order": list(STAGES), "rows": "truth", "counts": a.confusion.tolist()}},
                  sys.stdout)
        print()
        return EXIT_OK
    note = f" (lengths differ: {len(predicted)} vs {len(truth)} epochs; compared the first {n})" \
        if len(predicted) != len(truth) else ""
    print(f"{a.n_epochs} epochs compared{note}")
    print(f"accuracy {a.accuracy:.3f}   kappa {a.kappa:.3f}   macro-F1 {a.macro_f1:.3f}")
    print("F1: " + "  ".join(f"{k} {v:.2f}" if v == v else f"{k} -" for k, v in a.f1.items()))
    print("confusion (rows truth, columns predicted):")
    print("       " + "".join(f"{name:>6}" for name in STAGES))
    for name, row in zip(STAGES, a.confusion):
        print(f"  {name:<5}" + "".join(f"{v:>6}" for v in row))
    return EXIT_OK


def _cmd_simulate(args) -> int:
    from firmware_sim.faults import FaultSpec
    from firmware_sim.profiles import PROFILES

    from .pipeline import simulate_night

    if args.device not in PROFILES:
        raise InputProblem(f"unknown device profile {args.device!r}; known: {', '.join(sorted(PROFILES))}")
    if args.fs is not None and not args.fs >= 50:
        raise InputProblem(f"--fs must be at least 50 Hz, got {args.fs:g}")
    try:
        faults = FaultSpec.parse(args.faults)
        inject = [name.strip() for name in args.inject.split(",") if name.strip()]
        with warnings.catch_warnings(record=True) as caught:  # e.g. a night too short for an episode
            warnings.simplefilter("always")
            night = simulate_night(args.out, hours=args.hours, seed=args.seed, profile=args.device, fs=args.fs,
                                   faults=faults, inject=inject, truth_path=args.truth)
    except ValueError as err:  # option values the layers refuse
        raise InputProblem(str(err)) from None
    for w in caught:
        print(f"dreamsync: note: {_one_line(w.message)}", file=sys.stderr)
    if not args.quiet:
        lost = f", {night.samples_lost} samples lost (marked as gaps)" if night.samples_lost else ""
        print(f"wrote {night.path}: {night.hours:.2f} h, {len(night.channels)} channels at {night.fs:g} Hz, "
              f"{len(night.hypnogram)} epochs{lost}; truth in the annotations and {night.truth_path}")
    return EXIT_OK


def _cmd_sim_serve(args) -> int:
    import threading

    from firmware_sim.faults import FaultSpec

    from .pipeline import SerialSimulation

    try:
        faults = FaultSpec.parse(args.faults)
        sim = SerialSimulation(args.device, hours=args.hours, seed=args.seed, faults=faults, mains_hz=args.mains)
    except ValueError as err:
        raise InputProblem(str(err)) from None
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        port = sim.start()
        print(f"serving a simulated OpenBCI {args.device} on {port} (115200 baud); Ctrl-C to stop", flush=True)
        sim.run(stop)
    finally:
        sim.stop()
        signal.signal(signal.SIGINT, previous)
    packets = sim.packet_faults
    print(f"stopped: {packets.sent} packets made, {packets.packets_lost} lost to faults, "
          f"{sim.firmware.packets_dropped} dropped by the radio")
    if args.truth:
        with open(args.truth, "w") as fh:
            json.dump(sim.truth(), fh)
    return EXIT_OK


def _cmd_stage(args) -> int:
    from .pipeline import stage_file

    if _is_cohort(args):
        return _cmd_cohort(args, "stage", {"channel": args.channel, "model": args.model,
                                           "calibration": args.calibration})
    args.input = args.input[0]
    model = _load_model(args.model) if args.model else None
    calibration = _read_calibration(args.calibration)
    staged = stage_file(args.input, channel=args.channel, model=model, calibration=calibration,
                        progress=None if args.quiet else _share_progress(f"staging {args.input}"))
    doc = staged.to_json()
    if args.out is None:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    with open(args.out, "w") as fh:
        json.dump(doc, fh)
    if not args.quiet:
        unscored = doc["stages"].count("?")
        print(f"wrote {args.out}: {len(doc['stages'])} epochs staged from {staged.staged_from}"
              + (f", {unscored} unscorable" if unscored else ""))
    return EXIT_OK


def _cmd_audit(args) -> int:
    from .audit import EXIT_VIOLATIONS, audit_file

    try:
        result = audit_file(args.input, authorized=args.authorized, log=args.log, channel=args.channel)
    except OSError as err:
        raise InputProblem(f"{err.filename or args.input}: {(err.strerror or str(err)).lower()}") from None
    except ValueError as err:
        raise InputProblem(str(err)) from None
    doc = result.to_json()
    if args.out is not None:
        with open(args.out, "w") as fh:
            json.dump(doc, fh, indent=1)
    if args.json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(result.table())
    return EXIT_OK if result.clean else EXIT_VIOLATIONS


def _cmd_detect(args) -> int:
    from .detection import detect_file

    if _is_cohort(args):
        return _cmd_cohort(args, "detect", {"channel": args.channel, "authorized": args.authorized})
    args.input = args.input[0]
    windows = []
    if args.authorized:
        from ingest.edf import read_edf

        windows = _read_authorized(args.authorized, read_edf(args.input).start)
    report = detect_file(args.input, channel=args.channel, authorized=windows)
    doc = report.to_json()
    if args.out is None:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    with open(args.out, "w") as fh:
        json.dump(doc, fh)
    if not args.quiet:
        for event, ok in report.events:
            print(_event_line(event, ok, report.start))
        print(f"wrote {args.out}: {len(report.alarms)} alarm(s), "
              f"{len(report.events) - len(report.alarms)} authorized, in {report.duration / 3600:.2f} h "
              f"of {', '.join(report.channels)}")
    return EXIT_OK


def _cmd_report(args) -> int:
    from .report import write_report

    if _is_cohort(args):
        if args.png is not None:
            raise InputProblem("--png is for one recording; a cohort's pages have their figures inside")
        return _cmd_cohort(args, "report", {"channel": args.channel, "authorized": args.authorized,
                                            "calibration": args.calibration})
    args.input = args.input[0]
    if args.out is None:
        raise InputProblem("--out is required: the HTML file to write")
    windows = []
    if args.authorized:
        from ingest.edf import read_edf

        windows = _read_authorized(args.authorized, read_edf(args.input).start)
    calibration = _read_calibration(args.calibration)
    progress = None if args.quiet else (lambda line: print(f"dreamsync: {line}", file=sys.stderr, flush=True))
    summary = write_report(args.input, args.out, authorized=windows, channel=args.channel, calibration=calibration,
                           png_dir=args.png, progress=progress)
    if not args.quiet:
        figures = f"; {len(summary.figures)} PNG figures in {args.png}" if summary.figures else ""
        print(f"wrote {summary.path}: {summary.epochs} epochs, {summary.alarms} alarm(s), "
              f"{summary.authorized} authorized{figures}")
    return EXIT_OK


def _is_cohort(args) -> bool:
    """Whether the inputs are a cohort: --out-dir, several inputs, a folder or a pattern (not one file)."""
    import os

    return (args.out_dir is not None or len(args.input) > 1 or os.path.isdir(args.input[0])
            or not os.path.isfile(args.input[0]) and any(c in args.input[0] for c in "*?["))


def _cmd_cohort(args, kind: str, options: dict) -> int:
    """``stage``/``detect``/``report`` over many recordings (see :func:`dreamsync.cohort.run_cohort`)."""
    import datetime as dt

    from .cohort import run_cohort

    if args.out_dir is None:
        many = f"{len(args.input)} recordings need" if len(args.input) > 1 else "a folder or pattern needs"
        raise InputProblem(f"{many} --out-dir (a folder for a result per recording and the summary table)")
    if args.out is not None:
        raise InputProblem("--out is for one recording; a cohort writes into --out-dir")
    if options.get("model"):
        _load_model(options["model"])  # a bad model is one error now, not one per recording
    _read_calibration(options.get("calibration"))
    if options.get("authorized"):
        _read_authorized(options["authorized"], dt.datetime.now())
    progress = None if args.quiet else (lambda line: print(f"dreamsync: {line}", file=sys.stderr, flush=True))
    try:
        result = run_cohort(args.input, args.out_dir, kind, options=options, workers=args.workers,
                            scheduler=args.scheduler, retries=max(0, args.retries), progress=progress)
    except ConnectionError as err:
        if args.debug:
            raise
        print(f"dreamsync: connection error: {_one_line(err)}", file=sys.stderr)
        return EXIT_DEVICE
    except ImportError as err:
        raise InputProblem(str(err)) from None
    done, skipped, failed = result.count("done"), result.count("skipped"), result.count("failed")
    tables = str(result.summary_csv) + (f" and {result.summary_parquet}" if result.summary_parquet else "")
    if args.json:
        json.dump({"command": kind, "recordings": len(result.rows), "done": done, "skipped": skipped,
                   "failed": failed, "seconds": round(result.seconds, 3), "summary_csv": str(result.summary_csv),
                   "summary_parquet": str(result.summary_parquet) if result.summary_parquet else None,
                   "rows": result.rows}, sys.stdout)
        print()
    else:
        print(f"{kind}: {done} done, {skipped} skipped (content already done), {failed} failed, of {len(result.rows)} "
              f"recordings in {result.seconds:.1f} s; summary: {tables}")
    if failed:
        print(f"dreamsync: {failed} of {len(result.rows)} recordings failed; their errors are in {result.summary_csv}",
              file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _event_line(event, authorized: bool, start=None) -> str:
    """One line for a flagged event: when, kind, score, why."""
    import datetime as dt

    at = (f"{start + dt.timedelta(seconds=event.onset):%H:%M:%S}" if start is not None
          else f"{event.onset:9.1f} s")
    tag = "authorized" if authorized else "ALARM"
    return f"{tag:<10} {at}  {event.kind:<11} {event.duration:7.1f} s  score {event.score:.2f}  {event.evidence}"


def _read_authorized(path: str, start) -> list:
    """Consent windows of ``path`` relative to ``start`` (datetime or None); bad files are bad input."""
    from .authorization import load_authorized

    try:
        return load_authorized(path, start)
    except OSError as err:
        raise InputProblem(f"{path}: {(err.strerror or str(err)).lower()}") from None
    except ValueError as err:
        raise InputProblem(str(err)) from None


def _load_model(path: str):
    from dsp.model import load_model

    try:
        return load_model(path)
    except OSError as err:
        raise InputProblem(f"{path}: {(err.strerror or str(err)).lower()}") from None
    except ValueError as err:
        raise InputProblem(str(err)) from None


def _read_calibration(path: str | None):
    """The feature offsets of a ``--calibration`` file (None without one); a bad file is bad input."""
    from .calibration import read_calibration

    if path is None:
        return None
    try:
        return read_calibration(path)
    except ValueError as err:
        raise InputProblem(str(err)) from None


def _cmd_train(args) -> int:
    from .training import train_model

    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    summary = train_model(args.folder, args.out, channel=args.channel, progress=progress)
    epochs = ", ".join(f"{name} {n}" for name, n in summary.epochs.items())
    skipped = f"; {len(summary.skipped)} skipped" if summary.skipped else ""
    print(f"wrote {args.out}: trained on {summary.recordings} recordings ({epochs} epochs){skipped}")
    return EXIT_OK


def _cmd_datasets(args) -> int:
    from ingest.datasets import fetch
    from ingest.errors import DownloadError

    show, tally = _fetch_progress(args.quiet)
    try:
        paths = fetch(args.dataset, args.subjects, args.dir, nights=args.nights, base_url=args.base_url,
                      progress=show)
    except DownloadError as err:  # the network or the server, not the user's input: exit 3
        if args.debug:
            raise
        print(f"dreamsync: download error: {_one_line(err)}", file=sys.stderr)
        return EXIT_DEVICE
    size = f" ({_size(tally['bytes'])})" if tally["downloaded"] else ""
    print(f"{args.dataset}: {len(paths)} files in {args.dir}, every SHA-256 verified: {tally['downloaded']} "
          f"downloaded{size}, {tally['present']} already present")
    return EXIT_OK


def _fetch_progress(quiet: bool):
    """A progress callback for ``datasets fetch`` (a line at each quarter of a file) and its tallies."""
    tally = {"downloaded": 0, "present": 0, "bytes": 0}
    quarters: dict = {}

    def show(event) -> None:
        name = event.file.rsplit("/", 1)[-1]
        if event.kind == "start":
            quarters[event.file] = 0
            return
        if event.kind == "bytes":
            quarter = 4 * event.done // event.total if event.total else 0
            if not 0 < quarter < 4 or quarter <= quarters.get(event.file, 0):
                return
            quarters[event.file] = quarter
            line = f"{name}: {_size(event.done)} of {_size(event.total)} ({25 * quarter} %)"
        elif event.kind == "done":
            tally["downloaded"] += 1
            tally["bytes"] += event.done
            line = f"{name}: {_size(event.done)} downloaded, checksum ok"
        elif event.kind == "present":
            tally["present"] += 1
            line = f"{name}: already present, checksum ok"
        elif event.kind == "retry":
            line = f"note: {event.message}"
        else:  # a night skipped: shown even when quiet, since it changes what was fetched
            print(f"dreamsync: note: {event.message}", file=sys.stderr, flush=True)
            return
        if not quiet:
            print(f"dreamsync: {line}", file=sys.stderr, flush=True)

    return show, tally


def _size(n_bytes: int) -> str:
    if n_bytes < 1000:
        return f"{n_bytes} B"
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"


def _cmd_devices(args) -> int:
    import serial.tools.list_ports

    from ingest import ble
    from ingest.boards.cyton import DONGLE_PID, FTDI_VID
    from ingest.errors import DeviceError

    ports = []
    for port in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device):
        ports.append({"port": port.device, "description": port.description if port.description != "n/a" else None,
                      "vid": port.vid, "pid": port.pid, "serial_number": port.serial_number,
                      "manufacturer": port.manufacturer,
                      "openbci_dongle": port.vid == FTDI_VID and port.pid == DONGLE_PID})
    try:
        found, error = ble.discover(timeout=args.timeout), None
    except DeviceError as err:  # no adapter, Bluetooth off, no permission: a note, the serial list still stands
        found, error = [], _one_line(err).split(": ", 1)[-1]
    headbands = [{"name": name, "address": address, "device": _ble_device(name)} for name, address in found]
    if args.json:
        json.dump({"serial": ports, "bluetooth": {"available": error is None, "error": error,
                                                  "scan_seconds": args.timeout, "devices": headbands}}, sys.stdout)
        print()
        return EXIT_OK
    dongles = sum(p["openbci_dongle"] for p in ports)
    print(f"serial ports ({dongles} OpenBCI dongle{'s' if dongles != 1 else ''}):")
    for p in ports:
        ids = f"{p['vid']:04x}:{p['pid']:04x}" if p["vid"] is not None and p["pid"] is not None else "no USB ids"
        serial_no = f", serial {p['serial_number']}" if p["serial_number"] else ""
        what = f"OpenBCI dongle ({ids}{serial_no}); use --device cyton --port {p['port']}" if p["openbci_dongle"] \
            else f"{p['description'] or 'serial port'} ({ids}{serial_no})"
        print(f"  {p['port']:<14} {what}")
    if not ports:
        print("  none")
    if error is not None:
        print(f"Bluetooth headbands: not scanned: {error}")
        return EXIT_OK
    print(f"Bluetooth headbands ({args.timeout:g} s scan):")
    for h in headbands:
        print(f"  {h['name']:<14} {h['address']}; use --device {h['device']} --address {h['address']}")
    if not headbands:
        print("  none advertising (switched on, charged, in range and not connected to another app?)")
    return EXIT_OK


def _ble_device(name: str) -> str:
    """The --device value for an advertised name (Muse S boards advertise as MuseS-XXXX)."""
    if name.startswith("MuseS"):
        return "muse-s"
    if name.startswith("DreamSync"):
        return "dreamsync"
    return "muse-2" if name.startswith("Muse") else "ganglion"


def _cmd_export(args) -> int:
    import dataclasses

    from ingest.edf import read_edf

    from .authorization import authorize
    from .export import detection_from_json, export_night, staged_from_json

    rec = read_edf(args.input)  # an unreadable recording is reported before any work
    windows = _read_authorized(args.authorized, rec.start) if args.authorized else []
    if args.stages:
        staged = _read_result(args.stages, staged_from_json)
        if len(staged.result.stages) * staged.result.epoch_length > rec.duration + 1e-6:
            raise InputProblem(f"{args.stages}: {len(staged.result.stages)} epochs do not fit in {args.input} "
                               f"({rec.duration:g} s): a hypnogram of another recording?")
    else:
        from .pipeline import stage_file

        staged = stage_file(args.input, channel=args.channel)
    detection = None
    if args.format in ("edf", "bids"):
        if args.events:
            detection = _read_result(args.events, detection_from_json)
            late = [e for e, _ in detection.events if e.onset + e.duration > rec.duration + 1e-3]
            if late:
                raise InputProblem(f"{args.events}: an event ends at {late[0].onset + late[0].duration:g} s, after "
                                   f"the end of {args.input} ({rec.duration:g} s): events of another recording?")
            if windows:  # consent given now applies to saved events too
                detection = dataclasses.replace(detection,
                                                events=authorize([e for e, _ in detection.events], windows))
        else:
            from .detection import detect_file

            detection = detect_file(args.input, channel=args.channel, authorized=windows)
    elif args.events:
        print(f"dreamsync: note: --format {args.format} holds no adjustments; --events is not used", file=sys.stderr)
    files = export_night(args.input, args.out, format=args.format, staged=staged, detection=detection)
    if not args.quiet:
        unscored = int((staged.result.stages < 0).sum())
        adjustments = "" if detection is None else \
            f", {len(detection.events)} adjustment(s) ({len(detection.alarms)} alarm(s))"
        print(f"wrote {', '.join(files)}: {len(staged.result.stages)} epochs"
              + (f" ({unscored} unscorable)" if unscored else "") + adjustments
              + f", {len(rec.gaps)} gap(s) marked")
    return EXIT_OK


def _read_result(path: str, parse):
    """A saved result of 'stage' or 'detect' through ``parse``; unreadable files are bad input."""
    try:
        with open(path) as fh:
            return parse(json.load(fh))
    except OSError as err:
        raise InputProblem(f"{path}: {(err.strerror or str(err)).lower()}") from None
    except ValueError as err:  # not JSON, or not the expected document
        raise InputProblem(f"{path}: {_one_line(err)}") from None


_COMMANDS = {"live": _cmd_live, "record": _cmd_record, "replay": _cmd_replay, "convert": _cmd_convert,
             "evaluate": _cmd_evaluate, "simulate": _cmd_simulate, "sim-serve": _cmd_sim_serve, "stage": _cmd_stage,
             "detect": _cmd_detect, "datasets": _cmd_datasets, "train": _cmd_train, "devices": _cmd_devices,
             "export": _cmd_export, "report": _cmd_report, "audit": _cmd_audit}
