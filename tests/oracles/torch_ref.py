"""Torch reference implementation of the exact BFA: the benchmark's torch peer.

The same quantity as :func:`numpy_ref.bfa_exact`, written the way a PyTorch user would:
stored dense float64 weights, ``torch.autograd.grad`` for the backward pass (``b_v`` and the
weight gradients), and ``torch.func.jvp`` of the forward pass in the direction of the GD step
``W_dot_l = -eta_l grad_l`` for the feature velocities. Nothing exploits the rank-one structure of
the gradients; that is the point of a peer.

torch is imported lazily (inside the functions), so importing this module never requires torch.
"""
from __future__ import annotations

import numpy as np

from rmtalign.rules import learning_rates

from .numpy_ref import per_layer_summary

__all__ = ["torch_weights", "bfa_exact_torch"]


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError("tests/oracles/torch_ref.py needs torch (pip install 'torch==2.13.0')") from err
    return torch


def torch_weights(family, seed=None, *, generator=None, dtype=None):
    """Draw iid Gaussian weights ``W_1 .. W_L`` with torch's own sampler.

    Parameters
    ----------
    family : rmtalign.families.Family
    seed : int, optional
        Seeds a fresh ``torch.Generator`` (ignored when ``generator`` is given).
    generator : torch.Generator, optional
    dtype : torch.dtype, optional
        Default ``torch.float64``.

    Returns
    -------
    list of torch.Tensor
    """
    torch = _torch()
    dtype = torch.float64 if dtype is None else dtype
    if generator is None:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
    out = []
    for shape, std in zip(family.shapes, family.stds):
        w = torch.empty(shape, dtype=dtype)
        w.normal_(0.0, float(std), generator=generator)  # in place: no scaled temporary
        out.append(w)
    return out


def _act(torch, name):  # written here, not read from rmtalign.rules: an oracle stays independent
    return torch.relu if name == "relu" else (lambda z: z)


def _forward(torch, family, weights, x):
    """``[f_1, .., f_L]`` as torch tensors (differentiable in ``weights``)."""
    a, beta = family.skip, family.branch_scale
    phi, psi = _act(torch, family.activation), _act(torch, family.readout)
    L = family.depth
    f = [weights[0] @ x]
    for l in range(2, L):
        f.append(a * f[-1] + beta * (weights[l - 1] @ phi(f[-1])))
    f.append(weights[L - 1] @ psi(f[-1]))
    return f


def bfa_exact_torch(family, weights=None, x=None, *, seed=None):
    """Exact BFA of one network with torch autograd (backward) and ``torch.func.jvp`` (tangent).

    Parameters
    ----------
    family : rmtalign.families.Family
    weights : list of ndarray or torch.Tensor, optional
        ``W_1 .. W_L`` (float64). Default: drawn by :func:`torch_weights` with ``seed``.
    x : array_like, optional
        Input of shape ``(d,)``; default ``family.input_vector()``.
    seed : int, optional
        Seed for the weights when they are not given.

    Returns
    -------
    dict
        The keys of :func:`numpy_ref.bfa_exact`, as numpy arrays (vectors as lists).
    """
    torch = _torch()
    from torch.func import jvp

    L, m = family.depth, family.width
    if weights is None:
        weights = torch_weights(family, seed)
    ws = [torch.as_tensor(w, dtype=torch.float64) for w in weights]
    if len(ws) != L:
        raise ValueError(f"weights must hold {L} matrices (depth={L}), got {len(ws)}")
    x = family.input_vector() if x is None else x
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))

    # Backward pass by reverse mode: b_v = dLoss/df_v and the dense weight gradients in one sweep.
    params = [w.detach().requires_grad_(True) for w in ws]
    f = _forward(torch, family, params, x)
    loss = f[-1].mean()
    grads = torch.autograd.grad(loss, f + params)
    b = [g.detach() for g in grads[:L]]
    wgrads = [g.detach() for g in grads[L:]]
    f = [t.detach() for t in f]
    del params, grads

    grad_sq = np.array([float(torch.sum(g * g)) for g in wgrads])
    eta = learning_rates(grad_sq, family.trained_mask, family.lr_rule)

    # Tangent pass by forward mode: fdot = d/dt f(W - t eta grad) at t = 0, all hidden features.
    tangents = tuple(g.mul_(-float(e)) for g, e in zip(wgrads, eta))  # reuse the gradient buffers
    primals = tuple(w.detach() for w in ws)
    _, fdot = jvp(lambda *w: tuple(_forward(torch, family, w, x)[: L - 1]), primals, tangents)
    del tangents, wgrads

    bs = torch.stack(b[: L - 1])
    fd = torch.stack(fdot)
    b_norm = torch.linalg.vector_norm(bs, dim=1).numpy()
    fdot_norm = torch.linalg.vector_norm(fd, dim=1).numpy()
    inner = -(bs * fd).sum(dim=1).numpy()
    return {
        **per_layer_summary(m, b_norm, fdot_norm, inner, eta, grad_sq),
        "f": [t.numpy() for t in f],
        "b": [t.numpy() for t in b],
        "fdot": [t.numpy() for t in fdot],
        "x": x.numpy(),
    }
