"""Argument checks shared by every public function.

Each check names the argument, the value it got and what is allowed, and returns the value in
its canonical type (a Python ``int`` or ``float``), so callers can write ``x = check_int(...)``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

MODES = ("exact", "free")


def check_int(name, value, minimum=None, maximum=None):
    """An integer (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return int(value)


def check_real(name, value, *, low=None, high=None, low_open=False, allow_none=False):
    """A finite real number (not a bool) in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return value


def check_choice(name, value, allowed):
    """One of ``allowed`` (compared with ``in``)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_mode(mode):
    """``"exact"`` (the network's own masks) or ``"free"`` (the random-matrix model)."""
    return check_choice("mode", mode, MODES)


def check_family(family):
    """An :class:`rmtalign.MLP` or :class:`rmtalign.ResNet`."""
    from .families import Family

    if not isinstance(family, Family):
        raise TypeError(f"family must be an rmtalign MLP or ResNet, got {family!r} "
                        f"({type(family).__name__})")
    return family


def check_layer(name, value, lo, hi, depth):
    """One layer index in ``[lo, hi]`` of a network of the given depth."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}] (depth={depth}), got {value!r}")
    return int(value)


def check_layers(name, layers, lo, hi, depth):
    """Sorted unique layer indices in ``[lo, hi]``; ``None`` means all of them."""
    if layers is None:
        return np.arange(lo, hi + 1)
    arr = np.atleast_1d(np.asarray(layers))
    if arr.size == 0 or arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers in [{lo}, {hi}] (depth={depth}), got {layers!r}")
    if arr.min() < lo or arr.max() > hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}] (depth={depth}), got {layers!r}")
    return np.unique(arr)


def renamed_keyword(old_name, old_value, new_name, new_value, default):
    """The value of a keyword renamed from ``old_name`` to ``new_name``: the old one still works,
    with a DeprecationWarning (``old_value is None`` means it was not given)."""
    if old_value is None:
        return new_value
    import warnings

    warnings.warn(f"the keyword {old_name!r} is deprecated: use {new_name}=", DeprecationWarning,
                  stacklevel=3)
    if new_value != default:
        raise TypeError(f"give {new_name} only ({old_name} is its deprecated old name)")
    return old_value
