"""The width-then-depth limit: extrapolate per-layer quantities to infinite width.

A Monte Carlo estimate ``y(m)`` of a per-layer quantity at width ``m`` behaves as
``y(m) = c0 + c1/m + c2/m^2 + ...`` for large ``m``; ``c0`` is the infinite-width value at
that depth. :func:`fit_width_limit` fits the truncated series by weighted least squares
(weights ``1/sem^2``), independently for every layer, and returns ``c0`` with its standard
error and a goodness of fit. ``sampling.width_limit`` wraps it around a sampler.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

from .results import Result

__all__ = ["WidthFit", "fit_width_limit"]


@dataclass(frozen=True, repr=False)
class WidthFit(Result):
    """Result of :func:`fit_width_limit`; arrays have the trailing (layer) shape ``S``.

    Attributes
    ----------
    c0 : ndarray, shape S
        Infinite-width estimate (NaN where a layer had too few finite points).
    c0_se : ndarray, shape S
        Standard error of ``c0``.
    coef : ndarray, shape S + (order + 1,)
        ``c0, c1[, c2]`` of ``y(m) = c0 + c1/m (+ c2/m^2)``.
    cov : ndarray, shape S + (order + 1, order + 1)
        Covariance of ``coef``.
    chi2 : ndarray, shape S
        Weighted residual sum of squares.
    dof : ndarray of int, shape S
        Finite points minus ``order + 1``.
    pvalue : ndarray, shape S
        ``P(chi2_dof >= chi2)`` (NaN when ``dof == 0`` or ``sems`` was not given): small
        values mean the ``1/m`` series is truncated too early or widths are too small.
    widths : ndarray
        The widths used.
    order : int
        Highest power of ``1/m`` fitted.
    """

    c0: np.ndarray
    c0_se: np.ndarray
    coef: np.ndarray
    cov: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    pvalue: np.ndarray
    widths: np.ndarray
    order: int

    def _table(self):
        """One row per fitted point (the trailing shape ``S`` flattened in C order)."""
        return {"point": np.arange(np.size(self.c0)), "c0": self.c0, "c0_se": self.c0_se,
                "chi2": self.chi2, "dof": self.dof, "pvalue": self.pvalue}


def fit_width_limit(widths, means, sems=None, order: int = 1) -> WidthFit:
    """Weighted least-squares fit of ``y(m) = c0 + c1/m (+ c2/m^2)`` per layer.

    Parameters
    ----------
    widths : array_like, shape (W,)
        Network widths ``m`` (positive, finite; repeats allowed, e.g. independent runs),
        at least ``order + 1`` distinct values.
    means : array_like, shape (W,) + S
        Estimates at each width; the first axis runs over ``widths`` and the remaining
        axes (typically one layer axis) are fitted independently. NaN entries are dropped
        from their layer's fit; a layer left with fewer than ``order + 1`` distinct widths
        gets NaN results.
    sems : array_like, shape (W,) + S, optional
        Standard errors of ``means`` (positive where ``means`` is finite; NaN drops the
        point). The fit uses weights ``1/sems**2`` and ``c0_se`` is the standard error
        implied by them. Without ``sems`` the fit is unweighted and the errors are
        estimated from the residuals (``chi2 / dof``), which needs ``dof >= 1``.
    order : {1, 2}
        Highest power of ``1/m``.

    Returns
    -------
    WidthFit

    Raises
    ------
    ValueError
        Bad ``order``; ``widths`` not 1-D, non-finite or non-positive, or with fewer than
        ``order + 1`` distinct values; ``means``/``sems`` of the wrong shape; a
        non-positive or infinite ``sems`` entry where ``means`` is finite.

    Notes
    -----
    The regressor is ``u = min(widths) / m`` (in ``(0, 1]``) so that the design matrix is
    well conditioned even for ``order=2`` and large widths; coefficients are converted back
    to powers of ``1/m``. Each layer is solved by a QR factorisation of its whitened design
    matrix (no normal equations).
    """
    if isinstance(order, (bool, np.bool_)) or order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    p = order + 1
    w = np.asarray(widths, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"widths must be 1-D, got shape {w.shape}")
    if not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError(f"widths must be finite and positive, got {w.tolist()}")
    n_distinct = np.unique(w).size
    if n_distinct < p:
        raise ValueError(
            f"order={order} needs at least {p} distinct widths, got {n_distinct} "
            f"(widths={w.tolist()})"
        )
    y = np.asarray(means, dtype=np.float64)
    if y.ndim == 0 or y.shape[0] != w.size:
        raise ValueError(
            f"means must have shape (len(widths), ...) = ({w.size}, ...), got {y.shape}"
        )
    S = y.shape[1:]
    y2 = y.reshape(w.size, -1).T  # (L, W)
    if sems is None:
        s2 = np.ones_like(y2)
        weighted = False
    else:
        s = np.asarray(sems, dtype=np.float64)
        if s.shape != y.shape:
            raise ValueError(f"sems must have the shape of means {y.shape}, got {s.shape}")
        s2 = s.reshape(w.size, -1).T
        bad = np.isfinite(y2) & ~np.isnan(s2) & ~((s2 > 0) & np.isfinite(s2))
        if bad.any():
            i = np.argwhere(bad)[0]
            raise ValueError(
                "sems must be positive and finite where means is finite; got "
                f"sems={s2[tuple(i)]!r} at width {w[i[1]]:g}"
            )
        weighted = True
    ok = np.isfinite(y2) & np.isfinite(s2)  # (L, W)

    # Whitened design: rows sqrt(weight) * (1, u, u^2), dropped points have weight 0.
    m0 = w.min()
    u = m0 / w
    X = np.stack([u**k for k in range(p)], axis=-1)  # (W, p)
    sw = np.where(ok, 1.0 / np.where(ok, s2, 1.0), 0.0)  # sqrt of the weight
    A = sw[:, :, None] * X[None, :, :]  # (L, W, p)
    b = sw * np.where(ok, y2, 0.0)  # (L, W)

    # A layer is solvable if its finite points cover at least p distinct widths.
    distinct = np.array([np.unique(w[row]).size for row in ok]) if ok.size else np.zeros(0, int)
    good = distinct >= p
    L = y2.shape[0]
    coef_u = np.full((L, p), np.nan)
    cov_u = np.full((L, p, p), np.nan)
    chi2 = np.full(L, np.nan)
    dof = ok.sum(axis=1) - p
    if good.any():
        Q, R = np.linalg.qr(A[good])  # stacked, (G, W, p) and (G, p, p)
        qtb = np.einsum("gwp,gw->gp", Q, b[good])
        c = np.linalg.solve(R, qtb[..., None])[..., 0]
        Rinv = np.linalg.inv(R)
        cov = Rinv @ np.swapaxes(Rinv, -1, -2)
        resid = b[good] - np.einsum("gwp,gp->gw", A[good], c)
        x2 = np.einsum("gw,gw->g", resid, resid)
        if not weighted:
            # Unit weights: the residual variance sets the error scale.
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(dof[good] > 0, x2 / dof[good], np.nan)
            cov = cov * scale[:, None, None]
        coef_u[good], cov_u[good], chi2[good] = c, cov, x2

    # Back from powers of u = m0/m to powers of 1/m: c_k(1/m) = c_k(u) * m0**k.
    conv = m0 ** np.arange(p, dtype=np.float64)
    coef = coef_u * conv
    cov = cov_u * conv[:, None] * conv[None, :]
    if weighted:
        with np.errstate(invalid="ignore"):
            pval = np.where(good & (dof > 0), _stats.chi2.sf(chi2, np.maximum(dof, 1)), np.nan)
    else:
        pval = np.full(L, np.nan)
    dof = np.where(good, dof, 0)

    return WidthFit(
        c0=coef[:, 0].reshape(S),
        c0_se=np.sqrt(cov[:, 0, 0]).reshape(S),
        coef=coef.reshape(S + (p,)),
        cov=cov.reshape(S + (p, p)),
        chi2=chi2.reshape(S),
        dof=dof.reshape(S),
        pvalue=pval.reshape(S),
        widths=w.copy(),
        order=order,
    )
