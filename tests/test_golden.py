"""Every sampler and theory output is bit-identical to the values recorded from main before the
layout change of issue 7 (``tests/data/record_golden.py`` of commit 9b3d167 recorded them with
the API of 97b5927; the calls below are the same ones in today's API).

The same arithmetic in the same order gives the same bits only on the same kind of CPU: OpenBLAS
and numba's LLVM pick their kernels by the instruction set (AVX-512 or not), which changes the
last bits of reductions, eigenvalues and QR. So the Gaussian draws (pure RNG) are compared
bit for bit and everything else to 1e-12 of the array's scale: on the machine they were recorded
on it was bit-identical, on an AVX-512 machine 95 of the 415 arrays differ, by at most 3e-13 of
their scale (a density; the rest by 5e-15), while any change of arithmetic or order beyond
round-off moves them by orders of magnitude more. (The densities on their default grid were
recorded with two Newton chunks, which is now the fixed default whatever the thread count.)"""
from pathlib import Path

import numpy as np
import pytest

import rmtalign as ra
from rmtalign import theory as T
from rmtalign.families import ResNet

from conftest import FAMILIES

GOLDEN = np.load(Path(__file__).parent / "data" / "golden.npz")

# The families the values were recorded for (names as in the conftest table).
FAMS = {name: FAMILIES[name] for name in (
    "mlp-relu", "mlp-linear", "mlp-all-uniform", "resnet-relu", "resnet-linear-orth", "resnet-skip",
    "mlp-random-input", "mlp-orth-relu", "resnet-skip0")}
BFA_Q = ("cos", "b_norm", "fdot_norm", "loss_decay", "sensitivity", "lr", "grad_sq")


def same(key, value):
    value, want = np.asarray(value), GOLDEN[key]
    if key.startswith("net/") and "orth" not in key:        # Gaussian draws: RNG only
        np.testing.assert_array_equal(value, want, err_msg=key, strict=True)
        return
    assert value.shape == want.shape and value.dtype == want.dtype, key
    np.testing.assert_array_equal(np.isfinite(value), np.isfinite(want), err_msg=key)
    ok = np.isfinite(want)
    scale = np.abs(want[ok]).max(initial=0.0)
    np.testing.assert_array_equal(value[~ok], want[~ok], err_msg=key)     # the same inf and nan
    np.testing.assert_allclose(value[ok], want[ok], rtol=0, atol=1e-12 * scale, err_msg=key)


@pytest.mark.parametrize("name", list(FAMS))
def test_samplers_and_draws(name):
    fam = FAMS[name]
    for mode in ("exact", "free"):
        r = ra.sample_bfa(fam, samples=2, seed=3, mode=mode, probes=3)
        for q in BFA_Q:
            same(f"bfa/{name}/{mode}/{q}", getattr(r, q))
        k = ra.sample_bfk(fam, samples=2, seed=7, mode=mode)
        same(f"bfk/{name}/{mode}/eigenvalues", k.eigenvalues)
        same(f"bfk/{name}/{mode}/cos_kernel", k.cos_kernel)
        j = ra.sample_jacobian(fam, 1, fam.depth - 1, samples=2, seed=9, mode=mode)
        same(f"jac/{name}/{mode}", j.log_sq_singular_values)
    same(f"bfa32/{name}/cos", ra.sample_bfa(fam, samples=[1, 4], seed=5, dtype=np.float32).cos)
    x, W = ra.sample_network(fam, seed=11, sample=2)
    same(f"net/{name}/x", x)
    for l, w in enumerate(W, 1):
        same(f"net/{name}/W{l}", w)


@pytest.mark.parametrize("name", list(FAMS))
def test_theory_per_family(name):
    fam = FAMS[name]
    for mode in ("exact", "free"):
        th = T.bfa(fam.replace(depth=40), mode=mode)
        for q in ("cos", "cos_spectrum", "m1", "m2b"):
            same(f"theory/bfa/{name}/{mode}/{q}", getattr(th, q))
    mf = T.mean_field(fam)
    for q in ("forward_sq", "backward_sq", "grad_sq", "lr", "kernel_weights"):
        same(f"theory/mean_field/{name}/{q}", getattr(mf, q))
    same(f"theory/bfk_moments/{name}", T.bfk_moments(fam, fam.depth - 1, order=4))
    same(f"theory/jacobian_moments/{name}", T.jacobian_moments(fam, 1, fam.depth - 1, order=4))
    same(f"theory/layer_moments/{name}", T.layer_law(fam).moments(5, exact=False))


def test_theory_limits_and_densities():
    big = ResNet.scaled(3000, 512, 1.0, 0.5)
    for mode in ("exact", "free"):
        th = T.bfa(big, mode=mode)
        same(f"theory/bfa/big/{mode}/cos", th.cos)
        same(f"theory/bfa/big/{mode}/cos_spectrum", th.cos_spectrum)
    same("theory/bfk_moments/resnet-exact", T.bfk_moments(ResNet(30, 100, 0.3), 20, order=2, mode="exact"))
    x = np.linspace(0.2, 6.0, 9)
    for name in ("mlp-relu", "resnet-relu", "resnet-linear-orth"):
        fam = FAMS[name].replace(depth=8)
        d = T.bfk_density(fam, 6, x=x * float(T.bfk_moments(fam, 6, order=1)[0]))
        same(f"theory/bfk_density/{name}", d.density)
        same(f"theory/jacobian_density/{name}", T.jacobian_density(fam, 2, 6, x=x).density)
        d = T.bfk_density(fam, 5, x=None)
        same(f"theory/bfk_density_default/{name}/x", d.x)
        same(f"theory/bfk_density_default/{name}/density", d.density)
    rows = []
    for alpha in (0.25, 0.5, 0.75):
        for c in (0.5, 2.0):
            for act in ("relu", "linear"):
                for mode in ("exact", "free"):
                    for pos in (0.3, 1.0):
                        r = T.depth_limit(alpha, c, activation=act, mode=mode, position=pos)
                        rows.append([r.cos, np.nan if r.cos_spectrum is None else r.cos_spectrum,
                                     np.nan if r.rate is None else r.rate])
    same("theory/depth_limit", np.array(rows))
    pd = T.phase_diagram(alphas=[0.2, 0.5, 0.8], c=1.5, depths=(50, 400))
    same("theory/phase_diagram/cos", pd.cos)
    same("theory/phase_diagram/limit", pd.limit)
