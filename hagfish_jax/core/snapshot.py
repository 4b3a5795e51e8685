"""Keep the best state on device and restore it inside jit.

A rollback must restore weights and optimizer state, not only hyperparameters.
:func:`update` keeps a copy of the best state seen so far (any pytree: params,
optimizer state, a whole train state); :func:`restore_if` swaps it back in with
``jnp.where`` so no Python branch is needed. For a population, leaves carry a
leading axis of size N and ``score``/``flag`` are ``(N,)``: each member keeps
and restores its own best.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Snapshot", "init", "restore_if", "update", "where"]


class Snapshot(NamedTuple):
    """The best state so far and its score (``-inf`` until a finite score arrives)."""

    state: Any
    score: jax.Array


def where(flag: jax.Array | bool, a: Any, b: Any) -> Any:
    """Leaf by leaf, ``a`` where ``flag`` else ``b``; a ``(N,)`` flag picks per member
    (it broadcasts over each leaf's trailing axes).

    >>> import jax.numpy as jnp
    >>> picked = where(jnp.array([True, False]), jnp.ones((2, 3)), jnp.zeros((2, 3)))
    >>> picked[:, 0].tolist()
    [1.0, 0.0]
    """

    def pick(x, y):
        f = jnp.reshape(flag, jnp.shape(flag) + (1,) * (jnp.ndim(x) - jnp.ndim(flag)))
        return jnp.where(f, x, y)

    return jax.tree.map(pick, a, b)


def init(
    state: Any, score: jax.Array | float | None = None, population: int | None = None
) -> Snapshot:
    """Start a snapshot holding ``state``.

    Args:
      state: the pytree to protect.
      score: its score, or ``None`` for "not scored yet" (``-inf``).
      population: N when ``state`` is a population (score becomes ``(N,)``).

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> snap = hj.snapshot.init({"w": jnp.zeros(2)})
    >>> snap = hj.snapshot.update(snap, {"w": jnp.ones(2)}, 0.9)
    >>> restored = hj.snapshot.restore_if(True, snap, {"w": jnp.full(2, 7.0)})
    >>> restored["w"].tolist()
    [1.0, 1.0]
    """
    shape = () if population is None else (int(population),)
    value = -jnp.inf if score is None else score
    return Snapshot(state, jnp.broadcast_to(jnp.asarray(value, jnp.float32), shape))


def update(snap: Snapshot, state: Any, score: jax.Array) -> Snapshot:
    """Keep ``state`` where ``score`` is finite and strictly better than the stored one."""
    score = jnp.asarray(score, jnp.float32)
    better = jnp.isfinite(score) & (score > snap.score)
    return Snapshot(where(better, state, snap.state), jnp.where(better, score, snap.score))


def restore_if(flag: jax.Array | bool, snap: Snapshot, state: Any) -> Any:
    """``snap.state`` where ``flag`` is true (per member for a population), else ``state``.

    Before any finite score the snapshot holds the state it was started with, so a
    rollback then (a divergence in the first windows) restarts from the initial
    state: the only state known to be healthy.
    """
    return where(jnp.asarray(flag), snap.state, state)
