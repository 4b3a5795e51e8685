"""Reinforcement-learning benchmarks: environment throughput, PBT on CartPole, loop overhead.

Part 1 (``--part env``): environment steps per second with the PPO policy acting
(``hj.rl.PPO().network``, a 2x64 tanh MLP actor-critic, params from ``PPO().init``):

  (a) gymnasium's functional CartPole vmapped over 1024 environments, policy and
      stepping (with auto-reset, as ``ppo.py`` does) inside one jitted ``lax.scan``;
  (b) ``gymnasium.vector.SyncVectorEnv`` of 16 ``gymnasium.make("CartPole-v1")``
      stepped from Python, the policy a jitted call per step (a PyTorch-style loop);
  (c) gymnasium's numpy-vectorised ``CartPoleVectorEnv`` at 1024 environments, the
      policy a jitted call per step.

Compilation and environment creation are excluded (warm-up first); each case times
a fixed number of steps, repeats are interleaved and the medians are reported, with
the ratios (a)/(b) and (a)/(c) of the medians.

Part 2 (``--part pbt``): a PBT population of 8 PPO agents (the CartPole task,
``hagfish_jax.tasks.cartpole``, through ``hj.program.build(task, hj.pbt(hj.rl.space),
population=8)``) against the same 8 starting configurations (hyperparameters sampled
from ``hj.rl.space`` with the same key, same initial weights) trained with fixed
hyperparameters (the same program with ``hj.fixed()``: never exploits).
One generation is one ``PPO.train_window``: 4 updates x 16 envs x 64 steps = 4096
environment steps per member. "Steps to 475" is ``(g + 1) * 4096`` for the first
generation ``g`` whose score (the mean return of each of the member's 16
environments' last finished episode, ``PPO.evaluate``) is >= 475. For PBT it is the
first generation at which the population's best member reaches 475, counted in
per-member steps (the population total is 8x that, also reported); for fixed, each
member's own first generation, "not reached" within the budget counting as
infinite (so a median can be "not reached").

Part 3 (``--part loop``): Python time ``hj.Loop`` spends per evaluation outside the
jitted calls: ``Loop.run`` with a trivial jitted step and an evaluate that returns a
precomputed, increasing score sequence, evaluating every window, minus a plain
Python loop making the same jitted calls (and the same ``float(score)`` sync).

    python benchmarks/rl.py [--part all|env|pbt|loop] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import hagfish_jax as hj
from hagfish_jax.tasks import cartpole

# -- part 1: environment throughput --------------------------------------------------------


def functional_runner(ppo, n_envs, n_steps):
    """(a): ``n_steps`` steps of ``n_envs`` functional CartPoles, policy inside the scan."""
    env, net = ppo.env, ppo.network

    def reset(k):
        s = env.initial(k)
        return s, env.observation(s, None).astype(jnp.float32)

    def init(key):
        return jax.vmap(reset)(jax.random.split(key, n_envs)) + (jnp.zeros((n_envs,), jnp.int32),)

    def body(carry, k):
        params, (state, obs, ep_len) = carry
        k_act, k_reset = jax.random.split(k)
        logits, _ = net.apply(params, obs)
        action = jax.random.categorical(k_act, logits)

        def one(s, a, kr):
            nxt = env.transition(s, a, None)
            reward = env.reward(s, a, nxt, None)
            term = env.terminal(nxt, None)
            rs, ro = reset(kr)
            return nxt, env.observation(nxt, None).astype(jnp.float32), reward, term, rs, ro

        nxt, nobs, reward, term, rs, ro = jax.vmap(one)(
            state, action, jax.random.split(k_reset, n_envs)
        )
        ep_len = ep_len + 1
        done = term | (ep_len >= ppo.max_episode_steps)
        state = jnp.where(done[:, None], rs, nxt)
        obs = jnp.where(done[:, None], ro, nobs)
        return (params, (state, obs, jnp.where(done, 0, ep_len))), reward.sum()

    @jax.jit
    def run(params, env_carry, key):
        (_, env_carry), rewards = jax.lax.scan(
            body, (params, env_carry), jax.random.split(key, n_steps)
        )
        return env_carry, rewards.sum()

    return init, run


def jitted_policy(ppo):
    net = ppo.network

    @jax.jit
    def act(params, obs, key):
        key, k = jax.random.split(key)
        logits, _ = net.apply(params, obs.astype(jnp.float32))
        return jax.random.categorical(k, logits), key

    return act


def python_runner(envs, act, params, n_steps, seed):
    """(b)/(c): step a gymnasium vector env from Python, the policy a jitted call per step."""
    obs, _ = envs.reset(seed=seed)
    key = jax.random.key(seed)

    def run():
        nonlocal obs, key
        for _ in range(n_steps):
            action, key = act(params, obs, key)
            obs, _, _, _, _ = envs.step(np.asarray(action))

    return run


def part_env(args):
    import gymnasium as gym
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    ppo = hj.rl.PPO()
    params = ppo.init(jax.random.key(0)).params
    act = jitted_policy(ppo)
    n_big = 1024
    steps_a = 200 if args.quick else 1000
    steps_b = 200 if args.quick else 1000
    steps_c = 100 if args.quick else 500
    repeats = 2 if args.quick else 3

    init_a, run_a = functional_runner(ppo, n_big, steps_a)
    carry_a = init_a(jax.random.key(1))
    k_a = jax.random.key(2)
    carry_a, r = run_a(params, carry_a, k_a)  # compile + warm-up
    jax.block_until_ready(r)

    def case_a():
        nonlocal carry_a, k_a
        k_a, k = jax.random.split(k_a)
        carry_a, r = run_a(params, carry_a, k)
        jax.block_until_ready(r)

    envs_b = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(16)])
    envs_c = CartPoleVectorEnv(num_envs=n_big)
    run_b = python_runner(envs_b, act, params, steps_b, 0)
    run_c = python_runner(envs_c, act, params, steps_c, 0)
    run_b()  # warm-up: compiles the policy for 16 and 1024 observations
    run_c()

    cases = {
        "a": ("(a) functional CartPole, vmap 1024, one jitted scan", n_big * steps_a, case_a),
        "b": ("(b) SyncVectorEnv 16 x CartPole-v1, jitted policy/step", 16 * steps_b, run_b),
        "c": ("(c) CartPoleVectorEnv (numpy) 1024, jitted policy/step", n_big * steps_c, run_c),
    }
    rates = {k: [] for k in cases}
    for rep in range(repeats):
        order = list(cases) if rep % 2 == 0 else list(cases)[::-1]
        for k in order:
            _, steps, fn = cases[k]
            t = time.perf_counter()
            fn()
            rates[k].append(steps / (time.perf_counter() - t))
    envs_b.close()
    envs_c.close()

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n## Part 1: environment steps/s with the PPO policy acting ({repeats} repeats)\n")
    print("| case | steps timed | steps/s (median) | range |")
    print("|---|---:|---:|---:|")
    for k, (label, steps, _) in cases.items():
        lo, hi = min(rates[k]), max(rates[k])
        print(f"| {label} | {steps:,} | {med[k]:,.0f} | {lo:,.0f} - {hi:,.0f} |")
    ab, ac = med["a"] / med["b"], med["a"] / med["c"]
    print()
    print("| ratio | value | target | met |")
    print("|---|---:|---:|---|")
    print(f"| (a)/(b) | {ab:,.1f}x | >= 50x | {'yes' if ab >= 50 else 'NO'} |")
    print(f"| (a)/(c) | {ac:,.2f}x | >= 1.0x | {'yes' if ac >= 1.0 else 'NO'} |")
    return {"rates": med, "ab": ab, "ac": ac}


# -- part 2: PBT vs fixed --------------------------------------------------------------


def first_reach(scores, threshold=475.0):
    """Index of the first row of ``scores`` (G,) at or above ``threshold``, else None."""
    hit = np.nonzero(np.asarray(scores) >= threshold)[0]
    return int(hit[0]) if hit.size else None


def part_pbt(args):
    n = 8
    ppo = hj.rl.PPO()
    space = hj.rl.space
    task = cartpole.make_task(ppo)
    per_gen = ppo.updates_per_window * ppo.num_envs * ppo.num_steps
    gens = args.generations
    programs = {}
    for name, tuner in (("pbt", hj.pbt(space)), ("fixed", hj.fixed())):
        program = hj.program.build(task, tuner, population=n)
        run = jax.jit(lambda c, p=program: hj.program.scan(p, c, gens))
        programs[name] = (jax.jit(program.init), run)

    def fmt(g):
        return "not reached" if g is None else f"{(g + 1) * per_gen:,}"

    results = []
    print(f"\n## Part 2: PBT vs fixed, population {n}, {gens} generations x {per_gen} steps\n")
    for seed in range(args.seeds):
        k_hp, k_run = jax.random.split(jax.random.key(seed))
        hparams = space.sample(k_hp, n)
        out = {}
        for name, (init, run) in programs.items():
            t = time.perf_counter()
            carry = init(k_run, hparams)
            carry, rows = run(carry)
            scores = np.asarray(jax.device_get(rows["score"]))  # (G, N)
            out[name] = (scores, time.perf_counter() - t)
        pbt_scores, t_pbt = out["pbt"]
        fix_scores, t_fix = out["fixed"]
        g_pbt = first_reach(pbt_scores.max(axis=1))
        g_fix = [first_reach(fix_scores[:, i]) for i in range(n)]
        inf = [np.inf if g is None else (g + 1) * per_gen for g in g_fix]
        med_fix = float(np.median(inf))
        s_pbt = np.inf if g_pbt is None else (g_pbt + 1) * per_gen
        results.append((s_pbt, med_fix))
        lr = np.asarray(hparams["learning_rate"])
        print(f"### seed {seed} (wall: PBT {t_pbt:.1f} s, fixed {t_fix:.1f} s, incl. compile)\n")
        print("| run | learning_rate | steps to 475 (per member) | best score | final score |")
        print("|---|---:|---:|---:|---:|")
        pop_total = "" if g_pbt is None else f" (population total {(g_pbt + 1) * per_gen * n:,})"
        print(
            f"| PBT (best member) | - | {fmt(g_pbt)}{pop_total} | {pbt_scores.max():.1f} "
            f"| {pbt_scores[-1].max():.1f} |"
        )
        for i in range(n):
            print(
                f"| fixed member {i} | {lr[i]:.2e} | {fmt(g_fix[i])} | "
                f"{fix_scores[:, i].max():.1f} | {fix_scores[-1, i]:.1f} |"
            )
        med_txt = "not reached" if not np.isfinite(med_fix) else f"{med_fix:,.0f}"
        ratio = s_pbt / med_fix if np.isfinite(med_fix) else float("nan")
        if not np.isfinite(s_pbt):
            ratio = float("nan")
        print(f"\nmedian fixed member: {med_txt}; PBT / median fixed: {ratio:.2f}\n")

    print("### Summary over seeds\n")
    print("| seed | PBT steps (per member) | PBT population total | median fixed | ratio |")
    print("|---|---:|---:|---:|---:|")
    ratios = []
    for seed, (s_pbt, med_fix) in enumerate(results):
        if np.isfinite(med_fix) and np.isfinite(s_pbt):
            r = s_pbt / med_fix
        elif np.isfinite(s_pbt):
            r = 0.0  # PBT reached, median fixed did not: below any finite ratio
        else:
            r = np.inf
        ratios.append(r)

        def f(x):
            return "not reached" if not np.isfinite(x) else f"{x:,.0f}"

        r_txt = "< any (fixed not reached)" if r == 0.0 else f"{r:.2f}"
        print(f"| {seed} | {f(s_pbt)} | {f(s_pbt * n)} | {f(med_fix)} | {r_txt} |")
    med_pbt = float(np.median([r[0] for r in results]))
    med_fix = float(np.median([r[1] for r in results]))
    med_ratio = float(np.median(ratios))

    def g(x):
        return "not reached" if not np.isfinite(x) else f"{x:,.0f}"

    ratio_txt = (
        "0 (PBT reached 475, the median fixed member did not)"
        if med_ratio == 0.0
        else f"{med_ratio:.2f}"
    )
    print(
        f"\nmedian over {len(results)} seeds: PBT {g(med_pbt)} steps/member, median fixed "
        f"{g(med_fix)}; median per-seed ratio {ratio_txt} (target <= 0.7: "
        f"{'met' if med_ratio <= 0.7 else 'MISSED'})"
    )
    return {"results": results, "median_ratio": med_ratio}


# -- part 3: loop overhead -----------------------------------------------------------------


def part_loop(args):
    windows = 500 if args.quick else 2000
    repeats = 3
    scores = jnp.linspace(0.0, 1.0, windows + 1, dtype=jnp.float32)

    @jax.jit
    def step(state, key):
        return state + 1, {"loss": state.astype(jnp.float32)}

    @jax.jit
    def evaluate(state):
        return {"score": scores[state]}

    backoff_kw = dict(base=1, backoff=1.0, max_interval=1, plateau=10**6, dormant=10**6)

    def plain():
        state, key = jnp.zeros((), jnp.int32), jax.random.key(0)
        for _ in range(windows):
            state, _ = step(state, key)
            float(evaluate(state)["score"])

    def plain_split():
        state, key = jnp.zeros((), jnp.int32), jax.random.key(0)
        for _ in range(windows):
            key, k = jax.random.split(key)
            state, _ = step(state, k)
            float(evaluate(state)["score"])

    # one Loop, built and compiled (warm-up) outside the timed runs, like the plain loops
    loop = hj.Loop(step, evaluate, backoff=hj.Backoff(**backoff_kw), checkpoint_dir=None)

    def looped():
        res = loop.run(jnp.zeros((), jnp.int32), jax.random.key(0), windows)
        assert res.evaluations == windows, res.evaluations
        return res

    for fn in (plain, plain_split, looped):  # warm-up / compile
        fn()
    times = {"plain": [], "plain_split": [], "loop": []}
    fns = {"plain": plain, "plain_split": plain_split, "loop": looped}
    for rep in range(repeats):
        order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
        for k in order:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    per = {k: v / windows * 1e6 for k, v in med.items()}
    over = (med["loop"] - med["plain"]) / windows * 1e3
    over_split = (med["loop"] - med["plain_split"]) / windows * 1e3
    print(
        f"\n## Part 3: hj.Loop overhead, {windows} windows, evaluation every window "
        f"({repeats} repeats, median)\n"
    )
    print("| case | total s | us per window |")
    print("|---|---:|---:|")
    print(
        f"| plain loop: jitted step + evaluate + float(score) | {med['plain']:.3f} | "
        f"{per['plain']:.0f} |"
    )
    print(
        f"| plain loop + jax.random.split per window | {med['plain_split']:.3f} | "
        f"{per['plain_split']:.0f} |"
    )
    print(f"| hj.Loop.run (checkpoint_dir=None) | {med['loop']:.3f} | {per['loop']:.0f} |")
    print()
    print(
        f"Loop overhead per evaluation vs plain: {over:.3f} ms "
        f"(target < 1 ms: {'met' if over < 1 else 'MISSED'}); "
        f"vs plain + key split: {over_split:.3f} ms"
    )
    return {"overhead_ms": over, "overhead_split_ms": over_split}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("all", "env", "pbt", "loop"), default="all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--generations", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="fewer steps/windows (smoke test)")
    args = p.parse_args()
    if args.part == "pbt":
        # On 2 cores jax 0.10's CPU runtime can stall the vmapped PPO program: pinned to
        # one core when the installed jax is such a release. Timings compare within
        # this part.
        from hagfish_jax.shell._affinity import pinned_if_needed, stall_prone

        with pinned_if_needed():
            pinned = ", pinned to one core" if stall_prone() else ""
            print(f"jax {jax.__version__}, backend {jax.default_backend()}{pinned}")
            part_pbt(args)
        return
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    if args.part in ("all", "env"):
        part_env(args)
    if args.part in ("all", "loop"):
        part_loop(args)
    if args.part == "all":  # part 2 in a fresh process, pinned from its start (see above)
        extra = ["--quick"] if args.quick else []
        argv = ["--part", "pbt", "--seeds", str(args.seeds), "--generations", str(args.generations)]
        subprocess.run([sys.executable, __file__, *argv, *extra], check=True)


if __name__ == "__main__":
    main()
