"""One model at a fixed compute budget: what should a user run? (issue 12)

Every method gets the same budget, ``K`` trials of ``W`` windows (``K x W`` windows of
training in all), and ends with one selected model, on five tasks:

* ``digits_mlp``: the digits MLP (64,), one-epoch windows (16 steps of 64);
* ``digits_cnn``: the small CNN (hidden 32), 8-step windows of 64;
* ``breast_cancer``: the breast cancer MLP (32,), one-epoch windows;
* ``toy``: the triangle-wave regression of ``population_toy.py`` (the range of good
  learning rates moves by 100x and back; the run's clock is part of its state);
* ``cartpole``: PPO on CartPole, a window is 4 PPO updates of 16 x 64 steps;
  ``cartpole_short`` is the same with 12 windows instead of 30 (a budget where random
  search does not already reach the 500 cap).

Methods (the tuned space is the task's own; every population starts from the same
``K`` draws of it):

* ``random``: random search: ``K`` trials of ``W`` windows, each with its own draw,
  kept fixed (``hj.program.build(task, hj.fixed(), population=K)``), except that, as
  in every tuned program, a trial restored from the same divergence more than 3 times
  in a row goes on at a tenth of its learning rate (``program.build(shrink=...)``;
  plain random search would leave it diverged, so this favours ``random``);
* ``pbt``: the same ``K`` draws as a PBT population (``hj.pbt(task.space)`` with its
  defaults), ``W`` windows: the recommended way to spend the budget on one model;
* ``guard(fd)``: the README's single guarded run (``hj.guard(hj.finite_difference(
  space), warmup=2, space=space)``) from the task's default hyperparameters, given the
  whole budget: ``K x W`` windows (on the toy, whose clock cannot run longer, ``W``
  windows of ``K`` times the steps).

Selection is the program's own (``carry.best``: the best validation score over
members and windows, ties to the lower validation loss), the same for every method.
Reported: digits and breast cancer, the selected model's test accuracy; toy, the share
of windows whose model is on target (excess error <= 0.05). On the toy the score is
the target error itself, so a population's model in window ``g`` is the member that
led window ``g - 1`` (member 0 in the first window): the one a user holds then, where
the best member of window ``g`` would pick on the reported number itself. CartPole,
the selected agent's return on 32 fresh episodes (actions sampled from the policy, at
most 500 steps). Seeds are the report seeds 0-4;
``pbt``'s defaults were chosen on other tasks and seeds (``pbt_defaults.py``).

    python benchmarks/single_run.py                        # every task
    python benchmarks/single_run.py --tasks toy --seeds 2  # one task
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp

import hagfish_jax as hj
from hagfish_jax.shell._affinity import pinned_if_needed
from hagfish_jax.tasks import breast_cancer, cartpole, digits
from population_toy import Toy, toy_task

METHODS = ("random", "pbt", "guard(fd)")


class Bench(NamedTuple):
    trials: int  # K
    windows: int  # W
    seeds: int
    metric: str


BENCH = {
    "digits_mlp": Bench(8, 20, 5, "test acc %"),
    "digits_cnn": Bench(8, 16, 5, "test acc %"),
    "breast_cancer": Bench(8, 20, 5, "test acc %"),
    "toy": Bench(4, 160, 5, "on target %"),
    "cartpole": Bench(8, 30, 5, "test return"),
    "cartpole_short": Bench(8, 12, 5, "test return"),
}


def make_task(name: str, seed: int, steps_factor: int = 1):
    """The task on split / drift ``seed``; ``steps_factor`` lengthens the toy's windows."""
    if name == "digits_mlp":
        return digits.make_task(digits.load_digits_split(seed))
    if name == "digits_cnn":
        return digits.make_task(
            digits.load_digits_split(seed), model="cnn", steps_per_window=8, hidden=(32,)
        )
    if name == "breast_cancer":
        return breast_cancer.make_task(breast_cancer.load_breast_cancer_split(seed))
    if name == "toy":
        toy = Toy()
        toy = toy._replace(steps=toy.steps * steps_factor)
        return toy_task(toy, jax.random.fold_in(jax.random.key(seed), 7))
    if name.startswith("cartpole"):
        return cartpole.make_task(hj.rl.PPO())
    raise ValueError(name)


def cartpole_test_return(ppo: hj.rl.PPO, params, key, episodes: int = 32) -> jax.Array:
    """Mean return of ``episodes`` fresh episodes (at most 500 steps), actions sampled."""
    env, net = ppo.env, ppo.network

    def episode(k):
        k_reset, k_run = jax.random.split(k)
        state = env.initial(k_reset)

        def step(carry, kk):
            state, done, ret = carry
            logits, _ = net.apply(params, env.observation(state, None).astype(jnp.float32))
            action = jax.random.categorical(kk, logits)
            nxt = env.transition(state, action, None)
            reward = env.reward(state, action, nxt, None)
            ret = ret + jnp.where(done, 0.0, reward)
            done = done | env.terminal(nxt, None)
            return (nxt, done, ret), None

        keys = jax.random.split(k_run, ppo.max_episode_steps)
        (_, _, ret), _ = jax.lax.scan(step, (state, False, 0.0), keys)
        return ret

    return jnp.mean(jax.vmap(episode)(jax.random.split(key, episodes)))


def run(name: str, method: str, seed: int) -> tuple[float, float]:
    """(reported metric, wall seconds incl. compile) of ``method`` on task ``name``."""
    bench = BENCH[name]
    k, w = bench.trials, bench.windows
    single = method == "guard(fd)"
    task = make_task(name, seed, steps_factor=k if single and name == "toy" else 1)
    space = task.space
    if single:
        tuner = hj.guard(hj.finite_difference(space), warmup=2, space=space)
        windows = w if name == "toy" else k * w
        program = hj.program.build(task, tuner, windows=windows)
    else:
        tuner = hj.pbt(space) if method == "pbt" else hj.fixed()
        windows = w
        program = hj.program.build(task, tuner, population=k, windows=windows)

    @jax.jit
    def go(seed):
        k_hp, k_run, k_test = jax.random.split(jax.random.key(seed), 3)
        if single:
            hp = {n: jnp.float32(v) for n, v in task.default_hparams.items()}
        else:
            hp = space.sample(k_hp, k)
        carry = program.init(k_run, hp)
        carry, rows = hj.program.scan(program, carry, windows)
        state = carry.best.state
        if name == "toy":
            err = rows["err"]
            if not single:  # the leader of the previous window (member 0 at first)
                score = jnp.where(jnp.isfinite(rows["score"]), rows["score"], -jnp.inf)
                lead = jnp.argmax(score, axis=1).astype(jnp.int32)
                held = jnp.concatenate([jnp.zeros((1,), jnp.int32), lead[:-1]])
                err = err[jnp.arange(windows), held]
            # a count, made a share on the host (XLA would multiply by 1/n)
            return jnp.sum(err <= Toy().threshold)
        if name.startswith("cartpole"):
            return cartpole_test_return(task.data, state.params, k_test)
        return task.test_accuracy(state) * 100

    # CartPole runs as the CLI runs it: pinned to one core when the installed jax has
    # the XLA CPU stall (jax 0.10: unpinned on a loaded 2-core machine its vmapped PPO
    # program hung; see stall.py)
    pin = pinned_if_needed() if name.startswith("cartpole") else contextlib.nullcontext()
    t0 = time.perf_counter()
    with pin:
        value = float(jax.device_get(go(seed)))
    if name == "toy":
        value = 100.0 * value / windows
    return value, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(BENCH), choices=list(BENCH))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=None, help="default: the task's own")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.device_count()}")
    summary = []
    for name in args.tasks:
        bench = BENCH[name]
        seeds = list(range(args.seeds or bench.seeds))
        t0 = time.perf_counter()
        res = {m: [run(name, m, s) for s in seeds] for m in args.methods}
        print(
            f"\n== {name}: budget {bench.trials} trials x {bench.windows} windows; seeds "
            f"{seeds}; {bench.metric} of the selected model; {time.perf_counter() - t0:.0f} s"
        )
        print(f"{'method':<10} {'median':>8} {'min':>8} {'max':>8} {'vs random':>10} "
              f"{'wall s':>7}  per seed")
        rand = [v for v, _ in res.get("random", [])]
        for m, rs in res.items():
            vals = [v for v, _ in rs]
            gap = statistics.median(vals) - statistics.median(rand) if rand else float("nan")
            print(
                f"{m:<10} {statistics.median(vals):>8.2f} {min(vals):>8.2f} {max(vals):>8.2f} "
                f"{gap:>+10.2f} {statistics.median(t for _, t in rs):>7.1f}  "
                + " ".join(f"{v:.2f}" for v in vals)
            )
        if "pbt" in res and rand:
            med = statistics.median(v for v, _ in res["pbt"])
            summary.append((name, med, statistics.median(rand), med >= statistics.median(rand)))
    if summary:
        print("\n== target: the recommended path (pbt) >= random search (medians)")
        for name, p, r, met in summary:
            print(f"{name:<14} pbt {p:8.2f}  random {r:8.2f}  {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
