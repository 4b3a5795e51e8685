"""Reduce-on-plateau that is correct for negative scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._checks import integer
from ..base import HParams, Observation, Proposal, Tuner, as_hparams, keep_parents
from ..space import Space
from ._common import applied, score_of, tuned_space

__all__ = ["PlateauState", "plateau"]


class PlateauState(NamedTuple):
    hparams: HParams
    best: jax.Array  # best score seen; -inf before the first finite one
    bad: jax.Array  # windows since the last improvement
    cooldown: jax.Array  # windows left in which nothing is judged


def plateau(
    names: Sequence[str] = ("learning_rate",),
    factor: float = 0.5,
    patience: int = 5,
    threshold: float = 1e-3,
    cooldown: int = 0,
    min_value: float = 0.0,
    space: Space | None = None,
) -> Tuner:
    """Multiply ``names`` by ``factor`` after ``patience`` windows without improvement.

    Improvement means ``score > best + threshold * |best|``, so the rule works the
    same for accuracies and for negative scores such as ``-loss``. NaN/inf scores
    never improve.

    Args:
      names: hyperparameters to reduce together.
      factor: multiplier in (0, 1).
      patience: windows without improvement before a reduction (an integer >= 1).
      threshold: relative improvement that counts (>= 0).
      cooldown: windows after a reduction in which nothing is judged (an integer >= 0).
      min_value: a reduction never goes below this (and never raises a value that
        is already below it).
      space: optional; reduced values are also clipped into it (never upwards). Its
        dimensions for ``names`` must be dynamic.

    Returns:
      A :class:`~hagfish_jax.Tuner` whose state is a :class:`PlateauState`.

    Raises:
      ValueError: empty ``names``, a parameter outside its range (``patience``
        and ``cooldown`` must be integers), or a name the ``space`` lacks or holds as
        structural (an integer or a choice: only the shell changes those).

    >>> import jax, hagfish_jax as hj
    >>> tuner = hj.plateau(patience=2, factor=0.5)
    >>> state = tuner.init(jax.random.key(0), {"learning_rate": 0.1})
    >>> for score in [-3.0, -3.0, -3.0]:
    ...     proposal, state = tuner.update(state, hj.Observation(score=score))
    >>> round(float(proposal.hparams["learning_rate"]), 6)
    0.05
    """
    names = tuple(names)
    if not names:
        raise ValueError("plateau: names must not be empty")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"plateau: factor must be in (0, 1), got {factor!r}")
    patience = integer("plateau: patience", patience, 1)
    cooldown = integer("plateau: cooldown", cooldown, 0)
    if not threshold >= 0.0:
        raise ValueError(f"plateau: threshold must be >= 0, got {threshold!r}")
    if space is not None:  # unknown or structural names fail here
        tuned_space(space, names, "plateau")

    def init(key, hparams) -> PlateauState:
        del key
        missing = [n for n in names if n not in hparams]
        if missing:
            raise ValueError(f"plateau.init: hparams lack {missing}; got {sorted(hparams)}")
        return PlateauState(
            as_hparams(dict(hparams)),
            jnp.asarray(-jnp.inf, jnp.float32),
            jnp.asarray(0, jnp.int32),
            jnp.asarray(0, jnp.int32),
        )

    def update(state: PlateauState, obs: Observation):
        hp = applied(obs, state.hparams)
        score = score_of(obs)
        finite = jnp.isfinite(score)
        in_cooldown = state.cooldown > 0
        improved = finite & (
            ~jnp.isfinite(state.best) | (score > state.best + threshold * jnp.abs(state.best))
        )
        best = jnp.where(improved, score, state.best)
        bad = jnp.where(in_cooldown | improved, 0, state.bad + 1)
        reduce = bad >= patience
        new = dict(hp)
        for n in names:
            reduced = jnp.maximum(hp[n] * factor, min_value)
            if space is not None:
                reduced = space[n].clip(reduced)
            reduced = jnp.minimum(reduced, hp[n])  # a reduction never raises a value
            new[n] = jnp.where(reduce, reduced, hp[n]).astype(jnp.float32)
        cd = jnp.where(reduce, cooldown, jnp.maximum(state.cooldown - 1, 0)).astype(jnp.int32)
        bad = jnp.where(reduce, 0, bad).astype(jnp.int32)
        new_state = PlateauState(new, best.astype(jnp.float32), bad, cd)
        return Proposal(new, keep_parents(), jnp.asarray(False)), new_state

    return Tuner(init, update)
