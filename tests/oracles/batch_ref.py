"""Torch reference for a batch of inputs: the exact BFA and BFK of one network on ``n`` inputs.

The independent oracle of the batch samplers (issue 13), written the way a PyTorch user would:
stored dense float64 weights, ``torch.autograd.grad`` for the backward pass and the weight
gradients, ``torch.func.jvp`` of the forward pass in the direction of the GD step for the feature
velocities, and ``torch.func.jacrev`` for the kernel. Nothing exploits the structure of the
gradients (rank ``n``), of the masks, or of the kernel recursion.

Conventions (those of ``numpy_ref``, applied to each input; paper.md §1.1 and §2.1 for several
inputs). ``X`` is ``(n, d)``, one input a row. Features are ``(n, m)`` arrays, one row per input::

    F_1 = X W_1^T,   F_l = a F_{l-1} + beta phi(F_{l-1}) W_l^T,   F_L = alpha psi(F_{L-1}) W_L^T

The loss is the mean of ``F_L`` over its ``n k`` entries (the single-input loss ``mean(f_L)``
averaged over the inputs), so ``b_L = 1/(n k)`` entrywise. The BFA at layer ``v`` is the cosine
between ``-b_v`` and ``fdot_v`` flattened to vectors of ``n m`` entries, row by row (input ``i``,
unit ``j`` is entry ``i m + j``); the BFK ``K_v`` is ``(n m) x (n m)`` in that order. Learning
rates are ``family.rates`` of the batch's squared gradient norms (Eq. 8 for the balanced rule).

torch is imported lazily (inside the functions), so importing this module never requires torch.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["correlated_inputs", "bfa_batch_torch", "bfk_batch_torch"]


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError("tests/oracles/batch_ref.py needs torch (pip install 'torch==2.13.0')") from err
    return torch


def correlated_inputs(n, d, rho, rng=None):
    """``n`` inputs in ``R^d`` with ``|x_i|^2 = d`` and ``x_i . x_j = d rho`` exactly.

    The plain numpy construction: an orthonormal frame ``Q`` (``d x n``, QR of a Gaussian matrix
    from ``rng``) and the Cholesky factor ``C`` of ``R = (1 - rho) I + rho 1 1^T``; then
    ``X = sqrt(d) C Q^T`` has Gram ``d R``. Needs ``n <= d`` and ``-1/(n-1) < rho < 1``.
    """
    if n > d:
        raise ValueError(f"n = {n} inputs with a full-rank Gram need n <= d = {d}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    R = (1.0 - rho) * np.eye(n) + rho * np.ones((n, n))
    Q, _ = np.linalg.qr(rng.standard_normal((d, n)))
    return math.sqrt(d) * np.linalg.cholesky(R) @ Q.T


def _act(torch, name):  # written here, not read from rmtalign.rules: an oracle stays independent
    return torch.relu if name == "relu" else (lambda z: z)


def _forward(torch, family, weights, X):
    """``[F_1, .., F_L]`` (each ``(n, rows)``), differentiable in ``weights``."""
    a, beta = family.skip, family.branch_scale
    phi, psi = _act(torch, family.activation), _act(torch, family.readout)
    L = family.depth
    F = [X @ weights[0].T]
    for l in range(2, L):
        F.append(a * F[-1] + beta * (phi(F[-1]) @ weights[l - 1].T))
    F.append(family.output_multiplier * (psi(F[-1]) @ weights[L - 1].T))
    return F


def _prepare(torch, family, weights, X):
    L = family.depth
    ws = [torch.as_tensor(np.asarray(w, dtype=np.float64)) for w in weights]
    if len(ws) != L:
        raise ValueError(f"weights must hold {L} matrices (depth={L}), got {len(ws)}")
    for l, (w, shape) in enumerate(zip(ws, family.shapes), 1):
        if tuple(w.shape) != tuple(shape):
            raise ValueError(f"W_{l} must have shape {shape}, got {tuple(w.shape)}")
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if X.ndim != 2 or X.shape[1] != family.in_dim:
        raise ValueError(f"X must have shape (n, {family.in_dim}), got {X.shape}")
    return ws, torch.as_tensor(X)


def _gradients(torch, family, ws, X):
    """``(F, b, weight gradients)`` of the batch loss ``mean(F_L)``, by reverse mode."""
    L = family.depth
    params = [w.detach().clone().requires_grad_(True) for w in ws]
    F = _forward(torch, family, params, X)
    grads = torch.autograd.grad(F[-1].mean(), F + params)
    return [t.detach() for t in F], [g.detach() for g in grads[:L]], [g.detach() for g in grads[L:]]


def bfa_batch_torch(family, weights, X):
    """Exact BFA of one network on the batch ``X`` (autograd backward, ``jvp`` tangent).

    Parameters
    ----------
    family : rmtalign.families.Family
    weights : list of array_like
        ``W_1 .. W_L`` (float64, entry std applied), e.g. from ``rmtalign.sample_network``.
    X : array_like
        Inputs, ``(n, d)`` (a ``(d,)`` vector is one input).

    Returns
    -------
    dict
        Per feature layer ``v = 1 .. L-1``: ``layers``, ``cos`` (NaN where ``fdot_v = 0``),
        ``b_norm``, ``fdot_norm`` (norms of the flattened ``(n m)`` vectors), ``loss_decay``
        (``sum_{l<=v} eta_l |grad_l|^2``), ``sensitivity`` (``|fdot_v|_rms / loss_decay``, rms over
        the ``n m`` entries). Per weight layer ``l = 1 .. L``: ``lr``, ``grad_sq``. Arrays for
        identity tests: ``f``, ``b`` (``(L, n, rows)`` lists: ``F_1 .. F_L``, ``b_1 .. b_L``),
        ``fdot`` (``F_dot_1 .. F_dot_{L-1}``), ``X``.
    """
    torch = _torch()
    from torch.func import jvp

    L, m = family.depth, family.width
    ws, Xt = _prepare(torch, family, weights, X)
    n = Xt.shape[0]
    F, b, wgrads = _gradients(torch, family, ws, Xt)
    grad_sq = np.array([float(torch.sum(g * g)) for g in wgrads])
    eta = family.rates(grad_sq)

    tangents = tuple(-float(e) * g for g, e in zip(wgrads, eta))
    _, fdot = jvp(lambda *w: tuple(_forward(torch, family, w, Xt)[: L - 1]), tuple(ws), tangents)

    bs = torch.stack(b[: L - 1]).reshape(L - 1, -1)
    fd = torch.stack(fdot).reshape(L - 1, -1)
    b_norm = torch.linalg.vector_norm(bs, dim=1).numpy()
    fdot_norm = torch.linalg.vector_norm(fd, dim=1).numpy()
    inner = -(bs * fd).sum(dim=1).numpy()
    loss_decay = np.cumsum(eta * grad_sq)[: L - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(fdot_norm > 0, inner / (b_norm * fdot_norm), np.nan)
        sensitivity = np.where(loss_decay > 0, fdot_norm / math.sqrt(n * m) / loss_decay, np.nan)
    return {"layers": np.arange(1, L), "cos": cos, "b_norm": b_norm, "fdot_norm": fdot_norm,
            "loss_decay": loss_decay, "sensitivity": sensitivity, "lr": eta, "grad_sq": grad_sq,
            "f": [t.numpy() for t in F], "b": [t.numpy() for t in b],
            "fdot": [t.numpy() for t in fdot], "X": Xt.numpy()}


def bfk_batch_torch(family, weights, X, layers=None):
    """Dense batch BFK ``K_v = sum_{l<=v} eta_l (dF_v/dW_l)(dF_v/dW_l)^T`` by ``jacrev``.

    Each Jacobian ``dF_v/dW_l`` is the full ``(n m) x (rows_l cols_l)`` matrix of the flattened
    features against the flattened weights (Def. 3.1, summed term by term): tiny networks only.

    Returns
    -------
    dict
        ``layers``, ``K`` (``(len(layers), n m, n m)``), ``lr`` and ``grad_sq`` (the batch's),
        and ``b`` (``(len(layers), n m)``: the flattened ``b_v``).
    """
    torch = _torch()
    from torch.func import jacrev

    L = family.depth
    layers = np.arange(1, L) if layers is None else np.asarray(layers, dtype=int).ravel()
    ws, Xt = _prepare(torch, family, weights, X)
    _, b, wgrads = _gradients(torch, family, ws, Xt)
    grad_sq = np.array([float(torch.sum(g * g)) for g in wgrads])
    eta = family.rates(grad_sq)
    K = []
    for v in layers:
        feats = lambda *w, v=int(v): _forward(torch, family, list(w) + list(ws[len(w):]), Xt)[v - 1].reshape(-1)  # noqa: E731
        jac = jacrev(feats, argnums=tuple(range(v)))(*ws[:v])
        Kv = sum(float(eta[l]) * (J.reshape(J.shape[0], -1) @ J.reshape(J.shape[0], -1).T)
                 for l, J in enumerate(jac) if eta[l] != 0)
        K.append(Kv.numpy() if torch.is_tensor(Kv) else np.zeros((Xt.shape[0] * family.width,) * 2))
    return {"layers": layers, "K": np.stack(K), "lr": eta, "grad_sq": grad_sq,
            "b": np.stack([b[v - 1].reshape(-1).numpy() for v in layers])}
