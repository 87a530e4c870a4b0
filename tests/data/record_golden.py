"""Records the golden values of tests/test_golden.py from main at 97b5927 (before the layout
change of issue 7). It ran once against that API (``lr=``, ``masks=``) and is kept for
provenance; the test re-computes the same calls with today's API and compares bit for bit."""
import numpy as np

import rmtalign as ra
from rmtalign import theory as T
from rmtalign.families import MLP, ResNet
from rmtalign.sampling import sample_network

FAMS = {
    "mlp-relu": MLP(6, 24),
    "mlp-linear": MLP(5, 20, activation="linear"),
    "mlp-all-uniform": MLP(6, 24, trained="all", lr="uniform"),
    "resnet-relu": ResNet(7, 24, 0.4),
    "resnet-linear-orth": ResNet(6, 20, 0.5, activation="linear", weights="orthogonal"),
    "resnet-skip": ResNet(6, 16, 1.3, skip_scale=0.5, trained=[2, 3, 5], out_dim=3),
    "mlp-random-input": MLP(5, 16, input="random", in_dim=4),
    "mlp-orth-relu": MLP(6, 20, weights="orthogonal"),
    "resnet-skip0": ResNet(6, 20, 0.7, skip_scale=0.0),
}
BFA_Q = ("cos", "b_norm", "fdot_norm", "loss_decay", "sensitivity", "lr", "grad_sq")
out = {}
for name, fam in FAMS.items():
    for mode in ("exact", "free"):
        r = ra.sample_bfa(fam, samples=2, seed=3, mode=mode, probes=3)
        for q in BFA_Q:
            out[f"bfa/{name}/{mode}/{q}"] = getattr(r, q)
    r = ra.sample_bfa(fam, samples=[1, 4], seed=5, dtype=np.float32)
    out[f"bfa32/{name}/cos"] = r.cos
    for mode in ("exact", "free"):
        k = ra.sample_bfk(fam, samples=2, seed=7, mode=mode)
        out[f"bfk/{name}/{mode}/eigenvalues"] = k.eigenvalues
        out[f"bfk/{name}/{mode}/cos_kernel"] = k.cos_kernel
        j = ra.sample_jacobian(fam, 1, fam.depth - 1, samples=2, seed=9, mode=mode)
        out[f"jac/{name}/{mode}"] = j.log_sq_singular_values
    x, W = sample_network(fam, seed=11, sample=2)
    out[f"net/{name}/x"] = x
    for l, w in enumerate(W, 1):
        out[f"net/{name}/W{l}"] = w
    for masks in ("exact", "free"):
        th = T.bfa(fam.replace(depth=40), masks=masks)
        out[f"theory/bfa/{name}/{masks}/cos"] = th.cos
        out[f"theory/bfa/{name}/{masks}/cos_spectrum"] = th.cos_spectrum
        out[f"theory/bfa/{name}/{masks}/m1"] = th.m1
        out[f"theory/bfa/{name}/{masks}/m2b"] = th.m2b
    mf = T.mean_field(fam)
    for q in ("forward_sq", "backward_sq", "grad_sq", "lr", "kernel_weights"):
        out[f"theory/mean_field/{name}/{q}"] = getattr(mf, q)
    out[f"theory/bfk_moments/{name}"] = np.array(T.bfk_moments(fam, fam.depth - 1, order=4))
    out[f"theory/jacobian_moments/{name}"] = np.array(T.jacobian_moments(fam, 1, fam.depth - 1, order=4))
    out[f"theory/layer_moments/{name}"] = np.array(T.layer_law(fam).moments(5, exact=False))

big = ResNet.scaled(3000, 512, 1.0, 0.5)
for masks in ("exact", "free"):
    th = T.bfa(big, masks=masks)
    out[f"theory/bfa/big/{masks}/cos"] = th.cos
    out[f"theory/bfa/big/{masks}/cos_spectrum"] = th.cos_spectrum
out["theory/bfk_moments/resnet-exact"] = np.array(T.bfk_moments(ResNet(30, 100, 0.3), 20, order=2, masks="exact"))
x = np.linspace(0.2, 6.0, 9)
for name in ("mlp-relu", "resnet-relu", "resnet-linear-orth"):
    fam = FAMS[name].replace(depth=8)
    d = T.bfk_density(fam, 6, x=x * float(T.bfk_moments(fam, 6, order=1)[0]))
    out[f"theory/bfk_density/{name}"] = d.density
    j = T.jacobian_density(fam, 2, 6, x=x)
    out[f"theory/jacobian_density/{name}"] = j.density
    d = T.bfk_density(fam, 5, x=None)
    out[f"theory/bfk_density_default/{name}/x"] = d.x
    out[f"theory/bfk_density_default/{name}/density"] = d.density
dl = []
for alpha in (0.25, 0.5, 0.75):
    for c in (0.5, 2.0):
        for act in ("relu", "linear"):
            for masks in ("exact", "free"):
                for pos in (0.3, 1.0):
                    r = T.depth_limit(alpha, c, activation=act, masks=masks, position=pos)
                    dl.append([r.cos, np.nan if r.cos_spectrum is None else r.cos_spectrum,
                               np.nan if r.rate is None else r.rate])
out["theory/depth_limit"] = np.array(dl)
pd = T.phase_diagram(alphas=[0.2, 0.5, 0.8], c=1.5, depths=(50, 400))
out["theory/phase_diagram/cos"] = pd["cos"]
out["theory/phase_diagram/limit"] = pd["limit"]
np.savez_compressed(__file__.replace("record_golden.py", "golden.npz"), **out)
print(len(out), "arrays")
