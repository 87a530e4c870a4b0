"""The ``rmtalign`` command.

``rmtalign depth-curves``: sampled BFA-vs-depth curves for an iid ReLU MLP and ResNets with branch
scale ``1/sqrt(L)`` and ``1/L``, written as CSV and PNG.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

_KINDS = {
    "mlp": ("MLP (beta=1)", lambda L, m: _families().MLP(L, m)),
    "resnet-sqrt": ("ResNet beta=1/sqrt(L)", lambda L, m: _families().ResNet.scaled(L, m, 1.0, 0.5)),
    "resnet-lin": ("ResNet beta=1/L", lambda L, m: _families().ResNet.scaled(L, m, 1.0, 1.0)),
}


def _families():
    from . import families

    return families


def _positive_ints(text):
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _depth_curves_table(curves, args) -> dict:
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


def depth_curves(args) -> int:
    from tqdm.auto import tqdm

    from . import theory
    from .plotting import plot_depth_curves
    from .results import write_csv
    from .sampling import sample_bfa
    from .seeds import point_seed, resolve_seed

    depths = sorted(set(args.depths))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid_seed, _ = resolve_seed(args.seed)
    curves = {}
    t0 = time.perf_counter()
    with tqdm(total=sum(depths) * len(args.kinds) * args.samples, unit="layer", desc="depth-curves",
              disable=args.quiet) as bar:
        for kind in args.kinds:
            label, make = _KINDS[kind]
            results = []
            for L in depths:
                bar.set_postfix_str(f"{kind} L={L}")
                fam = make(L, args.width)
                # seeded by content: reordering or extending --kinds/--depths changes no point
                results.append(sample_bfa(fam, samples=args.samples,
                                          seed=point_seed(grid_seed, fam, "bfa-exact")))
                bar.update(L * args.samples)
            curves[label] = {"kind": kind, "depths": np.array(depths), "results": results,
                             "theory": [theory.bfa(r.family).cos for r in results]}

    csv_path = write_csv(out / "depth_curves.csv", _depth_curves_table(curves, args))
    fig, _ = plot_depth_curves(curves, title=f"Backward-feature angle at init, width m={args.width}, "
                                             f"{args.samples} samples")
    png_path = out / "depth_curves.png"
    fig.savefig(png_path, dpi=130)
    print(f"wrote {csv_path} and {png_path} in {time.perf_counter() - t0:.1f} s")
    for label, c in curves.items():
        last = [r.mean("angle_deg")[-1] for r in c["results"]]
        print(f"  {label:24s} output BFA (deg) at L={depths[0]}..{depths[-1]}: "
              + " ".join(f"{a:.1f}" for a in last))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rmtalign", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("depth-curves", help="sampled BFA-vs-depth curves (CSV + PNG)")
    p.add_argument("--depths", type=_positive_ints, default=[4, 8, 16, 32, 64, 128, 256],
                   help="comma-separated depths L (default 4,8,...,256)")
    p.add_argument("--width", type=int, default=512, help="hidden width m (default 512)")
    p.add_argument("--samples", type=int, default=8, help="samples per depth (default 8)")
    p.add_argument("--kinds", type=lambda s: s.split(","), default=list(_KINDS),
                   help=f"comma-separated among {','.join(_KINDS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "depth-curves":
        bad = [k for k in args.kinds if k not in _KINDS]
        if bad:
            parser.error(f"--kinds: unknown {bad}; choose among {list(_KINDS)}")
        if args.width < 1 or args.samples < 1:
            parser.error("--width and --samples must be positive")
        if min(args.depths) < 3:
            parser.error(f"--depths must be >= 3, got {min(args.depths)}")
        if args.seed < 0:
            parser.error(f"--seed must be a non-negative integer, got {args.seed}")
        args.kinds = list(dict.fromkeys(args.kinds))
        return depth_curves(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
