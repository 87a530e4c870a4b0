"""Network laws: frozen, validated descriptions of a randomly initialised network.

A family is the *law* of a network at initialisation (architecture, widths, init scales, which
layers are trained and how their learning rates are set). It knows nothing about how it is sampled
or how its limits are computed: :mod:`rmtalign.sampling` and :mod:`rmtalign.theory` consume it.

Model (Eq. 12 of Chizat & Netrapalli), with weights ``W_1 .. W_L`` and features ``f_1 .. f_L``::

    f_1 = W_1 x
    f_l = a f_{l-1} + beta W_l phi(f_{l-1})        l = 2 .. L-1
    f_L = W_L psi(f_{L-1})

``MLP`` is ``a = 0, beta = 1`` with readout ``psi = phi`` (Eq. 10). ``ResNet`` has
``a = sqrt(1 - beta^2)`` unless ``skip_scale`` is given, and reads out ``psi = identity``.
The loss is linear, ``mean(f_L)``, so ``b_L = 1/k`` in every coordinate.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field, fields, replace

import numpy as np

from . import rules
from ._validate import check_choice, check_int, check_real

__all__ = ["MLP", "ResNet", "Family"]

_WEIGHTS = ("gaussian", "orthogonal")
_INPUTS = ("fixed", "random")
_TRAINED = ("all-but-first", "all")
# The lr_rule of a family whose rates are given explicitly (lr_values); not a rule of rules.py.
_EXPLICIT = "explicit"
# Fields added after content seeds were in use: left out of to_dict at their defaults.
_OMITTED_AT_DEFAULT = ("output_multiplier", "lr_values")


def _renamed_lr(kwargs):
    """Accept the keyword ``lr`` (renamed ``lr_rule``) with a DeprecationWarning."""
    if "lr" in kwargs:
        if "lr_rule" in kwargs:
            raise TypeError("give lr_rule only (lr is its deprecated old name)")
        warnings.warn("the family keyword 'lr' is deprecated: it names a rule, use lr_rule=",
                      DeprecationWarning, stacklevel=3)
        kwargs["lr_rule"] = kwargs.pop("lr")
    return kwargs


@dataclass(frozen=True)
class Family:
    """Common fields and derived quantities of :class:`MLP` and :class:`ResNet`.

    Parameters
    ----------
    depth : int
        Number of weight matrices ``L`` (>= 3); features ``f_1 .. f_{L-1}`` are hidden.
    width : int
        Hidden width ``m``.
    in_dim, out_dim : int
        Input dimension ``d`` and output dimension ``k``.
    activation : {"relu", "linear"}
        The name of an :class:`rmtalign.rules.Activation` (the record is ``family.phi``).
    weights : {"gaussian", "orthogonal"}
        iid ``N(0, std^2)`` entries (H1), or Haar (semi-)orthogonal matrices scaled so that the
        entries have the same second moment.
    hidden_std : float, optional
        Std of the hidden weights ``W_2 .. W_{L-1}``; default ``sqrt(he_gain/m)`` of the
        activation: ``sqrt(2/m)`` for ReLU (He), ``sqrt(1/m)`` for linear.
    input_std, output_std : float, optional
        Std of ``W_1`` and ``W_L``; defaults ``1/sqrt(d)`` and ``1/sqrt(m)``.
    trained : {"all-but-first", "all"} or sequence of int
        Which weight matrices the gradient step updates. The default leaves ``W_1`` frozen,
        as in the paper's figures.
    lr_rule : {"balanced", "uniform"}
        ``"balanced"``: ``eta_l = 1 / (n ||grad_l||^2)`` over the ``n`` trained layers, so every
        trained layer contributes ``1/n`` to the loss decay (Eq. 8). ``"uniform"``: one common
        ``eta`` chosen so that the total loss decay is 1 (:func:`rmtalign.rules.learning_rates`).
        The old keyword ``lr`` still works, with a ``DeprecationWarning``.
    input : {"fixed", "random"}
        ``"fixed"``: ``x = (1, .., 1)``; ``"random"``: a Gaussian direction drawn from the seed.
        Both have norm ``sqrt(d)`` (unit RMS).
    output_multiplier : float
        The scalar ``alpha > 0`` of the readout ``f_L = alpha W_L psi(f_{L-1})`` (Eq. 7's backward
        normalisation, :func:`rmtalign.prescribe`); default 1.
    lr_values : sequence of float, optional
        Explicit learning rates ``eta_1 .. eta_L`` (>= 0, 0 on frozen layers) used instead of a
        rule: give them with the default ``lr_rule``, which then reads ``"explicit"`` (to go back
        to a rule, ``replace(lr_values=None, lr_rule="balanced")``). They are numbers for this
        width and depth: ``replace(width=...)`` keeps them as they are.

    Notes
    -----
    The last two fields are left out of :meth:`to_dict` at their defaults, so the content seeds of
    families that do not use them are unchanged.
    """

    depth: int
    width: int
    in_dim: int = 10
    out_dim: int = 1
    activation: str = "relu"
    weights: str = "gaussian"
    hidden_std: float | None = None
    input_std: float | None = None
    output_std: float | None = None
    trained: str | tuple = "all-but-first"
    lr_rule: str = "balanced"
    input: str = "fixed"
    output_multiplier: float = 1.0
    lr_values: tuple | None = None

    def __post_init__(self):
        s = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731  (frozen dataclass)
        s("depth", check_int("depth", self.depth, 3))
        s("width", check_int("width", self.width, 1))
        s("in_dim", check_int("in_dim", self.in_dim, 1))
        s("out_dim", check_int("out_dim", self.out_dim, 1))
        rules.activation(self.activation)
        check_choice("weights", self.weights, _WEIGHTS)
        if self.lr_rule != _EXPLICIT:  # "explicit" is what lr_values set (checked below)
            check_choice("lr_rule", self.lr_rule, rules.LR_RULES)
        check_choice("input", self.input, _INPUTS)
        for name in ("hidden_std", "input_std", "output_std"):
            s(name, check_real(name, getattr(self, name), low=0.0, low_open=True, allow_none=True))
        s("trained", self._normalise_trained(self.trained))
        s("output_multiplier", check_real("output_multiplier", self.output_multiplier, low=0.0,
                                          low_open=True))
        s("lr_values", self._normalise_lr_values(self.lr_values))

    def _normalise_lr_values(self, values):
        if values is None:
            if self.lr_rule == _EXPLICIT:
                raise ValueError("lr_rule='explicit' is set by giving lr_values (eta_1 .. eta_L), "
                                 "and none were given; to use a rule instead give lr_rule="
                                 + " or ".join(map(repr, rules.LR_RULES)))
            return None
        if self.lr_rule not in ("balanced", _EXPLICIT):
            raise ValueError(f"lr_values replace the learning-rate rule: give them with the default "
                             f"lr_rule='balanced' (or 'explicit'), not lr_rule={self.lr_rule!r}")
        # lr_rule says what is in effect, so that code reading it is never misled by a rule that
        # the explicit rates override.
        object.__setattr__(self, "lr_rule", _EXPLICIT)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise TypeError(f"lr_values must be a sequence of {self.depth} learning rates "
                            f"(eta_1 .. eta_L), got {values!r}")
        if len(values) != self.depth:
            raise ValueError(f"lr_values must have one rate per weight layer (depth={self.depth}), "
                             f"got {len(values)}")
        out = tuple(check_real(f"lr_values[{i}]", v, low=0.0) for i, v in enumerate(values))
        frozen = [l for l, (t, v) in enumerate(zip(self.trained_mask, out), 1) if v and not t]
        if frozen:
            raise ValueError(f"lr_values must be 0 on frozen layers; layer {frozen[0]} is not trained "
                             f"(trained={self.trained!r}) but has rate {out[frozen[0] - 1]!r}")
        return out

    def _normalise_trained(self, trained):
        if isinstance(trained, str):
            return check_choice("trained", trained, _TRAINED)
        try:
            layers = tuple(sorted({check_int("trained layer", v, 1) for v in trained}))
        except TypeError as err:
            if "integer" in str(err):
                raise
            raise TypeError(
                f"trained must be 'all-but-first', 'all' or a sequence of layer indices, got {trained!r}"
            ) from None
        if not layers:
            raise ValueError("trained must name at least one layer, got an empty sequence")
        if layers[-1] > self.depth:
            raise ValueError(f"trained layer {layers[-1]} is out of range [1, {self.depth}] (depth={self.depth})")
        return layers

    # -- the law, resolved ---------------------------------------------------------------------
    @property
    def phi(self) -> rules.Activation:
        """The activation's record (:mod:`rmtalign.rules`)."""
        return rules.ACTIVATIONS[self.activation]

    @property
    def psi(self) -> rules.Activation:
        """The readout's record: ``phi`` for an MLP, the identity for a ResNet."""
        return rules.ACTIVATIONS[self.readout]

    @property
    def lr(self) -> str:
        """Deprecated name of :attr:`lr_rule`."""
        warnings.warn("Family.lr is deprecated: it names a rule, use Family.lr_rule",
                      DeprecationWarning, stacklevel=2)
        return self.lr_rule

    @property
    def branch_scale(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def skip(self) -> float:
        """The skip coefficient ``a`` in ``f_l = a f_{l-1} + beta W_l phi(f_{l-1})``."""
        raise NotImplementedError  # pragma: no cover

    @property
    def readout(self) -> str:
        """Activation ``psi`` applied to ``f_{L-1}`` before ``W_L``."""
        raise NotImplementedError  # pragma: no cover

    @property
    def stds(self) -> np.ndarray:
        """Entry std of ``W_1 .. W_L`` (array of length ``L``)."""
        m, d = self.width, self.in_dim
        hid = self.hidden_std
        if hid is None:
            hid = math.sqrt(float(self.phi.he_gain) / m)
        out = np.full(self.depth, hid)
        out[0] = self.input_std if self.input_std is not None else 1.0 / math.sqrt(d)
        out[-1] = self.output_std if self.output_std is not None else 1.0 / math.sqrt(m)
        return out

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """``(rows, cols)`` of ``W_1 .. W_L``."""
        m = self.width
        return [(m, self.in_dim)] + [(m, m)] * (self.depth - 2) + [(self.out_dim, m)]

    @property
    def trained_mask(self) -> np.ndarray:
        """Boolean array over layers ``1 .. L``: which weights the step updates."""
        mask = np.ones(self.depth, dtype=bool)
        if self.trained == "all-but-first":
            mask[0] = False
        elif self.trained != "all":
            mask[:] = False
            mask[np.asarray(self.trained) - 1] = True
        return mask

    @property
    def branch_scales(self) -> np.ndarray:
        """Multiplier of ``W_l phi(f_{l-1})`` for every layer: 1 at ``l = 1``, beta inside and
        the output multiplier at ``l = L``."""
        out = np.full(self.depth, self.branch_scale)
        out[0] = 1.0
        out[-1] = self.output_multiplier
        return out

    def rates(self, grad_sq) -> np.ndarray:
        """Learning rates ``eta_1 .. eta_L`` (last axis) given squared gradient norms ``grad_sq``:
        :attr:`lr_values` when given, otherwise :attr:`lr_rule` applied by
        :func:`rmtalign.rules.learning_rates`. The samplers pass measured norms, the theory
        width-limit ones: one definition for both."""
        grad_sq = np.asarray(grad_sq, dtype=np.float64)
        if self.lr_values is None:
            return rules.learning_rates(grad_sq, self.trained_mask, self.lr_rule)
        return np.broadcast_to(np.asarray(self.lr_values), grad_sq.shape).copy()

    def input_vector(self, rng_normal=None) -> np.ndarray:
        """The network input ``x`` (norm ``sqrt(d)``). ``rng_normal(d)`` supplies the direction
        when ``input="random"``; sampling passes a keyed generator so the input follows the seed."""
        d = self.in_dim
        if self.input == "fixed":
            return np.ones(d)
        if rng_normal is None:
            raise ValueError("input='random' needs a generator of normal draws")
        z = np.asarray(rng_normal(d), dtype=np.float64)
        return z * (math.sqrt(d) / np.linalg.norm(z))

    @property
    def label(self) -> str:
        """Short human label for legends and tables."""
        raise NotImplementedError  # pragma: no cover

    def replace(self, **changes) -> "Family":
        """A copy with some fields changed (validated again)."""
        return replace(self, **_renamed_lr(changes))

    def to_dict(self) -> dict:
        """The fields (tuples as lists) and ``"family": "MLP"/"ResNet"``; ``output_multiplier`` and
        ``lr_values`` only when they differ from their defaults (these dicts key content seeds)."""
        out = {"family": type(self).__name__}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _OMITTED_AT_DEFAULT and v == f.default:
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @staticmethod
    def from_dict(data) -> "Family":
        """The family whose :meth:`to_dict` is ``data`` (``family.from_dict(family.to_dict()) ==
        family``), validated again."""
        if not isinstance(data, dict) or data.get("family") not in _KINDS:
            raise ValueError(f"a family dict needs 'family' set to one of {', '.join(map(repr, _KINDS))}; "
                             f"got {data.get('family') if isinstance(data, dict) else data!r}")
        kwargs = {k: v for k, v in data.items() if k != "family"}
        return _KINDS[data["family"]]()(**kwargs)


@dataclass(frozen=True)
class MLP(Family):
    """iid-initialised MLP, Eq. (10): ``f_l = W_l phi(f_{l-1})``, readout ``W_L phi(f_{L-1})``."""

    @property
    def branch_scale(self) -> float:
        return 1.0

    @property
    def skip(self) -> float:
        return 0.0

    @property
    def readout(self) -> str:
        return self.activation

    @property
    def label(self) -> str:
        return f"MLP {self.activation} L={self.depth} m={self.width}"


def _accept_renamed_lr(init):
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **_renamed_lr(kwargs))
    return __init__


MLP.__init__ = _accept_renamed_lr(MLP.__init__)


@dataclass(frozen=True)
class ResNet(Family):
    """ResNet of Eq. (12): ``f_l = a f_{l-1} + beta W_l phi(f_{l-1})``, readout ``W_L f_{L-1}``.

    ``branch_scale`` is ``beta`` in ``[0, 1]``; ``skip_scale`` is ``a``, by default
    ``sqrt(1 - beta^2)`` (variance preserving). Giving ``skip_scale`` lifts the ``beta <= 1`` bound.
    """

    branch_scale: float = field(default=None, kw_only=True)
    skip_scale: float | None = field(default=None, kw_only=True)

    def __init__(self, depth, width, branch_scale, *args, skip_scale=None, **kwargs):
        object.__setattr__(self, "branch_scale", branch_scale)
        object.__setattr__(self, "skip_scale", skip_scale)
        Family.__init__(self, depth, width, *args, **_renamed_lr(kwargs))

    def __post_init__(self):
        super().__post_init__()
        skip = check_real("skip_scale", self.skip_scale, allow_none=True)
        if skip is None:
            beta = check_real("branch_scale", self.branch_scale, low=0.0)
            if beta > 1.0:
                raise ValueError(f"branch_scale must be <= 1 (so that a = sqrt(1 - beta^2) exists) "
                                 f"unless skip_scale is given; got {beta!r}")
        else:
            beta = check_real("branch_scale", self.branch_scale)
        object.__setattr__(self, "branch_scale", beta)
        object.__setattr__(self, "skip_scale", skip)

    @classmethod
    def scaled(cls, depth, width, c, alpha=0.5, **kwargs) -> "ResNet":
        """ResNet with ``beta = c * depth**(-alpha)``."""
        c = check_real("c", c, low=0.0)
        alpha = check_real("alpha", alpha)
        depth = check_int("depth", depth, 3)
        beta = c * depth ** (-alpha)
        if kwargs.get("skip_scale") is None and beta > 1.0:
            raise ValueError(
                f"c * depth**(-alpha) = {c} * {depth}**(-{alpha}) = {beta:.4g} exceeds 1; "
                "branch_scale must be in [0, 1] unless skip_scale is given"
            )
        return cls(depth, width, beta, **kwargs)

    @property
    def skip(self) -> float:
        if self.skip_scale is not None:
            return self.skip_scale
        return math.sqrt(max(0.0, 1.0 - self.branch_scale**2))

    @property
    def readout(self) -> str:
        return "linear"

    @property
    def label(self) -> str:
        return f"ResNet {self.activation} beta={self.branch_scale:.3g} L={self.depth} m={self.width}"


# Family.from_dict: the kinds by name (looked up late: the classes are defined below Family).
_KINDS = {"MLP": lambda: MLP, "ResNet": lambda: ResNet}
