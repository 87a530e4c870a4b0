"""Depth limits of the BFA and the (alpha, c) phase diagram of ResNets (width limit).

For variance-preserving ResNets with branch scale beta = c L^-alpha: the L -> infinity limit of
cos(theta) at depth fraction --position for each alpha (rmtalign.theory.depth_limit: regime
trivial, critical or degenerate, the rate of convergence and the closed form), and the output
cos(theta_(L-1)) at finite depths --depths next to that limit (rmtalign.theory.phase_diagram,
NaN where beta > 1). Theory only: no sampling, no seed.

Several values of --c span the (alpha, c) plane: one depth limit per (c, alpha) and one phase
diagram per c. Writes OUT/limit.csv (one row per c and alpha: the depth limit),
OUT/phase_diagram.csv (c, alpha, depth, cos; the limit as rows with depth = inf), OUT/limit.json
and OUT/phase_diagram.png (one panel per c).

examples:
  rmtalign limit --c 1 --alphas 0.25,0.5,0.75
  rmtalign limit --c 0.5,1,2 --alphas 0:1:21 --depths 100,1000,10000 --json
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
    g.add_argument("--c", type=_common.list_type(_common.real_type(0.0, low_open=True), "numbers > 0"),
                   default=[1.0], metavar="C[,C...]",
                   help="the constant c > 0, or several: the (alpha, c) plane (default 1)")
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
    """``(list of DepthLimit over c then alpha, list of PhaseDiagram, one per c)``."""
    from .. import theory

    alphas = sorted(set(float(a) for a in args.alphas))
    cs = sorted(set(args.c))
    limits = [theory.depth_limit(a, c, args.activation, args.weights, args.mode, args.position)
              for c in cs for a in alphas]
    diagrams = [theory.phase_diagram(alphas, c, sorted(set(args.depths)), args.activation,
                                     args.weights, args.mode) for c in cs]
    return limits, diagrams


def _diagrams_table(diagrams):
    """The phase diagrams' tables stacked, with a column ``c``."""
    tables = [d.to_table() for d in diagrams]
    cols = {"c": np.concatenate([np.full(len(t["alpha"]), d.c) for d, t in zip(diagrams, tables)])}
    for k in tables[0]:
        cols[k] = np.concatenate([t[k] for t in tables])
    return cols


def _limits_table(limits):
    """One row per alpha (``rate``/``cos_spectrum`` empty where the limit has none)."""
    def num(x):
        return np.nan if x is None else float(x)

    return {"alpha": [lim.alpha for lim in limits], "c": [lim.c for lim in limits],
            "position": [lim.position for lim in limits], "regime": [lim.regime for lim in limits],
            "cos": [lim.cos for lim in limits], "angle_deg": [lim.angle_deg for lim in limits],
            "cos_spectrum": [num(lim.cos_spectrum) for lim in limits],
            "rate": [num(lim.rate) for lim in limits], "formula": [lim.formula for lim in limits]}


def _figure(diagrams):
    phase_diagram = _common.plotting_function("phase_diagram")
    if phase_diagram is None:
        return None
    from matplotlib.figure import Figure

    n = len(diagrams)
    fig = Figure(figsize=(5.6 * min(n, 3), 4.2 * -(-n // 3)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-n // 3), min(n, 3))).ravel()
    for ax, d in zip(axes, diagrams):
        phase_diagram(d, ax=ax)
    for ax in axes[n:]:
        ax.set_visible(False)
    d = diagrams[0]
    fig.suptitle(f"ResNets, {d.activation}, {d.weights} weights, {d.mode} masks", fontsize=10)
    return fig


def run(args) -> int:
    out = _common.Output(args.out)
    limits, diagrams = compute(args)
    out.csv("limit.csv", _limits_table(limits))
    out.csv("phase_diagram.csv", _diagrams_table(diagrams))
    out.json("limit.json", {"limits": limits, "phase_diagrams": diagrams})
    fig = _figure(diagrams)
    if fig is not None:
        out.png("phase_diagram.png", fig)
    f = _common.fmt
    depths = diagrams[0].depths
    lines = [f"ResNets beta = c L^-alpha, {args.activation}, {args.weights} weights, {args.mode} masks: "
             f"cos(theta) at depth fraction {args.position:g}"
             + ("" if args.position == 1.0 else " (the finite-L columns are the output layer's)"),
             "  c       alpha   regime      limit cos  angle   " + "  ".join(f"L={L:<7d}" for L in depths)]
    na = diagrams[0].alphas.size
    for i, lim in enumerate(limits):
        d = diagrams[i // na]
        rate = "" if lim.rate is None else f"  rate L^-{lim.rate:g}"
        lines.append(f"  {lim.c:<6.3g}  {lim.alpha:<6.3g}  {lim.regime:<10s}  {f(lim.cos):>9s}  "
                     f"{f(lim.angle_deg, '.2f'):>6s}   "
                     + "  ".join(f"{f(c):<9s}" for c in d.cos[:, i % na]) + rate)
    return _common.report(args, out, {"limits": limits, "phase_diagrams": diagrams}, lines)
