"""The ``dreamsync`` command line.

Only the standard library is imported at module level, so ``dreamsync --help`` answers at once and
compiles nothing; each command imports what it needs when it runs.

Exit codes: 0 success; 1 internal error (a bug: rerun with ``--debug`` for the traceback);
2 bad input or usage (unreadable or truncated file, unknown channel, bad option); 3 device or
connection problem; 130 interrupted before any result.
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


DEVICE_CHOICES = ("auto", "sim", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s")


def _device_options(p, default: str) -> None:
    p.add_argument("--device", default=default, choices=DEVICE_CHOICES,
                   help="auto: the first headband found, else the emulated Cyton; sim: the simulated "
                        f"headband at any speed; or a board (default: {default})")
    p.add_argument("--port", default=None, help="serial port of a Cyton (default: found from the dongle's USB ids)")
    p.add_argument("--address", default=None, help="Bluetooth address or name of a Ganglion or Muse")


def _open_device(args, capture=None):
    from .pipeline import open_device

    return open_device(args.device, speed=getattr(args, "speed", 1.0), hours=getattr(args, "hours", 8.0),
                       seed=args.seed, port=args.port, address=args.address, capture=capture,
                       notice=lambda line: print(f"dreamsync: {line}", file=sys.stderr, flush=True))


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
               "exit codes: 0 ok, 1 internal error, 2 bad input or usage, 3 device problem, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"dreamsync {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "live", formatter_class=fmt, help="stage a headband's stream as it arrives",
        description="Connect to a headband (or the simulator), stage each 30-s epoch as it ends and "
                    "print a line per epoch (clock time, stage, confidence); an ALARM line appears as soon "
                    "as a dream adjustment is flagged (see 'detect'). Ctrl-C ends cleanly with a summary "
                    "of time in each stage and of the alarms.",
        epilog="examples:\n"
               "  dreamsync live --device sim --speed 60            # a simulated night, 60x real time\n"
               "  dreamsync live --device sim --speed max --duration 8h",
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
    p.add_argument("--quiet", action="store_true", help="print only alarms and the summary")

    p = sub.add_parser(
        "record", formatter_class=fmt, help="record a headband to EDF+ (and its raw capture)",
        description="Record a headband until --duration or Ctrl-C. The raw bytes go to a capture file "
                    "beside the EDF+ as they arrive (flushed every second), and the EDF+ is written when "
                    "the recording stops; lost samples are marked as gaps, never filled. If the process "
                    "is killed, 'dreamsync convert CAPTURE --out night.edf' recovers all but the last second.",
        epilog="examples:\n"
               "  dreamsync record --device cyton --port /dev/ttyUSB0 --duration 8h --out night.edf\n"
               "  dreamsync record --device sim --duration 10m --out test.edf",
    )
    _device_options(p, default="auto")
    p.add_argument("--duration", type=parse_duration, default=None, help="stop after this much signal (e.g. 8h)")
    p.add_argument("--out", required=True, help="EDF+ file to write (the capture goes beside it as .dsraw)")
    p.add_argument("--no-capture", action="store_true", help="do not keep the raw capture")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated night (sim only)")
    p.add_argument("--quiet", action="store_true", help="print only the final line")

    p = sub.add_parser(
        "replay", formatter_class=fmt, help="stage a recording as if it were live",
        description="Replay an EDF/EDF+/BDF file or a raw capture (through the same decoder as live) and "
                    "stage it epoch by epoch, like 'live'.",
        epilog="examples:\n  dreamsync replay night.dsraw --speed max\n  dreamsync replay night.edf --speed 60",
    )
    p.add_argument("input", help="EDF/EDF+/BDF file or raw capture (.dsraw)")
    p.add_argument("--speed", type=parse_speed, default=0.0, help="pace relative to real time, or 'max' (default)")
    p.add_argument("--authorized", default=None,
                   help="JSON file of the adjustments the sleeper consented to (see 'dreamsync detect --help')")
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
                    "covers [30 i, 30 i + 30) s; a final partial epoch is dropped.",
        epilog="examples:\n"
               "  dreamsync stage night.edf --out hypnogram.json\n"
               "  dreamsync stage SC4001E0-PSG.edf --channel 'EEG Fpz-Cz' --out SC4001.json\n"
               "  dreamsync stage night.edf --model my-lab.model.json --out hypnogram.json",
    )
    p.add_argument("input", help="EDF, EDF+ or BDF file")
    p.add_argument("--out", default=None, help="JSON file to write (default: print the JSON)")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to stage from, comma-separated (default: every EEG channel at the "
                        "rate of the best-placed one, central leads first)")
    p.add_argument("--model", default=None,
                   help="staging model from 'dreamsync train' (default: the built-in model, which needs no "
                        "training data)")
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
                    "treated as missing samples.",
        epilog="examples:\n"
               "  dreamsync detect night.edf --out events.json\n"
               "  dreamsync detect night.edf --authorized consent.json --out events.json\n\n"
               "consent.json: {\"authorized\": [{\"kind\": \"auditory\", \"start\": \"23:30\", \"end\": \"02:00\"}]}\n"
               "(start/end: seconds from the recording's start, HH:MM[:SS] clock times or ISO date-times;\n"
               "kind: auditory, electrical, entrainment, tampering or any)",
    )
    p.add_argument("input", help="EDF, EDF+ or BDF file")
    p.add_argument("--out", default=None, help="JSON file to write (default: print the JSON)")
    p.add_argument("--authorized", default=None, help="JSON file of the adjustments the sleeper consented to")
    p.add_argument("--channel", default=None,
                   help="EEG channel(s) to stage from, comma-separated (default: as 'dreamsync stage' picks); "
                        "every electrode channel at their rate is checked")
    p.add_argument("--quiet", action="store_true", help="print nothing on success when --out is given")

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

    windows = _read_authorized(args.authorized, dt.datetime.now()) if args.authorized else []
    with _open_device(args) as device:
        _stage_stream(device, args.quiet, duration=args.duration, authorized=windows)
    return EXIT_OK


def _stage_stream(device, quiet: bool, duration=None, authorized=()) -> None:
    """Stage an opened device epoch by epoch, a line each, and print an alarm line as soon as an
    adjustment is flagged, until it ends or Ctrl-C; then the summary."""
    import datetime as dt

    from .pipeline import LiveSession

    def show(epoch):
        if not quiet:
            print(f"{epoch.start:%H:%M:%S}  {epoch.stage:<3}  {epoch.confidence:.2f}", flush=True)

    def alarm(event, ok):
        start = session._start or dt.datetime.now()
        print(_event_line(event, ok, start), flush=True)

    session = LiveSession(device, on_epoch=show, duration=duration, on_adjustment=alarm, authorized=authorized)
    previous = signal.signal(signal.SIGINT, lambda *_: session.stop())
    try:
        summary = session.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_summary(summary)


def _print_summary(summary) -> None:
    minutes = summary.minutes_per_stage()
    total = sum(minutes.values())
    print(f"summary: {len(summary.epochs)} epochs ({total / 60:.2f} h) staged from {summary.eeg_channel}"
          + (f" + {summary.emg_channel}" if summary.emg_channel else "")
          + f"; samples lost: {summary.samples_lost}")
    alarms = sum(not ok for _, ok in summary.adjustments)
    print(f"adjustments: {alarms} alarm(s), {len(summary.adjustments) - alarms} authorized")
    for name, mins in minutes.items():
        if mins or name != "?":
            share = 100 * mins / total if total else 0.0
            print(f"  {name:<3} {mins:7.1f} min  {share:5.1f} %")


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
    return EXIT_OK


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
    with open_recording(args.input, speed=args.speed) as device:
        _stage_stream(device, args.quiet, authorized=windows)
    return EXIT_OK


def _cmd_convert(args) -> int:
    from .pipeline import convert

    _print_recording(convert(args.input, args.out), "wrote", args.quiet)
    return EXIT_OK


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

    model = _load_model(args.model) if args.model else None
    staged = stage_file(args.input, channel=args.channel, model=model)
    doc = staged.to_json()
    if args.out is None:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    with open(args.out, "w") as fh:
        json.dump(doc, fh)
    if not args.quiet:
        unscored = doc["stages"].count("?")
        print(f"wrote {args.out}: {len(doc['stages'])} epochs staged from {', '.join(staged.eeg_channels)}"
              + (f" + {staged.emg_channel}" if staged.emg_channel else "")
              + (f", {unscored} unscorable" if unscored else ""))
    return EXIT_OK


def _cmd_detect(args) -> int:
    from .detection import detect_file

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


_COMMANDS = {"live": _cmd_live, "record": _cmd_record, "replay": _cmd_replay, "convert": _cmd_convert,
             "evaluate": _cmd_evaluate, "simulate": _cmd_simulate, "sim-serve": _cmd_sim_serve, "stage": _cmd_stage,
             "detect": _cmd_detect, "datasets": _cmd_datasets, "train": _cmd_train}
