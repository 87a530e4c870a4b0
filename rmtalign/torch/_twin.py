"""The ``nn.Module`` twin of a sampled network: the very weights :func:`rmtalign.sample_network`
draws, in float64, as bias-free ``nn.Linear`` layers."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .. import seeds
from .._validate import check_family, check_int
from ..sampling import sample_network
from .modules import OutputMultiplier, Residual

__all__ = ["twin", "TwinNetwork"]


class _Elementwise(nn.Module):
    """``x -> torch.<name>(x)``: an activation of :mod:`rmtalign.rules` by its torch name."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        return getattr(torch, self.name)(x)

    def extra_repr(self):
        return self.name


def _activation(record) -> nn.Module:
    if record.is_identity:
        return nn.Identity()
    return nn.ReLU() if record.torch_name == "relu" else _Elementwise(record.torch_name)


def _linear(W: np.ndarray, trained: bool) -> nn.Linear:
    # skip_init: no default initialisation, so building a twin draws nothing from torch's RNG
    lin = nn.utils.skip_init(nn.Linear, W.shape[1], W.shape[0], bias=False, dtype=torch.float64)
    lin.weight = nn.Parameter(torch.from_numpy(W), requires_grad=bool(trained))
    return lin


class TwinNetwork(nn.Sequential):
    """Model (12) as a float64 ``nn.Sequential`` of ``L`` modules ``layer1 .. layer{L}``.

    ``layer1`` is ``Linear(d, m)`` (its output is ``f_1``); ``layer{l}`` for ``l = 2..L-1`` is
    ``Sequential(phi, Linear(m, m))`` for an MLP (output ``f_l = W_l phi(f_{l-1})``) or
    ``Residual(Sequential(phi, Linear(m, m)), beta, skip)`` for a ResNet (output
    ``f_l = a f_{l-1} + beta W_l phi(f_{l-1})``); ``layer{L}`` is
    ``Sequential(psi, Linear(m, k), OutputMultiplier(alpha))``. Every ``Linear`` is bias-free, and
    the frozen ones (``family.trained``) have ``requires_grad=False``.

    Attributes: ``family``, ``seed`` (the record of the resolved seed, as in the samplers'
    results), ``sample``, and ``features``, the qualified names of the modules whose outputs are
    ``f_1 .. f_{L-1}`` (what :func:`rmtalign.torch.measure` takes as ``blocks`` to reproduce
    :func:`rmtalign.sample_bfa`; its default blocks are the same plus the readout ``Linear``).
    :meth:`input` is the batch the samplers run this draw on: their input ``x`` as a batch of one
    by default, or the ``(n, d)`` batch of ``twin(..., inputs=..., input_correlation=...)``.
    """

    def __init__(self, family, weights, x, seed_record, sample):
        L = family.depth
        trained = family.trained_mask
        phi, psi = family.phi, family.psi
        mods = {"layer1": _linear(weights[0], trained[0])}
        for l in range(2, L):
            branch = nn.Sequential(_activation(phi), _linear(weights[l - 1], trained[l - 1]))
            if family.skip == 0 and family.branch_scale == 1:
                mods[f"layer{l}"] = branch
            else:
                mods[f"layer{l}"] = Residual(branch, family.branch_scale, family.skip)
        mods[f"layer{L}"] = nn.Sequential(_activation(psi), _linear(weights[L - 1], trained[L - 1]),
                                          OutputMultiplier(family.output_multiplier))
        super().__init__(OrderedDict(mods))
        self.family = family
        self.seed = seed_record
        self.sample = sample
        self._x = x
        self.features = tuple(_feature_name(mods, l) for l in range(1, L))

    def input(self) -> torch.Tensor:
        """The samplers' inputs of this draw as a float64 batch on the device of the weights, one
        input a row: shape ``(1, d)`` (the input ``x``) by default, ``(n, d)`` for a twin built
        with ``inputs=``. A new tensor at every call."""
        device = next(self.parameters()).device
        x = torch.from_numpy(self._x.copy())
        return (x[None] if x.ndim == 1 else x).to(device)


def _feature_name(mods, l):
    if l == 1:
        return "layer1"
    mod = mods[f"layer{l}"]
    return f"layer{l}" if isinstance(mod, Residual) else f"layer{l}.1"


def twin(family, seed=None, sample=0, *, inputs=None, input_correlation=None) -> TwinNetwork:
    """The float64 ``nn.Module`` whose weights are draw ``sample`` of ``family`` with ``seed``.

    The weights are exactly those of :func:`rmtalign.sample_network` (and so those the samplers
    regenerate): ``measure(net, net.input(), torch.mean, blocks=net.features)`` reproduces
    ``sample_bfa(family, samples=[sample], seed=seed)`` at every layer to round-off (with the
    family's learning-rate rule: ``lr=None`` for the default balanced rule, ``lr=`` the sampler's
    rates as a mapping otherwise). See :class:`TwinNetwork` for the layout.

    With ``inputs``, :meth:`TwinNetwork.input` is the ``(n, d)`` batch that
    ``sample_bfa(family, samples=[sample], seed=seed, inputs=inputs,
    input_correlation=input_correlation)`` runs this draw on (that of
    ``sample_network(..., inputs=inputs, input_correlation=input_correlation)``), and the same
    ``measure`` call reproduces that batch sampler: ``torch.mean`` of the ``(n, k)`` output is its
    loss, the mean of ``f_L`` over the ``n k`` outputs, and ``measure`` flattens each feature over
    the batch as the sampler does (measured: agreement to ~1e-15 relative).

    Parameters
    ----------
    family : rmtalign.MLP or rmtalign.ResNet
    seed : int, numpy.random.SeedSequence or None
        None draws fresh entropy, recorded in ``net.seed`` (pass
        ``numpy.random.SeedSequence(**net.seed)`` to a sampler to get the same draw).
    sample : int
        The sample index, as in the samplers.
    inputs : None, int or array_like
        None (default): the family's own input, as a batch of one. Otherwise the samplers'
        ``inputs`` (see :func:`rmtalign.sample_bfa`): a count ``n`` (``n = 1`` is the family's
        input; ``n >= 2`` inputs drawn from ``seed`` and ``sample``, needs ``n <= in_dim``) or an
        explicit ``(n, d)`` array. The weights do not depend on it.
    input_correlation : float, optional
        Pairwise correlation of ``n`` drawn inputs, in ``(-1/(n-1), 1)``; default 0. Only with a
        count ``inputs``.

    Notes
    -----
    Memory: the ``L`` dense weight matrices (``O(L m^2)``), shared with the arrays
    ``sample_network`` returns, and the batch (``O(n d)``).
    """
    check_family(family)
    sample = check_int("sample", sample, 0)
    ss, _ = seeds.resolve_seed(seed)
    x, weights = sample_network(family, ss, sample, inputs=inputs,
                                input_correlation=input_correlation)
    return TwinNetwork(family, weights, x, seeds.seed_record(ss), sample)
