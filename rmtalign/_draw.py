"""One random draw of a family: seeds, keys, weights as operators, and the three passes.

This is where families meet kernels. A draw is keyed by ``(seed, sample index)``; every random
object in it (weights of layer l, masks of layer l, probes, input) has its own child key, so any
part can be regenerated on demand and results never depend on thread counts or batching.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._kernels import matfree, rng
from .theory.signal import learning_rates, mean_field

# Stream kinds within a sample key.
_WEIGHT, _MASK, _PROBE, _INPUT = 1, 2, 3, 4

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of dense weights a draw may keep (orthogonal only)


def resolve_seed(seed) -> tuple[np.random.SeedSequence, int]:
    """``(SeedSequence, 64-bit base key)`` from an int, a SeedSequence or None."""
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer, a SeedSequence or None; got {seed!r}")
        ss = np.random.SeedSequence(None if seed is None else int(seed))
    else:
        raise TypeError(f"seed must be an int, a numpy.random.SeedSequence or None; got {seed!r}")
    return ss, int(ss.generate_state(1, np.uint64)[0])


def resolve_samples(samples) -> np.ndarray:
    """Sample indices from a count ``n`` (``0..n-1``) or an explicit sequence of indices."""
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples!r}")
        return np.arange(int(samples))
    try:
        idx = np.asarray(list(samples))
    except TypeError:
        raise TypeError(f"samples must be a count or a sequence of sample indices; got {samples!r}") from None
    if idx.size == 0 or idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise ValueError(f"samples must be a non-empty sequence of non-negative integers; got {samples!r}")
    return idx.astype(np.int64)


def check_mode(mode):
    if mode not in ("exact", "free"):
        raise ValueError(f"mode must be 'exact' or 'free', got {mode!r}")
    return mode


class Weights:
    """``W_1 .. W_L`` of one draw as linear operators (layers are 1-based).

    Gaussian weights are regenerated from their streams by every product, unless ``keep_blocks``:
    then the first column block ``W_l[:, cols]`` each layer is asked for is generated once and
    kept (read-only) for the later products with the same columns, while the kept blocks fit
    ``memory_budget``; the dense kernel recursion reuses the forward pass's blocks this way.
    Orthogonal (Haar) weights need a QR factorisation, so they are kept while they fit.
    """

    def __init__(self, family, key: int, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 keep_blocks: bool = False):
        self.family = family
        self.shapes = family.shapes
        self.stds = family.stds
        self.keys = [np.uint64(rng.derive_key(key, _WEIGHT, l)) for l in range(1, family.depth + 1)]
        self.orthogonal = family.weights == "orthogonal"
        total = sum(r * c for r, c in self.shapes) * 8
        self._keep = self.orthogonal and total <= memory_budget
        self._cache = {}
        self._room = memory_budget if keep_blocks and not self.orthogonal else 0
        self._blocks = {}  # l -> (column indices, read-only W_l[:, cols])

    def dense(self, l: int, rows=None, cols=None) -> np.ndarray:
        """The dense matrix ``W_l``, or its block ``W_l[rows][:, cols]`` (Gaussian weights generate
        only that block). Read-only when it is a kept block: multiply out of place."""
        if l not in self._cache and not self.orthogonal:
            kept = self._kept_block(l, cols) if rows is None else None
            return kept if kept is not None else self._generate(l, rows, cols)
        W = self._cache[l] if l in self._cache else self._haar(l)
        if rows is not None:
            W = W[rows]
        return W if cols is None else W[:, cols]

    def _generate(self, l, rows, cols):
        n_rows, n_cols = self.shapes[l - 1]
        W = np.empty((n_rows if rows is None else len(rows), n_cols if cols is None else len(cols)))
        rng.fill_normal(self.keys[l - 1], W, rows, cols)
        W *= self.stds[l - 1]
        return W

    def _kept_block(self, l, cols):
        """``W_l[:, cols]`` if it is, or can now be, kept; None otherwise."""
        if not (self._room or self._blocks):
            return None
        n_rows, n_cols = self.shapes[l - 1]
        idx = rng.index_array(cols, n_cols)  # all columns: None and arange(n) are the same block
        hit = self._blocks.get(l)
        if hit is not None:
            return hit[1] if np.array_equal(hit[0], idx) else None
        size = n_rows * idx.size * 8
        if size > self._room:
            return None
        self._room -= size
        W = self._generate(l, None, idx)
        W.flags.writeable = False
        self._blocks[l] = (idx, W)
        return W

    def _haar(self, l: int) -> np.ndarray:
        n_rows, cols = self.shapes[l - 1]
        tall = n_rows >= cols
        G = np.empty((n_rows, cols) if tall else (cols, n_rows))
        rng.fill_normal(self.keys[l - 1], G)
        Q, R = np.linalg.qr(G)
        Q *= np.sign(np.diag(R))  # Haar, not just orthogonal (Mezzadri 2007)
        W = Q if tall else Q.T
        W *= self.stds[l - 1] * math.sqrt(max(n_rows, cols))
        if self._keep:
            self._cache[l] = W
        return W

    def matvecs(self, l: int, V: np.ndarray, cols=None) -> np.ndarray:
        """Rows of ``V @ W_l[:, cols].T`` (``V`` is ``P x len(cols)``; ``cols`` default all)."""
        rows, n_cols = self.shapes[l - 1]
        kept = self._kept_block(l, cols)
        if kept is not None:
            return V @ kept.T
        if self.orthogonal:
            return V @ self.dense(l, cols=cols).T
        out = np.empty((V.shape[0], rows))
        matfree.gauss_matvecs(self.keys[l - 1], rows, rng.index_array(cols, n_cols), self.stds[l - 1],
                              np.ascontiguousarray(V), out)
        return out

    def rmatvecs(self, l: int, U: np.ndarray, cols=None) -> np.ndarray:
        """Rows of ``U @ W_l[:, cols]`` (``U`` is ``P x rows``; ``cols`` default all)."""
        rows, n_cols = self.shapes[l - 1]
        kept = self._kept_block(l, cols)
        if kept is not None:
            return U @ kept
        if self.orthogonal:
            return U @ self.dense(l, cols=cols)
        cols = rng.index_array(cols, n_cols)
        out = np.empty((U.shape[0], cols.size))
        matfree.gauss_rmatvecs(self.keys[l - 1], cols, self.stds[l - 1], np.ascontiguousarray(U), out)
        return out


def _phi(activation, f):
    return np.maximum(f, 0.0) if activation == "relu" else f


@dataclass
class Passes:
    """Forward, backward and tangent pass of one draw (arrays over layers; index 0 = layer 1).

    ``b``/``fdot`` are ``(L-1, P, m)`` for ``P`` probes (``P = 1`` in exact mode); ``f`` is
    ``(L-1, m)`` (exact mode only); ``masks`` is ``(L-1, m)`` (``phi'(f_l)``, or Bernoulli draws).
    """

    x: np.ndarray
    f: np.ndarray | None
    masks: np.ndarray
    b: np.ndarray
    fdot: np.ndarray | None  # None when the tangent pass is skipped
    grad_sq: np.ndarray     # (P, L)
    lr: np.ndarray          # (P, L)
    weights_c: np.ndarray   # (P, L) BFK weights c_l
    loss_decay: np.ndarray  # (P, L-1) upstream contribution sum_{l<=v} c_l |b_l|^2


def _normals(key: int, kind: int, shape) -> np.ndarray:
    out = np.empty(shape)
    rng.fill_normal(np.uint64(rng.derive_key(key, kind)), out)
    return out


def draw_input(key: int, d: int) -> np.ndarray:
    """The Gaussian direction of a ``input="random"`` family's input for draw ``key``."""
    return _normals(key, _INPUT, (1, d))[0]


def rescale_pow2(v: np.ndarray) -> np.ndarray:
    """Divide ``v`` in place by the power of two nearest above its max-abs (exact: signs and
    ratios are unchanged) and return it."""
    amax = np.abs(v).max() if v.size else 0.0
    if amax > 0:
        v *= 2.0 ** -math.frexp(amax)[1]
    return v


def forward(family, weights: Weights, x: np.ndarray, rnd=None, rescale=False) -> np.ndarray:
    """Features ``f_1 .. f_{L-1}`` as an ``(L-1, m)`` array.

    ``rescale=True`` divides each ``f_l`` by a power of two near its max-abs before the next layer:
    every layer is positively 1-homogeneous, so the signs (the ReLU masks) are unchanged while an
    exploding or vanishing network stays within float64. ``rnd`` rounds each layer (float32 mode).
    """
    L, m = family.depth, family.width
    a, beta, act = family.skip, family.branch_scale, family.activation
    f = np.empty((L - 1, m))
    f[0] = weights.matvecs(1, x[None])[0]
    for l in range(2, L + 1):
        prev = f[l - 2]
        if rnd is not None:
            prev[:] = rnd(prev)
        if rescale:
            rescale_pow2(prev)
        if l == L:
            break
        S = np.flatnonzero(prev > 0) if act == "relu" else None  # phi(f) vanishes elsewhere
        h = weights.matvecs(l, (prev if S is None else prev[S])[None], cols=S)[0]
        f[l - 1] = a * prev + beta * h if a else beta * h
    return f


def exact_masks(family, f: np.ndarray) -> np.ndarray:
    """``phi'(f_l)`` for every feature (ReLU: 1 where ``f > 0``; linear: 1)."""
    return (f > 0).astype(np.float64) if family.activation == "relu" else np.ones_like(f)


def free_masks(family, key: int) -> np.ndarray:
    """Lemma A.1's masks: independent Bernoulli(1/2) diagonals (ReLU), or ones (linear)."""
    L, m = family.depth, family.width
    if family.activation != "relu":
        return np.ones((L - 1, m))
    return np.stack([(rng.uniform_bits(rng.derive_key(key, _MASK, l), m) >> np.uint64(63))
                     .astype(np.float64) for l in range(1, L)])


def _check_finite(arr, what, family):
    if not np.isfinite(arr).all():
        raise FloatingPointError(
            f"the {what} of {family.label} left float64's range (|x| > 1e308 or NaN): the network "
            f"explodes or vanishes at init (stds {family.stds[1]:.3g} hidden, gain per layer far from "
            "1). Use smaller init scales or depth; sample_jacobian works on the log scale.")


def run_passes(family, key: int, mode: str = "exact", probes: int = 1, dtype=np.float64,
               weights: Weights | None = None, tangent: bool = True) -> Passes:
    """Forward (exact), backward and tangent passes of the draw keyed by ``key``.

    ``tangent=False`` skips the tangent pass (``fdot`` is then None): the dense BFK needs only
    the masks, the backward vectors and the kernel weights."""
    L, m = family.depth, family.width
    a, beta = family.skip, family.branch_scale
    act = family.activation
    W = weights if weights is not None else Weights(family, key)
    rnd = lambda arr: arr.astype(dtype).astype(np.float64) if dtype != np.float64 else arr  # noqa: E731

    x = family.input_vector(lambda d: draw_input(key, d))
    if mode == "exact":
        f = forward(family, W, x, rnd)
        _check_finite(f, "forward pass", family)
        masks = exact_masks(family, f)
        b_top = W.rmatvecs(L, np.full((1, family.out_dim), 1.0 / family.out_dim))
    else:
        f = None
        masks = free_masks(family, key)
        mf = mean_field(family)
        b_top = _normals(key, _PROBE, (probes, m)) * (family.stds[-1] * math.sqrt(mf.backward_sq[-1]))
    readout_mask = masks[-1] if family.readout == "relu" else 1.0

    P = b_top.shape[0]
    b = np.empty((L - 1, P, m))
    b[L - 2] = rnd(readout_mask * b_top)
    support = [np.flatnonzero(mk) if act == "relu" else None for mk in masks]  # of f_1 .. f_{L-1}
    for l in range(L - 1, 1, -1):  # b_{l-1} from b_l through W_l: D_{l-1} W_l^T b_l
        S = support[l - 2]
        if S is None:
            back = beta * W.rmatvecs(l, b[l - 1])
        else:
            back = np.zeros((P, m))
            back[:, S] = beta * W.rmatvecs(l, b[l - 1], cols=S)
        b[l - 2] = rnd(a * b[l - 1] + back if a else back)
    _check_finite(b, "backward pass", family)
    betas = family.branch_scales
    with np.errstate(over="ignore", invalid="ignore"):  # squares may overflow: checked below
        b_sq = np.einsum("lpm,lpm->pl", b, b)
        if mode == "exact":
            g = np.array(_phi(act, f))  # a copy: the readout row is replaced
            g[-1] = _phi(family.readout, f[-1])
            # |phi(f_{l-1})|^2 feeding W_l: the input for l = 1, the readout for l = L
            g_sq = np.concatenate([[x @ x], np.einsum("lm,lm->l", g, g)])
            grad_sq = (betas**2 * np.append(b_sq[0], 1.0 / family.out_dim) * g_sq)[None]
    if mode == "exact":
        _check_finite(grad_sq, "gradient norms", family)
        lr = learning_rates(grad_sq, family.trained_mask, family.lr)
        c = lr * betas**2 * g_sq
    else:
        c = np.broadcast_to(mf.kernel_weights, (P, L)).copy()
        lr = np.broadcast_to(mf.lr, (P, L)).copy()
        grad_sq = np.broadcast_to(mf.grad_sq, (P, L)).copy()

    loss_decay = np.cumsum(c[:, : L - 1] * b_sq, axis=1)
    _check_finite(loss_decay, "loss decay", family)
    if not tangent:
        return Passes(x, f, masks, b, None, grad_sq, lr, c, loss_decay)
    fdot = np.empty((L - 1, P, m))
    fdot[0] = rnd(-c[:, :1] * b[0])
    for l in range(2, L):
        prev = fdot[l - 2]
        step = -c[:, l - 1:l] * b[l - 1]
        if np.any(prev):
            S = support[l - 2]
            step = step + beta * W.matvecs(l, prev if S is None else prev[:, S], cols=S)
            if a:
                step = step + a * prev
        fdot[l - 1] = rnd(step)
    _check_finite(fdot, "tangent pass", family)
    return Passes(x, f, masks, b, fdot, grad_sq, lr, c, loss_decay)


def layer_jacobian(family, weights: Weights, masks: np.ndarray, l: int) -> np.ndarray:
    """Dense ``A_l = df_l/df_{l-1} = a I + beta W_l diag(mask_{l-1})`` for ``l = 2 .. L-1``."""
    A = weights.dense(l) * (family.branch_scale * masks[l - 2])[None, :]  # a copy: dense() may cache
    if family.skip:
        A[np.diag_indices_from(A)] += family.skip
    return A


def bfk_step(family, weights: Weights, masks: np.ndarray, K: np.ndarray, l: int) -> np.ndarray:
    """``A_l K A_l^T`` for ``A_l = a I + beta W_l D_{l-1}``, using only the active columns of ``W_l``.

    With ``S`` the active set of the mask and ``T = beta W_S K_{S,:}``::

        A K A^T = beta^2 W_S K_SS W_S^T + a (T + T^T) + a^2 K

    which is ``4 m^2 |S|`` flops (``1.5 m^3`` for an MLP, where only ``T_{:,S}`` is needed) instead
    of the ``4 m^3`` of two dense GEMMs: ReLU masks keep about half the columns.
    """
    a, beta = family.skip, family.branch_scale
    S = np.flatnonzero(masks[l - 2])
    Ws = weights.dense(l, cols=S)  # may be a kept, read-only block: beta goes elsewhere
    if not a:
        K_SS = K.take(S, axis=0).take(S, axis=1)  # twice as fast as K[np.ix_(S, S)]
        K_SS *= beta * beta
        return (Ws @ K_SS) @ Ws.T
    T = Ws @ K[S, :]
    T *= beta
    out = T[:, S] @ Ws.T
    out *= beta
    out += a * (T + T.T)
    out += (a * a) * K
    return out
