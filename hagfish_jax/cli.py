"""The ``hagfish`` command.

``hagfish demo`` tunes a flax MLP on the bundled digits data while it trains (learning
rate, dropout and label smoothing, by guarded finite differences), shows
a progress bar, prints a summary and writes ``summary.json`` and ``metrics.csv``
into a run directory. The training runs in jitted ``lax.scan`` chunks of windows
(compiled once); the progress bar advances between chunks.

This module is shell: it calls jitted core functions and reads their outputs.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run_demo"]

_DEMO_TUNED = ("learning_rate", "dropout_rate", "label_smoothing")


def _chunk_size(windows: int, chunks: int = 10) -> int:
    """The largest divisor of ``windows`` not above ``windows / chunks``: one compile."""
    target = max(1, windows // chunks)
    return max(d for d in range(1, target + 1) if windows % d == 0)


def run_demo(
    windows: int = 40,
    seed: int = 0,
    model: str = "mlp",
    steps_per_window: int | None = None,
    hidden: Sequence[int] = (64,),
    tuned: Sequence[str] = _DEMO_TUNED,
    progress: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train on digits with a guarded finite-difference tuner; return rows and a summary.

    Args:
      windows: number of windows (one epoch each by default).
      seed: seed of the data split, the model and the tuner.
      model: ``"mlp"`` or ``"cnn"``.
      steps_per_window: optimizer steps per window; default one epoch.
      hidden: hidden widths of the model.
      tuned: hyperparameters the tuner moves (the others stay at their defaults).
      progress: called with ``(0, None)`` once compiled, then after each chunk of
        windows with (windows done, last row).

    Returns:
      ``{"summary": dict, "rows": list of dicts}`` with host (Python) values.
    """
    import jax

    import hagfish_jax as hj
    from hagfish_jax.tasks import digits

    if windows < 1:
        raise ValueError(f"run_demo: windows must be >= 1, got {windows!r}")
    start = time.perf_counter()
    task = digits.make_task(
        digits.load_digits_split(seed), model=model, steps_per_window=steps_per_window,
        hidden=hidden,
    )
    tuner = hj.guard(hj.finite_difference(task.space.subspace(tuned)), space=task.space)
    carry = digits.demo_init(task, tuner, jax.random.key(seed), task.default_hparams)
    chunk = _chunk_size(windows)
    run_chunk = jax.jit(
        functools.partial(digits.run_windows, digits.demo_window(task, tuner), length=chunk)
    )
    run_chunk = run_chunk.lower(carry).compile()  # compile once, before the clock of the bar
    if progress is not None:
        progress(0, None)
    columns = ("score", "val_loss", "train_score", "train_loss", "window_loss", "rollback")
    names = task.space.names
    rows: list[dict] = []
    for _ in range(windows // chunk):
        carry, block = run_chunk(carry)
        block = jax.device_get(block)
        for i in range(chunk):
            rows.append({"window": len(rows), **{k: block[k][i].item() for k in columns + names}})
        if progress is not None:
            progress(len(rows), rows[-1])

    snap = carry.snap
    test_acc = float(jax.jit(task.test_accuracy)(snap.state))
    scores = np.array([r["score"] for r in rows], np.float64)
    best = int(np.argmax(np.where(np.isfinite(scores), scores, -np.inf)))
    summary = {
        "task": "digits",
        "model": model,
        "windows": windows,
        "steps_per_window": task.steps_per_window,
        "batch_size": task.batch_size,
        "seed": seed,
        "tuned": list(tuned),
        "best_window": best,
        "best_val_accuracy": float(snap.score),
        "best_hparams": {n: rows[best][n] for n in names},
        "test_accuracy": test_acc,
        "final_val_accuracy": rows[-1]["score"],
        "rollbacks": int(sum(bool(r["rollback"]) for r in rows)),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    return {"summary": summary, "rows": rows}


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_run(out: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write ``summary.json`` and ``metrics.csv`` for ``result`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    _write_atomic(out / "metrics.csv", write_csv)
    _write_atomic(out / "summary.json", lambda f: json.dump(result["summary"], f, indent=2))
    return out


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    lines = [
        ("best window", f"{summary['best_window']} of {summary['windows']}"),
        *((f"  {k}", f"{v:.4g}") for k, v in summary["best_hparams"].items()),
        ("best val accuracy", f"{summary['best_val_accuracy']:.4f}"),
        ("test accuracy (best)", f"{summary['test_accuracy']:.4f}"),
        ("final val accuracy", f"{summary['final_val_accuracy']:.4f}"),
        ("rollbacks", str(summary["rollbacks"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("run directory", str(out)),
    ]
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")


def _demo(args: argparse.Namespace) -> int:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - depends on the environment
        print("hagfish demo needs tqdm: pip install 'hagfish-jax[tasks]'", file=sys.stderr)
        return 1
    hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    with tqdm(total=args.windows, unit="window", desc="compiling", disable=args.quiet) as bar:

        def progress(done: int, row: dict | None) -> None:
            if row is None:  # compiled: restart the clock so the rate shows training only
                bar.set_description("training")
                bar.reset()
                return
            bar.set_postfix(val_acc=f"{row['score']:.3f}", lr=f"{row['learning_rate']:.2e}")
            bar.update(done - bar.n)

        result = run_demo(
            windows=args.windows, seed=args.seed, model=args.model,
            steps_per_window=args.steps_per_window, hidden=hidden, progress=progress,
        )
    out = write_run(args.out, result)
    _print_summary(result["summary"], out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hagfish", description="JAX-native hyperparameter tuning while models train."
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo", help="tune an MLP on the bundled digits data and write a run directory",
        description="Tune the learning rate, dropout and label smoothing of a flax MLP on "
        "scikit-learn's digits while it trains (guarded finite differences), then write "
        "summary.json and metrics.csv.",
    )
    demo.add_argument("--windows", type=int, default=40, help="training windows (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="model (default mlp)")
    demo.add_argument("--steps-per-window", type=int, default=None,
                      help="optimizer steps per window (default: one epoch)")
    demo.add_argument("--hidden", default="64", help="hidden widths, comma separated (default 64)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hagfish`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.windows < 1:
        parser.error(f"--windows must be >= 1, got {args.windows}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
