"""Hyper-parameter prescriptions: per-layer init scales and learning rates from the theory.

:func:`prescribe` turns a family (the architecture: depth, width, activation, branch scale, which
layers are trained) into a :class:`Prescription`: init stds, SGD and normalised-gradient learning
rates, the output multiplier, for one of four schemes (Sec. 5.5-5.6 of Chizat & Netrapalli):

* ``"sp"``: PyTorch's default ``nn.Linear`` init (std ``1/sqrt(3 fan_in)``) and one global
  learning rate, the baseline every user starts from;
* ``"ntk"``: (SP) init, output std ``1/sqrt(m |b_L|^2)`` (so ``|b_{L-1}|^2 = Theta(1)``), learning
  rates by Eq. (8);
* ``"mfmup"``: MF+muP (Jelassi et al.): (SP) init, mean-field output std ``1/(m |b_L|)``, balanced
  learning rates scaled together so that (FL) holds: the loss decay is then what is left over;
* ``"fsc"``: (SP) init, the output multiplier of Eq. (7) and the learning rates of Eq. (8).

Every number is exact in the width limit: the norms come from :func:`rmtalign.theory.mean_field`
and the output angle ``cos(theta_{L-1})`` from :func:`rmtalign.theory.bfa` (the network's own
masks), so that under ``"fsc"`` the loss decay is exactly ``loss_decay``, every trained layer
contributes exactly ``loss_decay / n`` and ``|fdot_{L-1}|_rms`` is exactly ``feature_speed`` as
``m -> infinity``. The derivation of every cell is in ``docs/prescriptions.md``.

Settings (Sec. 5.5): ``"dense"`` is the engine's own (``|x|^2 = d``, loss ``mean(f_L)`` so
``|b_L|^2 = 1/k``); ``"sparse"`` has ``|x| = |b_L| = 1`` (one-hot input, cross-entropy), which
is the dense setting with ``d = k = 1`` in every formula (PyTorch's fan-in init of ``"sp"`` keeps
the real ``d``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields

import numpy as np

from ._validate import check_choice, check_family, check_real
from .families import Family
from .results import Result

__all__ = ["prescribe", "Prescription", "SCHEMES", "SETTINGS", "SCHEMA_VERSION"]

SCHEMES = ("sp", "ntk", "mfmup", "fsc")
SETTINGS = ("dense", "sparse")
SCHEMA = "rmtalign.Prescription"
SCHEMA_VERSION = 1


@dataclass(frozen=True, repr=False)
class Prescription(Result):
    """Init scales and learning rates of one scheme for one family, per weight layer
    ``l = layers = 1..L``.

    ``init_std[l]``: entry std of ``W_l``. ``lr[l]``: SGD rate, ``delta W_l = -lr[l] dt grad_l``.
    ``lr_adam[l]``: rate of the normalised-gradient step ``delta W_l = -lr_adam[l] dt grad_l /
    |grad_l|_F`` (the paper's Adam-like rule; not elementwise Adam). ``output_multiplier``: the
    scalar ``alpha`` of the readout ``f_L = alpha W_L psi(f_{L-1})``. ``branch_scale``: the
    family's ``beta`` (1 for an MLP). Frozen layers have rate 0.

    ``grad_sq`` are the width-limit squared gradient norms under the prescription (``lr`` and
    ``lr_adam`` are derived from them), ``cos_output`` the width-limit ``cos(theta_{L-1})``,
    ``predicted_loss_decay`` and ``predicted_feature_speed`` the width-limit ``-dL/dt`` and
    ``|fdot_{L-1}|_rms`` of one step (the targets under ``"fsc"``; Prop. 5.3's failures under the
    other schemes). ``made_for`` is the family it was made for; :meth:`family` is the family that
    runs it.
    """

    made_for: Family
    scheme: str
    setting: str
    loss_decay: float
    feature_speed: float
    layers: np.ndarray
    init_std: np.ndarray
    lr: np.ndarray
    lr_adam: np.ndarray
    output_multiplier: float
    branch_scale: float
    grad_sq: np.ndarray
    cos_output: float
    predicted_loss_decay: float
    predicted_feature_speed: float

    # -- the family that runs it ---------------------------------------------------------------
    def family(self) -> Family:
        """The family that :func:`rmtalign.sample_bfa` runs as prescribed: the input family with
        these init stds, this output multiplier and these explicit learning rates (``lr``).

        Only the dense setting: the engine's input has norm ``sqrt(d)`` and its loss is
        ``mean(f_L)``. A sparse prescription has the numbers of the dense one with
        ``d = k = 1``: run ``prescribe(family.replace(in_dim=1, out_dim=1), scheme)``."""
        if self.setting != "dense":
            raise ValueError(
                "Prescription.family() runs the dense setting only (the engine's input has norm "
                "sqrt(d) and its loss is mean(f_L)); a sparse prescription is the dense one with "
                "d = k = 1: use prescribe(family.replace(in_dim=1, out_dim=1), scheme, 'dense')")
        return _apply(self.made_for, self.init_std, self.output_multiplier, self.lr)

    # -- the abc form --------------------------------------------------------------------------
    def abc(self, multipliers=None) -> dict:
        """The prescription as multiplier, init std and rate per layer (the abc form of muP).

        Layer ``l`` computes ``mu_l w_l (.)`` with a trained parameter ``w_l``. ``multipliers``
        (length ``L``) chooses ``mu``; the default is the prescription's own: the branch scales
        (1 for ``W_1``, ``beta`` inside) and ``output_multiplier`` at ``L``. The effective weight
        ``mu_l w_l`` and its step are the same for every choice: ``init_std = s_l / mu_l``,
        ``lr = eta_l / mu_l^2``, ``lr_adam = eta~_l / mu_l``, where ``s_l, eta_l, eta~_l`` are
        the effective std and rates of the default. The scale-invariant rules (Eq. 8 and its
        normalised variant) give exactly these rates when applied to ``w_l``'s own gradient
        (Prop. C.1), which is why the split does not matter.

        Returns a dict of arrays ``layers``, ``multiplier``, ``init_std``, ``lr``, ``lr_adam``.
        """
        own = self._multipliers()
        mu = own if multipliers is None else _check_multipliers(multipliers, own.size)
        eff_std = own * self.init_std
        eff_lr = own**2 * self.lr
        eff_adam = own * self.lr_adam
        return {"layers": self.layers.copy(), "multiplier": mu, "init_std": eff_std / mu,
                "lr": eff_lr / mu**2, "lr_adam": eff_adam / mu}

    def _multipliers(self) -> np.ndarray:
        mu = np.full(self.layers.size, self.branch_scale)
        mu[0] = 1.0
        mu[-1] = self.output_multiplier
        return mu

    # -- result protocol and JSON --------------------------------------------------------------
    def _table(self):
        return {"layer": self.layers, "init_std": self.init_std, "lr": self.lr,
                "lr_adam": self.lr_adam, "multiplier": self._multipliers(), "grad_sq": self.grad_sq}

    def to_json(self, **dumps_kwargs) -> str:
        """JSON text with ``schema`` and ``schema_version``; :meth:`from_json` reads it back to an
        equal prescription (floats round-trip exactly)."""
        data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **self.to_dict()}
        return json.dumps(data, **dumps_kwargs)

    @classmethod
    def from_json(cls, text) -> "Prescription":
        """The prescription written by :meth:`to_json` (schema version ``SCHEMA_VERSION``)."""
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a prescription: 'schema' must be {SCHEMA!r}, got {got!r}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"prescription schema_version must be {SCHEMA_VERSION} (this rmtalign "
                             f"reads version {SCHEMA_VERSION} only), got {version!r}")
        kw = {k: v for k, v in data.items() if k not in ("schema", "schema_version")}
        names = {f.name for f in fields(cls)}
        if set(kw) != names:
            raise ValueError(f"prescription JSON: missing fields {sorted(names - set(kw))}, "
                             f"unknown fields {sorted(set(kw) - names)}")
        kw["made_for"] = Family.from_dict(kw["made_for"])
        kw["layers"] = np.asarray(kw["layers"], dtype=np.int64)
        for name in ("init_std", "lr", "lr_adam", "grad_sq"):
            kw[name] = np.asarray(kw[name], dtype=np.float64)
        for name in ("loss_decay", "feature_speed", "output_multiplier", "branch_scale",
                     "cos_output", "predicted_loss_decay", "predicted_feature_speed"):
            kw[name] = float("nan") if kw[name] is None else float(kw[name])  # NaN is written null
        return cls(**kw)

    def __eq__(self, other):
        if not isinstance(other, Prescription):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # holds arrays


# --------------------------------------------------------------------------- derivation
def _apply(family, stds, alpha, lr=None):
    """``family`` with per-layer stds (uniform hidden), output multiplier and explicit rates
    (``lr=None``: the balanced rule, Eq. 8 with unit loss decay)."""
    return family.replace(input_std=float(stds[0]), hidden_std=float(stds[1]),
                          output_std=float(stds[-1]), output_multiplier=float(alpha),
                          lr_rule="balanced",
                          lr_values=None if lr is None else tuple(float(v) for v in lr))


def _check_multipliers(multipliers, n):
    mu = np.asarray(multipliers, dtype=np.float64)
    if mu.shape != (n,) or not np.all(np.isfinite(mu)) or np.any(mu <= 0):
        raise ValueError(f"multipliers must be {n} finite positive numbers (one per weight layer), "
                         f"got {multipliers!r}")
    return mu


def _signal_stds(engine, scheme, in_dim):
    """Input and hidden stds: PyTorch's fan-in default for ``"sp"``, (SP) otherwise."""
    m = engine.width
    if scheme == "sp":  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1/(3 fan_in)
        return 1.0 / math.sqrt(3.0 * in_dim), 1.0 / math.sqrt(3.0 * m)
    # (SP): |f_1|^2 = m s_1^2 |x|^2 = m, and each layer keeps |f|^2: a^2 + beta^2 m s^2 h = 1
    a, beta, h = engine.skip, engine.branch_scale, float(engine.phi.gain)
    if a * a >= 1.0 or beta == 0.0:
        raise ValueError(f"(SP) needs a^2 < 1 and beta != 0 to keep |f_l| constant, got "
                         f"skip a = {a!r}, branch_scale beta = {beta!r}")
    return 1.0 / math.sqrt(engine.in_dim), math.sqrt((1.0 - a * a) / (beta * beta * m * h))


def prescribe(family, scheme="fsc", setting="dense", *, loss_decay=1.0,
              feature_speed=1.0) -> Prescription:
    """Per-layer init stds and learning rates of ``scheme`` for ``family``.

    Parameters
    ----------
    family : MLP or ResNet
        The architecture: depth, width, activation, weights, branch scale and skip, ``in_dim``,
        ``out_dim``, and ``trained`` (the ``n`` trained layers share the loss decay; the default
        leaves ``W_1`` frozen). Its own stds, output multiplier and rate rule are replaced.
    scheme : {"sp", "ntk", "mfmup", "fsc"}
    setting : {"dense", "sparse"}
        Dense: ``|x|^2 = d``, ``|b_L|^2 = 1/k`` (the engine's). Sparse: ``|x| = |b_L| = 1``.
    loss_decay : float
        Target ``-dL/dt`` of one GD step (``"ntk"``, ``"fsc"``, and the global rate of ``"sp"``).
    feature_speed : float
        Target ``|fdot_{L-1}|_rms`` (``"mfmup"``, ``"fsc"``).

    Notes
    -----
    Under ``"fsc"`` the width limit has (SP) ``|f_v|_rms = 1``, (LD) ``-dL/dt = loss_decay``,
    (BC) every trained layer contributing ``loss_decay / n``, and (FL) ``|fdot_{L-1}|_rms =
    feature_speed``, exactly. Cost: one :func:`rmtalign.theory.bfa` (O(L log L)).
    """
    from .theory import bfa, mean_field

    check_family(family)
    check_choice("scheme", scheme, SCHEMES)
    check_choice("setting", setting, SETTINGS)
    T = check_real("loss_decay", loss_decay, low=0.0, low_open=True)
    S = check_real("feature_speed", feature_speed, low=0.0, low_open=True)
    # Sparse = dense with d = k = 1 in every formula: |x|^2 = d and |b_L|^2 = 1/k in the engine.
    engine = family if setting == "dense" else family.replace(in_dim=1, out_dim=1)
    L, m = family.depth, family.width
    mask = family.trained_mask
    n, n_below = int(mask.sum()), int(mask[:-1].sum())
    h_out = float(family.psi.gain)
    b_out_sq = 1.0 / engine.out_dim

    s_in, s_hid = _signal_stds(engine, scheme, family.in_dim)
    # Balanced rates on (SP) stds give every trained layer the same BFK weight c_l = (1/n)/B (B
    # is constant over depth), as the ntk/mfmup/fsc rates do: the output angle of the prescribed
    # network, whatever its output scale (it only scales every c_l together).
    base = _apply(engine, [s_in] + [s_hid] * (L - 2) + [1.0 / math.sqrt(m)], 1.0)
    cos = float(bfa(base).cos[-1]) if n_below else float("nan")

    alpha = 1.0
    if scheme == "sp":
        s_out = 1.0 / math.sqrt(3.0 * m)
    elif scheme == "ntk":  # |b_{L-1}|^2 = m s_L^2 h_psi |b_L|^2 = h_psi
        s_out = 1.0 / math.sqrt(m * b_out_sq)
    elif scheme == "mfmup":  # mean-field readout: |b_{L-1}|^2 = h_psi / m
        s_out = 1.0 / (m * math.sqrt(b_out_sq))
    else:  # fsc: Eq. (7), sqrt(m |b_{L-1}|^2) = alpha s_L m sqrt(h_psi |b_L|^2) = Lambda_{<L}/(S cos)
        if not n_below:
            raise ValueError("scheme 'fsc' needs a trained layer below L (feature learning at "
                             f"f_{{L-1}}); family.trained = {family.trained!r}")
        s_out = 1.0 / math.sqrt(m)  # fan-in init; the multiplier carries Eq. (7)
        alpha = T * n_below / (n * S * cos * m * math.sqrt(h_out * b_out_sq)) / s_out

    stds = np.array([s_in] + [s_hid] * (L - 2) + [s_out])
    shaped = _apply(engine, stds, alpha)
    mf = mean_field(shaped)  # width-limit norms under the final stds and multiplier
    grad_sq = mf.grad_sq
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if scheme == "sp":  # one global rate with loss decay T (and one global normalised rate)
            lr = np.where(mask, T / grad_sq[mask].sum(), 0.0)
            lr_adam = np.where(mask, T / np.sqrt(grad_sq[mask]).sum(), 0.0)
        else:
            if scheme == "mfmup":  # equal shares, scaled for (FL): Lambda_{<L} = S cos m |b_{L-1}|_rms
                if not n_below:
                    raise ValueError("scheme 'mfmup' needs a trained layer below L (it sets the rates "
                                     "by the feature speed of f_{L-1}); family.trained = "
                                     f"{family.trained!r}")
                share = S * cos * math.sqrt(m * mf.backward_sq[L - 2]) / n_below
            else:  # (LD) + (BC): Eq. (8)
                share = T / n
            lr = np.where(mask, share / grad_sq, 0.0)
            lr_adam = np.where(mask, share / np.sqrt(grad_sq), 0.0)
    if not np.all(np.isfinite(lr)) or not np.all(np.isfinite(lr_adam)):
        raise FloatingPointError(f"the width-limit gradient norms of {family.label} under scheme "
                                 f"{scheme!r} leave float64's range: the network vanishes or explodes")

    # The prediction, by the engine's own width limit: loss decay and feature speed of one step.
    run = _apply(engine, stds, alpha, lr)
    mf_run = mean_field(run)
    decay = mf_run.lr * mf_run.grad_sq
    cos_run = float(bfa(run).cos[-1]) if n_below else float("nan")
    speed = float(decay[:-1].sum() / (cos_run * math.sqrt(m * mf_run.backward_sq[L - 2]))) \
        if n_below else 0.0
    return Prescription(family, scheme, setting, T, S, np.arange(1, L + 1), stds, lr, lr_adam,
                        float(alpha), float(family.branch_scale), grad_sq, cos_run,
                        float(decay.sum()), speed)
