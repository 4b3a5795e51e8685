"""get_hparams / set_hparams on optax states: plain, chain, multi_transform, nested,
train states, populations, errors. (Dtypes, no retrace, jit: tests/test_hparams_jit.py.)"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _support import PARAMS, POP, adamw, assert_strong, same_layout, stacked  # noqa: E402

import hagfish_jax as hj

ADAMW_NAMES = {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}


# ------------------------------------------------------------------ plain
def test_plain_inject_read_and_write():
    state = adamw().init(PARAMS)
    hp = hj.get_hparams(state)
    assert set(hp) == ADAMW_NAMES
    np.testing.assert_allclose(hp["learning_rate"], 1e-3, rtol=1e-6)
    np.testing.assert_allclose(hp["weight_decay"], 1e-4, rtol=1e-6)
    new = hj.set_hparams(state, {"learning_rate": 0.02, "b1": 0.8})
    same_layout(new, state)
    got = hj.get_hparams(new)
    np.testing.assert_allclose(got["learning_rate"], 0.02, rtol=1e-6)
    np.testing.assert_allclose(got["b1"], 0.8, rtol=1e-6)
    np.testing.assert_allclose(got["weight_decay"], 1e-4, rtol=1e-6)  # untouched
    # the input state is not modified
    np.testing.assert_allclose(hj.get_hparams(state)["learning_rate"], 1e-3, rtol=1e-6)
    # a round trip of get -> set is the identity
    same_layout(hj.set_hparams(state, hp), state)


def test_plain_state_without_injection_has_no_hparams():
    state = optax.adam(1e-3).init(PARAMS)
    assert hj.get_hparams(state) == {}
    with pytest.raises(KeyError):
        hj.set_hparams(state, {"learning_rate": 0.1})


# ------------------------------------------------------------------ chain
def test_chain_unique_names_are_plain():
    tx = optax.chain(
        optax.inject_hyperparams(optax.adam)(learning_rate=1e-2),
        optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=1e-3),
    )
    state = tx.init(PARAMS)
    hp = hj.get_hparams(state)
    assert set(hp) == {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}
    new = hj.set_hparams(state, {"weight_decay": 0.5, "learning_rate": 0.25})
    same_layout(new, state)
    assert float(new[1].hyperparams["weight_decay"]) == 0.5
    assert float(new[0].hyperparams["learning_rate"]) == 0.25


def test_chain_duplicate_names_get_index_prefixes():
    tx = optax.chain(
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.2),
    )
    state = tx.init(PARAMS)
    hp = hj.get_hparams(state)
    assert "learning_rate" not in hp
    np.testing.assert_allclose(hp["0/learning_rate"], 0.1)
    np.testing.assert_allclose(hp["1/learning_rate"], 0.2)


# ------------------------------------------------------------------ multi_transform
def multi():
    return optax.multi_transform(
        {
            "a": optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
            "b": optax.inject_hyperparams(optax.sgd)(learning_rate=0.2),
        },
        {"w": "a", "b": "b"},
    )


def test_multi_transform_prefixed_names():
    state = multi().init(PARAMS)
    hp = hj.get_hparams(state)
    assert set(hp) == {"a/learning_rate", "b/learning_rate"}
    np.testing.assert_allclose(hp["a/learning_rate"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(hp["b/learning_rate"], 0.2, rtol=1e-6)


def test_multi_transform_plain_name_writes_all_and_prefixed_writes_one():
    tx = multi()
    state = tx.init(PARAMS)
    both = hj.get_hparams(hj.set_hparams(state, {"learning_rate": 0.7}))
    assert float(both["a/learning_rate"]) == np.float32(0.7)
    assert float(both["b/learning_rate"]) == np.float32(0.7)
    one_state = hj.set_hparams(state, {"a/learning_rate": 0.5})
    same_layout(one_state, state)
    one = hj.get_hparams(one_state)
    assert float(one["a/learning_rate"]) == 0.5
    assert float(one["b/learning_rate"]) == np.float32(0.2)
    # and the update really uses them: w follows "a", b follows "b"
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, _ = tx.update(grads, one_state, PARAMS)
    np.testing.assert_allclose(updates["w"], -0.5, rtol=1e-6)
    np.testing.assert_allclose(updates["b"], -0.2, rtol=1e-6)


# ------------------------------------------------------------------ nested
def nested():
    def factory(learning_rate):
        return optax.chain(
            optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=1e-4),
            optax.sgd(learning_rate),
        )

    return optax.inject_hyperparams(factory)(learning_rate=0.1)


def test_nested_inject_found_and_written():
    tx = nested()
    state = tx.init(PARAMS)
    hp = hj.get_hparams(state)
    assert set(hp) == {"learning_rate", "weight_decay"}
    np.testing.assert_allclose(hp["weight_decay"], 1e-4, rtol=1e-6)
    new = hj.set_hparams(state, {"weight_decay": 0.5, "learning_rate": 0.2})
    same_layout(new, state)
    got = hj.get_hparams(new)
    assert float(got["weight_decay"]) == 0.5 and float(got["learning_rate"]) == np.float32(0.2)
    # the inner (nested) value reaches the update: grads 0, params 1 -> -lr * wd * 1
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, new2 = tx.update(zeros, new, PARAMS)
    np.testing.assert_allclose(updates["w"], -0.2 * 0.5, rtol=1e-6)
    assert float(hj.get_hparams(new2)["weight_decay"]) == 0.5


# ------------------------------------------------------------------ user train state
class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    extra: hj.ExtraHParams


class FlaxTrainState(flax.struct.PyTreeNode):
    params: Any
    opt_state: Any
    extra: hj.ExtraHParams
    step: int = flax.struct.field(pytree_node=False, default=0)


@pytest.mark.parametrize("cls", [TrainState, FlaxTrainState])
def test_train_state_with_extras(cls):
    tx = adamw()
    ts = cls(params=PARAMS, opt_state=tx.init(PARAMS), extra=hj.extra_hparams(dropout_rate=0.1))
    hp = hj.get_hparams(ts)
    assert set(hp) == ADAMW_NAMES | {"dropout_rate"}
    np.testing.assert_allclose(hp["dropout_rate"], 0.1, rtol=1e-6)
    new = hj.set_hparams(ts, {"dropout_rate": 0.3, "learning_rate": 0.01})
    assert type(new) is cls
    same_layout(new, ts)
    assert_strong(new, jnp.float32)
    assert float(new.extra.hyperparams["dropout_rate"]) == np.float32(0.3)
    assert float(new.opt_state.hyperparams["learning_rate"]) == np.float32(0.01)
    np.testing.assert_array_equal(new.params["w"], PARAMS["w"])


def test_extra_hparams_helper():
    extra = hj.extra_hparams(dropout_rate=0.1, label_smoothing=0)
    for v in extra.hyperparams.values():
        assert v.dtype == jnp.float32 and not v.weak_type
    e16 = hj.extra_hparams(jnp.bfloat16, dropout_rate=0.5)
    assert e16.hyperparams["dropout_rate"].dtype == jnp.bfloat16


def test_extra_sharing_an_optimizer_name_is_prefixed():
    ts = TrainState(PARAMS, adamw().init(PARAMS), hj.extra_hparams(learning_rate=0.5))
    hp = hj.get_hparams(ts)
    lr_names = [n for n in hp if n.endswith("learning_rate")]
    assert len(lr_names) == 2 and "learning_rate" not in hp
    assert sorted(float(hp[n]) for n in lr_names) == [np.float32(1e-3), 0.5]
    both = hj.get_hparams(hj.set_hparams(ts, {"learning_rate": 0.25}))
    assert all(float(both[n]) == 0.25 for n in lr_names)


# ------------------------------------------------------------------ populations
def test_population_state_read_and_write():
    tx = adamw()
    state = jax.vmap(tx.init)(stacked(PARAMS))
    hp = hj.get_hparams(state)
    for v in hp.values():
        assert v.shape == (POP,)
    new = hj.set_hparams(state, {"learning_rate": 0.05})
    same_layout(new, state)
    np.testing.assert_array_equal(
        hj.get_hparams(new)["learning_rate"], np.full(POP, np.float32(0.05))
    )
    per = np.asarray([0.1, 0.2, 0.3, 0.4], np.float32)
    new = hj.set_hparams(state, {"learning_rate": per, "b1": jnp.asarray(per)})
    same_layout(new, state)
    np.testing.assert_array_equal(hj.get_hparams(new)["learning_rate"], per)
    np.testing.assert_array_equal(hj.get_hparams(new)["b1"], per)


@pytest.mark.parametrize("shape", [(POP + 1,), (POP, 1), (2, POP), (3,)])
def test_population_wrong_shape_raises(shape):
    state = jax.vmap(adamw().init)(stacked(PARAMS))
    with pytest.raises(ValueError, match="learning_rate"):
        hj.set_hparams(state, {"learning_rate": np.full(shape, 0.1, np.float32)})


def test_single_state_rejects_array_value():
    state = adamw().init(PARAMS)
    with pytest.raises(ValueError, match="shape"):
        hj.set_hparams(state, {"learning_rate": np.full((3,), 0.1, np.float32)})


# ------------------------------------------------------------------ errors
def test_unknown_name_raises_keyerror_listing_names():
    state = adamw().init(PARAMS)
    with pytest.raises(KeyError) as info:
        hj.set_hparams(state, {"learning_rat": 0.1})
    msg = str(info.value)
    assert "learning_rat" in msg
    for name in ADAMW_NAMES:
        assert name in msg
    # nothing is half-written by a failed call (pure function, input unchanged)
    np.testing.assert_allclose(hj.get_hparams(state)["learning_rate"], 1e-3, rtol=1e-6)


def test_schedule_driven_hparam_cannot_be_written():
    sched = optax.linear_schedule(0.1, 0.01, 10)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=sched, momentum=0.9)
    state = tx.init(PARAMS)
    assert "learning_rate" in hj.get_hparams(state)
    with pytest.raises(ValueError, match="schedule"):
        hj.set_hparams(state, {"learning_rate": 0.05})
    # numeric neighbours of a schedule remain writable
    new = hj.set_hparams(state, {"momentum": 0.5})
    assert float(new.hyperparams["momentum"]) == 0.5
