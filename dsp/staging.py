"""A first, honest sleep stager: spectral rules with HMM smoothing, offline and live.

Evidence per 30-s epoch
    - log relative EEG power in the AASM bands (delta 0.5-4, theta 4-8, alpha 8-12, sigma 12-16,
      beta 16-30 Hz), averaged over the EEG channels given. Relative powers make the stager
      amplitude invariant, so a consumer headband's low frontal amplitudes do not read as wake;
    - when a chin EMG is given, its 10-100 Hz tone relative to this night's NREM tone (the epochs
      whose EEG alone says N2 or N3): higher in W, lowest in REM. NREM is the reference because a
      recording's median tone is wake tone when the recording is mostly wake.
Each stage has a prototype spectrum (typical relative band powers of a scalp lead in that stage,
from the AASM descriptions); an epoch's likelihood under a stage falls with its squared log-distance
from the prototype. A sticky hidden Markov model then smooths: forward-backward offline, forward only
live. No parameter was fitted to data. It is the baseline that a feature-rich, per-recording adaptive
classifier replaces; its agreement with experts must be measured on real recordings, never on the
simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SignalError
from .hmm import forward_backward, forward_step
from .quality import epoch_quality, scorable, unscorable_reason
from .spectral import band_powers, epoch_psd
from .stages import EPOCH_SECONDS, STAGES, UNSCORED

MIN_RATE_HZ = 50.0
BANDS_HZ = np.array([[0.5, 4.0], [4.0, 8.0], [8.0, 12.0], [12.0, 16.0], [16.0, 30.0]])
EMG_BAND_HZ = (10.0, 100.0)

# Typical relative band powers (delta, theta, alpha, sigma, beta) of each stage: rows W..REM.
_PROTOTYPES = np.array([
    [0.40, 0.14, 0.24, 0.08, 0.14],  # W: alpha (eyes closed) and beta
    [0.55, 0.20, 0.10, 0.06, 0.09],  # N1: alpha gives way to theta
    [0.72, 0.12, 0.06, 0.06, 0.04],  # N2: more delta, sigma from spindles
    [0.88, 0.06, 0.03, 0.02, 0.01],  # N3: slow waves dominate
    [0.58, 0.19, 0.09, 0.05, 0.09],  # REM: low-amplitude mixed frequency, theta
])
_LOG_PROTOTYPES = np.log(_PROTOTYPES / _PROTOTYPES.sum(axis=1, keepdims=True))
# SD of each log relative band power around its stage's prototype. Beta is the loosest: its share
# depends most on the amplifier's filters, the montage and muscle noise, least on the stage.
_SPREAD = np.array([0.35, 0.45, 0.5, 0.5, 1.0])
# How EMG tone (z-score within the recording) shifts each stage's log likelihood.
_EMG_WEIGHT = np.array([1.0, 0.3, 0.0, 0.0, -1.0])

# 30-s transition probabilities (rows from, columns to W, N1, N2, N3, REM): stages persist, and
# follow the usual order W -> N1 -> N2 <-> N3, N2 -> REM, with awakenings from any stage.
_TRANSITIONS = np.array([
    [0.900, 0.080, 0.015, 0.0025, 0.0025],
    [0.060, 0.800, 0.120, 0.005, 0.015],
    [0.015, 0.020, 0.920, 0.030, 0.015],
    [0.010, 0.005, 0.050, 0.935, 0.0001],
    [0.020, 0.020, 0.020, 0.0001, 0.940],
])
LOG_TRANSITIONS = np.log(_TRANSITIONS / _TRANSITIONS.sum(axis=1, keepdims=True))
LOG_INITIAL = np.log(np.array([0.6, 0.15, 0.15, 0.05, 0.05]))


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
    """

    stages: np.ndarray
    probabilities: np.ndarray
    confidence: np.ndarray
    epoch_length: float = EPOCH_SECONDS


def _check_rate(fs: float) -> None:
    if not fs >= MIN_RATE_HZ:
        raise SignalError(f"staging needs a sample rate of at least {MIN_RATE_HZ:g} Hz, got {fs:g} Hz")


def _as_epochs(x: np.ndarray, fs: float) -> np.ndarray:
    """(channels, samples) -> (channels, epochs, samples per epoch), dropping a final partial epoch."""
    n_per = int(round(EPOCH_SECONDS * fs))
    n_epochs = x.shape[-1] // n_per
    return x[:, : n_epochs * n_per].reshape(x.shape[0], n_epochs, n_per)


def _fill_missing(epochs: np.ndarray) -> np.ndarray:
    """Replace a few lost samples by their epoch's mean so spectra stay defined (never output data)."""
    bad = ~np.isfinite(epochs)
    if not bad.any():
        return epochs
    finite = np.where(bad, 0.0, epochs)
    counts = np.maximum((~bad).sum(axis=-1, keepdims=True), 1)  # an all-missing epoch gets 0
    return np.where(bad, finite.sum(axis=-1, keepdims=True) / counts, epochs)


def _epoch_band_powers(epochs: np.ndarray, fs: float, bands_hz: np.ndarray) -> np.ndarray:
    """Band powers (uV^2) of (channels, epochs, samples), shape (channels, epochs, bands).

    Bands are capped at 0.45 fs: at 50 Hz, beta ends below Nyquist.
    """
    n_ch, n_ep, n_s = epochs.shape
    freqs, psd = epoch_psd(_fill_missing(epochs).reshape(n_ch * n_ep, n_s), fs)
    edges = np.array(bands_hz, dtype=np.float64)
    edges[:, 1] = np.minimum(edges[:, 1], 0.45 * fs)
    return band_powers(psd, freqs, edges).reshape(n_ch, n_ep, -1)


def eeg_evidence(epochs: np.ndarray, fs: float) -> np.ndarray:
    """Log relative band powers of EEG epochs.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        EEG in uV.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (n_epochs, 5)
        Log relative power in each band of :data:`BANDS_HZ`, averaged over channels.
    """
    power = _epoch_band_powers(epochs, fs, BANDS_HZ) + 1e-12
    return np.log(power / power.sum(axis=-1, keepdims=True)).mean(axis=0)


def emg_log_power(epochs: np.ndarray, fs: float) -> np.ndarray:
    """Log EMG power (uV^2) in 10-100 Hz (capped below Nyquist) per epoch, averaged over channels.

    Parameters
    ----------
    epochs : ndarray, shape (n_channels, n_epochs, n_samples)
        EMG in uV.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    ndarray, shape (n_epochs,)
    """
    power = _epoch_band_powers(epochs, fs, np.array([EMG_BAND_HZ]))[..., 0]
    return np.log(power + 1e-12).mean(axis=0)


def emission_loglik(eeg_log_rel: np.ndarray, emg_z: np.ndarray | None = None) -> np.ndarray:
    """Log likelihood of each stage for each epoch's evidence, shape (n_epochs, 5).

    Parameters
    ----------
    eeg_log_rel : ndarray, shape (n_epochs, 5)
        Output of :func:`eeg_evidence`.
    emg_z : ndarray, shape (n_epochs,), optional
        EMG tone as a robust z-score against this night's NREM tone (0 = typical NREM tone).
    """
    diff = eeg_log_rel[:, None, :] - _LOG_PROTOTYPES[None, :, :]
    loglik = -0.5 * ((diff / _SPREAD) ** 2).sum(axis=-1)
    if emg_z is not None:
        loglik = loglik + np.clip(emg_z, -3.0, 3.0)[:, None] * _EMG_WEIGHT[None, :]
    return loglik


#: Fewest NREM epochs that make an EMG tone reference.
MIN_EMG_REFERENCE_EPOCHS = 10


def is_nrem_by_eeg(eeg_log_rel: np.ndarray) -> np.ndarray:
    """Epochs whose EEG evidence alone is closest to N2 or N3, shape (n_epochs,) bool."""
    return np.isin(emission_loglik(eeg_log_rel).argmax(axis=1), (2, 3))


def robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(values - median) / (1.4826 * MAD)`` with median and MAD taken over ``reference``."""
    med = np.median(reference)
    mad = 1.4826 * np.median(np.abs(reference - med))
    return (values - med) / mad if mad > 0 else np.zeros_like(values)


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0:
        raise SignalError(f"{name} must be shaped (channels, samples) or (samples,), got {x.shape}")
    return x


def stage(eeg, fs: float, *, emg=None, emg_fs: float | None = None) -> StagingResult:
    """Stage a whole recording offline (context in both directions).

    Parameters
    ----------
    eeg : array_like, shape (n_channels, n_samples) or (n_samples,)
        One or more EEG channels in uV, any lead (frontal, central, temporal); NaN marks lost samples.
    fs : float
        EEG sample rate in Hz (>= 50).
    emg : array_like, shape (n_emg, n_emg_samples) or (n_emg_samples,), optional
        Chin EMG in uV covering the same time span.
    emg_fs : float, optional
        EMG sample rate in Hz; ``fs`` if omitted.

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
    _check_rate(fs)
    eeg = _as_2d(eeg, "eeg")
    epochs = _as_epochs(eeg, fs)
    n_epochs = epochs.shape[1]
    if n_epochs == 0:
        raise SignalError(
            f"recording too short: {eeg.shape[1] / fs:.1f} s; staging needs at least one {EPOCH_SECONDS:g}-s epoch"
        )
    quality = [epoch_quality(ch) for ch in epochs]
    ok = np.all([scorable(q) for q in quality], axis=0)
    if not ok.any():
        worst = min(quality, key=lambda q: int(scorable(q).sum()))
        raise SignalError(f"no epoch can be scored: {unscorable_reason(worst)}")
    evidence = eeg_evidence(epochs, fs)
    emg_z = None
    if emg is not None:
        emg_fs = fs if emg_fs is None else emg_fs
        _check_rate(emg_fs)
        emg_epochs = _as_epochs(_as_2d(emg, "emg"), emg_fs)[:, :n_epochs]
        if emg_epochs.shape[1] == n_epochs:
            emg_ok = np.all([scorable(epoch_quality(ch)) for ch in emg_epochs], axis=0)
            power = emg_log_power(emg_epochs, emg_fs)
            reference = emg_ok & ok & is_nrem_by_eeg(evidence)
            if reference.sum() >= MIN_EMG_REFERENCE_EPOCHS:
                emg_z = np.where(emg_ok, robust_z(power, power[reference]), 0.0)
    loglik = emission_loglik(evidence, emg_z)
    loglik[~ok] = 0.0  # no evidence: the HMM carries the neighbours' context through
    post = forward_backward(loglik, LOG_TRANSITIONS, LOG_INITIAL)
    stages = post.argmax(axis=1).astype(np.int8)
    confidence = post.max(axis=1)
    stages[~ok] = UNSCORED
    confidence[~ok] = 0.0
    return StagingResult(stages=stages, probabilities=post, confidence=confidence)


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


class LiveStager:
    """Causal staging of a stream: feed samples as they arrive, get each epoch's stage when it ends.

    Parameters
    ----------
    fs : float
        Sample rate in Hz (>= 50) of every channel.
    n_eeg : int, optional
        Number of EEG channels in each pushed ``eeg`` block, by default 1.
    n_emg : int, optional
        Number of EMG channels in each pushed ``emg`` block (0 = none), by default 0.
    """

    def __init__(self, fs: float, n_eeg: int = 1, n_emg: int = 0):
        _check_rate(fs)
        self.fs = float(fs)
        self.n_eeg, self.n_emg = n_eeg, n_emg
        self._n_per = int(round(EPOCH_SECONDS * fs))
        self._buffer = np.empty((n_eeg + n_emg, 0))
        self._log_post: np.ndarray | None = None
        self._nrem_emg: list = []  # EMG log power of epochs the EEG calls NREM
        self.epochs_done = 0

    def push(self, eeg: np.ndarray, emg: np.ndarray | None = None) -> list:
        """Add samples; return an :class:`EpochStage` for every epoch completed by them.

        Parameters
        ----------
        eeg : ndarray, shape (n_eeg, n)
            EEG in uV; NaN for lost samples.
        emg : ndarray, shape (n_emg, n), optional
            EMG in uV, required when ``n_emg > 0``.
        """
        rows = [np.asarray(eeg, dtype=np.float64).reshape(self.n_eeg, -1)]
        if self.n_emg:
            if emg is None:
                raise SignalError("this LiveStager was built with EMG channels: push emg too")
            rows.append(np.asarray(emg, dtype=np.float64).reshape(self.n_emg, -1))
        self._buffer = np.hstack([self._buffer, np.vstack(rows)])
        out = []
        while self._buffer.shape[1] >= self._n_per:
            out.append(self._stage_epoch(self._buffer[:, : self._n_per]))
            self._buffer = self._buffer[:, self._n_per :]
        return out

    def push_gap(self, n: int) -> list:
        """Account for ``n`` lost samples: they count as missing, never as data."""
        return self.push(np.full((self.n_eeg, n), np.nan), np.full((self.n_emg, n), np.nan) if self.n_emg else None)

    def _stage_epoch(self, epoch: np.ndarray) -> EpochStage:
        eeg = epoch[: self.n_eeg, None, :]
        ok = bool(np.all(scorable(epoch_quality(eeg[:, 0, :]))))
        loglik = np.zeros(len(STAGES))
        if ok:
            evidence = eeg_evidence(eeg, self.fs)
            emg_z = None
            if self.n_emg:
                emg = epoch[self.n_eeg :, None, :]
                if np.all(scorable(epoch_quality(emg[:, 0, :]))):
                    power = emg_log_power(emg, self.fs)
                    if len(self._nrem_emg) >= MIN_EMG_REFERENCE_EPOCHS:
                        emg_z = robust_z(power, np.array(self._nrem_emg))
                    if is_nrem_by_eeg(evidence)[0]:
                        self._nrem_emg.append(power[0])
            loglik = emission_loglik(evidence, emg_z)[0]
        if self._log_post is None:
            post = LOG_INITIAL + loglik
            self._log_post = post - np.logaddexp.reduce(post)
        else:
            self._log_post = forward_step(self._log_post, loglik, LOG_TRANSITIONS)
        probs = np.exp(self._log_post)
        index = self.epochs_done
        self.epochs_done += 1
        if not ok:
            return EpochStage(index, UNSCORED, 0.0, probs)
        best = int(probs.argmax())
        return EpochStage(index, best, float(probs[best]), probs)
