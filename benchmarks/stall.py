"""The XLA CPU stall: how often a small vmapped program never finishes, per remedy.

On few-core CPUs jax 0.10 can stall: batched LAPACK calls run in parallel on XLA's
intra-op thread pool and can end up waiting on each other, so the host waits forever.
Programs (``--program``): ``qr``, the smallest program of ours that showed it (16
vmapped orthogonal initialisations, a batched QR, called ``--calls`` times);
``cartpole``, the CartPole demo's population (``hj.demo.run("cartpole", population=4,
windows=3)``: vmapped PPO agents through the Loop); ``ppo``, 8 vmapped PPO agents
(8 environments x 32 steps, 2 updates a call) called ``--calls`` times, as the PPO
tests run them; ``population``, a digits PBT population of 16 through ``hj.program``,
``--calls`` windows in one scan (the population benchmarks' program). Each run is a
fresh process with a timeout; a run that times out counts as a stall. ``--load N``
keeps N busy-loop processes running beside the runs (the stall showed on loaded
machines). Remedies:

* ``none``: as it is;
* ``pin``: the process pinned to one core before XLA starts
  (``hagfish_jax.shell._affinity.one_cpu``, what the CartPole demo and PPO tests use);
* ``eigen``: ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``;
* ``other``: no workaround, run by another interpreter (``--other-python``, e.g. a
  virtual environment with jax 0.9.x), so two jax releases share one table.

The table shows stalls out of runs and the median seconds of the runs that finished.

    python benchmarks/stall.py --runs 32 --timeout 20
    python benchmarks/stall.py --program cartpole --runs 32 --timeout 120
    python benchmarks/stall.py --program ppo --load 2 --runs 32 --timeout 60
    python benchmarks/stall.py --program ppo --runs 32 --other-python venv09/bin/python \
        --remedies none,pin,eigen,other
    python benchmarks/stall.py --child pin        # one run (what each process does)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REMEDIES = ("none", "pin", "eigen", "other")
PROGRAMS = ("qr", "cartpole", "ppo", "population")


def child(remedy: str, calls: int, program: str = "qr") -> None:
    """One run: the program, under ``remedy`` (pinned before jax does any work)."""
    import contextlib

    pin = contextlib.nullcontext()
    if remedy == "pin":
        from hagfish_jax.shell._affinity import one_cpu

        pin = one_cpu()
    with pin:
        import jax

        if program == "cartpole":
            import hagfish_jax as hj

            hj.demo.run("cartpole", population=4, windows=3)
        elif program == "ppo":
            import hagfish_jax as hj

            ppo = hj.rl.PPO(num_envs=8, num_steps=32, updates_per_window=2)
            keys = jax.random.split(jax.random.key(0), 8)
            state = jax.jit(jax.vmap(ppo.init))(keys)
            step = jax.jit(jax.vmap(ppo.train_window))
            for i in range(calls):
                state, _ = step(state, jax.random.split(jax.random.key(i + 1), 8))
            jax.block_until_ready(state)
        elif program == "population":
            import hagfish_jax as hj
            from hagfish_jax.tasks import digits

            task = digits.make_task(digits.load_digits_split(0), hidden=(32,))
            program_ = hj.program.build(task, hj.pbt(task.space), population=16, windows=calls)
            carry = program_.init(jax.random.key(0), task.space.sample(jax.random.key(1), 16))
            run = jax.jit(lambda c: hj.program.scan(program_, c, calls))
            jax.block_until_ready(run(carry))
        else:
            init = jax.nn.initializers.orthogonal()
            f = jax.jit(jax.vmap(lambda k: init(k, (64, 64))))
            for i in range(calls):
                jax.block_until_ready(f(jax.random.split(jax.random.key(i), 16)))
    print("finished")


def run_once(
    remedy: str, calls: int, timeout: float, program: str = "qr", other: str | None = None
) -> float | None:
    env = dict(os.environ)
    python = sys.executable
    if remedy == "other":
        if other is None:
            raise ValueError("stall.py: remedy 'other' needs --other-python")
        python, remedy = other, "none"
    if remedy == "eigen":
        flags = env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
        env["XLA_FLAGS"] = flags.strip()
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [python, __file__, "--child", remedy, "--calls", str(calls),
             "--program", program],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0 or "finished" not in out.stdout:
        raise RuntimeError(f"{remedy}: the run failed: {out.stderr[-1000:]}")
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--remedies", default=",".join(REMEDIES))
    parser.add_argument("--program", choices=PROGRAMS, default="qr")
    parser.add_argument("--load", type=int, default=0,
                        help="busy-loop processes kept running beside the runs")
    parser.add_argument("--other-python", default=None,
                        help="the interpreter of remedy 'other' (e.g. jax 0.9.x)")
    parser.add_argument("--child", choices=REMEDIES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.calls, args.program)
        return {}
    remedies = args.remedies.split(",")
    unknown = sorted(set(remedies) - set(REMEDIES))
    if unknown or ("other" in remedies) != (args.other_python is not None):
        parser.error(f"--remedies from {REMEDIES}; 'other' exactly when --other-python "
                     f"is given (got {args.remedies!r})")
    other_version = None
    if args.other_python:
        other_version = subprocess.run(
            [args.other_python, "-c", "import jax; print(jax.__version__)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    times: dict[str, list[float | None]] = {r: [] for r in remedies}
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)
    ]
    try:
        for i in range(args.runs):  # interleaved, so drift in the machine hits all alike
            for r in remedies if i % 2 == 0 else remedies[::-1]:
                times[r].append(
                    run_once(r, args.calls, args.timeout, args.program, args.other_python)
                )
    finally:
        for b in burners:
            b.kill()
    import jax

    what = {
        "qr": f"{args.calls} calls",
        "cartpole": "a 3-window population of 4",
        "ppo": f"{args.calls} calls of 8 vmapped PPO agents",
        "population": f"a {args.calls}-window PBT population of 16",
    }[args.program]
    print(f"program {args.program}, jax {jax.__version__}, cpus {os.cpu_count()}, "
          f"{args.runs} runs of {what}, timeout {args.timeout:.0f} s, "
          f"{args.load} busy-loop processes beside"
          + (f"; 'other' is jax {other_version} ({args.other_python})" if other_version else ""))
    print(f"{'remedy':<7} {'stalls':>8} {'median s (finished)':>20}")
    for r in remedies:
        done = [t for t in times[r] if t is not None]
        med = f"{statistics.median(done):.2f}" if done else "-"
        print(f"{r:<7} {len(times[r]) - len(done):>3} / {len(times[r]):<3} {med:>20}")
    return times


if __name__ == "__main__":
    main()
