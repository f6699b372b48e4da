"""The BLE transport of the headband drivers: bleak's real client and scanner, on a thread of their own.

bleak is asynchronous; a :class:`~ingest.board.Board` is not (its hooks are called from the thread that
reads ``blocks()``). :class:`BleLink` bridges the two the way BrainFlow bridges SimpleBLE: an asyncio
event loop runs in a background thread for as long as the link is up; notification callbacks stamp
each payload with the host time and push ``(host_time, source, payload)`` into a thread-safe queue that
the board drains with :meth:`BleLink.receive`; commands and reads are coroutines run on that loop and
waited for.

The same code drives a real adapter and the emulated headbands of the tests: ``backend`` and
``scanner_backend`` are handed to :class:`bleak.BleakClient` / :class:`bleak.BleakScanner` unchanged
(None, the default, is the platform's adapter; the tests pass ``firmware_sim.ble.EmulatedBackend`` and
``EmulatedScanner``).

What goes wrong is reported in one line as :class:`~ingest.errors.DeviceError` (no Bluetooth adapter,
Bluetooth off, permission denied, device not found within the scan time, connection refused, not the
expected device) or, once connected, as :class:`~ingest.board.LinkLost` (the link dropped: the board
reconnects on its own).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence

from bleak import BleakClient, BleakScanner
from bleak.exc import (BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError,
                       BleakDeviceNotFoundError, BleakError)

from .board import LinkLost
from .errors import DeviceError

#: Seconds allowed on top of an operation's own time-out before the caller stops waiting for the loop.
_MARGIN_S = 5.0
#: Seconds a GATT read or write may take.
GATT_TIMEOUT_S = 5.0
_LOST = object()  # queued by the disconnected callback: wakes the reader, then LinkLost


def normalise_uuid(uuid: str) -> str:
    """A 16-bit (``"2a28"``, ``"0x2A28"``) or full UUID as bleak's lower-case 128-bit form."""
    text = uuid.lower().removeprefix("0x")
    if len(text) == 4:
        return f"0000{text}-0000-1000-8000-00805f9b34fb"
    return text


class BleLink:
    """One BLE peripheral: scan, connect, notifications into a queue, reads and writes.

    Parameters
    ----------
    address : str, optional
        Bluetooth address (``"00:55:DA:B0:13:24"``; a UUID on macOS). Takes precedence over ``name``.
    name : str, optional
        Advertised local name to look for, exactly (``"Muse-1324"``).
    name_prefix : str, optional
        With neither ``address`` nor ``name``: the first device whose name starts with this
        (``"Muse"``, ``"Ganglion"``).
    kind : str, optional
        What the device is, for messages (``"Muse"``).
    scan_timeout : float, optional
        Seconds to scan before giving up, by default 10.
    connect_timeout : float, optional
        Seconds a connection may take, by default 20.
    backend, scanner_backend : type, optional
        bleak client / scanner backend classes; None (default) uses the platform's adapter.

    Attributes
    ----------
    address, name : str
        The device found by the last :meth:`connect` (empty before).
    disconnect_reason : str or None
        Set when the link dropped on its own.
    """

    def __init__(self, *, address: str | None = None, name: str | None = None, name_prefix: str = "",
                 kind: str = "device", scan_timeout: float = 10.0, connect_timeout: float = 20.0,
                 backend=None, scanner_backend=None):
        self._want_address = address
        self._want_name = name
        self._name_prefix = name_prefix
        self.kind = kind
        self.scan_timeout = float(scan_timeout)
        self.connect_timeout = float(connect_timeout)
        self._backend = backend
        self._scanner_backend = scanner_backend
        self.address = ""
        self.name = ""
        self.disconnect_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: BleakClient | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lost = threading.Event()
        self._lost_seen = False
        self._closing = False
        self._taps: dict = {}
        self._periodic: asyncio.Task | None = None

    # -- identity --------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        """The device for messages: its address, the name looked for, or ``"Muse (Muse*)"``."""
        return self.address or self._want_address or self._want_name or f"{self.kind} ({self._name_prefix}*)"

    def pin(self) -> None:
        """From now on look for the device found last by its address, so a reconnection reaches it."""
        if self.address:
            self._want_address = self.address

    @property
    def connected(self) -> bool:
        """True while the link is up."""
        return self._client is not None and not self._lost.is_set()

    # -- life cycle ------------------------------------------------------------------------------
    def connect(self, service_uuid: str | None = None) -> None:
        """Scan for the device, connect, and check it offers ``service_uuid``.

        Raises
        ------
        DeviceError
            No adapter, Bluetooth off, permission denied, not found, connection refused, wrong device.
        """
        self.disconnect()
        self._closing = False
        self._lost.clear()
        self._lost_seen = False
        self.disconnect_reason = None
        self._queue = queue.SimpleQueue()
        self._taps = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"ble {self.kind}", daemon=True)
        self._thread.start()
        try:
            self._run(self._connect(service_uuid), self.scan_timeout + self.connect_timeout)
        except BaseException:
            self.disconnect()
            raise

    async def _connect(self, service_uuid: str | None) -> None:
        try:
            device = await self._find()
        except (BleakError, OSError) as err:
            raise _device_error(err, self.target, "scanning") from None
        if device is None:
            raise DeviceError(f"{self.target}: not found within {self.scan_timeout:g} s of scanning "
                              f"(is it switched on, charged, in range and not connected to another app?)")
        self.address, self.name = device.address, device.name or ""
        client = BleakClient(device, disconnected_callback=self._on_disconnect, timeout=self.connect_timeout,
                             backend=self._backend)
        try:
            await client.connect()
        except asyncio.TimeoutError:
            raise DeviceError(f"{self.target}: did not accept the connection within "
                              f"{self.connect_timeout:g} s (out of range, or connected to another app?)") from None
        except (BleakError, OSError) as err:
            raise _device_error(err, self.target, "connecting") from None
        self._client = client
        if service_uuid is not None and client.services.get_service(normalise_uuid(service_uuid)) is None:
            raise DeviceError(f"{self.target}: not a {self.kind} (it has no service {service_uuid})")

    async def _find(self):
        kwargs = {"timeout": self.scan_timeout, "backend": self._scanner_backend}
        if self._want_address:
            return await BleakScanner.find_device_by_address(self._want_address, **kwargs)
        if self._want_name:
            return await BleakScanner.find_device_by_name(self._want_name, **kwargs)
        prefix = self._name_prefix
        return await BleakScanner.find_device_by_filter(
            lambda d, ad: (ad.local_name or d.name or "").startswith(prefix), **kwargs)

    def disconnect(self) -> None:
        """Drop the link (if up) and stop the loop thread; safe to call twice, never raises."""
        loop, thread, client = self._loop, self._thread, self._client
        self._closing = True
        self._client = None
        self._loop = self._thread = None
        if loop is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._shutdown(client), loop).result(GATT_TIMEOUT_S + _MARGIN_S)
        except Exception:  # the link is being released: nothing useful to report
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(GATT_TIMEOUT_S)
        if not loop.is_running():
            loop.close()

    async def _shutdown(self, client: BleakClient | None) -> None:
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), GATT_TIMEOUT_S)
            except Exception:
                pass
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _on_disconnect(self, client) -> None:
        # runs on the loop: wake the reader, which raises LinkLost once it has what came before
        if not self._closing:
            self.disconnect_reason = "the link dropped"
        self._lost.set()
        self._queue.put(_LOST)

    # -- GATT ------------------------------------------------------------------------------------
    def subscribe(self, uuids: Sequence[str], sources: Sequence[str] | None = None) -> None:
        """Start notifications on ``uuids``; each payload is queued with its index in ``sources``.

        Parameters
        ----------
        uuids : sequence of str
            Characteristics to subscribe to.
        sources : sequence of str, optional
            The board's list of sources (the capture header's ``"sources"``); ``uuids`` by default.
        """
        order = [normalise_uuid(u) for u in (sources if sources is not None else uuids)]
        pairs = [(normalise_uuid(u), order.index(normalise_uuid(u))) for u in uuids]
        self._run(self._subscribe(pairs), GATT_TIMEOUT_S * max(1, len(pairs)))

    async def _subscribe(self, pairs) -> None:
        for uuid, index in pairs:
            try:
                await self._client.start_notify(uuid, functools.partial(self._on_notify, index))
            except BleakError as err:
                if not self.connected:
                    raise LinkLost(self.disconnect_reason) from None
                raise DeviceError(f"{self.target}: cannot subscribe to {uuid} ({err})") from None

    def _on_notify(self, source: int, characteristic, data: bytearray) -> None:
        payload = bytes(data)
        self._queue.put((time.time(), source, payload))
        tap = self._taps.get(source)
        if tap is not None:
            try:
                tap(payload)
            except Exception:  # a broken handshake helper must not stop the stream
                pass

    def tap(self, source: int, callback: Callable[[bytes], None] | None) -> None:
        """Also hand every payload of ``source`` to ``callback`` (on the loop thread), e.g. to wait
        for a reply during a handshake without taking it out of the stream. None removes it."""
        if callback is None:
            self._taps.pop(source, None)
        else:
            self._taps[source] = callback

    def read(self, uuid: str) -> bytes:
        """Value of a readable characteristic.

        Raises
        ------
        LinkLost
            If the link is down.
        KeyError
            If the device has no such characteristic.
        """
        return bytes(self._run(self._gatt(lambda c: c.read_gatt_char(normalise_uuid(uuid)), uuid), GATT_TIMEOUT_S))

    def write(self, uuid: str, payload: bytes, response: bool | None = None) -> None:
        """Write ``payload`` to a characteristic (with response if it allows it, by default).

        Raises
        ------
        LinkLost
            If the link is down.
        """
        self._run(self._gatt(lambda c: c.write_gatt_char(normalise_uuid(uuid), payload, response), uuid),
                  GATT_TIMEOUT_S)

    async def _gatt(self, operation, uuid: str):
        client = self._client
        if client is None or self._lost.is_set():
            raise LinkLost(self.disconnect_reason or "not connected")
        try:
            return await asyncio.wait_for(operation(client), GATT_TIMEOUT_S)
        except (BleakError, asyncio.TimeoutError, OSError) as err:
            if not client.is_connected or self._lost.is_set():
                raise LinkLost(self.disconnect_reason or "the link dropped") from None
            if "not found" in str(err).lower() or type(err).__name__ == "BleakCharacteristicNotFoundError":
                raise KeyError(f"{self.target} has no characteristic {uuid}") from None
            raise LinkLost(f"{uuid}: {err or type(err).__name__}") from None

    def start_periodic_write(self, uuid: str, payload: bytes, interval: float) -> None:
        """Write ``payload`` every ``interval`` s from the loop until :meth:`stop_periodic_write` or a
        disconnection (a keep-alive that runs whether or not the board's reader keeps up)."""
        self.stop_periodic_write()
        if self._loop is None:
            raise LinkLost("not connected")

        async def start():
            self._periodic = asyncio.get_running_loop().create_task(self._every(uuid, payload, interval))

        self._run(start(), GATT_TIMEOUT_S)

    def stop_periodic_write(self) -> None:
        """Stop the periodic write (if any); never raises."""
        task, self._periodic = self._periodic, None
        if task is not None and self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(task.cancel)

    async def _every(self, uuid: str, payload: bytes, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            client = self._client
            if client is None or self._lost.is_set():
                return
            try:
                await asyncio.wait_for(client.write_gatt_char(normalise_uuid(uuid), payload, None), GATT_TIMEOUT_S)
            except (BleakError, asyncio.TimeoutError, OSError):
                pass  # a missed keep-alive is retried at the next tick; a dead link is seen by the reader

    def has_characteristic(self, uuid: str) -> bool:
        """Whether the connected device offers characteristic ``uuid``."""
        client = self._client
        return client is not None and client.services.get_characteristic(normalise_uuid(uuid)) is not None

    # -- notifications ---------------------------------------------------------------------------
    def receive(self, timeout: float) -> list:
        """Notifications received so far, waiting up to ``timeout`` s for the first.

        Returns
        -------
        list of (host_time, source, payload)
            ``host_time`` in seconds since the Unix epoch (when the callback ran), ``source`` the index
            given to :meth:`subscribe`, ``payload`` bytes.

        Raises
        ------
        LinkLost
            Once everything received before the link dropped has been returned.
        """
        if self._lost_seen or self._loop is None:
            raise LinkLost(self.disconnect_reason or "not connected")
        q = self._queue
        try:
            item = q.get(timeout=timeout)
        except queue.Empty:
            return []
        out = []
        while True:
            if item is _LOST:
                self._lost_seen = True
                if not out:
                    raise LinkLost(self.disconnect_reason or "the link dropped")
                return out
            out.append(item)
            try:
                item = q.get_nowait()
            except queue.Empty:
                return out

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, coroutine, timeout: float):
        """Run ``coroutine`` on the loop thread and wait for its result (its exceptions propagate)."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise LinkLost("not connected")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout + _MARGIN_S)
        except TimeoutError:
            future.cancel()
            raise DeviceError(f"{self.target}: the Bluetooth stack did not answer within {timeout + _MARGIN_S:g} s") \
                from None


def _device_error(err: BaseException, target: str, stage: str) -> DeviceError:
    """One line saying what a bleak/BlueZ/OS error means for the user."""
    if isinstance(err, BleakBluetoothNotAvailableError):
        reason = err.reason
        if reason is BleakBluetoothNotAvailableReason.POWERED_OFF:
            return DeviceError(f"{target}: Bluetooth is turned off (turn it on, e.g. `bluetoothctl power on`)")
        denied = (BleakBluetoothNotAvailableReason.DENIED_BY_USER, BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM,
                  BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN)
        if reason in denied:
            return DeviceError(f"{target}: permission to use Bluetooth denied ({err.args[0]})")
        return DeviceError(f"{target}: no Bluetooth adapter found ({err.args[0]})")
    if isinstance(err, BleakDeviceNotFoundError):
        return DeviceError(f"{target}: gone while {stage} (out of range or switched off?)")
    if isinstance(err, (FileNotFoundError, ConnectionRefusedError)):
        # BlueZ is reached over the D-Bus system bus: no socket means no Bluetooth stack at all
        return DeviceError(f"{target}: no Bluetooth adapter (the D-Bus system bus is not available: "
                           f"is bluetoothd running?)")
    if isinstance(err, PermissionError):
        return DeviceError(f"{target}: permission to use Bluetooth denied (D-Bus refused access)")
    if isinstance(err, BleakDBusError):
        name = err.dbus_error
        detail = err.dbus_error_details or ""
        if name.endswith(("ServiceUnknown", "NameHasNoOwner")):
            return DeviceError(f"{target}: no Bluetooth adapter (BlueZ is not running: start bluetoothd)")
        if name.endswith("NotReady"):
            return DeviceError(f"{target}: the Bluetooth adapter is not ready (is it powered on?)")
        if name.endswith(("AccessDenied", "NotPermitted", "NotAuthorized")):
            return DeviceError(f"{target}: permission to use Bluetooth denied ({name})")
        if name.endswith("InProgress"):
            return DeviceError(f"{target}: the Bluetooth adapter is busy with another scan or connection; try again")
        return DeviceError(f"{target}: connection refused while {stage} ({name}{': ' + detail if detail else ''})")
    text = str(err) or type(err).__name__
    if "adapter" in text.lower():
        return DeviceError(f"{target}: no Bluetooth adapter ({text})")
    if isinstance(err, OSError):
        return DeviceError(f"{target}: Bluetooth error while {stage} ({err.strerror or text})")
    return DeviceError(f"{target}: connection refused while {stage} ({text})")


#: Advertised name prefixes of the headbands dreamsync drives.
HEADBAND_PREFIXES = ("Muse", "Ganglion", "DreamSync")


def discover(timeout: float = 3.0, scanner_backend=None) -> list:
    """Headbands advertising nearby: ``[(name, address), ...]`` for Muse, Ganglion and DreamSync devices.

    Raises
    ------
    DeviceError
        One line when there is no usable Bluetooth adapter.
    """
    import asyncio

    from bleak import BleakScanner

    async def scan():
        kwargs = {"backend": scanner_backend} if scanner_backend is not None else {}
        return await BleakScanner.discover(timeout=timeout, **kwargs)

    try:
        found = asyncio.run(scan())
    except Exception as err:  # bleak reports a missing stack in several ways; map them to one line
        raise _device_error(err, "Bluetooth scan", "scan") from None
    return [(d.name, d.address) for d in found if d.name and d.name.startswith(HEADBAND_PREFIXES)]
