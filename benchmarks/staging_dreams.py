"""Agreement with the DREAMS experts (real EEG, 4 people, 2 h): dreamsync's stager and YASA's, side by side.

Data: DREAMS Sleep Spindles DB excerpts 1-4, 30 min each, one EEG lead each (C3-A1 100 Hz, CZ-A1
200 Hz, C3-A1 50 Hz, CZ-A1 200 Hz), scored by an expert in R&K every 5 s. The 30-s reference is
the majority of the six 5-s scores (S3 + S4 = N3). Excerpts are read in place from ../shared
(licence CC BY-NC-ND: never copied into the project).

YASA (``yasa.SleepStaging``, EEG only, its pre-trained model) runs in the interpreter given by
``--yasa-python`` when that has YASA installed (a separate venv: YASA is never a dreamsync
dependency). An excerpt YASA refuses (it needs more than 50 Hz) counts as not staged: left out of
"where both stage", and as wrong for every epoch in "all epochs".

With YASA, the pooled kappa and macro-F1 differences (ours minus YASA's, where both stage) come with a 95 %
interval from a paired bootstrap of 5-min blocks within each excerpt: 180 epochs of 3 people
leave kappa uncertain by several hundredths, and the interval says whether a difference is clear.

Usage: python benchmarks/staging_dreams.py [--shared ../shared] [--yasa-python /tmp/benchvenv/bin/python]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

from dsp.agreement import agreement
from dsp.stages import STAGES, from_labels
from dsp.staging import stage
from ingest.dreams import read_dreams_hypnogram, read_dreams_signal

RATES_HZ = {1: 100.0, 2: 200.0, 3: 50.0, 4: 200.0}  # from the database's documentation
#: Bootstrap block, epochs (5 min): stages are correlated over minutes, so epochs are drawn in runs.
BLOCK_EPOCHS = 10

YASA_SCRIPT = r'''
import json, sys, warnings
import numpy as np, mne, yasa
warnings.filterwarnings("ignore")
mne.set_log_level("ERROR")
out = {}
for path, fs in json.loads(sys.argv[1]):
    x = np.loadtxt(path, skiprows=1)
    raw = mne.io.RawArray(x[None, :] * 1e-6, mne.create_info(["EEG"], fs, "eeg"))
    try:
        hyp = yasa.SleepStaging(raw, eeg_name="EEG").predict()  # a yasa.Hypnogram (YASA >= 0.7)
        labels = getattr(hyp, "hypno", hyp)
        out[path] = {"stages": [{"WAKE": "W", "R": "REM", "ART": "?", "UNS": "?"}.get(str(s), str(s)) for s in labels]}
    except Exception as err:
        out[path] = {"error": f"{type(err).__name__}: {err}"}
print(json.dumps(out))
'''


def _counts(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Confusion counts, shape (k + 1, k + 1) for the k stages: a not-staged epoch (-1 in ``pred``)
    is its own class, never the expert's, so it is always wrong (and changes nothing when absent)."""
    k = len(STAGES) + 1
    cm = np.zeros((k, k))
    np.add.at(cm, (ref, np.where(pred < 0, k - 1, pred)), 1)
    return cm


def kappa_counting_unstaged(ref: np.ndarray, pred: np.ndarray) -> tuple:
    """Accuracy and Cohen's kappa where a not-staged epoch (-1 in ``pred``) is its own, always wrong, class."""
    cm = _counts(ref, pred)
    return np.trace(cm) / cm.sum(), float(_kappa_of_counts(cm[None])[0])


def _kappa_of_counts(cm: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices stacked on the first axis, shape (n, k, k) -> (n,)."""
    n = cm.sum(axis=(1, 2))
    observed = np.trace(cm, axis1=1, axis2=2) / n
    expected = (cm.sum(1) * cm.sum(2)).sum(1) / n**2
    return (observed - expected) / (1 - expected)


def _macro_f1_of_counts(cm: np.ndarray) -> np.ndarray:
    """Macro-F1 (over the stages present in either hypnogram) of stacked confusion matrices, (n, k, k) -> (n,)."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    present = cm.sum(2) + cm.sum(1)
    f1 = np.divide(2 * tp, present, out=np.zeros_like(present, dtype=float), where=present > 0)
    return f1.sum(1) / (present > 0).sum(1)


def paired_difference(ref: list, ours: list, theirs: list, metric=_kappa_of_counts, block: int = BLOCK_EPOCHS,
                      n_boot: int = 2000, seed: int = 0) -> tuple:
    """``metric`` (kappa by default) of ``ours`` minus that of ``theirs`` against ``ref``, pooled,
    with a 95 % interval.

    A paired block bootstrap: each recording (lists of stage-code arrays, one per recording, epochs
    staged by both) is cut into blocks of ``block`` consecutive epochs, blocks are drawn with
    replacement within each recording (neighbouring epochs are not independent, and the
    recordings differ), and both tools are scored on the same draw. A not-staged epoch (-1) counts
    as wrong (:func:`_counts`).

    Returns
    -------
    difference : float
    low, high : float
        2.5 and 97.5 percentiles of the bootstrap differences.
    """
    rng = np.random.default_rng(seed)
    blocks = []  # per recording: (n_blocks, 2, k + 1, k + 1) confusion counts of ours and theirs
    for r, a, b in zip(ref, ours, theirs):
        parts = [slice(start, start + block) for start in range(0, len(r), block)]
        blocks.append(np.array([[_counts(r[p], a[p]), _counts(r[p], b[p])] for p in parts]))
    total = sum(c.sum(axis=0) for c in blocks)
    difference = float(np.subtract(*metric(total)))
    boot = np.zeros((n_boot,) + total.shape)
    for counts in blocks:
        boot += counts[rng.integers(0, len(counts), size=(n_boot, len(counts)))].sum(axis=1)
    spread = metric(boot[:, 0]) - metric(boot[:, 1])
    return difference, float(np.percentile(spread, 2.5)), float(np.percentile(spread, 97.5))


def run_yasa(python: str, files: list) -> dict:
    res = subprocess.run([python, "-c", YASA_SCRIPT, json.dumps(files)], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"YASA not run: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
        return {}
    return json.loads(res.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--yasa-python", default=None, help="a Python with yasa installed")
    args = parser.parse_args()
    folder = pathlib.Path(args.shared) / "data" / "dreams-spindles"
    if not (folder / "excerpt1.txt").is_file():
        print(f"skipped: {folder} not found")
        return 0
    files = [(str(folder / f"excerpt{n}.txt"), fs) for n, fs in RATES_HZ.items()]
    yasa = run_yasa(args.yasa_python, files) if args.yasa_python else {}
    tools = {"dreamsync": [], "YASA": []} if yasa else {"dreamsync": []}
    refs = []
    print("data: DREAMS excerpts 1-4, real EEG, 4 people, 30 min each, R&K scored by an expert (2 h in all)")
    print(f"{'excerpt':<8}{'channel':<8}{'Hz':>4}{'epochs':>7}  " + "".join(f"{t + ' acc/kappa/mF1':>26}" for t in tools))
    for number, (path, fs) in zip(RATES_HZ, files):
        label, eeg = read_dreams_signal(path)
        ref = from_labels(read_dreams_hypnogram(folder / f"Hypnogram_excerpt{number}.txt"))
        t0 = time.perf_counter()
        ours = stage(eeg, fs).stages
        elapsed = time.perf_counter() - t0
        n = min(len(ref), len(ours))
        refs.append(ref[:n])
        tools["dreamsync"].append(ours[:n])
        cells = []
        for tool, preds in tools.items():
            if tool == "YASA":
                got = yasa.get(path, {})
                if "stages" in got:
                    preds.append(from_labels(got["stages"])[:n])
                else:
                    preds.append(np.full(n, -1, dtype=np.int8))
                    cells.append(f"{'not staged':>26}")
                    continue
            a = agreement(ref[:n], preds[-1])
            cells.append(f"{a.accuracy:>12.3f}/{a.kappa:.3f}/{a.macro_f1:.3f}")
        print(f"{number:<8}{label:<8}{fs:>4.0f}{n:>7}  " + "".join(cells) + f"   (ours {elapsed:.2f} s)")
    ref_all = np.concatenate(refs)
    both = np.concatenate([np.all([p[i] >= 0 for p in tools.values()], axis=0) for i in range(len(refs))]) \
        if yasa else np.ones(len(ref_all), bool)
    print("\npooled                      " + "".join(f"{t:>26}" for t in tools))
    line = f"{'where all stage (' + str(int(both.sum())) + ' ep.)':<28}"
    for tool, preds in tools.items():
        a = agreement(ref_all[both], np.concatenate(preds)[both])
        line += f"{a.accuracy:>12.3f}/{a.kappa:.3f}/{a.macro_f1:.3f}"
    print(line)
    line = f"{'all epochs (' + str(len(ref_all)) + ', unstaged wrong)':<28}"
    for tool, preds in tools.items():
        acc, kappa = kappa_counting_unstaged(ref_all, np.concatenate(preds))
        line += f"{acc:>12.3f}/{kappa:.3f}/{'':5}"
    print(line)
    if yasa:
        keep = [np.all([p[i] >= 0 for p in tools.values()], axis=0) for i in range(len(refs))]
        pick = lambda arrays: [a[m] for a, m in zip(arrays, keep) if m.any()]  # noqa: E731
        for name, metric in (("kappa", _kappa_of_counts), ("macro-F1", _macro_f1_of_counts)):
            diff, low, high = paired_difference(pick(refs), pick(tools["dreamsync"]), pick(tools["YASA"]), metric)
            print(f"{name} dreamsync - YASA where both stage: {diff:+.3f}, 95 % interval {low:+.3f} to {high:+.3f} "
                  f"(paired bootstrap of {BLOCK_EPOCHS}-epoch blocks within each excerpt, 2000 draws)")
        diff, low, high = paired_difference(refs, tools["dreamsync"], tools["YASA"])
        print(f"kappa dreamsync - YASA on all epochs, unstaged wrong: {diff:+.3f}, 95 % interval {low:+.3f} to "
              f"{high:+.3f} (same bootstrap)")
    for tool, preds in tools.items():
        if tool == "YASA":
            for path, got in yasa.items():
                if "error" in got:
                    print(f"YASA on {pathlib.Path(path).name}: {got['error'][:120]}")
        a = agreement(ref_all[both], np.concatenate(preds)[both])
        print(f"{tool} per-stage F1: " + ", ".join(f"{k} {v:.2f}" for k, v in a.f1.items() if v == v))
        print(f"{tool} confusion (rows expert W N1 N2 N3 REM, columns {tool}):")
        print(a.confusion)
    print("(the first excerpt's time includes loading the numba kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
