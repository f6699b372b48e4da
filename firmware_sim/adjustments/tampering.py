"""Signal-level tampering with a recording: replayed, spliced and time-warped segments.

- ``replay``: an earlier segment of the same recording is pasted over a later one (a copy, sample
  for sample).
- ``splice``: a segment of another recording (another night or person, the ``donor``) is pasted in.
- ``warp``: a segment is replaced by the recording from the same onset played faster or slower by
  ``factor`` (band-limited polyphase resampling), keeping its length: every rhythm in it shifts in
  frequency by ``factor`` and it ends ``(factor - 1) * duration`` away from where it should.

Tampering acts on the recorded signal, after any stimulation (see :func:`~.injection.inject`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import signal

from .placement import Placement, place
from .recording import Recording

_MODES = ("replay", "splice", "warp")


@dataclass(kw_only=True)
class Tampering(Placement):
    """Segments of the recording replaced by replayed, spliced or time-warped signal.

    Parameters
    ----------
    mode : {"replay", "splice", "warp"}
        What replaces each segment.
    duration_s : float
        Length of each tampered segment in s, by default 30.
    source_onsets : sequence of float or None
        Where each segment comes from, in s: in this recording (replay, before its target) or in the
        donor (splice); one per episode. None draws them at random (replay sources avoid every
        target of this adjustment, so they stay intact).
    donor : numpy.ndarray or None
        Splice only: the other recording, shape (n_channels, n_donor) or (n_donor,) for one
        channel, in uV at the same rate and channel order as the data (resample it first).
    donor_label : str
        Name of the donor in the truth log, by default ``"donor"``.
    warp_factor : float or None
        Warp only: playback-speed factor (> 1 plays faster, compressing ``factor * duration_s`` of
        signal into ``duration_s``); None draws one per episode from ``warp_range``. It is rounded
        to a ratio of integers up to 100 (the logged factor is exact).
    warp_range : (float, float)
        Range of random warp factors, by default (0.9, 1.1); a factor that rounds to exactly 1
        (no warp) is drawn again.
    crossfade_s : float
        Linear cross-fade at each end of a segment in s (a careful forger hides the seams), by
        default 0 (hard cuts).
    count, onsets, stages, settle_s
        Target placement, see :class:`Placement`; by default one segment anywhere.
    """

    mode: str = "replay"
    duration_s: float = 30.0
    source_onsets: tuple | None = None
    donor: np.ndarray | None = field(default=None, repr=False, compare=False)
    donor_label: str = "donor"
    warp_factor: float | None = None
    warp_range: tuple = (0.9, 1.1)
    crossfade_s: float = 0.0

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"tampering mode must be one of {_MODES}, got {self.mode!r}")
        if self.mode == "splice" and self.donor is None:
            raise ValueError("tampering mode 'splice' needs a donor array")
        if not self.duration_s > 0:
            raise ValueError(f"tampering duration must be positive, got {self.duration_s}")


def apply(data: np.ndarray, rec: Recording, adj: Tampering, rng: np.random.Generator) -> list:
    """Tamper with ``data`` (n_channels, n_samples, uV) in place; return one truth record per segment.

    Each record's params give ``mode``, ``source`` (``"self"`` or the donor label),
    ``source_onset`` and ``source_duration`` (s, in the source) and, for warps, ``warp_factor``.
    """
    fs = rec.fs
    n = int(round(adj.duration_s * fs))
    if adj.mode == "warp":
        factors = _warp_factors(adj, rng)
        span = adj.duration_s * max(1.0, max(factors))
        targets = place(adj, span, rec, rng, kind="tampering")
        factors = factors[:len(targets)]
    else:
        earliest = adj.duration_s if adj.mode == "replay" else 0.0
        targets = place(adj, adj.duration_s, rec, rng, earliest_s=earliest, kind="tampering")
    donor = _donor(adj, data.shape[0]) if adj.mode == "splice" else None
    if adj.source_onsets is not None and len(adj.source_onsets) < len(targets):
        raise ValueError(f"tampering: {len(targets)} segments but {len(adj.source_onsets)} source onsets")
    records = []
    for k, target in enumerate(targets):
        i0 = rec.index(target)
        given = None if adj.source_onsets is None else int(round(adj.source_onsets[k] * fs))
        params = {"mode": adj.mode, "crossfade_s": float(adj.crossfade_s)}
        if adj.mode == "replay":
            s0 = _replay_source(given, i0, n, targets, rec, rng)
            segment = data[:, s0:s0 + n].copy()
            params.update(source="self", source_onset=s0 / fs, source_duration=n / fs)
        elif adj.mode == "splice":
            s0 = _donor_source(given, donor.shape[1], n, rng)
            segment = donor[:, s0:s0 + n]
            params.update(source=adj.donor_label, source_onset=s0 / fs, source_duration=n / fs)
        else:
            segment, used = _warped(data, i0, n, factors[k], fs)
            params.update(source="self", source_onset=i0 / fs, source_duration=used / fs,
                          warp_factor=float(factors[k]))
        _paste(data, i0, segment, int(round(adj.crossfade_s * fs)))
        records.append({"kind": "tampering", "onset": i0 / fs, "duration": n / fs, "params": params})
    return records


def _warp_factors(adj: Tampering, rng: np.random.Generator) -> list:
    count = adj.count if adj.onsets is None else len(adj.onsets)
    if adj.warp_factor is not None:
        raw = [adj.warp_factor] * count
    else:
        # a draw within 0.5 % of 1 rounds to exactly 1, which is no warp at all: draw again
        raw = []
        for _ in range(count):
            for _ in range(100):  # (a range within 0.5 % of 1 keeps its last draw)
                f = float(rng.uniform(*adj.warp_range))
                if Fraction(f).limit_denominator(100) != 1:
                    break
            raw.append(f)
    factors = [Fraction(float(f)).limit_denominator(100) for f in raw]
    if any(f <= 0 for f in factors):
        raise ValueError(f"tampering: warp factors must be positive, got {raw}")
    return factors


def _replay_source(given, i0: int, n: int, targets: list, rec: Recording, rng) -> int:
    if given is not None:
        if not 0 <= given <= i0 - n:
            raise ValueError("tampering: a replay source must end before its target starts")
        return given
    # start the copy anywhere it ends before the target, preferably overlapping no target of this
    # adjustment (so the source stays intact); rejection sampling keeps memory flat on long nights
    taken = [rec.index(t) for t in targets]
    for _ in range(1000):
        s0 = int(rng.integers(0, i0 - n + 1))
        if all(s0 + n <= j or s0 >= j + n for j in taken):
            return s0
    return s0


def _donor(adj: Tampering, n_channels: int) -> np.ndarray:
    donor = np.asarray(adj.donor, dtype=np.float64)
    donor = donor[None, :] if donor.ndim == 1 else donor
    if donor.ndim != 2 or donor.shape[0] != n_channels:
        raise ValueError(f"tampering: donor shape {np.shape(adj.donor)} does not match {n_channels} channels")
    return donor


def _donor_source(given, n_donor: int, n: int, rng) -> int:
    if n_donor < n:
        raise ValueError(f"tampering: the donor has {n_donor} samples, a segment needs {n}")
    if given is not None:
        if not 0 <= given <= n_donor - n:
            raise ValueError("tampering: the donor segment does not fit in the donor")
        return given
    return int(rng.integers(0, n_donor - n + 1))


def _warped(data: np.ndarray, i0: int, n: int, factor: Fraction, fs: float) -> tuple:
    """``n`` samples of ``data`` from ``i0`` played at ``factor`` times the speed, and how many
    source samples they cover."""
    down, up = factor.numerator, factor.denominator  # output rate = input rate * up / down
    used = int(round(n * float(factor)))
    # margin of whole ``down`` blocks on both sides so the filter's edges fall outside the segment
    m = int(np.ceil(fs / down))
    pad = m * down
    lo, hi = i0 - pad, i0 + used + pad
    source = data[:, max(lo, 0):min(hi, data.shape[1])]
    source = np.pad(source, ((0, 0), (max(0, -lo), max(0, hi - data.shape[1]))), mode="reflect")
    out = signal.resample_poly(source, up, down, axis=1)
    return out[:, m * up:m * up + n], used


def _paste(data: np.ndarray, i0: int, segment: np.ndarray, n_fade: int) -> None:
    n = segment.shape[1]
    weight = np.ones(n)
    n_fade = min(n_fade, n // 2)
    if n_fade > 0:
        weight[:n_fade] = np.linspace(0.0, 1.0, n_fade + 2)[1:-1]
        weight[n - n_fade:] = weight[:n_fade][::-1]
    data[:, i0:i0 + n] = weight * segment + (1.0 - weight) * data[:, i0:i0 + n]
