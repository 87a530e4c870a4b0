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

import warnings
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np

from . import alignment, seeds
from ._chains import bfk_kernels, jacobian_factors
from ._passes import input_batch, network_input, run_passes
from ._runtime import in_background, one_blas_thread, single_thread
from ._runtime import progress as _progress  # the samplers' keyword is called progress
from ._validate import check_family, check_int, check_layers, check_mode
from ._weights import Weights
from .families import Family
from .results import Result, SampleStatistics

__all__ = ["sample_bfa", "sample_bfk", "sample_jacobian", "width_limit", "sample_network",
           "SampledBFA", "SampledBFK", "SampledJacobian", "WidthLimit"]


# -- results ------------------------------------------------------------------------------------
@dataclass(repr=False)
class SampledBFA(SampleStatistics, Result):
    """Sampled backward-feature angle at every hidden layer ``v = layers = 1 .. L-1`` (arrays:
    samples x layers; ``sample`` holds the sample indices).

    ``cos`` is NaN where the feature does not move (e.g. ``v = 1`` when ``W_1`` is frozen). In free
    mode each entry is the mean over the draw's probes. ``loss_decay`` is the upstream
    contribution ``sum_{l <= v} eta_l |grad_l|^2``; ``lr`` and ``grad_sq`` are per weight layer
    ``1 .. L`` (:attr:`weight_layers`). ``vectors`` (only with ``keep_vectors=True``) holds ``b``,
    ``fdot`` and ``f`` as ``(samples, layers, m)`` arrays (``f`` in exact mode only; with a batch
    of ``n > 1`` inputs ``(samples, layers, n, m)``). ``inputs`` is the batch size ``n`` and
    ``input_gram`` the ``n x n`` Gram ``X X^T / d`` of the inputs every draw ran on (the angle
    and norms are those of the flattened ``n m`` features).
    The width limit of the same quantity is :class:`rmtalign.theory.TheoryBFA`.
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
    inputs: int = 1
    input_gram: np.ndarray = field(default_factory=lambda: np.ones((1, 1)))

    _per_layer = ("cos", "angle_deg", "b_norm", "fdot_norm", "loss_decay", "sensitivity")
    _bulky = ("vectors",)

    @property
    def angle_deg(self) -> np.ndarray:
        """``theta_v`` in degrees (samples x layers)."""
        return alignment.angle_deg(self.cos)

    @property
    def weight_layers(self) -> np.ndarray:
        """Index ``l = 1 .. L`` of ``lr`` and ``grad_sq``."""
        return np.arange(1, self.family.depth + 1)

    def _table(self):
        return self._sample_layer_table()


@dataclass(repr=False)
class SampledBFK(SampleStatistics, Result):
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
    inputs: int = 1
    input_gram: np.ndarray = field(default_factory=lambda: np.ones((1, 1)))

    _per_layer = ("cos_spectrum", "cos_kernel", "lower_bound")
    _bulky = ("kernels",)

    def _table(self):
        return self._sample_layer_table()

    def moments(self, order: int = 4) -> np.ndarray:
        """``M_1 .. M_order`` as an array ``(order, samples, layers)``."""
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        return alignment.spectral_moments(self.eigenvalues, range(1, order + 1))


@dataclass(repr=False)
class SampledJacobian(Result):
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

    def _table(self):
        n, m = self.log_sq_singular_values.shape
        return {"sample": np.repeat(self.sample, m), "index": np.tile(np.arange(m), n),
                "log_sq_singular_value": self.log_sq_singular_values.reshape(-1)}


@dataclass(repr=False)
class WidthLimit(Result):
    """Per-layer estimates at several widths and their ``m -> infinity`` extrapolation.

    ``means``/``sems`` are ``(widths, layers)``; ``limit`` and ``limit_se`` the fitted ``c0`` and its
    standard error; ``coef`` is ``(layers, order+1)`` for ``c0 + c1/m (+ c2/m^2)``; ``chi2``,
    ``dof`` and ``pvalue`` (per layer) judge whether that series fits the data. ``family`` is
    the family at the first width, ``seed`` the grid's seed (each width's own is
    :func:`rmtalign.seeds.point_seed` of it). ``inputs`` and ``input_gram``: the batch, as in
    :class:`SampledBFA`.
    """

    family: Family
    mode: str
    seed: object
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
    inputs: int = 1
    input_gram: np.ndarray = field(default_factory=lambda: np.ones((1, 1)), repr=False)

    def _table(self):
        """Rows ``(layer, width, mean, sem)`` for every width, then the extrapolated limit as
        rows with ``width = inf`` (``mean = limit``, ``sem = limit_se``)."""
        nw, nl = self.means.shape
        widths = np.append(np.asarray(self.widths, dtype=float), np.inf)
        return {"layer": np.tile(self.layers, nw + 1), "width": np.repeat(widths, nl),
                "mean": np.concatenate([self.means.reshape(-1), self.limit]),
                "sem": np.concatenate([self.sems.reshape(-1), self.limit_se])}


_RENAMED = {"BFAResult": "SampledBFA", "BFKResult": "SampledBFK", "JacobianResult": "SampledJacobian"}


def __getattr__(name):
    if name in _RENAMED:
        warnings.warn(f"rmtalign.sampling.{name} is renamed {_RENAMED[name]}", DeprecationWarning,
                      stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module 'rmtalign.sampling' has no attribute {name!r}")


# -- public API ---------------------------------------------------------------------------------
def sample_network(family, seed=None, sample=0, *, inputs=None, input_correlation=None):
    """The input ``x`` and dense weights ``[W_1, .., W_L]`` of draw ``sample`` of ``family``.

    These are the very matrices the samplers regenerate on the fly for the same ``seed`` and
    sample index, e.g. to load a draw into another framework. Memory ``O(L m^2)``.
    With ``inputs`` (and ``input_correlation``) as in :func:`sample_bfa`, the first item is the
    ``(n, d)`` batch that sampler runs this draw on (one input a row) instead of ``x``.
    """
    check_family(family)
    batch = None if inputs is None else input_batch(family, inputs, input_correlation)
    if batch is None and input_correlation is not None:
        raise ValueError(f"input_correlation needs inputs (a count), got inputs=None and "
                         f"input_correlation={input_correlation!r}")
    _, _, keys = seeds.sample_keys(seed, [check_int("sample", sample, 0)])
    W = Weights(family, keys[0])
    x = network_input(family, keys[0]) if batch is None else np.array(batch.matrix(family, keys[0]))
    return x, [W.copy(l) for l in range(1, family.depth + 1)]


def sample_bfa(family, samples=1, seed=None, mode="exact", dtype=np.float64, *, probes=8,
               inputs=1, input_correlation=None, keep_vectors=False, progress=None) -> SampledBFA:
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
    inputs : int or array_like
        The batch every draw runs on. A count ``n``: ``n = 1`` (default) is the family's own
        input; ``n >= 2`` inputs are drawn per draw from the seed (their own stream), with
        ``|x_i|^2 = d`` and pairwise correlation ``input_correlation`` exactly (needs
        ``n <= in_dim``; the family's ``input`` field then plays no part). An ``(n, d)`` array:
        these inputs, one a row, for every draw. The loss is ``mean(f_L)`` over the ``n k``
        outputs, the learning rates are the family's (Eq. 8) on the batch gradients, and the
        angle is taken between the flattened ``(n m)`` vectors ``fdot_v`` and ``-b_v``.
    input_correlation : float, optional
        Pairwise correlation of ``n`` drawn inputs, in ``(-1/(n-1), 1)``; default 0.
    keep_vectors : bool
        Also return ``b_v``, ``fdot_v`` (and ``f_v``) in ``result.vectors``.
    progress : bool or None
        Progress bar over samples (None: only for long jobs on a terminal).

    Notes
    -----
    Cost: three matrix-free passes, ``O(L m^2)`` time and ``O(L m)`` memory per sample; a batch
    shares each layer's generated weights between its ``n`` inputs (``O(L m^2 n)`` flops,
    ``O(L m n)`` memory).
    """
    check_family(family)
    check_mode(mode)
    batch = input_batch(family, inputs, input_correlation)
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if mode == "free":
        check_int("probes", probes, 1)
    ss, idx, keys = seeds.sample_keys(seed, samples)
    L, m = family.depth, family.width
    n = len(idx)
    N = batch.count  # flattened features have N m entries
    P = probes if mode == "free" else 1
    cos = np.empty((n, L - 1)); bn = np.empty((n, L - 1)); fn = np.empty((n, L - 1))
    decay = np.empty((n, L - 1)); lr = np.empty((n, L)); gsq = np.empty((n, L))
    vecs = {k: [] for k in ("b", "fdot", "f")} if keep_vectors else {}
    bar = _progress(n, progress, "sample_bfa", n * L * m * m * 3)
    for i, key in enumerate(keys):
        p = run_passes(family, key, mode=mode, probes=P, dtype=dtype, inputs=batch)
        b = np.moveaxis(p.b, 1, 0).reshape(P, L - 1, N * m)  # flattened over the inputs
        fd = np.moveaxis(p.fdot, 1, 0).reshape(P, L - 1, N * m)
        cos[i] = alignment.bfa_cos(b, fd).mean(axis=0)
        bn[i] = np.linalg.norm(b, axis=-1).mean(axis=0)
        fn[i] = np.linalg.norm(fd, axis=-1).mean(axis=0)
        decay[i] = p.loss_decay.mean(axis=0)
        lr[i] = p.lr.mean(axis=0)
        gsq[i] = p.grad_sq.mean(axis=0)
        if keep_vectors:
            for name, arr in (("b", p.b), ("fdot", p.fdot)):
                arr = np.moveaxis(arr, 1, 0)  # (P, L-1, n, m), less the axes of size 1
                arr = arr[:, :, 0] if N == 1 else arr
                vecs[name].append(arr[0] if P == 1 else arr)
            if p.f is not None:
                vecs["f"].append(p.f[:, 0] if N == 1 else p.f)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    vecs = {k: np.stack(v) for k, v in vecs.items() if v}
    sens = alignment.sensitivity(fn, decay, N * m)
    # A frozen prefix leaves the feature at rest: no angle, no speed ratio (Thm 2.1, first case).
    rest = fn == 0
    cos[rest] = np.nan
    sens[rest] = np.nan
    return SampledBFA(family, mode, seeds.seed_record(ss), idx, np.arange(1, L), cos, bn, fn, decay,
                      sens, lr, gsq, vecs, inputs=N, input_gram=batch.gram)


def sample_bfk(family, layers=None, samples=1, seed=None, mode="exact", *, inputs=1,
               input_correlation=None, keep_kernels=False, progress=None) -> SampledBFK:
    """Dense backward-to-feature kernels ``K_v`` (Def. 3.1) and their spectra.

    Built with the recursion ``K_1 = c_1 I``, ``K_v = c_v I + A_v K_{v-1} A_v^T`` where
    ``A_v = df_v/df_{v-1}`` and ``c_v = eta_v beta_v^2 |phi(f_{v-1})|^2``: two GEMMs a layer,
    ``O(L m^3)`` for all layers. Same draws as :func:`sample_bfa` with the same seed, so that
    ``-K_v b_v`` equals its ``fdot_v`` and ``b_v^T K_v b_v`` its loss decay, to round-off.
    ``layers``: which ``v`` in ``1..L-1`` get spectra (default all). ``keep_kernels``: also
    return the matrices, at those layers (``True``) or at every layer the recursion passes
    (``"all"``: ``1..max(layers)``, ``8 m^2`` bytes each per sample); they are symmetric up to
    round-off (about ``1e-16`` relative).
    ``inputs``, ``input_correlation``: the batch, as in :func:`sample_bfa`; with ``n`` inputs
    ``K_v`` is the ``(n m) x (n m)`` kernel of the flattened features,
    ``K_v = C_v (x) I + A_v K_{v-1} A_v^T`` with ``A_v`` block diagonal over the inputs and
    ``C_v`` the ``n x n`` matrix ``eta_v beta_v^2 G G^T`` of the inputs to ``W_v``
    (``O(L n^2 m^3)``).
    """
    check_family(family)
    check_mode(mode)
    batch = input_batch(family, inputs, input_correlation)
    layers = check_layers("layers", layers, 1, family.depth - 1, family.depth)
    if keep_kernels not in (False, True, "all"):
        raise ValueError(f"keep_kernels must be False, True or 'all', got {keep_kernels!r}")
    ss, idx, keys = seeds.sample_keys(seed, samples)
    m = family.width * batch.count  # size of the flattened features
    n, nl = len(idx), len(layers)
    eig = np.empty((n, nl, m)); ck = np.empty((n, nl))
    at = {int(v): j for j, v in enumerate(layers)}
    kernels = {}
    bar = _progress(n * (layers[-1]), progress, "sample_bfk", n * layers[-1] * m**3 * 4)
    for i, key in enumerate(keys):
        W = Weights(family, key, keep_blocks=True)  # the passes' blocks serve the recursion
        p = run_passes(family, key, mode=mode, probes=1, weights=W, tangent=False, inputs=batch)
        # Blocks beyond the memory budget are generated between GEMMs: on one numba thread.
        with single_thread():
            for v, K in bfk_kernels(family, W, p.masks, p.weights_c[0], layers[-1], bar):
                j = at.get(v)
                if j is not None:  # eigvalsh reads one triangle: K is symmetric to round-off
                    eig[i, j] = np.linalg.eigvalsh(K)[::-1]
                    ck[i, j] = alignment.cos_from_kernel(K, p.b[v - 1, 0].reshape(-1))
                if keep_kernels == "all" or (keep_kernels and j is not None):
                    kernels.setdefault(v, []).append(K)  # never modified once yielded
    if bar is not None:
        bar.close()
    kernels = {v: np.stack(k) for v, k in kernels.items()}
    lam = np.clip(eig, 0.0, None)  # psd: negative values are round-off
    low, _ = alignment.spectral_bounds(lam)
    return SampledBFK(family, mode, seeds.seed_record(ss), idx, layers, eig,
                      alignment.cos_from_spectrum(lam), ck, low, kernels, inputs=batch.count,
                      input_gram=batch.gram)


# Factors multiplied together between two QR steps may have a joint condition number up to this:
# each block then perturbs log sigma^2 by at most ~1e6 * 2 eps ~ 5e-10 (measured on a depth-1000
# ReLU MLP, all blocks together: 7e-11 from the one-QR-per-factor result, 2e-11 at 1e3), for about
# 1.5x fewer QR steps than the accuracy-first default of rmtalign._products.
_JACOBIAN_BLOCK_COND = 1e6


def sample_jacobian(family, start, stop, samples=1, seed=None, mode="exact", *,
                    progress=None) -> SampledJacobian:
    """Squared singular values of the layer-to-layer Jacobian ``df_stop/df_start``.

    ``1 <= start < stop <= L-1``. The product ``A_stop ... A_{start+1}`` is accumulated in a
    QR-based, log-scaled form, so depths of thousands neither overflow nor lose the small
    singular values (see :mod:`rmtalign._products`).
    """
    from ._products import product_log_singular_values

    check_family(family)
    check_mode(mode)
    L, m = family.depth, family.width
    start = check_int("start", start)
    stop = check_int("stop", stop)
    if not 1 <= start < stop <= L - 1:
        raise ValueError(f"need 1 <= start < stop <= L-1 = {L - 1}; got start={start!r}, stop={stop!r}")
    ss, idx, keys = seeds.sample_keys(seed, samples)
    out = np.full((len(idx), m), -np.inf)
    bar = _progress(len(idx), progress, "sample_jacobian", len(idx) * (stop - start) * m**3 * 4)
    for i, key in enumerate(keys):
        factors, width = jacobian_factors(family, Weights(family, key), key, mode, start, stop)
        # The chain alternates weight generation (numba) and small LAPACK calls. Each gets one
        # core: factors are generated on a helper thread while LAPACK works on the previous ones
        # (one BLAS thread also leaves no OpenBLAS worker spinning against numba's).
        # closing(): an error in the chain stops the helper now, not when the traceback dies.
        with one_blas_thread(), closing(in_background(factors)) as stream:
            s = product_log_singular_values(stream, width, block_cond=_JACOBIAN_BLOCK_COND)
        out[i, : len(s)] = s
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return SampledJacobian(family, mode, seeds.seed_record(ss), idx, start, stop, out)


def width_limit(family, widths, quantity="cos", samples=16, seed=None, mode="exact", order=1,
                *, inputs=1, input_correlation=None, progress=None) -> WidthLimit:
    """The width-then-depth limit of a per-layer :func:`sample_bfa` quantity.

    Samples ``family`` at each width (``family.replace(width=m)``, so default init scales follow
    ``m``), then fits ``c0 + c1/m`` (``order=1``) or ``c0 + c1/m + c2/m^2`` (``order=2``) per layer
    by weighted least squares, returning ``c0`` with its standard error. Each width is sampled
    with the seed :func:`rmtalign.seeds.point_seed` derives from ``seed`` and the family at that
    width: adding, removing or reordering widths leaves the others' numbers unchanged.
    ``inputs``, ``input_correlation``: the batch of :func:`sample_bfa`. The seeds do not depend on
    it, so batches of different sizes share their weights at each width (common random numbers:
    their differences are estimated with less noise than each of them).
    """
    from ._extrapolate import fit_width_limit

    check_family(family)
    batch = input_batch(family, inputs, input_correlation)
    if quantity not in SampledBFA._per_layer:
        raise ValueError(f"quantity must be one of {', '.join(SampledBFA._per_layer)}; got {quantity!r}")
    check_mode(mode)
    widths = np.asarray(widths)
    if widths.ndim != 1 or not np.issubdtype(widths.dtype, np.integer) or (widths < 1).any():
        raise ValueError(f"widths must be a sequence of positive integers, got {widths!r}")
    ss, _ = seeds.resolve_seed(seed)
    means, sems = [], []
    for w in widths:
        fam = family.replace(width=int(w))
        r = sample_bfa(fam, samples, seeds.point_seed(ss, fam, f"bfa-{mode}"), mode=mode,
                       inputs=inputs, input_correlation=input_correlation, progress=progress)
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
    return WidthLimit(family.replace(width=int(widths[0])), mode, seeds.seed_record(ss), quantity,
                      widths, np.arange(1, family.depth), means, sems, c0, c0_se, coef, chi2,
                      fit.dof, pvalue, inputs=batch.count, input_gram=batch.gram)
