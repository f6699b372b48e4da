"""What the channels other than EEG tell the stager: chin EMG tone, eye movements, body movement.

Each is measured per 30-s epoch, then turned into a shift of each stage's log likelihood, shape
(n_epochs, 5), that the hidden Markov model adds to the EEG's (:func:`auxiliary_loglik`). The cues
are the AASM's (``../shared/docs/sleep-science.md``): chin tone is highest in wake and lowest in
REM; rapid eye movements mark REM, and blinks and reading or scanning movements wake; body movement
marks wake. The size of each shift is a model parameter (:class:`dsp.model.StagingModel`:
``emg_weight``, ``eog_weight``, ``movement_weight``) set by hand from those rules, not fitted to
data: no labelled recording with EOG or an accelerometer is at hand to fit or check them on.

Measures that depend on a device's gain and electrode placement are taken against the same
recording's epochs the EEG alone calls NREM (N2 or N3), where tone is steady and the eyes are
still: the EMG tone as a robust z-score, and the eye-movement threshold as a multiple of the EOG's
typical size there. The accelerometer is in g, a physical unit, and needs no reference.

Eye movements are counted only where they can be told from EEG: from a left and a right EOG
electrode (E1/LOC and E2/ROC, each to a mastoid), where a horizontal movement deflects the two in
opposite directions (conjugate) and EEG, common to both, cancels in their difference; or from one
bipolar horizontal derivation (E1-E2, LOC-ROC, "EOG horizontal"). A single eye-to-mastoid lead
also carries the frontal EEG: in N3 its slow waves pass for eye movements (on simulated nights,
more of them per epoch in N3 than in REM), so such a lead is not used for this.
"""

from __future__ import annotations

import numpy as np

from .eye_movements import REM_BAND_HZ, _deflections
from .features import CHUNK_EPOCHS, emg_log_power, hold_missing
from .quality import scorable_epochs
from .stages import EPOCH_SECONDS

#: Scorable epochs the EEG calls NREM needed before a reference-relative measure is used.
MIN_REFERENCE_EPOCHS = 10
#: Robust z-scores of EMG tone beyond this are clipped (a burst must not outvote the EEG).
EMG_Z_LIMIT = 3.0
#: A rapid eye movement's deflection builds within this long (a saccade takes 30-100 ms, seen
#: through the 5-Hz low-pass); a slow eye movement's, or a slow wave's, over half a second or more.
EYE_MOVEMENT_RISE_S = 0.2
#: What a deflection gains in its last :data:`EYE_MOVEMENT_RISE_S` must exceed this many times the
#: EOG's median absolute value in NREM (0.5-5 Hz band), where its typical size is EEG and noise
#: (about 50 uV for 4 uV there).
EYE_MOVEMENT_SCALES = 12.0
#: Eye movements per epoch at which their evidence is full (fewer give a proportional share).
EYE_MOVEMENT_SATURATION = 4
#: Largest eye movements kept per epoch (the count saturates well below).
MAX_EYE_MOVEMENTS = 8
#: Causal filter history given before each stretch analysed for eye movements, s.
EYE_CONTEXT_S = 5.0
#: A 1-s window moves when an accelerometer axis varies by more than this (SD, g): well above a
#: still sleeper's breathing and sensor noise (a few mg), below a turn of the head or body.
MOVEMENT_G = 0.01
#: Seconds of movement per epoch at which its evidence is full.
MOVEMENT_SATURATION_S = 5.0


def emg_tone(emg, fs: float, n_epochs: int):
    """Scorability and log10 10-100 Hz power of the chin EMG in each epoch.

    Parameters
    ----------
    emg : ndarray or array-like reader, shape (n_channels, n_samples)
        Chin EMG in uV at ``fs``; NaN marks lost samples. Read a chunk of epochs at a time.
    fs : float
        Sample rate in Hz.
    n_epochs : int
        Epochs to measure from the first sample.

    Returns
    -------
    ndarray, shape (n_epochs,) or None
        :func:`dsp.features.emg_log_power` (log10 uV^2) of each epoch, NaN where a channel cannot
        be scored (:func:`dsp.quality.scorable_epochs`); None when the EMG is shorter than ``n_epochs``.
    """
    n_per = int(round(EPOCH_SECONDS * fs))
    if emg.shape[1] < n_epochs * n_per:
        return None
    power = np.empty(n_epochs)
    for e0 in range(0, n_epochs, CHUNK_EPOCHS):
        e1 = min(n_epochs, e0 + CHUNK_EPOCHS)
        epochs = np.stack([np.asarray(emg[c, e0 * n_per : e1 * n_per], dtype=np.float64).reshape(e1 - e0, n_per)
                           for c in range(emg.shape[0])])
        power[e0:e1] = np.where(scorable_epochs(epochs), emg_log_power(epochs, fs), np.nan)
    return power


def eye_movement_stretch(eog: np.ndarray, fs: float, skip: int, n_epochs: int) -> tuple:
    """Eye movements in the epochs of ``eog[:, skip:]``, the samples before ``skip`` being history.

    Parameters
    ----------
    eog : ndarray, shape (1 or 2, skip + n_epochs * round(30 fs))
        EOG in uV: left and right (E1/LOC, E2/ROC), or one bipolar horizontal derivation; NaN
        marks lost samples (held at the last value for the filter; an epoch that cannot be scored
        gets NaN).
    fs : float
        Sample rate in Hz (> 11.2).
    skip : int
        Samples of history before the first epoch (a few seconds settle the causal filter).
    n_epochs : int
        Epochs after ``skip``.

    Returns
    -------
    sizes : ndarray, shape (n_epochs, MAX_EYE_MOVEMENTS)
        Per epoch, the largest sharp deflections (uV, descending, NaN-padded) of the 0.5-5 Hz
        band-passed EOG (the difference of two leads): at each half-wave's extreme, what the signal
        gained over the :data:`EYE_MOVEMENT_RISE_S` before it, counted in the epoch holding the
        extreme; with two leads, only where they deflect in opposite directions (conjugate).
        Measured over a fixed span rather than from the last turning point, which any ripple of
        EEG on a slow eye movement would move close to the extreme; a deflection that gains less
        than half the largest swing of the second before it (a filter's undershoot after a large
        one) is left out.
    scale : ndarray, shape (n_epochs,)
        Median absolute value of the same signal in each epoch, uV; NaN where an epoch cannot be scored.
    """
    n_per = int(round(EPOCH_SECONDS * fs))
    x = np.array(eog[:, : skip + n_epochs * n_per], dtype=np.float64)
    body = x[:, skip:]
    usable = scorable_epochs(body.reshape(body.shape[0], n_epochs, n_per))
    first = np.array([row[np.isfinite(row)][0] if np.isfinite(row).any() else 0.0 for row in x])
    hold_missing(x, first)
    analysed, hw, deflection, _ = _deflections(x, fs, REM_BAND_HZ)
    at = hw[:, 2]
    epoch = (at - skip) // n_per
    keep = (deflection > 0) & (at >= skip) & (epoch < n_epochs)
    at, epoch = at[keep], epoch[keep]
    # from the half-wave's zero crossing at the earliest, and at least half the largest swing of
    # the second before: the undershoot that a high-pass filter leaves after a large deflection
    # is not another eye movement
    since = np.maximum(at - int(round(EYE_MOVEMENT_RISE_S * fs)), hw[keep, 0])
    size = np.abs(analysed[at] - analysed[since])
    # imported here: scipy.ndimage takes ~0.15 s to import, and only recordings with EOG come here
    from scipy.ndimage import maximum_filter1d

    width = int(round(fs))
    before = maximum_filter1d(np.abs(analysed), size=width, origin=(width - 1) // 2)  # max of [i - width + 1, i]
    alone = size >= 0.5 * before[np.maximum(since - 1, 0)]
    at, epoch, size = at[alone], epoch[alone], size[alone]
    order = np.lexsort((-size, epoch))  # by epoch, largest first
    size, epoch = size[order], epoch[order]
    rank = np.arange(epoch.size) - np.searchsorted(epoch, epoch)  # place within its epoch
    sizes = np.full((n_epochs, MAX_EYE_MOVEMENTS), np.nan)
    kept = rank < MAX_EYE_MOVEMENTS
    sizes[epoch[kept], rank[kept]] = size[kept]
    scale = np.median(np.abs(analysed[skip:]).reshape(n_epochs, n_per), axis=1)
    sizes[~usable] = np.nan
    return sizes, np.where(usable, scale, np.nan)


def eye_movements(eog, fs: float, n_epochs: int) -> tuple:
    """:func:`eye_movement_stretch` of every epoch of a recording, a chunk of epochs at a time.

    Parameters
    ----------
    eog : ndarray or array-like reader, shape (1 or 2, n_samples)
        EOG in uV at ``fs`` (see :func:`eye_movement_stretch`).
    fs : float
        Sample rate in Hz.
    n_epochs : int
        Epochs from the first sample.

    Returns
    -------
    (sizes, scale) as :func:`eye_movement_stretch`, or None when the EOG is shorter than ``n_epochs``.
    """
    n_per = int(round(EPOCH_SECONDS * fs))
    if eog.shape[1] < n_epochs * n_per:
        return None
    context = int(round(EYE_CONTEXT_S * fs))
    sizes = np.empty((n_epochs, MAX_EYE_MOVEMENTS))
    scale = np.empty(n_epochs)
    for e0 in range(0, n_epochs, CHUNK_EPOCHS):
        e1 = min(n_epochs, e0 + CHUNK_EPOCHS)
        k0 = max(0, e0 * n_per - context)
        stretch = np.stack([np.asarray(eog[c, k0 : e1 * n_per]) for c in range(eog.shape[0])])
        sizes[e0:e1], scale[e0:e1] = eye_movement_stretch(stretch, fs, e0 * n_per - k0, e1 - e0)
    return sizes, scale


def movement_seconds(acc, fs: float, n_epochs: int) -> np.ndarray | None:
    """Seconds of body movement in each epoch, from an accelerometer.

    Parameters
    ----------
    acc : ndarray or array-like reader, shape (n_axes, n_samples)
        Acceleration in g at ``fs``; NaN marks lost samples.
    fs : float
        Sample rate in Hz (>= 2).
    n_epochs : int
        Epochs from the first sample.

    Returns
    -------
    ndarray, shape (n_epochs,) or None
        Whole seconds of the epoch in which some axis' SD exceeds :data:`MOVEMENT_G` (0..30); NaN
        where more than half the samples are lost. None when the signal is shorter than ``n_epochs``.
    """
    per_second = int(round(fs))
    n_per = int(round(EPOCH_SECONDS * fs))
    if acc.shape[1] < n_epochs * n_per or per_second < 2:
        return None
    seconds = int(EPOCH_SECONDS)
    out = np.empty(n_epochs)
    for e0 in range(0, n_epochs, CHUNK_EPOCHS):
        e1 = min(n_epochs, e0 + CHUNK_EPOCHS)
        x = np.stack([np.asarray(acc[c, e0 * n_per : e1 * n_per], dtype=np.float64) for c in range(acc.shape[0])])
        x = x.reshape(x.shape[0], e1 - e0, n_per)[:, :, : seconds * per_second]
        windows = x.reshape(x.shape[0], e1 - e0, seconds, per_second)
        finite = np.isfinite(windows)
        count = np.maximum(finite.sum(axis=-1), 1)
        values = np.where(finite, windows, 0.0)
        mean = values.sum(axis=-1) / count
        variance = (values * values).sum(axis=-1) / count - mean * mean  # lost samples left out
        moving = (variance > MOVEMENT_G * MOVEMENT_G).any(axis=0)
        lost = ~finite.all(axis=0)
        out[e0:e1] = np.where(lost.mean(axis=(-2, -1)) > 0.5, np.nan, moving.sum(axis=-1))
    return out


def auxiliary_loglik(model, nrem: np.ndarray, *, emg_power=None, eye_sizes=None, eye_scale=None,
                     movement=None) -> np.ndarray | None:
    """Shift of each stage's log likelihood in each epoch from the EMG, EOG and accelerometer.

    Parameters
    ----------
    model : dsp.model.StagingModel
        Its ``emg_weight``, ``eog_weight`` and ``movement_weight`` (5,): the shift at full evidence.
    nrem : ndarray of bool, shape (n_epochs,)
        The scorable epochs the EEG alone calls N2 or N3: the reference of the EMG tone and the
        eye-movement threshold.
    emg_power : ndarray, shape (n_epochs,), optional
        :func:`emg_tone` (log10 uV^2, NaN where unusable).
    eye_sizes, eye_scale : ndarray, shapes (n_epochs, k) and (n_epochs,), optional
        :func:`eye_movements`.
    movement : ndarray, shape (n_epochs,), optional
        :func:`movement_seconds`.

    Returns
    -------
    ndarray, shape (n_epochs, 5) or None
        Log-likelihood shifts (nats) to add to the EEG's, per epoch and stage (W, N1, N2, N3,
        REM); None when no measure is given or usable (too few reference epochs yet). An epoch
        whose measure is unusable gets no shift from it.

        - EMG: the tone's robust z-score against the reference epochs, clipped to +/-3, times
          ``emg_weight``.
        - EOG: eye movements larger than :data:`EYE_MOVEMENT_SCALES` times the reference epochs'
          median EOG size, counted up to :data:`EYE_MOVEMENT_SATURATION`, as a share of it, times
          ``eog_weight``.
        - Accelerometer: seconds of movement up to :data:`MOVEMENT_SATURATION_S`, as a share of
          it, times ``movement_weight``.
    """
    shift = np.zeros((len(nrem), len(model.emg_weight)))
    used = False
    if emg_power is not None:
        usable = np.isfinite(emg_power)
        reference = usable & nrem
        if reference.sum() >= MIN_REFERENCE_EPOCHS:
            values = np.where(usable, emg_power, 0.0)
            med = np.median(values[reference])
            mad = 1.4826 * np.median(np.abs(values[reference] - med))
            z = np.where(usable, (values - med) / mad, 0.0) if mad > 0 else np.zeros(len(nrem))
            shift += np.clip(z, -EMG_Z_LIMIT, EMG_Z_LIMIT)[:, None] * model.emg_weight[None, :]
            used = True
    if eye_scale is not None:
        usable = np.isfinite(eye_scale)
        reference = usable & nrem
        if reference.sum() >= MIN_REFERENCE_EPOCHS:
            threshold = EYE_MOVEMENT_SCALES * np.median(eye_scale[reference])
            with np.errstate(invalid="ignore"):
                count = (eye_sizes > threshold).sum(axis=1)
            share = np.where(usable, np.minimum(count, EYE_MOVEMENT_SATURATION) / EYE_MOVEMENT_SATURATION, 0.0)
            shift += share[:, None] * model.eog_weight[None, :]
            used = True
    if movement is not None:
        share = np.where(np.isfinite(movement), np.minimum(np.nan_to_num(movement), MOVEMENT_SATURATION_S)
                         / MOVEMENT_SATURATION_S, 0.0)
        shift += share[:, None] * model.movement_weight[None, :]
        used = True
    return shift if used else None
