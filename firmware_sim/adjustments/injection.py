"""Apply a list of adjustments to a signal array and log the ground truth of what was done."""

from __future__ import annotations

import numpy as np

from . import auditory, electrical, entrainment, tampering
from .recording import Recording

#: Module applying each adjustment class; physiological kinds first, tampering (of the record) last.
_APPLIERS = {
    auditory.Auditory: auditory.apply,
    electrical.Electrical: electrical.apply,
    entrainment.Entrainment: entrainment.apply,
    tampering.Tampering: tampering.apply,
}


def inject(data, fs: float, hypnogram, adjustments, rng, labels=None, kinds=None, *, epoch_s: float = 30.0,
           adc_grid=None):
    """Apply adjustments to a signal and return the adjusted copy with a ground-truth log.

    Parameters
    ----------
    data : array_like, shape (n_channels, n_samples) or (n_samples,)
        Signals in uV (any rate; real excerpts with one channel at 50-200 Hz work as they are).
        Never modified.
    fs : float
        Sample rate in Hz.
    hypnogram : array_like of int, shape (n_epochs,)
        Stage code per epoch: 0 W, 1 N1, 2 N2, 3 N3, 4 REM; other codes (e.g. -1) mean unknown, and
        so does any time past the hypnogram's end.
    adjustments : sequence of Auditory, Electrical, Entrainment or Tampering
        What to apply. Stimulations (auditory, electrical, entrainment) are applied in the given
        order, each seeing the signal the earlier ones left (a closed loop detects slow waves on a
        signal that already carries a tACS artefact); tampering, which acts on the record rather
        than the sleeper, is applied after all of them, in the given order.
    rng : numpy.random.Generator or int or None
        Source of all randomness. Each adjustment draws from its own child stream, fixed by ``rng``
        and its position in the list, so appending an adjustment leaves the earlier ones' draws
        unchanged (what they do can still change if the new one alters the signal they see).
    labels : sequence of str, optional
        Channel labels (``"EEG Fpz-M2"``, ``"C3-A1"``, ``"EOG E1-M2"``); they place each channel
        in a scalp region that sets how much of each adjustment it sees. By default all channels
        are central EEG.
    kinds : sequence of str, optional
        Channel kinds (``"EEG"``, ``"EOG"``, ``"EMG"``, ``"ECG"``, ``"ACC"``, ...); inferred from
        the labels when omitted. Non-electrode kinds (ACC, ...) are left alone by stimulation.
    epoch_s : float, optional
        Length of a hypnogram epoch in s, by default 30.
    adc_grid : (float, float), optional
        ``(step, offset)`` in uV of the ADC grid ``data`` was recorded on (``offset + k * step``).
        Stimulation acts on the sleeper, before the amplifier digitises the signal, so every sample
        a stimulation changed is rounded to this grid, as the ADC would have delivered it;
        tampering acts on the record after digitisation and is left as it is. By default nothing
        is rounded (simulated signals are continuous).

    Returns
    -------
    new_data : numpy.ndarray of float64, same shape as ``data``
        The adjusted signals in uV.
    truth : list of dict
        One record per episode, in time order: ``{"kind": "auditory" | "electrical" |
        "entrainment" | "tampering", "onset": s, "duration": s, "params": {...}}``, where params
        hold the parameters used, ``"adjustment"`` (the index in ``adjustments``) and the details of
        the episode: the individual clicks for auditory (``params["clicks"]``, see
        :func:`click_times`), the blocks for electrical, the source of each tampered segment. All
        values are plain Python (JSON-serialisable).

    Raises
    ------
    ValueError
        On an unknown adjustment, a frequency at or above Nyquist, or explicit onsets that do not fit.
    """
    new = np.array(data, dtype=np.float64, copy=True)
    one_channel = new.ndim == 1
    if one_channel:
        new = new[None, :]
    if new.ndim != 2:
        raise ValueError(f"data must be (n_channels, n_samples) or (n_samples,), got shape {np.shape(data)}")
    rec = Recording.describe(new, fs, hypnogram, labels, kinds, epoch_s)
    adjustments = list(adjustments)
    for adj in adjustments:
        if type(adj) not in _APPLIERS:
            raise ValueError(f"unknown adjustment {adj!r}; expected one of {', '.join(c.__name__ for c in _APPLIERS)}")
    rng = np.random.default_rng(rng)
    # child i depends only on rng and i, so appending adjustments leaves the earlier ones' draws alone
    children = np.random.SeedSequence(int(rng.integers(0, 2**63))).spawn(len(adjustments))
    order = sorted(range(len(adjustments)), key=lambda i: isinstance(adjustments[i], tampering.Tampering))
    truth = []
    before = new.copy() if adc_grid is not None else None
    for i in order:
        if before is not None and isinstance(adjustments[i], tampering.Tampering):
            _digitise_changes(new, before, adc_grid)
            before = None
        records = _APPLIERS[type(adjustments[i])](new, rec, adjustments[i], np.random.default_rng(children[i]))
        for record in records:
            record["params"]["adjustment"] = i
        truth += records
    if before is not None:
        _digitise_changes(new, before, adc_grid)
    truth.sort(key=lambda r: (r["onset"], r["params"]["adjustment"]))
    return (new[0] if one_channel else new), truth


def _digitise_changes(new: np.ndarray, before: np.ndarray, adc_grid) -> None:
    """Round the samples of ``new`` that differ from ``before`` to the grid ``(step, offset)``, in place."""
    step, offset = (float(v) for v in adc_grid)
    changed = new != before
    new[changed] = offset + np.round((new[changed] - offset) / step) * step


def click_times(truth) -> np.ndarray:
    """Times (s) of every auditory click in a truth log, sorted, shape (n_clicks,)."""
    times = [c["time"] for r in truth if r["kind"] == "auditory" for c in r["params"]["clicks"]]
    return np.sort(np.asarray(times, dtype=np.float64))
