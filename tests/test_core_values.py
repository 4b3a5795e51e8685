"""Values refused or repaired before they do harm: NaN or overflowing hyperparameters,
a tuner started outside its space."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

import hagfish_jax as hj

SPACE = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))


def test_set_hparams_refuses_nan_and_values_the_dtype_cannot_hold():
    state = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1).init(jnp.zeros(2))
    with pytest.raises(ValueError, match="'learning_rate' must be a number, got NaN"):
        hj.set_hparams(state, {"learning_rate": float("nan")})
    with pytest.raises(ValueError, match="does not fit its stored dtype float32"):
        hj.set_hparams(state, {"learning_rate": 1e40})
    ok = hj.set_hparams(state, {"learning_rate": 3e38})
    assert float(hj.get_hparams(ok)["learning_rate"]) == pytest.approx(3e38)
    # inside jit values are traced: nothing to check, nothing raised
    jitted = jax.jit(lambda s, v: hj.set_hparams(s, {"learning_rate": v}))
    assert bool(jnp.isnan(hj.get_hparams(jitted(state, jnp.nan))["learning_rate"]))


@pytest.mark.parametrize("factory", [hj.finite_difference, hj.spsa, hj.bayes])
def test_a_tuner_started_outside_its_space_starts_inside_it(factory):
    tuner = factory(SPACE)
    with pytest.warns(UserWarning, match="learning_rate=50 is outside the space"):
        state = tuner.init(jax.random.key(0), {"learning_rate": 50.0})
    proposal, _ = tuner.update(state, hj.Observation(score=jnp.float32(0.5), horizon=10))
    assert SPACE.contains(proposal.hparams)
    assert float(state.hparams["learning_rate"]) == pytest.approx(1.0)
