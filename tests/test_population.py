"""Populations (init, exploit, rank, prune and spawn, parents and lineage rows),
ensembles, and a population sharded over four devices. PBT itself: test_pbt.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hagfish_jax as hj

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1), b1=hj.Uniform(0.5, 0.99))


def make_members(n, seed=0):
    key = jax.random.key(seed)
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def init_member(k):
        params = {"w": jax.random.normal(k, (3,)), "b": jax.random.normal(k, ())}
        return {"params": params, "opt": tx.init(params)}

    return hj.population.init(key, n, init_member)


# -- population helpers --------------------------------------------------------------


def test_init_stacks_members_and_exploit_copies_exact_leaves():
    members = make_members(6)
    assert members["params"]["w"].shape == (6, 3)
    parents = jnp.array([5, 1, 2, 5, -1, 5])
    out = jax.jit(hj.population.exploit)(members, parents)
    for leaf_in, leaf_out in zip(jax.tree.leaves(members), jax.tree.leaves(out)):
        for i, p in enumerate([5, 1, 2, 5, 4, 5]):
            np.testing.assert_array_equal(leaf_out[i], leaf_in[p])
    chex.assert_trees_all_equal_structs(out, members)
    chex.assert_trees_all_equal_shapes_and_dtypes(out, members)


def test_exploit_with_a_scalar_keep_is_identity():
    members = make_members(3)
    chex.assert_trees_all_equal(hj.population.exploit(members, jnp.int32(hj.KEEP)), members)


def test_rank_puts_nan_and_ineligible_last():
    r = hj.population.rank(
        jnp.array([0.1, jnp.nan, 0.9, 0.5, 0.7]), jnp.array([1, 1, 1, 1, 0], bool)
    )
    assert r.tolist() == [2, 3, 0, 1, 4]


def test_prune_masks_the_worst_and_spawn_fills_only_masked_slots():
    scores = jnp.array([0.5, 0.1, jnp.nan, 0.9, 0.7, 0.3])
    alive = hj.population.prune(hj.population.alive_mask(6), scores, 2)
    assert alive.tolist() == [True, False, False, True, True, True]
    # never prune the last living member
    assert int(hj.population.prune(jnp.array([1, 0, 0], bool), jnp.zeros(3), 5).sum()) == 1

    members = make_members(6)
    new, alive2, parents = hj.population.spawn(members, alive, scores, count=1)
    assert alive2.tolist() == [True, True, False, True, True, True]
    assert parents.tolist() == [0, 3, 2, 3, 4, 5]  # slot 1 gets the best (member 3)
    for a, b in zip(jax.tree.leaves(members), jax.tree.leaves(new)):
        np.testing.assert_array_equal(b[1], a[3])
        np.testing.assert_array_equal(np.delete(b, 1, axis=0), np.delete(a, 1, axis=0))
    _, alive3, parents3 = hj.population.spawn(members, alive, scores)
    assert alive3.all() and parents3.tolist() == [0, 3, 4, 3, 4, 5]


# -- ensembles ----------------------------------------------------------------------------


def test_ensemble_weights_sum_to_one_order_by_score_and_ignore_masked():
    hist = jnp.array([[0.1, 0.5, 0.9, 0.7, jnp.nan], [0.2, 0.6, 0.8, 0.7, jnp.nan]])
    alive = jnp.array([True, True, True, False, True])
    w = np.asarray(hj.ensemble.weights(hist, alive))
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert w[3] == 0.0 and w[4] == 0.0
    assert w[2] > w[1] > w[0] > 0
    # invariant to the score's units
    np.testing.assert_allclose(hj.ensemble.weights(1000 * hist, alive), w, rtol=1e-5)
    assert hj.ensemble.top_k(hist[-1], 2, alive).tolist() == [2, 1]
    # nothing finite: uniform over the living members; nobody alive: nothing to weight
    none = jnp.full((1, 3), jnp.nan)
    mask = jnp.array([True, False, True])
    np.testing.assert_allclose(hj.ensemble.weights(none, mask), [0.5, 0.0, 0.5])
    assert hj.ensemble.weights(hist[:, :3], jnp.zeros(3, bool)).tolist() == [0.0, 0.0, 0.0]


def test_ensemble_predict_classifier_sums_to_one_and_regression_averages():
    n, b, c = 3, 5, 4
    params = {"w": jax.random.normal(jax.random.key(0), (n, 2, c))}
    x = jax.random.normal(jax.random.key(1), (b, 2))
    apply_fn = lambda p, x: x @ p["w"]  # noqa: E731
    w = jnp.array([0.2, 0.8, 0.0])
    probs = hj.ensemble.predict(apply_fn, params, x, w)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    expected = 0.2 * jax.nn.softmax(x @ params["w"][0]) + 0.8 * jax.nn.softmax(x @ params["w"][1])
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    reg = hj.ensemble.predict(apply_fn, params, x, w, kind="regression")
    np.testing.assert_allclose(
        reg, 0.2 * (x @ params["w"][0]) + 0.8 * (x @ params["w"][1]), rtol=1e-5
    )


# -- sharding across devices ----------------------------------------------------------


def test_sharded_population_matches_unsharded_on_four_devices():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax, json
        import hagfish_jax as hj
        assert len(jax.devices()) == 4
        space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
        tuner = hj.pbt(space, ready=1)
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3)
        n = 8
        x = jax.random.normal(jax.random.key(0), (32, 3))
        y = x @ jnp.array([1.0, -1.0, 2.0])

        def init_member(k):
            w = jax.random.normal(k, (3,))
            return {"w": w, "opt": tx.init(w)}

        def gen(carry, _):
            ts, m = carry
            m = hj.set_hparams(m, {"learning_rate": ts.hparams["learning_rate"]})
            def train(mm):
                def step(c, _):
                    g = jax.grad(lambda w: jnp.mean((x @ w - y) ** 2))(c["w"])
                    u, o = tx.update(g, c["opt"], c["w"])
                    return {"w": optax.apply_updates(c["w"], u), "opt": o}, None
                return jax.lax.scan(step, mm, None, length=5)[0]
            m = jax.vmap(train)(m)
            score = -jax.vmap(lambda w: jnp.mean((x @ w - y) ** 2))(m["w"])
            p, ts = tuner.update(ts, hj.Observation(score=score))
            m = hj.population.exploit(m, p.parents)
            return (ts, m), (score, p.parents)

        members = hj.population.init(jax.random.key(1), n, init_member)
        ts = tuner.init(jax.random.key(2), space.sample(jax.random.key(3), n))
        run = jax.jit(lambda c: jax.lax.scan(gen, c, None, length=10))
        (_, m1), (s1, p1) = run((ts, members))
        mesh = hj.population.make_mesh()
        sharded = hj.population.shard(members, mesh)
        ts_sharded = hj.population.shard(ts, mesh)
        devs = {d for leaf in jax.tree.leaves(sharded) for d in leaf.sharding.device_set}
        (_, m2), (s2, p2) = run((ts_sharded, sharded))
        out_devs = {d for d in m2["w"].sharding.device_set}
        print(json.dumps({
            "devices": len(devs), "out_devices": len(out_devs),
            "scores_equal": bool(np.allclose(s1, s2, rtol=1e-5, atol=1e-6)),
            "lineage_equal": bool(np.array_equal(p1, p2)),
            "exploited": bool((np.asarray(p1) != np.arange(n)).any()),
        }))
        """
    )
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "devices": 4,
        "out_devices": 4,
        "scores_equal": True,
        "lineage_equal": True,
        "exploited": True,
    }

# -- ranks, parents and lineage rows: the documented edge cases ----------------------------


def test_a_member_may_copy_member_zero():
    assert hj.population.resolve(jnp.array([0, -1, 0]), 3).tolist() == [0, 1, 0]
    members = {"w": jnp.array([10.0, 20.0, 30.0])}
    copied = hj.population.exploit(members, jnp.array([0, 0, -1]))
    assert copied["w"].tolist() == [10.0, 10.0, 30.0]
    proposal = hj.Proposal({"lr": jnp.ones(3)}, jnp.array([0, 0, 2]), False)
    assert hj.population.lineage(proposal, jnp.zeros(3)).parents.tolist() == [0, 0, 2]


def test_rank_ties_go_to_the_lower_index_and_nan_ranks_above_ineligible():
    rank = jax.jit(hj.population.rank)
    assert rank(jnp.array([0.5, 0.5, 0.9, 0.5])).tolist() == [1, 2, 0, 3]
    assert rank(jnp.array([jnp.nan, 0.1, jnp.nan, 0.1])).tolist() == [2, 0, 3, 1]
    # an eligible NaN member ranks above an ineligible one, whatever their indices
    eligible = jnp.array([True, False, True, True])
    assert rank(jnp.array([0.5, 0.9, jnp.nan, 0.1]), eligible).tolist() == [0, 3, 2, 1]


def test_lineage_rows_number_the_generations_of_a_scanned_stack_from_start():
    records = [
        hj.population.lineage(
            hj.Proposal({"lr": jnp.array([0.1, 0.2]) * (g + 1)}, jnp.array([1, -1]), False),
            jnp.array([g, -g], jnp.float32),
            jnp.array([True, g != 1]),
        )
        for g in range(3)
    ]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *records)
    rows = hj.population.lineage_rows(stacked, start=5)
    assert [(r["generation"], r["member"]) for r in rows] == [
        (5, 0),
        (5, 1),
        (6, 0),
        (6, 1),
        (7, 0),
        (7, 1),
    ]
    assert [r["parent"] for r in rows] == [1, 1] * 3
    assert [r["score"] for r in rows] == [0.0, 0.0, 1.0, -1.0, 2.0, -2.0]
    assert [r["alive"] for r in rows] == [True, True, True, False, True, True]
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.2, 0.2, 0.4, 0.3, 0.6])
