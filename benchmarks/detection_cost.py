"""What adjustment detection costs against staging, on one simulated 8-h night.

Data: a simulated night (firmware_sim, no real EEG) with the staging benchmark's montage: 4 EEG
channels at 256 Hz. Times are CPU seconds of one process, the best of ``--repeats`` calls after a
first call that loads the numba kernels: ``dsp.staging.stage`` on the 4 channels and on one, each
detector alone (``detect_lines``, ``detect_auditory``, ``detect_tampering``) and all of them
through ``dsp.adjustments.detect_adjustments``. The target (issue 6): detection adds < 10 % to
the time of staging a night.

Usage: python benchmarks/detection_cost.py [--hours 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def best_cpu(fn, repeats: int) -> float:
    """Least CPU seconds of ``repeats`` calls of ``fn`` after one untimed call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0, help="length of the simulated night (default: 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after the first (best reported)")
    args = parser.parse_args()

    from dsp.adjustments import detect_adjustments
    from dsp.evoked import detect_auditory
    from dsp.lines import detect_lines
    from dsp.staging import stage
    from dsp.tampering import detect_tampering
    from firmware_sim.headband import SimulatedHeadband
    from staging_speed import montage_profile

    band = SimulatedHeadband(montage_profile(), hours=args.hours, seed=args.seed)
    x = np.asarray(band.read_all(), dtype=np.float64)
    fs = band.fs
    stages = stage(x, fs).stages
    print(f"data: simulated {args.hours:g}-h night, {x.shape[0]} EEG channels at {fs:g} Hz (no real EEG); "
          f"CPU s, best of {args.repeats} after a first call")
    rows = [("stage, all channels", lambda: stage(x, fs)), ("stage, one channel", lambda: stage(x[0], fs)),
            ("detect_lines", lambda: detect_lines(x, fs)),
            ("detect_auditory", lambda: detect_auditory(x, fs, stages=stages)),
            ("detect_tampering", lambda: detect_tampering(x, fs)),
            ("detect_adjustments (all)", lambda: detect_adjustments(x, fs, stages=stages))]
    times = {}
    for name, fn in rows:
        times[name] = best_cpu(fn, args.repeats)
        print(f"{name:<26}{times[name]:8.3f} s", flush=True)
    ratio = times["detect_adjustments (all)"] / times["stage, all channels"]
    print(f"detection / staging compute: {ratio:.1f}x (target < 0.1x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
