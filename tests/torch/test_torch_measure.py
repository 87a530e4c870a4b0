"""rmtalign.torch.measure on general modules, against hand-written plain-torch references.

* b_v, fdot_v, the gradients and the loss decay against a hand-written computation: backward by
  ``loss.backward()`` on a copy with ``retain_grad`` on the block outputs, fdot_v by a central
  finite difference of the block outputs along the SGD direction (error O(h^2) ~ 1e-10 with
  h = 1e-5), on a float64 model with biases, LayerNorm and a residual block;
* the feature speed formula (Thm 2.1) at blocks that are cuts, to round-off;
* ``mode="difference"`` with ``step=1`` equals the feature change of one real ``torch.optim.SGD``
  step;
* the model is left bit-identical (parameters, .grad, buffers, train/eval, RNG);
* the errors name what is wrong and what to pass.
"""
import copy
import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rmtalign as ra  # noqa: E402
from conftest import assert_error_names  # noqa: E402
from rmtalign.torch import Measurement, Residual, measure  # noqa: E402


class _Block(nn.Module):
    """A hand-written residual block: x + W2 relu(W1 LN(x))."""

    def __init__(self, m):
        super().__init__()
        self.norm = nn.LayerNorm(m)
        self.lin1 = nn.Linear(m, m)
        self.lin2 = nn.Linear(m, m)

    def forward(self, x):
        return x + self.lin2(torch.relu(self.lin1(self.norm(x))))


class _Net(nn.Module):
    def __init__(self, d=5, m=12, k=3):
        super().__init__()
        self.inp = nn.Linear(d, m)
        self.block = _Block(m)
        self.norm = nn.LayerNorm(m)
        self.head = nn.Linear(m, k)

    def forward(self, x):
        return self.head(torch.tanh(self.norm(self.block(self.inp(x)))))


def _net(seed=0):
    torch.manual_seed(seed)
    net = _Net().double()
    with torch.no_grad():  # LayerNorm starts at (1, 0): make its parameters generic
        for mod in (net.block.norm, net.norm):
            mod.weight.add_(0.3 * torch.randn_like(mod.weight))
            mod.bias.add_(0.3 * torch.randn_like(mod.bias))
    return net


def _batch(seed=1, n=4, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=g)


def _loss(out):
    return (out ** 2).mean() + out[:, 0].sum()


def _outputs(net, x, names):
    """Block outputs of one forward pass, flattened in forward order of ``names``."""
    got = {}
    hooks = [net.get_submodule(n).register_forward_hook(
        lambda mod, a, o, n=n: got.__setitem__(n, o)) for n in names]
    out = net(x)
    for h in hooks:
        h.remove()
    return out, got


def _reference(net, x, blocks, rates, h=1e-5):
    """Plain torch: b_v by retain_grad and backward, fdot_v by a central difference along the
    SGD direction -eta grad, grads and loss decay summed by hand."""
    ref = copy.deepcopy(net)
    out, feats = _outputs(ref, x, blocks)
    for t in feats.values():
        t.retain_grad()
    _loss(out).backward()
    b = {n: feats[n].grad.reshape(-1).clone() for n in blocks}
    params = dict(ref.named_parameters())
    grads = {n: p.grad.clone() for n, p in params.items()}

    def feats_at(t):
        moved = copy.deepcopy(net)
        with torch.no_grad():
            for n, p in moved.named_parameters():
                p.sub_(t * rates[n] * grads[n])
            _, fs = _outputs(moved, x, blocks)
        return {n: fs[n].reshape(-1) for n in blocks}

    plus, minus = feats_at(h), feats_at(-h)
    fdot = {n: (plus[n] - minus[n]) / (2 * h) for n in blocks}
    grad_sq = {n: float((g ** 2).sum()) for n, g in grads.items()}
    return b, fdot, grad_sq


def test_measure_against_hand_written_difference():
    net, x = _net(), _batch()
    blocks = ["inp", "block.lin1", "block", "norm", "head"]
    names = [n for n, _ in net.named_parameters()]
    rates = {n: 0.05 * (i + 1) for i, n in enumerate(names)}  # a different rate per parameter
    got = measure(net, x, _loss, lr=rates, blocks=blocks, keep_vectors=True)
    b, fdot, grad_sq = _reference(net, x, blocks, rates)
    assert got.names == tuple(blocks)  # this is also their forward order
    assert got.params == tuple(names)
    np.testing.assert_allclose(got.grad_sq, [grad_sq[n] for n in names], rtol=1e-13)
    np.testing.assert_allclose(got.lr, [rates[n] for n in names], rtol=0)
    for i, n in enumerate(blocks):
        np.testing.assert_allclose(got.vectors["b"][i], b[n].numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got.vectors["fdot"][i], fdot[n].numpy(), rtol=1e-7, atol=1e-9)
        assert got.size[i] == b[n].numel()
        bn, fn = float(b[n].norm()), float(fdot[n].norm())
        np.testing.assert_allclose(got.b_norm[i], bn, rtol=1e-12)
        np.testing.assert_allclose(got.fdot_norm[i], fn, rtol=1e-7)
        np.testing.assert_allclose(got.cos[i], float(-(b[n] @ fdot[n])) / (bn * fn), rtol=1e-7)
    # upstream loss decay: the parameters each block's output depends on, summed by hand
    upstream = {"inp": ["inp"], "block.lin1": ["inp", "block.norm", "block.lin1"],
                "block": ["inp", "block"], "norm": ["inp", "block", "norm"], "head": [""]}
    for i, n in enumerate(blocks):
        want = sum(rates[p] * grad_sq[p] for p in names
                   if any(p.startswith(u + ".") or not u for u in upstream[n]))
        np.testing.assert_allclose(got.loss_decay[i], want, rtol=1e-13, err_msg=n)
    np.testing.assert_allclose(got.total_loss_decay, sum(rates[p] * grad_sq[p] for p in names),
                               rtol=1e-13)
    np.testing.assert_allclose(got.sensitivity, got.fdot_norm / np.sqrt(got.size) / got.loss_decay,
                               rtol=1e-14)


def test_feature_speed_formula_at_cuts():
    """Thm 2.1 at blocks every upstream path goes through: -b.fdot = loss decay, to round-off.
    Inside the residual branch (block.lin1) it does not hold: the skip bypasses it."""
    net, x = _net(3), _batch(4)
    got = measure(net, x, _loss, blocks=["inp", "block.lin1", "block", "norm", "head"],
                  keep_vectors=True)
    inner = np.array([-(bv @ fv) for bv, fv in zip(got.vectors["b"], got.vectors["fdot"])])
    cuts = np.array([True, False, True, True, True])
    np.testing.assert_allclose(inner[cuts], got.loss_decay[cuts], rtol=1e-12)
    np.testing.assert_allclose(got.fdot_norm[cuts],
                               ra.feature_speed(got.loss_decay, got.cos, got.b_norm)[cuts], rtol=1e-12)
    assert abs(inner[1] - got.loss_decay[1]) > 1e-3 * got.loss_decay[1]
    # the balanced rule (lr=None): 5 modules hold parameters, each contributes 1/5
    per_module = {}
    for n, eta, g in zip(got.params, got.lr, got.grad_sq):
        per_module[n.rpartition(".")[0]] = per_module.get(n.rpartition(".")[0], 0.0) + eta * g
    assert sorted(per_module) == ["block.lin1", "block.lin2", "block.norm", "head", "inp", "norm"]
    np.testing.assert_allclose(list(per_module.values()), 1 / 6, rtol=1e-13)
    np.testing.assert_allclose(got.total_loss_decay, 1.0, rtol=1e-13)
    np.testing.assert_allclose(got.loss_decay[-1], 1.0, rtol=1e-13)


def test_default_blocks_forward_order_and_residual():
    net = _net()
    got = measure(net, _batch(), _loss)
    assert got.names == ("inp", "block.lin1", "block.lin2", "head")
    np.testing.assert_array_equal(got.layers, [1, 2, 3, 4])

    class Wrapped(nn.Module):  # registration order differs from the order of the calls
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(6, 2)
            self.res = Residual(nn.Sequential(nn.ReLU(), nn.Linear(6, 6)), 0.5)
            self.inp = nn.Linear(3, 6)
            self.unused = nn.Linear(6, 6)

        def forward(self, x):
            return self.head(self.res(self.inp(x)))

    got = measure(Wrapped(), torch.randn(2, 3), torch.sum)
    # forward order; a Residual is one block in place of its branch's Linear; unused ones skipped
    assert got.names == ("inp", "res", "head")


def test_difference_mode_is_one_real_sgd_step():
    net, x = _net(5), _batch(6)
    blocks = ["inp", "block", "head"]
    opt = torch.optim.SGD([{"params": net.inp.parameters(), "lr": 0.02},
                           {"params": list(net.block.parameters()) + list(net.head.parameters()),
                            "lr": 0.005}], lr=0.1)  # net.norm is not in the optimizer: not moved
    got = measure(net, x, _loss, lr=opt, blocks=blocks, mode="difference", step=1.0,
                  keep_vectors=True)
    assert got.step == 1.0 and got.mode == "difference"
    rates = dict(zip(got.params, got.lr))
    assert rates["inp.weight"] == 0.02 and rates["head.bias"] == 0.005 and rates["norm.weight"] == 0.0
    stepped = copy.deepcopy(net)
    opt2 = torch.optim.SGD([{"params": stepped.inp.parameters(), "lr": 0.02},
                            {"params": list(stepped.block.parameters())
                             + list(stepped.head.parameters()), "lr": 0.005}])
    _loss(stepped(x)).backward()
    opt2.step()
    with torch.no_grad():
        _, before = _outputs(net, x, blocks)
        _, after = _outputs(stepped, x, blocks)
    for i, n in enumerate(blocks):
        np.testing.assert_allclose(got.vectors["fdot"][i], (after[n] - before[n]).reshape(-1).numpy(),
                                   rtol=1e-12, atol=1e-14)
    # and with a small step, the difference is the jvp to first order
    jvp = measure(net, x, _loss, lr=opt, blocks=blocks)
    small = measure(net, x, _loss, lr=opt, blocks=blocks, mode="difference", step=1e-6)
    np.testing.assert_allclose(small.fdot_norm, jvp.fdot_norm, rtol=1e-5)
    np.testing.assert_allclose(small.cos, jvp.cos, rtol=1e-5)


class _Stateful(nn.Module):
    """BatchNorm (running statistics), Dropout (RNG), a frozen layer, an in-place ReLU."""

    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(4, 8)
        self.frozen.requires_grad_(False)
        self.lin = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.drop(self.act(self.bn(self.lin(self.frozen(x))))))


def _snapshot(model):
    return {"state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
            "grad": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            "grad_ids": {n: id(p.grad) for n, p in model.named_parameters()},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "training": [m.training for m in model.modules()],
            "rng": torch.get_rng_state()}


def _assert_untouched(model, snap):
    for k, v in model.state_dict(keep_vars=True).items():
        assert v.dtype == snap["state"][k].dtype and torch.equal(v, snap["state"][k]), k
    for n, p in model.named_parameters():
        assert id(p.grad) == snap["grad_ids"][n], n
        assert (p.grad is None) == (snap["grad"][n] is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, snap["grad"][n]), n
        assert p.requires_grad == snap["requires_grad"][n], n
    assert [m.training for m in model.modules()] == snap["training"]
    assert torch.equal(torch.get_rng_state(), snap["rng"])


@pytest.mark.parametrize("train", [True, False])
def test_model_left_bit_identical(train):
    torch.manual_seed(0)
    model = _Stateful().double().train(train)
    x = torch.randn(6, 4, dtype=torch.float64)
    model(x).sum().backward()  # some .grad exist (frozen ones stay None), running stats moved
    model.lin.weight.grad = None
    torch.manual_seed(123)
    snap = _snapshot(model)
    results = [measure(model, x, torch.mean, lr=lr, mode=mode, step=1e-6)
               for lr in (None, 0.1) for mode in ("jvp", "difference")]
    _assert_untouched(model, snap)
    # both passes saw the same dropout masks and batch statistics: the one-step difference is
    # the jvp to first order (different masks would change fdot at order 1)
    for j, d in ((results[0], results[1]), (results[2], results[3])):
        np.testing.assert_allclose(d.fdot_norm, j.fdot_norm, rtol=1e-4)
        np.testing.assert_allclose(d.cos[1:], j.cos[1:], rtol=1e-4)
    # the frozen first layer: b is defined, nothing upstream moves
    r = results[0]
    assert r.names == ("frozen", "lin", "head")
    assert r.fdot_norm[0] == 0 and np.isnan(r.cos[0]) and np.isnan(r.sensitivity[0]) and r.b_norm[0] > 0
    assert "frozen.weight" not in r.params


def test_measurement_result_protocol(tmp_path):
    got = measure(_net(), _batch(), _loss, keep_vectors=True)
    assert isinstance(got, Measurement)
    d = got.to_dict()
    json.dumps(d)
    assert "vectors" not in d and d["names"] == list(got.names)
    table = got.to_table()
    assert list(table) == ["layer", "name", "size", "cos", "angle_deg", "b_norm", "fdot_norm",
                           "loss_decay", "sensitivity"]
    assert {len(v) for v in table.values()} == {len(got.layers)}
    path = got.to_csv(tmp_path / "m.csv")
    rows = path.read_text().splitlines()
    assert len(rows) == 1 + len(got.layers) and rows[1].split(",")[1] == "inp"
    assert float(rows[1].split(",")[3]) == got.cos[0]
    text = repr(got)
    assert text.startswith("Measurement(") and len(text) < 400
    np.testing.assert_allclose(got.angle_deg, np.degrees(np.arccos(got.cos)))
    assert got.rates() == dict(zip(got.params, got.lr.tolist()))
    again = measure(_net(), _batch(), _loss, lr=got.rates())
    np.testing.assert_array_equal(again.cos, got.cos)


def test_inputs_as_tuple_dict_and_shared_block():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.out = nn.Linear(3, 1)

        def forward(self, x, y=None):
            return self.out(self.lin(self.lin(x)) + (0 if y is None else y))  # lin called twice

    torch.manual_seed(0)
    model, x, y = Two().double(), torch.randn(2, 3, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    a = measure(model, (x, y), torch.sum)
    b = measure(model, {"x": x, "y": y}, torch.sum)
    np.testing.assert_array_equal(a.cos, b.cos)
    assert a.names == ("lin", "out") and list(a.size) == [12, 2]  # both calls of lin, one feature


def test_errors_name_what_is_wrong():
    net, x = _net(), _batch()
    assert_error_names(ValueError, ["frozen model", "requires_grad"], measure,
                       copy.deepcopy(net).requires_grad_(False), x, _loss)
    assert_error_names(ValueError, ["scalar", "(4, 3)", ".mean()"], measure, net, x, lambda out: out)
    assert_error_names(TypeError, ["loss_fn", "scalar"], measure, net, x, lambda out: 1.0)
    assert_error_names(TypeError, ["loss_fn", "callable"], measure, net, x, "mean")
    assert_error_names(ValueError, ["loss", "does not depend"], measure, net, x,
                       lambda out: out.detach().sum())
    assert_error_names(TypeError, ["inputs", "ndarray", "torch.as_tensor"], measure, net, x.numpy(), _loss)
    assert_error_names(TypeError, ["inputs", "float"], measure, net, 1.5, _loss)
    assert_error_names(TypeError, ["inputs", "numpy array"], measure, net, (x.numpy(),), _loss)
    assert_error_names(TypeError, ["model", "nn.Module"], measure, lambda t: t, x, _loss)
    assert_error_names(ValueError, ["blocks", "'block.lin3'", "'inp'"], measure, net, x, _loss,
                       blocks=["inp", "block.lin3"])
    net.extra = nn.Linear(12, 12)  # registered, never called by forward
    assert_error_names(ValueError, ["'extra'", "never reached"], measure, net, x, _loss,
                       blocks=["inp", net.extra])
    assert_error_names(ValueError, ["blocks", "not a submodule"], measure, net, x, _loss,
                       blocks=[nn.Linear(2, 2)])
    assert_error_names(ValueError, ["blocks", "'inp'", "twice"], measure, net, x, _loss,
                       blocks=["inp", net.inp])
    assert_error_names(TypeError, ["blocks", "3"], measure, net, x, _loss, blocks=[3])
    assert_error_names(ValueError, ["mode", "'jvp'", "'difference'", "'fd'"], measure, net, x, _loss,
                       mode="fd")
    assert_error_names(ValueError, ["step", "> 0"], measure, net, x, _loss, mode="difference", step=0)
    assert_error_names(ValueError, ["lr", "> 0", "-0.1"], measure, net, x, _loss, lr=-0.1)
    assert_error_names(TypeError, ["lr", "Prescription", "'fast'"], measure, net, x, _loss, lr="fast")
    assert_error_names(ValueError, ["lr", "'inp.w'", "'inp.weight'"], measure, net, x, _loss,
                       lr={"inp.w": 0.1})
    assert_error_names(ValueError, ["lr['head.bias']", ">= 0"], measure, net, x, _loss,
                       lr={"head.bias": -1.0})
    frozen = copy.deepcopy(net)
    frozen.inp.requires_grad_(False)
    assert_error_names(ValueError, ["lr['inp.weight']", "requires_grad=False"], measure, frozen, x,
                       _loss, lr={"inp.weight": 0.1})
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert_error_names(ValueError, ["optimizer", "not in the model"], measure, net, x, _loss, lr=other)

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x), x

    class UsesPair(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            return self.pair(x)[0]

    assert_error_names(TypeError, ["'pair'", "tuple", "one floating-point tensor"], measure,
                       UsesPair(), torch.randn(2, 3), torch.sum, blocks=["pair"])
    assert_error_names(ValueError, ["pass blocks="], measure, nn.Sequential(nn.LayerNorm(3)),
                       torch.randn(2, 3), torch.sum)
    # no hook is left behind by a failed call
    assert not net.inp._forward_hooks and not net.extra._forward_hooks


def test_conv_model_float32_and_float64_agree():
    """Default blocks of a CNN (Conv2d, Linear), Thm 2.1 at every block of a sequential model,
    and a float32 copy measuring the same numbers to float32 precision."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2),
                          nn.Flatten(), nn.Linear(36, 5)).double()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    got = measure(model, x, _loss, keep_vectors=True)
    assert got.names == ("0", "2", "4") and list(got.size) == [3 * 4 * 64, 3 * 4 * 9, 15]
    inner = np.array([-(bv @ fv) for bv, fv in zip(got.vectors["b"], got.vectors["fdot"])])
    np.testing.assert_allclose(inner, got.loss_decay, rtol=1e-12)
    np.testing.assert_allclose(got.loss_decay, [1 / 3, 2 / 3, 1.0], rtol=1e-13)
    single = measure(copy.deepcopy(model).float(), x.float(), _loss)
    for q in ("cos", "b_norm", "fdot_norm", "loss_decay", "sensitivity"):
        np.testing.assert_allclose(getattr(single, q), getattr(got, q), rtol=1e-4, err_msg=q)


def test_vanished_backward_signal_is_named_not_silent():
    """PyTorch's default init at depth 64 (float32): dL/df underflows to exactly 0 in the first
    blocks. Their angle is NaN, and a warning names the blocks; the other blocks are measured."""
    torch.manual_seed(0)
    layers = []
    for _ in range(64):
        layers += [nn.Linear(32, 32), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(32, 10))
    x, y = torch.randn(16, 32), torch.randint(0, 10, (16,))
    with pytest.warns(RuntimeWarning, match=r"exactly 0 at \d+ of 65 blocks with trained "
                                            r"parameters upstream \('0' \.\. "):
        got = measure(model, x, lambda out: nn.functional.cross_entropy(out, y), lr=0.1)
    dead = (got.b_norm == 0) | (got.fdot_norm == 0)
    assert dead[0] and not dead[-1] and (got.b_norm == 0).any()
    assert np.all(np.isnan(got.cos[dead])) and np.all(np.isfinite(got.cos[~dead]))
    # a healthy network stays silent
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        measure(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(5, 3), _loss)
