"""Divergence: a run is broken when anything it trains on stops being a number.

Accuracy on NaN logits is a finite number (``argmax`` of NaNs picks class 0), so a
score alone cannot tell a dead run from a poor one. :func:`diverged` looks at the loss
*and* the parameters (or any state): one non-finite value anywhere and the window is
flagged. The tuned program (:mod:`hagfish_jax.core.program`) scores a flagged window
NaN, so it never becomes best, and rolls it back whatever the tuner says.

>>> import jax.numpy as jnp
>>> params = {"w": jnp.array([1.0, jnp.nan]), "b": jnp.zeros(2)}
>>> bool(diverged(jnp.float32(0.3), params)), bool(diverged(jnp.float32(0.3), {"b": 1.0}))
(True, False)
>>> bool(diverged(jnp.float32(jnp.inf)))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["all_finite", "diverged", "window_score"]


def all_finite(tree: Any, population: int | None = None) -> jax.Array:
    """True when every floating-point value in ``tree`` is finite. With ``population``
    N, leaves carry a leading member axis and the answer is ``(N,)``, one per member.
    Integer, boolean and PRNG-key leaves are always finite."""
    ok = jnp.ones(() if population is None else (int(population),), jnp.bool_)
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf) if not hasattr(leaf, "dtype") else leaf
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        finite = jnp.isfinite(leaf)
        if population is None:
            ok = ok & jnp.all(finite)
        else:
            ok = ok & jnp.all(finite.reshape(finite.shape[0], -1), axis=1)
    return ok


def diverged(loss: Any, *trees: Any) -> jax.Array:
    """True when ``loss`` or any floating value of ``trees`` (parameters, optimizer
    state, a whole train state) is NaN or infinite. Jittable; for one member (vmap it
    for a population)."""
    return ~(all_finite(loss) & all_finite(trees))


def window_score(
    score: Any, metrics: Mapping[str, Any], state: Any, alive: Any, population: int | None
) -> jax.Array:
    """A window's score as the tuned program uses it: NaN where the task flagged the
    window (``metrics["diverged"]``), where any floating value of the member's state is
    not finite (NaN weights can still score a finite accuracy), or where the member is
    masked (``alive`` False)."""
    score = jnp.asarray(score, jnp.float32)
    if "diverged" in metrics:
        score = jnp.where(metrics["diverged"], jnp.nan, score)
    score = jnp.where(all_finite(state, population), score, jnp.nan)
    return jnp.where(alive, score, jnp.nan)
