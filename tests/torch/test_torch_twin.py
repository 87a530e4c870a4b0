"""rmtalign.torch.twin: the nn.Module of a sampled draw, and measure() on it against sample_bfa.

The acceptance test of the bridge: ``measure(twin, x, torch.mean)`` with the family's learning
rates reproduces ``sample_bfa(family, mode="exact")`` at every layer (cos, b_norm, fdot_norm,
loss decay, sensitivity) for MLPs and ResNets, Gaussian and orthogonal weights, W_1 trained or
not. Both compute the same float64 quantities from the same weights by different code (numba
passes vs torch autograd and forward mode), so they agree to round-off (measured: ~1e-15); the
tolerance 1e-10 leaves room for summation order only.

With a batch (issue 13), ``twin(..., inputs=, input_correlation=)`` holds the batch sampler's
inputs of the draw, and ``measure(twin, twin.input(), torch.mean)`` reproduces
``sample_bfa(..., inputs=, input_correlation=)``: the flattened ``(n m)`` features of both, the
loss ``mean(f_L)`` over the ``n k`` outputs (measured: ~4e-16 relative; same tolerance).
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rmtalign as ra  # noqa: E402
from conftest import assert_error_names  # noqa: E402
from oracles import numpy_ref  # noqa: E402
from rmtalign.torch import OutputMultiplier, Residual, measure, twin  # noqa: E402

TWIN_FAMILIES = {
    "mlp-gauss": ra.MLP(6, 24),
    "mlp-gauss-all": ra.MLP(5, 20, trained="all", in_dim=7, out_dim=3),
    "mlp-orth": ra.MLP(6, 20, weights="orthogonal"),
    "mlp-orth-all-alpha": ra.MLP(5, 16, weights="orthogonal", trained="all", output_multiplier=2.5),
    "mlp-linear-random-input": ra.MLP(5, 16, activation="linear", input="random", in_dim=4),
    "resnet-gauss": ra.ResNet(7, 24, 0.4),
    "resnet-gauss-all": ra.ResNet(6, 20, 0.6, trained="all", out_dim=2),
    "resnet-orth": ra.ResNet(6, 20, 0.5, weights="orthogonal"),
    "resnet-orth-all-linear": ra.ResNet(6, 16, 0.3, activation="linear", weights="orthogonal",
                                        trained="all"),
    "resnet-skip-subset": ra.ResNet(6, 16, 1.3, skip_scale=0.5, trained=[2, 3, 5], out_dim=3),
}
QUANTITIES = ("cos", "b_norm", "fdot_norm", "loss_decay", "sensitivity")
RTOL = 1e-10


@pytest.mark.parametrize("name", sorted(TWIN_FAMILIES))
def test_measure_on_twin_reproduces_sample_bfa(name):
    fam = TWIN_FAMILIES[name]
    net = twin(fam, seed=11, sample=3)
    ref = ra.sample_bfa(fam, samples=[3], seed=11, mode="exact")
    got = measure(net, net.input(), torch.mean, blocks=net.features)  # lr=None: balanced, Eq. (8)
    np.testing.assert_array_equal(got.layers, ref.layers)
    for q in QUANTITIES:
        np.testing.assert_allclose(getattr(got, q), getattr(ref, q)[0], rtol=RTOL, atol=0, err_msg=q)
    # the rates of the step are the family's, layer by layer
    np.testing.assert_allclose(got.lr, ref.lr[0][fam.trained_mask], rtol=RTOL, atol=0)
    np.testing.assert_allclose(got.grad_sq, ref.grad_sq[0][fam.trained_mask], rtol=RTOL, atol=0)
    assert got.params == tuple(n for n, p in net.named_parameters() if p.requires_grad)


def test_twin_with_explicit_rates_and_uniform_rule():
    """Rules other than Eq. (8) go in as a mapping: the sampler's own rates reproduce it."""
    for fam in (ra.MLP(6, 16, trained="all", lr_rule="uniform"),
                ra.ResNet(5, 16, 0.5, lr_values=(0.0, 0.3, 2.0, 0.7, 0.1))):
        net = twin(fam, seed=5)
        ref = ra.sample_bfa(fam, samples=1, seed=5)
        rates = dict(zip((n for n, _ in net.named_parameters()), ref.lr[0]))
        got = measure(net, net.input(), torch.mean, lr=rates, blocks=net.features)
        for q in QUANTITIES:
            np.testing.assert_allclose(getattr(got, q), getattr(ref, q)[0], rtol=RTOL, atol=0, err_msg=q)


@pytest.mark.parametrize("name", ["mlp-orth-all-alpha", "resnet-skip-subset"])
def test_twin_difference_mode_matches_the_sampler_to_first_order(name):
    fam = TWIN_FAMILIES[name]
    net = twin(fam, seed=2)
    ref = ra.sample_bfa(fam, samples=1, seed=2)
    got = measure(net, net.input(), torch.mean, blocks=net.features, mode="difference", step=1e-6)
    ok = np.isfinite(ref.cos[0])
    # forward difference: error O(step * |f''| / |f'|) plus round-off eps |f| / step, ~1e-6 here
    np.testing.assert_allclose(got.fdot_norm[ok], ref.fdot_norm[0][ok], rtol=1e-4)
    np.testing.assert_allclose(got.cos[ok], ref.cos[0][ok], rtol=1e-4)


@pytest.mark.parametrize("name", ["mlp-gauss-all", "resnet-orth", "resnet-skip-subset"])
def test_twin_holds_the_very_draw(name):
    fam = TWIN_FAMILIES[name]
    x, weights = ra.sample_network(fam, seed=7, sample=1)
    state = torch.get_rng_state()
    net = twin(fam, seed=7, sample=1)
    assert torch.equal(torch.get_rng_state(), state)  # building a twin draws nothing from torch
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == fam.depth
    for lin, W, trained in zip(linears, weights, fam.trained_mask):
        assert lin.bias is None
        assert lin.weight.dtype == torch.float64
        assert lin.weight.requires_grad == bool(trained)
        np.testing.assert_array_equal(lin.weight.detach().numpy(), W)
    xin = net.input()
    assert xin.shape == (1, fam.in_dim) and xin.dtype == torch.float64
    np.testing.assert_array_equal(xin[0].numpy(), x)
    # the module computes model (12): the numpy oracle's forward pass on the same draw
    f = numpy_ref.forward(fam, weights, x)
    out = net(xin)[0].detach().numpy()
    np.testing.assert_allclose(out, fam.output_multiplier * f[-1], rtol=1e-12, atol=1e-14)
    feats = {}
    hooks = [net.get_submodule(n).register_forward_hook(
        lambda mod, a, o, n=n: feats.__setitem__(n, o.detach()[0].numpy())) for n in net.features]
    net(xin)
    for h in hooks:
        h.remove()
    for v, n in enumerate(net.features, 1):
        np.testing.assert_allclose(feats[n], f[v - 1], rtol=1e-12, atol=1e-14, err_msg=n)


def test_twin_layout_and_attributes():
    res = twin(ra.ResNet(5, 8, 0.6, output_multiplier=3.0), seed=1)
    assert res.features == ("layer1", "layer2", "layer3", "layer4")
    assert all(isinstance(res.get_submodule(n), Residual) for n in res.features[1:])
    assert float(res.layer2.beta) == 0.6 and float(res.layer2.skip) == pytest.approx(0.8, abs=1e-15)
    assert isinstance(res.layer5[2], OutputMultiplier) and float(res.layer5[2].alpha) == 3.0
    mlp = twin(ra.MLP(4, 8), seed=1)
    assert mlp.features == ("layer1", "layer2.1", "layer3.1")
    # measure's default blocks on a twin: the features, then the readout's Linear
    r = measure(mlp, mlp.input(), torch.mean)
    assert r.names == mlp.features + ("layer4.1",)
    r = measure(res, res.input(), torch.mean)
    assert r.names == res.features + ("layer5.1",)
    # the twin is an ordinary module: deepcopy and state_dict round trips keep the draw
    clone = copy.deepcopy(res)
    clone.load_state_dict(res.state_dict())
    assert torch.equal(clone(res.input()), res(res.input()))


def test_twin_seed_none_is_recorded():
    fam = ra.MLP(4, 8, input="random")
    net = twin(fam)  # fresh entropy
    x, weights = ra.sample_network(fam, np.random.SeedSequence(**net.seed), 0)
    np.testing.assert_array_equal(net.layer1.weight.detach().numpy(), weights[0])
    np.testing.assert_array_equal(net.input()[0].numpy(), x)


def test_twin_errors():
    assert_error_names(TypeError, ["family", "MLP or ResNet"], twin, "mlp", 0)
    assert_error_names(ValueError, ["sample", ">= 0", "-1"], twin, ra.MLP(4, 8), 0, -1)
    assert_error_names(TypeError, ["seed"], twin, ra.MLP(4, 8), "zero")
    fam = ra.MLP(4, 8, in_dim=5)
    assert_error_names(ValueError, ["input_correlation", "inputs=None", "0.5"], twin, fam, 0,
                       input_correlation=0.5)
    assert_error_names(ValueError, ["inputs", "(n, 5)", "(3, 4)"], twin, fam, 0, inputs=np.ones((3, 4)))
    assert_error_names(ValueError, ["inputs=6", "in_dim = 5"], twin, fam, 0, inputs=6)
    assert_error_names(ValueError, ["input_correlation", "(-0.5, 1)", "-0.5"], twin, fam, 0,
                       inputs=3, input_correlation=-0.5)
    assert_error_names(ValueError, ["input_correlation", "0.2"], twin, fam, 0,
                       inputs=np.ones((2, 5)), input_correlation=0.2)
    assert_error_names(TypeError, ["inputs", "count", "three"], twin, fam, 0, inputs="three")


# -- batches (issue 13) -------------------------------------------------------------------------
BATCH_FAMILIES = {
    "mlp-gauss": ra.MLP(6, 16, in_dim=5),
    "mlp-orth-all": ra.MLP(6, 16, weights="orthogonal", trained="all", in_dim=5, out_dim=2),
    "resnet-gauss": ra.ResNet(6, 16, 0.5, in_dim=5),
    "resnet-orth-all": ra.ResNet(6, 16, 0.4, weights="orthogonal", trained="all", in_dim=5,
                                 out_dim=3),
}
X_EXPLICIT = np.random.default_rng(0).standard_normal((3, 5))  # not of norm sqrt(d): any batch
BATCHES = {"n3-rho0.5": dict(inputs=3, input_correlation=0.5), "explicit-X": dict(inputs=X_EXPLICIT)}


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", sorted(BATCH_FAMILIES))
def test_measure_on_twin_with_a_batch_reproduces_the_batch_sampler(name, batch):
    fam, kw = BATCH_FAMILIES[name], BATCHES[batch]
    net = twin(fam, seed=7, sample=2, **kw)
    X, _ = ra.sample_network(fam, seed=7, sample=2, **kw)
    xin = net.input()
    assert xin.shape == (3, fam.in_dim) and xin.dtype == torch.float64
    np.testing.assert_array_equal(xin.numpy(), X)  # the sampler's batch of this draw
    ref = ra.sample_bfa(fam, samples=[2], seed=7, mode="exact", **kw)
    assert ref.inputs == 3
    # torch.mean of the (n, k) output: the batch sampler's loss, mean(f_L) over the n k outputs
    got = measure(net, xin, torch.mean, blocks=net.features)  # lr=None: balanced, Eq. (8)
    np.testing.assert_array_equal(got.layers, ref.layers)
    np.testing.assert_array_equal(got.size, 3 * fam.width)  # each feature flattened over the batch
    for q in QUANTITIES:
        np.testing.assert_allclose(getattr(got, q), getattr(ref, q)[0], rtol=RTOL, atol=0, err_msg=q)
    np.testing.assert_allclose(got.lr, ref.lr[0][fam.trained_mask], rtol=RTOL, atol=0)
    np.testing.assert_allclose(got.grad_sq, ref.grad_sq[0][fam.trained_mask], rtol=RTOL, atol=0)
    # the batch matters: the single-input angle of the same draw is far from the batch's, so a
    # twin that ignored its batch would fail the comparison above
    one = ra.sample_bfa(fam, samples=[2], seed=7, mode="exact")
    ok = np.isfinite(one.cos[0])
    assert np.max(np.abs(one.cos[0][ok] - ref.cos[0][ok])) > 1e-3


def test_twin_with_a_batch_and_explicit_rates():
    """A rule other than Eq. (8) on a batch: the batch sampler's own rates, as a mapping."""
    fam = ra.ResNet(5, 16, 0.5, lr_values=(0.0, 0.3, 2.0, 0.7, 0.1), in_dim=4)
    kw = dict(inputs=4, input_correlation=-0.2)
    net = twin(fam, seed=5, **kw)
    ref = ra.sample_bfa(fam, samples=1, seed=5, **kw)
    rates = dict(zip((n for n, _ in net.named_parameters()), ref.lr[0]))
    got = measure(net, net.input(), torch.mean, lr=rates, blocks=net.features)
    for q in QUANTITIES:
        np.testing.assert_allclose(getattr(got, q), getattr(ref, q)[0], rtol=RTOL, atol=0, err_msg=q)


def test_twin_batch_default_and_weights():
    fam = ra.MLP(5, 8, in_dim=4, input="random")
    base = twin(fam, seed=3, sample=1)
    x, _ = ra.sample_network(fam, seed=3, sample=1)
    # the default is today's: the family's input x, as a batch of one; inputs=1 is the same
    for net in (base, twin(fam, seed=3, sample=1, inputs=1)):
        assert net.input().shape == (1, 4)
        np.testing.assert_array_equal(net.input()[0].numpy(), x)
    drawn = twin(fam, seed=3, sample=1, inputs=4, input_correlation=0.3)
    X = drawn.input().numpy()
    # drawn inputs: |x_i|^2 = d and x_i . x_j = d rho, from the draw's seed and sample
    np.testing.assert_allclose(X @ X.T / 4, 0.7 * np.eye(4) + 0.3, rtol=0, atol=1e-13)
    other = twin(fam, seed=3, sample=2, inputs=4, input_correlation=0.3).input().numpy()
    assert not np.allclose(other, X)
    # the batch changes the inputs only, never the weights
    for a, b in zip(base.parameters(), drawn.parameters()):
        assert torch.equal(a, b)
    # an explicit batch is copied: the caller's array and the twin's input are independent
    Xe = np.arange(8.0).reshape(2, 4)
    net = twin(fam, seed=3, inputs=Xe)
    Xe[0, 0] = 99.0
    net.input()[0, 0] = -1.0
    np.testing.assert_array_equal(net.input().numpy(), np.arange(8.0).reshape(2, 4))

