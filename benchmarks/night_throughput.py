"""Time and memory of a simulated 8-h night: simulate, stage offline, stage live epoch by epoch.

Figures are for simulated signals (seeded); agreement with the simulator's truth is a consistency
check, not accuracy on people.

Usage: python benchmarks/night_throughput.py [--hours 8] [--seed 1]
"""

import argparse
import resource
import time

import numpy as np

from dsp.agreement import agreement
from dsp.staging import LiveStager, stage
from firmware_sim.headband import SimulatedHeadband


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    stage(np.random.default_rng(0).normal(0, 20, 256 * 60), 256.0)  # compile/load kernels first

    t0 = time.perf_counter()
    band = SimulatedHeadband(hours=args.hours, seed=args.seed)
    data = band.read_all()
    t_sim = time.perf_counter() - t0
    print(f"simulate: {args.hours:g} h x {data.shape[0]} channels at {band.fs:g} Hz in {t_sim:.2f} s")

    t0 = time.perf_counter()
    result = stage(data[0], band.fs, emg=data[3])
    t_off = time.perf_counter() - t0
    a = agreement(band.hypnogram, result.stages)
    print(f"offline staging (1 EEG + 1 EMG): {t_off:.2f} s for {len(result.stages)} epochs; "
          f"agreement with simulated truth {a.accuracy:.3f} (kappa {a.kappa:.3f}) [simulated data]")

    stager = LiveStager(band.fs, n_eeg=1, n_emg=1)
    n = int(30 * band.fs)
    per_epoch = []
    for i in range(0, data.shape[1] - n + 1, n):
        stager.push(data[:1, i:i + n - 1], data[3:4, i:i + n - 1])
        t0 = time.perf_counter()
        stager.push(data[:1, i + n - 1:i + n], data[3:4, i + n - 1:i + n])  # the sample that ends the epoch
        per_epoch.append(time.perf_counter() - t0)
    ms = np.array(per_epoch) * 1000
    print(f"live: compute per epoch after its last sample: median {np.median(ms):.2f} ms, "
          f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms over {ms.size} epochs")
    print(f"live: epoch compute alone would allow ~{30_000 / np.median(ms):.0f} real-time streams per core "
          "(excludes decoding and buffering)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
