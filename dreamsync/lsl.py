"""A Lab Streaming Layer outlet, so that LabRecorder and other LSL tools see dreamsync's streams.

The stream follows the XDF meta-data conventions for EEG: type ``EEG``, float32 samples, and in
its description ``manufacturer`` and ``channels/channel`` entries each with ``label``, ``unit``
(``microvolts`` for electrodes) and ``type`` (EEG, EOG, EMG, ECG, ACC, MISC). pylsl is optional
(``pip install 'dreamsync[lsl]'``); it is imported when an outlet is made.

Typical use, from any loop over :class:`~ingest.stream.SampleBlock` objects::

    with LslOutlet.for_device(device) as outlet:    # after device.open()
        for block in device.blocks():
            outlet.push_block(block)

or, to stream what another consumer reads, ``device = outlet.tee(device)``.
"""

from __future__ import annotations

import numpy as np

#: The message when pylsl (or the liblsl library it wraps) is missing.
INSTALL_HINT = "install the lsl extra: pip install 'dreamsync[lsl]'"


class LslUnavailable(ImportError):
    """pylsl, or the liblsl library it loads, is not installed."""


def _pylsl():
    try:
        import pylsl
    except ImportError as err:
        raise LslUnavailable(f"LSL streaming needs pylsl ({err}): {INSTALL_HINT}") from None
    except RuntimeError as err:  # pylsl present but no liblsl binary it can load
        raise LslUnavailable(f"LSL streaming needs liblsl ({' '.join(str(err).split())}): {INSTALL_HINT}") from None
    return pylsl


class LslOutlet:
    """An LSL outlet of float32 samples with standard EEG meta-data.

    Parameters
    ----------
    name : str
        Stream name shown by LSL tools (e.g. ``"dreamsync Muse-1324"``).
    channels : sequence of str
        Channel labels, one per row of the blocks pushed.
    fs : float
        Nominal sample rate in Hz (0 for an irregular stream).
    kinds : sequence of str, optional
        Channel kinds (EEG, EOG, EMG, ECG, ACC, MISC), by default all EEG; written as each channel's
        ``type``, and ACC channels get the unit ``g``.
    source_id : str, optional
        A stable identifier of the source (a serial port, a BLE address, a file), so that a recorder
        can pick the stream up again after a restart; the name by default.
    unit : str, optional
        Unit of the electrode channels, by default ``"microvolts"`` (the samples pushed must be in it).
    stream_type : str, optional
        LSL content type, by default ``"EEG"``.
    chunk_size, max_buffered : int, optional
        pylsl's outlet parameters (samples per network chunk, 0 = as pushed; seconds buffered for slow
        consumers, by default 360).

    Raises
    ------
    LslUnavailable
        When pylsl is not installed.
    ValueError
        For no channels, labels and kinds of different lengths, or a negative rate.
    """

    def __init__(self, name: str, channels, fs: float, kinds=None, source_id: str = "", unit: str = "microvolts",
                 *, stream_type: str = "EEG", chunk_size: int = 0, max_buffered: int = 360):
        channels = [str(c) for c in channels]
        kinds = ["EEG"] * len(channels) if kinds is None else [str(k) for k in kinds]
        if not channels or len(kinds) != len(channels):
            raise ValueError(f"an LSL outlet needs channels and one kind each, got {len(channels)} and {len(kinds)}")
        if not fs >= 0:
            raise ValueError(f"sample rate must be >= 0 Hz, got {fs}")
        pylsl = _pylsl()
        self._pylsl = pylsl
        self.name, self.channels, self.kinds, self.fs = name, tuple(channels), tuple(kinds), float(fs)
        self.source_id = source_id or name
        self.units = tuple("g" if k == "ACC" else unit for k in kinds)  # dreamsync's ACC channels are in g
        info = pylsl.StreamInfo(name, stream_type, len(channels), self.fs, pylsl.cf_float32, self.source_id)
        desc = info.desc()
        desc.append_child_value("manufacturer", "dreamsync")
        xml = desc.append_child("channels")
        for label, kind, u in zip(channels, kinds, self.units):
            ch = xml.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", u)
            ch.append_child_value("type", kind)
        self.info = info
        self._outlet = pylsl.StreamOutlet(info, chunk_size, max_buffered)
        self._offset: float | None = None  # LSL time minus the blocks' host time (push_block)
        self.samples_pushed = 0

    @classmethod
    def for_device(cls, device, name: str | None = None, **kwargs) -> "LslOutlet":
        """An outlet for an opened :class:`~ingest.device.Device` (its channels, kinds, rate and id)."""
        return cls(name or f"dreamsync {device.device_id}", device.channels, device.fs, device.kinds,
                   source_id=device.device_id, **kwargs)

    @property
    def have_consumers(self) -> bool:
        """Whether an inlet (e.g. LabRecorder) is connected."""
        return self._outlet is not None and self._outlet.have_consumers()

    def push(self, block_uV, first_timestamp: float | None = None) -> None:
        """Push samples.

        Parameters
        ----------
        block_uV : array_like, shape (n_channels, n_samples)
            Samples in the outlet's units (uV for electrodes, g for accelerometers).
        first_timestamp : float, optional
            LSL time (``pylsl.local_clock()``) of the first sample; the others follow at the nominal
            rate. By default liblsl stamps the last sample with the time of the push.

        Raises
        ------
        ValueError
            For a block of the wrong shape.
        RuntimeError
            After :meth:`close`.
        """
        if self._outlet is None:
            raise RuntimeError(f"LSL outlet {self.name!r} is closed")
        data = np.asarray(block_uV, dtype=np.float32)
        if data.ndim != 2 or data.shape[0] != len(self.channels):
            raise ValueError(f"expected a block of shape ({len(self.channels)}, n), got {data.shape}")
        n = data.shape[1]
        if n == 0:
            return
        if first_timestamp is None:
            stamp = 0.0  # liblsl: now, for the last sample
        else:  # pylsl takes the time of the most recent sample of a chunk
            stamp = float(first_timestamp) + ((n - 1) / self.fs if self.fs else 0.0)
        self._outlet.push_chunk(np.ascontiguousarray(data.T), stamp)
        self.samples_pushed += n

    def push_block(self, block, first_timestamp: float | None = None) -> None:
        """Push a :class:`~ingest.stream.SampleBlock` (its channels must be the outlet's).

        By default the samples are stamped on the source's own timeline: the block's ``host_time``
        (a board's sample clock regressed onto the host's, or a file's recording clock) shifted by
        one offset, chosen at the first block pushed so that its last sample is "now" in LSL time.
        Lost samples thus leave a hole in the time stamps, and a board's clock drift is followed.
        A replay faster than real time runs ahead of the LSL clock.
        """
        if tuple(block.channels) != self.channels:
            raise ValueError(f"block channels {block.channels} are not the outlet's {self.channels}")
        if first_timestamp is None and block.n_samples:
            if self._offset is None:
                last = block.host_time + (block.n_samples - 1) / self.fs if self.fs else block.host_time
                self._offset = self._pylsl.local_clock() - last
            first_timestamp = block.host_time + self._offset
        self.push(block.data, first_timestamp)

    def tee(self, device) -> "LslTee":
        """``device`` with every block it yields also pushed to this outlet (see :class:`LslTee`)."""
        return LslTee(device, self)

    def close(self) -> None:
        """Withdraw the stream; safe to call twice."""
        self._outlet = None  # liblsl withdraws the stream when the last reference to the outlet goes

    def __enter__(self) -> "LslOutlet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LslTee:
    """A device whose blocks are pushed to an LSL outlet as they are read, at the reader's pace.

    Everything but :meth:`blocks` is the wrapped device's, so a consumer (``LiveSession``, a
    recorder) uses it in place of the device.
    """

    def __init__(self, device, outlet: LslOutlet):
        self._device = device
        self.outlet = outlet

    def blocks(self):
        """The device's blocks, each pushed to the outlet before it is handed on."""
        for block in self._device.blocks():
            self.outlet.push_block(block)
            yield block

    def __getattr__(self, name):
        return getattr(self._device, name)

    def __enter__(self) -> "LslTee":
        self._device.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._device.__exit__(*exc)
