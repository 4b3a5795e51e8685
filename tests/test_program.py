"""core.program: the one tuned window, for a run and a population, scanned or stepped."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
TARGET = jnp.array([1.0, -2.0, 0.5])


def init(key, hparams):
    w = jax.random.normal(key, (3,))
    state = {"w": w, "opt": TX.init(w), "clock": jnp.zeros((), jnp.int32)}
    return hj.set_hparams(state, hparams)


def train_window(state, key):
    noise = 0.01 * jax.random.normal(key, (3,))
    g = jax.grad(lambda w: jnp.sum((w - TARGET) ** 2))(state["w"]) + noise
    u, opt = TX.update(g, state["opt"], state["w"])
    w = optax.apply_updates(state["w"], u)
    # the fourth window explodes (a stateful clock decides, as a data cursor would)
    w = jnp.where(state["clock"] == 3, w * jnp.inf, w)
    return {"w": w, "opt": opt, "clock": state["clock"] + 1}, {"loss": jnp.sum(w**2)}


def evaluate(state):
    return {"score": -jnp.sum((state["w"] - TARGET) ** 2)}


TASK = hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=SPACE,
               default_hparams={"learning_rate": 0.1})


def scan(prog, carry, n):
    return jax.jit(lambda c: hj.program.scan(prog, c, n))(carry)


def test_single_run_keeps_the_best_and_rolls_back_the_blow_up():
    tuner = hj.guard(hj.fixed(), warmup=0, space=SPACE, shrink={})
    prog = hj.program.build(TASK, tuner)
    carry, rows = scan(prog, prog.init(jax.random.key(0)), 6)
    chex.assert_shape(rows["score"], (6,))
    assert not np.isfinite(rows["score"][3]) and bool(rows["rollback"][3])  # window 3 blew up
    finite = np.where(np.isfinite(rows["score"]), rows["score"], -np.inf)
    assert int(carry.best.window) == int(np.argmax(finite))
    assert float(carry.best.score) == pytest.approx(float(np.max(finite)))
    assert np.all(np.isfinite(np.asarray(carry.state["w"])))
    # the rollback restored everything, the clock too: the task's own state went back
    assert rows["window"].tolist() == list(range(6))


def test_a_task_restore_hook_keeps_the_clock_on_rollback():
    tuner = hj.guard(hj.fixed(), warmup=0, space=SPACE, shrink={})
    keep_clock = lambda now, snap: {**snap, "clock": now["clock"]}  # noqa: E731
    plain, hooked = (hj.program.build(t, tuner) for t in (TASK, TASK.replace(restore=keep_clock)))
    c1, r1 = scan(plain, plain.init(jax.random.key(0)), 5)
    c2, r2 = scan(hooked, hooked.init(jax.random.key(0)), 5)
    # restoring the clock with the weights replays the same bad window forever
    assert int(c1.state["clock"]) == 3 and not np.isfinite(r1["score"][3:]).any()
    # the hook brings back weights and optimizer state only: training moves past it
    assert int(c2.state["clock"]) == 5 and bool(r2["rollback"][3])
    assert np.isfinite(r2["score"][4]) and r2["score"][4] > r2["score"][2]


def test_population_masks_exploits_and_tracks_the_best_member():
    prog = hj.program.build(TASK, hj.pbt(SPACE, fraction=0.25, ready=1), population=4)
    carry = prog.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    carry, rows = scan(prog, carry, 3)
    chex.assert_shape([rows["score"], rows["parent"], rows["alive"]], (3, 4))
    best = np.nanmax(rows["score"])
    assert float(carry.best.score) == pytest.approx(float(best))
    w, m = np.unravel_index(np.nanargmax(rows["score"]), rows["score"].shape)
    assert (int(carry.best.window), int(carry.best.member)) == (w, m)
    assert float(carry.best.hparams["learning_rate"]) == pytest.approx(
        float(rows["learning_rate"][w, m]))
    carry = jax.jit(prog.prune)(carry, 2)
    dead = np.flatnonzero(~np.asarray(carry.alive))
    before = jax.tree.map(lambda x: x[dead], carry.state)
    carry, rows = scan(prog, carry, 2)
    chex.assert_trees_all_equal(jax.tree.map(lambda x: x[dead], carry.state), before)
    assert np.isnan(rows["score"][:, dead]).all()
    assert not np.isin(rows["parent"][:, ~np.isin(np.arange(4), dead)], dead).any()


def test_a_single_run_tuner_runs_per_member_on_a_population():
    tuner = hj.guard(hj.finite_difference(SPACE), warmup=1, space=SPACE)
    prog = hj.program.build(TASK, tuner, population=3)
    carry, rows = scan(prog, prog.init(jax.random.key(0)), 3)
    chex.assert_shape(rows["rollback"], (3, 3))
    assert carry.tuner_state.window.shape == (3,)  # one guard per member
    assert (rows["parent"] == np.arange(3)).all()  # single-run tuners never exploit


def test_same_key_same_trajectory_and_no_retrace():
    prog = hj.program.build(TASK, hj.pbt(SPACE, ready=1), population=4)
    body = chex.assert_max_traces(prog.window, n=1)
    run = jax.jit(lambda c: jax.lax.scan(body, c, None, length=3))
    a = prog.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    b = prog.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    ca, ra = run(a)
    cb, rb = run(b)
    chex.assert_trees_all_equal(ra, rb)
    run(ca)  # new values, same shapes: no second trace (assert_max_traces would raise)


def test_bad_input_is_refused_before_any_work():
    with pytest.raises(ValueError, match="population tuner"):
        hj.program.build(TASK, hj.pbt(SPACE))
    with pytest.raises(ValueError, match="population must be an integer >= 1"):
        hj.program.build(TASK, hj.fixed(), population=0)
    with pytest.raises(TypeError, match="must be a hagfish_jax.Tuner"):
        hj.program.build(TASK, object())
    with pytest.raises(TypeError, match="has no"):
        hj.program.build(object(), hj.fixed())
    prog = hj.program.build(TASK, hj.fixed(), population=4)
    with pytest.raises(ValueError, match="holds 2 members, not 4"):
        prog.start(jax.random.key(0), jax.vmap(lambda k: init(k, {"learning_rate": 0.1}))(
            jax.random.split(jax.random.key(0), 2)))
    with pytest.raises(ValueError, match="single run"):
        hj.program.build(TASK, hj.fixed()).prune(None, 1)


def _clock_task():
    def init(key, hp):
        return {"t": jnp.zeros((), jnp.float32), "off": jax.random.uniform(key, ())}

    def train_window(s, key):
        return {**s, "t": s["t"] + 1.0}, {}

    def evaluate(s):  # the score saturates at 2 (ties), the loss is lowest at t = 4
        return {"score": jnp.minimum(s["t"], 2.0), "val_loss": (s["t"] - 4.0) ** 2 + s["off"]}

    return hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=None,
                   default_hparams={})


def test_ties_on_the_score_go_to_the_lower_validation_loss():
    task = _clock_task()
    prog = hj.program.build(task, hj.fixed())
    carry, rows = scan(prog, prog.init(jax.random.key(0)), 7)
    assert rows["score"].tolist()[1:] == [2.0] * 6  # windows 1..6 tie on the score
    assert int(carry.best.window) == 3 and float(carry.best.state["t"]) == 4.0
    pop = hj.program.build(task, hj.fixed(), population=4)
    carry, _ = scan(pop, pop.init(jax.random.key(1)), 7)
    offsets = np.asarray(carry.state["off"])
    assert int(carry.best.window) == 3 and int(carry.best.member) == int(np.argmin(offsets))
    assert float(carry.best.loss) == pytest.approx(float(np.min(offsets)))


def test_a_tie_break_metric_overrides_the_validation_loss():
    base = _clock_task()

    def evaluate(s):  # same ties; the tie-break prefers the latest window, val_loss t = 4
        return {**base.evaluate(s), "tie_break": -s["t"]}

    prog = hj.program.build(base.replace(evaluate=evaluate), hj.fixed())
    carry, _ = scan(prog, prog.init(jax.random.key(0)), 7)
    assert int(carry.best.window) == 6 and float(carry.best.loss) == -7.0


def _peaked_task():
    def init(key, hp):
        return {"t": jnp.zeros((), jnp.float32), "off": jax.random.uniform(key, ())}

    def train_window(s, key):
        return {**s, "t": s["t"] + 1.0}, {}

    def evaluate(s):  # the score peaks at t = 6 (a lucky draw), the loss is lowest at t = 3
        score = jnp.where(s["t"] == 6.0, 1.0, 0.5) - 0.01 * s["off"]
        return {"score": score, "val_loss": (s["t"] - 3.0) ** 2 + s["off"]}

    return hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=None,
                   default_hparams={})


def test_select_loss_keeps_the_lowest_validation_loss_not_the_best_score():
    task = _peaked_task()
    for select, window in (("score", 5), ("loss", 2)):
        prog = hj.program.build(task, hj.fixed(), select=select)
        carry, rows = scan(prog, prog.init(jax.random.key(0)), 8)
        assert int(carry.best.window) == window, select
        assert float(carry.best.score) == pytest.approx(float(rows["score"][window]))
    pop = hj.program.build(task, hj.fixed(), population=4, select="loss")
    carry, rows = scan(pop, pop.init(jax.random.key(1)), 8)
    offsets = np.asarray(carry.state["off"])
    assert int(carry.best.window) == 2 and int(carry.best.member) == int(np.argmin(offsets))
    assert float(carry.best.loss) == pytest.approx(float(np.min(offsets)))
    assert float(carry.best.state["t"]) == 3.0
    # the default rule on the same population: the peak, its best-scored member
    pop = hj.program.build(task, hj.fixed(), population=4)
    carry, _ = scan(pop, pop.init(jax.random.key(1)), 8)
    assert int(carry.best.window) == 5 and int(carry.best.member) == int(np.argmin(offsets))
    # the Loop passes the rule through to its program
    for select, window in (("score", 5), ("loss", 2)):
        every = hj.Backoff(backoff=1.0, plateau=50, dormant=50, degradation=0.01)
        loop = hj.Loop(task=task, backoff=every, select=select)  # evaluates every window
        result = loop.run(key=jax.random.key(0), max_windows=8)
        assert int(result.carry.best.window) == window, select


def test_select_loss_never_keeps_a_diverged_window_and_ties_go_to_the_score():
    def evaluate(s):  # window 1 reports the lowest loss but a NaN score (diverged)
        bad = s["t"] == 2.0
        score = jnp.where(bad, jnp.nan, jnp.minimum(s["t"], 3.0))
        return {"score": score, "val_loss": jnp.where(bad, -1.0, 1.0)}  # others tie

    # the rollback from the NaN window keeps the clock (else it would replay window 1)
    task = _peaked_task().replace(evaluate=evaluate, restore=hj.restore_only("off"))
    prog = hj.program.build(task, hj.fixed(), select="loss")
    carry, _ = scan(prog, prog.init(jax.random.key(0)), 6)
    # equal losses everywhere else: the higher score (3, first reached at t = 3)
    assert int(carry.best.window) == 2 and float(carry.best.score) == 3.0


def test_select_is_checked():
    with pytest.raises(ValueError, match="select must be 'score' or 'loss'"):
        hj.program.build(TASK, hj.fixed(), select="val_loss")
    prog = hj.program.build(TASK, hj.fixed(), select="loss")  # TASK reports no loss
    with pytest.raises(ValueError, match="reports neither 'val_loss' nor 'tie_break'"):
        jax.jit(prog.window)(prog.init(jax.random.key(0)))


def _draw_task():
    def init(key, hp):
        return {"w": jax.random.normal(key, ()), "draw": jnp.zeros(())}

    def train_window(s, key):  # records the window's random number, as a shuffle would
        return {**s, "draw": jax.random.uniform(key, ())}, {}

    return hj.Task(init=init, train_window=train_window,
                   evaluate=lambda s: {"score": s["w"]}, space=None, default_hparams={})


def test_shared_key_gives_every_member_the_same_random_numbers():
    task = _draw_task()
    draws = {}
    for shared in (False, True):
        prog = hj.program.build(task, hj.fixed(), population=4, shared_key=shared)
        step = jax.jit(prog.window)
        carry, _ = step(prog.init(jax.random.key(0)))
        w = np.asarray(carry.state["w"])
        assert len(set(w.tolist())) == 4  # initial weights differ either way
        draws[shared] = np.asarray(carry.state["draw"])
        again, _ = step(prog.init(jax.random.key(0)))  # same key, same trajectory
        np.testing.assert_array_equal(np.asarray(again.state["draw"]), draws[shared])
    assert len(set(draws[False].tolist())) == 4
    assert len(set(draws[True].tolist())) == 1
    # the compiled training is kept apart per setting (same task, same population)
    assert hj.program.compiled(task, 4)[0] is not hj.program.compiled(task, 4, False, True)[0]
    loop = hj.Loop(task=task, population=4, shared_key=True)
    result = loop.run(key=jax.random.key(1), max_windows=2)
    assert len(set(np.asarray(result.carry.state["draw"]).tolist())) == 1


def test_tracing_pauses_the_garbage_collector_and_always_resumes_it():
    import gc

    seen = []

    def watched(state, key):
        seen.append(gc.isenabled())
        return train_window(state, key)

    def broken(state, key):
        raise RuntimeError("the task failed while tracing")

    for body in (watched, broken):
        task = hj.Task(init=init, train_window=body, evaluate=evaluate, space=SPACE,
                       default_hparams={"learning_rate": 0.1})
        prog = hj.program.build(task, hj.fixed(), population=2)
        carry = prog.init(jax.random.key(0))
        run = jax.jit(lambda c, p=prog: hj.program.scan(p, c, 2))
        if body is broken:
            with pytest.raises(RuntimeError, match="while tracing"):
                run(carry)
        else:
            run(carry)
        assert gc.isenabled()
    assert seen == [False]  # traced once, with the collector paused
