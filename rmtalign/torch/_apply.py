"""Applying a prescription to a model: :func:`init_` (init scales and the output multiplier) and
:func:`param_groups` (per-layer learning rates as plain ``torch.optim`` groups).

Both bind the prescription to the model first (:func:`rmtalign.torch.bind`, whose rules say
which parameters are ``W_1 .. W_L``) and convert its numbers to the model's multipliers (the abc
form), so the model may carry the output multiplier as an
:class:`~rmtalign.torch.OutputMultiplier` or not at all, and residual blocks of any ``beta``.
"""
from __future__ import annotations

import math

import torch

from .._validate import check_choice, check_real
from ._bind import KINDS, Binding, bind

__all__ = ["init_", "param_groups"]


def _binding(model, prescription, layers, multiplier) -> Binding:
    if isinstance(prescription, Binding):
        if prescription.model is not model:
            raise ValueError("prescription is a Binding of another model: bind this model, "
                             "rmtalign.torch.bind(model, binding.prescription)")
        return prescription
    return bind(model, prescription, layers=layers, multiplier=multiplier)


@torch.no_grad()
def init_(model, prescription, *, generator=None, layers=None, multiplier=None):
    """Initialise ``model`` as ``prescription`` says, in place (like ``torch.nn.init``).

    Sets the entry std of each weight ``W_l`` (iid Gaussian, or Haar orthogonal scaled to the same
    entry variance when the family's ``weights`` is ``"orthogonal"``), every bias of a bound layer
    to 0, and the :class:`~rmtalign.torch.OutputMultiplier`'s ``alpha`` to the prescription's
    ``output_multiplier``. Without an output multiplier module, ``W_L`` carries it (std
    ``alpha s_L``): the same effective network. Residual blocks are checked against the family
    (their ``skip`` must be its ``a``; their ``beta`` is a multiplier, converted).

    Parameters
    ----------
    model : torch.nn.Module
    prescription : rmtalign.Prescription or Binding
        A :class:`~rmtalign.torch.Binding` of this model is used as it is.
    generator : torch.Generator, optional
        The source of the draws (on the weights' device).
    layers, multiplier
        As in :func:`rmtalign.torch.bind`.

    Returns
    -------
    model
        The same module.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    b = _binding(model, prescription, layers, multiplier)
    mods = dict(model.named_modules())
    if b.multiplier is not None:
        mods[b.multiplier].set_(b.prescription.output_multiplier)
    stds = b.init_stds()  # after alpha is set: W_L's std follows the model's multiplier
    orthogonal = b.prescription.made_for.weights == "orthogonal"
    for name, std in zip(b.modules, stds):
        lin = mods[name]
        w = lin.weight
        if orthogonal:
            torch.nn.init.orthogonal_(w, generator=generator)
            # rows (or columns) orthonormal: entry second moment 1/max(rows, cols)
            w.mul_(float(std) * math.sqrt(max(w.shape)))
        else:
            w.normal_(0.0, float(std), generator=generator)
        if getattr(lin, "bias", None) is not None:
            lin.bias.zero_()
    return model


def param_groups(model, prescription, base_lr=1.0, *, kind="sgd", other_lr=None, layers=None,
                 multiplier=None) -> list:
    """The prescription's learning rates as ``torch.optim`` parameter groups, one per layer.

    Group ``l`` is ``{"params": [W_l, b_l], "lr": base_lr * rate_l, "name": <weight name>,
    "layer": l}``; frozen layers (rate 0) are left out. Plain dicts: pass them to any
    ``torch.optim`` optimizer (``torch.optim.SGD(groups)``), and LR schedulers scale every
    group's rate together.

    Parameters
    ----------
    model : torch.nn.Module
    prescription : rmtalign.Prescription or Binding
    base_lr : float
        A common factor (the master step ``dt`` of the paper).
    kind : {"sgd", "adam"}
        ``"sgd"``: the SGD rates ``lr``. ``"adam"``: the normalised-gradient rates ``lr_adam``
        divided by ``sqrt(numel)`` of the layer, for ``torch.optim.Adam``: an Adam step has
        entries of size about ``lr``, hence the Frobenius norm ``lr_adam`` of the paper's
        normalised step (:meth:`Binding.layer_rates`).
    other_lr : float, optional
        The rate of trainable parameters outside the bound layers (one extra group named
        ``"other"``). Without it such parameters are an error naming them: give a rate, or freeze
        them (``requires_grad_(False)``).
    layers, multiplier
        As in :func:`rmtalign.torch.bind`.

    Returns
    -------
    list of dict
    """
    base_lr = check_real("base_lr", base_lr, low=0.0)
    check_choice("kind", kind, KINDS)
    b = _binding(model, prescription, layers, multiplier)
    rates = b.layer_rates(kind)
    groups = []
    for l, name, rate in zip(b.layers, b.weights, rates):
        params = [p for p in b.parameters(l) if p.requires_grad]
        if rate > 0 and params:
            groups.append({"params": params, "lr": base_lr * float(rate), "name": name,
                           "layer": int(l)})
    if b.others:
        if other_lr is None:
            raise ValueError(
                f"the model has trainable parameters outside the prescription's layers "
                f"({list(b.others)[:6]}{' ...' if len(b.others) > 6 else ''}): pass other_lr= (their "
                f"rate, one extra group) or freeze them with requires_grad_(False)")
        other_lr = check_real("other_lr", other_lr, low=0.0)
        params = dict(model.named_parameters())
        groups.append({"params": [params[n] for n in b.others], "lr": other_lr, "name": "other",
                       "layer": 0})
    return groups
