"""The 1/m coefficient of the BFA of a Gaussian ResNet with its own ReLU masks, computed (not fitted)
from the exact reduction of ``scripts/finite_width_validate.py`` by an order-parameter expansion.

**The system.** ``exact_reduced_resnet`` is, exactly in law, ``m`` iid neurons coupled only through
averages: neuron ``i`` carries its pre-activation path ``f`` (an AR(1) whose increments have the
variances ``beta^2 sigma_l^2 <h_{l-1}^2>``), ``xi_l``, ``eta_l`` and ``b_{L-1}``; given the vector
``Omega`` of order parameters (per layer ``<h^2>``, ``<y b>``, ``<b^2>``, ``<h xi>``, ``<x h>``,
``<xi x>``, ``<x^2>``, ``<b eta>``, ``<b u>``, ``<u^2>``; ``y = (f_l - a f_{l-1})/beta``) each neuron's
quantities ``phi(z; Omega)`` are explicit, and the network solves ``Omega = <phi(z; Omega)>`` (forward,
then backward, then tangent); ``cos_v = G(Omega) = <b u>/sqrt(<b^2> <u^2>)``.

**The expansion.** With ``Phi(Omega) = E phi``, ``J = dPhi/dOmega``, ``A = (I - J)^-1``,
``Sigma = Cov phi(z; Omega*)`` and ``C = A Sigma A^T``, the empirical order parameters are
``Omega* + delta`` with ``m E delta = A (SR + Phi''[C] / 2)`` and ``m Cov delta = C``, so

    c1 = grad G . A (SR + Phi''[C] / 2) + tr(G'' C) / 2,

where ``SR = d/dt E_z phi(z; Omega* + t v(z))``, ``v(z) = A (phi(z) - Omega*)``, is a neuron's response to
its own influence on the order parameters. The masks ``1{f_l > 0}`` make ``phi`` jump as the
forward order parameters move the paths, so every derivative is split: a smooth part (paths
moved, masks frozen; central differences) and a jump part,
``sum_l p_l(0) E[w_l (phi|_{d_l = 1} - phi|_{d_l = 0}) | f_l = 0]`` (``w_l`` the velocity of
``f_l``, ``p_l`` its density; paths conditioned on ``f_l = 0`` by Gaussian regression). Second
derivatives along forward directions are differences of such first derivatives (a plain second
difference over particles has a variance growing like ``1/step^3``). ``Phi`` and its derivatives
are averages over ``M`` particles, ``Sigma`` and ``SR`` over ``5 M`` probes: the result is a Monte
Carlo estimate; the scatter over seeds is its error.

**Checks.** Linear activation (no masks): the linear chain's exact ``c1``
(``theory.finite_width``); ``cos = 1`` at the first trained layer gives ``c1 = 0`` there (to 2e-4).
ReLU: against the exact reduction's ``m (cos - bfa)`` at m = 128 .. 1024 (``docs/finite_width.md``).
Cost O(L^2 M): several minutes at L = 32, M = 20000.

    .venv/bin/python scripts/relu_resnet_c1.py [--linear] [--depth L] [--c C] [--particles M]
                                               [--seeds S] [--first-seed s]
"""
import argparse
import math
import time

import numpy as np

from rmtalign import theory as T
from rmtalign.families import ResNet

K = 10                                                          # order parameters per layer
iQ, iY, iB, iHX, iXH, iXI, iX2, iBE, iBU, iU2 = range(K)
EPS, STEP2, STEPQ = 1e-4, 3e-3, 3e-2                             # relative difference steps


class ReducedResNet:
    """The single-neuron map of the exact reduction (hidden layers ``i = 0 .. L-2``)."""

    def __init__(self, family):
        self.a, self.beta, self.n = float(family.skip), float(family.branch_scale), family.depth - 1
        self.sig = np.asarray(family.stds[: self.n], float) * math.sqrt(family.width)
        self.t = np.asarray(family.trained_mask[: self.n], float)
        self.relu = family.activation == "relu"
        self.Qs = np.zeros(self.n)                              # mean-field <h^2>
        for i in range(self.n):                                 # (V_i needs Q_{<i} only)
            self.Qs[i] = self.variances(self.Qs)[i] / (2.0 if self.relu else 1.0)

    def variances(self, Q):
        V = np.empty(self.n)
        V[0] = 1.0                                              # f_0 = W_1 x ~ N(0, 1)
        for i in range(1, self.n):
            V[i] = self.a ** 2 * V[i - 1] + self.beta ** 2 * self.sig[i] ** 2 * Q[i - 1]
        return V

    def paths(self, Q, z):
        """pre-activation paths at forward order parameters ``Q`` from standard normals ``z``."""
        f = np.empty_like(z)
        f[:, 0] = z[:, 0]
        Q = np.broadcast_to(Q, z.shape)
        for i in range(1, self.n):
            f[:, i] = self.a * f[:, i - 1] + self.beta * self.sig[i] * np.sqrt(Q[:, i - 1]) * z[:, i]
        return f

    def site(self, f, xi, eta, b0, Om, D=None):
        """``phi`` per neuron, (N, K, n), at order parameters ``Om`` ((K, n) or (N, K, n)); masks
        ``D`` if given (frozen), else ``f > 0``."""
        a, beta, n, N = self.a, self.beta, self.n, f.shape[0]
        O = lambda k, i: Om[..., k, i]
        h = np.maximum(f, 0) if self.relu else f
        if D is None:
            D = (f > 0).astype(float) if self.relu else np.ones_like(f)
        y = np.zeros_like(f)
        y[:, 1:] = (f[:, 1:] - a * f[:, :-1]) / beta
        out = np.zeros((N, K, n))
        out[:, iQ] = h * h
        b = np.empty_like(f)
        b[:, n - 1] = b0
        for i in range(n - 1, 0, -1):                           # W_i^T b_i given W_i h_{i-1} = y_i
            Qm = O(iQ, i - 1)
            Wtb = (h[:, i - 1] * O(iY, i) / Qm
                   + self.sig[i] * np.sqrt(O(iB, i)) * (xi[:, i] - h[:, i - 1] * O(iHX, i) / Qm))
            b[:, i - 1] = a * b[:, i] + beta * D[:, i - 1] * Wtb
        out[:, iY], out[:, iB] = y * b, b * b
        out[:, iHX, 1:] = h[:, :-1] * xi[:, 1:]
        u = np.zeros(N)
        for i in range(n):
            if i > 0:
                x = D[:, i - 1] * u
                out[:, iXH, i], out[:, iXI, i] = x * h[:, i - 1], xi[:, i] * x
                out[:, iX2, i], out[:, iBE, i] = x * x, b[:, i] * eta[:, i]
                xh = O(iXH, i) / O(iQ, i - 1)
                x2p = np.maximum(O(iX2, i) - O(iXH, i) * xh, 0.0)
                Bi = O(iB, i)
                Wx = xh * y[:, i] + self.sig[i] * (b[:, i] * (O(iXI, i) - O(iHX, i) * xh) / np.sqrt(Bi)
                                                   + np.sqrt(x2p) * (eta[:, i] - b[:, i] * O(iBE, i) / Bi))
                u = a * u + beta * Wx
            if self.t[i]:
                u = u + b[:, i] / O(iB, i)
            out[:, iBU, i], out[:, iU2, i] = b[:, i] * u, u * u
        return out

    def velocity(self, f, Q, uQ, l):
        """``d f_l / dt`` when the forward order parameters move along ``uQ`` ((n,) or (N, n))."""
        j = np.arange(l)
        df = f[:, 1:l + 1] - self.a * f[:, :l]
        return (df * self.a ** (l - 1 - j) / (2 * Q[:l]) * np.asarray(uQ)[..., :l]).sum(-1)


class Sample:
    """Neurons as standard normals, so that paths can be rebuilt at any forward order parameters
    with common random numbers."""

    def __init__(self, net, N, rng):
        self.net = net
        self.z, self.xi, self.eta = (rng.standard_normal((N, net.n)) for _ in range(3))
        self.b0 = rng.standard_normal(N)

    def site(self, Om, D=None, f=None):
        f = self.net.paths(Om[..., iQ, :], self.z) if f is None else f
        return self.net.site(f, self.xi, self.eta, self.b0, Om, D)

    def masks(self, Om):
        return (self.net.paths(Om[..., iQ, :], self.z) > 0).astype(float) if self.net.relu else None

    def jump(self, Om, l):
        """Paths conditioned on ``f_l = 0`` (Gaussian regression), ``p_l(0)`` and the jump of ``phi``
        across ``d_l``."""
        net = self.net
        V = net.variances(Om[iQ])
        f = net.paths(Om[iQ], self.z)
        i = np.arange(net.n)
        f = f - np.outer(f[:, l], net.a ** np.abs(i - l) * V[np.minimum(i, l)] / V[l])
        f[:, l] = 0.0
        D = (f > 0).astype(float)
        D[:, l] = 1.0
        up = self.site(Om, D, f)
        D[:, l] = 0.0
        return f, 1.0 / math.sqrt(2 * math.pi * V[l]), up - self.site(Om, D, f)


def c1(family, M=20000, seed=1):
    """``(cos_limit, c1)`` per hidden layer (module docstring); a Monte Carlo estimate."""
    net = ReducedResNet(family)
    rng = np.random.default_rng(seed)
    n, d = net.n, K * net.n
    mu, probes, cond = Sample(net, M, rng), Sample(net, 5 * M, rng), Sample(net, max(2000, M // 5), rng)
    used = np.ones((K, n), bool)
    used[iQ, n - 1] = False
    used[[iY, iHX, iXH, iXI, iX2, iBE], 0] = False
    uf = used.ravel()
    isQ = np.zeros((K, n), bool)
    isQ[iQ] = True
    isQ = isQ.ravel() & uf
    io = uf & ~isQ
    # the mean field: Q analytic, the rest by iterating the (causal) map
    Om = np.ones((K, n))
    Om[iQ] = net.Qs
    Om[[iY, iHX, iXH, iXI, iBE]] = 0.0
    for _ in range(3 * n + 2):
        new = mu.site(Om).mean(0)
        new[iQ] = net.Qs
        done = np.allclose(new, Om, rtol=1e-13, atol=1e-15)
        Om = new
        if done:
            break
    scale = np.maximum(np.abs(Om.ravel()), 1e-3)

    def jump_first(O, uQ, sample, own=None):
        """jump part of a first derivative along forward direction ``uQ`` (or each neuron's own)."""
        out = np.zeros((K, n))
        for l in range(1, n - 1):
            f, p0, dl = sample.jump(O, l)
            if own is not None:
                hq = (np.maximum(f, 0) ** 2 - O[iQ]) * used[iQ]
                uQ = hq @ own.T
            out += p0 * (net.velocity(f, O[iQ], uQ, l)[:, None, None] * dl).mean(0)
        return out

    def D1(O, u):
        """``d Phi(O + t u) / dt``: masks frozen at ``O`` plus the jumps."""
        e = EPS / max(np.abs(u.ravel() / scale).max(), 1e-300)
        DO = mu.masks(O)
        sm = (mu.site(O + e * u, DO).mean(0) - mu.site(O - e * u, DO).mean(0)) / (2 * e)
        if net.relu and np.any(u[iQ] != 0):
            sm = sm + jump_first(O, u[iQ], cond)
        return sm

    J = np.zeros((d, d))
    for k in np.flatnonzero(uf):
        u = np.zeros(d)
        u[k] = 1.0
        J[:, k] = D1(Om, u.reshape(K, n)).ravel()
    J[~uf] = 0.0
    A = np.linalg.inv(np.eye(d) - J)
    dev = probes.site(Om).reshape(-1, d) - Om.ravel()
    dev[:, ~uf] = 0.0
    C = A @ np.cov(dev.T) @ A.T
    v = (dev @ A.T).reshape(-1, K, n)
    st = EPS / max(np.abs(v.reshape(-1, d) / scale).max(), 1e-300)
    DZ = probes.masks(Om)
    SR = (probes.site(Om + st * v, DZ) - probes.site(Om - st * v, DZ)).mean(0) / (2 * st)
    if net.relu:
        SR = SR + jump_first(Om, None, probes, own=A[iQ * n:(iQ + 1) * n, iQ * n:(iQ + 1) * n])
    SR = SR.ravel() * uf
    # Phi''[C]: the non-forward block along the eigenvectors of C (smooth), and for each forward
    # Q_i the derivative along Q_i of d Phi / d rho_i, rho_i = 2 C[Q_i, other] + C[Q_i, forward]
    lam, U = np.linalg.eigh(np.where(np.outer(io, io), C, 0.0))
    scaleH = np.maximum(np.maximum(np.abs(Om.ravel()), np.sqrt(np.abs(np.diag(C)))), 1e-3)
    DP, P0 = mu.masks(Om), mu.site(Om).mean(0)
    H = np.zeros((K, n))
    for k in np.flatnonzero(np.abs(lam) > 1e-12 * np.abs(lam).max()):
        u = U[:, k].reshape(K, n) * STEP2 / max(np.abs(U[:, k] / scaleH).max(), 1e-300)
        H += lam[k] * (mu.site(Om + u, DP).mean(0) + mu.site(Om - u, DP).mean(0) - 2 * P0) / (u ** 2).sum()
    for q in np.flatnonzero(isQ):
        rho = (np.where(io, 2 * C[q], 0.0) + np.where(isQ, C[q], 0.0)).reshape(K, n)
        eq = np.zeros(d)
        eq[q] = STEPQ * scale[q]
        eq = eq.reshape(K, n)
        H += (D1(Om + eq, rho) - D1(Om - eq, rho)) / (2 * STEPQ * scale[q])
    bias = A @ (SR + 0.5 * H.ravel() * uf)
    # G = BU / sqrt(B U2) and its derivatives, layer by layer
    BU, B, U2 = Om[iBU], Om[iB], Om[iU2]
    g0 = BU / np.sqrt(B * U2, where=U2 > 0, out=np.full(n, np.nan))
    out = np.full(n, np.nan)
    for i in np.flatnonzero(U2 > 0):
        kb, kB, kU = iBU * n + i, iB * n + i, iU2 * n + i
        grad = np.array([1 / np.sqrt(B[i] * U2[i]), -0.5 * g0[i] / B[i], -0.5 * g0[i] / U2[i]])
        b, rx, rz = BU[i], 1 / np.sqrt(B[i]), 1 / np.sqrt(U2[i])
        hess = np.array([[0.0, -0.5 * rx ** 3 * rz, -0.5 * rx * rz ** 3],
                         [-0.5 * rx ** 3 * rz, 0.75 * b * rx ** 5 * rz, 0.25 * b * rx ** 3 * rz ** 3],
                         [-0.5 * rx * rz ** 3, 0.25 * b * rx ** 3 * rz ** 3, 0.75 * b * rx * rz ** 5]])
        ks = [kb, kB, kU]
        out[i] = grad @ bias[ks] + 0.5 * np.sum(hess * C[np.ix_(ks, ks)])
    return g0, out


def _positive(kind, low):
    def parse(text):
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value
    parse.__name__ = kind.__name__          # argparse names it in "invalid int value"
    return parse


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="c1 of a ReLU (or, as a check, linear) ResNet with "
                                "beta = c / sqrt(L) from the exact reduction (module docstring)")
    p.add_argument("--linear", action="store_true", help="linear activation (the exact c1 is known)")
    p.add_argument("--depth", type=_positive(int, 4), default=32)
    p.add_argument("--c", type=_positive(float, 0.0), default=2.0)
    p.add_argument("--particles", type=_positive(int, 100), default=20000)
    p.add_argument("--seeds", type=_positive(int, 1), default=3)
    p.add_argument("--first-seed", type=_positive(int, 0), default=1)
    args = p.parse_args()
    L, M, S, first = args.depth, args.particles, args.seeds, args.first_seed
    try:
        fam = ResNet.scaled(L, 64, args.c, activation="linear" if args.linear else "relu")
    except ValueError as e:
        p.error(str(e))
    t0 = time.time()
    runs = np.array([c1(fam, M, seed) for seed in range(first, first + S)])
    lim, est = runs[0, 0], runs[:, 1]
    mean = est.mean(0)
    se = est.std(0, ddof=1) / math.sqrt(S) if S > 1 else np.full(L - 1, np.nan)
    exact = T.finite_width(fam).c1 if fam.activation == "linear" else None
    print(f"{fam.label}: {S} seeds x {M} particles, {time.time() - t0:.0f}s")
    print("| v | mean field | bfa | c1 (mean ± se over seeds) |" + (" exact c1 |" if exact is not None else ""))
    bfa = T.bfa(fam).cos
    for v in sorted({max(2, L // 8), max(2, L // 4), L // 2, 3 * L // 4, L - 1}):
        row = f"| {v} | {lim[v - 1]:.4f} | {bfa[v - 1]:.4f} | {mean[v - 1]:.3f} ± {se[v - 1]:.3f} |"
        print(row + (f" {exact[v - 1]:.3f} |" if exact is not None else ""))
