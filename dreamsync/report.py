"""A night on one page: a self-contained HTML report of staging, spectrogram, statistics, adjustments, quality.

:func:`write_report` reads a recording, stages it, checks it for dream adjustments, computes a
multitaper spectrogram and per-channel signal quality, draws the figures (matplotlib, Agg) and
writes one HTML file with the figures embedded as base64 PNG: no external CSS, scripts, fonts or
images, so the file can be mailed or archived as is. :func:`collect_report` does the computing and
:func:`render_report` the drawing and writing, so other commands (a cohort runner, an audit) can
render results they already hold and append sections of their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
import pathlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dsp.stages import EPOCH_SECONDS, STAGES

#: Colour of each stage (hypnogram segments, hypnodensity areas).
STAGE_COLOURS = {"W": "#f4a261", "N1": "#9ad0ec", "N2": "#3a86c8", "N3": "#16325c", "REM": "#d62839"}
#: Colour of each adjustment kind (timeline spans, table chips).
KIND_COLOURS = {"auditory": "#7b2cbf", "electrical": "#e85d04", "entrainment": "#2a9d8f", "tampering": "#6c757d"}
#: Hypnogram rows from the top, as sleep scorers draw them.
HYPNOGRAM_ORDER = ("W", "REM", "N1", "N2", "N3")
#: Per-epoch quality classes shown in the quality figure, with colours (0 = fine).
QUALITY_CLASSES = (("fine", "#e9ecef"), ("missing samples", "#212529"), ("flat", "#4361ee"),
                   ("railed / clipped", "#b5179e"), ("artefact", "#f77f00"))
#: An epoch whose mean sits this far from 0 (uV) while flat is stuck at an amplifier rail, not disconnected.
RAIL_OFFSET_UV = 1000.0
ELECTRODE_KINDS = ("EEG", "EOG", "EMG")
#: Plot area of every figure as fractions of its width: the same in each, so times line up down the page.
LEFT, RIGHT = 0.105, 0.80
#: Figure width in inches (at 110 dpi: 1320 px) and the margins above and below the plot area in inches.
FIGURE_WIDTH, TOP_INCHES, BOTTOM_INCHES = 12.0, 0.45, 0.75


@dataclass(frozen=True)
class ChannelQuality:
    """Signal quality of one channel over its 30-s epochs.

    Attributes
    ----------
    label, kind : str
    fs : float
        Sample rate in Hz.
    epochs : int
        Whole 30-s epochs examined.
    missing_samples : float
        Share of samples lost or marked missing (0..1).
    gaps, flat, railed, artefact : float
        Share of epochs (0..1) with more than 5 % of samples missing; flat (SD below 0.25 uV, a
        disconnected electrode); railed (flat at an amplifier limit) or clipped; holding a movement or
        other high-amplitude artefact (see :func:`dsp.quality.movement_artefacts`).
    classes : ndarray of int8, shape (epochs,)
        Per epoch: index into :data:`QUALITY_CLASSES` (first failing test in the order gap, flat,
        railed, artefact; 0 = fine).
    """

    label: str
    kind: str
    fs: float
    epochs: int
    missing_samples: float
    gaps: float
    flat: float
    railed: float
    artefact: float
    classes: np.ndarray = field(repr=False)

    @property
    def usable(self) -> float:
        """Share of epochs that pass every test (0..1)."""
        return float(np.mean(self.classes == 0)) if self.epochs else 0.0


def channel_quality(x, fs: float, label: str = "", kind: str = "EEG",
                    epoch_seconds: float = EPOCH_SECONDS) -> ChannelQuality:
    """Quality of one channel per 30-s epoch (see :class:`ChannelQuality`).

    Parameters
    ----------
    x : array_like, shape (n_samples,)
        Signal in uV; NaN marks missing samples. A final partial epoch is left out.
    fs : float
        Sample rate in Hz.
    label, kind : str, optional
        Channel label and kind, carried into the result.
    epoch_seconds : float, optional
        Epoch length in s, by default 30.
    """
    from dsp.quality import CLIPPED_FRACTION, FLAT_UV, MISSING_FRACTION, epoch_quality, movement_artefacts

    x = np.asarray(x)
    per = int(round(epoch_seconds * fs))
    n = x.size // per if per > 0 else 0
    if n == 0:
        return ChannelQuality(label, kind, fs, 0, float(np.mean(~np.isfinite(x))) if x.size else 0.0,
                              0.0, 0.0, 0.0, 0.0, np.zeros(0, dtype=np.int8))
    epochs = np.ascontiguousarray(x[: n * per].reshape(n, per), dtype=np.float64)
    q = epoch_quality(epochs)
    with warnings.catch_warnings():  # an epoch with no sample left has no mean: it is reported as a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.abs(np.nanmean(epochs, axis=1))
    gap = q[:, 0] > MISSING_FRACTION
    stuck = q[:, 1] < FLAT_UV
    railed = (stuck & (np.nan_to_num(level) > RAIL_OFFSET_UV)) | (~stuck & (q[:, 2] > CLIPPED_FRACTION))
    flat = stuck & ~railed
    artefact = movement_artefacts(epochs) & ~stuck
    classes = np.zeros(n, dtype=np.int8)
    for code, mask in ((4, artefact), (3, railed), (2, flat), (1, gap)):  # first failing test wins
        classes[mask] = code
    return ChannelQuality(label, kind, float(fs), n, float(np.mean(~np.isfinite(x))), float(gap.mean()),
                          float(flat.mean()), float(railed.mean()), float(artefact.mean()), classes)


@dataclass
class ReportData:
    """Everything a report shows, already computed (see :func:`collect_report`).

    Attributes
    ----------
    path : str
        The recording.
    start : datetime or None
        Clock time of its first sample.
    duration : float
        Length in s.
    channels : list of (label, kind, fs)
        Every signal in the file.
    staged : dreamsync.pipeline.StagedRecording
        Stages, confidence and hypnodensity (``staged.result``) and the channels staged from.
    detection : dreamsync.detection.DetectionReport
        Flagged adjustments with whether they were authorized.
    spectrogram : (freqs, times, psd) or None
        Multitaper spectrogram of ``spectrogram_channel`` (Hz, s, uV^2/Hz shaped (freqs, times)).
    spectrogram_channel : str
    quality : list of ChannelQuality
    injected : list of (onset_s, duration_s, kind)
        Adjustments the file's annotations say were injected (simulated recordings), else empty.
    clicks : list of float
        Times in s of injected auditory clicks (simulated recordings).
    simulated : bool
        Whether the file is a simulated night (``dreamsync simulate``: truth in its annotations).
    authorized_windows : list of AuthorizedWindow
        The consent the events were weighed against.
    """

    path: str
    start: dt.datetime | None
    duration: float
    channels: list
    staged: object
    detection: object
    spectrogram: tuple | None = None
    spectrogram_channel: str = ""
    quality: list = field(default_factory=list)
    injected: list = field(default_factory=list)
    clicks: list = field(default_factory=list)
    simulated: bool = False
    authorized_windows: list = field(default_factory=list)

    @property
    def statistics(self) -> dict:
        """Sleep statistics of the staged hypnogram (:func:`dsp.statistics.sleep_statistics`)."""
        from dsp.statistics import sleep_statistics

        r = self.staged.result
        return sleep_statistics(r.stages, r.epoch_length)


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`write_report` wrote.

    Attributes
    ----------
    path : str
        The HTML file.
    figures : list of str
        PNG files written (empty without ``png_dir``).
    epochs : int
        Epochs staged.
    alarms, authorized : int
        Flagged stretches without and with the sleeper's consent.
    seconds : dict
        Wall time in s of each step (reading, staging, detecting, spectrogram, quality, drawing).
    """

    path: str
    figures: list
    epochs: int
    alarms: int
    authorized: int
    seconds: dict


def collect_report(path: str, *, authorized=None, channel: str | None = None, calibration=None,
                   progress: Callable[[str], None] | None = None, seconds: dict | None = None) -> ReportData:
    """Compute everything a report of ``path`` shows.

    Parameters
    ----------
    path : str
        EDF/EDF+/BDF recording.
    authorized : sequence of AuthorizedWindow, or str, optional
        What the sleeper consented to, or the path of a consent JSON file (read against the
        recording's start; see :mod:`dreamsync.authorization`).
    channel : str, optional
        EEG channel(s) to stage from, comma-separated (see :func:`dreamsync.pipeline.staging_channels`);
        the first is the spectrogram's channel.
    calibration : ndarray, shape (n_features,), or str, optional
        Feature offsets of an earlier night of the same headband, or the path of the ``stage``
        JSON holding them (see :mod:`dreamsync.calibration`).
    progress : callable, optional
        Receives one line as each step starts.
    seconds : dict, optional
        Filled with the wall time in s of each step.

    Raises
    ------
    ingest.errors.RecordingError
        Unreadable file, no EEG channel or no such channel.
    dsp.errors.SignalError
        Recording too short or sampled too slowly to stage.
    ValueError
        A consent or calibration file that cannot be read.
    """
    from ingest.edf import read_edf

    from .authorization import load_authorized
    from .calibration import read_calibration
    from .detection import detect_file
    from .pipeline import stage_file, staging_channels

    say = progress or (lambda line: None)
    seconds = {} if seconds is None else seconds
    clock = time.perf_counter()

    def lap(step):
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = seconds.get(step, 0.0) + now - clock
        clock = now

    say(f"reading {path}")
    rec = read_edf(path)
    eeg = staging_channels(rec, path, channel)[0]
    if isinstance(authorized, (str, os.PathLike)):
        authorized = load_authorized(os.fspath(authorized), rec.start)
    windows = list(authorized or ())
    if isinstance(calibration, (str, os.PathLike)):
        calibration = read_calibration(os.fspath(calibration))
    channels = [(s.label, s.kind, s.fs) for s in rec.signals]
    injected, clicks = _injected_adjustments(rec.annotations)
    simulated = any(a.text.startswith(("Event ", "Adjustment ", "Fault ")) for a in rec.annotations) \
        and any(a.text.startswith("Sleep stage") for a in rec.annotations)
    rec.close()
    lap("reading")

    n_epochs = int(rec.signals[eeg[0]].n_samples / rec.signals[eeg[0]].fs // EPOCH_SECONDS)
    say(f"staging {n_epochs} epochs from {', '.join(rec.labels[i] for i in eeg)}")
    staged = stage_file(path, channel=channel, calibration=calibration)
    lap("staging")

    say("detecting adjustments on every electrode channel")
    detection = detect_file(path, channel=channel, authorized=windows, staging=staged.result)
    lap("detecting")

    say(f"multitaper spectrogram of {rec.labels[eeg[0]]}")
    from dsp.spectrogram import multitaper_spectrogram

    first = rec.read(eeg[0], dtype=np.float32)
    spectrogram = multitaper_spectrogram(first, rec.signals[eeg[0]].fs)
    del first
    lap("spectrogram")

    say("checking signal quality per channel")
    quality = []
    for i, s in enumerate(rec.signals):
        if s.kind in ELECTRODE_KINDS:
            quality.append(channel_quality(rec.read(i, dtype=np.float32), s.fs, s.label, s.kind))
    rec.close()
    lap("quality")
    return ReportData(path, rec.start, rec.duration, channels, staged, detection, spectrogram, rec.labels[eeg[0]],
                      quality, injected, clicks, simulated, windows)


def _injected_adjustments(annotations) -> tuple:
    """Episodes ``(onset, duration, kind)`` and auditory click times of ``Adjustment ...`` annotations."""
    from dsp.events import KINDS

    episodes, clicks = [], []
    for a in annotations:
        words = a.text.split()
        if len(words) < 2 or words[0] != "Adjustment" or words[1] not in KINDS:
            continue
        if words[-1] == "click":
            clicks.append(a.onset)
        elif words[-1] != "block":
            episodes.append((a.onset, a.duration, words[1]))
    return episodes, clicks


def write_report(path: str, out_html: str, *, authorized=None, channel: str | None = None, calibration=None,
                 png_dir: str | None = None, progress: Callable[[str], None] | None = None,
                 extra_sections=()) -> ReportSummary:
    """Analyse a recording and write its report as one self-contained HTML file.

    Parameters
    ----------
    path : str
        EDF/EDF+/BDF recording.
    out_html : str
        HTML file to write.
    authorized : sequence of AuthorizedWindow, or str, optional
        Consent (windows, or a consent JSON file) the flagged adjustments are weighed against.
    channel : str, optional
        EEG channel(s) to stage from, comma-separated; the first is the spectrogram's channel.
    calibration : ndarray or str, optional
        Feature offsets of an earlier night of the same headband, or its ``stage`` JSON (see
        :func:`collect_report`).
    png_dir : str, optional
        Folder (created if missing) to write each figure into as a PNG file as well.
    progress : callable, optional
        Receives one line as each step starts.
    extra_sections : sequence of (title, html), optional
        Further sections appended to the page (``html`` is inserted as is).

    Returns
    -------
    ReportSummary

    Raises
    ------
    ingest.errors.RecordingError, dsp.errors.SignalError, ValueError, OSError
        Bad input (see :func:`collect_report`), or the outputs cannot be written.
    """
    say = progress or (lambda line: None)
    out_dir = pathlib.Path(out_html).resolve().parent
    if not out_dir.is_dir():  # found before minutes of work, not after
        raise FileNotFoundError(2, "no such folder to write the report into", str(out_dir))
    if png_dir is not None:
        pathlib.Path(png_dir).mkdir(parents=True, exist_ok=True)
    seconds: dict = {}
    data = collect_report(path, authorized=authorized, channel=channel, calibration=calibration, progress=say,
                          seconds=seconds)
    say("drawing figures")
    clock = time.perf_counter()
    figures = draw_figures(data)
    seconds["drawing"] = time.perf_counter() - clock
    written = []
    if png_dir is not None:
        folder = pathlib.Path(png_dir)
        for name, png in figures.items():
            target = folder / f"{name}.png"
            target.write_bytes(png)
            written.append(str(target))
    extra_sections = list(extra_sections) + _audit_sections(path, data)
    page = render_report(data, figures=figures, extra_sections=extra_sections)
    pathlib.Path(out_html).write_text(page, encoding="utf-8")
    events = data.detection.events
    alarms = sum(not ok for _, ok in events)
    return ReportSummary(str(out_html), written, int(len(data.staged.result.stages)), alarms, len(events) - alarms,
                         seconds)


def _audit_sections(path: str, data: ReportData) -> list:
    """The DreamSync audit as a section, when the band's adjustment log sits beside the recording
    (``NIGHT.adjustments.json``): reconciled with the detections and consent already computed."""
    from .audit import audit_html, load_adjustment_log, log_path_for, reconcile

    log = log_path_for(path)
    if not os.path.exists(log):
        return []
    result = reconcile(load_adjustment_log(log), [e for e, _ in data.detection.events], data.authorized_windows)
    result.recording, result.log_file, result.start, result.duration = path, log, data.start, data.duration
    return [("DreamSync audit: device log, consent and detections", audit_html(result))]


# ----------------------------------------------------------------------------------------------- figures

#: matplotlib settings of the report's figures (applied only while drawing them).
FIGURE_STYLE = {"font.size": 12, "axes.titlesize": 14, "axes.labelsize": 12, "legend.fontsize": 11,
                "legend.title_fontsize": 12, "xtick.labelsize": 11, "ytick.labelsize": 11,
                "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False}


def _figure(height: float, rows: int = 1, height_ratios=None, hspace_inches: float = 0.45):
    """A figure whose plot area spans :data:`LEFT` to :data:`RIGHT` of its width, with ``rows`` axes sharing x.

    A bare :class:`matplotlib.figure.Figure` (drawn by Agg when saved): no pyplot, so neither the
    caller's backend nor its open figures are touched.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGURE_WIDTH, height))
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=height_ratios)
    plot_height = height - TOP_INCHES - BOTTOM_INCHES
    fig.subplots_adjust(left=LEFT, right=RIGHT, top=1 - TOP_INCHES / height, bottom=BOTTOM_INCHES / height,
                        hspace=hspace_inches * rows / max(plot_height - hspace_inches * (rows - 1), 0.1))
    return fig, list(axes[:, 0])


def _time_axis(ax, data: ReportData) -> None:
    """Clock-time ticks (HH:MM at whole hours, half hours or 10 min) on an axis in hours from the start."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    hours = data.duration / 3600
    spacing = 1.0 if hours > 4 else 0.5 if hours > 1.5 else 1 / 6
    start = data.start
    offset = 0.0 if start is None else (start.hour + start.minute / 60 + start.second / 3600)
    first = np.ceil(offset / spacing - 1e-9) * spacing - offset
    ax.xaxis.set_major_locator(FixedLocator(np.arange(first, hours + 1e-9, spacing)))
    if start is None:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda h, _: f"{h:g}"))
        ax.set_xlabel("time from the start of the recording (h)")
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda h, _: (start + dt.timedelta(hours=float(h))).strftime("%H:%M")))
        ax.set_xlabel(f"clock time (HH:MM), recording started {start:%Y-%m-%d %H:%M:%S}")
    ax.set_xlim(0, hours)


def _draw_hypnogram(ax, data: ReportData, title: str | None = "Hypnogram") -> None:
    """Stage per epoch as a step line with each epoch's stage in its colour; unscorable epochs left blank."""
    r = data.staged.result
    n = len(r.stages)
    epoch_h = r.epoch_length / 3600
    level = {STAGES.index(name): len(HYPNOGRAM_ORDER) - 1 - k for k, name in enumerate(HYPNOGRAM_ORDER)}
    y = np.array([level.get(int(s), np.nan) for s in r.stages], dtype=float)
    edges = np.arange(n + 1) * epoch_h
    ax.step(edges, np.append(y, y[-1] if n else np.nan), where="post", color="#495057", linewidth=0.8)
    for name in STAGES:
        mask = np.asarray(r.stages) == STAGES.index(name)
        if mask.any():
            ax.hlines(y[mask], edges[:-1][mask], edges[1:][mask], colors=STAGE_COLOURS[name],
                      linewidth=5 if name == "REM" else 4)
    ax.set_yticks(range(len(HYPNOGRAM_ORDER)), list(reversed(HYPNOGRAM_ORDER)))
    ax.set_ylim(-0.6, len(HYPNOGRAM_ORDER) - 0.4)
    ax.set_ylabel("stage")
    if title:
        ax.set_title(title, loc="left")
    ax.grid(axis="x", color="#dee2e6", linewidth=0.6)


def _figure_hypnogram(data: ReportData):
    r = data.staged.result
    fig, (top, bottom) = _figure(6.4, 2, (1, 1.1))
    _draw_hypnogram(top, data, f"Hypnogram (automatic staging from {', '.join(data.staged.eeg_channels)})")
    n = len(r.stages)
    epoch_h = r.epoch_length / 3600
    x = np.repeat(np.arange(n + 1) * epoch_h, 2)[1:-1]  # step-shaped areas: one flat piece per epoch
    order = ("N3", "N2", "N1", "REM", "W")
    probs = np.nan_to_num(np.asarray(r.probabilities, dtype=float))
    layers = [np.repeat(probs[:, STAGES.index(name)], 2) for name in order]
    bottom.stackplot(x, layers, colors=[STAGE_COLOURS[name] for name in order], labels=order, linewidth=0)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("probability of each stage")
    bottom.set_title("Hypnodensity (per-epoch stage probabilities)", loc="left")
    handles, labels = bottom.get_legend_handles_labels()
    bottom.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False,
                  title="stage")
    _time_axis(bottom, data)
    return fig


def _figure_spectrogram(data: ReportData):
    freqs, times, psd = data.spectrogram
    fig, (ax, hyp) = _figure(6.6, 2, (2.4, 1), hspace_inches=0.25)
    box = ax.get_position()
    cax = fig.add_axes((RIGHT + 0.055, box.y0, 0.014, box.height))
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(psd)
    finite = db[np.isfinite(db)]
    lo, hi = np.percentile(finite, [2, 99.5]) if finite.size else (0.0, 1.0)
    step_h = (times[1] - times[0]) / 3600 if times.size > 1 else data.duration / 3600
    edges_t = np.append(times / 3600 - step_h / 2, times[-1] / 3600 + step_h / 2)
    df = freqs[1] - freqs[0] if freqs.size > 1 else 1.0
    edges_f = np.append(freqs - df / 2, freqs[-1] + df / 2).clip(min=0)
    mesh = ax.pcolormesh(edges_t, edges_f, np.ma.masked_invalid(db), cmap="Spectral_r", vmin=lo, vmax=hi,
                         shading="flat", rasterized=True)
    ax.set_ylim(0, freqs[-1])
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(f"Multitaper spectrogram of {data.spectrogram_channel} "
                 "(30-s windows, 1-Hz bandwidth)", loc="left")
    for f, name in ((2, "delta"), (6, "theta"), (10, "alpha"), (13, "sigma")):
        if f < freqs[-1]:
            ax.annotate(name, (1.002, f / freqs[-1]), xycoords="axes fraction", fontsize=9, color="#495057",
                        va="center")
    ax.tick_params(labelbottom=False)
    bar = fig.colorbar(mesh, cax=cax)
    bar.set_label("power (dB re 1 µV²/Hz)")
    _draw_hypnogram(hyp, data, None)
    _time_axis(hyp, data)
    return fig


def _figure_adjustments(data: ReportData):
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D

    from dsp.events import KINDS

    hours = data.duration / 3600
    min_width = hours / 400  # a 30-s event on an 8-h axis would be under a pixel: draw it at least this wide
    fig, (hyp, ax) = _figure(5.8, 2, (1, 1.5), hspace_inches=0.2)
    _draw_hypnogram(hyp, data, "Adjustment timeline: flagged stretches per kind, against the hypnogram")
    hyp.set_xlabel("")
    rows = {kind: len(KINDS) - 1 - k for k, kind in enumerate(KINDS)}
    for event, ok in data.detection.events:
        y = rows[event.kind]
        width = max(event.duration / 3600, min_width)
        colour = KIND_COLOURS[event.kind]
        ax.broken_barh([(event.onset / 3600, width)], (y - 0.3, 0.6), facecolors=colour if not ok else "white",
                       edgecolors=colour, hatch=None if not ok else "///", linewidth=1.5)
        ax.plot(event.onset / 3600, y + 0.38, marker="v", color=colour, markersize=7, clip_on=False)
    for onset, duration, kind in data.injected:
        if kind == "auditory" and data.clicks:
            continue  # drawn as click ticks below
        ax.broken_barh([(onset / 3600, max(duration / 3600, min_width))], (rows[kind] - 0.46, 0.1),
                       facecolors="black")
    if data.clicks:
        ax.vlines(np.asarray(data.clicks) / 3600, rows["auditory"] - 0.48, rows["auditory"] - 0.34,
                  color="black", linewidth=0.4)
    for w in data.authorized_windows:
        for kind in (KINDS if w.kind == "any" else (w.kind,)):
            ax.axvspan(w.start / 3600, w.end / 3600, ymin=(rows[kind] + 0.02) / len(KINDS),
                       ymax=(rows[kind] + 0.98) / len(KINDS), color="#d8f3dc", zorder=0)
    ax.set_yticks(list(rows.values()), list(rows.keys()))
    ax.set_ylim(-0.6, len(KINDS) - 0.4)
    ax.set_ylabel("adjustment kind")
    ax.grid(axis="x", color="#dee2e6", linewidth=0.6)
    handles = [Patch(facecolor="#6c757d", edgecolor="#6c757d", label="alarm (no consent)"),
               Patch(facecolor="white", edgecolor="#6c757d", hatch="///", label="authorized")]
    if data.authorized_windows:
        handles.append(Patch(facecolor="#d8f3dc", label="consent window"))
    if data.injected:
        handles.append(Line2D([], [], color="black", linewidth=4, label="injected (truth)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False, title="span")
    hyp.legend(handles=[Patch(color=c, label=k) for k, c in KIND_COLOURS.items()], loc="upper left",
               bbox_to_anchor=(1.005, 1.0), frameon=False, title="kind")
    _time_axis(ax, data)
    return fig


def _figure_quality(data: ReportData):
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, (ax,) = _figure(TOP_INCHES + BOTTOM_INCHES + 0.5 + 0.5 * max(1, len(data.quality)))
    colours = ListedColormap([c for _, c in QUALITY_CLASSES])
    for row, q in enumerate(data.quality):
        if q.epochs:
            edges = np.arange(q.epochs + 1) * EPOCH_SECONDS / 3600
            ax.pcolormesh(edges, [row - 0.4, row + 0.4], q.classes[None, :].astype(float), cmap=colours,
                          vmin=-0.5, vmax=len(QUALITY_CLASSES) - 0.5, shading="flat", rasterized=True)
    ax.set_yticks(range(len(data.quality)), [q.label for q in data.quality])
    ax.set_ylim(len(data.quality) - 0.5, -0.5)
    ax.set_title("Signal quality per 30-s epoch", loc="left")
    ax.legend(handles=[Patch(color=c, label=name) for name, c in QUALITY_CLASSES], loc="upper left",
              bbox_to_anchor=(1.005, 1.0), frameon=False, title="epoch")
    _time_axis(ax, data)
    return fig


def draw_figures(data: ReportData) -> dict:
    """The report's figures as PNG bytes: ``{"hypnogram", "spectrogram", "adjustments", "quality": bytes}``
    (``spectrogram`` only when ``data.spectrogram`` is set)."""
    import matplotlib

    makers = {"hypnogram": _figure_hypnogram, "spectrogram": _figure_spectrogram,
              "adjustments": _figure_adjustments, "quality": _figure_quality}
    out = {}
    with matplotlib.rc_context(FIGURE_STYLE):
        for name, make in makers.items():
            if name == "spectrogram" and data.spectrogram is None:
                continue
            buffer = io.BytesIO()
            make(data).savefig(buffer, format="png", dpi=110)
            out[name] = buffer.getvalue()
    return out


# ----------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: #212529; max-width: 1340px; margin: 0 auto; padding: 16px 24px; line-height: 1.45; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 2px solid #dee2e6; padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { width: 100%; height: auto; display: block; }
.notice { background: #fff3cd; border: 1px solid #ffe69c; padding: 8px 12px; border-radius: 4px; }
.alarm { color: #b02a37; font-weight: bold; }
.ok { color: #146c43; font-weight: bold; }
.chip { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px; }
.evidence { font-size: 13px; max-width: 720px; }
.muted { color: #6c757d; font-size: 13px; }
.nowrap { white-space: nowrap; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _clock(data: ReportData, seconds: float) -> str:
    if data.start is None:
        return f"{seconds:.1f} s"
    return f"{data.start + dt.timedelta(seconds=float(seconds)):%H:%M:%S}"


def _length(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="muted">({_esc(alt)}: not available)</p>'
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header, rows, numeric=()) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header or ())
    body = "".join("<tr>" + "".join(
        f'<td class="num">{cell}</td>' if k in numeric else f"<td>{cell}</td>" for k, cell in enumerate(row))
        + "</tr>" for row in rows)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _minutes(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _statistics_table(stats: dict) -> str:
    rows = [
        ("Time in bed (TIB)", _minutes(stats["TIB"]), "min", "whole recording"),
        ("Sleep period time (SPT)", _minutes(stats["SPT"]), "min", "first to last sleep epoch"),
        ("Total sleep time (TST)", _minutes(stats["TST"]), "min", "N1 + N2 + N3 + REM"),
        ("Sleep efficiency (SE)", f"{100 * stats['SE']:.1f}", "%", "TST / TIB"),
        ("Sleep-onset latency (SOL)", _minutes(stats["SOL"]), "min", "start to first sleep epoch"),
        ("Persistent-sleep latency", _minutes(stats["persistent_sleep_latency"]), "min",
         "start to the first 10 min of uninterrupted sleep"),
        ("REM latency", _minutes(stats["REM_latency"]), "min", "sleep onset to first REM epoch"),
        ("Wake after sleep onset (WASO)", _minutes(stats["WASO"]), "min", "wake within the SPT"),
        ("Awakenings", str(stats["awakenings"]), "count", "wake bouts within the SPT"),
    ]
    for name in STAGES:
        share = stats["percent_of_TST"].get(name)
        rows.append((f"{name}", _minutes(stats["minutes"][name]), "min",
                     f"{share:.1f} % of TST" if share is not None else "not part of TST"))
    rows.append(("Unscorable", _minutes(stats["unscored_minutes"]), "min", "epochs the stager could not score"))
    return _table(("measure", "value", "unit", "definition"),
                  [(_esc(a), _esc(b), _esc(c), _esc(d)) for a, b, c, d in rows], numeric=(1,))


def _events_table(data: ReportData) -> str:
    events = data.detection.events
    if not events:
        return "<p>No adjustment was flagged.</p>"
    labels = data.detection.channels
    rows = []
    for event, ok in events:
        colour = KIND_COLOURS.get(event.kind, "#6c757d")
        status = '<span class="ok">authorized</span>' if ok else '<span class="alarm">ALARM</span>'
        where = ", ".join(labels[i] for i in event.channels if i < len(labels)) or "all"
        rows.append((f'<span class="nowrap">{_esc(_clock(data, event.onset))}</span>',
                     f'<span class="nowrap">{_esc(_length(event.duration))}</span>',
                     f'<span class="nowrap"><span class="chip" style="background:{colour}"></span>'
                     f'{_esc(event.kind)}</span>',
                     f"{event.score:.2f}", status, _esc(where), f'<div class="evidence">{_esc(event.evidence)}</div>'))
    return _table(("onset (clock)", "duration", "kind", "score (0-1)", "status", "channels", "evidence"), rows,
                  numeric=(3,))


def _quality_table(data: ReportData) -> str:
    rows = []
    for q in data.quality:
        rows.append((_esc(q.label), _esc(q.kind), f"{q.fs:g}", str(q.epochs), f"{100 * q.missing_samples:.2f}",
                     f"{100 * q.gaps:.1f}", f"{100 * q.flat:.1f}", f"{100 * q.railed:.1f}",
                     f"{100 * q.artefact:.1f}", f"{100 * q.usable:.1f}"))
    return _table(("channel", "kind", "rate (Hz)", "epochs", "samples missing (%)", "epochs with gaps (%)",
                   "flat (%)", "railed / clipped (%)", "artefact (%)", "usable (%)"), rows,
                  numeric=tuple(range(2, 10)))


def _data_notice(data: ReportData) -> str:
    if data.simulated:
        what = ("<b>Simulated recording.</b> This night was produced by <code>dreamsync simulate</code> (its "
                "true stages, events and any injected adjustments are annotations in the file). Figures on "
                "simulated data show what the software does; they are not a measure of its accuracy on people.")
    else:
        what = ("<b>Recorded data.</b> Stages, statistics and adjustment flags are automatic estimates by "
                "dreamsync, not a clinical scoring; check them against the signals before relying on them.")
    return f'<p class="notice">{what}</p>'


def render_report(data: ReportData, *, figures: dict | None = None, extra_sections=(),
                  title: str | None = None) -> str:
    """The report page of already computed results, as one self-contained HTML string.

    Parameters
    ----------
    data : ReportData
        What to show (see :func:`collect_report`).
    figures : dict of str to bytes, optional
        PNG figures from :func:`draw_figures` (drawn here when omitted).
    extra_sections : sequence of (title, html), optional
        Sections appended after the built-in ones; ``html`` is inserted as is (it must be
        self-contained too), ``title`` is escaped.
    title : str, optional
        Page title; ``dreamsync report: FILE`` by default.

    Returns
    -------
    str
        The HTML page, every figure embedded as a base64 PNG; no external resources.
    """
    from . import __version__

    figures = draw_figures(data) if figures is None else figures
    name = os.path.basename(data.path)
    title = title or f"dreamsync report: {name}"
    r = data.staged.result
    events = data.detection.events
    alarms = sum(not ok for _, ok in events)
    start = f"{data.start:%Y-%m-%d %H:%M:%S}" if data.start else "unknown (anonymised)"
    channels = ", ".join(f"{label} ({kind}, {fs:g} Hz)" for label, kind, fs in data.channels)
    header = _table(None, [
        ("file", _esc(data.path)), ("start (clock time)", _esc(start)),
        ("duration", _esc(f"{_length(data.duration)} ({len(r.stages)} epochs of {r.epoch_length:g} s)")),
        ("channels", _esc(channels)),
        ("staged from", _esc(data.staged.staged_from)),
        ("adjustments", (f'<span class="alarm">{alarms} alarm(s)</span>' if alarms
                         else '<span class="ok">no alarm</span>')
         + _esc(f", {len(events) - alarms} authorized; consent windows: {len(data.authorized_windows)}")),
    ])
    sections = [
        ("Hypnogram and hypnodensity",
         "<p>Stage of each 30-s epoch (top) and the stager's probability of each stage (bottom): where "
         "the colours mix, the stager was unsure.</p>" + _img(figures.get("hypnogram"), "hypnogram and hypnodensity")),
        ("Multitaper spectrogram",
         "<p>Power of the staging EEG channel from 0 to 30 Hz (DPSS multitaper, 30-s windows, 1-Hz "
         "bandwidth), with the hypnogram under it on the same time axis: slow-wave power (0.5-4 Hz) "
         "rises in N3, sigma (12-15 Hz, spindles) in N2, alpha (8-12 Hz) in relaxed wake.</p>"
         + _img(figures.get("spectrogram"), "multitaper spectrogram")),
        ("Sleep statistics", _statistics_table(data.statistics)),
        ("Adjustment timeline",
         "<p>Stretches flagged as externally injected dream adjustments (auditory stimulation, electrical "
         "stimulation, sensory entrainment, tampering with the data), filled when the sleeper did not "
         "consent (alarm), hatched when a consent window covers them. Each triangle marks an onset.</p>"
         + _img(figures.get("adjustments"), "adjustment timeline") + _events_table(data)),
        ("Signal quality",
         "<p>Per electrode channel, share of 30-s epochs with more than 5 % of samples missing, flat "
         "(SD below 0.25 µV: a disconnected electrode), railed at an amplifier limit or clipped, or "
         "holding a movement or other high-amplitude artefact (5 times its neighbours' amplitude).</p>"
         + _quality_table(data) + _img(figures.get("quality"), "signal quality per epoch")),
    ]
    sections += [(str(t), str(body)) for t, body in extra_sections]
    parts = [f"<h1>{_esc(title)}</h1>", _data_notice(data), header]
    for heading, body in sections:
        anchor = "".join(c if c.isalnum() else "-" for c in heading.lower())
        parts.append(f'<section id="{_esc(anchor)}"><h2>{_esc(heading)}</h2>{body}</section>')
    made = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f'<p class="muted">Made by dreamsync {_esc(__version__)} on {_esc(made)}. Times are clock '
                 "times from the recording's header; durations in seconds or minutes as marked.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
