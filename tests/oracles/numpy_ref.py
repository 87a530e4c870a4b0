"""Plain numpy reference implementation: the test oracle and the benchmark's numpy peer.

Everything here is written the obvious way, with stored dense weights and no numba, so that it can
be read against the paper line by line. It is deliberately *not* fast: the samplers in
:mod:`rmtalign.sampling` are checked against it on tiny inputs, and ``scripts/bench.py`` times it as
the "straightforward numpy" peer.

Conventions (identical to the samplers). Weights ``W_1 (m x d)``, ``W_2 .. W_{L-1} (m x m)``,
``W_L (k x m)`` are passed as a list of dense float64 arrays, entry std already applied. With
``a = family.skip``, ``beta = family.branch_scale``, ``phi = family.activation`` and
``psi = family.readout``::

    f_1 = W_1 x
    f_l = a f_{l-1} + beta W_l phi(f_{l-1})          l = 2 .. L-1
    f_L = W_L psi(f_{L-1})

The loss is ``mean(f_L)`` so ``b_L = 1/k``. Python lists are 0-based: ``weights[l - 1]`` is ``W_l``
and ``f[v - 1]`` is ``f_v``; every returned per-layer array is over ``v = 1 .. L-1`` unless said
otherwise (``lr`` and ``grad_sq`` are over ``l = 1 .. L``).
"""
from __future__ import annotations

import math

import numpy as np

from rmtalign.rules import learning_rates

__all__ = [
    "forward",
    "backward",
    "bfa_exact",
    "bfk_termwise",
    "jacobian_product",
    "layer_jacobian",
    "gaussian_weights",
    "haar_weights",
    "draw_weights",
]


# -- activations (written here, not read from rmtalign.rules: an oracle stays independent) --------
def _act(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    return z


def _act_deriv(name, z):
    # ReLU derivative is taken as 0 at exactly 0 (the autodiff convention torch also uses).
    if name == "relu":
        return (z > 0.0).astype(np.float64)
    return np.ones_like(z)


# -- weights -------------------------------------------------------------------------------------
def gaussian_weights(family, rng):
    """Draw iid Gaussian weights ``W_1 .. W_L`` the plain numpy way.

    Parameters
    ----------
    family : rmtalign.families.Family
    rng : numpy.random.Generator or int or None
        Source of ``standard_normal`` draws (an int or None seeds ``default_rng``).

    Returns
    -------
    list of ndarray
        ``W_l`` of shape ``family.shapes[l - 1]``, entries ``N(0, family.stds[l - 1]**2)``.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    out = []
    for (rows, cols), std in zip(family.shapes, family.stds):
        w = rng.standard_normal((rows, cols))
        w *= std  # in place: at bench sizes a temporary copy of every layer would double the peak
        out.append(w)
    return out


def _haar(rows, cols, rng):
    """A Haar-distributed (semi-)orthogonal ``rows x cols`` matrix: orthonormal columns when
    ``rows >= cols``, orthonormal rows otherwise."""
    n, p = max(rows, cols), min(rows, cols)
    q, r = np.linalg.qr(rng.standard_normal((n, p)))
    # QR alone is not Haar: fix the signs so that diag(R) > 0 (Mezzadri 2007).
    q *= np.sign(np.diag(r))
    return q if rows >= cols else q.T


def haar_weights(family, rng):
    """Draw Haar (semi-)orthogonal weights, scaled so entries have second moment ``std**2``.

    ``W_l = std_l * sqrt(max(rows, cols)) * Q`` with ``Q`` Haar with orthonormal rows or columns.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    return [
        std * math.sqrt(max(rows, cols)) * _haar(rows, cols, rng)
        for (rows, cols), std in zip(family.shapes, family.stds)
    ]


def draw_weights(family, rng):
    """Weights following ``family.weights`` (``"gaussian"`` or ``"orthogonal"``)."""
    if family.weights == "orthogonal":
        return haar_weights(family, rng)
    return gaussian_weights(family, rng)


def _check_weights(family, weights):
    shapes = family.shapes
    if len(weights) != len(shapes):
        raise ValueError(f"weights must hold {len(shapes)} matrices (depth={family.depth}), got {len(weights)}")
    for l, (w, shape) in enumerate(zip(weights, shapes), start=1):
        if np.shape(w) != shape:
            raise ValueError(f"weights[{l - 1}] (W_{l}) must have shape {shape}, got {np.shape(w)}")


def _input(family, x):
    if x is None:
        return family.input_vector()
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (family.in_dim,):
        raise ValueError(f"x must have shape ({family.in_dim},), got {x.shape}")
    return x


# -- passes --------------------------------------------------------------------------------------
def forward(family, weights, x=None):
    """Forward pass.

    Returns
    -------
    f : list of ndarray
        ``f_1 .. f_L`` (``f[v - 1]`` is ``f_v``; the last entry is the output ``f_L``).
    """
    _check_weights(family, weights)
    x = _input(family, x)
    a, beta, phi, psi = family.skip, family.branch_scale, family.activation, family.readout
    L = family.depth
    f = [weights[0] @ x]
    for l in range(2, L):
        f.append(a * f[-1] + beta * (weights[l - 1] @ _act(phi, f[-1])))
    f.append(weights[L - 1] @ _act(psi, f[-1]))
    return f


def backward(family, weights, f):
    """Backward pass of the linear loss ``mean(f_L)``.

    Returns
    -------
    b : list of ndarray
        ``b_1 .. b_L`` (``b[v - 1]`` is ``b_v = dLoss/df_v``).
    """
    a, beta, phi, psi = family.skip, family.branch_scale, family.activation, family.readout
    L, k = family.depth, family.out_dim
    b = [None] * L
    b[L - 1] = np.full(k, 1.0 / k)
    b[L - 2] = _act_deriv(psi, f[L - 2]) * (weights[L - 1].T @ b[L - 1])
    for l in range(L - 1, 1, -1):  # b_{l-1} from b_l through layer l
        b[l - 2] = a * b[l - 1] + beta * _act_deriv(phi, f[l - 2]) * (weights[l - 1].T @ b[l - 1])
    return b


def _inputs_sq(family, f, x):
    """``|phi(f_{l-1})|^2`` feeding ``W_l``, l = 1..L (``|x|^2`` for l = 1, ``|psi(f_{L-1})|^2`` at L)."""
    L = family.depth
    g = np.empty(L)
    g[0] = x @ x
    for l in range(2, L):
        p = _act(family.activation, f[l - 2])
        g[l - 1] = p @ p
    p = _act(family.readout, f[L - 2])
    g[L - 1] = p @ p
    return g


def per_layer_summary(m, b_norm, fdot_norm, inner, eta, grad_sq):
    """The per-layer BFA quantities from norms and ``-b_v . fdot_v`` (shared by both peers)."""
    L = len(eta)
    loss_decay = np.cumsum(eta * grad_sq)[: L - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(fdot_norm > 0, inner / (b_norm * fdot_norm), np.nan)
        sensitivity = np.where(loss_decay > 0, fdot_norm / math.sqrt(m) / loss_decay, np.nan)
    return {"layers": np.arange(1, L), "cos": cos, "b_norm": b_norm, "fdot_norm": fdot_norm,
            "loss_decay": loss_decay, "sensitivity": sensitivity, "lr": eta, "grad_sq": grad_sq}


def bfa_exact(family, weights, x=None):
    """Exact backward-feature angle of one network: forward, backward, one GD step, tangent pass.

    The tangent pass propagates the first-order feature change caused by ``W_l_dot = -eta_l grad_l``::

        fdot_1 = -eta_1 |x|^2 b_1
        fdot_l = a fdot_{l-1} + beta W_l (phi'(f_{l-1}) * fdot_{l-1}) - eta_l beta^2 |phi(f_{l-1})|^2 b_l

    (``W_l_dot phi(f_{l-1}) = -eta_l beta b_l |phi(f_{l-1})|^2`` because the gradient is rank one.)

    Parameters
    ----------
    family : rmtalign.families.Family
    weights : list of ndarray
        ``W_1 .. W_L`` (see the module docstring).
    x : ndarray, optional
        Input of shape ``(d,)``; default ``family.input_vector()`` (only for ``input="fixed"``).

    Returns
    -------
    dict
        Per layer ``v = 1 .. L-1``: ``layers``, ``cos`` (NaN where ``fdot_v = 0``), ``b_norm``,
        ``fdot_norm``, ``loss_decay`` (``Lambda_v = sum_{l<=v} eta_l Gamma_l``), ``sensitivity``
        (``|fdot_v|_rms / Lambda_v``, NaN where ``Lambda_v = 0``). Per layer ``l = 1 .. L``: ``lr``,
        ``grad_sq`` (``Gamma_l``). Vectors for identity tests: ``f`` (``f_1 .. f_L``), ``b``
        (``b_1 .. b_L``), ``fdot`` (``fdot_1 .. fdot_{L-1}``), and ``x``.
    """
    _check_weights(family, weights)
    x = _input(family, x)
    a, beta, phi = family.skip, family.branch_scale, family.activation
    L, m = family.depth, family.width

    f = forward(family, weights, x)
    b = backward(family, weights, f)
    g_sq = _inputs_sq(family, f, x)
    betas = family.branch_scales
    b_sq = np.array([bl @ bl for bl in b])
    grad_sq = betas**2 * b_sq * g_sq  # |b_l g_{l-1}^T|_F^2 = |b_l|^2 |g_{l-1}|^2
    eta = learning_rates(grad_sq, family.trained_mask, family.lr_rule)

    fdot = [-eta[0] * g_sq[0] * b[0]]
    for l in range(2, L):
        prev = fdot[-1]
        fdot.append(
            a * prev
            + beta * (weights[l - 1] @ (_act_deriv(phi, f[l - 2]) * prev))
            - eta[l - 1] * beta**2 * g_sq[l - 1] * b[l - 1]
        )

    b_norm = np.sqrt(b_sq[: L - 1])
    fdot_norm = np.array([np.linalg.norm(u) for u in fdot])
    inner = np.array([-(bv @ u) for bv, u in zip(b[: L - 1], fdot)])
    return {
        **per_layer_summary(m, b_norm, fdot_norm, inner, eta, grad_sq),
        "f": f,
        "b": b,
        "fdot": fdot,
        "x": x,
    }


# -- Jacobians and the kernel --------------------------------------------------------------------
def layer_jacobian(family, weights, f, l):
    """``A_l = df_l/df_{l-1} = a I + beta W_l diag(phi'(f_{l-1}))`` for ``l = 2 .. L-1`` (dense)."""
    L = family.depth
    if not 2 <= l <= L - 1:
        raise ValueError(f"layer jacobian index l must be in [2, {L - 1}], got {l}")
    a, beta = family.skip, family.branch_scale
    A = beta * weights[l - 1] * _act_deriv(family.activation, f[l - 2])[None, :]  # column scaling
    if a != 0.0:
        A[np.diag_indices_from(A)] += a
    return A


def jacobian_product(family, weights, x=None, start=1, stop=None, *, return_log_scale=False):
    """The layer-to-layer Jacobian ``df_stop/df_start = A_stop ... A_{start+1}``, multiplied out.

    Parameters
    ----------
    start, stop : int
        Feature indices with ``1 <= start <= stop <= L-1`` (default ``stop = L-1``); ``start == stop``
        gives the identity.
    return_log_scale : bool
        If True, renormalise the running product by its Frobenius norm after every factor (so a
        depth-1000 product neither overflows nor underflows) and return ``(J_hat, log_scale)`` with
        ``J = exp(log_scale) * J_hat``.

    Returns
    -------
    ndarray or (ndarray, float)
    """
    L = family.depth
    stop = L - 1 if stop is None else stop
    if not 1 <= start <= stop <= L - 1:
        raise ValueError(f"need 1 <= start <= stop <= {L - 1}, got start={start}, stop={stop}")
    f = forward(family, weights, x)
    J = np.eye(family.width)
    log_scale = 0.0
    for l in range(start + 1, stop + 1):
        J = layer_jacobian(family, weights, f, l) @ J  # left-multiply: A_l (A_{l-1} ... )
        if return_log_scale:
            s = np.linalg.norm(J)
            if s > 0:
                J /= s
                log_scale += math.log(s)
    return (J, log_scale) if return_log_scale else J


def _kernel_weights(family, weights, x):
    """``c_l = eta_l beta_l^2 |phi(f_{l-1})|^2`` (``c_1 = eta_1 |x|^2``), plus the forward pass."""
    res = bfa_exact(family, weights, x)
    g_sq = _inputs_sq(family, res["f"], res["x"])
    return res["lr"] * family.branch_scales**2 * g_sq, res


def bfk_termwise(family, weights, x=None, layers=None):
    """Dense BFK ``K_v`` built the naive way, summing Jacobian products term by term.

    ``K_v = sum_{l <= v} c_l J_{vl} J_{vl}^T`` with ``J_{vl} = df_v/df_l = A_v ... A_{l+1}`` and
    ``c_l = eta_l beta_l^2 |phi(f_{l-1})|^2``. Each ``J_{vl}`` is obtained from ``J_{v,l+1}`` by one
    right multiplication (``J_{vl} = J_{v,l+1} A_{l+1}``), so a kernel costs about ``2v`` GEMMs and no
    work is shared between layers: ``O(v m^3)`` per kernel against the recursion's amortised
    ``O(m^3)`` per layer (DESIGN.md). That gap is the point of the comparison.

    Parameters
    ----------
    layers : sequence of int, optional
        Feature indices ``v`` in ``[1, L-1]``; default all of them.

    Returns
    -------
    dict
        ``layers`` (int array), ``K`` (array ``len(layers) x m x m``), ``kernel_weights`` (``c_l``,
        l = 1..L), and ``bfa`` (the :func:`bfa_exact` result of the same draw).
    """
    L, m = family.depth, family.width
    layers = np.arange(1, L) if layers is None else np.asarray(layers, dtype=int).ravel()
    if layers.size and (layers.min() < 1 or layers.max() > L - 1):
        raise ValueError(f"layers must lie in [1, {L - 1}], got {layers.tolist()}")
    c, res = _kernel_weights(family, weights, x)
    f = res["f"]
    trained = np.flatnonzero(c[: L - 1])
    first = int(trained[0]) + 1 if trained.size else L  # frozen layers below it contribute nothing
    K = np.zeros((layers.size, m, m))
    for i, v in enumerate(layers):
        Kv = K[i]
        J = np.eye(m)  # J_{vv}
        for l in range(v, first - 1, -1):
            if c[l - 1] != 0.0:
                Kv += c[l - 1] * (J @ J.T)
            if l > first:
                J = J @ layer_jacobian(family, weights, f, l)  # J_{v,l-1} = J_{vl} A_l
        K[i] = Kv
    return {"layers": layers, "K": K, "kernel_weights": c, "bfa": res}
