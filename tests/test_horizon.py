"""The run's length reaches the tuners that model progress (bayes, pb2): from the tuner's
own ``horizon``, from ``hj.program.build(windows=)`` or from ``hj.Loop.run``; with none
of them the update says so instead of assuming a length."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_program import SPACE, TASK, evaluate, init

import hagfish_jax as hj
from hagfish_jax.core.tuners.bayes import progress_feature


def smooth_window(state, key):  # the test task without its blow-up
    g = 2 * (state["w"] - jnp.array([1.0, -2.0, 0.5]))
    u, opt = hj.get_hparams(state)["learning_rate"] * -g, state["opt"]
    return {**state, "w": state["w"] + u, "opt": opt}, {}


BOWL = hj.Task(init=init, train_window=smooth_window, evaluate=evaluate, space=SPACE,
               default_hparams={"learning_rate": 0.05})


def test_an_unknown_length_is_an_error_that_says_what_to_pass():
    tuner = hj.bayes(SPACE)
    state = tuner.init(jax.random.key(0), {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="horizon=WINDOWS.*windows=WINDOWS"):
        tuner.update(state, hj.Observation(score=jnp.float32(0.5)))
    pop = hj.pb2(SPACE)
    pstate = pop.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    with pytest.raises(ValueError, match="pb2: the run's length is unknown"):
        pop.update(pstate, hj.Observation(score=jnp.arange(4.0)))
    prog = hj.program.build(TASK, hj.guard(hj.bayes(SPACE), space=SPACE))  # no windows=
    with pytest.raises(ValueError, match="run's length"):
        jax.jit(lambda c: hj.program.scan(prog, c, 4))(prog.init(jax.random.key(0)))


def trial_times(state):
    valid = np.asarray(state.buf.valid)
    return np.asarray(state.buf.x)[valid, -1]


def test_windows_reach_the_tuner_and_an_own_horizon_wins():
    def run(tuner, windows):
        prog = hj.program.build(BOWL, tuner, windows=windows)
        carry, _ = jax.jit(lambda c: hj.program.scan(prog, c, 12))(prog.init(jax.random.key(0)))
        return carry.tuner_state

    def expected(state, h):  # every stored time is log1p(window) / log1p(h) for some window
        grid = np.asarray(progress_feature(jnp.arange(13), h))
        t = trial_times(state)
        return len(t) > 0 and all(np.min(np.abs(grid - x)) < 1e-6 for x in t)

    short = run(hj.bayes(SPACE, min_observations=0), 12)
    assert expected(short, 12) and not expected(short, 1000)
    own = run(hj.bayes(SPACE, horizon=1000), 12)  # the tuner's own horizon is kept
    assert expected(own, 1000) and not expected(own, 12)


def test_the_loop_passes_max_windows_to_a_population_tuner():
    loop = hj.Loop(task=BOWL, tuner=hj.pb2(SPACE, candidates=16, fit_steps=2), population=4)
    result = loop.run(key=jax.random.key(0), max_windows=6,
                      hparams={"learning_rate": jnp.array([0.01, 0.05, 0.1, 0.2])})
    assert result.windows == 6 and loop.program.windows == 6
    ts = result.carry.tuner_state
    grid = np.asarray(progress_feature(jnp.arange(7), 6))
    t = trial_times(ts)
    assert len(t) > 0 and all(np.min(np.abs(grid - x)) < 1e-6 for x in t)
