"""Cauchy transform of ``K_v = c_v + K_{v-1} ⊠ Y`` (a chain of free multiplicative convolutions
with shifts) by joint multiplicative subordination, solved with Anderson-accelerated fixed-point
sweeps and continuation in the imaginary part.

Level ``k`` (``P_k = K_{k-1} ⊠ Y``) at the point ``z_k`` has subordination points ``zeta_{k-1}``
(on the ``K_{k-1}`` side) and ``om_k`` (on the ``Y`` side):
``eta_{P_k}(z_k) = eta_{K_{k-1}}(zeta_{k-1}) = eta_Y(om_k)``, ``zeta_{k-1} om_k = z_k eta_{P_k}(z_k)``.
The shift is ``eta_{K_k}(zeta) = 1 - (1 - c_k zeta)(1 - eta_{P_k}(zeta / (1 - c_k zeta)))``; the
bottom law is ``delta_{c_0}`` with ``eta = c_0 zeta``.
"""
from __future__ import annotations

import numpy as np


def _step(om, w, cs, eta_Y):
    n = len(cs) - 1
    H = eta_Y(om)
    zeta = np.empty((n + 1,) + w.shape, complex)
    z = np.empty_like(zeta)
    zeta[n] = 1.0 / w
    for k in range(n, 0, -1):
        z[k] = zeta[k] / (1.0 - cs[k] * zeta[k])
        zeta[k - 1] = z[k] * H[k - 1] / om[k - 1]
    etaK = np.empty((n,) + w.shape, complex)
    etaK[0] = cs[0] * zeta[0]
    if n > 1:
        etaK[1:] = 1.0 - (1.0 - cs[1:n, None] * zeta[1:n]) * (1.0 - H[: n - 1])
    return z[1:] * etaK / zeta[:n], H


def _anderson(w, cs, eta_Y, om, depth=6, tol=1e-10, maxiter=4000):
    X, F = [], []
    err = np.inf
    for it in range(maxiter):
        g, _ = _step(om, w, cs, eta_Y)
        f = g - om
        err = float(np.max(np.abs(f) / np.abs(g)))
        if err < tol:
            om = g
            break
        X.append(om)
        F.append(f)
        if len(X) > depth:
            X.pop(0)
            F.pop(0)
        if len(X) > 1:
            dF = np.stack([F[i + 1] - F[i] for i in range(len(F) - 1)], -1)
            dX = np.stack([X[i + 1] - X[i] for i in range(len(X) - 1)], -1)
            A = np.transpose(dF, (1, 0, 2))
            b = np.transpose(f, (1, 0))
            AhA = np.einsum("pnk,pnj->pkj", A.conj(), A)
            tr = np.real(np.einsum("pkk->p", AhA)) / AhA.shape[-1]
            AhA = AhA + (1e-10 * tr + 1e-300)[:, None, None] * np.eye(A.shape[-1])
            Ahb = np.einsum("pnk,pn->pk", A.conj(), b)
            try:
                gam = np.linalg.solve(AhA, Ahb[..., None])[..., 0]
            except np.linalg.LinAlgError:
                om = g
                continue
            new = om + f - np.einsum("npk,pk->np", dX + dF, gam)
            bad = ~np.all(np.isfinite(new), 0)
            new[:, bad] = g[:, bad]
            om = new
        else:
            om = g
    _, H = _step(om, w, cs, eta_Y)
    return 1.0 / ((w - cs[-1]) * (1.0 - H[-1])), om, err


def chain_cauchy(x, eps, cs, eta_Y, scale, steps=6, tol=1e-10):
    """``G_{K_n}(x + i eps)`` for ``K_0 = delta_{cs[0]}``, ``K_k = cs[k] + K_{k-1} ⊠ Y``.

    Returns ``(G, err)`` with ``err`` the final relative fixed-point residual."""
    x = np.asarray(x, dtype=float)
    cs = np.asarray(cs, dtype=float)
    n = len(cs) - 1
    if n == 0:
        return 1.0 / (x + 1j * eps - cs[0]), 0.0
    om = np.tile(1.0 / (x + 1j * scale), (n, 1))
    G, err = None, np.inf
    for h in np.geomspace(scale, eps, steps):
        G, om, err = _anderson(x + 1j * h, cs, eta_Y, om, tol=tol)
    return G, err
