"""The emulated radio: firmware state machines served through bleak's real client, no adapter needed.

bleak 3.x lets :class:`bleak.BleakClient` and :class:`bleak.BleakScanner` take a ``backend`` class (a
subclass of ``BaseBleakClient`` / ``BaseBleakScanner``), so a driver written against bleak runs
unchanged against the emulated headbands::

    from bleak import BleakClient, BleakScanner
    from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
    from firmware_sim.protocols.muse import MuseFirmware

    with EmulatedDevice(MuseFirmware(SimulatedHeadband())) as device:      # registered while open
        found = await BleakScanner.find_device_by_name(device.name, backend=EmulatedScanner)
        async with BleakClient(found, backend=EmulatedBackend) as client:
            await client.start_notify("273e0003-4c4d-454d-96be-f03bac821358", on_tp9)
            ...

Everything runs on the asyncio loop of the caller. An :class:`EmulatedDevice` wraps a firmware object
(:class:`~firmware_sim.protocols.ganglion.GanglionFirmware`,
:class:`~firmware_sim.protocols.muse.MuseFirmware`, or anything with the same duck-typed interface, see
:class:`Firmware`) with what the radio adds:

- pacing: while connected an asyncio task advances the firmware's device clock and delivers the
  notifications it sends. ``realtime=True`` follows the loop's clock (times ``1 + rate_error``, for
  clock drift); ``realtime=False`` runs device time as fast as the consumer keeps up while the device
  streams (and with the wall clock while it is idle); ``manual=True`` starts no task and the caller
  moves time with :meth:`EmulatedDevice.step`;
- faults: ``packet_filter`` sees each batch of notification payloads per characteristic (a list of
  bytes, in order) and returns what goes on air, so loss, corruption, duplication and reordering are
  one function away; :meth:`EmulatedDevice.drop_link` drops the link now or after some device time;
- a registry, so that :class:`EmulatedBackend` finds a device by address and :class:`EmulatedScanner`
  advertises every registered device that is not connected.

As on BlueZ, the ``disconnected_callback`` runs after every disconnection, whichever side caused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Optional, Protocol

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

logger = logging.getLogger(__name__)

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
#: ATT MTU of an un-negotiated link: 20-byte notifications, as both headbands send.
DEFAULT_MTU = 23
#: Seconds between pump iterations in real time (a few BLE connection intervals).
TICK_S = 0.01
#: Device seconds per pump iteration in fast pacing.
FAST_CHUNK_S = 0.25
#: Seconds between advertisements while scanning.
ADVERTISING_INTERVAL_S = 0.05

PacketFilter = Callable[[list], list]


class Firmware(Protocol):
    """What :class:`EmulatedDevice` needs from a firmware object (see the protocol modules)."""

    name: str
    address: str
    advertised_services: tuple
    streaming: bool
    link_lost: Optional[str]

    def gatt_services(self) -> list: ...  # [(service_uuid, [(char_uuid, properties), ...]), ...]
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def read(self, uuid: str) -> bytes: ...
    def write(self, uuid: str, data: bytes) -> None: ...
    def advance(self, seconds: float) -> list: ...  # [(device_time, char_uuid, payload), ...]


# == registry ========================================================================================
_REGISTRY: dict = {}


def register(device: "EmulatedDevice") -> "EmulatedDevice":
    """Make ``device`` reachable by address and visible to :class:`EmulatedScanner`; returns it."""
    key = device.address.upper()
    other = _REGISTRY.get(key)
    if other is not None and other is not device:
        raise ValueError(f"another emulated device already uses address {device.address}")
    _REGISTRY[key] = device
    return device


def unregister(device_or_address) -> None:
    """Remove a device (or the one at an address) from the registry, dropping its link if connected."""
    address = device_or_address if isinstance(device_or_address, str) else device_or_address.address
    device = _REGISTRY.pop(address.upper(), None)
    if device is not None and device.connected:
        device.drop_link("device switched off")


def registered_devices() -> list:
    """The registered :class:`EmulatedDevice` objects."""
    return list(_REGISTRY.values())


def get_device(address: str) -> "EmulatedDevice":
    """The registered device at ``address``; :class:`bleak.exc.BleakDeviceNotFoundError` if none."""
    try:
        return _REGISTRY[address.upper()]
    except KeyError:
        raise BleakDeviceNotFoundError(address, f"no emulated device at {address}") from None


def clear_registry() -> None:
    """Unregister every device (dropping links)."""
    for device in registered_devices():
        unregister(device)


async def discover(timeout: float = 0.0) -> list:
    """The advertising emulated devices as :class:`bleak.backends.device.BLEDevice` objects.

    Same as ``BleakScanner.discover(timeout, backend=EmulatedScanner)``.
    """
    from bleak import BleakScanner  # the public class, as a driver would use it

    return await BleakScanner.discover(timeout, backend=EmulatedScanner)


# == device ==========================================================================================
class EmulatedDevice:
    """A firmware object behind an emulated BLE radio.

    Parameters
    ----------
    firmware : Firmware
        The device's state machine (Ganglion, Muse, ...).
    name, address : str, optional
        Advertised local name and Bluetooth address; the firmware's by default.
    realtime : bool
        Pace notifications by the loop's clock (True) or as fast as possible while streaming (False).
    manual : bool
        Start no pacing task; move time with :meth:`step`.
    packet_filter : callable or dict, optional
        ``f(payloads: list[bytes]) -> list[bytes]`` applied to each batch of notifications of one
        characteristic before it goes on air; a dict maps characteristic UUIDs to such functions.
    rate_error : float
        Relative error of the device clock in real-time pacing (50e-6 = 50 ppm fast).
    rssi : int
        Advertised signal strength, dBm.
    tick_s, fast_chunk_s : float
        Pacing granularity: wall seconds per real-time iteration, device seconds per fast iteration.

    Attributes
    ----------
    connected : bool
    clock : float
        Device seconds that have passed while the device was connected.
    host_time : float
        The loop's clock (``loop.time()``) at the last pacing step: with real-time pacing, device time
        advanced by ``(1 + rate_error)`` times the host time between two steps.
    stats : dict
        Per characteristic UUID: ``{"sent": n, "delivered": n}``; sent counts what the firmware produced,
        delivered what reached a subscribed callback after the filter.
    disconnect_reason : str or None
        Why the link last went down.
    """

    def __init__(self, firmware: Firmware, *, name: str | None = None, address: str | None = None,
                 realtime: bool = True, manual: bool = False, packet_filter=None, rate_error: float = 0.0,
                 rssi: int = -60, tick_s: float = TICK_S, fast_chunk_s: float = FAST_CHUNK_S):
        self.firmware = firmware
        self.name = name or firmware.name
        self.address = (address or firmware.address).upper()
        self.realtime = realtime
        self.manual = manual
        self.packet_filter = packet_filter
        self.rate_error = float(rate_error)
        self.rssi = rssi
        self.tick_s = tick_s
        self.fast_chunk_s = fast_chunk_s
        self.connected = False
        self.clock = 0.0
        self.host_time = 0.0
        self.stats: dict = {}
        self.disconnect_reason = None
        self._client: Optional[EmulatedBackend] = None
        self._pump: Optional[asyncio.Task] = None
        self._drop_at: Optional[float] = None
        self._drop_reason = "link lost"

    # registration as a context manager, so tests always clean up
    def __enter__(self) -> "EmulatedDevice":
        return register(self)

    def __exit__(self, *exc) -> None:
        unregister(self)

    def __repr__(self) -> str:
        return f"<EmulatedDevice {self.name} {self.address} connected={self.connected}>"

    def ble_device(self) -> BLEDevice:
        """The :class:`BLEDevice` a scan would return for this device."""
        return BLEDevice(self.address, self.name, self)

    def advertisement(self) -> AdvertisementData:
        """The advertisement data this device broadcasts."""
        return AdvertisementData(local_name=self.name, manufacturer_data={}, service_data={},
                                 service_uuids=list(self.firmware.advertised_services), tx_power=None,
                                 rssi=self.rssi, platform_data=())

    # -- link ------------------------------------------------------------------------------------
    def _attach(self, client: "EmulatedBackend") -> None:
        if self.connected:
            raise BleakError(f"{self.name} is already connected to another central")
        self._client = client
        self.connected = True
        self.disconnect_reason = None
        self._drop_at = None
        self.firmware.connect()
        if not self.manual:
            self._pump = asyncio.get_running_loop().create_task(self._run(), name=f"emulated-ble {self.name}")

    def _detach(self, reason: str) -> Optional["EmulatedBackend"]:
        """Bring the link down; returns the client that was attached."""
        if not self.connected:
            return None
        self.connected = False
        self.disconnect_reason = reason
        self.firmware.disconnect()
        pump, self._pump = self._pump, None
        if pump is not None and pump is not _current_task():
            pump.cancel()
        client, self._client = self._client, None
        return client

    def drop_link(self, reason: str = "link lost", *, after: float | None = None) -> None:
        """Fault: the link drops (supervision timeout, device out of range).

        Parameters
        ----------
        reason : str
            Kept in :attr:`disconnect_reason`.
        after : float, optional
            Device seconds from now; the drop happens in the pacing task (or the next :meth:`step`).
            Immediately if omitted.
        """
        if after is not None:
            self._drop_at = self.clock + after
            self._drop_reason = reason
            return
        client = self._detach(reason)
        if client is not None:
            client._link_down()

    # -- time ------------------------------------------------------------------------------------
    def step(self, seconds: float) -> int:
        """Advance device time by ``seconds`` and deliver what the firmware sent (manual pacing).

        Returns
        -------
        int
            Number of notifications the firmware sent (before the packet filter).
        """
        if not self.connected:
            return 0
        if self._drop_at is not None and self.clock + seconds >= self._drop_at:
            seconds = max(0.0, self._drop_at - self.clock)
        notes = self.firmware.advance(seconds)
        self.clock += seconds
        self._deliver(notes)
        if self._drop_at is not None and self.clock >= self._drop_at - 1e-12:
            self._drop_at = None
            self.drop_link(self._drop_reason)
        elif self.connected and self.firmware.link_lost:
            self.drop_link(self.firmware.link_lost)
        return len(notes)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        sent = 1
        try:
            while self.connected:
                # fast pacing runs device time only while the firmware has something to send
                if self.realtime or not self.firmware.streaming or not sent:
                    await asyncio.sleep(self.tick_s)
                    now = loop.time()
                    seconds = (now - last) * (1.0 + self.rate_error)
                    last = self.host_time = now
                else:
                    await asyncio.sleep(0)  # let the consumer run between chunks
                    last = self.host_time = loop.time()
                    seconds = self.fast_chunk_s
                if self.connected:
                    sent = self.step(seconds)
        except asyncio.CancelledError:
            pass
        except Exception:  # a broken pump must not go unnoticed, nor hang the driver
            logger.exception("emulated BLE pacing of %s failed", self.name)
            self.drop_link("emulator error")

    def _deliver(self, notes: list) -> None:
        if not notes:
            return
        by_uuid: dict = {}
        for t, uuid, payload in notes:
            by_uuid.setdefault(uuid, []).append((t, payload))
        merged = []
        for uuid, items in by_uuid.items():
            stat = self.stats.setdefault(uuid, {"sent": 0, "delivered": 0})
            stat["sent"] += len(items)
            payloads = [p for _, p in items]
            f = self.packet_filter.get(uuid) if isinstance(self.packet_filter, dict) else self.packet_filter
            if f is not None:
                payloads = list(f(list(payloads)))
            # filtered packets keep the time slots of their characteristic, so interleaving stays realistic
            times = [t for t, _ in items]
            for j, p in enumerate(payloads):
                merged.append((times[min(j, len(times) - 1)], len(merged), uuid, bytes(p)))
        merged.sort(key=lambda item: (item[0], item[1]))
        for _, _, uuid, payload in merged:
            client = self._client
            if client is None or not self.connected:
                return
            if client._notify_one(uuid, payload):
                self.stats[uuid]["delivered"] += 1


def _current_task() -> Optional[asyncio.Task]:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


# == client backend ==================================================================================
class EmulatedBackend(BaseBleakClient):
    """A bleak client backend that talks to registered :class:`EmulatedDevice` objects.

    Use as ``BleakClient(address_or_ble_device, backend=EmulatedBackend)``; every ``BleakClient`` method
    then works as with a radio: connect/disconnect, services, read/write, notifications, the
    disconnected callback.
    """

    def __init__(self, address_or_ble_device, **kwargs: Any):
        super().__init__(address_or_ble_device, disconnected_callback=kwargs.pop("disconnected_callback", None),
                         timeout=kwargs.pop("timeout", 30.0), **kwargs)
        self._device: Optional[EmulatedDevice] = None
        self._callbacks: dict = {}  # characteristic handle -> callback(bytearray)
        self._by_uuid: dict = {}  # characteristic uuid -> BleakGATTCharacteristic

    # -- properties ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The device's name (as advertised), or its address if unknown."""
        try:
            return get_device(self.address).name
        except BleakDeviceNotFoundError:
            return self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._device is not None and self._device.connected and self._device._client is self

    # -- connection ------------------------------------------------------------------------------
    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        device = get_device(self.address)
        await asyncio.sleep(0)  # connecting yields to the loop, as with a radio
        device._attach(self)
        self._device = device
        self.services = self._build_services(device.firmware.gatt_services())
        logger.debug("connected to emulated %s", device.name)

    async def disconnect(self) -> None:
        device = self._device
        if device is not None and device._client is self:
            device._detach("disconnected by the central")
            self._link_down()
        await asyncio.sleep(0)

    def _link_down(self) -> None:
        """The link is gone (either side): forget the GATT state and tell the driver."""
        self._callbacks.clear()
        self.services = None
        self._by_uuid = {}
        callback = self._disconnected_callback
        if callback is not None:
            try:
                asyncio.get_running_loop().call_soon(callback)
            except RuntimeError:  # no running loop (unregistered at interpreter exit)
                callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to pair: neither headband requires bonding."""

    async def unpair(self) -> None:
        """Nothing to unpair."""

    # -- GATT ------------------------------------------------------------------------------------
    def _build_services(self, table: list) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        handle = 1
        for service_uuid, characteristics in table:
            service = BleakGATTService(None, handle, service_uuid)
            collection.add_service(service)
            handle += 1
            for char_uuid, properties in characteristics:
                # declaration at handle, value at handle + 1, then the CCCD for notifying characteristics
                char = BleakGATTCharacteristic(None, handle + 1, char_uuid, list(properties),
                                               lambda: DEFAULT_MTU - 3, service)
                collection.add_characteristic(char)
                self._by_uuid[char_uuid] = char
                handle += 2
                if "notify" in properties or "indicate" in properties:
                    collection.add_descriptor(BleakGATTDescriptor(None, handle, CCCD_UUID, char))
                    handle += 1
        return collection

    def _check(self, characteristic: BleakGATTCharacteristic) -> EmulatedDevice:
        if not self.is_connected:
            raise BleakError("Not connected")
        return self._device

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        device = self._check(characteristic)
        if "read" not in characteristic.properties:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)
        await asyncio.sleep(0)
        return bytearray(device.firmware.read(characteristic.uuid))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        self._check(None)
        if descriptor.uuid == CCCD_UUID:
            return bytearray([1 if descriptor.characteristic_handle in self._callbacks else 0, 0])
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data, response: bool) -> None:
        device = self._check(characteristic)
        allowed = "write" if response else "write-without-response"
        if allowed not in characteristic.properties:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)
        device.firmware.write(characteristic.uuid, bytes(data))
        await asyncio.sleep(0)
        if self.is_connected and device.firmware.link_lost:
            device.drop_link(device.firmware.link_lost)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data) -> None:
        self._check(None)
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        self._check(characteristic)
        if "notify" not in characteristic.properties and "indicate" not in characteristic.properties:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED)
        self._callbacks[characteristic.handle] = callback
        await asyncio.sleep(0)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._check(characteristic)
        self._callbacks.pop(characteristic.handle, None)
        await asyncio.sleep(0)

    def _notify_one(self, uuid: str, payload: bytes) -> bool:
        char = self._by_uuid.get(uuid)
        callback = self._callbacks.get(char.handle) if char is not None else None
        if callback is None:
            return False
        try:
            callback(bytearray(payload))
        except Exception:  # as a real backend does: a failing callback is logged, the link stays up
            logger.exception("notification callback for %s failed", uuid)
        return True


# == scanner backend =================================================================================
class EmulatedScanner(BaseBleakScanner):
    """A bleak scanner backend that hears every registered, unconnected :class:`EmulatedDevice`.

    Use as ``BleakScanner(..., backend=EmulatedScanner)``, ``BleakScanner.discover(backend=...)`` or
    ``BleakScanner.find_device_by_name(name, backend=...)``.
    """

    def __init__(self, detection_callback=None, service_uuids=None, scanning_mode: str = "active",
                 **kwargs: Any):
        super().__init__(detection_callback, service_uuids)
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._advertise()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="emulated-ble scan")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(ADVERTISING_INTERVAL_S)
            self._advertise()

    def _advertise(self) -> None:
        for device in registered_devices():
            if device.connected:
                continue  # a connected peripheral stops advertising
            adv = device.advertisement()
            if not self.is_allowed_uuid(adv.service_uuids):
                continue
            ble = self.create_or_update_device(device.address, device.address, device.name, device, adv)
            self.call_detection_callbacks(ble, adv)
