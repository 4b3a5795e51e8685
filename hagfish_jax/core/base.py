"""The tuner protocol: a pair of pure functions, like ``optax.GradientTransformation``.

A tuner is built by a factory that closes over its static configuration and
returns :class:`Tuner` ``(init, update)``:

* ``init(key, hparams) -> state`` starts from the hyperparameters in use;
* ``update(state, observation) -> (proposal, state)`` sees how the last window
  went and says what to apply for the next one.

Both are pure and jittable; a tuner runs unchanged in a Python loop, inside
``lax.scan`` and under ``vmap`` (one tuner per population member).

Scores are *higher is better*. Pass ``-loss`` for a loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["KEEP", "HParams", "Observation", "Proposal", "Tuner", "as_hparams", "keep_parents"]

HParams = dict[str, jax.Array]

#: ``Proposal.parents`` value meaning "keep your own weights" (no exploit).
KEEP = -1


class Observation(NamedTuple):
    """What happened during the last window.

    Attributes:
      score: higher is better; ``()`` for one run, ``(N,)`` for a population tuner.
      train_score: the same metric on training data, for generalisation-gap signals.
      cost: steps, examples or seconds spent in this window (caller's units).
      hparams: the values actually applied during the window, when they differ
        from what the tuner proposed (a guard clamped them). ``None`` means the
        tuner's own last proposal was applied.
      alive: ``(N,)`` bool for population tuners: pruned (masked) members are
        ``False``; they are never ranked, never parents and never replaced.
        ``None`` means every member is alive.
      horizon: the windows the whole run trains (a Python int), when the caller
        knows it: ``hj.program.build(..., windows=N)`` and ``hj.Loop.run`` pass it.
        Tuners that model training progress (``bayes``, ``pb2``) read it when they
        were not given a ``horizon`` of their own.
      loss, train_loss: the validation and training losses after the window (lower
        is better), when the task's ``evaluate`` reports ``val_loss`` and
        ``train_loss``; the program passes them. A learned controller
        (``hj.learned``) reads them.
    """

    score: jax.Array
    train_score: jax.Array | None = None
    cost: jax.Array | None = None
    hparams: HParams | None = None
    alive: jax.Array | None = None
    horizon: int | None = None
    loss: jax.Array | None = None
    train_loss: jax.Array | None = None


class Proposal(NamedTuple):
    """What to apply for the next window.

    Attributes:
      hparams: the hyperparameters to apply.
      parents: int; member ``i`` copies weights from member ``parents[i]``.
        ``parents[i] == i`` or ``parents[i] == KEEP`` (-1) means keep your own.
        Single-run tuners return ``KEEP`` so they stay correct under ``vmap``.
      rollback: bool; restore the best snapshot before applying ``hparams``.
      explore: bool (or ``None``: no): the next window tries a value to learn how it
        does (a finite-difference probe, a bayes trial). Its score measures the trial,
        not the run, so the Loop's backoff never counts it as a degradation.
    """

    hparams: HParams
    parents: jax.Array
    rollback: jax.Array
    explore: jax.Array | None = None


class Tuner(NamedTuple):
    """A pure tuner.

    ``init(key, hparams) -> state``; ``update(state, obs) -> (proposal, state)``.

    Attributes:
      init: starts from the hyperparameters in use.
      update: sees the last window, proposes the next.
      population: ``True`` for a tuner that ranks a whole population at once (``pbt``,
        ``pb2``: it sees ``(N,)`` scores); ``False`` for a single-run tuner, which the
        tuned program vmaps over the members of a population.
    """

    init: Callable[[jax.Array, HParams], Any]
    update: Callable[[Any, Observation], tuple[Proposal, Any]]
    population: bool = False


def as_hparams(hp: dict[str, Any]) -> HParams:
    """Cast every value to a strongly typed float32 array (no weak types, no retrace)."""
    return {k: jax.lax.convert_element_type(jnp.asarray(v), jnp.float32) for k, v in hp.items()}


def keep_parents() -> jax.Array:
    """``parents`` for a single-run proposal: keep your own weights."""
    return jnp.asarray(KEEP, jnp.int32)
