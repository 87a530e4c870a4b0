"""matplotlib figures. Functions return ``(fig, axes)`` and never call ``plt.show``."""
from __future__ import annotations

import numpy as np


def _pyplot():
    # Imported on use: matplotlib falls back to a non-GUI backend on headless machines.
    import matplotlib.pyplot as plt

    return plt


def plot_depth_curves(curves, *, title=None):
    """Two panels: the BFA along the layers of the deepest network of each family, and the
    output BFA ``theta_{L-1}`` against depth (mean +- SE over samples).

    ``curves`` maps a label to ``{"depths": (n,), "results": [SampledBFA, ...]}`` (one result per
    depth, same order), optionally with ``"theory"``: the width-limit ``cos`` per depth (arrays
    over layers, e.g. from :func:`rmtalign.theory.bfa`), drawn dashed.
    """
    plt = _pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for label, c in curves.items():
        deep = c["results"][-1]
        mu, se = deep.mean("angle_deg"), deep.sem("angle_deg")
        (line,) = ax0.plot(deep.layers, mu, label=f"{label} (L={deep.family.depth})")
        ax0.fill_between(deep.layers, mu - se, mu + se, color=line.get_color(), alpha=0.25, lw=0)
        out = np.array([r.mean("angle_deg")[-1] for r in c["results"]])
        err = np.array([r.sem("angle_deg")[-1] for r in c["results"]])
        ax1.errorbar(c["depths"], out, yerr=err, marker="o", ms=3, capsize=2, color=line.get_color(),
                     label=label)
        if c.get("theory") is not None:
            deg = [np.degrees(np.arccos(np.clip(t, -1, 1))) for t in c["theory"]]
            ax0.plot(deep.layers, deg[-1], ls="--", lw=1, color=line.get_color())
            ax1.plot(c["depths"], [d[-1] for d in deg], ls="--", lw=1, color=line.get_color())
    ax0.set(xlabel="layer v", ylabel="BFA theta_v (degrees)", title="BFA along the network", ylim=(0, 90))
    ax1.set(xscale="log", xlabel="depth L", ylabel="output BFA theta_{L-1} (degrees)",
            title="Output BFA vs depth", ylim=(0, 90))
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if any(c.get("theory") is not None for c in curves.values()):
        ax1.plot([], [], ls="--", color="gray", label="width limit (theory)")
        ax1.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig, (ax0, ax1)
