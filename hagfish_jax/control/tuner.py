"""A trained controller as a tuner: ``hj.learned(path, space)``.

The tuner keeps the loss history of :mod:`hagfish_jax.control.features`, builds the
same observation the controller saw in meta-training, and moves the hyperparameters
by its actions. It is a plain :class:`hagfish_jax.Tuner` (pure, jittable, vmappable):
it runs in ``hj.guard(...)``, ``hj.Loop``, ``hj.program.build`` and per member of a
population, without a retrace between windows.

It reads the validation and training losses the program passes in
``Observation.loss`` / ``Observation.train_loss`` (a task's ``evaluate`` reports them as
``val_loss`` and ``train_loss``); without ``train_loss`` it uses the validation loss
(gap 0). The run's length comes from ``Observation.horizon`` (the program and the Loop
pass it), else ``horizon=``, else the length the controller was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..core.base import HParams, Observation, Proposal, Tuner, keep_parents
from ..core.space import Space
from ..core.tuners._common import applied, check_init
from . import features as F
from .controller import Controller, load

__all__ = ["LearnedState", "learned"]


class LearnedState(NamedTuple):
    """State of :func:`learned`.

    Attributes:
      hparams: the last proposal (every name).
      unit: the controller's unit coordinates (continuous; integers round on use).
      history: the loss history.
      started: whether a window has been seen.
      key: for sampled actions (``greedy=False``).
    """

    hparams: HParams
    unit: jax.Array
    history: F.History
    started: jax.Array
    key: jax.Array


def learned(
    controller: Controller | str | os.PathLike,
    space: Space,
    names: Iterable[str] | None = None,
    *,
    horizon: int | None = None,
    greedy: bool = True,
) -> Tuner:
    """A tuner driven by a trained controller.

    Args:
      controller: a :class:`Controller` or the directory one was saved to.
      space: the space of the run being tuned. Values are moved in the controller's
        ranges and clipped into this space.
      names: dimensions to move; default every name the controller knows that is a
        dynamic dimension of ``space``. The controller sees the others at their
        values in ``init``'s hparams (or its meta-training start) and its moves of
        them are ignored.
      horizon: the run's windows when ``Observation.horizon`` is not given.
      greedy: take the most likely action (default), or sample one.

    Raises:
      ValueError: no name in common, a name unknown to the controller, or structural
        in ``space``.
    """
    if not isinstance(controller, Controller):
        controller = load(controller)
    ctrl_space = controller.spec.space
    if not isinstance(space, Space):
        raise TypeError(f"learned: space must be a hagfish_jax.Space, got {type(space).__name__}")
    if names is None:
        names = [n for n in ctrl_space.names if n in space and n in space.dynamic]
        if not names:
            raise ValueError(
                f"learned: the controller moves {list(ctrl_space.names)}; none is a dynamic "
                f"dimension of {space}"
            )
    names = sorted(names)
    unknown = sorted(set(names) - set(ctrl_space.names))
    if unknown:
        raise ValueError(f"learned: the controller does not know {unknown}")
    space._check_names(names, "learned")
    fixed = sorted(set(names) & space.structural)
    if fixed:
        raise ValueError(f"learned: {fixed} are structural in the space; they cannot change in jit")
    sub = space.subspace(names)
    moves = jnp.asarray([n in names for n in ctrl_space.names])
    step = controller.spec.step
    default_horizon = horizon if horizon is not None else controller.spec.horizon

    def unit_of(hp: HParams) -> jax.Array:
        values = {n: hp.get(n, controller.spec.start[n]) for n in ctrl_space.names}
        return ctrl_space.to_unit(ctrl_space.clip(values))

    def init(key, hparams) -> LearnedState:
        hp = check_init(sub, hparams, "learned")
        h = F.start(1.0, 1.0)
        return LearnedState(hp, unit_of(hp), h, jnp.asarray(False), key)

    def update(state: LearnedState, obs: Observation):
        if obs.loss is None:
            raise ValueError(
                "learned: the tuner reads the validation loss (Observation.loss); the task's "
                "evaluate must report 'val_loss'"
            )
        hp = applied(obs, state.hparams)
        # a guard (or the shell) may have applied other values: follow them
        now = unit_of(hp)
        planned = ctrl_space.to_unit(ctrl_space.clip(ctrl_space.from_unit(state.unit)))
        unit = jnp.where(jnp.abs(now - planned) > 1e-4, now, state.unit)
        loss = jnp.asarray(obs.loss, jnp.float32)
        train = loss if obs.train_loss is None else jnp.asarray(obs.train_loss, jnp.float32)
        fresh = F.start(loss, train)
        pushed = F.push(state.history, loss, train)
        history = jax.tree.map(lambda a, b: jnp.where(state.started, a, b), pushed, fresh)
        run_len = obs.horizon if obs.horizon is not None else default_horizon
        o = F.observe(history, unit, run_len)
        key, k = jax.random.split(state.key)
        action = controller.act(o, None if greedy else k)
        unit = jnp.where(moves, F.move(unit, action, step), unit)
        values = ctrl_space.from_unit(unit)
        new_hp = dict(hp)
        new_hp.update(sub.clip({n: values[n] for n in names}))
        new_state = LearnedState(new_hp, unit, history, jnp.asarray(True), key)
        return Proposal(new_hp, keep_parents(), jnp.asarray(False)), new_state

    return Tuner(init, update)
