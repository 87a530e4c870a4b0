"""rmtalign.torch.init_ and param_groups: init scales, the output multiplier, per-layer rates as
torch.optim groups; the abc invariance (Prop. C.1) on a real torch SGD step; the output multiplier
through state_dict, deepcopy, torch.save and torch.compile."""
import copy
import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from conftest import assert_error_names  # noqa: E402
from rmtalign import MLP, ResNet, prescribe  # noqa: E402
from rmtalign.torch import FSC, OutputMultiplier, Residual, bind, init_, param_groups  # noqa: E402

L, M, D, K = 5, 16, 6, 2


def mlp(bias=False, multiplier=1.0, m=M, dtype=torch.float64):
    layers = [nn.Linear(D, m, bias=bias)]
    for _ in range(L - 2):
        layers += [nn.ReLU(), nn.Linear(m, m, bias=bias)]
    layers += [nn.ReLU(), nn.Linear(m, K, bias=bias)]
    if multiplier is not None:
        layers.append(OutputMultiplier(multiplier))
    return nn.Sequential(*layers).to(dtype)


def resnet(beta, skip=None, multiplier=1.0):
    blocks = [Residual(nn.Sequential(nn.ReLU(), nn.Linear(M, M, bias=False)), beta, skip)
              for _ in range(L - 2)]
    tail = [OutputMultiplier(multiplier)] if multiplier is not None else []
    return nn.Sequential(nn.Linear(D, M, bias=False), *blocks, nn.Linear(M, K, bias=False),
                         *tail).double()


def linears(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


# -- init_ ------------------------------------------------------------------------------------
def test_init_sets_stds_alpha_and_zero_biases():
    p = prescribe(MLP(L, 256, in_dim=D, out_dim=K, trained="all"), "fsc")
    net = mlp(bias=True, m=256)
    assert init_(net, p, generator=torch.Generator().manual_seed(0)) is net
    assert float(net[-1].alpha) == p.output_multiplier
    for lin, s in zip(linears(net), p.init_std):
        w = lin.weight.detach().numpy()
        # the sample std of n Gaussians has relative standard error 1/sqrt(2 n)
        assert abs(w.std() / s - 1) < 5 / math.sqrt(2 * w.size), (w.shape, w.std(), s)
        assert abs(w.mean()) < 5 * s / math.sqrt(w.size)
        assert torch.count_nonzero(lin.bias) == 0
    # the same generator state gives the same draw; the draw is the generator's normal_
    net2 = init_(mlp(bias=True, m=256), p, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    for a, b, s in zip(linears(net), linears(net2), p.init_std):
        assert torch.equal(a.weight, b.weight)
        assert torch.equal(a.weight, torch.empty_like(a.weight).normal_(0.0, s, generator=g))


def test_init_without_multiplier_module_puts_alpha_in_W_L():
    p = prescribe(MLP(L, 256, in_dim=D, out_dim=K), "fsc")
    a, b = mlp(m=256), mlp(m=256, multiplier=None)
    init_(a, p, generator=torch.Generator().manual_seed(1))
    init_(b, p, generator=torch.Generator().manual_seed(1))
    # same effective network: alpha W_L with the module == W_L without it
    torch.testing.assert_close(a[-1].alpha.double() * a[-2].weight, b[-1].weight, rtol=1e-14, atol=0)
    x = torch.randn(3, D, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x), rtol=1e-12, atol=1e-14)


def test_init_orthogonal():
    fam = ResNet(L, M, 0.5, in_dim=D, out_dim=K, weights="orthogonal")
    p = prescribe(fam, "fsc")
    net = init_(resnet(0.5), p, generator=torch.Generator().manual_seed(2))
    for lin, s in zip(linears(net), p.init_std):
        w = lin.weight.detach()
        small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        # (semi-)orthogonal with entry second moment s^2: W W^T = s^2 max(shape) I
        torch.testing.assert_close(small, s * s * max(w.shape) * torch.eye(min(w.shape), dtype=w.dtype),
                                   rtol=0, atol=1e-13 * s * s * max(w.shape))


def test_init_checks_residuals_and_converts_beta():
    p = prescribe(ResNet(L, 256, 0.5, in_dim=D, out_dim=K), "fsc")
    blocks = lambda beta, skip: nn.Sequential(  # noqa: E731
        nn.Linear(D, 256, bias=False),
        *[Residual(nn.Sequential(nn.ReLU(), nn.Linear(256, 256, bias=False)), beta, skip)
          for _ in range(L - 2)], nn.Linear(256, K, bias=False), OutputMultiplier()).double()
    assert_error_names(ValueError, ["skip", "Residual"], init_, blocks(0.3, None), p)
    net = init_(blocks(1.0, math.sqrt(0.75)), p, generator=torch.Generator().manual_seed(3))
    for lin in linears(net)[1:-1]:  # beta = 0.5 moved into the weights: std 0.5 s_hid
        w = lin.weight.detach().numpy()
        assert abs(w.std() / (0.5 * p.init_std[1]) - 1) < 5 / math.sqrt(2 * w.size)
    assert_error_names(TypeError, ["generator"], init_, blocks(0.5, None), p, generator=0)


def test_init_accepts_a_binding_of_the_same_model_only():
    p = prescribe(MLP(L, M, in_dim=D, out_dim=K), "fsc")
    net = mlp()
    init_(net, bind(net, p))
    assert float(net[-1].alpha) == p.output_multiplier
    assert_error_names(ValueError, ["another model"], init_, mlp(), bind(net, p))


# -- param_groups -------------------------------------------------------------------------------
def test_param_groups_are_plain_optim_groups():
    p = prescribe(MLP(L, M, in_dim=D, out_dim=K), "fsc")  # W_1 frozen
    net = init_(mlp(bias=True), p)
    groups = param_groups(net, p, base_lr=0.1)
    assert [g["layer"] for g in groups] == [2, 3, 4, 5]  # frozen layer 1 left out
    assert [g["name"] for g in groups] == ["2.weight", "4.weight", "6.weight", "8.weight"]
    np.testing.assert_allclose([g["lr"] for g in groups], 0.1 * p.lr[1:], rtol=1e-15)
    assert all(len(g["params"]) == 2 for g in groups)  # weight and bias
    numel = np.array([M * M + M] * (L - 2) + [K * M + K])
    adam = param_groups(net, p, kind="adam")
    np.testing.assert_allclose([g["lr"] for g in adam], p.lr_adam[1:] / np.sqrt(numel), rtol=1e-14)
    opt = torch.optim.SGD(groups)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], 0.05 * p.lr[1:], rtol=1e-15)


def test_param_groups_other_parameters():
    p = prescribe(MLP(L, M, in_dim=D, out_dim=K), "fsc")
    net = mlp()
    net.add_module("norm", nn.LayerNorm(K).double())
    assert_error_names(ValueError, ["norm.weight", "other_lr=", "requires_grad_(False)"],
                       param_groups, net, p)
    groups = param_groups(net, p, other_lr=1e-3)
    assert groups[-1]["name"] == "other" and groups[-1]["lr"] == 1e-3
    assert {id(x) for x in groups[-1]["params"]} == {id(net.norm.weight), id(net.norm.bias)}
    net.norm.requires_grad_(False)
    assert len(param_groups(net, p)) == L - 1
    assert_error_names(ValueError, ["kind", "'sgdm'"], param_groups, net, p, kind="sgdm")
    assert_error_names(ValueError, ["base_lr", "-1"], param_groups, net, p, base_lr=-1.0)


# -- abc invariance (Prop. C.1) on a real torch step --------------------------------------------
def _split_step(build, p, noise, how, dt=1e-3):
    """One SGD step of the model ``build()`` initialised with the fixed ``noise`` at the
    binding's stds; rates from the abc form (``how="abc"``) or by FSC on its own gradients.
    Returns the effective weights mu_l W_l after the step."""
    net = build()
    b = bind(net, p)
    with torch.no_grad():
        for lin, z, s in zip(linears(net), noise, b.init_stds()):
            lin.weight.copy_(z * s)
    x = torch.linspace(-1, 1, 3 * D, dtype=torch.float64).reshape(3, D)
    loss = net(x).mean()
    loss.backward()
    if how == "abc":
        opt = torch.optim.SGD(param_groups(net, p, base_lr=dt))
        opt.step()
    else:
        opt = FSC(torch.optim.SGD(param_groups(net, p)), net, target=dt)
        opt.step()
    mu = b.multipliers()
    return [float(m) * lin.weight.detach() for m, lin in zip(mu, linears(net))]


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_abc_split_does_not_change_the_step(arch):
    """Different splits between init scale and multiplier (the output multiplier, and the
    residual beta) of the same effective network take the same step, with the abc rates and with
    the scale-invariant rule on each split's own gradients."""
    if arch == "mlp":
        p = prescribe(MLP(L, M, in_dim=D, out_dim=K, trained="all"), "fsc")
        alpha = p.output_multiplier
        builds = [lambda: mlp(multiplier=alpha), lambda: mlp(multiplier=None),
                  lambda: mlp(multiplier=50 * alpha)]
    else:
        p = prescribe(ResNet(L, M, 0.5, in_dim=D, out_dim=K, trained="all"), "fsc")
        alpha, a = p.output_multiplier, math.sqrt(0.75)
        builds = [lambda: resnet(0.5, multiplier=alpha), lambda: resnet(1.0, skip=a, multiplier=None),
                  lambda: resnet(0.05, skip=a, multiplier=0.1 * alpha)]
    g = torch.Generator().manual_seed(4)
    shapes = [(M, D)] + [(M, M)] * (L - 2) + [(K, M)]
    noise = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    init = [z * s for z, s in zip(noise, p.abc()["init_std"])]
    for how in ("abc", "fsc"):  # the prescribed rates, or Eq. (8) on the draw's own gradients
        ref = _split_step(builds[0], p, noise, how)
        moved = min(float((r - w).abs().max() / w.abs().max()) for r, w in zip(ref, init))
        assert moved > 1e-6  # the step moves every layer
        for build in builds[1:]:
            out = _split_step(build, p, noise, how)
            for r, o in zip(ref, out):
                torch.testing.assert_close(o, r, rtol=1e-12, atol=1e-14 * float(r.abs().max()))


# -- the output multiplier survives serialisation and compilation ---------------------------------
def test_output_multiplier_survives_state_dict_deepcopy_save():
    net = mlp(multiplier=0.25)
    sd = net.state_dict()
    assert "9.alpha" in sd and float(sd["9.alpha"]) == 0.25
    other = mlp(multiplier=1.0)
    other.load_state_dict(sd)
    assert float(other[-1].alpha) == 0.25
    assert float(copy.deepcopy(net)[-1].alpha) == 0.25
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert float(loaded[-1].alpha) == 0.25
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    assert float(torch.load(buf)["9.alpha"]) == 0.25
    res = resnet(0.5)
    res2 = resnet(0.9)
    res2.load_state_dict(res.state_dict())
    assert float(res2[1].beta) == 0.5 and float(res2[1].skip) == pytest.approx(math.sqrt(0.75))


def test_output_multiplier_under_torch_compile():
    """aot_eager: dynamo's graph capture and AOTAutograd's functionalisation (buffers become graph
    inputs), without a C++ compiler; inductor does the same on these graphs, more slowly."""
    torch._dynamo.reset()
    net = nn.Sequential(nn.Linear(4, 3, bias=False), OutputMultiplier(2.0)).double()
    x = torch.ones(2, 4, dtype=torch.float64)
    compiled = torch.compile(net, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, 2.0 * net[0](x))
    out.sum().backward()  # the multiplier scales the weight's gradient
    torch.testing.assert_close(net[0].weight.grad, 2.0 * x.sum(0).expand(3, 4))
    net[1].set_(3.0)  # a buffer: the compiled module sees the new value
    torch.testing.assert_close(compiled(x), 3.0 * net[0](x))
    assert float(compiled.state_dict()["_orig_mod.1.alpha"]) == 3.0
