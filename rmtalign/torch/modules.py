"""Modules of model (12) whose scalars are hyper-parameters: held as buffers, never as tensor
attributes, so that they survive ``state_dict``/``load_state_dict``, ``copy.deepcopy``,
``torch.save`` and ``torch.compile`` (attributes on parameters, as in mup, are lost under all four).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["OutputMultiplier", "Residual"]


def _scalar(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


class OutputMultiplier(nn.Module):
    """``x -> alpha x``: the scalar between ``f_{L-1}`` and ``f_L`` that enforces Eq. (7).

    Place it before or after the last ``nn.Linear``: ``f_L = alpha W_L psi(f_{L-1})`` either way.
    ``alpha`` is a persistent buffer of shape ``()``; :meth:`set_` changes it in place.
    """

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.register_buffer("alpha", torch.tensor(_scalar("alpha", alpha), dtype=torch.float64))

    def forward(self, x):
        return x * self.alpha.to(dtype=x.dtype)

    @torch.no_grad()
    def set_(self, alpha: float) -> "OutputMultiplier":
        self.alpha.fill_(_scalar("alpha", alpha))
        return self

    def extra_repr(self):
        return f"alpha={float(self.alpha):.6g}"


class Residual(nn.Module):
    """``x -> skip x + beta branch(x)``: a residual block of model (12).

    ``branch`` is any module (model (12) uses ``nn.Sequential(activation, nn.Linear(m, m,
    bias=False))``); ``skip`` defaults to ``sqrt(1 - beta^2)``. Both scalars are persistent buffers.
    """

    def __init__(self, branch: nn.Module, beta: float, skip: float | None = None):
        super().__init__()
        beta = _scalar("beta", beta)
        if skip is None:
            if not 0.0 <= beta <= 1.0:
                raise ValueError(f"beta must be in [0, 1] when skip is not given (skip = "
                                 f"sqrt(1 - beta^2)), got {beta!r}")
            skip = (1.0 - beta * beta) ** 0.5
        self.branch = branch
        self.register_buffer("beta", torch.tensor(beta, dtype=torch.float64))
        self.register_buffer("skip", torch.tensor(_scalar("skip", skip), dtype=torch.float64))

    def forward(self, x):
        return self.skip.to(dtype=x.dtype) * x + self.beta.to(dtype=x.dtype) * self.branch(x)

    def extra_repr(self):
        return f"beta={float(self.beta):.6g}, skip={float(self.skip):.6g}"
