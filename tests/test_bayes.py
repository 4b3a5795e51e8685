"""The jnp Gaussian process and the in-training Bayesian optimiser."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hagfish_jax as hj
from hagfish_jax import gp

# -- GP core ------------------------------------------------------------------------------


def filled(xs, ys, capacity=16):
    buf = gp.buffer(capacity, xs.shape[1])
    for x, y in zip(xs, ys):
        buf = gp.add(buf, x, y)
    return buf


XS = jnp.array([[0.1], [0.3], [0.5], [0.7], [0.9]])
YS = jnp.sin(6.0 * XS[:, 0])


def test_posterior_interpolates_noiseless_data_and_variance_shrinks_there():
    buf = filled(XS, YS)
    params = gp.GPParams(jnp.array([0.2]), jnp.asarray(1e-6))
    post = gp.posterior(buf, params)
    mean, std = gp.predict(post, XS)
    np.testing.assert_allclose(mean, YS, atol=1e-3)
    _, std_between = gp.predict(post, jnp.array([[0.2], [0.6]]))
    _, std_far = gp.predict(post, jnp.array([[3.0]]))
    assert float(std.max()) < 0.05 * float(std_between.min())
    assert float(std_far[0]) > float(std_between.max())


def test_masked_entries_are_inert():
    small = filled(XS, YS, capacity=5)
    big = filled(XS, YS, capacity=32)  # 27 invalid slots
    params = gp.GPParams(jnp.array([0.2]), jnp.asarray(1e-4))
    q = jnp.linspace(0, 1, 7)[:, None]
    for a, b in zip(
        gp.predict(gp.posterior(small, params), q), gp.predict(gp.posterior(big, params), q)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        gp.log_marginal_likelihood(small, params),
        gp.log_marginal_likelihood(big, params),
        rtol=1e-4,
    )


def test_expected_improvement_vanishes_far_below_incumbent_and_ucb_orders():
    ei = gp.expected_improvement(jnp.array([-10.0, 0.0, 1.0]), jnp.array([0.5, 0.5, 0.5]), 1.0)
    assert float(ei[0]) < 1e-12 and float(ei[1]) > 0 and float(ei[2]) > float(ei[1])
    assert float(gp.ucb(jnp.array(0.0), jnp.array(1.0), 4.0)) == pytest.approx(2.0)


def test_fit_gives_positive_length_scales_identical_under_jit():
    key = jax.random.key(0)
    xs = jax.random.uniform(key, (12, 2))
    ys = jnp.sin(4 * xs[:, 0]) + 0.1 * xs[:, 1]  # dimension 0 matters far more
    buf = filled(xs, ys)
    eager = gp.fit(buf)
    jitted = jax.jit(gp.fit)(buf)
    assert bool(jnp.all(eager.lengthscales > 0)) and float(eager.noise) > 0
    chex.assert_trees_all_close(eager, jitted, rtol=1e-4)  # length scales and noise
    assert float(eager.lengthscales[1]) > float(eager.lengthscales[0])
    # the fit beats every starting point of its grid
    lml = gp.log_marginal_likelihood(buf, eager)
    for s in (0.05, 0.2, 0.8):
        start = gp.GPParams(jnp.full((2,), s), jnp.asarray(1e-3))
        assert float(lml) >= float(gp.log_marginal_likelihood(buf, start)) - 1e-3


def test_ring_buffer_wraps_and_ignores_invalid_adds():
    buf = gp.buffer(3, 1)
    for i in range(5):
        buf = gp.add(buf, jnp.array([float(i)]), float(i))
    assert sorted(np.asarray(buf.y).tolist()) == [2.0, 3.0, 4.0]
    same = gp.add(buf, jnp.array([9.0]), 9.0, valid=False)
    np.testing.assert_array_equal(same.y, buf.y)
    assert int(buf.count) == 5


# -- bayes ---------------------------------------------------------------------------------

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
LR_STAR = 1e-2


def gain_rate(lr):
    """Fraction of the loss removed per window: best at LR_STAR, divergent above ~0.2."""
    z = (jnp.log10(lr) - jnp.log10(LR_STAR)) / 0.3
    return 0.06 * jnp.exp(-0.5 * z**2) - 0.1 * jnp.maximum(jnp.log10(lr) + 0.7, 0.0)


def synthetic_run(key, tuner, windows):
    def body(carry, _):
        ts, loss, lr = carry
        loss = loss * (1.0 - gain_rate(lr))
        p, ts = tuner.update(ts, hj.Observation(score=-loss))
        return (ts, loss, p.hparams["learning_rate"]), lr

    ts = tuner.init(key, {"learning_rate": 1e-3})
    (ts, loss, _), lrs = jax.lax.scan(
        body, (ts, jnp.float32(1.0), jnp.float32(1e-3)), None, length=windows
    )
    return ts, loss, lrs


def test_guarded_bayes_finds_the_best_learning_rate_for_five_seeds():
    tuner = hj.guard(hj.bayes(SPACE, horizon=100), warmup=1, space=SPACE, patience=3)
    run = jax.jit(jax.vmap(lambda k: synthetic_run(k, tuner, 150)))
    ts, loss, lrs = run(jax.random.split(jax.random.key(0), 5))
    found = np.asarray(SPACE.from_unit(ts.inner.incumbent)["learning_rate"])
    # within a factor 1.25 of the best learning rate (20% of its value below it,
    # 25% above), every seed; the start is ten times too small
    assert np.all(np.abs(np.log(found / LR_STAR)) <= np.log(1.25)), found
    assert SPACE.contains({"learning_rate": np.asarray(lrs)})
    # and it trains: far better than staying at the starting learning rate
    fixed_loss = (1.0 - float(gain_rate(jnp.float32(1e-3)))) ** 150
    assert float(np.max(loss)) < 0.5 * fixed_loss


def test_bayes_never_leaves_the_space_and_wraps_without_retrace():
    space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0), b1=hj.Uniform(0.5, 0.99))
    tuner = hj.bayes(space, capacity=6, candidates=32, radius=1.0, horizon=100)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(state, obs):
        return tuner.update(state, obs)

    state = tuner.init(jax.random.key(1), {"learning_rate": 1e-3, "b1": 0.9})
    key = jax.random.key(2)
    for i in range(40):
        score = jnp.where(i == 7, jnp.nan, jax.random.normal(jax.random.fold_in(key, i)))
        proposal, state = update(state, hj.Observation(score=score))
        assert space.contains(proposal.hparams)
    assert int(state.buf.count) > 6 and bool(state.buf.valid.all())  # wrapped


def test_bayes_compares_trials_with_the_incumbent_at_the_values_applied():
    space = hj.Space(x=hj.Uniform(0.0, 1.0))
    tuner = hj.bayes(space, horizon=100)
    state = tuner.init(jax.random.key(0), {"x": 0.5})
    p, state = tuner.update(state, hj.Observation(score=jnp.float32(0.0)))  # first window
    assert float(p.hparams["x"]) == 0.5  # no reference gain yet: the incumbent again
    trial, state = tuner.update(state, hj.Observation(score=jnp.float32(1.0)))  # gain 1.0
    assert float(trial.hparams["x"]) != 0.5 and int(state.phase) == 1
    applied = {"x": jnp.float32(0.55)}  # a guard clamped the trial
    back, state = tuner.update(state, hj.Observation(score=jnp.float32(3.0), hparams=applied))
    assert float(back.hparams["x"]) == 0.5 and bool(state.pending)  # back to the incumbent
    # the incumbent window after the trial gains 1.0, as did the one before: reference 1.0
    nxt, state = tuner.update(state, hj.Observation(score=jnp.float32(4.0)))
    slot = (int(state.buf.pos) - 1) % state.buf.y.shape[0]
    assert float(state.buf.x[slot, 0]) == pytest.approx(0.55, abs=1e-6)
    assert float(state.buf.y[slot]) == pytest.approx(1.0)  # trial gain 2.0 minus 1.0
    # the trial won: it becomes the incumbent and the next window runs it
    assert float(state.incumbent[0]) == pytest.approx(0.55, abs=1e-6)
    assert float(nxt.hparams["x"]) == pytest.approx(0.55, abs=1e-6)


def test_bayes_validation():
    for kwargs, word in [
        ({"acquisition": "pi"}, "acquisition"),
        ({"capacity": 2}, "capacity"),
        ({"radius": 0.0}, "radius"),
        ({"local_fraction": 1.5}, "local_fraction"),
    ]:
        with pytest.raises(ValueError, match=word):
            hj.bayes(SPACE, **kwargs)


def test_refit_every_reuses_length_scales_between_fits():
    space = hj.Space(x=hj.Uniform(0.0, 1.0))
    tuner = hj.bayes(space, refit_every=3, candidates=16, fit_steps=3, horizon=100)
    update = jax.jit(tuner.update)
    state = tuner.init(jax.random.key(0), {"x": 0.5})
    fitted = []
    for i in range(30):
        score = jnp.float32(np.sin(i) + 0.1 * i)
        before = state.gp_params.lengthscales
        p, state = update(state, hj.Observation(score=score))
        assert space.contains(p.hparams)
        changed = not np.array_equal(before, state.gp_params.lengthscales)
        fitted.append((int(state.trials), changed))
    # the length scales only change on trials 1, 4, 7, ... (trials counted after the update)
    for trials, changed in fitted:
        if changed:
            assert (trials - 1) % 3 == 0
    assert int(state.trials) >= 7 and sum(c for _, c in fitted) >= 2
    with pytest.raises(ValueError, match="refit_every"):
        hj.bayes(space, refit_every=0)
