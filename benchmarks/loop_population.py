"""hj.Loop over a population: the Python time the Loop adds per evaluation.

A population of 16 members of a tiny task (a few SGD steps on a quadratic) tuned by PBT,
evaluated every window. Three ways to run the same windows:

* ``scan``: the tuned program in one jitted ``lax.scan`` (no host work at all);
* ``plain``: a Python loop over the same jitted pieces the Loop calls (train, evaluate,
  score, tune) with one host read of the scores per window, as a hand-written driver
  would do;
* ``hj.Loop``: ``Loop(task=..., tuner=hj.pbt(...), population=16).run(...)``.

The Loop's overhead per evaluation is ``(loop - plain) / windows`` (target < 1 ms). All
three are timed in the same process, alternating order, median of the repeats.

    python benchmarks/loop_population.py [--windows 1000] [--population 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj


def make_task(dim: int = 8) -> hj.Task:
    space = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    target = jnp.linspace(-1.0, 1.0, dim)

    def init(key, hparams):
        w = jax.random.normal(key, (dim,))
        return hj.set_hparams({"w": w, "opt": tx.init(w)}, hparams)

    def train_window(state, key):
        def step(s, _):
            g = jax.grad(lambda w: jnp.sum((w - target) ** 2))(s["w"])
            u, opt = tx.update(g, s["opt"], s["w"])
            return {"w": s["w"] + u, "opt": opt}, None

        state, _ = jax.lax.scan(step, state, None, length=4)
        return state, {"loss": jnp.sum((state["w"] - target) ** 2)}

    def evaluate(state):
        return {"score": -jnp.sum((state["w"] - target) ** 2)}

    return hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=space,
                   default_hparams={"learning_rate": 0.1}, name="quadratic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, windows = args.population, args.windows
    task = make_task()
    tuner = hj.pbt(task.space)
    prog = hj.program.build(task, tuner, population=n)
    hparams = task.space.sample(jax.random.key(1), n)
    start = jax.jit(prog.init)(jax.random.key(0), hparams)
    train, evaluate = hj.program.compiled(task, n)
    score_fn, tune_fn = jax.jit(prog.score), jax.jit(prog.tune)
    scan = jax.jit(lambda c: hj.program.scan(prog, c, windows))
    backoff = dict(base=1, backoff=1.0, max_interval=1, plateau=10**9, dormant=10**9)

    def run_scan():
        carry, rows = scan(start)
        jax.block_until_ready(rows["score"])

    def run_plain():
        carry = start
        for _ in range(windows):
            key, k = jax.random.split(carry.key)
            state, metrics = train(carry.state, k, carry.alive)
            carry = carry._replace(state=state, window=carry.window + 1, key=key)
            ev = evaluate(carry.state)
            np.asarray(score_fn(carry, metrics, ev))  # the host reads the scores
            carry, row = tune_fn(carry, metrics, ev, np.bool_(False))
            jax.device_get((row["rollback"], carry.best.score, carry.best.window))

    loop = hj.Loop(task=task, tuner=tuner, population=n, backoff=hj.Backoff(**backoff))

    def run_loop():  # the same Loop each time: its programs compile once, in the warm-up
        result = loop.run(None, jax.random.key(0), windows, hparams=hparams)
        assert result.evaluations == windows, result.evaluations

    cases = {"scan": run_scan, "plain": run_plain, "loop": run_loop}
    for fn in cases.values():  # compile
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for rep in range(args.repeats):
        for k in list(cases) if rep % 2 == 0 else list(cases)[::-1]:
            t = time.perf_counter()
            cases[k]()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n## hj.Loop over a population of {n}: {windows} windows, evaluation every window "
          f"({args.repeats} repeats, median; {jax.default_backend()})\n")
    print("| case | total s | us per window | vs plain |")
    print("|---|---:|---:|---:|")
    labels = {"scan": "tuned program in one lax.scan", "plain": "Python loop, same jitted calls",
              "loop": "hj.Loop.run (task=, population=, pbt)"}
    for k in cases:
        print(f"| {labels[k]} | {med[k]:.3f} | {med[k] / windows * 1e6:.0f} | "
              f"{med[k] / med['plain']:.2f}x |")
    over = (med["loop"] - med["plain"]) / windows * 1e3
    print(f"\nLoop overhead per evaluation vs the plain driver: {over:.3f} ms "
          f"(target < 1 ms: {'met' if over < 1 else 'missed'})")


if __name__ == "__main__":
    main()
