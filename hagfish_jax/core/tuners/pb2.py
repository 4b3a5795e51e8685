"""PB2: population-based training whose explore step is a time-varying GP-UCB bandit."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _draws as draws
from .. import gp
from .._checks import integer
from ..base import HParams, Observation, Proposal, Tuner
from ..space import Space
from ._common import tuned_space
from .bayes import progress_feature, run_horizon
from .pbt import (
    check_population_init,
    check_ready,
    population_hparams,
    ready_windows,
    truncation_select,
)

__all__ = ["PB2State", "pb2"]


class PB2State(NamedTuple):
    """State of :func:`pb2`.

    Attributes:
      hparams: ``(N,)`` arrays, the last proposal.
      since: ``(N,)`` windows since each member was last replaced.
      prev_score: ``(N,)`` the score of the weights each member started the window
        with (after an exploit, its parent's score).
      buf: the population's history: inputs ``(unit hyperparameters, progress)``,
        target the score improvement of a member over one window.
      generation: updates so far.
      gp_params: the GP's length scales and noise, refitted every ``refit_every``
        generations.
      key: PRNG key.
    """

    hparams: HParams
    since: jax.Array
    prev_score: jax.Array
    buf: gp.Buffer
    generation: jax.Array
    gp_params: gp.GPParams
    key: jax.Array


def _add_many(buf: gp.Buffer, xs: jax.Array, ys: jax.Array, valid: jax.Array) -> gp.Buffer:
    def body(i, b):
        return gp.add(b, xs[i], ys[i], valid[i])

    return jax.lax.fori_loop(0, xs.shape[0], body, buf)


def pb2(
    space: Space,
    fraction: float = 0.25,
    ready: int | float = 1,
    names: Iterable[str] | None = None,
    capacity: int = 64,
    candidates: int = 128,
    beta: float = 2.0,
    horizon: int | None = None,
    fit_steps: int = 20,
    refit_every: int = 4,
) -> Tuner:
    """PBT for small populations: exploit as :func:`pbt`, explore with GP-UCB.

    Selection is PBT's truncation selection (``fraction``, ``ready``, NaN last,
    masked members never ranked). Instead of random perturbation, each replaced
    member's new values maximise an upper confidence bound of a GP fitted to the
    population's history of *score improvement per window* against
    (hyperparameters, training progress): a time-varying bandit, so what worked
    early is not trusted blindly late. When several members are replaced in one
    generation, each choice is added to the GP as a pseudo-observation at its
    predicted mean before the next is made, which shrinks the uncertainty there and
    spreads the batch. ``beta`` grows with ``log`` of the generation (GP-UCB's
    schedule). Observations live in a ring buffer, so nothing recompiles.

    Args:
      space: the search space; only dynamic dimensions change (``names``).
      fraction: size of the top and bottom sets, in (0, 0.5].
      ready: how long a member trains after being replaced before it is compared:
        an integer >= 1 (windows; default 1) or a float in (0, 1), a share of the
        run's length. Unlike :func:`pbt` (2), 1 was best on every development task
        of ``benchmarks/pbt_defaults.py``: its GP chooses the new values, so there
        is less to wait for.
      names: dimensions to explore; default every dynamic one.
      capacity: observations kept (ring buffer; an integer >= 4).
      candidates: UCB candidates per replaced member, half around the parent (an
        integer >= 2).
      beta: base UCB exploration weight.
      horizon: the run's length in windows (progress 1 on the GP's time axis). An
        integer >= 1, or ``None`` (default): the length the caller passes in
        ``Observation.horizon`` (``hj.program.build(..., windows=N)`` and ``hj.Loop``
        do); with neither, ``update`` raises.
      fit_steps: Adam steps refining the GP's length scales when it is refitted (an
        integer >= 0).
      refit_every: refit the length scales every this many generations and reuse
        them between (an integer >= 1; 1 refits every generation).

    Returns:
      A population :class:`~hagfish_jax.Tuner` whose state is a :class:`PB2State`.

    Raises:
      ValueError: a parameter outside its range (the counts above must be integers).
      TypeError: ``space`` is not a :class:`~hagfish_jax.Space`.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
    >>> tuner = hj.pb2(space, horizon=20)
    >>> state = tuner.init(jax.random.key(0), space.sample(jax.random.key(1), 4))
    >>> proposal, state = tuner.update(state, hj.Observation(score=jnp.arange(4.0)))
    >>> int((proposal.parents != jnp.arange(4)).sum())
    1
    """
    sub = tuned_space(space, names, "pb2")
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"pb2: fraction must be in (0, 0.5], got {fraction!r}")
    ready = check_ready("pb2", ready)
    capacity = integer("pb2: capacity", capacity, 4)
    candidates = integer("pb2: candidates", candidates, 2)
    horizon = None if horizon is None else integer("pb2: horizon", horizon, 1)
    fit_steps = integer("pb2: fit_steps", fit_steps, 0)
    refit_every = integer("pb2: refit_every", refit_every, 1)
    if not beta > 0:
        raise ValueError(f"pb2: beta must be > 0, got {beta!r}")
    d = len(sub)
    n_local = candidates // 2

    def init(key, hparams) -> PB2State:
        hp = check_population_init(sub, hparams, "pb2")
        n = next(iter(hp.values())).shape[0]
        return PB2State(
            hparams=hp,
            since=jnp.zeros((n,), jnp.int32),
            prev_score=jnp.full((n,), jnp.nan, jnp.float32),
            buf=gp.buffer(capacity, d + 1),
            generation=jnp.asarray(0, jnp.int32),
            gp_params=gp.GPParams(jnp.full((d + 1,), 0.2, jnp.float32), jnp.float32(1e-3)),
            key=key,
        )

    def update(state: PB2State, obs: Observation):
        hp = population_hparams(state.hparams, obs)
        scores = jnp.asarray(obs.score, jnp.float32)
        n = scores.shape[0]
        u = sub.to_unit({k: hp[k] for k in sub.names})  # (N, d)

        # History: each member's improvement over the window that just ran.
        length = run_horizon(horizon, obs, "pb2")
        t = progress_feature(state.generation, length)
        xs = jnp.concatenate([u, jnp.full((n, 1), t)], axis=1)
        alive = jnp.ones((n,), bool) if obs.alive is None else jnp.asarray(obs.alive, bool)
        measured = alive & jnp.isfinite(state.prev_score)
        finite = jnp.isfinite(scores)
        buf = state.buf
        gains = jnp.where(finite, scores - state.prev_score, gp.penalty(buf))
        buf = _add_many(buf, xs, gains, measured)

        key, k_select, k_cands = jax.random.split(state.key, 3)
        interval = ready_windows(ready, horizon, obs, "pb2")
        parents, replaced, since = truncation_select(
            k_select, obs, state.since, fraction, interval
        )

        # Explore: GP-UCB at the next window's progress, one replaced member at a time.
        params = jax.lax.cond(
            state.generation % refit_every == 0,
            lambda: gp.fit(buf, steps=fit_steps),
            lambda: state.gp_params,
        )
        t_next = progress_feature(state.generation + 1, length)
        beta_t = beta * (1.0 + math.log(2.0) + jnp.log1p(state.generation.astype(jnp.float32)))
        parent_u = u[parents]

        # Only the replaced members choose (a quarter of them, or the NaN ones): loop
        # over their indices, not over the whole population.
        todo = jnp.nonzero(replaced, size=n, fill_value=0)[0]

        def choose(j, carry):
            b, chosen = carry
            i = todo[j]
            k = jax.random.fold_in(k_cands, i)
            k_l, k_g = jax.random.split(k)
            local = jnp.clip(parent_u[i] + 0.1 * draws.normal(k_l, (n_local, d)), 0.0, 1.0)
            uniform = draws.uniform(k_g, (candidates - n_local, d))
            cands = jnp.concatenate([local, uniform], axis=0)
            xq = jnp.concatenate([cands, jnp.full((candidates, 1), t_next)], axis=1)
            post = gp.posterior(b, params)
            mean, std = gp.predict(post, xq)
            acq = jnp.where(jnp.isfinite(mean), gp.ucb(mean, std, beta_t), -jnp.inf)
            best = jnp.argmax(acq)
            pick = jnp.where(replaced[i], cands[best], chosen[i])
            # Pseudo-observation at the predicted mean: spreads the batch.
            b = gp.add(b, xq[best], mean[best], replaced[i])
            return b, chosen.at[i].set(pick)

        _, new_u = jax.lax.fori_loop(0, jnp.sum(replaced), choose, (buf, u))
        explored = sub.from_unit(new_u)
        new = {name: jnp.where(replaced, v[parents], v) for name, v in hp.items()}
        for name in sub.names:
            new[name] = jnp.where(replaced, explored[name], hp[name]).astype(jnp.float32)

        # The weights each member starts the next window with scored scores[parents].
        prev = jnp.where(finite[parents], scores[parents], jnp.nan)
        new_state = PB2State(
            hparams=new,
            since=since,
            prev_score=prev.astype(jnp.float32),
            buf=buf,
            generation=state.generation + 1,
            gp_params=params,
            key=key,
        )
        return Proposal(new, parents, jnp.zeros((n,), jnp.bool_)), new_state

    return Tuner(init, update, population=True)
