"""The paper's figures (and more), with the theory drawn over the samples.

rmtalign.figures.make_figures: Fig. 1 of Chizat & Netrapalli (the BFA against layer, the output
BFA against depth and against the normalised branch scale, MLPs and ResNets), Fig. 2
(sensitivity against depth under NTK, MF+muP and FSC), and beyond the paper: BFK spectral
densities, Jacobian spectra, the (alpha, c) phase diagram and the width-then-depth convergence.
Every PNG comes with the CSV behind it (OUT/NAME.png, OUT/NAME.csv), each written as soon as its
figure is done: an interrupted run keeps the figures it finished, never a partial file. The
default sizes take under 2 minutes on 2 cores; --paper uses the paper's (Fig. 1 at width 200
with depths up to 1024, Fig. 2 at width 400; about 5 minutes).

examples:
  rmtalign figures --out figures
  rmtalign figures --only fig1a_bfa_layer,phase_diagram --out figures
"""
from __future__ import annotations

from . import _common


def add_arguments(p):
    p.add_argument("--paper", action="store_true", help="the paper's sizes (slower)")
    p.add_argument("--only", type=_common.list_type(str, "figure names"), default=None,
                   metavar="NAME[,NAME...]",
                   help="only these figures, comma-separated (default all): fig1a_bfa_layer, "
                        "fig1b_output_depth, fig1c_output_scale, fig2a_sensitivity_mlp, "
                        "fig2b_sensitivity_resnet, bfk_spectra, jacobian_spectra, phase_diagram, "
                        "width_convergence")
    _common.add_common_arguments(p, out="figures")


def run(args) -> int:
    from ..figures import FIGURES, make_figures

    if args.only is not None:
        bad = [n for n in args.only if n not in FIGURES]
        if bad:
            raise _common.UsageError(f"--only: unknown figure {bad[0]!r}; choose among {', '.join(FIGURES)}")
    out = _common.Output(args.out)
    paths = make_figures(out.folder, paper=args.paper, only=args.only, seed=args.seed,
                         progress=not args.quiet and None)
    out.written.extend(str(p) for p in paths)
    return _common.report(args, out, {"paper": args.paper, "only": args.only, "seed": args.seed},
                          [f"{len(paths)} files ({'paper' if args.paper else 'default'} sizes)"])
