"""The live terminal view: its panels drawn off-screen, the quality of each electrode, and the real
thing in a real terminal (tmux): started, read, stopped with Ctrl-C, its recording read back."""

import datetime as dt
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from rich.console import Console

from conftest import ROOT, run_cli
from dreamsync.live_view import NOISY_UV, ChannelQuality, LiveView, big_text
from dreamsync.pipeline import LiveEpoch, LiveSession, open_device
from dsp.events import AdjustmentEvent
from ingest.stream import SampleBlock

FS = 100.0
LABELS = ("EEG C3-M2", "EEG C4-M1", "EOG E1-M2", "EMG chin", "ACC X")
KINDS = ("EEG", "EEG", "EOG", "EMG", "ACC")
T0 = dt.datetime(2026, 1, 2, 23, 0, 0)


def _device(**extra):
    return types.SimpleNamespace(device_id="test:1", channels=LABELS, kinds=KINDS, fs=FS, **extra)


def _block(first, data, lost_before=0):
    return SampleBlock("test:1", LABELS, KINDS, FS, first, np.asarray(data, dtype=np.float32),
                       T0.timestamp() + first / FS, lost_before)


def _signals(seconds, rng):
    """Good EEG/EOG/EMG (SD about 20 uV) and an accelerometer row, shape (5, seconds * FS)."""
    n = int(seconds * FS)
    data = 20.0 * rng.standard_normal((len(LABELS), n))
    data[4] = 1.0
    return data


def _text(view, width=120, height=45, styles=False):
    console = Console(record=True, width=width, height=height, force_terminal=styles, color_system="standard")
    console.print(view.render(width, height))
    return console.export_text(styles=styles)


def test_big_letters_are_five_rows_of_blocks():
    rows = big_text("REM").plain.split("\n")
    assert len(rows) == 5 and len({len(r) for r in rows}) == 1
    assert rows[0].startswith("████") and "█" in rows[4]
    assert big_text("N2").plain != big_text("N3").plain


def test_quality_tells_good_flat_railed_noisy_and_lost_electrodes_apart():
    rng = np.random.default_rng(0)
    quality = ChannelQuality(LABELS, KINDS, FS, seconds=5.0)
    assert [s[2] for s in quality.states()] == ["-"] * 4  # electrodes only; nothing measured yet
    data = _signals(6, rng)
    data[1] = 0.05 * rng.standard_normal(data.shape[1])  # floating input: amplifier noise only
    data[2] = 187500.0  # held at the ADC's limit
    data[3] = 2 * NOISY_UV * rng.standard_normal(data.shape[1])
    quality.push(data)
    states = {label: (state, sd) for label, _, state, sd, _ in quality.states()}
    assert states["EEG C3-M2"][0] == "good" and 15 < states["EEG C3-M2"][1] < 25
    assert states["EEG C4-M1"][0] == "flat"
    assert states["EOG E1-M2"][0] == "railed"
    assert states["EMG chin"][0] == "noisy"
    quality.push_gap(int(2 * FS))  # 2 of the last 5 s lost
    lost = {label: (state, share) for label, _, state, _, share in quality.states()}
    assert lost["EEG C3-M2"][0] == "lost" and lost["EEG C3-M2"][1] == pytest.approx(0.4)


def test_quality_follows_only_the_last_seconds():
    rng = np.random.default_rng(1)
    quality = ChannelQuality(LABELS, KINDS, FS, seconds=5.0)
    flat = _signals(20, rng)
    flat[0] = 0.0
    quality.push(flat)
    assert quality.states()[0][2] == "flat"
    for _ in range(6):  # a second at a time: the flat stretch slides out of the window
        quality.push(_signals(1, rng))
    assert quality.states()[0][2] == "good"


def _fed_view(n_wake=40, n_n2=40, **device):
    rng = np.random.default_rng(2)
    view = LiveView(_device(**device), recording="recordings/night.edf", clock=lambda: T0)
    first = 0
    for i in range(10):  # 10 s of signal, 50 samples lost before the second second
        lost = 50 if i == 1 else 0
        first += lost
        data = _signals(1, rng)
        view.on_block(_block(first, data, lost))
        first += data.shape[1]
    stages = ["W"] * n_wake + ["N2"] * n_n2
    for i, stage in enumerate(stages):
        view.on_epoch(LiveEpoch(i, T0 + dt.timedelta(seconds=30 * i), stage, 0.83))
    return view


def test_the_view_shows_stage_confidence_link_and_quality():
    view = _fed_view(battery_percent=87.0, reconnects=2, disconnects=3)
    text = _text(view)
    assert "sim" not in text and "test:1" in text and "5 ch @ 100 Hz" in text
    assert "elapsed 0:00:10  │ clock 23:00:10  │ now 23:00:00" in text
    glyph = big_text("N2").plain.split("\n")
    assert all(row in text for row in glyph)  # the current stage, large
    assert "confidence 0.83" in text and "for 20 min" in text and "since 23:20" in text
    assert "samples lost   4.76 % (50 samples)" in text  # 50 of 1050
    assert "2 of 3 disconnects" in text and "87 %" in text and "recordings/night.edf" in text
    assert "time in stage  W 20m  N2 20m" in text
    quality = [line for line in text.splitlines() if "EEG C3-M2" in line][0]
    assert "good" in quality and "ACC X" not in text  # only electrodes are rated
    assert "none so far" in text


def test_the_view_says_what_the_device_does_not_report():
    text = _text(_fed_view())
    assert "not reported by the device" in text and "no radio link" in text


def test_the_hypnogram_keeps_the_newest_epochs_on_the_right():
    width = 60
    view = _fed_view(n_wake=40, n_n2=40)
    text = _text(view, width=width)
    rows = {}
    for line in text.splitlines():
        match = re.match(r"│ (W|REM|N1|N2|N3) +(.*?)\s*│$", line)
        if match:
            rows[match.group(1)] = line[6:-1]
    columns = width - 9  # what fits between the borders and the row labels
    assert rows["N2"].count("█") == 40 and rows["W"].count("█") == columns - 40
    assert rows["N2"].rstrip().endswith("█") and rows["W"].startswith("█")  # newest on the right
    assert rows["N2"].index("█") == rows["W"].rindex("█") + 1
    assert not rows["REM"].strip() and not rows["N3"].strip()
    assert "hypnogram (80 epochs, 0.7 h" in text
    assert "23:39" in text  # the last epoch's start on the time axis


def test_an_unscorable_epoch_is_shaded_in_every_row():
    view = _fed_view(n_wake=3, n_n2=0)
    view.on_epoch(LiveEpoch(3, T0 + dt.timedelta(seconds=90), "?", 0.0))
    text = _text(view)
    rows = [line for line in text.splitlines() if re.match(r"│ (W|REM|N1|N2|N3) ", line)]
    assert len(rows) == 5 and all(line[9] == "░" for line in rows)
    assert rows[0][6:9] == "███"


def test_alarms_are_listed_with_time_kind_and_evidence_in_red():
    view = _fed_view()
    view.on_alarm(AdjustmentEvent(600.0, 300.0, "electrical", 0.97, "line at 0.75 Hz, 48 uV, phase-locked"), False)
    view.on_alarm(AdjustmentEvent(90.0, 30.0, "auditory", 0.6, "evoked N550 after 12 clicks"), True)
    text = _text(view)
    assert "adjustment alarms (1, 1 authorized)" in text
    alarm = [line for line in text.splitlines() if "electrical" in line][0]
    assert "23:10:00" in alarm and "0.97" in alarm and "line at 0.75 Hz" in alarm
    authorized = [line for line in text.splitlines() if "auditory" in line][0]
    assert "23:01:30" in authorized and "authorized: evoked N550" in authorized
    coloured = _text(view, styles=True)
    row = [line for line in coloured.splitlines() if "electrical" in line][0]
    assert "\x1b[1;31m" in row  # bold red


def test_the_view_takes_only_the_rows_the_screen_has():
    view = _fed_view()
    for i in range(50):
        view.on_alarm(AdjustmentEvent(30.0 * i, 30.0, "tampering", 0.9, f"replayed segment {i}"), False)
    text = _text(view, width=110, height=40)
    assert len(text.splitlines()) == 40
    assert "replayed segment 49" in text and "replayed segment 0 " not in text  # the newest kept


def test_session_hands_every_block_to_on_block_up_to_the_duration():
    device = open_device("sim", speed=0.0, seed=3, hours=0.1)
    seen = []
    with device:
        session = LiveSession(device, duration=75.0, detect=False, on_block=seen.append)
        summary = session.run()
    assert sum(b.n_samples for b in seen) == 75 * device.fs == summary.samples
    assert [b.first_index for b in seen[1:]] == [b.end_index for b in seen[:-1]]
    assert len(summary.epochs) == 2


def test_session_stages_from_every_eeg_lead_and_survives_one_failing(tmp_path):
    # the first EEG lead rails after 10 min of a 30-min night: the other one stages the rest
    from firmware_sim.headband import SimulatedHeadband
    from ingest.edf import write_edf
    from ingest.replay import open_recording

    band = SimulatedHeadband(hours=0.5, seed=9)
    data = band.read_all()
    data[0, int(600 * band.fs):] = 187.5
    path = tmp_path / "railed.edf"
    write_edf(path, data, band.fs, band.channels, band.kinds)
    with open_recording(path) as device:
        summary = LiveSession(device, detect=False).run()
    eeg = [label for label, kind in zip(band.channels, band.kinds) if kind == "EEG"]
    assert len(eeg) == 2 and summary.eeg_channel == ", ".join(eeg)
    assert len(summary.epochs) == 60 and all(e.stage != "?" for e in summary.epochs)


def test_live_records_the_night_and_prints_json_lines(tmp_path):
    out = tmp_path / "night.edf"
    res = run_cli("live", "--device", "sim", "--speed", "max", "--duration", "2m", "--seed", "4", "--json",
                  "--out", out)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["type"] for d in lines] == ["epoch"] * 4 + ["summary"]
    assert all(d["stage"] in ("W", "N1", "N2", "N3", "REM", "?") for d in lines[:4])
    summary = lines[-1]
    assert summary["epochs"] == 4 and summary["recording"] == str(out) and summary["samples_lost"] == 0
    from ingest.edf import read_edf

    rec = read_edf(out)
    assert rec.duration == pytest.approx(120.0, abs=1.0)
    assert rec.labels[:2] == ["EEG C4-M1", "EEG Fpz-M2"]


def test_live_records_into_recordings_by_default_and_not_with_no_record(tmp_path):
    args = ("live", "--device", "sim", "--speed", "max", "--duration", "1m", "--quiet")
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    made = list((tmp_path / "recordings").glob("live-*.edf"))
    assert len(made) == 1 and f"recorded {made[0].relative_to(tmp_path)}: 60.0 s" in res.stdout
    assert not list((tmp_path / "recordings").glob("*.spool"))
    other = tmp_path / "other"
    other.mkdir()
    res = run_cli(*args, "--no-record", cwd=other)
    assert res.returncode == 0 and "recorded" not in res.stdout and not list(other.iterdir())


def test_live_refuses_a_recording_in_a_missing_folder(tmp_path):
    res = run_cli("live", "--device", "sim", "--speed", "max", "--duration", "1m", "--out", tmp_path / "no" / "x.edf")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such directory" in res.stderr


def test_help_of_live_record_and_replay_has_examples_and_the_main_help_exit_codes():
    for command in ("live", "record", "replay"):
        res = run_cli(command, "--help")
        assert res.returncode == 0 and "examples:" in res.stdout and f"dreamsync {command} " in res.stdout
    assert "--no-record" in run_cli("live", "--help").stdout
    main = run_cli("--help").stdout
    codes = main[main.index("exit codes:"):]
    for code in ("0 ok", "1 internal error", "2 bad input", "3 device problem", "130 interrupted"):
        assert code in " ".join(codes.split())


class _Tmux:
    """A tmux server of our own (its own socket), so that the test touches no other session."""

    def __init__(self, name):
        self.base = ["tmux", "-L", name]

    def __call__(self, *args):
        return subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=10)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "live").stdout

    def wait_for(self, predicate, timeout) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"timed out; the screen shows:\n{self.screen()}")


def _epochs_shown(screen: str) -> int:
    match = re.search(r"stage \(epoch (\d+)\)", screen)
    return int(match.group(1)) if match else 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_in_a_real_terminal_stops_with_ctrl_c_and_keeps_the_recording(tmp_path):
    out = tmp_path / "REC.edf"
    command = [sys.executable, "-m", "dreamsync", "live", "--device", "sim", "--speed", "120", "--seed", "7",
               "--out", str(out)]
    err = tmp_path / "stderr.txt"
    # a detached tmux started without a terminal exports COLUMNS=80 LINES=24, which rich would believe
    shell = f"unset COLUMNS LINES; {shlex.join(command)} 2> {shlex.quote(str(err))}; echo rc=$?; sleep 60"
    tmux = _Tmux(f"dreamsync-test-{time.monotonic_ns()}")
    try:
        started = tmux("new-session", "-d", "-s", "live", "-x", "140", "-y", "45", "-c", str(ROOT), shell)
        assert started.returncode == 0, started.stderr
        # a stage is shown once the first 30 s of signal (0.25 s at 120x) are staged
        # generous limits for a loaded machine: it takes about 5 s
        screen = tmux.wait_for(lambda s: "confidence" in s and _epochs_shown(s) >= 3, timeout=60)
        assert "dreamsync live  sim:7  4 ch @ 256 Hz  speed 120x  │ elapsed" in screen
        for panel in ("hypnogram (", "signal quality (last 5 s)", "adjustment alarms (", "samples lost",
                      "no radio link", "not reported by the device", str(out)[:40]):
            assert panel in screen, panel
        assert re.search(r"EEG C4-M1 +EEG +good", screen)
        assert re.search(r"│ W +█", screen) or re.search(r"│ N1 +█", screen)  # wake and N1 begin the night
        tmux("send-keys", "-t", "live", "C-c")
        screen = tmux.wait_for(lambda s: "rc=" in s, timeout=60)
    finally:
        tmux("kill-server")
    assert "rc=0" in screen and "Traceback" not in err.read_text(), err.read_text()
    epochs = int(re.search(r"summary: (\d+) epochs", screen).group(1))
    seconds = float(re.search(r"recorded .*REC\.edf: ([\d.]+) s, 0 samples lost", screen).group(1))
    assert epochs >= 3 and seconds >= 30 * epochs
    from ingest.edf import read_edf

    rec = read_edf(out)
    assert rec.duration == pytest.approx(seconds, abs=1.0)
    assert rec.labels == ["EEG C4-M1", "EEG Fpz-M2", "EOG E1-M2", "EMG chin"]
    assert not out.with_suffix(".edf.spool").exists()


def test_other_alarms_join_the_panel_without_a_score():
    view = _fed_view()
    view.on_note(120.0, 30.0, "auditory", "AUDIT UNLOGGED: detector only")
    text = _text(view)
    row = [line for line in text.splitlines() if "AUDIT UNLOGGED" in line][0]
    assert "23:02:00" in row and "auditory" in row and " - " in row
    assert "adjustment alarms (1)" in text


def test_every_block_up_to_the_duration_goes_to_the_lsl_outlet(capsys):
    from dreamsync.cli import _stage_stream

    class Outlet:  # what _stage_stream needs of dreamsync.lsl.LslOutlet
        name, channels, fs, source_id = "test", ("a",), 1.0, "test"

        def __init__(self):
            self.blocks = []

        def push_block(self, block):
            self.blocks.append(block)

    outlet = Outlet()
    with open_device("sim", speed=0.0, seed=5, hours=0.1) as device:
        _stage_stream(device, True, duration=45.0, lsl=outlet)
    assert sum(b.n_samples for b in outlet.blocks) == 45 * device.fs
    assert "summary: 1 epochs" in capsys.readouterr().out


def test_staging_a_file_reports_its_progress_and_stages_the_same():
    from dreamsync.pipeline import stage_file

    sample = str(ROOT / "recordings" / "sim-30min-seed1-128hz.edf")
    shares = []
    staged = stage_file(sample, progress=shares.append)
    assert shares and shares[-1] == 1.0 and all(0 < a < b for a, b in zip(shares, shares[1:]))
    assert staged.to_json() == stage_file(sample).to_json()


def test_progress_lines_go_to_stderr_and_only_when_the_work_is_long(capsys):
    from dreamsync.cli import _block_progress, _share_progress

    _share_progress("staging x.edf", every=3600.0)(0.5)  # short work: nothing
    assert capsys.readouterr().err == ""
    _share_progress("staging x.edf", every=0.0)(0.5)
    show = _block_progress("converting x.dsraw", every=0.0)
    show(_block(0, np.zeros((5, 100))))  # the clock starts with the first block
    show(_block(0, np.zeros((5, 360 * 100))))
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == ["dreamsync: staging x.edf: 50 %", "dreamsync: converting x.dsraw: 0.10 h done"]
