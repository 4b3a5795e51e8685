"""PB2: PBT with a GP-UCB explore step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0), momentum=hj.Uniform(0.0, 0.99))


def gain_rate(hp):
    """Fraction of the loss removed per window; best at lr 1e-2 and momentum 0.9."""
    z = (jnp.log10(hp["learning_rate"]) + 2.0) / 0.4
    m = (hp["momentum"] - 0.9) / 0.2
    lr_penalty = 0.1 * jnp.maximum(jnp.log10(hp["learning_rate"]) + 0.7, 0.0)
    return 0.05 * jnp.exp(-0.5 * (z**2 + m**2)) - lr_penalty


def population_run(key, tuner, generations, n=4):
    """Members start far from the optimum; exploit copies the loss (the 'weights')."""
    k1, k2 = jax.random.split(key)
    hp0 = {
        "learning_rate": jnp.exp(jax.random.uniform(k1, (n,), minval=-9.2, maxval=-8.1)),
        "momentum": jax.random.uniform(k2, (n,), maxval=0.3),
    }

    def body(carry, _):
        ts, loss, hp = carry
        loss = loss * (1.0 - gain_rate(hp))
        proposal, ts = tuner.update(ts, hj.Observation(score=-loss))
        return (ts, loss[proposal.parents], proposal.hparams), proposal.parents

    init = (tuner.init(key, hp0), jnp.ones(n), hp0)
    (_, loss, hp), parents = jax.lax.scan(body, init, None, length=generations)
    return -jnp.min(loss), hp, parents


# the runs below; both exploit every generation, so the test compares their explore steps
PB2 = hj.pb2(SPACE, capacity=32, candidates=64, fit_steps=5, horizon=30, ready=1)


def test_pb2_beats_pbt_on_a_population_of_four_over_five_seeds():
    keys = jax.random.split(jax.random.key(0), 5)
    finals = {}
    for name, tuner in (("pbt", hj.pbt(SPACE, ready=1)), ("pb2", PB2)):
        best, hp, _ = jax.jit(jax.vmap(lambda k, t=tuner: population_run(k, t, 30)))(keys)
        finals[name] = np.asarray(best)
        assert SPACE.contains({k: np.asarray(v) for k, v in hp.items()})
    assert finals["pb2"].mean() > finals["pbt"].mean(), finals
    assert (finals["pb2"] > finals["pbt"]).sum() >= 4, finals


def test_pb2_same_key_same_lineage_and_no_retrace():
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(state, obs):
        return PB2.update(state, obs)

    def run(seed):
        state = PB2.init(jax.random.key(seed), SPACE.sample(jax.random.key(9), 4))
        out = []
        for g in range(12):
            scores = jnp.sin(jnp.arange(4.0) + g) + (g == 5) * jnp.array([jnp.nan, 0, 0, 0])
            proposal, state = update(state, hj.Observation(score=scores))
            out.append(np.asarray(proposal.parents))
            assert SPACE.contains(proposal.hparams)
        return np.stack(out), state

    a, state = run(1)
    b, _ = run(1)
    np.testing.assert_array_equal(a, b)
    assert a[5][0] != 0  # the NaN member was replaced
    assert int(state.buf.count) > 32  # the history buffer wrapped


def test_pb2_masked_members_are_never_parents_and_batch_choices_spread():
    tuner = hj.pb2(SPACE, fraction=0.5, candidates=64, fit_steps=3, horizon=100, ready=1)
    n = 8
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), n))
    alive = jnp.array([True] * 6 + [False] * 2)
    for g in range(3):
        scores = jnp.arange(n, dtype=jnp.float32) + g
        proposal, state = tuner.update(state, hj.Observation(score=scores, alive=alive))
        parents = np.asarray(proposal.parents)
        assert parents[6] == 6 and parents[7] == 7
        assert not {6, 7} & set(parents[parents != np.arange(n)])
    replaced = parents != np.arange(n)
    chosen = np.asarray(SPACE.to_unit(proposal.hparams))[replaced]
    assert len(chosen) == 3 and len({tuple(np.round(c, 4)) for c in chosen}) == 3


def test_pb2_validation():
    with pytest.raises(ValueError, match="fraction"):
        hj.pb2(SPACE, fraction=0.0)
    with pytest.raises(ValueError, match="beta"):
        hj.pb2(SPACE, beta=0.0)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        hj.pb2(SPACE).init(jax.random.key(0), {"learning_rate": 1e-3, "momentum": 0.9})


def test_pb2_refits_the_length_scales_every_refit_every_generations():
    tuner = hj.pb2(SPACE, candidates=16, fit_steps=3, refit_every=3, horizon=30)
    update = jax.jit(tuner.update)
    state = tuner.init(jax.random.key(0), SPACE.sample(jax.random.key(1), 4))
    changed = []
    for g in range(10):
        scores = jnp.asarray(np.sin(np.arange(4) + g) + 0.1 * g, jnp.float32)
        before = state.gp_params.lengthscales
        _, state = update(state, hj.Observation(score=scores))
        changed.append(not np.array_equal(before, state.gp_params.lengthscales))
    # fitted in generations 0, 3, 6, 9 only (once there is data to fit)
    assert all(g % 3 == 0 for g, c in enumerate(changed) if c), changed
    assert sum(changed) >= 2
    with pytest.raises(ValueError, match="refit_every"):
        hj.pb2(SPACE, refit_every=0)


# -- the explore step in detail: one jitted update per tuner, shared by the tests -----------

N = 8


@pytest.fixture(scope="module")
def lr_only():
    """PB2 tuning the learning rate only (momentum rides along), half the members replaced
    from the second generation on; ``step`` always passes ``alive`` and ``hparams``."""
    tuner = hj.pb2(
        SPACE,
        names=["learning_rate"],
        fraction=0.5,
        ready=2,
        candidates=16,
        fit_steps=5,
        horizon=20,
    )
    update = jax.jit(tuner.update)

    def step(state, scores, alive=None, hparams=None):
        alive = jnp.ones(N, bool) if alive is None else alive
        hparams = state.hparams if hparams is None else hparams
        obs = hj.Observation(score=jnp.asarray(scores, jnp.float32), alive=alive, hparams=hparams)
        return update(state, obs)

    return tuner, step


def unit_start(seed):
    """N members in the low corner of the unit square, learning rate and momentum."""
    u = np.random.default_rng(seed).uniform(0.0, 0.3, (N, 2)).astype(np.float32)
    return SPACE.from_unit(jnp.asarray(u))


def test_pb2_builds_on_applied_values_and_copies_the_untuned_ones(lr_only):
    tuner, step = lr_only
    hp0 = unit_start(0)
    state = tuner.init(jax.random.key(0), hp0)
    _, state = step(state, jnp.zeros(N))
    # the values in force differ from the last proposal (a guard, a rollback)
    applied = {"learning_rate": jnp.geomspace(1e-3, 1e-1, N), "momentum": jnp.linspace(0, 0.9, N)}
    scores = jnp.arange(N, dtype=jnp.float32)
    proposal, state = step(state, scores, hparams=applied)
    parents = np.asarray(proposal.parents)
    kept = parents == np.arange(N)
    assert kept.sum() == N // 2
    for name in applied:
        np.testing.assert_allclose(proposal.hparams[name][kept], np.asarray(applied[name])[kept])
    # momentum is not tuned: a replaced member takes its parent's, as applied
    np.testing.assert_allclose(
        proposal.hparams["momentum"], np.asarray(applied["momentum"])[parents], rtol=1e-6
    )
    assert SPACE.contains(proposal.hparams)
    # the weights each member starts the next window with scored its parent's score
    np.testing.assert_array_equal(state.prev_score, np.asarray(scores)[parents])


def test_pb2_history_leaves_out_masked_members_and_penalises_divergence(lr_only):
    tuner, step = lr_only
    state = tuner.init(jax.random.key(0), unit_start(1))
    alive = jnp.array([True] * (N - 1) + [False])
    _, state = step(state, jnp.zeros(N), alive)
    assert int(state.buf.count) == 0  # nothing measured before a window has a start score
    scores = jnp.arange(N, dtype=jnp.float32).at[2].set(jnp.nan)
    _, state = step(state, scores, alive)
    # one improvement per living member; the diverged one a finite target below the rest
    assert int(state.buf.count) == N - 1
    y = np.asarray(state.buf.y)[np.asarray(state.buf.valid)]
    assert len(y) == N - 1 and np.isfinite(y).all()
    assert y[2] < np.delete(y, 2).min()


def test_pb2_spreads_the_choices_of_one_generation(lr_only):
    tuner, step = lr_only
    for seed in range(3):
        state = tuner.init(jax.random.key(seed), unit_start(seed))
        _, state = step(state, jnp.zeros(N))
        proposal, _ = step(state, jnp.arange(N, dtype=jnp.float32) / 10)
        replaced = np.asarray(proposal.parents) != np.arange(N)
        assert replaced.sum() == N // 2
        # each choice is a pseudo-observation for the next: they do not pile up
        u = np.asarray(SPACE.to_unit(proposal.hparams))[replaced, 0]
        gaps = np.abs(u[:, None] - u[None, :])[np.triu_indices(len(u), 1)]
        assert gaps.min() > 0.05, u


def test_pb2_explores_around_a_parent_the_history_favours():
    tuner = hj.pb2(SPACE, fraction=0.25, ready=2, candidates=4, beta=0.01, fit_steps=5, horizon=20)
    update = jax.jit(tuner.update)
    u0 = np.array([[0.1, 0.2], [0.2, 0.1], [0.15, 0.3], [0.3, 0.15], [0.25, 0.25], [0.5, 0.4]])
    u0 = np.concatenate([u0, [[0.8, 0.8], [0.75, 0.85]]]).astype(np.float32)
    # the improvements of the second window peak around (0.8, 0.8), members 6 and 7
    gain = np.exp(-np.sum((u0 - 0.8) ** 2, axis=1) / 0.1).astype(np.float32)
    distances = []
    for seed in range(4):
        state = tuner.init(jax.random.key(seed), SPACE.from_unit(jnp.asarray(u0)))
        _, state = update(state, hj.Observation(score=jnp.zeros(N)))
        proposal, _ = update(state, hj.Observation(score=jnp.asarray(gain)))
        parents = np.asarray(proposal.parents)
        replaced = parents != np.arange(N)
        assert set(parents[replaced]) <= {6, 7}
        u = np.asarray(SPACE.to_unit(proposal.hparams))
        distances += list(np.linalg.norm(u[replaced] - u0[parents[replaced]], axis=1))
    # half the candidates lie around the parent, where the GP expects the most
    assert np.mean(distances) < 0.25, distances
