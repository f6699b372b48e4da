"""Cohort throughput: nights per minute with 1 and 2 worker processes, and the cost of a night.

Simulated 8-h nights (seeded, 4 channels at 256 Hz, about 64 MB of EDF+ each) are written to a
temporary folder, then ``dreamsync.cohort.run_cohort`` stages (or checks) all of them with each
worker count into a fresh output folder, so nothing is skipped. Figures are for simulated data:
they size a cluster, they say nothing about staging accuracy.

Reported per worker count: wall time of the whole run (worker start-up included), nights per
minute, speed-up over the first count, and per night the compute of the task in its worker (wall
and CPU s) and the CPU of the worker processes as a whole (start-up and imports included, local
pool only). Sizing: N nights cost about N x (worker CPU s per night) / 3600 core-hours; run one
single-threaded worker per core (``dask worker ADDRESS --nthreads 1 --nworkers CORES``).

Usage: python benchmarks/cohort_throughput.py [--nights 6] [--hours 8] [--workers 1,2] [--kind stage]
       [--scheduler tcp://HOST:8786]   (time an existing Dask cluster instead of local processes;
                                         the temporary folder must then be visible to its workers: --dir)
"""

import argparse
import os
import pathlib
import resource
import statistics
import tempfile
import time

from dreamsync.cohort import run_cohort
from dreamsync.pipeline import simulate_night


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=6, help="simulated nights (default: 6)")
    parser.add_argument("--hours", type=float, default=8.0, help="hours per night (default: 8)")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated (default: 1,2)")
    parser.add_argument("--kind", default="stage", choices=("stage", "detect", "report"))
    parser.add_argument("--scheduler", default=None, help="address of a Dask scheduler to time instead")
    parser.add_argument("--dir", default=None, help="folder for the nights and results (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = pathlib.Path(tmp)
        (root / "nights").mkdir()
        t0 = time.perf_counter()
        for seed in range(args.nights):
            simulate_night(str(root / "nights" / f"night{seed:03d}.edf"), hours=args.hours, seed=100 + seed)
        size = sum(f.stat().st_size for f in (root / "nights").glob("*.edf")) / args.nights / 1e6
        print(f"simulated {args.nights} nights of {args.hours:g} h ({size:.0f} MB of EDF+ each) in "
              f"{time.perf_counter() - t0:.0f} s [simulated data]")

        counts = [None] if args.scheduler else [int(n) for n in args.workers.split(",")]
        load, cores = os.getloadavg()[0], os.cpu_count()
        print(f"this machine: {cores} CPUs, load average {load:.1f} before the runs"
              + (" (busy: other processes share the cores, speed-ups will be low)" if load > 0.5 * cores else ""))
        print(f"\n{args.kind}, {args.nights} nights:")
        print(f"{'workers':>8} {'wall s':>8} {'nights/min':>11} {'speed-up':>9} {'steady n/min':>13} "
              f"{'task s/night':>13} {'task CPU s':>11} {'worker CPU s':>13}")
        base = None
        for n in counts:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = run_cohort(root / "nights", root / f"out-{n or 'dask'}", args.kind, workers=n,
                                scheduler=args.scheduler)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = [r for r in result.rows if r["status"] == "done"]
            if len(done) != args.nights:
                print(f"  {args.nights - len(done)} night(s) failed: {[r['error'] for r in result.failed]}")
            rate = len(done) / result.seconds * 60
            base = base or rate
            # steady state: each worker finishes a night every median task time (start-up and first-call
            # loading of a worker are the slow outliers a long cohort amortizes); unknown on a cluster
            steady = f"{n * 60 / statistics.median(r['compute_s'] for r in done):13.1f}" if n else f"{'-':>13}"
            children = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / max(1, len(done))
            worker_cpu = f"{children:13.1f}" if not args.scheduler else f"{'-':>13}"
            print(f"{n or 'dask':>8} {result.seconds:8.1f} {rate:11.2f} {rate / base:8.2f}x {steady} "
                  f"{statistics.mean(r['compute_s'] for r in done):13.2f} "
                  f"{statistics.mean(r['cpu_s'] for r in done):11.2f} {worker_cpu}")
        print("\nnights/min: the whole run, worker start-up included; steady n/min: workers x 60 / median task "
              "time (start-up amortized, as in a long cohort; the local worker count only); task s/night: mean "
              "wall time of a night inside its worker (first calls load the libraries); task CPU s: its CPU "
              "time; worker CPU s: CPU of the worker processes per night, hashing, start-up and imports "
              "included [simulated data]")


if __name__ == "__main__":
    main()
