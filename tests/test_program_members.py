"""core.program over a population: what a member copy takes (the model, never the
member's own clock), where the copies run (only for a tuner that copies, in a branch of
their own), and what a copy, a spawn and a masked member carry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_program import SPACE, TARGET, TASK, TX, evaluate

import hagfish_jax as hj


def test_a_population_copy_takes_the_model_and_keeps_the_members_own_clock():
    def init(key, hparams):
        state = {"w": jax.random.normal(key, (3,)), "seen": jax.random.uniform(key, ())}
        return hj.set_hparams({**state, "opt": TX.init(state["w"])}, hparams)

    def train_window(state, key):
        return {**state, "seen": state["seen"] + 1.0}, {}

    task = hj.Task(
        init=init,
        train_window=train_window,
        evaluate=lambda s: {"score": -jnp.sum((s["w"] - TARGET) ** 2)},
        space=SPACE,
        default_hparams={"learning_rate": 0.1},
        restore=hj.restore_only("w", "opt"),  # "seen" is the member's own statistic
    )
    prog = hj.program.build(task, hj.pbt(SPACE, ready=1), population=4)
    carry = prog.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    before = jax.device_get(carry.state)
    carry, rows = jax.jit(prog.window)(carry)
    parents = np.asarray(rows["parent"])
    copied = np.flatnonzero(parents != np.arange(4))
    assert copied.size  # the worst member copied a better one
    after = jax.device_get(carry.state)
    for i in copied:
        np.testing.assert_array_equal(after["w"][i], before["w"][parents[i]])
        assert after["seen"][i] == before["seen"][i] + 1.0  # its own, not the parent's
    # a spawn into a masked slot copies the same way
    carry = prog.prune(carry, 1)
    dead = int(np.flatnonzero(~np.asarray(carry.alive))[0])
    carry, parents = prog.spawn(carry, jax.random.key(2), 1)
    src = int(parents[dead])
    assert src != dead
    np.testing.assert_array_equal(carry.state["w"][dead], after["w"][src])
    assert float(carry.state["seen"][dead]) == float(after["seen"][dead])


def _window(tuner):
    """The jaxpr of a 4-member population's window under ``tuner``, and its carry."""
    prog = hj.program.build(TASK, tuner, population=4)
    carry = prog.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    return jax.make_jaxpr(prog.window)(carry).jaxpr, carry


def test_only_a_tuner_that_copies_members_compiles_member_copies():
    assert "gather" not in str(_window(hj.fixed())[0])  # a single-run tuner's "keep"
    assert "gather" in str(_window(hj.pbt(SPACE))[0])


def _gathers(jaxpr, in_cond=False):
    """``(inside a cond branch, operand shape)`` of every gather in ``jaxpr``."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "gather":
            found.append((in_cond, tuple(eqn.invars[0].aval.shape)))
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _gathers(inner, in_cond or eqn.primitive.name == "cond")
    return found


def test_member_copies_and_exploration_run_in_a_branch_of_their_own():
    # XLA would otherwise recompute PBT's selection inside every leaf's copy kernel,
    # and the copies would run in windows that replace no one
    tuner = hj.pbt(SPACE)
    jaxpr, carry = _window(tuner)
    found = _gathers(jaxpr)
    leaves = {tuple(x.shape) for x in jax.tree.leaves(carry.state)}
    # the weights' copies (a (4,) gather may be the selection's own, outside)
    copies = [(c, s) for c, s in found if s in leaves and len(s) > 1 and s[0] == 4]
    assert copies and all(c for c, _ in copies), found
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    obs = hj.Observation(score=jnp.arange(4.0))
    found = _gathers(jax.make_jaxpr(tuner.update)(state, obs).jaxpr)
    inherited = [s for c, s in found if c]  # the parents' hyperparameters
    assert inherited == [(4,)] * len(state.hparams), found


# -- what a copy, a spawn and a masked member carry (each line below once let a broken
# -- program pass: a copy without the parent's snapshot, a spawn's noise on everyone...)
SPACE2 = hj.Space(learning_rate=hj.LogUniform(1e-3, 0.5), b1=hj.Uniform(0.5, 0.99))
TX2 = optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.9)


def _task2():
    def init(key, hp):
        w = jax.random.normal(key, (3,))
        return hj.set_hparams({"w": w, "opt": TX2.init(w)}, hp)

    def train_window(state, key):
        g = jax.grad(lambda w: jnp.sum((w - TARGET) ** 2))(state["w"])
        u, opt = TX2.update(g, state["opt"], state["w"])
        return {"w": optax.apply_updates(state["w"], u), "opt": opt}, {}

    return hj.Task(init=init, train_window=train_window, evaluate=evaluate, space=SPACE2,
                   default_hparams={"learning_rate": 0.05, "b1": 0.9})


def scripted(parents_at, rollback=False, explore=False):
    """A population tuner that keeps the values it sees and, at window ``w``, proposes
    the parents ``parents_at[w]`` (keep everyone otherwise); asks a rollback and flags
    exploration every window when told to."""

    def init(key, hp):
        return jnp.zeros((), jnp.int32)

    def update(t, obs):
        n = obs.score.shape[0]
        parents = jnp.full((n,), hj.KEEP, jnp.int32)
        for w, p in parents_at.items():
            parents = jnp.where(t == w, jnp.asarray(p, jnp.int32), parents)
        flags = jnp.full((n,), rollback), jnp.full((n,), explore)
        return hj.Proposal(dict(obs.hparams), parents, *flags), t + 1

    return hj.Tuner(init, update, population=True)


@pytest.fixture(scope="module")
def copied_once():
    """4 members; at the third window member 0 copies member 3."""
    prog = hj.program.build(_task2(), scripted({2: [3, 1, 2, 3]}), population=4)
    hp = {"learning_rate": jnp.array([0.001, 0.01, 0.03, 0.1]), "b1": jnp.full(4, 0.9)}
    carry = prog.init(jax.random.key(0), hp)
    before, _ = jax.jit(lambda c: hj.program.scan(prog, c, 2))(carry)
    # member 0 has rolled back twice to a snapshot it will not beat this window
    snap = before.snap._replace(score=before.snap.score.at[0].set(1e9))
    before = before._replace(repeats=jnp.array([2, 0, 0, 0], jnp.int32), snap=snap)
    after, row = jax.jit(prog.window)(before)
    return prog, jax.device_get(before), jax.device_get(after), jax.device_get(row)


def test_a_copy_takes_its_parents_snapshot_and_starts_its_rollback_count_afresh(copied_once):
    _, before, after, row = copied_once
    assert row["parent"].tolist() == [3, 1, 2, 3]
    # member 0's snapshot is now its parent's (this window's update included): a later
    # rollback brings back the parent's best weights, not the replaced member's
    np.testing.assert_array_equal(after.snap.state["w"][0], after.snap.state["w"][3])
    assert after.snap.score[0] == after.snap.score[3]
    assert not np.array_equal(before.snap.state["w"][0], before.snap.state["w"][3])
    assert after.repeats[0] == 0  # the copy has made no rollbacks to this snapshot
    # it is ranked from now on by the score of the weights it holds: its parent's
    assert after.score[0] == row["score"][3] and row["score"][0] != row["score"][3]


def test_a_spawn_copies_snapshot_and_score_and_noises_only_the_filled_slot(copied_once):
    prog, _, after, _ = copied_once
    carry = jax.tree.map(jnp.asarray, after)
    carry = carry._replace(alive=jnp.array([True, True, False, True]))
    hp_before = jax.device_get(hj.get_hparams(carry.state))
    spawned, parents = jax.jit(prog.spawn, static_argnums=2)(carry, jax.random.key(5), 1)
    spawned, parents = jax.device_get((spawned, parents))
    src = int(parents[2])
    assert src in (0, 1, 3) and spawned.alive.tolist() == [True] * 4
    np.testing.assert_array_equal(spawned.snap.state["w"][2], after.snap.state["w"][src])
    assert spawned.snap.score[2] == after.snap.score[src]
    assert spawned.score[2] == after.score[src]  # ranked by the copied weights' score
    hp = hj.get_hparams(spawned.state)
    for name in ("learning_rate", "b1"):  # the others keep their values exactly
        np.testing.assert_array_equal(hp[name][[0, 1, 3]], hp_before[name][[0, 1, 3]])
    # the filled slot's values are its parent's with noise, one draw per name
    ratios = [hp[name][2] / hp_before[name][src] for name in ("learning_rate", "b1")]
    assert all(r != 1.0 for r in ratios) and ratios[0] != pytest.approx(ratios[1], abs=1e-6)


def test_a_masked_member_is_never_rolled_back_nor_exploring():
    prog = hj.program.build(_task2(), scripted({}, rollback=True, explore=True), population=3)
    carry = prog.init(jax.random.key(0))
    carry = carry._replace(alive=jnp.array([True, False, True]))
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 3))(carry)
    back = np.asarray(rows["rollback"])
    assert back[:, [0, 2]].any() and not back[:, 1].any()  # asked for all, alive only
    assert carry.exploring.tolist() == [True, False, True]


def test_a_single_runs_rollback_count_restarts_when_a_tie_moves_its_snapshot():
    # the score ties every window, the validation loss falls: each window becomes the
    # new best (and the rollback target), so a rollback asked every window is never
    # "the same snapshot again" and is never refused
    def init(key, hp):
        return {"t": jnp.zeros(()), "extra": hj.extra_hparams(**hp)}

    task = hj.Task(init=init, train_window=lambda s, k: ({**s, "t": s["t"] + 1.0}, {}),
                   evaluate=lambda s: {"score": jnp.float32(0.5), "val_loss": 1.0 / (1 + s["t"])},
                   space=SPACE, default_hparams={"learning_rate": 0.1})
    always = hj.Tuner(lambda k, hp: jnp.zeros(()),
                      lambda s, o: (hj.Proposal(dict(o.hparams), jnp.asarray(hj.KEEP), True), s))
    prog = hj.program.build(task, always, max_repeats=1)
    carry, rows = jax.jit(lambda c: hj.program.scan(prog, c, 4))(prog.init(jax.random.key(0)))
    assert np.asarray(rows["rollback"]).all()
    assert int(carry.best.window) == 3
