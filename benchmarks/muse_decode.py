"""Muse decoding speed: notifications per second on one core, and arrival-to-block latency.

Throughput: minutes of notifications are produced offline by the emulated Muse firmware
(``MuseFirmware.advance``: EEG on four or five electrodes, accelerometer, gyroscope, telemetry, in the
order the headset sends them, with its device times as host times) and fed one by one to
:class:`~ingest.boards.muse.MuseDecoder`, alone (target: >= 100,000 notifications/s) and followed by
:class:`~ingest.assembly.RunAssembler` as :class:`~ingest.board.Board` does; again with 1 % lost and
1 % duplicated, so the reorder window works. The script pins itself to one core for these.

Latency: a :class:`~ingest.boards.muse.MuseBoard` streams from an emulated headset in real time through
bleak's real client (emulated backend); for every block, the time from the arrival of the notification
that completed it (stamped in the BLE callback) to the moment ``blocks()`` hands it over, after the
first second (target: p99 < 5 ms), with the process on every core and on one core (where the board's
reader, the BLE thread and the emulated headset take turns). Also the decode-only part: feeding the
completing notification until the block is built, over the whole throughput run (the assembler's clock
refits its 10-minute window every 32 blocks: that is the p99 there).

Usage: python benchmarks/muse_decode.py [--minutes 15] [--seconds 20]
"""

import argparse
import os
import time

import numpy as np

from firmware_sim import ble
from firmware_sim.ble import EmulatedBackend, EmulatedDevice, EmulatedScanner
from firmware_sim.protocols import muse as mufw
from ingest.assembly import RunAssembler
from ingest.boards import muse as mu


def notifications(minutes: float, preset: str) -> list:
    """``(device time, source index, payload)`` of ``minutes`` of streaming, in the order sent."""
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 30.0, (5, int(minutes * 60 * 256) + 256))
    fw = mufw.MuseFirmware(source, keepalive_timeout_s=None, initial_sequence=0xFF00)
    fw.connect()
    for command in ("h", preset, "d"):
        fw.write(mufw.CONTROL_UUID, mufw.encode_command(command))
    index = {u: i for i, u in enumerate(mu.SOURCES)}
    out = []
    for _ in range(int(minutes * 60)):
        out += [(t, index[u], p) for t, u, p in fw.advance(1.0)]
    return out


def throughput(notes: list, preset: str, assemble: bool, repeats: int = 3) -> float:
    """Best notifications/s over ``repeats`` passes."""
    best = 0.0
    for _ in range(repeats):
        decoder = mu.MuseDecoder(preset)
        assembler = RunAssembler("bench", decoder.channels, decoder.kinds, decoder.fs)
        feed, add = decoder.feed, assembler.add
        t0 = time.perf_counter()
        if assemble:
            for host_time, source, payload in notes:
                for run in feed(payload, source):
                    add(run, host_time)
        else:
            for _, source, payload in notes:
                feed(payload, source)
        best = max(best, len(notes) / (time.perf_counter() - t0))
    return best


def faulty(notes: list, seed: int = 1) -> list:
    """``notes`` with 1 % lost and 1 % duplicated."""
    rng = np.random.default_rng(seed)
    out = []
    for note in notes:
        r = rng.random()
        if r < 0.01:
            continue
        out.append(note)
        if r > 0.99:
            out.append(note)
    return out


def decode_latency(notes: list) -> np.ndarray:
    """Seconds from feeding a block's completing notification to the block being built."""
    decoder = mu.MuseDecoder()
    assembler = RunAssembler("bench", decoder.channels, decoder.kinds, decoder.fs)
    out = []
    for host_time, source, payload in notes:
        t0 = time.perf_counter()
        blocks = [assembler.add(run, host_time) for run in decoder.feed(payload, source)]
        if blocks:
            out.append(time.perf_counter() - t0)
    return np.array(out)


def live_latency(seconds: float) -> tuple:
    """Arrival-to-block latencies (s) of a board streaming from an emulated headset in real time.

    The headset reads a precomputed array, so the emulator's signal synthesis (which runs on the BLE
    thread here, not on a headset) does not hold up the board.
    """
    source = np.random.default_rng(2).normal(0.0, 30.0, (5, int((seconds + 5) * 256)))
    fw = mufw.MuseFirmware(source, keepalive_timeout_s=None)
    latencies = []
    with EmulatedDevice(fw, realtime=True) as device:
        board = mu.MuseBoard(name=device.name, backend=EmulatedBackend, scanner_backend=EmulatedScanner)
        with board:
            arrival = {}
            add = board._assembler.add

            def stamped(run, host_time):  # remember when the notification completing the block arrived
                block = add(run, host_time)
                if block is not None:
                    arrival[id(block)] = host_time
                return block

            board._assembler.add = stamped
            board.start()
            settled = time.monotonic() + 1.0  # the first second: handshake replies still in the queue
            end = settled + seconds
            for block in board.blocks():
                latency = time.time() - arrival.pop(id(block))
                if time.monotonic() > settled:
                    latencies.append(latency)
                if time.monotonic() > end:
                    break
    ble.clear_registry()
    return np.array(latencies), board.samples_received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="minutes of notifications (the clock's 10-min window fills after 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of live streaming for latency")
    args = parser.parse_args()

    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    mu.eeg_uv(np.zeros((1, 4, 20), dtype=np.uint8))  # compile (or load) the kernel outside the timings
    for preset in ("p21", "p20"):
        notes = notifications(args.minutes, preset)
        eeg = sum(1 for _, s, _ in notes if 1 <= s <= 5)
        print(f"{preset}: {len(notes):,} notifications ({eeg:,} EEG) = {args.minutes:g} min, one core, best of 3")
        alone = throughput(notes, preset, False)
        print(f"  decoder alone            {alone:>10,.0f} notifications/s   (target >= 100,000)")
        print(f"  decoder + run assembler  {throughput(notes, preset, True):>10,.0f} notifications/s")
        print(f"  the same, 1 % lost/dup   {throughput(faulty(notes), preset, True):>10,.0f} notifications/s")
        if preset == "p21":
            decode = decode_latency(notes) * 1e6
    print(f"decode only (feed -> block incl. clock fit): median {np.median(decode):.1f} us, "
          f"p99 {np.percentile(decode, 99):.0f} us, max {decode.max() / 1e3:.1f} ms")
    for label, allowed in ((f"{len(cores)} cores", cores), ("one core", {min(cores)})):
        os.sched_setaffinity(0, allowed)
        live, samples = live_latency(args.seconds)
        live *= 1e3
        print(f"live, {label}, {args.seconds:g} s through bleak + emulated headset ({len(live)} blocks, {samples} "
              f"samples): arrival -> block median {np.median(live):.2f} ms, p99 {np.percentile(live, 99):.2f} ms, "
              f"max {live.max():.2f} ms   (target p99 < 5 ms)")
    os.sched_setaffinity(0, cores)

if __name__ == "__main__":
    main()
