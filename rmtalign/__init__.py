"""rmtalign: random-matrix numerics of the backward-feature angle in deep networks.

Chizat & Netrapalli (arXiv:2311.18718): the alignment between feature updates and the backward
pass predicts, measures and controls feature learning. Quick start::

    import rmtalign as ra
    res = ra.sample_bfa(ra.MLP(depth=64, width=512), samples=8, seed=0)
    res.mean("cos"), res.sem("cos")

Submodules are imported lazily so that ``import rmtalign`` stays cheap (no numba compilation).
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "MLP": "families", "ResNet": "families", "Family": "families",
    "sample_bfa": "sampling", "sample_bfk": "sampling", "sample_jacobian": "sampling",
    "width_limit": "sampling", "BFAResult": "sampling", "BFKResult": "sampling",
    "JacobianResult": "sampling", "WidthLimit": "sampling",
    "bfa_cos": "alignment", "cos_between": "alignment", "cos_from_spectrum": "alignment",
    "cos_from_kernel": "alignment", "spectral_moments": "alignment", "spectral_bounds": "alignment",
    "feature_speed": "alignment", "sensitivity": "alignment",
}
__all__ = sorted(_EXPORTS) + ["alignment", "sampling", "families", "theory", "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in ("alignment", "sampling", "families", "theory"):
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rmtalign' has no attribute {name!r}")


def __dir__():
    return __all__
