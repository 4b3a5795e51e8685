"""Simultaneous perturbation stochastic approximation (SPSA) in unit space."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..base import HParams, Observation, Proposal, Tuner, keep_parents
from ..space import Space
from ._common import applied, check_init, score_of, tuned_space, write_unit

__all__ = ["SPSAState", "spsa"]

_START, _PLUS, _MINUS = 0, 1, 2


class SPSAState(NamedTuple):
    """State of :func:`spsa`.

    Attributes:
      hparams: the last proposal.
      theta: the current estimate in unit space, ``(d,)``.
      delta: the current Rademacher direction, ``(d,)``.
      plus_score, plus_u: score and point of the ``theta + c * delta`` window.
      scale: running mean of ``|y+ - y-|``, so steps do not depend on score units.
      k: iteration counter (gain schedules).
      phase: 0 = start, 1 = the next score measures ``+``, 2 = it measures ``-``.
      key: PRNG key for the directions.
    """

    hparams: HParams
    theta: jax.Array
    delta: jax.Array
    plus_score: jax.Array
    plus_u: jax.Array
    scale: jax.Array
    k: jax.Array
    phase: jax.Array
    key: jax.Array


def spsa(
    space: Space,
    names: Iterable[str] | None = None,
    a: float = 0.1,
    c: float = 0.05,
    stability: float = 10.0,
    alpha: float = 0.602,
    gamma: float = 0.101,
    max_gradient: float = 2.0,
    momentum: float = 0.8,
) -> Tuner:
    """Estimate the gradient of the score from two windows, step all dimensions at once.

    Windows alternate between ``theta + c_k * delta`` and ``theta - c_k * delta``
    with a random ±1 direction ``delta``; then ``theta`` moves by ``a_k * g *
    delta`` where ``g = (y+ - y-) / scale`` and ``scale`` is a running mean of
    ``|y+ - y-|``. Normalising by ``scale`` makes the trajectory the same when
    every score is multiplied by a positive constant. Everything happens in unit
    space, so log dimensions move multiplicatively and every proposal is inside
    the bounds. A NaN/inf side counts as the worse side.

    Args:
      space: the search space.
      names: dimensions to tune; default every dynamic one.
      a: step gain in unit space (``a_k = a * ((1 + A) / (k + 1 + A)) ** alpha``).
      c: perturbation size in unit space (``c_k = c / (k + 1) ** gamma``).
      stability: ``A`` in the gain schedule.
      alpha, gamma: decay exponents (Spall's 0.602 and 0.101).
      max_gradient: the normalised gradient is clipped to ``[-max_gradient, max_gradient]``.
      momentum: weight of the past in the running ``scale``, in [0, 1).

    >>> import jax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1), b1=hj.Uniform(0.8, 0.99))
    >>> tuner = hj.spsa(space)
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3, "b1": 0.9})
    >>> proposal, state = tuner.update(state, hj.Observation(score=0.5))
    >>> space.contains(proposal.hparams)
    True
    """
    sub = tuned_space(space, names, "spsa")
    for label, v in (("a", a), ("c", c)):
        if not 0.0 < v <= 1.0:
            raise ValueError(f"spsa: {label} must be in (0, 1], got {v!r}")
    if not stability >= 0.0:
        raise ValueError(f"spsa: stability must be >= 0, got {stability!r}")
    if not max_gradient > 0.0:
        raise ValueError(f"spsa: max_gradient must be > 0, got {max_gradient!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"spsa: momentum must be in [0, 1), got {momentum!r}")
    d = len(sub)

    def gains(k):
        kf = k.astype(jnp.float32)
        a_k = a * ((1.0 + stability) / (kf + 1.0 + stability)) ** alpha
        c_k = c / (kf + 1.0) ** gamma
        return a_k, c_k

    def init(key, hparams) -> SPSAState:
        hp = check_init(sub, hparams, "spsa")
        u = sub.to_unit({n: hp[n] for n in sub.names})
        nan = jnp.asarray(jnp.nan, jnp.float32)
        return SPSAState(
            hparams=hp,
            theta=u,
            delta=jnp.ones((d,), jnp.float32),
            plus_score=nan,
            plus_u=u,
            scale=jnp.asarray(0.0, jnp.float32),
            k=jnp.asarray(0, jnp.int32),
            phase=jnp.asarray(_START, jnp.int32),
            key=key,
        )

    def update(state: SPSAState, obs: Observation):
        hp = applied(obs, state.hparams)
        u = sub.to_unit({n: hp[n] for n in sub.names})
        y = score_of(obs)

        # Closing a +/- pair: gradient step on theta.
        y_plus, y_minus = state.plus_score, y
        fp, fm = jnp.isfinite(y_plus), jnp.isfinite(y_minus)
        diff = jnp.where(fp & fm, y_plus - y_minus, 0.0)
        mag = jnp.abs(diff)
        has_mag = mag > 0
        scale = jnp.where(
            has_mag,
            jnp.where(state.scale > 0, momentum * state.scale + (1 - momentum) * mag, mag),
            state.scale,
        )
        g = jnp.where(has_mag, diff / jnp.where(scale > 0, scale, 1.0), 0.0)
        g = jnp.where(fp & ~fm, max_gradient, jnp.where(fm & ~fp, -max_gradient, g))
        g = jnp.clip(g, -max_gradient, max_gradient)
        spread = 0.5 * (state.plus_u - u)  # the perturbation that was really applied
        direction = jnp.where(jnp.abs(spread) > 1e-7, jnp.sign(spread), 0.0)
        a_k, _ = gains(state.k)
        stepped = jnp.clip(state.theta + a_k * g * direction, 0.0, 1.0)
        k_next = state.k + 1

        closing = state.phase == _MINUS
        theta = jnp.where(closing, stepped, state.theta)
        k = jnp.where(closing, k_next, state.k).astype(jnp.int32)
        scale = jnp.where(closing, scale, state.scale)

        # Start or after a pair: draw a direction and propose theta + c delta.
        key, sub_key = jax.random.split(state.key)
        fresh = jax.random.rademacher(sub_key, (d,), jnp.float32)
        _, c_k = gains(k)
        plus = jnp.clip(theta + c_k * fresh, 0.0, 1.0)
        minus = jnp.clip(state.theta - c_k * state.delta, 0.0, 1.0)

        in_plus = state.phase == _PLUS
        new_u = jnp.where(in_plus, minus, plus)
        new_state = SPSAState(
            hparams=write_unit(sub, hp, new_u),
            theta=theta,
            delta=jnp.where(in_plus, state.delta, fresh),
            plus_score=jnp.where(in_plus, y, state.plus_score).astype(jnp.float32),
            plus_u=jnp.where(in_plus, u, state.plus_u),
            scale=scale.astype(jnp.float32),
            k=k,
            phase=jnp.where(in_plus, _MINUS, _PLUS).astype(jnp.int32),
            key=key,
        )
        explore = new_state.phase != _START  # both perturbations are measurements
        return Proposal(new_state.hparams, keep_parents(), jnp.asarray(False), explore), new_state

    return Tuner(init, update)
