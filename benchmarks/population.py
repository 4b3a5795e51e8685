"""Population-based training on digits against one-after-another runs and Optuna.

Four benchmarks, each a ``--part`` and each its own module; every table puts the
methods side by side and every ratio is measured in the same run. Every population
runs through ``hj.program`` (the library's one tuned window), all windows in one jitted
``lax.scan``.

* ``throughput`` (``population_throughput.py``): 32 members, equal optimizer steps,
  compilation included: the vmapped PBT population against the same members one after
  another and against Optuna trials that rebuild and re-jit the optimizer per trial;
* ``budget`` (``population_budget.py``): PBT against Optuna (TPE, random) and the
  default hyperparameters at an equal number of optimizer steps, on a normal and a
  hard digits variant, with anytime curves;
* ``compiles`` (``population_compiles.py``): a 100-generation PBT run compiles only
  its initial programs, dispatched or scanned in chunks;
* ``toy`` (``population_toy.py``): a best learning rate that moves by 100x and back,
  PBT against fixed rates;
* ``warm`` (``population_warm.py``): the throughput part's methods as a second search
  in a fresh process with a warm persistent compilation cache;
* ``compile_time`` (``population_compile_time.py``): XLA compile seconds of the
  32-member programs against the single-member one, each in a fresh process.

``warm`` and ``compile_time`` start their own processes and are not part of ``all``.

Shared pieces: ``_common.py`` (measuring, model selection, the digits setups, the
population and one-after-another runners) and ``_optuna.py`` (the two Optuna wirings).
Each part's module documents its methods and targets.

Before any timing, every method runs once on a tiny configuration, so that one-off
costs of the process (eager ops compiled on first use) fall on none of them; the same
warm-up checks that both Optuna wirings give the same validation loss.

Run::

    python benchmarks/population.py --part all --seeds 5
    python benchmarks/population.py --part budget --variant hard --seeds 5
    python benchmarks/population.py --part all --quick      # small smoke configuration
    python benchmarks/population.py --part budget --methods pbt --pbt-ready 1   # PBT alone

Optuna and matplotlib are needed (``pip install 'hagfish-jax[bench,plot]'``).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from _common import Setup, install_compile_counter, make_task
from _optuna import inject_programs, rebuilt_programs
from population_budget import EXTRA, METHODS, part_budget, run_method
from population_compiles import part_compiles
from population_throughput import part_throughput
from population_toy import part_toy


def warm_up() -> None:
    """Compile the few eager ops every method shares, so no method pays for them first."""
    setup = Setup("warm-up", members=2, windows=1, steps_per_window=2, hidden=(8,))
    task = make_task(setup, 0)
    for method in METHODS:
        run_method(method, setup, 0)
    # fairness: both Optuna wirings train the same model on the same batches
    hp = task.default_hparams
    start_i, make_i, eval_i = inject_programs(task, 0)
    start_r, make_r, eval_r = rebuilt_programs(task, setup, 0)
    a = eval_i(make_i(hp)(start_i(0, hp), 0))["val_loss"]
    b = eval_r(make_r(hp)(start_r(0, hp), 0))["val_loss"]
    np.testing.assert_allclose(float(a), float(b), rtol=1e-4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("throughput", "budget", "compiles", "toy", "warm", "compile_time", "all"),
        default="all",
    )
    parser.add_argument("--variant", choices=("normal", "hard", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats")
    parser.add_argument("--quick", action="store_true", help="small smoke configuration")
    parser.add_argument(
        "--methods",
        type=lambda s: tuple(m.strip() for m in s.split(",")),
        default=METHODS,
        help=f"budget part: a comma-separated subset of {', '.join(METHODS + EXTRA)} "
        "(no targets)",
    )
    parser.add_argument(
        "--pbt-ready", type=int, default=None,
        help="budget part: PBT's ready (default: the library's)",
    )
    parser.add_argument("--no-plot", dest="plot", action="store_false")
    args = parser.parse_args(argv)
    unknown = set(args.methods) - set(METHODS + EXTRA)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS + EXTRA}")
    args.tp_members, args.tp_windows = (4, 2) if args.quick else (32, 10)
    args.generations = 20 if args.quick else 100
    args.compile_steps = 4 if args.quick else None
    if args.quick:
        args.seeds, args.repeats = min(args.seeds, 2), 1

    if args.part in ("warm", "compile_time"):  # fresh processes of their own
        import population_compile_time
        import population_warm

        module = population_warm if args.part == "warm" else population_compile_time
        return module.main(["--quick"] if args.quick and args.part == "warm" else
                           ["--repeats", str(args.repeats)])
    install_compile_counter()
    start = time.perf_counter()
    print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.device_count()}")
    warm_up()
    out = {}
    parts = ("throughput", "budget", "compiles", "toy") if args.part == "all" else (args.part,)
    for part in parts:
        t0 = time.perf_counter()
        if part == "throughput":
            out[part] = part_throughput(args)
        elif part == "budget":
            variants = ("normal", "hard") if args.variant == "both" else (args.variant,)
            out[part] = {v: part_budget(args, v) for v in variants}
        elif part == "compiles":
            out[part] = part_compiles(args)
        else:
            out[part] = part_toy(args)
        print(f"[{part}: {time.perf_counter() - t0:.1f} s]")
    print(f"total {time.perf_counter() - start:.1f} s")
    return out


if __name__ == "__main__":
    main()
