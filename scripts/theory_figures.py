"""Figures for docs/theory.md (saved to docs/img/theory_*.png)."""
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rmtalign import theory as T  # noqa: E402
from rmtalign.families import MLP  # noqa: E402

out = os.path.join(os.path.dirname(__file__), "..", "docs", "img")
os.makedirs(out, exist_ok=True)

# 1. MLP: exact cos vs v, with the sqrt(3/(sigma^2 v)) asymptote
fig, ax = plt.subplots(figsize=(5.5, 4))
for act, w, var in [("relu", "gaussian", 2), ("relu", "orthogonal", 1), ("linear", "gaussian", 1), ("linear", "orthogonal", 0)]:
    r = T.bfa(MLP(10**4, 100, activation=act, weights=w))
    ax.loglog(r.layers[1:], r.cos[1:], label=f"{act}, {w} (Var Y = {var})")
v = np.logspace(0.5, 4, 50)
ax.loglog(v, np.sqrt(1.5 / v), "k:", label=r"$\sqrt{3/2}\,v^{-1/2}$")
ax.set_xlabel("layer v"); ax.set_ylabel(r"$\cos\theta_v$ (width limit)"); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(os.path.join(out, "theory_mlp.png"), dpi=120)

# 2. phi(c): exact masks vs free model, and c^-1/2 / c^-1 guides
fig, ax = plt.subplots(figsize=(5.5, 4))
cs = np.logspace(-1, 2, 60)
ax.loglog(cs, [T.depth_limit(0.5, c).cos for c in cs], label="ReLU, exact masks")
ax.loglog(cs, [T.depth_limit(0.5, c, mode="free").cos for c in cs], "--", label="free model (linear / indep. masks)")
ax.loglog(cs, cs**-0.5, "k:", label=r"$c^{-1/2}$ (conjecture)")
ax.loglog(cs, 1 / cs, "k-.", label=r"$c^{-1}$")
ax.set_ylim(5e-3, 1.5); ax.set_xlabel("c"); ax.set_ylabel(r"$\cos\varphi(c)$, $L\to\infty$"); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(os.path.join(out, "theory_phi.png"), dpi=120)

# 3. phase diagram over alpha
pd = T.phase_diagram(np.linspace(0, 1, 41), c=1.0, depths=(10**2, 10**3, 10**4, 10**5))
fig, ax = plt.subplots(figsize=(5.5, 4))
for L, row in zip(pd.depths, pd.cos):
    ax.plot(pd.alphas, row, label=f"L = {L}")
ax.plot(pd.alphas, pd.limit, "k.", label=r"$L\to\infty$")
ax.set_xlabel(r"$\alpha$ ($\beta = L^{-\alpha}$)"); ax.set_ylabel(r"output $\cos\theta_{L-1}$"); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(os.path.join(out, "theory_phase.png"), dpi=120)

# 4. BFK density (MLP) vs sampled eigenvalues
from rmtalign.sampling import sample_bfk  # noqa: E402
f = MLP(8, 400)
d = T.bfk_density(f, 7, x=np.linspace(0, 40, 2000))
eig = sample_bfk(f, [7], samples=4, seed=1, mode="free").eigenvalues.ravel()
(loc, mass), = d.atoms.items()
fig, ax = plt.subplots(figsize=(5.5, 4))
ax.hist(eig[eig > loc * 1.02], bins=120, density=True, weights=None, alpha=0.4, label="sampled, m=400 (excl. atom)")
ax.plot(d.x, d.density / (1 - mass), label=f"theory (atom {mass:.3f} at c)")
ax.set_xlabel(r"eigenvalue of $K_7$"); ax.set_ylabel("density (continuous part)"); ax.legend(fontsize=7)
fig.tight_layout(); fig.savefig(os.path.join(out, "theory_density.png"), dpi=120)
print("saved to", os.path.abspath(out))
