"""Choosing ``hj.pbt``'s defaults on a development set (issue 12).

The development tasks are *not* the ones reported in ``population.py``,
``single_run.py`` or ``budget.py``: other data sizes, models, window lengths and split
seeds (100-104 by default; the reports use seeds 0-4):

* ``dev_mlp``: digits MLP (32,), half the train split, batch 32, 16 members x 16
  one-epoch windows;
* ``dev_cnn``: digits small CNN (16), half the train split, batch 32, 8-step windows,
  16 members x 12 windows;
* ``dev_bc``: breast cancer MLP (16,), batch 16, 16 members x 20 one-epoch windows;
* ``dev_stream``: the triangle-wave stream of ``population_toy.py`` with another
  dimension (4), period (50 windows), drift (0.3) and length (150 windows), 8 members;
  its number is the share of windows whose best member is on target.

Every configuration runs as ``hj.program.build(task, hj.pbt(task.space, ...),
population=16)`` from hyperparameters drawn from the task's space; ``random`` is the
same population with ``hj.fixed()`` (random search: every member keeps its draw for the
whole run, so both spend exactly the same optimizer steps; as in every tuned program, a
member restored from the same divergence more than 3 times in a row goes on at a tenth
of its learning rate). The model reported is the
program's own selection (``carry.best``: the best validation score over members and
windows, ties to the lower validation loss), and the number is its test accuracy.
The exploit interval is given relative to the run's length: ``ready = max(1,
round(r x windows))``.

    python benchmarks/pbt_defaults.py                       # the full grid, 5 seeds
    python benchmarks/pbt_defaults.py --tasks dev_bc --seeds 2 --quick
    python benchmarks/pbt_defaults.py --r 0.15 --perturb 0.5 2.0 --perturb 0.67 1.5
    python benchmarks/pbt_defaults.py --tuner pb2 --rs 0.05 0.15 --tasks dev_bc dev_mlp
    python benchmarks/pbt_defaults.py --tasks dev_stream --rs 1 2 3 5 8 0.15
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import hagfish_jax as hj
from hagfish_jax.tasks import breast_cancer, digits


class Dev(NamedTuple):
    members: int
    windows: int


DEV = {
    "dev_mlp": Dev(16, 16),
    "dev_cnn": Dev(16, 12),
    "dev_bc": Dev(16, 20),
    "dev_stream": Dev(8, 150),
}
#: the development stream: the triangle-wave regression of ``population_toy.py`` with
#: another dimension, period, drift and length (the reported toy is 8-dim, 2 periods of
#: 80 windows, drift 0.2, 4 members)
DEV_STREAM = dict(dim=4, half_period=25, periods=3, drift=0.3)


def dev_task(name: str, seed: int):
    if name == "dev_mlp":
        data = digits.load_digits_split(seed, train_fraction=0.5)
        return digits.make_task(data, batch_size=32, hidden=(32,))
    if name == "dev_cnn":
        data = digits.load_digits_split(seed, train_fraction=0.5)
        return digits.make_task(data, model="cnn", batch_size=32, steps_per_window=8, hidden=(16,))
    if name == "dev_stream":
        from population_toy import Toy, toy_task

        return toy_task(Toy(**DEV_STREAM), jax.random.fold_in(jax.random.key(seed), 7))
    if name == "dev_bc":
        return breast_cancer.make_task(
            breast_cancer.load_breast_cancer_split(seed), batch_size=16, hidden=(16,)
        )
    raise ValueError(name)


def run(task, tuner, members: int, windows: int, seed: int) -> tuple[float, float]:
    """(test accuracy, validation score) of the program's selected model; on the
    stream, (share of windows whose best member is on target, mean best score)."""
    program = hj.program.build(task, tuner, population=members, windows=windows)

    @jax.jit
    def go(seed):
        k_hp, k_run = jax.random.split(jax.random.key(seed))
        carry = program.init(k_run, task.space.sample(k_hp, members))
        carry, rows = hj.program.scan(program, carry, windows)
        if "err" in rows:  # the stream: the best member of each window, on target or not
            return jnp.mean(jnp.min(rows["err"], axis=1) <= 0.05), jnp.mean(rows["score"])
        return task.test_accuracy(carry.best.state), carry.best.score

    test, val = jax.device_get(go(seed))
    return float(test), float(val)


def configs(quick: bool):
    rs = (0.05, 0.25) if quick else (0.05, 0.15, 0.25, 0.35)
    fractions = (0.25,) if quick else (0.25, 0.5)
    resamples = (0.25,) if quick else (0.0, 0.25)
    for r, fraction, resample in itertools.product(rs, fractions, resamples):
        yield {"r": r, "fraction": fraction, "resample": resample, "perturb": (0.8, 1.25)}


def ready_value(text: str) -> int | float:
    return int(text) if text.isdigit() else float(text)


def label(cfg) -> str:
    lo, hi = cfg["perturb"]
    r = cfg["r"]
    r = f"{r}w" if isinstance(r, int) else f"{r:.2f}"
    return f"r={r} frac={cfg['fraction']:.2f} res={cfg['resample']:.2f} pert={lo}/{hi}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["dev_mlp", "dev_cnn", "dev_bc"],
                        choices=list(DEV))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tuner", choices=("pbt", "pb2"), default="pbt",
                        help="pb2: only r and fraction apply (it explores with its GP)")
    parser.add_argument("--rs", type=ready_value, nargs="+", default=None,
                        help="ready values to try (a float < 1: a share of the run; an "
                        "integer: windows), with --fraction/--resample")
    parser.add_argument("--perturb", nargs=2, type=float, action="append", default=None,
                        help="extra perturbation pairs to try at --r/--fraction/--resample")
    parser.add_argument("--r", type=float, default=None)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--resample", type=float, default=0.25)
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.perturb:
        r = 0.15 if args.r is None else args.r
        grid = [
            {"r": r, "fraction": args.fraction, "resample": args.resample, "perturb": tuple(p)}
            for p in args.perturb
        ]
    elif args.rs:
        grid = [{"r": r, "fraction": args.fraction, "resample": args.resample,
                 "perturb": (0.8, 1.25)} for r in args.rs]
    elif args.r is not None:
        grid = [{"r": args.r, "fraction": args.fraction, "resample": args.resample,
                 "perturb": (0.8, 1.25)}]
    else:
        grid = list(configs(args.quick))
    print(f"jax {jax.__version__} backend={jax.default_backend()}; seeds {seeds}; "
          f"tuner {args.tuner}")
    gaps: dict[str, list[float]] = {label(c): [] for c in grid}
    for name in args.tasks:
        dev = DEV[name]
        t0 = time.perf_counter()
        tasks = {s: dev_task(name, s) for s in seeds}
        rand = [run(tasks[s], hj.fixed(), dev.members, dev.windows, s)[0] for s in seeds]
        print(f"\n[{name}] {dev.members} members x {dev.windows} windows; random search "
              f"test acc median {100 * statistics.median(rand):.2f}% per seed "
              + " ".join(f"{100 * a:.2f}" for a in rand))
        print(f"{'config':<44} {'ready':>5} {'median':>7} {'mean gap':>8}  per-seed gap (points)")
        for cfg in grid:
            r = cfg["r"]
            ready = r if isinstance(r, int) else max(1, int(r * dev.windows + 0.5))
            accs = []
            for s in seeds:
                if args.tuner == "pb2":
                    tuner = hj.pb2(tasks[s].space, fraction=cfg["fraction"], ready=ready)
                else:
                    tuner = hj.pbt(tasks[s].space, fraction=cfg["fraction"],
                                   perturb=cfg["perturb"], resample=cfg["resample"], ready=ready)
                accs.append(run(tasks[s], tuner, dev.members, dev.windows, s)[0])
            g = [100 * (a - b) for a, b in zip(accs, rand)]
            gaps[label(cfg)].extend(g)
            print(f"{label(cfg):<44} {ready:>5} {100 * statistics.median(accs):>7.2f} "
                  f"{np.mean(g):>+8.2f}  " + " ".join(f"{x:+.2f}" for x in g), flush=True)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]")
    print("\n== over all development tasks and seeds: gap to random search (points)")
    print(f"{'config':<44} {'mean':>7} {'median':>7} {'wins':>5} {'losses':>6}")
    for lab, g in sorted(gaps.items(), key=lambda kv: -np.mean(kv[1])):
        print(f"{lab:<44} {np.mean(g):>+7.2f} {statistics.median(g):>+7.2f} "
              f"{sum(x > 0 for x in g):>5} {sum(x < 0 for x in g):>6}")


if __name__ == "__main__":
    jnp.zeros(())  # backend up before timing
    main()
