"""Agreement of dreamsync's stager with the DREAMS experts (real EEG, 4 people, 2 h).

The 30-s reference is the majority of the six 5-s R&K scores (S3 + S4 = N3). Excerpts are read in
place from ../shared (licence CC BY-NC-ND: never copied into the project).

Usage: python benchmarks/staging_dreams.py [--shared ../shared]
"""

import argparse
import pathlib
import sys
import time

import numpy as np

from dsp.agreement import agreement
from dsp.stages import from_labels
from dsp.staging import stage
from ingest.dreams import read_dreams_hypnogram, read_dreams_signal

RATES_HZ = {1: 100.0, 2: 200.0, 3: 50.0, 4: 200.0}  # from the database's documentation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
    args = parser.parse_args()
    folder = pathlib.Path(args.shared) / "data" / "dreams-spindles"
    if not (folder / "excerpt1.txt").is_file():
        print(f"skipped: {folder} not found")
        return 0
    refs, preds = [], []
    print("data: DREAMS Sleep Spindles DB excerpts 1-4, real EEG, 30 min each, R&K scored by an expert")
    print(f"{'excerpt':<8}{'channel':<8}{'Hz':>5}{'epochs':>8}{'acc':>7}{'kappa':>7}{'mF1':>7}{'sec':>7}")
    for number, fs in RATES_HZ.items():
        label, eeg = read_dreams_signal(folder / f"excerpt{number}.txt")
        ref = from_labels(read_dreams_hypnogram(folder / f"Hypnogram_excerpt{number}.txt"))
        t0 = time.perf_counter()
        pred = stage(eeg, fs).stages
        elapsed = time.perf_counter() - t0
        n = min(len(ref), len(pred))
        a = agreement(ref[:n], pred[:n])
        refs.append(ref[:n])
        preds.append(pred[:n])
        print(f"{number:<8}{label:<8}{fs:>5.0f}{a.n_epochs:>8}{a.accuracy:>7.3f}{a.kappa:>7.3f}{a.macro_f1:>7.3f}"
              f"{elapsed:>7.2f}")
    pooled = agreement(np.concatenate(refs), np.concatenate(preds))
    print(f"{'pooled':<21}{pooled.n_epochs:>8}{pooled.accuracy:>7.3f}{pooled.kappa:>7.3f}{pooled.macro_f1:>7.3f}")
    print("per-stage F1 (pooled): " + ", ".join(f"{k} {v:.2f}" for k, v in pooled.f1.items() if v == v))
    print("confusion (rows expert W N1 N2 N3 REM, columns dreamsync):")
    print(pooled.confusion)
    print("(the first excerpt's time includes compiling the numba kernels once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
