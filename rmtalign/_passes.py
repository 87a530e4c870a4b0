"""The three passes of one draw: forward (features), backward (``b_v``) and tangent (``fdot_v``).

Exact mode runs the real network: ``f_1 = W_1 x``, ``f_l = a f_{l-1} + beta W_l phi(f_{l-1})``,
the backward pass of the linear loss ``mean(f_L)`` (through the output multiplier), one GD step
with the family's learning rates (its rule, or its explicit rates)
and the feature velocity by forward mode. Free mode is the random-matrix model of Lemma A.1:
masks are independent Bernoulli draws, the kernel weights their width limits, and the backward
pass starts from Gaussian probes. Every pass touches only the columns of ``W_l`` that the mask
of ``f_{l-1}`` keeps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import seeds
from ._kernels import rng
from ._weights import Weights


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
    rng.fill_normal(seeds.stream_key(key, kind), out)
    return out


def network_input(family, key: int) -> np.ndarray:
    """The input ``x`` of the draw keyed by ``key`` (its direction follows the key when
    ``input="random"``)."""
    return family.input_vector(lambda d: _normals(key, seeds.INPUT, (1, d))[0])


def rescale_pow2(v: np.ndarray) -> np.ndarray:
    """Divide ``v`` in place by the power of two nearest above its max-abs (exact: signs and
    ratios are unchanged) and return it."""
    amax = np.abs(v).max() if v.size else 0.0
    if amax > 0:
        v *= 2.0 ** -math.frexp(amax)[1]
    return v


def forward(family, weights: Weights, x: np.ndarray, rnd=None, rescale=False, stop=None) -> np.ndarray:
    """Features ``f_1 .. f_stop`` (default ``stop = L-1``) as a ``(stop, m)`` array.

    ``rescale=True`` divides each ``f_l`` by a power of two near its max-abs before the next layer:
    every layer is positively 1-homogeneous, so the signs (the ReLU masks) are unchanged while an
    exploding or vanishing network stays within float64. ``rnd`` rounds each layer (float32 mode).
    """
    L, m = family.depth, family.width
    stop = L - 1 if stop is None else stop
    a, beta, phi = family.skip, family.branch_scale, family.phi
    f = np.empty((stop, m))
    f[0] = weights.matvecs(1, x[None])[0]
    for l in range(2, stop + 2):
        prev = f[l - 2]
        if rnd is not None:
            prev[:] = rnd(prev)
        if rescale:
            rescale_pow2(prev)
        if l == stop + 1:
            break
        S = phi.support(prev)  # phi(f) vanishes elsewhere
        h = weights.matvecs(l, (prev if S is None else prev[S])[None], cols=S)[0]
        f[l - 1] = a * prev + beta * h if a else beta * h
    return f


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
    phi, psi = family.phi, family.psi
    W = weights if weights is not None else Weights(family, key)
    rnd = lambda arr: arr.astype(dtype).astype(np.float64) if dtype != np.float64 else arr  # noqa: E731

    x = network_input(family, key)
    if mode == "exact":
        f = forward(family, W, x, rnd)
        _check_finite(f, "forward pass", family)
        masks = exact_masks(family, f)
        b_top = W.rmatvecs(L, np.full((1, family.out_dim), 1.0 / family.out_dim))
        if family.output_multiplier != 1.0:  # f_L = alpha W_L psi(f_{L-1})
            b_top *= family.output_multiplier
    else:
        from .theory.signal import mean_field  # the free model's kernel weights are width limits

        f = None
        masks = free_masks(family, key)
        mf = mean_field(family)
        scale = family.stds[-1] * math.sqrt(mf.backward_sq[-1])
        if family.output_multiplier != 1.0:  # f_L = alpha W_L psi(f_{L-1})
            scale *= family.output_multiplier
        b_top = _normals(key, seeds.PROBE, (probes, m)) * scale
    readout_mask = 1.0 if psi.is_identity else masks[-1]

    P = b_top.shape[0]
    b = np.empty((L - 1, P, m))
    b[L - 2] = rnd(readout_mask * b_top)
    support = [np.flatnonzero(mk) if phi.has_masks else None for mk in masks]  # of f_1 .. f_{L-1}
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
            g = np.array(phi.phi(f))  # a copy: the readout row is replaced
            g[-1] = psi.phi(f[-1])
            # |phi(f_{l-1})|^2 feeding W_l: the input for l = 1, the readout for l = L
            g_sq = np.concatenate([[x @ x], np.einsum("lm,lm->l", g, g)])
            grad_sq = (betas**2 * np.append(b_sq[0], 1.0 / family.out_dim) * g_sq)[None]
    if mode == "exact":
        _check_finite(grad_sq, "gradient norms", family)
        lr = family.rates(grad_sq)
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
