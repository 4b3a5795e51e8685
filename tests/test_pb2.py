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
