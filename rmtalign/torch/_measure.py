"""The backward-feature angle of one SGD step of any ``nn.Module``, per block.

:func:`measure` runs one forward and backward pass (the gradients of the trainable parameters and
the backward vectors ``b_v = dL/df_v`` at the block outputs, by ``torch.autograd.grad``) and one
forward-mode pass (the feature velocities ``fdot_v`` of the SGD step ``w_dot = -eta grad``, all
blocks at once), on cloned buffers and with the torch RNG put back: the model is left
bit-identical.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call

from .. import alignment
from .._validate import check_choice, check_real
from ..results import Result
from ..rules import learning_rates
from .modules import Residual

__all__ = ["measure", "Measurement", "MODES"]

MODES = ("jvp", "difference")

# The default blocks: what a user calls a layer of an MLP or a CNN.
_LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


@dataclass(repr=False)
class Measurement(Result):
    """The BFA and feature speeds of one SGD step, per block ``layers = 1..n`` in forward order.

    Per block (arrays over ``layers``; ``names`` are the blocks' qualified module names and
    ``size`` the length ``m_v`` of their flattened output, the whole batch in one vector):
    ``cos`` (``cos theta_v = -b_v . fdot_v / (|b_v| |fdot_v|)``, NaN where the feature does not
    move or ``b_v = 0``; a ``RuntimeWarning`` names the blocks with trained parameters upstream
    where ``b_v`` or ``fdot_v`` is exactly 0, i.e. where the signal vanished), ``angle_deg``, ``b_norm`` (``|b_v|``, ``b_v = dL/df_v``), ``fdot_norm``, ``loss_decay``
    (``Lambda_v = sum eta_p |grad_p|^2`` over the trained parameters upstream of the block, i.e.
    those its output depends on) and ``sensitivity`` (Eq. 4: ``|fdot_v|_rms / Lambda_v``, NaN where
    the feature does not move).

    Per trained parameter (arrays over ``params``, the parameter names): ``lr`` (the SGD rate
    ``eta_p`` of the step) and ``grad_sq`` (``|grad_p L|^2``). ``loss`` is the loss at the current
    parameters, ``mode`` and ``step`` how ``fdot`` was measured (``step`` is None in ``"jvp"`` mode).
    ``vectors`` (with ``keep_vectors=True``) holds lists of float64 arrays ``"f"``, ``"b"``,
    ``"fdot"``, one per block.

    Where the block's output is a cut of the network (every path from an upstream parameter to the
    loss goes through it: a layer of a sequential network, the output of a residual block), the
    feature speed formula (Thm 2.1) holds: ``-b_v . fdot_v = loss_decay``, so
    ``fdot_norm = loss_decay / (cos b_norm)``. Elsewhere (e.g. a layer inside a residual branch)
    part of the upstream parameters' effect bypasses the block, and ``-b_v . fdot_v`` is only
    the part that flows through it.
    """

    mode: str
    step: float | None
    loss: float
    layers: np.ndarray
    names: tuple
    size: np.ndarray = field(repr=False)
    cos: np.ndarray
    b_norm: np.ndarray = field(repr=False)
    fdot_norm: np.ndarray = field(repr=False)
    loss_decay: np.ndarray = field(repr=False)
    sensitivity: np.ndarray = field(repr=False)
    params: tuple
    lr: np.ndarray
    grad_sq: np.ndarray = field(repr=False)
    vectors: dict = field(default_factory=dict, repr=False)

    _bulky = ("vectors",)

    @property
    def angle_deg(self) -> np.ndarray:
        """``theta_v`` in degrees."""
        return alignment.angle_deg(self.cos)

    @property
    def total_loss_decay(self) -> float:
        """``-dL/dt = sum_p eta_p |grad_p|^2`` over every trained parameter."""
        return float(np.sum(self.lr * self.grad_sq))

    def rates(self) -> dict:
        """``{parameter name: SGD rate}`` of the step (a valid ``lr`` for :func:`measure`)."""
        return dict(zip(self.params, self.lr.tolist()))

    def _table(self):
        return {"layer": self.layers, "name": np.asarray(self.names, dtype=object),
                "size": self.size, "cos": self.cos, "angle_deg": self.angle_deg,
                "b_norm": self.b_norm, "fdot_norm": self.fdot_norm, "loss_decay": self.loss_decay,
                "sensitivity": self.sensitivity}


def measure(model, inputs, loss_fn, lr=None, blocks=None, *, mode="jvp", step=1e-3,
            keep_vectors=False) -> Measurement:
    """Measure the backward-feature angle of one SGD step of ``model``, per block.

    Parameters
    ----------
    model : torch.nn.Module
        Any module. Its parameters with ``requires_grad=True`` are the trained ones; a model
        with none is an error. Left bit-identical: parameters, their ``.grad``, buffers (e.g.
        BatchNorm's running statistics), train/eval mode and the torch RNG state.
    inputs : torch.Tensor, tuple, list or dict
        The batch: ``model(inputs)`` for a tensor, ``model(*inputs)`` for a tuple or list,
        ``model(**inputs)`` for a dict.
    loss_fn : callable
        ``loss_fn(output) -> scalar tensor``, e.g. ``torch.mean`` (the samplers' linear loss) or
        ``lambda out: F.cross_entropy(out, targets)``.
    lr : None, float, torch.optim.Optimizer, mapping or rmtalign.Prescription
        The SGD rates ``eta_p`` of the step. None: the balanced rule, Eq. (8), on the current
        gradients, with one block per module that holds trained parameters (a ``Linear``'s weight
        and bias share one rate): ``eta = 1/(n |grad|^2)`` over the ``n`` modules with a non-zero
        gradient, so each contributes ``1/n`` of a unit loss decay. A float: one rate for every
        trained parameter. An optimizer: the ``lr`` of each parameter's group (used as SGD rates
        whatever the optimizer's own update rule is). A mapping ``{parameter name: rate}``:
        parameters it leaves out are not moved. A :class:`rmtalign.Prescription`: its rates,
        bound to the model by :func:`rmtalign.torch.bind` (or a :class:`rmtalign.torch.Binding`
        of this model, e.g. bound with explicit ``layers=``): its :meth:`~rmtalign.torch.Binding.rates`.
    blocks : None or sequence of modules or qualified names
        Where the features ``f_v`` are taken: the outputs of these modules (each must return one
        floating-point tensor). None: every ``nn.Linear`` and ``nn.Conv*d`` that the forward pass
        calls, the last one included, except that a :class:`rmtalign.torch.Residual` counts as
        one block (its output ``f_l = a f_{l-1} + beta branch(f_{l-1})`` is the feature of model
        (12)) in place of the layers inside its branch. Blocks are numbered in the order the
        forward pass first calls them; a module called several times contributes all its outputs,
        concatenated in call order, as one feature.
    mode : {"jvp", "difference"}
        ``"jvp"``: ``fdot_v`` is the exact first-order velocity, by one forward-mode pass with
        tangent ``-eta_p grad_p`` on every parameter. ``"difference"``: the paper's one-step
        measurement, ``fdot_v = (f_v(w - step eta grad) - f_v(w)) / step``, from a second forward
        pass on a moved copy of the parameters; its error is ``O(step)`` relative (the second
        order of the step) plus round-off ``~eps |f_v| / step``. ``step=1`` is one real SGD step
        with rates ``lr``.
    step : float
        The master step ``delta t > 0`` of ``"difference"`` mode (ignored in ``"jvp"`` mode).
    keep_vectors : bool
        Also return ``f_v``, ``b_v``, ``fdot_v`` (float64 numpy arrays) in ``result.vectors``.

    Returns
    -------
    Measurement

    Notes
    -----
    A batch is flattened into one feature vector per block (the paper's convention): ``cos`` is
    one cosine between two vectors of ``size = batch x features`` entries, not a mean over
    samples. Both passes see the same dropout masks (the RNG state of the CPU and of the CUDA
    devices in use is rewound before the second pass and restored at the end). Cost: one forward+backward pass and one forward-mode pass (about
    two training steps), plus a copy of each block's output.

    The forward-mode pass uses ``torch.autograd.forward_ad`` (the engine behind
    ``torch.func.jvp``): ``torch.func.jvp`` refuses functions that update buffers in place, as
    BatchNorm does with its running statistics in train mode. The first forward-mode pass of a
    process loads torch's forward-AD decompositions (torch 2.13 also imports ``torch._dynamo`` on
    the first product of a dual tensor by a scalar): a one-time cost of a few seconds.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    args, kwargs = _split_inputs(inputs)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable output -> scalar tensor (e.g. torch.mean), "
                        f"got {loss_fn!r} ({type(loss_fn).__name__})")
    check_choice("mode", mode, MODES)
    step = check_real("step", step, low=0.0, low_open=True)
    if not isinstance(keep_vectors, bool):
        raise TypeError(f"keep_vectors must be True or False, got {keep_vectors!r}")
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trained:
        raise ValueError("frozen model: no parameter of the model has requires_grad=True, so an SGD "
                         "step moves nothing; unfreeze the layers to train (p.requires_grad_(True))")
    names, modules, listed = _resolve_blocks(model, blocks)
    given = None if lr is None else _given_rates(model, trained, lr)

    buffers = dict(model.named_buffers())
    rng = _RNGState(_cuda_devices(model, args, kwargs))
    capture = _Capture(names, modules)
    try:
        # -- forward + backward: gradients, b_v, and which parameters each block depends on
        capture.start("grad")
        with torch.enable_grad():
            out = functional_call(model, _cloned(buffers), args, kwargs)
            loss = _scalar_loss(loss_fn(out))
        order = _reached(capture, listed)
        feats = [capture.outputs[k] for k in order]
        capture.sizes = {k: [t.numel() for t in capture.outputs[k]] for k in order}
        upstream = _upstream_params(feats, [p for _, p in trained])
        flat = [t for ts in feats for t in ts]
        grads = torch.autograd.grad(loss, [p for _, p in trained] + flat, allow_unused=True,
                                    materialize_grads=True)
        del out
        pgrads, bgrads = grads[: len(trained)], grads[len(trained):]
        grad_sq = _to_numpy(torch.stack([_norm(g).to(torch.float64) ** 2 for g in pgrads]))
        eta = _balanced_rates(trained, grad_sq) if given is None else given
        f = [_flat([t.detach() for t in ts]) for ts in feats]
        b = _split_cat(bgrads, [len(ts) for ts in feats])
        moved = [(n, p.detach(), g, e) for (n, p), g, e in zip(trained, pgrads, eta) if e > 0]
        del feats, flat, grads, bgrads

        # -- the step's feature velocities, with the same dropout masks as above
        rng.restore()
        with torch.no_grad():
            if mode == "jvp":
                capture.start("tangent")
                with forward_ad.dual_level():
                    duals = {n: forward_ad.make_dual(p, g.mul(-e)) for n, p, g, e in moved}
                    functional_call(model, {**duals, **_cloned(buffers)}, args, kwargs)
                    fdot = _gather(capture, order, f)
            else:
                capture.start("value")
                stepped = {n: p.add(g, alpha=-step * e) for n, p, g, e in moved}
                functional_call(model, {**stepped, **_cloned(buffers)}, args, kwargs)
                fdot = [(f1 - f0) / step for f1, f0 in zip(_gather(capture, order, f), f)]
    finally:
        capture.remove()
        rng.restore()

    stats = _to_numpy(torch.stack([torch.stack([_norm(bv), _norm(fv), -_dot(bv, fv)])
                                   .to(torch.float64) for bv, fv in zip(b, fdot)]))
    b_norm, fdot_norm, inner = stats.T.copy()
    lr_arr = np.asarray(eta, dtype=np.float64)
    decay = np.array([np.sum(lr_arr[mask] * grad_sq[mask]) for mask in upstream], dtype=np.float64)
    size = np.array([v.numel() for v in f], dtype=np.int64)
    moving = (fdot_norm > 0) & (b_norm > 0)
    # NaN although trained parameters are upstream: b_v = 0 or fdot_v = 0 exactly means the signal
    # underflowed (or every unit died), not that the block is frozen
    vanished = [names[k] for k, mask, mv in zip(order, upstream, moving) if mask.any() and not mv]
    if vanished:
        warnings.warn(f"measure: dL/df or the feature velocity is exactly 0 at {len(vanished)} of "
                      f"{len(order)} blocks with trained parameters upstream ({vanished[0]!r} .. "
                      f"{vanished[-1]!r}): their cos and sensitivity are NaN (the signal vanished "
                      "in float arithmetic; an init scale too small for this depth?)",
                      RuntimeWarning, stacklevel=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(moving, inner / (b_norm * fdot_norm), np.nan)
        sens = np.where(fdot_norm > 0, alignment.sensitivity(fdot_norm, decay, size), np.nan)
    vectors = {}
    if keep_vectors:
        vectors = {k: [_to_numpy(v.to(torch.float64)) for v in vs]
                   for k, vs in (("f", f), ("b", b), ("fdot", fdot))}
    return Measurement(mode, step if mode == "difference" else None, float(loss.detach()),
                       np.arange(1, len(order) + 1), tuple(names[k] for k in order), size, cos,
                       b_norm, fdot_norm, decay, sens, tuple(n for n, _ in trained), lr_arr,
                       grad_sq, vectors)


# -- inputs, blocks, rates ----------------------------------------------------------------------
def _split_inputs(inputs):
    """``(args, kwargs)`` of the model call."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, (tuple, list)):
        items = list(inputs)
    elif isinstance(inputs, Mapping):
        if not all(isinstance(k, str) for k in inputs):
            raise TypeError(f"inputs given as a dict must have str keys (keyword arguments of the "
                            f"model), got keys {list(inputs)!r}")
        items = list(inputs.values())
    else:
        hint = (": convert it with torch.as_tensor(...)" if isinstance(inputs, np.ndarray) else "")
        raise TypeError(f"inputs must be a torch.Tensor, a tuple or list of positional arguments or "
                        f"a dict of keyword arguments of the model, got {type(inputs).__name__}{hint}")
    for v in items:
        if isinstance(v, np.ndarray):
            raise TypeError("inputs must hold torch tensors, got a numpy array: convert it with "
                            "torch.as_tensor(...)")
    return (tuple(items), {}) if not isinstance(inputs, Mapping) else ((), dict(inputs))


def _resolve_blocks(model, blocks):
    """``(names, modules, listed)``: candidate blocks, and whether the user listed them (then
    every one must be reached by the forward pass)."""
    named = {}
    for name, mod in model.named_modules():
        named.setdefault(id(mod), name)
    if blocks is None:
        names, mods = [], []
        for name, mod in model.named_modules():
            if isinstance(mod, Residual) or isinstance(mod, _LAYER_TYPES):
                if not any(name.startswith(n + ".") or (not n and name) for n, m in zip(names, mods)
                           if isinstance(m, Residual)):
                    names.append(name)
                    mods.append(mod)
        if not mods:
            raise ValueError(f"model ({type(model).__name__}) has no nn.Linear, nn.Conv*d or Residual "
                             "module to take features at: pass blocks= (modules or qualified names)")
        return names, mods, False
    if isinstance(blocks, (str, nn.Module)):
        blocks = [blocks]
    try:
        blocks = list(blocks)
    except TypeError:
        raise TypeError(f"blocks must be None or a sequence of modules or qualified module names, "
                        f"got {blocks!r}") from None
    if not blocks:
        raise ValueError("blocks must name at least one module, got an empty sequence")
    names, mods = [], []
    for blk in blocks:
        if isinstance(blk, str):
            try:
                mod = model.get_submodule(blk)
            except AttributeError:
                known = [n for n in dict(model.named_modules()) if n][:8]
                raise ValueError(f"blocks: no submodule named {blk!r} in the model; qualified "
                                 f"names look like {', '.join(map(repr, known))}") from None
        elif isinstance(blk, nn.Module):
            mod = blk
            if id(mod) not in named:
                raise ValueError(f"blocks: the module {type(mod).__name__} given is not a submodule "
                                 "of the model")
        else:
            raise TypeError(f"blocks must hold modules or qualified module names (str), got "
                            f"{blk!r} ({type(blk).__name__})")
        if any(m is mod for m in mods):
            raise ValueError(f"blocks lists the module {named[id(mod)]!r} twice")
        names.append(named[id(mod)])
        mods.append(mod)
    return names, mods, True


def _given_rates(model, trained, lr):
    """Per trained parameter (in ``trained`` order), the rate ``lr`` gives."""
    from ..prescriptions import Prescription

    if isinstance(lr, torch.optim.Optimizer):
        by_id = {id(p): i for i, (_, p) in enumerate(trained)}
        all_ids = {id(p) for p in model.parameters()}
        rates = [0.0] * len(trained)
        for g, group in enumerate(lr.param_groups):
            rate = check_real(f"lr (the optimizer's param_groups[{g}]['lr'])", float(group["lr"]),
                              low=0.0)
            for p in group["params"]:
                if id(p) not in all_ids:
                    raise ValueError(f"lr: the optimizer's param_groups[{g}] holds a parameter "
                                     f"of shape {tuple(p.shape)} that is not in the model")
                if id(p) in by_id:
                    rates[by_id[id(p)]] = rate
        return rates
    if isinstance(lr, Prescription):
        from ._bind import bind  # the torch bridge's binding of a prescription to a model

        lr = bind(model, lr).rates()
    elif _is_binding(lr):
        if lr.model is not model:
            raise ValueError("lr is a Binding of another model: bind the prescription to this one "
                             "(rmtalign.torch.bind(model, prescription))")
        lr = lr.rates()
    if isinstance(lr, Mapping):
        index = {n: i for i, (n, _) in enumerate(trained)}
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        rates = [0.0] * len(trained)
        for name, value in lr.items():
            rate = check_real(f"lr[{name!r}]", value, low=0.0)
            if name in index:
                rates[index[name]] = rate
            elif name in frozen:
                if rate:
                    raise ValueError(f"lr[{name!r}] = {rate!r}, but that parameter has "
                                     "requires_grad=False: it is not trained (give it rate 0 or "
                                     "leave it out)")
            else:
                known = ", ".join(repr(n) for n, _ in trained[:6])
                raise ValueError(f"lr names a parameter {name!r} that is not in the model; "
                                 f"parameter names look like {known}")
        return rates
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"lr must be None (the balanced rule, Eq. 8), a float, a torch optimizer, a "
                        f"mapping {{parameter name: rate}}, an rmtalign.Prescription or its Binding; got {lr!r} "
                        f"({type(lr).__name__})")
    return [check_real("lr", lr, low=0.0, low_open=True)] * len(trained)


def _is_binding(obj):
    try:
        from ._bind import Binding
    except ImportError:  # pragma: no cover - the binding is part of the same package
        return False
    return isinstance(obj, Binding)


def _balanced_rates(trained, grad_sq):
    """Eq. (8) with one block per module holding trained parameters (they share its rate)."""
    owners = [n.rpartition(".")[0] for n, _ in trained]
    groups = list(dict.fromkeys(owners))
    at = {o: i for i, o in enumerate(groups)}
    sq = np.zeros(len(groups))
    np.add.at(sq, [at[o] for o in owners], grad_sq)
    eta = learning_rates(sq, np.ones(len(groups), dtype=bool), "balanced")
    return [float(eta[at[o]]) for o in owners]


# -- the passes ---------------------------------------------------------------------------------
class _Capture:
    """Forward hooks on the candidate blocks that record their outputs in one of three modes:
    ``"grad"`` (the outputs themselves, made differentiable where nothing upstream is trained),
    ``"tangent"`` (their forward-mode tangents), ``"value"`` (detached values). Every hook returns
    a copy of the output, so that an in-place operation downstream (``ReLU(inplace=True)``) cannot
    change what was recorded."""

    def __init__(self, names, modules):
        self.names = names
        self.mode = None
        self.outputs = {}
        self.order = []
        self.sizes = {}
        self.handles = [m.register_forward_hook(self._hook(k)) for k, m in enumerate(modules)]

    def start(self, mode):
        self.mode, self.outputs, self.order = mode, {}, []

    def remove(self):
        for h in self.handles:
            h.remove()

    def _hook(self, k):
        def hook(module, args, out):
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                raise TypeError(
                    f"blocks: {self.names[k]!r} ({type(module).__name__}) returns "
                    f"{type(out).__name__ if not isinstance(out, torch.Tensor) else out.dtype}; a "
                    "block must return one floating-point tensor (pick a submodule that does)")
            if k not in self.outputs:
                self.order.append(k)
                self.outputs[k] = []
            if self.mode == "grad":
                if not out.requires_grad:  # nothing upstream is trained: b_v is still defined
                    out = out.detach().requires_grad_(True)
                self.outputs[k].append(out)
            elif self.mode == "tangent":
                self.outputs[k].append(forward_ad.unpack_dual(out).tangent)
            else:
                self.outputs[k].append(out.detach())
            return out.clone()
        return hook


def _reached(capture, listed):
    """Block indices in forward order; a listed block the forward pass never called is an error."""
    if listed:
        missing = [capture.names[k] for k in range(len(capture.names)) if k not in capture.outputs]
        if missing:
            raise ValueError(f"blocks {', '.join(map(repr, missing))} never reached by the forward "
                             "pass (their forward was not called); list modules the model calls")
    elif not capture.order:
        raise ValueError("the forward pass called none of the model's nn.Linear, nn.Conv*d or "
                         "Residual modules: pass blocks= (modules or qualified names)")
    return list(capture.order)


def _scalar_loss(loss):
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a scalar torch tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar (one-element) tensor, got shape "
                         f"{tuple(loss.shape)}: reduce it, e.g. with .mean() or .sum()")
    if not loss.is_floating_point() or not loss.requires_grad:
        raise ValueError("the loss does not depend on the trained parameters nor on the blocks "
                         "(it has no gradient): check loss_fn and requires_grad")
    return loss.reshape(())


def _upstream_params(feats, params):
    """For each block, a boolean mask over ``params``: those its outputs depend on (found by
    walking the autograd graph from the outputs to the parameters' accumulators; bit sets make
    every node cost one visit)."""
    bit = {id(p): 1 << j for j, p in enumerate(params)}
    memo = {}

    def bits(node):
        stack = [(node, False)]
        while stack:
            n, expanded = stack.pop()
            if n in memo:
                continue
            children = [c for c, _ in n.next_functions if c is not None]
            if expanded:
                acc = bit.get(id(getattr(n, "variable", None)), 0)
                for c in children:
                    acc |= memo[c]
                memo[n] = acc
            else:
                stack.append((n, True))
                stack.extend((c, False) for c in children if c not in memo)
        return memo[node]

    masks = []
    for ts in feats:
        acc = 0
        for t in ts:
            acc |= bits(t.grad_fn) if t.grad_fn is not None else bit.get(id(t), 0)
        masks.append(np.array([(acc >> j) & 1 for j in range(len(params))], dtype=bool))
    return masks


def _gather(capture, order, reference):
    """The second pass's recordings, one flat vector per block (zeros for a call whose output has
    no tangent: nothing upstream of it moves). ``reference`` holds the first pass's vectors."""
    out = []
    for k, ref in zip(order, reference):
        ts = capture.outputs.get(k, [])
        sizes = capture.sizes[k]
        if len(ts) != len(sizes):
            raise RuntimeError(f"block {capture.names[k]!r} was called {len(sizes)} times in the first "
                               f"forward pass and {len(ts)} in the second: measure needs a "
                               "deterministic control flow")
        parts = [torch.zeros(n, dtype=ref.dtype, device=ref.device) if t is None else t.reshape(-1)
                 for t, n in zip(ts, sizes)]
        vec = _flat(parts)
        if vec.numel() != ref.numel():
            raise RuntimeError(f"block {capture.names[k]!r} gave outputs of another size in the second "
                               "forward pass: measure needs a deterministic control flow")
        out.append(vec)
    return out


def _flat(ts):
    """One flat vector of the tensors ``ts`` (a view when there is one)."""
    return ts[0].reshape(-1) if len(ts) == 1 else torch.cat([t.reshape(-1) for t in ts])


def _split_cat(grads, counts):
    out, i = [], 0
    for c in counts:
        out.append(_flat(grads[i:i + c]))
        i += c
    return out


def _accumulator(t):
    """Reductions run in the model's precision (float64 or float32: no copy of the vectors),
    half precisions in float32 (their squares overflow at 65504)."""
    return t.dtype if t.dtype in (torch.float64, torch.float32) else torch.float32


def _norm(t):
    return torch.linalg.vector_norm(t, dtype=_accumulator(t))


def _dot(u, v):
    acc = _accumulator(u)
    return torch.dot(u.to(acc), v.to(acc))


def _cloned(buffers):
    return {n: b.clone() for n, b in buffers.items()}


def _to_numpy(t):
    return t.detach().cpu().numpy()


def _cuda_devices(model, args, kwargs):
    tensors = [*model.parameters(), *model.buffers(), *args, *kwargs.values()]
    return sorted({torch.cuda.current_device() if t.device.index is None else t.device.index
                   for t in tensors if isinstance(t, torch.Tensor) and t.device.type == "cuda"})


class _RNGState:
    """The torch RNG state (CPU and the CUDA devices in use) at creation; :meth:`restore` puts it
    back."""

    def __init__(self, cuda_devices):
        self.cpu = torch.get_rng_state()
        self.cuda = {d: torch.cuda.get_rng_state(d) for d in cuda_devices}

    def restore(self):
        torch.set_rng_state(self.cpu)
        for d, s in self.cuda.items():
            torch.cuda.set_rng_state(s, d)
