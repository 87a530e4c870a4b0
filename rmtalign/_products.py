"""Singular values of long matrix products without overflow or underflow.

The layer-to-layer Jacobian of a deep network is a product ``J = A_n ... A_1`` whose
squared singular values span ``exp(+-thousands)`` at depth 1000: far outside float64.
:func:`product_log_singular_values` returns ``log(sigma_i(J)**2)`` to round-off for short or
moderately conditioned products and with relative error ``O(n eps cond(A))`` in ``sigma``
(absolute error in the logs) for long ones, at a cost of about one GEMM plus one QR per factor
in the worst case and about one GEMM per factor when the factors are well conditioned.

Algorithm
---------
1. *Accumulation* (QR iteration, as for Lyapunov exponents). With ``Q_0 = I``,
   ``A_k Q_{k-1} = Q_k R_k`` and ``J = Q_n (R_n ... R_1)``, so ``sigma(J) = sigma(R_acc)``.
   ``R_acc`` is kept row-graded, ``R_acc = diag(2**e) T``: integer exponents ``e`` and
   a triangular ``T`` whose rows have max-abs in ``[0.5, 1)``. Powers of two make every
   rescaling exact, so the representation is float64 with an unbounded exponent range.
   Consecutive well-conditioned factors are multiplied together before one QR ("blocks");
   the block length adapts so that the estimated condition number of a block stays below
   ``block_cond`` (so rounding in the unorthogonalised block costs at most
   ``block_cond * eps``). For iid Gaussian layers every block is one factor.
2. *Graded SVD* of ``diag(2**e) T``. When the exponents span fewer than ``_SPAN_BITS``
   bits the matrix is formed (rescaled) and handed to LAPACK ``dgejsv`` (Drmac-Veselic
   preconditioned Jacobi), which has high relative accuracy for column-scaled matrices
   ``T^T diag(2**e)``. Otherwise zero-shift QR sweeps ``M -> R(M^T P)`` (again in the graded
   representation) sharpen the grading until the matrix splits into blocks whose coupling
   is below round-off (a multiplicative bound: ``M = M_blockdiag (I + E)``) and each block
   spans few enough bits to be formed explicitly.

The Lyapunov shortcut ``log|diag R|`` is *not* used: it is wrong by O(1) for short products
(one Gaussian matrix has Marchenko-Pastur singular values, not chi-square diagonals).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.linalg import blas as _blas
from scipy.linalg import lapack as _lapack

from ._kernels import graded as _graded
from ._validate import check_int
from .results import Result

__all__ = [
    "ProductSpectrum",
    "product_log_singular_values",
    "product_spectrum",
    "log_condition_number",
]

_LN2 = math.log(2.0)
_EPS = np.finfo(np.float64).eps
# Exponent of an exactly zero row of the graded representation: far below anything real,
# still far from int64 overflow when differences of exponents are formed.
_ZERO_EXP = _graded.ZERO_EXP
# A graded block is formed explicitly only if its exponents span at most this many bits:
# entries then lie in [2**-_SPAN_BITS, 1) and the Jacobi SVD's inner products stay normal.
_SPAN_BITS = 600
# Shifts passed to ldexp are clipped to this range (anything below -1100 underflows to 0
# anyway, and the int64 -> int conversion of ldexp must not overflow).
_SHIFT_MIN = _graded.SHIFT_MIN
_SHIFT_MAX = -_SHIFT_MIN


@dataclass(frozen=True, repr=False)
class ProductSpectrum(Result):
    """Singular values of a matrix product, in log scale.

    Attributes
    ----------
    log_sv2 : ndarray, shape (k,)
        ``log(sigma_i**2)``, descending, ``k = min(rows of the product, m)``. Exactly zero
        singular values (a structural rank drop, e.g. a rectangular factor) are ``-inf``.
    log_cond : float
        ``log(sigma_max / sigma_min)`` (``inf`` for a singular product, 0 for ``k = 0``).
    n_factors : int
        Number of factors consumed.
    n_qr : int
        Number of QR factorisations in the accumulation (``n_factors / n_qr`` is the mean
        block length).
    n_sweeps : int
        Number of QR sweeps spent in the final graded SVD.
    """

    log_sv2: np.ndarray
    log_cond: float
    n_factors: int
    n_qr: int
    n_sweeps: int

    def _table(self):
        return {"index": np.arange(self.log_sv2.size), "log_sv2": self.log_sv2}


def log_condition_number(log_sv2) -> float:
    """``log(sigma_max / sigma_min)`` from log squared singular values.

    Parameters
    ----------
    log_sv2 : array_like
        ``log(sigma_i**2)`` in any order; ``-inf`` entries mean exact zeros.

    Returns
    -------
    float
        ``(max - min) / 2``; ``inf`` if some singular value is zero, ``0.0`` if empty.
    """
    x = np.asarray(log_sv2, dtype=np.float64)
    if x.size == 0:
        return 0.0
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo == -np.inf:
        return math.inf
    return 0.5 * (hi - lo)


def product_log_singular_values(factors: Iterable, m: int, **kwargs) -> np.ndarray:
    """Log squared singular values of ``A_n ... A_2 A_1``, descending.

    Parameters
    ----------
    factors : iterable of 2-D array_like
        ``A_1, A_2, ..., A_n`` in the order they are *applied* (the product is
        ``A_n ... A_1``); a generator is consumed once, so the factors need never be held in
        memory together. Each ``A_k`` is ``p_k x p_{k-1}`` with ``p_0 = m``; square factors
        are the common case, rectangular ones are allowed (e.g. a ReLU layer ``W D`` given as
        ``W[:, mask]`` with the matching row selection on the next factor, which turns
        the mask's exact zero singular values into exact ``-inf`` instead of round-off noise).
        A 3-D array of shape ``(n, p, p)`` also works. Converted to float64.
    m : int
        Input dimension (columns of ``A_1``); the empty product is ``I_m``.
    **kwargs
        ``block_cond`` and ``max_block``, see :func:`product_spectrum`.

    Returns
    -------
    ndarray, shape (min(p_n, m),)
        ``log(sigma_i**2)``, descending; ``-inf`` for exactly zero singular values.

    See Also
    --------
    product_spectrum : the same with the log condition number and work counters.
    """
    return product_spectrum(factors, m, **kwargs).log_sv2


def product_spectrum(
    factors: Iterable,
    m: int,
    *,
    block_cond: float = 1e3,
    max_block: int = 32,
) -> ProductSpectrum:
    """Singular values (log scale) and condition number of a long matrix product.

    Parameters
    ----------
    factors : iterable of 2-D array_like
        ``A_1, ..., A_n`` (product ``A_n ... A_1``); see
        :func:`product_log_singular_values`.
    m : int
        Input dimension, ``>= 1``.
    block_cond : float, optional
        Largest estimated condition number of a run of factors multiplied together without
        re-orthogonalisation (``>= 1``). Rounding in such a run perturbs the singular values
        by a relative ``~ block_cond * eps``; ``1`` forces one QR per factor.
    max_block : int, optional
        Longest run of factors between two QR factorisations (``>= 1``).

    Returns
    -------
    ProductSpectrum

    Raises
    ------
    ValueError
        On a non-finite factor, a factor whose column count does not match the previous
        factor's row count (or ``m``), or bad ``m``/``block_cond``/``max_block``.
    """
    m = check_int("m", m, 1)
    max_block = check_int("max_block", max_block, 1)
    block_cond = float(block_cond)
    if not (block_cond >= 1.0 and math.isfinite(block_cond)):
        raise ValueError(f"block_cond must be a finite number >= 1, got {block_cond!r}")
    log2_block_cond = math.log2(block_cond)

    # State: J = Q diag(2**e) T with Q (p x r) orthonormal columns, kept in LAPACK's
    # Householder form (qr, tau) (None = identity), and T (r x m) upper trapezoidal with
    # row max-abs in [0.5, 1) (or exact zero rows, e = _ZERO_EXP).
    Qh = None
    T = np.eye(m, order="F")
    e = np.zeros(m, dtype=np.int64)
    p_prev = m
    rank_bound = m  # min over all dimensions: the product's rank cannot exceed it
    n_factors = n_qr = 0
    W = None  # the open block: A_k ... A_j Q * 2**(-w_exp)
    w_exp = 0
    first = 0  # index of the first factor of the open block (for error messages)
    sched = _BlockSchedule(log2_block_cond, max_block)
    block = 1  # current target block length, adapted after each QR
    misordered = False

    for k, A in enumerate(factors):
        A = np.asarray(A, dtype=np.float64)
        if A.ndim != 2:
            raise ValueError(f"factors[{k}] must be a 2-D matrix, got shape {A.shape}")
        if A.shape[1] != p_prev:
            raise ValueError(
                f"factors[{k}] has shape {A.shape}: expected {p_prev} columns "
                + (f"(the rows of factors[{k - 1}])" if k else "(m)")
            )
        p_prev = A.shape[0]
        rank_bound = min(rank_bound, p_prev)
        n_factors += 1
        if W is None:
            first = k
            W = A.copy(order="F") if Qh is None else _apply_q(A, Qh)
        else:
            W = _gemm(A, W)
            # Inside a block nothing renormalises: keep the entries far from over/underflow.
            w_exp += _renormalise(W, cheap=True)
        if k + 1 - first >= block:
            Qh, T, e, log2_cond = _close_block(W, w_exp, T, e, first, k, log2_block_cond)
            block = sched.next(log2_cond, k + 1 - first)
            W, w_exp = None, 0
            n_qr += 1
            misordered = misordered or _is_misordered(T)
    if W is not None:
        Qh, T, e, _ = _close_block(W, w_exp, T, e, first, n_factors - 1)
        n_qr += 1
        misordered = misordered or _is_misordered(T)

    if misordered:
        _warn_misordered()
    k_out = min(p_prev, m)
    logs2, n_sweeps = _graded_log_singular_values(T, e)  # log2 sigma, descending
    out = np.full(k_out, -np.inf)
    # Beyond the structural rank the exact answer is 0; a block that multiplied through a
    # narrow factor without a QR would otherwise report round-off there.
    keep = min(logs2.size, rank_bound)
    out[:keep] = 2.0 * _LN2 * logs2[:keep]
    return ProductSpectrum(
        log_sv2=out,
        log_cond=log_condition_number(out),
        n_factors=n_factors,
        n_qr=n_qr,
        n_sweeps=n_sweeps,
    )


# --------------------------------------------------------------------------- helpers


def _gemm(A, B):
    # scipy's BLAS for every product in the loop: numpy and scipy ship separate OpenBLAS
    # copies and interleaving them makes their thread pools fight (DESIGN.md). C-ordered
    # operands go in transposed (a Fortran view) rather than being copied by f2py.
    ta = tb = 0
    if A.flags.c_contiguous and not A.flags.f_contiguous:
        A, ta = A.T, 1
    if B.flags.c_contiguous and not B.flags.f_contiguous:
        B, tb = B.T, 1
    return _blas.dgemm(1.0, A, B, trans_a=ta, trans_b=tb)


def _apply_q(A, Qh):
    """``A @ Q`` with Q = H_1 ... H_k in Householder form (thin: first k columns)."""
    qr, tau = Qh
    if qr.shape[1] != tau.shape[0]:  # a wide block (p < r): only its first p reflectors exist
        qr = np.asfortranarray(qr[:, : tau.shape[0]])
    C = np.array(A, order="F")  # dormqr overwrites its operand
    C, _, info = _lapack.dormqr("R", "N", qr, tau, C, max(1, 64 * C.shape[0]), overwrite_c=1)
    if info != 0:  # pragma: no cover - LAPACK argument errors only
        raise RuntimeError(f"dormqr failed with info={info}")
    k = tau.shape[0]
    return C if k == C.shape[1] else np.asfortranarray(C[:, :k])


def _renormalise(W, cheap=False) -> int:
    """Scale W by a power of two if max|W| is far from 1; return the exponent removed."""
    if W.size == 0:
        return 0
    if cheap and W.flags.f_contiguous:
        flat = W.ravel(order="F")  # a view: one BLAS idamax pass, no temporaries
        amax = float(abs(flat[_blas.idamax(flat)]))
    else:
        amax = float(np.abs(W).max())
    if amax == 0.0 or not math.isfinite(amax) or 2.0**-200 < amax < 2.0**200:
        return 0  # far from trouble (or already broken: reported at the QR)
    _, ex = math.frexp(amax)
    W *= 2.0 ** (-ex)
    return ex


def _close_block(W, w_exp, T, e, first, last, enough=math.inf):
    """QR of the open block and update of the graded triangular factor.

    ``J = W 2**w_exp diag(2**e) T`` and ``W = Q R``; returns ``(Qh, T_new, e_new,
    log2_cond)`` with ``J = Q diag(2**e_new) T_new``, Q in Householder form and the block's
    estimated log2 condition number.
    """
    p, r = W.shape
    k = min(p, r)
    w_exp += _renormalise(W)
    qr, tau, _, info = _lapack.dgeqrf(W, lwork=max(1, 64 * r), overwrite_a=1)
    if info != 0:  # pragma: no cover - LAPACK argument errors only
        raise RuntimeError(f"dgeqrf failed with info={info}")
    # A NaN or inf anywhere in W survives somewhere in the factored array (R or the
    # reflectors): one O(p r) pass per QR checks every factor of the block.
    if not np.isfinite(qr).all():
        which = f"factors[{first}]" if first == last else f"factors[{first}..{last}]"
        raise ValueError(
            f"{which} produced a non-finite value: NaN or inf in a factor, or entries so "
            "large that a single matrix product overflows"
        )
    log2_cond = _log2_cond_triangular(qr[:k, :k], enough) if k == r else math.inf

    # R_acc_new = R diag(2**e) T = diag(2**s) Rs T with Rs row-scaled (exact power-of-two
    # shifts), then T_new = Rs T by a triangular multiply and rows renormalised.
    Tn, e_new = _regrade(qr[:k, :], e, T)
    e_new = np.where(e_new == _ZERO_EXP, _ZERO_EXP, e_new + w_exp)
    return (qr, tau), Tn, e_new, log2_cond


def _row_graded_exact(R, e):
    """As :func:`rmtalign._kernels.graded.row_graded` but with the exact row maxima (R is
    already triangular)."""
    mant, ex = np.frexp(R)
    E = ex.astype(np.int64) + e[None, :]
    E[mant == 0.0] = _ZERO_EXP
    s = E.max(axis=1)
    shift = np.clip(e[None, :] - s[:, None], _SHIFT_MIN, _SHIFT_MAX)
    return np.asfortranarray(np.ldexp(R, shift)), s


def _regrade(R, e, T):
    """``triu(R) diag(2**e) T = diag(2**e_new) T_new`` with T_new rows in [0.5, 1).

    ``R`` is k x r (upper part used), ``T`` is r x n upper trapezoidal or None for the
    identity. Fast path: :func:`~rmtalign._kernels.graded.row_graded` scales rows by the suffix
    maxima of ``e``; the rare rows that come out tiny or zero (``e`` increasing along the row,
    or cancellation) are recomputed with exact per-row exponents, and a row that is still zero
    is an exact zero row of the product.
    """
    k, r = R.shape
    Rs, s = _graded.row_graded(R, e, k)
    if T is None:
        Tn = Rs
    elif k == r:
        Tn = _blas.dtrmm(1.0, Rs, T)  # reads the upper triangle only; half a GEMM
    else:
        Tn = _gemm(Rs, T)  # Rs is zero below its diagonal
    shift = _graded.normalise_rows(Tn)  # in place
    bad = shift < -900  # includes exact zero rows (_ZERO_EXP)
    if bad.any():
        Rx, sx = _row_graded_exact(np.triu(R)[bad], e)
        Tb = np.ascontiguousarray(Rx if T is None else _gemm(Rx, T))
        shb = _graded.normalise_rows(Tb)
        Tn[bad], s[bad], shift[bad] = Tb, sx, shb
    e_new = np.where((shift == _ZERO_EXP) | (s == _ZERO_EXP), _ZERO_EXP, s + shift)
    return Tn, e_new


def _log2_cond_triangular(R, enough=math.inf, iters=3) -> float:
    """Estimate of log2 of the 2-norm condition number of an upper triangular R.

    The diagonal spread ``max|R_ii| / min|R_ii|`` is a lower bound; if it does not already
    exceed ``enough``, a few power and inverse iterations (O(m^2) each: triangular
    matrix-vector products and solves) estimate sigma_max and sigma_min. The 1-norm
    estimator ``dtrcon`` is unsuitable here: it is O(m) for an orthogonal matrix.
    """
    n = R.shape[0]
    if n <= 1:
        return 0.0
    d = np.abs(R.diagonal())
    dmin = d.min()
    if not dmin > 0.0:
        return math.inf
    lower = math.log2(d.max() / dmin)
    if lower > enough:
        return lower
    Rf = np.asfortranarray(R)
    x = _probe_vector(n)
    for _ in range(iters):  # power iteration on R^T R
        y = _blas.dtrmv(Rf, _blas.dtrmv(Rf, x), trans=1)
        big = np.linalg.norm(y)
        x = y / big
    smax = math.sqrt(big)
    x = _probe_vector(n)
    for _ in range(iters):  # inverse iteration on (R^T R)^{-1}
        y = _blas.dtrsv(Rf, _blas.dtrsv(Rf, x, trans=1))
        small = np.linalg.norm(y)
        if not math.isfinite(small) or small == 0.0:
            return math.inf
        x = y / small
    smin = 1.0 / math.sqrt(small)
    return max(lower, math.log2(smax / smin))


_PROBES: dict = {}


def _probe_vector(n):
    # Fixed pseudo-random start: results must not depend on global RNG state.
    v = _PROBES.get(n)
    if v is None:
        v = np.random.default_rng(0x5EED).standard_normal(n)
        v /= np.linalg.norm(v)
        _PROBES[n] = v
    return v


# Diagonal entries of the normalised T below this are a sign that the grading sits in the
# columns of T instead of in e (see _warn_if_misordered).
_MISORDER_BITS = 40


def _is_misordered(T) -> bool:
    """True when the row-graded form is losing the product's grading (O(m) check).

    Unpivoted QR iteration orders the growth directions of generic products (the first
    columns of Q follow the fastest-growing subspaces). Factors with an exactly invariant
    flag in increasing order, e.g. upper triangular factors whose diagonal increases
    down the rows, are never reordered: the grading then builds up inside the columns of T,
    whose diagonal decays towards underflow and the smallest singular values are lost.
    Exactly zero diagonal entries are structural (zero columns of the product), not this.
    """
    d = np.abs(T.diagonal())
    return bool(((d > 0.0) & (d < 2.0**-_MISORDER_BITS)).any())


def _warn_misordered():
    warnings.warn(
        "the product keeps an invariant subspace ordering that QR iteration cannot sort "
        "(e.g. triangular factors with increasing diagonal); the smallest singular values "
        "may be inaccurate",
        RuntimeWarning,
        stacklevel=3,
    )


class _BlockSchedule:
    """Adaptive number of factors multiplied together between two QR factorisations.

    Rounding in ``fl(A_s ... A_1 Q)`` perturbs the smallest singular directions by a
    relative ``eps * prod_i cond(A_i)`` (not ``eps * cond(A_s ... A_1)``, which can be much
    smaller for random products). The per-factor ``log2 cond(A_i)`` is measured on
    single-factor blocks ("probes"), repeated every ``_PROBE_EVERY`` blocks because a
    network's layers need not be alike; the block length is the largest whose predicted
    ``prod cond(A_i)`` stays within the budget, growing at most by doubling.
    """

    _PROBE_EVERY = 8

    def __init__(self, log2_budget, max_block):
        self.log2_budget = log2_budget
        self.max_block = max_block
        self.rate = None  # log2 cond per factor, from probes
        self.since_probe = 0

    def next(self, log2_cond, n_in_block):
        if not math.isfinite(log2_cond):
            self.rate, self.since_probe = math.inf, 0
            return 1
        if n_in_block == 1:
            c = max(log2_cond, 0.0)
            # Smooth the probes, but never let one lucky factor halve the estimate.
            fresh = self.rate is None or not math.isfinite(self.rate)
            self.rate = c if fresh else max(c, 0.5 * (self.rate + c))
            self.since_probe = 0
        else:
            self.since_probe += 1
            # The whole block is a (weak) lower bound on the per-factor rate.
            self.rate = max(self.rate, log2_cond / n_in_block)
        if self.since_probe >= self._PROBE_EVERY:
            return 1
        if self.rate <= 0.0:
            return min(self.max_block, 2 * n_in_block)
        # One bit of margin: power iterations under-estimate the condition number.
        fit = int(max(self.log2_budget - 1.0, 0.0) // self.rate)
        return max(1, min(fit, 2 * n_in_block, self.max_block))


# ------------------------------------------------------------------- graded SVD


def _graded_log_singular_values(T, e, max_sweeps=500):
    """log2 of the singular values of ``diag(2**e) T``, descending; and sweeps used.

    ``T`` is r x n (r <= n) with rows of max-abs in [0.5, 1) or exactly zero (``e`` equal
    to ``_ZERO_EXP``). Zero rows give exact zero singular values (``-inf``).
    """
    live = e != _ZERO_EXP
    n_zero = int((~live).sum())
    T, e = T[live], e[live]
    r = T.shape[0]
    tail = np.full(n_zero, -np.inf)
    if r == 0:
        return tail, 0
    sweeps = 0
    if int(e.max() - e.min()) <= _SPAN_BITS:
        return np.concatenate([_explicit_log2_sv(T, e), tail]), 0
    # Sweep until the coupled blocks are each narrow enough to be formed explicitly.
    while True:
        T, e = _sweep(T, e)
        sweeps += 1
        live = e != _ZERO_EXP
        if not live.all():
            # A zero row after a sweep: exact rank deficiency discovered; deflate it.
            tail = np.concatenate([tail, np.full(int((~live).sum()), -np.inf)])
            T, e = T[np.ix_(live, live)], e[live]
            if T.shape[0] == 0:
                return tail, sweeps
        blocks = _merge_blocks(_split_blocks(T), e)
        spans = [int(e[a:b].max() - e[a:b].min()) for a, b in blocks]
        if max(spans) <= _SPAN_BITS and _decoupled(T, blocks):
            break
        if sweeps >= max_sweeps:
            warnings.warn(
                f"graded SVD of the product did not split after {sweeps} sweeps; "
                "returning a block-diagonal approximation (relative error above round-off)",
                RuntimeWarning,
                stacklevel=3,
            )
            blocks = [(i, i + 1) for i in range(T.shape[0])] if max(spans) > _SPAN_BITS else blocks
            break
    parts = [_explicit_log2_sv(T[a:b, a:b], e[a:b]) for a, b in blocks]
    out = np.sort(np.concatenate(parts + [tail]))[::-1]
    return out, sweeps


def _explicit_log2_sv(T, e):
    """log2 singular values of ``diag(2**e) T`` when e spans few bits: Jacobi SVD."""
    r, n = T.shape
    top = int(e.max())
    # Column-scaled form M^T = T^T diag(2**(e - top)) is what dgejsv is accurate for.
    Mt = np.asfortranarray((T * np.ldexp(1.0, np.clip(e - top, _SHIFT_MIN, 0))[:, None]).T)
    if r == 1:
        sv = np.array([np.linalg.norm(Mt)])
    else:
        sva, _, _, work, _, info = _lapack.dgejsv(Mt, joba=0, jobu=3, jobv=3, jobr=0, jobt=0, jobp=0)
        if info < 0:  # pragma: no cover
            raise RuntimeError(f"dgejsv failed with info={info}")
        if info > 0:  # pragma: no cover - Jacobi did not converge: fall back to bidiagonal SVD
            sv = np.linalg.svd(Mt, compute_uv=False)
        else:
            sv = sva * (work[1] / work[0])
    with np.errstate(divide="ignore"):
        out = np.log2(np.sort(sv)[::-1]) + top
    return out


def _sweep(T, e):
    """One zero-shift QR sweep: ``diag(2**e) T -> R(T^T P) diag(2**e_sorted)``, regraded.

    The singular values are unchanged (orthogonal transformations and a transpose);
    ordering the exponents makes the coupling between far-apart exponents decay like
    ``2**(e_j - e_i)`` per sweep.
    """
    order = np.argsort(-e, kind="stable")
    es = e[order]
    X = np.asfortranarray(T[order].T)  # n x r, columns scaled by 2**es
    r = X.shape[1]
    qr, tau, _, info = _lapack.dgeqrf(X, lwork=max(1, 64 * r), overwrite_a=1)
    if info != 0:  # pragma: no cover
        raise RuntimeError(f"dgeqrf failed with info={info}")
    return _regrade(qr[:r, :r], es, None)


def _split_blocks(T):
    """Maximal partition into diagonal blocks whose normalised coupling is below eps."""
    r = T.shape[0]
    d = np.abs(np.diag(T))
    with np.errstate(divide="ignore", invalid="ignore"):
        Z = np.abs(np.triu(T, 1)) / d[:, None]
    Z[~np.isfinite(Z)] = np.inf
    # c[k] = max over i < k <= j of Z[i, j]: reverse cumulative max along rows, then a
    # cumulative max down the columns.
    rowtail = np.maximum.accumulate(Z[:, ::-1], axis=1)[:, ::-1]  # max_{j >= col}
    c = np.maximum.accumulate(rowtail, axis=0)  # max_{i <= row}
    cut = [k for k in range(1, r) if c[k - 1, k] <= _EPS / r]
    bounds = [0] + cut + [r]
    return list(zip(bounds[:-1], bounds[1:]))


def _merge_blocks(blocks, e):
    """Greedily merge neighbouring blocks while their exponents span <= _SPAN_BITS.

    Fewer cuts mean fewer couplings that must be below round-off, hence fewer sweeps:
    only cuts that keep a block formable explicitly are needed.
    """
    out = [list(blocks[0])]
    lo, hi = int(e[blocks[0][0]:blocks[0][1]].min()), int(e[blocks[0][0]:blocks[0][1]].max())
    for a, b in blocks[1:]:
        blo, bhi = int(e[a:b].min()), int(e[a:b].max())
        if max(hi, bhi) - min(lo, blo) <= _SPAN_BITS:
            out[-1][1] = b
            lo, hi = min(lo, blo), max(hi, bhi)
        else:
            out.append([a, b])
            lo, hi = blo, bhi
    return [tuple(x) for x in out]


def _decoupled(T, blocks) -> bool:
    """Multiplicative bound ``||Tblk^{-1} Toff|| <= eps`` for dropping the couplings.

    ``M = diag(2**e) T = M_blk (I + E)`` with ``E = T_blk^{-1} T_off``; then every singular
    value of M equals one of ``M_blk`` to relative ``||E||`` (Eisenstat-Ipsen).
    """
    if len(blocks) == 1:
        return True
    off = np.triu(T, 1).copy()
    inv_norm = 0.0
    for a, b in blocks:
        off[a:b, a:b] = 0.0
        blk = T[a:b, a:b]
        rcond, info = _lapack.dtrcon(np.asfortranarray(blk), norm="1", uplo="U", diag="N")
        if info != 0 or not rcond > 0.0:
            return False
        inv_norm = max(inv_norm, 1.0 / (rcond * np.abs(blk).sum(axis=0).max()))
    # ||E||_2 <= ||Tblk^{-1}||_2 ||Toff||_F and ||X||_2 <= sqrt(r) ||X||_1; the factor r
    # more than covers dtrcon's estimate being low by a small factor.
    return T.shape[0] * inv_norm * np.linalg.norm(off) <= 4 * _EPS
