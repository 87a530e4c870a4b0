"""Validate the prescriptions by the sampler: (SP), (FL), (LD), (BC) at init, measured by
``sample_bfa`` on ``Prescription.family()`` across widths and depths, and their fitted exponents.

For every architecture (ReLU MLP, ReLU ResNet with beta = 1/sqrt(L); every layer trained), every
scheme (ntk, mfmup, fsc) and every (m, L) of the grid, ``samples`` draws give the mean and standard
error of

* ``loss_decay``: ``-dL/dt = sum_l eta_l |grad_l|^2`` (LD);
* ``feature_speed``: ``|fdot_{L-1}|_rms`` (FL);
* ``forward_sq``: ``|f_{L-1}|_rms^2`` (SP at the last feature; the other features alike);
* ``share_2``, ``share_L``: ``n eta_l |grad_l|^2 / loss decay target`` at ``l = 2`` and ``L`` (BC);

then ``log(mean) = c + p log m + q log L`` is fitted by weighted least squares (weights from the
standard errors of the logs, ``sem / mean``), giving ``p``, ``q``, their standard errors (scaled
by ``sqrt(chi2/dof)`` when the fit is worse than its errors) and ``chi2/dof``. The same fit on the
width-limit predictions (``Prescription.predicted_*``) gives the exponents the theory expects over
the same grid (finite-depth corrections included); the asymptotic ones are in
``docs/prescriptions.md``. Each point has the seed ``point_seed(seed, family, "prescription-bfa")``.

Usage: ``python scripts/prescriptions_validate.py [--samples 16] [--seed 0] [--quick] [--csv PATH]``
(``--quick``: widths 64..256, depths 4..32, for a smoke run; ``--csv``: every point's mean, sem
and width limit as a tidy table).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import rmtalign as ra
from rmtalign.results import write_csv
from rmtalign.seeds import point_seed, resolve_seed

QUANTITIES = ("loss_decay", "feature_speed", "forward_sq", "share_2", "share_L")
ARCHS = {
    "MLP": lambda L, m: ra.MLP(L, m, trained="all"),
    "ResNet beta=1/sqrt(L)": lambda L, m: ra.ResNet.scaled(L, m, 1.0, trained="all"),
}
SCHEMES = ("ntk", "mfmup", "fsc")


def measure(p, samples, seed):
    fam = p.family()
    m, n = fam.width, int(fam.trained_mask.sum())
    r = ra.sample_bfa(fam, samples=samples, seed=point_seed(seed, fam, "prescription-bfa"),
                      keep_vectors=True)
    contrib = r.lr * r.grad_sq
    x = {"loss_decay": contrib.sum(1), "feature_speed": r.fdot_norm[:, -1] / math.sqrt(m),
         "forward_sq": (r.vectors["f"][:, -1] ** 2).sum(-1) / m,
         "share_2": n * contrib[:, 1] / p.loss_decay, "share_L": n * contrib[:, -1] / p.loss_decay}
    return {q: (v.mean(), v.std(ddof=1) / math.sqrt(v.size)) for q, v in x.items()}


def predicted(p):
    n = int(p.made_for.trained_mask.sum())
    share = n * (p.predicted_loss_decay / n) / p.loss_decay  # every scheme here has equal shares
    return {"loss_decay": p.predicted_loss_decay, "feature_speed": p.predicted_feature_speed,
            "forward_sq": 1.0, "share_2": share, "share_L": share}


def fit(ms, Ls, y, se=None):
    """``log y = c + p log m + q log L``: (p, q), their standard errors, chi2/dof."""
    X = np.column_stack([np.ones(len(ms)), np.log(ms), np.log(Ls)])
    ly = np.log(y)
    if se is None:  # exact predictions: plain least squares, no errors
        coef = np.linalg.lstsq(X, ly, rcond=None)[0]
        return coef[1], coef[2], 0.0, 0.0, float("nan")
    w = 1.0 / (se / y)
    coef, *_ = np.linalg.lstsq(X * w[:, None], ly * w, rcond=None)
    chi2 = float(np.sum(((ly - X @ coef) * w) ** 2))
    dof = len(y) - 3
    cov = np.linalg.inv((X * w[:, None]).T @ (X * w[:, None])) * max(1.0, chi2 / dof)
    return coef[1], coef[2], math.sqrt(cov[1, 1]), math.sqrt(cov[2, 2]), chi2 / dof


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--csv", help="also write every point's mean, sem and width limit here")
    args = ap.parse_args(argv)
    widths = (64, 128, 256) if args.quick else (128, 256, 512, 1024)
    depths = (4, 8, 16, 32) if args.quick else (8, 16, 32, 64, 128)
    seed, _ = resolve_seed(args.seed)
    t0 = time.time()
    table = {k: [] for k in ("architecture", "scheme", "width", "depth", "quantity", "mean", "sem",
                             "width_limit")}
    print(f"widths {widths}, depths {depths}, {args.samples} samples a point, seed {args.seed}\n")
    print("| architecture | scheme | quantity | p (in m) | q (in L) | chi2/dof | width limit p, q over the grid |")
    print("|---|---|---|---|---|---|---|")
    for arch, make in ARCHS.items():
        for scheme in SCHEMES:
            rows = []
            for L in depths:
                for m in widths:
                    p = ra.prescribe(make(L, m), scheme)
                    rows.append((m, L, measure(p, args.samples, seed), predicted(p)))
            for m, L, got, want in rows:
                for q in QUANTITIES:
                    for key, v in (("architecture", arch), ("scheme", scheme), ("width", m),
                                   ("depth", L), ("quantity", q), ("mean", got[q][0]),
                                   ("sem", got[q][1]), ("width_limit", want[q])):
                        table[key].append(v)
            ms = np.array([r[0] for r in rows], float)
            Ls = np.array([r[1] for r in rows], float)
            for q in QUANTITIES:
                y = np.array([r[2][q][0] for r in rows])
                se = np.array([r[2][q][1] for r in rows])
                pm, pl, sm, sl, red = fit(ms, Ls, y, se)
                ym = np.array([r[3][q] for r in rows])
                tm, tl, *_ = fit(ms, Ls, ym)
                print(f"| {arch} | {scheme} | {q} | {pm:+.3f} ± {sm:.3f} | {pl:+.3f} ± {sl:.3f} "
                      f"| {red:.2f} | {tm:+.3f}, {tl:+.3f} |", flush=True)
    if args.csv:
        write_csv(args.csv, {k: np.array(v) for k, v in table.items()})
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
