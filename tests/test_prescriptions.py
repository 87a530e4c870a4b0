"""Prescriptions (rmtalign.prescriptions): every cell's exponents in m and L, exact constants
against mean_field and theory.bfa, the hand-written NTK/FSC cells, the abc invariance on a real
step, JSON, bad input, and the verification by the same engine (sample_bfa on
Prescription.family()). The full width/depth sweep is scripts/prescriptions_validate.py."""
import json
import math

import numpy as np
import pytest

import rmtalign as ra
from rmtalign import MLP, ResNet, prescribe
from rmtalign.prescriptions import SCHEMA_VERSION, Prescription
from rmtalign.theory import bfa, mean_field, mlp_bfa_exact
from conftest import assert_error_names

SCHEMES = ("sp", "ntk", "mfmup", "fsc")


def _mlp(L, m, **kw):
    return MLP(L, m, trained="all", **kw)


def _resnet(L, m, **kw):
    return ResNet.scaled(L, m, 1.0, trained="all", **kw)


# -- exponents --------------------------------------------------------------------------------
# Effective cells (the output layer as alpha W_L: std alpha s_L, SGD rate alpha^2 eta_L), as powers
# of (m, L) in the width-then-depth limit, from Prop. 4.1 + Eqs. (7)-(8) (docs/prescriptions.md).
# Columns: s_1, s_hid, s_L, eta_1, eta_hid, eta_L, loss decay, |fdot_{L-1}|_rms.
EXPONENTS = {
    ("mlp", "ntk"): [(0, 0), (-.5, 0), (-.5, 0), (0, -1), (-1, -1), (-1, -1), (0, 0), (-.5, .5)],
    ("mlp", "mfmup"): [(0, 0), (-.5, 0), (-1, 0), (1, -1.5), (0, -1.5), (-1, -1.5), (0, -.5), (0, 0)],
    ("mlp", "fsc"): [(0, 0), (-.5, 0), (-1, .5), (1, -2), (0, -2), (-1, -1), (0, 0), (0, 0)],
    # ResNet, beta = 1/sqrt(L) (Table 2: depth-muP; the hidden rate is 1/(L beta^2) = Theta(1))
    ("resnet", "ntk"): [(0, 0), (-.5, 0), (-.5, 0), (0, -1), (-1, 0), (-1, -1), (0, 0), (-.5, 0)],
    ("resnet", "mfmup"): [(0, 0), (-.5, 0), (-1, 0), (1, -1), (0, 0), (-1, -1), (0, 0), (0, 0)],
    ("resnet", "fsc"): [(0, 0), (-.5, 0), (-1, 0), (1, -1), (0, 0), (-1, -1), (0, 0), (0, 0)],
}
_MAKE = {"mlp": _mlp, "resnet": _resnet}


def _cells(p):
    a = p.output_multiplier
    return np.array([p.init_std[0], p.init_std[1], a * p.init_std[-1], p.lr[0], p.lr[1],
                     a * a * p.lr[-1], p.predicted_loss_decay, p.predicted_feature_speed])


@pytest.mark.parametrize("kind, scheme", list(EXPONENTS))
def test_exponents_in_width_and_depth(kind, scheme):
    """Local slopes d log(cell) / d log(m) and d log(cell) / d log(L). In m every cell is an exact
    power (the angle does not depend on m); in L the angle converges with O(1/L) corrections, so
    the local slope at L is within 10/L of the exponent (measured: 2.5/L at most)."""
    L, m = 4096, 256
    base = _cells(prescribe(_MAKE[kind](L, m), scheme))
    in_m = np.log(_cells(prescribe(_MAKE[kind](L, 4 * m), scheme)) / base) / math.log(4)
    in_L = np.log(_cells(prescribe(_MAKE[kind](2 * L, m), scheme)) / base) / math.log(2)
    want = np.array(EXPONENTS[kind, scheme], dtype=float)
    np.testing.assert_allclose(in_m, want[:, 0], atol=1e-12)
    np.testing.assert_allclose(in_L, want[:, 1], atol=10 / L)


def test_exponents_in_input_and_output_dimension():
    """Dense setting: s_1 ~ d^-1/2, eta_1 ~ 1/d, and the output scale and eta_L carry sqrt(k), k."""
    for scheme, s_out_k in (("ntk", 0.5), ("mfmup", 0.5), ("fsc", 0.5)):
        a = prescribe(_mlp(12, 64), scheme)
        b = prescribe(_mlp(12, 64, in_dim=40, out_dim=4), scheme)
        np.testing.assert_allclose(_cells(b)[[0, 3]] / _cells(a)[[0, 3]], [0.5, 0.25], rtol=1e-12)
        np.testing.assert_allclose(_cells(b)[2] / _cells(a)[2], 4**s_out_k, rtol=1e-12)
        np.testing.assert_allclose(_cells(b)[5] / _cells(a)[5], 4.0, rtol=1e-12)


def test_sp_is_pytorch_linear_with_one_rate():
    p = prescribe(_mlp(6, 32, in_dim=12), "sp")
    np.testing.assert_allclose(p.init_std, [1 / math.sqrt(36)] + [1 / math.sqrt(96)] * 5, rtol=1e-15)
    assert np.ptp(p.lr) == 0 and np.ptp(p.lr_adam) == 0 and p.output_multiplier == 1.0
    assert p.predicted_loss_decay == pytest.approx(1.0, rel=1e-13)
    # the forward pass shrinks by 1/6 a ReLU layer: (SP) fails exponentially in depth
    mf = mean_field(p.family())
    np.testing.assert_allclose(mf.forward_sq[1:] / mf.forward_sq[:-1], 1 / 6, rtol=1e-13)


# -- exact constants ----------------------------------------------------------------------------
CASES = {
    "mlp-all": _mlp(10, 48),
    "mlp-first-frozen": MLP(10, 48, in_dim=6, out_dim=3),
    "mlp-linear-orth": MLP(8, 40, activation="linear", weights="orthogonal", trained="all"),
    "resnet-sqrt": ResNet.scaled(12, 48, 1.0),
    "resnet-c2-trained": ResNet.scaled(12, 48, 2.0, trained=[2, 3, 5, 8, 12]),
    "resnet-skip": ResNet(9, 32, 0.6, skip_scale=0.5, trained="all"),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_width_limit_meets_the_targets(name, scheme):
    fam = CASES[name]
    T, S = 0.7, 1.9
    p = prescribe(fam, scheme, loss_decay=T, feature_speed=S)
    run = p.family()
    mf = mean_field(run)
    mask = fam.trained_mask
    n, L, m = mask.sum(), fam.depth, fam.width
    np.testing.assert_array_equal(mf.lr, p.lr)
    np.testing.assert_allclose(mf.grad_sq, p.grad_sq, rtol=1e-13)
    np.testing.assert_array_equal(run.stds, p.init_std)
    assert run.output_multiplier == p.output_multiplier and run.branch_scale == p.branch_scale
    cos = bfa(run).cos[-1]
    assert p.cos_output == pytest.approx(cos, rel=1e-13)
    contrib = mf.lr * mf.grad_sq
    speed = contrib[:-1].sum() / (cos * math.sqrt(m * mf.backward_sq[L - 2]))
    assert p.predicted_loss_decay == pytest.approx(contrib.sum(), rel=1e-13)
    assert p.predicted_feature_speed == pytest.approx(speed, rel=1e-13)
    np.testing.assert_array_equal(contrib[~mask], 0.0)
    np.testing.assert_allclose(p.lr_adam[mask] * np.sqrt(mf.grad_sq[mask]),
                               (contrib if scheme != "sp" else p.lr_adam * np.sqrt(mf.grad_sq))[mask],
                               rtol=1e-13)
    if scheme != "sp":  # (SP): |f_v|_rms = 1 at every feature
        np.testing.assert_allclose(mf.forward_sq / m, 1.0, rtol=1e-13)
    if scheme in ("ntk", "fsc"):  # (LD) and (BC)
        np.testing.assert_allclose(contrib[mask], T / n, rtol=1e-13)
    if scheme in ("mfmup", "fsc"):  # (FL)
        assert speed == pytest.approx(S, rel=1e-13)
    if scheme == "mfmup":  # (BC) with the shares that give (FL)
        np.testing.assert_allclose(contrib[mask], contrib[mask][0], rtol=1e-13)


def test_hand_written_cells():
    """The NTK and FSC cells of a ReLU MLP (all layers trained, dense) written out by hand from
    |b_{L-1}|^2 = m s_L^2 alpha^2 |b_L|^2 / 2, Gamma_1 = B d, Gamma_hid = B m / 2, Gamma_L =
    alpha^2 m / (2k), eta = 1 / (L Gamma)."""
    L, m, d, k = 16, 64, 5, 3
    fam = MLP(L, m, in_dim=d, out_dim=k, trained="all")
    ntk = prescribe(fam, "ntk")
    B = 0.5  # s_L^2 = k/m
    np.testing.assert_allclose(ntk.init_std, [1 / math.sqrt(d)] + [math.sqrt(2 / m)] * (L - 2)
                               + [math.sqrt(k / m)], rtol=1e-15)
    np.testing.assert_allclose(ntk.lr, [1 / (L * B * d)] + [1 / (L * B * m / 2)] * (L - 2)
                               + [2 * k / (L * m)], rtol=1e-13)
    fsc = prescribe(fam, "fsc")
    # equal kernel weights on layers 1..L-1: Finding 1 of docs/theory.md in closed form
    cos = mlp_bfa_exact(L - 1, first_trained=1)
    assert fsc.cos_output == pytest.approx(cos, rel=1e-13)
    eff = math.sqrt(2 * k) * (L - 1) / (L * m * cos)  # alpha s_L of Eq. (7)
    assert fsc.output_multiplier * fsc.init_std[-1] == pytest.approx(eff, rel=1e-13)
    B = m * eff**2 / (2 * k)
    np.testing.assert_allclose(fsc.lr[:-1], [1 / (L * B * d)] + [1 / (L * B * m / 2)] * (L - 2),
                               rtol=1e-13)
    assert fsc.output_multiplier**2 * fsc.lr[-1] == pytest.approx(2 * k / (L * m), rel=1e-13)


def test_sparse_is_dense_with_unit_dimensions():
    fam = MLP(9, 32, in_dim=7, out_dim=5, trained="all")
    for scheme in ("ntk", "mfmup", "fsc"):
        sp, de = prescribe(fam, scheme, "sparse"), prescribe(fam.replace(in_dim=1, out_dim=1), scheme)
        for q in ("init_std", "lr", "lr_adam", "grad_sq"):
            np.testing.assert_array_equal(getattr(sp, q), getattr(de, q))
        assert sp.output_multiplier == de.output_multiplier
    with pytest.raises(ValueError, match="dense setting only.*in_dim=1, out_dim=1"):
        prescribe(fam, "fsc", "sparse").family()


# -- abc form ---------------------------------------------------------------------------------
def _one_step(family, x, W, mu, lr):
    """One SGD step of f_l = a f_{l-1} + mu_l w_l phi(f_{l-1}) (mu_1 w_1 x, mu_L w_L psi(f_{L-1}))
    on the loss mean(f_L), in plain numpy; returns the effective weights mu_l w_l after the step
    and the rates Eq. (8) gives on w_l's own gradients."""
    L, a, phi, psi = family.depth, family.skip, family.phi, family.psi
    f, g = [], [x]
    h = mu[0] * W[0] @ x
    for l in range(1, L - 1):
        f.append(h)
        g.append(phi.phi(h))
        h = a * h + mu[l] * W[l] @ g[-1]
    f.append(h)
    g.append(psi.phi(h))
    b = np.full(W[-1].shape[0], 1.0 / W[-1].shape[0])
    grads = [None] * L
    grads[L - 1] = mu[L - 1] * np.outer(b, g[L - 1])
    b = mu[L - 1] * W[L - 1].T @ b * psi.phi_prime(f[L - 2])
    for l in range(L - 2, 0, -1):
        grads[l] = mu[l] * np.outer(b, g[l])
        b = (a * b + mu[l] * W[l].T @ b) * phi.phi_prime(f[l - 1])
    grads[0] = mu[0] * np.outer(b, x)
    rule = np.array([1.0 / (L * np.sum(G * G)) for G in grads])
    return [mu[l] * (W[l] - lr[l] * grads[l]) for l in range(L)], rule


@pytest.mark.parametrize("fam", [MLP(6, 24, trained="all"), ResNet.scaled(6, 24, 1.0, trained="all")],
                         ids=["mlp", "resnet"])
def test_abc_split_does_not_change_the_step(fam):
    """Prop. C.1 on a real step: three splits of the same effective weights (the prescription's own,
    everything in the init scale, a large output multiplier) take the same step, both with the abc
    rates and with Eq. (8) applied to each split's own gradients."""
    p = prescribe(fam, "fsc")
    x, Z = ra.sample_network(p.family(), seed=4)
    Z = [w / s for w, s in zip(Z, p.init_std)]  # unit-variance draws, shared by the splits
    splits = [None, np.ones(fam.depth), np.r_[np.full(fam.depth - 1, 2.0), 30.0]]
    after, rates = [], []
    for mu in splits:
        abc = p.abc(mu)
        W = [z * s for z, s in zip(Z, abc["init_std"])]
        new, rule = _one_step(fam, x, W, abc["multiplier"], abc["lr"] * 1e-3)
        new_rule, _ = _one_step(fam, x, W, abc["multiplier"], rule * 1e-3)
        after.append((new, new_rule))
        rates.append(rule * abc["multiplier"] ** 2)  # effective rate of mu w
    for (new, new_rule), rate in zip(after[1:], rates[1:]):
        for l in range(fam.depth):
            np.testing.assert_allclose(new[l], after[0][0][l], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(new_rule[l], after[0][1][l], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rate, rates[0], rtol=1e-12)
    abc = p.abc()
    np.testing.assert_array_equal(abc["init_std"], p.init_std)
    np.testing.assert_array_equal(abc["lr"], p.lr)
    assert abc["multiplier"][-1] == p.output_multiplier and abc["multiplier"][0] == 1.0


# -- result protocol, JSON, errors ------------------------------------------------------------------
def test_json_round_trip_and_protocol(tmp_path):
    for fam in (MLP(7, 16, trained=[2, 3, 7], in_dim=3), ResNet.scaled(8, 16, 2.0, weights="orthogonal")):
        for scheme in SCHEMES:
            p = prescribe(fam, scheme, loss_decay=0.5)
            text = p.to_json()
            data = json.loads(text)
            assert data["schema_version"] == SCHEMA_VERSION and data["schema"] == "rmtalign.Prescription"
            q = Prescription.from_json(text)
            assert q == p and q.made_for == fam
            for name in ("init_std", "lr", "lr_adam", "grad_sq", "layers"):
                np.testing.assert_array_equal(getattr(q, name), getattr(p, name), strict=True)
            assert q.family() == p.family()
    json.dumps(p.to_dict(), allow_nan=False)
    table = p.to_table()
    assert set(table) == {"layer", "init_std", "lr", "lr_adam", "multiplier", "grad_sq"}
    assert all(len(v) == fam.depth for v in table.values())
    assert p.to_csv(tmp_path / "p.csv").read_text().startswith("layer,init_std,lr,lr_adam")
    assert "\n" not in repr(p) and len(repr(p)) < 400 and "ResNet" in repr(p)


def test_json_errors_name_the_version():
    data = json.loads(prescribe(MLP(5, 8), "fsc").to_json())
    with pytest.raises(ValueError, match="schema_version must be 1.*got 2"):
        Prescription.from_json(json.dumps({**data, "schema_version": 2}))
    with pytest.raises(ValueError, match="schema_version must be 1.*got None"):
        Prescription.from_json(json.dumps({k: v for k, v in data.items() if k != "schema_version"}))
    with pytest.raises(ValueError, match="not a prescription.*'rmtalign.Prescription'"):
        Prescription.from_json(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match=r"missing fields \['lr'\], unknown fields \['rate'\]"):
        Prescription.from_json(json.dumps({**{k: v for k, v in data.items() if k != "lr"}, "rate": 1}))
    # a NaN (written null) reads back as NaN: the angle of a network whose f_{L-1} never moves
    p = prescribe(MLP(5, 8, trained=[5]), "ntk")
    assert math.isnan(p.cos_output) and math.isnan(Prescription.from_json(p.to_json()).cos_output)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: prescribe(MLP(5, 8), "adam"), ValueError, ["scheme", "adam", "'fsc'"]),
    (lambda: prescribe(MLP(5, 8), setting="wide"), ValueError, ["setting", "wide", "'sparse'"]),
    (lambda: prescribe(MLP(5, 8), loss_decay=0.0), ValueError, ["loss_decay", "0.0", "> 0"]),
    (lambda: prescribe(MLP(5, 8), feature_speed=float("nan")), ValueError, ["feature_speed", "nan"]),
    (lambda: prescribe("mlp"), TypeError, ["family", "'mlp'"]),
    (lambda: prescribe(MLP(5, 8, trained=[5]), "fsc"), ValueError, ["fsc", "below L", "(5,)"]),
    (lambda: prescribe(MLP(5, 8, trained=[5]), "mfmup"), ValueError, ["mfmup", "below L"]),
    (lambda: prescribe(ResNet(5, 8, 0.5, skip_scale=1.0)), ValueError, ["(SP)", "a = 1.0"]),
    (lambda: prescribe(MLP(5, 8)).abc([1, 1]), ValueError, ["multipliers", "5", "[1, 1]"]),
    (lambda: prescribe(MLP(5, 8)).abc([1, 1, 0, 1, 1]), ValueError, ["multipliers", "positive"]),
])
def test_bad_input(call, exc, words):
    assert_error_names(exc, words, call)


def test_exported_at_the_top_level():
    assert ra.prescribe is prescribe and ra.Prescription is Prescription
    assert "prescribe" in ra.__all__ and "prescriptions" in ra.__all__


# -- verification by the same engine ------------------------------------------------------------
@pytest.mark.parametrize("fam", [MLP(8, 128, trained="all"), ResNet.scaled(8, 128, 1.0)],
                         ids=["mlp", "resnet"])
def test_sampled_network_meets_the_prescription(fam):
    """At init, sample_bfa on Prescription.family(): (SP) |f_v|_rms^2, (LD) the loss decay, (BC)
    each layer's share and (FL) |fdot_{L-1}|_rms against the width limit, within 4 standard errors
    for every entry (E|f_v|^2 is exact at any width; the other biases are O(L/m) and, at L/m = 1/16,
    below the noise of 48 samples: max |z| = 2.5 over these entries). The schemes differ only in
    deterministic scales of the same draws, so the relative errors are the same for all three."""
    n_samples = 48
    for scheme in ("ntk", "mfmup", "fsc"):
        p = prescribe(fam, scheme)
        r = ra.sample_bfa(p.family(), samples=n_samples, seed=17, keep_vectors=True)
        m = fam.width
        measured = {
            "forward_sq": (r.vectors["f"] ** 2).sum(-1) / m,
            "loss_decay": (r.lr * r.grad_sq).sum(1),
            "share": (r.lr * r.grad_sq)[:, fam.trained_mask],
            "feature_speed": r.fdot_norm[:, -1] / math.sqrt(m),
        }
        n = fam.trained_mask.sum()
        share = p.predicted_loss_decay / n
        want = {"forward_sq": 1.0, "loss_decay": p.predicted_loss_decay, "share": share,
                "feature_speed": p.predicted_feature_speed}
        for q, x in measured.items():
            mean = x.mean(0)
            sem = x.std(0, ddof=1) / math.sqrt(n_samples)
            tol = 4 * sem
            assert np.all(np.abs(mean - want[q]) <= tol), (scheme, q, mean, want[q], sem)


def test_sampled_exponents_reproduce_prop_5_3():
    """Small-size version of scripts/prescriptions_validate.py (MLP, every layer trained): the
    sampled exponents of |fdot_{L-1}|_rms in m and of the loss decay in L equal those of the width
    limit within 4 standard errors (delta method on the two means), and the width limit has
    Prop. 5.3's failures: NTK's feature speed ~ m^-1/2, MF+muP's loss decay falling with depth,
    FSC flat in both. (One seed for every scheme: they differ by deterministic scales of the same
    draws, so the sampled-minus-expected slopes coincide; measured 0.35 se in m, 1.05 se in L.)"""
    n_samples = 32
    points = {"a": (128, 4), "wide": (512, 4), "deep": (128, 16)}
    slopes = {}
    for scheme in ("ntk", "mfmup", "fsc"):
        got, want = {}, {}
        for key, (m, L) in points.items():
            p = prescribe(_mlp(L, m), scheme)
            r = ra.sample_bfa(p.family(), samples=n_samples, seed=23)
            speed = r.fdot_norm[:, -1] / math.sqrt(m)
            decay = (r.lr * r.grad_sq).sum(1)
            got[key] = {q: (x.mean(), x.std(ddof=1) / math.sqrt(n_samples))
                        for q, x in (("speed", speed), ("decay", decay))}
            want[key] = {"speed": p.predicted_feature_speed, "decay": p.predicted_loss_decay}
        for q, other in (("speed", "wide"), ("decay", "deep")):
            (ma, sa), (mb, sb) = got["a"][q], got[other][q]
            slope = math.log(mb / ma) / math.log(4)
            se = math.hypot(sa / ma, sb / mb) / math.log(4)
            expected = math.log(want[other][q] / want["a"][q]) / math.log(4)
            assert abs(slope - expected) <= 4 * se, (scheme, q, slope, expected, se)
            slopes[scheme, q] = expected
    assert slopes["ntk", "speed"] == pytest.approx(-0.5, abs=1e-12)
    assert slopes["mfmup", "decay"] < -0.4  # -1/2 asymptotically
    assert slopes["fsc", "speed"] == pytest.approx(0, abs=1e-12)
    assert slopes["fsc", "decay"] == pytest.approx(0, abs=1e-12)
