"""get_hparams / set_hparams: dtypes stay put, no retrace, new values take effect, use
inside jit. (Structures and populations: tests/test_hparams.py.)"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _support import PARAMS, POP, adamw, assert_strong, same_layout, stacked  # noqa: E402

import hagfish_jax as hj


# ------------------------------------------------------------------ dtypes
def bf16_params():
    return jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)


def test_float32_state_stays_float32_and_strong():
    state = adamw().init(PARAMS)
    assert_strong(state, jnp.float32)
    for value in (0.5, 1, np.float64(0.25), jnp.asarray(0.125), jnp.asarray(0.1, jnp.float16)):
        new = hj.set_hparams(state, {"learning_rate": value})
        lr = new.hyperparams["learning_rate"]
        assert lr.dtype == jnp.float32 and not lr.weak_type, value
        assert lr.shape == ()
        same_layout(new, state)


def test_bfloat16_state_stays_bfloat16_and_strong():
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.5)
    state = tx.init(bf16_params())
    assert hj.get_hparams(state)["learning_rate"].dtype == jnp.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0.25 is exact in bfloat16: no warning
        new = hj.set_hparams(state, {"learning_rate": 0.25})
    lr = new.hyperparams["learning_rate"]
    assert lr.dtype == jnp.bfloat16 and not lr.weak_type and float(lr) == 0.25
    same_layout(new, state)


def test_bfloat16_unrepresentable_value_warns():
    state = optax.inject_hyperparams(optax.adam)(learning_rate=0.5).init(bf16_params())
    with pytest.warns(UserWarning, match="hyperparam_dtype"):
        new = hj.set_hparams(state, {"b2": 0.999})
    assert new.hyperparams["b2"].dtype == jnp.bfloat16  # stored value is rounded (to 1.0)
    assert float(new.hyperparams["b2"]) != pytest.approx(0.999, abs=1e-4)


def test_float32_hyperparam_dtype_with_bfloat16_params_no_warning():
    tx = optax.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.float32)(learning_rate=0.5)
    state = tx.init(bf16_params())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = hj.set_hparams(state, {"b2": 0.999, "learning_rate": 1e-3})
    b2 = new.hyperparams["b2"]
    assert b2.dtype == jnp.float32 and not b2.weak_type
    assert float(b2) == np.float32(0.999)



# ------------------------------------------------------------------ no retrace
def make_step(tx):
    """A jitted optimizer step that fails (AssertionError) if it is traced twice."""

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def test_set_hparams_does_not_retrace():
    chex.clear_trace_counter()
    tx = adamw()
    step = make_step(tx)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    params, opt_state = step(PARAMS, tx.init(PARAMS), grads)
    for lr in (0.5, 0.01, 1, np.float64(0.2)):
        opt_state = hj.set_hparams(opt_state, {"learning_rate": lr, "weight_decay": 0.0})
        params, opt_state = step(params, opt_state, grads)
        params, opt_state = step(params, opt_state, grads)
    assert float(opt_state.hyperparams["learning_rate"]) == np.float32(0.2)


def test_weak_write_would_retrace_control():
    """Control for the trace check: a naive weakly typed write does retrace."""
    chex.clear_trace_counter()
    tx = adamw()
    step = make_step(tx)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    params, opt_state = step(PARAMS, tx.init(PARAMS), grads)
    naive = opt_state._replace(
        hyperparams={**opt_state.hyperparams, "learning_rate": jnp.asarray(0.5)}
    )
    assert naive.hyperparams["learning_rate"].weak_type
    with pytest.raises(AssertionError, match="traced > 1 times"):
        step(params, naive, grads)


def test_population_set_hparams_does_not_retrace():
    chex.clear_trace_counter()
    tx = adamw()

    @chex.assert_max_traces(n=1)
    def inner(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = jax.jit(jax.vmap(inner))
    params = stacked(PARAMS)
    grads = jax.tree.map(jnp.ones_like, params)
    params, opt_state = step(params, jax.vmap(tx.init)(params), grads)
    for value in (0.3, np.linspace(0.1, 0.4, POP), jnp.arange(POP, dtype=jnp.float32) / 10):
        opt_state = hj.set_hparams(opt_state, {"learning_rate": value, "b1": 0.8})
        params, opt_state = step(params, opt_state, grads)
        params, opt_state = step(params, opt_state, grads)
    np.testing.assert_allclose(
        opt_state.hyperparams["learning_rate"], np.arange(POP) / 10, rtol=1e-6
    )


# ------------------------------------------------------------------ takes effect
@pytest.mark.parametrize("lr", [0.5, 0.1])
def test_new_learning_rate_takes_effect(lr):
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01)
    state = hj.set_hparams(tx.init(PARAMS), {"learning_rate": lr})
    grads = {"w": jnp.asarray([1.0, 2.0, -3.0]), "b": jnp.asarray([0.5, -0.5])}
    updates, _ = jax.jit(tx.update)(grads, state, PARAMS)
    for k in grads:
        np.testing.assert_allclose(updates[k], -lr * grads[k], rtol=1e-6)


def test_learning_rate_ratio_in_population():
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01)
    params = stacked(PARAMS, 2)
    state = hj.set_hparams(jax.vmap(tx.init)(params), {"learning_rate": jnp.asarray([0.5, 0.1])})
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.vmap(tx.update)(grads, state, params)
    np.testing.assert_allclose(updates["w"][0] / updates["w"][1], 5.0, rtol=1e-5)
    np.testing.assert_allclose(updates["w"][0], -0.5, rtol=1e-6)


# ------------------------------------------------------------------ inside jit
def test_set_hparams_inside_jit():
    tx = adamw()
    state = tx.init(PARAMS)

    @jax.jit
    def write(s, lr, wd):
        return hj.set_hparams(s, {"learning_rate": lr, "weight_decay": wd})

    new = write(state, 0.3, jnp.asarray(0.02))
    assert jax.tree.structure(new) == jax.tree.structure(state)
    same_layout(new, state)
    assert float(new.hyperparams["learning_rate"]) == np.float32(0.3)
    assert float(new.hyperparams["weight_decay"]) == np.float32(0.02)


def test_set_hparams_inside_jit_bfloat16_and_population():
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.5)
    state = jax.vmap(tx.init)(stacked(bf16_params()))

    @jax.jit
    def write(s, lr):
        return hj.set_hparams(s, {"learning_rate": lr})

    for value in (jnp.float32(0.25), jnp.full((POP,), 0.125, jnp.float32)):
        new = write(state, value)
        same_layout(new, state)
        lr = new.hyperparams["learning_rate"]
        assert lr.dtype == jnp.bfloat16 and lr.shape == (POP,)
        np.testing.assert_array_equal(
            np.asarray(lr, np.float32), np.full(POP, float(value.ravel()[0]))
        )
