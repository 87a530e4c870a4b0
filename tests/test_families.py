import math

import numpy as np
import pytest

from rmtalign import MLP, ResNet


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
    with pytest.raises(exc) as info:
        MLP(**kwargs)
    for w in words:
        assert w in str(info.value)


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
    with pytest.raises(ValueError) as info:
        ResNet(*args, **kwargs)
    for w in words:
        assert w in str(info.value)


def test_skip_scale_lifts_the_branch_bound():
    r = ResNet(5, 8, 1.5, skip_scale=1.0)
    assert r.branch_scale == 1.5 and r.skip == 1.0
