"""Ensembles of population members: score-based weights and weighted predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._checks import integer
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
    When no living member has a finite score they are uniform over the living
    members; with no member alive, all 0 (there is nothing to weight).

    Args:
      score_history: ``(T, N)`` scores over time, or ``(N,)``.
      alive: ``(N,)`` mask; ``None`` = all alive.
      temperature: > 0; small values approach "best member only".
      window: how many recent scores to average (an integer >= 1).

    Returns:
      ``(N,)`` float32 weights that sum to 1 (all 0 with no member alive).

    Raises:
      ValueError: ``temperature <= 0``, ``window`` not an integer >= 1, or
        ``score_history`` neither ``(T, N)`` nor ``(N,)``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> w = hj.ensemble.weights(jnp.array([[0.5, 0.7, 0.9]]), alive=jnp.array([True, True, False]))
    >>> [round(float(x), 3) for x in w]
    [0.119, 0.881, 0.0]
    """
    if not temperature > 0:
        raise ValueError(f"weights: temperature must be > 0, got {temperature!r}")
    window = integer("ensemble.weights: window", window, 1)
    h = jnp.asarray(score_history, jnp.float32)
    if h.ndim == 1:
        h = h[None]
    if h.ndim != 2:
        raise ValueError(f"weights: score_history must be (T, N) or (N,), got shape {h.shape}")
    recent = h[-window:]
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

    Returns:
      The weighted average over the members: one member's output shape.

    Raises:
      ValueError: an unknown ``kind``.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> params = {"w": jnp.array([1.0, 3.0])}  # two members
    >>> apply_fn = lambda p, x: p["w"] * x
    >>> out = hj.ensemble.predict(apply_fn, params, jnp.array([1.0, 2.0]),
    ...                           jnp.array([0.75, 0.25]), kind="regression")
    >>> out.tolist()
    [1.5, 3.0]
    >>> logits = lambda p, x: jnp.stack([p["w"] * x, -p["w"] * x])
    >>> hj.ensemble.predict(logits, params, jnp.float32(0.0), jnp.array([0.5, 0.5])).tolist()
    [0.5, 0.5]
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
    """Indices of the ``k`` best living members, best first (NaN last).

    Args:
      scores: ``(N,)`` scores, higher is better.
      k: how many indices (an integer >= 1; at most N come back).
      alive: ``(N,)`` mask; masked members come after every living one.

    Returns:
      ``(min(k, N),)`` int indices.

    Raises:
      ValueError: ``k`` is not an integer >= 1.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> scores = jnp.array([0.2, jnp.nan, 0.9, 0.5])
    >>> hj.ensemble.top_k(scores, 2).tolist()
    [2, 3]
    >>> hj.ensemble.top_k(scores, 2, alive=jnp.array([True, True, False, True])).tolist()
    [3, 0]
    """
    k = integer("ensemble.top_k: k", k, 1)
    r = rank(scores, alive)
    return jnp.argsort(r)[:k]
