"""Monte Carlo front end: the BFA, the BFK spectra and Jacobian spectra of sampled networks.

Every function takes a family (the law), ``samples`` (a count ``n`` for indices ``0..n-1``, or
explicit indices) and ``seed`` (int, ``numpy.random.SeedSequence`` or None). Sample ``i`` depends
only on ``(family, seed, i)``: not on thread counts, nor on how the samples are split over calls.

``mode="exact"`` samples the real network (forward pass, backward pass for the linear loss
``mean(f_L)``, one GD step with the family's learning rates, feature velocity by forward mode).
``mode="free"`` samples the random-matrix model of Lemma A.1: ReLU masks replaced by independent
Bernoulli(1/2) diagonals, the BFK weights set to their width limits, and Gaussian probes
``b_{L-1}`` independent of everything else.
"""
from __future__ import annotations

import csv
import math
import sys
from contextlib import closing
from dataclasses import dataclass, field, fields

import numpy as np

from . import alignment
from ._draw import (Weights, bfk_step, check_mode, draw_input, exact_masks, forward, free_masks,
                    layer_jacobian, rescale_pow2, resolve_samples, resolve_seed, run_passes)
from ._kernels import rng
from ._kernels._config import in_background, single_thread
from threadpoolctl import threadpool_limits
from .families import Family

__all__ = ["sample_bfa", "sample_bfk", "sample_jacobian", "width_limit", "sample_network",
           "BFAResult", "BFKResult", "JacobianResult", "WidthLimit"]


# -- results ------------------------------------------------------------------------------------
class _Result:
    """Shared export: ``to_dict()`` (JSON-ready) and a tidy table (one row per sample x layer)."""

    _per_layer: tuple = ()  # names of (samples, layers) arrays exported by to_table

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Family):
                v = v.to_dict()
            elif isinstance(v, np.ndarray):
                v = np.where(np.isfinite(v), v, None).tolist() if v.dtype.kind == "f" else v.tolist()
            elif isinstance(v, dict):
                continue  # optional bulky vectors are not exported
            out[f.name] = v
        return out

    def to_table(self) -> dict:
        """Tidy columns: ``sample``, ``layer`` and one column per per-layer quantity."""
        n, nl = len(self.sample), len(self.layers)
        cols = {"sample": np.repeat(self.sample, nl), "layer": np.tile(self.layers, n)}
        for name in self._per_layer:
            cols[name] = np.asarray(getattr(self, name)).reshape(n * nl)
        return cols

    def to_csv(self, path) -> None:
        """Write :meth:`to_table` as CSV (empty cells for NaN)."""
        cols = self.to_table()
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for row in zip(*cols.values()):
                w.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v
                            for v in (x.item() if hasattr(x, "item") else x for x in row)])

    def _column(self, quantity):
        if quantity not in self._per_layer:
            raise ValueError(f"quantity must be one of {', '.join(self._per_layer)}; got {quantity!r}")
        return np.asarray(getattr(self, quantity), dtype=float)

    def mean(self, quantity: str = "cos") -> np.ndarray:
        """Per-layer mean over samples (NaN entries ignored)."""
        x = self._column(quantity)
        with np.errstate(invalid="ignore"):
            cnt = np.sum(np.isfinite(x), axis=0)
            return np.where(cnt > 0, np.nansum(x, axis=0) / np.maximum(cnt, 1), np.nan)

    def sem(self, quantity: str = "cos") -> np.ndarray:
        """Per-layer standard error of :meth:`mean` (NaN with fewer than 2 finite samples)."""
        x = self._column(quantity)
        cnt = np.sum(np.isfinite(x), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = self.mean(quantity)
            var = np.nansum((x - mu) ** 2, axis=0) / (cnt - 1)
            return np.where(cnt > 1, np.sqrt(var / cnt), np.nan)


@dataclass
class BFAResult(_Result):
    """Backward-feature angle at every hidden layer ``v = 1 .. L-1`` (arrays: samples x layers).

    ``cos`` is NaN where the feature does not move (e.g. ``v = 1`` when ``W_1`` is frozen). In free
    mode each entry is the mean over the draw's probes. ``loss_decay`` is the upstream
    contribution ``sum_{l <= v} eta_l |grad_l|^2``; ``lr`` and ``grad_sq`` are per weight layer
    ``1 .. L``. ``vectors`` (only with ``keep_vectors=True``) holds ``b``, ``fdot`` and ``f`` as
    ``(samples, layers, m)`` arrays (``f`` in exact mode only).
    """

    family: Family
    mode: str
    seed: object
    sample: np.ndarray
    layers: np.ndarray
    cos: np.ndarray
    b_norm: np.ndarray
    fdot_norm: np.ndarray
    loss_decay: np.ndarray
    sensitivity: np.ndarray
    lr: np.ndarray
    grad_sq: np.ndarray
    vectors: dict = field(default_factory=dict, repr=False)

    _per_layer = ("cos", "angle_deg", "b_norm", "fdot_norm", "loss_decay", "sensitivity")

    @property
    def angle_deg(self) -> np.ndarray:
        """``theta_v`` in degrees (samples x layers)."""
        return np.degrees(np.arccos(np.clip(self.cos, -1.0, 1.0)))


@dataclass
class BFKResult(_Result):
    """Spectra of the dense BFK ``K_v`` at the requested layers.

    ``eigenvalues`` is ``(samples, layers, m)``, descending. ``cos_spectrum = M1/sqrt(M2)`` is the
    width-limit prediction of Thm 3.2; ``cos_kernel`` is Eq. (6) evaluated with the draw's own
    ``b_v`` (it equals the sampled BFA); ``lower_bound = lambda_min / lambda_max``.
    ``kernels`` maps ``v`` to the ``(samples, m, m)`` matrices when ``keep_kernels`` is set.
    """

    family: Family
    mode: str
    seed: object
    sample: np.ndarray
    layers: np.ndarray
    eigenvalues: np.ndarray
    cos_spectrum: np.ndarray
    cos_kernel: np.ndarray
    lower_bound: np.ndarray
    kernels: dict = field(default_factory=dict, repr=False)

    _per_layer = ("cos_spectrum", "cos_kernel", "lower_bound")

    def moments(self, order: int = 4) -> np.ndarray:
        """``M_1 .. M_order`` as an array ``(order, samples, layers)``."""
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        return alignment.spectral_moments(self.eigenvalues, range(1, order + 1))


@dataclass
class JacobianResult(_Result):
    """Squared singular values of ``J = df_stop/df_start`` per sample, kept on the log scale.

    ``log_sq_singular_values`` is ``(samples, m)``, descending (``-inf`` for exact zeros); each
    QR block of the accumulation adds at most ~1e-9 absolute error to them (1e-10 measured at depth
    1000). Long products overflow float64: use the log values, or :meth:`sq_singular_values`,
    which refuses to return overflowed numbers.
    """

    family: Family
    mode: str
    seed: object
    sample: np.ndarray
    start: int
    stop: int
    log_sq_singular_values: np.ndarray

    @property
    def log_condition(self) -> np.ndarray:
        """Natural log of the condition number ``sigma_max / sigma_min`` per sample."""
        s = self.log_sq_singular_values
        return 0.5 * (s[:, 0] - s[:, -1])

    @property
    def condition(self) -> np.ndarray:
        """Condition number per sample (``inf`` past float64's range: see :attr:`log_condition`)."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_condition)

    def sq_singular_values(self) -> np.ndarray:
        """``sigma_i^2`` as floats; raises ``OverflowError`` if they leave float64's range."""
        s = self.log_sq_singular_values
        finite = s[np.isfinite(s)]  # exact zeros (-inf) are representable
        if finite.size and (finite.max() > 709.0 or finite.min() < -708.0):
            raise OverflowError(
                f"squared singular values span exp({finite.min():.4g}) .. exp({finite.max():.4g}), "
                "outside float64; use log_sq_singular_values")
        return np.exp(s)

    def to_table(self) -> dict:
        n, m = self.log_sq_singular_values.shape
        return {"sample": np.repeat(self.sample, m), "index": np.tile(np.arange(m), n),
                "log_sq_singular_value": self.log_sq_singular_values.reshape(-1)}


@dataclass
class WidthLimit(_Result):
    """Per-layer estimates at several widths and their ``m -> infinity`` extrapolation.

    ``means``/``sems`` are ``(widths, layers)``; ``limit`` and ``limit_se`` the fitted ``c0`` and its
    standard error; ``coef`` is ``(layers, order+1)`` for ``c0 + c1/m (+ c2/m^2)``; ``chi2``,
    ``dof`` and ``pvalue`` (per layer) judge whether that series fits the data.
    """

    quantity: str
    widths: np.ndarray
    layers: np.ndarray
    means: np.ndarray
    sems: np.ndarray
    limit: np.ndarray
    limit_se: np.ndarray
    coef: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    pvalue: np.ndarray

    _per_layer = ("limit", "limit_se")

    def to_table(self) -> dict:
        nw, nl = self.means.shape
        return {"width": np.repeat(self.widths, nl), "layer": np.tile(self.layers, nw),
                "mean": self.means.reshape(-1), "sem": self.sems.reshape(-1)}


# -- helpers ------------------------------------------------------------------------------------
def _check_family(family):
    if not isinstance(family, Family):
        raise TypeError(f"family must be an rmtalign MLP or ResNet, got {type(family).__name__}")
    return family


def _progress(total, enabled, desc, work):
    """A tqdm bar when asked (``True``), or when ``None`` and the job is long on a terminal."""
    if enabled is None:
        enabled = work > 3e8 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


def _sample_keys(seed, samples):
    ss, base = resolve_seed(seed)
    idx = resolve_samples(samples)
    return ss, idx, [rng.derive_key(base, int(i)) for i in idx]


def _seed_repr(ss):
    return {"entropy": ss.entropy, "spawn_key": list(ss.spawn_key)}


# -- public API ---------------------------------------------------------------------------------
def sample_network(family, seed=None, sample=0):
    """The input ``x`` and dense weights ``[W_1, .., W_L]`` of draw ``sample`` of ``family``.

    These are the very matrices the samplers regenerate on the fly for the same ``seed`` and
    sample index, e.g. to load a draw into another framework. Memory ``O(L m^2)``.
    """
    _check_family(family)
    _, idx, keys = _sample_keys(seed, [sample])
    W = Weights(family, keys[0])
    x = family.input_vector(lambda d: draw_input(keys[0], d))
    return x, [W.dense(l) for l in range(1, family.depth + 1)]


def sample_bfa(family, samples=1, seed=None, mode="exact", dtype=np.float64, *, probes=8,
               keep_vectors=False, progress=None) -> BFAResult:
    """Sample the backward-feature angle ``theta_v`` at every hidden layer.

    Parameters
    ----------
    family : MLP or ResNet
    samples : int or sequence of int
        A count ``n`` (indices ``0..n-1``) or explicit sample indices.
    seed : int, numpy.random.SeedSequence or None
    mode : {"exact", "free"}
        The real network, or the random-matrix model of Lemma A.1 (see module docstring).
    dtype : {numpy.float64, numpy.float32}
        float32 rounds every feature, backward and tangent vector to float32 after each layer, as
        a float32 network would; products accumulate in float64.
    probes : int
        Free mode only: Gaussian probes ``b_{L-1}`` per draw, pushed through the same matrices in
        one batched product; ``cos`` is their mean.
    keep_vectors : bool
        Also return ``b_v``, ``fdot_v`` (and ``f_v``) in ``result.vectors``.
    progress : bool or None
        Progress bar over samples (None: only for long jobs on a terminal).

    Cost: three matrix-free passes, ``O(L m^2)`` time and ``O(L m)`` memory per sample.
    """
    _check_family(family)
    check_mode(mode)
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if mode == "free" and (not isinstance(probes, (int, np.integer)) or probes < 1):
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
    ss, idx, keys = _sample_keys(seed, samples)
    L, m = family.depth, family.width
    n = len(idx)
    P = probes if mode == "free" else 1
    cos = np.empty((n, L - 1)); bn = np.empty((n, L - 1)); fn = np.empty((n, L - 1))
    decay = np.empty((n, L - 1)); lr = np.empty((n, L)); gsq = np.empty((n, L))
    vecs = {k: [] for k in ("b", "fdot", "f")} if keep_vectors else {}
    bar = _progress(n, progress, "sample_bfa", n * L * m * m * 3)
    for i, key in enumerate(keys):
        p = run_passes(family, key, mode=mode, probes=P, dtype=dtype)
        b = np.moveaxis(p.b, 1, 0)        # (P, L-1, m)
        fd = np.moveaxis(p.fdot, 1, 0)
        cos[i] = alignment.bfa_cos(b, fd).mean(axis=0)
        bn[i] = np.linalg.norm(b, axis=-1).mean(axis=0)
        fn[i] = np.linalg.norm(fd, axis=-1).mean(axis=0)
        decay[i] = p.loss_decay.mean(axis=0)
        lr[i] = p.lr.mean(axis=0)
        gsq[i] = p.grad_sq.mean(axis=0)
        if keep_vectors:
            vecs["b"].append(p.b[:, 0] if P == 1 else b)
            vecs["fdot"].append(p.fdot[:, 0] if P == 1 else fd)
            if p.f is not None:
                vecs["f"].append(p.f)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    vecs = {k: np.stack(v) for k, v in vecs.items() if v}
    sens = alignment.sensitivity(fn, decay, m)
    # A frozen prefix leaves the feature at rest: no angle, no speed ratio (Thm 2.1, first case).
    rest = fn == 0
    cos[rest] = np.nan
    sens[rest] = np.nan
    return BFAResult(family, mode, _seed_repr(ss), idx, np.arange(1, L), cos, bn, fn, decay, sens,
                     lr, gsq, vecs)


def _resolve_layers(layers, family):
    L = family.depth
    if layers is None:
        return np.arange(1, L)
    arr = np.atleast_1d(np.asarray(layers))
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"layers must be integers in [1, {L - 1}], got {layers!r}")
    if arr.min() < 1 or arr.max() > L - 1:
        raise ValueError(f"layers must lie in [1, {L - 1}] (depth={L}), got {layers!r}")
    return np.unique(arr)


def sample_bfk(family, layers=None, samples=1, seed=None, mode="exact", *, keep_kernels=False,
               progress=None) -> BFKResult:
    """Dense backward-to-feature kernels ``K_v`` (Def. 3.1) and their spectra.

    Built with the recursion ``K_1 = c_1 I``, ``K_v = c_v I + A_v K_{v-1} A_v^T`` where
    ``A_v = df_v/df_{v-1}`` and ``c_v = eta_v beta_v^2 |phi(f_{v-1})|^2``: two GEMMs a layer,
    ``O(L m^3)`` for all layers. Same draws as :func:`sample_bfa` with the same seed, so that
    ``-K_v b_v`` equals its ``fdot_v`` and ``b_v^T K_v b_v`` its loss decay, to round-off.
    ``layers``: which ``v`` in ``1..L-1`` get spectra (default all). ``keep_kernels``: also
    return the matrices, at those layers (``True``) or at every layer the recursion passes
    (``"all"``: ``1..max(layers)``, ``8 m^2`` bytes each per sample); they are symmetric up to
    round-off (about ``1e-16`` relative).
    """
    _check_family(family)
    check_mode(mode)
    layers = _resolve_layers(layers, family)
    if keep_kernels not in (False, True, "all"):
        raise ValueError(f"keep_kernels must be False, True or 'all', got {keep_kernels!r}")
    ss, idx, keys = _sample_keys(seed, samples)
    m = family.width
    n, nl = len(idx), len(layers)
    eig = np.empty((n, nl, m)); ck = np.empty((n, nl))
    at = {int(v): j for j, v in enumerate(layers)}
    kernels = {}
    bar = _progress(n * (layers[-1]), progress, "sample_bfk", n * layers[-1] * m**3 * 4)
    for i, key in enumerate(keys):
        W = Weights(family, key, keep_blocks=True)  # the passes' blocks serve the recursion
        p = run_passes(family, key, mode=mode, probes=1, weights=W, tangent=False)
        # Blocks beyond the memory budget are generated between GEMMs: on one numba thread.
        with single_thread():
            for v, K in _bfk_recursion(family, W, p, layers[-1], bar):
                j = at.get(v)
                if j is not None:  # eigvalsh reads one triangle: K is symmetric to round-off
                    eig[i, j] = np.linalg.eigvalsh(K)[::-1]
                    ck[i, j] = alignment.cos_from_kernel(K, p.b[v - 1, 0])
                if keep_kernels == "all" or (keep_kernels and j is not None):
                    kernels.setdefault(v, []).append(K)  # never modified once yielded
    if bar is not None:
        bar.close()
    kernels = {v: np.stack(k) for v, k in kernels.items()}
    lam = np.clip(eig, 0.0, None)  # psd: negative values are round-off
    low, _ = alignment.spectral_bounds(lam)
    return BFKResult(family, mode, _seed_repr(ss), idx, layers, eig,
                     alignment.cos_from_spectrum(lam), ck, low, kernels)


def _bfk_recursion(family, W, passes, last, bar=None):
    """Yield ``(v, K_v)`` for ``v = 1..last``: ``K_1 = c_1 I``, ``K_v = c_v I + A_v K A_v^T``.

    Each ``K_v`` is a new array, symmetric up to round-off, that the recursion does not touch
    again."""
    m = family.width
    c = passes.weights_c[0]
    K = np.zeros((m, m))
    K[np.diag_indices(m)] = c[0]
    for v in range(1, last + 1):
        if v > 1:
            K = bfk_step(family, W, passes.masks, K, v)
            K[np.diag_indices(m)] += c[v - 1]
        yield v, K
        if bar is not None:
            bar.update()


def _relu_mlp_factors(family, W, key, start, stop):
    """Active blocks ``beta W_l[S_l, S_{l-1}]`` of an exact ReLU MLP's Jacobian chain, with the
    forward pass that finds the masks fused in: ``W_l[:, S_{l-1}]`` is generated once, gives
    ``f_l`` (by BLAS) and, sliced to the rows ``S_l``, the factor. Features are rescaled by powers
    of two (signs unchanged: every layer is positively homogeneous), so nothing overflows.
    Returns the factor generator and the width ``|S_start|`` of the first factor."""
    beta = family.branch_scale
    x = family.input_vector(lambda d: draw_input(key, d))
    f = rescale_pow2(W.matvecs(1, x[None])[0])
    for l in range(2, start + 1):
        S = np.flatnonzero(f > 0)
        f = rescale_pow2(W.matvecs(l, f[S][None], cols=S)[0])
    first = np.flatnonzero(f > 0)

    def factors(f, S_prev):
        for l in range(start + 1, stop + 1):
            Wl = W.dense(l, cols=S_prev)
            if beta != 1.0:
                Wl *= beta
            if l == stop:
                yield Wl
                return
            f = rescale_pow2(Wl @ f[S_prev])
            S_prev = np.flatnonzero(f > 0)
            yield Wl[S_prev]

    return factors(f, first), first.size


# Factors multiplied together between two QR steps may have a joint condition number up to this:
# each block then perturbs log sigma^2 by at most ~1e6 * 2 eps ~ 5e-10 (measured on a depth-1000
# ReLU MLP, all blocks together: 7e-11 from the one-QR-per-factor result, 2e-11 at 1e3), for about
# 1.5x fewer QR steps than the accuracy-first default of rmtalign._products.
_JACOBIAN_BLOCK_COND = 1e6


def sample_jacobian(family, start, stop, samples=1, seed=None, mode="exact", *,
                    progress=None) -> JacobianResult:
    """Squared singular values of the layer-to-layer Jacobian ``df_stop/df_start``.

    ``1 <= start < stop <= L-1``. The product ``A_stop ... A_{start+1}`` is accumulated in a
    QR-based, log-scaled form, so depths of thousands neither overflow nor lose the small
    singular values (see :mod:`rmtalign._products`).
    """
    from ._products import product_log_singular_values

    _check_family(family)
    check_mode(mode)
    L, m = family.depth, family.width
    for name, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {v!r}")
    if not 1 <= start < stop <= L - 1:
        raise ValueError(f"need 1 <= start < stop <= L-1 = {L - 1}; got start={start!r}, stop={stop!r}")
    ss, idx, keys = _sample_keys(seed, samples)
    out = np.full((len(idx), m), -np.inf)
    bar = _progress(len(idx), progress, "sample_jacobian", len(idx) * (stop - start) * m**3 * 4)
    for i, key in enumerate(keys):
        W = Weights(family, key)
        relu_mlp = family.skip == 0 and family.activation == "relu"
        if relu_mlp and mode == "exact":
            factors, width = _relu_mlp_factors(family, W, key, start, stop)
        elif relu_mlp:
            masks = free_masks(family, key)
            # J = W_stop D_{stop-1} ... W_{start+1} D_start. Multiplying only the active blocks
            # W_l[S_l, S_{l-1}] keeps the masks' exact zero singular values exactly zero (-inf).
            active = {l: np.flatnonzero(masks[l - 1]) for l in range(start, stop)}
            active[stop] = np.arange(m)
            factors = (family.branch_scale * W.dense(l, rows=active[l], cols=active[l - 1])
                       for l in range(start + 1, stop + 1))
            width = len(active[start])
        else:
            if mode == "exact":  # only the signs of the features matter: rescaled, never overflows
                x = family.input_vector(lambda d: draw_input(key, d))
                masks = exact_masks(family, forward(family, W, x, rescale=True))
            else:
                masks = free_masks(family, key)
            factors = (layer_jacobian(family, W, masks, l) for l in range(start + 1, stop + 1))
            width = m
        # The chain alternates weight generation (numba) and small LAPACK calls. Each gets one
        # core: factors are generated on a helper thread while LAPACK works on the previous ones
        # (one BLAS thread also leaves no OpenBLAS worker spinning against numba's).
        # closing(): an error in the chain stops the helper now, not when the traceback dies.
        with threadpool_limits(1, user_api="blas"), closing(in_background(factors)) as stream:
            s = product_log_singular_values(stream, width, block_cond=_JACOBIAN_BLOCK_COND)
        out[i, : len(s)] = s
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return JacobianResult(family, mode, _seed_repr(ss), idx, int(start), int(stop), out)


def width_limit(family, widths, quantity="cos", samples=16, seed=None, mode="exact", order=1,
                *, progress=None) -> WidthLimit:
    """The width-then-depth limit of a per-layer :func:`sample_bfa` quantity.

    Samples ``family`` at each width (``family.replace(width=m)``, so default init scales follow
    ``m``), then fits ``c0 + c1/m`` (``order=1``) or ``c0 + c1/m + c2/m^2`` (``order=2``) per layer
    by weighted least squares, returning ``c0`` with its standard error. Each width gets an
    independent child of ``seed``.
    """
    from ._extrapolate import fit_width_limit

    _check_family(family)
    widths = np.asarray(widths)
    if widths.ndim != 1 or not np.issubdtype(widths.dtype, np.integer) or (widths < 1).any():
        raise ValueError(f"widths must be a sequence of positive integers, got {widths!r}")
    ss, _ = resolve_seed(seed)
    children = ss.spawn(len(widths))
    means, sems = [], []
    for w, child in zip(widths, children):
        r = sample_bfa(family.replace(width=int(w)), samples, child, mode=mode, progress=progress)
        means.append(r.mean(quantity))
        sems.append(r.sem(quantity))
    means, sems = np.array(means), np.array(sems)
    # A layer whose quantity does not fluctuate (e.g. cos = 1 right above a frozen W_1) has
    # standard errors at round-off level or exactly 0: weighted least squares cannot weigh it,
    # and it needs no fit when it is also constant in m. Such layers are fitted unweighted.
    with np.errstate(invalid="ignore"):
        still = ~np.isfinite(means) | (sems <= 1e-12 * np.abs(means))
    exact = np.all(still, axis=0) & np.isfinite(means).any(axis=0)
    fit = fit_width_limit(widths, np.where(exact, np.nan, means), np.where(exact, np.nan, sems),
                          order=order)
    c0, c0_se, coef, chi2, pvalue = fit.c0, fit.c0_se, fit.coef, fit.chi2, fit.pvalue
    for j in np.flatnonzero(exact):
        y = means[:, j][np.isfinite(means[:, j])]
        if np.ptp(y) <= 1e-12 * np.abs(y).max():
            c0[j], c0_se[j], chi2[j], pvalue[j] = y[0], 0.0, 0.0, np.nan
            coef[j] = np.r_[y[0], np.zeros(order)]
        else:
            one = fit_width_limit(widths, means[:, j], order=order)
            c0[j], c0_se[j], coef[j], chi2[j] = one.c0, one.c0_se, one.coef, one.chi2
    return WidthLimit(quantity, widths, np.arange(1, family.depth), means, sems, c0, c0_se, coef,
                      chi2, fit.dof, pvalue)
