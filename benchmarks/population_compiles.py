"""Population benchmark, part ``compiles``: a 100-generation PBT run (16 members on
digits) dispatched generation by generation (one jitted ``program.window`` call each)
and in ``lax.scan`` chunks of 10: a trace counter inside the generation function and
the XLA compile count show that only the initial programs compile.

    python benchmarks/population.py --part compiles [--quick]
"""

from __future__ import annotations

import jax
import numpy as np

import hagfish_jax as hj
from _common import Measure, Setup, make_task


def part_compiles(args) -> dict:
    setup = Setup("compiles", members=16, steps_per_window=args.compile_steps)
    task = make_task(setup, 0)
    n, generations = setup.members, args.generations
    program = hj.program.build(task, hj.pbt(task.space), population=n)
    traces = {"init": 0, "generation": 0}

    def programs():  # fresh functions, so each wiring compiles its own
        def counted_init(seed):
            traces["init"] += 1
            k_hp, k_run = jax.random.split(jax.random.key(seed))
            return program.init(k_run, task.space.sample(k_hp, n))

        def counted_generation(carry):
            traces["generation"] += 1
            return program.window(carry)

        def counted_chunk(carry):
            traces["generation"] += 1
            return hj.program.scan(program, carry, 10)

        return jax.jit(counted_init), jax.jit(counted_generation), jax.jit(counted_chunk)

    print(
        f"\n== compilations over a {generations}-generation PBT run ({n} members, "
        f"{task.steps_per_window} steps per window)"
    )
    print(
        f"{'wiring':<40} {'first call':>12} {'later calls':>12} {'traces':>7} "
        f"{'distinct hparams':>16} {'exploits':>8}"
    )
    out = {}
    for wiring in ("dispatched: one jitted call per gen", "scan: 10 chunks of 10 generations"):
        traces.update(init=0, generation=0)
        lrs = []
        parents = []
        start, step, chunk = programs()
        if wiring.startswith("dispatched"):
            with Measure() as first:
                carry = start(0)
                carry, row = step(carry)
            lrs.append(row["learning_rate"])
            parents.append(row["parent"])
            with Measure() as later:
                for _ in range(generations - 1):
                    carry, row = step(carry)
                    lrs.append(row["learning_rate"])
                    parents.append(row["parent"])
                jax.block_until_ready(carry)
        else:
            with Measure() as first:
                carry, rows = chunk(start(0))
            lrs.extend(rows["learning_rate"])
            parents.extend(rows["parent"])
            with Measure() as later:
                for _ in range(generations // 10 - 1):
                    carry, rows = chunk(carry)
                    lrs.extend(rows["learning_rate"])
                    parents.extend(rows["parent"])
                jax.block_until_ready(carry)
        lrs = np.asarray(jax.device_get(lrs)).reshape(-1, n)
        parents = np.asarray(jax.device_get(parents)).reshape(-1, n)
        distinct = len(np.unique(lrs))
        exploits = int(np.sum(parents != np.arange(n)))
        print(
            f"{wiring:<40} {first.compiles:>12} {later.compiles:>12} "
            f"{traces['init'] + traces['generation']:>7} {distinct:>16} {exploits:>8}"
        )
        out[wiring] = {"first": first.compiles, "later": later.compiles, "distinct": distinct}
    print(
        "first call: XLA compiles of the init and the generation program; later calls: "
        "compiles during the other generations (target 0); distinct hparams: distinct "
        "learning rates trained with, each a separate compile in the rebuilt wiring"
    )
    return out


if __name__ == "__main__":
    import sys

    import population

    population.main(["--part", "compiles", *sys.argv[1:]])
