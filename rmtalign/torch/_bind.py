"""Binding a :class:`rmtalign.Prescription` to a model: which parameters are ``W_1 .. W_L``.

The rules (``docs/howto_torch.md``):

* **Layers.** By default the ``nn.Linear`` modules of the model, in registration order (the order
  of ``model.named_modules()``, which is the forward order of ``nn.Sequential`` models and of
  most hand-written ones), are ``W_1 .. W_L``. There must be exactly ``L`` of them, with the
  family's shapes ``(m, d)``, ``(m, m)`` .. ``(k, m)``. Otherwise pass ``layers=[names]``: ``L``
  names of ``nn.Linear`` modules (``"0"``) or of their weights (``"0.weight"``).
* **Biases** belong to their layer: the block ``w_l = (W_l, b_l)`` of Eq. (1) has one rate, and
  :func:`rmtalign.torch.init_` sets biases to 0, so that the network at init is the family's
  law (the engine has no biases).
* **Other trainable parameters** (LayerNorm weights, embeddings...) are not part of the
  prescription: :meth:`Binding.rates` gives them rate 0, and
  :func:`rmtalign.torch.param_groups` asks for a rate for them (``other_lr=``).
* **Multipliers** (the abc form, :meth:`rmtalign.Prescription.abc`): layer ``l`` computes
  ``mu_l W_l (.)``. ``mu_1 = 1``; ``mu_L`` is the ``alpha`` of the model's
  :class:`~rmtalign.torch.OutputMultiplier` (one is found by type; several need
  ``multiplier=name``), 1 without one; a hidden layer inside a :class:`~rmtalign.torch.Residual`
  has ``mu_l`` = that block's ``beta`` (its ``skip`` must be the family's ``a``: the skip cannot
  be moved into the weights); a hidden layer in any other module (a user-written residual block)
  is taken to compute ``skip x + beta W phi(x)`` with the family's own ``beta`` as a constant, so
  ``mu_l = beta``. Init stds and rates are converted to the model's multipliers
  (``init_std = s_l / mu_l``, ``lr = eta_l / mu_l^2``, ``lr_adam = eta~_l / mu_l``), so any split
  between init scale and multiplier is the same effective network and the same step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._validate import check_choice
from ..families import ResNet
from ..prescriptions import Prescription
from ..results import Result
from .modules import OutputMultiplier, Residual

__all__ = ["bind", "Binding"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
KINDS = ("sgd", "adam")


@dataclass(frozen=True, repr=False, eq=False)  # eq: identity (it holds a model and arrays)
class Binding(Result):
    """A prescription bound to a model: the parameter names of its weight layers ``l = 1..L``.

    Fields: ``prescription``; ``layers`` (``1..L``); ``modules`` (the ``nn.Linear`` of each
    layer), ``weights`` and ``biases`` (parameter names; a bias is None when the layer has none);
    ``blocks`` (the module whose output is the feature ``f_l``: the layer's ``nn.Linear`` for
    ``l = 1``, ``L`` and in an MLP, its residual block in a ResNet); ``residuals`` (the
    :class:`~rmtalign.torch.Residual` holding the layer, or None); ``multiplier`` (the name of
    the :class:`~rmtalign.torch.OutputMultiplier`, or None); ``others`` (trainable parameters
    outside the layers). The model itself is kept (``binding.model``) but is not part of
    :meth:`to_dict`.
    """

    prescription: Prescription
    layers: np.ndarray
    modules: tuple
    weights: tuple
    biases: tuple
    blocks: tuple
    residuals: tuple
    multiplier: str | None
    others: tuple
    model: nn.Module = field(compare=False)

    _bulky = ("model",)

    def _table(self):
        mu = self.multipliers()
        abc = self.prescription.abc(mu)
        return {"layer": self.layers, "weight": np.array(self.weights, dtype=object),
                "bias": np.array([b or "" for b in self.biases], dtype=object),
                "multiplier": mu, "init_std": abc["init_std"], "lr": abc["lr"],
                "lr_adam": abc["lr_adam"]}

    def __repr__(self):
        p = self.prescription
        return (f"Binding({p.made_for.label}, scheme={p.scheme!r}, layers=1..{self.layers[-1]}, "
                f"modules={self.modules[0]!r}..{self.modules[-1]!r}, multiplier={self.multiplier!r}, "
                f"others={len(self.others)})")

    # -- the model's multipliers and the converted numbers -------------------------------------
    def multipliers(self) -> np.ndarray:
        """``mu_1 .. mu_L`` as the model has them now (read from its buffers at each call)."""
        p = self.prescription
        mods = dict(self.model.named_modules())
        mu = np.ones(self.layers.size)
        for i, res in enumerate(self.residuals):
            if res is not None:
                mu[i] = float(mods[res].beta)
            elif 0 < i < mu.size - 1:
                mu[i] = p.branch_scale
        if self.multiplier is not None:
            mu[-1] = float(mods[self.multiplier].alpha)
        return mu

    def init_stds(self) -> np.ndarray:
        """Entry std of each bound weight under the model's multipliers (``s_l / mu_l``)."""
        return self.prescription.abc(self._checked_multipliers())["init_std"]

    def layer_rates(self, kind: str = "sgd") -> np.ndarray:
        """Per-layer rates under the model's multipliers: ``"sgd"``, the prescription's ``lr``
        (``eta_l / mu_l^2``); ``"adam"``, the normalised-gradient rate ``lr_adam`` (``eta~_l /
        mu_l``) divided by ``sqrt(numel)`` of the layer, so that a torch Adam step (entries of
        size about ``lr``) has the Frobenius norm ``lr_adam`` of the paper's normalised step."""
        check_choice("kind", kind, KINDS)
        abc = self.prescription.abc(self._checked_multipliers())
        if kind == "sgd":
            return abc["lr"]
        return abc["lr_adam"] / np.sqrt(self._numels())

    def rates(self, kind: str = "sgd") -> dict:
        """``{parameter name: rate}`` for the layers' weights and biases and every other trainable
        parameter: a layer's weight and bias share the layer's rate (:meth:`layer_rates`, 0 for
        the prescription's frozen layers); parameters outside the layers (``others``) get 0.
        This is what ``rmtalign.torch.measure(model, x, loss, lr=prescription)`` uses."""
        per_layer = self.layer_rates(kind)
        out = {name: 0.0 for name in self.others}
        for w, b, r in zip(self.weights, self.biases, per_layer):
            out[w] = float(r)
            if b is not None:
                out[b] = float(r)
        return out

    def parameters(self, l: int) -> list:
        """The parameters of layer ``l`` (its weight, and its bias if any)."""
        params = dict(self.model.named_parameters())
        i = int(l) - 1
        if not 0 <= i < self.layers.size:
            raise ValueError(f"l must be in [1, {self.layers.size}], got {l!r}")
        names = [self.weights[i]] + ([self.biases[i]] if self.biases[i] is not None else [])
        return [params[n] for n in names]

    def _numels(self):
        params = dict(self.model.named_parameters())
        return np.array([params[w].numel() + (params[b].numel() if b is not None else 0)
                         for w, b in zip(self.weights, self.biases)], dtype=np.float64)

    def _checked_multipliers(self):
        mu = self.multipliers()
        bad = [(l, v) for l, v in zip(self.layers, mu) if not (np.isfinite(v) and v > 0)]
        if bad:
            l, v = bad[0]
            raise ValueError(f"the multiplier of layer {l} must be finite and > 0 (the abc form divides "
                             f"by it), got {v!r}: set the OutputMultiplier's alpha or the Residual's "
                             f"beta to a positive number")
        return mu


# --------------------------------------------------------------------------- inference
def bind(model, prescription, *, layers=None, multiplier=None) -> Binding:
    """Bind ``prescription`` to ``model``: find its weight layers ``W_1 .. W_L``.

    Parameters
    ----------
    model : torch.nn.Module
    prescription : rmtalign.Prescription
        Made for a family of depth ``L``, width ``m``, ``in_dim`` ``d``, ``out_dim`` ``k``.
    layers : sequence of str, optional
        The ``L`` weight layers, in order: names of ``nn.Linear`` modules or of their ``weight``
        parameters (as in ``model.named_modules()``/``named_parameters()``). Default: the
        model's ``nn.Linear`` modules in registration order (see the module docstring).
    multiplier : str or OutputMultiplier, optional
        The output multiplier (name or module). Default: the model's only
        :class:`~rmtalign.torch.OutputMultiplier`, if any.

    Returns
    -------
    Binding
        Its :meth:`~Binding.rates` are ``{parameter name: SGD rate}``.

    Raises
    ------
    TypeError, ValueError
        A model whose layers cannot be bound (wrong count, wrong shapes, several output
        multipliers, a residual block that does not match the family); the message says what to
        pass.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(prescription, Prescription):
        raise TypeError(f"prescription must be an rmtalign.Prescription (rmtalign.prescribe(family, "
                        f"scheme)), got {type(prescription).__name__}")
    fam = prescription.made_for
    L = fam.depth
    mods = dict(model.named_modules())
    names = _layer_modules(model, mods, layers, L)
    _check_shapes(names, mods, fam, layers is None)

    parents = _parents(model)
    residuals, blocks = [], []
    for l, name in enumerate(names, 1):
        res, block = _enclosing(name, parents, mods)
        if res is not None and l in (1, L):
            raise ValueError(f"layer {l} ({name!r}) is inside the Residual {res!r}: W_1 and W_L are "
                             f"outside the residual blocks in model (12); pass layers= to bind others")
        if res is not None:
            _check_residual(res, mods[res], fam, names)
        residuals.append(res)
        # f_l is the pre-activation: the Linear's output in an MLP, the block's in a ResNet
        blocks.append(block if isinstance(fam, ResNet) and 1 < l < L and block else name)
    if fam.skip != 0.0 and L > 2:
        plain = [n for n, b in zip(names[1:-1], blocks[1:-1]) if b == n]
        if plain:
            raise ValueError(
                f"the prescription is for a {fam.label} (skip a = {fam.skip:.6g}) but the hidden "
                f"layer {plain[0]!r} is not inside a residual block: the model looks like an MLP. "
                f"Build the blocks with rmtalign.torch.Residual(branch, beta), or prescribe for an MLP")

    mult = _output_multiplier(model, mods, multiplier)
    params = dict(model.named_parameters())
    weights = tuple(f"{n}.weight" if n else "weight" for n in names)
    biases = tuple((f"{n}.bias" if n else "bias") if getattr(mods[n], "bias", None) is not None
                   else None for n in names)
    bound = set(weights) | {b for b in biases if b is not None}
    others = tuple(n for n, p in params.items() if p.requires_grad and n not in bound)
    return Binding(prescription, np.arange(1, L + 1), tuple(names), weights, biases, tuple(blocks),
                   tuple(residuals), mult, others, model)


def _layer_modules(model, mods, layers, L):
    if layers is None:
        found = [n for n, m in mods.items() if isinstance(m, nn.Linear)]
        if len(found) != L:
            convs = [n for n, m in mods.items() if isinstance(m, nn.modules.conv._ConvNd)]
            extra = f" (and {len(convs)} convolutions, which a prescription does not cover)" \
                if convs else ""
            raise ValueError(
                f"the prescription has L = {L} weight layers but the model has {len(found)} "
                f"nn.Linear modules{extra}: {found[:8]}{' ...' if len(found) > 8 else ''}. Pass "
                f"layers=[{L} names of nn.Linear modules, W_1 first], or prescribe for depth="
                f"{len(found)}")
        return found
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers must be a sequence of {L} module or parameter names, got {layers!r}")
    if len(layers) != L:
        raise ValueError(f"layers must name the L = {L} weight layers of the prescription, got "
                         f"{len(layers)} names")
    out = []
    for i, name in enumerate(layers):
        if not isinstance(name, str):
            raise TypeError(f"layers[{i}] must be a module or parameter name (str), got {name!r}")
        mod_name = name[:-len(".weight")] if name.endswith(".weight") else name
        if name == "weight":
            mod_name = ""
        m = mods.get(mod_name)
        if m is None or not isinstance(getattr(m, "weight", None), torch.Tensor) \
                or getattr(m, "weight").dim() != 2:
            raise ValueError(f"layers[{i}] = {name!r} is not a module with a 2-d weight (an nn.Linear) "
                             f"in the model; its nn.Linear modules are "
                             f"{[n for n, x in mods.items() if isinstance(x, nn.Linear)][:8]}")
        out.append(mod_name)
    if len(set(out)) != L:
        raise ValueError(f"layers must name {L} different layers, got {list(layers)!r}")
    return out


def _check_shapes(names, mods, fam, inferred):
    for l, (name, shape) in enumerate(zip(names, fam.shapes), 1):
        got = tuple(mods[name].weight.shape)
        if got != tuple(shape):
            how = "inferred in registration order" if inferred else "given"
            raise ValueError(
                f"layer {l} ({name!r}, {how}) has weight shape {got}, but the prescription's family "
                f"({fam.label}, in_dim={fam.in_dim}, out_dim={fam.out_dim}) has W_{l} of shape "
                f"{tuple(shape)}: prescribe for the model's sizes, or pass layers= in forward order")


def _parents(model):
    parents = {}
    for name, m in model.named_modules():
        for child, _ in m.named_children():
            parents[f"{name}.{child}" if name else child] = name
    return parents


def _enclosing(name, parents, mods):
    """The Residual holding module ``name`` (or None) and the outermost non-container module
    below the root that holds it (its block, or None)."""
    res = block = None
    node = name
    while node in parents:
        node = parents[node]
        if node == "":
            break
        m = mods[node]
        if isinstance(m, Residual) and res is None:
            res = node
        if not isinstance(m, _CONTAINERS):
            block = node
    return res, block


def _check_residual(name, res, fam, names):
    inside = [n for n in names if n.startswith(name + ".")]
    if len(inside) != 1:
        raise ValueError(f"the Residual {name!r} holds {len(inside)} weight layers ({inside}); model "
                         f"(12) has one per block: pass layers= and a model with one nn.Linear a block")
    skip = float(res.skip)
    if not abs(skip - fam.skip) <= 1e-12 * max(1.0, abs(fam.skip)):
        raise ValueError(
            f"the Residual {name!r} has skip = {skip!r} but the prescription's family ({fam.label}) has "
            f"a = {fam.skip!r}: the skip cannot be moved into the weights. Build the blocks with "
            f"Residual(branch, beta={fam.branch_scale!r}) (or skip={fam.skip!r}), or prescribe for "
            f"the model's branch scale")
    beta = float(res.beta)
    if not beta > 0.0:
        raise ValueError(f"the Residual {name!r} has beta = {beta!r}: a branch multiplier must be > 0 "
                         f"(the family's beta is {fam.branch_scale!r})")


def _output_multiplier(model, mods, multiplier):
    if multiplier is None:
        found = [n for n, m in mods.items() if isinstance(m, OutputMultiplier)]
        if len(found) > 1:
            raise ValueError(f"the model has {len(found)} OutputMultiplier modules ({found}): pass "
                             f"multiplier= (the name of the one between f_(L-1) and f_L)")
        return found[0] if found else None
    if isinstance(multiplier, OutputMultiplier):
        for n, m in mods.items():
            if m is multiplier:
                return n
        raise ValueError("multiplier is an OutputMultiplier that is not a submodule of the model")
    if isinstance(multiplier, str) and isinstance(mods.get(multiplier), OutputMultiplier):
        return multiplier
    raise ValueError(f"multiplier must name an OutputMultiplier of the model, got {multiplier!r}; its "
                     f"OutputMultiplier modules are "
                     f"{[n for n, m in mods.items() if isinstance(m, OutputMultiplier)]}")
