"""Speed and memory of staging an 8-h, 4-channel, 256-Hz EDF: dreamsync against YASA's SleepStaging.

Targets (issue): compute >= 50x faster than ``yasa.SleepStaging``; the whole ``dreamsync stage``
process >= 10x faster than a YASA script doing the same; peak memory <= 1/4 of YASA's.

Data: a simulated night (firmware_sim, seeded; EEG C3-M2, C4-M1, F3-M2, O1-M2 at 256 Hz) written to
EDF+ in a temporary directory, never in the project. Speed and memory only: agreement is not
measured here (see ``staging_dreams.py``). The compute runs stage one channel, the EEG lead
dreamsync's channel picker ranks first (C3-M2), and dreamsync also all four; the processes stage the
file as each tool does (YASA: that one channel; dreamsync: the channels its picker chooses).

- compute: ``dsp.staging.stage`` on the channel's samples against
  ``yasa.SleepStaging(raw, eeg_name=...).predict()`` on an ``mne.io.RawArray`` of the same samples,
  each in its own process, file reading excluded; the first call (numba cache load, YASA's model
  load and just-in-time compiling) is reported apart and the figure is the median of ``--repeats`` calls after it
  in each of ``--rounds`` processes, ours and YASA's alternating (a machine whose speed drifts over minutes
  then slows both alike); each round's ratio is printed too;
- whole process: ``dreamsync stage FILE --out OUT.json`` against a YASA script that reads the same
  channel with ``mne.io.read_raw_edf``, runs SleepStaging and writes the hypnogram with confidence,
  hypnodensity and sleep statistics as JSON; wall time, CPU time and peak RSS of the child process
  (``os.wait4``), median of ``--runs`` runs. Each timed run follows an untimed run of the same
  command, which warms what a user's second run finds warm: the OS file cache, numba's cache and
  every module's bytecode (kept in the temporary directory). Right before, not once at the start:
  a machine that pages out file cache left unused for a minute or so (e.g. a VM under DAMON
  reclaim) would otherwise make the shorter process re-read its libraries and the EDF from disk
  while the other ran.

This script imports only the standard library: the night is made and every measurement taken in
child processes, so the children's peak RSS does not inherit this process's memory. YASA runs in
the interpreter given by ``--yasa-python`` (a separate venv keeps it out of the dev environment:
``python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -e . yasa``).

With ``--yasa-results FILE``, YASA's figures are measured once, saved there, and read back on later
runs with the same night and options (YASA takes minutes; dreamsync's side is what changes between
runs). The machine's load may differ between the runs: say so when quoting such ratios.

Usage: python benchmarks/staging_speed.py [--yasa-python /tmp/benchvenv/bin/python]
       [--hours 8] [--repeats 5] [--runs 3] [--rounds 3] [--one-core] [--profile] [--keep] [--yasa-results FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FS_HZ = 256.0
#: The simulated montage: four EEG leads, so the channel picker finds EEG by its labels.
MONTAGE = ("EEG C3-M2", "EEG C4-M1", "EEG F3-M2", "EEG O1-M2")
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TARGET_COMPUTE, TARGET_PROCESS, TARGET_MEMORY = 50.0, 10.0, 0.25

# A user's YASA script doing what `dreamsync stage` does: one EEG channel in, a JSON hypnogram out.
YASA_SCRIPT = '''\
"""Stage an EDF with YASA: read one EEG channel, SleepStaging, write a JSON hypnogram."""
import json
import sys

import mne
import yasa

path, channel, out = sys.argv[1:4]
raw = mne.io.read_raw_edf(path, include=[channel], preload=True, verbose="error")
hyp = yasa.SleepStaging(raw, eeg_name=channel).predict()
proba = hyp.proba
doc = {
    "epoch_length": 30.0,
    "stages": [str(s) for s in hyp.hypno],
    "confidence": proba.max(axis=1).round(4).tolist(),
    "hypnodensity": {str(c): proba[c].round(4).tolist() for c in proba.columns},
    "statistics": hyp.sleep_statistics(),
}
with open(out, "w") as fh:
    json.dump(doc, fh, default=float)
print(f"wrote {out}: {len(doc['stages'])} epochs staged from {channel}")
'''


def montage_profile():
    """The firmware_sim device profile of the benchmark montage (4 EEG channels at 256 Hz)."""
    from firmware_sim.profiles import DeviceProfile

    return DeviceProfile("bench-4eeg", MONTAGE, ("EEG",) * len(MONTAGE), FS_HZ,
                         "benchmark montage: central, frontal and occipital EEG")


# ---------------------------------------------------------------- child processes (numeric work)

def child_generate(folder: str, hours: float, seed: int) -> dict:
    """Simulate the night, write it as EDF+, read it back and keep the samples for the compute runs."""
    import datetime as dt

    import numpy as np

    from firmware_sim.headband import SimulatedHeadband
    from ingest.channels import pick_staging_channel
    from ingest.edf import read_edf, write_edf

    t0 = time.perf_counter()
    band = SimulatedHeadband(montage_profile(), hours=hours, seed=seed)
    data = band.read_all()
    t_sim = time.perf_counter() - t0
    edf = os.path.join(folder, "night.edf")
    t0 = time.perf_counter()
    write_edf(edf, data, band.fs, band.channels, band.kinds, start=dt.datetime(2024, 1, 1, 23, 0))
    t_write = time.perf_counter() - t0
    rec = read_edf(edf)
    picked = pick_staging_channel(rec.labels, [s.kind for s in rec.signals])
    order = [picked] + [i for i in range(len(rec.signals)) if i != picked]  # the staged channel first
    np.save(os.path.join(folder, "eeg.npy"), np.stack([rec.read(i) for i in order]))
    return {"edf": edf, "labels": [rec.labels[i] for i in order], "fs": rec.signals[picked].fs,
            "seconds": rec.duration, "edf_mb": os.path.getsize(edf) / 1e6, "simulate_s": t_sim, "write_s": t_write}


def _timed(fn, repeats: int) -> tuple:
    """Wall and CPU seconds (all threads) of ``repeats`` calls of ``fn``: two lists."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _traced_peak_mb(fn) -> float:
    """Peak of the memory traced by tracemalloc (Python objects and numpy buffers) during ``fn()``."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def child_ours_compute(npy: str, fs: float, repeats: int) -> dict:
    """``dsp.staging.stage`` on the staged channel, and on all channels, in a fresh process."""
    import resource

    t0 = time.perf_counter()
    import numpy as np

    from dsp.staging import stage
    t_import = time.perf_counter() - t0
    x = np.load(npy)
    eeg = x[0]
    t0 = time.perf_counter()
    n_epochs = len(stage(eeg, fs).stages)
    first = time.perf_counter() - t0
    one, one_cpu = _timed(lambda: stage(eeg, fs), repeats)
    every, _ = _timed(lambda: stage(x, fs), repeats)
    traced = _traced_peak_mb(lambda: stage(eeg, fs))
    return {"import_s": t_import, "first_s": first, "times_s": one, "cpu_s": one_cpu, "all_channels_s": every,
            "epochs": n_epochs,
            "traced_peak_mb": traced, "input_mb": eeg.nbytes / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_yasa_compute(npy: str, fs: float, label: str, repeats: int) -> dict:
    """``yasa.SleepStaging(raw, eeg_name).predict()`` on a RawArray of the staged channel, fresh process."""
    import resource

    t0 = time.perf_counter()
    import mne
    import numpy as np
    import yasa
    t_import = time.perf_counter() - t0
    mne.set_log_level("ERROR")
    eeg = np.load(npy)[0]
    raw = mne.io.RawArray(eeg[None, :] * 1e-6, mne.create_info([label], fs, ["eeg"]), verbose=False)  # uV -> V

    def run():
        return yasa.SleepStaging(raw, eeg_name=label).predict()

    t0 = time.perf_counter()
    n_epochs = len(run().hypno)
    first = time.perf_counter() - t0
    times, cpu = _timed(run, repeats)
    traced = _traced_peak_mb(run)
    return {"import_s": t_import, "first_s": first, "times_s": times, "cpu_s": cpu, "epochs": n_epochs,
            "traced_peak_mb": traced,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "yasa": yasa.__version__}


# ---------------------------------------------------------------- this process: orchestration only

def run_child(cmd: list, cwd: str, env: dict) -> tuple:
    """Run ``cmd``; return (wall seconds, peak RSS in MB, CPU seconds (user + system), stdout text).

    The peak RSS is the child's own (``os.wait4``), not the maximum over all children so far.
    """
    out_path, err_path = os.path.join(cwd, "child.out"), os.path.join(cwd, "child.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = pathlib.Path(out_path).read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{pathlib.Path(err_path).read_text()}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text


def run_json(python: str, mode: str, args: list, cwd: str, env: dict) -> dict:
    """Run one of this script's child modes in ``python``; return the JSON it prints."""
    *_, text = run_child([python, os.path.abspath(__file__), mode, *map(str, args)], cwd, env)
    return json.loads(text.strip().splitlines()[-1])


def versions(python: str, modules: str, cwd: str, env: dict) -> str:
    """``"numpy 2.4.6, scipy ..."`` for the comma-separated ``modules`` as ``python`` imports them."""
    code = ("import importlib, sys\nout = []\nfor m in sys.argv[1].split(','):\n"
            "    try:\n        out.append(f'{m} {importlib.import_module(m).__version__}')\n"
            "    except Exception:\n        out.append(f'{m} -')\nprint(', '.join(out))")
    done = subprocess.run([python, "-c", code, modules], cwd=cwd, env=env, capture_output=True, text=True)
    return done.stdout.strip()


def pooled(rounds: list) -> dict:
    """The compute figures of several child runs as one: the first run's, with the timed calls of
    all of them, and each run's median wall time in ``round_medians_s``."""
    out = dict(rounds[0])
    for name in ("times_s", "cpu_s", "all_channels_s"):
        if name in out:
            out[name] = [t for r in rounds for t in r[name]]
    out["round_medians_s"] = [statistics.median(r["times_s"]) for r in rounds]
    return out


def ratio_line(name: str, ours: float, yasa: float, unit: str, ratio: float, target: str, met: bool) -> str:
    return f"{name:<36}{ours:>10.2f}{yasa:>10.2f} {unit:<3}{ratio:>9.2f}   {target:<10}{'met' if met else 'NOT met'}"


def _process_line(name: str, runs: list) -> str:
    return (f"{name} process: wall {', '.join(f'{w:.2f}' for w, _, _ in runs)} s; CPU "
            f"{', '.join(f'{c:.2f}' for _, _, c in runs)} s; peak RSS {', '.join(f'{m:.0f}' for _, m, _ in runs)} MB")


def report_against_yasa(ours: dict, theirs: dict, runs: dict, folder: str) -> None:
    """Print YASA's figures and the ratios against the targets."""
    med = statistics.median
    yasa_out = json.loads(pathlib.Path(folder, "yasa.json").read_text())
    print(f"YASA {theirs['yasa']} compute: first call {theirs['first_s']:.2f} s (import {theirs['import_s']:.2f} s), "
          f"then median {med(theirs['times_s']):.3f} s of {len(theirs['times_s'])} calls "
          f"({', '.join(f'{t:.3f}' for t in theirs['times_s'])}); {theirs['epochs']} epochs; tracemalloc peak "
          f"{theirs['traced_peak_mb']:.0f} MB")
    print(_process_line("YASA script", runs["yasa"]) + f"; {len(yasa_out['stages'])} epochs")

    print(f"\n{'median of repeats':<36}{'dreamsync':>10}{'YASA':>10}{'':<4}{'ratio':>9}   {'target':<10}")
    rows = [("compute, wall time", med(ours["times_s"]), med(theirs["times_s"]), "s", TARGET_COMPUTE),
            ("compute, CPU time", med(ours["cpu_s"]), med(theirs["cpu_s"]), "s", TARGET_COMPUTE),
            ("whole process, wall time", med(r[0] for r in runs["ours"]), med(r[0] for r in runs["yasa"]), "s",
             TARGET_PROCESS),
            ("whole process, CPU time", med(r[2] for r in runs["ours"]), med(r[2] for r in runs["yasa"]), "s",
             TARGET_PROCESS)]
    for name, o, y, unit, target in rows:
        print(ratio_line(name, o, y, unit, y / o, f">= {target:g}x", y / o >= target))
    o, y = med(r[1] for r in runs["ours"]), med(r[1] for r in runs["yasa"])
    print(ratio_line("whole process, peak RSS", o, y, "MB", o / y, f"<= {TARGET_MEMORY:g}", o / y <= TARGET_MEMORY))
    per_round = [y / o for o, y in zip(ours["round_medians_s"], theirs.get("round_medians_s", []))]
    if per_round:
        print(f"{'compute, wall time, each round':<36}{'':>20}{'':<4}{min(per_round):>9.2f}   (lowest of "
              f"{', '.join(f'{r:.1f}' for r in per_round)}; {sum(r >= TARGET_COMPUTE for r in per_round)} of "
              f"{len(per_round)} rounds >= {TARGET_COMPUTE:g}x)")
    print("(ratios: YASA / dreamsync for time, dreamsync / YASA for memory. Targets are on wall time; CPU time, "
          "all threads, is the steadier figure on a shared machine. Compute excludes file reading and the first "
          "call; processes include interpreter start, imports, reading, staging, writing)")


def profile_stage(python: str, edf: str, npy: str, fs: float, folder: str, env: dict) -> None:
    """Where `dreamsync stage` spends its time and memory: cProfile of the whole process and of the
    compute alone, resident memory of its imports, and the traced allocations alive at its peak."""
    import pstats

    prof = os.path.join(folder, "stage.prof")
    run_child([python, "-m", "cProfile", "-o", prof, "-m", "dreamsync", "stage", edf, "--out",
               os.path.join(folder, "profiled.json")], folder, env)
    stats = pstats.Stats(prof, stream=sys.stdout)
    print("\n--- cProfile of the `dreamsync stage` process (fresh, numba cache warm), by cumulative time")
    stats.sort_stats("cumulative").print_stats(30)
    print("--- the same, by own time")
    stats.sort_stats("tottime").print_stats(15)
    prof = os.path.join(folder, "compute.prof")
    run_json(python, "_profile-compute", [npy, fs, prof], folder, env)
    print("--- cProfile of the compute alone: dsp.staging.stage on one channel, after a warm-up call, by own time")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)

    traced = run_json(python, "_trace-stage", [edf, os.path.join(folder, "traced.json")], folder, env)
    imports = run_json(python, "_import-rss", [",".join(traced["modules"])], folder, env)
    print(f"--- memory: importing the {len(traced['modules'])} modules a `dreamsync stage` run loads takes "
          f"{imports['peak_rss_mb']:.0f} MB resident ({imports['seconds']:.2f} s); the run's traced allocations "
          f"(Python objects, numpy buffers) peak at {traced['peak_mb']:.0f} MB on top (second run in one process)")
    print("    call stack at the traced peak (innermost last):")
    for line in traced["stack"]:
        print(f"      {line}")
    print("    allocations alive at the traced peak, by line:")
    for line in traced["sites"]:
        print(f"      {line}")


def child_profile_compute(npy: str, fs: float, out: str) -> dict:
    import cProfile

    import numpy as np

    from dsp.staging import stage

    eeg = np.load(npy)[0]
    stage(eeg, fs)
    cProfile.runctx("stage(eeg, fs)", globals(), {"stage": stage, "eeg": eeg, "fs": fs}, out)
    return {}


def child_trace_stage(edf: str, out: str) -> dict:
    """Run `dreamsync stage` twice in this process; on the second, find the traced-memory peak, the call
    stack at it and the allocation sites alive then (a snapshot at each new high by 2 MB or more)."""
    import tracemalloc

    from dreamsync.cli import main

    argv = ["stage", edf, "--out", out, "--quiet"]
    main(argv)  # load modules and numba caches first: the peak of interest is the staging's
    modules = sorted(m for m in sys.modules if not m.startswith("__") and not m.endswith("__main__"))
    high = {"bytes": 0, "snapshot": None, "stack": []}

    def watch(frame, event, arg):
        current = tracemalloc.get_traced_memory()[0]
        if current > high["bytes"] + 2_000_000:
            high["snapshot"] = None  # free the previous one before taking the next
            high["snapshot"] = tracemalloc.take_snapshot()
            high["bytes"] = current
            stack = []
            while frame is not None:
                stack.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
                frame = frame.f_back
            high["stack"] = stack[:10][::-1]

    tracemalloc.start()
    sys.setprofile(watch)
    try:
        main(argv)
    finally:
        sys.setprofile(None)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    sites = []
    if high["snapshot"] is not None:
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
        for s in high["snapshot"].filter_traces(ignore).statistics("lineno")[:10]:
            sites.append(f"{s.size / 1e6:7.1f} MB  {s.traceback[0].filename}:{s.traceback[0].lineno}")
    return {"peak_mb": peak, "stack": high["stack"], "sites": sites, "modules": modules}


def child_import_rss(modules: str) -> dict:
    """Resident memory after importing ``modules`` (comma-separated) in a fresh process."""
    import importlib
    import resource

    t0 = time.perf_counter()
    for name in modules.split(","):
        try:
            importlib.import_module(name)
        except Exception:  # a module only importable as a side effect of another: skip it
            pass
    return {"seconds": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _saved_yasa(path: str | None, key: dict) -> dict | None:
    """YASA's figures saved by an earlier run with the same ``key`` (night and options), if any."""
    if not path or not os.path.isfile(path):
        return None
    try:
        saved = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None
    return saved if saved.get("key") == key else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0, help="length of the simulated night (default: 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="compute calls after the first (median reported)")
    parser.add_argument("--runs", type=int, default=3, help="timed whole-process runs of each (median reported)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="compute processes of each, alternating (their calls pooled; default: 3)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with dreamsync (default: this one)")
    parser.add_argument("--yasa-python", default="/tmp/benchvenv/bin/python",
                        help="interpreter with yasa and mne (default: /tmp/benchvenv/bin/python)")
    parser.add_argument("--one-core", action="store_true",
                        help="pin every child to one CPU and one thread (numba, OpenMP, MKL, OpenBLAS)")
    parser.add_argument("--profile", action="store_true", help="also profile `dreamsync stage` (time and memory)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (EDF, outputs)")
    parser.add_argument("--yasa-results", metavar="FILE",
                        help="reuse YASA's figures from FILE if it holds them for this night and these options; "
                             "else measure them and save them there")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="dreamsync-staging-speed-")
    # Bytecode of every module is cached (in the temporary directory) by the warm-up runs, as in an
    # installed environment, whatever PYTHONDONTWRITEBYTECODE says here.
    env = dict(os.environ, PYTHONPYCACHEPREFIX=os.path.join(folder, "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # children inherit the CPU set
        env.update({v: "1" for v in THREAD_VARIABLES})
    try:
        have_yasa = os.path.isfile(args.yasa_python) and subprocess.run(
            [args.yasa_python, "-c", "import yasa, mne"], cwd=folder, env=env, capture_output=True).returncode == 0
        night = run_json(args.python, "_generate", [folder, args.hours, args.seed], folder, env)
        label, fs = night["labels"][0], night["fs"]
        npy = os.path.join(folder, "eeg.npy")
        cpus = len(os.sched_getaffinity(0))
        print(f"data: simulated night (seed {args.seed}), {night['seconds'] / 3600:.2f} h x {len(night['labels'])} "
              f"EEG channels ({', '.join(night['labels'])}) at {fs:g} Hz, EDF+ of {night['edf_mb']:.0f} MB "
              f"(simulated in {night['simulate_s']:.1f} s, written in {night['write_s']:.1f} s); "
              f"compute: both stage {label}; speed and memory only, no accuracy")
        print(f"machine: {cpus} CPU(s) available{', one thread each (--one-core)' if args.one_core else ''}; "
              f"dreamsync env: {versions(args.python, 'numpy,scipy,numba,edfio', folder, env)}")
        if have_yasa:
            print(f"YASA env: {versions(args.yasa_python, 'yasa,mne,lightgbm,numpy,scipy', folder, env)}")
        else:
            print(f"YASA: not importable by {args.yasa_python}; pass --yasa-python (see the module docstring). "
                  "Measuring dreamsync alone.")

        ours_cmd = [args.python, "-m", "dreamsync", "stage", night["edf"], "--out", os.path.join(folder, "ours.json")]
        script = os.path.join(folder, "yasa_stage.py")
        pathlib.Path(script).write_text(YASA_SCRIPT)
        yasa_cmd = [args.yasa_python, script, night["edf"], label, os.path.join(folder, "yasa.json")]
        commands = {"ours": ours_cmd, "yasa": yasa_cmd} if have_yasa else {"ours": ours_cmd}
        key = {"hours": args.hours, "seed": args.seed, "repeats": args.repeats, "runs": args.runs,
               "rounds": args.rounds, "one_core": args.one_core, "yasa_python": args.yasa_python}
        saved = _saved_yasa(args.yasa_results, key) if have_yasa else None
        if saved is not None:
            commands.pop("yasa")
            pathlib.Path(folder, "yasa.json").write_text(json.dumps(saved["output"]))
            print(f"YASA: figures reused from {args.yasa_results} (measured {saved['measured']}; the machine's "
                  "load may have differed)")
        for cmd in commands.values():  # warm-up of the compute runs: numba cache, bytecode
            run_child(cmd, folder, env)
        rounds = {"ours": [], "yasa": []}
        for _ in range(args.rounds):  # interleaved, so drifts in machine speed hit both alike
            rounds["ours"].append(run_json(args.python, "_ours-compute", [npy, fs, args.repeats], folder, env))
            if have_yasa and not saved:
                rounds["yasa"].append(
                    run_json(args.yasa_python, "_yasa-compute", [npy, fs, label, args.repeats], folder, env))
        ours = pooled(rounds["ours"])
        theirs = saved["compute"] if saved else (pooled(rounds["yasa"]) if have_yasa else None)
        runs = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so drifts in machine load hit both alike
            for name, cmd in commands.items():
                run_child(cmd, folder, env)  # warm-up: OS file cache (see the module docstring)
                runs[name].append(run_child(cmd, folder, env)[:3])
        if saved is not None:
            runs["yasa"] = [tuple(r) for r in saved["runs"]]
        elif have_yasa and args.yasa_results:
            pathlib.Path(args.yasa_results).write_text(json.dumps(
                {"key": key, "measured": time.strftime("%Y-%m-%d %H:%M"), "compute": theirs, "runs": runs["yasa"],
                 "output": json.loads(pathlib.Path(folder, "yasa.json").read_text())}))
        staged = json.loads(pathlib.Path(folder, "ours.json").read_text())

        med = statistics.median
        print(f"\ndreamsync compute: first call {ours['first_s']:.2f} s in a fresh process (numba cache load; "
              f"import {ours['import_s']:.2f} s), then median {med(ours['times_s']):.3f} s of "
              f"{len(ours['times_s'])} calls "
              f"({', '.join(f'{t:.3f}' for t in ours['times_s'])}); all {len(night['labels'])} channels: median "
              f"{med(ours['all_channels_s']):.3f} s; {ours['epochs']} epochs; tracemalloc peak "
              f"{ours['traced_peak_mb']:.0f} MB for a {ours['input_mb']:.0f}-MB float64 input")
        used = staged.get("channels", {}).get("eeg", "?")
        print(_process_line("dreamsync stage", runs["ours"]) + f"; {len(staged['stages'])} epochs from "
              + (", ".join(used) if isinstance(used, list) else str(used)))
        if have_yasa:
            report_against_yasa(ours, theirs, runs, folder)
        if args.profile:
            profile_stage(args.python, night["edf"], npy, fs, folder, env)
        return 0
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


CHILD_MODES = {
    "_generate": lambda a: child_generate(a[0], float(a[1]), int(a[2])),
    "_ours-compute": lambda a: child_ours_compute(a[0], float(a[1]), int(a[2])),
    "_yasa-compute": lambda a: child_yasa_compute(a[0], float(a[1]), a[2], int(a[3])),
    "_profile-compute": lambda a: child_profile_compute(a[0], float(a[1]), a[2]),
    "_trace-stage": lambda a: child_trace_stage(a[0], a[1]),
    "_import-rss": lambda a: child_import_rss(a[0]),
}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILD_MODES:
        print(json.dumps(CHILD_MODES[sys.argv[1]](sys.argv[2:])))
        sys.exit(0)
    sys.exit(main())
