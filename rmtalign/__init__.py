"""rmtalign: random-matrix numerics of the backward-feature angle in deep networks.

Chizat & Netrapalli (arXiv:2311.18718): the alignment between feature updates and the backward
pass predicts, measures and controls feature learning. Quick start::

    import rmtalign as ra
    res = ra.sample_bfa(ra.MLP(depth=64, width=512), samples=8, seed=0)
    res.mean("cos"), res.sem("cos")          # per layer v = res.layers
    ra.theory.bfa(res.family).cos            # the width limit

Submodules are imported lazily so that ``import rmtalign`` stays cheap: nothing is compiled and
numba's configuration is untouched until a kernel first runs (:mod:`rmtalign._runtime`).
"""
import warnings
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "MLP": "families", "ResNet": "families", "Family": "families",
    "Activation": "rules", "learning_rates": "rules",
    "sample_bfa": "sampling", "sample_bfk": "sampling", "sample_jacobian": "sampling",
    "width_limit": "sampling", "sample_network": "sampling", "SampledBFA": "sampling",
    "SampledBFK": "sampling", "SampledJacobian": "sampling", "WidthLimit": "sampling",
    "point_seed": "seeds",
    "bfa_cos": "alignment", "cos_between": "alignment", "cos_from_spectrum": "alignment",
    "cos_from_kernel": "alignment", "spectral_moments": "alignment", "spectral_bounds": "alignment",
    "feature_speed": "alignment", "sensitivity": "alignment", "angle_deg": "alignment",
    "prescribe": "prescriptions", "Prescription": "prescriptions",
}
_MODULES = ("alignment", "families", "figures", "plotting", "prescriptions", "results", "rules",
            "sampling", "seeds", "sweep", "theory", "torch")
_RENAMED = {"BFAResult": "SampledBFA", "BFKResult": "SampledBFK", "JacobianResult": "SampledJacobian"}
__all__ = sorted(_EXPORTS) + list(_MODULES) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _MODULES:
        return import_module(f".{name}", __name__)
    if name in _RENAMED:
        warnings.warn(f"rmtalign.{name} is renamed {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return getattr(import_module(".sampling", __name__), _RENAMED[name])
    raise AttributeError(f"module 'rmtalign' has no attribute {name!r}")


def __dir__():
    return __all__
