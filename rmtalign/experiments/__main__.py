"""``python -m rmtalign.experiments --out DIR [--full] [--only NAME] [--workers N]``.

Runs experiments 1 (``deep_mlp``), 2 (``resnet``) and 3 (``transfer``) at the default sizes (a
few minutes on 2 cores) or the issue's (``--full``), writes their CSV tables and PNG plots under
``DIR/<name>/`` and a ``DIR/summary.json``. The grids are resumable: a rerun with the same
``--out`` skips the finished points (``DIR/<name>/points.jsonl``). Bad flags: one line on stderr,
exit 2; Ctrl-C or SIGTERM: exit 130 (finished points are kept, the workers are stopped).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .suite import DEFAULT, EXPERIMENTS, FULL, TINY, points


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"python -m rmtalign.experiments: error: {message}\n")
        raise SystemExit(2)


def _parser():
    p = _Parser(prog="python -m rmtalign.experiments",
                description="Train real networks under SP, NTK, MF+muP, muP and FSC "
                            "(docs/experiments.md).")
    p.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the issue's sizes (hours)")
    size.add_argument("--tiny", action="store_true", help="seconds: the smoke test's sizes")
    p.add_argument("--only", action="append", metavar="NAME",
                   help=f"run only this experiment ({', '.join(EXPERIMENTS)}); repeatable")
    p.add_argument("--workers", type=int, default=None, help="processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _report(name, out_dir, records):
    from . import curves, transfer

    if name == "transfer":
        opt, dr = transfer.write_tables(records, out_dir)
        transfer.plot_transfer(records, opt, out_dir / "transfer_loss.png")
        transfer.plot_optima(opt, out_dir / "transfer_optima.png")
        return {"drift": [dict(zip(dr, row)) for row in zip(*dr.values())]}
    best = curves.write_tables(records, out_dir)
    if name == "deep_mlp":
        curves.plot_curves(best, out_dir / "curves.png", by="depth", lines="scheme")
        for opt in sorted({r["point"]["optimizer"] for r in best}):
            curves.plot_bfa(best, out_dir / f"bfa_{opt}.png", by="depth", lines="scheme",
                            optimizer=opt)
    else:
        curves.plot_curves(best, out_dir / "curves.png", by="depth", lines="scheme")
        for opt in sorted({r["point"]["optimizer"] for r in best}):
            curves.plot_bfa(best, out_dir / f"bfa_{opt}.png", by="depth", lines="beta_rule",
                            optimizer=opt)
    trained = {}
    for r in best:
        ok = curves.trained(r)
        key = f"{r['point']['scheme']}/{r['point']['optimizer']}" + (
            f"/beta={r['point']['beta_rule']}" if r["point"].get("beta_rule") else "")
        trained.setdefault(key, {})[str(r["point"]["depth"])] = bool(ok)
    return {"trained": trained}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    only = args.only or list(EXPERIMENTS)
    for name in only:
        if name not in EXPERIMENTS:
            _parser().error(f"--only must be one of {', '.join(EXPERIMENTS)}; got {name!r}")
    if args.workers is not None and args.workers < 1:
        _parser().error(f"--workers must be >= 1; got {args.workers}")
    from .data import load_task
    from .train import default_workers, run_grid

    sizes = FULL if args.full else TINY if args.tiny else DEFAULT
    workers = args.workers or default_workers()
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _parser().error(f"--out {args.out!r} cannot be created: {exc.strerror}")
    cache = out / "data"
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def _terminate(signum, frame):  # SIGTERM as Ctrl-C: the pool is shut down, no orphan workers
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for name in only:
            pts = points(name, sizes)
            for task in sorted({p["task"] for p in pts}):
                load_task(task, cache)  # generate once, before the workers start
            t0, c0 = time.time(), time.process_time()

            def progress(done, total, rec, name=name):
                if not args.quiet:
                    p = rec["point"]
                    print(f"[{name}] {done}/{total} {p['arch']} L={p['depth']} m={p['width']} "
                          f"{p['scheme']}/{p['optimizer']} lr=2^{p['log2_lr']:g}: loss "
                          f"{rec['final']['train_loss']} ({rec['seconds']:.1f} s cpu)", flush=True)

            records = run_grid(pts, out / name / "points.jsonl", workers=workers,
                               cache_dir=cache, progress=progress)
            info = _report(name, out / name, records)
            info.update({"points": len(pts), "wall_seconds_this_call": time.time() - t0,
                         "cpu_seconds_points": sum(r["seconds"] for r in records),
                         "workers": workers, "sizes": "full" if args.full else
                         "tiny" if args.tiny else "default"})
            summary[name] = info
            summary_path.write_text(json.dumps(summary, indent=1, default=str))
            if not args.quiet:
                print(f"[{name}] done: {len(pts)} points, {info['cpu_seconds_points']:.0f} s cpu "
                      f"in the points, {info['wall_seconds_this_call']:.0f} s wall", flush=True)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished points are kept; rerun to resume\n")
        return 130
    except ImportError as exc:
        sys.stderr.write(f"python -m rmtalign.experiments: error: {exc} (install the "
                         f"'experiments' extra)\n")
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
