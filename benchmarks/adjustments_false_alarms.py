"""False alarms of the adjustment detectors on clean simulated nights of every device profile.

Target (issue 6): <= 0.1 false alarms per hour of clean recording. Nothing is injected here, so every
event is a false alarm.

Data: simulated nights (firmware_sim, seeded; no real EEG), ``--hours`` per device profile (64 by
default), 8-h nights, each with everything that is not an adjustment switched on: the simulator's
artefacts (movement, electrode pops, blinks, sweat drift) and mains line, a device clock off its
nominal rate by up to +/-0.3 % (the night is generated at the true rate and labelled with the nominal
one, so every rhythm and the mains line shift as they do on a real drifting crystal), packet loss
(random 0.5 % and bursts, written as 0 and passed as missing samples), and on every fourth night
one electrode railed or flat from a random time on. Each night is staged by dreamsync (the auditory
detector weighs NREM) and checked offline with ``dsp.adjustments.detect_adjustments``; with
``--live`` the live monitor runs too, fed 1-s blocks.

Also printed: detection compute against staging compute on the same nights (target: detection adds
< 10 % to staging a night).

Usage: python benchmarks/adjustments_false_alarms.py [--hours 64] [--profiles sim,muse-s] [--live]
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np

PROFILES = ("sim", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s")
NIGHT_HOURS = 8.0


def clean_night(profile: str, seed: int, hours: float):
    """A night with artefacts, mains, clock drift, packet loss (and some electrode faults); no adjustment.

    Returns (electrode data (n, samples) float64 uV with lost samples 0, fs, labels, valid mask,
    eeg row indices, what was switched on).
    """
    from firmware_sim.faults import FaultSpec, PacketFaults, apply_signal_faults, lost_samples
    from firmware_sim.headband import SimulatedHeadband
    from firmware_sim.profiles import get_profile

    rng = np.random.default_rng(seed)
    nominal = get_profile(profile).fs
    drift = float(rng.uniform(-0.003, 0.003))
    band = SimulatedHeadband(profile, hours=hours, seed=seed, fs=nominal * (1 + drift))
    data = band.read_all()
    electrodes = [i for i, k in enumerate(band.kinds) if k in ("EEG", "EOG", "EMG")]
    labels = [band.channels[i] for i in electrodes]
    eeg_labels = [band.channels[i] for i in electrodes if band.kinds[i] == "EEG"]
    fault = {}
    if seed % 4 == 3:
        which = "railed" if rng.random() < 0.5 else "flat"
        fault = {which: str(rng.choice(eeg_labels)), "fault_onset": float(rng.uniform(0.2, 0.8) * hours * 3600)}
    spec = FaultSpec(loss=0.005, burst=0.0005, **fault)
    apply_signal_faults(data, nominal, band.channels, spec, seed=seed)
    lost = lost_samples(PacketFaults(spec, seed=seed), data.shape[1], band.profile.samples_per_packet)
    x = np.asarray(data[electrodes], dtype=np.float64)
    x[:, lost] = 0.0
    eeg_rows = [r for r, i in enumerate(electrodes) if band.kinds[i] == "EEG"]
    switched = f"drift {drift * 100:+.2f} %, lost {lost.mean() * 100:.2f} %" + (
        f", {next(iter(fault))} {fault[next(iter(fault))]}" if fault else "")
    return x, nominal, labels, ~lost, eeg_rows, switched


def run_live(x: np.ndarray, fs: float, valid: np.ndarray) -> list:
    from dsp.adjustments import AdjustmentMonitor

    monitor = AdjustmentMonitor(fs, x.shape[0])
    step = int(round(fs))
    for a in range(0, x.shape[1], step):
        monitor.push(x[:, a:a + step], valid[a:a + step])
    return monitor.events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=64.0, help="hours of clean nights per profile (default 64)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="device profiles, comma-separated")
    parser.add_argument("--live", action="store_true", help="run the live monitor on every night too")
    parser.add_argument("--seed", type=int, default=1000, help="first night's seed")
    args = parser.parse_args()

    from dsp.adjustments import detect_adjustments
    from dsp.staging import stage

    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    nights = max(1, int(np.ceil(args.hours / NIGHT_HOURS)))
    print(f"data: simulated clean nights (no real EEG), {nights} x {NIGHT_HOURS:g} h per profile, "
          "artefacts + mains + clock drift + packet loss on")
    print(f"{'profile':<12}{'hours':>7}{'offline FA':>12}{'FA/h':>7}" + (f"{'live FA':>9}{'FA/h':>7}" if args.live else "")
          + f"{'stage s':>9}{'detect s':>9}{'ratio':>7}")
    total_h = total_off = total_live = 0.0
    t_stage = t_detect = 0.0
    kinds = collections.Counter()
    seed = args.seed
    first = True
    for profile in profiles:
        hours = off = live = 0
        p_stage = p_detect = 0.0
        for night in range(nights):
            x, fs, labels, valid, eeg_rows, switched = clean_night(profile, seed, NIGHT_HOURS)
            seed += 1
            eeg = np.where(valid, x[eeg_rows], np.nan).astype(np.float32)
            t0 = time.process_time()
            stages = stage(eeg, fs).stages
            t1 = time.process_time()
            events = detect_adjustments(x, fs, valid=valid, stages=stages)
            t2 = time.process_time()
            if not first:  # the first night pays for loading the numba kernels
                p_stage += t1 - t0
                p_detect += t2 - t1
            first = False
            hours += x.shape[1] / fs / 3600
            off += len(events)
            for e in events:
                kinds[e.kind] += 1
                print(f"  false alarm: {profile} seed {seed - 1} ({switched}) {e.kind} at {e.onset:.0f} s "
                      f"for {e.duration:.0f} s, score {e.score:.2f}: {e.evidence}")
            if args.live:
                alarms = run_live(x, fs, valid)
                live += len(alarms)
                for e in alarms:
                    print(f"  live false alarm: {profile} seed {seed - 1} {e.kind} at {e.onset:.0f} s: {e.evidence}")
            # a line per night, so a run stopped early still tells how many hours were clean
            print(f"  {profile} night {night + 1}/{nights} (seed {seed - 1}): {hours:.1f} h so far, offline FA {off}"
                  + (f", live FA {live}" if args.live else ""), flush=True)
        ratio = p_detect / p_stage if p_stage else float("nan")
        print(f"{profile:<12}{hours:7.1f}{off:12d}{off / hours:7.3f}"
              + (f"{live:9d}{live / hours:7.3f}" if args.live else "")
              + f"{p_stage:9.2f}{p_detect:9.2f}{ratio:7.2f}", flush=True)
        total_h += hours
        total_off += off
        total_live += live
        t_stage += p_stage
        t_detect += p_detect
    print(f"{'all':<12}{total_h:7.1f}{int(total_off):12d}{total_off / total_h:7.3f}"
          + (f"{int(total_live):9d}{total_live / total_h:7.3f}" if args.live else "")
          + f"{t_stage:9.2f}{t_detect:9.2f}{t_detect / t_stage if t_stage else float('nan'):7.2f}")
    if kinds:
        print("false alarms by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print("(stage s / detect s: CPU seconds of staging and of detection, first night excluded; "
          "ratio = detection / staging, target < 0.10)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
