"""Singular values of a layer-to-layer Jacobian df_stop/df_start: samples against theory.

Samples --samples networks (rmtalign.sample_jacobian: a QR accumulation on the log scale, so
depths of thousands neither overflow nor lose the small singular values) and compares the
squared singular values with their width limit (rmtalign.theory.jacobian_density and
jacobian_moments: exact for MLPs and linear networks; for ReLU ResNets with their own masks,
the free-mask approximation). Reported: the mean log sigma^2 and log condition number per
sample, the first two moments of sigma^2 sampled and in theory, and the Kolmogorov distance
between sampled and limiting laws (exact zeros, a ReLU mask's rank deficit, left out when the law
has an atom at 0).

Writes OUT/jacobian.csv (every log sigma^2), OUT/jacobian_theory.csv (the law on its grid),
OUT/jacobian.json (summary and results) and OUT/jacobian.png (histogram of log10 sigma^2
against the law).

example:
  rmtalign jacobian --family resnet --depth 64 --width 128 --start 1 --stop 63 --samples 4
"""
from __future__ import annotations

import numpy as np

from . import _common


def add_arguments(p):
    _common.add_family_arguments(p, depth=16, width=128)
    g = p.add_argument_group("what to compute")
    g.add_argument("--start", type=_common.int_type(1, what="a layer index"), default=1,
                   help="the Jacobian's input feature f_start (default 1)")
    g.add_argument("--stop", type=_common.int_type(2, what="a layer index"), default=None,
                   help="its output feature f_stop, start < stop <= L-1 (default L-1)")
    g.add_argument("--samples", type=_common.positive_int, default=4, help="sampled networks (default 4)")
    g.add_argument("--mode", choices=("exact", "free"), default="exact",
                   help="exact: the network's own masks (default); free: independent Bernoulli masks")
    _common.add_common_arguments(p)


def compute(args):
    """``(summary dict, SampledJacobian, Density)``."""
    from .. import theory
    from ..sampling import sample_jacobian
    from ..seeds import point_seed

    fam = _common.make_family(args, args.depth)
    L = fam.depth
    stop = L - 1 if args.stop is None else args.stop
    if not args.start < stop <= L - 1:
        raise _common.UsageError(f"--start/--stop need 1 <= start < stop <= L-1 = {L - 1} (--depth {L}); "
                                 f"got --start {args.start} --stop {stop}")
    seed = point_seed(_common.seed_of(args), fam, f"bfa-{args.mode}")
    smp = sample_jacobian(fam, args.start, stop, args.samples, seed, mode=args.mode,
                          progress=not args.quiet and None)
    law = theory.jacobian_density(fam, args.start, stop)
    m1, m2 = (float(x) for x in theory.jacobian_moments(fam, args.start, stop, order=2))
    s = smp.log_sq_singular_values
    finite = np.isfinite(s)
    # sigma^2 moments from the log values (no overflow): mean over each sample's m values
    with np.errstate(over="ignore"):
        mom = [np.mean(np.where(finite, np.exp(k * np.where(finite, s, 0.0)), 0.0), axis=1)
               for k in (1, 2)]
    ks = np.nan
    if np.all(np.abs(s[finite]) < 700):
        continuous = 0.0 in law.atoms
        ks = law.kolmogorov_distance(np.where(finite, np.exp(np.where(finite, s, 0.0)), 0.0),
                                     continuous=continuous)
    summary = {
        "family": fam, "mode": args.mode, "start": args.start, "stop": stop,
        "samples": len(smp.sample),
        "mean_log_sq_singular_value": [float(np.mean(r[np.isfinite(r)])) for r in s],
        "log_condition": smp.log_condition, "zero_fraction": float(1.0 - finite.mean()),
        "m1_sampled": float(np.mean(mom[0])), "m2_sampled": float(np.mean(mom[1])),
        "m1_theory": m1, "m2_theory": m2, "ks_distance": float(ks),
        "atoms_theory": law.atoms, "support_theory": law.support,
    }
    return summary, smp, law


def _figure(smp, law):
    jacobian_spectrum = _common.plotting_function("jacobian_spectrum")
    if jacobian_spectrum is None:
        return None
    fig, ax = jacobian_spectrum(smp, theory=law)
    ax.set_title(smp.family.label, fontsize=9)
    return fig


def run(args) -> int:
    out = _common.Output(args.out)
    summary, smp, law = compute(args)
    out.csv("jacobian.csv", smp)
    out.csv("jacobian_theory.csv", law)
    out.json("jacobian.json", {"summary": summary, "sampled": smp, "theory": law})
    fig = _figure(smp, law)
    if fig is not None:
        out.png("jacobian.png", fig)
    f = _common.fmt
    lines = [f"{smp.family.label}, {summary['samples']} samples, {smp.mode} mode: squared singular "
             f"values of df_{summary['stop']}/df_{summary['start']}",
             f"  E[sigma^2]   sampled {f(summary['m1_sampled'], '.5g')}  theory {f(summary['m1_theory'], '.5g')}",
             f"  E[sigma^4]   sampled {f(summary['m2_sampled'], '.5g')}  theory {f(summary['m2_theory'], '.5g')}",
             f"  log condition number per sample: "
             + " ".join(f(x, '.3g') for x in summary["log_condition"]),
             f"  exact zeros {f(summary['zero_fraction'], '.3f')}   Kolmogorov distance to the law "
             f"{f(summary['ks_distance'])}"]
    return _common.report(args, out, {"summary": summary, "sampled": smp, "theory": law}, lines)
