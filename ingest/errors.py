"""Errors raised by ``ingest`` for bad input: files, ports, devices.

The CLI turns each into one line on stderr and a non-zero exit; nothing else in ``ingest`` should
leak a bare library exception for a problem that lies in the user's input.
"""


class IngestError(Exception):
    """Base class of every input problem ``ingest`` reports."""


class RecordingError(IngestError):
    """A recording file cannot be read: not EDF/BDF, truncated, no usable channel."""


class DeviceError(IngestError):
    """A device cannot be opened or stopped streaming: wrong port, no adapter, not found."""


class DatasetError(IngestError):
    """A public dataset cannot be fetched as asked: unknown name, bad subject list, subject not published."""


class DownloadError(DatasetError):
    """A download failed: server unreachable, HTTP error, or bytes that do not match the published checksum."""
