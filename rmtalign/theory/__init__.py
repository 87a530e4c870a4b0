"""Infinite-width theory (free probability): BFA curves, BFK and Jacobian spectra, depth limits.

Public functions: :func:`bfa`, :func:`bfk_moments`, :func:`bfk_density`, :func:`jacobian_moments`,
:func:`jacobian_density`, :func:`depth_limit`, :func:`phase_diagram`, :func:`layer_law`,
:func:`mean_field`, and at finite width :func:`finite_width`; :func:`bfa` with ``inputs=`` or
``gram=`` gives the BFA of a batch (:class:`BatchTheoryBFA`, :mod:`rmtalign.theory.batch`). The
free-probability core lives in :mod:`rmtalign.theory.free`. Every result follows the protocol of :mod:`rmtalign.results`;
``mode="exact"``/``"free"`` chooses the network's own masks or the free model, as in the samplers.
"""
import warnings

from .signal import MeanField, mean_field
from .layer import LayerLaw, layer_law
from .bfk import (TheoryBFA, Density, bfa, bfk_moments, bfk_density, jacobian_moments,
                  jacobian_density)
from .depth import DepthLimit, PhaseDiagram, depth_limit, phase_diagram, mlp_bfa_exact
from .finite import FiniteWidthBFA, finite_width
from .batch import BatchTheoryBFA
from . import free

__all__ = ["MeanField", "mean_field", "LayerLaw", "layer_law", "TheoryBFA", "Density", "bfa",
           "bfk_moments", "bfk_density", "jacobian_moments", "jacobian_density", "DepthLimit",
           "PhaseDiagram", "depth_limit", "phase_diagram", "mlp_bfa_exact", "FiniteWidthBFA",
           "finite_width", "BatchTheoryBFA", "free"]


def _activation_gain(activation):
    from ..rules import activation as _record

    return float(_record(activation).gain)


def __getattr__(name):
    from .. import rules

    moved = {"BFAResult": (TheoryBFA, "rmtalign.theory.TheoryBFA"),
             "learning_rates": (rules.learning_rates, "rmtalign.rules.learning_rates"),
             "activation_gain": (_activation_gain, "rmtalign.rules.activation(name).gain")}
    if name in moved:
        obj, new = moved[name]
        warnings.warn(f"rmtalign.theory.{name} is now {new}", DeprecationWarning, stacklevel=2)
        return obj
    raise AttributeError(f"module 'rmtalign.theory' has no attribute {name!r}")
