"""CPU cost of serving an emulated Cyton+Daisy (16 channels, 250 packets/s) on a pty in real time.

A reader thread opens the port with pyserial, starts the stream and reads for ``--seconds``; the script
prints the CPU share of one core used by the server thread alone and by the whole process (server,
reader and signal synthesis), as CPU seconds / wall seconds. Two sources: a simulated 16-channel sleep
headband (synthesis included, as the emulator runs for a night) and a precomputed array (encoding and
serving only).

Usage: python benchmarks/cyton_serving.py [--seconds 10]
"""

import argparse
import threading
import time

import numpy as np
import serial

from firmware_sim.headband import SimulatedHeadband
from firmware_sim.profiles import DeviceProfile
from firmware_sim.protocols.cyton import CytonFirmware
from firmware_sim.serial_pty import PtySerialServer

SITES = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "Cz", "Pz")


def measure(firmware: CytonFirmware, seconds: float) -> dict:
    """Serve ``firmware`` in real time to a pyserial reader for ``seconds``; returns the figures."""
    received = bytearray()
    with PtySerialServer(firmware, realtime=True) as server:
        port = serial.Serial(server.port, 115200, timeout=0.1)
        port.write(b"v")
        port.read_until(b"$$$")
        done = threading.Event()

        def reader():
            while not done.is_set():
                received.extend(port.read(4096))

        thread = threading.Thread(target=reader)
        cpu0, server0, wall0 = time.process_time(), server.cpu_seconds, time.monotonic()
        port.write(b"b")
        thread.start()
        time.sleep(seconds)
        wall = time.monotonic() - wall0
        cpu, server_cpu = time.process_time() - cpu0, server.cpu_seconds - server0
        port.write(b"s")
        done.set()
        thread.join()
        port.close()
    return {"wall": wall, "packets": len(received) // 33, "server": server_cpu / wall, "process": cpu / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    profile = DeviceProfile(name="cyton16", channels=tuple(f"EEG {s}-M1" for s in SITES), kinds=("EEG",) * 16,
                            fs=250.0, description="16-channel Cyton+Daisy montage")
    band = SimulatedHeadband(profile, hours=1.0, seed=1)
    array = np.random.default_rng(0).normal(0.0, 30.0, (16, int(250 * (args.seconds + 5))))
    for name, source in (("simulated 16-ch headband", band), ("precomputed array", array)):
        r = measure(CytonFirmware(source, daisy=True), args.seconds)
        print(f"{name}: {r['packets']} packets in {r['wall']:.1f} s ({r['packets'] / r['wall']:.1f}/s); "
              f"CPU of one core: server thread {100 * r['server']:.1f} %, "
              f"whole process (server + pyserial reader) {100 * r['process']:.1f} %")


if __name__ == "__main__":
    main()
