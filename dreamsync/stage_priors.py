"""Fit the staging HMM's transition prior to expert hypnograms.

Usage::

    python -m dreamsync.stage_priors /path/to/sleep-edf-sc-hypnograms [--out PATH]

Counts 30-s stage transitions in the Sleep-EDF sleep-cassette hypnograms (R&K mapped to AASM, the
night cut to 30 min of wake around the sleep period, movement time scored as in
:mod:`firmware_sim.hypnogram_fit`) and writes the counts, which :mod:`dsp.staging` turns into its
transition matrix. Only counts are written, never a night's stages. The Sleep-EDF data are
ODC-By 1.0 (Kemp et al. 2000, PhysioNet); the output keeps that attribution.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from dsp.model import TRANSITIONS_FILE, transition_counts
from dsp.stages import STAGES
from firmware_sim.hypnogram_fit import load_nights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder of Sleep-EDF *Hypnogram.edf files")
    parser.add_argument("--out", default=str(TRANSITIONS_FILE), help="output JSON (default: the packaged prior)")
    args = parser.parse_args(argv)
    nights = load_nights(args.folder)
    counts = transition_counts(nights)
    payload = {
        "description": "30-s stage transition counts (rows from, columns to) in expert hypnograms",
        "stages": list(STAGES),
        "counts": counts.tolist(),
        "nights": len(nights),
        "source": "Sleep-EDF Database Expanded v1.0.0, sleep-cassette SC400x-SC409x hypnograms "
                  "(Kemp et al. 2000; PhysioNet), ODC-By 1.0; 30 min of wake kept around the sleep period",
    }
    pathlib.Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{len(nights)} nights, {int(counts.sum())} transitions -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
