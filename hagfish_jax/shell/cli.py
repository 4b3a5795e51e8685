"""The ``hagfish`` command.

``hagfish demo`` trains a population of flax MLPs on the bundled digits data with
population-based training (by default 16 members as one vmapped program), shows a
progress bar, prints a summary and writes ``summary.json`` and ``metrics.csv`` into a
run directory. ``hagfish demo --tuner guard`` tunes a single model with guarded
finite differences instead. Training runs in jitted ``lax.scan`` chunks (compiled
once); the progress bar advances between chunks.

``hagfish plot RUN_DIR [--out DIR]`` draws a run directory's figures as PNGs (needs
matplotlib; see :mod:`hagfish_jax.plots`) and prints their paths.

This module is shell: argument parsing and printing; the programs live in
:mod:`hagfish_jax.demo` and the figures in :mod:`hagfish_jax.plots`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _summary_lines(summary: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    hp = [(f"  {k}", f"{v:.4g}") for k, v in summary["best_hparams"].items()]
    if summary["task"] == "cartpole":
        lines = [
            (
                "population",
                f"{summary['population']} PPO agents x {summary['generations']} "
                f"generations ({summary['env_steps_per_member']} env steps each)",
            ),
            (
                "best member",
                f"member {summary['best_member']} at generation {summary['best_generation']}",
            ),
            *hp,
            ("best mean return", f"{summary['best_return']:.1f}"),
            ("first generation at 475", str(summary["first_generation_at_475"])),
            ("exploits", str(summary["exploits"])),
        ]
    elif summary["tuner"] == "pbt":
        lines = [
            (
                "population",
                f"{summary['population']} members x {summary['generations']} "
                f"generations ({summary['total_steps']} steps)",
            ),
            (
                "best member",
                f"member {summary['best_member']} at generation {summary['best_generation']}",
            ),
            *hp,
            ("best val accuracy", f"{summary['best_val_accuracy']:.4f}"),
            ("test accuracy (best member)", f"{summary['test_accuracy']:.4f}"),
            ("ensemble val accuracy", f"{summary['ensemble_val_accuracy']:.4f}"),
            ("ensemble test accuracy", f"{summary['ensemble_test_accuracy']:.4f}"),
            ("exploits", str(summary["exploits"])),
            ("cost (batch size x epochs)", f"{summary['total_cost']:.0f}"),
        ]
        if summary.get("halving"):
            stages = ", ".join(f"{m} x {g}" for m, g in summary["stages"])
            lines.insert(1, ("successive halving", f"members x generations: {stages}"))
    else:
        lines = [
            ("best window", f"{summary['best_window']} of {summary['windows']}"),
            *hp,
            ("best val accuracy", f"{summary['best_val_accuracy']:.4f}"),
            ("test accuracy (best)", f"{summary['test_accuracy']:.4f}"),
            ("final val accuracy", f"{summary['final_val_accuracy']:.4f}"),
            ("rollbacks", str(summary["rollbacks"])),
        ]
    lines += [("wall time", f"{summary['wall_time_s']:.1f} s"), ("run directory", str(out))]
    return lines


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    lines = _summary_lines(summary, out)
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")


def _demo(args: argparse.Namespace) -> int:
    try:
        from tqdm.auto import tqdm

        from . import demo
        from .records import RunRecords
        from ..tasks import digits  # noqa: F401  (fails early without scikit-learn)
    except ImportError as err:  # pragma: no cover - depends on the environment
        print(f"hagfish demo: {err}; pip install 'hagfish-jax[tasks]'", file=sys.stderr)
        return 1
    hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    config = {k: getattr(args, k) for k in sorted(vars(args)) if k not in ("func", "quiet")}
    # Rerunning into a directory that holds another run replaces it; the same run
    # again adds no duplicate rows.
    records = RunRecords(args.out, meta={"config": config}, on_mismatch="replace")
    with tqdm(total=args.windows, unit="window", desc="compiling", disable=args.quiet) as bar:

        def progress(done: int, row: dict | None) -> None:
            if row is None:  # compiled: restart the clock so the rate shows training only
                bar.set_description("training")
                bar.reset()
                return
            bar.set_postfix(score=f"{row['score']:.3f}", lr=f"{row['learning_rate']:.2e}")
            bar.update(done - bar.n)

        common = dict(
            seed=args.seed,
            model=args.model,
            steps_per_window=args.steps_per_window,
            hidden=hidden,
            progress=progress,
        )
        if args.task == "cartpole":
            from ._affinity import one_cpu

            with one_cpu():  # avoids a stall in XLA's CPU runtime (see _affinity)
                result = demo.run_pbt_cartpole(
                    population_size=args.population,
                    generations=args.windows,
                    seed=args.seed,
                    progress=progress,
                )
        elif args.tuner == "pbt":
            result = demo.run_pbt(
                population_size=args.population,
                generations=args.windows,
                task=args.task,
                halving=args.halving,
                records=records,
                **common,
            )
        else:
            result = demo.run_guarded(windows=args.windows, **common)
    out = demo.write_run(args.out, result)
    _print_summary(result["summary"], out)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from . import plots

    try:
        paths = plots.plot_run(args.run_dir, out=args.out)
    except FileNotFoundError as err:
        print(f"hagfish plot: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(err, file=sys.stderr)
        return 2
    if not paths:
        print(f"hagfish plot: nothing to plot in {args.run_dir}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hagfish", description="JAX-native hyperparameter tuning while models train."
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="tune MLPs on the bundled digits data and write a run directory",
        description="Population-based training of flax MLPs on scikit-learn's digits "
        "(learning rate, weight decay, b1, dropout and label smoothing tuned while they "
        "train), or with --tuner guard one model tuned by guarded finite differences; "
        "writes a run directory (metrics per member, events, summaries; PNG plots when "
        "matplotlib is installed).",
    )
    demo.add_argument(
        "--task",
        choices=("digits", "breast_cancer", "cartpole"),
        default="digits",
        help="digits: MLPs on scikit-learn's digits (default); breast_cancer: MLPs on "
        "scikit-learn's breast cancer data; cartpole: PPO agents on gymnasium's functional "
        "CartPole (PBT of 8)",
    )
    demo.add_argument(
        "--halving",
        type=int,
        default=0,
        help="successive halving for pbt: prune the worse half this many times, "
        "survivors train twice as long each stage (default 0: off)",
    )
    demo.add_argument(
        "--tuner",
        choices=("pbt", "guard"),
        default="pbt",
        help="pbt: a population (default); guard: one guarded run",
    )
    demo.add_argument(
        "--population",
        type=int,
        default=None,
        help="population size for pbt (default 16 on digits, 8 on cartpole)",
    )
    demo.add_argument(
        "--windows",
        "--generations",
        dest="windows",
        type=int,
        default=30,
        help="training windows; a PBT generation is one window (default 30)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="model (default mlp)")
    demo.add_argument(
        "--steps-per-window",
        type=int,
        default=None,
        help="optimizer steps per window (default: one epoch)",
    )
    demo.add_argument("--hidden", default="64", help="hidden widths, comma separated (default 64)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    plot = sub.add_parser(
        "plot",
        help="draw a run directory's figures as PNGs (needs matplotlib)",
        description="Draw the figures a run directory's records support (losses, "
        "accuracy, F1, hyperparameter trajectories, PBT lineage, cost vs score) as PNG "
        "files and print their paths.",
    )
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (with trials/)")
    plot.add_argument(
        "--out", metavar="DIR", default=None, help="write the PNGs here (default: RUN_DIR)"
    )
    plot.set_defaults(func=_plot)
    return parser


def _check_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The ``demo`` options' checks and defaults (``parser.error`` exits with status 2)."""
    if args.windows < 1:
        parser.error(f"--windows must be >= 1, got {args.windows}")
    if args.population is None:
        args.population = 8 if args.task == "cartpole" else 16
    if args.task == "cartpole" and args.tuner != "pbt":
        parser.error("--task cartpole runs PBT only (--tuner pbt)")
    if args.population < 2:
        parser.error(f"--population must be >= 2, got {args.population}")
    if args.steps_per_window is not None and args.steps_per_window < 1:
        parser.error(f"--steps-per-window must be >= 1, got {args.steps_per_window}")
    if args.halving and (args.tuner != "pbt" or args.task == "cartpole"):
        parser.error("--halving applies to --tuner pbt on digits or breast_cancer")
    if args.task == "breast_cancer" and (args.tuner != "pbt" or args.model != "mlp"):
        parser.error("--task breast_cancer runs PBT of MLPs (--tuner pbt --model mlp)")
    if args.halving:
        from .demo import halving_stages

        try:
            halving_stages(args.population, args.windows, args.halving)
        except ValueError as err:
            parser.error(f"--{err}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hagfish`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        _check_demo(parser, args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
