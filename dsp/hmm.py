"""Hidden Markov model passes over per-epoch stage evidence, in log space.

Offline staging uses the forward-backward pass (context in both directions); live staging uses the
forward pass one epoch at a time (causal). Both also give the log evidence of the whole sequence,
which the stager uses to compare hypotheses about a recording (its gain) against each other. A
bank of such hypotheses, models that differ only in their emissions, runs side by side in linear
scale (:func:`bank_evidence`, :func:`bank_posterior`): as fast for tens of models as for one;
:func:`bank_mixture_posterior` mixes the posteriors of the models that matter in one call.
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
def sequence_log_evidence(log_emit, trans, init):
    """Log likelihood of all epochs' evidence under the model: :func:`forward_filter`'s
    ``log_evidence``, from a forward pass in linear scale (each epoch's emissions relative to their
    best, each step renormalised; no temporaries), for scoring many candidate emissions.

    Parameters
    ----------
    log_emit : ndarray, shape (T, K)
        Log likelihood of each epoch's evidence under each state.
    trans : ndarray, shape (K, K)
        Transition probabilities, rows = from, columns = to.
    init : ndarray, shape (K,)
        Probabilities of the first epoch's state.

    Returns
    -------
    float
    """
    t_len, k_len = log_emit.shape
    alpha = init.copy()
    nxt = np.empty(k_len)
    total = 0.0
    for t in range(t_len):
        top = log_emit[t].max()
        norm = 0.0
        for k in range(k_len):
            prior = alpha[k]
            if t > 0:
                prior = 0.0
                for i in range(k_len):
                    prior += alpha[i] * trans[i, k]
            nxt[k] = prior * np.exp(log_emit[t, k] - top)
            norm += nxt[k]
        for k in range(k_len):
            alpha[k] = nxt[k] / norm
        total += top + np.log(norm)
    return total


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


@njit(cache=True)
def bank_evidence(factor, table, trans, init):
    """Log evidence of each model of a bank of hidden Markov models that differ only in their emissions.

    The models share their states, transitions and initial probabilities; the emission likelihood
    of state ``k`` at epoch ``t`` under model ``j`` is ``factor[t, k] * table[t, k, j]``, in linear
    scale and up to a positive factor per epoch that is the same for every model (it cancels when
    the models are compared). A scaled forward pass runs over the models innermost, so a whole
    bank costs about as much as one model does.

    Parameters
    ----------
    factor : ndarray, shape (T, K)
        The part of the emission likelihoods that all models share, e.g. ``exp(loglik - max)``.
    table : ndarray, shape (T, K, J)
        The part that differs between the J models.
    trans : ndarray, shape (K, K)
        Transition probabilities, rows = from, columns = to (all positive).
    init : ndarray, shape (K,)
        Probabilities of the first epoch's state.

    Returns
    -------
    ndarray, shape (J,)
        Log likelihood of all T epochs under each model relative to the best model (which gets 0);
        -inf for a model hundreds of nats worse than the best.
    """
    # the log outside the fastmath kernels: a model with no evidence left gives exactly -inf
    if table.shape[1] == 5:
        return np.log(_bank_running_5(factor, table, trans, init))
    return np.log(_bank_running(factor, table, trans, init))


@njit(cache=True, fastmath=True)  # fastmath: the loops over the bank vectorise (sums reassociated)
def _bank_running(factor, table, trans, init):
    """Evidence of each model relative to the best (linear scale): :func:`bank_evidence`'s pass."""
    t_len, k_len, j_len = table.shape
    running = np.ones(j_len)  # evidence relative to the best model so far
    prev = np.empty((k_len, j_len))
    cur = np.empty((k_len, j_len))
    norm = np.empty(j_len)
    for t in range(t_len):
        for k in range(k_len):
            f = factor[t, k]
            if t == 0:
                for j in range(j_len):
                    cur[k, j] = init[k] * f * table[t, k, j]
                continue
            for j in range(j_len):
                cur[k, j] = 0.0
            for i in range(k_len):
                a_ik = trans[i, k]
                for j in range(j_len):
                    cur[k, j] += prev[i, j] * a_ik
            for j in range(j_len):
                cur[k, j] *= f * table[t, k, j]
        for j in range(j_len):
            norm[j] = 0.0
        for k in range(k_len):
            for j in range(j_len):
                norm[j] += cur[k, j]
        best = 0.0
        for j in range(j_len):
            norm[j] = max(norm[j], 1e-300)  # a model that explains nothing keeps zeros, not NaN
            running[j] *= norm[j]
            best = max(best, running[j])
            norm[j] = 1.0 / norm[j]
        for k in range(k_len):
            for j in range(j_len):
                prev[k, j] = cur[k, j] * norm[j]
        for j in range(j_len):
            running[j] /= best
    return running


@njit(cache=True, fastmath=True)
def _bank_running_5(factor, table, trans, init):
    """:func:`_bank_running` written out for five states (the sleep stages): one loop over the
    bank per epoch instead of dozens, which is most of the cost for banks of tens of models."""
    t_len, _, j_len = table.shape
    running = np.ones(j_len)
    prev = np.empty((5, j_len))
    cur = np.empty((5, j_len))
    t00, t01, t02, t03, t04 = trans[0, 0], trans[0, 1], trans[0, 2], trans[0, 3], trans[0, 4]
    t10, t11, t12, t13, t14 = trans[1, 0], trans[1, 1], trans[1, 2], trans[1, 3], trans[1, 4]
    t20, t21, t22, t23, t24 = trans[2, 0], trans[2, 1], trans[2, 2], trans[2, 3], trans[2, 4]
    t30, t31, t32, t33, t34 = trans[3, 0], trans[3, 1], trans[3, 2], trans[3, 3], trans[3, 4]
    t40, t41, t42, t43, t44 = trans[4, 0], trans[4, 1], trans[4, 2], trans[4, 3], trans[4, 4]
    for t in range(t_len):
        f0, f1, f2, f3, f4 = factor[t, 0], factor[t, 1], factor[t, 2], factor[t, 3], factor[t, 4]
        if t == 0:
            for j in range(j_len):
                cur[0, j] = init[0] * f0 * table[t, 0, j]
                cur[1, j] = init[1] * f1 * table[t, 1, j]
                cur[2, j] = init[2] * f2 * table[t, 2, j]
                cur[3, j] = init[3] * f3 * table[t, 3, j]
                cur[4, j] = init[4] * f4 * table[t, 4, j]
        else:
            for j in range(j_len):
                p0, p1, p2, p3, p4 = prev[0, j], prev[1, j], prev[2, j], prev[3, j], prev[4, j]
                cur[0, j] = (p0 * t00 + p1 * t10 + p2 * t20 + p3 * t30 + p4 * t40) * f0 * table[t, 0, j]
                cur[1, j] = (p0 * t01 + p1 * t11 + p2 * t21 + p3 * t31 + p4 * t41) * f1 * table[t, 1, j]
                cur[2, j] = (p0 * t02 + p1 * t12 + p2 * t22 + p3 * t32 + p4 * t42) * f2 * table[t, 2, j]
                cur[3, j] = (p0 * t03 + p1 * t13 + p2 * t23 + p3 * t33 + p4 * t43) * f3 * table[t, 3, j]
                cur[4, j] = (p0 * t04 + p1 * t14 + p2 * t24 + p3 * t34 + p4 * t44) * f4 * table[t, 4, j]
        best = 0.0
        for j in range(j_len):
            c = max(cur[0, j] + cur[1, j] + cur[2, j] + cur[3, j] + cur[4, j], 1e-300)
            running[j] *= c
            inv = 1.0 / c
            prev[0, j] = cur[0, j] * inv
            prev[1, j] = cur[1, j] * inv
            prev[2, j] = cur[2, j] * inv
            prev[3, j] = cur[3, j] * inv
            prev[4, j] = cur[4, j] * inv
            best = max(best, running[j])
        for j in range(j_len):
            running[j] /= best
    return running


@njit(cache=True)
def bank_posterior(factor, table, trans, init, j):
    """Posterior state probabilities of every epoch given all epochs, under model ``j`` of a bank.

    A scaled forward-backward pass of the one model (see :func:`bank_evidence` for the bank).

    Parameters
    ----------
    factor, table, trans, init
        As :func:`bank_evidence`.
    j : int
        The model.

    Returns
    -------
    ndarray, shape (T, K)
        Posterior probabilities; each row sums to 1.
    """
    t_len, k_len, _ = table.shape
    alpha = np.empty((t_len, k_len))
    norm = np.empty(t_len)
    emit = np.empty((t_len, k_len))
    for t in range(t_len):
        c = 0.0
        for k in range(k_len):
            emit[t, k] = factor[t, k] * table[t, k, j]
            if t == 0:
                a = init[k]
            else:
                a = 0.0
                for i in range(k_len):
                    a += alpha[t - 1, i] * trans[i, k]
            alpha[t, k] = a * emit[t, k]
            c += alpha[t, k]
        c = max(c, 1e-300)
        norm[t] = c
        for k in range(k_len):
            alpha[t, k] /= c
    post = np.empty((t_len, k_len))
    beta = np.ones(k_len)
    weighted = np.empty(k_len)
    for t in range(t_len - 1, -1, -1):
        if t < t_len - 1:
            for k in range(k_len):
                weighted[k] = emit[t + 1, k] * beta[k]
            for i in range(k_len):
                b = 0.0
                for k in range(k_len):
                    b += trans[i, k] * weighted[k]
                beta[i] = b / norm[t + 1]
        s = 0.0
        for k in range(k_len):
            post[t, k] = alpha[t, k] * beta[k]
            s += post[t, k]
        for k in range(k_len):
            post[t, k] /= s
    return post


@njit(cache=True)
def bank_mixture_posterior(factor, table, trans, init, models, weights):
    """The weighted mixture of several bank models' posteriors (:func:`bank_posterior`), in one call.

    Parameters
    ----------
    factor, table, trans, init
        As :func:`bank_evidence`.
    models : ndarray of int, shape (M,)
        The models mixed.
    weights : ndarray, shape (M,)
        Their weights (non-negative, not all 0; normalised here).

    Returns
    -------
    ndarray, shape (T, K)
        ``sum_m weights[m] * bank_posterior(..., models[m]) / sum(weights)``; each row sums to 1.
    """
    t_len, k_len, _ = table.shape
    mixture = np.zeros((t_len, k_len))
    total_weight = 0.0
    for m in range(models.shape[0]):
        total_weight += weights[m]
    for m in range(models.shape[0]):
        if k_len == 5:
            _add_posterior_5(factor, table, trans, init, models[m], weights[m] / total_weight, mixture)
        else:
            post = bank_posterior(factor, table, trans, init, models[m])
            for t in range(t_len):
                for k in range(k_len):
                    mixture[t, k] += weights[m] / total_weight * post[t, k]
    return mixture


@njit(cache=True, fastmath=True)  # fastmath: the sums over states reassociated
def _add_posterior_5(factor, table, trans, init, j, share, mixture):
    """``mixture += share * bank_posterior(factor, table, trans, init, j)`` written out for five
    states (the sleep stages): the states' sums in registers instead of loops over them."""
    t_len = table.shape[0]
    alpha = np.empty((t_len, 5))
    norm = np.empty(t_len)
    t00, t01, t02, t03, t04 = trans[0, 0], trans[0, 1], trans[0, 2], trans[0, 3], trans[0, 4]
    t10, t11, t12, t13, t14 = trans[1, 0], trans[1, 1], trans[1, 2], trans[1, 3], trans[1, 4]
    t20, t21, t22, t23, t24 = trans[2, 0], trans[2, 1], trans[2, 2], trans[2, 3], trans[2, 4]
    t30, t31, t32, t33, t34 = trans[3, 0], trans[3, 1], trans[3, 2], trans[3, 3], trans[3, 4]
    t40, t41, t42, t43, t44 = trans[4, 0], trans[4, 1], trans[4, 2], trans[4, 3], trans[4, 4]
    p0, p1, p2, p3, p4 = init[0], init[1], init[2], init[3], init[4]
    for t in range(t_len):  # forward, scaled; p holds the predicted state probabilities
        a0 = p0 * factor[t, 0] * table[t, 0, j]
        a1 = p1 * factor[t, 1] * table[t, 1, j]
        a2 = p2 * factor[t, 2] * table[t, 2, j]
        a3 = p3 * factor[t, 3] * table[t, 3, j]
        a4 = p4 * factor[t, 4] * table[t, 4, j]
        c = max(a0 + a1 + a2 + a3 + a4, 1e-300)
        norm[t] = c
        inv = 1.0 / c
        a0, a1, a2, a3, a4 = a0 * inv, a1 * inv, a2 * inv, a3 * inv, a4 * inv
        alpha[t, 0], alpha[t, 1], alpha[t, 2], alpha[t, 3], alpha[t, 4] = a0, a1, a2, a3, a4
        p0 = a0 * t00 + a1 * t10 + a2 * t20 + a3 * t30 + a4 * t40
        p1 = a0 * t01 + a1 * t11 + a2 * t21 + a3 * t31 + a4 * t41
        p2 = a0 * t02 + a1 * t12 + a2 * t22 + a3 * t32 + a4 * t42
        p3 = a0 * t03 + a1 * t13 + a2 * t23 + a3 * t33 + a4 * t43
        p4 = a0 * t04 + a1 * t14 + a2 * t24 + a3 * t34 + a4 * t44
    b0 = b1 = b2 = b3 = b4 = 1.0
    for t in range(t_len - 1, -1, -1):  # backward, scaled alike; the posterior mixed in on the way
        if t < t_len - 1:
            inv = 1.0 / norm[t + 1]
            w0 = factor[t + 1, 0] * table[t + 1, 0, j] * b0 * inv
            w1 = factor[t + 1, 1] * table[t + 1, 1, j] * b1 * inv
            w2 = factor[t + 1, 2] * table[t + 1, 2, j] * b2 * inv
            w3 = factor[t + 1, 3] * table[t + 1, 3, j] * b3 * inv
            w4 = factor[t + 1, 4] * table[t + 1, 4, j] * b4 * inv
            b0 = t00 * w0 + t01 * w1 + t02 * w2 + t03 * w3 + t04 * w4
            b1 = t10 * w0 + t11 * w1 + t12 * w2 + t13 * w3 + t14 * w4
            b2 = t20 * w0 + t21 * w1 + t22 * w2 + t23 * w3 + t24 * w4
            b3 = t30 * w0 + t31 * w1 + t32 * w2 + t33 * w3 + t34 * w4
            b4 = t40 * w0 + t41 * w1 + t42 * w2 + t43 * w3 + t44 * w4
        g0, g1, g2, g3, g4 = alpha[t, 0] * b0, alpha[t, 1] * b1, alpha[t, 2] * b2, alpha[t, 3] * b3, alpha[t, 4] * b4
        scale = share / (g0 + g1 + g2 + g3 + g4)
        mixture[t, 0] += g0 * scale
        mixture[t, 1] += g1 * scale
        mixture[t, 2] += g2 * scale
        mixture[t, 3] += g3 * scale
        mixture[t, 4] += g4 * scale
