"""Sleep staging that adapts to each recording without labels, offline and live.

Model
    Each 30-s epoch gives the features of :mod:`dsp.features` (at a 50-64 Hz working rate): the log
    delta power, which depends on the recording's gain (amplifier, electrode distance, skull), and
    log shares of the theta, alpha, sigma and beta bands, the spectral slope and the permutation
    entropy, which do not. Each stage has a prototype (:mod:`dsp.model`): typical feature values of
    a scalp lead in that stage, with the delta power relative to the recording's own N2 level
    ``g``, and a spread. Prototypes follow the AASM descriptions (W: beta and alpha, low delta;
    N1: theta, alpha fading; N2: more delta, sigma; N3: delta dominates; REM: like N1 with less
    alpha and sigma) and were set by hand, not fitted to any recording.

Adaptation
    ``g`` is unknown, so the stager keeps a bank of hypotheses about it (a grid of 0.05 log10
    units around the recording's own level) and weighs each by the evidence the whole sequence
    gives it under a hidden Markov model, whose transition matrix is counted in 20 real expert
    hypnograms (Sleep-EDF, :data:`dsp.model.TRANSITIONS_FILE`). The stage probabilities are the evidence-
    weighted mixture over the bank. Only the delta term of the likelihood differs between
    hypotheses: it is tabulated once per recording, and one forward pass runs the whole bank side
    by side (:func:`dsp.hmm.bank_evidence`); the backward pass runs for the hypotheses whose weight
    matters. Scaling the signal by any factor shifts the delta power and the grid alike, so
    staging is amplitude invariant. A headband's noise floor and filters shift
    the beta share, slope and entropy in every stage alike: those get per-recording offsets,
    estimated by EM and shrunk towards zero for short recordings (or towards a ``calibration``,
    the offsets an earlier night of the same headband settled on). EM starts twice, from no
    offsets and from "the median epoch is N2", and the mode of higher posterior density wins
    (live: one EM step per epoch over the last 8 h, see :class:`LiveStager`).

Context
    Offline: forward-backward over the whole recording. Live: after each epoch, the same over the
    epochs so far; the epoch's stage is its posterior there, which uses no later epoch, and is
    final when the epoch ends.

Other channels
    A chin EMG's tone, the eye movements of a left and right EOG pair and the body movement an
    accelerometer sees shift the stages' log likelihoods (:mod:`dsp.evidence`): tone raises W
    and lowers REM, eye movements raise REM and W, movement raises W. The tone's and the eye
    movements' reference is what the EEG alone calls NREM (offline: the whole night; live: the
    epochs so far), and the gain and offsets come from the EEG alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import SignalError
from .evidence import (EYE_CONTEXT_S, MAX_EYE_MOVEMENTS, auxiliary_loglik, emg_tone, eye_movement_stretch,
                       eye_movements, movement_seconds)
from .features import (EEG_FEATURES, GAIN_DEPENDENT, default_workers, eeg_features, emg_log_power,
                       entropy_input, to_working_rate, working_rate, working_rate_features)
from .hmm import bank_evidence, bank_mixture_posterior, sequence_log_evidence
from .model import StagingModel, default_model
from .quality import epoch_quality, scorable, scorable_epochs, unscorable_reason
from .stages import EPOCH_SECONDS, STAGES, UNSCORED

MIN_RATE_HZ = 50.0
#: Gain hypotheses: offsets (log10 power) around the recording's own delta level.
GAIN_OFFSETS = np.arange(-1.5, 1.5001, 0.05)
#: Features that a headband's noise floor and filters shift in every stage alike (beta share,
#: spectral slope, permutation entropy): each gets a per-recording offset, estimated by EM.
NOISE_SENSITIVE = np.array([EEG_FEATURES.index(name) for name in ("beta_share", "spectral_slope",
                                                                  "permutation_entropy")])
#: Prior weight of "no offset", in N2 epochs: a short recording moves its offsets less.
OFFSET_PRIOR_EPOCHS = 50.0
MAX_EM_ITERATIONS = 20
#: EM has converged when no offset moves by more than this in a step (log10 units; entropy 0..1).
EM_TOLERANCE = 1e-3
#: Gain hypotheses whose evidence falls this far (nats) below the best one's in the first EM pass
#: are dropped from the later passes: they weigh under 1e-15 in the mixture unless the feature
#: offsets moved the evidence by over 160 nats, and offsets shrunk towards 0 move it by far less.
NEGLIGIBLE_EVIDENCE_NATS = 200.0


@dataclass(frozen=True)
class StagingResult:
    """Stages of consecutive 30-s epochs.

    Attributes
    ----------
    stages : ndarray of int8, shape (n_epochs,)
        0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscorable (see :mod:`dsp.stages`).
    probabilities : ndarray, shape (n_epochs, 5)
        Probability of each stage per epoch (the hypnodensity); rows sum to 1.
    confidence : ndarray, shape (n_epochs,)
        Probability of the chosen stage, 0..1; 0 for unscorable epochs.
    epoch_length : float
        Epoch length in seconds (30).
    feature_offsets : ndarray, shape (n_features,) or None
        The per-recording offsets of the features (columns :data:`dsp.features.EEG_FEATURES`, 0
        but for the noise-sensitive ones) the stager settled on: what this headband and montage
        shift the features by. Pass them as ``calibration`` when staging the same headband again.
    """

    stages: np.ndarray
    probabilities: np.ndarray
    confidence: np.ndarray
    epoch_length: float = EPOCH_SECONDS
    feature_offsets: np.ndarray | None = None


def emission_loglik(model: StagingModel, features: np.ndarray, gain: float, aux: np.ndarray | None = None) -> np.ndarray:
    """Log likelihood of each stage for each epoch's features, given the recording's gain.

    Parameters
    ----------
    model : StagingModel
        Prototypes and spreads.
    features : ndarray, shape (n_epochs, 5)
        Output of :func:`dsp.features.eeg_features`.
    gain : float
        The recording's N2 delta level (log10 uV^2): the hypothesis being scored.
    aux : ndarray, shape (n_epochs, 5), optional
        Log-likelihood shifts from the other channels (:func:`dsp.evidence.auxiliary_loglik`).

    Returns
    -------
    ndarray, shape (n_epochs, 5)
    """
    x = features - gain * GAIN_DEPENDENT
    z = (x[:, None, :] - model.prototypes[None, :, :]) / model.spread[None, :, :]
    loglik = -0.5 * (z * z).sum(axis=-1) - np.log(model.spread).sum(axis=1)
    return loglik if aux is None else loglik + aux


def _check_rate(fs: float) -> None:
    if not fs >= MIN_RATE_HZ:
        raise SignalError(f"staging needs a sample rate of at least {MIN_RATE_HZ:g} Hz, got {fs:g} Hz")


def _as_2d(x, name: str) -> np.ndarray:
    if _is_reader(x):
        return x
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0:
        raise SignalError(f"{name} must be shaped (channels, samples) or (samples,), got {x.shape}")
    return x


def _is_reader(x) -> bool:
    """A 2-D array-like that reads samples when sliced (e.g. ingest.edf.SignalReader): kept as it is."""
    return (not isinstance(x, np.ndarray) and hasattr(x, "__getitem__")
            and len(getattr(x, "shape", ())) == 2 and x.shape[0] > 0)


@dataclass(frozen=True)
class _GainBank:
    """The gain hypotheses' part of the emission likelihoods: it depends only on the gain-dependent
    features, which the offset EM never moves, so it is computed once per recording."""

    gains: np.ndarray  # (J,) log10 uV^2: the recording's N2 delta level under each hypothesis
    table: np.ndarray  # (T, K, J) likelihood factor of the gain-dependent features, max 1 over J
    peak: np.ndarray  # (T, K) log of what ``table`` was divided by


@njit(cache=True)
def _gain_table(values, ok, gains, coef, centre, spread):
    """Likelihood factor of the gain-dependent features for each epoch, stage and gain hypothesis.

    ``values`` (T, D) are the gain-dependent features, shifted by ``gain * coef`` (D,) under each of
    the ``gains`` (J,), evenly spaced; ``centre``, ``spread`` (K, D) the stages' prototypes and
    spreads. Returns the table (T, K, J), scaled so its maximum over J is 1, and the log of that
    scale (T, K); epochs that are not ``ok`` get 1 and 0 (no evidence).

    The log likelihood is a quadratic in the hypothesis' index, so from the best hypothesis outwards
    each factor is the previous one times a ratio that itself changes by a constant factor: two
    multiplications per entry instead of an exponential.
    """
    t_len, d_len = values.shape
    k_len, j_len = centre.shape[0], gains.shape[0]
    table = np.ones((t_len, k_len, j_len))
    peak = np.zeros((t_len, k_len))
    loglik = np.empty(j_len)
    for t in range(t_len):
        if not ok[t]:
            continue
        for k in range(k_len):
            best = -np.inf
            top = 0
            for j in range(j_len):
                total = 0.0
                for d in range(d_len):
                    z = (values[t, d] - gains[j] * coef[d] - centre[k, d]) / spread[k, d]
                    total += z * z
                loglik[j] = -0.5 * total
                if loglik[j] > best:
                    best, top = loglik[j], j
            peak[t, k] = best
            # the quadratic's (constant) second difference, from three neighbouring hypotheses
            if j_len < 3:
                curvature = 0.0
            else:
                mid = min(max(top, 1), j_len - 2)
                curvature = loglik[mid + 1] - 2.0 * loglik[mid] + loglik[mid - 1]
            change = np.exp(curvature)
            factor = 1.0
            if top + 1 < j_len:
                ratio = np.exp(loglik[top + 1] - best)
                for j in range(top + 1, j_len):
                    factor *= ratio
                    table[t, k, j] = factor
                    ratio *= change
            factor = 1.0
            if top > 0:
                ratio = np.exp(loglik[top - 1] - best)
                for j in range(top - 1, -1, -1):
                    factor *= ratio
                    table[t, k, j] = factor
                    ratio *= change
    return table, peak


def _gain_bank(model: StagingModel, features: np.ndarray, ok: np.ndarray) -> _GainBank:
    """Gain hypotheses around the median delta level of the scorable epochs, and their likelihood factors."""
    gains = float(np.median(features[ok, 0])) + GAIN_OFFSETS
    dependent = GAIN_DEPENDENT != 0
    table, peak = _gain_table(np.ascontiguousarray(features[:, dependent]), ok, gains, GAIN_DEPENDENT[dependent],
                              np.ascontiguousarray(model.prototypes[:, dependent]),
                              np.ascontiguousarray(model.spread[:, dependent]))
    return _GainBank(gains, table, peak)


@njit(cache=True)
def _shared_factor(features, ok, dependent, prototypes, spread, aux, peak):
    """The emission likelihood factor all gain hypotheses share, shape (T, K): the gain-independent
    features' Gaussian likelihood under each stage, the other channels' shifts ``aux`` (T, K) and the gain table's scale
    (``peak``), exponentiated relative to each epoch's best stage; 1 for epochs that are not ``ok``."""
    t_len, f_len = features.shape
    k_len = prototypes.shape[0]
    out = np.ones((t_len, k_len))
    log_norm = np.zeros(k_len)
    precision = np.zeros((k_len, f_len))  # 1 / spread of the gain-independent features
    for k in range(k_len):
        for f in range(f_len):
            log_norm[k] += np.log(spread[k, f])
            if not dependent[f]:
                precision[k, f] = 1.0 / spread[k, f]
    loglik = np.empty(k_len)
    for t in range(t_len):
        if not ok[t]:
            continue
        best = -np.inf
        for k in range(k_len):
            total = 0.0
            for f in range(f_len):
                if not dependent[f]:
                    z = (features[t, f] - prototypes[k, f]) * precision[k, f]
                    total += z * z
            loglik[k] = -0.5 * total - log_norm[k] + aux[t, k] + peak[t, k]
            best = max(best, loglik[k])
        for k in range(k_len):
            out[t, k] = np.exp(loglik[k] - best)
    return out


def _narrowed(bank: _GainBank, keep: np.ndarray) -> _GainBank:
    """The bank without the hypotheses not in ``keep`` (bool, (J,))."""
    return _GainBank(bank.gains[keep], np.ascontiguousarray(bank.table[:, :, keep]), bank.peak)


def _bank_posterior(model: StagingModel, features: np.ndarray, ok: np.ndarray, aux, bank: _GainBank,
                    initial: np.ndarray | None = None) -> tuple:
    """Evidence-weighted forward-backward posterior over the bank of gain hypotheses, shape (T, 5),
    the gain of the best-supported hypothesis, and each hypothesis' log evidence relative to it (J,).
    ``aux`` (T, 5) holds the other channels' log-likelihood shifts (None: none);
    ``initial`` (5,) is the first epoch's stage probabilities, by default the model's."""
    initial = model.initial if initial is None else initial
    aux = np.zeros((len(ok), len(STAGES))) if aux is None else aux
    factor = _shared_factor(features, ok, GAIN_DEPENDENT != 0, model.prototypes, model.spread, aux, bank.peak)
    log_evidence = bank_evidence(factor, bank.table, model.transitions, initial)
    weights = np.exp(log_evidence)
    weights /= weights.sum()
    used = np.flatnonzero(weights > 1e-15)  # the rest add less than rounding to the mixture
    post = bank_mixture_posterior(factor, bank.table, model.transitions, initial, used, weights[used])
    return post, float(bank.gains[int(log_evidence.argmax())]), log_evidence


@njit(cache=True)
def _offset_statistics(x, ok, post, prototypes, spread):
    """Sums over the ``ok`` epochs, weighted by the stage posteriors ``post`` (T, K), of the
    precision-weighted residuals of ``x`` (T, F, gain removed) from the prototypes, and of the
    precisions: the sufficient statistics of the per-recording feature offsets, (F,) each."""
    t_len, f_len = x.shape
    k_len = prototypes.shape[0]
    residual = np.zeros(f_len)
    weight = np.zeros(f_len)
    for t in range(t_len):
        if not ok[t]:
            continue
        for k in range(k_len):
            p = post[t, k]
            for f in range(f_len):
                precision = 1.0 / (spread[k, f] * spread[k, f])
                residual[f] += p * (x[t, f] - prototypes[k, f]) * precision
                weight[f] += p * precision
    return residual, weight


def _offset_update(model: StagingModel, x: np.ndarray, post: np.ndarray, ok=None) -> tuple:
    """Sufficient statistics of the per-recording feature offsets: precision-weighted residuals
    of ``x`` (n, n_features, gain removed) from the prototypes, and their precisions, summed over
    the epochs (those ``ok``, by default all) weighted by the stage posteriors ``post`` (n, 5)."""
    ok = np.ones(len(x), dtype=bool) if ok is None else ok
    return _offset_statistics(np.ascontiguousarray(x, dtype=np.float64), ok,
                              np.ascontiguousarray(post, dtype=np.float64), model.prototypes, model.spread)


def _offset_precision(model: StagingModel) -> np.ndarray:
    """Precision of the offsets' prior, (n_noise_sensitive,): that of :data:`OFFSET_PRIOR_EPOCHS` N2 epochs."""
    return OFFSET_PRIOR_EPOCHS / model.spread[2, NOISE_SENSITIVE] ** 2


def _offsets(model: StagingModel, residual: np.ndarray, weight: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """MAP offsets of the noise-sensitive features, shrunk to the prior's ``centre`` (n_features,)
    by :data:`OFFSET_PRIOR_EPOCHS` N2 epochs."""
    precision = _offset_precision(model)
    out = np.zeros_like(residual)
    out[NOISE_SENSITIVE] = ((residual[NOISE_SENSITIVE] + precision * centre[NOISE_SENSITIVE])
                            / (weight[NOISE_SENSITIVE] + precision))
    return out


def _offset_starts(model: StagingModel, features: np.ndarray, ok: np.ndarray, centre: np.ndarray) -> tuple:
    """Where the offset EM starts: the prior's ``centre`` (no offsets, or a calibration), and
    offsets that make the recording's median epoch an N2 one (the commonest stage of a night).
    From the first alone, a montage whose noise-sensitive features sit far from the prototypes (a
    consumer headband's frontal and temporal leads, say) can lock into a mode where every epoch
    but N3 is wake."""
    typical_n2 = np.zeros(features.shape[1])
    typical_n2[NOISE_SENSITIVE] = (np.median(features[ok][:, NOISE_SENSITIVE], axis=0)
                                   - model.prototypes[2, NOISE_SENSITIVE])
    return centre.copy(), typical_n2


def _offset_em(model: StagingModel, features: np.ndarray, ok: np.ndarray, aux, bank: _GainBank,
               offset: np.ndarray, centre: np.ndarray, *, iterations: int = MAX_EM_ITERATIONS,
               committed: tuple | None = None, initial: np.ndarray | None = None,
               known: np.ndarray | None = None) -> tuple | None:
    """EM of the feature offsets from ``offset``: the posterior over stages at the mode it reaches,
    shape (T, 5), that mode's log posterior density up to a constant (the best gain hypothesis' HMM
    evidence plus the offsets' log prior), which ranks modes reached from different starts, the
    offsets and the best gain. ``aux`` (T, 5): the other channels' log-likelihood shifts, or None.
    ``centre`` (n_features,) is the offsets' prior mean. At most
    ``iterations`` steps; ``committed`` adds sufficient statistics of epochs no longer in
    ``features`` (:func:`_offset_update`), ``initial`` (5,) is the first epoch's stage
    probabilities (by default the model's). ``known`` (n_features,): the offsets of a mode found
    already; None is returned as soon as an iterate comes within the convergence tolerance of it
    (the same mode: nothing new to rank)."""
    initial = model.initial if initial is None else initial
    for iteration in range(iterations):
        post, gain, log_evidence = _bank_posterior(model, features - offset, ok, aux, bank, initial)
        if iteration == 0:  # later passes need only the hypotheses the evidence left standing
            bank = _narrowed(bank, log_evidence > -NEGLIGIBLE_EVIDENCE_NATS)
        residual, weight = _offset_update(model, features - gain * GAIN_DEPENDENT, post, ok)
        if committed is not None:
            residual, weight = residual + committed[0], weight + committed[1]
        new = _offsets(model, residual, weight, centre)
        if known is not None and np.abs(new - known).max() < EM_TOLERANCE:
            return None
        converged = np.abs(new - offset).max() < EM_TOLERANCE
        offset = new
        if converged:
            break
    post, gain, _ = _bank_posterior(model, features - offset, ok, aux, bank, initial)
    x = (features - offset - gain * GAIN_DEPENDENT)[ok]
    score = _mode_density(model, x, offset, centre, model.transitions, initial, None if aux is None else aux[ok])
    return post, score, offset, gain


def _mode_density(model: StagingModel, x: np.ndarray, offset: np.ndarray, centre: np.ndarray, trans: np.ndarray,
                  prior: np.ndarray, aux=None) -> float:
    """Log posterior density of feature offsets, up to a constant: the HMM evidence of the epochs'
    features ``x`` (n, n_features; gain and offsets removed) plus the offsets' log prior (that of
    :func:`_offsets`, mean ``centre``); ``prior`` (K,) is the first epoch's stage probabilities."""
    evidence = sequence_log_evidence(emission_loglik(model, x, 0.0, aux), trans, prior)
    shift = offset[NOISE_SENSITIVE] - centre[NOISE_SENSITIVE]
    return evidence - 0.5 * float((_offset_precision(model) * shift ** 2).sum())


def _adapted_posterior(model: StagingModel, features: np.ndarray, ok: np.ndarray, aux,
                       centre: np.ndarray) -> tuple:
    """Posterior over stages after estimating the recording's gain and feature offsets, shape
    (T, 5), and the offsets (n_features,): EM from each of :func:`_offset_starts`, keeping the
    mode of higher posterior density. ``centre`` is the offsets' prior mean."""
    bank = _gain_bank(model, features, ok)
    first, second = _offset_starts(model, features, ok, centre)
    post, score, offset, _ = _offset_em(model, features, ok, aux, bank, first, centre)
    other = _offset_em(model, features, ok, aux, bank, second, centre, known=offset)
    if other is not None and other[1] > score:
        return other[0], other[2]
    return post, offset


def epoch_features(eeg, fs: float, workers: int | None = None) -> tuple:
    """Features and scorability of every whole 30-s epoch of EEG.

    Parameters
    ----------
    eeg : ndarray or array-like reader, shape (n_channels, n_samples)
        EEG in uV; NaN marks lost samples. A reader (anything with ``shape`` whose
        ``eeg[channel, start:stop]`` gives an ndarray, e.g. :meth:`ingest.edf.EdfRecording.reader`)
        is read a chunk at a time.
    fs : float
        Sample rate in Hz (>= 50).
    workers : int, optional
        Threads for the features (:func:`dsp.features.working_rate_features`); by default
        :func:`dsp.features.default_workers`. The features do not depend on it.

    Returns
    -------
    features : ndarray, shape (n_epochs, n_features)
        :func:`dsp.features.eeg_features`, computed at the working rate (50-64 Hz,
        :func:`dsp.features.working_rate`), averaged over the channels that can be scored in
        each epoch (a lead that fails mid-night costs its own epochs, not the others').
    ok : ndarray of bool, shape (n_epochs,)
        Epochs at least one channel of which can be scored (see :mod:`dsp.quality`).

    Raises
    ------
    SignalError
        If the rate is below 50 Hz, the recording is shorter than one epoch, or no epoch can be
        scored (flat, railed, clipped or missing signal throughout).
    """
    _check_rate(fs)
    n_epochs = eeg.shape[1] // int(round(EPOCH_SECONDS * fs))
    if n_epochs == 0:
        raise SignalError(
            f"recording too short: {eeg.shape[1] / fs:.1f} s; staging needs at least one {EPOCH_SECONDS:g}-s epoch"
        )
    workers = default_workers() if workers is None else workers
    features, quality = working_rate_features(eeg, fs, n_epochs, workers)
    usable = np.array([scorable(q) for q in quality])  # (n_channels, n_epochs)
    ok = usable.any(axis=0)
    if not ok.any():
        best = max(quality, key=lambda q: int(scorable(q).sum()))
        raise SignalError(f"no epoch can be scored: {unscorable_reason(best)}")
    if usable.all():
        return features.mean(axis=0), ok
    total = np.where(usable[:, :, None], features, 0.0).sum(axis=0)
    return total / np.maximum(usable.sum(axis=0), 1)[:, None], ok


def stage(eeg, fs: float, *, emg=None, emg_fs: float | None = None, eog=None, eog_fs: float | None = None,
          acc=None, acc_fs: float | None = None, model: StagingModel | None = None,
          calibration=None, workers: int | None = None) -> StagingResult:
    """Stage a whole recording offline (context in both directions).

    Parameters
    ----------
    eeg : array_like, shape (n_channels, n_samples) or (n_samples,)
        One or more EEG channels in uV, any lead (frontal, central, temporal); NaN marks lost samples.
        May also be a reader that loads samples when sliced (anything 2-D with ``shape`` whose
        ``eeg[channel, start:stop]`` gives an ndarray, e.g. :meth:`ingest.edf.EdfRecording.reader`):
        the recording is then read a chunk at a time and never held whole.
    fs : float
        EEG sample rate in Hz (>= 50).
    emg : array_like, shape (n_emg, n_emg_samples) or (n_emg_samples,), optional
        Chin EMG in uV covering the same time span (or a reader, as ``eeg``).
    emg_fs : float, optional
        EMG sample rate in Hz; ``fs`` if omitted.
    eog : array_like, shape (2, n_eog_samples) or (1, n_eog_samples), optional
        EOG in uV over the same span: the left and right electrodes (E1/LOC, E2/ROC), or one
        bipolar horizontal derivation (E1-E2); see :mod:`dsp.evidence` for why a single
        eye-to-mastoid lead is not used. Rapid eye movements count towards REM (and wake).
    eog_fs : float, optional
        EOG sample rate in Hz (> 11.2); ``fs`` if omitted.
    acc : array_like, shape (n_axes, n_acc_samples), optional
        Accelerometer in g over the same span (e.g. x, y, z); body movement counts towards wake.
    acc_fs : float, optional
        Accelerometer sample rate in Hz (>= 2); ``fs`` if omitted.
    model : StagingModel, optional
        Parameters (e.g. from ``dreamsync train``); :func:`dsp.model.default_model` if omitted.
    calibration : array_like, shape (n_features,), optional
        Feature offsets learnt from an earlier, longer recording of the same headband and montage
        (its :attr:`StagingResult.feature_offsets`): the prior mean of this recording's offsets,
        which otherwise is 0 (a scalp montage like the prototypes'). A consumer headband's offsets
        are many prior SDs from 0, and a recording of an hour or two cannot move them that far.
    workers : int, optional
        Threads for the EEG features, by default :func:`dsp.features.default_workers` (the
        cores this process may run on; 1 in a cohort's worker processes). The stages do not
        depend on it.

    Returns
    -------
    StagingResult
        One stage per whole 30-s epoch; a final partial epoch is dropped.

    Raises
    ------
    SignalError
        If the rate is below 50 Hz, the recording is shorter than one epoch, or no epoch can be
        scored (flat, railed, clipped or missing signal throughout).
    """
    eeg = _as_2d(eeg, "eeg")
    features, ok = epoch_features(eeg, fs, workers)
    n_epochs = len(ok)
    model = default_model() if model is None else model
    centre = _calibration(calibration, features.shape[1])
    post, offsets = _adapted_posterior(model, features, ok, None, centre)
    measures = _other_channels(n_epochs, fs, emg, emg_fs, eog, eog_fs, acc, acc_fs)
    if measures:  # the other channels' references are the epochs the EEG alone calls NREM
        aux = auxiliary_loglik(model, ok & (post[:, 2] + post[:, 3] > 0.5), **measures)
        if aux is not None:
            post, offsets = _adapted_posterior(model, features, ok, aux, centre)
    stages = post.argmax(axis=1).astype(np.int8)
    confidence = post.max(axis=1)
    stages[~ok] = UNSCORED
    confidence[~ok] = 0.0
    return StagingResult(stages=stages, probabilities=post, confidence=confidence, feature_offsets=offsets)


def _other_channels(n_epochs: int, fs: float, emg, emg_fs, eog, eog_fs, acc, acc_fs) -> dict:
    """The per-epoch measures of :func:`stage`'s non-EEG channels, as keyword arguments of
    :func:`dsp.evidence.auxiliary_loglik` (a channel shorter than the EEG's epochs is left out)."""
    measures = {}
    if emg is not None:
        emg_fs = fs if emg_fs is None else emg_fs
        _check_rate(emg_fs)
        power = emg_tone(_as_2d(emg, "emg"), emg_fs, n_epochs)
        if power is not None:
            measures["emg_power"] = power
    if eog is not None:
        eog = _as_2d(eog, "eog")
        if eog.shape[0] > 2:
            raise SignalError(f"eog must hold the left and right electrodes or one bipolar lead, got {eog.shape[0]} rows")
        found = eye_movements(eog, fs if eog_fs is None else eog_fs, n_epochs)
        if found is not None:
            measures["eye_sizes"], measures["eye_scale"] = found
    if acc is not None:
        moving = movement_seconds(_as_2d(acc, "acc"), fs if acc_fs is None else acc_fs, n_epochs)
        if moving is not None:
            measures["movement"] = moving
    return measures


def _calibration(calibration, n_features: int) -> np.ndarray:
    """The offsets' prior mean, (n_features,): ``calibration``'s noise-sensitive entries, or 0."""
    centre = np.zeros(n_features)
    if calibration is None:
        return centre
    given = np.asarray(calibration, dtype=np.float64)
    if given.shape != (n_features,) or not np.all(np.isfinite(given)):
        raise ValueError(f"calibration must be {n_features} finite feature offsets, got shape {given.shape}")
    centre[NOISE_SENSITIVE] = given[NOISE_SENSITIVE]
    return centre


@dataclass(frozen=True)
class EpochStage:
    """The live stage of one epoch.

    Attributes
    ----------
    index : int
        Epoch number from the stream start; it covers ``[30 * index, 30 * index + 30)`` s.
    stage : int
        Stage code, -1 when unscorable.
    confidence : float
        Probability of ``stage``, 0..1 (0 when unscorable).
    probabilities : ndarray, shape (5,)
        Filtered probability of each stage.
    """

    index: int
    stage: int
    confidence: float
    probabilities: np.ndarray


#: Most recent epochs (8 h) live staging re-reads after every epoch: the gain, the feature offsets
#: and the stage come from them as offline's come from the whole night. Older epochs keep the share
#: of the offsets' evidence they had when they left. A whole night's worth: a shorter window commits
#: the early night's posteriors while the offsets are still poorly known.
OFFSET_WINDOW_EPOCHS = 960


class LiveStager:
    """Causal staging of a stream: feed samples as they arrive, get each epoch's stage when it ends.

    After every epoch, the stager does over the epochs so far (the last :data:`OFFSET_WINDOW_EPOCHS`
    of them) what offline staging does over a whole night, one EM step at a time: gain hypotheses
    around the window's median delta level, one EM step of the feature offsets from where they are
    and one from "the median epoch is N2" (:func:`_offset_starts`), keeping the mode of higher
    posterior density, and a forward-backward pass under the result. The epoch's stage is that
    pass's posterior for it, which uses no later epoch. Earlier stages are not revised in what
    :meth:`push` returns. Epochs that left the window keep the share of the offsets' evidence they
    had then. Memory and an epoch's cost are bounded, whatever the night's length.

    The other channels (EMG, EOG, accelerometer) shift the stages' likelihoods as offline
    (:func:`dsp.evidence.auxiliary_loglik`), with the window's epochs that the EEG alone calls NREM
    as the reference of the EMG tone and of the eye-movement threshold (the stages these channels
    pull never choose their own reference); a reference is used once
    :data:`dsp.evidence.MIN_REFERENCE_EPOCHS` such epochs are there. The offsets and the gain come
    from the EEG alone. An eye-movement count's filter takes its history from the end of the
    previous epoch, so live counts match offline's.

    Parameters
    ----------
    fs : float
        Sample rate in Hz (>= 50) of every channel.
    n_eeg : int, optional
        Number of EEG channels in each pushed ``eeg`` block, by default 1.
    n_emg : int, optional
        Number of EMG channels in each pushed ``emg`` block (0 = none), by default 0.
    n_eog : int, optional
        Number of EOG channels in each pushed ``eog`` block: 0 (none, the default), 2 (left and
        right) or 1 (a bipolar horizontal derivation); see :func:`stage`.
    n_acc : int, optional
        Number of accelerometer axes (g) in each pushed ``acc`` block (0 = none), by default 0.
    model : StagingModel, optional
        Parameters; :func:`dsp.model.default_model` if omitted.
    calibration : array_like, shape (n_features,), optional
        Feature offsets of an earlier recording of the same headband (see :func:`stage`): the
        offsets start there, and are shrunk towards them rather than towards 0.
    """

    def __init__(self, fs: float, n_eeg: int = 1, n_emg: int = 0, model: StagingModel | None = None,
                 calibration=None, *, n_eog: int = 0, n_acc: int = 0):
        _check_rate(fs)
        self.model = default_model() if model is None else model
        self.fs = float(fs)
        self._rate, self._down = working_rate(self.fs)
        if n_eog > 2:
            raise SignalError(f"n_eog must be 0, 1 (a bipolar lead) or 2 (left and right), got {n_eog}")
        self.n_eeg, self.n_emg, self.n_eog, self.n_acc = n_eeg, n_emg, n_eog, n_acc
        self._n_per = int(round(EPOCH_SECONDS * fs))
        # rows: EEG, EMG, EOG, accelerometer
        self._rows = np.cumsum([0, n_eeg, n_emg, n_eog, n_acc])
        self._buffer = np.empty((self._rows[-1], self._n_per))
        self._eog_history = np.zeros((n_eog, 0))  # the last seconds of the previous epoch's EOG
        self._filled = 0
        n_features, size = len(EEG_FEATURES), OFFSET_WINDOW_EPOCHS
        self._centre = _calibration(calibration, n_features)
        self._offset = self._centre.copy()
        self._gain = 0.0  # the best gain hypothesis of the last pass (log10 uV^2)
        # the offsets' evidence from epochs that left the window
        self._committed = (np.zeros(n_features), np.zeros(n_features))
        # the window, a ring: features, scorable, EMG log power (NaN: none), the EEG-only
        # posterior of the last pass, and the causal probabilities each epoch was given
        self._window_features = np.zeros((size, n_features))
        self._window_ok = np.zeros(size, dtype=bool)
        self._window_emg = np.full(size, np.nan)
        self._window_eye_sizes = np.full((size, MAX_EYE_MOVEMENTS), np.nan)
        self._window_eye_scale = np.full(size, np.nan)
        self._window_movement = np.full(size, np.nan)
        self._window_post = np.zeros((size, len(STAGES)))
        self._window_filtered = np.zeros((size, len(STAGES)))
        self._window_len = 0  # epochs in the window, oldest first from _window_start
        self._window_start = 0
        self._window_prior = np.asarray(self.model.initial, dtype=np.float64)  # of the oldest epoch's stage
        self._context = np.zeros((n_eeg, 0))  # the last second of the previous epoch
        self.epochs_done = 0

    def push(self, eeg: np.ndarray, emg: np.ndarray | None = None, eog: np.ndarray | None = None,
             acc: np.ndarray | None = None) -> list:
        """Add samples; return an :class:`EpochStage` for every epoch completed by them.

        Parameters
        ----------
        eeg : ndarray, shape (n_eeg, n)
            EEG in uV; NaN for lost samples.
        emg : ndarray, shape (n_emg, n), optional
            EMG in uV, required when ``n_emg > 0``.
        eog : ndarray, shape (n_eog, n), optional
            EOG in uV, required when ``n_eog > 0``.
        acc : ndarray, shape (n_acc, n), optional
            Accelerometer in g, required when ``n_acc > 0``.

        Returns
        -------
        list of EpochStage
        """
        blocks = [np.asarray(eeg).reshape(self.n_eeg, -1)]
        for name, rows, block in (("EMG", self.n_emg, emg), ("EOG", self.n_eog, eog), ("accelerometer", self.n_acc, acc)):
            if rows and block is None:
                raise SignalError(f"this LiveStager was built with {name} channels: push them too")
            blocks.append(np.asarray(block).reshape(rows, -1) if rows else np.zeros((0, blocks[0].shape[1])))
        out = []
        start, n = 0, blocks[0].shape[1]
        while start < n:
            take = min(n - start, self._n_per - self._filled)
            for block, row in zip(blocks, self._rows):
                self._buffer[row : row + block.shape[0], self._filled : self._filled + take] = block[:, start : start + take]
            self._filled += take
            start += take
            if self._filled == self._n_per:
                out.append(self._stage_epoch(*self._working_epoch(), *self._check_epoch(self._buffer)))
                self._filled = 0
        return out

    @property
    def feature_offsets(self) -> np.ndarray:
        """The feature offsets the stager has settled on so far, (n_features,) (see :func:`stage`)."""
        return self._offset.copy()

    def push_gap(self, n: int) -> list:
        """Account for ``n`` lost samples: they count as missing, never as data."""
        lost = [np.full((rows, n), np.nan) if rows else None for rows in (self.n_emg, self.n_eog, self.n_acc)]
        return self.push(np.full((self.n_eeg, n), np.nan), *lost)

    def _check_epoch(self, epoch: np.ndarray) -> tuple:
        """Native-rate checks and measures of a completed epoch: which EEG channels can be scored
        (n_eeg,), and the other channels' measures (:mod:`dsp.evidence`; NaN when unusable or absent):
        EMG log power, eye-movement sizes (MAX_EYE_MOVEMENTS,) and scale, seconds of movement."""
        eeg, emg, eog, acc = (epoch[a:b] for a, b in zip(self._rows[:-1], self._rows[1:]))
        ok = scorable(epoch_quality(eeg))  # each channel's row as one epoch
        emg_power = np.nan
        if self.n_emg and np.all(scorable_epochs(emg[:, None, :])):
            emg_power = float(emg_log_power(emg[:, None, :], self.fs)[0])
        eye = (np.full(MAX_EYE_MOVEMENTS, np.nan), np.nan)
        if self.n_eog:
            stretch = np.hstack([self._eog_history, eog])
            sizes, scale = eye_movement_stretch(stretch, self.fs, self._eog_history.shape[1], 1)
            eye = (sizes[0], scale[0])
            self._eog_history = eog[:, -int(round(EYE_CONTEXT_S * self.fs)):].copy()
        moving = movement_seconds(acc, self.fs, 1)[0] if self.n_acc else np.nan
        return ok, emg_power, eye, moving

    def _working_epoch(self) -> tuple:
        """The completed epoch's EEG at the working rate (:func:`dsp.features.working_rate`), shape
        (n_eeg, 30 * rate), and the same through :func:`dsp.features.entropy_input`.

        Resampled with about the last second of the previous epoch before it and a mirror image of
        its own last second after it, so the anti-alias filter and the entropy's high-pass have
        context on both sides and the stage is ready at once (no waiting for the next samples);
        the result matches offline except within the filters' reach of the epoch's end.
        """
        eeg = self._buffer[: self.n_eeg]
        # about 1 s: a whole number of samples at both rates
        context = self._down * int(round(self._rate)) if self._down else int(round(self.fs))
        mirror = eeg[:, -2 : -context - 2 : -1]
        working = to_working_rate(np.hstack([self._context, eeg, mirror]), self.fs)
        first = int(round(self._context.shape[1] * self._rate / self.fs))
        self._context = eeg[:, -context:].copy()
        epoch = slice(first, first + int(round(EPOCH_SECONDS * self._rate)))
        highpassed = np.stack([entropy_input(row, self._rate)[epoch] for row in working])
        return working[:, epoch], highpassed

    def _stage_epoch(self, working: np.ndarray, highpassed: np.ndarray, usable: np.ndarray, emg_power: float,
                     eye: tuple, moving: float) -> EpochStage:
        index = self.epochs_done
        self.epochs_done += 1
        ok = bool(usable.any())  # as offline, the channels that can be scored stand for the epoch
        features = eeg_features(working[usable, None, :], self._rate, highpassed[usable, None, :])[0] if ok else None
        slot = self._remember(features, emg_power, eye, moving)
        order = (self._window_start + np.arange(self._window_len)) % OFFSET_WINDOW_EPOCHS
        ok_window = self._window_ok[order]
        if not ok_window.any():  # nothing scorable yet: the prior carried forward
            probs = self._window_prior if self._window_len == 1 else self._window_filtered[order[-2]] @ self.model.transitions
            self._window_filtered[slot] = probs
            return EpochStage(index, UNSCORED, 0.0, probs)
        eeg_post, probs = self._window_pass(self._window_features[order], ok_window, order)
        self._window_post[order] = eeg_post
        self._window_filtered[slot] = eeg_post[-1]
        if not ok:
            return EpochStage(index, UNSCORED, 0.0, probs)
        best = int(probs.argmax())
        return EpochStage(index, best, float(probs[best]), probs)

    def _window_pass(self, features: np.ndarray, ok: np.ndarray, order: np.ndarray) -> tuple:
        """Offline staging of the window, one EM step of the offsets from each start: the EEG-only
        posterior of every window epoch (T, 5), and the stage probabilities of the last (5,)."""
        bank = _gain_bank(self.model, features, ok)
        best = None
        for start in (self._offset, _offset_starts(self.model, features, ok, self._centre)[1]):
            result = _offset_em(self.model, features, ok, None, bank, start, self._centre, iterations=1,
                                committed=self._committed, initial=self._window_prior)
            if best is None or result[1] > best[1]:
                best = result
        post, _, self._offset, self._gain = best
        probs = post[-1]
        nrem = ok & (post[:, 2] + post[:, 3] > 0.5)
        aux = auxiliary_loglik(
            self.model, nrem, emg_power=self._window_emg[order] if self.n_emg else None,
            eye_sizes=self._window_eye_sizes[order] if self.n_eog else None,
            eye_scale=self._window_eye_scale[order] if self.n_eog else None,
            movement=self._window_movement[order] if self.n_acc else None)
        if aux is not None:
            probs = _bank_posterior(self.model, features - self._offset, ok, aux, bank, self._window_prior)[0][-1]
        return post, probs

    def _remember(self, features, emg_power: float, eye: tuple, moving: float) -> int:
        """Add an epoch (its features, None when unscorable, and :meth:`_check_epoch`'s measures) to the window and
        return its slot; the oldest one, when the window is full, leaves: it commits the offsets'
        evidence its last posterior gives, and its causal probabilities become the prior."""
        size = OFFSET_WINDOW_EPOCHS
        if self._window_len == size:
            old = self._window_start
            if self._window_ok[old]:
                x = self._window_features[old:old + 1] - self._gain * GAIN_DEPENDENT
                residual, weight = _offset_update(self.model, x, self._window_post[old:old + 1])
                self._committed = (self._committed[0] + residual, self._committed[1] + weight)
            # the next oldest epoch's prior: one transition on from the departing one's causal probabilities
            self._window_prior = self._window_filtered[old] @ self.model.transitions
            self._window_start = (old + 1) % size
            self._window_len -= 1
        slot = (self._window_start + self._window_len) % size
        self._window_ok[slot] = features is not None
        self._window_features[slot] = 0.0 if features is None else features
        self._window_emg[slot] = np.nan if features is None else emg_power
        self._window_eye_sizes[slot], self._window_eye_scale[slot] = eye if features is not None else (np.nan, np.nan)
        self._window_movement[slot] = np.nan if features is None else moving
        self._window_len += 1
        return slot
