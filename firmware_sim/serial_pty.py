"""A serial device on a pseudo-terminal: an emulated board that pyserial opens like a USB dongle.

:class:`PtySerialServer` opens a pty pair, puts it in raw mode (no echo, no CR/LF translation) and runs
a background thread that feeds what the host writes to a firmware state machine (such as
:class:`~firmware_sim.protocols.cyton.CytonFirmware`), writes its replies back and, while the firmware
streams, writes its packets paced by a monotonic clock, in batches every ~32 ms::

    with PtySerialServer(CytonFirmware(source)) as server:
        port = serial.Serial(server.port, 115200, timeout=1)   # like /dev/ttyUSB0

The firmware needs ``receive(bytes) -> bytes``, ``streaming``, ``packet_rate``, ``stream_packets(n) ->
list of bytes`` and ``idle(seconds)``. Once served, only the server thread may call those; set plain
attributes (``packet_filter``, ``reachable``) from anywhere.

Linux and macOS only (``os.openpty``, ``termios``).
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty

#: Bytes the "dongle" buffers for a host that does not read; beyond it new bytes are lost, as when a
#: UART/USB buffer overruns (the loss shows in :attr:`PtySerialServer.bytes_overrun`).
OUTPUT_BUFFER_LIMIT = 1 << 16


class PtySerialServer:
    """Serve a firmware state machine on a pseudo-terminal.

    Parameters
    ----------
    firmware : object
        The board, e.g. :class:`~firmware_sim.protocols.cyton.CytonFirmware`.
    realtime : bool, optional
        True (default): packets leave at ``firmware.packet_rate`` per host second, paced from a
        monotonic clock (no drift; a late wake-up sends what is due). False: as fast as the reader
        drains the pty, for tests.
    batch_seconds : float, optional
        Pacing interval in real time, by default 0.032 (8 packets at 250 Hz).

    Attributes
    ----------
    port : str or None
        Path of the slave side, e.g. ``/dev/pts/5``; set by :meth:`start`.
    bytes_sent : int
        Bytes written to the host so far.
    bytes_overrun : int
        Bytes lost because the host did not read (see :data:`OUTPUT_BUFFER_LIMIT`).
    """

    def __init__(self, firmware, realtime: bool = True, batch_seconds: float = 0.032):
        if not batch_seconds > 0:
            raise ValueError(f"batch_seconds must be positive, got {batch_seconds}")
        self.firmware = firmware
        self.realtime = bool(realtime)
        self.batch_seconds = float(batch_seconds)
        self.port: str | None = None
        self.bytes_sent = 0
        self.bytes_overrun = 0
        self.error: BaseException | None = None
        self._master = self._slave = None
        self._wake_r = self._wake_w = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cpu_seconds = 0.0

    # -- life cycle --------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Open the pty and start serving; returns the port path. A no-op when already serving."""
        if self._thread is not None:
            return self.port
        self._master, self._slave = os.openpty()
        # raw: the line discipline must pass binary packets and commands through untouched
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"pty-serial {self.port}", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop the thread and close the pty (the host then reads EOF/errors). Idempotent."""
        if self._thread is not None:
            self._stop.set()
            os.write(self._wake_w, b"\0")
            self._thread.join()
            self._thread = None
        for name in ("_master", "_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def disconnect(self) -> None:
        """Simulate the dongle being unplugged: the port goes away under an open connection."""
        self.stop()

    def __enter__(self) -> "PtySerialServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def serving(self) -> bool:
        """True while the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def cpu_seconds(self) -> float:
        """CPU time used by the server thread so far, in seconds (updated every loop)."""
        return self._cpu_seconds

    # -- the loop ----------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # keep it for the caller: a daemon thread's traceback is easy to miss
            self.error = exc
            raise

    def _loop(self) -> None:
        fw, master = self.firmware, self._master
        out = bytearray()
        was_streaming = False
        t0 = sent = 0
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            batch = max(1, round(self.batch_seconds * fw.packet_rate))
            if fw.streaming and self.realtime:
                timeout = max(0.0, t0 + (sent + batch) / fw.packet_rate - now)
            elif fw.streaming and not out:
                timeout = 0.0
            else:
                timeout = 0.1
            want_write = [master] if out else []
            readable, writable, _ = select.select([master, self._wake_r], want_write, [], timeout)
            if self._wake_r in readable:
                break
            if master in readable:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError as exc:  # EIO: nothing holds the slave open any more
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    self._queue(out, fw.receive(data))
            now = time.monotonic()
            if fw.streaming:
                if not was_streaming:
                    t0, sent = now, 0
                if self.realtime:
                    due = int((now - t0) * fw.packet_rate) - sent
                    if due >= batch:
                        self._queue(out, b"".join(fw.stream_packets(due)))
                        sent += due
                elif not out:
                    self._queue(out, b"".join(fw.stream_packets(4 * batch)))
            else:
                fw.idle(now - last)
            was_streaming = fw.streaming
            last = now
            if out:
                try:
                    n = os.write(master, out)
                except BlockingIOError:
                    n = 0
                del out[:n]
                self.bytes_sent += n
            self._cpu_seconds = time.thread_time()

    def _queue(self, out: bytearray, data: bytes) -> None:
        room = OUTPUT_BUFFER_LIMIT - len(out)
        if len(data) > room:
            self.bytes_overrun += len(data) - room
            data = data[:room]
        out += data
