"""In-training Bayesian optimisation: a GP on score improvement per window."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import gp
from ..base import HParams, Observation, Proposal, Tuner, keep_parents
from ..space import Space
from ._common import applied, check_init, score_of, tuned_space, write_unit

__all__ = ["BayesState", "bayes", "progress_feature"]


class BayesState(NamedTuple):
    """State of :func:`bayes`.

    Attributes:
      hparams: the last proposal.
      buf: observations: inputs ``(unit hyperparameters, progress)``, target the
        score improvement over the window.
      prev_score: the score at the end of the previous window.
      window: windows observed.
      incumbent: the unit point with the best predicted improvement now (the
        tuner's current belief of the best values).
      key: PRNG key.
    """

    hparams: HParams
    buf: gp.Buffer
    prev_score: jax.Array
    window: jax.Array
    incumbent: jax.Array
    key: jax.Array


def progress_feature(window: jax.Array, horizon: float) -> jax.Array:
    """Training progress as a GP input: ``log1p(window) / log1p(horizon)``."""
    return jnp.log1p(jnp.asarray(window, jnp.float32)) / math.log1p(horizon)


def bayes(
    space: Space,
    names: Iterable[str] | None = None,
    capacity: int = 32,
    candidates: int = 256,
    acquisition: str = "ei",
    beta: float = 2.0,
    xi: float = 0.0,
    local_fraction: float = 0.5,
    local_scale: float = 0.1,
    horizon: float = 100.0,
    min_observations: int = 3,
    fit_steps: int = 20,
    noise: float = 1e-3,
    min_gain: float = 0.02,
    recent: int = 16,
    radius: float = 0.06,
) -> Tuner:
    """Bayesian optimisation during one training run.

    Training is non-stationary: the same learning rate gains a lot early and little
    late. So the GP models the *score improvement over a window* as a function of
    the hyperparameters (unit space) **and** training progress, and proposes the
    values that maximise the acquisition at the next window's progress. Candidates
    are ``candidates`` points inside a trust region of half-width ``radius`` around
    the incumbent (the recently observed values predicted to gain most now): a
    ``local_fraction`` share Gaussian (``local_scale``), the rest uniform in the
    region; when nothing is expected to beat the incumbent by ``min_gain``, the
    tuner proposes the incumbent, so it settles. Observations live in a ring buffer
    of ``capacity`` entries, so the tuner never recompiles as history grows. A
    NaN/inf window is recorded as a large loss. The GP sees the values actually
    applied (``Observation.hparams``, as a guard passes them), not its own proposal.

    Use it inside :func:`hagfish_jax.guard`: ``hj.guard(hj.bayes(space), space=space)``.

    Args:
      space: the search space.
      names: dimensions to tune; default every dynamic one.
      capacity: observations kept (ring buffer).
      candidates: acquisition candidates per update.
      acquisition: ``"ei"`` (expected improvement) or ``"ucb"``.
      beta: UCB exploration weight.
      xi: EI margin, in units of the improvement's standard deviation.
      local_fraction: share of candidates drawn around the current values.
      local_scale: standard deviation of local candidates, unit space.
      horizon: windows that map to progress 1 (``log1p`` scale; later is fine).
      min_observations: below this many observations, propose a local random step.
      fit_steps: Adam steps refining the length scales each update.
      noise: initial observation noise (standardised units).
      radius: candidates stay in a box of this half-width (unit space) around the
        incumbent: a trust region, so proposals are reachable in a few of a
        guard's bounded steps. 1.0 searches the whole space.
      recent: only values observed in the last ``recent`` windows can be the
        incumbent.
      min_gain: with EI, when the best expected improvement over the incumbent is
        below ``min_gain`` standard deviations of the observed improvements, the
        tuner proposes the incumbent instead of exploring (so it settles).

    >>> import jax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
    >>> tuner = hj.guard(hj.bayes(space), space=space)
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3})
    >>> proposal, state = jax.jit(tuner.update)(state, hj.Observation(score=0.1))
    >>> space.contains(proposal.hparams)
    True
    """
    sub = tuned_space(space, names, "bayes")
    if acquisition not in ("ei", "ucb"):
        raise ValueError(f"bayes: acquisition must be 'ei' or 'ucb', got {acquisition!r}")
    if int(capacity) < 4:
        raise ValueError(f"bayes: capacity must be >= 4, got {capacity!r}")
    if int(candidates) < 4:
        raise ValueError(f"bayes: candidates must be >= 4, got {candidates!r}")
    if not 0.0 <= local_fraction <= 1.0:
        raise ValueError(f"bayes: local_fraction must be in [0, 1], got {local_fraction!r}")
    if not local_scale > 0.0:
        raise ValueError(f"bayes: local_scale must be > 0, got {local_scale!r}")
    if not horizon > 0:
        raise ValueError(f"bayes: horizon must be > 0, got {horizon!r}")
    if int(recent) < 1:
        raise ValueError(f"bayes: recent must be >= 1, got {recent!r}")
    if not 0.0 < radius <= 1.0:
        raise ValueError(f"bayes: radius must be in (0, 1], got {radius!r}")
    if not min_gain >= 0:
        raise ValueError(f"bayes: min_gain must be >= 0, got {min_gain!r}")
    if not beta >= 0:
        raise ValueError(f"bayes: beta must be >= 0, got {beta!r}")
    d = len(sub)
    n_local = int(round(local_fraction * (candidates - 2)))
    n_global = candidates - 2 - n_local

    def init(key, hparams) -> BayesState:
        hp = check_init(sub, hparams, "bayes")
        u = sub.to_unit({n: hp[n] for n in sub.names})
        return BayesState(
            hparams=hp,
            buf=gp.buffer(capacity, d + 1),
            prev_score=jnp.asarray(jnp.nan, jnp.float32),
            window=jnp.asarray(0, jnp.int32),
            incumbent=u,
            key=key,
        )

    def update(state: BayesState, obs: Observation):
        hp = applied(obs, state.hparams)
        u = sub.to_unit({n: hp[n] for n in sub.names})
        score = score_of(obs)
        finite = jnp.isfinite(score)
        prev_ok = jnp.isfinite(state.prev_score)

        # Record the improvement of the window that just ran (a divergence as a big loss).
        buf = state.buf
        n_valid = jnp.sum(buf.valid)
        lo = jnp.min(jnp.where(buf.valid, buf.y, jnp.inf))
        hi = jnp.max(jnp.where(buf.valid, buf.y, -jnp.inf))
        penalty = jnp.where(n_valid > 0, lo - jnp.maximum(hi - lo, 1e-3), -1.0)
        gain = score - state.prev_score
        target = jnp.where(finite, gain, penalty)
        x = jnp.concatenate([u, progress_feature(state.window, horizon)[None]])
        buf = gp.add(buf, x, target, valid=prev_ok | ~finite)
        prev_score = jnp.where(finite, score, state.prev_score)

        # Fit and maximise the acquisition at the next window's progress.
        key, k_local, k_global, k_pick = jax.random.split(state.key, 4)
        params = gp.fit(buf, noise=noise, steps=fit_steps)
        post = gp.posterior(buf, params)
        t_next = progress_feature(state.window + 1, horizon)

        # The incumbent: the observed point predicted to gain most at the next window.
        seen = jnp.concatenate([buf.x[:, :d], jnp.full((capacity, 1), t_next)], axis=1)
        seen_mean, _ = gp.predict(post, seen)
        # Only recent observations can be the incumbent: far from any data in time the
        # GP reverts to the average gain, which early, large gains inflate.
        cutoff = progress_feature(jnp.maximum(state.window - recent, 0), horizon)
        seen_mean = jnp.where(buf.valid & (buf.x[:, d] >= cutoff), seen_mean, -jnp.inf)
        incumbent_u = buf.x[jnp.argmax(seen_mean), :d]
        best_mean = jnp.max(seen_mean)
        warm = jnp.sum(buf.valid) >= min_observations

        # Candidates in a trust region around the incumbent (around the values in
        # force until the GP is warm), so exploration never drifts away step by step.
        centre = jnp.where(warm, incumbent_u, u)
        lo_box = jnp.clip(centre - radius, 0.0, 1.0)
        hi_box = jnp.clip(centre + radius, 0.0, 1.0)
        noise_l = local_scale * jax.random.normal(k_local, (n_local, d))
        local = jnp.clip(centre + noise_l, lo_box, hi_box)
        uniform = lo_box + (hi_box - lo_box) * jax.random.uniform(k_global, (n_global, d))
        cands = jnp.concatenate([u[None], centre[None], local, uniform], axis=0)
        xq = jnp.concatenate([cands, jnp.full((candidates, 1), t_next)], axis=1)
        mean, std = gp.predict(post, xq)
        if acquisition == "ei":
            acq = gp.expected_improvement(mean, std, best_mean, xi * post.sd)
            # Once nothing is expected to beat the incumbent by a meaningful margin,
            # stop exploring and train with the incumbent.
            worth = jnp.max(acq) > min_gain * post.sd
        else:
            acq = gp.ucb(mean, std, beta)
            worth = jnp.max(acq) > best_mean
        acq = jnp.where(jnp.isfinite(acq), acq, -jnp.inf)
        chosen = jnp.where(worth, cands[jnp.argmax(acq)], incumbent_u)
        random_local = local[jax.random.randint(k_pick, (), 0, max(n_local, 1))] if n_local else u
        new_u = jnp.where(warm, chosen, random_local)
        incumbent = jnp.where(warm, incumbent_u, state.incumbent)

        new_state = BayesState(
            hparams=write_unit(sub, hp, new_u),
            buf=buf,
            prev_score=prev_score.astype(jnp.float32),
            window=(state.window + 1).astype(jnp.int32),
            incumbent=incumbent,
            key=key,
        )
        return Proposal(new_state.hparams, keep_parents(), jnp.asarray(False)), new_state

    return Tuner(init, update)
