"""Population benchmark, part ``throughput``: 32 members on digits, equal optimizer
steps, compilation included.

(a) the vmapped PBT population (``hj.program.build(task, hj.pbt(task.space),
population=32)``), all windows in one jitted ``lax.scan``; (b) the same 32 members (same
initial hyperparameters) one after another, each one call of a single compiled
``lax.scan`` program that takes its hyperparameters as arrays; (c) Optuna-style trials
with the same 32 hyperparameter sets (enqueued, no pruning): each trial builds
``optax.adamw`` from the sampled Python floats (dropout and label smoothing are Python
constants too) and jits a fresh train function. Targets: (b)/(a) >= 1.0 and (c)/(a) >=
10 in wall time. The table also gives the XLA compile seconds and, for (a) and (b), a
warm re-run of the same work with the compiled programs. Repeats rebuild everything
(fresh compiles) and alternate the order of the methods.

    python benchmarks/population.py --part throughput [--repeats 3] [--quick]
    python benchmarks/population_throughput.py [--repeats 3]      # the same
"""

from __future__ import annotations

import math
import statistics

import jax.numpy as jnp

import hagfish_jax as hj
from _common import Setup, make_task, ok, run_population, run_sequential, sampled_hparams
from _optuna import run_optuna


def part_throughput(args) -> dict:
    setup = Setup("throughput", members=args.tp_members, windows=args.tp_windows)
    task = make_task(setup, 0)
    hps = sampled_hparams(task.space, 0, setup.members)

    def hparams_from_list(key, n):
        del key
        return {k: jnp.asarray([hp[k] for hp in hps], jnp.float32) for k in hps[0]}

    cases = {
        "(a) vmapped PBT population": lambda: run_population(
            task, setup, 0, hj.pbt(task.space), hparams_from_list, warm=True
        ),
        "(b) one after another, one compiled scan": lambda: run_sequential(
            task, setup, 0, hps, warm=True
        ),
        "(c) Optuna trials, optimizer rebuilt + jit per trial": lambda: run_optuna(
            task, setup, 0, "random", "rebuilt", enqueue=hps, pruner=False
        ),
    }
    results = {name: [] for name in cases}
    for r in range(args.repeats):
        for name in list(cases) if r % 2 == 0 else list(cases)[::-1]:
            results[name].append(cases[name]())
    base = results["(a) vmapped PBT population"]
    steps = base[0].steps
    print(
        f"\n== throughput: {setup.members} members x {setup.windows} windows x "
        f"{task.steps_per_window} steps = {steps} optimizer steps each, compile included, "
        f"repeats={args.repeats} (median over repeats)"
    )
    print(
        "wall s: compile included; XLA compile s: XLA's share of it (tracing and lowering are "
        "extra); warm s: the same work again with the compiled programs"
    )
    print(
        f"{'method':<54} {'wall s':>7} {'XLA compile s':>13} {'compiles':>8} {'steps/s':>8} "
        f"{'x (a) time':>10} {'target':>10} {'warm s':>7} {'x (a) warm':>10}"
    )
    targets = {"(b)": 1.0, "(c)": 10.0}
    out = {}
    for name, rs in results.items():
        assert all(r.steps == steps for r in rs), (name, [r.steps for r in rs])
        wall = statistics.median(r.wall for r in rs)
        ratio = statistics.median(r.wall / b.wall for r, b in zip(rs, base))
        target = targets.get(name[:3])
        mark = f">={target:g} {ok(ratio >= target)}" if target else ""
        warm = statistics.median(r.warm for r in rs)
        warm_ratio = statistics.median(r.warm / b.warm for r, b in zip(rs, base))
        warm_cols = "" if math.isnan(warm) else f"{warm:>7.3f} {warm_ratio:>10.2f}"
        print(
            f"{name:<54} {wall:>7.2f} {statistics.median(r.compile_s for r in rs):>13.2f} "
            f"{statistics.median(r.compiles for r in rs):>8.0f} {steps / wall:>8.0f} "
            f"{ratio:>10.2f} {mark:>10} {warm_cols}"
        )
        out[name] = {"wall": wall, "ratio": ratio, "warm": warm}
    return out


if __name__ == "__main__":
    import sys

    import population

    population.main(["--part", "throughput", *sys.argv[1:]])
