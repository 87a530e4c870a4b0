"""Finite-width BFA (``theory.finite_width``) against the exact sampler, beside the width limit.

MLPs (default):

1. the grid: iid He ReLU MLPs at widths 64..512 and L/m = 0.125..4 (then the other covered
   cases: linear, W_1 trained, another init scale, orthogonal weights), sampled with
   ``sample_bfa`` (exact mode, the network's own masks); at the middle layer ``v = L/2`` and the
   output ``v = L-1`` the table gives the sampled mean +- its standard error, the width limit
   ``theory.bfa`` and the finite-width prediction, their errors and z-scores; then the reruns
   (``GRID_RERUN``: other seeds, more draws) and the summary again with every run of a point
   pooled;
2. the 1/m coefficient: ``width_limit`` (widths 32..256, c0 + c1/m) fitted per layer, its
   ``coef[:, 1]`` and standard error against ``finite_width(...).c1``. The fit also sees the
   1/m^2 terms, so the same fit is applied to the prediction's own values at those widths
   (column "fit of prediction"): that is what the fitted coefficient should equal.

``--resnet``: the same for ResNets with ``beta = c / sqrt(L)`` (c = 1, 2; widths 64..256, L/m
0.5..4): linear ResNets (Gaussian and orthogonal) against their prediction, then their reruns
(``RESNET_RERUN``) and the summary with every run of a point pooled; ReLU ResNets as the sampled
gap to the width limit beside the gap the linear chain of the same ``a``, ``beta``, ``m s^2 / 2``
gives (their own prediction: ``--relu-resnet``); and ``c1`` against ``width_limit``'s fit (L = 32,
c = 2, widths 16..128). ``--relu-probe``: ReLU ResNets with masks independent of the
weights (an exact per-neuron representation, no matrices), which masks carry the excess, their
1/m coefficient (fitted, and computed as the second von Mises variation) against
``width_limit``'s, and the exact reduction with the network's own masks up to m = 1024.
``--relu-resnet [--probes P] [FILE.json ...]``: ReLU ResNets (Gaussian, then orthogonal weights;
then ``c1`` against ``width_limit``'s order-2 fit at L = 32) against ``finite_width`` (``bfa +
c1/m``, ``c1`` from the order-parameter expansion of the exact reduction with ``P`` probe neurons,
extrapolated in depth beyond L = 64) at the ``--resnet`` grid points; with files written by
``scripts/relu_resnet_c1.py --out`` at depths beyond 64, the extrapolated ``c1`` against the
direct one.
``--moments``: the BFK's expected spectral
moments ``m1, m2`` (ReLU ResNets: first order) against the dense sampler's, with the sampled
medians. ``--typical``: the typical ``m1_typical = exp E log M1`` against the sampled
mean of ``log M1`` (ReLU ResNets from the cached expansions of ``--moments``); ``--plot-typical``:
``docs/img/finite_width_typical.png`` from its MLP draws. ``--m1-reduction``: ReLU ResNets' ``m1_c1`` against the trace probe's
``m (E M1 - k_v)`` in the simulated reduction (20 000 networks a width; minutes).
``--m2-reduction``: the M2 probe's ``m2_c1`` against the simulated reduction's fitted ``1/m``
coefficient (L = 8, 32; about an hour).
``--plot``: ``docs/img/finite_width.png``.

Sampled means are cached as JSON in ``--out`` (default ``/tmp/rmtalign_finite``), so the report
can be rerun without resampling. Usage::

    .venv/bin/python scripts/finite_width_validate.py [--resnet | --relu-probe | --relu-resnet [--probes P] [FILE.json ...]
                                                       | --moments | --typical | --plot-typical
                                                       | --m1-reduction | --m2-reduction | --plot]
                                                      [--quick] [--sample-only] [--out DIR]
"""
import json
import math
from dataclasses import replace
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rmtalign import seeds
from rmtalign import theory as T
from rmtalign._extrapolate import fit_width_limit
from rmtalign.families import MLP, ResNet
from rmtalign.sampling import sample_bfa, sample_bfk, width_limit
from rmtalign.theory.bfk import _mask_correlation
from rmtalign.theory import _reduction as R
from rmtalign.theory.layer import layer_law

quick = "--quick" in sys.argv
out = Path("/tmp/rmtalign_finite")
if "--out" in sys.argv:
    _i = sys.argv.index("--out") + 1
    if _i >= len(sys.argv) or sys.argv[_i].startswith("--"):
        print("finite_width_validate.py: --out needs a directory", file=sys.stderr)
        sys.exit(2)
    out = Path(sys.argv[_i])
try:
    out.mkdir(parents=True, exist_ok=True)
except OSError as e:
    print(f"finite_width_validate.py: --out {out}: {e.strerror}", file=sys.stderr)
    sys.exit(2)
SEED = 2025
RATIOS = (0.125, 0.5, 1, 2, 4)
# (width, draws, largest L/m): draws fall with the cost O(L m^2) of a draw
GRID = [(64, 384, 4), (128, 192, 4), (256, 96, 4), (512, 64, 1)]
# the other covered cases: linear MLPs, W_1 trained, a non-He init scale and a wide readout
EXTRA = [(MLP(64, 64, activation="linear"), 384), (MLP(256, 64, activation="linear"), 384),
         (MLP(128, 64, trained="all"), 384), (MLP(128, 64, hidden_std=0.15, out_dim=4), 384),
         (MLP(64, 32, weights="orthogonal"), 1536), (MLP(128, 64, weights="orthogonal"), 384),
         (MLP(256, 64, weights="orthogonal"), 192)]
# the grid's points beyond 2 SE and a quarter of the width limit's error, sampled again, then with
# 4096 draws (and the Gaussian L/m = 4 point of m = 64 beside them): (family, draws, seed); the
# summary pools every run of a point
GRID_RERUN = [(MLP(512, 128), 384, 5151), (MLP(128, 128), 384, 5152),
              (MLP(256, 64, weights="orthogonal"), 2000, 31337),
              (MLP(512, 128), 4096, 7001), (MLP(128, 128), 4096, 7004), (MLP(256, 64), 4096, 7002)]
# ResNets of Eq. (12), beta = c / sqrt(L): (c, activation, width, draws, depths[, weights]); sampled in
# chunks of CHUNK draws, each chunk checkpointed, so an interrupted run resumes where it stopped
RESNET = [(2.0, "linear", 64, 256, (32, 64, 128, 256)), (1.0, "linear", 64, 256, (64, 256)),
          (2.0, "linear", 128, 128, (64, 128, 256, 512)), (2.0, "linear", 256, 64, (128, 512, 1024)),
          (1.0, "relu", 64, 256, (32, 64, 128, 256)), (2.0, "relu", 64, 256, (32, 64, 128, 256)),
          (1.0, "relu", 128, 96, (128, 512)), (2.0, "relu", 128, 96, (128, 512)),
          (1.0, "relu", 256, 64, (256,)),
          (2.0, "linear", 64, 256, (64, 256), "orthogonal"), (2.0, "linear", 128, 96, (512,), "orthogonal"),
          (1.0, "relu", 64, 256, (32, 64, 128, 256), "orthogonal"),
          (2.0, "relu", 64, 256, (32, 64, 128, 256), "orthogonal"),
          (1.0, "relu", 128, 96, (128, 512), "orthogonal"), (2.0, "relu", 128, 96, (128, 512), "orthogonal")]
CHUNK = 32
# the linear ResNet point beyond 2 SE and a quarter of the width limit's error, sampled again
RESNET_RERUN = [(ResNet.scaled(128, 128, 2.0, activation="linear"), 384, 91011),
                (ResNet.scaled(128, 128, 2.0, activation="linear"), 2048, 7003)]
if quick:
    GRID = [(64, 96, 4), (128, 48, 1)]
    EXTRA = EXTRA[:1]
    GRID_RERUN = RESNET_RERUN = []
    RESNET = [(2.0, "linear", 64, 64, (64,)), (2.0, "relu", 64, 64, (64,))]


def sampled(fam, n, seed=None):
    """Per-layer mean and sem of the exact sampler's cos for ``fam`` (cached on disk); ``seed``:
    the sampler's (default: the point's seed from ``SEED``)."""
    if isinstance(fam, ResNet):
        kind, tag = "resnet", f"_{fam.activation}_{fam.weights}_b{fam.branch_scale:.6g}"
    else:
        kind, tag = "mlp", "" if fam == MLP(fam.depth, fam.width) else "_" + seeds_tag(fam)
    tag += f"_s{SEED}" if seed is None else f"_seed{seed}"
    path = out / f"{kind}_m{fam.width}_L{fam.depth}_n{n}{tag}.json"
    if path.exists():
        d = json.loads(path.read_text())
        return np.array(d["mean"], float), np.array(d["sem"], float)
    t = time.time()
    r = sample_bfa(fam, n, seed=seeds.point_seed(SEED, fam, "bfa-exact") if seed is None else seed)
    mean, sem = r.mean(), r.sem()
    path.write_text(json.dumps({"mean": [float(x) for x in mean], "sem": [float(x) for x in sem],
                                "seconds": time.time() - t}))
    print(f"  sampled m={fam.width} L={fam.depth} ({n} draws) in {time.time() - t:.0f}s", flush=True)
    return mean, sem


def seeds_tag(fam):
    """A short file tag for a family's non-default fields."""
    d, ref = fam.to_dict(), MLP(fam.depth, fam.width).to_dict()
    return "_".join(f"{k}-{v}" for k, v in sorted(d.items()) if ref[k] != v)


def row(fam, n, name, rows):
    mean, sem = sampled(fam, n)
    if "--sample-only" in sys.argv:
        return
    fw = T.finite_width(fam)
    ratio = fam.depth / fam.width
    for v in (fam.depth // 2, fam.depth - 1):
        j = v - 1
        el, ef = fw.cos_limit[j] - mean[j], fw.cos[j] - mean[j]
        rows.append((fam.width, fam.depth, ratio, v, el / sem[j], ef / sem[j], el, ef,
                     fam, mean[j], sem[j], fw.cos_limit[j], fw.cos[j]))
        print(f"| {name} | {fam.width} | {fam.depth} | {ratio:g} | {v} | {mean[j]:.4f} ± {sem[j]:.4f} | "
              f"{fw.cos_limit[j]:.4f} | {fw.cos[j]:.4f} | {el:+.4f} | {ef:+.4f} | "
              f"{el / sem[j]:+.2f} | {ef / sem[j]:+.2f} |", flush=True)


def cached_width_limit(fam, widths, n, seed, path):
    """``(means, sems)`` of ``width_limit(fam, widths, samples=n, seed=seed)``, cached as JSON."""
    if not path.exists():
        wl = width_limit(fam, widths, samples=n, seed=seed)
        path.write_text(json.dumps({"means": wl.means.tolist(), "sems": wl.sems.tolist()}))
    d = json.loads(path.read_text())
    return np.array(d["means"]), np.array(d["sems"])


def resnet_sampled(fam, n):
    """Per-layer mean and sem of ``sample_bfa`` for a ResNet, from checkpointed chunks of draws
    (sample indices ``i .. i + CHUNK - 1`` of one content seed: the chunks are one call's draws)."""
    tag = f"resnet_{fam.activation}_{fam.weights}_m{fam.width}_L{fam.depth}_b{fam.branch_scale:.6g}_s{SEED}"
    seed = seeds.point_seed(SEED, fam, "bfa-exact")
    draws = []
    for i in range(0, n, CHUNK):
        path = out / f"{tag}_{i}-{i + CHUNK}.npy"
        if not path.exists():
            t = time.time()
            c = sample_bfa(fam, list(range(i, min(i + CHUNK, n))), seed=seed).cos
            np.save(path, c)
            print(f"  sampled {tag} draws {i}..{i + CHUNK} in {time.time() - t:.0f}s", flush=True)
        draws.append(np.load(path))
    c = np.concatenate(draws)
    return c.mean(axis=0), c.std(axis=0, ddof=1) / np.sqrt(c.shape[0])


def resnet_grid():
    """Linear ResNets: prediction against the sampler. ReLU ResNets: the sampled finite-width gap
    beside the linear chain's, i.e. the prediction for the linear ResNet of the same ``a``,
    ``beta`` and ``m s^2 / 2`` (its default init); their own prediction is :func:`relu_resnet`'s."""
    print("\n| network | c | m | L | L/m | v | sampled | width limit | finite width | err limit | "
          "err finite | z limit | z finite |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows, relu = [], []
    for c, act, m, n, depths, *weights in RESNET:
        for L in depths:
            fam = ResNet.scaled(L, m, c, activation=act, weights=(weights or ["gaussian"])[0])
            mean, sem = resnet_sampled(fam, n)
            if "--sample-only" in sys.argv:
                continue
            lim = T.bfa(fam).cos
            twin = T.finite_width(fam.replace(activation="linear"))
            for v in (L // 2, L - 1):
                j = v - 1
                el = lim[j] - mean[j]
                if act == "relu":
                    shift = twin.cos[j] - twin.cos_limit[j]
                    relu.append(f"| {c:g} | {m} | {L} | {L / m:g} | {v} | {mean[j]:.4f} ± {sem[j]:.4f} | "
                                f"{lim[j]:.4f} | {-el:+.4f} | {-el / sem[j]:+.2f} | {shift:+.4f} | "
                                f"{(-el - shift) / sem[j]:+.2f} |")
                    continue
                ef = twin.cos[j] - mean[j]
                rows.append((m, L, L / m, v, el / sem[j], ef / sem[j], el, ef,
                             fam, mean[j], sem[j], lim[j], twin.cos[j]))
                print(f"| ResNet {act}{', orthogonal' if fam.weights == 'orthogonal' else ''} | {c:g} | {m} | {L} | {L / m:g} | {v} | {mean[j]:.4f} ± {sem[j]:.4f} | "
                      f"{lim[j]:.4f} | {twin.cos[j]:.4f} | {el:+.4f} | {ef:+.4f} | "
                      f"{el / sem[j]:+.2f} | {ef / sem[j]:+.2f} |", flush=True)
    if relu:
        print("\nReLU ResNets (exact masks): sampled gap to the width limit, and the linear chain's gap")
        print("| c | m | L | L/m | v | sampled | width limit | sampled - limit | z | linear chain's gap | "
              "z of (sampled gap - linear chain's) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(relu))
    return rows


def resnet_coefficient():
    """``width_limit``'s fitted 1/m coefficient for ResNets (c = 2, L = 32) against ``c1``."""
    widths = [16, 32, 64, 128] if not quick else [16, 32]
    n = 2000 if not quick else 200
    print(f"\nResNet 1/m coefficient: width_limit over widths {widths}, {n} draws each, c0 + c1/m")
    print("| network | v | c1 fitted ± se | c1 | fit of prediction | z (c1) | z (fit of prediction) |")
    print("|---|---|---|---|---|---|---|")
    for act in ("linear", "relu"):
        fam = ResNet.scaled(32, widths[0], 2.0, activation=act)
        path = out / f"wl_resnet_{act}_L32_c2_{'-'.join(map(str, widths))}_n{n}_s{SEED}.json"
        means, sems = cached_width_limit(fam, widths, n, SEED, path)
        if "--sample-only" in sys.argv:
            continue
        fit = fit_width_limit(widths, means, sems)
        c1_fit, c1_se = fit.coef[:, 1], np.sqrt(fit.cov[:, 1, 1])
        lin = fam.replace(activation="linear")
        c1 = T.finite_width(lin).c1
        pred = np.array([T.finite_width(lin.replace(width=w)).cos for w in widths])
        c1_pred_fit = fit_width_limit(widths, pred, sems).coef[:, 1]
        name = "linear" if act == "linear" else "ReLU (c1 of the linear chain)"
        for v in (4, 8, 16, 24, 31):
            j = v - 1
            print(f"| {name} | {v} | {c1_fit[j]:.3f} ± {c1_se[j]:.3f} | {c1[j]:.3f} | {c1_pred_fit[j]:.3f} | "
                  f"{(c1_fit[j] - c1[j]) / c1_se[j]:+.2f} | {(c1_fit[j] - c1_pred_fit[j]) / c1_se[j]:+.2f} |",
                  flush=True)


def grid():
    print("| network | m | L | L/m | v | sampled | width limit | finite width | err limit | "
          "err finite | z limit | z finite |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for m, n, top in GRID:
        for ratio in RATIOS:
            if ratio <= top:
                row(MLP(int(round(ratio * m)), m), n, "ReLU", rows)
    for fam, n in EXTRA:
        name = {"linear": "linear"}.get(fam.activation, "ReLU")
        if fam.trained == "all":
            name += ", W_1 trained"
        if fam.weights == "orthogonal":
            name += ", orthogonal"
        if fam.hidden_std is not None:
            name += f", std {fam.hidden_std:g}, k = {fam.out_dim}"
        row(fam, n, name, rows)
    return rows, reruns(rows, GRID_RERUN)


def reruns(rows, runs):
    """The points of a grid sampled again with other seeds (``runs``: (family, draws, seed)):
    each run's z, then ``rows`` with every run of a point pooled (inverse-variance weights)."""
    def name(fam):
        return fam.label + (" orthogonal" if fam.weights == "orthogonal" else "")

    extra = {}
    for fam, n, seed in runs:
        mean, sem = sampled(fam, n, seed)
        fw = T.finite_width(fam)
        for v in (fam.depth // 2, fam.depth - 1):
            extra.setdefault((fam, v), []).append((mean[v - 1], sem[v - 1]))
            print(f"{name(fam)}, v = {v}, rerun ({n} draws, seed {seed}): {mean[v - 1]:.4f} ± "
                  f"{sem[v - 1]:.4f}, finite width {fw.cos[v - 1]:.4f}: "
                  f"z = {(fw.cos[v - 1] - mean[v - 1]) / sem[v - 1]:+.2f}", flush=True)
    pooled = []
    for r in rows:
        m, L, ratio, v, *_, fam, mean, sem, lim, pred = r
        if (fam, v) in extra:
            mean, sem = _pool([(mean, sem)] + extra[fam, v])
            print(f"{name(fam)}, v = {v}, all runs pooled: {mean:.4f} ± {sem:.4f}: "
                  f"z = {(pred - mean) / sem:+.2f} (width limit {(lim - mean) / sem:+.2f}); "
                  f"error {pred - mean:+.4f}, a quarter of the width limit's {abs(lim - mean) / 4:.4f}",
                  flush=True)
        el, ef = lim - mean, pred - mean
        pooled.append((m, L, ratio, v, el / sem, ef / sem, el, ef, fam, mean, sem, lim, pred))
    return pooled


def coefficient():
    widths = [32, 64, 128, 256] if not quick else [32, 64, 128]
    n = 2000 if not quick else 300
    print(f"\n1/m coefficient: width_limit over widths {widths}, {n} draws each, c0 + c1/m")
    print("| L | v | c1 fitted ± se | c1 theory | fit of prediction | z (theory) | z (fit of prediction) |")
    print("|---|---|---|---|---|---|---|")
    for L in (8, 16):
        fam = MLP(L, widths[0])
        path = out / f"wl_L{L}_{'-'.join(map(str, widths))}_n{n}_s{SEED}.json"
        means, sems = cached_width_limit(fam, widths, n, SEED, path)
        if "--sample-only" in sys.argv:
            continue
        fit = fit_width_limit(widths, means, sems)
        c1_fit, c1_se = fit.coef[:, 1], np.sqrt(fit.cov[:, 1, 1])
        c1 = T.finite_width(fam).c1
        pred = np.array([T.finite_width(fam.replace(width=w)).cos for w in widths])
        c1_pred_fit = fit_width_limit(widths, pred, sems).coef[:, 1]
        for v in range(3, L):
            j = v - 1
            print(f"| {L} | {v} | {c1_fit[j]:.3f} ± {c1_se[j]:.3f} | {c1[j]:.3f} | {c1_pred_fit[j]:.3f} | "
                  f"{(c1_fit[j] - c1[j]) / c1_se[j]:+.2f} | {(c1_fit[j] - c1_pred_fit[j]) / c1_se[j]:+.2f} |",
                  flush=True)


def plot(path="docs/img/finite_width.png"):
    """Sampled cos against depth at a few widths, the width limit and the finite-width prediction:
    ReLU MLPs (L = 256; the law of cos_v does not depend on L); linear ResNets (c = 2, L = 256) as
    the gap to the width limit; ReLU ResNets likewise, beside the ``1/m`` term of the model with
    masks independent of the weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = {16: "tab:red", 32: "tab:orange", 64: "tab:green", 128: "tab:blue", 256: "tab:purple"}
    L = 256
    v = np.arange(1, L)
    ax = axes[0]
    for m, n in ((64, 384), (128, 192), (256, 96)):
        fam = MLP(L, m)
        mean, sem = sampled(fam, n)
        ax.fill_between(v, mean - 2 * sem, mean + 2 * sem, color=colors[m], alpha=0.25, lw=0)
        ax.plot(v, T.finite_width(fam).cos, color=colors[m], lw=1.3,
                label=f"m = {m}: finite width (line), sampled ±2 SE (band)")
    ax.plot(v, T.bfa(MLP(L, 64)).cos, color="k", lw=1.3, ls="--", label="width limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("cos θ_v")
    ax.set_title("ReLU MLP (He), L = 256")
    for ax, act, widths in ((axes[1], "linear", ((16, 256), (32, 256), (64, 256), (128, 128))),
                            (axes[2], "relu", ((64, 256),))):
        lim = T.bfa(ResNet.scaled(L, 64, 2.0, activation=act)).cos
        for m, n in widths:
            fam = ResNet.scaled(L, m, 2.0, activation=act)
            mean, sem = resnet_sampled(fam, n)
            ax.fill_between(v, mean - lim - 2 * sem, mean - lim + 2 * sem, color=colors[m], alpha=0.25, lw=0)
            twin = T.finite_width(fam.replace(activation="linear"))
            if act == "linear":
                ax.plot(v, twin.cos - lim, color=colors[m], lw=1.3,
                        label=f"m = {m}: finite width (line), sampled ±2 SE (band)")
            else:
                _, c1, c1_se, *_ = _relu_fw(fam, 200_000)
                ax.plot(v, c1 / m, color=colors[m], lw=1.3,
                        label=f"m = {m}: finite width (line), sampled ±2 SE (band)")
                _, c1, _ = second_variation_c1(fam, 20000)
                ax.plot(v, c1 / m, color=colors[m], lw=1.3, ls="-.",
                        label=f"m = {m}: masks independent of the weights, c1/m (dash-dot)")
        ax.axhline(0.0, color="k", lw=1.3, ls="--", label="width limit")
        ax.set_xscale("log")
        ax.set_ylabel("cos θ_v − width limit")
        ax.set_title(f"{'linear' if act == 'linear' else 'ReLU'} ResNet, "
                     f"β = 2/√L, L = {L}")
    for ax in axes:
        ax.set_xlabel("layer v")
        ax.legend(fontsize=7.5, loc="upper left" if ax is not axes[0] else "lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


# --------------------------------------------------------------------------- ReLU ResNets: the masks
def _masks(mode, rng, n, L, m, a):
    """Masks independent of the weights, ``(L-1, n, m)``: ``gp`` the width limit's law (signs of an
    AR(1) of lag-1 correlation ``a``, iid over neurons: persistent across depth), ``gpfix`` the same
    with exactly ``m/2`` active (the top half), ``free`` Bernoulli(1/2) iid over layers, ``ones``
    (a linear network)."""
    if mode == "ones":
        return np.ones((L - 1, n, m))
    if mode == "free":
        return (rng.random((L - 1, n, m)) < 0.5).astype(float)
    z, out = rng.standard_normal((n, m)), np.empty((L - 1, n, m))
    for l in range(L - 1):
        if l > 0:
            z = a * z + np.sqrt(1 - a * a) * rng.standard_normal((n, m))
        out[l] = (z > 0) if mode == "gp" else (z.argsort(1).argsort(1) >= m // 2)
    return out


def reduced_resnet(fam, n, seed, mode):
    """``cos`` of ``n`` draws of a ResNet (model (12), Gaussian weights, balanced rates) whose masks
    are independent of the weights: exactly, in law, iid neurons coupled only through averages.
    Given the masks, ``W_l^T b_l = s |b_l| xi_l`` and ``W_l x = e_l s <xi_l, x> + s |x| P_e eta_l``
    (``e_l = b_l / |b_l|``, ``xi_l, eta_l`` iid N(0, I)), so no matrix is drawn: O(n m L)."""
    L, m, a, beta = fam.depth, fam.width, fam.skip, fam.branch_scale
    s, k = np.asarray(fam.stds), T.finite._trained_counts(fam)
    rng = np.random.default_rng([SEED, seed, m, L])
    D = _masks(mode, rng, n, L, m, a)
    xi, eta = rng.standard_normal((L - 1, n, m)), rng.standard_normal((L - 1, n, m))
    nrm = lambda x: np.sqrt((x * x).sum(-1, keepdims=True))
    b = np.empty((L - 1, n, m))
    b[L - 2] = rng.standard_normal((n, m))
    for v in range(L - 2, 0, -1):
        b[v - 1] = a * b[v] + beta * s[v] * nrm(b[v]) * D[v - 1] * xi[v]
    u, out = np.zeros((n, m)), np.full((n, L - 1), np.nan)
    for i in range(L - 1):
        B = (b[i] * b[i]).sum(-1, keepdims=True)
        if i > 0:
            x, e = D[i - 1] * u, b[i] / np.sqrt(B)
            u = a * u + beta * s[i] * (e * (xi[i] * x).sum(-1, keepdims=True)
                                       + nrm(x) * (eta[i] - e * (e * eta[i]).sum(-1, keepdims=True)))
        if fam.trained_mask[i]:
            u = u + b[i] / B
        if k[i] > 0:
            out[:, i] = k[i] / np.sqrt(B[:, 0] * (u * u).sum(-1))
    return out


def _network_own_masks(fam, n, seed, copy=False):
    """The same quantity from the network itself (numpy, matrices drawn): its own masks, or with
    ``copy`` the masks of an independent copy's forward pass (persistent, independent of the
    weights they multiply)."""
    L, m, a, beta = fam.depth, fam.width, fam.skip, fam.branch_scale
    s, k = np.asarray(fam.stds), T.finite._trained_counts(fam)
    rng = np.random.default_rng([SEED, seed, m, L, 1] + ([2] if copy else []))
    W = [None] + [s[l] * rng.standard_normal((n, m, m)) for l in range(1, L - 1)]
    Wf = [None] + [s[l] * rng.standard_normal((n, m, m)) for l in range(1, L - 1)] if copy else W
    fv, D = rng.standard_normal((n, m)), []
    for l in range(L - 1):
        if l > 0:
            fv = a * fv + beta * np.einsum("nij,nj->ni", Wf[l], np.maximum(fv, 0))
        D.append((fv > 0).astype(float))
    b = [None] * (L - 1)
    b[L - 2] = rng.standard_normal((n, m))
    for v in range(L - 2, 0, -1):
        b[v - 1] = a * b[v] + beta * D[v - 1] * np.einsum("nji,nj->ni", W[v], b[v])
    u, out = np.zeros((n, m)), np.full((n, L - 1), np.nan)
    for i in range(L - 1):
        if i > 0:
            u = a * u + beta * np.einsum("nij,nj->ni", W[i], D[i - 1] * u)
        B = (b[i] * b[i]).sum(1)
        if fam.trained_mask[i]:
            u = u + b[i] / B[:, None]
        if k[i] > 0:
            out[:, i] = k[i] / np.sqrt(B * (u * u).sum(1))
    return out


def _reduced_F(fam, w, D, xi, eta, bL):
    """The reduced system's ``cos`` at every layer for neuron weights ``w`` (..., M) summing to 1
    (``w = 1/m`` on ``m`` neurons is the network of width ``m``)."""
    L, a, beta = fam.depth, fam.skip, fam.branch_scale
    sig, k = np.asarray(fam.stds) * np.sqrt(fam.width), T.finite._trained_counts(fam)
    av = lambda x: (w * x).sum(-1, keepdims=True)
    b = [None] * (L - 1)
    b[L - 2] = np.broadcast_to(bL, w.shape).copy()
    for v in range(L - 2, 0, -1):
        b[v - 1] = a * b[v] + beta * sig[v] * np.sqrt(av(b[v] ** 2)) * D[v - 1] * xi[v]
    u, out = np.zeros(w.shape), np.full(w.shape[:-1] + (L - 1,), np.nan)
    for i in range(L - 1):
        Ab = av(b[i] ** 2)
        if i > 0:
            x = D[i - 1] * u
            u = a * u + beta * sig[i] * (b[i] * av(xi[i] * x) / np.sqrt(Ab)
                                         + np.sqrt(av(x * x)) * (eta[i] - b[i] * av(b[i] * eta[i]) / Ab))
        if fam.trained_mask[i]:
            u = u + b[i] / Ab
        if k[i] > 0:
            out[..., i] = (k[i] / np.sqrt(Ab * av(u * u)))[..., 0]
    return out


def exact_reduced_resnet(fam, n, seed):
    """``cos`` of ``n`` draws of a Gaussian ReLU ResNet with its *own* masks, exactly in law, as iid
    neurons coupled through averages (``rmtalign.theory._reduction.simulate``; no matrix drawn,
    O(n m L)): each ``W_l`` is conditioned on its forward image ``y = W_l h``
    (``h = phi(f_{l-1})``; ``y = s |h| zeta``, which drives the pre-activations and so the masks),
    then ``W_l^T b_l = h (y . b)/|h|^2 + s |b| P_h xi`` and
    ``W_l x = (x . h/|h|^2) y + s (e <xi, x_perp> + |x_perp| P_e eta)``, ``x_perp = P_h x``."""
    L, m = fam.depth, fam.width
    rng = np.random.default_rng(seed)
    zeta, xi, eta = (rng.standard_normal((L - 1, n, m)) for _ in range(3))
    zeta[0] = rng.standard_normal((n, m))                 # the input layer's pre-activations
    b0 = rng.standard_normal((n, m))
    return R.simulate(R.Reduction.of(fam), *(np.moveaxis(x, 0, -1) for x in (zeta, xi, eta)), b0)


# The exact second von Mises variation of the reduced ReLU ResNet (masks independent of the weights,
# the width limit's AR(1) law): c1 = 1/2 E_z d^2/dh^2 F((1 - h) mu + h delta_z), with the mu part
# in closed form (pair law of the masks) and E_z a Monte Carlo over probe neurons.
def _sv_probes(family, probes):
    """``probes`` probe neurons of the reduced ReLU ResNet (module docstring, *ReLU ResNets*): mask
    paths (signs of the width limit's AR(1) pre-activation), ``xi``, ``eta`` and ``b_{L-1}``;
    seeded by the family's content, so that ``finite_width`` is a function of the family."""
    L = family.depth
    rng = np.random.default_rng(seeds.point_seed(0, family, "finite-width-probes"))
    law = layer_law(family)
    rho = math.sqrt(float(law.a2) / law.mean)
    z, D = rng.standard_normal(probes), np.empty((L - 1, probes))
    for l in range(L - 1):
        if l > 0:
            z = rho * z + math.sqrt(1.0 - rho * rho) * rng.standard_normal(probes)
        D[l] = z > 0
    return (D, rng.standard_normal((L - 1, probes)), rng.standard_normal((L - 1, probes)),
            rng.standard_normal(probes))


def _sv_cos(family, h, D, xi, eta, bL):
    """``cos`` of the reduced ReLU ResNet whose neuron law is ``(1 - h) mu + h delta_z`` for each
    probe ``z`` (columns): the ``mu`` part exact (neuron averages in closed form, the masks through
    their pair law ``E[d_i d_j]``), the probe's own path explicit. ``h = 0`` is ``bfa(family)``.
    (L-1, probes)."""
    L, a, beta = family.depth, float(family.skip), float(family.branch_scale)
    sig2 = np.asarray(family.stds[: L - 1], dtype=float) ** 2 * family.width
    t = np.asarray(family.trained_mask[: L - 1], dtype=float)
    k = T.finite._trained_counts(family)
    if family.activation == "relu":
        pd, pair = 0.5, _mask_correlation(layer_law(family), L)   # E[d_i d_{i+j}], j = 0 .. L-1
    else:                                                      # linear: d = 1 (a check, tested)
        pd, pair, D = 1.0, np.ones(L), np.ones_like(D)
    n_l, P = L - 1, bL.size
    # backward: the order parameters P_l = <b_l^2> and the probe's b
    Pmix, bz = np.empty((n_l, P)), np.empty((n_l, P))
    bz[-1], Pmu = bL, np.ones(P)
    Pmix[-1] = (1 - h) + h * bL * bL
    for v in range(n_l - 1, 0, -1):
        Pmu = a * a * Pmu + beta * beta * sig2[v] * Pmix[v] * pd
        bz[v - 1] = a * bz[v] + beta * math.sqrt(sig2[v]) * np.sqrt(Pmix[v]) * D[v - 1] * xi[v]
        Pmix[v - 1] = (1 - h) * Pmu + h * bz[v - 1] ** 2
    g2 = beta * beta * sig2[:, None] * Pmix                   # g_i^2 (row 0 unused)
    g2[0] = 0.0
    a2 = a * a
    # the xi_i (i > n) part of E_mu[u_n^2] and E_mu[d_n u_n^2], divided by Q_n^2
    fut_u = np.zeros((n_l, P))
    for n in range(n_l - 2, -1, -1):
        fut_u[n] = g2[n + 1] + a2 * fut_u[n + 1]
    j = np.arange(n_l)
    lag = j[None, :] - 1 - j[:, None]                         # i' - 1 - n
    toep = np.where(lag >= 0, pair[np.clip(lag, 0, None)] * a2 ** np.clip(lag, 0, None), 0.0)
    fut_s = toep @ g2
    kern = pair[1:n_l] * a2 ** np.arange(1, n_l)              # K(j) = E[d_n d_{n-j}] a^(2j), j >= 1
    tail = a2 ** (L - 2 - j)                                  # a^(2(L-2-n)): the b_{L-1} part
    Q, Y = np.zeros((n_l, P)), np.zeros((n_l, P))
    cos = np.full((n_l, P), np.nan)
    uz, N, HU = np.zeros(P), np.zeros(P), np.zeros(P)
    for i in range(n_l):
        if i == 0:
            c = t[0] / Pmix[0]
            Q[0] = c
        else:
            n = i - 1
            Y[i] = g2[i] * Q[n] ** 2
            HS = kern[:n][::-1] @ Y[1:n + 1] if n > 0 else 0.0
            Smu = pd * tail[n] * Q[n] ** 2 + HS + Q[n] ** 2 * fut_s[n] + pd * N
            S = (1 - h) * Smu + h * D[n] * uz * uz
            R = (1 - h) * np.sqrt(g2[i]) * pd * Q[n] + h * xi[i] * D[n] * uz
            Tl = h * bz[i] * eta[i]
            sg = math.sqrt(sig2[i])
            c = beta * sg * (R / np.sqrt(Pmix[i]) - np.sqrt(S) * Tl / Pmix[i]) + t[i] / Pmix[i]
            Q[i] = a2 * Q[n] + c
            N = a2 * N + beta * beta * sig2[i] * S
            HU = a2 * (HU + Y[i])
            uz = a * uz + beta * sg * np.sqrt(S) * eta[i]
        uz = uz + c * bz[i] if i > 0 else c * bz[0]
        Umu = tail[i] * Q[i] ** 2 + pd * (HU + Q[i] ** 2 * fut_u[i]) + N
        if k[i] > 0:
            cos[i] = k[i] / np.sqrt(Pmix[i] * ((1 - h) * Umu + h * uz * uz))
    return cos


def second_variation_c1(family, probes):
    """``(F(mu), c1, c1_se)`` of the reduced ResNet (ReLU: masks independent of the weights;
    linear: masks 1): ``c1`` the second von Mises variation of the width limit ``F(mu)``,
    averaged over ``probes`` probe neurons (central differences in ``h``; the rest is
    deterministic)."""
    h, L = 1e-4, family.depth
    z = _sv_probes(family, probes)
    s1, s2 = np.zeros(L - 1), np.zeros(L - 1)
    for lo in range(0, probes, 2000):
        zc = [x[..., lo:lo + 2000] for x in z]
        f0 = _sv_cos(family, 0.0, *zc)
        d2 = (_sv_cos(family, h, *zc) + _sv_cos(family, -h, *zc) - 2 * f0) / (h * h)
        s1, s2 = s1 + d2.sum(axis=1), s2 + (d2 * d2).sum(axis=1)
    mean = s1 / probes
    var = np.maximum(s2 / probes - mean * mean, 0.0) * probes / (probes - 1)
    c1, se = 0.5 * mean, 0.5 * np.sqrt(var / probes)
    return f0[:, 0], c1, se


def relu_probe():
    """ReLU ResNets: which masks carry the finite-width excess, and the 1/m coefficient of the
    reduced (weight-independent-mask) model against ``width_limit``'s fit of the sampler."""
    q = 4 if quick else 1
    fam = ResNet.scaled(48, 16, 2.0)
    lim, lim_free = T.bfa(fam).cos, T.bfa(fam, mode="free").cos
    print("\nReLU ResNet m = 16, L = 48, c = 2: gap to the width limit (free masks: to the free one)")
    print("| masks | draws | v = 24 | v = 47 |\n|---|---|---|---|")
    for mode, n in (("own", 2000 // q), ("gp", 20000 // q), ("gpfix", 20000 // q), ("free", 20000 // q)):
        o = (_network_own_masks(fam, n, 1) if mode == "own"
             else np.concatenate([reduced_resnet(fam, 2000, 1 + j, mode) for j in range(n // 2000)]))
        ref = lim_free if mode == "free" else lim
        print(f"| {mode} | {len(o)} | " + " | ".join(
            f"{o[:, v - 1].mean() - ref[v - 1]:+.4f} ± {o[:, v - 1].std() / np.sqrt(len(o)):.4f}"
            for v in (24, 47)) + " |", flush=True)
    widths, n = [16, 32, 64, 128], 40000 // q
    d = json.loads((out / f"wl_resnet_relu_L32_c2_16-32-64-128_n2000_s{SEED}.json").read_text())
    fit = fit_width_limit(widths, np.array(d["means"]), np.array(d["sems"]))
    wl, wl_se = fit.coef[:, 1], np.sqrt(fit.cov[:, 1, 1])
    print(f"\n1/m coefficient, L = 32: reduced model over widths {widths} ({n} draws each), c0 + c1/m")
    print("| c | masks | v | c1 fitted (reduced) | c1 width_limit (sampler, own masks) | z | "
          "linear chain c1 |\n|---|---|---|---|---|---|---|")
    for c, mode in ((2.0, "ones"), (2.0, "gp"), (1.0, "gp"), (1.0, "free")):
        act = "linear" if mode == "ones" else "relu"
        means, sems = [], []
        for w in widths:
            f = ResNet.scaled(32, w, c, activation=act)
            o = np.concatenate([reduced_resnet(f, 4000, 100 + j, mode) for j in range(n // 4000)])
            means.append(o.mean(0)), sems.append(o.std(0) / np.sqrt(len(o)))
        g = fit_width_limit(widths, np.array(means), np.array(sems))
        c1, se = g.coef[:, 1], np.sqrt(g.cov[:, 1, 1])
        dc0 = np.abs(g.coef[:, 0] - T.bfa(ResNet.scaled(32, 64, c, activation=act),
                                          mode="free" if mode == "free" else "exact").cos)
        print(f"| {c:g} | {mode} | max over layers of abs(c0 - bfa) = {np.nanmax(dc0):.1e} | | | |")
        lin = T.finite_width(ResNet.scaled(32, 64, c, activation="linear")).c1
        for v in (4, 8, 16, 24, 31):
            j = v - 1
            other = (f"{wl[j]:.3f} ± {wl_se[j]:.3f} | {(c1[j] - wl[j]) / np.hypot(se[j], wl_se[j]):+.2f}"
                     if (c, act) == (2.0, "relu") else "| ")
            print(f"| {c:g} | {mode} | {v} | {c1[j]:.3f} ± {se[j]:.3f} | {other} | {lin[j]:.3f} |", flush=True)
    second_variation_probe(q)


def second_variation_probe(q=1):
    """The exact second variation: its two checks, then the independent-mask model's c1 against
    the network's own ``m (cos - width limit)`` (numpy, and the sampler's cached runs)."""
    probes = 100000 // q
    print(f"\nSecond von Mises variation, L = 32 ({probes} probes); checks: F(mu) = bfa, and with "
          "masks 1 the linear chain's c1")
    for act in ("linear", "relu"):
        fam = ResNet.scaled(32, 64, 2.0, activation=act)
        F0, c1, se = second_variation_c1(fam, probes)
        ref = T.finite_width(fam).c1 if act == "linear" else None
        print(f"| c = 2, {act} | max abs(F(mu) - bfa) = {np.nanmax(np.abs(F0 - T.bfa(fam).cos)):.1e} | " +
              ", ".join(f"v = {v}: {c1[v - 1]:.3f} ± {se[v - 1]:.3f}" +
                        (f" (chain {ref[v - 1]:.3f})" if ref is not None else "")
                        for v in (4, 8, 16, 24, 31)) + " |", flush=True)
    # the network's own masks against masks independent of the weights, m * (cos - bfa), L = 32, c = 2
    print("\nm (cos - width limit), ReLU ResNet L = 32, c = 2: the network's own masks, an independent "
          "copy's masks (numpy), and the second variation (the c1 of independent masks)")
    print("| m | masks | draws | v = 4 | v = 8 | v = 16 | v = 24 | v = 31 |\n|---|---|---|---|---|---|---|---|")
    fam = ResNet.scaled(32, 32, 2.0)
    lim = T.bfa(fam).cos
    _, c1, se = second_variation_c1(fam, probes)
    for copy in (False, True):
        o = np.concatenate([_network_own_masks(fam, 1000, 10 + j, copy) for j in range(8 // q)])
        print(f"| 32 | {'independent copy' if copy else 'own'} | {len(o)} | " + " | ".join(
            f"{32 * (o[:, v - 1].mean() - lim[v - 1]):+.3f} ± {32 * o[:, v - 1].std() / np.sqrt(len(o)):.3f}"
            for v in (4, 8, 16, 24, 31)) + " |", flush=True)
    for widths, n, seed in (([16, 32, 64, 128], 2000, SEED), ([32, 64, 128, 256], 4000, 777)):
        path = out / f"wl_resnet_relu_L32_c2_{'-'.join(map(str, widths))}_n{n}_s{seed}.json"
        means, sems = cached_width_limit(fam, widths, n, seed, path)
        for i, w in enumerate(widths):
            mu, sd = means[i], sems[i]
            print(f"| {w} | own (sample_bfa, seed {seed}) | {n} | " + " | ".join(
                f"{w * (mu[v - 1] - lim[v - 1]):+.3f} ± {w * sd[v - 1]:.3f}" for v in (4, 8, 16, 24, 31)) + " |")
    print("| all | second variation (independent masks) | | " +
          " | ".join(f"{c1[v - 1]:.3f} ± {se[v - 1]:.3f}" for v in (4, 8, 16, 24, 31)) + " |")
    # the exact reduction with the network's own masks: it reproduces the sampler, and reaches
    # widths the sampler cannot (O(m L) a draw)
    for m, n, chunk in ((16, 16000, 2000), (32, 16000, 2000), (64, 16000, 2000), (128, 32000, 2000),
                        (256, 32000, 1000), (512, 48000, 500), (1024, 64000, 250)):
        if quick and m > 64:
            break
        f = ResNet.scaled(32, m, 2.0)
        o = np.concatenate([exact_reduced_resnet(f, chunk, [7, m, j]) for j in range(n // q // chunk)])
        print(f"| {m} | own, exact reduction | {len(o)} | " + " | ".join(
            f"{m * (o[:, v - 1].mean() - lim[v - 1]):+.3f} ± {m * o[:, v - 1].std() / np.sqrt(len(o)):.3f}"
            for v in (4, 8, 16, 24, 31)) + " |", flush=True)


# (family, draws) for --moments: L/m = 0.25 .. 4
MOMENTS = [(MLP(L, 64), 400) for L in (16, 32, 64, 128, 256)] + \
          [(MLP(L, 128), 200) for L in (64, 128)] + \
          [(MLP(L, 64, activation="linear"), 400) for L in (32, 64, 256)] + \
          [(MLP(L, 64, weights="orthogonal"), 400) for L in (32, 64)] + \
          [(ResNet.scaled(L, 64, c, activation="linear"), 1000) for c, L in
           ((1, 64), (2, 32), (2, 64), (2, 256))] + \
          [(ResNet.scaled(512, 128, 2, activation="linear"), 300)] + \
          [(ResNet.scaled(L, 64, 2, activation="linear", weights="orthogonal"), 1000) for L in (64, 256)] + \
          [(ResNet.scaled(L, 64, c), 1000) for c, L in ((2, 32), (2, 64), (2, 256), (1, 64), (1, 256))] + \
          [(ResNet.scaled(512, 128, 2), 300)] + \
          [(ResNet.scaled(L, 64, c, weights="orthogonal"), 1000) for c, L in ((2, 64), (2, 256), (1, 64))]
# the one ReLU point beyond 2 SE, sampled again with another seed: (family, draws, seed)
MOMENTS_RERUN = [(ResNet.scaled(256, 64, 1), 1000, 4242)]
if quick:
    MOMENTS = MOMENTS[:2]
    MOMENTS_RERUN = []


def moments_sampled(fam, n, seed=None):
    """Per-draw ``M1, M2`` of the backward-normalised kernel ``k_v K_v / (e^T K_v e)`` at
    ``v = L/2, L-1`` from the dense sampler (cached): two (n, 2) arrays. ``seed``: the samplers'
    seed (default: the point's seed from ``SEED``)."""
    L = fam.depth
    kind = f"resnet_b{fam.branch_scale:.6g}_" if isinstance(fam, ResNet) else ""
    tag = f"s{SEED}" if seed is None else f"seed{seed}"
    path = out / f"moments_{kind}{fam.activation}_{fam.weights}_m{fam.width}_L{L}_n{n}_{tag}.json"
    if path.exists():
        d = json.loads(path.read_text())
        return np.array(d["M1"]), np.array(d["M2"])
    t, v = time.time(), np.array([L // 2, L - 1])
    seed = seeds.point_seed(SEED, fam, "bfk-moments") if seed is None else seed
    a = sample_bfa(fam, n, seed=seed, probes=1)
    b = sample_bfk(fam, layers=v, samples=n, seed=seed)
    g = a.b_norm[:, v - 1] ** 2 / a.loss_decay[:, v - 1] * np.cumsum(fam.trained_mask)[v - 1]
    mom = b.moments(2)
    M1, M2 = mom[0] * g, mom[1] * g * g
    path.write_text(json.dumps({"M1": M1.tolist(), "M2": M2.tolist(), "seconds": time.time() - t}))
    print(f"  sampled moments m={fam.width} L={L} ({n} draws) in {time.time() - t:.0f}s", flush=True)
    return M1, M2


# (family, draws) for --typical: the points of --moments and deeper MLPs
TYPICAL = MOMENTS + [(MLP(L, 128), 200) for L in (256, 512)] + \
          [(MLP(L, 64, weights="orthogonal"), 400) for L in (128, 256)] + \
          [(MLP(128, 64, activation="linear"), 400)]
# the points beyond 2 SE and a quarter of the width limit's error, sampled again, and the linear
# MLP at v = 127 (the same law as at v = 128 of L = 256): (family, ((draws, seed), ...))
TYPICAL_RERUN = [(MLP(256, 64, activation="linear"), ((400, 4243), (1200, 4246))),
                 (MLP(128, 64, activation="linear"), ((800, 4247),)),
                 (MLP(128, 128), ((200, 4244),)),
                 (MLP(256, 64, weights="orthogonal"), ((400, 4245),)),
                 (ResNet.scaled(256, 64, 1), ((1000, 4242),))]
if quick:
    TYPICAL = TYPICAL[:2]
    TYPICAL_RERUN = []


def _typical_predicted(fam):
    """``finite_width``'s ``m1``, ``m1_limit``, ``m1_typical`` and the standard error of
    ``log m1_typical`` (ReLU ResNets: from the cached expansions; ``m1_c1`` is Monte Carlo)."""
    if isinstance(fam, ResNet) and fam.activation == "relu":
        m1, _, m1_lim, _, m1_sd, m1_se, _ = _predicted_moments(fam)
        typical = T.finite._lognormal_typical(m1, m1_sd)
        with np.errstate(invalid="ignore"):            # 0 / 0 below the first trained layer
            return SimpleNamespace(m1=m1, m1_limit=m1_lim, m1_typical=typical), m1_se / m1
    return T.finite_width(fam), np.zeros(fam.depth - 1)


def typical_grid():
    """The table of ``--typical``: the sampled ``E log M1`` against ``log m1_typical``, beside the
    logs of the exact mean and of the width limit (errors and z in log units; ReLU ResNets: the
    first-order mean, and z over the combined error of the sample and of ``m1_c1``)."""
    print("| network | m | L | L/m | v | sampled exp E log M1 | typical | exact mean | width limit "
          "| err typical | err limit | z typical | z exact mean | z width limit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for fam, n in TYPICAL:
        L = fam.depth
        fw, pred_se = _typical_predicted(fam)
        x = np.log(moments_sampled(fam, n)[0])
        net = _network(fam)
        for j, v in enumerate((L // 2, L - 1)):
            mean, se = x[:, j].mean(), x[:, j].std() / np.sqrt(n)
            typ, ex, lim = np.log([fw.m1_typical[v - 1], fw.m1[v - 1], fw.m1_limit[v - 1]])
            both = np.hypot(se, pred_se[v - 1])
            z = [(typ - mean) / both, (ex - mean) / both, (lim - mean) / se]
            rows.append((L / fam.width, z[0], typ - mean, lim - mean))
            print(f"| {net} | {fam.width} | {L} | {L / fam.width:g} | {v} | {np.exp(mean):.4g} "
                  f"(± {se:.3f} in log) | {np.exp(typ):.4g} | {np.exp(ex):.4g} | {np.exp(lim):.4g} | "
                  f"{typ - mean:+.3f} | {lim - mean:+.3f} | {z[0]:+.2f} | {_z(ex, mean, both)} | "
                  f"{z[2]:+.2f} |", flush=True)
    r = np.array([x for x in rows if 0.5 <= x[0] <= 4])
    ok = (np.abs(r[:, 1]) <= 2) | (np.abs(r[:, 2]) <= np.abs(r[:, 3]) / 4)
    print(f"\nSummary: L/m from 0.5 to 4, {len(r)} points: max |z| typical {np.max(np.abs(r[:, 1])):.2f}; "
          f"within 2 SE or a quarter of the width limit's error (in log) at {ok.sum()} of {len(r)}")
    for fam, more in TYPICAL_RERUN:
        fw, pred_se = _typical_predicted(fam)
        with np.errstate(divide="ignore"):
            typ = np.log(fw.m1_typical)
        n = next(k for f, k in TYPICAL if f == fam)
        name_ = fam.label + (" orthogonal" if fam.weights == "orthogonal" else "") + \
            (f" c = {fam.branch_scale * np.sqrt(fam.depth):.3g}" if isinstance(fam, ResNet) else "")
        runs = [np.log(moments_sampled(fam, n)[0])] + [np.log(moments_sampled(fam, k, seed)[0])
                                                       for k, seed in more]
        for j, v in enumerate((fam.depth // 2, fam.depth - 1)):
            for name, x in [(f"seed {seed}", r[:, j]) for (_, seed), r in zip(more, runs[1:])] + \
                    [("pooled", np.concatenate([r[:, j] for r in runs]))]:
                mean, se = x.mean(), x.std() / np.sqrt(len(x))
                print(f"{name_}, v = {v}, {name} ({len(x)} draws): exp E log M1 {np.exp(mean):.4g} "
                      f"(± {se:.3f} in log), typical {np.exp(typ[v - 1]):.4g}: error {typ[v - 1] - mean:+.3f}, "
                      f"z = {(typ[v - 1] - mean) / np.hypot(se, pred_se[v - 1]):+.2f}")


def plot_typical(path="docs/img/finite_width_typical.png"):
    """The BFK trace of ReLU MLPs against layer (m = 64 and 128): the sampled ``exp E log M1``
    (±2 SE) at the ``--typical`` points beside ``m1_typical``, the exact mean and the width limit
    (the law of ``M1`` at layer ``v`` does not depend on ``L``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m, color in ((64, "tab:green"), (128, "tab:blue")):
        deepest = max(f.depth for f, _ in TYPICAL if f == MLP(f.depth, m))
        v = np.arange(1, deepest)
        fw = T.finite_width(MLP(deepest, m))
        ax.plot(v, fw.m1_typical, color=color, lw=1.5, label=f"m = {m}: typical, m1_typical")
        ax.plot(v, fw.m1, color=color, lw=1.0, ls=":", label=f"m = {m}: exact mean, m1")
        for fam, n in TYPICAL:
            if fam == MLP(fam.depth, m):
                x = np.log(moments_sampled(fam, n)[0])
                mean, se = x.mean(axis=0), x.std(axis=0) / np.sqrt(n)
                layers = [fam.depth // 2, fam.depth - 1]
                ax.errorbar(layers, np.exp(mean), yerr=[np.exp(mean) - np.exp(mean - 2 * se),
                                                         np.exp(mean + 2 * se) - np.exp(mean)],
                            fmt="o", ms=4, color=color, capsize=2)
    v = np.arange(1, 512)
    ax.plot(v, T.finite_width(MLP(512, 64)).m1_limit, color="k", lw=1.3, ls="--", label="width limit, k_v")
    ax.plot([], [], "o", color="grey", label="sampled exp E log M1 ± 2 SE")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1, 1e6)
    ax.set_xlabel("layer v")
    ax.set_ylabel("M1 = tr K / m (backward-normalised)")
    ax.set_title("BFK trace of ReLU MLPs: typical against mean")
    ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def _network(fam):
    """The network column of the moment tables: ``relu``, ``linear, orthogonal ResNet, c = 2``..."""
    net = fam.activation + (", orthogonal" if fam.weights == "orthogonal" else "")
    if isinstance(fam, ResNet):
        net += f" ResNet, c = {fam.branch_scale * np.sqrt(fam.depth):.3g}"
    return net


def _z(x, mean, se):
    z = (x - mean) / se
    return f"{z:+.2f}" if abs(z) < 1000 else f"{z:+.1e}"


def _predicted_moments(fam):
    """``finite_width``'s moments (ReLU ResNets: to first order from the cached expansions) and the
    standard errors of ``m1`` and ``m2``."""
    if isinstance(fam, ResNet) and fam.activation == "relu":
        _, _, _, m1_c1, m1_se, m1_var = _relu_fw(fam, 200_000)
        k, m2_lim = T.finite._moment_limits(fam, T.bfa(fam))
        m2_c1, m2_se = _relu_m2(fam, 200_000)
        m = fam.width
        return (k + m1_c1 / m, m2_lim + m2_c1 / m, k, m2_lim, np.sqrt(m1_var / m), m1_se / m,
                m2_se / m)
    fw = T.finite_width(fam)
    zero = np.zeros(fam.depth - 1)
    return fw.m1, fw.m2, fw.m1_limit, fw.m2_limit, fw.m1_sd, zero, zero


def _relu_m2(fam, probes):
    """``(m2_c1, m2_c1_se)`` of ``theory.finite_width`` for a ReLU ResNet, cached as JSON like
    :func:`_relu_fw`."""
    path = out / f"fw_m2_relu_resnet_{fam.weights}_L{fam.depth}_b{fam.branch_scale:.6g}_p{probes}.json"
    if not path.exists():
        t = time.time()
        rel, se = R.family_m2_c1(fam, probes, T.finite._PROBE_BATCHES, 0)
        lim = T.finite._moment_limits(fam, T.bfa(fam))[1]
        path.write_text(json.dumps({"m2_c1": (rel * lim).tolist(), "m2_se": (se * lim).tolist()}))
        print(f"  M2 expansions {fam.label} in {time.time() - t:.0f}s", flush=True)
    d = json.loads(path.read_text())
    return np.array(d["m2_c1"]), np.array(d["m2_se"])


def moments_grid():
    """The table of ``--moments``; ReLU ResNets (``m1``, ``m2`` first order, ``m1_sd`` leading order) in a
    second table, with the sampled spread beside the predicted one."""
    relu = None
    for fam, n in MOMENTS:
        L = fam.depth
        kind = isinstance(fam, ResNet) and fam.activation == "relu"
        if kind != relu:                        # a new table
            relu = kind
            mean_col, sd_col = (("first-order mean", "sd / mean: sampled, predicted") if relu
                                else ("exact mean", "exact sd / mean"))
            print(f"\n| network | m | L | L/m | v | moment | sampled mean | sampled median | {mean_col} "
                  f"| width limit | z {mean_col} | z width limit | {sd_col} |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        m1, m2, m1_lim, m2_lim, m1_sd, m1_se, m2_se = _predicted_moments(fam)
        for name, x, pred, lim, pred_se in zip(("M1", "M2"), moments_sampled(fam, n), (m1, m2),
                                               (m1_lim, m2_lim), (m1_se, m2_se)):
            for j, v in enumerate((L // 2, L - 1)):
                mean, sem = x[:, j].mean(), x[:, j].std() / np.sqrt(n)
                se = np.hypot(sem, pred_se[v - 1])          # z: both errors (ReLU ResNets' are MC)
                cv = f"{m1_sd[v - 1] / pred[v - 1]:.3g}" if name == "M1" else ""
                if relu:
                    cv = f"{x[:, j].std() / mean:.3g}, {cv}"
                net = _network(fam)
                print(f"| {net} | {fam.width} | {L} | {L / fam.width:g} | {v} | {name} | "
                      f"{mean:.4g} ± {sem:.2g} | {np.median(x[:, j]):.4g} | {pred[v - 1]:.4g} | "
                      f"{lim[v - 1]:.4g} | {_z(pred[v - 1], mean, se)} | {_z(lim[v - 1], mean, sem)} | {cv} |",
                      flush=True)
    for fam, n, seed in MOMENTS_RERUN:
        pred = _predicted_moments(fam)
        for p, moment in enumerate(("M1", "M2")):
            first, again = moments_sampled(fam, n)[p][:, 1], moments_sampled(fam, n, seed)[p][:, 1]
            mp, mp_se = pred[p][-1], pred[5 + p][-1]
            for name, x in (("rerun", again), ("pooled", np.concatenate([first, again]))):
                mean, sem = x.mean(), x.std() / np.sqrt(len(x))
                print(f"{fam.label}, {moment} at the output, {name} ({len(x)} draws): {mean:.4g} ± "
                      f"{sem:.2g}, first order {mp:.4g}: z = {_z(mp, mean, np.hypot(sem, mp_se))}")


def m1_reduction(networks=20_000):
    """``m1_c1`` of ``finite_width`` (cached) against ``m (E M1 - k_v)`` of the reduction simulated
    with the trace probe (exact in law at width ``m``, so the gap includes its ``1/m^2`` terms)."""
    print("| c | L | m | networks | " + " | ".join(f"v = {f}" for f in ("L/8", "L/4", "L/2", "3L/4", "L - 1"))
          + " |\n|---|---|---|---|---|---|---|---|---|")
    for c, L, widths in ((1.0, 64, (128, 256)), (1.0, 256, (64, 128))):
        idx = [L // 8 - 1, L // 4 - 1, L // 2 - 1, 3 * L // 4 - 1, L - 2]
        _, _, _, c1, se, _ = _relu_fw(ResNet.scaled(L, 64, c), 200_000)
        print(f"| {c:g} | {L} | `m1_c1` | | " + " | ".join(f"{c1[j]:.1f} ± {se[j]:.1f}" for j in idx) + " |")
        for m in widths:
            fam = ResNet.scaled(L, m, c)
            red = replace(R.Reduction.of(fam), trace=True)
            k = R._trained_counts(fam)
            rng, chunk, vals = np.random.default_rng([11, m, L]), max(1, 64_000 // m), []
            for _ in range(0, networks, chunk):
                z, xi, eta, s = (rng.standard_normal((chunk, m, L - 1)) for _ in range(4))
                vals.append(R.simulate(red, z, xi, eta, rng.standard_normal((chunk, m)), s))
            v = np.concatenate(vals)
            gap, sem = m * (v.mean(0) - k), m * v.std(0) / np.sqrt(len(v))
            print(f"| {c:g} | {L} | {m} | {len(v)} | " + " | ".join(f"{gap[j]:.1f} ± {sem[j]:.1f}" for j in idx)
                  + " |", flush=True)


# --m2-reduction: (L, weights, layers v, runs (seed, networks scale)); c = 2
M2_REDUCTION = [(8, "gaussian", (3, 5, 7), ((101, 1), (202, 3))),
                (32, "gaussian", (8, 16, 24, 31), ((101, 1),)),
                (8, "orthogonal", (3, 5, 7), ((303, 3),))]


def m2_reduction():
    """The M2 probe's ``1/m`` coefficient (:func:`R.c1_expansion` at layer ``v``, 200 000 probes)
    against the simulated reduction's ``m (E M2 - m2_limit)`` at m = 32 .. 256 (``4e6 scale /
    (m L)`` networks in each of 8 chunks a width and layer; runs pooled by inverse variance),
    fitted with its ``1/m^2`` term (c = 2; cached; the L = 32 run takes about 20 minutes)."""
    print("| weights | L | v | `m2_c1` | fit with `1/m²` | z | m = 32 | m = 64 | m = 128 | m = 256 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    widths = (32, 64, 128, 256)
    for L, weights, layers, runs in M2_REDUCTION:
        fam0 = ResNet.scaled(L, 64, 2.0, weights=weights)
        tag = "" if weights == "gaussian" else f"_{weights}"
        lim = T.finite._moment_limits(fam0, T.bfa(fam0))[1]
        coef = {}
        for v in layers:
            path = out / f"m2_c1_relu_resnet_L{L}_c2_v{v}{tag}.json"
            if not path.exists():
                c1, se = R.c1_expansion(replace(R.Reduction.of(fam0), probe=v - 1), probes=200_000,
                                        batches=8, seed=3)
                path.write_text(json.dumps([float(c1[0]), float(se[0])]))
            coef[v] = json.loads(path.read_text())
        sims = []
        for seed, scale in runs:
            path = out / f"m2_reduction_L{L}_c2_seed{seed}_x{scale:g}{tag}.json"
            if not path.exists():
                rng, got = np.random.default_rng(seed), {}
                for m in widths:
                    fam, N = fam0.replace(width=m), int(4e6 * scale // (m * L))
                    for v in layers:
                        red = replace(R.Reduction.of(fam), probe=v - 1)
                        e = []
                        for _ in range(8):
                            z, xi, eta, src = (rng.standard_normal((N, m, L - 1)) for _ in range(4))
                            e.append(R.simulate(red, z, xi, eta, rng.standard_normal((N, m)), src))
                        e = np.concatenate(e)
                        got[f"{m}_{v}"] = [float(e.mean()), float(e.std() / np.sqrt(e.size))]
                path.write_text(json.dumps(got))
            sims.append(json.loads(path.read_text()))
        for v in layers:
            y, sd = [], []
            for m in widths:            # runs pooled by inverse variance
                vals = np.array([run[f"{m}_{v}"] for run in sims])
                w = 1 / vals[:, 1] ** 2
                y.append(m * ((vals[:, 0] * w).sum() / w.sum() - lim[v - 1]))
                sd.append(m / np.sqrt(w.sum()))
            y, sd = np.array(y), np.array(sd)
            X = np.vander(1 / np.array(widths), 3, increasing=True) / sd[:, None]
            cov = np.linalg.inv(X.T @ X)
            fit, fse = (cov @ X.T @ (y / sd))[0], np.sqrt(cov[0, 0])
            c1, se = coef[v]
            cells = " | ".join(f"{a:.4g} ± {b:.2g}" for a, b in zip(y, sd))
            print(f"| {weights} | {L} | {v} | {c1:.4g} ± {se:.2g} | {fit:.4g} ± {fse:.2g} | "
                  f"{(c1 - fit) / np.hypot(fse, se):+.2f} | {cells} |", flush=True)


def _relu_fw(fam, probes):
    """``(cos_limit, c1, c1_se, m1_c1, m1_c1_se, m1_var)`` of ``theory.finite_width`` for a ReLU
    ResNet (``m1_var = m m1_sd^2``), cached as JSON (the expansions take minutes; the coefficients
    do not depend on the width)."""
    path = out / f"fw_relu_resnet_{fam.weights}_L{fam.depth}_b{fam.branch_scale:.6g}_p{probes}.json"
    keys = ("c1", "se", "m1_c1", "m1_se", "m1_var")
    if not path.exists() or not set(keys) <= set(json.loads(path.read_text())):
        t = time.time()
        fw = T.finite_width(fam, probes=probes)
        path.write_text(json.dumps(dict(zip(keys, (x.tolist() for x in (
            fw.c1, fw.c1_se, fw.m1_c1, fw.m1_c1_se, fam.width * fw.m1_sd ** 2))))))
        print(f"  finite_width {fam.label} in {time.time() - t:.0f}s", flush=True)
    d = json.loads(path.read_text())
    return (T.bfa(fam).cos, *(np.array(d[k], dtype=float) for k in keys))


def relu_resnet(probes, files, weights="gaussian"):
    """ReLU ResNets: ``finite_width`` (``bfa + c1/m``, ``c1`` from the exact reduction, depth
    extrapolated beyond 64) against the sampled means of ``--resnet`` (same draws, cached) at every
    grid point; then, for each ``scripts/relu_resnet_c1.py --out FILE`` given (a depth beyond 64
    computed directly), the extrapolated ``c1`` against the direct one."""
    def fail(msg):
        print(f"finite_width_validate.py: --relu-resnet {msg}", file=sys.stderr)
        sys.exit(2)

    direct = []
    for name in files:
        try:
            with open(name) as fh:
                d = json.load(fh)
            direct.append((d["depth"], d["c"], d["activation"], np.array(d["c1"]), np.array(d["se"])))
        except (OSError, ValueError, KeyError) as e:
            fail(f"{name}: not a relu_resnet_c1.py result ({e})")
    print("\n| c | m | L | L/m | v | sampled | width limit | c1 (± se) | finite width | err limit | "
          "err finite | z limit | z finite |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for c, act, m, n, depths, *w in RESNET:
        if act != "relu" or (w or ["gaussian"])[0] != weights:
            continue
        for L in depths:
            fam = ResNet.scaled(L, m, c, weights=weights)
            mean, sem = resnet_sampled(fam, n)
            lim, c1, c1_se, *_ = _relu_fw(fam, probes)
            for v in (L // 2, L - 1):
                j = v - 1
                pred = lim[j] + c1[j] / m
                el, ef = lim[j] - mean[j], pred - mean[j]
                rows.append((m, L, L / m, v, el / sem[j], ef / sem[j], el, ef))
                print(f"| {c:g} | {m} | {L} | {L / m:g} | {v} | {mean[j]:.4f} ± {sem[j]:.4f} | {lim[j]:.4f} | "
                      f"{c1[j]:.3f} ± {c1_se[j]:.3f} | {pred:.4f} | {el:+.4f} | {ef:+.4f} | "
                      f"{el / sem[j]:+.2f} | {ef / sem[j]:+.2f} |", flush=True)
    if direct:
        print("\nThe depth extrapolation against c1 computed at the depth itself "
              "(scripts/relu_resnet_c1.py):")
        print("| c | L | v | direct c1 ± se | extrapolated c1 ± se | z |")
        print("|---|---|---|---|---|---|")
    for L, c, act, c1d, sed in direct:
        if act != "relu" or L <= 64:
            fail(f"the direct results must be ReLU ResNets deeper than 64, got {act} L = {L}")
        _, c1, se, *_ = _relu_fw(ResNet.scaled(L, 64, c), probes)
        for v in sorted({L // 8, L // 4, L // 2, 3 * L // 4, L - 1}):
            j = v - 1
            print(f"| {c:g} | {L} | {v} | {c1d[j]:.3f} ± {sed[j]:.3f} | {c1[j]:.3f} ± {se[j]:.3f} | "
                  f"{(c1[j] - c1d[j]) / math.hypot(se[j], sed[j]):+.2f} |")
    return rows


def relu_coefficient(weights, probes):
    """ReLU ResNets, L = 32, c = 2: ``finite_width``'s ``c1`` against ``width_limit``'s fit with the
    ``1/m^2`` term (``order=2``; widths 32..256, 4000 draws a width and seed, cached; the fit of
    the first seed, then of both pooled; Gaussian weights: also the exact reduction's, and all
    pooled): with ``1/m^2`` terms this large, the plain ``c0 + c1/m`` fit is not the ``1/m``
    coefficient."""
    fam = ResNet.scaled(32, 32, 2.0, weights=weights)
    widths = [32, 64, 128, 256]
    tag = "" if weights == "gaussian" else f"_{weights}"
    runs = [cached_width_limit(fam, widths, 4000, seed, out / f"wl_resnet_relu{tag}_L32_c2_"
                               f"{'-'.join(map(str, widths))}_n4000_s{seed}.json") for seed in (777, 778)]
    fits = [fit_width_limit(widths, *runs[0], order=2), fit_width_limit(widths, *_pool(runs), order=2)]
    head = "| v | c1 ± se | fitted c1 ± se, 4000 | z | fitted c1 ± se, 8000 | z |"
    if weights == "gaussian":     # the same fit of the exact reduction, 32 000 networks a width
        red = _reduction_width_limit(widths, out / "reduction_relu_L32_c2_32-64-128-256_n32000.json")
        fits += [fit_width_limit(widths, *red, order=2),
                 fit_width_limit(widths, *_pool(runs + [red]), order=2)]
        head += " fitted c1 ± se, reduction | z | fitted c1 ± se, all pooled | z |"
    _, c1, se, *_ = _relu_fw(fam, probes)
    print(f"\n{weights} ReLU ResNet, L = 32, c = 2: c1 against width_limit's order-2 fit "
          "(4000 draws a width, seed 777; 8000, seeds 777 and 778 pooled; Gaussian weights: the exact "
          "reduction's 32 000 networks a width, and all of them pooled)")
    print(head)
    print("|---" * head.count(" |") + "|")
    for v in (4, 8, 16, 24, 31):
        j = v - 1
        cells = []
        for fit in fits:
            fc, fs = fit.coef[j, 1], math.sqrt(fit.cov[j, 1, 1])
            cells.append(f"{fc:.3f} ± {fs:.3f} | {(fc - c1[j]) / math.hypot(fs, se[j]):+.2f}")
        print(f"| {v} | {c1[j]:.3f} ± {se[j]:.3f} | {' | '.join(cells)} |")


def _pool(runs):
    """Inverse-variance pooled ``(means, sems)`` of several ``(means, sems)`` of one law."""
    w = np.array([s ** -2.0 for _, s in runs])
    return np.sum(np.array([m for m, _ in runs]) * w, axis=0) / w.sum(axis=0), w.sum(axis=0) ** -0.5


def _reduction_width_limit(widths, path):
    """``(means, sems)`` of ``cos`` in 32 000 simulated networks of the exact reduction
    (:func:`exact_reduced_resnet`) a width of ``ResNet.scaled(32, m, 2)``, cached as JSON."""
    if not path.exists():
        means, sems = [], []
        for m in widths:
            fam = ResNet.scaled(32, m, 2.0)
            c = np.concatenate([exact_reduced_resnet(fam, 1000, [11, m, part, j])
                                for part in (0, 1) for j in range(16)])
            means.append(c.mean(axis=0))
            sems.append(c.std(axis=0, ddof=1) / np.sqrt(c.shape[0]))
        path.write_text(json.dumps({"means": np.array(means).tolist(), "sems": np.array(sems).tolist()}))
    d = json.loads(path.read_text())
    return np.array(d["means"]), np.array(d["sems"])


def summary(rows, name):
    sel = [r for r in rows if r[2] >= 0.5]
    if not sel:
        return
    z, zl = np.array([r[5] for r in sel]), np.array([r[4] for r in sel])
    quarter = np.array([abs(r[7]) <= abs(r[6]) / 4 for r in sel])
    print(f"\n{name}, L/m >= 0.5: {len(z)} points; max |z| finite width {np.max(np.abs(z)):.2f}, width "
          f"limit {np.max(np.abs(zl)):.2f}; finite width within 2 SE or a quarter of the width "
          f"limit's error at {np.sum((np.abs(z) <= 2) | quarter)} of {len(z)}; all points: "
          f"max |z| finite width {np.max(np.abs([r[5] for r in rows])):.2f}")


_FLAGS = {"--plot", "--m1-reduction", "--m2-reduction", "--moments", "--typical", "--plot-typical",
          "--relu-probe", "--relu-resnet", "--probes", "--resnet", "--quick", "--sample-only", "--out"}

if __name__ == "__main__":
    unknown = [a for a in sys.argv[1:] if a.startswith("--") and a not in _FLAGS]
    if unknown:       # the default is the whole MLP grid (long): a typo must not start it
        print(f"finite_width_validate.py: unknown option {unknown[0]} (one of {', '.join(sorted(_FLAGS))})",
              file=sys.stderr)
        sys.exit(2)
    t0 = time.time()
    if "--plot" in sys.argv:
        plot()
    elif "--m1-reduction" in sys.argv:
        m1_reduction(2000 if quick else 20_000)
    elif "--m2-reduction" in sys.argv:
        m2_reduction()
    elif "--moments" in sys.argv:
        moments_grid()
    elif "--typical" in sys.argv:
        typical_grid()
    elif "--plot-typical" in sys.argv:
        plot_typical()
    elif "--relu-probe" in sys.argv:
        relu_probe()
    elif "--relu-resnet" in sys.argv:
        args = sys.argv[sys.argv.index("--relu-resnet") + 1:]
        probes = 200_000
        if "--probes" in args:
            try:
                probes = int(args[args.index("--probes") + 1])
                if probes < 800:
                    raise ValueError
            except (IndexError, ValueError):
                print("finite_width_validate.py: --probes needs an integer >= 800", file=sys.stderr)
                sys.exit(2)
            del args[args.index("--probes"):args.index("--probes") + 2]
        summary(relu_resnet(probes, [f for f in args if not f.startswith("--")]), "ReLU ResNets")
        summary(relu_resnet(probes, [], "orthogonal"), "orthogonal ReLU ResNets")
        for weights in ("gaussian", "orthogonal"):
            relu_coefficient(weights, probes)
    elif "--resnet" in sys.argv:
        resnet_coefficient()
        rows = resnet_grid()
        summary(rows, "linear ResNets")
        summary(reruns(rows, RESNET_RERUN), "linear ResNets, every run of a point pooled")
    else:
        coefficient()
        rows, pooled = grid()
        summary(rows, "MLPs")
        summary(pooled, "MLPs, every run of a point pooled")
    print(f"total {time.time() - t0:.0f}s")
