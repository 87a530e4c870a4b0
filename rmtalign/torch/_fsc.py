"""The FSC optimizer wrapper: scale-invariant learning rates (Eq. 8) throughout training.

Each parameter group of the wrapped optimizer is one block ``w_l`` (``param_groups`` gives one
group per weight layer). Before a step, group ``l`` gets the rate

* ``kind="sgd"``: ``eta_l = target / (n |grad_l|^2)`` (Eq. 8), so that with plain SGD every block
  contributes exactly ``eta_l |grad_l|^2 = target / n`` to the first-order loss decrease and the
  loss decreases by ``target`` to first order;
* ``kind="adam"``: ``eta_l = target / (n |grad_l| sqrt(numel_l))``, the normalised-gradient rule
  ``~ 1/(n |grad_l|)`` of the paper in the units of ``torch.optim.Adam``, whose step has entries
  of size about ``lr`` (Frobenius norm ``target / (n |grad_l|)``, that of the normalised step);

where ``n`` counts the trained groups (initial rate > 0) whose gradient is not exactly 0, the
convention of :func:`rmtalign.rules.learning_rates`. The rules are ``(-2)``- and
``(-1)``-homogeneous in the block's own gradient, which makes the step independent of how a
layer's scale is split between init and multiplier (Prop. C.1).

Schedulers: the group's own ``lr`` is read as a multiplier. FSC records ``initial_lr`` (as torch
LR schedulers do) and applies ``(lr / initial_lr) * eta_l``, then puts ``lr`` back: a scheduler
built on the wrapped optimizer (before or after FSC) scales FSC's rates by its factor.
"""
from __future__ import annotations

import math

import torch

from .._validate import check_choice, check_int, check_real
from ._bind import KINDS
from .modules import OutputMultiplier

__all__ = ["FSC"]


class FSC:
    """Keep ``optimizer``'s rates on the scale-invariant rule of Eq. (8) (module docstring).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        One parameter group per block (``rmtalign.torch.param_groups`` gives one per layer);
        its groups' ``lr`` values become multipliers (1 at the start; a scheduler moves them).
    model : torch.nn.Module, optional
        Needed by :meth:`rebalance` only.
    target : float
        The first-order loss decrease of one step (the paper's ``c* dt``).
    kind : {"sgd", "adam"}
        The rule (module docstring).
    every : int
        Recompute the rates every ``every`` steps (from that step's gradients); in between the
        last rates are reused.
    feature_speed : float
        :meth:`rebalance`'s target ``|fdot_{L-1}|_rms``.
    prescription : rmtalign.Prescription or Binding, optional
        Tells :meth:`rebalance` where ``f_{L-1}`` and the output multiplier are.

    Notes
    -----
    The exact contributions hold for plain SGD (no momentum, no weight decay); with momentum or
    weight decay the rule sets the rate and the optimizer does the rest.
    """

    def __init__(self, optimizer, model=None, *, target=1.0, kind="sgd", every=1,
                 feature_speed=1.0, prescription=None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
        self.optimizer = optimizer
        self.model = model
        self.target = check_real("target", target, low=0.0, low_open=True)
        self.kind = check_choice("kind", kind, KINDS)
        self.every = check_int("every", every, 1)
        self.feature_speed = check_real("feature_speed", feature_speed, low=0.0, low_open=True)
        self.prescription = prescription
        for group in optimizer.param_groups:
            lr = group["lr"]
            if isinstance(lr, torch.Tensor):
                raise TypeError("FSC sets float rates: give the optimizer float lr values, not tensors")
            group.setdefault("initial_lr", lr)
        self.steps = 0
        self.rates = None  # the rule's rates of the last recomputation, one per group

    # -- the rule ------------------------------------------------------------------------------
    @torch.no_grad()
    def compute_rates(self) -> list:
        """The rule's rate for each group from the current ``.grad`` (before any schedule)."""
        sq, numel, on = [], [], []
        for group in self.optimizer.param_groups:
            grads = [p.grad for p in group["params"] if p.grad is not None]
            on.append(group["initial_lr"] > 0 and bool(grads))
            numel.append(sum(g.numel() for g in grads))
            sq.append(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) ** 2
                                   for g in grads]).sum().cpu() if grads
                      else torch.zeros((), dtype=torch.float64))
        if not any(on):
            raise ValueError("FSC found no gradient: call loss.backward() before step() (or pass "
                             "a closure), and give the trained groups an lr > 0")
        return self._rule(torch.stack(sq).tolist(), numel, on, self.kind)  # one device sync

    def _rule(self, sq, numel, on, kind):
        if any(not math.isfinite(s) for s, a in zip(sq, on) if a):
            raise FloatingPointError(f"FSC: a gradient norm is not finite ({sq}): the step would be "
                                     f"undefined")
        active = [a and s > 0 for a, s in zip(on, sq)]
        n = sum(active)
        out = []
        for s, a, k in zip(sq, active, numel):
            if not a:
                out.append(0.0)
            elif kind == "sgd":
                out.append(self.target / (n * s))
            else:
                out.append(self.target / (n * math.sqrt(s) * math.sqrt(k)))
        return out

    def step(self, closure=None):
        """One step of the wrapped optimizer at the rule's rates (times each group's schedule
        factor ``lr / initial_lr``). ``closure`` (optional) recomputes the loss and gradients
        first, and its loss is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.rates is None or self.steps % self.every == 0:
            self.rates = self.compute_rates()
        groups = self.optimizer.param_groups
        saved = [g["lr"] for g in groups]
        for g, rate, lr in zip(groups, self.rates, saved):
            base = g["initial_lr"]
            g["lr"] = (lr / base) * rate if base > 0 else 0.0
        try:
            self.optimizer.step()
        finally:
            for g, lr in zip(groups, saved):
                g["lr"] = lr
        self.steps += 1
        return loss

    def zero_grad(self, set_to_none: bool = True):
        """The wrapped optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def param_groups(self):
        """The wrapped optimizer's groups (their ``lr`` is the schedule's factor times
        ``initial_lr``)."""
        return self.optimizer.param_groups

    # -- the backward normalisation ---------------------------------------------------------------
    def rebalance(self, inputs, loss_fn, *, block=None, multiplier=None) -> float:
        """Re-measure ``|fdot_{L-1}|_rms`` and set the output multiplier so that it is
        ``feature_speed`` (FSC's step 2, Eq. 7, with the measured angle); returns the new alpha.

        The velocity is that of one step at the rule's rates (the SGD rule, whose step has the
        velocity of the normalised step for ``kind="adam"`` too; no schedule factor) on the batch
        ``inputs`` with ``loss_fn``, measured by :func:`rmtalign.torch.measure` (the model is left
        untouched). With these rates every group contributes ``target / n`` whatever ``alpha``
        is, so ``b_{L-1}``, the gradients below ``L`` and hence ``fdot_{L-1}`` scale like
        ``1/alpha`` when the loss is linear in the output: then ``alpha <- alpha |fdot|_rms / S``
        puts the speed exactly on target. For other losses (``b_L`` depends on the output) this
        is one step of a fixed-point iteration. Call it before the backward pass of the next step
        (the gradients change with ``alpha``); the rates are recomputed at the next step.

        Parameters
        ----------
        inputs, loss_fn
            As in :func:`rmtalign.torch.measure`.
        block : str or torch.nn.Module, optional
            The module whose output is ``f_{L-1}``. Default: from the binding of the FSC's
            ``prescription`` (:attr:`Binding.blocks`).
        multiplier : str or OutputMultiplier, optional
            Default: the binding's output multiplier.
        """
        from ._measure import measure  # the other half of the bridge; imported when used

        if self.model is None:
            raise ValueError("rebalance needs the model: FSC(optimizer, model, ...)")
        mods = dict(self.model.named_modules())
        if block is None or multiplier is None:
            binding = self._binding()
            block = binding.blocks[-2] if block is None else block
            multiplier = binding.multiplier if multiplier is None else multiplier
        if isinstance(multiplier, str):
            multiplier = mods.get(multiplier)
        if not isinstance(multiplier, OutputMultiplier) or \
                not any(m is multiplier for m in mods.values()):
            raise ValueError("rebalance adjusts an OutputMultiplier of the model: the model has none "
                             "bound (add one after the last Linear, or pass multiplier=)")
        params = dict(self.model.named_parameters())
        names = {id(p): n for n, p in params.items()}
        first = measure(self.model, inputs, loss_fn, lr=1.0, blocks=[block])
        sq_of = dict(zip(first.params, first.grad_sq.tolist()))
        sq, numel, on, members = [], [], [], []
        for group in self.optimizer.param_groups:
            ps = [names[id(p)] for p in group["params"] if names.get(id(p)) in sq_of]
            members.append(ps)
            sq.append(sum(sq_of[n] for n in ps))
            numel.append(sum(params[n].numel() for n in ps))
            on.append(group["initial_lr"] > 0 and bool(ps))
        if not any(on):
            raise ValueError("rebalance: no trained group of the optimizer holds a trained parameter "
                             "of the model")
        rates = self._rule(sq, numel, on, "sgd")
        lr = {n: r for ps, r in zip(members, rates) for n in ps}
        speed = measure(self.model, inputs, loss_fn, lr=lr, blocks=[block])
        rms = float(speed.fdot_norm[0]) / math.sqrt(float(speed.size[0]))
        if not (math.isfinite(rms) and rms > 0):
            raise ValueError(f"rebalance: |fdot_(L-1)|_rms = {rms!r} at block {speed.names[0]!r}: the "
                             f"feature does not move (no trained layer below it?), alpha cannot set it")
        alpha = float(multiplier.alpha) * rms / self.feature_speed
        multiplier.set_(alpha)
        self.rates = None
        return alpha

    def _binding(self):
        from ..prescriptions import Prescription
        from ._bind import Binding, bind

        p = self.prescription
        if isinstance(p, Binding):
            if p.model is not self.model:
                raise ValueError("FSC's prescription is a Binding of another model")
            return p
        if isinstance(p, Prescription):
            return bind(self.model, p)
        raise ValueError("rebalance needs to know f_(L-1) and the output multiplier: pass block= and "
                         "multiplier=, or FSC(..., prescription=) (a Prescription or Binding)")

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The wrapped optimizer's state and FSC's own (settings, step count, last rates)."""
        return {"optimizer": self.optimizer.state_dict(),
                "fsc": {"target": self.target, "kind": self.kind, "every": self.every,
                        "feature_speed": self.feature_speed, "steps": self.steps,
                        "rates": None if self.rates is None else list(self.rates)}}

    def load_state_dict(self, state: dict):
        """Restore what :meth:`state_dict` returned."""
        if not isinstance(state, dict) or set(state) != {"optimizer", "fsc"}:
            raise ValueError("state must be a dict from FSC.state_dict() (keys 'optimizer' and 'fsc'), "
                             f"got {type(state).__name__} with keys "
                             f"{sorted(state) if isinstance(state, dict) else None}")
        own = state["fsc"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.target = check_real("target", own["target"], low=0.0, low_open=True)
        self.kind = check_choice("kind", own["kind"], KINDS)
        self.every = check_int("every", own["every"], 1)
        self.feature_speed = check_real("feature_speed", own["feature_speed"], low=0.0, low_open=True)
        self.steps = check_int("steps", own["steps"], 0)
        self.rates = None if own["rates"] is None else [float(r) for r in own["rates"]]

    def __repr__(self):
        return (f"FSC({type(self.optimizer).__name__}, groups={len(self.optimizer.param_groups)}, "
                f"target={self.target:.6g}, kind={self.kind!r}, every={self.every}, steps={self.steps})")
