"""Depth limits of the BFA and the (alpha, c) phase diagram of ResNets (width limit).

For variance-preserving ResNets with branch scale beta = c L^-alpha: the L -> infinity limit of
cos(theta) at depth fraction --position for each alpha (rmtalign.theory.depth_limit: regime
trivial, critical or degenerate, the rate of convergence and the closed form), and the output
cos(theta_(L-1)) at finite depths --depths next to that limit (rmtalign.theory.phase_diagram,
NaN where beta > 1). Theory only: no sampling, no seed.

Writes OUT/limit.csv (one row per alpha: the depth limit), OUT/phase_diagram.csv (alpha,
depth, cos; the limit as rows with depth = inf), OUT/limit.json and OUT/phase_diagram.png.

examples:
  rmtalign limit --c 1 --alphas 0.25,0.5,0.75
  rmtalign limit --c 2 --alphas 0:1:21 --depths 100,1000,10000 --json
"""
from __future__ import annotations

import argparse

import numpy as np

from . import _common


def _alphas(text):
    """Comma-separated values in [0, 1], or ``start:stop:count`` (an even grid)."""
    unit = _common.real_type(0.0, 1.0)
    if text.count(":") == 2:
        a, b, n = text.split(":")
        try:
            lo, hi, num = unit(a), unit(b), _common.int_type(1)(n)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected START:STOP:COUNT with START, STOP in [0, 1] and COUNT >= 1, got {text!r}") from None
        return list(np.linspace(lo, hi, num))
    return _common.list_type(unit, "numbers in [0, 1]")(text)


def add_arguments(p):
    g = p.add_argument_group("the ResNets beta = c L^-alpha")
    g.add_argument("--alphas", "--alpha", dest="alphas", type=_alphas, default=[0.25, 0.5, 0.75],
                   metavar="A[,A...]|START:STOP:N",
                   help="exponents alpha in [0, 1] (default 0.25,0.5,0.75); START:STOP:N for a grid")
    g.add_argument("--c", type=_common.real_type(0.0, low_open=True), default=1.0,
                   help="the constant c > 0 (default 1)")
    g.add_argument("--activation", choices=("relu", "linear"), default="relu")
    g.add_argument("--weights", choices=("gaussian", "orthogonal"), default="gaussian")
    g.add_argument("--mode", choices=("exact", "free"), default="exact",
                   help="the network's own ReLU masks (default) or the free model")
    g.add_argument("--position", type=_common.real_type(0.0, 1.0, low_open=True), default=1.0,
                   help="depth fraction s = v/L of the limit, in (0, 1] (default 1: the output)")
    g.add_argument("--depths", type=_common.depths_type, default=[100, 1000, 10000],
                   metavar="L[,L...]", help="finite depths of the phase diagram (default 100,1000,10000)")
    _common.add_common_arguments(p, seed=False)


def compute(args):
    """``(list of DepthLimit, PhaseDiagram)``."""
    from .. import theory

    alphas = sorted(set(float(a) for a in args.alphas))
    limits = [theory.depth_limit(a, args.c, args.activation, args.weights, args.mode, args.position)
              for a in alphas]
    diagram = theory.phase_diagram(alphas, args.c, sorted(set(args.depths)), args.activation,
                                   args.weights, args.mode)
    return limits, diagram


def _limits_table(limits):
    """One row per alpha (``rate``/``cos_spectrum`` empty where the limit has none)."""
    def num(x):
        return np.nan if x is None else float(x)

    return {"alpha": [lim.alpha for lim in limits], "c": [lim.c for lim in limits],
            "position": [lim.position for lim in limits], "regime": [lim.regime for lim in limits],
            "cos": [lim.cos for lim in limits], "angle_deg": [lim.angle_deg for lim in limits],
            "cos_spectrum": [num(lim.cos_spectrum) for lim in limits],
            "rate": [num(lim.rate) for lim in limits], "formula": [lim.formula for lim in limits]}


def _figure(diagram):
    phase_diagram = _common.plotting_function("phase_diagram")
    if phase_diagram is None:
        return None
    fig, ax = phase_diagram(diagram)
    ax.set_title(f"{diagram.activation}, {diagram.weights} weights, {diagram.mode} masks", fontsize=9)
    return fig


def run(args) -> int:
    out = _common.Output(args.out)
    limits, diagram = compute(args)
    out.csv("limit.csv", _limits_table(limits))
    out.csv("phase_diagram.csv", diagram)
    out.json("limit.json", {"limits": limits, "phase_diagram": diagram})
    fig = _figure(diagram)
    if fig is not None:
        out.png("phase_diagram.png", fig)
    f = _common.fmt
    head = "  alpha   regime      limit cos  angle   " + "  ".join(f"L={L:<7d}" for L in diagram.depths)
    lines = [f"ResNets beta = {args.c:g} L^-alpha, {args.activation}, {args.weights} weights, "
             f"{args.mode} masks: cos(theta) at depth fraction {args.position:g}"
             + ("" if args.position == 1.0 else " (the finite-L columns are the output layer's)"), head]
    for j, lim in enumerate(limits):
        rate = "" if lim.rate is None else f"  rate L^-{lim.rate:g}"
        lines.append(f"  {lim.alpha:<6.3g}  {lim.regime:<10s}  {f(lim.cos):>9s}  {f(lim.angle_deg, '.2f'):>6s}   "
                     + "  ".join(f"{f(c):<9s}" for c in diagram.cos[:, j]) + rate)
    return _common.report(args, out, {"limits": limits, "phase_diagram": diagram}, lines)
