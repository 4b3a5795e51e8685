"""In-training Bayesian optimisation: a GP on score improvement per window."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .. import _draws as draws
from .. import gp
from .._checks import integer
from ..base import HParams, Observation, Proposal, Tuner, keep_parents
from ..space import Space
from ._common import applied, check_init, score_of, tuned_space, write_unit

__all__ = ["BayesState", "bayes", "progress_feature"]

_BASELINE, _TRIAL = 0, 1


class BayesState(NamedTuple):
    """State of :func:`bayes`.

    Attributes:
      hparams: the last proposal.
      buf: observations: inputs ``(unit hyperparameters, progress)``; target the
        improvement of a trial window minus the mean improvement of the
        incumbent's windows just before and just after it.
      prev_score: the score at the end of the previous window.
      base_gain: the improvement of the last incumbent window.
      trial_u, trial_t, trial_gain: the last trial's point, progress and gain.
      pending: a trial waits for the incumbent window after it to be judged.
      incumbent: the committed point in unit space (the current best belief).
      phase: 0 = the next score measures the incumbent, 1 = a trial.
      window: windows observed.
      trials: trials proposed so far.
      gp_params: the kernel parameters of the last fit.
      key: PRNG key.
    """

    hparams: HParams
    buf: gp.Buffer
    prev_score: jax.Array
    base_gain: jax.Array
    trial_u: jax.Array
    trial_t: jax.Array
    trial_gain: jax.Array
    pending: jax.Array
    incumbent: jax.Array
    phase: jax.Array
    window: jax.Array
    trials: jax.Array
    gp_params: gp.GPParams
    key: jax.Array


def progress_feature(window: jax.Array, horizon: int | jax.Array) -> jax.Array:
    """Training progress as a GP input: ``log1p(window) / log1p(horizon)``.

    >>> round(float(progress_feature(9, 99)), 6)
    0.5
    """
    h = jnp.maximum(jnp.asarray(horizon, jnp.float32), 1.0)
    return jnp.log1p(jnp.asarray(window, jnp.float32)) / jnp.log1p(h)


def run_horizon(
    horizon: int | None,
    obs: Any,
    where: str,
    why: str = "training progress is one of the GP's inputs",
) -> int | jax.Array:
    """The run's length in windows: the tuner's own ``horizon``, else the one the
    caller passes in the observation; a clear error, saying ``why`` the tuner needs
    it, when neither knows it."""
    if horizon is not None:
        return horizon
    if getattr(obs, "horizon", None) is not None:
        return obs.horizon
    raise ValueError(
        f"{where}: the run's length is unknown, and {why}: pass horizon=WINDOWS to the "
        "tuner, or windows=WINDOWS to hj.program.build (hj.Loop.run passes max_windows "
        "itself)"
    )


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
    radius: float = 0.06,
    horizon: int | None = None,
    min_observations: int = 2,
    fit_steps: int = 20,
    noise: float = 1e-2,
    refit_every: int = 4,
) -> Tuner:
    """Bayesian optimisation during one training run.

    Training is non-stationary: the same learning rate gains a lot early and little
    late, so raw improvements from different moments cannot be compared. This
    tuner compares like with like. Windows alternate between the *incumbent* and a
    *trial*: the GP models the trial window's score improvement **minus** the mean
    improvement of the incumbent's windows just before and just after it (which
    cancels the learning curve's drift), as a function of the trial's
    hyperparameters (unit space) and of training progress. A trial that beat the
    incumbent becomes the incumbent. Trials maximise the acquisition
    (expected improvement over the incumbent, whose relative gain is 0 by
    definition, or UCB) at the next window's progress, over ``candidates`` points
    inside a trust region of half-width ``radius`` around the incumbent (a
    ``local_fraction`` share Gaussian with ``local_scale``, the rest uniform), so a
    guard's bounded steps reach them. Observations live in a ring buffer of
    ``capacity``, so nothing recompiles as history grows. A NaN/inf window is
    recorded as a large loss. The GP sees the values actually applied
    (``Observation.hparams``, as a guard passes them), not its own proposal.

    Use it inside :func:`hagfish_jax.guard`: ``hj.guard(hj.bayes(space), space=space)``.

    Args:
      space: the search space.
      names: dimensions to tune; default every dynamic one.
      capacity: observations kept (ring buffer; an integer >= 4).
      candidates: acquisition candidates per trial (an integer >= 4).
      acquisition: ``"ei"`` (expected improvement) or ``"ucb"``.
      beta: UCB exploration weight.
      xi: EI margin, in standard deviations of the observed relative gains.
      local_fraction: share of candidates drawn around the incumbent.
      local_scale: standard deviation of local candidates, unit space.
      radius: half-width of the trust region around the incumbent, unit space;
        trials closer than a quarter of it are not considered. Match it to the
        guard's ``max_delta`` so that a trial and the way back each take one step.
      horizon: the run's length in windows: progress 1 on the GP's time axis
        (``log1p`` scale; running longer is fine). An integer >= 1, or ``None``
        (default): the length the caller passes in ``Observation.horizon``
        (``hj.program.build(..., windows=N)`` and ``hj.Loop`` do); with neither,
        ``update`` raises.
      min_observations: below this many trials, trials are random local steps
        (an integer >= 0).
      fit_steps: Adam steps refining the length scales each trial (an integer >= 0).
      noise: initial observation noise (standardised units).
      refit_every: refit the length scales every this many trials and reuse them
        in between (the fit dominates the cost of an update on long histories;
        1 refits at every trial, about 4x the cost at 256 observations; an
        integer >= 1).

    Returns:
      A :class:`~hagfish_jax.Tuner` whose state is a :class:`BayesState`.

    Raises:
      ValueError: a parameter outside its range (the counts above must be
        integers), or an unknown ``acquisition``.
      TypeError: ``space`` is not a :class:`~hagfish_jax.Space`.

    >>> import jax, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1.0))
    >>> tuner = hj.guard(hj.bayes(space, horizon=50), space=space)
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 1e-3})
    >>> proposal, state = jax.jit(tuner.update)(state, hj.Observation(score=0.1))
    >>> space.contains(proposal.hparams)
    True
    """
    sub = tuned_space(space, names, "bayes")
    if acquisition not in ("ei", "ucb"):
        raise ValueError(f"bayes: acquisition must be 'ei' or 'ucb', got {acquisition!r}")
    capacity = integer("bayes: capacity", capacity, 4)
    candidates = integer("bayes: candidates", candidates, 4)
    horizon = None if horizon is None else integer("bayes: horizon", horizon, 1)
    min_observations = integer("bayes: min_observations", min_observations, 0)
    fit_steps = integer("bayes: fit_steps", fit_steps, 0)
    refit_every = integer("bayes: refit_every", refit_every, 1)
    if not 0.0 <= local_fraction <= 1.0:
        raise ValueError(f"bayes: local_fraction must be in [0, 1], got {local_fraction!r}")
    if not local_scale > 0.0:
        raise ValueError(f"bayes: local_scale must be > 0, got {local_scale!r}")
    if not 0.0 < radius <= 1.0:
        raise ValueError(f"bayes: radius must be in (0, 1], got {radius!r}")
    if not beta >= 0:
        raise ValueError(f"bayes: beta must be >= 0, got {beta!r}")
    if not noise > 0:
        raise ValueError(f"bayes: noise must be > 0, got {noise!r}")
    d = len(sub)
    n_local = int(round(local_fraction * (candidates - 1)))
    n_global = candidates - 1 - n_local

    def init(key, hparams) -> BayesState:
        hp = check_init(sub, hparams, "bayes")
        u = sub.to_unit({n: hp[n] for n in sub.names})
        nan = jnp.asarray(jnp.nan, jnp.float32)
        return BayesState(
            hparams=hp,
            buf=gp.buffer(capacity, d + 1),
            prev_score=nan,
            base_gain=nan,
            trial_u=u,
            trial_t=jnp.asarray(0.0, jnp.float32),
            trial_gain=nan,
            pending=jnp.asarray(False),
            incumbent=u,
            phase=jnp.asarray(_BASELINE, jnp.int32),
            window=jnp.asarray(0, jnp.int32),
            trials=jnp.asarray(0, jnp.int32),
            gp_params=gp.GPParams(jnp.full((d + 1,), 0.2, jnp.float32), jnp.float32(noise)),
            key=key,
        )

    def propose_trial(key, buf, centre, t_next, params):
        k_local, k_global, k_pick = jax.random.split(key, 3)
        lo_box = jnp.clip(centre - radius, 0.0, 1.0)
        hi_box = jnp.clip(centre + radius, 0.0, 1.0)
        local = centre + local_scale * draws.normal(k_local, (n_local, d))
        local = jnp.clip(local, lo_box, hi_box)
        uniform = lo_box + (hi_box - lo_box) * draws.uniform(k_global, (n_global, d))
        cands = jnp.concatenate([centre[None], local, uniform], axis=0)
        xq = jnp.concatenate([cands, jnp.full((candidates, 1), t_next)], axis=1)
        post = gp.posterior(buf, params)
        mean, std = gp.predict(post, xq)
        if acquisition == "ei":
            acq = gp.expected_improvement(mean, std, 0.0, xi * post.sd)
        else:
            acq = gp.ucb(mean, std, beta)
        # A trial must differ from the incumbent enough to be measurable.
        far = jnp.max(jnp.abs(cands - centre), axis=1) >= 0.25 * radius
        acq = jnp.where(jnp.isfinite(acq) & far, acq, -jnp.inf)
        chosen = cands[jnp.argmax(acq)]
        pick = jax.random.randint(k_pick, (), 0, max(candidates - 1, 1))
        random_local = cands[1 + pick]
        warm = jnp.sum(buf.valid) >= min_observations
        return jnp.where(warm, chosen, random_local)

    def update(state: BayesState, obs: Observation):
        hp = applied(obs, state.hparams)
        u = sub.to_unit({n: hp[n] for n in sub.names})  # what really ran
        score = score_of(obs)
        finite = jnp.isfinite(score)
        gain = score - state.prev_score  # NaN for the first window
        in_baseline = state.phase == _BASELINE
        length = run_horizon(horizon, obs, "bayes")
        t_now = progress_feature(state.window, length)

        # An incumbent window right after a trial closes the trial: compare the trial's
        # gain with the mean of the incumbent's gains just before and just after it,
        # which cancels the drift of the learning curve.
        buf = state.buf
        penalty = gp.penalty(buf)
        reference = 0.5 * (state.base_gain + gain)
        relative = jnp.where(jnp.isfinite(state.trial_gain), state.trial_gain - reference, penalty)
        closing = in_baseline & state.pending & jnp.isfinite(reference)
        x = jnp.concatenate([state.trial_u, state.trial_t[None]])
        buf = gp.add(buf, x, relative, valid=closing)
        won = closing & (relative > 0)
        incumbent = jnp.where(won, state.trial_u, jnp.where(in_baseline, u, state.incumbent))

        # Next: after an incumbent window, a trial (or the new incumbent if the last
        # trial won); after a trial, the incumbent.
        key, k_trial = jax.random.split(state.key)
        t_next = progress_feature(state.window + 1, length)
        start_trial = in_baseline & jnp.isfinite(gain) & ~won

        def with_trial(_):
            # Refit the length scales every `refit_every` trials; reuse them between.
            params = jax.lax.cond(
                state.trials % refit_every == 0,
                lambda: gp.fit(buf, noise=noise, steps=fit_steps),
                lambda: state.gp_params,
            )
            return propose_trial(k_trial, buf, incumbent, t_next, params), params

        # The GP is only needed when a trial starts (about every other window).
        trial, gp_params = jax.lax.cond(
            start_trial, with_trial, lambda _: (incumbent, state.gp_params), None
        )
        new_u = jnp.where(start_trial, trial, incumbent)

        new_state = BayesState(
            hparams=write_unit(sub, hp, new_u),
            buf=buf,
            prev_score=jnp.where(finite, score, state.prev_score).astype(jnp.float32),
            base_gain=jnp.where(in_baseline, gain, state.base_gain).astype(jnp.float32),
            trial_u=jnp.where(in_baseline, state.trial_u, u),
            trial_t=jnp.where(in_baseline, state.trial_t, t_now).astype(jnp.float32),
            trial_gain=jnp.where(
                in_baseline, state.trial_gain, jnp.where(finite, gain, jnp.nan)
            ).astype(jnp.float32),
            pending=jnp.where(in_baseline, False, True),
            incumbent=incumbent,
            phase=jnp.where(start_trial, _TRIAL, _BASELINE).astype(jnp.int32),
            window=(state.window + 1).astype(jnp.int32),
            trials=(state.trials + start_trial.astype(jnp.int32)).astype(jnp.int32),
            gp_params=gp_params,
            key=key,
        )
        explore = new_state.phase == 1  # the next window measures a trial
        return Proposal(new_state.hparams, keep_parents(), jnp.asarray(False), explore), new_state

    return Tuner(init, update)
