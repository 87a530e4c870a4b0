import math

import numpy as np
import pytest

from rmtalign import MLP, ResNet
from conftest import assert_error_names


def test_defaults_follow_the_paper():
    f = MLP(10, 64)
    assert f.skip == 0.0 and f.branch_scale == 1.0 and f.readout == "relu"
    np.testing.assert_allclose(f.stds, [1 / math.sqrt(10)] + [math.sqrt(2 / 64)] * 8 + [1 / 8])
    assert f.shapes[0] == (64, 10) and f.shapes[-1] == (1, 64)
    assert f.trained_mask.tolist() == [False] + [True] * 9
    lin = MLP(10, 64, activation="linear")
    assert lin.stds[1] == pytest.approx(1 / 8)
    r = ResNet(10, 64, 0.6)
    assert r.skip == pytest.approx(0.8) and r.readout == "linear"
    assert r.branch_scales[0] == r.branch_scales[-1] == 1.0 and r.branch_scales[1] == 0.6


def test_scaled_resnet():
    r = ResNet.scaled(100, 32, c=2.0)
    assert r.branch_scale == pytest.approx(0.2)
    assert ResNet.scaled(100, 32, c=1.0, alpha=1.0).branch_scale == pytest.approx(0.01)
    with pytest.raises(ValueError, match="exceeds 1"):
        ResNet.scaled(4, 32, c=4.0)
    assert ResNet.scaled(4, 32, c=4.0, skip_scale=1.0).branch_scale == pytest.approx(2.0)


def test_frozen_hashable_replace():
    f = ResNet(10, 32, 0.3)
    assert hash(f) == hash(ResNet(10, 32, 0.3)) and f == ResNet(10, 32, 0.3)
    with pytest.raises(AttributeError):
        f.width = 3
    g = f.replace(width=64)
    assert g.width == 64 and g.branch_scale == 0.3
    assert {f, g, f} == {f, g}
    assert MLP(5, 4, trained=[3, 2, 2]).trained == (2, 3)
    assert f.to_dict()["family"] == "ResNet"


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(depth=2, width=8), ValueError, ["depth", "2", ">= 3"]),
        (dict(depth=5, width=0), ValueError, ["width", "0", ">= 1"]),
        (dict(depth=5.0, width=8), TypeError, ["depth", "integer"]),
        (dict(depth=True, width=8), TypeError, ["depth"]),
        (dict(depth=5, width=8, activation="tanh"), ValueError, ["activation", "tanh", "relu"]),
        (dict(depth=5, width=8, weights="uniform"), ValueError, ["weights", "uniform", "orthogonal"]),
        (dict(depth=5, width=8, lr_rule="adam"), ValueError, ["lr_rule", "adam", "balanced"]),
        (dict(depth=5, width=8, input="zeros"), ValueError, ["input", "zeros", "fixed"]),
        (dict(depth=5, width=8, trained="none"), ValueError, ["trained", "none", "all"]),
        (dict(depth=5, width=8, trained=[0]), ValueError, ["trained layer", "0"]),
        (dict(depth=5, width=8, trained=[6]), ValueError, ["trained layer", "6", "depth=5"]),
        (dict(depth=5, width=8, trained=[]), ValueError, ["trained", "empty"]),
        (dict(depth=5, width=8, hidden_std=float("nan")), ValueError, ["hidden_std", "nan", "finite"]),
        (dict(depth=5, width=8, input_std=float("inf")), ValueError, ["input_std", "inf"]),
        (dict(depth=5, width=8, output_std=0.0), ValueError, ["output_std", "0.0", "> 0"]),
        (dict(depth=5, width=8, hidden_std="big"), TypeError, ["hidden_std", "big"]),
    ],
)
def test_validation_errors_name_argument_value_and_allowed(kwargs, exc, words):
    assert_error_names(exc, words, MLP, **kwargs)


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((5, 8, 1.5), {}, ["branch_scale", "1.5", "<= 1", "skip_scale"]),
        ((5, 8, -0.1), {}, ["branch_scale", "-0.1", ">= 0"]),
        ((5, 8, float("nan")), {}, ["branch_scale", "nan"]),
        ((5, 8, 0.5), {"skip_scale": float("inf")}, ["skip_scale", "inf"]),
    ],
)
def test_resnet_validation(args, kwargs, words):
    assert_error_names(ValueError, words, ResNet, *args, **kwargs)


def test_skip_scale_lifts_the_branch_bound():
    r = ResNet(5, 8, 1.5, skip_scale=1.0)
    assert r.branch_scale == 1.5 and r.skip == 1.0


# -- output multiplier and explicit learning rates (the fields prescriptions need) -------------
_KEYS_BEFORE_THE_NEW_FIELDS = {"family", "depth", "width", "in_dim", "out_dim", "activation",
                               "weights", "hidden_std", "input_std", "output_std", "trained",
                               "lr_rule", "input"}


def test_new_fields_are_left_out_of_to_dict_at_their_defaults():
    # to_dict keys the content seeds (rmtalign.seeds.point_seed): old families keep their dicts
    assert set(MLP(5, 8).to_dict()) == _KEYS_BEFORE_THE_NEW_FIELDS
    assert set(ResNet(5, 8, 0.5).to_dict()) == _KEYS_BEFORE_THE_NEW_FIELDS | {"branch_scale", "skip_scale"}
    f = MLP(4, 8, output_multiplier=0.5, lr_values=[0, 1, 2, 3])
    d = f.to_dict()
    assert d["output_multiplier"] == 0.5 and d["lr_values"] == [0.0, 1.0, 2.0, 3.0]
    assert f.lr_values == (0.0, 1.0, 2.0, 3.0) and hash(f) == hash(MLP(4, 8, output_multiplier=0.5,
                                                                      lr_values=(0, 1, 2, 3.0)))
    # lr_rule says what is in effect: code that reads it is not misled by an overridden rule
    assert f.lr_rule == "explicit" and d["lr_rule"] == "explicit"
    assert f == MLP(4, 8, output_multiplier=0.5, lr_values=[0, 1, 2, 3], lr_rule="explicit")
    assert f.replace(lr_values=None, lr_rule="balanced") == MLP(4, 8, output_multiplier=0.5)
    assert f.replace(lr_values=[0, 2, 2, 2]).lr_values == (0.0, 2.0, 2.0, 2.0)
    for fam in (f, MLP(5, 8, trained=[2, 3]), ResNet(6, 8, 0.3, skip_scale=0.5, lr_values=[0] + [1] * 5)):
        assert MLP.from_dict(fam.to_dict()) == fam


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(output_multiplier=0.0), ValueError, ["output_multiplier", "0.0", "> 0"]),
        (dict(output_multiplier=float("nan")), ValueError, ["output_multiplier", "nan", "finite"]),
        (dict(lr_values=[1.0, 1.0]), ValueError, ["lr_values", "depth=4", "got 2"]),
        (dict(lr_values=1.0), TypeError, ["lr_values", "sequence", "1.0"]),
        (dict(lr_values=[0, 1, -1, 1]), ValueError, ["lr_values[2]", "-1", ">= 0"]),
        (dict(lr_values=[1, 1, 1, 1]), ValueError, ["frozen", "layer 1", "1.0"]),
        (dict(lr_values=[0, 1, 1, 1], lr_rule="uniform"), ValueError, ["lr_values", "lr_rule", "uniform"]),
        (dict(lr_rule="explicit"), ValueError, ["lr_rule='explicit'", "lr_values", "'balanced'"]),
    ],
)
def test_new_fields_validation(kwargs, exc, words):
    assert_error_names(exc, words, MLP, 4, 8, **kwargs)


def test_from_dict_names_what_it_needs():
    with pytest.raises(ValueError, match="'family'.*'MLP', 'ResNet'.*CNN"):
        MLP.from_dict({"family": "CNN", "depth": 4})


def test_output_multiplier_is_the_readout_scale():
    """alpha W_L with W_L of std s is W_L of std alpha s for the passes (b, fdot, cos, loss decay);
    only W_L's own gradient differs (by alpha^2: it is taken w.r.t. the unscaled W_L)."""
    import rmtalign as ra

    alpha, s = 0.3, 0.2
    for scaled, split in [(MLP(6, 24, output_std=alpha * s), MLP(6, 24, output_std=s, output_multiplier=alpha)),
                          (ResNet(6, 24, 0.5, output_std=alpha * s, trained="all"),
                           ResNet(6, 24, 0.5, output_std=s, output_multiplier=alpha, trained="all"))]:
        for mode in ("exact", "free"):
            a = ra.sample_bfa(scaled, samples=2, seed=1, mode=mode)
            b = ra.sample_bfa(split, samples=2, seed=1, mode=mode)
            for q in ("cos", "b_norm", "fdot_norm", "loss_decay"):
                np.testing.assert_allclose(getattr(b, q), getattr(a, q), rtol=1e-12, err_msg=q)
            np.testing.assert_allclose(b.grad_sq[:, :-1], a.grad_sq[:, :-1], rtol=1e-12)
            np.testing.assert_allclose(b.grad_sq[:, -1], alpha**2 * a.grad_sq[:, -1], rtol=1e-12)
        ma, mb = ra.theory.mean_field(scaled), ra.theory.mean_field(split)
        np.testing.assert_allclose(mb.backward_sq, ma.backward_sq, rtol=1e-14)
        np.testing.assert_allclose(mb.grad_sq[-1], alpha**2 * ma.grad_sq[-1], rtol=1e-14)
        np.testing.assert_allclose(mb.lr * mb.grad_sq, ma.lr * ma.grad_sq, rtol=1e-14)


def test_explicit_rates_are_used_as_given():
    import rmtalign as ra

    rule = MLP(6, 24, trained="all")
    eta = ra.theory.mean_field(rule).lr
    fixed = rule.replace(lr_values=eta)
    np.testing.assert_array_equal(ra.theory.mean_field(fixed).lr, eta)
    np.testing.assert_array_equal(ra.theory.mean_field(fixed).kernel_weights,
                                  ra.theory.mean_field(rule).kernel_weights)
    for mode in ("free", "exact"):
        r = ra.sample_bfa(fixed, samples=3, seed=2, mode=mode)
        # (free mode averages the rates over probes: equal to round-off)
        np.testing.assert_allclose(r.lr, np.broadcast_to(eta, r.lr.shape), rtol=1e-14, atol=0)
    # the loss decay is sum eta_l |grad_l|^2 with the draw's own gradients (exact mode)
    np.testing.assert_allclose(r.loss_decay[:, -1], (r.lr * r.grad_sq)[:, :-1].sum(1), rtol=1e-12)
