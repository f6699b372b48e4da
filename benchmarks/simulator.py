"""Time to generate a whole simulated night, per device profile (target: 8 h x 8 ch x 250 Hz <= 10 s).

Usage: python benchmarks/simulator.py [--hours 8] [--profiles cyton,cyton-daisy,muse-s]
Run it pinned to one core (taskset -c 0 ...) to measure "on one core".
"""

import argparse
import resource
import time

from firmware_sim.headband import SimulatedHeadband


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--profiles", default="cyton,cyton-daisy,ganglion,muse-s,sim")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name in args.profiles.split(","):
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        band = SimulatedHeadband(name, hours=args.hours, seed=args.seed)
        data = band.read_all()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        n_exg = sum(k != "ACC" for k in band.kinds)
        print(f"{name:<12} {args.hours:g} h, {n_exg} ExG + {len(band.kinds) - n_exg} ACC channels at {band.fs:g} Hz: "
              f"{wall:5.2f} s wall, {cpu:5.2f} s CPU, {data.nbytes / 1e6:6.0f} MB of float32, "
              f"{len(band.events)} truth events")
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
