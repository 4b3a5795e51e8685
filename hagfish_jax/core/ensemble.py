"""Ensembles of population members: score-based weights and weighted predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .population import rank

__all__ = ["predict", "top_k", "weights"]


def weights(
    score_history: jax.Array,
    alive: jax.Array | None = None,
    temperature: float = 1.0,
    window: int = 3,
) -> jax.Array:
    """Ensemble weights from each member's rolling mean score.

    The mean of the last ``window`` finite scores is standardised across the
    living members (so the weights do not depend on the score's units) and put
    through a softmax at ``temperature``. Higher score, higher weight; masked
    members and members with no finite score get exactly 0; weights sum to 1.

    Args:
      score_history: ``(T, N)`` scores over time, or ``(N,)``.
      alive: ``(N,)`` mask; ``None`` = all alive.
      temperature: > 0; small values approach "best member only".
      window: how many recent scores to average (>= 1).

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> w = hj.ensemble.weights(jnp.array([[0.5, 0.7, 0.9]]), alive=jnp.array([True, True, False]))
    >>> [round(float(x), 3) for x in w]
    [0.119, 0.881, 0.0]
    """
    if not temperature > 0:
        raise ValueError(f"weights: temperature must be > 0, got {temperature!r}")
    if int(window) < 1:
        raise ValueError(f"weights: window must be >= 1, got {window!r}")
    h = jnp.asarray(score_history, jnp.float32)
    if h.ndim == 1:
        h = h[None]
    if h.ndim != 2:
        raise ValueError(f"weights: score_history must be (T, N) or (N,), got shape {h.shape}")
    recent = h[-int(window) :]
    finite = jnp.isfinite(recent)
    count = jnp.sum(finite, axis=0)
    mean = jnp.sum(jnp.where(finite, recent, 0.0), axis=0) / jnp.maximum(count, 1)
    n = h.shape[1]
    ok = count > 0
    if alive is not None:
        ok = ok & jnp.asarray(alive, jnp.bool_)
    m = jnp.sum(ok)
    mu = jnp.sum(jnp.where(ok, mean, 0.0)) / jnp.maximum(m, 1)
    var = jnp.sum(jnp.where(ok, (mean - mu) ** 2, 0.0)) / jnp.maximum(m, 1)
    z = jnp.where(ok, (mean - mu) / jnp.where(var > 0, jnp.sqrt(var), 1.0), -jnp.inf)
    w = jax.nn.softmax(z / temperature)
    w = jnp.where(ok, w, 0.0)
    # no usable member: uniform over the living ones rather than NaN
    fallback = jnp.ones((n,)) if alive is None else jnp.asarray(alive, jnp.float32)
    fallback = fallback / jnp.maximum(jnp.sum(fallback), 1)
    return jnp.where(m > 0, w / jnp.maximum(jnp.sum(w), 1e-30), fallback).astype(jnp.float32)


def predict(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    weights: jax.Array,
    kind: str = "logits",
) -> jax.Array:
    """Weighted average of the members' outputs on ``x``.

    Args:
      apply_fn: ``apply_fn(member_params, x) -> output`` for one member.
      params: the population's parameters (leading axis N).
      x: inputs shared by every member.
      weights: ``(N,)`` from :func:`weights` (zeros drop members).
      kind: ``"logits"`` (softmax each member, average probabilities: rows sum to
        1), ``"probs"`` (average as given) or ``"regression"`` (average raw
        outputs, e.g. continuous actions).
    """
    if kind not in ("logits", "probs", "regression"):
        raise ValueError(f"predict: kind must be 'logits', 'probs' or 'regression', got {kind!r}")
    out = jax.vmap(apply_fn, in_axes=(0, None))(params, x)
    if kind == "logits":
        out = jax.nn.softmax(out, axis=-1)
    w = jnp.asarray(weights, out.dtype)
    w = w.reshape(w.shape + (1,) * (out.ndim - 1))
    return jnp.sum(jnp.where(w > 0, w * out, 0.0), axis=0)


def top_k(scores: jax.Array, k: int, alive: jax.Array | None = None) -> jax.Array:
    """Indices of the ``k`` best living members, best first (NaN last)."""
    r = rank(scores, alive)
    return jnp.argsort(r)[: int(k)]
