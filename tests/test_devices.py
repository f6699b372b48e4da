"""`dreamsync devices`: serial ports with OpenBCI dongles recognised by their USB ids, BLE headbands found
through bleak's real scanner (against the emulated headbands), and one clear line without an adapter."""

import functools
import json

import numpy as np
import pytest
from serial.tools.list_ports_common import ListPortInfo

from conftest import run_cli
from dreamsync.cli import main
from firmware_sim import ble as emulated
from firmware_sim.ble import EmulatedDevice, EmulatedScanner
from firmware_sim.protocols import ganglion as ggfw
from firmware_sim.protocols import muse as mufw
from ingest import ble
from ingest.ble import _device_error


def port(device, vid=None, pid=None, serial_number=None, description="n/a", manufacturer=None):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial_number
    info.description, info.manufacturer = description, manufacturer
    return info


PORTS = [
    port("/dev/ttyUSB1", 0x0403, 0x6001, "A9XYZ", "FT232R USB UART", "FTDI"),  # an FTDI cable, not a dongle
    port("/dev/ttyUSB0", 0x0403, 0x6015, "DQ0081", "FT231X USB UART", "FTDI"),  # the OpenBCI dongle
    port("/dev/ttyS0"),
]


@pytest.fixture
def serial_ports(monkeypatch):
    import serial.tools.list_ports

    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda *a, **k: list(PORTS))


@pytest.fixture
def emulated_radio(monkeypatch):
    """ingest.ble.discover scans with bleak's scanner over the emulated backend; two headbands advertise."""
    monkeypatch.setattr(ble, "discover", functools.partial(ble.discover, scanner_backend=EmulatedScanner))
    muse = EmulatedDevice(mufw.MuseFirmware(np.zeros((4, 256)), model="muses", keepalive_timeout_s=None),
                          realtime=False)
    ganglion = EmulatedDevice(ggfw.GanglionFirmware(np.zeros((4, 200))), realtime=False)
    with muse, ganglion:
        yield muse, ganglion
    emulated.clear_registry()


@pytest.fixture
def no_adapter(monkeypatch):
    """The error a host without BlueZ gives (no D-Bus system bus), mapped as ingest.ble maps it."""
    def discover(timeout=3.0, scanner_backend=None):
        raise _device_error(FileNotFoundError(2, "No such file or directory"), "Bluetooth scan", "scan")

    monkeypatch.setattr(ble, "discover", discover)


def test_json_lists_ports_and_headbands(serial_ports, emulated_radio, capsys):
    muse, ganglion = emulated_radio
    assert main(["devices", "--json", "--timeout", "0.5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ports = {p["port"]: p for p in doc["serial"]}
    assert [p["port"] for p in doc["serial"]] == ["/dev/ttyS0", "/dev/ttyUSB0", "/dev/ttyUSB1"]
    assert ports["/dev/ttyUSB0"]["openbci_dongle"] is True and ports["/dev/ttyUSB0"]["serial_number"] == "DQ0081"
    assert (ports["/dev/ttyUSB0"]["vid"], ports["/dev/ttyUSB0"]["pid"]) == (0x0403, 0x6015)
    assert ports["/dev/ttyUSB1"]["openbci_dongle"] is False and ports["/dev/ttyS0"]["openbci_dongle"] is False
    assert ports["/dev/ttyS0"]["description"] is None
    bt = doc["bluetooth"]
    assert bt["available"] is True and bt["error"] is None and bt["scan_seconds"] == 0.5
    found = {d["name"]: d for d in bt["devices"]}
    assert found[muse.name] == {"name": muse.name, "address": muse.address, "device": "muse-s"}
    assert found[ganglion.name] == {"name": ganglion.name, "address": ganglion.address, "device": "ganglion"}


def test_text_output_says_how_to_open_each_device(serial_ports, emulated_radio, capsys):
    muse, ganglion = emulated_radio
    assert main(["devices", "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "serial ports (1 OpenBCI dongle):"
    dongle = next(line for line in out if "/dev/ttyUSB0" in line)
    assert "OpenBCI dongle (0403:6015, serial DQ0081)" in dongle
    assert dongle.endswith("--device cyton --port /dev/ttyUSB0")
    cable = next(line for line in out if "/dev/ttyUSB1" in line)
    assert "OpenBCI" not in cable and "0403:6001" in cable
    assert "Bluetooth headbands (0.5 s scan):" in out
    assert any(muse.name in line and line.endswith(f"--device muse-s --address {muse.address}") for line in out)
    assert any(ganglion.name in line and f"--device ganglion --address {ganglion.address}" in line for line in out)


def test_no_adapter_is_one_line_and_the_serial_ports_still_show(serial_ports, no_adapter, capsys):
    assert main(["devices"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("serial ports") and any("/dev/ttyUSB0" in line for line in lines)
    bt = [line for line in lines if "Bluetooth" in line]
    assert bt == ["Bluetooth headbands: not scanned: no Bluetooth adapter (the D-Bus system bus is not available: "
                  "is bluetoothd running?)"]
    assert captured.err == ""

    assert main(["devices", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bluetooth"]["available"] is False and doc["bluetooth"]["devices"] == []
    assert doc["bluetooth"]["error"].startswith("no Bluetooth adapter")
    assert len(doc["serial"]) == 3


def test_nothing_found_is_said(monkeypatch, emulated_radio, capsys):
    import serial.tools.list_ports

    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda *a, **k: [])
    emulated.clear_registry()
    assert main(["devices", "--timeout", "0.2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["serial ports (0 OpenBCI dongles):", "  none"]
    assert out[-1].startswith("  none advertising")


def test_devices_on_this_machine_in_a_subprocess():
    """Whatever this host has (often no adapter), the command answers with exit 0 and its JSON contract."""
    res = run_cli("devices", "--json", "--timeout", "1")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert isinstance(doc["serial"], list) and set(doc["bluetooth"]) == {"available", "error", "scan_seconds",
                                                                           "devices"}
    assert (doc["bluetooth"]["error"] is None) == doc["bluetooth"]["available"]
    res = run_cli("devices", "--help")
    assert res.returncode == 0 and "examples" in res.stdout and "exit codes" in res.stdout
    res = run_cli("devices", "--timeout", "soon")
    assert res.returncode == 2 and "not a duration" in res.stderr
