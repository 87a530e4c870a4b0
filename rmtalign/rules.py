"""The rules a network law is made of: activations and learning-rate rules, one record each.

Families, samplers, the theory (and the prescriptions and the torch bridge) read these records
instead of testing names, so adding an activation means adding one :class:`Activation` here plus
whatever theory it needs.

Activation constants, for a centred Gaussian pre-activation ``z``:

* ``gain = E[phi(z)^2] / E[z^2]``, which for the activations here also equals ``E[phi'(z)^2]``:
  the factor by which a layer scales the squared norms of the forward and backward passes in the
  width limit (:func:`rmtalign.theory.mean_field`);
* ``he_gain = 1 / gain``: ``m std^2`` of the variance-preserving hidden init (He for ReLU,
  LeCun for linear), the default of :class:`rmtalign.MLP` and :class:`rmtalign.ResNet`;
* ``mask_probability = P(phi'(z) != 0)``: the trace ``p`` of the diagonal ``D = diag(phi'(f))``
  of a layer Jacobian (1/2 for ReLU, after Hanin & Nica; 1 when ``phi'`` never vanishes).

Learning-rate rules (Sec. 2 of Chizat & Netrapalli), applied to squared gradient norms
``Gamma_l = |grad_l L|^2`` by :func:`learning_rates`: ``"balanced"`` is Eq. (8), every trained layer
contributes ``1/n`` of a unit loss decay; ``"uniform"`` is one common rate with unit loss decay.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from ._validate import check_choice

__all__ = ["Activation", "ACTIVATIONS", "activation", "LR_RULES", "learning_rates"]


def _relu(f):
    return np.maximum(f, 0.0)


def _relu_prime(f):
    # 0 at exactly 0, the autodiff convention torch also uses
    return (np.asarray(f) > 0).astype(np.float64)


def _identity(f):
    return f


def _ones(f):
    return np.ones_like(f, dtype=np.float64)


@dataclass(frozen=True)
class Activation:
    """One activation ``phi`` and the constants the samplers and the theory derive from it.

    ``phi`` and ``phi_prime`` act elementwise on numpy arrays; ``torch_name`` is the function of
    ``torch`` that computes ``phi`` (None for the identity)."""

    name: str
    phi: Callable
    phi_prime: Callable
    gain: Fraction
    mask_probability: Fraction
    torch_name: str | None

    @property
    def he_gain(self) -> Fraction:
        """``m std^2`` of the variance-preserving hidden init: ``1 / gain``."""
        return 1 / self.gain

    @property
    def has_masks(self) -> bool:
        """Whether ``phi'`` is a 0/1 mask that vanishes with probability ``1 - mask_probability``
        (then ``phi(f)`` vanishes where the mask does, and the passes skip those columns)."""
        return self.mask_probability < 1

    @property
    def is_identity(self) -> bool:
        return self.torch_name is None

    def support(self, f):
        """Indices where ``phi(f)`` (and ``phi'(f)``) can be non-zero; None for all of them."""
        return np.flatnonzero(f > 0) if self.has_masks else None


ACTIVATIONS = {
    "relu": Activation("relu", _relu, _relu_prime, Fraction(1, 2), Fraction(1, 2), "relu"),
    "linear": Activation("linear", _identity, _ones, Fraction(1), Fraction(1), None),
}

LR_RULES = ("balanced", "uniform")


def activation(name) -> Activation:
    """The :class:`Activation` record called ``name`` (one of :data:`ACTIVATIONS`)."""
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[check_choice("activation", name, tuple(ACTIVATIONS))]


def learning_rates(grad_sq, trained_mask, rule):
    """Per-layer learning rates from squared gradient norms ``Gamma_l`` (last axis = layers).

    ``"balanced"``: ``eta_l = 1 / (n Gamma_l)`` on the ``n`` trained layers (Eq. 8), so each
    contributes ``1/n`` to the loss decay. ``"uniform"``: ``eta = 1 / sum_trained Gamma_l``.
    Either way the total loss decay ``sum_l eta_l Gamma_l`` is 1. Frozen layers get 0.
    A trained layer whose gradient is exactly zero (a dead ReLU layer at small width) cannot
    contribute at any rate: it gets 0 and is not counted in ``n``; if no layer has a gradient,
    every rate is 0 and nothing moves.
    """
    check_choice("lr_rule", rule, LR_RULES)
    grad_sq = np.asarray(grad_sq, dtype=np.float64)
    mask = np.broadcast_to(np.asarray(trained_mask, dtype=bool), grad_sq.shape) & (grad_sq > 0)
    n = np.count_nonzero(mask, axis=-1)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule == "balanced":
            return np.where(mask, 1.0 / (n * grad_sq), 0.0)
        total = np.sum(np.where(mask, grad_sq, 0.0), axis=-1, keepdims=True)
        return np.where(mask, 1.0 / total, 0.0)
