"""rmtalign.torch.bind: which parameters are W_1..W_L, the model's multipliers, the rules for
biases, other parameters and residual blocks, and the errors that say what to pass."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from conftest import assert_error_names  # noqa: E402
from rmtalign import MLP, ResNet, prescribe  # noqa: E402
from rmtalign.torch import Binding, OutputMultiplier, Residual, bind  # noqa: E402

L, M, D, K = 5, 16, 6, 2


def mlp(bias=False, multiplier=True, act=nn.ReLU):
    layers = [nn.Linear(D, M, bias=bias)]
    for _ in range(L - 2):
        layers += [act(), nn.Linear(M, M, bias=bias)]
    layers += [act(), nn.Linear(M, K, bias=bias)]
    if multiplier:
        layers.append(OutputMultiplier(1.0))
    return nn.Sequential(*layers)


def resnet(beta, skip=None):
    blocks = [Residual(nn.Sequential(nn.ReLU(), nn.Linear(M, M, bias=False)), beta, skip)
              for _ in range(L - 2)]
    return nn.Sequential(nn.Linear(D, M, bias=False), *blocks, nn.Linear(M, K, bias=False),
                         OutputMultiplier(1.0))


class UserBlock(nn.Module):
    """A typical hand-written residual block: the family's beta as a Python constant."""

    def __init__(self, beta):
        super().__init__()
        self.beta, self.a = beta, math.sqrt(1 - beta * beta)
        self.fc = nn.Linear(M, M, bias=False)

    def forward(self, x):
        return self.a * x + self.beta * self.fc(torch.relu(x))


class UserNet(nn.Module):
    def __init__(self, beta):
        super().__init__()
        self.inp = nn.Linear(D, M, bias=False)
        self.blocks = nn.ModuleList(UserBlock(beta) for _ in range(L - 2))
        self.out = nn.Linear(M, K, bias=False)

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return self.out(x)


@pytest.fixture
def p_mlp():
    return prescribe(MLP(L, M, in_dim=D, out_dim=K, trained="all"), "fsc")


@pytest.fixture
def p_res():
    return prescribe(ResNet(L, M, 0.5, in_dim=D, out_dim=K), "fsc")


def test_sequential_mlp_is_inferred(p_mlp):
    net = mlp()
    b = bind(net, p_mlp)
    assert b.modules == ("0", "2", "4", "6", "8")
    assert b.weights == tuple(f"{i}.weight" for i in (0, 2, 4, 6, 8))
    assert b.biases == (None,) * L and b.others == ()
    assert b.multiplier == "9" and b.blocks == b.modules and b.residuals == (None,) * L
    np.testing.assert_array_equal(b.layers, np.arange(1, L + 1))


def test_rates_follow_the_models_multipliers(p_mlp):
    """rates() is the abc form at the model's own multipliers: the prescription's numbers when
    alpha is the prescribed one, lr_L * (alpha_p / alpha)^2 otherwise."""
    net = mlp()
    b = bind(net, p_mlp)
    for alpha in (p_mlp.output_multiplier, 1.0, 7.5):
        net[-1].set_(alpha)
        r = b.rates()
        expect = p_mlp.lr.copy()
        expect[-1] *= (p_mlp.output_multiplier / alpha) ** 2
        np.testing.assert_allclose([r[w] for w in b.weights], expect, rtol=1e-14)
        assert list(r) == list(b.weights)
        std = b.init_stds()
        assert std[-1] == pytest.approx(p_mlp.init_std[-1] * p_mlp.output_multiplier / alpha,
                                        rel=1e-14)
    numel = np.array([M * D] + [M * M] * (L - 2) + [K * M])
    net[-1].set_(p_mlp.output_multiplier)
    np.testing.assert_allclose(b.layer_rates("adam"), p_mlp.lr_adam / np.sqrt(numel), rtol=1e-14)


def test_without_output_multiplier_W_L_carries_alpha(p_mlp):
    b = bind(mlp(multiplier=False), p_mlp)
    assert b.multiplier is None
    assert b.init_stds()[-1] == pytest.approx(p_mlp.output_multiplier * p_mlp.init_std[-1], rel=1e-14)
    assert b.layer_rates()[-1] == pytest.approx(p_mlp.output_multiplier ** 2 * p_mlp.lr[-1], rel=1e-14)


def test_frozen_first_layer_has_rate_zero(p_res):
    b = bind(resnet(0.5), p_res)
    r = b.rates()
    assert r["0.weight"] == 0.0 and all(r[w] > 0 for w in b.weights[1:])


def test_resnet_of_residual_blocks(p_res):
    b = bind(resnet(0.5), p_res)
    assert b.modules == ("0", "1.branch.1", "2.branch.1", "3.branch.1", "4")
    assert b.residuals == (None, "1", "2", "3", None)
    assert b.blocks == ("0", "1", "2", "3", "4")  # f_l is the block's output in a ResNet
    np.testing.assert_array_equal(b.multipliers(), [1.0, 0.5, 0.5, 0.5, 1.0])
    # beta moved into the weights (Residual beta = 1, same skip): std and rates convert
    b1 = bind(resnet(1.0, skip=math.sqrt(0.75)), p_res)
    np.testing.assert_allclose(b1.init_stds()[1:-1], 0.5 * p_res.init_std[1:-1], rtol=1e-14)
    np.testing.assert_allclose(b1.layer_rates()[1:-1], 0.25 * p_res.lr[1:-1], rtol=1e-14)


def test_user_written_blocks(p_res):
    net = UserNet(0.5)
    b = bind(net, p_res)
    assert b.modules == ("inp", "blocks.0.fc", "blocks.1.fc", "blocks.2.fc", "out")
    assert b.blocks == ("inp", "blocks.0", "blocks.1", "blocks.2", "out")
    np.testing.assert_array_equal(b.multipliers(), [1.0, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(b.init_stds(), p_res.abc()["init_std"][:-1].tolist()
                               + [p_res.output_multiplier * p_res.init_std[-1]], rtol=1e-14)


def test_explicit_layers_and_other_parameters(p_mlp):
    """An extra Linear (a head) and a LayerNorm: inference refuses, layers= binds; the LayerNorm's
    parameters get rate 0 and are listed in others."""
    net = mlp(bias=True)
    net.add_module("norm", nn.LayerNorm(K))
    net.add_module("head", nn.Linear(K, K))
    assert_error_names(ValueError, ["L = 5", "6 nn.Linear", "layers="], bind, net, p_mlp)
    names = ["0", "2.weight", "4", "6", "8.weight"]
    b = bind(net, p_mlp, layers=names)
    assert b.modules == ("0", "2", "4", "6", "8")
    assert b.biases == tuple(f"{i}.bias" for i in (0, 2, 4, 6, 8))
    assert set(b.others) == {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    r = b.rates()
    assert set(r) == {n for n, _ in net.named_parameters()}
    for w, bias in zip(b.weights, b.biases):
        assert r[bias] == r[w] > 0  # a bias shares its layer's rate
    assert all(r[n] == 0.0 for n in b.others)


def test_binding_result_protocol(p_mlp, tmp_path):
    b = bind(mlp(bias=True), p_mlp)
    assert isinstance(b, Binding)
    d = b.to_dict()
    json.dumps(d)
    assert "model" not in d and d["weights"] == list(b.weights)
    t = b.to_table()
    assert list(t) == ["layer", "weight", "bias", "multiplier", "init_std", "lr", "lr_adam"]
    assert all(len(v) == L for v in t.values())
    text = b.to_csv(tmp_path / "b.csv").read_text().splitlines()
    assert len(text) == L + 1 and text[1].startswith("1,0.weight,0.bias,")
    assert "\n" not in repr(b) and "Binding(" in repr(b)


def test_errors_name_what_to_pass(p_mlp, p_res):
    assert_error_names(TypeError, ["model", "Module"], bind, "net", p_mlp)
    assert_error_names(TypeError, ["prescription", "prescribe"], bind, mlp(), MLP(L, M))
    # wrong shapes: the family's in_dim differs
    other = prescribe(MLP(L, M, in_dim=D + 1, out_dim=K), "fsc")
    assert_error_names(ValueError, ["layer 1", f"({M}, {D})", f"({M}, {D + 1})", "prescribe"],
                       bind, mlp(), other)
    # two output multipliers
    net = mlp()
    net.add_module("extra", OutputMultiplier(2.0))
    assert_error_names(ValueError, ["2 OutputMultiplier", "multiplier="], bind, net, p_mlp)
    assert bind(net, p_mlp, multiplier="9").multiplier == "9"
    assert bind(net, p_mlp, multiplier=net.extra).multiplier == "extra"
    assert_error_names(ValueError, ["multiplier", "'nope'"], bind, net, p_mlp, multiplier="nope")
    # explicit layers: wrong count, not a Linear, duplicates
    assert_error_names(ValueError, ["L = 5", "4 names"], bind, mlp(), p_mlp, layers=["0", "2", "4", "6"])
    assert_error_names(ValueError, ["layers[1]", "'1'"], bind, mlp(), p_mlp,
                       layers=["0", "1", "4", "6", "8"])
    assert_error_names(ValueError, ["different"], bind, mlp(), p_mlp, layers=["0", "0", "4", "6", "8"])
    assert_error_names(TypeError, ["layers"], bind, mlp(), p_mlp, layers="0")


def test_residual_blocks_must_match_the_family(p_res, p_mlp):
    # skip of another beta (the default skip follows beta)
    assert_error_names(ValueError, ["skip", "0.5", "Residual(branch, beta="], bind, resnet(0.3), p_res)
    # a ResNet prescription on a plain MLP
    assert_error_names(ValueError, ["not inside a residual block", "looks like an MLP"],
                       bind, mlp(), prescribe(ResNet(L, M, 0.5, in_dim=D, out_dim=K, activation="relu"),
                                              "fsc"))
    # an MLP prescription on a ResNet (skip a = 0 for an MLP)
    assert_error_names(ValueError, ["skip", "a = 0.0"], bind, resnet(0.5), p_mlp)
    # a block with two layers
    two = nn.Sequential(nn.Linear(D, M, bias=False),
                        Residual(nn.Sequential(nn.Linear(M, M, bias=False), nn.Linear(M, M, bias=False)),
                                 0.5),
                        Residual(nn.Sequential(nn.Linear(M, M, bias=False)), 0.5),
                        nn.Linear(M, K, bias=False))
    assert_error_names(ValueError, ["holds 2 weight layers"], bind, two, p_res)


@pytest.mark.parametrize("family", [MLP(5, 12, in_dim=D, out_dim=K),
                                    ResNet(6, 12, 0.4, in_dim=D, weights="orthogonal", trained="all"),
                                    ResNet(5, 12, 0.7, skip_scale=0.0, in_dim=D)])
def test_the_twin_is_inferred(family):
    """rmtalign.torch.twin's layout binds without help: its features are the binding's blocks,
    its multipliers the family's, and rates() at the family's own multipliers are p.lr."""
    from rmtalign.torch import twin

    p = prescribe(family, "fsc")
    net = twin(family, seed=0)
    b = bind(net, p)
    assert b.blocks[:-1] == net.features
    L_ = family.depth
    assert b.multiplier == f"layer{L_}.2"
    net.get_submodule(b.multiplier).set_(p.output_multiplier)
    np.testing.assert_allclose(b.multipliers(), p.abc()["multiplier"], rtol=1e-15)
    np.testing.assert_allclose([b.rates()[w] for w in b.weights], p.lr, rtol=1e-14)


def test_measure_with_a_prescription_reproduces_the_sampler():
    """The chain prescription -> bind -> rates -> measure: on the twin of Prescription.family()
    (the prescribed stds and multiplier), measure(lr=p) takes the step sample_bfa takes with
    the explicit rates p.lr."""
    from rmtalign import sample_bfa
    from rmtalign.torch import measure, twin

    p = prescribe(ResNet(6, 12, 0.5, in_dim=D, trained="all"), "fsc")
    net = twin(p.family(), seed=7)
    r = measure(net, net.input(), torch.mean, lr=p, blocks=net.features)
    s = sample_bfa(p.family(), samples=[0], seed=7)
    np.testing.assert_allclose(r.cos, s.cos[0], rtol=1e-12)  # measured: 4e-16
    np.testing.assert_allclose(r.fdot_norm, s.fdot_norm[0], rtol=1e-12)
    np.testing.assert_allclose(r.loss_decay, s.loss_decay[0], rtol=1e-12)
