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

import math
import numbers
from dataclasses import dataclass, field, fields, replace

import numpy as np

__all__ = ["MLP", "ResNet", "Family"]

_ACTIVATIONS = ("relu", "linear")
_WEIGHTS = ("gaussian", "orthogonal")
_LR_RULES = ("balanced", "uniform")
_INPUTS = ("fixed", "random")
_TRAINED = ("all-but-first", "all")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name, value, *, low=None, high=None, low_open=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return value


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


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
    weights : {"gaussian", "orthogonal"}
        iid ``N(0, std^2)`` entries (H1), or Haar (semi-)orthogonal matrices scaled so that the
        entries have the same second moment.
    hidden_std : float, optional
        Std of the hidden weights ``W_2 .. W_{L-1}``; default ``sqrt(2/m)`` for ReLU (He),
        ``sqrt(1/m)`` for linear.
    input_std, output_std : float, optional
        Std of ``W_1`` and ``W_L``; defaults ``1/sqrt(d)`` and ``1/sqrt(m)``.
    trained : {"all-but-first", "all"} or sequence of int
        Which weight matrices the gradient step updates. The default leaves ``W_1`` frozen,
        as in the paper's figures.
    lr : {"balanced", "uniform"}
        ``"balanced"``: ``eta_l = 1 / (n ||grad_l||^2)`` over the ``n`` trained layers, so every
        trained layer contributes ``1/n`` to the loss decay (Eq. 8). ``"uniform"``: one common
        ``eta`` chosen so that the total loss decay is 1.
    input : {"fixed", "random"}
        ``"fixed"``: ``x = (1, .., 1)``; ``"random"``: a Gaussian direction drawn from the seed.
        Both have norm ``sqrt(d)`` (unit RMS).
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
    lr: str = "balanced"
    input: str = "fixed"

    def __post_init__(self):
        s = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731  (frozen dataclass)
        s("depth", _check_int("depth", self.depth, 3))
        s("width", _check_int("width", self.width, 1))
        s("in_dim", _check_int("in_dim", self.in_dim, 1))
        s("out_dim", _check_int("out_dim", self.out_dim, 1))
        _check_choice("activation", self.activation, _ACTIVATIONS)
        _check_choice("weights", self.weights, _WEIGHTS)
        _check_choice("lr", self.lr, _LR_RULES)
        _check_choice("input", self.input, _INPUTS)
        for name in ("hidden_std", "input_std", "output_std"):
            s(name, _check_real(name, getattr(self, name), low=0.0, low_open=True, allow_none=True))
        s("trained", self._normalise_trained(self.trained))

    def _normalise_trained(self, trained):
        if isinstance(trained, str):
            return _check_choice("trained", trained, _TRAINED)
        try:
            layers = tuple(sorted({_check_int("trained layer", v, 1) for v in trained}))
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
            hid = math.sqrt((2.0 if self.activation == "relu" else 1.0) / m)
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
        """Multiplier of ``W_l phi(f_{l-1})`` for every layer: 1 at ``l = 1, L``, beta inside."""
        out = np.full(self.depth, self.branch_scale)
        out[0] = out[-1] = 1.0
        return out

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
        return replace(self, **changes)

    def to_dict(self) -> dict:
        out = {"family": type(self).__name__}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


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
        Family.__init__(self, depth, width, *args, **kwargs)

    def __post_init__(self):
        super().__post_init__()
        skip = _check_real("skip_scale", self.skip_scale, allow_none=True)
        if skip is None:
            beta = _check_real("branch_scale", self.branch_scale, low=0.0)
            if beta > 1.0:
                raise ValueError(f"branch_scale must be <= 1 (so that a = sqrt(1 - beta^2) exists) "
                                 f"unless skip_scale is given; got {beta!r}")
        else:
            beta = _check_real("branch_scale", self.branch_scale)
        object.__setattr__(self, "branch_scale", beta)
        object.__setattr__(self, "skip_scale", skip)

    @classmethod
    def scaled(cls, depth, width, c, alpha=0.5, **kwargs) -> "ResNet":
        """ResNet with ``beta = c * depth**(-alpha)``."""
        c = _check_real("c", c, low=0.0)
        alpha = _check_real("alpha", alpha)
        depth = _check_int("depth", depth, 3)
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
