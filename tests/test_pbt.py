"""PBT: truncation sizes and selection, exploit and explore inside the space, NaN and
masked members, ``ready``, lineage over scanned generations without retracing, and the
documented edge cases (rounding, independent directions, the values applied)."""

from __future__ import annotations

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_population import SPACE, make_members

import hagfish_jax as hj
from hagfish_jax.core.tuners import truncation_size
from hagfish_jax.core.tuners.pbt import READY

# -- PBT -------------------------------------------------------------------------------


@pytest.mark.parametrize("n, k", [(2, 1), (5, 1), (16, 4), (33, 8)])
def test_truncation_sizes(n, k):
    assert int(truncation_size(0.25, n)) == k
    tuner = hj.pbt(SPACE, fraction=0.25, ready=1)
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), n))
    scores = jax.random.permutation(jax.random.key(2), jnp.arange(n, dtype=jnp.float32))
    proposal, _ = tuner.update(state, hj.Observation(score=scores))
    replaced = np.flatnonzero(np.asarray(proposal.parents) != np.arange(n))
    order = np.argsort(-np.asarray(scores))
    assert sorted(replaced) == sorted(order[-k:])
    assert set(np.asarray(proposal.parents)[replaced]) <= set(order[:k])


def test_truncation_select_is_what_pbt_exploits_with_and_population_select_takes_by_index():
    pbt_module = importlib.import_module("hagfish_jax.core.tuners.pbt")

    assert not hasattr(pbt_module, "select")  # one name, one meaning
    obs = hj.Observation(score=jnp.array([0.1, 0.9, 0.5, 0.7]))
    since = jnp.zeros(4, jnp.int32)
    parents, replaced, _ = pbt_module.truncation_select(jax.random.key(0), obs, since, 0.25, 1)
    assert parents.tolist() == [1, 1, 2, 3] and replaced.tolist() == [True, False, False, False]
    tuner = hj.pbt(SPACE, fraction=0.25, ready=1)
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    proposal, _ = tuner.update(state, obs)  # one top member: every draw picks it
    assert proposal.parents.tolist() == [1, 1, 2, 3]
    assert hj.population.select({"w": jnp.arange(4.0)}, [3, 1])["w"].tolist() == [3.0, 1.0]


def test_top_members_untouched_and_explore_in_space():
    n = 16
    tuner = hj.pbt(SPACE, resample=0.5, ready=1)
    hp0 = SPACE.sample(jax.random.key(1), n)
    state = tuner.init(jax.random.key(0), hp0)
    scores = jnp.arange(n, dtype=jnp.float32)
    proposal, _ = tuner.update(state, hj.Observation(score=scores))
    kept = np.asarray(proposal.parents) == np.arange(n)
    for name in hp0:
        np.testing.assert_array_equal(
            np.asarray(proposal.hparams[name])[kept], np.asarray(hp0[name])[kept]
        )
    assert SPACE.contains(proposal.hparams)
    assert (~kept).sum() == 4


def test_identity_explore_copies_parent_exactly():
    n = 8
    tuner = hj.pbt(SPACE, perturb=(1.0, 1.0), resample=0.0, ready=1)
    hp0 = SPACE.sample(jax.random.key(1), n)
    state = tuner.init(jax.random.key(0), hp0)
    proposal, _ = tuner.update(state, hj.Observation(score=jnp.arange(n, dtype=jnp.float32)))
    p = np.asarray(proposal.parents)
    for name in hp0:
        np.testing.assert_array_equal(proposal.hparams[name], np.asarray(hp0[name])[p])
    members = make_members(n)
    copied = hj.population.exploit(members, proposal.parents)
    np.testing.assert_array_equal(copied["params"]["w"], np.asarray(members["params"]["w"])[p])


def test_nan_members_replaced_masked_never_parents_nor_replaced():
    n = 8
    tuner = hj.pbt(SPACE, fraction=0.25, ready=1)
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), n))
    scores = jnp.array([0.9, jnp.nan, 0.5, 0.6, jnp.inf, 0.7, 0.95, 0.99])
    alive = jnp.array([True, True, True, True, True, True, False, False])  # best two dead
    for seed in range(5):
        state = state._replace(key=jax.random.key(seed))
        proposal, _ = tuner.update(state, hj.Observation(score=scores, alive=alive))
        parents = np.asarray(proposal.parents)
        assert parents[1] != 1 and parents[4] != 4  # NaN / inf replaced
        assert parents[6] == 6 and parents[7] == 7  # dead slots untouched
        assert not set(parents[parents != np.arange(n)]) & {6, 7}  # never parents
        assert set(parents[parents != np.arange(n)]) <= {0, 5}  # top 2 of the 6 living


def test_ready_gates_recently_replaced_members():
    n = 4
    tuner = hj.pbt(SPACE, fraction=0.25, ready=3)
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), n))
    scores = jnp.array([0.1, 0.2, 0.3, 0.4])
    replaced = []
    for _ in range(7):
        proposal, state = tuner.update(state, hj.Observation(score=scores))
        replaced.append(np.flatnonzero(np.asarray(proposal.parents) != np.arange(n)).tolist())
    # nobody is compared before three windows; then the worst *eligible* member goes
    assert replaced == [[], [], [0], [1], [2], [0], [1]]


def test_ready_as_a_share_of_the_run_follows_the_horizon():
    """A ready given as a share of the run gates like the integer it resolves to, from
    the tuner's horizon or the observation's, and refuses to guess without either; the
    default is 2 windows and needs no horizon."""
    n = 4
    scores = jnp.array([0.1, 0.2, 0.3, 0.4])

    def replaced(tuner, horizon=None):
        state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), n))
        out = []
        for _ in range(7):
            obs = hj.Observation(score=scores, horizon=horizon)
            proposal, state = tuner.update(state, obs)
            out.append(np.flatnonzero(np.asarray(proposal.parents) != np.arange(n)).tolist())
        return out

    three = replaced(hj.pbt(SPACE, fraction=0.25, ready=3))
    assert replaced(hj.pbt(SPACE, fraction=0.25, ready=0.15), horizon=20) == three  # 3 of 20
    assert replaced(hj.pbt(SPACE, fraction=0.25, ready=0.15, horizon=20)) == three
    assert replaced(hj.pbt(SPACE, fraction=0.25, ready=0.1), horizon=20) == replaced(
        hj.pbt(SPACE, fraction=0.25, ready=2)
    )
    assert READY == 2
    assert replaced(hj.pbt(SPACE, fraction=0.25)) == replaced(hj.pbt(SPACE, fraction=0.25, ready=2))
    unknown = "the run's length is unknown, and ready=0.15 is a share of the run"
    with pytest.raises(ValueError, match=unknown):
        replaced(hj.pbt(SPACE, ready=0.15))


def generation_fn(tuner):
    """One PBT generation on a toy population: score depends on the learning rate."""

    def body(carry, _):
        state, members = carry
        lr = state.hparams["learning_rate"]
        score = -jnp.abs(jnp.log10(lr) + 2.0) + 0.01 * members["params"]["b"]
        proposal, state = tuner.update(state, hj.Observation(score=score))
        members = hj.population.exploit(members, proposal.parents)
        return (state, members), hj.population.lineage(proposal, score)

    return body


def test_same_key_same_lineage_loop_equals_scan_and_no_retrace_over_100_generations():
    n = 8
    tuner = hj.pbt(SPACE, ready=1)
    body = generation_fn(tuner)
    hp0 = SPACE.sample(jax.random.key(1), n)
    members = make_members(n)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(carry):
        return body(carry, None)

    carry = (tuner.init(jax.random.key(7), hp0), members)
    records = []
    for _ in range(100):
        carry, rec = step(carry)
        records.append(rec)
    loop = jax.tree.map(lambda *x: jnp.stack(x), *records)

    scan = jax.jit(lambda c: jax.lax.scan(body, c, None, length=100))
    _, scanned = scan((tuner.init(jax.random.key(7), hp0), members))
    _, again = scan((tuner.init(jax.random.key(7), hp0), members))
    np.testing.assert_array_equal(loop.parents, scanned.parents)
    np.testing.assert_allclose(
        loop.hparams["learning_rate"], scanned.hparams["learning_rate"], rtol=1e-6
    )
    np.testing.assert_array_equal(scanned.parents, again.parents)
    assert (np.asarray(scanned.parents) != np.arange(n)).any()
    # PBT drives the population towards the best learning rate (1e-2)
    final = np.log10(np.asarray(scanned.hparams["learning_rate"][-1]))
    assert np.median(np.abs(final + 2.0)) < 0.3
    rows = hj.population.lineage_rows(jax.tree.map(lambda x: x[:2], scanned))
    assert len(rows) == 2 * n and {"generation", "member", "parent", "learning_rate"} <= set(
        rows[0]
    )


def test_pbt_validation():
    with pytest.raises(ValueError, match="fraction"):
        hj.pbt(SPACE, fraction=0.6)
    with pytest.raises(ValueError, match="resample"):
        hj.pbt(SPACE, resample=2.0)
    with pytest.raises(ValueError, match="ready"):
        hj.pbt(SPACE, ready=0)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        hj.pbt(SPACE).init(jax.random.key(0), {"learning_rate": 1e-3, "b1": 0.9})


def test_given_uniforms_pick_the_parents_among_the_top_set():
    from hagfish_jax.core.tuners.pbt import truncation_select

    obs = hj.Observation(score=jnp.arange(8.0))  # members 6 and 7 are the top two
    since = jnp.zeros(8, jnp.int32)
    u = jnp.array([0.0, 0.99, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    parents, replaced, _ = truncation_select(None, obs, since, 0.25, 1, u=u)
    assert replaced.tolist() == [True, True] + [False] * 6
    assert parents.tolist()[:2] == [7, 6]  # u in [0, 1/2): the best; [1/2, 1): the second
    with pytest.raises(ValueError, match="a key or the uniforms"):
        truncation_select(None, obs, since, 0.25, 1)


# -- PBT: rounding, NaN members, independent directions, the values applied ----------------


def test_truncation_size_rounds_halves_up():
    # fraction * n ends in .5: rounded up (then at least 1, at most n // 2)
    assert [int(truncation_size(0.25, n)) for n in (2, 6, 10, 14)] == [1, 2, 3, 4]
    assert int(truncation_size(0.5, 3)) == 1


N_PBT = 32  # fraction 0.25: top and bottom sets of 8


@pytest.fixture(scope="module")
def pbt32():
    """One PBT (perturbation only) and its jitted update, shared by the tests below."""
    tuner = hj.pbt(SPACE, fraction=0.25, resample=0.0, ready=1)
    hp0 = SPACE.sample(jax.random.key(1), N_PBT)
    return tuner, jax.jit(tuner.update), hp0


def test_every_nan_member_is_replaced_even_beyond_the_bottom_set(pbt32):
    tuner, update, hp0 = pbt32
    scores = np.arange(N_PBT, dtype=np.float32)
    bad = [0, 3, 5, 8, 11, 12, 20, 21, 25, 30]  # ten non-finite scores, a bottom set of 8
    scores[bad] = [np.nan, np.inf, -np.inf] * 3 + [np.nan]
    state = tuner.init(jax.random.key(0), hp0)
    proposal, _ = update(state, hj.Observation(score=jnp.asarray(scores), hparams=hp0))
    parents = np.asarray(proposal.parents)
    replaced = np.flatnonzero(parents != np.arange(N_PBT))
    assert replaced.tolist() == bad
    top = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf))[:8]
    assert set(parents[replaced]) <= set(top)


def test_pbt_perturbs_each_dimension_in_its_own_direction(pbt32):
    tuner, update, _ = pbt32
    hp0 = {"learning_rate": jnp.full((N_PBT,), 1e-2), "b1": jnp.full((N_PBT,), 0.7)}
    obs = hj.Observation(score=jnp.arange(N_PBT, dtype=jnp.float32), hparams=hp0)
    lr_up, b1_up = [], []
    for seed in range(4):
        proposal, _ = update(tuner.init(jax.random.key(seed), hp0), obs)
        replaced = np.asarray(proposal.parents) != np.arange(N_PBT)
        assert replaced.sum() == 8
        lr_up += list(np.asarray(proposal.hparams["learning_rate"])[replaced] > 1e-2)
        b1_up += list(np.asarray(proposal.hparams["b1"])[replaced] > 0.7)
    lr_up, b1_up = np.array(lr_up), np.array(b1_up)
    # a fair coin per member and dimension: the directions agree about half the time
    assert 0.25 < np.mean(lr_up == b1_up) < 0.75
    assert 0.25 < lr_up.mean() < 0.75 and 0.25 < b1_up.mean() < 0.75


def test_pbt_starts_from_the_values_actually_applied(pbt32):
    tuner, update, hp0 = pbt32
    state = tuner.init(jax.random.key(0), hp0)
    # a guard or a rollback changed the values in force: the tuner must build on them
    applied = {"learning_rate": jnp.geomspace(2e-4, 2e-2, N_PBT), "b1": jnp.full((N_PBT,), 0.7)}
    scores = jnp.arange(N_PBT, dtype=jnp.float32)
    proposal, _ = update(state, hj.Observation(score=scores, hparams=applied))
    parents = np.asarray(proposal.parents)
    kept = parents == np.arange(N_PBT)
    lr, b1 = (np.asarray(proposal.hparams[k]) for k in ("learning_rate", "b1"))
    np.testing.assert_array_equal(lr[kept], np.asarray(applied["learning_rate"])[kept])
    np.testing.assert_array_equal(b1[kept], np.float32(0.7))
    # a replaced member perturbs its parent's applied values by 0.8 or 1.25
    ratio = lr[~kept] / np.asarray(applied["learning_rate"])[parents[~kept]]
    assert np.all(np.isclose(ratio, 0.8, rtol=1e-5) | np.isclose(ratio, 1.25, rtol=1e-5))
    assert np.all(np.isclose(b1[~kept], 0.56) | np.isclose(b1[~kept], 0.875))  # 0.7 -+ 0.2 * 0.7
