"""Theory vs simulation at larger sizes: width-limit BFA (sample_bfa + width fit) against
theory.bfa, and BFK densities against sampled spectra (Kolmogorov distance vs width).

Usage: .venv/bin/python scripts/theory_validate.py [--quick]
"""
import sys
import time

import numpy as np

from rmtalign import theory as T
from rmtalign.families import MLP, ResNet
from rmtalign.sampling import sample_bfa, sample_bfk
from rmtalign._extrapolate import fit_width_limit

quick = "--quick" in sys.argv
widths = np.array([128, 256, 512]) if not quick else np.array([64, 128, 256])
samples = 24 if not quick else 8


def width_fit(f, mode):
    ss = np.random.SeedSequence(2024).spawn(len(widths))
    res = [sample_bfa(f.replace(width=int(w)), samples, s, mode=mode) for w, s in zip(widths, ss)]
    means = np.array([r.mean("cos")[2:] for r in res])
    sems = np.array([r.sem("cos")[2:] for r in res])
    return fit_width_limit(widths, means, sems, order=1)


cases = [("MLP relu", MLP(12, 64), "exact", "exact"),
         ("MLP relu orth", MLP(12, 64, weights="orthogonal"), "exact", "exact")]
for c in (0.5, 1.0, 2.0, 4.0):
    cases.append((f"ResNet c={c} exact", ResNet.scaled(16, 64, c), "exact", "exact"))
    cases.append((f"ResNet c={c} free", ResNet.scaled(16, 64, c), "free", "free"))
    cases.append((f"ResNet c={c} exact-vs-freetheory", ResNet.scaled(16, 64, c), "exact", "free"))

print("case | layers | max |sim - theory| | max |z| | theory(out) | sim(out) +- se")
for name, f, mode, masks in cases:
    t = time.time()
    fit = width_fit(f, mode)
    th = T.bfa(f, masks=masks).cos[2:]
    z = (fit.c0 - th) / fit.c0_se
    print(f"{name} | 3..{f.depth - 1} | {np.max(np.abs(fit.c0 - th)):.4f} | {np.max(np.abs(z)):.2f} | "
          f"{th[-1]:.4f} | {fit.c0[-1]:.4f} +- {fit.c0_se[-1]:.4f}  ({time.time() - t:.1f}s)")

print("\nBFK density (free model) vs sampled spectrum, MLP L=8 layer 7, Kolmogorov distance")
f = MLP(8, 100)
t = time.time()
d = T.bfk_density(f, 7, x=np.linspace(0, 40, 3000))
print(f"density time {time.time() - t:.2f}s, atoms {d.atoms}")
cdf = d.cdf()
for m in (100, 200, 400, 800):
    eig = sample_bfk(f.replace(width=m), [7], samples=4, seed=7, mode="free").eigenvalues.ravel()
    emp = np.searchsorted(np.sort(eig), d.x, side="right") / eig.size
    print(f"m={m}: KS = {np.max(np.abs(emp - cdf)):.4f}")
