"""Shared fixtures, and the one table of families the tests run over (the scipy.stats habit).

``FAMILIES`` (name -> family) holds the small families that every generic property runs over:
the samplers' properties and the identities of ``rmtalign.alignment`` (through the ``family``
fixture) and the oracles' identities (``test_oracles.py``). Add a family here and all of them
check it.

``FAMILIES_BY_DEPTH`` (name -> ``depth -> family``) holds the width-limit laws the theory tests
need at several depths: the density solver's checks run over every entry, and the
theory-vs-Monte-Carlo tests take their laws from it by name and depth (their seeds stay in the
tests). An entry's name and arguments are part of what a statistical test samples: change one and
that test compares other numbers.

Test files import the tables with ``from conftest import FAMILIES`` (``tests/`` is on the path,
``pythonpath = tests`` in setup.cfg).
"""
import pytest

from rmtalign import MLP, ResNet

FAMILIES = {
    "mlp-relu": MLP(6, 24),
    "mlp-linear": MLP(5, 20, activation="linear"),
    "mlp-all-uniform": MLP(6, 24, trained="all", lr_rule="uniform"),
    "resnet-relu": ResNet(7, 24, 0.4),
    "resnet-linear-orth": ResNet(6, 20, 0.5, activation="linear", weights="orthogonal"),
    "resnet-skip": ResNet(6, 16, 1.3, skip_scale=0.5, trained=[2, 3, 5], out_dim=3),
    "mlp-random-input": MLP(5, 16, input="random", in_dim=4),
    "mlp-orth-relu": MLP(6, 20, weights="orthogonal"),
    "resnet-skip0": ResNet(6, 20, 0.7, skip_scale=0.0),  # no skip: the ReLU-MLP Jacobian chain
    # tiny ones (m <= 16), the oracles' table before the merge
    "tiny-mlp-relu": MLP(6, 16),
    "tiny-mlp-linear-out3": MLP(5, 12, in_dim=7, out_dim=3, activation="linear"),
    "tiny-mlp-all-uniform": MLP(6, 16, trained="all", lr_rule="uniform"),
    "tiny-resnet-relu": ResNet(7, 16, 0.5),
    "tiny-resnet-linear-all": ResNet(6, 12, 0.3, activation="linear", trained="all"),
    "tiny-resnet-skip": ResNet(6, 16, 0.8, skip_scale=1.1, out_dim=2, trained=(2, 4, 6)),
    "tiny-resnet-random-input": ResNet(5, 10, 1.0, input="random", in_dim=4),
}

FAMILIES_BY_DEPTH = {
    "mlp": lambda L: MLP(L, 64),
    "mlp_orth": lambda L: MLP(L, 64, weights="orthogonal"),
    "mlp_lin": lambda L: MLP(L, 64, activation="linear"),
    "res": lambda L: ResNet.scaled(L, 64, 1.0),
    "res_orth": lambda L: ResNet.scaled(L, 64, 1.0, weights="orthogonal"),
    "res_lin": lambda L: ResNet.scaled(L, 64, 1.0, activation="linear"),
    "res_lin_orth": lambda L: ResNet.scaled(L, 64, 1.0, activation="linear", weights="orthogonal"),
    "res_c2": lambda L: ResNet.scaled(L, 64, 2.0),
    "res_alpha0.25_uniform": lambda L: ResNet.scaled(L, 64, 1.0, alpha=0.25, lr_rule="uniform"),
}


def assert_error_names(exc, words, call, *args, **kwargs):
    """``call(*args, **kwargs)`` raises ``exc`` whose message contains every one of ``words`` (the
    argument, the value, what is allowed)."""
    with pytest.raises(exc) as info:
        call(*args, **kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]

