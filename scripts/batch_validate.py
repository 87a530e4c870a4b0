"""Validate the batch theory (``theory.bfa(family, inputs=n, input_correlation=rho)``) against a
Monte Carlo of the batch step, with width extrapolation.

The Monte Carlo here is plain numpy with dense weights, written from the definitions and
independent of ``rmtalign.theory.batch``: ``n`` inputs with Gram ``d ((1 - rho) I + rho J)``
exactly (orthonormal frame times a Cholesky factor, as ``tests/oracles/batch_ref.py``), forward
pass, backward pass of ``mean(F_L)`` over the ``n k`` outputs, the family's learning rates on the
batch's squared gradient norms, feature velocities by forward mode, and the cosine of the
flattened ``(n m)`` vectors. ``mode="free"`` replaces the masks of the Jacobians (backward and
tangent passes) by sign patterns of independent Gaussian vectors with the width-limit correlation
of the layer (the theory's free-mask model); the forward pass, and so the Grams and rates, are
the network's. The weights of one draw are shared by every (n, rho) of the table.

For each family and (n, rho), widths ``--widths`` are sampled and ``c0 + c1/m`` is fitted per
layer by weighted least squares; ``z = (c0 - theory) / se(c0)``.

    python scripts/batch_validate.py                 # the table of docs/theory.md (Batches)
    python scripts/batch_validate.py --quick         # a small smoke run
    python scripts/batch_validate.py --sampler       # against rmtalign.sample_bfa(inputs=n)
    python scripts/batch_validate.py --figure        # also docs/img/theory_batch.png
    python scripts/batch_validate.py --figure-only   # only the figure
"""
from __future__ import annotations

import os

# one BLAS thread: the products are small and a shared machine's spinning BLAS threads cost 10x
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rmtalign import MLP, ResNet, theory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- Monte Carlo
def correlated_inputs(n, d, rho, rng):
    """``n`` inputs in R^d with ``|x|^2 = d`` and pairwise products ``d rho`` exactly (n <= d)."""
    R = (1.0 - rho) * np.eye(n) + rho * np.ones((n, n))
    Qf, _ = np.linalg.qr(rng.standard_normal((d, n)))
    return math.sqrt(d) * np.linalg.cholesky(R + 1e-15 * np.eye(n)) @ Qf.T


def draw_weights(family, rng):
    out = []
    for (r, c), s in zip(family.shapes, family.stds):
        if family.weights == "gaussian":
            out.append(s * rng.standard_normal((r, c)))
        else:  # Haar (semi-)orthogonal, scaled to the entry variance s^2
            big, small = max(r, c), min(r, c)
            q, rr = np.linalg.qr(rng.standard_normal((big, small)))
            q = q * np.sign(np.diag(rr))
            q = q if r >= c else q.T
            out.append(s * math.sqrt(big) * q)
    return out


def _relu_corr(r):
    t = np.arccos(np.clip(r, -1, 1))
    return (np.sqrt(1 - r * r) + (np.pi - t) * r) / np.pi  # correlation after a ReLU


def free_mask_correlations(family, rho):
    """Width-limit correlation of f_l between two inputs, l = 1..L-1 (equal variances)."""
    out = [rho]
    a, beta = family.skip, family.branch_scale
    gain = family.width * family.stds[1] ** 2
    for _ in range(2, family.depth):
        r = out[-1]
        k = _relu_corr(r) if family.phi.has_masks else r  # kappa(Q)_off / kappa(Q)_diag
        h = 0.5 if family.phi.has_masks else 1.0
        num = a * a * r + beta * beta * gain * h * k
        den = a * a + beta * beta * gain * h
        out.append(num / den)
    return np.array(out)


def batch_cos(family, W, X, mode="exact", rng=None, corr=None):
    """cos(theta_v), v = 1..L-1, of one step on the batch X (n, d) with weights W."""
    L = family.depth
    a, beta, alpha = family.skip, family.branch_scale, family.output_multiplier
    relu = family.phi.has_masks
    psi_relu = family.psi.has_masks
    n = X.shape[0]
    F = [X @ W[0].T]
    for l in range(2, L):
        g = np.maximum(F[-1], 0) if relu else F[-1]
        F.append(a * F[-1] + beta * g @ W[l - 1].T)
    gs = [X] + [(np.maximum(f, 0) if relu else f) for f in F[:-1]]
    gs.append(np.maximum(F[-1], 0) if psi_relu else F[-1])  # readout input psi(f_{L-1})
    if mode == "exact":
        D = [(f > 0).astype(float) if relu else np.ones_like(f) for f in F]
    else:  # free masks: sign patterns of Gaussians with the layer's width-limit correlation
        D = []
        for l in range(L - 1):
            if not relu:
                D.append(np.ones_like(F[l]))
                continue
            R = (1 - corr[l]) * np.eye(n) + corr[l] * np.ones((n, n))
            ch = np.linalg.cholesky(R + 1e-12 * np.eye(n))
            D.append(((ch @ rng.standard_normal((n, family.width))) > 0).astype(float))
    D_out = D[L - 2] if psi_relu else np.ones_like(F[L - 2])
    k = family.out_dim
    bL = np.full((n, k), 1.0 / (n * k))
    b = [None] * L  # b[l-1] = b_l, (n, rows)
    b[L - 1] = bL
    b[L - 2] = D_out * (alpha * bL @ W[L - 1])
    for l in range(L - 1, 1, -1):
        b[l - 2] = a * b[l - 1] + beta * D[l - 2] * (b[l - 1] @ W[l - 1])
    betas = family.branch_scales
    Gg = [g @ g.T for g in gs]          # Grams of the inputs of W_l
    Gb = [bb @ bb.T for bb in b]
    grad_sq = np.array([betas[l] ** 2 * np.sum(Gb[l] * Gg[l]) for l in range(L)])
    eta = family.rates(grad_sq)
    # tangent: fdot_l = a fdot_{l-1} + beta (D_{l-1} fdot_{l-1}) W_l^T + beta g_{l-1} Wdot_l^T,
    # Wdot_l = -eta_l beta_l sum_a b_l^a g_{l-1}^a^T, so g Wdot^T = -eta beta (g g^T) b
    fd = -eta[0] * Gg[0] @ b[0]
    cos = np.empty(L - 1)
    for v in range(1, L):
        if v > 1:
            fd = (a * fd + beta * (D[v - 2] * fd) @ W[v - 1].T
                  - eta[v - 1] * beta * beta * Gg[v - 1] @ b[v - 1])
        bv = b[v - 1].ravel()
        fv = fd.ravel()
        nf = np.linalg.norm(fv)
        cos[v - 1] = -bv @ fv / (np.linalg.norm(bv) * nf) if nf > 0 else np.nan
    return cos


def sample_table(family, configs, samples, seed, mode="exact"):
    """``{(n, rho): (samples, L-1) cos}`` with the weights of each draw shared by the configs."""
    out = {c: np.empty((samples, family.depth - 1)) for c in configs}
    corrs = {c: free_mask_correlations(family, c[1]) for c in configs}
    key = [family.width, zlib.crc32(family.label.encode()), zlib.crc32(mode.encode())]
    for i in range(samples):
        rng = np.random.default_rng([seed, i] + key)
        W = draw_weights(family, rng)
        for c in configs:
            n, rho = c
            X = correlated_inputs(n, family.in_dim, rho, rng) if n > 1 else np.ones((1, family.in_dim))
            out[c][i] = batch_cos(family, W, X, mode, rng, corrs[c])
    return out


def sampler_table(family, configs, samples, seed, mode="exact"):
    """As :func:`sample_table`, drawn by ``rmtalign.sample_bfa(..., inputs=n,
    input_correlation=rho)`` (the package's batch sampler), each (n, rho) at its content seed."""
    from rmtalign.sampling import sample_bfa
    from rmtalign.seeds import point_seed

    out = {}
    for n, rho in configs:
        kw = {} if n == 1 else {"inputs": n, "input_correlation": rho}
        ss = point_seed(seed, family, f"bfa-{mode}-batch-{n}-{rho}")
        out[(n, rho)] = sample_bfa(family, samples, seed=ss, mode=mode, **kw).cos
    return out


def extrapolate(means, sems, widths):
    """Weighted LS fit of c0 + c1/m per layer: (c0, se(c0))."""
    x = 1.0 / np.asarray(widths, float)
    A = np.stack([np.ones_like(x), x], 1)
    c0, se = [], []
    for j in range(means.shape[1]):
        w = 1.0 / sems[:, j] ** 2
        cov = np.linalg.inv(A.T @ (A * w[:, None]))
        coef = cov @ (A.T @ (w * means[:, j]))
        c0.append(coef[0])
        se.append(math.sqrt(cov[0, 0]))
    return np.array(c0), np.array(se)


# --------------------------------------------------------------------------- main
def families(depth, d):
    c = 2.0
    return [
        ("MLP ReLU", MLP(depth, 64, in_dim=d), "exact"),
        ("MLP ReLU orthogonal", MLP(depth, 64, in_dim=d, weights="orthogonal"), "exact"),
        ("MLP linear", MLP(depth, 64, in_dim=d, activation="linear"), "exact"),
        ("MLP ReLU, W_1 trained, k=4", MLP(depth, 64, in_dim=d, trained="all", out_dim=4), "exact"),
        (f"ResNet ReLU c={c} (free masks)", ResNet.scaled(depth, 64, c, in_dim=d), "free"),
        (f"ResNet ReLU c={c} (own masks)", ResNet.scaled(depth, 64, c, in_dim=d), "exact"),
        (f"ResNet linear c={c}", ResNet.scaled(depth, 64, c, in_dim=d, activation="linear"), "exact"),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 8, 32])
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--only", type=str, nargs="+", default=None,
                    help="family names (as in the table) to run")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sampler", action="store_true",
                    help="sample with rmtalign.sample_bfa(inputs=n) instead of the numpy Monte Carlo")
    ap.add_argument("--figure", action="store_true")
    ap.add_argument("--figure-only", action="store_true")
    args = ap.parse_args(argv)
    if args.figure_only:
        figure(args)
        return 0
    if args.quick:
        args.widths, args.samples, args.batches, args.rhos = [128, 256], 8, [1, 4], [0.0, 0.5]
    d = max(args.batches) if max(args.batches) > 10 else 10
    configs = [(n, r) for n in args.batches for r in (args.rhos if n > 1 else [0.0])]
    zs = []
    warnings.simplefilter("ignore", RuntimeWarning)  # NaN columns (frozen W_1: no angle at v = 1)
    print("| family | n | rho | max abs err | max \\|z\\| | max \\|z\\| single-input theory |")
    print("|---|---|---|---|---|---|")
    for name, fam0, mode in families(args.depth, d):
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        data = {}
        for m in args.widths:
            fam = fam0.replace(width=m)
            if fam0.hidden_std is not None:  # pragma: no cover - all defaults here
                raise SystemExit("explicit hidden_std: widths would change the law")
            table = sampler_table if args.sampler else sample_table
            data[m] = table(fam, configs, args.samples, args.seed, mode)
        single = theory.bfa(fam0, mode)
        for c in configs:
            n, rho = c
            means = np.array([np.nanmean(data[m][c], 0) for m in args.widths])
            sems = np.array([np.nanstd(data[m][c], 0, ddof=1) / math.sqrt(args.samples)
                             for m in args.widths])
            c0, se = extrapolate(means, sems, args.widths)
            th = theory.bfa(fam0, mode, inputs=n, input_correlation=rho) if n > 1 else single
            # layers whose angle is deterministic (cos = 1 at v = 2 for one input) have se = 0
            ok = np.isfinite(th.cos) & (se > 1e-12)
            z = (c0 - th.cos)[ok] / se[ok]
            z1 = (c0 - single.cos)[ok] / se[ok]
            zs.extend(z.tolist())
            print(f"| {name} | {n} | {rho} | {np.max(np.abs(c0 - th.cos)[ok]):.4f} | "
                  f"{np.max(np.abs(z)):.2f} | {np.max(np.abs(z1)):.1f} |", flush=True)
        print(f"<!-- {name}: {time.time() - t0:.0f} s -->", flush=True)
    zs = np.abs(np.array(zs))
    print(f"\n{zs.size} z-values, max |z| = {zs.max():.2f}, |z| > 2: {np.sum(zs > 2)}, "
          f"|z| > 3: {np.sum(zs > 3)}")
    if args.figure:
        figure(args)
    return 0


def figure(args):
    """docs/img/theory_batch.png: cos(theta_v) against v for several batch sizes (He ReLU MLP,
    L = 32), predicted (lines) and sampled at m = 512 (markers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L, m, d = 32, 512, 32
    fam = MLP(L, m, in_dim=d)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    ns = [1, 4, 16, 32, math.inf]
    samples = 16
    for ax, rho in zip(axes, (0.0, 0.5)):
        configs = [(n, rho if n > 1 else 0.0) for n in ns if not math.isinf(n)]
        data = sample_table(fam, configs, samples, args.seed)
        for i, n in enumerate(ns):
            col = f"C{i}"
            th = theory.bfa(fam, inputs=n, input_correlation=rho) if n != 1 else theory.bfa(fam)
            lab = "n = inf" if math.isinf(n) else f"n = {n}"
            ax.plot(th.layers, th.cos, color=col, label=lab)
            if not math.isinf(n):
                c = configs[i]
                mu = np.nanmean(data[c], 0)
                se = np.nanstd(data[c], 0, ddof=1) / math.sqrt(samples)
                ax.errorbar(th.layers[1:], mu[1:], se[1:], fmt="o", ms=3, color=col)
        ax.set_title(f"He ReLU MLP, L = {L}, input correlation {rho}")
        ax.set_xlabel("layer v")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([2, 4, 8, 16, 31])
        ax.set_xticklabels(["2", "4", "8", "16", "31"])
        ax.minorticks_off()
    axes[0].set_ylabel(r"$\cos\theta_v$")
    axes[0].set_ylim(0.025, 1.1)
    axes[0].legend(title=f"lines: width limit; dots: m = {m}", fontsize=8, title_fontsize=8,
                   loc="lower center", ncol=3)
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "theory_batch.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
