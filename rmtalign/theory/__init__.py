"""Infinite-width theory (free probability): BFA curves, BFK and Jacobian spectra, depth limits.

Public functions: :func:`bfa`, :func:`bfk_moments`, :func:`bfk_density`, :func:`jacobian_moments`,
:func:`jacobian_density`, :func:`depth_limit`, :func:`phase_diagram`, :func:`layer_law`,
:func:`mean_field`; the free-probability core lives in :mod:`rmtalign.theory.free`.
"""
from .signal import MeanField, mean_field, learning_rates, activation_gain
from .layer import LayerLaw, layer_law
from .bfk import (BFAResult, Density, bfa, bfk_moments, bfk_density, jacobian_moments,
                  jacobian_density)
from .depth import DepthLimit, depth_limit, phase_diagram, mlp_bfa_exact
from . import free

__all__ = ["MeanField", "mean_field", "learning_rates", "activation_gain", "LayerLaw", "layer_law",
           "BFAResult", "Density", "bfa", "bfk_moments", "bfk_density", "jacobian_moments",
           "jacobian_density", "DepthLimit", "depth_limit", "phase_diagram", "mlp_bfa_exact", "free"]
