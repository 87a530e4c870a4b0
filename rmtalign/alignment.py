"""Definitions and identities of the backward-feature angle (BFA), vectorised over leading axes.

Notation of Chizat & Netrapalli: ``b_v`` is the backward vector dL/df_v, ``fdot_v`` the feature
velocity after one GD step, ``K_v`` the backward-to-feature kernel (``fdot_v = -K_v b_v``) and
``Lambda_v = sum_{l <= v} eta_l |grad_l L|^2`` the upstream contribution to the loss decay.
Vectors live on the last axis; everything before it broadcasts.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "cos_between",
    "bfa_cos",
    "angle_deg",
    "spectral_moments",
    "cos_from_spectrum",
    "cos_from_kernel",
    "spectral_bounds",
    "feature_speed",
    "sensitivity",
]


def cos_between(u, v, axis=-1):
    """Cosine of the angle between ``u`` and ``v`` along ``axis``; NaN where either is zero."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    nu = np.linalg.norm(u, axis=axis)
    nv = np.linalg.norm(v, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sum(u * v, axis=axis) / (nu * nv)
    return np.where((nu > 0) & (nv > 0), out, np.nan)


def bfa_cos(b, fdot, axis=-1):
    """``cos(theta_v) = -b_v . fdot_v / (|b_v| |fdot_v|)``: the BFA's cosine (Sec. 2.1)."""
    return cos_between(np.negative(b), fdot, axis=axis)


def angle_deg(cos):
    """The angle ``arccos(cos)`` in degrees (``cos`` clipped to ``[-1, 1]`` against round-off)."""
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def spectral_moments(eigenvalues, orders=(1, 2), axis=-1):
    """``M_p = mean_i lambda_i^p`` for each ``p`` in ``orders``, stacked on a new first axis."""
    lam = np.asarray(eigenvalues, dtype=float)
    return np.stack([np.mean(lam**p, axis=axis) for p in orders])


def cos_from_spectrum(eigenvalues, axis=-1):
    """``M_1 / sqrt(M_2)``: the width-limit cosine for a Gaussian ``b`` independent of ``K``
    (Thm 3.2)."""
    m1, m2 = spectral_moments(eigenvalues, (1, 2), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return m1 / np.sqrt(m2)


def cos_from_kernel(K, b):
    """``|K^{1/2} b|^2 / (|K b| |b|) = b^T K b / (|K b| |b|)`` (Eq. 6). ``K`` is ``(..., m, m)``."""
    K, b = np.asarray(K, dtype=float), np.asarray(b, dtype=float)
    Kb = np.einsum("...ij,...j->...i", K, b)
    return cos_between(b, Kb)


def spectral_bounds(eigenvalues, axis=-1):
    """``(lambda_min / lambda_max, 1)``: worst-case bounds on ``cos(theta_v)`` (Thm 3.2)."""
    lam = np.asarray(eigenvalues, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.min(lam, axis=axis) / np.max(lam, axis=axis)
    return low, np.ones_like(low)


def feature_speed(loss_decay, cos, b_norm):
    """Feature speed formula (Thm 2.1): ``|fdot_v| = Lambda_v / (cos(theta_v) |b_v|)``."""
    return np.asarray(loss_decay) / (np.asarray(cos) * np.asarray(b_norm))


def sensitivity(fdot_norm, loss_decay, width):
    """``S_v = |fdot_v|_rms / Lambda_v`` (Eq. 4), which equals ``1 / (cos m |b_v|_rms)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(fdot_norm) / np.sqrt(width) / np.asarray(loss_decay)
