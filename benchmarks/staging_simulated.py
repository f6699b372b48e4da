"""Agreement of offline and live staging with the simulator's truth, over device profiles and lengths.

Data: simulated nights (firmware_sim, seeded), one per profile, length and seed: the first two EEG
channels, and where the profile has them the chin EMG, a left and right EOG pair and the
accelerometer, as ``dreamsync stage`` would use them (``--eeg-emg-only``: without EOG and accelerometer). The
figures check the wiring and the stager's adaptation to each montage (a stager that locks into a
wrong mode shows up here as a night staged all wake); they are not accuracy on people, which only
``staging_dreams.py`` measures (real EEG, expert scores).

Live: first-given stages of ``dsp.staging.LiveStager`` fed 1-s blocks, as a headband delivers them.

With ``--calibrate HOURS``, each profile's nights are staged (offline and live) with the calibration
(``StagingResult.feature_offsets``) of another night of that profile, HOURS long (seed
:data:`CALIBRATION_SEED`), staged offline first: as a user would, from an earlier night of the same
headband.

Usage: python benchmarks/staging_simulated.py [--profiles sim muse-s] [--hours 0.5 2 8 12] [--seed 4 6 2 3] [--live]
       [--calibrate 3] [--eeg-emg-only]
"""

from __future__ import annotations

import argparse

import numpy as np

PROFILES = ("sim", "cyton", "cyton-daisy", "ganglion", "muse-2", "muse-s")
HOURS = (0.5, 2.0, 8.0, 12.0)
SEEDS = (4, 6, 2, 3)  # one per length, so each length is a different night
#: Seed of the earlier night a profile is calibrated on (``--calibrate``): none of the nights staged.
CALIBRATION_SEED = 99


def _channels(band, eog_acc: bool = True) -> tuple:
    """The first two EEG channels, the first chin EMG channel, the EOG channels staging reads
    (:func:`ingest.channels.pick_eye_channels`) and the accelerometer axes, as ``dreamsync stage``
    uses them; without ``eog_acc``, no EOG or accelerometer."""
    from ingest.channels import pick_eye_channels

    eeg = [i for i, kind in enumerate(band.kinds) if kind == "EEG"][:2]
    emg = [i for i, kind in enumerate(band.kinds) if kind == "EMG"][:1]
    if not eog_acc:
        return eeg, emg, [], []
    acc = [i for i, kind in enumerate(band.kinds) if kind == "ACC"]
    return eeg, emg, pick_eye_channels(band.channels, band.kinds), acc


def _others(data, emg, eog, acc) -> dict:
    """:func:`dsp.staging.stage`'s keyword arguments for the non-EEG channels present."""
    return {"emg": data[emg[0]] if emg else None, "eog": data[eog] if eog else None, "acc": data[acc] if acc else None}


def calibration_of(profile: str, hours: float, eog_acc: bool = True):
    """The feature offsets offline staging settles on for a night of ``profile`` (seed :data:`CALIBRATION_SEED`)."""
    from dsp.staging import stage
    from firmware_sim.headband import SimulatedHeadband

    band = SimulatedHeadband(profile, hours=hours, seed=CALIBRATION_SEED)
    data = band.read_all()
    eeg, emg, eog, acc = _channels(band, eog_acc)
    return stage(data[eeg], band.fs, **_others(data, emg, eog, acc)).feature_offsets


def staged_night(profile: str, hours: float, seed: int, live: bool, calibration=None, eog_acc: bool = True) -> dict:
    """Offline (and live) stages of one simulated night against its truth: accuracies, epochs.
    ``calibration``: feature offsets of an earlier night of the profile (or None)."""
    from dsp.staging import LiveStager, stage
    from firmware_sim.headband import SimulatedHeadband

    band = SimulatedHeadband(profile, hours=hours, seed=seed)
    data = band.read_all()
    eeg, emg, eog, acc = _channels(band, eog_acc)
    truth = np.asarray(band.hypnogram)
    offline = stage(data[eeg], band.fs, **_others(data, emg, eog, acc), calibration=calibration).stages
    row = {"epochs": len(offline), "offline": float(np.mean(offline == truth[: len(offline)]))}
    if live:
        stager = LiveStager(band.fs, n_eeg=len(eeg), n_emg=len(emg), n_eog=len(eog), n_acc=len(acc),
                            calibration=calibration)
        step = int(round(band.fs))
        given = []
        for i in range(0, data.shape[1], step):
            block = [data[rows, i:i + step] if rows else None for rows in (emg, eog, acc)]
            given += [e.stage for e in stager.push(data[eeg, i:i + step], *block)]
        given = np.array(given)
        row["live"] = float(np.mean(given == truth[: len(given)]))
        row["live_vs_offline"] = float(np.mean(given == offline[: len(given)]))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    parser.add_argument("--hours", nargs="+", type=float, default=list(HOURS))
    parser.add_argument("--seed", nargs="+", type=int, default=list(SEEDS),
                        help="one seed per length (default: 4 6 2 3)")
    parser.add_argument("--live", action="store_true", help="also stage live, 1-s blocks")
    parser.add_argument("--calibrate", type=float, default=None, metavar="HOURS",
                        help="stage with the calibration of another night of each profile, HOURS long")
    parser.add_argument("--eeg-emg-only", action="store_true", help="leave the EOG and accelerometer out")
    args = parser.parse_args()
    if len(args.seed) != len(args.hours):
        parser.error("give one --seed per --hours")

    print("data: simulated nights (firmware_sim), first two EEG channels + chin EMG"
          + ("" if args.eeg_emg_only else ", EOG pair and accelerometer") + " where present; "
          "agreement with the simulator's truth: a wiring check, not accuracy on people"
          + (f"; each profile calibrated on a {args.calibrate:g}-h night (seed {CALIBRATION_SEED})"
             if args.calibrate else ""))
    print(f"{'profile':<12}{'hours':>6}{'seed':>6}{'epochs':>8}{'offline':>9}" + ("     live  live/offline" if args.live else ""))
    rows = []
    for profile in args.profiles:
        calibration = calibration_of(profile, args.calibrate, not args.eeg_emg_only) if args.calibrate else None
        for hours, seed in zip(args.hours, args.seed):
            row = staged_night(profile, hours, seed, args.live, calibration, not args.eeg_emg_only)
            rows.append(row)
            line = f"{profile:<12}{hours:>6g}{seed:>6}{row['epochs']:>8}{row['offline']:>9.3f}"
            if args.live:
                line += f"{row['live']:>9.3f}{row['live_vs_offline']:>14.3f}"
            print(line, flush=True)
    offline = np.array([r["offline"] for r in rows])
    summary = f"offline: mean {offline.mean():.3f}, lowest {offline.min():.3f} over {len(rows)} nights"
    if args.live:
        live = np.array([r["live"] for r in rows])
        summary += f"; live: mean {live.mean():.3f}, lowest {live.min():.3f}"
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
