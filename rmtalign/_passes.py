"""The three passes of one draw: forward (features), backward (``b_v``) and tangent (``fdot_v``).

Exact mode runs the real network: ``f_1 = W_1 x``, ``f_l = a f_{l-1} + beta W_l phi(f_{l-1})``,
the backward pass of the linear loss ``mean(f_L)`` (through the output multiplier), one GD step
with the family's learning rates (its rule, or its explicit rates)
and the feature velocity by forward mode. Free mode is the random-matrix model of Lemma A.1:
masks are independent Bernoulli draws, the kernel weights their width limits, and the backward
pass starts from Gaussian probes. Every pass touches only the columns of ``W_l`` that the mask
of ``f_{l-1}`` keeps (for a batch: the columns some input's mask keeps).

A batch of ``n`` inputs (:class:`InputBatch`) runs as ``n`` rows through the same generated
weights: each layer's block is generated once for all of them. The loss is ``mean(f_L)`` over the
``n k`` output entries (the single-input loss averaged over the inputs), so ``b_L = 1/(n k)``; the
GD step's gradient ``beta B_l^T G_{l-1}`` has rank ``n``, and the BFK weights become the ``n x n``
matrices ``C_l = eta_l beta_l^2 G_{l-1} G_{l-1}^T`` (``G_0 = X``): the tangent pass adds
``-C_l B_l`` at each layer. One input gives the single-input arithmetic, bit for bit.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import seeds
from ._kernels import rng
from ._runtime import one_blas_thread
from ._validate import check_int, check_real
from ._weights import Weights


@dataclass
class Passes:
    """Forward, backward and tangent pass of one draw on ``n`` inputs (arrays over layers;
    index 0 = layer 1).

    ``b``/``fdot`` are ``(L-1, P, n, m)`` for ``P`` probes (``P = 1`` in exact mode); ``f`` is
    ``(L-1, n, m)`` (exact mode only); ``masks`` is ``(L-1, n, m)`` (``phi'(f_l)``, or the free
    model's draws); ``X`` is ``(n, d)``.
    """

    X: np.ndarray
    f: np.ndarray | None
    masks: np.ndarray
    b: np.ndarray
    fdot: np.ndarray | None  # None when the tangent pass is skipped
    grad_sq: np.ndarray     # (P, L)
    lr: np.ndarray          # (P, L)
    weights_c: np.ndarray   # (P, L, n, n) BFK weights C_l (c_l for one input)
    loss_decay: np.ndarray  # (P, L-1) upstream contribution sum_{l<=v} <C_l, B_l B_l^T>


def _normals(key: int, kind: int, shape) -> np.ndarray:
    out = np.empty(shape)
    rng.fill_normal(seeds.stream_key(key, kind), out)
    return out


def network_input(family, key: int) -> np.ndarray:
    """The input ``x`` of the draw keyed by ``key`` (its direction follows the key when
    ``input="random"``)."""
    return family.input_vector(lambda d: _normals(key, seeds.INPUT, (1, d))[0])


@dataclass(frozen=True, eq=False)
class InputBatch:
    """The inputs every draw of a sampler call runs on.

    ``count = 1`` without ``X``: the family's own input (:func:`network_input`). ``count >= 2``
    without ``X``: inputs drawn per draw with ``|x_i|^2 = d`` and ``x_i . x_j = d correlation``
    exactly (``X = sqrt(d) C Q^T``: ``C`` the Cholesky factor of the target Gram, ``Q`` an
    orthonormal ``d x n`` frame from the draw's ``INPUTS`` stream; needs ``n <= d``). ``X``: these
    inputs, the same for every draw. Build it with :func:`input_batch`, which validates.
    """

    count: int = 1
    correlation: float = 0.0
    X: np.ndarray | None = None

    @property
    def gram(self) -> np.ndarray:
        """``X X^T / d``: the drawn inputs' target (realised to round-off), or the explicit one
        (``[[1.0]]`` for the family's input, of norm ``sqrt(d)``)."""
        if self.X is not None:
            return self.X @ self.X.T / self.X.shape[1]
        n, r = self.count, self.correlation
        return (1.0 - r) * np.eye(n) + r * np.ones((n, n))

    def matrix(self, family, key: int) -> np.ndarray:
        """The ``(n, d)`` inputs of the draw keyed by ``key``, one a row."""
        if self.X is not None:
            return self.X
        if self.count == 1:
            return network_input(family, key)[None]
        n, d = self.count, family.in_dim
        Q, R = np.linalg.qr(_normals(key, seeds.INPUTS, (n, d)).T)
        Q *= np.sign(np.diag(R))  # a frame that depends on the Gaussian draw only
        return math.sqrt(d) * (np.linalg.cholesky(self.gram) @ Q.T)


def input_batch(family, inputs=1, input_correlation=None) -> InputBatch:
    """Validate the samplers' ``inputs`` and ``input_correlation`` arguments.

    ``inputs`` is a count ``n >= 1`` (``n <= family.in_dim`` when ``n >= 2``) or an ``(n, d)``
    array of finite inputs; ``input_correlation`` (default 0) is the pairwise correlation of ``n``
    drawn inputs, in ``(-1/(n-1), 1)`` (the range where their Gram is positive definite), and is
    not allowed with an explicit array.
    """
    d = family.in_dim
    if isinstance(inputs, (numbers.Integral, np.integer)) and not isinstance(inputs, bool):
        n = check_int("inputs", inputs, 1)
        rho = 0.0 if input_correlation is None else check_real("input_correlation", input_correlation)
        low = -1.0 / (n - 1) if n > 1 else -math.inf
        if not low < rho < 1.0:
            raise ValueError(f"input_correlation must lie in the open interval ({low:.6g}, 1) for "
                             f"inputs={n} (a positive-definite Gram), got {input_correlation!r}")
        if n == 1:
            return SINGLE_INPUT
        if n > d:
            raise ValueError(f"inputs={n} drawn inputs need inputs <= in_dim = {d} (their Gram has "
                             f"rank {n}); use family.replace(in_dim=...) or give an (n, {d}) array")
        return InputBatch(n, rho)
    if isinstance(inputs, (bool, str, bytes)) or inputs is None:
        raise TypeError(f"inputs must be a count or an (n, {d}) array, got {inputs!r}")
    try:
        X = np.array(inputs, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"inputs must be a count or an (n, {d}) array, got {inputs!r}") from None
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] != d:
        raise ValueError(f"inputs must be an (n, {d}) array (in_dim = {d}), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"inputs must be finite, got non-finite entries at rows "
                         f"{np.flatnonzero(~np.isfinite(X).all(axis=1)).tolist()}")
    if input_correlation is not None:
        raise ValueError(f"input_correlation applies to a count of inputs; an explicit inputs "
                         f"array has its own correlations (got input_correlation={input_correlation!r})")
    X.flags.writeable = False
    return InputBatch(X.shape[0], X=X)


SINGLE_INPUT = InputBatch()


def rescale_pow2(v: np.ndarray) -> np.ndarray:
    """Divide ``v`` in place by the power of two nearest above its max-abs (exact: signs and
    ratios are unchanged) and return it."""
    amax = np.abs(v).max() if v.size else 0.0
    if amax > 0:
        v *= 2.0 ** -math.frexp(amax)[1]
    return v


def _support(phi, F: np.ndarray):
    """Columns where ``phi`` of some row of ``F`` can be non-zero (None: all of them)."""
    return phi.support(F.max(axis=0)) if phi.has_masks else None


def forward(family, weights: Weights, x: np.ndarray, rnd=None, rescale=False, stop=None) -> np.ndarray:
    """Features ``f_1 .. f_stop`` (default ``stop = L-1``): ``(stop, m)`` for one input ``x`` of
    shape ``(d,)``, ``(stop, n, m)`` for the rows of ``x`` of shape ``(n, d)``.

    ``rescale=True`` divides each ``f_l`` by a power of two near its max-abs before the next layer:
    every layer is positively 1-homogeneous, so the signs (the ReLU masks) are unchanged while an
    exploding or vanishing network stays within float64. ``rnd`` rounds each layer (float32 mode).
    """
    L, m = family.depth, family.width
    stop = L - 1 if stop is None else stop
    a, beta, phi = family.skip, family.branch_scale, family.phi
    X = np.atleast_2d(x)
    f = np.empty((stop, X.shape[0], m))
    f[0] = weights.matvecs(1, X)
    for l in range(2, stop + 2):
        prev = f[l - 2]
        if rnd is not None:
            prev[:] = rnd(prev)
        if rescale:
            rescale_pow2(prev)
        if l == stop + 1:
            break
        S = _support(phi, prev)  # phi(f) vanishes elsewhere for every input
        G = phi.phi(prev)
        h = weights.matvecs(l, G if S is None else G[:, S], cols=S)
        f[l - 1] = a * prev + beta * h if a else beta * h
    return f[:, 0] if np.ndim(x) == 1 else f


def exact_masks(family, f: np.ndarray) -> np.ndarray:
    """``phi'(f_l)`` for every feature."""
    return family.phi.phi_prime(f)


def free_masks(family, key: int) -> np.ndarray:
    """Lemma A.1's masks: independent Bernoulli(p) diagonals, ``p`` the activation's mask
    probability (ones when ``phi'`` never vanishes)."""
    L, m = family.depth, family.width
    p = family.phi.mask_probability
    if p == 1:
        return np.ones((L - 1, m))
    # 1 with probability p: the top of the uint64 range (p = 1/2: the top bit)
    threshold = np.uint64(int((1 - Fraction(p)) * 2**64))
    return np.stack([(rng.uniform_bits(seeds.stream_key(key, seeds.MASK, l), m) >= threshold)
                     .astype(np.float64) for l in range(1, L)])


def free_batch_masks(family, key: int, corr: np.ndarray) -> np.ndarray:
    """The free model's masks of a batch, ``(L-1, n, m)``: for each layer and unit, the signs of a
    Gaussian vector over the inputs with correlation ``corr[l-1]`` (the width-limit law of
    ``phi'(f_l)`` across the inputs: ``P(both on) = 1/4 + arcsin(rho)/(2 pi)`` for ReLU), drawn
    from the draw's MASK stream of layer ``l`` and batch size ``n``; independent across units
    and layers, as Lemma A.1's diagonals. Ones when ``phi'`` never vanishes."""
    L, m = family.depth, family.width
    n = corr.shape[-1]
    if not family.phi.has_masks:
        return np.ones((L - 1, n, m))
    if family.phi.mask_probability != Fraction(1, 2):  # pragma: no cover - ReLU is the only one
        raise NotImplementedError("the free model of a batch draws sign masks (probability 1/2)")
    out = np.empty((L - 1, n, m))
    for l in range(1, L):
        # the symmetric square root: it tolerates repeated inputs, and unlike V sqrt(w) it does not
        # depend on the basis eigh picks in a degenerate eigenspace (an exchangeable batch), so a
        # round-off change of corr changes no mask but at near-ties
        w, V = np.linalg.eigh(corr[l - 1])
        root = (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T
        Z = np.empty((n, m))
        rng.fill_normal(seeds.stream_key(key, seeds.MASK, l, n), Z)
        out[l - 1] = (root @ Z) > 0
    return out


def _check_finite(arr, what, family):
    if not np.isfinite(arr).all():
        raise FloatingPointError(
            f"the {what} of {family.label} left float64's range (|x| > 1e308 or NaN): the network "
            f"explodes or vanishes at init (stds {family.stds[1]:.3g} hidden, gain per layer far from "
            "1). Use smaller init scales or depth; sample_jacobian works on the log scale.")


def _grams(V: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Gram matrices ``V V^T`` over the last two axes of ``V`` (``(..., n, m)``) with the diagonal
    ``sq`` (``(..., n)``, the rows' squared norms as the single-input passes sum them), so that
    one input gives the single-input numbers bit for bit."""
    G = V @ np.swapaxes(V, -1, -2)
    i = np.arange(V.shape[-2])
    G[..., i, i] = sq
    return G


def _mix(C: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``C_p B_p`` for every probe: ``C`` is ``(P, n, n)``, ``B`` and the result ``(P, n, m)``
    (one input: the plain product ``c b``)."""
    if C.shape[-1] == 1:
        return C[:, :, :1] * B
    return C @ B


def run_passes(family, key: int, mode: str = "exact", probes: int = 1, dtype=np.float64,
               weights: Weights | None = None, tangent: bool = True,
               inputs: InputBatch = SINGLE_INPUT) -> Passes:
    """Forward (exact), backward and tangent passes of the draw keyed by ``key`` on ``inputs``.

    ``tangent=False`` skips the tangent pass (``fdot`` is then None): the dense BFK needs only
    the masks, the backward vectors and the kernel weights. The ``P`` probes (free mode) times
    ``n`` inputs travel as ``P n`` rows, probe-major, through each generated weight block."""
    if inputs.count == 1:
        return _run_passes(family, key, mode, probes, dtype, weights, tangent, inputs)
    # A batch adds small GEMMs (Grams, C_l B_l) between numba's kernels: on a woken OpenBLAS pool
    # they ran 10-50x slower than on one thread, and the batch as a whole 2-4x (DESIGN.md).
    with one_blas_thread():
        return _run_passes(family, key, mode, probes, dtype, weights, tangent, inputs)


def _run_passes(family, key, mode, probes, dtype, weights, tangent, inputs):
    L, m, k = family.depth, family.width, family.out_dim
    a, beta = family.skip, family.branch_scale
    phi, psi = family.phi, family.psi
    W = weights if weights is not None else Weights(family, key)
    rnd = lambda arr: arr.astype(dtype).astype(np.float64) if dtype != np.float64 else arr  # noqa: E731

    X = inputs.matrix(family, key)
    n = X.shape[0]
    if mode == "exact":
        f = forward(family, W, X, rnd)
        _check_finite(f, "forward pass", family)
        masks = exact_masks(family, f)
        # b_L = 1/(n k) for every input: W_L^T b_L is one vector, masked per input below
        b_top = W.rmatvecs(L, np.full((1, k), 1.0 / (n * k)))
        if family.output_multiplier != 1.0:  # f_L = alpha W_L psi(f_{L-1})
            b_top *= family.output_multiplier
    else:
        # the free model's kernel weights and mask law are width limits: theory's, one home
        from .theory.batch import batch_limits
        from .theory.signal import mean_field

        f = None
        single = n == 1 and inputs.X is None  # the family's own input, of norm sqrt(d)
        if single:
            masks = free_masks(family, key)[:, None]
            mf = mean_field(family)
            kernel_weights = mf.kernel_weights[:, None, None]
        else:
            mf = batch_limits(family, X @ X.T)
            masks = free_batch_masks(family, key, mf.corr)
            kernel_weights = mf.kernel_weights
        # one probe W_L^T b_L for every input (b_L^i . b_L^j = 1/(n^2 k)), masked per input below
        scale = family.stds[-1] * math.sqrt(mf.backward_sq[-1] if single else 1.0 / (n * n * k))
        if family.output_multiplier != 1.0:  # f_L = alpha W_L psi(f_{L-1})
            scale *= family.output_multiplier
        b_top = _normals(key, seeds.PROBE, (probes, m)) * scale
    P = b_top.shape[0]
    R = P * n  # rows: probe-major, row p n + i is probe p on input i
    rows = lambda M: np.broadcast_to(M, (P, n, m)).reshape(R, m)  # noqa: E731
    readout_mask = 1.0 if psi.is_identity else masks[-1]

    b = np.empty((L - 1, R, m))
    b[L - 2] = rnd(rows(readout_mask * b_top[:, None]))
    support = [_support(phi, mk) for mk in masks]  # of f_1 .. f_{L-1}, for some input
    for l in range(L - 1, 1, -1):  # b_{l-1} from b_l through W_l: D_{l-1} W_l^T b_l
        S = support[l - 2]
        if S is None:
            back = beta * W.rmatvecs(l, b[l - 1])
        else:
            back = np.zeros((R, m))
            back[:, S] = beta * W.rmatvecs(l, b[l - 1], cols=S) * rows(masks[l - 2])[:, S]
        b[l - 2] = rnd(a * b[l - 1] + back if a else back)
    _check_finite(b, "backward pass", family)
    betas = family.branch_scales
    with np.errstate(over="ignore", invalid="ignore"):  # squares may overflow: checked below
        b_sq = np.einsum("lpm,lpm->pl", b, b)  # (R, L-1)
        GB = _grams(b.reshape(L - 1, P, n, m), b_sq.reshape(P, n, L - 1).transpose(2, 0, 1))
        GB = GB.transpose(1, 0, 2, 3)  # (P, L-1, n, n): b_l^i . b_l^j per probe
        if mode == "exact":
            g = np.array(phi.phi(f))  # a copy: the readout row is replaced
            g[-1] = psi.phi(f[-1])
            # G_{l-1} G_{l-1}^T of phi(f_{l-1}) feeding W_l: the inputs for l = 1, the readout
            # for l = L
            g_sq = np.stack([np.einsum("lm,lm->l", g[:, i], g[:, i]) for i in range(n)], axis=1)
            x_sq = np.array([[x @ x for x in X]])
            GG = np.concatenate([_grams(X[None], x_sq),
                                 _grams(g, g_sq)])  # (L, n, n)
            GB_top = np.full((1, n, n), 1.0 / (n * n * k))  # b_L^i . b_L^j
            grad_sq = ((betas**2)[:, None, None] * np.concatenate([GB[0], GB_top]) * GG)
            grad_sq = grad_sq.sum(axis=(1, 2))[None]
    if mode == "exact":
        _check_finite(grad_sq, "gradient norms", family)
        lr = family.rates(grad_sq)
        C = (lr * betas**2)[:, :, None, None] * GG[None]
    else:
        C = np.broadcast_to(kernel_weights[None], (P, L, n, n)).copy()
        lr = np.broadcast_to(mf.lr, (P, L)).copy()
        grad_sq = np.broadcast_to(mf.grad_sq, (P, L)).copy()

    loss_decay = np.cumsum((C[:, : L - 1] * GB).sum(axis=(2, 3)), axis=1)
    _check_finite(loss_decay, "loss decay", family)
    shape = (L - 1, P, n, m)
    if not tangent:
        return Passes(X, f, masks, b.reshape(shape), None, grad_sq, lr, C, loss_decay)
    kick = lambda l: _mix(C[:, l - 1], b[l - 1].reshape(P, n, m)).reshape(R, m)  # noqa: E731
    fdot = np.empty((L - 1, R, m))
    fdot[0] = rnd(-kick(1))
    for l in range(2, L):
        prev = fdot[l - 2]
        step = -kick(l)
        if np.any(prev):
            S = support[l - 2]
            arg = prev if S is None else (prev * rows(masks[l - 2]))[:, S]
            step = step + beta * W.matvecs(l, arg, cols=S)
            if a:
                step = step + a * prev
        fdot[l - 1] = rnd(step)
    _check_finite(fdot, "tangent pass", family)
    return Passes(X, f, masks, b.reshape(shape), fdot.reshape(shape), grad_sq, lr, C, loss_decay)
