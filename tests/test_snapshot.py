"""On-device best-state snapshots and branch-free restore."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import hagfish_jax as hj


def make_state(value):
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    params = {"w": jnp.full((3,), value, jnp.float32)}
    return {"params": params, "opt": tx.init(params)}


def test_keeps_best_ignores_nan_and_worse():
    snap = hj.snapshot.init(make_state(0.0))
    snap = hj.snapshot.update(snap, make_state(1.0), 0.5)
    snap = hj.snapshot.update(snap, make_state(2.0), jnp.nan)
    snap = hj.snapshot.update(snap, make_state(3.0), 0.4)
    snap = hj.snapshot.update(snap, make_state(4.0), jnp.inf)
    assert float(snap.score) == 0.5
    np.testing.assert_array_equal(snap.state["params"]["w"], 1.0)


def test_restore_if_restores_weights_optimizer_state_and_hparams_inside_jit():
    good = hj.set_hparams(make_state(1.0), {"learning_rate": 0.01})
    snap = hj.snapshot.update(hj.snapshot.init(good), good, 0.9)
    bad = hj.set_hparams(make_state(9.0), {"learning_rate": 0.5})

    @jax.jit
    def maybe_restore(flag, snap, state):
        return hj.snapshot.restore_if(flag, snap, state)

    kept = maybe_restore(jnp.asarray(False), snap, bad)
    back = maybe_restore(jnp.asarray(True), snap, bad)
    np.testing.assert_array_equal(kept["params"]["w"], 9.0)
    np.testing.assert_array_equal(back["params"]["w"], 1.0)
    assert float(hj.get_hparams(back)["learning_rate"]) == np.float32(0.01)
    chex.assert_trees_all_equal_structs(back, bad)


def test_never_scored_snapshot_restores_the_initial_state():
    snap = hj.snapshot.init(make_state(0.0))
    snap = hj.snapshot.update(snap, make_state(3.0), jnp.nan)  # a diverged window
    out = hj.snapshot.restore_if(True, snap, make_state(5.0))
    np.testing.assert_array_equal(out["params"]["w"], 0.0)
    kept = hj.snapshot.restore_if(False, snap, make_state(5.0))
    np.testing.assert_array_equal(kept["params"]["w"], 5.0)


def test_population_members_keep_and_restore_their_own_best():
    n = 4
    pop = jax.vmap(make_state)(jnp.arange(n, dtype=jnp.float32))
    snap = hj.snapshot.init(pop, population=n)
    snap = hj.snapshot.update(snap, pop, jnp.array([0.1, 0.2, 0.3, 0.4]))
    later = jax.vmap(make_state)(jnp.arange(n, dtype=jnp.float32) + 10)
    snap = hj.snapshot.update(snap, later, jnp.array([0.5, 0.0, jnp.nan, 0.9]))
    np.testing.assert_array_equal(snap.state["params"]["w"][:, 0], [10.0, 1.0, 2.0, 13.0])
    worse = jax.vmap(make_state)(jnp.full((n,), 99.0))
    flags = jnp.array([True, False, True, False])
    out = jax.jit(hj.snapshot.restore_if)(flags, snap, worse)
    np.testing.assert_array_equal(out["params"]["w"][:, 0], [10.0, 99.0, 2.0, 99.0])
    # the same, vmapped member by member
    per_member = jax.vmap(hj.snapshot.restore_if)(flags, snap, worse)
    chex.assert_trees_all_equal(per_member, out)


def test_no_retrace_across_updates():
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(snap, state, score, flag):
        snap = hj.snapshot.update(snap, state, score)
        return snap, hj.snapshot.restore_if(flag, snap, state)

    snap = hj.snapshot.init(make_state(0.0))
    for i in range(5):
        snap, _ = step(snap, make_state(float(i)), jnp.float32(i % 3), jnp.asarray(i % 2 == 0))


def test_a_tie_keeps_the_earlier_state():
    snap = hj.snapshot.update(hj.snapshot.init(make_state(0.0)), make_state(1.0), 0.5)
    snap = hj.snapshot.update(snap, make_state(2.0), 0.5)  # as good, not strictly better
    assert float(snap.score) == 0.5
    np.testing.assert_array_equal(snap.state["params"]["w"], 1.0)


def test_an_unscored_snapshot_yields_to_any_finite_score():
    snap = hj.snapshot.init(make_state(0.0))
    assert float(snap.score) == -np.inf
    pop = hj.snapshot.init(jax.vmap(make_state)(jnp.zeros(3)), population=3)
    np.testing.assert_array_equal(pop.score, -np.inf)
    snap = hj.snapshot.update(snap, make_state(1.0), -1e30)  # dreadful, but finite
    assert float(snap.score) == np.float32(-1e30)
    np.testing.assert_array_equal(snap.state["params"]["w"], 1.0)
