"""Population benchmark, part ``warm``: the throughput part's three methods, each a
second search in a fresh process whose persistent compilation cache a first search
filled (issue 12, item 6).

A user who tunes the same model twice (tomorrow's sweep, another seed, a notebook
restarted) meets a warm cache: ``hagfish demo`` turns it on by default and
``hj.enable_compilation_cache()`` does it for library users. What a warm cache is worth
depends on the wiring. For each method and repeat, in a new cache directory:

1. a first process runs the method on hyperparameters drawn with seed 0 (and fills
   the cache; its wall time is the "cold" column);
2. a second, fresh process runs it on *new* hyperparameters (seed 1): a second search,
   not a replay. Its wall time, compile count and cache hits are the "warm cache"
   columns, and the targets are read off it.

(a) the vmapped PBT population and (b) the members one after another take their
hyperparameters as arrays, so the second search finds every program in the cache;
(c) Optuna-style trials that rebuild the optimizer from Python floats and jit per
trial compile a new program for each new set of values, warm cache or not.
Wall time runs from building the programs to the selected model's test accuracy,
compilation (or loading) included; process start and imports are outside it.
``--threefry unrolled`` has every process call ``hj.unroll_threefry()`` first. Targets
(issue 12): with a warm cache, (b)/(a) >= 1.0 and (c)/(a) >= 10. Row (s) is
(a) with ``shared_key=True`` (every member trains a window with the same key), and the
last line reads the targets off it.

    python benchmarks/population_warm.py [--repeats 3] [--quick] [--methods ab]
    python benchmarks/population_warm.py --threefry unrolled   # hj.unroll_threefry() first
    python benchmarks/population_warm.py --child a --seed 1 --cache DIR   # one process
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = {
    "a": "(a) vmapped PBT population",
    "b": "(b) one after another, one compiled scan",
    "c": "(c) Optuna trials, optimizer rebuilt + jit per trial",
    "s": "(s) = (a) with shared_key=True",
}
TARGETS = {"b": 1.0, "c": 10.0}


def child(
    method: str, seed: int, cache: str, members: int, windows: int, threefry: str = "jax"
) -> dict:
    """One search in this process, with the persistent cache in ``cache``."""
    import hagfish_jax as hj

    hj.enable_compilation_cache(cache)
    if threefry == "unrolled":
        hj.unroll_threefry()
    import numpy as np

    from _common import Setup, make_task, run_population, run_sequential, sampled_hparams
    from _optuna import run_optuna

    setup = Setup("warm", members=members, windows=windows)
    task = make_task(setup, 0)  # the data split is fixed; the draws are the search's
    hps = sampled_hparams(task.space, seed, setup.members)
    before = hj.compile_cache.stats()
    t0 = time.perf_counter()
    if method in "as":  # the values are an argument of the jitted start, not constants
        given = {k: np.asarray([hp[k] for hp in hps], np.float32) for k in hps[0]}
        shared = method == "s"
        result = run_population(task, setup, 0, hj.pbt(task.space), given, shared_key=shared)
    elif method == "b":
        result = run_sequential(task, setup, 0, hps)
    else:
        result = run_optuna(task, setup, 0, "random", "rebuilt", enqueue=hps, pruner=False)
    wall = time.perf_counter() - t0
    counts = hj.compile_cache.stats() - before
    return {
        "wall": wall,
        "requested": counts.requested,
        "compiled": counts.compiled,
        "from_cache": counts.from_cache,
        "steps": result.steps,
        "test": result.test,
    }


def spawn(method: str, seed: int, cache: str, args) -> dict:
    cmd = [
        sys.executable, str(HERE / "population_warm.py"), "--child", method, "--seed", str(seed),
        "--cache", cache, "--members", str(args.members), "--windows", str(args.windows),
        "--threefry", args.threefry,
    ]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {method} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 members x 2 windows, 1 repeat")
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--methods", default="".join(METHODS), help="a subset, e.g. ab")
    parser.add_argument(
        "--threefry", choices=("jax", "unrolled"), default="jax",
        help="jax: JAX's CPU loop (the default); unrolled: hj.unroll_threefry() first",
    )
    parser.add_argument("--child", choices=tuple(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(
            child(args.child, args.seed, args.cache, args.members, args.windows, args.threefry)
        ))
        return {}
    if args.quick:
        args.members, args.windows, args.repeats = 4, 2, 1
    import jax

    from _common import ok

    print(
        f"jax {jax.__version__} backend={jax.default_backend()} cpus={os.cpu_count()} "
        f"threefry={args.threefry}"
    )
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or "a" not in args.methods:
        parser.error(f"--methods: letters of {''.join(METHODS)}, with a (the ratios are "
                     f"read against it); got {args.methods!r}")
    chosen = [m for m in METHODS if m in args.methods]
    runs: dict[str, list[tuple[dict, dict]]] = {m: [] for m in chosen}
    for r in range(args.repeats):
        order = chosen if r % 2 == 0 else chosen[::-1]
        for m in order:
            with tempfile.TemporaryDirectory(prefix="hagfish-warm-") as cache:
                cold = spawn(m, 0, cache, args)
                warm = spawn(m, 1, cache, args)
            runs[m].append((cold, warm))
    steps = runs["a"][0][1]["steps"]
    print(
        f"\n== throughput with a warm compilation cache: {args.members} members x "
        f"{args.windows} windows, {steps} optimizer steps each method; a second search "
        f"(new draws) in a fresh process after a first one filled the cache; "
        f"repeats={args.repeats} (median)"
    )
    print(
        f"{'method':<54} {'cold s':>7} {'warm-cache s':>12} {'compiled':>8} "
        f"{'from cache':>10} {'x (a)':>7} {'target':>11}  x (a) per repeat"
    )
    out = {}
    for m, rs in runs.items():
        assert all(w["steps"] == steps for _, w in rs), (m, [w["steps"] for _, w in rs])
        cold = statistics.median(c["wall"] for c, _ in rs)
        warm = statistics.median(w["wall"] for _, w in rs)
        ratios = [w["wall"] / a["wall"] for (_, w), (_, a) in zip(rs, runs["a"])]
        ratio = statistics.median(ratios)
        target = TARGETS.get(m)
        mark = f">={target:g} {ok(ratio >= target)}" if target else ""
        print(
            f"{METHODS[m]:<54} {cold:>7.2f} {warm:>12.2f} "
            f"{statistics.median(w['compiled'] for _, w in rs):>8.0f} "
            f"{statistics.median(w['from_cache'] for _, w in rs):>10.0f} {ratio:>7.2f} {mark:>11}  "
            + " ".join(f"{x:.2f}" for x in ratios)
        )
        out[m] = {"cold": cold, "warm": warm, "ratio": ratio}
    marks = []
    for m, target in TARGETS.items():
        if m not in runs or "s" not in runs:
            continue
        r = statistics.median(w["wall"] / s["wall"] for (_, w), (_, s) in zip(runs[m], runs["s"]))
        marks.append(f"{m}/s = {r:.2f} (>={target:g} {ok(r >= target)})")
    if marks:
        print("with shared_key=True: " + ", ".join(marks))
    return out


if __name__ == "__main__":
    main()
