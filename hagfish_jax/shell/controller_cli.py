"""``hagfish controller train`` and ``hagfish controller eval``.

``train`` meta-trains a controller (:func:`hagfish_jax.control.meta_train`) on the
default distribution of tasks (:func:`hagfish_jax.control.data.training_splits`),
with a progress bar and orbax checkpoints in ``--out``; run again with more
``--iterations``, it resumes from the latest checkpoint. By default it holds out the
families whose data ``eval``'s tasks use (digits, breast cancer, wine), so it trains
on generated tasks. ``eval`` runs a saved controller as a tuner on a held-out task
beside the fixed default and prints accuracy, F1, validation loss, windows to a
plateau and wall time; it refuses a task whose family the controller was meta-trained
on (its ``training.json`` says which were held out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser"]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _cache(args: argparse.Namespace) -> int | None:
    """The persistent compilation cache, on by default as for ``hagfish demo``."""
    from .cli import _compile_cache

    got = _compile_cache(args)
    return got if isinstance(got, int) else None


def _train(args: argparse.Namespace) -> int:
    from ..control import data, meta
    from ..control.tasks import make_task

    try:
        hold_out = _csv(args.hold_out)
        config = meta.MetaConfig(runs=args.runs, windows=args.windows, cost_weight=args.cost_weight)
        if args.iterations < 1 or args.save_every < 1 or args.steps_per_window < 1:
            raise ValueError("--iterations, --save-every and --steps-per-window must be >= 1")
        splits = data.training_splits(args.seed, hold_out=hold_out, synthetic=args.synthetic)
    except (ValueError, ImportError) as err:
        print(f"hagfish controller train: {err}", file=sys.stderr)
        return 2
    if _cache(args) is not None:
        return 2
    task = make_task(splits, steps_per_window=args.steps_per_window, name="bank")
    out = Path(args.out)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the tasks extra
        tqdm = None
    bar = None
    if tqdm is not None and not args.quiet:
        bar = tqdm(total=args.iterations, unit="it", desc="meta-training")

    def progress(row: dict) -> None:
        if bar is None:
            return
        if bar.n == 0 and row["iteration"] > 1:
            bar.update(row["iteration"] - 1)  # resumed
        bar.set_postfix(ret=f"{row['mean_return']:.3f}", val_loss=f"{row['final_val_loss']:.3f}")
        bar.update(1)

    try:
        result = meta.meta_train(
            task,
            args.iterations,
            config,
            key=args.seed,
            directory=out,
            save_every=args.save_every,
            callback=progress,
            setting={
                "seed": args.seed,
                "hold_out": sorted(hold_out),
                "synthetic": args.synthetic,
                "steps_per_window": args.steps_per_window,
            },
        )
    except ValueError as err:
        print(f"hagfish controller train: {err}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    hist = result.history
    recent = [r["mean_return"] for r in hist[-10:]]
    rate = result.inner_steps_per_second
    print(
        f"controller: {result.controller.iterations} iterations on {task.datasets} data sets "
        f"({config.runs} runs of {config.windows + 1} windows each)"
        + (f"; last {len(recent)} mean return {sum(recent) / len(recent):.3f}" if recent else "")
        + (f"; {rate:.0f} inner steps/s" if rate else "")
        + f"; saved in {out}"
    )
    return 0


def _default_hold_out() -> str:
    """The families whose data an eval task uses (:data:`EVAL_FAMILIES`)."""
    from ..control import EVAL_FAMILIES

    return ",".join(sorted({f for f in EVAL_FAMILIES.values() if f}))


def _trained_families(training: dict | None) -> list[str] | None:
    """The families of ``controller train``'s bank a controller was meta-trained on, from
    its ``training.json``; ``None`` when it was not trained on that bank or the record
    is missing."""
    from ..control.data import FAMILIES

    setting = (training or {}).get("setting") or {}
    if (training or {}).get("task") != "bank" or "hold_out" not in setting:
        return None
    held = set(setting["hold_out"])
    if setting.get("synthetic") == 0:
        held.add("synthetic")
    return [f for f in FAMILIES if f not in held]


def _check_held_out(args: argparse.Namespace, training: dict | None) -> str | None:
    """An error when ``--task``'s data was in the controller's meta-training, else
    ``None`` (with a note on stderr when that cannot be told)."""
    from ..control import EVAL_FAMILIES

    family = EVAL_FAMILIES[args.task]
    trained = _trained_families(training)
    if trained is None:
        if family is not None:
            print(
                f"hagfish controller eval: note: {args.controller} does not record a "
                "meta-training on `hagfish controller train`'s bank (training.json with "
                f"its --hold-out), so whether --task {args.task}'s data ({family}) was "
                "held out is not checked",
                file=sys.stderr,
            )
        return None
    if family in trained:
        return (
            f"--task {args.task} uses the {family} data, and the controller in "
            f"{args.controller} was meta-trained on it (families {', '.join(trained)}); "
            "its numbers would not be those of a held-out task. Evaluate another task, or "
            f"meta-train a controller with --hold-out naming {family} (the default, "
            f"--hold-out {_default_hold_out()}, holds out every eval task's data)"
        )
    return None


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import core
    from ..control import controller as ctrl_lib
    from ..control import suite
    from ..control.tuner import learned

    try:
        controller = ctrl_lib.load(args.controller)
    except (FileNotFoundError, ValueError) as err:
        print(f"hagfish controller eval: {err}", file=sys.stderr)
        return 2
    problem = _check_held_out(args, controller.training)
    if problem is not None:
        print(f"hagfish controller eval: {problem}", file=sys.stderr)
        return 2
    if _cache(args) is not None:
        return 2
    spec = controller.spec
    steps = args.steps_per_window or spec.window_steps or 10
    windows = args.windows or spec.horizon
    if args.seeds < 1 or windows < 2:
        print("hagfish controller eval: --seeds must be >= 1, --windows >= 2", file=sys.stderr)
        return 2
    task = suite.eval_task(args.task, args.seed, steps_per_window=steps)
    methods = {
        "fixed default": core.tuners.fixed(),
        "learned": learned(controller, task.space),
    }
    rows = {}
    for name, tuner in methods.items():
        (res,) = suite.evaluate_tuner(task, tuner, windows, args.seeds, keys=(args.seed,))
        rows[name] = res
    print(f"{args.task}: {args.seeds} runs of {windows} windows x {steps} steps")
    print(f"{'method':<14} {'test acc':>9} {'test F1':>8} {'val loss':>9} {'plateau':>8} {'s':>6}")
    for name, r in rows.items():
        print(
            f"{name:<14} {np.mean(r['test_accuracy']):>9.4f} {np.mean(r['test_f1']):>8.4f} "
            f"{np.mean(r['final_val_loss']):>9.4f} {np.mean(r['plateau']):>8.1f} "
            f"{r['seconds']:>6.1f}"
        )
    if args.json:
        plain = {
            name: {
                k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in r.items()
                if k != "hparams"
            }
            for name, r in rows.items()
        }
        Path(args.json).write_text(json.dumps(plain, indent=1))
    return 0


def add_parser(sub) -> None:
    """Add ``controller train`` and ``controller eval`` to the ``hagfish`` parser."""
    from ..control import EVAL_TASKS

    ctl = sub.add_parser(
        "controller",
        help="meta-train a learned hyperparameter controller, or evaluate one",
        description="A PPO controller that moves learning rate, batch size, dropout, "
        "layers and units while models train, meta-trained over many vmapped inner runs.",
    )
    actions = ctl.add_subparsers(dest="action", required=True, metavar="{train,eval}")
    defaults = argparse.ArgumentDefaultsHelpFormatter
    train = actions.add_parser(
        "train",
        help="meta-train (resumes from --out)",
        description="Meta-train a controller over many vmapped inner runs on a bank of "
        "tasks; run again with more --iterations and the same options to resume.",
        formatter_class=defaults,
    )
    train.add_argument("--out", default="runs/controller", help="controller directory")
    train.add_argument("--iterations", type=int, default=100, help="PPO iterations (total)")
    train.add_argument("--runs", type=int, default=32, help="inner runs per iteration")
    train.add_argument("--windows", type=int, default=10, help="decisions per inner run")
    train.add_argument("--steps-per-window", type=int, default=10, help="inner Adam steps")
    train.add_argument(
        "--hold-out",
        default=_default_hold_out(),
        help="families to leave out, comma separated (synthetic, digits, breast_cancer, "
        "wine); the default leaves out those whose data eval's tasks use, \"\" trains on all "
        "(eval then refuses the tasks on that data)",
    )
    train.add_argument("--synthetic", type=int, default=6, help="generated tasks in the bank")
    train.add_argument("--cost-weight", type=float, default=0.01, help="reward's compute weight")
    train.add_argument("--save-every", type=int, default=10, help="iterations between saves")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)
    ev = actions.add_parser(
        "eval",
        help="the controller against the fixed default",
        description="Run a saved controller as a tuner on a held-out task beside the fixed "
        "default; print test accuracy, F1, validation loss, windows to a plateau and time. "
        "A task whose data family (image and digits: digits, tabular: breast_cancer, wine: "
        "wine) the controller was meta-trained on is refused.",
        formatter_class=defaults,
    )
    ev.add_argument("--controller", default="runs/controller", help="controller directory")
    ev.add_argument("--task", choices=EVAL_TASKS, default="image")
    ev.add_argument("--windows", type=int, default=None, help="default: as meta-trained")
    ev.add_argument("--steps-per-window", type=int, default=None, help="default: as trained")
    ev.add_argument("--seeds", type=int, default=4, help="runs per method (vmapped)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", default=None, help="also write the numbers to this file")
    ev.set_defaults(func=_eval)
    for p in (train, ev):
        p.add_argument("--compile-cache", metavar="DIR", default=None,
                       help="persistent compilation cache (default: the user's cache dir)")
        p.add_argument("--no-compile-cache", action="store_true", help="compile afresh")
