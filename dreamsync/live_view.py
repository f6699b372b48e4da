"""The terminal view of ``dreamsync live``: stage, hypnogram, signal quality, link and alarms at a glance.

:class:`LiveView` is fed by a :class:`~dreamsync.pipeline.LiveSession` (``on_block``, ``on_epoch``,
``on_adjustment``) on the session's thread and drawn by a :class:`rich.live.Live` on its own
refresh thread a few times a second, whatever the pace of the stream (``--speed max`` included): a
lock guards the state, and each refresh builds a complete snapshot under it.

The panels::

    header     device, channels and rate, elapsed signal time, recording clock, wall clock
    stage      the current stage in large letters, its confidence, how long it has lasted
    link       samples lost (%), disconnects and reconnects, battery, recording file, LSL
    hypnogram  one column per epoch, newest on the right, rows W / REM / N1 / N2 / N3
    quality    per electrode over the last seconds: good, flat, railed, noisy or lost
    alarms     adjustment alarms (clock time, kind, score, evidence) in red; authorized ones dim
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dsp.quality import CLIPPED_FRACTION, FLAT_UV, MISSING_FRACTION, epoch_quality

#: Seconds of signal the per-channel quality is measured over.
QUALITY_SECONDS = 5.0
#: Above this SD (uV) over :data:`QUALITY_SECONDS` an electrode is noisy: scalp EEG and EOG in sleep
#: stay below about 150 uV (N3 slow waves, REM eye movements); a loose or moving electrode does not.
NOISY_UV = 250.0
#: A flat signal sitting this far from zero (uV) is held at the amplifier's limit (railed), not
#: disconnected: amplifier offsets of a floating input are a few hundred uV at most.
RAILED_OFFSET_UV = 5000.0
#: Redraws per second of the terminal view.
REFRESH_HZ = 4.0

ELECTRODE_KINDS = ("EEG", "EOG", "EMG")
#: Hypnogram rows, top to bottom (wake on top, as clinical hypnograms draw it).
HYPNOGRAM_ROWS = ("W", "REM", "N1", "N2", "N3")
STAGE_STYLE = {"W": "bold yellow", "REM": "bold magenta", "N1": "bold cyan", "N2": "bold blue",
               "N3": "bold bright_blue", "?": "dim"}
QUALITY_STYLE = {"good": "green", "flat": "yellow", "railed": "bold red", "noisy": "yellow", "lost": "bold red",
                 "-": "dim"}

# A 5-row block font for the stage names (and '?', '-'): the current stage readable across the room.
_GLYPHS = {
    "W": ("█   █", "█   █", "█ █ █", "██ ██", "█   █"),
    "N": ("█   █", "██  █", "█ █ █", "█  ██", "█   █"),
    "R": ("████ ", "█   █", "████ ", "█  █ ", "█   █"),
    "E": ("█████", "█    ", "████ ", "█    ", "█████"),
    "M": ("█   █", "██ ██", "█ █ █", "█   █", "█   █"),
    "1": ("  █  ", " ██  ", "  █  ", "  █  ", " ███ "),
    "2": ("████ ", "    █", " ███ ", "█    ", "█████"),
    "3": ("████ ", "    █", " ███ ", "    █", "████ "),
    "?": (" ███ ", "█   █", "   █ ", "     ", "  █  "),
    "-": ("     ", "     ", " ███ ", "     ", "     "),
}


def big_text(word: str, style: str = "") -> Text:
    """``word`` in 5-row block letters (characters of W, N, REM, 1-3, ?, -; others shown as ?)."""
    rows = ["  ".join(_GLYPHS.get(ch, _GLYPHS["?"])[r] for ch in word) for r in range(5)]
    return Text("\n".join(rows), style=style)


class ChannelQuality:
    """Quality of each electrode over the last :data:`QUALITY_SECONDS` of signal.

    Parameters
    ----------
    channels, kinds : sequence of str
        The stream's channel labels and kinds; only EEG, EOG and EMG channels are followed.
    fs : float
        Sample rate in Hz.
    seconds : float, optional
        Length of the window measured.
    """

    def __init__(self, channels, kinds, fs: float, seconds: float = QUALITY_SECONDS):
        self.rows = [i for i, k in enumerate(kinds) if k in ELECTRODE_KINDS]
        self.labels = [channels[i] for i in self.rows]
        self.kinds = [kinds[i] for i in self.rows]
        self._buffer = np.full((len(self.rows), max(2, int(round(seconds * fs)))), np.nan)
        self._filled = 0

    def push(self, data: np.ndarray) -> None:
        """Append samples, shape (n_channels, n) in uV (all the stream's channels; NaN = lost)."""
        self._append(np.asarray(data, dtype=np.float64)[self.rows])

    def push_gap(self, n: int) -> None:
        """Append ``n`` lost samples."""
        self._append(np.full((len(self.rows), min(int(n), self._buffer.shape[1])), np.nan))

    def _append(self, data: np.ndarray) -> None:
        width = self._buffer.shape[1]
        n = data.shape[1]
        if n >= width:
            self._buffer[:] = data[:, -width:]
        elif n:
            self._buffer[:, :-n] = self._buffer[:, n:]
            self._buffer[:, -n:] = data
        self._filled = min(width, self._filled + n)

    def states(self) -> list:
        """``[(label, kind, state, sd_uv, lost_share), ...]``; state is good, flat, railed, noisy, lost or -.

        ``-`` before any sample; sd_uv and lost_share are NaN then.
        """
        if not self.rows:
            return []
        if self._filled == 0:
            return [(label, kind, "-", np.nan, np.nan) for label, kind in zip(self.labels, self.kinds)]
        window = np.ascontiguousarray(self._buffer[:, -self._filled:])
        measures = epoch_quality(window)  # lost share, SD, share at the extremes
        out = []
        for row, (lost, sd, extremes) in enumerate(measures):
            finite = window[row][np.isfinite(window[row])]
            level = float(np.median(np.abs(finite))) if finite.size else 0.0
            if lost > MISSING_FRACTION:
                state = "lost"
            elif sd < FLAT_UV:
                state = "railed" if level > RAILED_OFFSET_UV else "flat"
            elif extremes > CLIPPED_FRACTION:
                state = "railed"  # clipped: held at the amplifier's limit part of the time
            elif sd > NOISY_UV:
                state = "noisy"
            else:
                state = "good"
            out.append((self.labels[row], self.kinds[row], state, float(sd), float(lost)))
        return out


class LiveView:
    """What the live terminal shows, kept up to date by a live session's callbacks.

    Parameters
    ----------
    device : ingest.device.Device
        The opened device (labels, kinds, rate; and ``reconnects``, ``disconnects``,
        ``battery_percent`` where the driver has them).
    recording : str, optional
        EDF+ file being written, shown in the link panel.
    lsl : str, optional
        Name of the LSL stream the blocks are pushed to.
    speed : float, optional
        Pace of a simulated stream (shown in the header when not 1; 0 = as fast as possible).
    clock : callable, optional
        Returns the wall-clock time (a datetime); for tests.

    Notes
    -----
    ``on_block``, ``on_epoch`` and ``on_alarm`` are called from the session's thread and
    :meth:`render` from the refresh thread; both take the view's lock.
    """

    def __init__(self, device, *, recording: str | None = None, lsl: str | None = None, speed: float = 1.0,
                 clock=dt.datetime.now):
        self.device = device
        self.device_id = device.device_id
        self.fs = float(device.fs)
        self.n_channels = len(device.channels)
        self.recording = recording
        self.lsl = lsl
        self.speed = speed
        self._clock = clock
        self.quality = ChannelQuality(device.channels, device.kinds, device.fs)
        self.epochs: list = []
        self.alarms: list = []  # (event, authorized)
        self.samples = 0  # lost ones included
        self.samples_lost = 0
        self.start: dt.datetime | None = None
        self._lock = threading.Lock()

    # -- fed by the session --------------------------------------------------------------------------
    def on_block(self, block) -> None:
        """A block arrived (``LiveSession(on_block=...)``)."""
        with self._lock:
            if self.start is None:
                self.start = dt.datetime.fromtimestamp(block.host_time - block.first_index / self.fs)
            if block.lost_before:
                self.quality.push_gap(block.lost_before)
            self.quality.push(block.data)
            self.samples = block.end_index
            self.samples_lost += block.lost_before

    def on_epoch(self, epoch) -> None:
        """An epoch was staged (``LiveSession(on_epoch=...)``)."""
        with self._lock:
            self.epochs.append(epoch)
            if self.start is None:
                self.start = epoch.start - dt.timedelta(seconds=30 * epoch.index)

    def on_alarm(self, event, authorized: bool) -> None:
        """An adjustment was flagged (``LiveSession(on_adjustment=...)``)."""
        with self._lock:
            self.alarms.append((event, authorized))

    def on_note(self, onset: float, duration: float, kind: str, text: str, raised: bool = True) -> None:
        """Another alarm for the alarm panel (e.g. the DreamSync audit's): ``onset`` and ``duration`` in s
        from the first sample, ``kind`` and a line of evidence ``text``; ``raised=False`` shows it dim."""
        note = _Note(float(onset), float(duration), str(kind), None, str(text))
        with self._lock:
            self.alarms.append((note, not raised))

    # -- drawing -------------------------------------------------------------------------------------
    def render(self, width: int | None = None, height: int | None = None) -> Layout:
        """The whole screen as a :class:`rich.layout.Layout` (a snapshot: safe to draw later).

        ``width`` sizes the hypnogram (default: the terminal's width); ``height`` limits the rows of
        the quality and alarm panels (default: the terminal's height).
        """
        if width is None or height is None:
            size = Console().size
            width, height = width or size.width, height or size.height
        with self._lock:
            header = self._header()
            stage = self._stage_panel()
            link = self._link_panel()
            hypnogram = self._hypnogram_panel(width)
            quality = self._quality_panel()
            alarms = self._alarm_panel(max(1, height - 23))  # rows left below the fixed panels
        layout = Layout(name="root")
        layout.split_column(Layout(header, name="header", size=3), Layout(name="top", size=8),
                            Layout(hypnogram, name="hypnogram", size=8), Layout(name="bottom"))
        layout["top"].split_row(Layout(stage, name="stage", size=50), Layout(link, name="link"))
        layout["bottom"].split_row(Layout(quality, name="quality", size=46), Layout(alarms, name="alarms"))
        return layout

    def _seconds(self) -> float:
        return self.samples / self.fs if self.fs else 0.0

    def _header(self) -> Panel:
        elapsed = _hms(self._seconds())
        now = self._clock()
        text = Text.assemble(("dreamsync live  ", "bold"), (self.device_id, "bold cyan"),
                             f"  {self.n_channels} ch @ {self.fs:g} Hz")
        if self.speed != 1.0:
            text.append(f"  speed {'max' if self.speed == 0 else f'{self.speed:g}x'}", style="yellow")
        text.append(f"  │ elapsed {elapsed}")
        if self.start is not None:  # the recording's own clock: ahead of the wall clock when simulated fast
            text.append(f"  │ clock {self.start + dt.timedelta(seconds=self._seconds()):%H:%M:%S}")
        text.append(f"  │ now {now:%H:%M:%S}")
        return Panel(text, box=box.ROUNDED)

    def _stage_panel(self) -> Panel:
        if not self.epochs:
            waiting = 30.0 - self._seconds() % 30.0 if self.samples else 30.0
            body = Group(big_text("-", "dim"), Text(f"first epoch in {waiting:.0f} s of signal", style="dim"))
            return Panel(body, title="stage", box=box.ROUNDED)
        last = self.epochs[-1]
        run = 1
        while run < len(self.epochs) and self.epochs[-1 - run].stage == last.stage:
            run += 1
        style = STAGE_STYLE.get(last.stage, "")
        sure = "green" if last.confidence >= 0.7 else ("yellow" if last.confidence >= 0.4 else "red")
        caption = Text.assemble((last.stage, style), "\nconfidence ", (f"{last.confidence:.2f}", f"bold {sure}"),
                                f"\nfor {run * 0.5:g} min", f"\nsince {self.epochs[-run].start:%H:%M}",
                                (f"\nepoch at {last.start:%H:%M:%S}", "dim"))
        grid = Table.grid(padding=(0, 3))
        grid.add_row(big_text(last.stage, style), caption)
        return Panel(grid, title=f"stage (epoch {last.index + 1})", box=box.ROUNDED)

    def _link_panel(self) -> Panel:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        share = 100.0 * self.samples_lost / self.samples if self.samples else 0.0
        grid.add_row("samples lost", Text(f"{share:.2f} % ({self.samples_lost} samples)",
                                          style="bold red" if share >= 1 else ("yellow" if share > 0 else "green")))
        reconnects, disconnects = getattr(self.device, "reconnects", None), getattr(self.device, "disconnects", None)
        if reconnects is None:
            grid.add_row("reconnects", Text("- (no radio link)", style="dim"))
        else:
            grid.add_row("reconnects", Text(f"{reconnects} of {disconnects} disconnects",
                                            style="yellow" if disconnects else "green"))
        battery = _battery(self.device)
        grid.add_row("battery", Text("not reported by the device", style="dim") if battery is None
                     else Text(f"{battery:.0f} %", style="bold red" if battery < 15 else "green"))
        grid.add_row("recording", Text(self.recording, style="cyan") if self.recording
                     else Text("off (--no-record)", style="dim"))
        if self.lsl:
            grid.add_row("LSL", Text(f"stream {self.lsl!r}", style="cyan"))
        minutes = {}
        for e in self.epochs:
            minutes[e.stage] = minutes.get(e.stage, 0.0) + 0.5
        if minutes:
            grid.add_row("time in stage", "  ".join(f"{s} {minutes[s]:g}m" for s in HYPNOGRAM_ROWS + ("?",)
                                                    if s in minutes))
        return Panel(grid, title="link and recording", box=box.ROUNDED)

    def _hypnogram_panel(self, width: int) -> Panel:
        columns = max(10, width - 4 - 5)  # panel borders and padding, row labels
        shown = self.epochs[-columns:]
        lines = []
        for row in HYPNOGRAM_ROWS:
            line = Text(f"{row:<4}", style=STAGE_STYLE[row])
            for e in shown:
                if e.stage == row:
                    line.append("█", style=STAGE_STYLE[row])
                elif e.stage not in HYPNOGRAM_ROWS:
                    line.append("░", style="dim")
                else:
                    line.append(" ")
            lines.append(line)
        axis = Text("    ", style="dim")
        if shown:
            left, right = f"{shown[0].start:%H:%M}", f"{shown[-1].start:%H:%M}"
            gap = len(shown) - len(left) - len(right)
            axis.append(left + " " * gap + right if gap >= 1 else right.rjust(len(shown)), style="dim")
        else:
            axis.append("no epoch staged yet", style="dim")
        lines.append(axis)
        title = f"hypnogram ({len(self.epochs)} epochs, {len(self.epochs) / 120:.1f} h; 1 column = 30 s)"
        return Panel(Text("\n").join(lines), title=title, box=box.ROUNDED)

    def _quality_panel(self) -> Panel:
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), expand=True, show_edge=False, pad_edge=False)
        table.add_column("channel")
        table.add_column("kind")
        table.add_column("state")
        table.add_column("SD uV", justify="right")
        table.add_column("lost", justify="right")
        for label, kind, state, sd, lost in self.quality.states():
            table.add_row(label, kind, Text(state, style=QUALITY_STYLE[state]),
                          "-" if sd != sd else f"{sd:.1f}", "-" if lost != lost else f"{100 * lost:.0f} %")
        return Panel(table, title=f"signal quality (last {QUALITY_SECONDS:g} s)", box=box.ROUNDED)

    def _alarm_panel(self, rows: int) -> Panel:
        raised = sum(not ok for _, ok in self.alarms)
        title = f"adjustment alarms ({raised}" + (f", {len(self.alarms) - raised} authorized)" if len(self.alarms)
                                                   > raised else ")")
        if not self.alarms:
            return Panel(Text("none so far", style="green"), title=title, box=box.ROUNDED)
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), expand=True, show_edge=False, pad_edge=False)
        table.add_column("time", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("evidence", overflow="ellipsis", no_wrap=True, ratio=1)
        for event, ok in self.alarms[-rows:]:
            at = (f"{self.start + dt.timedelta(seconds=event.onset):%H:%M:%S}" if self.start is not None
                  else f"{event.onset:.0f} s")
            style = "dim green" if ok else "bold red"
            evidence = ("authorized: " if ok else "") + str(event.evidence)
            score = "-" if event.score is None else f"{event.score:.2f}"
            table.add_row(Text(at, style=style), Text(event.kind, style=style),
                          Text(score, style=style), Text(evidence, style="dim" if ok else "red"))
        return Panel(table, title=title, border_style="red" if raised else "", box=box.ROUNDED)


@dataclass(frozen=True)
class _Note:
    """An alarm that is not an :class:`dsp.events.AdjustmentEvent` (no score), as the alarm panel lists it."""

    onset: float
    duration: float
    kind: str
    score: float | None
    evidence: str


def _battery(device) -> float | None:
    """Battery level in % where the driver reports one (Muse telemetry), else None."""
    try:
        value = getattr(device, "battery_percent", None)
    except Exception:  # a driver property failing must not take the view down
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LiveScreen:
    """Draws a :class:`LiveView` full-screen while a session runs (a context manager).

    Parameters
    ----------
    view : LiveView
    console : rich.console.Console, optional
        Where to draw (default: the terminal).
    refresh_hz : float, optional
        Redraws per second, whatever the pace of the stream.
    screen : bool, optional
        Use the terminal's alternate screen (restored on exit), by default True.
    """

    def __init__(self, view: LiveView, console: Console | None = None, refresh_hz: float = REFRESH_HZ,
                 screen: bool = True):
        from rich.live import Live

        self.view = view
        self.console = console or Console()
        self._live = Live(console=self.console, screen=screen, refresh_per_second=refresh_hz, transient=not screen,
                          get_renderable=self._draw, redirect_stdout=False, redirect_stderr=False)

    def _draw(self):
        size = self.console.size
        return self.view.render(size.width, size.height)

    def __enter__(self) -> "LiveScreen":
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        self._live.stop()  # joins the refresh thread: nothing is drawn after this
