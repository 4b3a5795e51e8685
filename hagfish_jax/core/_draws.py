"""Random draws shaped for a fast compile on XLA's CPU backend.

With JAX's default (partitionable) threefry, a draw of a multi-dimensional shape builds
its counters from one iota per axis, and XLA's CPU backend takes 2-3x longer to compile
that kernel than a one-dimensional draw of the same size (uniform ``(32, 12)``: 0.31 s;
``(384,)``: 0.12 s; ``benchmarks/RESULTS.md``, "Stop 24"). The tuners' own draws are
small and sit in every tuned window, so they are drawn flat and reshaped. With JAX's
default (partitionable) threefry a draw's counters are the elements' flat indices, so
the values are the same as the shaped draw's; with the classic layout they differ (the
same distribution).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["normal", "uniform"]


def uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.uniform(key, shape)`` in float32, drawn flat.

    >>> import jax
    >>> uniform(jax.random.key(0), (2, 3)).shape
    (2, 3)
    """
    return jax.random.uniform(key, (math.prod(shape),), jnp.float32).reshape(shape)


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.normal(key, shape)`` in float32, drawn flat."""
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)
