"""The types of the tuned program (:mod:`hagfish_jax.core.program`): what one window
hands to the next (:class:`Carry`, with the best member seen, :class:`Best`) and the
bundle of pure functions :func:`~hagfish_jax.core.program.build` returns
(:class:`Program`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .base import HParams
from .snapshot import Snapshot

__all__ = ["Best", "Carry", "Program", "recent_only"]


class Best(NamedTuple):
    """The best member seen across windows (kept on device).

    Attributes:
      state: that member's state right after the window that scored best.
      hparams: the hyperparameters it trained with in that window.
      score: its score (``-inf`` until a finite one).
      window: the window (``-1`` until a finite score).
      member: its index in the population (0 for a single run; ``-1`` before).
      loss: its tie-break value, ``"tie_break"`` or else ``"val_loss"`` from the
        task's ``evaluate`` (``inf`` when it reports neither): among windows and
        members with the same score the lower value is the best, so a small
        validation set's ties (or a capped return's) do not pick whichever model
        reached that score first.
    """

    state: Any
    hparams: HParams
    score: jax.Array
    window: jax.Array
    member: jax.Array
    loss: jax.Array


class Carry(NamedTuple):
    """What one window hands to the next.

    Attributes:
      state: the task's state (leading axis N for a population).
      tuner_state: the tuner's state (per member for a vmapped single-run tuner).
      snap: each member's own best state: what a rollback restores. A single run's
        snapshot is its best member, so there ``snap.state`` is ``None`` (the state is
        kept once, in ``best.state``) and ``snap.score`` equals ``best.score``.
      best: the best member over all windows.
      alive: ``()`` True for a single run, ``(N,)`` bool for a population.
      score: the scores of the last tuned window (NaN before the first, and for
        masked members): of the weights each member holds, so a member that copied
        another carries its parent's score (``prune``, ``spawn`` and the Loop's ensemble
        rank by it; the window's row keeps the member's own).
      window: windows trained so far, int32.
      exploring: the next window tries a tuner's trial value (``Proposal.explore``).
      repeats: rollbacks in a row to the same snapshot (reset when it improves);
        past ``max_repeats`` the program refuses a healthy member's rollback.
      shrink: ``{name: factor}`` per member, 1 until the member diverged more than
        ``max_repeats`` times in a row; the tuner's value times this is applied.
      key: the PRNG key for the next window.
    """

    state: Any
    tuner_state: Any
    snap: Snapshot
    best: Best
    alive: jax.Array
    score: jax.Array
    window: jax.Array
    exploring: jax.Array
    repeats: jax.Array
    shrink: dict
    key: jax.Array


class Program(NamedTuple):
    """The pure functions of a tuned run (see :func:`build`). None is jitted; the
    caller jits what it calls, or scans :attr:`window`.

    Attributes:
      init: ``(key, hparams=None) -> Carry``: fresh members from the task.
      start: ``(key, state) -> Carry`` around an existing state.
      train: ``carry -> (carry, metrics)``: one window of training, nothing tuned
        (masked members keep their state).
      evaluate: ``carry -> metrics``.
      train_members: ``(state, key, alive) -> (state, metrics)``: the training part of
        ``train`` on the task's state alone (no tuner state), so one compiled copy
        serves every tuner (see :func:`compiled`).
      evaluate_members: ``state -> metrics``.
      score: ``(carry, train_metrics, evaluation) -> score``: the score the tuner sees
        (NaN for a diverged window and for masked members).
      tune: ``(carry, train_metrics, evaluation, rollback=False) -> (carry, row)``: the
        tuner sees the window, snapshots and rollbacks, exploit, new hyperparameters and
        the best member; ``rollback`` forces a rollback (the Loop's confirmed
        degradation goes through here too).
      window: ``(carry, _) -> (carry, row)``: train, evaluate, tune; a ``lax.scan`` body.
      prune: ``(carry, k) -> carry``: mask the ``k`` worst alive members.
      spawn: ``(carry, key, count=None, scale=0.2) -> (carry, parents)``: fill masked
        slots with copies of the best alive members (a single run restarts from its
        best state) with relative noise of up to ``scale`` on the dynamic
        hyperparameters.
      population: N, or ``None`` for a single run.
      names: the hyperparameters recorded in each row and seen by the tuner.
      windows: the run's planned length (``Observation.horizon``), or ``None``.
    """

    init: Callable[..., Carry]
    start: Callable[[jax.Array, Any], Carry]
    train: Callable[[Carry], tuple[Carry, dict]]
    evaluate: Callable[[Carry], dict]
    train_members: Callable[..., tuple[Any, dict]]
    evaluate_members: Callable[[Any], dict]
    score: Callable[..., jax.Array]
    tune: Callable[..., tuple[Carry, dict]]
    window: Callable[..., tuple[Carry, dict]]
    prune: Callable[[Carry, int], Carry]
    spawn: Callable[..., tuple[Carry, jax.Array]]
    population: int | None
    names: tuple[str, ...] | None
    windows: int | None = None


def recent_only(carry: Carry) -> Carry:
    """``carry`` with its past scores forgotten: the next ``tune`` takes that window's
    best member as the best, and each member's state as its snapshot. For live data
    (``hj.Stream``), where each window is scored on new data and an old score is no
    measure of an old state today.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> task = hj.Task(init=lambda k, hp: {"w": jnp.ones(2)},
    ...                train_window=lambda s, k: (s, {}),
    ...                evaluate=lambda s: {"score": -jnp.sum(s["w"])},
    ...                space=None, default_hparams={})
    >>> carry = hj.program.build(task, hj.fixed()).init(jnp.zeros(2, jnp.uint32))
    >>> carry = carry._replace(best=carry.best._replace(score=jnp.float32(3.0)))
    >>> float(recent_only(carry).best.score)
    -inf
    """
    best = carry.best._replace(
        score=jnp.full_like(carry.best.score, -jnp.inf),
        loss=jnp.full_like(carry.best.loss, jnp.inf),
    )
    snap = carry.snap._replace(score=jnp.full_like(carry.snap.score, -jnp.inf))
    return carry._replace(best=best, snap=snap)
