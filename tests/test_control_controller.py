"""A controller meta-trained briefly: it beats a random policy and the fixed default,
saves and loads, and runs as a tuner in the program, the guard and the Loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _support import control_bank, control_space

import hagfish_jax as hj
from hagfish_jax.control import controller as C
from hagfish_jax.control import meta
from hagfish_jax.control.env import HParamEnv

pytestmark = pytest.mark.timeout(300)

SMALL = control_space()
CONFIG = meta.MetaConfig(runs=16, windows=6)


def _bank(seeds):
    return control_bank(seeds)


@pytest.fixture(scope="module")
def trained():
    return meta.meta_train(_bank(range(4)), 30, CONFIG, key=0)


@pytest.fixture(scope="module")
def held_out():
    return _bank(range(100, 104))


def test_a_briefly_trained_controller_beats_random_and_the_fixed_default(trained, held_out):
    env = HParamEnv(held_out, windows=CONFIG.windows, random_start=0.0)
    d = len(env.space)
    c = trained.controller
    policies = [
        lambda o, k: c.act(o),
        lambda o, k: jax.random.randint(k, (d,), 0, 3),
        lambda o, k: jnp.ones((d,), jnp.int32),
    ]
    # the same 32 held-out runs (seeds, data sets) for the three policies, one program
    got = meta.episode_returns(env, policies, jax.random.key(11))
    learned, rand, fixed = ({k: v[i] for k, v in got.items()} for i in range(3))
    # a real margin, not a tie: the learned policy removes far more of the loss
    assert learned["return"].mean() > rand["return"].mean() + 0.1
    assert learned["return"].mean() > fixed["return"].mean() + 0.1
    assert np.median(learned["final_score"]) > np.median(fixed["final_score"])
    # meta-training improved the controller's own episodes as it went
    returns = meta.returns_of(trained.history)
    assert returns[-10:].mean() > returns[:5].mean()


def test_save_then_load_gives_identical_actions(trained, tmp_path):
    c = trained.controller
    c.save(tmp_path / "ctrl")
    back = C.load(tmp_path / "ctrl")
    assert back.spec == c.spec and back.iterations == c.iterations
    obs = jax.random.normal(jax.random.key(0), (64, c.spec.obs_dim))
    np.testing.assert_array_equal(jax.vmap(back.act)(obs), jax.vmap(c.act)(obs))
    with pytest.raises(FileNotFoundError, match="controller.json"):
        C.load(tmp_path / "nothing")


def _count_traces(prog, windows):
    traces = []

    def window(carry):
        traces.append(1)
        return prog.window(carry)

    step = jax.jit(window)
    carry = prog.init(jax.random.key(0))
    rows = []
    for _ in range(windows):
        carry, row = step(carry)
        rows.append(row)
    return len(traces), rows


def test_the_learned_tuner_runs_in_guard_program_population_and_loop(trained, held_out):
    tuner = hj.learned(trained.controller, held_out.space)
    guarded = hj.guard(tuner, space=held_out.space)
    for t, population in [(guarded, None), (tuner, 3)]:
        prog = hj.program.build(held_out, t, population, windows=5)
        traces, rows = _count_traces(prog, 5)
        assert traces == 1
        assert all(np.all(np.isfinite(np.asarray(r["learning_rate"]))) for r in rows)
        moved = [len({np.asarray(r[n]).tobytes() for r in rows}) > 1 for n in SMALL.names]
        assert any(moved)  # the controller moves the hyperparameters
    result = hj.Loop(task=held_out, tuner=tuner).run(key=jax.random.key(1), max_windows=4)
    assert np.isfinite(result.best_score)


def test_learned_refuses_what_it_cannot_do(trained):
    c = trained.controller
    with pytest.raises(ValueError, match="none is a dynamic"):
        hj.learned(c, hj.Space(momentum=hj.Uniform(0.0, 1.0)))
    with pytest.raises(ValueError, match="structural"):
        hj.learned(c, hj.Space(units=hj.IntUniform(8, 32)), names=["units"])
    with pytest.raises(ValueError, match="does not know"):
        hj.learned(c, hj.Space(momentum=hj.Uniform(0.0, 1.0)), names=["momentum"])
    tuner = hj.learned(c, hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1)))
    state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="val_loss"):
        tuner.update(state, hj.Observation(score=jnp.float32(0.5)))
    proposal, _ = tuner.update(state, hj.Observation(score=jnp.float32(0.5), loss=jnp.float32(1.0)))
    assert 1e-4 <= float(proposal.hparams["learning_rate"]) <= 1e-1
