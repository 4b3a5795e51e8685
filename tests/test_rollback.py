"""Rollbacks that fit stateful runs: the task's clock is not replayed, repeated rollbacks
to one snapshot are capped, and a broken state is restored whatever the tuner says."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
TARGET = jnp.array([1.0, -2.0, 0.5])
BAD = (4, 7)  # the stretch of the data stream (by clock) that pulls the wrong way


def init(key, hparams):
    w = jnp.zeros(3)
    state = {"w": w, "opt": TX.init(w), "clock": jnp.zeros((), jnp.int32)}
    return hj.set_hparams(state, hparams)


def stream_window(state, key):
    """One window on the next stretch of a stream: ``clock`` is the data cursor."""
    bad = (state["clock"] >= BAD[0]) & (state["clock"] < BAD[1])
    goal = jnp.where(bad, -TARGET, TARGET)
    g = jax.grad(lambda w: jnp.sum((w - goal) ** 2))(state["w"])
    u, opt = TX.update(g, state["opt"], state["w"])
    return {"w": state["w"] + u, "opt": opt, "clock": state["clock"] + 1}, {}


def evaluate(state):
    return {"score": -jnp.sum((state["w"] - TARGET) ** 2)}


def stream_task(restore=None):
    return hj.Task(init=init, train_window=stream_window, evaluate=evaluate, space=SPACE,
                   default_hparams={"learning_rate": 0.1}, restore=restore)


GUARD = hj.guard(hj.fixed(), warmup=0, patience=1, tolerance=0.0, cooldown=1, space=SPACE)


def run(task, tuner, windows, **build):
    prog = hj.program.build(task, tuner, **build)
    carry = prog.init(jax.random.key(0))
    return jax.jit(lambda c: hj.program.scan(prog, c, windows))(carry)


def rollbacks_in_a_row(flags):
    worst = now = 0
    for f in flags:
        now = now + 1 if f else now
        worst = max(worst, now)
    return worst


def test_a_declared_restore_never_replays_the_stream():
    carry, rows = run(stream_task(hj.restore_only("w", "opt")), GUARD, 20)
    assert np.any(rows["rollback"])  # the bad stretch was caught and rolled back
    assert int(carry.state["clock"]) == 20  # the cursor only moved forward
    assert float(carry.best.score) > -0.01  # and the run recovered (untrained: -5.25)


def test_without_the_cap_a_full_restore_replays_the_bad_stretch_forever():
    # The collapse: the clock goes back with the weights, so the same bad data comes
    # again after every rollback. Shown with the cap lifted.
    carry, rows = run(stream_task(), GUARD, 30, max_repeats=1000)
    assert int(carry.state["clock"]) <= BAD[1]
    assert int(np.sum(rows["rollback"])) >= 8


def test_the_cap_moves_a_full_restore_past_the_bad_stretch():
    carry, rows = run(stream_task(), GUARD, 30, max_repeats=3)
    flags = np.asarray(rows["rollback"])
    assert int(carry.state["clock"]) > BAD[1] + 5  # the run went on past it
    assert int(np.sum(flags)) <= 3  # three rollbacks to that snapshot, then no more
    assert float(carry.best.score) > -0.01


def test_nan_weights_are_restored_even_when_the_tuner_never_rolls_back():
    def poisoned(state, key):
        new, m = stream_window(state, key)
        return {**new, "w": jnp.where(state["clock"] == 2, jnp.nan, new["w"])}, m

    def sign_score(state):  # finite on NaN weights, as accuracy on NaN logits is
        return {"score": jnp.mean(jnp.sign(state["w"]) == jnp.sign(TARGET))}

    task = hj.Task(init=init, train_window=poisoned, evaluate=sign_score, space=SPACE,
                   default_hparams={"learning_rate": 0.1}, restore=hj.restore_only("w", "opt"))
    carry, rows = run(task, hj.fixed(), 6)
    assert np.isnan(rows["score"][2]) and bool(rows["rollback"][2])
    assert not np.any(rows["rollback"][:2]) and not np.any(rows["rollback"][3:])
    assert np.all(np.isfinite(np.asarray(carry.state["w"])))
    assert np.all(np.isfinite(np.asarray(carry.best.state["w"])))


def blows_up_above(limit):
    def train(state, key):
        new, m = stream_window(state, key)
        lr = hj.get_hparams(state)["learning_rate"]
        return {**new, "w": jnp.where(lr > limit, jnp.inf, new["w"])}, m

    return hj.Task(init=init, train_window=train, evaluate=evaluate, space=SPACE,
                   default_hparams={"learning_rate": 0.1})


def test_a_divergence_that_repeats_shrinks_the_learning_rate_past_the_cap():
    prog = hj.program.build(blows_up_above(0.3), hj.fixed(), max_repeats=2)
    carry = prog.init(jax.random.key(0), {"learning_rate": 0.5})
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 8))(carry)
    lrs = np.asarray(rows["learning_rate"])
    assert np.all(np.isnan(rows["score"][:3]))  # 0.5 diverges, restored twice as it is
    np.testing.assert_allclose(lrs[:3], 0.5)
    np.testing.assert_allclose(lrs[3:], 0.05, rtol=1e-5)  # then shrunk x0.1, and trains
    assert np.all(np.isfinite(rows["score"][3:]))


def test_the_shrink_is_applied_once_under_a_tuner_that_keeps_its_values():
    # plateau (never reducing here) proposes the values it observes: it must observe
    # its own value, or the factor would compound every window (0.05, 0.005, ...)
    prog = hj.program.build(blows_up_above(0.3), hj.plateau(patience=10_000), max_repeats=1)
    carry = prog.init(jax.random.key(0), {"learning_rate": 0.5})
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 8))(carry)
    lrs = np.asarray(rows["learning_rate"])
    np.testing.assert_allclose(lrs[:2], 0.5)  # diverges, restored; past the cap, shrunk
    np.testing.assert_allclose(lrs[2:], 0.05, rtol=1e-5)
    assert np.all(np.isfinite(rows["score"][2:]))


def test_a_copy_takes_its_parents_values_with_its_parents_shrink():
    # member 1 diverges at 0.5 and is shrunk to 0.05; then PBT copies it over member 0
    # (the worse one): the copy must run at about 0.05, not at the 0.5 that diverged
    space = hj.Space(learning_rate=hj.LogUniform(1e-3, 1.0))
    pbt = hj.pbt(space, fraction=0.5, perturb=(1.0, 1.0), resample=0.0, ready=3)
    task = blows_up_above(0.3)
    task = hj.Task(init=task.init, train_window=task.train_window,
                   evaluate=lambda s: {"score": -jnp.sum((s["w"] - TARGET) ** 2)
                                       - 10.0 * (hj.get_hparams(s)["learning_rate"] < 0.02)},
                   space=space, default_hparams={"learning_rate": 0.1})
    prog = hj.program.build(task, pbt, population=2, max_repeats=1)
    carry = prog.init(jax.random.key(0), {"learning_rate": jnp.array([0.01, 0.5])})
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 8))(carry)
    parents = np.asarray(rows["parent"])
    copied = np.flatnonzero(parents[:, 0] == 1)
    assert copied.size, parents  # member 0 became a copy of member 1 at some window
    lrs = np.asarray(rows["learning_rate"])
    np.testing.assert_allclose(lrs[copied[0] + 1 :, 0], 0.05, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(carry.shrink["learning_rate"]), [0.1, 0.1], rtol=1e-6)
    assert np.all(np.isfinite(rows["score"][copied[0] + 1 :]))


def test_a_single_runs_spawn_keeps_the_tasks_clock_and_starts_its_factors_afresh():
    prog = hj.program.build(stream_task(hj.restore_only("w", "opt")), hj.fixed())
    carry = prog.init(jax.random.key(0))
    carry, _ = jax.jit(lambda c: hj.program.scan(prog, c, 5))(carry)
    carry = carry._replace(shrink={"learning_rate": jnp.float32(0.1)})
    spawned, _ = jax.jit(prog.spawn)(carry, jax.random.key(1))
    assert int(spawned.state["clock"]) == 5  # the data cursor does not rewind
    np.testing.assert_array_equal(spawned.state["w"], carry.best.state["w"])
    assert float(spawned.shrink["learning_rate"]) == 1.0


def test_only_the_broken_member_of_a_population_is_restored():
    prog = hj.program.build(blows_up_above(0.3), hj.fixed(), population=3, max_repeats=1)
    hp = {"learning_rate": jnp.array([0.1, 0.5, 0.2])}
    carry = prog.init(jax.random.key(0), hp)
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 4))(carry)
    back = np.asarray(rows["rollback"])
    assert back[:, 1].tolist() == [True, True, False, False]  # restored, then shrunk
    assert not np.any(back[:, [0, 2]])
    np.testing.assert_allclose(np.asarray(rows["learning_rate"])[-1], [0.1, 0.05, 0.2], rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(carry.state["w"])))


def test_all_finite_per_member():
    tree = {"w": jnp.array([[1.0, 2.0], [jnp.nan, 0.0], [jnp.inf, 1.0]]), "n": jnp.arange(3)}
    assert hj.all_finite(tree, population=3).tolist() == [True, False, False]
    assert not bool(hj.all_finite(tree)) and bool(hj.all_finite({"n": jnp.arange(3)}))


def test_restore_only_on_structs_and_bad_names():
    import flax.struct

    class S(flax.struct.PyTreeNode):
        params: jax.Array
        step: jax.Array

    out = hj.restore_only("params")(S(jnp.zeros(2), jnp.int32(5)), S(jnp.ones(2), jnp.int32(1)))
    assert out.params.tolist() == [1.0, 1.0] and int(out.step) == 5
    with pytest.raises(AttributeError, match="no field"):
        hj.restore_only("weights")(S(jnp.zeros(2), 0), S(jnp.zeros(2), 0))
    with pytest.raises(ValueError, match="field names"):
        hj.restore_only()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"max_repeats": 0}, "max_repeats"), ({"shrink": {"momentum": 0.5}}, "momentum"),
     ({"shrink": {"learning_rate": 1.5}}, r"\(0, 1\)"),
     ({"shrink": {"learning_rate": 1.0}}, r"\(0, 1\)"), ({"shrink": 0.1}, "mapping")],
)
def test_bad_rollback_options_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        hj.program.build(stream_task(), hj.fixed(), **kwargs)


def test_a_shrink_stays_inside_the_space():
    def init(key, hp):
        return {"w": jnp.ones(()), "extra": hj.extra_hparams(**hp)}

    def train_window(s, key):  # diverges whatever the rate: restored, then shrunk
        return {**s, "w": s["w"] * jnp.nan}, {}

    task = hj.Task(init=init, train_window=train_window, evaluate=lambda s: {"score": s["w"]},
                   space=SPACE, default_hparams={"learning_rate": 0.005})
    prog = hj.program.build(task, hj.fixed(), max_repeats=1)
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 4))(prog.init(jax.random.key(0)))
    lrs = np.asarray(rows["learning_rate"])
    assert lrs[0] == pytest.approx(0.005) and lrs.min() >= 1e-3 * (1 - 1e-6)
    assert lrs[-1] == pytest.approx(1e-3)  # 0.005 x 0.1 clipped to the space's low end
