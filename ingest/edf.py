"""EDF, EDF+ and BDF files through edfio: read any channel in uV, write EDF+ with annotations.

edfio was chosen over pyedflib because it reads the non-compliant files that clinical systems
write (the DREAMS EDF, which pyedflib rejects), reports truncated files instead of failing
opaquely, loads channels lazily, and is pure Python on numpy. Two things are done here instead, for
speed: a 16-bit EDF's samples are read from its data records with plain file reads (one per stretch,
shared by the signals read from it in turn; see :meth:`EdfRecording.read`), and edfio parses the
annotations only when a file holds any besides the time-keeping ones (a night of 1-s data records
otherwise costs a tenth of a second of parsing empty TALs).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from .channels import kind_from_label
from .errors import RecordingError
from .stream import CHANNEL_UNITS

#: EDF+C has no holes, so lost samples are written as 0 and covered by an annotation of this form;
#: :meth:`EdfRecording.read` turns them back into NaN (missing), never into data.
GAP_TEXT = "Gap: {n} samples lost"
_GAP = re.compile(r"^Gap: (\d+) samples lost$")
#: Samples one channel lacks (e.g. an accelerometer before its first reading): stored as 0, read as NaN.
MISSING_TEXT = "Missing: {label}"
_MISSING = re.compile(r"^Missing: (.+)$")

#: Samples calibrated at once by :meth:`EdfRecording.read` (its float64 scratch stays in cache).
_CALIBRATION_BLOCK = 1 << 16
#: Most bytes of data records :meth:`EdfRecording.read` reads with a plain file read (kept for the
#: next signal asked for the same stretch); longer stretches go through edfio's memory map.
_READ_BYTES = 1 << 24

# Factor from a file's physical dimension to ours (uV for electrodes, g for accelerometers).
_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}


@dataclass(frozen=True)
class SignalInfo:
    """One signal of a recording: label, kind (``"EEG"``, ...), rate in Hz, length, unit in the file."""

    label: str
    kind: str
    fs: float
    n_samples: int
    unit: str


@dataclass(frozen=True)
class Annotation:
    """An EDF+ annotation: onset and duration in seconds from the recording start, and its text."""

    onset: float
    duration: float
    text: str


class EdfRecording:
    """An opened EDF/EDF+/BDF file; channels are read on demand.

    Attributes
    ----------
    path : str
    start : datetime.datetime or None
        Start of the recording, or None when the file's date is anonymised.
    duration : float
        Length in seconds.
    signals : tuple of SignalInfo
        Every signal except EDF+ annotation channels.
    annotations : tuple of Annotation
    """

    def __init__(self, path: str, edf, reader=None, *, annotations: bool = True, layout: _Layout | None = None):
        self.path = path
        self._edf = edf
        self._reader = reader  # edfio's read_edf or read_bdf, to open the file again after close()
        self.start = _start_of(edf)
        self.duration = float(edf.duration)
        self.signals = tuple(
            SignalInfo(s.label, kind_from_label(s.label), float(s.sampling_frequency),
                       int(s.samples_per_data_record) * int(edf.num_data_records), s.physical_dimension)
            for s in edf.signals
        )
        self._calibration = tuple(_calibration(s) for s in edf.signals)
        # ``annotations=False``: the caller found none but time-keeping ones (see _holds_annotations)
        self.annotations = tuple(Annotation(float(a.onset), float(a.duration or 0.0), a.text)
                                 for a in (edf.annotations if annotations else ()))
        # 16-bit EDF whose header agrees with edfio's: samples are read straight from the file
        # (:meth:`_records`), without mapping it; anything else goes through edfio
        data_signals = [i for i in range(len(layout.labels)) if i not in layout.annotation_signals] if layout else []
        if layout is None or not layout.complete(path) or len(data_signals) != len(self.signals) or any(
                layout.widths[i] != int(s.samples_per_data_record) for i, s in zip(data_signals, edf.signals)):
            layout, data_signals = None, []
        self._layout, self._columns = layout, data_signals
        self._block = None  # (first record, last record + 1, int16 array) of the last read

    @property
    def labels(self) -> list:
        """Labels of :attr:`signals`, in file order."""
        return [s.label for s in self.signals]

    @property
    def gaps(self) -> list:
        """Lost stretches marked by :data:`GAP_TEXT` annotations: ``[(onset_s, duration_s), ...]``."""
        return [(a.onset, a.duration) for a in self.annotations if _GAP.match(a.text)]

    def close(self) -> None:
        """Let go of the open file.

        edfio maps an EDF file into memory, and every page of it a read has touched counts as this
        process's memory until the map goes; a later :meth:`read` opens the file again.
        """
        if self._reader is not None:
            self._edf = None
        self._block = None

    def _records(self, first: int, stop: int) -> np.ndarray:
        """Data records ``first .. stop - 1`` as int16, shape (stop - first, samples per record).

        Read with one plain file read, not a memory map: no page of the file becomes this process's
        memory, and the records of a stretch are read once for all the signals asked for in turn.
        """
        block = self._block
        if block is None or not (block[0] <= first and stop <= block[1]):
            layout = self._layout
            out = np.empty((stop - first, layout.record_samples), dtype="<i2")
            with open(self.path, "rb") as fh:
                fh.seek(layout.header_bytes + first * layout.record_samples * 2)
                if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise RecordingError(f"{self.path}: truncated EDF file (data records {first}..{stop - 1})")
            block = self._block = (first, stop, out)
        return block[2][first - block[0] : stop - block[0]]

    def _digital(self, index: int, start: int, stop: int) -> np.ndarray | None:
        """Digital samples ``start .. stop - 1`` of signal ``index``, read by :meth:`_records`; None
        when the data records holding them exceed :data:`_READ_BYTES` (edfio's map reads only the
        pages a signal touches, which for a long stretch of a wide file is less)."""
        column = self._columns[index]
        per_record = self._layout.widths[column]
        first, last = start // per_record, -(-stop // per_record)
        if stop <= start:
            return np.zeros(0, dtype="<i2")
        if (last - first) * self._layout.record_samples * 2 > _READ_BYTES:
            return None
        offset = self._layout.offsets[column]
        samples = self._records(first, last)[:, offset : offset + per_record].reshape(-1)
        return samples[start - first * per_record : stop - first * per_record]

    def _file(self):
        if self._edf is None:
            with warnings.catch_warnings():  # what opening it first had to say was said then
                warnings.simplefilter("ignore")
                self._edf = self._reader(self.path)
        return self._edf

    def read(self, index: int, *, mark_gaps: bool = True, start: int = 0, stop: int | None = None,
             dtype=np.float64) -> np.ndarray:
        """Samples ``start .. stop - 1`` of signal ``index`` in uV (g for ACC), shape (stop - start,).

        A signal whose unit the file leaves empty or names unknown is taken to be in uV. With
        ``mark_gaps`` (the default), samples inside annotated gaps are NaN. Only the data records
        holding the samples asked for are read; the values are edfio's calibration (computed in
        float64), then converted to ``dtype`` (float64 by default; float32 halves the memory and
        keeps what a 16- or 24-bit file holds).
        """
        info = self.signals[index]
        stop = info.n_samples if stop is None else min(stop, info.n_samples)
        start = max(0, min(start, stop))
        digital = self._digital(index, start, stop) if self._layout is not None else None
        if digital is None:
            digital = self._file().signals[index].get_digital_slice(start / info.fs, stop / info.fs)
        gain, offset = self._calibration[index] or (1.0, 0.0)
        if CHANNEL_UNITS[info.kind] == "uV":
            unit = _TO_UV.get(info.unit.strip().lower(), 1.0)
        else:
            unit = 1.0
        data = np.empty(digital.shape, dtype=dtype)
        # a block at a time: the float64 temporary stays small and in cache, whatever the length
        scratch = np.empty(min(digital.size, _CALIBRATION_BLOCK))
        for a in range(0, digital.size, _CALIBRATION_BLOCK):
            block = digital[a : a + _CALIBRATION_BLOCK]
            part = scratch[: block.size]
            np.add(block, offset, out=part)
            part *= gain
            if unit != 1.0:
                part *= unit
            data[a : a + block.size] = part
        if mark_gaps:
            spans = self.gaps + [(a.onset, a.duration) for a in self.annotations
                                 if (m := _MISSING.match(a.text)) and m.group(1) == info.label]
            for onset, duration in spans:
                a = int(round(onset * info.fs))
                b = a + max(1, int(round(duration * info.fs)))
                if a < stop and b > start:
                    data[max(a, start) - start : min(b, stop) - start] = np.nan
        return data

    def reader(self, indices, dtype=np.float32) -> "SignalReader":
        """Signals of one rate as a (channels, samples) array that reads a stretch when sliced.

        For stagers and detectors that go through a recording a chunk at a time: memory stays at a
        chunk's worth, not the file's (see :class:`SignalReader`).
        """
        return SignalReader(self, indices, dtype)


class SignalReader:
    """Signals of one rate of an :class:`EdfRecording`, read on demand.

    ``reader[row, start:stop]`` gives samples ``start .. stop - 1`` of the ``row``-th signal as
    :meth:`EdfRecording.read` does (uV, NaN in gaps, in :attr:`dtype`), reading only the data records
    that hold them. The file stays open while reads ask for the same stretch (of one signal after
    another) and is let go when they move on (see :meth:`EdfRecording.close`), so what the reads
    touched does not pile up in memory. ``numpy.asarray(reader)`` reads everything.

    Attributes
    ----------
    shape : tuple of int
        ``(n_signals, n_samples)``.
    fs : float
        Sample rate in Hz of every signal.
    dtype : numpy.dtype
    """

    ndim = 2

    def __init__(self, recording: EdfRecording, indices, dtype=np.float32):
        self.recording = recording
        self.indices = tuple(int(i) for i in indices)
        infos = [recording.signals[i] for i in self.indices]
        if not infos or len({(s.fs, s.n_samples) for s in infos}) != 1:
            raise ValueError("a SignalReader needs one or more signals of one rate and length")
        self.fs = infos[0].fs
        self.shape = (len(infos), infos[0].n_samples)
        self.dtype = np.dtype(dtype)
        self._stretch = None  # (start, stop) of the reads since the file was last let go

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        row, columns = key if isinstance(key, tuple) else (key, slice(None))
        if not isinstance(columns, slice):
            raise TypeError("a SignalReader is read as reader[row, start:stop]")
        start, stop, step = columns.indices(self.shape[1])
        if step != 1:
            raise TypeError("a SignalReader reads contiguous stretches (no step)")
        if isinstance(row, slice):
            out = np.stack([self[r, start:stop] for r in range(*row.indices(self.shape[0]))])
            self.close()
            return out
        if self._stretch != (start, stop):
            self.close()
            self._stretch = (start, stop)
        return self.recording.read(self.indices[row], start=start, stop=max(start, stop), dtype=self.dtype)

    def close(self) -> None:
        """Let go of the file (see :meth:`EdfRecording.close`); the next read opens it again."""
        self.recording.close()
        self._stretch = None

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:, :]
        return out if dtype is None else out.astype(dtype, copy=False)


def _calibration(signal) -> tuple | None:
    """edfio's ``(gain, offset)`` of a signal (physical = (digital + offset) * gain), or None where
    edfio returns the digital values as they are (a zero digital or physical range)."""
    try:
        gain = (signal.physical_max - signal.physical_min) / (signal.digital_max - signal.digital_min)
        return gain, signal.physical_max / gain - signal.digital_max
    except (ZeroDivisionError, ValueError):
        return None


def gap_annotation(first_index: int, n_samples: int, fs: float) -> Annotation:
    """The annotation that marks ``n_samples`` lost from sample ``first_index`` on (rate ``fs`` Hz)."""
    return Annotation(first_index / fs, n_samples / fs, GAP_TEXT.format(n=n_samples))


def _start_of(edf) -> dt.datetime | None:
    try:
        return dt.datetime.combine(edf.startdate, edf.starttime)
    except Exception:  # edfio raises AnonymizedDateError for "X" dates; some files hold garbage
        return None


def read_edf(path: str | os.PathLike) -> EdfRecording:
    """Open an EDF, EDF+ or BDF file.

    Raises
    ------
    RecordingError
        If the file is missing, not EDF/BDF, or truncated (fewer data records than its header says).
    """
    import edfio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RecordingError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\xffBIOSEMI":
        reader, kind = edfio.read_bdf, "BDF"
    elif magic == b"0       ":
        reader, kind = edfio.read_edf, "EDF"
    else:
        raise RecordingError(f"{path}: not an EDF or BDF file (its header does not start with an EDF/BDF version)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            edf = reader(path)
        except Exception as err:
            raise RecordingError(f"{path}: not a readable {kind} file ({_reason(err)})") from None
    for w in caught:
        text = str(w.message)
        if "data record" in text.lower():
            raise RecordingError(f"{path}: truncated {kind} file ({text.rstrip('.')})")
    # an EDF is memory-mapped, so it can be let go and opened again; a BDF is read whole
    layout = _layout(path, 2 if kind == "EDF" else 3)
    return EdfRecording(path, edf, reader if kind == "EDF" else None, annotations=_holds_annotations(path, layout),
                        layout=layout if kind == "EDF" else None)


@dataclass(frozen=True)
class _Layout:
    """Where each signal's samples sit in an EDF/BDF file (header fields fixed by the EDF specification).

    ``widths[i]`` samples of signal ``i`` follow ``offsets[i]`` samples into every data record of
    ``record_samples`` samples; data records start after ``header_bytes`` bytes.
    """

    header_bytes: int
    n_records: int
    sample_bytes: int
    labels: tuple
    widths: tuple
    offsets: tuple

    @property
    def record_samples(self) -> int:
        return sum(self.widths)

    @property
    def annotation_signals(self) -> list:
        return [i for i, label in enumerate(self.labels) if label in ("EDF Annotations", "BDF Annotations")]

    def complete(self, path: str) -> bool:
        """The header states its number of data records and the file holds them all."""
        return self.n_records > 0 and os.path.getsize(path) >= (
            self.header_bytes + self.n_records * self.record_samples * self.sample_bytes)


def _layout(path: str, sample_bytes: int) -> _Layout | None:
    """The layout of the data records as the file's header states it; None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            n_signals, header_bytes, n_records = int(head[252:256]), int(head[184:192]), int(head[236:244])
            fields = fh.read(256 * n_signals)
        labels = tuple(fields[16 * i : 16 * i + 16].decode("ascii", "replace").strip() for i in range(n_signals))
        per_record = 216 * n_signals  # the samples-per-record field follows 216 bytes of fields per signal
        widths = tuple(int(fields[per_record + 8 * i : per_record + 8 * i + 8]) for i in range(n_signals))
    except (OSError, ValueError):
        return None
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(widths)[:-1]])) if widths else ()
    return _Layout(header_bytes, n_records, sample_bytes, labels, widths, offsets)


def _holds_annotations(path: str, layout: _Layout | None) -> bool:
    """Whether the file's annotation signals may hold more than each data record's time-keeping TAL.

    Parsing a night of 1-s data records TAL by TAL takes a tenth of a second even when they hold
    nothing else, so :func:`read_edf` asks this first. The test reads the annotation signals' bytes
    where the EDF layout puts them (:func:`_layout`): a time-keeping TAL alone (the onset, bytes 0x14
    0x14 0x00, then zeros) holds exactly two 0x14 bytes in the first annotation signal of a record,
    other annotation signals none; any annotation adds more. True whenever in doubt (no annotation
    signal found is False: plain EDF has none).
    """
    if layout is None:
        return True
    sample_bytes = layout.sample_bytes
    columns = layout.annotation_signals
    if not columns:
        return False
    if not layout.complete(path):
        return True
    record_bytes = layout.record_samples * sample_bytes
    records = np.memmap(path, np.uint8, "r", offset=layout.header_bytes, shape=(layout.n_records, record_bytes))
    try:
        for k, i in enumerate(columns):
            a = layout.offsets[i] * sample_bytes
            separators = np.count_nonzero(records[:, a : a + layout.widths[i] * sample_bytes] == 0x14, axis=1)
            if np.any(separators != (2 if k == 0 else 0)):
                return True
        return False
    finally:
        del records  # let go of the map: its pages would count as this process's memory


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def write_edf(path, data, fs: float, labels, kinds, *, start: dt.datetime | None = None, annotations=()) -> None:
    """Write signals and annotations to an EDF+ file.

    Parameters
    ----------
    path : str or PathLike
    data : array_like, shape (n_channels, n_samples)
        Signals in uV (g for ACC channels). Each channel's physical range is its own min..max.
    fs : float
        Sample rate in Hz of every channel.
    labels, kinds : sequence of str
        Label and kind of each channel.
    start : datetime.datetime, optional
        Start of the recording; the EDF+ anonymised date when omitted.
    annotations : iterable of Annotation or (onset, duration, text)
        Onset and duration in seconds from the start (duration 0 = instantaneous).

    Notes
    -----
    EDF stores whole data records: the record is the longest of 0.1 to 1 s that divides the length;
    when none does, the last record is padded with 0 under a gap annotation (read back as missing).
    """
    import edfio

    data = np.asarray(data, dtype=np.float64)
    annotations = list(annotations)
    record = _record_samples(data.shape[1], fs)
    if record is None:  # no whole record length fits: pad the last record, marked as missing
        record = max(1, int(round(fs)))
        pad = -data.shape[1] % record
        annotations.append(gap_annotation(data.shape[1], pad, fs))
        data = np.hstack([data, np.zeros((data.shape[0], pad))])
    signals = []
    for row, label, kind in zip(data, labels, kinds):
        missing = ~np.isfinite(row)
        if missing.any():  # EDF cannot store NaN: 0, under an annotation that reads back as missing
            row = np.where(missing, 0.0, row)
            edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                annotations.append(Annotation(a / fs, (b - a) / fs, MISSING_TEXT.format(label=label)))
        lo, hi = (float(row.min()), float(row.max())) if row.size else (0.0, 0.0)
        if hi - lo < 1e-6:  # a flat channel still needs a non-empty range
            lo, hi = lo - 1.0, hi + 1.0
        signals.append(edfio.EdfSignal(row, sampling_frequency=fs, label=label,
                                       physical_dimension=CHANNEL_UNITS[kind], physical_range=(lo, hi)))
    anns = []
    for a in annotations:
        onset, duration, text = (a.onset, a.duration, a.text) if isinstance(a, Annotation) else a
        anns.append(edfio.EdfAnnotation(float(onset), float(duration) if duration else None, str(text)))
    kwargs = {}
    if start is not None:
        kwargs = {"recording": edfio.Recording(startdate=start.date()), "starttime": start.time().replace(microsecond=0)}
    edfio.Edf(signals, annotations=anns, data_record_duration=record / fs, **kwargs).write(os.fspath(path))


def _record_samples(n: int, fs: float) -> int | None:
    """Samples per EDF data record: the longest record of 0.1 to 1 s that divides ``n`` exactly and
    whose duration fits the header's 8-character field."""
    longest = max(1, int(round(fs)))
    for r in range(longest, max(1, int(np.ceil(0.1 * fs))) - 1, -1):
        if n % r == 0 and len(repr(r / fs)) <= 8 and float(repr(r / fs)) * fs == r:
            return r
    return None
