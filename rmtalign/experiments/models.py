"""Networks and their optimizers under each scheme, built as a user of ``rmtalign.torch`` would.

Architectures (model (12) of the paper, ``docs/index.md``):

* ``"mlp"``: ``Linear(d, m), ReLU, Linear(m, m), ..., ReLU, Linear(m, k)``, ``depth`` Linear
  layers, then an :class:`~rmtalign.torch.OutputMultiplier`;
* ``"resnet"``: ``Linear(d, m)``, ``depth - 2`` blocks ``Residual(Sequential(ReLU, Linear(m, m)),
  beta)`` (``f_l = sqrt(1 - beta^2) f_{l-1} + beta W_l relu(f_{l-1})``), ``Linear(m, k)`` on
  ``f_{L-1}`` (linear readout), an :class:`~rmtalign.torch.OutputMultiplier`.

Schemes (what a base learning rate means in each is in :data:`BASE_LR_MEANING`):

* ``"sp"``: PyTorch's default init, one learning rate for every parameter;
* ``"ntk"``, ``"mfmup"``: :func:`rmtalign.prescribe` (dense setting, every layer trained), applied
  by :func:`~rmtalign.torch.init_` and :func:`~rmtalign.torch.param_groups` (``kind="adam"`` for
  Adam); the base learning rate multiplies the prescribed rates. ``"mfmup"`` is MF+muP of Jelassi
  et al. on an MLP and depth-muP on the ResNet with ``beta = 1/sqrt(L)`` (``docs/prescriptions.md``);
* ``"fsc"``: the FSC prescription, its output multiplier re-measured on the first batch
  (:meth:`~rmtalign.torch.FSC.rebalance`, twice: cross-entropy is not linear in the output),
  and the :class:`~rmtalign.torch.FSC` wrapper that sets the rates of Eq. (8) (SGD) or of the
  normalised-gradient rule (Adam) on every step's gradients; the base learning rate is the
  wrapper's ``target``, the first-order loss decrease of one step;
* ``"mup"``: width-only muP by the ``mup`` package, the practitioners' tool: ``MuReadout`` in place
  of the last Linear, ``set_base_shapes`` against the same network at width ``base_width``
  (delta at twice that), ``MuSGD``/``MuAdam``; the base learning rate is theirs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import rmtalign as ra
import rmtalign.torch  # noqa: F401  (ra.torch: the bridge)
from .._validate import check_choice, check_int, check_real

__all__ = ["ARCHS", "SCHEMES", "OPTIMIZERS", "BASE_LR_MEANING", "build_network", "family_of",
           "Setup", "make_setup", "beta_value"]

ARCHS = ("mlp", "resnet")
SCHEMES = ("sp", "ntk", "mfmup", "fsc", "mup")
OPTIMIZERS = ("sgd", "adam")
BASE_LR_MEANING = {
    "sp": "the learning rate of every parameter",
    "ntk": "a factor on the NTK prescription's per-layer rates",
    "mfmup": "a factor on the MF+muP (depth-muP) prescription's per-layer rates",
    "fsc": "the FSC wrapper's target: the first-order loss decrease of one step",
    "mup": "the MuSGD/MuAdam learning rate (the rate at the base width)",
}


def build_network(arch, depth, width, in_dim, out_dim, beta=None, *, readout=None) -> nn.Sequential:
    """The network of ``arch`` (module docstring), PyTorch's default init, float32.

    ``beta`` is the ResNet's branch scale (required for ``"resnet"``, ignored for ``"mlp"``);
    ``readout(width, out_dim)`` builds the last layer (default ``nn.Linear``; ``mup.MuReadout``
    for ``"mup"``).
    """
    check_choice("arch", arch, ARCHS)
    depth = check_int("depth", depth, 3 if arch == "resnet" else 2)
    readout = nn.Linear if readout is None else readout
    if arch == "mlp":
        layers = [nn.Linear(in_dim, width)]
        for _ in range(depth - 2):
            layers += [nn.ReLU(), nn.Linear(width, width)]
        layers += [nn.ReLU(), readout(width, out_dim)]
    else:
        if beta is None:
            raise ValueError("beta (the branch scale) is required for arch='resnet'")
        beta = check_real("beta", beta, low=0.0, high=1.0, low_open=True)
        layers = [nn.Linear(in_dim, width)]
        layers += [ra.torch.Residual(nn.Sequential(nn.ReLU(), nn.Linear(width, width)), beta)
                   for _ in range(depth - 2)]
        layers += [readout(width, out_dim)]
    layers.append(ra.torch.OutputMultiplier(1.0))
    return nn.Sequential(*layers)


def family_of(arch, depth, width, in_dim, out_dim, beta=None):
    """The :mod:`rmtalign` family (the law at init) of :func:`build_network`'s network."""
    if arch == "mlp":
        return ra.MLP(depth, width, in_dim=in_dim, out_dim=out_dim, trained="all")
    return ra.ResNet(depth, width, beta, in_dim=in_dim, out_dim=out_dim, trained="all")


@dataclass
class Setup:
    """A network ready to train: ``model``, ``optimizer`` (``zero_grad()``, ``step()``: a torch
    optimizer or the :class:`~rmtalign.torch.FSC` wrapper), and the ``family`` of its law."""

    model: nn.Module
    optimizer: object
    family: object


def make_setup(scheme, optimizer, arch, depth, width, in_dim, out_dim, base_lr, *, beta=None,
               seed=0, probe=None, base_width=64) -> Setup:
    """Build the network of ``arch`` and its optimizer under ``scheme`` (module docstring).

    Parameters
    ----------
    scheme : {"sp", "ntk", "mfmup", "fsc", "mup"}
    optimizer : {"sgd", "adam"}
    arch, depth, width, in_dim, out_dim, beta
        As in :func:`build_network`.
    base_lr : float
        > 0; its meaning per scheme is :data:`BASE_LR_MEANING`.
    seed : int
        Seeds the init (PyTorch's global generator for the default init, a ``torch.Generator``
        for prescribed ones).
    probe : (inputs, loss_fn), optional
        The batch on which ``"fsc"`` re-measures its output multiplier (required for ``"fsc"``).
    base_width : int
        ``"mup"``'s base width.
    """
    check_choice("scheme", scheme, SCHEMES)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    base_lr = check_real("base_lr", base_lr, low=0.0, low_open=True)
    torch.manual_seed(seed)
    family = family_of(arch, depth, width, in_dim, out_dim, beta)
    if scheme == "mup":
        return _mup_setup(optimizer, arch, depth, width, in_dim, out_dim, beta, base_lr,
                          base_width, family)
    model = build_network(arch, depth, width, in_dim, out_dim, beta)
    if scheme == "sp":
        cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        return Setup(model, cls(model.parameters(), lr=base_lr), family)
    p = ra.prescribe(family, scheme, "dense")
    ra.torch.init_(model, p, generator=torch.Generator().manual_seed(seed))
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    if scheme in ("ntk", "mfmup"):
        return Setup(model, cls(ra.torch.param_groups(model, p, base_lr, kind=optimizer)), family)
    if probe is None:
        raise ValueError("scheme 'fsc' needs probe=(inputs, loss_fn) to re-measure its output "
                         "multiplier")
    fsc = ra.torch.FSC(cls(ra.torch.param_groups(model, p, kind=optimizer)), model,
                       target=base_lr, kind=optimizer, prescription=p)
    for _ in range(2):
        fsc.rebalance(*probe)
    return Setup(model, fsc, family)


def _mup_setup(optimizer, arch, depth, width, in_dim, out_dim, beta, base_lr, base_width, family):
    import mup

    def net(m):
        return build_network(arch, depth, m, in_dim, out_dim, beta, readout=mup.MuReadout)

    state = torch.random.get_rng_state()
    base, delta = net(base_width), net(2 * base_width)  # shapes only: their draws are discarded
    torch.random.set_rng_state(state)
    model = net(width)
    mup.set_base_shapes(model, base, delta=delta)
    cls = mup.MuSGD if optimizer == "sgd" else mup.MuAdam
    return Setup(model, cls(model.parameters(), lr=base_lr), family)


def beta_value(rule, depth) -> float:
    """A branch scale from its rule: ``"1"``, ``"1/sqrt(L)"`` or ``"1/L"``."""
    rules = {"1": 1.0, "1/sqrt(L)": 1.0 / math.sqrt(depth), "1/L": 1.0 / depth}
    check_choice("beta rule", rule, tuple(rules))
    return rules[rule]
