"""Hidden Markov model passes over per-epoch stage evidence, in log space.

Offline staging uses the forward-backward pass (context in both directions); live staging uses the
forward pass one epoch at a time (causal). Both also give the log evidence of the whole sequence,
which the stager uses to compare hypotheses about a recording (its gain) against each other.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _logsumexp(v):
    m = v.max()
    if not np.isfinite(m):
        return m
    return m + np.log(np.exp(v - m).sum())


@njit(cache=True)
def forward_step(log_prev, log_emit, log_trans):
    """One causal filtering step.

    Parameters
    ----------
    log_prev : ndarray, shape (K,)
        Log posterior of the previous epoch's state (normalised).
    log_emit : ndarray, shape (K,)
        Log likelihood of this epoch's evidence under each state.
    log_trans : ndarray, shape (K, K)
        Log transition probabilities, rows = from, columns = to.

    Returns
    -------
    ndarray, shape (K,)
        Normalised log posterior of this epoch's state.
    """
    out = predict_and_update(log_prev, log_emit, log_trans)
    return out - _logsumexp(out)


@njit(cache=True)
def predict_and_update(log_prev, log_emit, log_trans):
    """Unnormalised log posterior of this epoch's state; its log-sum-exp is the step's log evidence.

    Parameters and shapes as :func:`forward_step`.
    """
    k = log_emit.shape[0]
    out = np.empty(k)
    for j in range(k):
        out[j] = _logsumexp(log_prev + log_trans[:, j]) + log_emit[j]
    return out


@njit(cache=True)
def forward_filter(log_emit, log_trans, log_init):
    """Causal posteriors of every epoch and the log evidence of the sequence.

    Parameters
    ----------
    log_emit : ndarray, shape (T, K)
        Log likelihood of each epoch's evidence under each state.
    log_trans : ndarray, shape (K, K)
        Log transition probabilities, rows = from, columns = to.
    log_init : ndarray, shape (K,)
        Log probabilities of the first epoch's state.

    Returns
    -------
    log_alpha : ndarray, shape (T, K)
        Normalised log posterior of each epoch's state given the epochs up to it.
    log_evidence : float
        Log likelihood of all T epochs' evidence under the model.
    """
    t_len, k = log_emit.shape
    alpha = np.empty((t_len, k))
    a = log_init + log_emit[0]
    total = _logsumexp(a)
    alpha[0] = a - total
    for t in range(1, t_len):
        a = predict_and_update(alpha[t - 1], log_emit[t], log_trans)
        step = _logsumexp(a)
        total += step
        alpha[t] = a - step
    return alpha, total


@njit(cache=True)
def forward_backward(log_emit, log_trans, log_init):
    """Posterior state probabilities of every epoch given all epochs.

    Parameters
    ----------
    log_emit : ndarray, shape (T, K)
        Log likelihood of each epoch's evidence under each state.
    log_trans : ndarray, shape (K, K)
        Log transition probabilities, rows = from, columns = to.
    log_init : ndarray, shape (K,)
        Log probabilities of the first epoch's state.

    Returns
    -------
    posterior : ndarray, shape (T, K)
        Posterior probabilities; each row sums to 1.
    log_evidence : float
        Log likelihood of all T epochs' evidence under the model.
    """
    t_len, k = log_emit.shape
    alpha, total = forward_filter(log_emit, log_trans, log_init)
    beta = np.zeros((t_len, k))
    for t in range(t_len - 2, -1, -1):
        for i in range(k):
            beta[t, i] = _logsumexp(log_trans[i] + log_emit[t + 1] + beta[t + 1])
        beta[t] -= _logsumexp(beta[t])
    post = np.empty((t_len, k))
    for t in range(t_len):
        g = alpha[t] + beta[t]
        post[t] = np.exp(g - _logsumexp(g))
    return post, total
