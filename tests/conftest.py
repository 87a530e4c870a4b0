import numpy as np
import pytest

from rmtalign import MLP, ResNet

# A table of small families that generic properties run over (the scipy.stats habit).
FAMILIES = {
    "mlp-relu": MLP(6, 24),
    "mlp-linear": MLP(5, 20, activation="linear"),
    "mlp-all-uniform": MLP(6, 24, trained="all", lr_rule="uniform"),
    "resnet-relu": ResNet(7, 24, 0.4),
    "resnet-linear-orth": ResNet(6, 20, 0.5, activation="linear", weights="orthogonal"),
    "resnet-skip": ResNet(6, 16, 1.3, skip_scale=0.5, trained=[2, 3, 5], out_dim=3),
    "mlp-random-input": MLP(5, 16, input="random", in_dim=4),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)
