"""Adjustment detection measured on real EEG: injections into the DREAMS development excerpts.

Data: DREAMS Sleep Spindles DB excerpts 1-4 (real EEG, 4 people, 30 min each, one lead each: C3-A1
100 Hz, CZ-A1 200 Hz, C3-A1 50 Hz, CZ-A1 200 Hz), read in place from ../shared (never copied).
Each adjustment is injected with the firmware_sim injectors (``firmware_sim.adjustments``), one
episode per run, placed at random where its policy allows on the expert hypnogram, at a range of
strengths, ``--seeds`` runs per excerpt and strength:

- auditory: closed-loop clicks (Ngo 2013) and open-loop cues, 10-min episodes in N2/N3, N550 of
  10-60 uV at a frontal lead (these central leads see 0.9 of it); the -80 uV trough threshold of the
  closed loop;
- electrical: two 5-min tACS blocks with a 1-min pause, at 0.75, 5, 12 or 40 Hz (cycling with the
  seed; only below 0.8 x Nyquist), 0.5-50 uV, harmonics, ramps, heartbeat/respiration modulation;
  and tDCS (no oscillation, a DC shift of 10-200 uV);
- entrainment: a 5-min steady-state response at 40 Hz (6 Hz where 40 Hz is above 0.8 x Nyquist),
  0.5-5 uV;
- tampering: a replayed, spliced (from another excerpt, i.e. another person, resampled to the rate)
  or time-warped (x0.9-1.1) segment of 5-60 s, hard cuts or 1-s cross-fades (alternating).

Reported per kind and strength: episodes found (recall), precision of the detections of that kind,
event F1, and the live time to detection (the 1-s block whose end first raises an alarm of the
right kind overlapping the episode, minus the episode's onset), median and worst; then, at the
issue's realistic strengths, F1 per kind and kind accuracy; and false alarms per hour on the four
clean excerpts (offline and live). A detection overlapping a true episode of its kind is correct;
one overlapping none is a false alarm. Episodes are scored offline with ``detect_adjustments``
given the stages of dreamsync's own stager (not the expert's).

Usage: python benchmarks/adjustments_dreams.py [--seeds 3] [--kinds auditory,electrical,...] [--no-live]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import warnings

import numpy as np

DREAMS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "dreams-spindles"
RATES_HZ = {1: 100.0, 2: 200.0, 3: 50.0, 4: 200.0}  # from the database's documentation
KINDS = ("auditory", "electrical", "entrainment", "tampering")
#: The issue's realistic strengths: N550 of 30-60 uV, components of a few uV and up, segments >= 30 s.
REALISTIC = {"auditory": lambda s: s >= 30, "electrical": lambda s: s >= 2, "entrainment": lambda s: s >= 2,
             "tampering": lambda s: s >= 30}


def load_excerpts():
    from dsp.stages import from_labels
    from ingest.dreams import read_dreams_hypnogram, read_dreams_signal

    out = {}
    for number, fs in RATES_HZ.items():
        x = np.asarray(read_dreams_signal(DREAMS / f"excerpt{number}.txt")[1], dtype=np.float64)
        hyp = np.asarray(from_labels(read_dreams_hypnogram(DREAMS / f"Hypnogram_excerpt{number}.txt")))
        out[number] = (x, fs, hyp)
    return out


def conditions(kind: str, fs: float, run: int, excerpts, number: int):
    """(label, strength, adjustment) for every strength of a kind at this excerpt's rate; the variant
    (loop mode, frequency, tampering mode, cross-fade) cycles with the excerpt and run number."""
    from scipy.signal import resample_poly

    from firmware_sim.adjustments import Auditory, Electrical, Entrainment, Tampering

    nyquist = fs / 2
    if kind == "auditory":
        mode = ("closed_loop", "open_loop")[(number + run) % 2]
        for n550 in (10, 20, 30, 45, 60):
            yield f"{mode} N550", n550, Auditory(mode=mode, n550_uv=n550, duration_s=600.0, stages=(2, 3),
                                                stim_stages=(2, 3))
    elif kind == "electrical":
        freqs = [f for f in (0.75, 5.0, 12.0, 40.0) if f < 0.8 * nyquist]
        f = freqs[(number + run) % len(freqs)]
        for amp in (0.5, 1, 2, 5, 10, 50):
            yield "tACS uV", amp, Electrical(frequency_hz=f, amplitude_uv=amp, n_blocks=2, block_s=300.0,
                                             pause_s=60.0, stages=None, settle_s=0.0)
        for dc in (10, 50, 200):
            yield "tDCS uV", dc, Electrical(amplitude_uv=0.0, dc_uv=dc, harmonics=(), n_blocks=2, block_s=300.0,
                                            pause_s=60.0, stages=None, settle_s=0.0)
    elif kind == "entrainment":
        f = 40.0 if 40.0 < 0.8 * nyquist else 6.0
        for amp in (0.5, 1, 2, 3, 5):
            yield f"{f:g}-Hz SSR uV", amp, Entrainment(frequency_hz=f, amplitude_uv=amp, duration_s=300.0)
    else:
        mode = ("replay", "splice", "warp")[(number + run) % 3]
        fade = float((number + run) // 3 % 2)
        for duration in (5, 10, 30, 60):
            extra = {}
            if mode == "splice":
                other = 1 + number % 4
                donor, donor_fs, _ = excerpts[other]
                extra = {"donor": resample_poly(donor, int(fs), int(donor_fs)), "donor_label": f"excerpt {other}"}
            yield f"{mode} s", duration, Tampering(mode=mode, duration_s=float(duration), crossfade_s=fade, **extra)


def live_latency(x: np.ndarray, fs: float, truth: list, kind: str):
    """Seconds from the episode's onset to the end of the block that first raised a matching alarm (None: never)."""
    from dsp.adjustments import AdjustmentMonitor

    monitor = AdjustmentMonitor(fs, x.shape[0])
    step = int(round(fs))
    episodes = [t for t in truth if t["kind"] == kind]
    for a in range(0, x.shape[1], step):
        for e in monitor.push(x[:, a:a + step]):
            hit = [t for t in episodes if e.kind == kind and e.overlaps(t["onset"], t["onset"] + t["duration"])]
            if hit:
                return min(a + step, x.shape[1]) / fs - hit[0]["onset"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="runs per excerpt and strength (default 3)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="kinds to inject, comma-separated")
    parser.add_argument("--no-live", action="store_true", help="skip the live monitor (offline figures only)")
    args = parser.parse_args()
    if not (DREAMS / "excerpt1.txt").is_file():
        print(f"skipped: {DREAMS} is not present")
        return 0

    from dsp.adjustments import detect_adjustments
    from dsp.events import score_events
    from dsp.staging import stage
    from firmware_sim.adjustments import inject

    excerpts = load_excerpts()
    print("data: DREAMS excerpts 1-4, real EEG, 4 people, 30 min each (2 h), adjustments injected by firmware_sim")
    clean_hours = sum(x.size / fs for x, fs, _ in excerpts.values()) / 3600
    off_fa = live_fa = 0
    for number, (x, fs, hyp) in excerpts.items():
        events = detect_adjustments(x, fs, stages=stage(x[None, :], fs).stages)
        off_fa += len(events)
        for e in events:
            print(f"  clean excerpt {number}: false alarm {e.kind} at {e.onset:.0f} s: {e.evidence}")
        if not args.no_live:
            from dsp.adjustments import AdjustmentMonitor

            monitor = AdjustmentMonitor(fs, 1)
            for a in range(0, x.size, int(fs)):
                monitor.push(x[None, a:a + int(fs)])
            live_fa += len(monitor.events)
            for e in monitor.events:
                print(f"  clean excerpt {number}: live false alarm {e.kind} at {e.onset:.0f} s: {e.evidence}")
    print(f"clean excerpts: {clean_hours:.1f} h, false alarms offline {off_fa} ({off_fa / clean_hours:.2f}/h)"
          + ("" if args.no_live else f", live {live_fa} ({live_fa / clean_hours:.2f}/h)"))

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    summary = {}
    print(f"{'kind':<12}{'condition':<16}{'strength':>9}{'runs':>6}{'recall':>8}{'prec':>7}{'F1':>7}"
          f"{'kind acc':>9}{'live s med/max':>16}")
    for kind in kinds:
        cells: dict = {}
        for number, (x, fs, hyp) in excerpts.items():
            for seed in range(args.seeds):
                run_seed = 1000 * number + seed
                for label, strength, adj in conditions(kind, fs, seed, excerpts, number):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # "fewer episodes placed"
                        adjusted, truth = inject(x, fs, hyp, [adj], run_seed)
                    if not truth:
                        continue
                    stages = stage(adjusted[None, :], fs).stages
                    detected = detect_adjustments(adjusted, fs, stages=stages)
                    cell = cells.setdefault((label, strength), {"scores": None, "latency": [], "missed_live": 0})
                    s = score_events(detected, truth, kind=kind)
                    cell["scores"] = s if cell["scores"] is None else cell["scores"] + s
                    if not args.no_live:
                        lat = live_latency(adjusted[None, :], fs, truth, kind)
                        if lat is None:
                            cell["missed_live"] += 1
                        else:
                            cell["latency"].append(lat)
        for (label, strength), cell in sorted(cells.items()):
            s = cell["scores"]
            lat = cell["latency"]
            live = (f"{statistics.median(lat):7.1f}/{max(lat):5.1f}" if lat else "      -/-  ") + (
                f" ({cell['missed_live']} missed)" if cell["missed_live"] else "")
            print(f"{kind:<12}{label:<16}{strength:>9g}{s.n_true:>6}{s.recall:8.2f}{s.precision:7.2f}{s.f1:7.2f}"
                  f"{s.kind_accuracy:9.2f}  {live}", flush=True)
            if REALISTIC[kind](strength):
                agg = summary.setdefault(kind, {"scores": None, "latency": [], "missed_live": 0})
                agg["scores"] = s if agg["scores"] is None else agg["scores"] + s
                agg["latency"] += lat
                agg["missed_live"] += cell["missed_live"]
    print("at realistic strengths (auditory N550 >= 30 uV, electrical/entrainment >= 2 uV, tampering >= 30 s):")
    for kind, agg in summary.items():
        s, lat = agg["scores"], agg["latency"]
        print(f"  {kind:<12} episodes {s.n_true:4d}  recall {s.recall:.3f}  precision {s.precision:.3f}  "
              f"F1 {s.f1:.3f}  kind accuracy {s.kind_accuracy:.3f}  live: median {statistics.median(lat) if lat else float('nan'):.1f} s,"
              f" worst {max(lat) if lat else float('nan'):.1f} s, {agg['missed_live']} never flagged live")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
