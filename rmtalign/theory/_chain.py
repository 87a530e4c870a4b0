"""Cauchy transform of ``K_n`` for the chain ``K_0 = delta_{c_0}``, ``K_k = c_k + K_{k-1} ⊠ Y``
(a chain of free multiplicative convolutions with shifts) by *inverse* subordination: one complex
unknown per point ``w = x + i eps``, solved by Newton's method, whatever the depth.

Notation (``free.py``): ``eta_mu(zeta) = 1 - zeta / G_mu(1/zeta)``, ``u = psi = eta / (1 - eta)``,
``S_mu(u)`` the S-transform, and ``Sigma_mu(eta) = S_mu(eta / (1 - eta)) = eta_mu^{-1}(eta) / eta``.
Voiculescu's ``S_{mu ⊠ nu} = S_mu S_nu`` says ``eta_{P}^{-1}(e) = eta_{K}^{-1}(e) Sigma_Y(e)`` for
``P = K ⊠ Y``, and the shift ``K' = c + P`` acts as
``eta_{K'}(zeta) = 1 - (1 - c zeta)(1 - eta_P(zeta / (1 - c zeta)))``. So the pairs
``(zeta_k, e_k = eta_{K_k}(zeta_k))`` on the graphs of ``eta_{K_k}`` are linked by the explicit
*upward* map (no fixed point inside)::

    zeta_0 = t,  e_0 = c_0 t
    z_k    = zeta_{k-1} S_Y(u_{k-1}),   u_{k-1} = e_{k-1} / (1 - e_{k-1})   (eta_{P_k}(z_k) = e_{k-1})
    zeta_k = z_k / (1 + c_k z_k),       e_k = 1 - (1 - c_k zeta_k)(1 - e_{k-1})

and ``G_{K_n}(w) = zeta_n / (1 - e_n)`` at the ``t`` with ``zeta_n(t) = 1/w``. ``t = zeta_0`` is the
composite subordination point (``eta_{K_n}(1/w) = ...``), analytic in ``w``; we solve
``log(zeta_n(t) w) = 0`` by Newton in ``log t`` (forward-mode derivative along the chain, O(n) a
step), with backtracking that keeps every level in its half-plane (for ``w`` in ``C^+``:
``zeta_k, z_k, e_k`` in ``C^-``, ``Im(e_k / zeta_k) <= 0`` and ``Im S_Y >= 0``, the
Nevanlinna/``arg eta(z) >= arg z`` conditions of Belinschi & Bercovici). The right root is selected
by continuation: the first point (and any point where a warm start fails) is followed from
``x + i R`` (``R`` above the support, where ``t ~ 1/w``) down to ``x + i eps``; the others start
from a linear prediction from their two left neighbours (points are processed in increasing ``x``).

The S-transform of the layer law ``Y = A^T A``, ``A = a + T`` with ``T`` R-diagonal and
``S_{T^T T}(y) = (1 + y)^k / (g^2 (p + y))`` (``k = 0``: free Poisson, Gaussian weights; ``k = 1``:
projection, orthogonal weights), is closed form for ``a = 0``. For ``a != 0`` Haagerup–Larsen's
``sym sqrt(Y) = sym(±a) ⊞ sym|T|`` adds R-transforms; with ``gamma R_{sym|T|}(gamma) = y`` iff
``gamma^2 = y (1 + y) S_{T^T T}(y)`` (and the same for ``|a|`` with ``S = 1/a^2``) this gives

    S_Y(u) = y (1 + y) / (a^2 u (1 + u)),   y: root of  g^2 y (1+y) (p+s) = a^2 s (1+s)^(1+k),  s = u - y,

a cubic solved by Newton warm-started per level (branch ``y ~ a^2 u / (a^2 + g^2 p)`` at ``u -> 0``).

The upper edge of the support is ``1 / max zeta_n(t)`` over real ``t > 0`` (the inverse
subordination map has a critical point at the edge): :func:`chain_edge`.

Costs: O(n) per Newton step, ~3 steps per point on a grid, so O(n * len(x)); the old joint
fixed point (n unknowns per point, iteration counts growing with n) was O(n^2 len(x)) or worse.
"""
from __future__ import annotations

import math

import numpy as np

import numba

from .._runtime import configure_numba

_njit = numba.njit(cache=True, error_model="numpy")

__all__ = ["chain_cauchy", "chain_density", "chain_edge", "default_grid", "layer_params"]


def layer_params(law):
    """``(a2, g2, p, k)`` floats for the S-transform of ``Y = A^T A`` (see module docstring)."""
    return (float(law.a2), float(law.g2), float(law.p), 1.0 if law.weights == "orthogonal" else 0.0)


# --------------------------------------------------------------------------- S-transform of Y
@_njit
def _rcp(z):
    """``1 / z``, scaled (no over/underflow for |z| in 1e-300..1e300), branch-free and never
    raising (numba's complex division raises ZeroDivisionError, which a prange worker loses)."""
    s = abs(z.real) + abs(z.imag)
    a = z.real / s
    b = z.imag / s
    f = 1.0 / ((a * a + b * b) * s)
    return complex(a * f, -b * f)


@_njit
def _n1(z):
    return abs(z.real) + abs(z.imag)


@_njit
def _s_y(u, a2, g2, p, k, y0):
    """``(S_Y(u), S_Y'(u), y)``; ``y0`` is the warm start for the cubic (NaN: small-u branch)."""
    if a2 == 0.0:
        inv = _rcp(p + u) * (1.0 / g2)
        if k == 0.0:
            return inv, -inv * inv * g2, 0.0 * u
        return (1.0 + u) * inv, (p - 1.0) * inv * inv * g2, 0.0 * u
    if g2 == 0.0:
        return 1.0 / a2 + 0.0 * u, 0.0 * u, u
    y = y0
    if not (y0.real == y0.real and y0.imag == y0.imag):  # NaN: the branch through 0
        y = u * (a2 / (a2 + g2 * p))
    dphi_dy = 1.0 + 0.0j
    q = 0.0 * u
    for _ in range(40):
        s = u - y
        s1 = 1.0 + s
        if k == 0.0:
            q = a2 * s * s1
            dq = a2 * (s1 + s)  # d/ds
        else:
            q = a2 * s * s1 * s1
            dq = a2 * (s1 * s1 + 2.0 * s * s1)
        phi = g2 * y * (1.0 + y) * (p + s) - q
        dphi_dy = g2 * ((1.0 + 2.0 * y) * (p + s) - y * (1.0 + y)) + dq
        step = phi * _rcp(dphi_dy)
        y = y - step
        if _n1(step) <= 1e-14 * _n1(y) + 1e-300:
            break
    s = u - y
    s1 = 1.0 + s
    if k == 0.0:
        dq = a2 * (s1 + s)
    else:
        dq = a2 * (s1 * s1 + 2.0 * s * s1)
    dphi_du = g2 * y * (1.0 + y) - dq
    dphi_dy = g2 * ((1.0 + 2.0 * y) * (p + s) - y * (1.0 + y)) + dq
    dy = -dphi_du * _rcp(dphi_dy)
    uu = u * (1.0 + u)
    iuu = _rcp(uu) * (1.0 / a2)
    S = y * (1.0 + y) * iuu
    dS = ((1.0 + 2.0 * y) * dy * uu - y * (1.0 + y) * (1.0 + 2.0 * u)) * iuu * _rcp(uu)
    return S, dS, y


# --------------------------------------------------------------------------- upward map
@_njit
def _up(t, cs, a2, g2, p, k, ys_in, ys_out, check):
    """Run the chain from ``zeta_0 = t``. Returns ``(zeta_n, dzeta_n/dlog t, e_n, de_n/dlog t, ok)``;
    ``check``: 1 for the lower half-plane conditions, 2 for the real-axis ones (``0 < e < 1``,
    ``zeta > 0``), 0 for none."""
    n = cs.size - 1
    if not (t != 0 and abs(t.real) < 1e300 and abs(t.imag) < 1e300):
        return t, t, t, t, False
    zeta = t
    e = cs[0] * t
    dzeta = t
    de = cs[0] * t
    tol = 1e-9
    for j in range(n):
        ome = 1.0 - e
        iome = _rcp(ome)
        u = e * iome
        du = de * iome * iome
        S, dS, y = _s_y(u, a2, g2, p, k, ys_in[j])
        ys_out[j] = y
        z = zeta * S
        dz = dzeta * S + zeta * dS * du
        c = cs[j + 1]
        den = _rcp(1.0 + c * z)
        zeta_new = z * den
        dzeta = dz * den * den
        e_new = 1.0 - (1.0 - c * zeta_new) * ome
        de = c * dzeta * ome + (1.0 - c * zeta_new) * de
        if check == 1:
            az = _n1(zeta_new)
            if not (az < 1e300):
                return zeta_new, dzeta, e_new, de, False
            # zeta, z, e in C^-, Im S >= 0, Im(e_k / zeta_k) <= 0, Im(e_{k-1} / z_k) <= 0
            ae = _n1(e_new)
            azz = _n1(z)
            if (zeta_new.imag > tol * az or z.imag > tol * azz or e_new.imag > tol * ae
                    or S.imag < -tol * _n1(S)
                    or (e_new * zeta_new.conjugate()).imag > tol * ae * az
                    or (e * z.conjugate()).imag > tol * _n1(e) * azz):
                return zeta_new, dzeta, e_new, de, False
        elif check == 2:
            if not (zeta_new.real > 0.0 and e_new.real < 1.0 and e_new.real >= 0.0 and S.real > 0.0
                    and abs(zeta_new) < 1e300):
                return zeta_new, dzeta, e_new, de, False
        zeta = zeta_new
        e = e_new
    return zeta, dzeta, e, de, True


@_njit
def _newton(w, t, cs, a2, g2, p, k, ys, yt, maxit, tol, cnt, lin=1e-7):
    """Newton in ``log t`` for ``zeta_n(t) = 1/w`` with half-plane-preserving backtracking.
    On success ``ys`` holds the cubic roots of the solution. Returns
    ``(t, e_n, zeta_n, D, ok, res)`` with ``D = dlog zeta_n / dlog t``: stops at
    ``|log(zeta_n w)| < tol``, or when the step is at round-off / no step decreases the residual any
    more (the floor grows with the depth) with the residual below ``loose = 1e-8``. Once a
    Newton step has been taken and the residual is below ``lin``, the next step is applied to
    first order (``t``, ``e_n`` and ``zeta_n`` moved along the tangent; error O(res^2)) without
    another chain evaluation; the returned residual is then the estimate ``res^2``."""
    loose = max(1e-8, tol)
    cnt[0] += 1
    zn, dzn, en, den, ok = _up(t, cs, a2, g2, p, k, ys, yt, 1)
    if not ok:
        return t, en, zn, 1.0 + 0.0j, False, np.inf
    for j in range(ys.size):
        ys[j] = yt[j]
    r = np.log(zn * w)
    res = abs(r)
    D = dzn * _rcp(zn)
    for it in range(maxit):
        if res < tol:
            return t, en, zn, D, True, res
        step = -r * _rcp(D)
        if not (abs(step) < 1e300):
            return t, en, zn, D, False, res
        if abs(step) < 1e-14:
            return t, en, zn, D, res < loose, res
        if res < lin and it > 0:
            # the last Newton step, linearised: its error is O(res^2), below the round-off floor
            return t * np.exp(step), en - den * _rcp(D) * r, zn * np.exp(-r), D, True, res * res
        lam = 1.0
        accepted = False
        for _ in range(12 if res < 1e-6 else 30):
            tt = t * np.exp(lam * step)
            cnt[0] += 1
            zt, dzt, et, det, okt = _up(tt, cs, a2, g2, p, k, ys, yt, 1)
            if okt:
                rt = np.log(zt * w)
                if abs(rt) < (1.0 - 0.25 * lam) * res or abs(rt) < tol:
                    t, zn, en, r, res = tt, zt, et, rt, abs(rt)
                    D = dzt * _rcp(zt)
                    dzn = dzt
                    den = det
                    for j in range(ys.size):
                        ys[j] = yt[j]
                    accepted = True
                    break
            lam *= 0.5
        if not accepted:
            return t, en, zn, D, res < loose, res
    return t, en, zn, D, res < loose, res


@_njit
def _from_top(x, eps, R, cs, a2, g2, p, k, ys, yt, tol, cnt):
    """Continuation from ``x + i R`` down to ``x + i eps`` (geometric heights, refined on failure)."""
    for j in range(ys.size):
        ys[j] = np.nan + 0.0j
    h = R
    w = x + 1j * h
    t, en, zn, D, ok, res = _newton(w, _rcp(w), cs, a2, g2, p, k, ys, yt, 60, tol, cnt)
    if not ok:
        return t, en, zn, D, False, res
    ratio = 4.0
    ysave = ys.copy()
    while h > eps:
        hn = max(h / ratio, eps)
        w = x + 1j * hn
        # tangent predictor: dlog t/dh = -i / (w D)
        tp = t * np.exp(-1j * (hn - h) * _rcp((x + 1j * h) * D))
        tn, en2, zn2, D2, ok2, res2 = _newton(w, tp, cs, a2, g2, p, k, ys, yt, 40, tol, cnt)
        if ok2:
            t, en, zn, D, res = tn, en2, zn2, D2, res2
            h = hn
            for j in range(ys.size):
                ysave[j] = ys[j]
            ratio = min(ratio * 2.0, 16.0)
        else:
            for j in range(ys.size):
                ys[j] = ysave[j]
            ratio = math.sqrt(ratio)
            if ratio < 1.0001:
                return t, en, zn, D, False, res2
    return t, en, zn, D, True, res


@_njit
def _sweep(xs, es, lo, hi, R, cs, a2, g2, p, k, tol, G, Wp, resid, info):
    """Points ``lo .. hi-1`` (``w_i = xs[i] + i es[i]``, ``xs`` increasing), each from a cubic
    Hermite prediction of ``log t`` in ``w`` (values and exact slopes ``dlog t/dw = -1/(w D)`` at
    the two previous points), falling back to :func:`_from_top`.
    ``info = [restarts, failures, chain evaluations]``."""
    n = cs.size - 1
    cnt = info[2:3]
    ys = np.empty(n, np.complex128)
    yt = np.empty(n, np.complex128)
    yprev = np.empty(n, np.complex128)
    w1 = w2 = 0.0j
    l1 = l2 = s1 = s2 = 0.0j
    have = 0
    for i in range(lo, hi):
        x = xs[i]
        w = x + 1j * es[i]
        ok = False
        if have >= 1:
            lt = l1 + s1 * (w - w1)
            if have >= 2:
                h = w1 - w2
                tau = (w - w2) * _rcp(h)
                t2 = tau * tau
                t3 = t2 * tau
                lt = ((2 * t3 - 3 * t2 + 1) * l2 + (t3 - 2 * t2 + tau) * h * s2
                      + (-2 * t3 + 3 * t2) * l1 + (t3 - t2) * h * s1)
            for j in range(n):
                ys[j] = yprev[j]
            t, en, zn, D, ok, res = _newton(w, np.exp(lt), cs, a2, g2, p, k, ys, yt, 12, tol, cnt)
            if not ok and have >= 2:
                for j in range(n):
                    ys[j] = yprev[j]
                t, en, zn, D, ok, res = _newton(w, np.exp(l1), cs, a2, g2, p, k, ys, yt, 12, tol, cnt)
        if not ok:
            info[0] += 1
            t, en, zn, D, ok, res = _from_top(x, es[i], R, cs, a2, g2, p, k, ys, yt, tol, cnt)
        if not ok:
            info[1] += 1
            G[i] = np.nan
            Wp[i] = w
            resid[i] = res
            have = 0
            continue
        G[i] = zn * _rcp(1.0 - en)
        Wp[i] = _rcp(zn)
        resid[i] = res
        if have >= 1 and w == w1:
            have -= 1
        w2, l2, s2 = w1, l1, s1
        w1, l1, s1 = w, np.log(t), -_rcp(w * D)
        have += 1
        for j in range(n):
            yprev[j] = ys[j]


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _solve(xs, es, R, cs, a2, g2, p, k, tol, G, Wp, resid, info, nchunks):
    """Split the points into ``nchunks`` contiguous sweeps run in parallel."""
    m = xs.size
    infos = np.zeros((nchunks, 3), np.int64)
    for c in numba.prange(nchunks):
        _sweep(xs, es, (c * m) // nchunks, ((c + 1) * m) // nchunks, R, cs, a2, g2, p, k, tol,
               G, Wp, resid, infos[c])
    for c in range(nchunks):
        for j in range(3):
            info[j] += infos[c, j]


@_njit
def _edge(cs, a2, g2, p, k):
    """``max zeta_n(t)`` over real ``t > 0`` (first critical point or the end of the valid range)."""
    n = cs.size - 1
    ys = np.empty(n, np.complex128)
    yt = np.empty(n, np.complex128)
    for j in range(n):
        ys[j] = np.nan + 0.0j
    csum = 0.0
    for j in range(cs.size):
        csum += cs[j]
    lo = 1e-6 / (1.0 + csum)
    zl, dzl, el, dl, ok = _up(lo + 0.0j, cs, a2, g2, p, k, ys, yt, 2)
    for j in range(n):
        ys[j] = yt[j]
    hi = lo
    found = False
    for _ in range(4000):
        hi = lo * 1.5
        zh, dzh, eh, dh, okh = _up(hi + 0.0j, cs, a2, g2, p, k, ys, yt, 2)
        if (not okh) or dzh.real <= 0.0:
            found = True
            break
        lo, zl = hi, zh
        for j in range(n):
            ys[j] = yt[j]
    if not found:
        return 1.0 / zl.real
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if mid <= lo or mid >= hi:
            break
        zm, dzm, em, dm, okm = _up(mid + 0.0j, cs, a2, g2, p, k, ys, yt, 2)
        if (not okm) or dzm.real <= 0.0:
            hi = mid
        else:
            lo, zl = mid, zm
            for j in range(n):
                ys[j] = yt[j]
        if hi - lo <= 1e-15 * hi:
            break
    return 1.0 / zl.real


# --------------------------------------------------------------------------- public helpers
def chain_edge(cs, params):
    """Upper edge of the support of ``K_n`` (``cs = [c_0 .. c_n]``, ``params`` from
    :func:`layer_params`)."""
    cs = np.ascontiguousarray(cs, dtype=float)
    if cs.size == 1:
        return float(cs[0])
    return float(_edge(cs, *params))


# Default number of chunks of chain_cauchy, fixed so that results never depend on the thread count
# (a chunk costs one continuation, ~20-40 chain evaluations, against ~2 a point). 2: the cores of
# the machines this package is tuned on, and the chunking its recorded values were computed with.
_CHUNKS = 2


def chain_cauchy(x, eps, cs, params, R=None, tol=1e-13, threads=None):
    """``G_{K_n}(x + i eps)`` for ``K_0 = delta_{cs[0]}``, ``K_k = cs[k] + K_{k-1} ⊠ Y``, with ``Y``
    given by ``params = (a2, g2, p, k)`` (:func:`layer_params`); ``eps > 0`` a scalar or an array
    like ``x``. ``R``: a height above which ``t ~ 1/w`` (default: 4 x (support edge + max|x|)).
    ``threads``: the points are split into this many contiguous chunks (at most one per 64 points),
    swept in parallel. Each chunk starts its own continuation, so the chunking, not the thread
    count, fixes the result to round-off: the default, :data:`_CHUNKS`, is the same on every
    machine, and the result does not depend on numba's thread count.

    Returns ``(G, residual, info)``: ``residual[i] ~ |log(zeta_n w)|`` at the solution and
    ``info = {"restarts", "failures", "evaluations", "points"}`` (failed points get ``NaN``);
    ``points = 1/zeta_n`` is where ``G`` was actually evaluated (``w`` to within the residual):
    subtract an atom's pole there, not at ``w``, so that near atoms the residual cancels."""
    x = np.asarray(x, dtype=float)
    cs = np.ascontiguousarray(cs, dtype=float)
    e = np.broadcast_to(np.asarray(eps, dtype=float), x.shape)
    if not np.all(e > 0):
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if cs.size == 1:
        G = 1.0 / (x + 1j * e - cs[0])
        return G, np.zeros(x.shape), {"restarts": 0, "failures": 0, "evaluations": 0,
                                      "points": x + 1j * e}
    flat = x.ravel()
    order = np.lexsort((e.ravel(), flat))
    xs = np.ascontiguousarray(flat[order])
    es = np.ascontiguousarray(e.ravel()[order])
    if R is None:
        R = 4.0 * (chain_edge(cs, params) + (np.max(np.abs(xs)) if xs.size else 0.0)) + 1.0
    R = max(float(R), 2.0 * float(np.max(es)) if es.size else 1.0)
    G = np.empty(xs.size, complex)
    res = np.empty(xs.size)
    info = np.zeros(3, np.int64)
    a2, g2, p, k = (float(v) for v in params)
    if threads is None:
        threads = _CHUNKS
    # a chunk costs one continuation from the top (~20-40 chain evaluations) on top of ~2 a point
    nchunks = int(max(1, min(threads, xs.size // 64)))
    Wp = np.empty(xs.size, complex)
    configure_numba()
    _solve(xs, es, R, cs, a2, g2, p, k, float(tol), G, Wp, res, info, nchunks)
    out = np.empty_like(G)
    out[order] = G
    wout = np.empty_like(Wp)
    wout[order] = Wp
    r = np.empty_like(res)
    r[order] = res
    meta = {"restarts": int(info[0]), "failures": int(info[1]), "evaluations": int(info[2]),
            "points": wout.reshape(x.shape)}
    return out.reshape(x.shape), r.reshape(x.shape), meta


_KAPPA = 1e-3  # default eps / local grid spacing


def default_grid(lo, edge, delta, num=801):
    """``num`` points on ``(lo, 1.1 edge]``: half geometric in ``x - lo`` from ``delta`` (resolving a
    singularity or a hard edge at ``lo``, and heavy tails), half uniform (the bulk on a linear
    scale); sorted, unique. Returns ``(x, spacing)`` with ``spacing`` the larger gap to a neighbour."""
    top = 1.1 * edge
    span = top - lo
    delta = min(max(delta, 1e-300), 0.5 * span)
    geo = lo + np.geomspace(delta, span, num // 2)
    uni = np.linspace(lo, top, num - num // 2 + 1)[1:]
    x = np.unique(np.concatenate([geo, uni]))
    gaps = np.diff(x)
    gaps = np.maximum(np.concatenate([[gaps[0]], gaps]), np.concatenate([gaps, [gaps[-1]]]))
    return x, gaps


def _refine_edges(x, d, edge, evaluate, rounds=3, split=8):
    """Adaptive subdivision at sharp features (edges of the support, inverse-square-root or log
    singularities, which the trapezoidal rule integrates poorly): each round splits every cell whose
    end values differ by more than a factor 2 (one of them above ``1e-6 max``) into ``split``
    cells, evaluated in one batch (one sweep). Returns the merged ``(x, d)``."""
    for _ in range(rounds):
        if x.size < 3:
            break
        top = np.nanmax(d)
        if not top > 0:
            break
        a, b = d[:-1], d[1:]
        big = np.maximum(a, b)
        small = np.minimum(a, b)
        sharp = np.isfinite(big) & (big > 1e-6 * top) & (small < 0.5 * big)
        cells = np.nonzero(sharp)[0]
        if cells.size == 0 or cells.size > x.size:
            break
        frac = np.arange(1, split) / split
        xe = (x[cells, None] + frac[None, :] * (x[cells + 1] - x[cells])[:, None]).ravel()
        ee = _KAPPA * np.repeat((x[cells + 1] - x[cells]) / split, split - 1)
        de = evaluate(xe, ee)
        xa = np.concatenate([x, xe])
        o = np.argsort(xa, kind="stable")
        x, d = xa[o], np.concatenate([d, de])[o]
    return x, d


def chain_density(cs, law, x=None, eps=None, atom_candidates=(), num=801):
    """Density of ``K_n`` (``cs = [c_0 .. c_n]``, layer law ``law``: a
    :class:`~rmtalign.theory.layer.LayerLaw`) at ``x + i eps`` by :func:`chain_cauchy`.

    The chain is run on ``Y / tau(Y)`` with ``c_k / (C tau(Y)^k)`` (``C`` the largest of these) so
    that deep chains neither over- nor underflow; results are mapped back. ``atom_candidates``
    (locations in the original units; the all-atom case ``Var(Y) = 0`` is added automatically)
    are tested at heights ``1e-9`` and ``1e-11`` times the edge: an atom gives the same
    ``h |Im G(loc + i h)|`` at both (to 1e-3), an integrable singularity does not.

    Defaults: ``x`` from :func:`default_grid` on ``(c_n, 1.1 edge]`` (``K_n >= c_n``), geometric
    from ``c_n + 1e-8 edge`` (``edge 10^(-3(n+1))``, at least ``1e-280 edge``, for products of laws
    with mass near 0, whose density ``~ x^(-n/(n+1))`` puts mass ``(x/edge)^(1/(n+1))`` below x);
    ``eps`` per point, ``1e-3`` times the local grid spacing (for a given ``x``, its own spacing):
    the density itself (Stieltjes inversion at a height far below the grid's resolution), not a
    Poisson-smoothed one. Smoothing at a height that grows with ``x`` is not mass-preserving: the
    Lorentzian tails of the bulk dominate a heavy tail (deep MLPs: +73% on M1 at layer 100 with
    ``eps = 1.6 dx``, 0.04% with ``1e-3 dx``).

    Returns ``(x, density, atoms, support, residual)`` with the atoms' Poisson kernels removed from
    the density, ``support = (c_n, edge)`` and ``residual`` the largest Newton residual."""
    cs = np.asarray(cs, dtype=float)
    n = cs.size - 1
    t1 = float(law.mean)
    if not t1 > 0:
        raise ValueError("tau(A^T A) = 0: the Jacobians vanish (branch_scale = skip = 0)")
    lt = math.log(t1)
    with np.errstate(divide="ignore"):
        logc = np.where(cs > 0, np.log(np.where(cs > 0, cs, 1.0)) - np.arange(n + 1) * lt, -np.inf)
    top = float(np.max(logc))
    cn = np.where(cs > 0, np.exp(logc - top), 0.0)
    logsig = top + n * lt
    if not abs(logsig) < 700:
        raise ValueError(f"the spectrum of K scales like exp({logsig:.4g}): out of floating-point range")
    sig = math.exp(logsig)
    a2, g2, p, k = layer_params(law)
    params = (a2 / t1, g2 / t1, p, k)
    edge = chain_edge(cn, params)
    product = not np.any(cn[1:] > 0)  # the Jacobian chain: K_n = delta_{c_0} ⊠ Y^{⊠ n}
    lo = float(cn[-1])
    cands = [float(c) / sig for c in atom_candidates]
    if law.variance == 0.0:
        cands.append(edge)
    atoms = {}
    for loc in cands:
        if product and loc == 0.0:
            # (mu ⊠ nu)({0}) = max(mu({0}), nu({0})): Y({0}) = 1 - p for a = 0, p < 1 (exact)
            mass = (1.0 - p) if (a2 == 0.0 and p < 1.0) else 0.0
            ok = mass > 0
        else:
            hs = np.array([1e-9, 1e-11]) * max(edge, abs(loc), 1e-300)
            ms = [float(-np.imag(chain_cauchy(np.array([loc]), h, cn, params)[0][0]) * h) for h in hs]
            mass = ms[1]
            ok = ms[1] > 1e-7 and abs(ms[0] - ms[1]) <= 1e-3 * ms[1]
        if ok:
            atoms[loc] = mass

    if x is None:
        if product and a2 == 0.0:
            # power-law singularity at 0 (Fuss–Catalan: mass (x/edge)^(1/(n+1)) below x)
            delta = edge * max(1e-280, 10.0 ** (-3.0 * (n + 1)))
        elif any(abs(loc - lo) <= 1e-12 * edge for loc in atoms):
            delta = max(1e-8 * edge, 1e-4 * lo)  # G' ~ mass / delta^2 next to an atom
        else:
            delta = 1e-8 * edge
        xn, dx = default_grid(lo, edge, delta, num)
        x = xn * sig
        refine = True
    else:
        refine = False
        x = np.asarray(x, dtype=float)
        xn = x / sig
        if eps is None:
            xs = np.sort(xn.ravel())
            if xs.size > 1:
                gaps = np.diff(xs)
                left = np.concatenate([[gaps[0]], gaps])
                right = np.concatenate([gaps, [gaps[-1]]])
                dx_sorted = np.maximum(np.maximum(left, right), 1e-9 * edge)
                dx = np.interp(xn, xs, dx_sorted) if np.all(gaps > 0) else np.full(xn.shape, np.max(dx_sorted))
            else:
                dx = np.full(xn.shape, 2e-3 * edge)
    if eps is None:
        epsn = _KAPPA * dx
    else:
        if not np.all(np.asarray(eps) > 0):
            raise ValueError(f"eps must be > 0, got {eps!r}")
        epsn = np.broadcast_to(np.asarray(eps, dtype=float) / sig, xn.shape)
    stats = {"failures": 0, "res": 0.0}

    def evaluate(xe, ee):
        G, res, info = chain_cauchy(xe, ee, cn, params)
        stats["failures"] += info["failures"]
        if res.size:
            stats["res"] = max(stats["res"], float(np.nanmax(res)))
        for loc, mass in atoms.items():
            G = G - mass / (info["points"] - loc)
        d = -np.imag(G) / np.pi
        return np.where(np.isnan(d), np.nan, np.maximum(d, 0.0))

    dens = evaluate(xn, epsn)
    if refine:
        xn, dens = _refine_edges(xn, dens, edge, evaluate)
        x = xn * sig
    if stats["failures"]:
        import warnings
        warnings.warn(f"chain_cauchy did not converge at {stats['failures']} points (density NaN "
                      "there)", RuntimeWarning, stacklevel=3)
    atoms = {loc * sig: mass for loc, mass in atoms.items()}
    resid = stats["res"]
    return x, dens / sig, atoms, (lo * sig, edge * sig), resid
