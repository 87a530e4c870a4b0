"""Alignment (the backward-feature angle) against layer or depth: theory and samples.

For each depth L, the BFA theta_v at every hidden layer v = 1..L-1 of the family the flags
describe: its width limit (rmtalign.theory.bfa), the finite-width prediction where one exists
(rmtalign.theory.finite_width: MLPs and linear ResNets with balanced rates; not ReLU ResNets,
whose finite-width coefficient takes minutes: call theory.finite_width for them) and the mean and
standard error of --samples sampled networks (rmtalign.sample_bfa; --samples 0 for theory
only). Each (family, depth) is seeded by its content, point_seed(seed, family, "bfa-MODE"):
adding or reordering depths changes no other point.

Writes OUT/curve.csv (one row per depth and layer: cos and angle, sampled mean and SE, theory),
OUT/curve.json (every result in full) and OUT/curve.png (against layer for one depth, against
depth for several).

examples:
  rmtalign curve --family mlp --depth 64 --width 256 --samples 8
  rmtalign curve --family resnet --c 1 --alpha 0.5 --depths 16,64,256 --samples 0 --json
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..results import Result
from . import _common

_DEFAULT_DEPTHS = [32]


@dataclass(repr=False)
class AlignmentCurves(Result):
    """BFA curves of one family law at several depths: ``families[i]`` at ``depths[i]``, with
    its width-limit ``theory[i]`` (:class:`rmtalign.theory.TheoryBFA` or None), finite-width
    prediction ``finite[i]`` (:class:`rmtalign.theory.FiniteWidthBFA` or None) and samples
    ``sampled[i]`` (:class:`rmtalign.SampledBFA` or None). Table: one row per depth and layer."""

    mode: str
    seed: object
    depths: np.ndarray
    families: list
    theory: list
    finite: list
    sampled: list

    def __repr__(self) -> str:
        smp = next((s for s in self.sampled if s is not None), None)
        return (f"AlignmentCurves({self.families[0].label.rsplit(' L=', 1)[0]}, mode={self.mode!r}, "
                f"depths={list(map(int, self.depths))}, theory={self.theory[0] is not None}, "
                f"samples={0 if smp is None else len(smp.sample)})")

    def _table(self):
        cols = {k: [] for k in ("family", "depth", "width", "branch_scale", "layer", "samples",
                                "cos_mean", "cos_sem", "angle_deg_mean", "angle_deg_sem",
                                "cos_theory", "angle_deg_theory", "cos_theory_finite_width")}
        for fam, th, fw, smp in zip(self.families, self.theory, self.finite, self.sampled):
            layers = np.arange(1, fam.depth)
            n = layers.size
            nan = np.full(n, np.nan)
            cols["family"] += [type(fam).__name__.lower()] * n
            cols["depth"] += [fam.depth] * n
            cols["width"] += [fam.width] * n
            cols["branch_scale"] += [fam.branch_scale] * n
            cols["layer"] += list(layers)
            cols["samples"] += [0 if smp is None else len(smp.sample)] * n
            for q in ("cos", "angle_deg"):
                cols[f"{q}_mean"] += list(nan if smp is None else smp.mean(q))
                cols[f"{q}_sem"] += list(nan if smp is None else smp.sem(q))
            cols["cos_theory"] += list(nan if th is None else th.cos)
            cols["angle_deg_theory"] += list(nan if th is None else th.angle_deg)
            cols["cos_theory_finite_width"] += list(nan if fw is None else fw.cos)
        return cols


def add_arguments(p):
    _common.add_family_arguments(p, depth=_DEFAULT_DEPTHS, width=128, depths=True)
    g = p.add_argument_group("what to compute")
    g.add_argument("--samples", type=_common.int_type(0, what="a sample count"), default=8,
                   help="sampled networks per depth (default 8; 0: theory only)")
    g.add_argument("--no-theory", action="store_true", help="samples only (no width-limit curve)")
    g.add_argument("--mode", choices=("exact", "free"), default="exact",
                   help="exact: the real network (default); free: the random-matrix model of Lemma A.1")
    g.add_argument("--against", choices=("layer", "depth"), default=None,
                   help="the plot's x axis (default: layer for one depth, depth for several)")
    _common.add_common_arguments(p)


def _finite(fam):
    from ..families import ResNet
    from ..theory import finite_width

    if isinstance(fam, ResNet) and fam.activation == "relu":
        return None                            # minutes of probe neurons: not for a quick curve
    try:
        return finite_width(fam)
    except (NotImplementedError, ValueError):  # only some families and widths have one (MLPs,
        return None                            # balanced rates, m >= 16): the column stays empty


def compute(args) -> AlignmentCurves:
    """The curves the flags ask for (no files written)."""
    from .. import theory
    from ..sampling import sample_bfa
    from ..seeds import point_seed, seed_record

    if args.samples == 0 and args.no_theory:
        raise _common.UsageError("--samples 0 with --no-theory leaves nothing to compute")
    depths = sorted(set(args.depths))
    families = [_common.make_family(args, L) for L in depths]
    for fam in families:
        _common.check_output_angle_defined(fam, "--depths")
    grid = _common.seed_of(args)
    th, fw, smp = [], [], []
    with _common.progress_bar(args, sum(depths) * max(args.samples, 1), "curve", "layer") as bar:
        for fam in families:
            th.append(None if args.no_theory else theory.bfa(fam, mode=args.mode))
            fw.append(None if args.no_theory or args.mode != "exact" else _finite(fam))
            smp.append(None if args.samples == 0 else
                       sample_bfa(fam, args.samples, point_seed(grid, fam, f"bfa-{args.mode}"),
                                  mode=args.mode, progress=False))
            bar.update(fam.depth * max(args.samples, 1))
    return AlignmentCurves(args.mode, seed_record(grid), np.array(depths), families, th, fw, smp)


def _law(args):
    """The family's law in words (mathtext), the same at every depth: e.g. ``ResNet relu,
    β = c L^-α (c = 1, α = 0.5)``."""
    name = f"{'MLP' if args.family == 'mlp' else 'ResNet'} {args.activation}"
    if args.weights != "gaussian":
        name += f" {args.weights}"
    if args.family == "resnet":
        if args.branch_scale is not None:
            name += rf", $\beta$ = {args.branch_scale:g}"
        else:
            c = 1.0 if args.c is None else args.c
            alpha = 0.5 if args.alpha is None else args.alpha
            name += rf", $\beta = c\,L^{{-\alpha}}$ ($c$ = {c:g}, $\alpha$ = {alpha:g})"
    return name


def _plain(text):
    """Mathtext to plain text for the terminal summary."""
    for a, b in (("$\\beta = c\\,L^{-\\alpha}$", "beta = c L^-alpha"), ("$\\beta$", "beta"),
                 ("$\\alpha$", "alpha"), ("$c$", "c")):
        text = text.replace(a, b)
    return text


def _figure(res, against, law):
    alignment_curve = _common.plotting_function("alignment_curve")
    output_curve = _common.plotting_function("output_curve")
    if alignment_curve is None or output_curve is None:
        return None  # an older plotting module: CSV and JSON only
    if against == "layer":
        labels = [f"$L$ = {L}" for L in res.depths]
        sampled = {k: s for k, s in zip(labels, res.sampled) if s is not None} or None
        theory = {k: t for k, t in zip(labels, res.theory) if t is not None}
        # the finite-width prediction is for the sampled width: its label names it
        theory.update({f"{k}, $m$ = {f.family.width}": f for k, f in zip(labels, res.finite)
                       if f is not None})
        theory = theory or None
        fig, ax = alignment_curve(sampled=sampled, theory=theory, quantity="angle_deg")
    else:
        sampled = None if res.sampled[0] is None else res.sampled
        theory = None if res.theory[0] is None else [t.angle_deg[-1] for t in res.theory]
        fig, ax = output_curve(res.depths, sampled=sampled, theory=theory, quantity="angle_deg",
                               xlabel="depth $L$")  # the title names the law
        ax.set_xscale("log")
        ax.set_xticks(res.depths, [str(L) for L in res.depths])
        ax.minorticks_off()
        ax.set_ylim(0, 90)
    ax.set_title(f"{law}, $m$ = {res.families[0].width}, {res.mode} mode", fontsize=9)
    return fig


def run(args) -> int:
    out = _common.Output(args.out)
    res = compute(args)
    against = args.against or ("layer" if len(res.depths) == 1 else "depth")
    out.csv("curve.csv", res)
    out.json("curve.json", res)
    law = _law(args)
    fig = _figure(res, against, law)
    if fig is not None:
        out.png("curve.png", fig)
    lines = [f"{_plain(law)}, m = {args.width}, {res.mode} mode: output BFA theta_(L-1) in degrees"]
    for L, th, fw, smp in zip(res.depths, res.theory, res.finite, res.sampled):
        parts = [f"  L={L:<6d}"]
        if th is not None:
            parts.append(f"width limit {_common.fmt(th.angle_deg[-1], '.2f')}")
        if fw is not None:
            parts.append(f"finite width {_common.fmt(np.degrees(np.arccos(np.clip(fw.cos[-1], -1, 1))), '.2f')}")
        if smp is not None:
            parts.append(f"sampled {_common.fmt(smp.mean('angle_deg')[-1], '.2f')} "
                         f"+- {_common.fmt(smp.sem('angle_deg')[-1], '.2f')} ({len(smp.sample)} samples)")
        lines.append("  ".join(parts))
    return _common.report(args, out, {"result": res.to_dict()}, lines)
