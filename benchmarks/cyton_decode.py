"""Cyton decoding speed: throughput on one core, and latency from a chunk's arrival to its block.

Throughput (target >= 1,000,000 packets/s on one core): a stream of emulated Cyton packets (8 channels,
accelerometer on every 10th packet) is fed to :class:`~ingest.boards.cyton.CytonDecoder` in chunks of
several sizes, clean and with wire faults (loss, duplicates, reordering, corruption), plus 16-channel
Daisy; figures are packets decoded per second of wall time. Run it pinned to one core
(``taskset -c 0 python benchmarks/cyton_decode.py``) to measure "on one core".

Latency (target p99 < 5 ms): the time from a chunk being handed to the board (``_receive`` returning
it) to its samples being available as a block (``blocks()`` yielding it), measured

- offline: the decoder alone, and decoder + run assembler (which includes the host-clock fit), per
  chunk of 4 packets (what the FTDI dongle delivers per 16-ms USB latency timer at 250 Hz);
- live: :class:`~ingest.boards.cyton.CytonBoard` reading the emulated board over a pseudo-terminal in
  real time for ``--seconds``.

Usage: python benchmarks/cyton_decode.py [--packets 1000000] [--seconds 10]
"""

import argparse
import time

import numpy as np

from firmware_sim.faults import FaultSpec, PacketFaults
from firmware_sim.protocols.cyton import CytonFirmware
from firmware_sim.serial_pty import PtySerialServer
from ingest.assembly import RunAssembler
from ingest.boards.cyton import CytonBoard, CytonDecoder


def stream(n_packets: int, daisy: bool = False, faults: FaultSpec | None = None, seed: int = 0) -> bytes:
    """``n_packets`` packets of an emulated board (noise around 30 uV, accelerometer flat)."""
    rng = np.random.default_rng(seed)
    n_rows = 16 if daisy else 8
    source = rng.normal(0.0, 30.0, (n_rows, n_packets))
    firmware = CytonFirmware(source, daisy=daisy,
                             packet_filter=PacketFaults(faults, seed=seed) if faults is not None else None)
    firmware.receive(b"b")
    return b"".join(firmware.stream(min(50_000, n_packets - k)) for k in range(0, n_packets, 50_000))


def throughput(data: bytes, chunk: int, daisy: bool = False, repeat: int = 3) -> tuple:
    """Best of ``repeat``: (packets delivered, packets per second) feeding ``data`` in ``chunk``-byte pieces."""
    best = 0.0
    for _ in range(repeat):
        decoder = CytonDecoder(daisy=daisy, accelerometer=True)
        decoder.restart()
        pieces = [data[i: i + chunk] for i in range(0, len(data), chunk)]
        t0 = time.perf_counter()
        for piece in pieces:
            decoder.feed(piece)
        best = max(best, decoder.stats["packets"] / (time.perf_counter() - t0))
    return decoder.stats["packets"], best


def offline_latency(data: bytes, packets_per_chunk: int = 4) -> tuple:
    """Seconds from handing each chunk over to its runs (decoder alone) and to its block (+ assembler)."""
    decoder = CytonDecoder(accelerometer=True)
    decoder.restart()
    assembler = RunAssembler("bench", decoder.channels, decoder.kinds, decoder.fs)
    size = 33 * packets_per_chunk
    decoded, assembled = [], []
    t_host = 1.7e9
    for i in range(0, len(data), size):
        t_host += packets_per_chunk / 250.0
        t0 = time.perf_counter()
        runs = decoder.feed(data[i: i + size])
        t1 = time.perf_counter()
        blocks = [assembler.add(run, t_host) for run in runs]
        if any(b is not None for b in blocks):
            decoded.append(t1 - t0)
            assembled.append(time.perf_counter() - t0)
    return np.array(decoded), np.array(assembled)


def live_latency(seconds: float) -> tuple:
    """Seconds from ``_receive`` returning a chunk to ``blocks()`` yielding its block, over a real-time pty."""
    n = int(250 * (seconds + 5))
    source = np.random.default_rng(1).normal(0.0, 30.0, (8, n))
    latencies = []
    with PtySerialServer(CytonFirmware(source), realtime=True) as server:
        board = CytonBoard(server.port, accelerometer=True)
        receive = board._receive
        arrived = []

        def stamped(timeout):
            chunks = receive(timeout)
            if chunks:
                arrived.append(time.perf_counter())
            return chunks

        board._receive = stamped
        with board:
            board.start()
            end = time.monotonic() + seconds
            for _ in board.blocks():
                latencies.append(time.perf_counter() - arrived[-1])
                if time.monotonic() > end:
                    break
    return np.array(latencies), board.samples_received, board.samples_lost


def report(name: str, seconds: np.ndarray) -> None:
    ms = 1e3 * seconds
    print(f"{name}: {ms.size} blocks, p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms, "
          f"max {ms.max():.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    clean = stream(args.packets)
    faulty = stream(args.packets, faults=FaultSpec(loss=0.01, burst=0.001, duplicate=0.01, reorder=0.01,
                                                   corrupt=0.01), seed=1)
    daisy = stream(args.packets, daisy=True, seed=2)
    print(f"throughput, {args.packets} packets of 33 bytes, best of 3:")
    for label, data, is_daisy in (("clean 8-ch", clean, False), ("faults 1 % each", faulty, False),
                                  ("clean Daisy 16-ch", daisy, True)):
        for chunk in (1 << 20, 1 << 16, 4096, 33 * 4):
            part = data if chunk >= 4096 else data[: 33 * 100_000]  # small chunks: per-call overhead dominates
            n, rate = throughput(part, chunk, is_daisy, repeat=3 if chunk >= 4096 else 1)
            print(f"  {label:<18} chunks of {chunk:>7} bytes: {rate:>12,.0f} packets/s ({n} delivered)")
    for label, data in (("clean", clean), ("1 % faults of each kind", faulty)):
        decode_only, with_assembler = offline_latency(data[: 33 * 100_000])
        report(f"latency, 4-packet chunks, {label}: decoder alone", decode_only)
        report(f"latency, 4-packet chunks, {label}: decoder + run assembler (clock fit)", with_assembler)
    lat, received, lost = live_latency(args.seconds)
    report(f"latency, CytonBoard over a real-time pty for {args.seconds:g} s ({received} samples, {lost} lost)", lat)


if __name__ == "__main__":
    main()
