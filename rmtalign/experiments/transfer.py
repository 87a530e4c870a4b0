"""Experiment 3: learning-rate transfer across width and depth.

For each scheme, a log2 grid of base learning rates is trained at every width (at a fixed depth)
and at every depth (at a fixed width). Per seed, the optimal log2 learning rate of each curve is
the vertex of the parabola through the best grid point and its two neighbours (clipped to that
bracket); a best point at the edge of the grid is *censored* (the optimum is at or beyond it).
The drift of a scheme is the optimum at the largest size minus the optimum at the smallest, in
octaves, per seed; a scheme transfers when its drift is near 0.
"""
from __future__ import annotations

import math

import numpy as np

from ..results import write_csv

__all__ = ["optimal_log2_lr", "optima", "drifts"]


def optimal_log2_lr(log2_lr, loss):
    """``(optimum, censored)`` of one learning-rate curve (module docstring).

    ``loss`` is NaN for diverged points (they count as worse than any finite loss). A curve with
    no finite point has optimum NaN.
    """
    g = np.asarray(log2_lr, float)
    v = np.asarray(loss, float)
    order = np.argsort(g)
    g, v = g[order], np.where(np.isfinite(v[order]), v[order], np.inf)
    if not np.isfinite(v).any():
        return float("nan"), True
    i = int(np.argmin(v))
    if i == 0 or i == len(g) - 1:
        return float(g[i]), True
    (g0, g1, g2), (v0, v1, v2) = g[i - 1:i + 2], v[i - 1:i + 2]
    if not (math.isfinite(v0) and math.isfinite(v2)):
        return float(g[i]), False
    den = (g0 - g1) * (g0 - g2) * (g1 - g2)
    a = (g2 * (v1 - v0) + g1 * (v0 - v2) + g0 * (v2 - v1)) / den
    b = (g2 ** 2 * (v0 - v1) + g1 ** 2 * (v2 - v0) + g0 ** 2 * (v1 - v2)) / den
    x = -b / (2 * a) if a > 0 else g1
    return float(min(max(x, g0), g2)), False


def optima(records) -> dict:
    """One row per (sweep, arch, scheme, optimizer, seed, size): the optimal log2 learning rate,
    whether it is censored, the best loss, and whether the best run trained (its loss below
    ``0.9 x`` the chance loss; an optimum of a curve that never trained is noise). Records carry
    ``point["sweep"]`` (``"width"`` or ``"depth"``); ``size`` is the swept width or depth."""
    from .curves import CHANCE_LOSS

    groups = {}
    for rec in records:
        p = rec["point"]
        size = p["width"] if p["sweep"] == "width" else p["depth"]
        key = (p["sweep"], p["arch"], p["scheme"], p["optimizer"], p["seed"], size)
        groups.setdefault(key, []).append((p["log2_lr"], rec["final"]["train_loss"]))
        chance = CHANCE_LOSS[p["task"]]
    rows = {k: [] for k in ("sweep", "arch", "scheme", "optimizer", "seed", "size",
                            "opt_log2_lr", "censored", "best_loss", "trained")}
    for key in sorted(groups):
        pts = sorted(groups[key])
        g, v = zip(*pts)
        v = np.array([np.nan if x is None else x for x in v], float)
        opt, cens = optimal_log2_lr(g, v)
        best = float(np.nanmin(v)) if np.isfinite(v).any() else float("nan")
        for name, val in zip(("sweep", "arch", "scheme", "optimizer", "seed", "size"), key):
            rows[name].append(val)
        rows["opt_log2_lr"].append(opt)
        rows["censored"].append(bool(cens))
        rows["best_loss"].append(best)
        rows["trained"].append(bool(np.isfinite(best) and best < 0.9 * chance))
    return rows


def drifts(opt_rows) -> dict:
    """Per (sweep, arch, scheme, optimizer): the drift of the optimum from the smallest to the
    largest size (octaves), its mean over seeds, the seeds' min and max, whether an end
    point was censored (the drift is then a bound), and whether both ends trained in every seed
    (otherwise the drift is that of a flat curve: noise)."""
    n = len(opt_rows["sweep"])
    by = {}
    for i in range(n):
        k = tuple(opt_rows[c][i] for c in ("sweep", "arch", "scheme", "optimizer"))
        by.setdefault(k, {}).setdefault(opt_rows["seed"][i], {})[opt_rows["size"][i]] = (
            opt_rows["opt_log2_lr"][i], opt_rows["censored"][i], opt_rows["trained"][i])
    out = {c: [] for c in ("sweep", "arch", "scheme", "optimizer", "size_min", "size_max",
                           "drift_octaves", "drift_min", "drift_max", "seeds", "censored",
                           "trained")}
    for k in sorted(by):
        per_seed, cens, ok = [], False, True
        lo = hi = None
        for seed, sizes in sorted(by[k].items()):
            lo, hi = min(sizes), max(sizes)
            (a, ca, ta), (b, cb, tb) = sizes[lo], sizes[hi]
            per_seed.append(b - a)
            cens = cens or ca or cb
            ok = ok and ta and tb
        d = np.array(per_seed, float)
        for c, v in zip(("sweep", "arch", "scheme", "optimizer"), k):
            out[c].append(v)
        out["size_min"].append(lo)
        out["size_max"].append(hi)
        out["drift_octaves"].append(float(np.nanmean(d)) if np.isfinite(d).any() else float("nan"))
        out["drift_min"].append(float(np.nanmin(d)) if np.isfinite(d).any() else float("nan"))
        out["drift_max"].append(float(np.nanmax(d)) if np.isfinite(d).any() else float("nan"))
        out["seeds"].append(int(np.isfinite(d).sum()))
        out["censored"].append(bool(cens))
        out["trained"].append(bool(ok))
    return out


def plot_transfer(records, opt_rows, path):
    """Loss against base learning rate, one panel per (sweep, scheme), a curve per size (mean over
    seeds), the per-seed optima marked; saved as PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sweeps = sorted({(r["point"]["sweep"], r["point"]["arch"], r["point"]["optimizer"])
                     for r in records})
    schemes = [s for s in ("sp", "mup", "mfmup", "fsc")
               if any(r["point"]["scheme"] == s for r in records)]
    fig, axes = plt.subplots(len(sweeps), len(schemes), figsize=(3.2 * len(schemes),
                             2.6 * len(sweeps)), squeeze=False, sharey=True)
    for i, (sweep, arch, optim) in enumerate(sweeps):
        for j, scheme in enumerate(schemes):
            ax = axes[i, j]
            recs = [r for r in records if (r["point"]["sweep"], r["point"]["arch"],
                    r["point"]["optimizer"], r["point"]["scheme"]) == (sweep, arch, optim, scheme)]
            sizes = sorted({r["point"][sweep] for r in recs})
            cmap = plt.get_cmap("viridis")
            for n, size in enumerate(sizes):
                color = cmap(n / max(1, len(sizes) - 1))
                by_lr = {}
                for r in recs:
                    if r["point"][sweep] == size:
                        v = r["final"]["train_loss"]
                        by_lr.setdefault(r["point"]["log2_lr"], []).append(
                            np.nan if v is None else v)
                g = sorted(by_lr)
                mean = [np.nanmean(by_lr[x]) if np.isfinite(by_lr[x]).any() else np.nan for x in g]
                ax.plot(g, mean, "o-", ms=3, color=color, label=f"{sweep[0]}={size}")
                for k in range(len(opt_rows["sweep"])):
                    if (opt_rows["sweep"][k], opt_rows["arch"][k], opt_rows["scheme"][k],
                            opt_rows["optimizer"][k], opt_rows["size"][k]) == (
                            sweep, arch, scheme, optim, size):
                        ax.axvline(opt_rows["opt_log2_lr"][k], color=color, lw=0.7, ls=":")
            ax.set_title(f"{scheme}: {arch}, {sweep} sweep, {optim}", fontsize=8)
            ax.set_xlabel("log2 base learning rate", fontsize=8)
            if j == 0:
                ax.set_ylabel("train loss (end)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
    ymax = np.nanmax([r["final"]["train_loss"] for r in records
                      if r["final"]["train_loss"] is not None] + [1.0])
    axes[0, 0].set_ylim(0, min(ymax * 1.05, 3.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_optima(opt_rows, path):
    """The optimal log2 learning rate against log2 size per scheme (mean over seeds, error bars
    from the seeds' min to max; open markers: censored), one panel per sweep."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = sorted({(s, a, o) for s, a, o in zip(opt_rows["sweep"], opt_rows["arch"],
                                               opt_rows["optimizer"])})
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    for ax, (sweep, arch, optim) in zip(axes[0], keys):
        for scheme, color in zip(("sp", "mup", "mfmup", "fsc"), ("C0", "C1", "C2", "C3")):
            pts = {}
            for k in range(len(opt_rows["sweep"])):
                if (opt_rows["sweep"][k], opt_rows["arch"][k], opt_rows["optimizer"][k],
                        opt_rows["scheme"][k]) == (sweep, arch, optim, scheme):
                    pts.setdefault(opt_rows["size"][k], []).append(
                        (opt_rows["opt_log2_lr"][k], opt_rows["censored"][k],
                         opt_rows["trained"][k]))
            if not pts:
                continue
            sizes = sorted(pts)
            x = np.log2(sizes)
            vals = [np.array([p[0] for p in pts[s]], float) for s in sizes]
            mean = np.array([np.nanmean(v) for v in vals])
            # the optimum relative to the smallest size: the drift, in octaves
            mean0 = mean - mean[0]
            lo = mean - np.array([np.nanmin(v) for v in vals])
            hi = np.array([np.nanmax(v) for v in vals]) - mean
            ax.errorbar(x, mean0, yerr=[lo, hi], color=color, capsize=2)
            # the markers above errorbar's own line (which is drawn over later plain lines)
            cens = np.array([any(p[1] for p in pts[s]) for s in sizes])
            ax.plot(x[~cens], mean0[~cens], "o", color=color, zorder=3, label=scheme)
            ax.plot(x[cens], mean0[cens], "o", mfc="white", color=color, zorder=3,
                    label=None if (~cens).any() else scheme)
            # an optimum of runs that never left chance loss is no optimum: say so on the plot
            idle = [not all(p[2] for p in pts[s]) for s in sizes]
            ax.plot(x[idle], mean0[idle], "x", ms=9, mew=2, color="k", zorder=4)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel(f"log2 {sweep}", fontsize=8)
        ax.set_ylabel("optimal log2 LR - at smallest size", fontsize=8)
        ax.set_title(f"{arch}, {sweep} sweep, {optim}", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("hollow: optimum at the grid's edge (censored); x: the runs did not train",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_tables(records, out_dir):
    """``final.csv`` (one row per point), ``optima.csv`` and ``drift.csv`` in ``out_dir``;
    returns the optima and drift tables."""
    cols = ("sweep", "task", "arch", "depth", "width", "beta", "scheme", "optimizer", "log2_lr",
            "steps", "batch", "seed")
    table = {c: [r["point"].get(c) for r in records] for c in cols}
    table["beta"] = [np.nan if b is None else b for b in table["beta"]]
    for c in ("train_loss", "test_loss", "test_acc", "diverged", "stopped_at"):
        table[c] = [np.nan if r["final"][c] is None else r["final"][c] for r in records]
    table["cpu_seconds"] = [r["seconds"] for r in records]
    write_csv(out_dir / "final.csv", table)
    opt = optima(records)
    write_csv(out_dir / "optima.csv", opt)
    dr = drifts(opt)
    write_csv(out_dir / "drift.csv", dr)
    return opt, dr
