"""Population-based training: truncation selection across the population axis."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _draws as draws
from .._checks import integer
from ..base import HParams, Observation, Proposal, Tuner, as_hparams
from ..population import rank
from ..space import Space
from ._common import tuned_space
from .bayes import run_horizon

__all__ = ["READY", "PBTState", "pbt", "ready_windows", "truncation_select", "truncation_size"]

#: The default exploit interval of :func:`pbt`: a member trains 2 windows after it
#: was replaced before it is compared again. Chosen on
#: development tasks that no benchmark reports (``benchmarks/pbt_defaults.py``, three
#: classification tasks of 12-20 windows and a 150-window stream): against random
#: search at the same budget, 2 windows gained on every one of them (mean +0.33 to
#: +1.23 points on the classification tasks, +10.4 on the stream) where exploiting every
#: window (the old ``ready=1``) lost on two; a share of the run (0.15) did as well on
#: the short runs and half as well on the stream.
READY = 2


class PBTState(NamedTuple):
    """State of :func:`pbt`.

    Attributes:
      hparams: ``(N,)`` arrays, the last proposal.
      since: ``(N,)`` windows since each member was last replaced.
      generation: how many updates have run.
      key: PRNG key.
    """

    hparams: HParams
    since: jax.Array
    generation: jax.Array
    key: jax.Array


def truncation_size(fraction: float, n: jax.Array | int) -> jax.Array:
    """How many members form the top (and the bottom) set among ``n`` eligible ones.

    ``round(fraction * n)`` (halves round up), at least 1 and at most ``n // 2`` so
    the two sets never overlap; 0 when fewer than two members are eligible. For
    ``fraction=0.25``: 2 -> 1, 5 -> 1, 16 -> 4, 33 -> 8.
    """
    n = jnp.asarray(n, jnp.int32)
    k = jnp.floor(fraction * n.astype(jnp.float32) + 0.5).astype(jnp.int32)
    return jnp.clip(k, 1, n // 2)


def population_hparams(last: HParams, obs: Observation) -> HParams:
    """The ``(N,)`` hyperparameters in force: the last proposal, or what was applied."""
    hp = dict(last)
    if obs.hparams is not None:
        hp.update({k: jnp.asarray(v, jnp.float32) for k, v in obs.hparams.items() if k in hp})
    return hp


def truncation_select(
    key: jax.Array | None,
    obs: Observation,
    since: jax.Array,
    fraction: float,
    ready: int,
    u: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Truncation selection over the population axis (PBT's and PB2's exploit step).

    The bottom ``truncation_size(fraction, eligible)`` eligible members, and every
    eligible member with a NaN/inf score, copy a member drawn uniformly from the
    top set. Eligible: alive, and ``ready`` windows or more since last replaced.
    (Not :func:`hagfish_jax.population.select`, which takes members by index.)

    Args:
      key: PRNG key for the parent draw.
      obs: the observation; ``obs.score`` and ``obs.alive`` are ``(N,)``.
      since: ``(N,)`` windows since each member was last replaced.
      fraction: size of the top and bottom sets, in (0, 0.5].
      ready: windows a member trains after being replaced before it is compared.
      u: optional ``(N,)`` uniforms in [0, 1) for the parent draws (member ``i``
        copies the ``floor(u[i] * top)``-th best); ``None`` draws them from ``key``.

    Returns:
      ``(parents, replaced, since)``: whom each member copies (its own index when
      kept), which members were replaced, and the updated windows-since-replaced.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> obs = hj.Observation(score=jnp.array([0.1, 0.9, 0.5, 0.7]))
    >>> since = jnp.zeros(4, jnp.int32)
    >>> parents, replaced, since = truncation_select(jax.random.key(0), obs, since, 0.25, 1)
    >>> parents.tolist(), replaced.tolist(), since.tolist()  # the worst copies the best
    ([1, 1, 2, 3], [True, False, False, False], [0, 1, 1, 1])
    """
    scores = jnp.asarray(obs.score, jnp.float32)
    n = scores.shape[0]
    alive = jnp.ones((n,), jnp.bool_) if obs.alive is None else jnp.asarray(obs.alive, bool)
    since = since + 1
    eligible = alive & (since >= ready)
    finite = jnp.isfinite(scores)

    r = rank(scores, eligible)
    n_elig = jnp.sum(eligible)
    k = truncation_size(fraction, n_elig)
    n_top = jnp.minimum(k, jnp.sum(eligible & finite))
    top = eligible & finite & (r < n_top)
    bottom = eligible & ((r >= n_elig - k) | ~finite) & ~top & (n_top > 0)

    order = jnp.argsort(r)  # best first
    if u is None:
        if key is None:
            raise ValueError("truncation_select: give a key or the uniforms u")
        u = jax.random.uniform(key, (n,), jnp.float32)
    top_n = jnp.maximum(n_top, 1)
    pick = jnp.minimum(jnp.floor(u * top_n.astype(jnp.float32)).astype(jnp.int32), top_n - 1)
    parents = jnp.where(bottom, order[pick], jnp.arange(n)).astype(jnp.int32)
    return parents, bottom, jnp.where(bottom, 0, since).astype(jnp.int32)


def check_ready(where: str, ready: int | float) -> int | float:
    """``ready`` as given: an integer >= 1 (windows) or a real number in (0, 1) (a
    share of the run's length, resolved by :func:`ready_windows`); anything else is
    refused with a ValueError naming both forms."""
    message = (
        f"{where}: ready must be an integer >= 1 (windows) or a share of the run in "
        f"(0, 1), got {ready!r}"
    )
    if isinstance(ready, numbers.Real) and not isinstance(ready, numbers.Integral):
        share = float(ready)
        if math.isfinite(share) and not share.is_integer():
            if 0.0 < share < 1.0:
                return share
            raise ValueError(message)
    try:
        return integer(f"{where}: ready", ready, 1)
    except ValueError:
        raise ValueError(message) from None


def ready_windows(ready: int | float, horizon: int | None, obs: Observation, where: str) -> int:
    """The exploit interval in windows: ``ready`` itself when it is an integer, else
    ``max(1, round(ready * length))`` with the run's length from the tuner's own
    ``horizon`` or ``Observation.horizon``; a clear error when neither knows it.

    >>> import hagfish_jax as hj
    >>> from hagfish_jax.core.tuners.pbt import ready_windows
    >>> obs = hj.Observation(score=0.0, horizon=20)
    >>> ready_windows(0.15, None, obs, "pbt"), ready_windows(0.15, 40, obs, "pbt")
    (3, 6)
    >>> ready_windows(2, None, hj.Observation(score=0.0), "pbt")
    2
    """
    if isinstance(ready, int):
        return ready
    why = f"ready={ready} is a share of the run (or pass ready=N windows)"
    return max(1, int(ready * int(run_horizon(horizon, obs, where, why)) + 0.5))


def check_population_init(sub: Space, hparams, where: str) -> HParams:
    hp = as_hparams(dict(hparams))
    missing = [n for n in sub.names if n not in hp]
    if missing:
        raise ValueError(f"{where}.init: hparams lack tuned name(s) {missing}; got {sorted(hp)}")
    shapes = {v.shape for v in hp.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(
            f"{where}.init: every hyperparameter must be an (N,) array, got shapes "
            f"{ {k: v.shape for k, v in hp.items()} }"
        )
    return hp


def pbt(
    space: Space,
    fraction: float = 0.25,
    perturb: tuple[float, float] = (0.8, 1.25),
    resample: float = 0.25,
    ready: int | float = READY,
    names: Iterable[str] | None = None,
    horizon: int | None = None,
) -> Tuner:
    """Population-based training as a pure tuner over ``(N,)`` scores.

    Each update ranks the *eligible* members (alive, and ``ready`` windows or more since
    they were last replaced; all members of a synchronous population are at the same
    training step). By default ``ready`` is 2 windows (:data:`READY`), so a copied
    member trains long enough to show what its new values do before it is judged. Given
    as a share of the run instead (a float in (0, 1)), the run's length comes from
    ``horizon`` or from ``Observation.horizon`` (``hj.program.build(..., windows=N)``
    and ``hj.Loop`` pass it). The bottom ``truncation_size(fraction, n)`` members, plus
    every eligible member with a NaN/inf score, are replaced: each copies a member drawn
    uniformly from the top set (``Proposal.parents``; the caller applies it with
    :func:`hagfish_jax.population.exploit`, which copies weights, optimizer state and
    hyperparameters) and then explores: with probability ``resample`` it draws fresh
    values from the space, otherwise it multiplies the parent's values by one of
    ``perturb`` (see :meth:`Space.perturb`). Everything stays inside the space. Masked
    (dead) members are never ranked, never parents and never replaced.

    Args:
      space: the search space; only dynamic dimensions change (``names``).
      fraction: size of the top and bottom sets, in (0, 0.5].
      perturb: the two multiplicative factors.
      resample: probability of a fresh draw instead of a perturbation, in [0, 1].
      ready: how long a member trains after being replaced before it is compared
        again: an integer >= 1 (windows; default :data:`READY`, 2), or a float in
        (0, 1), a share of the run's length (0.15: 3 windows of 20).
      names: dimensions to explore; default every dynamic one.
      horizon: the run's length in windows, for a ``ready`` given as a share; the
        default ``None`` takes ``Observation.horizon``; with neither, ``update``
        raises. Ignored when ``ready`` is an integer.

    Returns:
      A population :class:`~hagfish_jax.Tuner` whose state is a :class:`PBTState`.

    Raises:
      ValueError: a parameter outside its range.
      TypeError: ``space`` is not a :class:`~hagfish_jax.Space`.

    >>> import jax, jax.numpy as jnp, hagfish_jax as hj
    >>> space = hj.Space(learning_rate=hj.LogUniform(1e-4, 1e-1))
    >>> tuner = hj.pbt(space, fraction=0.25, ready=1)  # compare every member every window
    >>> state = tuner.init(jax.random.key(0), space.sample(jax.random.key(1), 8))
    >>> proposal, state = tuner.update(state, hj.Observation(score=jnp.arange(8.0)))
    >>> [int(p) in (6, 7) for p in proposal.parents[:2]]  # the worst two copy the best two
    [True, True]
    >>> proposal.parents[2:].tolist()
    [2, 3, 4, 5, 6, 7]
    """
    sub = tuned_space(space, names, "pbt")
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"pbt: fraction must be in (0, 0.5], got {fraction!r}")
    if len(perturb) != 2 or not all(f > 0 for f in perturb):
        raise ValueError(f"pbt: perturb must be two positive factors, got {perturb!r}")
    if not 0.0 <= resample <= 1.0:
        raise ValueError(f"pbt: resample must be in [0, 1], got {resample!r}")
    ready = check_ready("pbt", ready)
    horizon = None if horizon is None else integer("pbt: horizon", horizon, 1)

    def init(key, hparams) -> PBTState:
        hp = check_population_init(sub, hparams, "pbt")
        n = next(iter(hp.values())).shape[0]
        return PBTState(hp, jnp.zeros((n,), jnp.int32), jnp.asarray(0, jnp.int32), key)

    def update(state: PBTState, obs: Observation):
        hp = population_hparams(state.hparams, obs)
        key, k_draw = jax.random.split(state.key)
        n = jnp.shape(obs.score)[0]
        d = len(sub.names)
        # every random number of the update in one draw (each call site of jax.random
        # is a kernel of its own to compile): parent, coin, d directions, d fresh values
        u = draws.uniform(k_draw, (n, 2 + 2 * d))
        interval = ready_windows(ready, horizon, obs, "pbt")
        parents, bottom, since = truncation_select(
            None, obs, state.since, fraction, interval, u=u[:, 0]
        )

        def explore(hp, parents, bottom, u):
            inherited = {name: v[parents] for name, v in hp.items()}
            tuned = {name: inherited[name] for name in sub.names}
            up = {name: u[:, 2 + i] < 0.5 for i, name in enumerate(sub.names)}
            perturbed = sub.perturb_with(tuned, up, perturb)
            fresh = sub.from_unit(u[:, 2 + d :])
            coin = u[:, 1] < resample
            new = {name: jnp.where(bottom, inherited[name], v) for name, v in hp.items()}
            for name in sub.names:
                explored = jnp.where(coin, fresh[name], perturbed[name])
                new[name] = jnp.where(bottom, explored, hp[name]).astype(jnp.float32)
            return new

        def keep(hp, parents, bottom, u):
            return {k: v.astype(jnp.float32) if k in sub.names else v for k, v in hp.items()}

        # one branch: a window that replaces no one explores nothing, and the explore
        # step reads `parents` and `bottom` as computed once (XLA would otherwise
        # recompute the selection inside every hyperparameter's kernel)
        new = jax.lax.cond(jnp.any(bottom), explore, keep, hp, parents, bottom, u)

        new_state = PBTState(
            hparams=new,
            since=since,
            generation=state.generation + 1,
            key=key,
        )
        return Proposal(new, parents, jnp.zeros((n,), jnp.bool_)), new_state

    return Tuner(init, update, population=True)
