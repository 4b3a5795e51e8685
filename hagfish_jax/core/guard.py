"""Safety guard: wraps any tuner so that tuning never destabilises training.

The guard decides *when* the wrapped tuner may act and *how far* its proposals
may move; it also watches the score and rolls back after a confirmed
regression. It is a :class:`~hagfish_jax.Tuner` itself, so guards run in a Python
loop, in ``lax.scan`` and under ``vmap`` like any tuner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._checks import integer
from .base import KEEP, HParams, Observation, Proposal, Tuner, as_hparams
from .rollback import shrink_factors as rollback_shrink_factors
from .space import Space

__all__ = ["GuardState", "guard"]


class GuardState(NamedTuple):
    """State of :func:`guard`.

    Attributes:
      inner: the wrapped tuner's state.
      applied: the hyperparameters in force for the next window.
      last_good: the hyperparameters of the most recent window judged good.
      best: best smoothed score (-inf until the first finite one).
      recent: ring buffer of the last ``smoothing`` finite raw scores.
      recent_count, recent_pos: how many entries are valid; where the next goes.
      bad: consecutive bad windows.
      cooldown: windows left in which nothing is judged and nothing changes.
      window: windows observed so far.
      block_sum, block_count, block_bad: the raw scores since the wrapped tuner
        was last consulted (it sees their mean, NaN if any was non-finite: a
        divergence is passed on to it at once, then the block starts afresh).
      rollbacks: how many rollbacks the guard has proposed.
      divergences: how many windows ended with a non-finite score.
      exploring: the values in force are the wrapped tuner's trial (a probe).
    """

    inner: Any
    applied: HParams
    last_good: HParams
    best: jax.Array
    recent: jax.Array
    recent_count: jax.Array
    recent_pos: jax.Array
    bad: jax.Array
    cooldown: jax.Array
    window: jax.Array
    block_sum: jax.Array
    block_count: jax.Array
    block_bad: jax.Array
    rollbacks: jax.Array
    divergences: jax.Array
    exploring: jax.Array


def guard(
    tuner: Tuner,
    warmup: int = 2,
    max_delta: float = 0.5,
    smoothing: int = 3,
    tolerance: float = 0.2,
    patience: int = 2,
    cooldown: int = 3,
    tune_every: int = 1,
    space: Space | None = None,
    shrink: Mapping[str, float] | None = None,
) -> Tuner:
    """Wrap ``tuner`` with warmup, bounded steps, smoothing, rollback and cooldown.

    Rules, per window (one ``update`` call):

    * **warmup**: the first ``warmup`` updates change nothing: the windows up to
      ``warmup + 1`` run with the initial values (``warmup=0`` may change after the
      first window).
    * **max_delta**: every applied change obeys ``|new - old| <= max_delta *
      |old|`` per dimension; where ``old == 0`` the step is bounded by
      ``max_delta`` in unit space (needs ``space``) or in absolute value.
    * **smoothing**: the judged score is the mean of the last ``smoothing``
      finite raw scores (1 = raw).
    * **bad window**: the raw score is NaN/inf, or the judged score is below
      ``best - tolerance * |best|`` (right for negative scores too). NaN/inf
      never enters the smoothing window and never becomes best.
    * **rollback**: after ``patience`` consecutive bad windows the guard proposes
      the hyperparameters of the last good window *exactly* and sets
      ``rollback``; for the next ``cooldown`` windows nothing is judged, no new
      best is taken and nothing changes.
    * **divergence**: a non-finite score rolls back at once, cooldown or not
      (waiting would only train on from broken weights). If the values that
      diverged are no higher than the last good ones, rolling back alone would
      re-apply what failed, so the hyperparameters in ``shrink`` are multiplied
      by their factor instead (learning rates by 0.1 by default). With
      :func:`hagfish_jax.snapshot.restore_if`, a divergence before any finite
      score restores the initial state. A training window should report a
      non-finite score when its loss explodes (the digits task does, for a
      window whose loss is worse than a uniform guess and rising), so that a
      network killed by a huge learning rate is restarted rather than kept. The
      wrapped tuner is told (it sees the NaN score of the values that ran, after
      warmup), so it does not propose what diverged again; its next proposal is
      not applied.
    * **tune_every**: the wrapped tuner is consulted (and values change) at most
      once every ``tune_every`` windows; it sees the mean raw score of the
      windows since it was last consulted and the values actually applied.

    Args:
      tuner: the tuner to wrap.
      warmup: windows before the first change (>= 0).
      max_delta: relative step bound, in (0, 1].
      smoothing: moving-average length (>= 1).
      tolerance: relative regression that makes a window bad (>= 0).
      patience: consecutive bad windows before a rollback (>= 1).
      cooldown: windows after a rollback that are not judged (>= 0).
      tune_every: windows between consultations of the wrapped tuner (>= 1).
      space: optional; bounds steps of dimensions at 0 in unit space and clips
        every applied value into the space.
      shrink: ``{name: factor}`` with factors in (0, 1), applied after a
        divergence (see above). ``None`` (default): 0.1 for every hyperparameter
        named ``learning_rate`` or ``.../learning_rate``; ``{}``: never shrink.

    Returns:
      A :class:`~hagfish_jax.Tuner` whose state is a :class:`GuardState`.

    Raises:
      TypeError: ``tuner`` is not a Tuner, ``space`` not a Space, or ``shrink``
        not a mapping.
      ValueError: a parameter outside its range (``warmup``, ``smoothing``,
        ``patience``, ``cooldown`` and ``tune_every`` must be integers); ``shrink``
        names that are not tuned are refused by ``init``.

    >>> import jax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
    >>> tuner = hj.guard(hj.finite_difference(space), warmup=1, max_delta=0.5)
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 1e-2})
    >>> proposal, state = tuner.update(state, hj.Observation(score=0.5))  # warmup: kept
    >>> round(float(proposal.hparams["learning_rate"]), 6)
    0.01
    >>> proposal, state = tuner.update(state, hj.Observation(score=0.5))
    >>> round(float(proposal.hparams["learning_rate"]), 6)  # a 2x probe, clamped to +50%
    0.015
    >>> bool(proposal.explore)  # the next window tries the probe
    True
    """
    if not isinstance(tuner, Tuner):
        raise TypeError(f"guard: tuner must be a hagfish_jax.Tuner, got {type(tuner).__name__}")
    warmup = integer("guard: warmup", warmup, 0)
    smoothing = integer("guard: smoothing", smoothing, 1)
    patience = integer("guard: patience", patience, 1)
    cooldown = integer("guard: cooldown", cooldown, 0)
    tune_every = integer("guard: tune_every", tune_every, 1)
    if not 0.0 < float(max_delta) <= 1.0:
        raise ValueError(f"guard: max_delta must be in (0, 1], got {max_delta!r}")
    if not float(tolerance) >= 0.0:
        raise ValueError(f"guard: tolerance must be >= 0, got {tolerance!r}")
    if space is not None and not isinstance(space, Space):
        raise TypeError(f"guard: space must be a hagfish_jax.Space, got {type(space).__name__}")
    max_delta = float(max_delta)
    tolerance = float(tolerance)
    if shrink is not None:
        if not isinstance(shrink, Mapping):
            raise TypeError(f"guard: shrink must be a mapping name -> factor, got {shrink!r}")
        for name, factor in shrink.items():
            if isinstance(factor, bool) or not 0.0 < float(factor) < 1.0:
                raise ValueError(f"guard: shrink[{name!r}] must be in (0, 1), got {factor!r}")
        shrink = {str(k): float(v) for k, v in shrink.items()}

    def shrink_factors(names) -> dict[str, float]:  # unknown names fail at init
        return rollback_shrink_factors(shrink, tuple(names), "guard")

    def clamp(old: jax.Array, new: jax.Array, name: str) -> jax.Array:
        radius = max_delta * jnp.abs(old)
        bounded = jnp.clip(new, old - radius, old + radius)
        if space is not None and name in space:
            dim = space[name]
            u_old, u_new = dim.to_unit(old), dim.to_unit(new)
            at_zero = dim.from_unit(jnp.clip(u_new, u_old - max_delta, u_old + max_delta))
            out = jnp.where(old == 0.0, at_zero, bounded)
            return dim.clip(out) if dim.dynamic else out
        return jnp.where(old == 0.0, jnp.clip(new, -max_delta, max_delta), bounded)

    def init(key, hparams) -> GuardState:
        hp = as_hparams(dict(hparams))
        shrink_factors(hp)  # unknown names fail here, before any training
        f32, i32 = jnp.float32, jnp.int32
        return GuardState(
            inner=tuner.init(key, hp),
            applied=hp,
            last_good=hp,
            best=jnp.asarray(-jnp.inf, f32),
            recent=jnp.zeros((smoothing,), f32),
            recent_count=jnp.asarray(0, i32),
            recent_pos=jnp.asarray(0, i32),
            bad=jnp.asarray(0, i32),
            cooldown=jnp.asarray(0, i32),
            window=jnp.asarray(0, i32),
            block_sum=jnp.asarray(0.0, f32),
            block_count=jnp.asarray(0, i32),
            block_bad=jnp.asarray(False),
            rollbacks=jnp.asarray(0, i32),
            divergences=jnp.asarray(0, i32),
            exploring=jnp.asarray(False),
        )

    def tree_where(flag, a, b):
        return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)

    def update(state: GuardState, obs: Observation):
        t = state.window + 1
        raw = jnp.asarray(obs.score, jnp.float32)
        finite = jnp.isfinite(raw)
        judge = state.cooldown == 0

        # Smoothing window: finite scores only.
        recent = jnp.where(finite, state.recent.at[state.recent_pos].set(raw), state.recent)
        pos = jnp.where(finite, (state.recent_pos + 1) % smoothing, state.recent_pos)
        count = jnp.where(
            finite, jnp.minimum(state.recent_count + 1, smoothing), state.recent_count
        )
        valid = jnp.arange(smoothing) < count
        smoothed = jnp.sum(jnp.where(valid, recent, 0.0)) / jnp.maximum(count, 1)

        has_best = jnp.isfinite(state.best)
        regressed = has_best & (smoothed < state.best - tolerance * jnp.abs(state.best))
        bad_now = judge & (~finite | regressed)
        good_now = judge & ~bad_now
        best = jnp.where(good_now & (smoothed > state.best), smoothed, state.best)
        last_good = tree_where(good_now, state.applied, state.last_good)
        bad = jnp.where(judge, jnp.where(bad_now, state.bad + 1, 0), 0)
        diverged = ~finite
        trigger = (bad >= patience) | diverged

        # Block statistics the wrapped tuner will see.
        block_sum = state.block_sum + jnp.where(finite, raw, 0.0)
        block_count = state.block_count + 1
        block_bad = state.block_bad | ~finite
        block_score = jnp.where(block_bad, jnp.nan, block_sum / block_count).astype(jnp.float32)

        # The first ``warmup`` updates change nothing; then every ``tune_every``-th may.
        can_tune = judge & ~trigger & (t > warmup) & (jnp.mod(t - warmup, tune_every) == 0)
        inner_obs = obs._replace(score=block_score, hparams=state.applied, alive=None)
        proposal, inner_next = tuner.update(state.inner, inner_obs)
        stepped = dict(state.applied)
        for name, value in proposal.hparams.items():
            if name in stepped:
                old = state.applied[name]
                stepped[name] = clamp(old, jnp.asarray(value, jnp.float32), name).astype(
                    jnp.float32
                )
        # After a divergence, values no higher than the last good ones are shrunk:
        # rolling back alone would re-apply what failed.
        fallback = dict(last_good)
        for name, factor in shrink_factors(last_good).items():
            old, tried = last_good[name], state.applied[name]
            value = jnp.where(diverged & (tried <= old), tried * factor, old)
            if space is not None and name in space and space[name].dynamic:
                value = space[name].clip(value)
            fallback[name] = value.astype(jnp.float32)
        applied = tree_where(trigger, fallback, tree_where(can_tune, stepped, state.applied))
        last_good = tree_where(trigger, fallback, last_good)
        # A divergence is news for the wrapped tuner: it sees the NaN score of the
        # values that ran (so a probe that diverged is not proposed again), but what
        # it proposes next is not applied: the guard rolls back instead.
        told = can_tune | (diverged & (t > warmup))
        inner = tree_where(told, inner_next, state.inner)
        probe = jnp.asarray(False) if proposal.explore is None else proposal.explore
        exploring = jnp.where(trigger, False, jnp.where(can_tune, probe, state.exploring))

        reset_block = can_tune | trigger
        new_state = GuardState(
            inner=inner,
            applied=applied,
            last_good=last_good,
            best=best.astype(jnp.float32),
            recent=recent,
            recent_count=jnp.where(trigger, 0, count).astype(jnp.int32),
            recent_pos=jnp.where(trigger, 0, pos).astype(jnp.int32),
            bad=jnp.where(trigger, 0, bad).astype(jnp.int32),
            cooldown=jnp.where(trigger, cooldown, jnp.maximum(state.cooldown - 1, 0)).astype(
                jnp.int32
            ),
            window=t.astype(jnp.int32),
            block_sum=jnp.where(reset_block, 0.0, block_sum).astype(jnp.float32),
            block_count=jnp.where(reset_block, 0, block_count).astype(jnp.int32),
            block_bad=jnp.where(reset_block, False, block_bad),
            rollbacks=(state.rollbacks + trigger.astype(jnp.int32)).astype(jnp.int32),
            divergences=(state.divergences + diverged.astype(jnp.int32)).astype(jnp.int32),
            exploring=exploring,
        )
        parents = jnp.where(can_tune, proposal.parents, KEEP).astype(jnp.int32)
        return Proposal(applied, parents, trigger, exploring), new_state

    return Tuner(init, update)
