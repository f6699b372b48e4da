"""How many simultaneous 4-channel 256-Hz streams ``LiveStager`` stages in real time on one core.

Target (issue): >= 1,000 simultaneous 4-channel 256-Hz streams staged in real time on one core;
each epoch's stage < 100 ms after its last sample arrives.

``--streams`` stagers (``dsp.staging.LiveStager(fs, n_eeg, n_emg)``) are fed round-robin, one block
each per round, as a server handling that many headbands would: 1-s blocks (what drivers deliver)
and 0.25-s blocks. Each stream starts at its own place in a precomputed simulated recording and is
first fed a random part of an epoch, so epochs end at different rounds, as they do for headbands
switched on at different times. Figures:

- CPU time (``time.process_time``) per stream-second of signal, and streams per core in real time
  (``1 / CPU seconds per stream-second``); the process is pinned to one CPU and every numerical
  library to one thread;
- the CPU time of a round at ``--streams`` streams: real time holds when a round of blocks is
  processed faster than a block lasts;
- latency, p50 and p99 over all epochs: from the arrival of the block that holds an epoch's last
  sample to that epoch's stage, i.e. the signal the stager waits for after that block (blocks arriving
  in real time; 0 when the same push returns the stage) plus the wall time of the push that returns
  it; and that push's CPU time alone (steadier on a shared machine);
- the warm-up apart: importing the stager, and the first epoch in this process (numba cache load,
  or compile when the cache is cold);
- the benchmark loop's own cost (feeding stagers that do nothing), and the memory a stager holds
  (tracemalloc).

Data: simulated EEG (firmware_sim, seeded; C3-M2, C4-M1, F3-M2, O1-M2 at 256 Hz) pushed as float32
blocks, the dtype the drivers deliver. Speed only: the stages are not checked.

Usage: python benchmarks/live_capacity.py [--streams 1000] [--seconds 240] [--blocks 1,0.25]
       [--eeg 4 --emg 0] [--profile]
"""

import os

# One thread for every numerical library, set before any of them is imported.
for _variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from staging_speed import FS_HZ, montage_profile  # noqa: E402  (benchmarks/ is on sys.path)

EPOCH_SECONDS = 30.0
TARGET_STREAMS, TARGET_LATENCY_MS = 1000, 100.0


def simulated_pool(seconds: float, seed: int) -> np.ndarray:
    """A simulated recording of the benchmark montage, float32, shape (4, samples)."""
    from firmware_sim.headband import SimulatedHeadband

    return SimulatedHeadband(montage_profile(), hours=seconds / 3600, seed=seed).read_all()


class IdleStager:
    """A stager that does nothing: feeding it measures the benchmark loop's own cost."""

    def __init__(self, fs: float, n_eeg: int = 1, n_emg: int = 0):
        pass

    def push(self, eeg, emg=None) -> list:
        return []


def state_kb_per_stream(stager_class, pool: np.ndarray, fs: float, n_eeg: int, n_emg: int, seed: int) -> float:
    """Memory a stream's stager holds (tracemalloc: Python objects and numpy buffers), in kB, averaged
    over 100 streams fed 45 s plus a random part of an epoch."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = feed(stager_class, pool, fs, 100, 45.0, 1.0, n_eeg, n_emg, seed, keep=True)
        return (tracemalloc.get_traced_memory()[0] - before) / 100 / 1e3 if kept else 0.0
    finally:
        tracemalloc.stop()


def feed(stager_class, pool: np.ndarray, fs: float, n_streams: int, seconds: float, block_seconds: float,
         n_eeg: int, n_emg: int, seed: int, keep: bool = False):
    """Feed ``n_streams`` stagers round-robin for ``seconds`` of signal each; return the measurements
    (with ``keep``, the stagers instead)."""
    n_block = int(round(block_seconds * fs))
    n_per_epoch = int(round(EPOCH_SECONDS * fs))
    rounds = int(round(seconds / block_seconds))
    rng = np.random.default_rng(seed)
    needed = n_per_epoch + rounds * n_block
    if pool.shape[1] < needed:
        raise SystemExit(f"the simulated pool ({pool.shape[1] / fs:.0f} s) is shorter than one stream's "
                         f"{needed / fs:.0f} s: raise --pool-hours")
    starts = rng.integers(0, pool.shape[1] - needed + 1, n_streams)
    eeg, emg = pool[:n_eeg], pool[n_eeg : n_eeg + n_emg]

    def push(stager, a: int, b: int) -> list:
        return stager.push(eeg[:, a:b], emg[:, a:b]) if n_emg else stager.push(eeg[:, a:b])

    stagers = [stager_class(fs, n_eeg=n_eeg, n_emg=n_emg) for _ in range(n_streams)]
    position = starts.copy()
    pre = rng.integers(0, n_per_epoch, n_streams)  # a random part of an epoch first: epochs end in different rounds
    for i, stager in enumerate(stagers):
        push(stager, position[i], position[i] + pre[i])
        position[i] += pre[i]

    # Per staged epoch: seconds of signal the stager waited for after the block holding the epoch's last
    # sample (0 when that very push returns it), and the wall and CPU seconds of the push that returned it.
    staged_epochs, round_cpu = [], []
    returned = np.zeros(n_streams, dtype=np.int64)  # epochs each stream has returned so far
    clock, cpu_clock = time.perf_counter, time.process_time
    cpu0 = cpu_clock()
    for r in range(rounds):
        r0 = cpu_clock()
        for i, stager in enumerate(stagers):
            a = position[i]
            t0, c0 = clock(), cpu_clock()
            staged = push(stager, a, a + n_block)
            wall, cpu = clock() - t0, cpu_clock() - c0
            position[i] = a + n_block
            for k in range(returned[i], returned[i] + len(staged)):  # epochs come back in order
                last_sample_round = ((k + 1) * n_per_epoch - 1 - pre[i]) // n_block
                staged_epochs.append(((r - last_sample_round) * block_seconds, wall, cpu))
            returned[i] += len(staged)
        round_cpu.append(cpu_clock() - r0)
    cpu = cpu_clock() - cpu0
    if keep:
        return stagers
    stream_seconds = n_streams * rounds * n_block / fs
    staged_epochs = np.array(staged_epochs).reshape(-1, 3)
    return {"cpu": cpu, "stream_seconds": stream_seconds, "epochs": len(staged_epochs),
            "wait_s": staged_epochs[:, 0], "latency_ms": (staged_epochs[:, 0] + staged_epochs[:, 1]) * 1e3,
            "compute_ms": staged_epochs[:, 2] * 1e3, "round_cpu_s": np.array(round_cpu)}


def profile_push(stager_class, pool: np.ndarray, args) -> None:
    """cProfile of 100 streams fed 1-s blocks for ``--seconds``: the top costs by own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(feed, stager_class, pool, FS_HZ, 100, args.seconds, 1.0, args.eeg, args.emg, args.seed)
    print("\n--- cProfile of the push loop (100 streams, 1-s blocks; the profiler inflates small calls), "
          "by own time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1000", help="simultaneous streams, or a comma list (default: 1000)")
    parser.add_argument("--seconds", type=float, default=240.0, help="signal fed to each stream (default: 240)")
    parser.add_argument("--blocks", default="1,0.25", help="block lengths in seconds (default: 1,0.25)")
    parser.add_argument("--eeg", type=int, default=4, help="EEG channels per stream given to the stager (default: 4)")
    parser.add_argument("--emg", type=int, default=0,
                        help="of the 4 channels, how many more are given as EMG (default: 0)")
    parser.add_argument("--pool-hours", type=float, default=1.0, help="simulated signal the streams draw from")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first available)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="also show where a push spends its time (cProfile, 100 streams, 1-s blocks)")
    args = parser.parse_args()
    if not (1 <= args.eeg and args.eeg + args.emg <= 4 and args.emg >= 0):
        parser.error("--eeg + --emg must be 1..4 (the montage has 4 channels), with at least one EEG")
    cpu = min(os.sched_getaffinity(0)) if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})

    t0 = time.perf_counter()
    pool = simulated_pool(args.pool_hours * 3600, args.seed)
    t_pool = time.perf_counter() - t0
    print(f"data: simulated EEG (seed {args.seed}), {pool.shape[1] / FS_HZ / 3600:g} h x {pool.shape[0]} channels "
          f"at {FS_HZ:g} Hz, float32 blocks (made in {t_pool:.1f} s); streams start at random places in it; "
          f"speed only")
    print(f"stager input per stream: {args.eeg} EEG + {args.emg} EMG channels; pinned to CPU {cpu}, one thread")

    t0 = time.perf_counter()
    from dsp.staging import LiveStager
    t_import = time.perf_counter() - t0
    n_per_epoch = int(round(EPOCH_SECONDS * FS_HZ))
    warm = LiveStager(FS_HZ, n_eeg=args.eeg, n_emg=args.emg)
    t0 = time.perf_counter()
    if args.emg:
        warm.push(pool[: args.eeg, :n_per_epoch], pool[args.eeg : args.eeg + args.emg, :n_per_epoch])
    else:
        warm.push(pool[: args.eeg, :n_per_epoch])
    t_first = time.perf_counter() - t0
    print(f"warm-up: import dsp.staging {t_import:.2f} s (numpy and scipy loaded before it); first epoch in "
          f"this process {t_first * 1e3:.0f} ms (numba cache load, or compile when the cache is cold)\n")

    print(f"{'streams':>8}{'block':>7}{'CPU us per':>12}{'streams':>10}{'round CPU s':>13}"
          f"{'latency ms':>18}{'compute ms, CPU':>17}{'wait s':>8}{'epochs':>8}")
    print(f"{'':>8}{'s':>7}{'stream-s':>12}{'per core':>10}{'p99':>7}{'max':>6}"
          f"{'p50':>9}{'p99':>9}{'p50':>9}{'p99':>8}{'max':>8}{'':>8}")
    for n_streams in (int(s) for s in args.streams.split(",")):
        for block in (float(b) for b in args.blocks.split(",")):
            m = feed(LiveStager, pool, FS_HZ, n_streams, args.seconds, block, args.eeg, args.emg, args.seed)
            per = m["cpu"] / m["stream_seconds"]
            if not m["epochs"]:
                print(f"{n_streams:>8}{block:>7g}: no epoch was staged; raise --seconds")
                continue
            lat50, lat99 = np.percentile(m["latency_ms"], [50, 99])
            cpu50, cpu99 = np.percentile(m["compute_ms"], [50, 99])
            rounds = m["round_cpu_s"]
            print(f"{n_streams:>8}{block:>7g}{per * 1e6:>12.1f}{1 / per:>10.0f}"
                  f"{np.percentile(rounds, 99):>7.3f}{rounds.max():>6.3f}"
                  f"{lat50:>9.2f}{lat99:>9.2f}{cpu50:>9.2f}{cpu99:>8.2f}{m['wait_s'].max():>8.2f}{m['epochs']:>8}",
                  flush=True)
    idle = []
    for block in (float(b) for b in args.blocks.split(",")):
        m = feed(IdleStager, pool, FS_HZ, 1000, args.seconds, block, args.eeg, args.emg, args.seed)
        idle.append(f"{m['cpu'] / m['stream_seconds'] * 1e6:.1f} us ({block:g}-s blocks)")
    print(f"the loop alone (a stager that does nothing), per stream-second: {', '.join(idle)}")
    state = state_kb_per_stream(LiveStager, pool, FS_HZ, args.eeg, args.emg, args.seed)
    print(f"memory held per stream: {state:.0f} kB (traced, mean of 100 streams part-way through an epoch)")
    print(f"\ntargets: >= {TARGET_STREAMS} streams per core (CPU per stream-second <= "
          f"{1e6 / TARGET_STREAMS:.0f} us); the round of all streams' blocks within one block length; "
          f"latency < {TARGET_LATENCY_MS:g} ms")
    print("(CPU includes the loop's own cost, above. Latency, wall time: from the block holding an epoch's last "
          "sample to its stage, i.e. the signal the stager waits for after that block (wait s: 0 when that push "
          "returns the stage; blocks arrive in real time) plus the compute of the push that returns it; queueing "
          "behind other streams in the round is not included)")
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(the simulated pool is {pool.nbytes / 1e6:.0f} MB)")
    if args.profile:
        profile_push(LiveStager, pool, args)


if __name__ == "__main__":
    main()
