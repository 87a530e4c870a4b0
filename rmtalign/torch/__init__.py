"""The bridge to real PyTorch networks (needs the ``torch`` extra).

* :func:`measure`: the backward-feature angle, feature speeds, loss decay and sensitivity of one
  SGD step of any ``nn.Module``, per block, leaving the model untouched;
* :func:`twin`: the ``nn.Module`` whose weights (and, with ``inputs=``, the batch) are a draw
  of :func:`rmtalign.sample_network`;
* :func:`bind`, :func:`init_`, :func:`param_groups`: apply a :class:`rmtalign.Prescription` to a
  model (init scales, per-layer learning rates as plain ``torch.optim`` groups);
* :class:`OutputMultiplier`, :class:`Residual`: the output multiplier and the residual block of
  model (12) as modules whose scalars are buffers (they survive ``state_dict``, ``deepcopy`` and
  ``torch.compile``);
* :class:`FSC`: an optimizer wrapper that keeps the learning rates on the scale-invariant rule of
  Eq. (8) throughout training.
"""
from importlib import import_module

_EXPORTS = {
    "measure": "_measure", "Measurement": "_measure",
    "twin": "_twin",
    "bind": "_bind", "Binding": "_bind",
    "init_": "_apply", "param_groups": "_apply",
    "OutputMultiplier": "modules", "Residual": "modules",
    "FSC": "_fsc",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        try:
            module = import_module(f".{_EXPORTS[name]}", __name__)
        except ModuleNotFoundError as err:
            if err.name != "torch":
                raise
            raise ModuleNotFoundError(
                f"rmtalign.torch.{name} needs PyTorch, which is not installed: pip install "
                "torch (the CPU build: pip install torch --index-url "
                "https://download.pytorch.org/whl/cpu), or the extra rmtalign[torch]",
                name="torch") from None
        return getattr(module, name)
    raise AttributeError(f"module 'rmtalign.torch' has no attribute {name!r}")


def __dir__():
    return __all__
