"""hj.Loop over a population: on-device proposals, prune and spawn on the alive mask,
per-member rollback, checkpoint and resume, and one compiled training program."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj
from hagfish_jax.shell.loop import Backoff, Callback, Loop, MetaController

TARGET = jnp.array([1.0, -2.0, 0.5])
SPACE = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5))
TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
TRACES: list[str] = []


def init(key, hparams):
    w = jax.random.normal(key, (3,))
    state = {"w": w, "opt": TX.init(w), "t": jnp.zeros((), jnp.int32), "id": jnp.int32(0)}
    return hj.set_hparams(state, hparams)


def train_window(state, key):
    TRACES.append("train")

    def sgd(carry, _):
        w, opt = carry
        g = jax.grad(lambda w: jnp.sum((w - TARGET) ** 2))(w)
        u, opt = TX.update(g, opt, w)
        return (optax.apply_updates(w, u), opt), None

    (w, opt), _ = jax.lax.scan(sgd, (state["w"], state["opt"]), None, length=2)
    # member 2 blows up in its fourth window: a run that goes bad on its own
    broken = (state["id"] == 2) & (state["t"] == 3)
    w = jnp.where(broken, w * jnp.nan, w)
    return {**state, "w": w, "opt": opt, "t": state["t"] + 1}, {"loss": jnp.sum((w - TARGET) ** 2)}


def evaluate(state):
    loss = jnp.sum((state["w"] - TARGET) ** 2)
    return {"score": -loss, "train_score": -loss}


TASK = hj.Task(
    init=init,
    train_window=train_window,
    evaluate=evaluate,
    space=SPACE,
    default_hparams={"learning_rate": 0.1},
    name="bowl",
)


def members(n=4, key=1):
    """n members with ids 0..n-1 (member 2 is the one that breaks)."""
    keys = jax.random.split(jax.random.key(key), n)
    lrs = jnp.linspace(0.02, 0.3, n)
    state = jax.vmap(lambda k, lr: init(k, {"learning_rate": lr}))(keys, lrs)
    return {**state, "id": jnp.arange(n, dtype=jnp.int32)}


class Rows(Callback):
    def __init__(self):
        self.rows, self.pruned, self.spawned = [], [], []

    def on_row(self, loop, window, row):
        self.rows.append(row)

    def on_prune(self, loop, window, gone):
        self.pruned.append((window, gone))

    def on_spawn(self, loop, window, parents):
        self.spawned.append((window, parents))


def test_rollback_of_one_member_restores_exactly_that_member():
    rows = Rows()
    tuner = hj.guard(hj.fixed(), warmup=0, space=SPACE, shrink={})
    loop = Loop(task=TASK, tuner=tuner, population=4, callbacks=[rows],
                backoff=Backoff(plateau=50, dormant=60, noise=0.0, backoff=1.0))
    start = members()
    before = loop.run(start, jax.random.key(0), max_windows=3).carry  # windows 0..2
    # window 3 breaks member 2 only; per-member guard rolls it back at once
    after = loop.run(start, jax.random.key(0), max_windows=4).carry
    rolled = np.asarray(rows.rows[-1]["rollback"])
    assert rolled.tolist() == [False, False, True, False]
    m2 = lambda tree: jax.tree.map(lambda x: x[2], tree)  # noqa: E731
    # member 2 is exactly its best state (after window 2): weights, optimizer state, hparams
    chex.assert_trees_all_equal(m2(after.state), m2(before.snap.state))
    assert np.all(np.isfinite(np.asarray(after.state["w"])))
    # the others trained on
    assert np.asarray(after.state["t"]).tolist() == [4, 4, 3, 4]


def test_population_tuner_proposals_stay_on_device_and_exploit_copies_members():
    rows = Rows()
    loop = Loop(task=TASK, tuner=hj.pbt(SPACE, fraction=0.25), population=4,
                callbacks=[rows], backoff=Backoff(plateau=50, dormant=60, backoff=1.0))
    r = loop.run(members(), jax.random.key(0), max_windows=6)
    parents = np.stack([row["parent"] for row in rows.rows])
    assert parents.shape == (6, 4) and (parents != np.arange(4)).any()  # exploits happened
    assert r.population == 4 and 0 <= r.best_member < 4
    assert r.best_score == pytest.approx(float(r.carry.best.score))
    assert r.best_window == int(r.carry.best.window)
    # the best state is one member (no population axis) and scores what was recorded
    assert r.state["w"].shape == (3,)
    assert float(evaluate(r.state)["score"]) == pytest.approx(r.best_score, rel=1e-6)
    assert len(r.ensemble) == 3 and sum(m["weight"] for m in r.ensemble) == pytest.approx(1.0)


def test_prune_masks_members_and_spawn_refills_the_slots_from_the_best():
    class PruneAt(Callback):
        def on_window_end(self, loop, window, metrics):
            if window == 1:
                loop.prune(2)

    rows = Rows()
    loop = Loop(task=TASK, tuner=hj.pbt(SPACE), population=4, callbacks=[PruneAt(), rows],
                backoff=Backoff(plateau=50, dormant=60, backoff=1.0))
    r = loop.run(members(), jax.random.key(0), max_windows=4)
    alive = np.asarray(r.carry.alive)
    assert alive.sum() == 2 and rows.pruned and sorted(rows.pruned[0][1]) == np.flatnonzero(
        ~alive).tolist()
    dead = np.flatnonzero(~alive)
    t = np.asarray(r.carry.state["t"])
    assert (t[dead] == 2).all() and (t[alive] == 4).all()  # masked members stop training
    later = np.stack([row["parent"] for row in rows.rows[2:]])
    assert not np.isin(later[:, alive], dead).any()  # never parents
    assert np.isnan(np.asarray(r.carry.score)[dead]).all()
    # spawn (pure, as the Loop calls it on DORMANT): the masked slots copy the best
    prog = loop.program
    carry, parents = jax.jit(prog.spawn)(r.carry, jax.random.key(5), None, 0.3)
    assert np.asarray(carry.alive).all()
    parents = np.asarray(parents)
    for slot in dead:
        src = parents[slot]
        assert alive[src]
        np.testing.assert_array_equal(carry.state["w"][slot], r.carry.state["w"][src])
        lr, src_lr = (float(hj.get_hparams(s)["learning_rate"][i])
                      for s, i in ((carry.state, slot), (r.carry.state, src)))
        assert abs(lr / src_lr - 1.0) <= 0.3 + 1e-5 and SPACE.contains({"learning_rate": lr})


def test_dormant_population_prunes_and_spawns_through_the_controller():
    frozen = hj.Task(init=init, train_window=lambda s, k: (s, {}), evaluate=evaluate,
                     space=SPACE, default_hparams={"learning_rate": 0.1})
    rows = Rows()
    loop = Loop(task=frozen, tuner=hj.fixed(), population=4, callbacks=[rows],
                backoff=Backoff(plateau=1, dormant=2, noise=0.0),
                controller=MetaController(max_spawns=1, flat=100.0))
    r = loop.run(members(), jax.random.key(0), max_windows=20)
    assert r.spawns == 1 and rows.pruned and rows.spawned
    assert r.reason == "spawn budget spent"


def test_population_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    def make(directory=None):
        return Loop(task=TASK, tuner=hj.pbt(SPACE), population=4, save_every=1,
                    checkpoint_dir=None if directory is None else str(directory),
                    backoff=Backoff(plateau=50, dormant=60, backoff=1.0))

    whole = make().run(members(), jax.random.key(3), max_windows=8)
    make(tmp_path).run(members(), jax.random.key(3), max_windows=5)  # "killed" after 5
    from hagfish_jax.shell import compile_cache

    before = compile_cache.stats()
    make().run(members(), jax.random.key(3), max_windows=8)
    fresh = (compile_cache.stats() - before).requested  # a new Loop's own small programs
    before = compile_cache.stats()
    resumed = make(tmp_path).run(members(), jax.random.key(3), max_windows=8)
    # the restored state is fresh arrays, not device-committed ones: the training
    # program is not compiled again for them
    assert (compile_cache.stats() - before).requested <= fresh
    assert resumed.windows == 8 and [h["window"] for h in resumed.history] == list(range(8))
    chex.assert_trees_all_close(resumed.carry.state, whole.carry.state, rtol=1e-6)
    chex.assert_trees_all_equal(resumed.carry.tuner_state.since, whole.carry.tuner_state.since)
    assert resumed.best_score == pytest.approx(whole.best_score)


def test_one_compiled_training_program_across_tuners_and_loops():
    TRACES.clear()
    task = TASK.replace(train_window=chex.assert_max_traces(train_window, n=1))
    start = members()
    for tuner in (hj.pbt(SPACE), hj.guard(hj.finite_difference(SPACE), space=SPACE), hj.fixed()):
        Loop(task=task, tuner=tuner, population=4).run(start, jax.random.key(0), max_windows=4)
    assert TRACES.count("train") == 1  # traced once, reused by every tuner and window


def test_loop_rejects_bad_population_input():
    with pytest.raises(TypeError, match="either task"):
        Loop(train_window, evaluate, task=TASK)
    with pytest.raises(ValueError, match="population"):
        Loop(task=TASK, tuner=hj.pbt(SPACE))  # a population tuner on one run
    loop = Loop(task=TASK, tuner=hj.pbt(SPACE), population=4)
    with pytest.raises(ValueError, match="holds 3 members, not 4"):
        loop.run(members(3), jax.random.key(0), max_windows=2)
    with pytest.raises(ValueError, match="single run"):
        Loop(task=TASK).prune(1)
