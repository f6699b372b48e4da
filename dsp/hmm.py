"""Hidden Markov model passes over per-epoch stage evidence, in log space.

Offline staging uses the forward-backward pass (context in both directions); live staging uses the
forward pass one epoch at a time (causal).
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
    k = log_emit.shape[0]
    out = np.empty(k)
    for j in range(k):
        out[j] = _logsumexp(log_prev + log_trans[:, j]) + log_emit[j]
    return out - _logsumexp(out)


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
    ndarray, shape (T, K)
        Posterior probabilities; each row sums to 1.
    """
    t_len, k = log_emit.shape
    alpha = np.empty((t_len, k))
    beta = np.zeros((t_len, k))
    a0 = log_init + log_emit[0]
    alpha[0] = a0 - _logsumexp(a0)
    for t in range(1, t_len):
        alpha[t] = forward_step(alpha[t - 1], log_emit[t], log_trans)
    for t in range(t_len - 2, -1, -1):
        for i in range(k):
            beta[t, i] = _logsumexp(log_trans[i] + log_emit[t + 1] + beta[t + 1])
        beta[t] -= _logsumexp(beta[t])
    post = np.empty((t_len, k))
    for t in range(t_len):
        g = alpha[t] + beta[t]
        post[t] = np.exp(g - _logsumexp(g))
    return post
