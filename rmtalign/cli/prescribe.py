"""Init scales and learning rates for a deep network (SP, NTK, MF+muP, FSC) as JSON.

rmtalign.prescribe(family, scheme, setting): per weight layer l = 1..L the init std, the SGD
learning rate, the normalised-gradient rate and the multiplier, plus the output multiplier and
the width-limit predictions (output cos(theta_(L-1)), loss decay, feature speed) of one step.
Under fsc, in the width limit, every trained layer contributes loss_decay/n to the loss decay and
|fdot_(L-1)|_rms = feature_speed. The JSON is Prescription.to_json() (schema version 1), which
rmtalign.Prescription.from_json reads back.

Writes OUT/prescription.json and OUT/prescription.csv (one row per layer); --json prints
Prescription.to_json() on stdout (one line, nothing else).

example:
  rmtalign prescribe --family resnet --depth 32 --width 256 --scheme fsc --json
"""
from __future__ import annotations

from . import _common


def add_arguments(p):
    _common.add_family_arguments(p, depth=16, width=256)
    g = p.add_argument_group("the prescription")
    g.add_argument("--scheme", choices=("sp", "ntk", "mfmup", "fsc"), default="fsc",
                   help="sp (PyTorch default), ntk, mfmup (MF+muP) or fsc (default)")
    g.add_argument("--setting", choices=("dense", "sparse"), default="dense",
                   help="dense: |x|^2 = d, loss mean(f_L) (default); sparse: |x| = |b_L| = 1")
    g.add_argument("--loss-decay", type=_common.real_type(0.0, low_open=True), default=1.0,
                   help="target loss decay of one step (default 1)")
    g.add_argument("--feature-speed", type=_common.real_type(0.0, low_open=True), default=1.0,
                   help="target |fdot_(L-1)|_rms (default 1)")
    _common.add_common_arguments(p, seed=False)


def run(args) -> int:
    from ..prescriptions import prescribe

    out = _common.Output(args.out)
    fam = _common.make_family(args, args.depth)
    pres = prescribe(fam, args.scheme, args.setting, loss_decay=args.loss_decay,
                     feature_speed=args.feature_speed)
    text = pres.to_json(indent=1)
    out.text("prescription.json", text + "\n")
    out.csv("prescription.csv", pres)
    if args.json:  # exactly Prescription.to_json(): Prescription.from_json reads it back
        print(pres.to_json())
        return 0
    f = _common.fmt
    lines = [f"{args.scheme} prescription ({args.setting}) for {fam.label}: output multiplier "
             f"{f(pres.output_multiplier, '.6g')}, output cos {f(pres.cos_output)}, predicted loss decay "
             f"{f(pres.predicted_loss_decay, '.6g')}, feature speed {f(pres.predicted_feature_speed, '.6g')}",
             "  layer  init_std      lr            lr_adam"]
    for l, s, lr, la in zip(pres.layers, pres.init_std, pres.lr, pres.lr_adam):
        if l <= 3 or l > len(pres.layers) - 2:
            lines.append(f"  {l:<5d}  {s:<12.6g}  {lr:<12.6g}  {la:.6g}")
        elif l == 4:
            lines.append("  ...")
    return _common.report(args, out, {}, lines)
