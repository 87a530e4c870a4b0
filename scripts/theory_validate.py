"""Theory vs simulation at larger sizes: width-limit BFA (``width_limit`` = sample_bfa at several
widths + the c0 + c1/m fit) against theory.bfa, and BFK densities against sampled spectra
(Kolmogorov distance vs width).

For ReLU ResNets sampled in exact mode each row also shows the z-scores against
``cos_spectrum = M1/sqrt(M2)`` (Thm 3.2, backward vector independent of K_v), to show the size of
the mask-correlation effect that ``cos`` (= M1/sqrt(M2b)) accounts for.

Usage: .venv/bin/python scripts/theory_validate.py [--quick] [--no-density] [--samples N]
"""
import sys
import time

import numpy as np

from rmtalign import theory as T
from rmtalign.families import MLP, ResNet
from rmtalign.sampling import sample_bfk, width_limit

quick = "--quick" in sys.argv
widths = [128, 256, 512, 1024] if not quick else [64, 128, 256]
samples = 96 if not quick else 12
if "--samples" in sys.argv:
    samples = int(sys.argv[sys.argv.index("--samples") + 1])
# Haar weights need a dense QR per layer and draw (~0.2 s at m = 1024): fewer samples
orth_samples = max(samples // 3, 8)

cases = [("MLP relu L=12", MLP(12, 64), "exact", "exact"),
         ("MLP relu orth L=12", MLP(12, 64, weights="orthogonal"), "exact", "exact")]
for c in (0.5, 1.0, 2.0, 4.0):
    cases.append((f"ResNet a=0.5 c={c} L=16", ResNet.scaled(16, 64, c), "exact", "exact"))
cases += [
    ("ResNet a=0.25 c=1 L=16", ResNet.scaled(16, 64, 1.0, alpha=0.25), "exact", "exact"),
    ("ResNet a=0.25 c=1.5 L=16", ResNet.scaled(16, 64, 1.5, alpha=0.25), "exact", "exact"),
    ("ResNet a=1 c=4 L=16", ResNet.scaled(16, 64, 4.0, alpha=1.0), "exact", "exact"),
    ("ResNet a=0.5 c=2 L=32", ResNet.scaled(32, 64, 2.0), "exact", "exact"),
    ("ResNet a=0.5 c=2 orth", ResNet.scaled(16, 64, 2.0, weights="orthogonal"), "exact", "exact"),
    ("ResNet a=0.5 c=2 uniform LR", ResNet.scaled(16, 64, 2.0, lr_rule="uniform"), "exact", "exact"),
    ("ResNet a=0.5 c=2 all trained", ResNet.scaled(16, 64, 2.0, trained="all"), "exact", "exact"),
    ("ResNet beta=0.5 skip=0.8", ResNet(16, 64, 0.5, skip_scale=0.8), "exact", "exact"),
    ("ResNet a=0.5 c=2 free", ResNet.scaled(16, 64, 2.0), "free", "free"),
]
if quick:
    cases = [cs for cs in cases if "L=32" not in cs[0]]

print(f"widths {widths}, {samples} samples per width ({orth_samples} for orthogonal), fit c0 + c1/m (width_limit), layers 3..L-1")
print("case | samples | max |sim - cos| | max |z| cos | max |z| cos_spectrum | cos(out) theory | sim(out) +- se | time")
rows = []
for i, (name, f, mode, masks) in enumerate(cases):
    t = time.time()
    n = orth_samples if f.weights == "orthogonal" else samples
    wl = width_limit(f, widths, samples=n, seed=2024 + i, mode=mode)
    th = T.bfa(f, mode=masks)
    sl = slice(2, None)  # layers 3..L-1 (layer 2: cos = 1 exactly when W_1 is frozen)
    est, se = wl.limit[sl], wl.limit_se[sl]
    ok = se > 0
    z = (est - th.cos[sl])[ok] / se[ok]
    zs = (est - th.cos_spectrum[sl])[ok] / se[ok]
    err = np.max(np.abs(est - th.cos[sl]))
    show_spec = mode == "exact" and th.mode == "exact" and f.skip != 0 and f.phi.has_masks
    zs_txt = f"{np.max(np.abs(zs)):.2f}" if show_spec else "="
    print(f"{name} | {n} | {err:.4f} | {np.max(np.abs(z)):.2f} | {zs_txt} | {th.cos[-1]:.4f} | "
          f"{wl.limit[-1]:.4f} +- {wl.limit_se[-1]:.4f} | {time.time() - t:.0f}s", flush=True)
    rows.append((name, np.max(np.abs(z))))
print(f"overall max |z| = {max(r[1] for r in rows):.2f} over {len(rows)} cases")

if "--no-density" in sys.argv:
    sys.exit(0)
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
