"""Sampled BFA against depth for an iid ReLU MLP and ResNets with beta = 1/sqrt(L) and 1/L.

The original job of rmtalign (the README's first command): at each depth of --depths, --samples
networks of each family of --kinds (mlp: beta = 1; resnet-sqrt: beta = 1/sqrt(L); resnet-lin:
beta = 1/L), beside the width limit rmtalign.theory.bfa(family).cos. Each (family, depth) is
sampled with point_seed(seed, family, "bfa-exact"), so changing --depths or --kinds leaves the
other points' numbers unchanged. For other families, modes or the theory alone, see
'rmtalign curve'.

Writes OUT/depth_curves.csv (family, branch_scale, depth, width, layer, samples, cos_mean,
cos_sem, angle_deg_mean, angle_deg_sem, cos_theory_width_limit; full precision, empty cells for
NaN) and OUT/depth_curves.png, and prints the output-layer angle of each curve.

example:
  rmtalign depth-curves --depths 4,8,16,32 --width 128 --samples 4 --out results
"""
from __future__ import annotations

import numpy as np

from . import _common

_KINDS = {
    "mlp": ("MLP (beta=1)", lambda L, m: _families().MLP(L, m)),
    "resnet-sqrt": ("ResNet beta=1/sqrt(L)", lambda L, m: _families().ResNet.scaled(L, m, 1.0, 0.5)),
    "resnet-lin": ("ResNet beta=1/L", lambda L, m: _families().ResNet.scaled(L, m, 1.0, 1.0)),
}


def _families():
    from .. import families

    return families


def add_arguments(p):
    p.add_argument("--depths", type=_common.list_type(_common.int_type(4, what="integer depths"),
                                                      "integer depths >= 4"),
                   default=[4, 8, 16, 32, 64, 128, 256], metavar="L[,L...]",
                   help="comma-separated depths L >= 4 (default 4,8,...,256; at L = 3 the output "
                        "feature has one trained layer below it and its BFA is 0 by construction)")
    p.add_argument("--width", type=_common.positive_int, default=512, help="hidden width m (default 512)")
    p.add_argument("--samples", type=_common.positive_int, default=8, help="samples per depth (default 8)")
    p.add_argument("--kinds", type=_common.choice_list_type(tuple(_KINDS)), default=list(_KINDS),
                   help=f"comma-separated among {','.join(_KINDS)} (default all)")
    _common.add_common_arguments(p)


def _table(curves, args) -> dict:
    cols = {k: [] for k in ("family", "branch_scale", "depth", "width", "layer", "samples",
                            "cos_mean", "cos_sem", "angle_deg_mean", "angle_deg_sem",
                            "cos_theory_width_limit")}
    for c in curves.values():
        for L, r, th in zip(c["depths"], c["results"], c["theory"]):
            n = len(r.layers)
            for name, vals in (("family", [c["kind"]] * n), ("branch_scale", [r.family.branch_scale] * n),
                               ("depth", [L] * n), ("width", [args.width] * n), ("layer", r.layers),
                               ("samples", [args.samples] * n), ("cos_mean", r.mean("cos")),
                               ("cos_sem", r.sem("cos")), ("angle_deg_mean", r.mean("angle_deg")),
                               ("angle_deg_sem", r.sem("angle_deg")), ("cos_theory_width_limit", th)):
                cols[name].extend(vals)
    return cols


def compute(args) -> dict:
    from .. import theory
    from ..sampling import sample_bfa
    from ..seeds import point_seed

    depths = sorted(set(args.depths))
    grid = _common.seed_of(args)
    curves = {}
    with _common.progress_bar(args, sum(depths) * len(args.kinds) * args.samples, "depth-curves",
                              "layer") as bar:
        for kind in args.kinds:
            label, make = _KINDS[kind]
            results = []
            for L in depths:
                bar.set_postfix_str(f"{kind} L={L}")
                fam = make(L, args.width)
                # seeded by content: reordering or extending --kinds/--depths changes no point
                results.append(sample_bfa(fam, samples=args.samples,
                                          seed=point_seed(grid, fam, "bfa-exact"), progress=False))
                bar.update(L * args.samples)
            curves[label] = {"kind": kind, "depths": np.array(depths), "results": results,
                             "theory": [theory.bfa(r.family).cos for r in results]}
    return curves


def run(args) -> int:
    from ..plotting import depth_curves as plot_depth_curves

    out = _common.Output(args.out)
    curves = compute(args)
    table = _table(curves, args)
    out.csv("depth_curves.csv", table)
    fig, _ = plot_depth_curves(curves, title=f"Backward-feature angle at init, width $m$ = {args.width}, "
                                             f"{args.samples} samples")
    out.png("depth_curves.png", fig)
    depths = sorted(set(args.depths))
    lines = []
    for label, c in curves.items():
        last = [r.mean("angle_deg")[-1] for r in c["results"]]
        lines.append(f"  {label:24s} output BFA (deg) at L={depths[0]}..{depths[-1]}: "
                     + " ".join(f"{a:.1f}" for a in last))
    return _common.report(args, out, {"table": table}, lines)
