"""The ``hagfish`` command.

``hagfish demo`` tunes a built-in task (:data:`hagfish_jax.tasks.REGISTRY`; by default
a population of 16 flax MLPs on the bundled digits, population-based training as one
vmapped program) through :class:`hagfish_jax.Loop`, shows a progress bar, prints the
run's :class:`~hagfish_jax.shell.demo.RunSummary` and writes a run directory.
``--tuner guard`` tunes one model with guarded finite differences instead.

``hagfish hpo`` runs rounds of whole trials steered by the advisors' council (offline
heuristics by default, ``--advisor llm`` for an OpenAI-compatible endpoint); see
:mod:`hagfish_jax.shell.hpo`.

``hagfish controller train`` meta-trains a learned hyperparameter controller and
``hagfish controller eval`` compares it with the fixed default on a held-out task; see
:mod:`hagfish_jax.shell.controller_cli`.

``hagfish plot RUN_DIR [--out DIR]`` draws a run directory's figures as PNGs (needs
matplotlib; see :mod:`hagfish_jax.shell.plots`) and prints their paths.

This module is argument parsing and printing; the runs live in
:mod:`hagfish_jax.shell.demo` and the figures in :mod:`hagfish_jax.shell.plots`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..tasks import REGISTRY

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    try:
        from tqdm.auto import tqdm

        from .. import tasks
        from . import demo
        from .records import RunRecords

        entry = tasks.REGISTRY[args.task]
        if "model" in entry.options:  # fails early without scikit-learn
            import sklearn  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        print(f"hagfish demo: {err}; pip install 'hagfish-jax[tasks]'", file=sys.stderr)
        return 1
    from .lock import LockedError
    from .records import DamagedRecordError

    if args.tensorboard:
        from .tensorboard import _tensorboardx

        try:
            _tensorboardx()
        except ImportError as err:
            print(f"hagfish demo: {err}", file=sys.stderr)
            return 1
    cache = _compile_cache(args)
    if isinstance(cache, int):
        return cache
    skip = ("func", "quiet", "compile_cache", "no_compile_cache", "tensorboard")
    # the build options the task takes, and none it does not
    skip += tuple(k for k in ("model", "hidden", "steps_per_window") if k not in entry.options)
    config = {k: getattr(args, k) for k in sorted(vars(args)) if k not in skip}
    options = {}
    if "model" in entry.options:
        options = dict(model=args.model, hidden=args.hidden, steps_per_window=args.steps_per_window)
    meta = {"config": config}
    if args.tensorboard:  # TensorBoard tags hyperparameters by name from the first row on
        meta["hparams"] = list(tasks.make(args.task, seed=args.seed, **options).space.names)
    # Rerunning into a directory that holds another run replaces it; the same run
    # again adds no duplicate rows.
    try:
        records = RunRecords(
            args.out, meta=meta, on_mismatch="replace", tensorboard=args.tensorboard
        )
    except (LockedError, DamagedRecordError, NotADirectoryError) as err:
        print(f"hagfish demo: {err}", file=sys.stderr)
        return 2
    with tqdm(total=args.windows, unit="window", desc="compiling", disable=args.quiet) as bar:
        started: list[bool] = []

        def progress(done: int, score: float | None, hparams: dict | None) -> None:
            if not started:  # the first window compiled: restart the clock so the
                started.append(True)  # rate shows training only
                bar.set_description("training")
                bar.reset()
            # a population: this window's best score and the members' median values
            many = args.tuner == "pbt"
            shown = {"best" if many else "score": f"{score:.3f}" if score is not None else "nan"}
            for name, value in list((hparams or {}).items())[:2]:
                shown[f"median {name}" if many else name] = f"{value:.3g}"
            bar.set_postfix(shown)
            bar.update(done - bar.n)

        with _pinned(entry.one_cpu):
            run = demo.run(
                args.task,
                tuner=args.tuner,
                population=args.population if args.tuner == "pbt" else None,
                windows=args.windows,
                seed=args.seed,
                halving=args.halving,
                progress=progress,
                records=records,
                stop_on_interrupt=True,
                **options,
            )
    out = demo.write_run(args.out, run, records)
    records.close()
    run.summary.report(out)
    if args.tensorboard:
        logdir = out / "tensorboard" if args.tensorboard is True else args.tensorboard
        print(f"TensorBoard: tensorboard --logdir {logdir}")
    if cache is not None:
        from . import compile_cache

        done = compile_cache.stats() - cache[1]
        print(
            f"compile cache {cache[0]}: {done.requested} XLA programs, {done.from_cache} "
            f"loaded from the cache, {done.compiled} compiled"
        )
    return 130 if run.summary.reason == "stopped" else 0  # 130: stopped by Ctrl-C


def _compile_cache(args: argparse.Namespace):
    """Turn the persistent compilation cache on (the default) before any jax work:
    ``(directory, stats before)``, ``None`` when it is off, or exit status 2."""
    off = os.environ.get("HAGFISH_COMPILE_CACHE", "1").strip().lower() in ("0", "false", "no")
    if args.no_compile_cache or (off and args.compile_cache is None):
        return None
    from . import compile_cache

    try:
        directory = compile_cache.enable(args.compile_cache)
    except OSError as err:
        print(f"hagfish demo: --compile-cache: {err}", file=sys.stderr)
        return 2
    return directory, compile_cache.stats()


def _pinned(one_cpu: bool):
    """Pinned to one core for the tasks whose programs stalled, when the installed jax
    is a release with the stall (see ``_affinity``)."""
    import contextlib

    if not one_cpu:
        return contextlib.nullcontext()
    from ._affinity import pinned_if_needed

    return pinned_if_needed()


def _plot(args: argparse.Namespace) -> int:
    from . import plots
    from .records import DamagedRecordError

    try:
        paths = plots.plot_run(args.run_dir, out=args.out)
    except (FileNotFoundError, DamagedRecordError) as err:
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
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="hagfish", description="JAX-native hyperparameter tuning while models train."
    )
    parser.add_argument("--version", action="version", version=f"hagfish_jax {__version__}")
    sub = parser.add_subparsers(dest="command")
    from .controller_cli import add_parser as add_controller
    from .hpo_cli import add_parser as add_hpo
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
        choices=sorted(REGISTRY),
        default="digits",
        help="; ".join(f"{k}: {e.description}" for k, e in REGISTRY.items()) + " (default digits)",
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
        help="population size for pbt (default: "
        + ", ".join(f"{e.population} on {k}" for k, e in REGISTRY.items())
        + ")",
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
    demo.add_argument(
        "--hidden", default=None, help="hidden widths, comma separated (default 64)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument(
        "--compile-cache",
        metavar="DIR",
        default=None,
        help="keep compiled XLA programs here, so the same run again compiles nothing "
        "(default: $HAGFISH_CACHE_DIR, else ~/.cache/hagfish_jax/xla; "
        "HAGFISH_COMPILE_CACHE=0 turns the default off)",
    )
    demo.add_argument(
        "--no-compile-cache", action="store_true", help="compile everything afresh"
    )
    demo.add_argument(
        "--tensorboard",
        metavar="DIR",
        nargs="?",
        const=True,
        default=None,
        help="also write TensorBoard event files as the run goes, into DIR (default "
        "OUT/tensorboard); needs pip install 'hagfish-jax[tensorboard]'",
    )
    demo.set_defaults(func=_demo)
    add_controller(sub)
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
    add_hpo(sub)
    parser.demo = demo  # the demo's own parser: its option errors name "hagfish demo"
    return parser


def _check_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The ``demo`` options' checks and defaults (``parser.error`` exits with status 2)."""
    entry = REGISTRY[args.task]
    if args.windows < 1:
        parser.error(f"--windows must be >= 1, got {args.windows}")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    # a build option the task does not take is refused, not recorded and dropped
    for flag, name in (("--hidden", "hidden"), ("--steps-per-window", "steps_per_window")):
        if getattr(args, name) is not None and name not in entry.options:
            parser.error(f"--task {args.task} takes no {flag}")
    if "hidden" in entry.options:
        hidden = "64" if args.hidden is None else args.hidden
        try:
            widths = tuple(int(h) for h in hidden.split(","))
        except ValueError:
            widths = ()
        if not widths or min(widths) < 1:
            parser.error(f"--hidden must be positive integers separated by commas, got {hidden!r}")
        args.hidden = widths
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out} is a file; give a directory")
    if args.population is not None and args.tuner != "pbt":
        parser.error(f"--population is for --tuner pbt; --tuner {args.tuner} tunes one model")
    if args.population is None:
        args.population = entry.population
    if args.tuner not in entry.tuners:
        parser.error(
            f"--task {args.task} runs {' or '.join(entry.tuners)} only, not --tuner {args.tuner}"
        )
    if args.model not in entry.models:
        parser.error(
            f"--task {args.task} has --model {' or '.join(entry.models)} only, not {args.model}"
        )
    if args.population < 2:
        parser.error(f"--population must be >= 2, got {args.population}")
    if args.steps_per_window is not None and args.steps_per_window < 1:
        parser.error(f"--steps-per-window must be >= 1, got {args.steps_per_window}")
    if args.halving and args.tuner != "pbt":
        parser.error("--halving applies to --tuner pbt")
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
    if args.command == "demo":  # its errors say "hagfish demo: error: ..."
        _check_demo(parser.demo, args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
