"""Helpers shared by the test modules (imported as ``from _support import ...``)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import HealthCheck, settings

import hagfish_jax as hj

# -- hyperparameters in optax states --------------------------------------------------
PARAMS = {"w": jnp.ones((3,)), "b": jnp.ones((2,))}
POP = 4


def adamw():
    return optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)


def assert_strong(tree, dtype=None):
    """Every hyperparameter is a strongly typed array (of ``dtype`` if given)."""
    for name, v in hj.get_hparams(tree).items():
        assert isinstance(v, jax.Array), name
        assert not v.weak_type, name
        if dtype is not None:
            assert v.dtype == dtype, (name, v.dtype)


def same_layout(a, b):
    """Same structure, shapes, dtypes and weak types: a jitted step would not retrace."""
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_shapes_and_dtypes(a, b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert getattr(x, "weak_type", False) == getattr(y, "weak_type", False)


def stacked(params, n=POP):
    return jax.tree.map(lambda x: jnp.stack([x * (i + 1) for i in range(n)]), params)


# -- search spaces ----------------------------------------------------------------------
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPACE = hj.Space(
    lr=hj.LogUniform(1e-5, 1e-1),
    b1=hj.Uniform(0.8, 0.99),
    bs=hj.Choice([16, 32, 64, 128]),
    layers=hj.IntUniform(1, 4),
    opt=hj.Choice(["adam", "sgd", "lion"]),
)
HP = {"lr": 1e-3, "b1": 0.9, "bs": 64.0, "layers": 2.0, "opt": 1.0}


def f32(x):
    return np.asarray(x, np.float32)


# -- the learned controller's small setting ----------------------------------------------
def control_space():
    """Reference 003's five dimensions at test size (units 8..32, batch 8..32)."""
    return hj.Space(
        learning_rate=hj.LogUniform(1e-5, 1e-1),
        batch_size=hj.IntUniform(8, 32, dynamic=True),
        dropout_rate=hj.Uniform(0.1, 0.7),
        num_layers=hj.IntUniform(1, 3, dynamic=True),
        units=hj.IntUniform(8, 32, dynamic=True),
    )


CONTROL_START = {"batch_size": 16, "units": 16}


def control_bank(seeds, n_samples=240, steps_per_window=4):
    """A bank of generated 3-class tasks on :func:`control_space`."""
    from hagfish_jax.control import data, tasks

    splits = [
        data.synthetic_split(s, n_features=8, n_classes=3, n_samples=n_samples) for s in seeds
    ]
    return tasks.make_task(
        splits, hparam_space=control_space(), defaults=CONTROL_START,
        steps_per_window=steps_per_window,
    )
