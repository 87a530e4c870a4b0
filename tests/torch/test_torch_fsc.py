"""rmtalign.torch.FSC: on a real step every group contributes exactly target/n, the loss
decreases by target to first order, frozen groups, schedulers as multipliers, every k steps,
the Adam-like variant, state_dict, errors."""
import math
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from conftest import assert_error_names  # noqa: E402
from rmtalign import MLP, ResNet, prescribe  # noqa: E402
from rmtalign.torch import FSC, OutputMultiplier, init_, param_groups, twin  # noqa: E402

L, M, D, K = 5, 24, 6, 2


def model(act=nn.ReLU, bias=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(D, M, bias=bias)]
    for _ in range(L - 2):
        layers += [act(), nn.Linear(M, M, bias=bias)]
    layers += [act(), nn.Linear(M, K, bias=bias), OutputMultiplier(0.3)]
    return nn.Sequential(*layers).double()


X = torch.linspace(-1, 1, 4 * D, dtype=torch.float64).reshape(4, D)
Y = torch.linspace(1, -1, 4 * K, dtype=torch.float64).reshape(4, K)


def contributions(groups, before, grads):
    """-<grad, w1 - w0> per group, from the parameters before and after a step, with its
    round-off bound: the difference w0 - w1 is exact to about eps |w0| per entry, and the sum
    adds a few eps of the result."""
    out, bound = [], []
    for g, w0, gr in zip(groups, before, grads):
        out.append(sum(float(((a - p.detach()) * c).sum()) for a, p, c in zip(w0, g["params"], gr)))
        bound.append(4 * np.finfo(np.float64).eps * (abs(out[-1]) + sum(
            float((a.abs() * c.abs()).sum()) for a, c in zip(w0, gr))))
    return np.array(out), np.array(bound)


def loss_of(net):
    return ((net(X) - Y) ** 2).mean()


def groups_of(net):
    return [{"params": list(m.parameters())} for m in net if isinstance(m, nn.Linear)]


def test_each_group_contributes_target_over_n_on_a_real_step():
    """-<grad_l, delta w_l> = eta_l |grad_l|^2 = target / n for every block, measured from the
    parameters before and after torch's SGD step, against plain torch."""
    net = model()
    opt = FSC(torch.optim.SGD(groups_of(net), lr=1.0), net, target=0.7)
    loss_of(net).backward()
    before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
    grads = [[p.grad.clone() for p in g["params"]] for g in opt.param_groups]
    opt.step()
    for rate, gr in zip(opt.rates, grads):  # the rate against its definition, plain torch
        assert rate == pytest.approx(0.7 / (L * sum(float((c * c).sum()) for c in gr)), rel=1e-14)
    contrib, bound = contributions(opt.param_groups, before, grads)
    assert np.all(np.abs(contrib - 0.7 / L) <= bound), (contrib, bound)
    assert [g["lr"] for g in opt.param_groups] == [1.0] * L  # the groups' own lr is restored
    assert opt.steps == 1


def test_loss_decrease_of_a_small_step_is_target():
    """First order: (L(w) - L(w + delta)) / target = 1 + c target. A smooth activation (tanh:
    ReLU's kinks make the remainder jump when a unit changes sign); the remainder shrinks 10x
    with the target (measured c = 0.074)."""
    dev = []
    for target in (1e-4, 1e-5):
        net = model(act=nn.Tanh, seed=1)
        opt = FSC(torch.optim.SGD(groups_of(net), lr=1.0), net, target=target)
        l0 = loss_of(net)
        l0.backward()
        opt.step()
        with torch.no_grad():
            dev.append(float((l0 - loss_of(net)) / target) - 1)
    assert abs(dev[1]) < 1e-5
    assert dev[0] / dev[1] == pytest.approx(10, rel=0.05)


def test_frozen_groups_and_zero_gradients_are_not_counted():
    net = model()
    groups = groups_of(net)
    groups[0]["lr"] = 0.0  # frozen: initial lr 0
    for p in groups[1]["params"]:
        p.requires_grad_(False)  # no gradient at all
    opt = FSC(torch.optim.SGD(groups, lr=1.0), net, target=1.0)
    w0 = [p.detach().clone() for p in groups[0]["params"] + groups[1]["params"]]
    loss_of(net).backward()
    opt.step()
    assert opt.rates[0] == 0.0 and opt.rates[1] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(w0, groups[0]["params"] + groups[1]["params"]))
    sq = [sum(float((p.grad ** 2).sum()) for p in g["params"]) for g in groups[2:]]
    np.testing.assert_allclose(opt.rates[2:], 1.0 / (3 * np.array(sq)), rtol=1e-14)


def test_scheduler_scales_the_rule():
    """A scheduler on the wrapped optimizer multiplies FSC's rates by its factor, whichever is
    built first; the groups' lr go on being the scheduler's."""
    for scheduler_first in (True, False):
        net = model()
        opt = torch.optim.SGD(param_groups(net, prescribe(MLP(L, M, in_dim=D, out_dim=K,
                                                              trained="all"), "fsc"), other_lr=0.0))
        lrs = [g["lr"] for g in opt.param_groups]
        if scheduler_first:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)
            fsc = FSC(opt, net, target=1.0)
        else:
            fsc = FSC(opt, net, target=1.0)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)
        for t in range(3):
            fsc.zero_grad()
            loss_of(net).backward()
            grads = [[p.grad.clone() for p in g["params"]] for g in opt.param_groups]
            before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
            fsc.step()
            sched.step()
            contrib, bound = contributions(opt.param_groups, before, grads)
            assert np.all(np.abs(contrib - 0.5 ** t / L) <= bound), (contrib, bound)
            np.testing.assert_allclose([g["lr"] for g in opt.param_groups],
                                       [lr * 0.5 ** (t + 1) for lr in lrs], rtol=1e-15)


def test_every_k_steps_reuses_the_rates():
    net = model()
    fsc = FSC(torch.optim.SGD(groups_of(net), lr=1.0), net, target=0.1, every=2)
    seen = []
    for _ in range(4):
        fsc.zero_grad()
        loss_of(net).backward()
        fsc.step()
        seen.append(list(fsc.rates))
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[1] != seen[2]


def test_adam_variant_step_has_the_normalised_norm():
    """kind="adam" with torch Adam: the first step is lr sign(grad) (eps negligible), so block l
    moves by the Frobenius norm target / (n |grad_l|) of the paper's normalised step."""
    net = model(act=nn.Tanh)  # no exactly-zero gradient entries
    fsc = FSC(torch.optim.Adam(groups_of(net), lr=1.0, eps=1e-300), net, target=0.01, kind="adam")
    loss_of(net).backward()
    norms = [math.sqrt(sum(float((p.grad ** 2).sum()) for p in g["params"])) for g in fsc.param_groups]
    before = [[p.detach().clone() for p in g["params"]] for g in fsc.param_groups]
    fsc.step()
    moved = [math.sqrt(sum(float(((a - p.detach()) ** 2).sum()) for a, p in zip(w0, g["params"])))
             for g, w0 in zip(fsc.param_groups, before)]
    np.testing.assert_allclose(moved, 0.01 / (L * np.array(norms)), rtol=1e-10)


def test_closure_and_state_dict_round_trip():
    net = model()
    fsc = FSC(torch.optim.SGD(groups_of(net), lr=1.0), net, target=0.2, every=3)

    def closure():
        fsc.zero_grad()
        loss = loss_of(net)
        loss.backward()
        return loss

    for _ in range(2):
        loss = fsc.step(closure)
    assert isinstance(loss, torch.Tensor) and fsc.steps == 2
    state = fsc.state_dict()
    twin = model()
    twin.load_state_dict(net.state_dict())
    other = FSC(torch.optim.SGD(groups_of(twin), lr=1.0), twin)
    other.load_state_dict(state)
    assert (other.target, other.every, other.steps, other.rates) == (0.2, 3, 2, fsc.rates)
    # the next step (step 3 of a period of 3: the rates are reused) is the same on both
    closure()
    fsc.step()
    twin_loss = loss_of(twin)
    twin_loss.backward()
    other.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert "FSC(SGD" in repr(fsc)


def test_errors():
    net = model()
    assert_error_names(TypeError, ["optimizer", "Optimizer"], FSC, "sgd", net)
    opt = torch.optim.SGD(groups_of(net), lr=1.0)
    assert_error_names(ValueError, ["target", "> 0.0"], FSC, opt, net, target=0.0)
    assert_error_names(ValueError, ["kind", "'adamw'"], FSC, opt, net, kind="adamw")
    assert_error_names(ValueError, ["every", ">= 1"], FSC, opt, net, every=0)
    assert_error_names(ValueError, ["no gradient", "backward"], FSC(opt, net).step)
    assert_error_names(ValueError, ["state", "FSC.state_dict"], FSC(opt, net).load_state_dict, {})


def test_fsc_with_prescription_groups_end_to_end():
    """init_ + param_groups + FSC on an MLP with frozen W_1: n = L - 1 trained groups."""
    p = prescribe(MLP(L, M, in_dim=D, out_dim=K), "fsc")
    net = model(bias=False)
    init_(net, p, generator=torch.Generator().manual_seed(5))
    fsc = FSC(torch.optim.SGD(param_groups(net, p)), net, target=1.0)
    loss_of(net).backward()
    sq = [float((g["params"][0].grad ** 2).sum()) for g in fsc.param_groups]
    fsc.step()
    assert len(sq) == L - 1
    np.testing.assert_allclose(np.array(fsc.rates) * sq, 1.0 / (L - 1), rtol=1e-14)


# -- rebalance: the backward normalisation, re-measured -----------------------------------------
@pytest.mark.parametrize("family", [MLP(6, 32, in_dim=D, out_dim=K, trained="all"),
                                    ResNet(6, 32, 0.5, in_dim=D, out_dim=K)])
def test_rebalance_puts_the_feature_speed_on_target(family):
    """Linear loss: after one rebalance |fdot_{L-1}|_rms under the rule's rates is exactly
    feature_speed, by an independent plain-torch velocity (jvp of the features along the rule's
    step, computed here from the model's own gradients)."""
    from torch.func import functional_call, jvp

    p = prescribe(family, "fsc")
    net = twin(family, seed=3)
    net.layer6[-1].set_(5.0)  # far from the prescription
    x = torch.linspace(-1, 1, 3 * D, dtype=torch.float64).reshape(3, D)
    fsc = FSC(torch.optim.SGD(param_groups(net, p)), net, target=0.5, feature_speed=2.0,
              prescription=p)
    alpha = fsc.rebalance(x, torch.mean)
    assert float(net.layer6[-1].alpha) == alpha and fsc.rates is None

    # the independent check: the rule's rates from plain torch gradients, then a jvp
    params = {n: q for n, q in net.named_parameters() if q.requires_grad}
    grads = torch.autograd.grad(net(x).mean(), list(params.values()))
    n = len(grads)
    tangents = {k: -0.5 / (n * float((g * g).sum())) * g for k, g in zip(params, grads)}
    # f_{L-1}: everything below the readout, with the twin's parameter names
    feature = nn.Sequential(OrderedDict(list(net.named_children())[:-1]))
    fixed = {k: v for k, v in net.named_parameters() if k not in params}

    def f(ps):
        return functional_call(feature, {**ps, **{k: v for k, v in fixed.items()
                                                   if not k.startswith("layer6")}}, (x,))

    _, fdot = jvp(f, ({k: v for k, v in params.items() if not k.startswith("layer6")},),
                  ({k: v for k, v in tangents.items() if not k.startswith("layer6")},))
    rms = float(fdot.detach().norm()) / math.sqrt(fdot.numel())
    assert rms == pytest.approx(2.0, rel=1e-10)


def test_rebalance_errors():
    net = model()
    fsc = FSC(torch.optim.SGD(groups_of(net), lr=1.0), net)
    assert_error_names(ValueError, ["block=", "prescription="], fsc.rebalance, X, torch.mean)
    assert_error_names(ValueError, ["the model"], FSC(torch.optim.SGD(groups_of(net), lr=1.0)).rebalance,
                       X, torch.mean, block="6", multiplier="9")
    plain = nn.Sequential(*list(model())[:-1])
    fsc = FSC(torch.optim.SGD(groups_of(plain), lr=1.0), plain)
    assert_error_names(ValueError, ["OutputMultiplier"], fsc.rebalance, X, torch.mean, block="6",
                       multiplier="8")
