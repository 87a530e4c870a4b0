"""Experiments 1 and 2: training curves of deep MLPs per scheme, and of ResNets per branch scale,
with the measured BFA during training beside the width-limit theory at init.

Each (scheme, optimizer, size) is trained at a few base learning rates; the curves shown are
those of the best rate (lowest final training loss), so "does not train" means at none of them.
A run *trained* when its final training loss is below ``0.9 x`` both its loss at init and the
chance loss (``log 10`` for the 10-class tasks, 1 for the teacher's standardised targets): an
output scale that starts above chance and falls back to it has not trained.
"""
from __future__ import annotations

import math

import numpy as np

from ..results import write_csv

__all__ = ["best_runs", "trained", "write_tables", "plot_curves", "plot_bfa"]

CHANCE_LOSS = {"mnist1d": math.log(10), "digits": math.log(10), "teacher": 1.0}

_GROUP = ("arch", "beta_rule", "depth", "width", "scheme", "optimizer", "seed")


def best_runs(records) -> list:
    """The record of the best base learning rate of each group (arch, beta rule, depth, width,
    scheme, optimizer, seed); a group whose runs all diverged keeps its lowest rate's record."""
    groups = {}
    for r in records:
        groups.setdefault(tuple(r["point"].get(k) for k in _GROUP), []).append(r)
    out = []
    for key in sorted(groups, key=str):
        recs = groups[key]
        finite = [r for r in recs if r["final"]["train_loss"] is not None
                  and np.isfinite(r["final"]["train_loss"])]
        out.append(min(finite, key=lambda r: r["final"]["train_loss"]) if finite
                   else min(recs, key=lambda r: r["point"]["log2_lr"]))
    return out


def trained(rec) -> bool:
    """Whether the run of ``rec`` trained (module docstring)."""
    end = rec["final"]["train_loss"]
    ref = min(rec["curve"][0]["train_loss"], CHANCE_LOSS[rec["point"]["task"]])
    return end is not None and bool(np.isfinite(end)) and end < 0.9 * ref


def write_tables(records, out_dir):
    """``final.csv`` (every run), ``curves.csv`` and ``bfa.csv`` (best rate of each group) in
    ``out_dir``; returns the best runs."""
    cols = ("task",) + _GROUP + ("beta", "log2_lr", "steps", "batch")
    best = best_runs(records)
    best_keys = {r["key"] for r in best}

    def val(v):
        return np.nan if v is None else v

    table = {c: [val(r["point"].get(c)) for r in records] for c in cols}
    for c in ("train_loss", "test_loss", "test_acc", "diverged", "stopped_at"):
        table[c] = [val(r["final"][c]) for r in records]
    table["best"] = [r["key"] in best_keys for r in records]
    table["trained"] = [trained(r) for r in records]
    table["cpu_seconds"] = [r["seconds"] for r in records]
    write_csv(out_dir / "final.csv", table)
    curve = {c: [] for c in cols + ("step", "train_loss", "test_loss", "test_acc")}
    bfa = {c: [] for c in cols + ("step", "layer", "cos", "theory_cos", "fdot_rms", "b_norm")}
    for r in best:
        for row in r["curve"]:
            for c in cols:
                curve[c].append(val(r["point"].get(c)))
            for c in ("step", "train_loss", "test_loss", "test_acc"):
                curve[c].append(val(row[c]))
        for row in r["bfa"]:
            for c in cols:
                bfa[c].append(val(r["point"].get(c)))
            for c in ("step", "layer", "cos", "theory_cos", "fdot_rms", "b_norm"):
                bfa[c].append(val(row[c]))
    write_csv(out_dir / "curves.csv", curve)
    write_csv(out_dir / "bfa.csv", bfa)
    return best


def plot_curves(best, path, *, by, lines):
    """Training loss against step: one panel per (optimizer, value of ``by``), one line per value
    of ``lines`` (point fields), the best rate of each."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = sorted({(r["point"]["optimizer"], r["point"].get("beta_rule")) for r in best}, key=str)
    cols = sorted({r["point"][by] for r in best})
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.0 * len(cols), 2.5 * len(rows)),
                             squeeze=False, sharey=True)
    for i, (optim, rule) in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            for n, r in enumerate(sorted((r for r in best if r["point"]["optimizer"] == optim
                                          and r["point"].get("beta_rule") == rule
                                          and r["point"][by] == c),
                                         key=lambda r: str(r["point"][lines]))):
                steps = [row["step"] for row in r["curve"]]
                loss = [row["train_loss"] for row in r["curve"]]
                lab = f"{r['point'][lines]} (2^{r['point']['log2_lr']:g})"
                ax.plot(steps, loss, color=f"C{n}", label=lab)
            title = f"{optim}, {by}={c}" + (f", beta={rule}" if rule else "")
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
            if j == 0:
                ax.set_ylabel("train loss", fontsize=8)
    axes[0, 0].set_ylim(0, 3.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bfa(best, path, *, by, lines, optimizer="sgd"):
    """``cos theta_v`` against layer ``v`` at each measured step (shades), one panel per
    (value of ``lines`` and scheme, value of ``by``), the width-limit theory at init dashed."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    best = [r for r in best if r["point"]["optimizer"] == optimizer and r["bfa"]]

    def row_of(r):
        return (str(r["point"][lines]), r["point"]["scheme"])

    rows = sorted({row_of(r) for r in best})
    cols = sorted({r["point"][by] for r in best})
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.8 * len(cols), 2.2 * len(rows)),
                             squeeze=False, sharey=True)
    for i, rowv in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            for r in best:
                if row_of(r) != rowv or r["point"][by] != c:
                    continue
                steps = sorted({b["step"] for b in r["bfa"]})
                for n, s in enumerate(steps):
                    pts = [b for b in r["bfa"] if b["step"] == s]
                    ax.plot([b["layer"] for b in pts], [b["cos"] for b in pts], "-",
                            color=plt.get_cmap("plasma")(n / max(1, len(steps))), lw=1,
                            label=f"step {s}")
                pts = [b for b in r["bfa"] if b["step"] == steps[0]]
                ax.plot([b["layer"] for b in pts], [b["theory_cos"] for b in pts], "k--", lw=0.8,
                        label="theory, init")
            label = f"{rowv[1]}" if lines == "scheme" else f"{rowv[1]}, {lines}={rowv[0]}"
            ax.set_title(f"{label}, {by}={c}", fontsize=8)
            ax.set_xlabel("layer v", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("cos BFA", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    axes[0, 0].set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
