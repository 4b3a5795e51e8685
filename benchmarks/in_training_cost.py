"""Suggestion cost of in-training Bayesian optimisation (``in_training.py --part cost``).

Seconds per ``hj.bayes`` update that closes a losing trial and proposes the next (GP
fit when due, posterior, acquisition over the candidates), with a history of ``obs``
observations in ``dims`` dimensions, against Optuna's ``GPSampler`` and
``TPESampler`` ``ask`` with the same history. ``bayes`` is timed at its default
``refit_every=4`` (averaged over 4 consecutive suggestions, one of which refits the
length scales) and at ``refit_every=1`` (every suggestion refits). Target: bayes /
GPSampler <= 0.25. Then ``hj.pb2``: seconds per generation of a population of 8 and of 16 with
64 observations, at ``refit_every=4`` (default) and 1. Target: bayes and pb2 updates
<= 2 ms at 64 observations (issue 12).

    python benchmarks/in_training.py --part cost [--quick]
    python benchmarks/in_training_cost.py [--quick]             # the same
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import hagfish_jax as hj


def _unit_space(dims: int) -> tuple[list[str], hj.Space]:
    names = [f"x{i}" for i in range(dims)]
    return names, hj.Space(**{n: hj.Uniform(0.0, 1.0) for n in names})


def _filled(buf: hj.gp.Buffer, n_obs: int, dims: int, rng: np.random.Generator) -> hj.gp.Buffer:
    for _ in range(n_obs):
        buf = hj.gp.add(buf, jnp.asarray(rng.random(dims + 1), jnp.float32), float(rng.normal()))
    return buf


def _per_update(update, states, obs, repeats: int) -> float:
    """Median seconds per update over ``repeats`` passes through ``states`` in a row."""
    jax.block_until_ready(update(states[0], obs))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for state in states:
            jax.block_until_ready(update(state, obs))
        times.append((time.perf_counter() - t) / len(states))
    return statistics.median(times)


def bayes_update_time(n_obs: int, dims: int, repeats: int, refit_every: int) -> float:
    """Seconds per suggestion: an update that closes a losing trial and proposes the next.

    With ``refit_every > 1`` the time is averaged over ``refit_every`` consecutive
    suggestions (one of them refits the length scales).
    """
    names, space = _unit_space(dims)
    tuner = hj.bayes(space, capacity=n_obs, refit_every=refit_every, horizon=100)
    state = tuner.init(jax.random.key(0), {n: 0.5 for n in names})
    buf = _filled(state.buf, n_obs, dims, np.random.default_rng(0))
    # An incumbent window closing a trial that lost: the next trial is proposed (GP fit
    # when due, posterior, acquisition over the candidates).
    state = state._replace(
        buf=buf,
        prev_score=jnp.float32(0.5),
        base_gain=jnp.float32(0.01),
        trial_gain=jnp.float32(0.0),
        pending=jnp.asarray(True),
        window=jnp.int32(10),
    )
    obs = hj.Observation(score=jnp.float32(0.52))
    states = [state._replace(trials=jnp.int32(i)) for i in range(refit_every)]
    return _per_update(jax.jit(tuner.update), states, obs, repeats)


def pb2_update_time(n_obs: int, dims: int, members: int, repeats: int, refit_every: int) -> float:
    """Seconds per ``hj.pb2`` generation: ``members`` scores in, the bottom quarter
    replaced, each new member's values chosen by GP-UCB over ``n_obs`` observations
    (averaged over ``refit_every`` consecutive generations, one of which refits)."""
    names, space = _unit_space(dims)
    tuner = hj.pb2(space, capacity=n_obs, refit_every=refit_every, horizon=100)
    hp = {n: jnp.full((members,), 0.5, jnp.float32) for n in names}
    state = tuner.init(jax.random.key(0), hp)
    rng = np.random.default_rng(0)
    state = state._replace(buf=_filled(state.buf, n_obs, dims, rng))
    obs = hj.Observation(score=jnp.asarray(rng.random(members), jnp.float32))
    states = [state._replace(generation=jnp.int32(8 + i)) for i in range(refit_every)]
    return _per_update(jax.jit(tuner.update), states, obs, repeats)


def run_pb2_cost(sizes: list[int], dims_list: list[int], members: int, repeats: int) -> None:
    print(f"\n[cost] pb2: seconds per generation, {members} members, median of {repeats}")
    print(f"{'obs':>4} {'dims':>4} {'pb2':>9} {'pb2 r1':>9} {'r1/pb2':>7}  target (refit_every=4)")
    for n in sizes:
        for d in dims_list:
            b = pb2_update_time(n, d, members, repeats, refit_every=4)
            b1 = pb2_update_time(n, d, members, repeats * 4, refit_every=1)
            ok = "ok" if b <= 2e-3 else "MISSED"
            print(f"{n:>4} {d:>4} {b:>9.2e} {b1:>9.2e} {b1 / b:>7.2f}  <=2e-3 {ok}")


def optuna_ask_time(sampler_name: str, n_obs: int, dims: int, repeats: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler_name == "gp":
        sampler = optuna.samplers.GPSampler(seed=0)
    else:
        sampler = optuna.samplers.TPESampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(dims)}
    rng = np.random.default_rng(0)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={n: float(rng.random()) for n in dists},
                distributions=dists,
                value=float(rng.normal()),
            )
            for _ in range(n_obs)
        ]
    )
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        trial = study.ask(fixed_distributions=dists)  # samples every parameter
        times.append(time.perf_counter() - t)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # history stays n_obs
    return statistics.median(times[1:])


def run_cost(sizes: list[int], dims_list: list[int], repeats: int) -> None:
    print(f"\n[cost] seconds per suggestion, median of {repeats} (after warm-up)")
    print(
        f"{'obs':>4} {'dims':>4} {'bayes':>9} {'bayes r1':>9} {'GPSampler':>10} {'TPE ask':>9} "
        f"{'bayes/GP':>9} {'r1/GP':>7}  target (default refit_every=4)"
    )
    missing = ""
    for n in sizes:
        for d in dims_list:
            b = bayes_update_time(n, d, repeats, refit_every=4)
            b1 = bayes_update_time(n, d, repeats * 4, refit_every=1)
            try:
                g = optuna_ask_time("gp", n, d, repeats)
            except ImportError as err:  # GPSampler needs PyTorch
                g = math.nan
                missing = f"GPSampler not timed: {err}"
            t = optuna_ask_time("tpe", n, d, repeats)
            ok = "ok" if b / g <= 0.25 else "MISSED" if math.isfinite(g) else "n/a"
            print(
                f"{n:>4} {d:>4} {b:>9.2e} {b1:>9.2e} {g:>10.2e} {t:>9.2e} {b / g:>9.3f} "
                f"{b1 / g:>7.3f}  <=0.25 {ok}"
            )
    if missing:
        print(missing)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small size")
    args = parser.parse_args(argv)
    print(f"backend={jax.default_backend()} jax={jax.__version__}")
    if args.quick:
        run_cost([16], [1], 3)
        run_pb2_cost([16], [1], 8, 3)
    else:
        run_cost([64, 256], [1, 3], 5)
        run_pb2_cost([64], [1, 3], 8, 7)
        run_pb2_cost([64], [1, 3], 16, 7)


if __name__ == "__main__":
    main()
